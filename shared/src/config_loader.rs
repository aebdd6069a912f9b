//! Layered configuration: built-in defaults < YAML file < environment variables.
//!
//! * The file is `$MEDBOOK_CONFIG` if that variable is set (it must then exist), otherwise
//!   `config/<service>.yml` relative to the working directory (optional).
//! * Environment variables use the prefix `MEDBOOK_` and `__` between nested keys, e.g.
//!   `MEDBOOK_DATABASE__URL` sets `database.url`.

use config::{Config, Environment, File, FileFormat};
use serde::de::DeserializeOwned;
use std::path::PathBuf;

/// Environment variable prefix shared by all services.
pub const ENV_PREFIX: &str = "MEDBOOK";

/// Where the configuration comes from; built from the process environment by
/// [`ConfigSources::from_env`] and overridable in tests.
#[derive(Debug, Clone)]
pub struct ConfigSources {
    /// YAML file to read, and whether it must exist.
    pub file: Option<(PathBuf, bool)>,
    /// Environment variables to apply (normally `std::env::vars()`).
    pub env: Vec<(String, String)>,
}

impl ConfigSources {
    /// The sources of a real process: `MEDBOOK_CONFIG` or `config/<service>.yml`, and the
    /// process environment.
    pub fn from_env(service: &str) -> Self {
        let file = match std::env::var("MEDBOOK_CONFIG") {
            Ok(path) if !path.is_empty() => Some((PathBuf::from(path), true)),
            _ => Some((PathBuf::from(format!("config/{service}.yml")), false)),
        };
        Self {
            file,
            env: std::env::vars().collect(),
        }
    }
}

/// Errors while loading configuration. The message always names the offending key or file.
#[derive(Debug, thiserror::Error)]
pub enum ConfigLoadError {
    #[error("configuration error: {0}")]
    Source(#[from] config::ConfigError),
    #[error("invalid configuration key `{key}`: {message}")]
    Invalid { key: String, message: String },
}

impl ConfigLoadError {
    pub fn invalid(key: &str, message: impl Into<String>) -> Self {
        Self::Invalid {
            key: key.to_owned(),
            message: message.into(),
        }
    }
}

/// Whether `value` is `host:port` with a non-empty host and a port from 0 to 65535.
pub fn is_host_port(value: &str) -> bool {
    value
        .trim()
        .rsplit_once(':')
        .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok())
}

/// Loads `T` from `defaults` (a YAML document), then the file, then the environment.
///
/// `list_keys` names keys whose environment value is a comma separated list.
pub fn load<T: DeserializeOwned>(
    defaults_yaml: &str,
    sources: &ConfigSources,
    list_keys: &[&str],
) -> Result<T, ConfigLoadError> {
    let mut builder = Config::builder().add_source(File::from_str(defaults_yaml, FileFormat::Yaml));
    if let Some((path, required)) = &sources.file {
        builder = builder.add_source(
            File::from(path.as_path())
                .format(FileFormat::Yaml)
                .required(*required),
        );
    }
    let env: config::Map<String, String> = sources
        .env
        .iter()
        .filter(|(k, _)| k.starts_with(&format!("{ENV_PREFIX}_")) && k.as_str() != "MEDBOOK_CONFIG")
        .cloned()
        .collect();
    let mut environment = Environment::with_prefix(ENV_PREFIX)
        .prefix_separator("_")
        .separator("__")
        .try_parsing(true)
        .source(Some(env));
    if !list_keys.is_empty() {
        environment = environment.list_separator(",");
        for key in list_keys {
            environment = environment.with_list_parse_key(key);
        }
    }
    let config = builder.add_source(environment).build()?;
    Ok(config.try_deserialize()?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;
    use std::io::Write;

    #[derive(Debug, Deserialize)]
    struct Sample {
        http: Http,
    }
    #[derive(Debug, Deserialize)]
    struct Http {
        addr: String,
        workers: u32,
        origins: Vec<String>,
    }

    const DEFAULTS: &str = "http:\n  addr: 127.0.0.1:1\n  workers: 1\n  origins: []\n";

    fn temp_file(contents: &str) -> PathBuf {
        let path = std::env::temp_dir().join(format!(
            "medbook-config-test-{}-{}.yml",
            std::process::id(),
            contents.len()
        ));
        let mut f = std::fs::File::create(&path).unwrap();
        f.write_all(contents.as_bytes()).unwrap();
        path
    }

    #[test]
    fn env_beats_file_beats_defaults() {
        let file = temp_file("http:\n  addr: 127.0.0.1:2\n  workers: 2\n");
        let sources = ConfigSources {
            file: Some((file.clone(), true)),
            env: vec![("MEDBOOK_HTTP__ADDR".into(), "127.0.0.1:3".into())],
        };
        let s: Sample = load(DEFAULTS, &sources, &["http.origins"]).unwrap();
        assert_eq!(s.http.addr, "127.0.0.1:3", "env wins over file");
        assert_eq!(s.http.workers, 2, "file wins over defaults");
        assert!(
            s.http.origins.is_empty(),
            "defaults used when nothing else sets a key"
        );
        std::fs::remove_file(file).unwrap();
    }

    #[test]
    fn list_keys_are_split_on_commas() {
        let sources = ConfigSources {
            file: None,
            env: vec![(
                "MEDBOOK_HTTP__ORIGINS".into(),
                "http://a.example,http://b.example".into(),
            )],
        };
        let s: Sample = load(DEFAULTS, &sources, &["http.origins"]).unwrap();
        assert_eq!(s.http.origins, vec!["http://a.example", "http://b.example"]);
    }

    #[test]
    fn bad_value_names_the_key() {
        let sources = ConfigSources {
            file: None,
            env: vec![("MEDBOOK_HTTP__WORKERS".into(), "many".into())],
        };
        let err = load::<Sample>(DEFAULTS, &sources, &[])
            .unwrap_err()
            .to_string();
        assert!(err.contains("http.workers"), "{err}");
    }

    #[test]
    fn required_missing_file_is_an_error() {
        let sources = ConfigSources {
            file: Some((PathBuf::from("/nonexistent/medbook.yml"), true)),
            env: vec![],
        };
        let err = load::<Sample>(DEFAULTS, &sources, &[])
            .unwrap_err()
            .to_string();
        assert!(err.contains("medbook.yml"), "{err}");
    }
}
