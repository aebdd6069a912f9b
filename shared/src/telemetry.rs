//! Structured logging: one JSON object per line.
//!
//! Servers log to stdout. Command-line tools that print their result on stdout log to
//! stderr instead, so their output stays machine-readable.

use tracing_subscriber::{fmt, EnvFilter};

/// Where log lines go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogOutput {
    Stdout,
    Stderr,
}

/// Installs the global JSON subscriber and a panic hook that logs panics as one JSON
/// line. `default_level` applies unless `RUST_LOG` is set. Calling it twice is harmless
/// (the second call is ignored), which tests rely on.
pub fn init(service: &'static str, default_level: &str, output: LogOutput) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_level));
    let builder = fmt()
        .json()
        .flatten_event(true)
        .with_current_span(false)
        .with_span_list(false)
        .with_target(true)
        .with_env_filter(filter);
    let result = match output {
        LogOutput::Stdout => builder.with_writer(std::io::stdout).try_init(),
        LogOutput::Stderr => builder.with_writer(std::io::stderr).try_init(),
    };
    if result.is_ok() {
        std::panic::set_hook(Box::new(|info| {
            let message = info
                .payload()
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| info.payload().downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".to_owned());
            let location = info
                .location()
                .map(|l| format!("{}:{}", l.file(), l.line()))
                .unwrap_or_default();
            tracing::error!(panic = %message, location = %location, "panic");
        }));
        tracing::debug!(service, "telemetry initialised");
    }
}
