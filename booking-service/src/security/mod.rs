//! Real implementations of the security ports: bcrypt hashing with bounded
//! concurrency and HS256 JWT access tokens with opaque refresh tokens.

pub mod hasher;
pub mod tokens;

pub use hasher::BcryptHasher;
pub use tokens::JwtIssuer;
