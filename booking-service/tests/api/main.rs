//! Functional tests: the real application on a random port against a fresh PostgreSQL
//! database per test (cloned from a migrated template). One test binary, as in
//! zero-to-production, so linking happens once.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod accounts;
mod appointments;
mod auth;
mod catalog;
mod cli;
mod errors;
mod events;
mod helpers;
mod me;
mod openapi;
mod ops;
mod patients;
mod process;
mod reminders;
mod repository;
mod round_trips;
