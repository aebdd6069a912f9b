//! Test support shared by the services' integration tests and benchmarks: the real
//! Kafka-protocol broker (the shared one, or a private one a test may pause), the real
//! mail sink, PostgreSQL databases cloned from migrated templates, service binaries run
//! as processes ([`process`]) and the benchmarks' set-up ([`bench`]).
//! `./scripts/test.sh` starts the shared services and sets the `MEDBOOK_TEST_*`
//! variables; a test run without them fails loudly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

pub mod bench;
pub mod kafka;
pub mod mail;
pub mod pg;
pub mod process;

/// Whether a benchmark runs in its smoke mode (`MEDBOOK_BENCH_SMOKE=1`, as
/// `./scripts/test.sh` runs every benchmark once): every phase for a moment, with small
/// data, so that none can rot; the figures it prints mean nothing.
pub fn bench_smoke() -> bool {
    std::env::var("MEDBOOK_BENCH_SMOKE").is_ok_and(|v| v == "1")
}

/// A required test setting; panics with instructions when missing.
pub fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: run the tests with ./scripts/test.sh, which starts the broker, the mail sink and the databases")
    })
}

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Sends `sig` (`-STOP`, `-CONT`, `-KILL`, …) to `child`.
pub fn signal(child: &std::process::Child, sig: &str) {
    let status = std::process::Command::new("kill")
        .args([sig, &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success(), "kill {sig} failed");
}

/// Waits for `child` to exit (blocking, woken by the exit itself); panics after
/// `timeout`.
pub fn wait_for_exit(
    child: &mut std::process::Child,
    timeout: std::time::Duration,
) -> std::process::ExitStatus {
    use wait_timeout::ChildExt;
    child
        .wait_timeout(timeout)
        .unwrap()
        .unwrap_or_else(|| panic!("the process did not exit within {timeout:?}"))
}

/// Polls `check` every 100 ms until it returns `Some`, or panics after `timeout`.
pub async fn eventually<T, F, Fut>(what: &str, timeout: std::time::Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// A value from the `/metrics` page at `base` (0 if the series does not exist yet).
pub async fn metric(base: &str, name_and_labels: &str) -> f64 {
    let text = reqwest::get(format!("{base}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name_and_labels} ")))
        .map_or(0.0, |v| v.trim().parse().unwrap())
}
