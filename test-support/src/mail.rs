//! The mail sink (maildev) as tests read it: its REST API lists the emails it accepted.

use serde_json::Value;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A maildev instance: the shared one, or a private one a test may stop.
pub struct Maildev {
    pub smtp_port: u16,
    pub web_url: String,
    child: Option<Child>,
}

impl Maildev {
    /// The shared sink started by `./scripts/test.sh`.
    pub fn shared() -> Self {
        Self {
            smtp_port: crate::env("MEDBOOK_TEST_SMTP_PORT").parse().unwrap(),
            web_url: crate::env("MEDBOOK_TEST_MAILDEV_URL"),
            child: None,
        }
    }

    /// A sink of the test's own on `smtp_port` (a free one if `None`).
    pub async fn start(smtp_port: Option<u16>) -> Self {
        let bin = crate::env("MEDBOOK_TEST_MAILDEV_BIN");
        let smtp_port = smtp_port.unwrap_or_else(crate::free_port);
        let web_port = crate::free_port();
        let child = Command::new(bin)
            .args([
                "--smtp",
                &smtp_port.to_string(),
                "--web",
                &web_port.to_string(),
                "--ip",
                "127.0.0.1",
                "--web-ip",
                "127.0.0.1",
                "--silent",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let sink = Self {
            smtp_port,
            web_url: format!("http://127.0.0.1:{web_port}"),
            child: Some(child),
        };
        crate::eventually("maildev to listen", Duration::from_secs(20), || async {
            let smtp = std::net::TcpStream::connect(("127.0.0.1", smtp_port)).is_ok();
            let web = reqwest::get(format!("{}/healthz", sink.web_url))
                .await
                .is_ok();
            (smtp && web).then_some(())
        })
        .await;
        sink
    }

    /// Stops a private sink (SMTP connections are refused from now on).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn signal(&self, sig: &str) {
        let child = self
            .child
            .as_ref()
            .expect("only a private sink can be paused");
        crate::signal(child, sig);
    }

    /// The mail server freezes (SIGSTOP): connections hang, as a stuck server's do.
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    /// The frozen server goes on (SIGCONT).
    pub fn resume(&self) {
        self.signal("-CONT");
    }

    /// Every email the sink holds, in the order it accepted them.
    pub async fn all(&self) -> Vec<Value> {
        self.emails("").await
    }

    /// Every email to `address`, oldest first.
    pub async fn emails_to(&self, address: &str) -> Vec<Value> {
        self.emails(&format!("?to.address={address}")).await
    }

    async fn emails(&self, query: &str) -> Vec<Value> {
        let res = reqwest::get(format!("{}/email{query}", self.web_url))
            .await
            .unwrap();
        assert!(
            res.status().is_success(),
            "maildev answered {}",
            res.status()
        );
        res.json::<Vec<Value>>().await.unwrap()
    }

    /// Waits for `n` emails to `address`, then `settle` longer, and returns them all
    /// (more than `n` if more arrived).
    pub async fn wait_for(
        &self,
        address: &str,
        n: usize,
        timeout: Duration,
        settle: Duration,
    ) -> Vec<Value> {
        crate::eventually(&format!("{n} emails to {address}"), timeout, || async {
            (self.emails_to(address).await.len() >= n).then_some(())
        })
        .await;
        tokio::time::sleep(settle).await;
        self.emails_to(address).await
    }

    /// The text of an attachment of `email` (by its generated file name).
    pub async fn attachment(&self, email: &Value, index: usize) -> String {
        let id = email["id"].as_str().unwrap();
        let name = email["attachments"][index]["generatedFileName"]
            .as_str()
            .unwrap();
        reqwest::get(format!("{}/email/{id}/attachment/{name}", self.web_url))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }
}

impl Drop for Maildev {
    fn drop(&mut self) {
        self.stop();
    }
}
