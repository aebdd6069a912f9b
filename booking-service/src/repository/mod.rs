//! PostgreSQL implementations of the service ports, with Diesel over an r2d2 pool.
//! Every query runs through [`Db::run`], i.e. off the async executor.

pub mod accounts;
pub mod appointments;
pub mod audit;
pub mod calendar;
pub mod clinics;
#[cfg(test)]
mod contracts;
pub mod day_feed;
pub use medbook_service_kit::db;
pub mod demo;
pub mod doctors;
pub mod ids;
pub mod migrations;
pub mod outbox;
mod parties;
pub mod policies;
pub mod refresh_tokens;
pub mod reminders;
pub mod reviews;
pub mod schema;
pub mod slots;
pub use medbook_service_kit::sql;
pub mod throttle;
pub mod users;
pub mod waitlist;

pub use accounts::PgAccounts;
pub use appointments::PgAppointments;
pub use clinics::PgClinics;
pub use db::{Db, PoolSettings, StatementLog};
pub use doctors::PgDoctors;
pub use outbox::PgOutbox;
pub use refresh_tokens::PgRefreshTokens;
pub use reminders::PgReminders;
pub use reviews::PgReviews;
pub use slots::PgSlots;
pub use throttle::PgLoginThrottle;
pub use users::PgUsers;
