//! What the benchmarks share: their sizes (`BENCH_*` tunables, small in smoke mode),
//! scratch databases, settings from variables alone, quiet logs and percentiles. Each
//! bench's own data and load stay in the bench.

use diesel::connection::SimpleConnection;
use diesel::{Connection, PgConnection};
use medbook_service_kit::probe::ServiceConfig;
use medbook_shared::config_loader::ConfigSources;

/// `full`, or `small` in smoke mode ([`crate::bench_smoke`]).
pub fn smoke<T>(full: T, small: T) -> T {
    if crate::bench_smoke() {
        small
    } else {
        full
    }
}

/// A tunable from the environment, or its default.
pub fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A size of the bench: the `BENCH_*` variable `name` when set, else `full`, or
/// `small` in smoke mode.
pub fn size(name: &str, full: usize, small: usize) -> usize {
    env_usize(name, smoke(full, small))
}

/// The `p` quantile of sorted values (nearest rank); panics on none.
#[allow(
    // Ranks of a bench's sample: far below 2^52, and `p` is within 0..=1.
    clippy::cast_precision_loss,
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss
)]
pub fn percentile<T: Copy>(sorted: &[T], p: f64) -> T {
    assert!(!sorted.is_empty(), "no values to take a percentile of");
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// Logs of the services a bench runs in its own process: errors only, on stderr, so
/// that stdout holds the figures.
pub fn quiet_logs() {
    medbook_shared::telemetry::init(
        "bench",
        "error",
        medbook_shared::telemetry::LogOutput::Stderr,
    );
}

/// The PostgreSQL server's maintenance URL: `MEDBOOK_TEST_DATABASE_URL`, else the local
/// default (`cargo bench` by hand on a developer's machine).
pub fn server_url() -> String {
    std::env::var("MEDBOOK_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// The URL of database `name` on that server.
pub fn db_url(name: &str) -> String {
    let server = server_url();
    let base = server.rsplit_once('/').map_or(server.as_str(), |(s, _)| s);
    format!("{base}/{name}")
}

fn admin() -> PgConnection {
    PgConnection::establish(&server_url())
        .unwrap_or_else(|e| panic!("PostgreSQL is required at {}: {e}", server_url()))
}

/// A new empty database `name` (what a previous run left there dropped first), for a
/// service to migrate at start-up; its URL. A fixed name, so that a run's data can be
/// looked at afterwards; [`drop_scratch_db`] removes it.
pub fn scratch_db(name: &str) -> String {
    let mut admin = admin();
    admin
        .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .unwrap();
    admin
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .unwrap();
    db_url(name)
}

/// Drops the database `name` (its connections too) at the end of a run; a failure is
/// only reported: the next run's [`scratch_db`] drops what is left.
pub fn drop_scratch_db(name: &str) {
    if let Err(e) = admin().batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")) {
        eprintln!("could not drop the scratch database {name}: {e}");
    }
}

/// A service's settings from the `MEDBOOK_*` variables `vars` alone (no file, nothing
/// of this process's environment), checked as at start-up; panics naming a bad key.
pub fn settings<S: ServiceConfig>(
    vars: impl IntoIterator<Item = (impl Into<String>, impl Into<String>)>,
) -> S {
    let sources = ConfigSources {
        file: None,
        env: vars
            .into_iter()
            .map(|(k, v)| (k.into(), v.into()))
            .collect(),
    };
    let (settings, _unknown) = S::read(&sources).unwrap_or_else(|e| panic!("bench settings: {e}"));
    settings
        .check()
        .unwrap_or_else(|e| panic!("bench settings: {e}"));
    settings
}
