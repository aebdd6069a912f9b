//! A broker outage longer than librdkafka's own delivery timeout, against a private
//! tansu broker paused with SIGSTOP (`./scripts/bench-broker-outage.sh`).
//!
//! With `message.timeout.ms` at librdkafka's default of 300 s and the broker paused for
//! `BENCH_OUTAGE_SECS` (default 330), every delivery in flight times out inside
//! librdkafka. Bookings made during the outage must still succeed, quickly, and every
//! event must reach the broker after it returns — from the outbox, not from
//! librdkafka's queue. Prints booking latency during the outage, the time from the
//! broker's return to the last event, and how many events were published twice.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use booking_service::domain::{Email, FullName, Password};
use booking_service::service::auth::Registration;
use booking_service::startup::{Application, Services};
use medbook_shared::config_loader::ConfigSources;
use medbook_test_support::kafka::{PrivateBroker, TestTopics};
use medbook_test_support::pg::FreshDb;
use serde_json::{json, Value};
use std::collections::HashSet;
use std::time::{Duration, Instant};

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
    let outage: u64 = std::env::var("BENCH_OUTAGE_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(330);
    let bookings: usize = std::env::var("BENCH_OUTAGE_BOOKINGS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50);
    medbook_shared::telemetry::init(
        "bench",
        "error",
        medbook_shared::telemetry::LogOutput::Stderr,
    );
    let broker = PrivateBroker::start().await;
    let topics = TestTopics::create(&broker.brokers(), 3).await;
    let db = FreshDb::create("bench_outage");
    let env = [
        ("MEDBOOK_PROFILE", "dev".to_owned()),
        ("MEDBOOK_AUTH__BCRYPT_COST", "4".to_owned()),
        ("MEDBOOK_HTTP__ADDR", "127.0.0.1:0".to_owned()),
        ("MEDBOOK_DATABASE__URL", db.url()),
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
        // librdkafka's default delivery timeout, and a lease beyond it.
        ("MEDBOOK_OUTBOX__MESSAGE_TIMEOUT_MS", "300000".to_owned()),
        ("MEDBOOK_OUTBOX__LEASE_MS", "360000".to_owned()),
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
    let client = reqwest::Client::new();
    Services::build(&settings)
        .await
        .unwrap()
        .auth
        .create_admin(Registration {
            email: Email::parse("outage-admin@example.com").unwrap(),
            password: Password::parse("admin password").unwrap(),
            full_name: FullName::parse("Admin").unwrap(),
            birth_date: None,
            gender: None,
            phone: None,
        })
        .await
        .unwrap();
    let login = |email: &'static str, pw: &'static str| {
        let (client, base) = (client.clone(), base.clone());
        async move {
            call(
                &client,
                &base,
                "/api/v1/auth/login",
                None,
                json!({"email": email, "password": pw}),
            )
            .await["access_token"]
                .as_str()
                .unwrap()
                .to_owned()
        }
    };
    let admin = login("outage-admin@example.com", "admin password").await;
    let clinic = call(
        &client,
        &base,
        "/api/v1/clinics",
        Some(&admin),
        json!({"name": "O", "city": "Berlin", "address": "1 A St", "time_zone": "Europe/Berlin"}),
    )
    .await;
    let doctor = call(&client, &base, "/api/v1/doctors", Some(&admin), json!({"full_name": "Dr. O", "specialty": "GP", "clinic_id": clinic["id"], "years_of_experience": 1})).await;
    let path = format!("/api/v1/doctors/{}/slots", doctor["id"].as_str().unwrap());
    let mut slots = Vec::new();
    for i in 0..=bookings as i64 {
        let start =
            chrono::Utc::now() + chrono::Duration::hours(2) + chrono::Duration::minutes(30 * i);
        let s = call(&client, &base, &path, Some(&admin), json!({"starts_at": start.to_rfc3339(), "ends_at": (start + chrono::Duration::minutes(30)).to_rfc3339()})).await;
        slots.push(s["id"].as_str().unwrap().to_owned());
    }
    call(&client, &base, "/api/v1/auth/register", None, json!({"email": "outage-patient@example.com", "password": "patient password", "full_name": "P"})).await;
    let patient = login("outage-patient@example.com", "patient password").await;
    call(
        &client,
        &base,
        "/api/v1/appointments",
        Some(&patient),
        json!({"slot_id": slots[0], "reason": "warm-up"}),
    )
    .await;
    let mut reader = topics.reader(&["appointments.created"]).await;
    reader
        .read(1, Duration::from_secs(60), Duration::ZERO)
        .await;

    println!("\n== broker outage of {outage} s (message.timeout.ms = 300000) ==");
    broker.pause();
    let paused = Instant::now();
    let mut latencies = Vec::new();
    for slot in &slots[1..] {
        let t = Instant::now();
        call(
            &client,
            &base,
            "/api/v1/appointments",
            Some(&patient),
            json!({"slot_id": slot, "reason": "during outage"}),
        )
        .await;
        latencies.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    latencies.sort_by(f64::total_cmp);
    println!(
        "{} bookings during the outage, all 201: p50 {:.1} ms, max {:.1} ms",
        latencies.len(),
        latencies[latencies.len() / 2],
        latencies.last().unwrap()
    );
    let left = Duration::from_secs(outage).saturating_sub(paused.elapsed());
    tokio::time::sleep(left).await;
    broker.resume();
    let resumed = Instant::now();
    let seen = reader
        .read(
            bookings + 1,
            Duration::from_secs(600),
            Duration::from_secs(10),
        )
        .await;
    let ids: HashSet<String> = seen
        .iter()
        .map(|r| r.json()["id"].as_str().unwrap().to_owned())
        .collect();
    println!(
        "broker back: all {} events on the topic {:.1} s later; {} messages in all, {} published twice (same event id)",
        ids.len(),
        resumed.elapsed().as_secs_f64() - 10.0,
        seen.len(),
        seen.len() - ids.len()
    );
    assert_eq!(ids.len(), bookings + 1, "an event was lost");
}
