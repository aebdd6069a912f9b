//! What a container runtime or an operator asks a service binary without starting it:
//! `healthcheck` (an HTTP GET of the running process's `/health`, for images that ship
//! no curl) and `check-config` (the configuration as the service would read it: unknown
//! keys, the listeners, the probe paths, the topics).

use medbook_shared::config_loader::{self, ConfigLoadError, ConfigSources, UnknownKey};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::Duration;

/// The operators' routes of every service ([`crate::ops::routes`]).
pub const HEALTH_PATH: &str = "/health";
pub const READY_PATH: &str = "/ready";
pub const METRICS_PATH: &str = "/metrics";

/// What start-up and the probe commands need of a service's settings.
pub trait ServiceConfig: DeserializeOwned {
    /// The service's name (its binary, `config/<SERVICE>.yml`).
    const SERVICE: &'static str;
    /// The built-in defaults (YAML) the loader starts from.
    const DEFAULTS: &'static str;
    /// Keys whose environment value is a comma separated list.
    const LIST_KEYS: &'static [&'static str];
    /// Checks every value; an invalid one is named by its key.
    fn check(&self) -> Result<(), ConfigLoadError>;
    /// The listeners, gRPC services and topics, for `check-config`.
    fn config_report(&self, unknown: Vec<UnknownKey>) -> ConfigReport;
    /// The listener serving `/health`, which `healthcheck` GETs.
    fn probe_listener(&self) -> &str;
    /// The `log.level` setting (an `EnvFilter` directive, unless `RUST_LOG` is set).
    fn log_level(&self) -> &str;
    /// The `tracing` settings (span export).
    fn tracing(&self) -> &medbook_shared::telemetry::TracingSettings;

    /// Reads `sources`, not yet checked, with the keys they set that the service does
    /// not read (one pass).
    fn read(sources: &ConfigSources) -> Result<(Self, Vec<UnknownKey>), ConfigLoadError> {
        config_loader::load_reporting(Self::DEFAULTS, sources, Self::LIST_KEYS)
    }
}

/// The process's configuration, read and checked, and the keys it sets that the service
/// does not read (for [`warn_unknown`] once logging is up).
pub fn load<S: ServiceConfig>() -> Result<(S, Vec<UnknownKey>), ConfigLoadError> {
    let (settings, unknown) = S::read(&ConfigSources::from_env(S::SERVICE))?;
    settings.check()?;
    Ok((settings, unknown))
}

/// `<service> check-config`, run instead of [`load`] so that an invalid configuration is
/// reported too, with its unknown keys (a misspelt key is often the cause).
pub fn check_config_command<S: ServiceConfig>() -> std::process::ExitCode {
    let report = match S::read(&ConfigSources::from_env(S::SERVICE)) {
        Ok((settings, unknown)) => match settings.check() {
            Ok(()) => settings.config_report(unknown),
            Err(e) => ConfigReport::invalid(S::SERVICE, unknown, e.to_string()),
        },
        Err(e) => {
            eprintln!("{}: {e}", S::SERVICE);
            return std::process::ExitCode::from(2);
        }
    };
    match report.print() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("{}: {e:#}", S::SERVICE);
            std::process::ExitCode::from(2)
        }
    }
}

/// `<service> healthcheck`: answered from the settings alone, before telemetry starts
/// and without connecting to anything but the probe listener.
pub fn healthcheck_command<S: ServiceConfig>(
    settings: &S,
    timeout_ms: u64,
) -> std::process::ExitCode {
    run_healthcheck(
        S::SERVICE,
        settings.probe_listener(),
        Duration::from_millis(timeout_ms),
    )
}

/// Logs each key the service does not read as a warning: a typo or another service's
/// setting is ignored, but never silently.
pub fn warn_unknown(keys: &[UnknownKey]) {
    for key in keys {
        tracing::warn!(key = %key.key, env = key.env.as_deref().unwrap_or(""),
            "unknown configuration key ignored");
    }
}

/// Where a client on the same host reaches a listener bound to `listen`: a wildcard host
/// (`0.0.0.0`, `[::]`) becomes the loopback address of its family.
pub fn local_target(listen: &str) -> anyhow::Result<SocketAddr> {
    let (host, port) = listen
        .trim()
        .rsplit_once(':')
        .ok_or_else(|| anyhow::anyhow!("`{listen}` is not host:port"))?;
    let port: u16 = port
        .parse()
        .map_err(|_| anyhow::anyhow!("`{listen}` has no valid port"))?;
    let host = match host {
        "0.0.0.0" | "" => "127.0.0.1",
        "[::]" | "::" => "[::1]",
        other => other,
    };
    format!("{host}:{port}")
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| anyhow::anyhow!("`{listen}` resolves to no address"))
}

/// GETs `path` from the HTTP listener bound to `listen` and returns the status code;
/// an error when it cannot connect or answer within `timeout`, or answers no HTTP.
pub fn http_status(listen: &str, path: &str, timeout: Duration) -> anyhow::Result<u16> {
    let target = local_target(listen)?;
    let mut stream = TcpStream::connect_timeout(&target, timeout)
        .map_err(|e| anyhow::anyhow!("cannot connect to {target}: {e}"))?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    // One write: `write!` on an unbuffered stream would send the request in pieces.
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {target}\r\nUser-Agent: medbook-healthcheck\r\n\
         Connection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes())?;
    // The status line is all that is needed; it fits in the first read or few.
    let mut head = Vec::with_capacity(256);
    let mut buf = [0_u8; 256];
    while !head.contains(&b'\n') && head.len() < 4096 {
        let n = stream.read(&mut buf)?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(buf.get(..n).unwrap_or_default());
    }
    let line = String::from_utf8_lossy(&head);
    let line = line.lines().next().unwrap_or_default();
    match line.split_whitespace().collect::<Vec<_>>().as_slice() {
        [version, code, ..] if version.starts_with("HTTP/") => code
            .parse()
            .map_err(|_| anyhow::anyhow!("{target} answered `{line}`")),
        _ => anyhow::bail!("{target} answered no HTTP status line: `{line}`"),
    }
}

/// `<service> healthcheck`: success when `GET /health` on the ops listener `listen`
/// answers 2xx within `timeout`. Prints one line saying what it found.
pub fn healthcheck(service: &str, listen: &str, timeout: Duration) -> anyhow::Result<()> {
    let status = http_status(listen, HEALTH_PATH, timeout)?;
    if (200..300).contains(&status) {
        writeln!(
            std::io::stdout().lock(),
            "{service}: healthy ({HEALTH_PATH} on {listen}: {status})"
        )?;
        Ok(())
    } else {
        anyhow::bail!("{HEALTH_PATH} on {listen} answered {status}")
    }
}

/// What `check-config` prints: the configuration as the service reads it, for
/// deployment checks (every variable a real key; ports, probes and topics matching).
#[derive(Debug, Serialize)]
pub struct ConfigReport {
    pub service: String,
    /// Valid, and no unknown keys.
    pub ok: bool,
    /// Keys set by the file or the environment that the service does not read.
    pub unknown_keys: Vec<UnknownKey>,
    /// Why the configuration is invalid (the service would not start); then nothing
    /// below is filled in.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Each listener's key and address.
    pub listeners: BTreeMap<String, String>,
    /// The listener (its key) that serves the probes, and their paths.
    pub probes: ProbeReport,
    /// The gRPC services on each gRPC listener (by key), health included.
    pub grpc_services: BTreeMap<String, Vec<String>>,
    /// The Kafka topics the service reads or writes, prefix applied.
    pub topics: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct ProbeReport {
    pub listener: String,
    pub liveness: &'static str,
    pub readiness: &'static str,
    pub metrics: &'static str,
}

impl ConfigReport {
    pub fn new(service: &str, unknown_keys: Vec<UnknownKey>, probe_listener: &str) -> Self {
        Self {
            service: service.to_owned(),
            ok: unknown_keys.is_empty(),
            unknown_keys,
            error: None,
            listeners: BTreeMap::new(),
            probes: ProbeReport {
                listener: probe_listener.to_owned(),
                liveness: HEALTH_PATH,
                readiness: READY_PATH,
                metrics: METRICS_PATH,
            },
            grpc_services: BTreeMap::new(),
            topics: Vec::new(),
        }
    }

    /// The report of a configuration the service refuses: why, and its unknown keys.
    pub fn invalid(service: &str, unknown_keys: Vec<UnknownKey>, error: String) -> Self {
        let mut report = Self::new(service, unknown_keys, "");
        report.ok = false;
        report.error = Some(error);
        report
    }

    pub fn listener(mut self, key: &str, addr: &str) -> Self {
        self.listeners.insert(key.to_owned(), addr.to_owned());
        self
    }

    pub fn grpc(mut self, key: &str, services: &[&str]) -> Self {
        self.grpc_services.insert(
            key.to_owned(),
            services.iter().map(|s| (*s).to_owned()).collect(),
        );
        self
    }

    pub fn topics(mut self, topics: impl IntoIterator<Item = String>) -> Self {
        self.topics.extend(topics);
        self
    }

    /// Prints the report: exit status 0 when `ok`, 1 when keys are unknown, 2 when the
    /// configuration is invalid.
    pub fn print(&self) -> anyhow::Result<std::process::ExitCode> {
        crate::cli::print_json(self)?;
        for key in &self.unknown_keys {
            eprintln!("{}: unknown configuration key {key}", self.service);
        }
        if let Some(error) = &self.error {
            eprintln!("{}: {error}", self.service);
            return Ok(std::process::ExitCode::from(2));
        }
        Ok(if self.ok {
            std::process::ExitCode::SUCCESS
        } else {
            std::process::ExitCode::FAILURE
        })
    }
}

/// Runs [`healthcheck`] as a command: its exit status, the reason on stderr.
pub fn run_healthcheck(service: &str, listen: &str, timeout: Duration) -> std::process::ExitCode {
    match healthcheck(service, listen, timeout) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{service}: unhealthy: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    fn serve_once(response: &'static str) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            // The whole request head, however many reads it takes.
            let mut head = Vec::new();
            let mut buf = [0_u8; 1024];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                let n = s.read(&mut buf).unwrap();
                assert!(n > 0, "the request ended early");
                head.extend_from_slice(&buf[..n]);
            }
            assert!(String::from_utf8_lossy(&head).starts_with("GET /health HTTP/1.1\r\n"));
            s.write_all(response.as_bytes()).unwrap();
        });
        format!("0.0.0.0:{}", addr.port())
    }

    #[test]
    fn wildcard_hosts_become_loopback() {
        assert_eq!(
            local_target("0.0.0.0:9464").unwrap(),
            "127.0.0.1:9464".parse().unwrap()
        );
        assert_eq!(
            local_target("[::]:9464").unwrap(),
            "[::1]:9464".parse().unwrap()
        );
        assert!(local_target("nonsense").is_err());
    }

    #[test]
    fn healthy_on_200_and_not_on_503() {
        let ok = serve_once("HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n");
        healthcheck("svc", &ok, Duration::from_secs(5)).unwrap();
        let down = serve_once("HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\n\r\n");
        let err = healthcheck("svc", &down, Duration::from_secs(5)).unwrap_err();
        assert!(err.to_string().contains("503"), "{err}");
    }

    #[test]
    fn nothing_listening_is_an_error() {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let err = http_status(
            &format!("127.0.0.1:{port}"),
            "/health",
            Duration::from_secs(2),
        )
        .unwrap_err();
        assert!(err.to_string().contains("cannot connect"), "{err}");
    }
}
