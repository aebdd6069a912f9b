//! Benchmark of the notification pipeline against the real services that
//! `./scripts/bench-pipeline.sh` starts (PostgreSQL, Redis, tansu, maildev):
//!
//! 1. end-to-end latency from the booking's HTTP response to the email accepted by the
//!    SMTP server (maildev's receive time), p50/p90/p99/max, at a steady booking rate
//!    (`BENCH_RATE` bookings/s for `BENCH_SECONDS`, defaults 20 and 20);
//! 2. notification throughput: `BENCH_EMAILS` (default 3000) events already waiting on
//!    3 partitions, one notification-service instance, emails per second from the first
//!    accepted email to the last.
//!
//! booking-service and notification-service run in this process (release build),
//! against their own fresh databases and topics of their own.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use booking_service::domain::{Email, FullName, Password};
use booking_service::service::auth::Registration;
use booking_service::startup::{Application, Services};
use chrono::{DateTime, Utc};
use medbook_shared::config_loader::ConfigSources;
use medbook_shared::events::*;
use medbook_test_support::kafka::TestTopics;
use medbook_test_support::mail::Maildev;
use medbook_test_support::pg::FreshDb;
use notification_service::startup::NotificationApp;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::time::{Duration, Instant};
use uuid::Uuid;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn notifier_settings(
    db: &FreshDb,
    topics: &TestTopics,
    smtp_port: u16,
) -> notification_service::settings::Settings {
    let env = [
        ("MEDBOOK_DATABASE__URL", db.url()),
        ("MEDBOOK_HTTP__ADDR", "127.0.0.1:0".to_owned()),
        ("MEDBOOK_KAFKA__BROKERS", topics.brokers.clone()),
        ("MEDBOOK_KAFKA__TOPIC_PREFIX", topics.prefix.clone()),
        (
            "MEDBOOK_CONSUMER__GROUP_ID",
            format!("bench-{}", Uuid::new_v4()),
        ),
        ("MEDBOOK_CONSUMER__SESSION_TIMEOUT_MS", "6000".to_owned()),
        ("MEDBOOK_SMTP__PORT", smtp_port.to_string()),
    ];
    notification_service::settings::Settings::load_from(&ConfigSources {
        file: None,
        env: env
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect(),
    })
    .unwrap()
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn received_at(email: &Value) -> DateTime<Utc> {
    email["time"].as_str().unwrap().parse().unwrap()
}

async fn call(
    client: &reqwest::Client,
    base: &str,
    path: &str,
    token: Option<&str>,
    body: Value,
) -> Value {
    let mut req = client.post(format!("{base}{path}")).json(&body);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let res = req.send().await.unwrap();
    let status = res.status();
    let body: Value = res.json().await.unwrap_or(Value::Null);
    assert!(status.is_success(), "{path}: {status} {body}");
    body
}

#[tokio::main]
async fn main() {
    medbook_shared::telemetry::init(
        "bench",
        "error",
        medbook_shared::telemetry::LogOutput::Stderr,
    );
    let sink = Maildev::shared();
    latency(&sink).await;
    throughput(&sink).await;
}

async fn latency(sink: &Maildev) {
    let rate = env_usize("BENCH_RATE", 20);
    let seconds = env_usize("BENCH_SECONDS", 20);
    let total = rate * seconds;
    let booking_db = FreshDb::create("bench_booking");
    let notify_db = FreshDb::create("bench_notify");
    let topics = TestTopics::shared(3).await;
    let env = [
        ("MEDBOOK_PROFILE", "dev".to_owned()),
        ("MEDBOOK_AUTH__BCRYPT_COST", "4".to_owned()),
        ("MEDBOOK_HTTP__ADDR", "127.0.0.1:0".to_owned()),
        ("MEDBOOK_DATABASE__URL", booking_db.url()),
        (
            "MEDBOOK_REDIS__URL",
            medbook_test_support::env("MEDBOOK_TEST_REDIS_URL"),
        ),
        ("MEDBOOK_KAFKA__BROKERS", topics.brokers.clone()),
        ("MEDBOOK_KAFKA__TOPIC_PREFIX", topics.prefix.clone()),
        ("MEDBOOK_BOOKING__MIN_NOTICE_MINUTES", "0".to_owned()),
        (
            "MEDBOOK_BOOKING__MAX_ACTIVE_PER_PATIENT",
            "100000".to_owned(),
        ),
    ];
    let settings = booking_service::settings::Settings::load_from(&ConfigSources {
        file: None,
        env: env
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect(),
    })
    .unwrap();
    let app = Application::build(settings.clone()).await.unwrap();
    let base = format!("http://127.0.0.1:{}", app.port());
    tokio::spawn(app.run_until_stopped());
    let (notifier, stop) =
        NotificationApp::build(&notifier_settings(&notify_db, &topics, sink.smtp_port))
            .await
            .unwrap();
    let notifier = tokio::spawn(notifier.run_until_stopped());

    // A clinic, a doctor with a slot per booking, and 20 patients.
    let client = reqwest::Client::new();
    let services = Services::build(&settings).await.unwrap();
    services
        .auth
        .create_admin(Registration {
            email: Email::parse("bench-admin@example.com").unwrap(),
            password: Password::parse("admin password").unwrap(),
            full_name: FullName::parse("Admin").unwrap(),
            birth_date: None,
            gender: None,
            phone: None,
        })
        .await
        .unwrap();
    let admin = call(
        &client,
        &base,
        "/api/v1/auth/login",
        None,
        json!({"email": "bench-admin@example.com", "password": "admin password"}),
    )
    .await["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let clinic = call(&client, &base, "/api/v1/clinics", Some(&admin), json!({"name": "Bench", "city": "Berlin", "address": "1 A St", "time_zone": "Europe/Berlin"})).await;
    let doctor = call(&client, &base, "/api/v1/doctors", Some(&admin), json!({"full_name": "Dr. Bench", "specialty": "GP", "clinic_id": clinic["id"], "years_of_experience": 1})).await;
    let doctor_id = doctor["id"].as_str().unwrap();
    {
        use diesel::RunQueryDsl;
        diesel::sql_query(format!(
            "INSERT INTO slots (id, doctor_id, starts_at, ends_at, status)
             SELECT gen_random_uuid(), '{doctor_id}', date_trunc('minute', now()) + (i * interval '20 minutes') + interval '1 hour',
                    date_trunc('minute', now()) + (i * interval '20 minutes') + interval '80 minutes', 'available'
             FROM generate_series(0, {}) AS i",
            total - 1
        ))
        .execute(&mut booking_db.conn())
        .unwrap();
    }
    #[derive(diesel::QueryableByName)]
    struct Id {
        #[diesel(sql_type = diesel::sql_types::Uuid)]
        id: Uuid,
    }
    let slots: Vec<String> = {
        use diesel::RunQueryDsl;
        diesel::sql_query("SELECT id FROM slots ORDER BY starts_at")
            .load::<Id>(&mut booking_db.conn())
            .unwrap()
            .into_iter()
            .map(|r| r.id.to_string())
            .collect()
    };
    let run = &Uuid::new_v4().simple().to_string()[..8];
    let mut patients = Vec::new();
    for i in 0..20 {
        let email = format!("bench{i}-{run}@example.com");
        call(&client, &base, "/api/v1/auth/register", None, json!({"email": email, "password": "patient password", "full_name": format!("Bench {i}")})).await;
        let token = call(
            &client,
            &base,
            "/api/v1/auth/login",
            None,
            json!({"email": email, "password": "patient password"}),
        )
        .await["access_token"]
            .as_str()
            .unwrap()
            .to_owned();
        patients.push((email, token));
    }
    // Warm-up: the consumer has joined its group before the clock starts.
    let warm = call(
        &client,
        &base,
        "/api/v1/appointments",
        Some(&patients[0].1),
        json!({"slot_id": slots[0], "reason": "warm-up"}),
    )
    .await;
    sink.wait_for(&patients[0].0, 1, Duration::from_secs(60), Duration::ZERO)
        .await;
    let _ = warm;

    println!("\n== end-to-end latency: booking response -> email accepted by SMTP ==");
    let mut ticks = tokio::time::interval(Duration::from_secs_f64(1.0 / rate as f64));
    let mut tasks = Vec::new();
    let started = Instant::now();
    for (i, slot) in slots.iter().enumerate().skip(1) {
        ticks.tick().await;
        let (client, base, token) = (
            client.clone(),
            base.clone(),
            patients[i % patients.len()].1.clone(),
        );
        let slot = slot.clone();
        tasks.push(tokio::spawn(async move {
            let body = call(
                &client,
                &base,
                "/api/v1/appointments",
                Some(&token),
                json!({"slot_id": slot, "reason": "bench"}),
            )
            .await;
            (body["id"].as_str().unwrap().to_owned(), Utc::now())
        }));
    }
    let mut responded: HashMap<String, DateTime<Utc>> = HashMap::new();
    for t in tasks {
        let (id, at) = t.await.unwrap();
        responded.insert(id, at);
    }
    let booking_secs = started.elapsed().as_secs_f64();
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut latencies = loop {
        let mut found = Vec::new();
        for (email, _) in &patients {
            for e in sink.emails_to(email).await {
                let text = e["text"].as_str().unwrap_or_default();
                if let Some(id) = text.lines().find_map(|l| l.strip_prefix("Appointment: ")) {
                    if let Some(at) = responded.get(id.trim()) {
                        found.push(
                            (received_at(&e) - *at).num_microseconds().unwrap() as f64 / 1000.0,
                        );
                    }
                }
            }
        }
        if found.len() >= responded.len() || Instant::now() > deadline {
            break found;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    latencies.sort_by(f64::total_cmp);
    println!(
        "{} bookings at {rate}/s over {booking_secs:.1} s; {} emails arrived",
        responded.len(),
        latencies.len()
    );
    println!(
        "latency ms: p50 {:.1}  p90 {:.1}  p99 {:.1}  max {:.1}  (maildev timestamps have ms resolution)",
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.9),
        percentile(&latencies, 0.99),
        latencies.last().copied().unwrap_or_default()
    );
    stop.stop();
    notifier.await.unwrap().unwrap();
}

async fn throughput(sink: &Maildev) {
    let count = env_usize("BENCH_EMAILS", 3000);
    let db = FreshDb::create("bench_notify");
    let topics = TestTopics::shared(3).await;
    let to = format!(
        "bulk-{}@example.com",
        &Uuid::new_v4().simple().to_string()[..8]
    );
    let starts = Utc::now() + chrono::Duration::days(2);
    let records: Vec<_> = (0..count)
        .map(|i| {
            let e = EventEnvelope::new(
                Utc::now(),
                AppointmentEvent::Created(AppointmentSnapshot {
                    appointment_id: Uuid::new_v4(),
                    slot_id: Uuid::new_v4(),
                    starts_at: starts,
                    ends_at: starts + chrono::Duration::minutes(30),
                    reason: format!("bulk {i}"),
                    patient: PatientInfo {
                        id: Uuid::new_v4(),
                        email: to.clone(),
                        full_name: "Bulk".into(),
                    },
                    doctor: DoctorInfo {
                        id: Uuid::new_v4(),
                        full_name: "Dr. Bulk".into(),
                        specialty: "GP".into(),
                    },
                    clinic: ClinicInfo {
                        id: Uuid::new_v4(),
                        name: "Bulk".into(),
                        city: "Berlin".into(),
                        address: "1 A St".into(),
                        time_zone: "Europe/Berlin".into(),
                    },
                }),
            );
            (
                TOPIC_CREATED.to_owned(),
                Some(e.key().into_bytes()),
                e.encode().unwrap(),
            )
        })
        .collect();
    topics.produce(records).await;
    println!("\n== notification throughput: {count} waiting events, one consumer ==");
    let started = Instant::now();
    let (app, stop) = NotificationApp::build(&notifier_settings(&db, &topics, sink.smtp_port))
        .await
        .unwrap();
    let task = tokio::spawn(app.run_until_stopped());
    // Polled rarely: every poll makes maildev serialise thousands of emails, on the
    // same two cores as the system being measured.
    let deadline = Instant::now() + Duration::from_secs(600);
    let emails = loop {
        tokio::time::sleep(Duration::from_secs(2)).await;
        let emails = sink.emails_to(&to).await;
        if emails.len() >= count || Instant::now() > deadline {
            break emails;
        }
    };
    let wall = started.elapsed().as_secs_f64();
    let times: Vec<DateTime<Utc>> = emails.iter().map(received_at).collect();
    let first = *times.iter().min().unwrap();
    let last = *times.iter().max().unwrap();
    let span = (last - first).num_milliseconds() as f64 / 1000.0;
    println!(
        "{} emails; first to last accepted in {span:.2} s = {:.0} emails/s; {wall:.1} s from start (includes the ~3 s group join)",
        emails.len(),
        (emails.len() - 1) as f64 / span.max(0.001)
    );
    stop.stop();
    task.await.unwrap().unwrap();
}
