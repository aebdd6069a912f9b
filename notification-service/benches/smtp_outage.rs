//! Benchmark of the notification pipeline's recovery, against the real services that
//! `./scripts/bench-smtp-outage.sh` starts (PostgreSQL, Redis, tansu, maildev):
//!
//! 1. **SMTP outage**: patients book at `BENCH_RATE` bookings/s (default 20) while the
//!    mail server is down for `BENCH_OUTAGE_SECONDS` (default 120). Printed: how long
//!    after the server is back the whole backlog is accepted, and emails/s while it
//!    drains. The notification-service runs on its default settings.
//! 2. **Reminders**: `BENCH_REMINDERS` (default 1000) booked appointments whose
//!    reminders all fall due at one instant. Printed: reminders/s from due to accepted
//!    by SMTP (scheduler → outbox → relay → Kafka → consumer → SMTP), and the
//!    per-reminder latency p50/p99/max.
//!
//! booking-service and notification-service run in this process (release build),
//! against fresh databases and topics of their own.
//!
//! In smoke mode (`MEDBOOK_BENCH_SMOKE=1`, debug build under `cargo test --bench`):
//! both phases at a small scale (a 3 s outage at 5 bookings/s by 3 patients, 20
//! reminders) and shorter bounds on the waits.
#![allow(
    clippy::unwrap_used, clippy::expect_used, clippy::print_stdout,
    // Tests and benchmarks index and cast freely: a panic there is a failed run.
    clippy::indexing_slicing,
    clippy::cast_possible_truncation,
    clippy::cast_possible_wrap,
    clippy::cast_sign_loss,
    clippy::cast_precision_loss,
    clippy::cast_lossless
)]

#[path = "../tests/pipeline/booking.rs"]
mod booking;
#[path = "../tests/pipeline/helpers.rs"]
#[allow(dead_code)]
mod helpers;
mod support;

use booking::BookingApp;
use chrono::{DateTime, Utc};
use diesel::{QueryableByName, RunQueryDsl};
use medbook_test_support::bench::{self, percentile};
use medbook_test_support::kafka::TestTopics;
use medbook_test_support::mail::Maildev;
use medbook_test_support::pg::TestDb;
use notification_service::startup::NotificationApp;
use serde_json::json;
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::doctor;
use uuid::Uuid;

/// The run's size: the `BENCH_*` tunables, else the defaults (small in smoke mode).
struct Size {
    /// Outage: bookings per second while the mail server is down for this many
    /// seconds, by this many patients.
    rate: usize,
    outage_seconds: usize,
    patients: usize,
    /// Reminders due at once.
    reminders: usize,
    /// Bounds on the waits for emails: the backlog's, and the reminders' (for their
    /// bookings' emails, then for themselves).
    drain: Duration,
    booked: Duration,
    reminded: Duration,
}

impl Size {
    fn get() -> Self {
        let secs = |full, small| Duration::from_secs(bench::smoke(full, small));
        Self {
            rate: bench::size("BENCH_RATE", 20, 5),
            outage_seconds: bench::size("BENCH_OUTAGE_SECONDS", 120, 3),
            patients: bench::smoke(20, 3),
            reminders: bench::size("BENCH_REMINDERS", 1000, 20),
            drain: secs(900, 60),
            booked: secs(300, 60),
            reminded: secs(600, 60),
        }
    }
}

fn execute(db: &TestDb, sql: &str) {
    diesel::sql_query(sql).execute(&mut db.conn()).unwrap();
}

#[derive(QueryableByName)]
struct Sent {
    #[diesel(sql_type = diesel::sql_types::Timestamptz)]
    sent_at: DateTime<Utc>,
}

/// Accepted emails of `event_type` (all types when `None`), in order of acceptance.
fn sent(db: &TestDb, event_type: Option<&str>) -> Vec<DateTime<Utc>> {
    let filter = event_type.map_or(String::new(), |t| format!("AND event_type = '{t}'"));
    diesel::sql_query(format!(
        "SELECT sent_at FROM deliveries WHERE status = 'sent' {filter} ORDER BY sent_at"
    ))
    .load::<Sent>(&mut db.conn())
    .unwrap()
    .into_iter()
    .map(|r| r.sent_at)
    .collect()
}

async fn wait_for_sent(db: &TestDb, event_type: Option<&str>, n: usize, limit: Duration) {
    let deadline = Instant::now() + limit;
    while sent(db, event_type).len() < n {
        assert!(
            Instant::now() < deadline,
            "not all {n} emails sent in {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A booking-service with a doctor, `patients` patients and `slots` slots.
async fn practice(
    booking: &BookingApp,
    patients: usize,
    slots: usize,
) -> (Vec<String>, Vec<(String, String)>) {
    let slots = booking.slots(&doctor(booking).await, slots);
    let run = &Uuid::new_v4().simple().to_string()[..8];
    let mut out = Vec::new();
    for i in 0..patients {
        let email = format!("outage{i}-{run}@example.com");
        let token = booking.patient(&email, &format!("Bench {i}")).await;
        out.push((email, token));
    }
    (slots, out)
}

#[tokio::main]
async fn main() {
    bench::quiet_logs();
    let size = Size::get();
    outage(&size).await;
    reminders(&size).await;
}

async fn outage(size: &Size) {
    let (rate, seconds) = (size.rate, size.outage_seconds);
    let notify_db = TestDb::empty("bench_outage");
    let topics = TestTopics::shared(3).await;
    let mut sink = Maildev::start(None).await;
    let port = sink.smtp_port;
    let booking = BookingApp::start(&topics, &[]).await;
    let (notifier, stop) =
        NotificationApp::build(&helpers::default_settings(&notify_db, &topics, port))
            .await
            .unwrap();
    let notifier_http = format!("http://127.0.0.1:{}", notifier.http_port());
    let notifier = tokio::spawn(notifier.run_until_stopped());
    let (slots, patients) = practice(&booking, size.patients, rate * seconds + 1).await;
    let book = |booking: Arc<BookingApp>, token: String, slot: String| async move {
        booking
            .post(
                "/api/v1/appointments",
                Some(&token),
                json!({"slot_id": slot, "reason": "bench"}),
            )
            .await;
    };
    let booking = Arc::new(booking);
    // Warm-up: joined and sending. Only booking emails are counted (not the patients'
    // verification links).
    const CREATED: Option<&str> = Some("appointment.created");
    book(booking.clone(), patients[0].1.clone(), slots[0].clone()).await;
    wait_for_sent(&notify_db, CREATED, 1, Duration::from_secs(60)).await;

    println!("\n== SMTP outage: {seconds} s down at {rate} bookings/s ==");
    sink.stop();
    let mut ticks = tokio::time::interval(Duration::from_secs_f64(1.0 / rate as f64));
    let mut tasks = Vec::new();
    for (i, slot) in slots.iter().enumerate().skip(1) {
        ticks.tick().await;
        let token = patients[i % patients.len()].1.clone();
        tasks.push(tokio::spawn(book(booking.clone(), token, slot.clone())));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let backlog = slots.len() - 1;
    let recovered_at = Utc::now();
    let recovered = Instant::now();
    let _sink = Maildev::start(Some(port)).await;
    wait_for_sent(&notify_db, CREATED, backlog + 1, size.drain).await;
    let drained = recovered.elapsed().as_secs_f64();
    let times = sent(&notify_db, CREATED);
    let after: Vec<_> = times.iter().filter(|t| **t >= recovered_at).collect();
    let span = (**after.last().unwrap() - **after.first().unwrap())
        .num_microseconds()
        .unwrap() as f64
        / 1e6;
    let mut dead_lettered = 0.0;
    for reason in ["poison", "permanent", "expired"] {
        dead_lettered += helpers::metric(
            &notifier_http,
            &format!("emails_dead_lettered_total{{reason=\"{reason}\"}}"),
        )
        .await;
    }
    println!("{backlog} bookings during the outage; {dead_lettered} emails dead-lettered");
    println!(
        "backlog delivered {drained:.1} s after the server was restarted (first email after {:.1} s)",
        (**after.first().unwrap() - recovered_at)
            .num_milliseconds()
            .max(0) as f64
            / 1000.0
    );
    println!(
        "draining: {:.0} emails/s ({} emails, first to last in {span:.2} s)",
        after.len() as f64 / span.max(0.001),
        after.len()
    );
    stop.stop();
    notifier.await.unwrap().unwrap();
    Arc::into_inner(booking).unwrap().stop().await;
}

async fn reminders(size: &Size) {
    let n = size.reminders;
    let notify_db = TestDb::empty("bench_reminders");
    let topics = TestTopics::shared(3).await;
    let sink = Maildev::shared();
    let booking = BookingApp::start(
        &topics,
        &[
            ("MEDBOOK_REMINDERS__OFFSETS", "24h"),
            ("MEDBOOK_REMINDERS__POLL_INTERVAL_MS", "200"),
        ],
    )
    .await;
    let (notifier, stop) = NotificationApp::build(&helpers::default_settings(
        &notify_db,
        &topics,
        sink.smtp_port,
    ))
    .await
    .unwrap();
    let notifier = tokio::spawn(notifier.run_until_stopped());
    // Slots from 30 hours ahead: each booking schedules its 24 h reminder.
    let doctor_id = doctor(&booking).await;
    execute(&booking.db, &format!(
        "INSERT INTO slots (id, doctor_id, starts_at, ends_at, status)
         SELECT gen_random_uuid(), '{doctor_id}',
                date_trunc('minute', now()) + interval '30 hours' + i * interval '30 minutes',
                date_trunc('minute', now()) + interval '30 hours' + i * interval '30 minutes' + interval '30 minutes',
                'available'
         FROM generate_series(0, {}) AS i",
        n - 1
    ));
    #[derive(QueryableByName)]
    struct Id {
        #[diesel(sql_type = diesel::sql_types::Uuid)]
        id: Uuid,
    }
    let slots: Vec<Id> = diesel::sql_query(format!(
        "SELECT id FROM slots WHERE doctor_id = '{doctor_id}' ORDER BY starts_at"
    ))
    .load(&mut booking.db.conn())
    .unwrap();
    let email = format!(
        "reminded-{}@example.com",
        &Uuid::new_v4().simple().to_string()[..8]
    );
    let token = booking.patient(&email, "Reminded").await;
    for s in &slots {
        booking
            .post(
                "/api/v1/appointments",
                Some(&token),
                json!({"slot_id": s.id, "reason": "bench"}),
            )
            .await;
    }
    wait_for_sent(&notify_db, Some("appointment.created"), n, size.booked).await;

    println!("\n== reminders: {n} due at once, due -> accepted by SMTP ==");
    // The clock moves on: every reminder is due now.
    let due_at = Utc::now();
    execute(
        &booking.db,
        &format!(
            "UPDATE appointment_reminders SET due_at = '{}' WHERE published_at IS NULL",
            due_at.to_rfc3339()
        ),
    );
    wait_for_sent(&notify_db, Some("appointment.reminder"), n, size.reminded).await;
    let times = sent(&notify_db, Some("appointment.reminder"));
    let mut latencies: Vec<f64> = times
        .iter()
        .map(|t| (*t - due_at).num_microseconds().unwrap() as f64 / 1e6)
        .collect();
    latencies.sort_by(f64::total_cmp);
    let last = latencies.last().copied().unwrap_or_default();
    println!(
        "{n} reminders in {last:.2} s: {:.0} reminders/s from due to accepted",
        n as f64 / last.max(0.001)
    );
    println!(
        "due -> accepted s: p50 {:.2}  p99 {:.2}  max {:.2}",
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99),
        last
    );
    stop.stop();
    notifier.await.unwrap().unwrap();
    booking.stop().await;
}
