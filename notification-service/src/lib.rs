//! notification-service: consumes appointment events from Kafka and emails patients,
//! exactly once per event as far as SMTP allows; dead-letters what cannot be sent and
//! lets operators replay it.

pub mod cli;
pub mod consumer;
pub mod dlq;
pub mod domain;
pub mod mailer;
pub mod repository;
pub mod service;
pub mod settings;
pub mod startup;
