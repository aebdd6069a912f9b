//! The notification-service against the real broker, PostgreSQL and SMTP servers, and
//! the whole pipeline from an HTTP booking to the email in the mail sink.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod accounts;
mod booking;
mod consumer;
mod dlq;
mod e2e;
mod helpers;
mod outage;
mod process;
mod reminders;
mod request_trail;
