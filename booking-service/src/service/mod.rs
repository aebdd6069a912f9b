//! Use cases. This layer depends only on the traits in [`ports`]; the Diesel and
//! bcrypt/JWT implementations live in `repository` and `security`, and unit tests use fakes.

pub mod auth;
pub mod error;
pub mod patients;
pub mod ports;

#[cfg(test)]
pub(crate) mod fakes;

pub use error::ServiceError;
