//! audit-service configuration: built-in defaults < `config/audit-service.yml` (or
//! `$MEDBOOK_CONFIG`) < `MEDBOOK_…` environment variables, checked at start-up.
//! Secrets (`audit.signing_key`, `audit.append_token`, `audit.read_token`, passwords in
//! `database.url`) belong in the environment; `Debug` never shows them.

use crate::signing::{parse_public_key, SigningKey};
use ed25519_dalek::VerifyingKey;
use medbook_service_kit::probe::{ConfigReport, ServiceConfig};
use medbook_service_kit::settings::check_listen_addr;
pub use medbook_service_kit::settings::{DatabaseSettings, LogSettings};
use medbook_shared::config_loader::{ConfigLoadError, ConfigSources, UnknownKey};
use medbook_shared::telemetry::TracingSettings;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use std::path::{Path, PathBuf};

pub const SERVICE: &str = "audit-service";

/// Appends are at most this many records, whatever the configuration says.
pub const MAX_BATCH_LIMIT: usize = 10_000;

/// `audit.max_future_skew_secs` is at most a day (the bound before it was configurable).
pub const MAX_FUTURE_SKEW_LIMIT_SECS: u64 = 86_400;

/// Keys whose environment value is a comma separated list.
const LIST_KEYS: &[&str] = &["audit.previous_public_keys"];

const DEFAULTS: &str = r#"
profile: production
log:
  level: info
grpc:
  addr: "127.0.0.1:50052"
http:
  ops_addr: "127.0.0.1:8082"
database:
  url: "postgres://postgres@127.0.0.1:5432/medbook_audit"
  pool_size: 8
  connect_timeout_ms: 5000
  statement_timeout_ms: 30000
  run_migrations: true
  startup_retry_secs: 30
audit:
  origin: "medbook-audit"
  signing_key_file: "audit-signing.key"
  previous_public_keys: []
  checkpoint_every: 1000
  checkpoint_interval_secs: 60
  max_batch: 500
  max_future_skew_secs: 300
  verify_state_file: "audit-verify-state.json"
"#;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Profile {
    /// Local development: a missing key file is generated; the tokens are optional.
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
    pub grpc: GrpcSettings,
    pub http: HttpSettings,
    pub database: DatabaseSettings,
    pub audit: AuditSettings,
}

#[derive(Debug, Clone, Deserialize)]
pub struct GrpcSettings {
    /// The AuditService (with health and reflection); port 0 picks a free port.
    pub addr: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct HttpSettings {
    /// `/health`, `/ready` and `/metrics`; port 0 picks a free port.
    pub ops_addr: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct AuditSettings {
    /// Names the log; the first line of every checkpoint's signed text.
    pub origin: String,
    /// The base64 ed25519 seed (`MEDBOOK_AUDIT__SIGNING_KEY`); wins over the file.
    #[serde(default)]
    pub signing_key: Option<SecretString>,
    /// A key file written by `audit-service keygen --out FILE`.
    pub signing_key_file: String,
    /// Base64 public keys of earlier signing keys: their checkpoints still verify.
    pub previous_public_keys: Vec<String>,
    /// A checkpoint after this many new records…
    pub checkpoint_every: u64,
    /// …or this often while the tree grew.
    pub checkpoint_interval_secs: u64,
    /// The most records one Append may carry.
    pub max_batch: usize,
    /// How far ahead of this service's clock an appended record's `occurred_at` may
    /// be (clock skew between writer and service); further is INVALID_ARGUMENT. Late
    /// records are always accepted: a writer ships hours late after an outage.
    pub max_future_skew_secs: u64,
    /// Where `verify` keeps the last checkpoint it verified.
    pub verify_state_file: String,
    /// The writer's credential (`authorization: Bearer <token>`): Append, checkpoints
    /// and proofs; never Query. Set together with `read_token`; required in
    /// production.
    #[serde(default)]
    pub append_token: Option<SecretString>,
    /// The readers' credential: Query, checkpoints and proofs; never Append. Must
    /// differ from `append_token`.
    #[serde(default)]
    pub read_token: Option<SecretString>,
}

fn non_empty(token: Option<&SecretString>) -> Option<&SecretString> {
    token.filter(|t| !t.expose_secret().is_empty())
}

impl AuditSettings {
    /// The append token, an empty one counting as none.
    pub fn append_token(&self) -> Option<&SecretString> {
        non_empty(self.append_token.as_ref())
    }

    /// The read token, an empty one counting as none.
    pub fn read_token(&self) -> Option<&SecretString> {
        non_empty(self.read_token.as_ref())
    }

    pub fn max_future_skew(&self) -> chrono::Duration {
        chrono::Duration::seconds(i64::try_from(self.max_future_skew_secs).unwrap_or(i64::MAX))
    }

    /// The tokens: both or neither, different, each a plain header value; both in
    /// production.
    fn check_tokens(&self, profile: Profile) -> Result<(), ConfigLoadError> {
        const REPLACED: &str = "audit.api_token was replaced by audit.append_token (the writer's) and audit.read_token (the readers')";
        for (key, token) in [
            ("audit.append_token", self.append_token()),
            ("audit.read_token", self.read_token()),
        ] {
            let Some(t) = token else { continue };
            let t = t.expose_secret();
            if t != t.trim() || !t.bytes().all(|b| b.is_ascii_graphic()) {
                return Err(ConfigLoadError::invalid(
                    key,
                    "must be printable ASCII without spaces (it is sent as an HTTP header)",
                ));
            }
        }
        match (self.append_token(), self.read_token(), profile) {
            (Some(a), Some(r), _) if a.expose_secret() == r.expose_secret() => {
                Err(ConfigLoadError::invalid(
                    "audit.read_token",
                    "must differ from audit.append_token: the writer must not be able to read the log, nor a reader append to it",
                ))
            }
            (Some(_), Some(_), _) | (None, None, Profile::Dev) => Ok(()),
            (None, _, Profile::Production) => Err(ConfigLoadError::invalid(
                "audit.append_token",
                format!("is required in production (set MEDBOOK_AUDIT__APPEND_TOKEN for the writer and MEDBOOK_AUDIT__READ_TOKEN for readers; clients send theirs as `authorization: Bearer <token>`; {REPLACED})"),
            )),
            (Some(_), None, _) => Err(ConfigLoadError::invalid(
                "audit.read_token",
                format!("is required with audit.append_token (MEDBOOK_AUDIT__READ_TOKEN): every call needs a credential of its own kind; {REPLACED}"),
            )),
            (None, Some(_), Profile::Dev) => Err(ConfigLoadError::invalid(
                "audit.append_token",
                "is required with audit.read_token (MEDBOOK_AUDIT__APPEND_TOKEN): every call needs a credential of its own kind",
            )),
        }
    }

    fn env_key(&self) -> Option<&SecretString> {
        self.signing_key
            .as_ref()
            .filter(|t| !t.expose_secret().trim().is_empty())
    }

    /// The trusted public keys of earlier signing keys.
    pub fn previous_keys(&self) -> Result<Vec<VerifyingKey>, ConfigLoadError> {
        self.previous_public_keys
            .iter()
            .filter(|k| !k.trim().is_empty())
            .map(|k| {
                parse_public_key(k).map_err(|e| {
                    ConfigLoadError::invalid("audit.previous_public_keys", e.to_string())
                })
            })
            .collect()
    }
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
        check_listen_addr("grpc.addr", &self.grpc.addr)?;
        check_listen_addr("http.ops_addr", &self.http.ops_addr)?;
        self.database.validate(2)?;
        let a = &self.audit;
        if a.origin.trim().is_empty() || a.origin.contains('\n') || a.origin.len() > 200 {
            return Err(bad(
                "audit.origin",
                "must be one non-empty line of at most 200 bytes",
            ));
        }
        if a.checkpoint_every == 0 {
            return Err(bad("audit.checkpoint_every", "must be at least 1"));
        }
        if a.checkpoint_interval_secs == 0 {
            return Err(bad("audit.checkpoint_interval_secs", "must be at least 1"));
        }
        if a.max_batch == 0 || a.max_batch > MAX_BATCH_LIMIT {
            return Err(bad(
                "audit.max_batch",
                format!("must be between 1 and {MAX_BATCH_LIMIT}"),
            ));
        }
        if a.max_future_skew_secs > MAX_FUTURE_SKEW_LIMIT_SECS {
            return Err(bad(
                "audit.max_future_skew_secs",
                format!("must be at most {MAX_FUTURE_SKEW_LIMIT_SECS} (a day)"),
            ));
        }
        a.previous_keys()?;
        if let Some(key) = a.env_key() {
            SigningKey::from_base64(key).map_err(|e| bad("audit.signing_key", e.to_string()))?;
        }
        a.check_tokens(self.profile)
    }

    fn key_file(&self) -> Option<PathBuf> {
        let f = self.audit.signing_key_file.trim();
        (!f.is_empty()).then(|| PathBuf::from(f))
    }

    /// The signing key for serving: from `MEDBOOK_AUDIT__SIGNING_KEY`, else the key
    /// file; in the dev profile a missing key file is created. Production without a
    /// key refuses to start.
    pub fn signing_key_for_serving(&self) -> anyhow::Result<SigningKey> {
        if let Some(key) = self.audit.env_key() {
            return SigningKey::from_base64(key)
                .map_err(|e| anyhow::anyhow!("audit.signing_key: {e}"));
        }
        let Some(path) = self.key_file() else {
            anyhow::bail!(
                "no signing key: set MEDBOOK_AUDIT__SIGNING_KEY or audit.signing_key_file (create one with `audit-service keygen --out FILE`)"
            );
        };
        if path.exists() {
            return SigningKey::read_file(&path);
        }
        if self.profile == Profile::Dev {
            let key = SigningKey::generate();
            key.write_new(&path)?;
            tracing::warn!(
                file = %path.display(),
                key_id = %key.key_id(),
                public_key = %key.public_key_base64(),
                "dev profile: generated a new signing key"
            );
            return Ok(key);
        }
        anyhow::bail!(
            "no signing key: audit.signing_key_file {} does not exist; create one with `audit-service keygen --out {}` or set MEDBOOK_AUDIT__SIGNING_KEY",
            path.display(),
            path.display()
        )
    }

    /// The keys checkpoints are verified against: the current one (if configured and
    /// readable) and the previous ones.
    pub fn trusted_keys(&self) -> anyhow::Result<Vec<VerifyingKey>> {
        let mut keys = self.audit.previous_keys()?;
        let current = match (self.audit.env_key(), self.key_file()) {
            (Some(key), _) => Some(SigningKey::from_base64(key)?),
            (None, Some(path)) if path.exists() => Some(SigningKey::read_file(&path)?),
            _ => None,
        };
        if let Some(key) = current {
            keys.insert(0, key.verifying_key());
        }
        if keys.is_empty() {
            anyhow::bail!(
                "no public key to verify checkpoints with: configure the signing key (MEDBOOK_AUDIT__SIGNING_KEY or audit.signing_key_file) or audit.previous_public_keys"
            );
        }
        Ok(keys)
    }

    pub fn verify_state_file(&self) -> &Path {
        Path::new(&self.audit.verify_state_file)
    }
}

impl ServiceConfig for Settings {
    const SERVICE: &'static str = SERVICE;
    const DEFAULTS: &'static str = DEFAULTS;
    const LIST_KEYS: &'static [&'static str] = LIST_KEYS;

    fn check(&self) -> Result<(), ConfigLoadError> {
        self.validate()
    }

    /// What `check-config` prints: listeners, probes, gRPC services, unknown keys.
    fn config_report(&self, unknown: Vec<UnknownKey>) -> ConfigReport {
        ConfigReport::new(SERVICE, unknown, "http.ops_addr")
            .listener("grpc.addr", &self.grpc.addr)
            .listener("http.ops_addr", &self.http.ops_addr)
            .grpc("grpc.addr", &crate::grpc::SERVED)
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

    fn load(env: &[(&str, &str)]) -> Result<Settings, ConfigLoadError> {
        Settings::load_from(&ConfigSources {
            file: None,
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        })
    }

    const APPEND: (&str, &str) = ("MEDBOOK_AUDIT__APPEND_TOKEN", "app3nd-t0ken");
    const READ: (&str, &str) = ("MEDBOOK_AUDIT__READ_TOKEN", "r3ad-t0ken");

    #[test]
    fn defaults_need_only_the_tokens_and_env_wins() {
        let s = load(&[APPEND, READ]).unwrap();
        assert_eq!(s.audit.max_future_skew(), chrono::Duration::minutes(5));
        assert_eq!(s.grpc.addr, "127.0.0.1:50052");
        assert_eq!(s.http.ops_addr, "127.0.0.1:8082");
        assert_eq!(s.audit.max_batch, 500);
        assert_eq!(s.profile, Profile::Production);
        let key = SigningKey::generate();
        let old = SigningKey::generate();
        let seed = {
            use base64::Engine;
            base64::engine::general_purpose::STANDARD.encode([9u8; 32])
        };
        let s = load(&[
            APPEND,
            READ,
            ("MEDBOOK_AUDIT__SIGNING_KEY", &seed),
            (
                "MEDBOOK_AUDIT__PREVIOUS_PUBLIC_KEYS",
                &format!("{},{}", key.public_key_base64(), old.public_key_base64()),
            ),
            ("MEDBOOK_AUDIT__CHECKPOINT_EVERY", "5"),
            ("MEDBOOK_AUDIT__MAX_FUTURE_SKEW_SECS", "30"),
            ("MEDBOOK_GRPC__ADDR", "0.0.0.0:1"),
        ])
        .unwrap();
        assert_eq!(s.audit.checkpoint_every, 5);
        assert_eq!(s.audit.max_future_skew(), chrono::Duration::seconds(30));
        assert_eq!(s.audit.previous_keys().unwrap().len(), 2);
        assert_eq!(s.trusted_keys().unwrap().len(), 3);
        let debug = format!("{s:?}");
        assert!(!debug.contains(&seed), "{debug}");
        assert!(!debug.contains("t0ken"), "{debug}");
    }

    #[test]
    fn production_needs_both_tokens_and_a_key() {
        for env in [&[][..], &[APPEND][..], &[READ][..]] {
            let err = load(env).unwrap_err().to_string();
            assert!(
                err.contains("audit.append_token") || err.contains("audit.read_token"),
                "{err}"
            );
            assert!(err.contains("required"), "{err}");
            assert!(!err.contains("t0ken"), "{err}");
        }
        // The old single token is named, so a deployment still setting it learns why.
        let err = load(&[]).unwrap_err().to_string();
        assert!(err.contains("audit.api_token was replaced"), "{err}");
        let s = load(&[
            APPEND,
            READ,
            ("MEDBOOK_AUDIT__SIGNING_KEY_FILE", "/nonexistent/audit.key"),
        ])
        .unwrap();
        let err = s.signing_key_for_serving().unwrap_err().to_string();
        assert!(err.contains("keygen"), "{err}");
        assert!(!std::path::Path::new("/nonexistent/audit.key").exists());
    }

    #[test]
    fn the_tokens_come_in_a_pair_and_differ() {
        let dev = ("MEDBOOK_PROFILE", "dev");
        load(&[dev]).unwrap();
        load(&[dev, APPEND, READ]).unwrap();
        let err = load(&[dev, APPEND]).unwrap_err().to_string();
        assert!(err.contains("audit.read_token"), "{err}");
        let err = load(&[dev, READ]).unwrap_err().to_string();
        assert!(err.contains("audit.append_token"), "{err}");
        for profile in ["dev", "production"] {
            let err = load(&[
                ("MEDBOOK_PROFILE", profile),
                APPEND,
                ("MEDBOOK_AUDIT__READ_TOKEN", APPEND.1),
            ])
            .unwrap_err()
            .to_string();
            assert!(err.contains("audit.read_token"), "{err}");
            assert!(err.contains("must differ"), "{err}");
            assert!(!err.contains(APPEND.1), "{err}");
        }
        // Empty counts as unset.
        load(&[
            dev,
            ("MEDBOOK_AUDIT__APPEND_TOKEN", ""),
            ("MEDBOOK_AUDIT__READ_TOKEN", ""),
        ])
        .unwrap();
        let err = load(&[APPEND, ("MEDBOOK_AUDIT__READ_TOKEN", "has space")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("audit.read_token"), "{err}");
        assert!(!err.contains("has space"), "{err}");
    }

    #[test]
    fn dev_generates_a_missing_key_file_once() {
        let dir = std::env::temp_dir().join(format!("audit-dev-{}", uuid::Uuid::new_v4()));
        let file = dir.join("key");
        let s = load(&[
            ("MEDBOOK_PROFILE", "dev"),
            ("MEDBOOK_AUDIT__SIGNING_KEY_FILE", file.to_str().unwrap()),
        ])
        .unwrap();
        let first = s.signing_key_for_serving().unwrap();
        let again = s.signing_key_for_serving().unwrap();
        assert_eq!(first.key_id(), again.key_id());
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn bad_values_name_their_key() {
        for (key, value, named) in [
            ("MEDBOOK_GRPC__ADDR", "nohost", "grpc.addr"),
            ("MEDBOOK_HTTP__OPS_ADDR", "x:99999", "http.ops_addr"),
            (
                "MEDBOOK_AUDIT__CHECKPOINT_EVERY",
                "0",
                "audit.checkpoint_every",
            ),
            (
                "MEDBOOK_AUDIT__CHECKPOINT_INTERVAL_SECS",
                "0",
                "audit.checkpoint_interval_secs",
            ),
            ("MEDBOOK_AUDIT__MAX_BATCH", "0", "audit.max_batch"),
            (
                "MEDBOOK_AUDIT__MAX_FUTURE_SKEW_SECS",
                "86401",
                "audit.max_future_skew_secs",
            ),
            ("MEDBOOK_AUDIT__ORIGIN", " ", "audit.origin"),
            (
                "MEDBOOK_AUDIT__PREVIOUS_PUBLIC_KEYS",
                "notakey",
                "audit.previous_public_keys",
            ),
            (
                "MEDBOOK_AUDIT__SIGNING_KEY",
                "c2hvcnQ=",
                "audit.signing_key",
            ),
            ("MEDBOOK_PROFILE", "staging", "profile"),
        ] {
            let err = load(&[APPEND, READ, (key, value)]).unwrap_err().to_string();
            assert!(err.contains(named), "{key}={value}: {err}");
            assert!(!err.contains("c2hvcnQ="), "{err}");
        }
    }

    #[test]
    fn the_shipped_config_file_is_valid() {
        let path =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/audit-service.yml");
        let s = Settings::load_from(&ConfigSources {
            file: Some((path, true)),
            env: vec![
                (
                    "MEDBOOK_AUDIT__APPEND_TOKEN".into(),
                    "shipped-config-append-token".into(),
                ),
                (
                    "MEDBOOK_AUDIT__READ_TOKEN".into(),
                    "shipped-config-read-token".into(),
                ),
            ],
        })
        .unwrap();
        assert_eq!(s.grpc.addr, "127.0.0.1:50052");
        assert_eq!(s.audit.checkpoint_every, 1000);
    }
}
