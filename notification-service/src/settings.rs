//! notification-service configuration: built-in defaults < `config/notification-service.yml`
//! (or `$MEDBOOK_CONFIG`) < `MEDBOOK_…` environment variables, checked at start-up.

use medbook_service_kit::probe::{ConfigReport, ServiceConfig};
use medbook_service_kit::settings::check_listen_addr;
pub use medbook_service_kit::settings::{DatabaseSettings, LogSettings};
use medbook_shared::config_loader::{ConfigLoadError, ConfigSources, UnknownKey};
use medbook_shared::kafka::KafkaSettings;
use medbook_shared::telemetry::TracingSettings;
use secrecy::SecretString;
use serde::Deserialize;
use std::time::Duration;

pub const SERVICE: &str = "notification-service";

const DEFAULTS: &str = r#"
log:
  level: info
http:
  addr: "127.0.0.1:8081"
database:
  url: "postgres://postgres@127.0.0.1:5432/medbook_notifications"
  pool_size: 4
  connect_timeout_ms: 5000
  statement_timeout_ms: 10000
  run_migrations: true
  startup_retry_secs: 30
kafka:
  brokers: "127.0.0.1:9092"
  topic_prefix: ""
  properties: {}
consumer:
  group_id: notification-service
  session_timeout_ms: 10000
  commit_interval_ms: 1000
  fetch_wait_max_ms: 100
  dlq_timeout_ms: 10000
  partition_buffer: 64
smtp:
  host: 127.0.0.1
  port: 1025
  tls: none
  timeout_ms: 10000
  max_connections: 4
  probe_interval_ms: 2000
  idle_check_interval_ms: 30000
email:
  from: "medbook <no-reply@medbook.local>"
retry:
  initial_backoff_ms: 500
  max_backoff_ms: 300000
  max_age_secs: 86400
dead_letters:
  max_per_window: 50
  window_secs: 60
dedup:
  claim_timeout_secs: 60
order:
  max_wait_secs: 120
  recheck_ms: 250
"#;

#[derive(Debug, Clone, Deserialize)]
pub struct Settings {
    pub log: LogSettings,
    /// Defaults: `TracingSettings::default()` (no export).
    #[serde(default)]
    pub tracing: TracingSettings,
    pub http: HttpSettings,
    pub database: DatabaseSettings,
    pub kafka: KafkaSettings,
    pub consumer: ConsumerSettings,
    pub smtp: SmtpSettings,
    pub email: EmailSettings,
    pub retry: RetrySettings,
    pub dead_letters: DeadLetterSettings,
    pub dedup: DedupSettings,
    pub order: OrderSettings,
}

#[derive(Debug, Clone, Deserialize)]
pub struct HttpSettings {
    /// `/health`, `/ready` and `/metrics`; port 0 picks a free port.
    pub addr: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ConsumerSettings {
    pub group_id: String,
    pub session_timeout_ms: u64,
    /// How often stored offsets are committed (librdkafka's auto commit).
    pub commit_interval_ms: u64,
    /// librdkafka's `fetch.wait.max.ms`: the longest a fetch waits at the broker when
    /// there is nothing new. Brokers answer as soon as data arrives, but not all do.
    pub fetch_wait_max_ms: u64,
    /// How long one dead-letter write may take before it is retried.
    pub dlq_timeout_ms: u64,
    /// Messages held per partition while its messages wait (an outage, a slow
    /// recipient) before the partition is paused; it resumes at half of this.
    pub partition_buffer: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SmtpTls {
    /// Plain SMTP (local mail sinks).
    None,
    /// Plain connection upgraded with STARTTLS (required).
    Starttls,
    /// TLS from the first byte (SMTPS, usually port 465).
    Tls,
}

#[derive(Debug, Clone, Deserialize)]
pub struct SmtpSettings {
    pub host: String,
    pub port: u16,
    pub tls: SmtpTls,
    #[serde(default)]
    pub username: Option<String>,
    /// Only from the environment (`MEDBOOK_SMTP__PASSWORD`) or a secrets file.
    #[serde(default)]
    pub password: Option<SecretString>,
    /// Bounds one sending attempt, connecting included.
    pub timeout_ms: u64,
    /// Connections kept open and emails sent at once (across partitions).
    pub max_connections: usize,
    /// While the server is unavailable, how often it is greeted to see if it is back.
    pub probe_interval_ms: u64,
    /// While no email has gone out for this long, the server is greeted to see if it
    /// is still there (so `/ready` tells an outage of an idle service too).
    pub idle_check_interval_ms: u64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct EmailSettings {
    /// The `From:` mailbox, e.g. `medbook <no-reply@example.com>`.
    pub from: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct RetrySettings {
    /// Backoff between attempts after transient failures (SMTP 4xx, refused or dropped
    /// connections, timeouts): doubling from this, with jitter…
    pub initial_backoff_ms: u64,
    /// …up to this.
    pub max_backoff_ms: u64,
    /// Mail not sent this long after it entered its topic is dead-lettered (`expired`)
    /// instead of retried. Until then an outage only delays it.
    pub max_age_secs: u64,
    /// Retired (an attempt cap dead-lettered mail during ordinary outages); refused
    /// with a message pointing at `max_age_secs`, so an old config is not half-applied.
    #[serde(default)]
    pub max_attempts: Option<u32>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct DeadLetterSettings {
    /// At most this many capped dead letters (undecodable messages, mail the server
    /// refuses outright) within `window_secs`, for the whole consumer group (counted in
    /// the database): past it, messages are held, not dead-lettered, and their
    /// partitions wait — something is misconfigured, and emptying the topics into the
    /// DLQ would not help. Bounced addresses and expired mail are not capped.
    pub max_per_window: u32,
    pub window_secs: u64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct OrderSettings {
    /// How long an appointment e-mail waits for an earlier version of its appointment
    /// to be told first; then it goes out, and the earlier one is dropped as superseded.
    pub max_wait_secs: u64,
    /// How often a waiting e-mail asks again.
    pub recheck_ms: u64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct DedupSettings {
    /// A `sending` claim older than this belongs to a consumer that died; another may
    /// take the event over.
    pub claim_timeout_secs: u64,
}

impl Settings {
    /// Reads and checks `sources` (tests and benchmarks; a process uses
    /// `medbook_service_kit::probe::load`, which also names unknown keys).
    pub fn load_from(sources: &ConfigSources) -> Result<Self, ConfigLoadError> {
        let settings: Settings = Self::read(sources)?.0;
        settings.validate()?;
        Ok(settings)
    }

    fn validate(&self) -> Result<(), ConfigLoadError> {
        let bad = ConfigLoadError::invalid;
        self.tracing.validate()?;
        check_listen_addr("http.addr", &self.http.addr)?;
        self.database.validate(2)?;
        self.kafka.validate()?;
        if self.consumer.group_id.trim().is_empty() {
            return Err(bad("consumer.group_id", "must not be empty"));
        }
        if !(1000..=300_000).contains(&self.consumer.session_timeout_ms) {
            return Err(bad(
                "consumer.session_timeout_ms",
                "must be between 1000 and 300000",
            ));
        }
        if self.consumer.commit_interval_ms == 0 || self.consumer.dlq_timeout_ms == 0 {
            return Err(bad(
                "consumer.commit_interval_ms",
                "commit_interval_ms and dlq_timeout_ms must be greater than 0",
            ));
        }
        if self.smtp.host.trim().is_empty() {
            return Err(bad("smtp.host", "must not be empty"));
        }
        if self.smtp.port == 0 {
            return Err(bad("smtp.port", "must be a port from 1 to 65535"));
        }
        if self.smtp.timeout_ms == 0 {
            return Err(bad("smtp.timeout_ms", "must be greater than 0"));
        }
        if self.smtp.password.is_some() && self.smtp.username.is_none() {
            return Err(bad(
                "smtp.username",
                "is required when smtp.password is set",
            ));
        }
        if self.email.from.parse::<lettre::message::Mailbox>().is_err() {
            return Err(bad(
                "email.from",
                "must be a mailbox like `name <addr@host>`",
            ));
        }
        if self.retry.max_age_secs == 0 {
            return Err(bad("retry.max_age_secs", "must be greater than 0"));
        }
        if self.smtp.max_connections == 0 {
            return Err(bad("smtp.max_connections", "must be at least 1"));
        }
        if self.smtp.probe_interval_ms == 0 {
            return Err(bad("smtp.probe_interval_ms", "must be greater than 0"));
        }
        if self.smtp.idle_check_interval_ms == 0 {
            return Err(bad("smtp.idle_check_interval_ms", "must be greater than 0"));
        }
        if self.retry.max_attempts.is_some() {
            return Err(bad(
                "retry.max_attempts",
                "is no longer used: transient failures are retried until the mail is retry.max_age_secs old (default 86400); remove the key",
            ));
        }
        if self.consumer.partition_buffer == 0 {
            return Err(bad("consumer.partition_buffer", "must be at least 1"));
        }
        if self.retry.initial_backoff_ms == 0
            || self.retry.max_backoff_ms < self.retry.initial_backoff_ms
        {
            return Err(bad(
                "retry.max_backoff_ms",
                "backoffs must be positive and max_backoff_ms >= initial_backoff_ms",
            ));
        }
        if self.dead_letters.window_secs == 0 {
            return Err(bad("dead_letters.window_secs", "must be greater than 0"));
        }
        if self.dedup.claim_timeout_secs == 0 {
            return Err(bad("dedup.claim_timeout_secs", "must be greater than 0"));
        }
        if self.order.recheck_ms == 0 {
            return Err(bad("order.recheck_ms", "must be greater than 0"));
        }
        Ok(())
    }

    pub fn order_policy(&self) -> crate::service::OrderPolicy {
        crate::service::OrderPolicy {
            max_wait: Duration::from_secs(self.order.max_wait_secs),
            recheck: Duration::from_millis(self.order.recheck_ms),
        }
    }

    pub fn retry_policy(&self) -> crate::service::RetryPolicy {
        crate::service::RetryPolicy {
            initial_backoff: Duration::from_millis(self.retry.initial_backoff_ms),
            max_backoff: Duration::from_millis(self.retry.max_backoff_ms),
            max_age: Duration::from_secs(self.retry.max_age_secs),
        }
    }
}

impl ServiceConfig for Settings {
    const SERVICE: &'static str = SERVICE;
    const DEFAULTS: &'static str = DEFAULTS;
    const LIST_KEYS: &'static [&'static str] = &[];

    fn check(&self) -> Result<(), ConfigLoadError> {
        self.validate()
    }

    /// What `check-config` prints: the listener, probes, topics, unknown keys.
    fn config_report(&self, unknown: Vec<UnknownKey>) -> ConfigReport {
        ConfigReport::new(SERVICE, unknown, "http.addr")
            .listener("http.addr", &self.http.addr)
            .topics(
                medbook_shared::events::EVENT_TOPICS
                    .iter()
                    .chain([&medbook_shared::events::TOPIC_DLQ])
                    .map(|t| self.kafka.topic(t)),
            )
    }

    fn probe_listener(&self) -> &str {
        &self.http.addr
    }

    fn log_level(&self) -> &str {
        &self.log.level
    }

    fn tracing(&self) -> &medbook_shared::telemetry::TracingSettings {
        &self.tracing
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    fn load(env: &[(&str, &str)]) -> Result<Settings, ConfigLoadError> {
        Settings::load_from(&ConfigSources {
            file: None,
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        })
    }

    #[test]
    fn defaults_are_valid_and_env_wins() {
        let s = load(&[]).unwrap();
        assert_eq!(s.smtp.port, 1025);
        // Mail waits out an outage for a day, as an MTA queues it.
        assert_eq!(s.retry_policy().max_age, Duration::from_secs(86_400));
        let s = load(&[
            ("MEDBOOK_SMTP__HOST", "mail.example.com"),
            ("MEDBOOK_SMTP__PORT", "587"),
            ("MEDBOOK_SMTP__TLS", "starttls"),
            ("MEDBOOK_SMTP__USERNAME", "medbook"),
            ("MEDBOOK_SMTP__PASSWORD", "s3cret"),
            ("MEDBOOK_KAFKA__BROKERS", "k:9092"),
        ])
        .unwrap();
        assert_eq!(s.smtp.host, "mail.example.com");
        assert_eq!(s.smtp.tls, SmtpTls::Starttls);
        assert_eq!(s.smtp.password.unwrap().expose_secret(), "s3cret");
    }

    #[test]
    fn bad_values_name_their_key() {
        for (key, value, named) in [
            ("MEDBOOK_SMTP__PORT", "0", "smtp.port"),
            ("MEDBOOK_SMTP__PORT", "smtp", "smtp.port"),
            ("MEDBOOK_SMTP__TLS", "ssl3", "smtp.tls"),
            ("MEDBOOK_EMAIL__FROM", "not a mailbox", "email.from"),
            ("MEDBOOK_RETRY__MAX_AGE_SECS", "0", "retry.max_age_secs"),
            ("MEDBOOK_RETRY__MAX_ATTEMPTS", "6", "retry.max_attempts"),
            ("MEDBOOK_SMTP__MAX_CONNECTIONS", "0", "smtp.max_connections"),
            (
                "MEDBOOK_CONSUMER__PARTITION_BUFFER",
                "0",
                "consumer.partition_buffer",
            ),
            ("MEDBOOK_KAFKA__BROKERS", "nohost", "kafka.brokers"),
            ("MEDBOOK_SMTP__PASSWORD", "x", "smtp.username"),
            (
                "MEDBOOK_CONSUMER__SESSION_TIMEOUT_MS",
                "10",
                "consumer.session_timeout_ms",
            ),
        ] {
            let err = load(&[(key, value)]).unwrap_err().to_string();
            assert!(err.contains(named), "{key}={value}: {err}");
        }
    }

    #[test]
    fn the_shipped_config_file_is_valid() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../config/notification-service.yml");
        Settings::load_from(&ConfigSources {
            file: Some((path, true)),
            env: vec![],
        })
        .unwrap();
    }
}
