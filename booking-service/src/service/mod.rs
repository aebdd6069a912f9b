//! Use cases. This layer depends only on the traits in [`ports`]; the Diesel and
//! bcrypt/JWT implementations live in `repository` and `security`, and unit tests use fakes.

pub mod account_ports;
pub mod accounts;
pub mod appointments;
pub mod audit_log;
pub mod auth;
pub mod authenticate;
pub mod booking_metrics;
pub mod booking_ports;
pub mod cache_ports;
pub mod calendar;
pub mod catalog;
pub mod day_feed;
pub mod error;
pub mod outbox;
pub mod patients;
pub mod policies;
pub mod ports;
pub mod reminders;
pub mod reviews;
pub mod schedule;
pub mod slots;
pub mod waitlist;

#[cfg(test)]
pub(crate) mod contracts;
#[cfg(test)]
pub(crate) mod fakes;

pub use error::ServiceError;
