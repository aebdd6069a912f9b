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

/// Environment variables with the prefix that are not settings: the file's path and the
/// commands' password inputs. They never enter the configuration tree.
pub const NOT_SETTINGS: [&str; 3] = [
    "MEDBOOK_CONFIG",
    "MEDBOOK_ADMIN_PASSWORD",
    "MEDBOOK_DOCTOR_PASSWORD",
];

/// Prefixes reserved for the test and benchmark harnesses' own variables.
pub const NOT_SETTING_PREFIXES: [&str; 2] = ["MEDBOOK_TEST_", "MEDBOOK_BENCH_"];

/// Whether the environment variable `name` is read as a setting.
pub fn is_setting_variable(name: &str) -> bool {
    name.starts_with(&format!("{ENV_PREFIX}_"))
        && !NOT_SETTINGS.contains(&name)
        && !NOT_SETTING_PREFIXES.iter().any(|p| name.starts_with(p))
}

/// Loads `T` from `defaults` (a YAML document), then the file, then the environment.
///
/// `list_keys` names keys whose environment value is a comma separated list. Keys that
/// `T` does not read are ignored; [`load_reporting`] names them.
pub fn load<T: DeserializeOwned>(
    defaults_yaml: &str,
    sources: &ConfigSources,
    list_keys: &[&str],
) -> Result<T, ConfigLoadError> {
    Ok(load_reporting(defaults_yaml, sources, list_keys)?.0)
}

/// A key the sources set that the service does not read: a typo, or a setting of
/// another service. `env` is the variable that set it, when one did.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct UnknownKey {
    pub key: String,
    pub env: Option<String>,
}

impl std::fmt::Display for UnknownKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.env {
            Some(env) => write!(f, "{} (from {env})", self.key),
            None => write!(f, "{} (from the file)", self.key),
        }
    }
}

/// [`load`], and in the same pass the keys of the file and the environment that `T`
/// does not read, in order.
pub fn load_reporting<T: DeserializeOwned>(
    defaults_yaml: &str,
    sources: &ConfigSources,
    list_keys: &[&str],
) -> Result<(T, Vec<UnknownKey>), ConfigLoadError> {
    let config = build(defaults_yaml, sources, list_keys)?;
    let mut keys = Vec::new();
    let value: T = serde_ignored::deserialize(config, |path| keys.push(path.to_string()))?;
    let env_names: Vec<&String> = setting_env(sources).map(|(name, _)| name).collect();
    let mut unknown = Vec::new();
    for path in keys {
        let inside = format!("{path}.");
        let from_env: Vec<UnknownKey> = env_names
            .iter()
            .map(|name| (env_key(name), *name))
            .filter(|(key, _)| *key == path || key.starts_with(&inside))
            .map(|(key, name)| UnknownKey {
                key,
                env: Some(name.clone()),
            })
            .collect();
        if from_env.is_empty() {
            unknown.push(UnknownKey {
                key: path,
                env: None,
            });
        } else {
            unknown.extend(from_env);
        }
    }
    Ok((value, unknown))
}

/// `MEDBOOK_HTTP__OPS_ADDR` → `http.ops_addr`, the way the loader reads it.
fn env_key(name: &str) -> String {
    name.strip_prefix(ENV_PREFIX)
        .and_then(|rest| rest.strip_prefix('_'))
        .unwrap_or(name)
        .to_lowercase()
        .replace("__", ".")
}

/// The variables of `sources` that are settings.
fn setting_env(sources: &ConfigSources) -> impl Iterator<Item = &(String, String)> {
    sources.env.iter().filter(|(k, _)| is_setting_variable(k))
}

fn build(
    defaults_yaml: &str,
    sources: &ConfigSources,
    list_keys: &[&str],
) -> Result<Config, ConfigLoadError> {
    let mut builder = Config::builder().add_source(File::from_str(defaults_yaml, FileFormat::Yaml));
    if let Some((path, required)) = &sources.file {
        builder = builder.add_source(
            File::from(path.as_path())
                .format(FileFormat::Yaml)
                .required(*required),
        );
    }
    let env: config::Map<String, String> = setting_env(sources).cloned().collect();
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
    Ok(builder.add_source(environment).build()?)
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

    #[test]
    fn unknown_keys_name_their_variable_and_file() {
        let file = temp_file("http:\n  addr: 127.0.0.1:2\n  wokers: 2\n");
        let sources = ConfigSources {
            file: Some((file.clone(), true)),
            env: vec![
                ("MEDBOOK_HTTP__ADRR".into(), "127.0.0.1:3".into()),
                ("MEDBOOK_SMTP__HOST".into(), "mail".into()),
                ("MEDBOOK_HTTP__ADDR".into(), "127.0.0.1:4".into()),
                ("MEDBOOK_ADMIN_PASSWORD".into(), "not a setting".into()),
                ("MEDBOOK_TEST_REDIS_URL".into(), "a harness variable".into()),
                ("OTHER_HTTP__X".into(), "not ours".into()),
            ],
        };
        let (_, mut unknown) =
            load_reporting::<Sample>(DEFAULTS, &sources, &["http.origins"]).unwrap();
        unknown.sort_by(|a, b| a.key.cmp(&b.key));
        assert_eq!(
            unknown,
            vec![
                UnknownKey {
                    key: "http.adrr".into(),
                    env: Some("MEDBOOK_HTTP__ADRR".into())
                },
                UnknownKey {
                    key: "http.wokers".into(),
                    env: None
                },
                UnknownKey {
                    key: "smtp.host".into(),
                    env: Some("MEDBOOK_SMTP__HOST".into())
                },
            ]
        );
        std::fs::remove_file(file).unwrap();
    }

    #[test]
    fn known_keys_are_not_reported() {
        let sources = ConfigSources {
            file: None,
            env: vec![("MEDBOOK_HTTP__WORKERS".into(), "3".into())],
        };
        let (s, unknown) = load_reporting::<Sample>(DEFAULTS, &sources, &[]).unwrap();
        assert_eq!(s.http.workers, 3);
        assert!(unknown.is_empty());
    }
}
