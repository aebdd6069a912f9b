//! booking-service: the HTTP API of medbook.
//!
//! Layers: [`domain`] (entities, value objects) → [`service`] (use cases over the
//! traits in `service::ports`) → [`repository`] (PostgreSQL) and [`security`] (bcrypt,
//! JWT) implementing those traits → [`transport`] (actix-web) and [`cli`].
//! `main.rs` only parses the command line and calls into here.

pub use medbook_service_kit::blocking;
pub mod audit_client;
pub mod audit_memory;
pub mod cache;
pub mod cli;
pub mod demo;
pub mod domain;
pub mod messaging;
pub mod repository;
pub mod security;
pub mod service;
pub mod settings;
pub mod startup;
pub mod transport;
