//! Rigs for the notification-service's tests: its own database, topics of its own on
//! a real broker, a real SMTP server, and the service in-process or as its binary.

use chrono::{TimeZone, Utc};
use medbook_shared::config_loader::ConfigSources;
use medbook_shared::events::*;
use medbook_test_support::kafka::TestTopics;
use medbook_test_support::pg::TestDb;
use medbook_test_support::process::{service_command, ServiceProcess};
use notification_service::settings::Settings;
use notification_service::startup::{NotificationApp, StopHandle};
use serde_json::Value;
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use uuid::Uuid;

/// A database with the notification-service's schema, cloned from its template.
pub fn notify_db() -> TestDb {
    TestDb::migrated(
        "notify",
        notification_service::repository::MIGRATIONS,
        std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations")),
    )
}

/// Where things are: the test's database, broker and topics, SMTP port, a free HTTP
/// port, a group of the test's own.
fn whereabouts(db: &TestDb, topics: &TestTopics, smtp_port: u16) -> Vec<(&'static str, String)> {
    vec![
        ("MEDBOOK_DATABASE__URL", db.url()),
        ("MEDBOOK_HTTP__ADDR", "127.0.0.1:0".to_owned()),
        ("MEDBOOK_KAFKA__BROKERS", topics.brokers.clone()),
        ("MEDBOOK_KAFKA__TOPIC_PREFIX", topics.prefix.clone()),
        (
            "MEDBOOK_CONSUMER__GROUP_ID",
            format!("notify-{}", Uuid::new_v4()),
        ),
        ("MEDBOOK_SMTP__PORT", smtp_port.to_string()),
        ("MEDBOOK_LOG__LEVEL", "warn".to_owned()),
    ]
}

fn load(env: Vec<(&'static str, String)>) -> Settings {
    Settings::load_from(&ConfigSources {
        file: None,
        env: env.into_iter().map(|(k, v)| (k.to_owned(), v)).collect(),
    })
    .unwrap()
}

/// Settings for a test: its database, topics, SMTP port; quick retries and joins.
pub fn settings(db: &TestDb, topics: &TestTopics, smtp_port: u16) -> Settings {
    let mut env = whereabouts(db, topics, smtp_port);
    env.extend([
        ("MEDBOOK_CONSUMER__SESSION_TIMEOUT_MS", "6000".to_owned()),
        ("MEDBOOK_CONSUMER__COMMIT_INTERVAL_MS", "200".to_owned()),
        ("MEDBOOK_SMTP__TIMEOUT_MS", "3000".to_owned()),
        ("MEDBOOK_RETRY__INITIAL_BACKOFF_MS", "200".to_owned()),
        ("MEDBOOK_RETRY__MAX_BACKOFF_MS", "1000".to_owned()),
        ("MEDBOOK_DEDUP__CLAIM_TIMEOUT_SECS", "3".to_owned()),
    ]);
    load(env)
}

/// The service's own defaults; only where things are is set.
pub fn default_settings(db: &TestDb, topics: &TestTopics, smtp_port: u16) -> Settings {
    load(whereabouts(db, topics, smtp_port))
}

/// The service's `/ready` answer.
pub async fn ready(base: &str) -> (u16, Value) {
    let res = reqwest::get(format!("{base}/ready")).await.unwrap();
    let status = res.status().as_u16();
    (status, res.json().await.unwrap())
}

/// The service running in this process.
pub struct Running {
    pub stop: StopHandle,
    pub task: tokio::task::JoinHandle<anyhow::Result<()>>,
    pub http: String,
}

impl Running {
    pub async fn start(settings: &Settings) -> Self {
        medbook_shared::telemetry::init(
            "notification-service-tests",
            "warn",
            medbook_shared::telemetry::LogOutput::Stdout,
        );
        let _ = std::panic::take_hook();
        let (app, stop) = NotificationApp::build(settings).await.unwrap();
        let http = format!("http://127.0.0.1:{}", app.http_port());
        Self {
            stop,
            task: tokio::spawn(app.run_until_stopped()),
            http,
        }
    }

    pub async fn metric(&self, name_and_labels: &str) -> f64 {
        metric(&self.http, name_and_labels).await
    }

    pub async fn shutdown(self) -> anyhow::Result<()> {
        self.stop.stop();
        tokio::time::timeout(Duration::from_secs(20), self.task)
            .await
            .expect("service did not stop")
            .unwrap()
    }
}

pub use medbook_test_support::metric;

/// The binary, with `settings` passed as environment variables; its log lines in
/// `lines`.
pub struct Process(ServiceProcess);

pub fn binary() -> Command {
    service_command(env!("CARGO_BIN_EXE_notification-service"))
}

pub fn env_of(s: &Settings) -> Vec<(String, String)> {
    use secrecy::ExposeSecret;
    vec![
        (
            "MEDBOOK_DATABASE__URL".into(),
            s.database.url.expose_secret().to_owned(),
        ),
        ("MEDBOOK_HTTP__ADDR".into(), "127.0.0.1:0".into()),
        ("MEDBOOK_KAFKA__BROKERS".into(), s.kafka.brokers.clone()),
        (
            "MEDBOOK_KAFKA__TOPIC_PREFIX".into(),
            s.kafka.topic_prefix.clone(),
        ),
        (
            "MEDBOOK_CONSUMER__GROUP_ID".into(),
            s.consumer.group_id.clone(),
        ),
        (
            "MEDBOOK_CONSUMER__SESSION_TIMEOUT_MS".into(),
            s.consumer.session_timeout_ms.to_string(),
        ),
        (
            "MEDBOOK_CONSUMER__COMMIT_INTERVAL_MS".into(),
            s.consumer.commit_interval_ms.to_string(),
        ),
        ("MEDBOOK_SMTP__PORT".into(), s.smtp.port.to_string()),
        (
            "MEDBOOK_RETRY__MAX_AGE_SECS".into(),
            s.retry.max_age_secs.to_string(),
        ),
        (
            "MEDBOOK_SMTP__PROBE_INTERVAL_MS".into(),
            s.smtp.probe_interval_ms.to_string(),
        ),
        (
            "MEDBOOK_RETRY__INITIAL_BACKOFF_MS".into(),
            s.retry.initial_backoff_ms.to_string(),
        ),
        (
            "MEDBOOK_RETRY__MAX_BACKOFF_MS".into(),
            s.retry.max_backoff_ms.to_string(),
        ),
        (
            "MEDBOOK_DEDUP__CLAIM_TIMEOUT_SECS".into(),
            s.dedup.claim_timeout_secs.to_string(),
        ),
        (
            "MEDBOOK_DEAD_LETTERS__MAX_PER_WINDOW".into(),
            s.dead_letters.max_per_window.to_string(),
        ),
    ]
}

impl Process {
    pub fn spawn(settings: &Settings) -> Self {
        Self(ServiceProcess::spawn(
            binary().envs(env_of(settings)).stderr(Stdio::null()),
        ))
    }

    /// The port of its HTTP server, from its log.
    pub fn http(&self) -> String {
        let v = self
            .0
            .wait_for("probes and metrics listening", Duration::from_secs(60));
        format!("http://127.0.0.1:{}", v["port"])
    }

    /// Waits for the exit; returns its status code.
    pub fn wait(&mut self, timeout: Duration) -> Option<i32> {
        self.0.wait(timeout).code()
    }
}

impl std::ops::Deref for Process {
    type Target = ServiceProcess;
    fn deref(&self) -> &ServiceProcess {
        &self.0
    }
}

/// A created-appointment event for `email`, in Berlin.
pub fn created(email: &str) -> EventEnvelope {
    let starts = Utc.with_ymd_and_hms(2026, 12, 1, 9, 30, 0).unwrap();
    EventEnvelope::new(
        Utc::now(),
        AppointmentEvent::Created(AppointmentSnapshot {
            appointment_id: Uuid::new_v4(),
            slot_id: Uuid::new_v4(),
            starts_at: starts,
            ends_at: starts + chrono::Duration::minutes(30),
            reason: "check-up".into(),
            patient: PatientInfo {
                id: Uuid::new_v4(),
                email: email.into(),
                full_name: "Pat Ient".into(),
            },
            doctor: DoctorInfo {
                id: Uuid::new_v4(),
                full_name: "Dr. Who".into(),
                specialty: "General practice".into(),
            },
            clinic: ClinicInfo {
                id: Uuid::new_v4(),
                name: "Mitte".into(),
                city: "Berlin".into(),
                address: "Unter den Linden 1".into(),
                time_zone: "Europe/Berlin".into(),
            },
            version: 1,
            manage_url: Some(format!(
                "http://medbook.test/appointments/manage?token={}",
                Uuid::new_v4().simple()
            )),
        }),
    )
}

/// The manage link of `booked`'s appointment.
pub fn manage_url(booked: &EventEnvelope) -> String {
    booked.appointment().unwrap().manage_url.clone().unwrap()
}

/// The no-show of `booked`'s appointment (its version unchanged), e-mailed to the
/// patient or not as the clinic chose.
pub fn no_show(booked: &EventEnvelope, email_patient: bool) -> EventEnvelope {
    EventEnvelope::new(
        Utc::now(),
        AppointmentEvent::NoShow(NoShow {
            appointment: booked.appointment().unwrap().clone(),
            email_patient,
        }),
    )
}

/// A waitlist offer for `email` of a slot in Berlin, held for another `holds_for`
/// (negative: expired), its booking link carrying a token of its own.
pub fn offer(email: &str, holds_for: chrono::Duration) -> EventEnvelope {
    let a = created(email).appointment().unwrap().clone();
    EventEnvelope::new(
        Utc::now(),
        WaitlistOffer {
            entry_id: Uuid::new_v4(),
            slot_id: a.slot_id,
            starts_at: a.starts_at,
            ends_at: a.ends_at,
            patient: a.patient,
            doctor: a.doctor,
            clinic: a.clinic,
            link: format!(
                "http://medbook.test/waitlist/offer?token={}&lang=en",
                Uuid::new_v4().simple()
            ),
            expires_at: Utc::now() + holds_for,
        },
    )
}

/// What a stranger may type as the name of an account registered to someone else's
/// address: no account e-mail may carry it.
pub const STRANGERS_NAME: &str = "Your account is locked, call +1 555 0100";

/// An `account.verify_email` event for `email`, its link working for another hour,
/// registered under [`STRANGERS_NAME`].
pub fn verify_email(email: &str) -> EventEnvelope {
    let token = Uuid::new_v4().simple();
    EventEnvelope::new(
        Utc::now(),
        AccountEvent::VerifyEmail(AccountLink {
            account: AccountInfo {
                id: Uuid::new_v4(),
                email: email.into(),
                full_name: STRANGERS_NAME.into(),
            },
            link: format!("http://medbook.test/account/verify-email?token={token}"),
            expires_at: Utc::now() + chrono::Duration::hours(1),
        }),
    )
}

/// A message for the event's topic carrying the encoded event, keyed like the relay
/// does.
pub fn record(event: &EventEnvelope) -> (String, Option<Vec<u8>>, Vec<u8>) {
    (
        event.event_type().topic().to_owned(),
        Some(event.key().into_bytes()),
        event.encode().unwrap(),
    )
}

/// A unique address in a domain of the test's own.
pub fn address(tag: &str) -> String {
    format!(
        "{tag}-{}@example.com",
        &Uuid::new_v4().simple().to_string()[..10]
    )
}

/// The event id carried in an email's Message-ID, as maildev shows it.
pub fn event_id_of(email: &Value) -> String {
    email["messageId"]
        .as_str()
        .unwrap()
        .trim_matches(|c| c == '<' || c == '>')
        .trim_end_matches("@medbook")
        .to_owned()
}

/// The fault-injecting SMTP server (`scripts/smtp-fault-server.py`): `reject*`
/// recipients get 550, `defer*` recipients 451 for their first `defer` attempts.
pub struct FaultSmtp {
    child: Child,
    pub smtp_port: u16,
    pub http: String,
    _store: tempfile_path::TempPath,
}

mod tempfile_path {
    /// A file path removed on drop.
    pub struct TempPath(pub std::path::PathBuf);
    impl Drop for TempPath {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }
}

impl FaultSmtp {
    pub async fn start(defer: u32) -> Self {
        Self::start_with(defer, 300.0).await
    }

    /// …closing connections idle for `idle_timeout` seconds with a 421.
    pub async fn start_with(defer: u32, idle_timeout: f64) -> Self {
        let python = medbook_test_support::env("MEDBOOK_TEST_PYTHON");
        let script = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../scripts/smtp-fault-server.py"
        );
        let smtp_port = medbook_test_support::free_port();
        let http_port = medbook_test_support::free_port();
        let store = std::env::temp_dir().join(format!("fault-smtp-{}.jsonl", Uuid::new_v4()));
        let child = Command::new(python)
            .args([
                script,
                "--port",
                &smtp_port.to_string(),
                "--http-port",
                &http_port.to_string(),
                "--defer-count",
                &defer.to_string(),
                "--idle-timeout",
                &idle_timeout.to_string(),
                "--store",
                store.to_str().unwrap(),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let server = Self {
            child,
            smtp_port,
            http: format!("http://127.0.0.1:{http_port}"),
            _store: tempfile_path::TempPath(store),
        };
        medbook_test_support::eventually(
            "the fault SMTP server",
            Duration::from_secs(15),
            || async {
                reqwest::get(format!("{}/healthz", server.http))
                    .await
                    .ok()
                    .map(|_| ())
            },
        )
        .await;
        server
    }

    /// `{"connections": n, "idle_closed": n}`.
    pub async fn stats(&self) -> Value {
        reqwest::get(format!("{}/stats", self.http))
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// Accepted messages, oldest first.
    pub async fn messages(&self) -> Vec<Value> {
        reqwest::get(format!("{}/messages", self.http))
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }
}

impl Drop for FaultSmtp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `dlq <args>`; returns the JSON lines it printed.
pub fn dlq(settings: &Settings, args: &[&str]) -> Vec<Value> {
    let out = binary()
        .envs(env_of(settings))
        .arg("dlq")
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "dlq {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}
