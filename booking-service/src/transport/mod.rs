//! Transports: how the outside world reaches the use cases.

pub mod grpc;
pub mod http;
