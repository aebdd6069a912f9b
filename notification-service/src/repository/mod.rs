//! The notification-service's own PostgreSQL database: the delivery log that makes
//! sending idempotent, the order of each appointment's e-mails and the dead-letter
//! cap, each behind its port in `service::ports`. The pool, start-up and migrations are the service kit's
//! (`medbook_service_kit`); this module holds the schema and the queries.

pub mod dead_letters;
pub mod deliveries;
pub mod order;

use diesel_migrations::{embed_migrations, EmbeddedMigrations};

pub use dead_letters::PgDeadLetterBudget;
pub use deliveries::PgDeliveryLog;
pub use medbook_service_kit::db::{Db, PgConn};
pub use order::PgOrderStore;

pub const MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations");

/// The advisory lock key migrations of this database are applied under.
pub const MIGRATION_LOCK: i64 = 7243002;

#[cfg(test)]
mod contracts;
