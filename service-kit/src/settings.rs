//! The settings pieces every service has: its database and its log level. (Kafka's are
//! `medbook_shared::kafka::KafkaSettings`; each service's listeners differ and stay in
//! its own `Settings`, checked with [`check_listen_addr`].)

use crate::db::{Db, PoolSettings};
use crate::startup::{migrate, wait_for_database};
use diesel_migrations::EmbeddedMigrations;
use medbook_shared::config_loader::{is_host_port, ConfigLoadError};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use std::time::Duration;

#[derive(Debug, Clone, Deserialize)]
pub struct DatabaseSettings {
    pub url: SecretString,
    pub pool_size: u32,
    pub connect_timeout_ms: u64,
    pub statement_timeout_ms: u64,
    /// Apply pending migrations at start-up.
    pub run_migrations: bool,
    /// How long start-up waits for the database to answer.
    pub startup_retry_secs: u64,
}

impl DatabaseSettings {
    /// `min_pool_size`: the fewest connections the service can work with.
    pub fn validate(&self, min_pool_size: u32) -> Result<(), ConfigLoadError> {
        fn bad(key: &str, message: impl Into<String>) -> ConfigLoadError {
            ConfigLoadError::invalid(key, message)
        }
        if self.url.expose_secret().is_empty() {
            return Err(bad("database.url", "must not be empty"));
        }
        if self.pool_size < min_pool_size {
            return Err(bad(
                "database.pool_size",
                format!("must be at least {min_pool_size}"),
            ));
        }
        if self.connect_timeout_ms == 0 {
            return Err(bad("database.connect_timeout_ms", "must be greater than 0"));
        }
        if self.statement_timeout_ms == 0 {
            return Err(bad(
                "database.statement_timeout_ms",
                "must be greater than 0",
            ));
        }
        Ok(())
    }

    pub fn pool_settings(&self) -> PoolSettings {
        PoolSettings {
            url: self.url.expose_secret().to_owned(),
            max_size: self.pool_size,
            connect_timeout: Duration::from_millis(self.connect_timeout_ms),
            statement_timeout: Duration::from_millis(self.statement_timeout_ms),
        }
    }

    /// The pool, once the database answers (waiting up to `startup_retry_secs`).
    pub async fn connect(&self) -> anyhow::Result<Db> {
        let db = Db::new(&self.pool_settings())?;
        wait_for_database(
            &db,
            self.url.expose_secret(),
            Duration::from_secs(self.startup_retry_secs),
        )
        .await?;
        Ok(db)
    }

    /// [`Self::connect`], then the pending `migrations` when `run_migrations` is set.
    pub async fn open(&self, migrations: EmbeddedMigrations, lock_key: i64) -> anyhow::Result<Db> {
        let db = self.connect().await?;
        if self.run_migrations {
            migrate(&db, migrations, lock_key).await?;
        }
        Ok(db)
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct LogSettings {
    /// An `EnvFilter` directive: `info`, `debug`, `booking_service=debug,info`…
    pub level: String,
}

/// `value` must be `host:port` (port 0 picks a free one).
pub fn check_listen_addr(key: &str, value: &str) -> Result<(), ConfigLoadError> {
    if is_host_port(value) {
        Ok(())
    } else {
        Err(ConfigLoadError::invalid(
            key,
            "must be host:port with a port from 0 to 65535",
        ))
    }
}
