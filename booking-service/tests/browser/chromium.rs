//! Headless Chromium under chromedriver, one per test: chromedriver on a free port, a
//! fresh profile directory, a WebDriver session that keeps the browser's console.

use fantoccini::wd::{Capabilities, WebDriverCompatibleCommand};
use fantoccini::{Client, ClientBuilder};
use hyper_util::client::legacy::connect::HttpConnector;
use medbook_test_support::{env, free_port};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// How long Chromium may take to start (a debug build machine under load).
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// A required program: the path in `variable`, which must exist.
fn program(variable: &str, package: &str) -> PathBuf {
    let path = PathBuf::from(env(variable));
    assert!(
        path.is_file(),
        "{variable}={} does not exist: install the Debian package `{package}` \
         (scripts/lib/common.sh ensure_chromium; ./scripts/test.sh does it)",
        path.display()
    );
    path
}

/// The chromedriver process and the directory it and Chromium write to; both go
/// when the test ends (the directory is kept, and named, when the test failed).
struct Driver {
    child: Child,
    dir: PathBuf,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!(
                "chromedriver's log and Chromium's profile: {}",
                self.dir.display()
            );
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

pub struct Browser {
    pub client: Client,
    _driver: Driver,
}

impl Browser {
    pub async fn start() -> Self {
        let chromedriver = program("MEDBOOK_TEST_CHROMEDRIVER", "chromium-driver");
        let chromium = program("MEDBOOK_TEST_CHROMIUM", "chromium");
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("browser-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        let port = free_port();
        let child = Command::new(&chromedriver)
            .arg(format!("--port={port}"))
            .arg(format!(
                "--log-path={}",
                dir.join("chromedriver.log").display()
            ))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", chromedriver.display()));
        let mut driver = Driver { child, dir };
        let webdriver = format!("http://127.0.0.1:{port}");
        let deadline = tokio::time::Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = driver.child.try_wait().unwrap() {
                panic!("chromedriver exited at start-up ({status}); see its log")
            }
            let ready = reqwest::get(format!("{webdriver}/status")).await;
            if let Ok(res) = ready {
                let status: Value = res.json().await.unwrap_or_default();
                if status["value"]["ready"] == true {
                    break;
                }
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "chromedriver did not answer on port {port} within {START_TIMEOUT:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let profile = driver.dir.join("profile");
        let mut capabilities = Capabilities::new();
        capabilities.insert("browserName".into(), json!("chrome"));
        capabilities.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": chromium,
                "args": [
                    "--headless",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-dev-shm-usage",
                    "--disable-quic",
                    "--no-first-run",
                    "--disable-background-networking",
                    "--disable-component-update",
                    "--disable-sync",
                    format!("--user-data-dir={}", profile.display()),
                ],
            }),
        );
        // The console, CSP violations included (`console`).
        capabilities.insert("goog:loggingPrefs".into(), json!({"browser": "ALL"}));
        let client = tokio::time::timeout(
            START_TIMEOUT,
            ClientBuilder::new(HttpConnector::new())
                .capabilities(capabilities)
                .connect(&webdriver),
        )
        .await
        .unwrap_or_else(|_| panic!("Chromium did not start within {START_TIMEOUT:?}"))
        .unwrap_or_else(|e| panic!("chromedriver could not start Chromium: {e}"));
        Browser {
            client,
            _driver: driver,
        }
    }

    /// The console messages since the last call (chromedriver's log endpoint), each
    /// with `level`, `source` (`security` for a CSP violation) and `message`.
    pub async fn console(&self) -> Vec<Value> {
        let log = self.client.issue_cmd(ConsoleLog).await.unwrap();
        log.as_array().cloned().unwrap_or_default()
    }

    /// Ends the session, so that Chromium exits with it.
    pub async fn close(self) {
        let Browser { client, _driver } = self;
        let _ = client.close().await;
    }
}

/// `url::ParseError`, named through reqwest (which re-exports `url::Url` only).
type ParseError = <reqwest::Url as std::str::FromStr>::Err;

/// `POST /session/{id}/se/log`: chromedriver's (non-W3C) read of the browser's log.
#[derive(Debug)]
struct ConsoleLog;

impl WebDriverCompatibleCommand for ConsoleLog {
    fn endpoint(
        &self,
        base_url: &reqwest::Url,
        session_id: Option<&str>,
    ) -> Result<reqwest::Url, ParseError> {
        base_url.join(&format!(
            "session/{}/se/log",
            session_id.unwrap_or_default()
        ))
    }

    fn method_and_body(&self, _request_url: &reqwest::Url) -> (reqwest::Method, Option<String>) {
        (
            reqwest::Method::POST,
            Some(json!({"type": "browser"}).to_string()),
        )
    }
}
