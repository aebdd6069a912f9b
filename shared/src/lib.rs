//! Code every medbook service shares: the event contract, configuration loading and
//! telemetry set-up.
//!
//! Each service owns its own `Settings` type; this crate only knows how to layer the
//! sources (defaults < config file < `MEDBOOK_…` environment variables) and how to
//! initialise structured JSON logging, so that all services behave alike.

pub mod config_loader;
pub mod events;
pub mod ics;
pub mod kafka;
pub mod kafka_log;
pub mod telemetry;
pub mod trace_context;
