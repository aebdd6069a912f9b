//! The notification-service against the real broker, PostgreSQL and SMTP servers, and
//! the whole pipeline from an HTTP booking to the email in the mail sink.
#![allow(
    clippy::unwrap_used, clippy::expect_used,
    // Tests and benchmarks index and cast freely: a panic there is a failed run.
    clippy::indexing_slicing,
    clippy::cast_possible_truncation,
    clippy::cast_possible_wrap,
    clippy::cast_sign_loss,
    clippy::cast_precision_loss,
    clippy::cast_lossless
)]

mod accounts;
mod appointment_emails;
mod booking;
mod clinic_flow;
mod consumer;
mod dlq;
mod e2e;
mod helpers;
mod offers;
mod order;
mod outage;
mod process;
mod reminders;
mod request_trail;
