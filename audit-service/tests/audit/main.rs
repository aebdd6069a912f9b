//! The audit-service as its real binary against a real PostgreSQL: every RPC with a
//! tonic client, health and reflection, the operators' endpoints, checkpoints by count
//! and by time, restarts, the append-only triggers, and `verify` on an intact and on
//! every kind of tampered log.
#![allow(
    clippy::unwrap_used, clippy::expect_used,
    // Tests index and cast freely: a panic there is a failed run.
    clippy::indexing_slicing,
    clippy::cast_possible_truncation,
    clippy::cast_possible_wrap,
    clippy::cast_sign_loss,
    clippy::cast_precision_loss,
    clippy::cast_lossless
)]

mod checkpoints;
mod cli;
mod helpers;
mod rpc;
mod service;
mod tamper;
