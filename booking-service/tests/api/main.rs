//! Functional tests: the real application on a random port against a fresh PostgreSQL
//! database per test (cloned from a migrated template). One test binary, as in
//! zero-to-production, so linking happens once.
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
mod appointments;
mod audit;
mod audit_reader;
mod auth;
mod catalog;
mod cli;
mod clinic_care;
mod day_feed;
mod errors;
mod events;
mod grpc;
mod helpers;
mod me;
mod openapi;
mod ops;
mod patients;
mod process;
mod reminders;
mod repository;
mod round_trips;
mod security;
