//! Transports: how the outside world reaches the use cases. Each parses its wire
//! format, calls one use case and maps the result; what they share is in [`common`].

pub mod common;
pub mod grpc;
pub mod http;
