//! audit-service configuration: built-in defaults < `config/audit-service.yml` (or
//! `$MEDBOOK_CONFIG`) < `MEDBOOK_…` environment variables, checked at start-up.
//! Secrets (`audit.signing_key`, `audit.api_token`, passwords in `database.url`) belong
//! in the environment; `Debug` never shows them.

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
  verify_state_file: "audit-verify-state.json"
"#;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Profile {
    /// Local development: a missing key file is generated; the API token is optional.
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
    /// Where `verify` keeps the last checkpoint it verified.
    pub verify_state_file: String,
    /// When set, every AuditService call needs `authorization: Bearer <token>`.
    /// Required in production.
    #[serde(default)]
    pub api_token: Option<SecretString>,
}

impl AuditSettings {
    /// The API token, an empty one counting as none.
    pub fn token(&self) -> Option<&SecretString> {
        self.api_token
            .as_ref()
            .filter(|t| !t.expose_secret().is_empty())
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
        a.previous_keys()?;
        if let Some(key) = a.env_key() {
            SigningKey::from_base64(key).map_err(|e| bad("audit.signing_key", e.to_string()))?;
        }
        if self.profile == Profile::Production && a.token().is_none() {
            return Err(bad(
                "audit.api_token",
                "is required in production (set MEDBOOK_AUDIT__API_TOKEN; clients send it as `authorization: Bearer <token>`)",
            ));
        }
        Ok(())
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
            .grpc("grpc.addr", &crate::startup::SERVED)
    }

    fn probe_listener(&self) -> &str {
        &self.http.ops_addr
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

    const TOKEN: (&str, &str) = ("MEDBOOK_AUDIT__API_TOKEN", "t0ken");

    #[test]
    fn defaults_need_only_the_token_and_env_wins() {
        let s = load(&[TOKEN]).unwrap();
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
            TOKEN,
            ("MEDBOOK_AUDIT__SIGNING_KEY", &seed),
            (
                "MEDBOOK_AUDIT__PREVIOUS_PUBLIC_KEYS",
                &format!("{},{}", key.public_key_base64(), old.public_key_base64()),
            ),
            ("MEDBOOK_AUDIT__CHECKPOINT_EVERY", "5"),
            ("MEDBOOK_GRPC__ADDR", "0.0.0.0:1"),
        ])
        .unwrap();
        assert_eq!(s.audit.checkpoint_every, 5);
        assert_eq!(s.audit.previous_keys().unwrap().len(), 2);
        assert_eq!(s.trusted_keys().unwrap().len(), 3);
        let debug = format!("{s:?}");
        assert!(!debug.contains(&seed), "{debug}");
        assert!(!debug.contains("t0ken"), "{debug}");
    }

    #[test]
    fn production_needs_a_token_and_a_key() {
        let err = load(&[]).unwrap_err().to_string();
        assert!(err.contains("audit.api_token"), "{err}");
        let s = load(&[
            TOKEN,
            ("MEDBOOK_AUDIT__SIGNING_KEY_FILE", "/nonexistent/audit.key"),
        ])
        .unwrap();
        let err = s.signing_key_for_serving().unwrap_err().to_string();
        assert!(err.contains("keygen"), "{err}");
        assert!(!std::path::Path::new("/nonexistent/audit.key").exists());
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
            let err = load(&[TOKEN, (key, value)]).unwrap_err().to_string();
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
            env: vec![(
                "MEDBOOK_AUDIT__API_TOKEN".into(),
                "shipped-config-test-token".into(),
            )],
        })
        .unwrap();
        assert_eq!(s.grpc.addr, "127.0.0.1:50052");
        assert_eq!(s.audit.checkpoint_every, 1000);
    }
}
