//! The infrastructure every medbook service is built on, written once: the PostgreSQL
//! pool and its blocking `run` ([`db`]), hand-written SQL that is still prepared
//! ([`sql`]), waiting for the database and migrating under an advisory lock
//! ([`startup`]), retry with backoff ([`retry`]), the operators' `/health`, `/ready`
//! and `/metrics` ([`ops`]) and the commands that probe them ([`probe`]), the settings
//! pieces every service has ([`settings`]), stop signals ([`signals`]), JSON output of
//! commands ([`cli`]) and the start-up of every binary ([`runner`]).
//!
//! A service brings its domain, its use cases and its adapters; it does not copy any
//! of this.

pub mod blocking;
pub mod cli;
pub mod context;
pub mod db;
pub mod ops;
pub mod probe;
pub mod retry;
pub mod runner;
pub mod settings;
pub mod signals;
pub mod sql;
pub mod startup;

pub use db::{Db, DbError, PoolSettings, StatementLog};
