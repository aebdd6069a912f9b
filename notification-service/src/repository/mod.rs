//! The notification-service's own PostgreSQL database: the delivery log that makes
//! sending idempotent. The pool, start-up and migrations are the service kit's
//! (`medbook_service_kit`); this module holds the schema and the queries.

pub mod dead_letters;
pub mod deliveries;

use diesel_migrations::{embed_migrations, EmbeddedMigrations};

pub use dead_letters::PgDeadLetterBudget;
pub use deliveries::PgDeliveryLog;
pub use medbook_service_kit::db::{Db, PgConn};

pub const MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations");

/// The advisory lock key migrations of this database are applied under.
pub const MIGRATION_LOCK: i64 = 7243002;
