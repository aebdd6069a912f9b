//! PostgreSQL implementations of the service ports, with Diesel over an r2d2 pool.
//! Every query runs through [`Db::run`], i.e. off the async executor.

pub mod db;
pub mod migrations;
pub mod refresh_tokens;
pub mod schema;
pub mod throttle;
pub mod users;

pub use db::{Db, PoolSettings};
pub use refresh_tokens::PgRefreshTokens;
pub use throttle::PgLoginThrottle;
pub use users::PgUsers;
