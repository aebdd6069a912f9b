//! Request and response bodies of the HTTP API. Requests reject unknown fields and
//! convert into domain values with every invalid field reported.

pub mod auth;
pub mod common;
pub mod patients;
