//! Structured logging: one JSON object per line on stdout.

use tracing_subscriber::{fmt, EnvFilter};

/// Installs the global JSON subscriber. `default_level` applies unless `RUST_LOG` is set.
/// Calling it twice is harmless (the second call is ignored), which tests rely on.
pub fn init(service: &'static str, default_level: &str) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_level));
    let result = fmt()
        .json()
        .flatten_event(true)
        .with_current_span(false)
        .with_span_list(false)
        .with_target(true)
        .with_env_filter(filter)
        .try_init();
    if result.is_ok() {
        tracing::info!(service, "telemetry initialised");
    }
}
