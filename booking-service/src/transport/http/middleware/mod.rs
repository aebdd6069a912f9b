//! Cross-cutting HTTP behaviour, applied to every request (outermost first):
//! security headers → request id → observe (log line + metrics) → catch panics → JSON
//! errors → CORS → timeout → authorization (`access`) → the route.

pub mod catch_panic;
pub mod headers;
pub mod json_errors;
pub mod observe;
pub mod request_id;
pub mod timeout;
