//! booking-service configuration: built-in defaults < `config/booking-service.yml`
//! (or `$MEDBOOK_CONFIG`) < `MEDBOOK_…` environment variables. Every value is checked
//! at start-up; an invalid one fails with a message naming its key.

use medbook_service_kit::probe::{ConfigReport, ServiceConfig};
use medbook_service_kit::settings::check_listen_addr;
pub use medbook_service_kit::settings::{DatabaseSettings, LogSettings};
use medbook_shared::config_loader::{ConfigLoadError, ConfigSources, UnknownKey};
use medbook_shared::kafka::KafkaSettings;
use medbook_shared::telemetry::TracingSettings;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use std::time::Duration;

pub const SERVICE: &str = "booking-service";

/// Used only when `profile: dev` and no secret is configured. Never valid in production.
const DEV_JWT_SECRET: &str = "medbook-dev-profile-insecure-jwt-secret-do-not-use";
const MIN_JWT_SECRET_BYTES: usize = 32;

/// Keys whose environment value is a comma separated list.
const LIST_KEYS: &[&str] = &[
    "http.cors_origins",
    "http.trusted_proxies",
    "reminders.offsets",
];

const DEFAULTS: &str = r#"
profile: production
log:
  level: info
http:
  addr: "127.0.0.1:8080"
  ops_addr: "127.0.0.1:9464"
  workers: 0
  request_timeout_ms: 30000
  shutdown_grace_secs: 30
  max_body_bytes: 65536
  cors_origins: []
  trusted_proxies: []
database:
  url: "postgres://postgres@127.0.0.1:5432/medbook"
  pool_size: 10
  connect_timeout_ms: 5000
  statement_timeout_ms: 10000
  run_migrations: true
  startup_retry_secs: 30
redis:
  url: "redis://127.0.0.1:6379"
cache:
  backend: memory
  ttl_secs: 300
  memory_capacity: 10000
  redis_timeout_ms: 200
kafka:
  brokers: "127.0.0.1:9092"
  topic_prefix: ""
  properties: {}
outbox:
  relay_enabled: true
  batch_size: 200
  poll_interval_ms: 250
  lease_ms: 60000
  message_timeout_ms: 30000
  backoff_initial_ms: 200
  backoff_max_ms: 30000
  retention_hours: 168
  prune_interval_secs: 600
audit:
  addr: "http://127.0.0.1:50052"
  relay_enabled: true
  timeout_ms: 5000
  batch_size: 200
grpc:
  enabled: true
  addr: "127.0.0.1:50051"
  watcher_buffer: 64
  watch_recheck_secs: 10
reminders:
  offsets: ["24h", "2h"]
  scheduler_enabled: true
  poll_interval_ms: 1000
  batch_size: 100
booking:
  min_notice_minutes: 60
  horizon_days: 90
  max_active_per_patient: 10
  change_deadline_minutes: 0
  manage_url: "http://127.0.0.1:8080/manage"
  calendar_url: "http://127.0.0.1:8080/calendar"
  calendar_organizer: "no-reply@medbook.local"
waitlist:
  offer_url: "http://127.0.0.1:8080/waitlist/offer"
  hold_minutes: 15
  matcher_enabled: true
  poll_interval_ms: 1000
  batch_size: 20
auth:
  jwt_issuer: medbook
  jwt_audience: medbook-api
  access_token_ttl_secs: 900
  refresh_token_ttl_secs: 2592000
  session_max_secs: 7776000
  bcrypt_cost: 12
  max_concurrent_hashes: 0
  hash_wait_ms: 1000
  login:
    max_failures_per_account_and_client: 5
    max_failures_per_account: 20
    max_failures_per_client: 50
    known_client_days: 30
    window_secs: 900
    lockout_secs: 900
accounts:
  verify_email_url: "http://127.0.0.1:8080/account/verify-email"
  reset_password_url: "http://127.0.0.1:8080/account/reset-password"
  verification_ttl_secs: 86400
  reset_ttl_secs: 1800
  response_floor_ms: 400
  emails_per_address: 3
  requests_per_client: 20
  rate_window_secs: 3600
"#;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Profile {
    /// Local development: allows the built-in insecure JWT secret.
    Dev,
    Production,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Settings {
    pub profile: Profile,
    pub log: LogSettings,
    /// Defaults: `TracingSettings::default()` (no export).
    #[serde(default)]
    pub tracing: TracingSettings,
    pub http: HttpSettings,
    pub database: DatabaseSettings,
    pub auth: AuthSettings,
    pub redis: RedisSettings,
    pub cache: CacheSettings,
    pub booking: BookingSettings,
    pub kafka: KafkaSettings,
    pub outbox: OutboxSettings,
    pub audit: AuditSettings,
    pub grpc: GrpcSettings,
    pub reminders: ReminderSettings,
    pub accounts: AccountSettings,
    pub waitlist: WaitlistSettings,
}

/// The waitlist: how long a freed slot is held for the patient it is offered to, and
/// the matcher that makes the offers (every replica runs one; they share the work
/// through row locks).
#[derive(Debug, Clone, Deserialize)]
pub struct WaitlistSettings {
    /// The page an offer's link opens, `?token=…` appended.
    pub offer_url: String,
    pub hold_minutes: i64,
    pub matcher_enabled: bool,
    pub poll_interval_ms: u64,
    /// Offers made or expired per matcher transaction.
    pub batch_size: i64,
}

/// E-mail verification and password reset (see `service::accounts`).
#[derive(Debug, Clone, Deserialize)]
pub struct AccountSettings {
    /// The page a verification link opens, `?token=…` appended. By default the
    /// service's own minimal page; point it at the web front end once there is one.
    pub verify_email_url: String,
    /// The page a reset link opens.
    pub reset_password_url: String,
    pub verification_ttl_secs: u64,
    pub reset_ttl_secs: u64,
    /// Registration and reset requests answer no sooner than this, whether or not
    /// the address has an account; keep it above the slowest of them (one bcrypt
    /// hash at `auth.bcrypt_cost` plus a transaction).
    pub response_floor_ms: u64,
    /// Account e-mails (verification, reset, notices) per address or account per
    /// `rate_window_secs`.
    pub emails_per_address: u32,
    /// Registration and reset requests per client address per `rate_window_secs`.
    pub requests_per_client: u32,
    pub rate_window_secs: u64,
}

/// Appointment reminders (see `domain::reminders` and `service::reminders`).
#[derive(Debug, Clone, Deserialize)]
pub struct ReminderSettings {
    /// How long before the start each reminder goes out: `24h`, `2h`, `30m`, `90s`
    /// (exact) or `1d` (the same local time days before). Empty: no reminders. In the
    /// environment, comma separated: `MEDBOOK_REMINDERS__OFFSETS=24h,2h`.
    pub offsets: Vec<String>,
    /// Run the scheduler in this process (every replica may: rows are claimed with
    /// SKIP LOCKED). Reminder rows are written with bookings either way.
    pub scheduler_enabled: bool,
    pub poll_interval_ms: u64,
    pub batch_size: i64,
}

/// The audit-service this service ships its audit records to (the outbox's audit sink)
/// and reads them from (`GET /api/v1/audit`).
#[derive(Debug, Clone, Deserialize)]
pub struct AuditSettings {
    /// The audit-service's gRPC endpoint, e.g. `http://127.0.0.1:50052`.
    pub addr: String,
    /// The writer's credential, sent with Append by the audit relay (and with the
    /// readiness check's GetCheckpoint): the audit-service's `audit.append_token`.
    #[serde(default)]
    pub append_token: Option<SecretString>,
    /// The reader's credential, sent with Query by `GET /api/v1/audit`: the
    /// audit-service's `audit.read_token`. Must differ from `append_token`.
    #[serde(default)]
    pub read_token: Option<SecretString>,
    /// Run the audit relay in this process. Records are written to the outbox either way.
    pub relay_enabled: bool,
    /// Bound on each call to the audit-service; a slower one counts as down.
    pub timeout_ms: u64,
    /// Records per Append call (the audit-service accepts up to 500).
    pub batch_size: i64,
}

impl AuditSettings {
    /// The append token, an empty one counting as none.
    pub fn append_token(&self) -> Option<&SecretString> {
        self.append_token
            .as_ref()
            .filter(|t| !t.expose_secret().is_empty())
    }

    /// The read token, an empty one counting as none.
    pub fn read_token(&self) -> Option<&SecretString> {
        self.read_token
            .as_ref()
            .filter(|t| !t.expose_secret().is_empty())
    }

    /// The tokens: each a plain header value, and not the same one for both kinds of
    /// call (the audit-service refuses that too). In production both are required (the
    /// append token only where this process runs the relay): the audit-service refuses
    /// every call without them, so a missing one is named at start-up rather than found
    /// in a growing outbox.
    fn check_tokens(&self, profile: Profile) -> Result<(), ConfigLoadError> {
        for (key, token) in [
            ("audit.append_token", self.append_token()),
            ("audit.read_token", self.read_token()),
        ] {
            if let Some(t) = token.map(ExposeSecret::expose_secret) {
                if t != t.trim() || !t.bytes().all(|b| b.is_ascii_graphic()) {
                    return Err(ConfigLoadError::invalid(
                        key,
                        "must be printable ASCII without spaces (it is sent as an HTTP header)",
                    ));
                }
            }
        }
        if let (Some(a), Some(r)) = (self.append_token(), self.read_token()) {
            if a.expose_secret() == r.expose_secret() {
                return Err(ConfigLoadError::invalid(
                    "audit.read_token",
                    "must differ from audit.append_token (the audit-service's two credentials)",
                ));
            }
        }
        if profile == Profile::Production {
            if self.relay_enabled && self.append_token().is_none() {
                return Err(ConfigLoadError::invalid(
                    "audit.append_token",
                    "is required in production (set MEDBOOK_AUDIT__APPEND_TOKEN to the audit-service's append token)",
                ));
            }
            if self.read_token().is_none() {
                return Err(ConfigLoadError::invalid(
                    "audit.read_token",
                    "is required in production (set MEDBOOK_AUDIT__READ_TOKEN to the audit-service's read token)",
                ));
            }
        }
        Ok(())
    }
}

/// The internal gRPC ScheduleService.
#[derive(Debug, Clone, Deserialize)]
pub struct GrpcSettings {
    pub enabled: bool,
    pub addr: String,
    /// Changes buffered per day watcher; one that falls further behind is resynced.
    pub watcher_buffer: usize,
    /// How often a day watcher's access is checked again while it watches: its token
    /// (logged out, password reset) and its right to the day in the database (admin
    /// demoted, doctor unlinked). The stream also ends when its token expires.
    pub watch_recheck_secs: u64,
}

/// The transactional outbox's relay (see `service::outbox`).
#[derive(Debug, Clone, Deserialize)]
pub struct OutboxSettings {
    /// Run the relay in this process. Events are written to the outbox either way.
    pub relay_enabled: bool,
    pub batch_size: i64,
    /// How often to look for events written by other replicas.
    pub poll_interval_ms: u64,
    /// How long a claim keeps other replicas off a batch; must exceed
    /// `message_timeout_ms`.
    pub lease_ms: u64,
    /// librdkafka's `message.timeout.ms`: how long one delivery may take before the
    /// relay counts it failed and retries from the outbox.
    pub message_timeout_ms: u64,
    pub backoff_initial_ms: u64,
    pub backoff_max_ms: u64,
    /// Published events are kept this long, then deleted.
    pub retention_hours: u64,
    pub prune_interval_secs: u64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct RedisSettings {
    /// Used by the Redis cache backend and for logged-out access tokens.
    pub url: SecretString,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CacheBackend {
    /// In-process, bounded by `cache.memory_capacity` entries.
    Memory,
    /// Shared by all replicas; every key has `cache.ttl_secs`.
    Redis,
}

#[derive(Debug, Clone, Deserialize)]
pub struct CacheSettings {
    pub backend: CacheBackend,
    pub ttl_secs: u64,
    pub memory_capacity: u64,
    /// Bound on each Redis operation; a slower Redis counts as down.
    pub redis_timeout_ms: u64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct BookingSettings {
    /// A slot must start at least this many minutes after the booking.
    pub min_notice_minutes: i64,
    /// …and at most this many days ahead.
    pub horizon_days: i64,
    /// Upcoming active appointments a patient may hold.
    pub max_active_per_patient: i64,
    /// A patient may cancel or reschedule up to this many minutes before the visit
    /// (0: until it starts). Clinics and doctors may set their own.
    pub change_deadline_minutes: i64,
    /// The page an appointment's manage link opens, `?token=…` appended.
    pub manage_url: String,
    /// Where calendar feeds are served, `/<token>.ics` appended.
    pub calendar_url: String,
    /// The feeds' ORGANIZER: the address the notification-service sends from, so the
    /// feed's events and the e-mails' attachments are the same events.
    pub calendar_organizer: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RevocationFailure {
    /// Accept the token (and count it in `auth_revocation_check_failures_total`).
    Allow,
    /// Answer 503.
    Deny,
}

#[derive(Debug, Clone, Deserialize)]
pub struct HttpSettings {
    /// `host:port` of the public API; port 0 picks a free port.
    pub addr: String,
    /// `host:port` of the operators' endpoints (`/metrics`, `/ready`, `/health`):
    /// never expose it to the public. Must differ from `addr`.
    pub ops_addr: String,
    /// Worker threads; 0 means one per core.
    pub workers: usize,
    pub request_timeout_ms: u64,
    pub shutdown_grace_secs: u64,
    pub max_body_bytes: usize,
    pub cors_origins: Vec<String>,
    /// Networks (CIDR) of the proxies in front of the service whose `X-Forwarded-For`
    /// names the client: the rightmost hop outside them is the client. Empty: the
    /// socket peer is the client.
    pub trusted_proxies: Vec<String>,
    /// Serve Swagger UI at `/swagger` on the public listener. Unset: on in the dev
    /// profile, off in production ([`Settings::swagger_ui`]). `/openapi.json` is
    /// served either way.
    #[serde(default)]
    pub swagger_ui: Option<bool>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct AuthSettings {
    /// What to do with a token when the revocation store (Redis) cannot be asked.
    /// Unset: `deny` in production (a logged-out token never works again, even while
    /// Redis is slow; `allow` is refused there), `allow` in the dev profile.
    #[serde(default)]
    pub revocation_check_failure: Option<RevocationFailure>,
    #[serde(default)]
    pub jwt_secret: Option<SecretString>,
    pub jwt_issuer: String,
    pub jwt_audience: String,
    pub access_token_ttl_secs: u64,
    /// A refresh token's lifetime; each refresh issues a new one.
    pub refresh_token_ttl_secs: u64,
    /// A login's absolute lifetime (default 90 days): refreshing never extends it, so
    /// a stolen refresh token cannot be kept alive for ever.
    pub session_max_secs: u64,
    pub bcrypt_cost: u32,
    /// Concurrent bcrypt operations; 0 means the number of cores.
    pub max_concurrent_hashes: usize,
    pub hash_wait_ms: u64,
    pub login: LoginSettings,
}

#[derive(Debug, Clone, Deserialize)]
pub struct LoginSettings {
    /// Failures for one account from one client network (IPv4 address, IPv6 /64)
    /// before that network is locked out of that account.
    pub max_failures_per_account_and_client: u32,
    /// Failures for one account from all networks together before networks the
    /// account has not logged in from (within `known_client_days`) are locked out of it.
    pub max_failures_per_account: u32,
    /// Failures from one client network, whatever the accounts, before it is locked out.
    pub max_failures_per_client: u32,
    /// How long a network the account logged in from stays exempt from the
    /// account-wide lockout.
    pub known_client_days: u64,
    pub window_secs: u64,
    pub lockout_secs: u64,
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
        fn bad(key: &str, message: impl Into<String>) -> ConfigLoadError {
            ConfigLoadError::invalid(key, message)
        }
        self.tracing.validate()?;
        check_listen_addr("http.addr", &self.http.addr)?;
        check_listen_addr("http.ops_addr", &self.http.ops_addr)?;
        if self.grpc.enabled {
            check_listen_addr("grpc.addr", &self.grpc.addr)?;
        }
        if self.grpc.watcher_buffer == 0 {
            return Err(bad("grpc.watcher_buffer", "must be at least 1"));
        }
        if self.grpc.watch_recheck_secs == 0 {
            return Err(bad("grpc.watch_recheck_secs", "must be at least 1"));
        }
        if !(self.audit.addr.starts_with("http://") || self.audit.addr.starts_with("https://")) {
            return Err(bad(
                "audit.addr",
                "must be an http(s) URL of the audit-service",
            ));
        }
        if self.audit.timeout_ms == 0 {
            return Err(bad("audit.timeout_ms", "must be greater than 0"));
        }
        if !(1..=500).contains(&self.audit.batch_size) {
            return Err(bad("audit.batch_size", "must be between 1 and 500"));
        }
        self.audit.check_tokens(self.profile)?;
        if self.http.ops_addr == self.http.addr && !self.http.addr.ends_with(":0") {
            return Err(bad(
                "http.ops_addr",
                "must differ from http.addr: operators' endpoints are not served to the public",
            ));
        }
        let a = &self.accounts;
        for (key, url) in [
            ("accounts.verify_email_url", &a.verify_email_url),
            ("accounts.reset_password_url", &a.reset_password_url),
            ("booking.manage_url", &self.booking.manage_url),
            ("booking.calendar_url", &self.booking.calendar_url),
            ("waitlist.offer_url", &self.waitlist.offer_url),
        ] {
            if !(url.starts_with("http://") || url.starts_with("https://")) || url.contains('#') {
                return Err(bad(key, "must be an http(s) URL without a #fragment"));
            }
        }
        if a.verification_ttl_secs == 0 || a.reset_ttl_secs == 0 {
            return Err(bad(
                "accounts.verification_ttl_secs",
                "link lifetimes (verification_ttl_secs, reset_ttl_secs) must be greater than 0",
            ));
        }
        if a.emails_per_address == 0 || a.requests_per_client == 0 || a.rate_window_secs == 0 {
            return Err(bad(
                "accounts.emails_per_address",
                "limits (emails_per_address, requests_per_client, rate_window_secs) must be at least 1",
            ));
        }
        if let Err(e) =
            crate::transport::http::client_ip::TrustedProxies::parse(&self.http.trusted_proxies)
        {
            return Err(bad("http.trusted_proxies", e));
        }
        if self.http.request_timeout_ms == 0 {
            return Err(bad("http.request_timeout_ms", "must be greater than 0"));
        }
        if self.http.max_body_bytes < 1024 {
            return Err(bad("http.max_body_bytes", "must be at least 1024"));
        }
        self.database.validate(1)?;
        if !(4..=31).contains(&self.auth.bcrypt_cost) {
            return Err(bad("auth.bcrypt_cost", "must be between 4 and 31"));
        }
        if self.profile == Profile::Production && self.auth.bcrypt_cost < 10 {
            return Err(bad(
                "auth.bcrypt_cost",
                "must be at least 10 outside the dev profile",
            ));
        }
        if self.auth.access_token_ttl_secs == 0 || self.auth.refresh_token_ttl_secs == 0 {
            return Err(bad(
                "auth.access_token_ttl_secs",
                "token lifetimes must be greater than 0",
            ));
        }
        if self.profile == Profile::Production
            && self.auth.revocation_check_failure == Some(RevocationFailure::Allow)
        {
            return Err(bad(
                "auth.revocation_check_failure",
                "must be deny in production: a logged-out or reset session must not work again while Redis cannot be asked",
            ));
        }
        if self.auth.session_max_secs < self.auth.refresh_token_ttl_secs {
            return Err(bad(
                "auth.session_max_secs",
                "must not be less than auth.refresh_token_ttl_secs",
            ));
        }
        if self.auth.login.max_failures_per_account_and_client == 0 {
            return Err(bad(
                "auth.login.max_failures_per_account_and_client",
                "must be at least 1",
            ));
        }
        if self.auth.login.known_client_days == 0 {
            return Err(bad("auth.login.known_client_days", "must be at least 1"));
        }
        if self.auth.login.max_failures_per_account == 0 {
            return Err(bad(
                "auth.login.max_failures_per_account",
                "must be at least 1",
            ));
        }
        if self.auth.login.max_failures_per_client == 0 {
            return Err(bad(
                "auth.login.max_failures_per_client",
                "must be at least 1",
            ));
        }
        match (&self.auth.jwt_secret, self.profile) {
            (Some(s), _) if s.expose_secret().len() >= MIN_JWT_SECRET_BYTES => {}
            (Some(_), _) => {
                return Err(bad(
                    "auth.jwt_secret",
                    format!("must be at least {MIN_JWT_SECRET_BYTES} bytes"),
                ))
            }
            (None, Profile::Dev) => {}
            (None, Profile::Production) => {
                return Err(bad(
                    "auth.jwt_secret",
                    "is required (set MEDBOOK_AUTH__JWT_SECRET; only the dev profile has a built-in one)",
                ))
            }
        }
        if self.cache.ttl_secs == 0 {
            return Err(bad("cache.ttl_secs", "must be greater than 0"));
        }
        if self.cache.memory_capacity == 0 {
            return Err(bad("cache.memory_capacity", "must be at least 1"));
        }
        if self.cache.redis_timeout_ms == 0 {
            return Err(bad("cache.redis_timeout_ms", "must be greater than 0"));
        }
        if !self.redis.url.expose_secret().starts_with("redis://")
            && !self.redis.url.expose_secret().starts_with("rediss://")
        {
            return Err(bad("redis.url", "must start with redis:// or rediss://"));
        }
        if self.booking.min_notice_minutes < 0 {
            return Err(bad("booking.min_notice_minutes", "must not be negative"));
        }
        if self.booking.horizon_days < 1 {
            return Err(bad("booking.horizon_days", "must be at least 1"));
        }
        if self.booking.max_active_per_patient < 1 {
            return Err(bad("booking.max_active_per_patient", "must be at least 1"));
        }
        if self.booking.change_deadline_minutes < 0 {
            return Err(bad(
                "booking.change_deadline_minutes",
                "must not be negative",
            ));
        }
        if self.waitlist.hold_minutes < 1 {
            return Err(bad("waitlist.hold_minutes", "must be at least 1"));
        }
        if self.waitlist.poll_interval_ms == 0 || self.waitlist.batch_size < 1 {
            return Err(bad(
                "waitlist.poll_interval_ms",
                "poll_interval_ms and batch_size must be at least 1",
            ));
        }
        self.kafka.validate()?;
        let o = &self.outbox;
        if o.batch_size < 1 {
            return Err(bad("outbox.batch_size", "must be at least 1"));
        }
        if o.poll_interval_ms == 0 || o.backoff_initial_ms == 0 || o.prune_interval_secs == 0 {
            return Err(bad(
                "outbox.poll_interval_ms",
                "intervals (poll_interval_ms, backoff_initial_ms, prune_interval_secs) must be greater than 0",
            ));
        }
        if o.backoff_max_ms < o.backoff_initial_ms {
            return Err(bad(
                "outbox.backoff_max_ms",
                "must not be less than outbox.backoff_initial_ms",
            ));
        }
        if o.message_timeout_ms == 0 {
            return Err(bad("outbox.message_timeout_ms", "must be greater than 0"));
        }
        if o.lease_ms <= o.message_timeout_ms {
            return Err(bad(
                "outbox.lease_ms",
                "must be greater than outbox.message_timeout_ms, or two replicas could publish one event at once",
            ));
        }
        if let Err(e) = crate::domain::reminders::ReminderPlan::parse(&self.reminders.offsets) {
            return Err(bad("reminders.offsets", e));
        }
        if self.reminders.poll_interval_ms == 0 {
            return Err(bad("reminders.poll_interval_ms", "must be greater than 0"));
        }
        if self.reminders.batch_size < 1 {
            return Err(bad("reminders.batch_size", "must be at least 1"));
        }
        for origin in &self.http.cors_origins {
            if !(origin.starts_with("http://") || origin.starts_with("https://")) {
                return Err(bad(
                    "http.cors_origins",
                    format!("`{origin}` is not an http(s) origin"),
                ));
            }
        }
        Ok(())
    }

    /// The JWT signing secret (the dev fallback only exists in the dev profile).
    pub fn jwt_secret(&self) -> SecretString {
        self.auth
            .jwt_secret
            .clone()
            .unwrap_or_else(|| SecretString::from(DEV_JWT_SECRET))
    }

    pub fn hash_permits(&self) -> usize {
        if self.auth.max_concurrent_hashes > 0 {
            self.auth.max_concurrent_hashes
        } else {
            std::thread::available_parallelism().map_or(2, |n| n.get())
        }
    }

    pub fn matcher_config(&self) -> crate::service::waitlist::MatcherConfig {
        let w = &self.waitlist;
        crate::service::waitlist::MatcherConfig {
            rules: crate::service::waitlist::OfferRules {
                hold: chrono::Duration::minutes(w.hold_minutes),
                offer_url: w.offer_url.clone(),
                defaults: self.booking_policy(),
            },
            batch_size: w.batch_size,
            poll_interval: Duration::from_millis(w.poll_interval_ms),
            backoff_max: Duration::from_secs(30),
        }
    }

    /// Appointments' manage links, keyed by the signing secret.
    pub fn manage_links(&self) -> crate::domain::links::ManageLinks {
        crate::domain::links::ManageLinks::new(
            self.jwt_secret().expose_secret().as_bytes(),
            &self.booking.manage_url,
        )
    }

    pub fn booking_policy(&self) -> crate::domain::booking::BookingPolicy {
        crate::domain::booking::BookingPolicy {
            min_notice: chrono::Duration::minutes(self.booking.min_notice_minutes),
            horizon: chrono::Duration::days(self.booking.horizon_days),
            max_active_per_patient: self.booking.max_active_per_patient,
            change_deadline: chrono::Duration::minutes(self.booking.change_deadline_minutes),
            no_show_limit: None,
            no_show_window: chrono::Duration::days(
                crate::domain::booking::DEFAULT_NO_SHOW_WINDOW_DAYS,
            ),
            no_show_email: false,
        }
    }

    pub fn relay_config(
        &self,
        sink: crate::service::outbox::Sink,
    ) -> crate::service::outbox::RelayConfig {
        let o = &self.outbox;
        crate::service::outbox::RelayConfig {
            sink,
            batch_size: match sink {
                crate::service::outbox::Sink::Kafka => o.batch_size,
                crate::service::outbox::Sink::Audit => self.audit.batch_size,
            },
            lease: Duration::from_millis(o.lease_ms),
            poll_interval: Duration::from_millis(o.poll_interval_ms),
            backoff_initial: Duration::from_millis(o.backoff_initial_ms),
            backoff_max: Duration::from_millis(o.backoff_max_ms),
            retention: Duration::from_secs(o.retention_hours * 3600),
            prune_interval: Duration::from_secs(o.prune_interval_secs),
            stats_interval: Duration::from_secs(1),
        }
    }

    pub fn account_config(&self) -> crate::service::accounts::AccountConfig {
        let a = &self.accounts;
        let policy = |max_failures| crate::service::ports::ThrottlePolicy {
            max_failures,
            window: Duration::from_secs(a.rate_window_secs),
            lockout: Duration::from_secs(a.rate_window_secs),
        };
        crate::service::accounts::AccountConfig {
            verify_url: a.verify_email_url.clone(),
            reset_url: a.reset_password_url.clone(),
            verification_ttl: Duration::from_secs(a.verification_ttl_secs),
            reset_ttl: Duration::from_secs(a.reset_ttl_secs),
            response_floor: Duration::from_millis(a.response_floor_ms),
            per_address: policy(a.emails_per_address),
            per_client: policy(a.requests_per_client),
        }
    }

    /// The reminder offsets (validated at load).
    pub fn reminder_plan(&self) -> crate::domain::reminders::ReminderPlan {
        crate::domain::reminders::ReminderPlan::parse(&self.reminders.offsets).unwrap_or_default()
    }

    pub fn scheduler_config(&self) -> crate::service::reminders::SchedulerConfig {
        crate::service::reminders::SchedulerConfig {
            batch_size: self.reminders.batch_size,
            poll_interval: Duration::from_millis(self.reminders.poll_interval_ms),
            backoff_max: Duration::from_millis(self.outbox.backoff_max_ms),
            stats_interval: Duration::from_secs(5),
        }
    }

    /// What a token check does when the revocation store cannot be asked
    /// (`auth.revocation_check_failure`; fails closed in production).
    pub fn revocation_failure(&self) -> RevocationFailure {
        self.auth
            .revocation_check_failure
            .unwrap_or(match self.profile {
                Profile::Production => RevocationFailure::Deny,
                Profile::Dev => RevocationFailure::Allow,
            })
    }

    /// `http.trusted_proxies`, parsed (validated at load).
    pub fn trusted_proxies(&self) -> crate::transport::http::client_ip::TrustedProxies {
        crate::transport::http::client_ip::TrustedProxies::parse(&self.http.trusted_proxies)
            .unwrap_or_default()
    }

    pub fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.http.request_timeout_ms)
    }

    /// Whether Swagger UI is served: `http.swagger_ui`, by default only in the dev
    /// profile (in production it is one more page on the public port, and a page that
    /// handles tokens).
    pub fn swagger_ui(&self) -> bool {
        self.http.swagger_ui.unwrap_or(self.profile == Profile::Dev)
    }
}

impl ServiceConfig for Settings {
    const SERVICE: &'static str = SERVICE;
    const DEFAULTS: &'static str = DEFAULTS;
    const LIST_KEYS: &'static [&'static str] = LIST_KEYS;

    fn check(&self) -> Result<(), ConfigLoadError> {
        self.validate()
    }

    /// What `check-config` prints: listeners, probes, gRPC services, topics, unknown keys.
    fn config_report(&self, unknown: Vec<UnknownKey>) -> ConfigReport {
        let mut report = ConfigReport::new(SERVICE, unknown, "http.ops_addr")
            .listener("http.addr", &self.http.addr)
            .listener("http.ops_addr", &self.http.ops_addr)
            .topics(
                medbook_shared::events::ALL_TOPICS
                    .iter()
                    .filter(|t| **t != medbook_shared::events::TOPIC_DLQ)
                    .map(|t| self.kafka.topic(t)),
            );
        if self.grpc.enabled {
            report = report
                .listener("grpc.addr", &self.grpc.addr)
                .grpc("grpc.addr", &crate::transport::grpc::SERVED);
        }
        report
    }

    fn probe_listener(&self) -> &str {
        &self.http.ops_addr
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

    /// The environment `env`, with the audit-service's two tokens unless `env` names
    /// either (production requires them; `audit_tokens_…` tests them).
    fn sources(env: &[(&str, &str)]) -> ConfigSources {
        let names_a_token = env.iter().any(|(k, _)| k.starts_with("MEDBOOK_AUDIT__"));
        let tokens = [
            ("MEDBOOK_AUDIT__APPEND_TOKEN", "test-append-token"),
            ("MEDBOOK_AUDIT__READ_TOKEN", "test-read-token"),
        ];
        ConfigSources {
            file: None,
            env: env
                .iter()
                .chain(tokens.iter().filter(|_| !names_a_token))
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    const SECRET: &str = "a-test-secret-that-is-long-enough-32";

    #[test]
    fn production_requires_a_jwt_secret() {
        let err = Settings::load_from(&sources(&[])).unwrap_err().to_string();
        assert!(err.contains("auth.jwt_secret"), "{err}");
        let ok = Settings::load_from(&sources(&[("MEDBOOK_AUTH__JWT_SECRET", SECRET)])).unwrap();
        assert_eq!(ok.profile, Profile::Production);
    }

    #[test]
    fn reminder_offsets_come_from_a_comma_separated_variable_and_are_checked() {
        let s = Settings::load_from(&sources(&[("MEDBOOK_PROFILE", "dev")])).unwrap();
        let labels = |s: &Settings| -> Vec<String> {
            s.reminder_plan()
                .offsets()
                .iter()
                .map(|o| o.label().to_owned())
                .collect()
        };
        assert_eq!(labels(&s), ["24h", "2h"]);
        let s = Settings::load_from(&sources(&[
            ("MEDBOOK_PROFILE", "dev"),
            ("MEDBOOK_REMINDERS__OFFSETS", "1d,30m"),
        ]))
        .unwrap();
        assert_eq!(labels(&s), ["1d", "30m"]);
        for (raw, expected) in [("62m", vec!["62m"]), ("", vec![])] {
            let s = Settings::load_from(&sources(&[
                ("MEDBOOK_PROFILE", "dev"),
                ("MEDBOOK_REMINDERS__OFFSETS", raw),
            ]))
            .unwrap();
            assert_eq!(labels(&s), expected, "{raw:?}");
        }
        for bad in ["2w", "24h,24h", "0h"] {
            let err = Settings::load_from(&sources(&[
                ("MEDBOOK_PROFILE", "dev"),
                ("MEDBOOK_REMINDERS__OFFSETS", bad),
            ]))
            .unwrap_err()
            .to_string();
            assert!(err.contains("reminders.offsets"), "{bad}: {err}");
        }
    }

    #[test]
    fn revocation_checks_fail_closed_in_production() {
        let prod = Settings::load_from(&sources(&[("MEDBOOK_AUTH__JWT_SECRET", SECRET)])).unwrap();
        assert_eq!(prod.revocation_failure(), RevocationFailure::Deny);
        let err = Settings::load_from(&sources(&[
            ("MEDBOOK_AUTH__JWT_SECRET", SECRET),
            ("MEDBOOK_AUTH__REVOCATION_CHECK_FAILURE", "allow"),
        ]))
        .unwrap_err()
        .to_string();
        assert!(err.contains("auth.revocation_check_failure"), "{err}");
        let dev = Settings::load_from(&sources(&[("MEDBOOK_PROFILE", "dev")])).unwrap();
        assert_eq!(dev.revocation_failure(), RevocationFailure::Allow);
        let dev = Settings::load_from(&sources(&[
            ("MEDBOOK_PROFILE", "dev"),
            ("MEDBOOK_AUTH__REVOCATION_CHECK_FAILURE", "deny"),
        ]))
        .unwrap();
        assert_eq!(dev.revocation_failure(), RevocationFailure::Deny);
    }

    #[test]
    fn trusted_proxies_are_networks_and_name_their_key() {
        let s = Settings::load_from(&sources(&[
            ("MEDBOOK_PROFILE", "dev"),
            ("MEDBOOK_HTTP__TRUSTED_PROXIES", "10.0.0.0/8, fd00::/8"),
        ]))
        .unwrap();
        assert!(s.trusted_proxies().trusts("10.1.2.3".parse().unwrap()));
        assert!(!s.trusted_proxies().trusts("203.0.113.1".parse().unwrap()));
        let err = Settings::load_from(&sources(&[
            ("MEDBOOK_PROFILE", "dev"),
            ("MEDBOOK_HTTP__TRUSTED_PROXIES", "10.0.0.0/8,everyone"),
        ]))
        .unwrap_err()
        .to_string();
        assert!(err.contains("http.trusted_proxies"), "{err}");
    }

    #[test]
    fn dev_profile_has_a_fallback_secret() {
        let s = Settings::load_from(&sources(&[("MEDBOOK_PROFILE", "dev")])).unwrap();
        assert_eq!(s.jwt_secret().expose_secret(), DEV_JWT_SECRET);
    }

    #[test]
    fn short_secret_and_bad_addr_name_their_keys() {
        let err = Settings::load_from(&sources(&[("MEDBOOK_AUTH__JWT_SECRET", "short")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("auth.jwt_secret"), "{err}");
        let err = Settings::load_from(&sources(&[
            ("MEDBOOK_AUTH__JWT_SECRET", SECRET),
            ("MEDBOOK_HTTP__ADDR", "localhost"),
        ]))
        .unwrap_err()
        .to_string();
        assert!(err.contains("http.addr"), "{err}");
        let err = Settings::load_from(&sources(&[
            ("MEDBOOK_AUTH__JWT_SECRET", SECRET),
            ("MEDBOOK_DATABASE__POOL_SIZE", "lots"),
        ]))
        .unwrap_err()
        .to_string();
        assert!(err.contains("database.pool_size"), "{err}");
    }

    #[test]
    fn documented_keys_are_accepted_from_env() {
        let s = Settings::load_from(&sources(&[
            ("MEDBOOK_AUTH__JWT_SECRET", SECRET),
            ("MEDBOOK_DATABASE__URL", "postgres://u@db:5432/x"),
            ("MEDBOOK_HTTP__ADDR", "0.0.0.0:9000"),
            (
                "MEDBOOK_HTTP__CORS_ORIGINS",
                "https://a.example,https://b.example",
            ),
            // Keys of later features must not be rejected.
            ("MEDBOOK_REDIS__URL", "redis://127.0.0.1:6379"),
            ("MEDBOOK_KAFKA__BROKERS", "127.0.0.1:9092"),
        ]))
        .unwrap();
        assert_eq!(s.http.addr, "0.0.0.0:9000");
        assert_eq!(s.database.url.expose_secret(), "postgres://u@db:5432/x");
        assert_eq!(s.http.cors_origins.len(), 2);
        assert_eq!(s.kafka.brokers, "127.0.0.1:9092");
    }

    #[test]
    fn audit_tokens_are_separate_and_checked() {
        let load = |env: &[(&str, &str)]| {
            let mut env = env.to_vec();
            env.push(("MEDBOOK_AUTH__JWT_SECRET", SECRET));
            Settings::load_from(&sources(&env))
        };
        let s = load(&[
            ("MEDBOOK_AUDIT__APPEND_TOKEN", "append-t0ken"),
            ("MEDBOOK_AUDIT__READ_TOKEN", "read-t0ken"),
        ])
        .unwrap();
        assert_eq!(
            s.audit.append_token().unwrap().expose_secret(),
            "append-t0ken"
        );
        assert_eq!(s.audit.read_token().unwrap().expose_secret(), "read-t0ken");
        assert!(!format!("{s:?}").contains("t0ken"));
        let s = load(&[
            ("MEDBOOK_PROFILE", "dev"),
            ("MEDBOOK_AUDIT__READ_TOKEN", ""),
        ])
        .unwrap();
        assert!(s.audit.read_token().is_none() && s.audit.append_token().is_none());
        // Production names the missing one; without the relay only the read token.
        let err = load(&[("MEDBOOK_AUDIT__READ_TOKEN", "read-t0ken")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("audit.append_token"), "{err}");
        let s = load(&[
            ("MEDBOOK_AUDIT__RELAY_ENABLED", "false"),
            ("MEDBOOK_AUDIT__READ_TOKEN", "read-t0ken"),
        ])
        .unwrap();
        assert!(s.audit.append_token().is_none());
        let err = load(&[("MEDBOOK_AUDIT__APPEND_TOKEN", "append-t0ken")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("audit.read_token"), "{err}");
        for (env, named) in [
            (
                vec![
                    ("MEDBOOK_AUDIT__APPEND_TOKEN", "same-t0ken"),
                    ("MEDBOOK_AUDIT__READ_TOKEN", "same-t0ken"),
                ],
                "audit.read_token",
            ),
            (
                vec![("MEDBOOK_AUDIT__APPEND_TOKEN", "bad t0ken")],
                "audit.append_token",
            ),
        ] {
            let err = load(&env).unwrap_err().to_string();
            assert!(err.contains(named), "{err}");
            assert!(!err.contains("t0ken"), "{err}");
        }
    }

    #[test]
    fn kafka_and_outbox_keys_are_checked() {
        for (key, value, named) in [
            ("MEDBOOK_KAFKA__BROKERS", "kafka", "kafka.brokers"),
            ("MEDBOOK_KAFKA__BROKERS", "a:1,b", "kafka.brokers"),
            ("MEDBOOK_KAFKA__TOPIC_PREFIX", "a b", "kafka.topic_prefix"),
            ("MEDBOOK_OUTBOX__LEASE_MS", "1000", "outbox.lease_ms"),
            ("MEDBOOK_OUTBOX__BATCH_SIZE", "0", "outbox.batch_size"),
        ] {
            let err = Settings::load_from(&sources(&[
                ("MEDBOOK_AUTH__JWT_SECRET", SECRET),
                (key, value),
            ]))
            .unwrap_err()
            .to_string();
            assert!(err.contains(named), "{key}={value}: {err}");
        }
        let s = Settings::load_from(&sources(&[
            ("MEDBOOK_AUTH__JWT_SECRET", SECRET),
            ("MEDBOOK_KAFKA__BROKERS", "k1:9092, k2:9093"),
            ("MEDBOOK_KAFKA__PROPERTIES__SECURITY_PROTOCOL", "plaintext"),
        ]))
        .unwrap();
        let config = s.kafka.client_config("t");
        assert_eq!(config.get("security.protocol"), Some("plaintext"));
        assert_eq!(config.get("bootstrap.servers"), Some("k1:9092, k2:9093"));
    }

    #[test]
    fn swagger_ui_is_on_in_dev_and_off_in_production_unless_set() {
        let load = |env: &[(&str, &str)]| {
            let mut env = env.to_vec();
            env.push(("MEDBOOK_AUTH__JWT_SECRET", SECRET));
            Settings::load_from(&sources(&env)).unwrap().swagger_ui()
        };
        assert!(load(&[("MEDBOOK_PROFILE", "dev")]));
        assert!(!load(&[("MEDBOOK_PROFILE", "production")]));
        assert!(!load(&[]), "the built-in profile is production");
        assert!(!load(&[
            ("MEDBOOK_PROFILE", "dev"),
            ("MEDBOOK_HTTP__SWAGGER_UI", "false")
        ]));
        assert!(load(&[
            ("MEDBOOK_PROFILE", "production"),
            ("MEDBOOK_HTTP__SWAGGER_UI", "true")
        ]));
        let shipped =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/booking-service.yml");
        let s = Settings::load_from(&ConfigSources {
            file: Some((shipped, true)),
            env: sources(&[("MEDBOOK_AUTH__JWT_SECRET", SECRET)]).env,
        })
        .unwrap();
        assert!(
            !s.swagger_ui(),
            "the shipped (production) config serves no Swagger UI"
        );
    }

    #[test]
    fn the_shipped_config_file_is_valid() {
        let path =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/booking-service.yml");
        let s = Settings::load_from(&ConfigSources {
            file: Some((path, true)),
            env: sources(&[("MEDBOOK_AUTH__JWT_SECRET", SECRET)]).env,
        })
        .unwrap();
        assert_eq!(s.auth.bcrypt_cost, 12);
    }
}
