//! audit-service: medbook's tamper-evident audit log. Records are the leaves of an
//! append-only Merkle tree in the manner of Certificate Transparency (RFC 9162), in a
//! PostgreSQL database of its own whose triggers refuse every UPDATE, DELETE and
//! TRUNCATE; signed checkpoints commit to the tree's size and root, inclusion and
//! consistency proofs show a record is in the log and the log only grew, and
//! `audit-service verify` finds any row altered, removed, inserted or reordered.

pub mod cli;
pub mod grpc;
pub mod log;
pub mod merkle;
pub mod metrics;
pub mod ports;
pub mod record;
pub mod repository;
pub mod settings;
pub mod signing;
pub mod startup;
pub mod verify;

#[cfg(test)]
mod contracts;
#[cfg(test)]
mod fakes;
