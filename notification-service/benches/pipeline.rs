//! Benchmark of the notification pipeline against the real services that
//! `./scripts/bench-pipeline.sh` starts (PostgreSQL, Redis, tansu, maildev):
//!
//! 1. end-to-end latency from the booking's HTTP response to the email accepted by the
//!    SMTP server, p50/p90/p99/max, at a steady booking rate (`BENCH_RATE` bookings/s
//!    for `BENCH_SECONDS`, defaults 20 and 20). "Accepted" is the `sent_at` the
//!    notification-service records right after the server's 250 reply;
//! 2. notification throughput: `BENCH_EMAILS` (default 3000) events already waiting on
//!    3 partitions, one notification-service instance, emails per second from the first
//!    accepted email to the last.
//!
//! booking-service and notification-service run in this process (release build),
//! against fresh databases and topics of their own.
//!
//! In smoke mode (`MEDBOOK_BENCH_SMOKE=1`, debug build under `cargo test --bench`):
//! both phases at a small scale (10 bookings at 5/s by 3 patients, 50 waiting events),
//! and a phase whose emails are not all accepted in time fails.
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
use medbook_shared::events::*;
use medbook_test_support::bench::{self, percentile};
use medbook_test_support::kafka::TestTopics;
use medbook_test_support::mail::Maildev;
use medbook_test_support::pg::TestDb;
use notification_service::startup::NotificationApp;
use serde_json::json;
use std::collections::HashMap;
use std::time::{Duration, Instant};
use support::doctor;
use uuid::Uuid;

/// The run's size: the `BENCH_*` tunables, else the defaults (small in smoke mode).
struct Size {
    smoke: bool,
    /// Latency: bookings per second, for this many seconds, by this many patients.
    rate: usize,
    seconds: usize,
    patients: usize,
    /// Throughput: events waiting.
    emails: usize,
    /// How long each phase's emails may take to be accepted, and how often the
    /// throughput phase asks the mail sink.
    latency_limit: Duration,
    throughput_limit: Duration,
    poll: Duration,
}

impl Size {
    fn get() -> Self {
        let smoke = medbook_test_support::bench_smoke();
        let secs = |full, small| Duration::from_secs(bench::smoke(full, small));
        Self {
            smoke,
            rate: bench::size("BENCH_RATE", 20, 5),
            seconds: bench::size("BENCH_SECONDS", 20, 2),
            patients: bench::smoke(20, 3),
            emails: bench::size("BENCH_EMAILS", 3000, 50),
            latency_limit: secs(120, 60),
            throughput_limit: secs(600, 120),
            poll: Duration::from_millis(bench::smoke(2000, 500)),
        }
    }
}

#[derive(QueryableByName)]
struct Sent {
    #[diesel(sql_type = diesel::sql_types::Uuid)]
    event_id: Uuid,
    #[diesel(sql_type = diesel::sql_types::Timestamptz)]
    sent_at: DateTime<Utc>,
}

/// When the SMTP server accepted each event's email.
fn sent_at(db: &TestDb) -> HashMap<Uuid, DateTime<Utc>> {
    diesel::sql_query(
        "SELECT event_id, sent_at FROM deliveries
         WHERE status = 'sent' AND event_type LIKE 'appointment.%'",
    )
    .load::<Sent>(&mut db.conn())
    .unwrap()
    .into_iter()
    .map(|r| (r.event_id, r.sent_at))
    .collect()
}

#[tokio::main]
async fn main() {
    bench::quiet_logs();
    let sink = Maildev::shared();
    let size = Size::get();
    latency(&sink, &size).await;
    throughput(&sink, &size).await;
}

async fn latency(sink: &Maildev, size: &Size) {
    let (rate, seconds) = (size.rate, size.seconds);
    let total = rate * seconds;
    let notify_db = TestDb::empty("bench_notify");
    let topics = TestTopics::shared(3).await;
    let booking = BookingApp::start(&topics, &[]).await;
    let (notifier, stop) =
        NotificationApp::build(&helpers::settings(&notify_db, &topics, sink.smtp_port))
            .await
            .unwrap();
    let notifier = tokio::spawn(notifier.run_until_stopped());

    let slots = booking.slots(&doctor(&booking).await, total + 1);
    let run = &Uuid::new_v4().simple().to_string()[..8];
    let mut patients = Vec::new();
    for i in 0..size.patients {
        let email = format!("bench{i}-{run}@example.com");
        patients.push((
            email.clone(),
            booking.patient(&email, &format!("Bench {i}")).await,
        ));
    }
    // Warm-up: the consumer has joined its group before the clock starts (the
    // patient's first email is the verification link).
    booking
        .post(
            "/api/v1/appointments",
            Some(&patients[0].1),
            json!({"slot_id": slots[0], "reason": "warm-up"}),
        )
        .await;
    sink.wait_for(&patients[0].0, 2, Duration::from_secs(60), Duration::ZERO)
        .await;

    println!("\n== end-to-end latency: booking response -> email accepted by SMTP ==");
    let mut ticks = tokio::time::interval(Duration::from_secs_f64(1.0 / rate as f64));
    let mut tasks = Vec::new();
    let started = Instant::now();
    let booking = std::sync::Arc::new(booking);
    for (i, slot) in slots.iter().enumerate().skip(1) {
        ticks.tick().await;
        let (booking, token) = (booking.clone(), patients[i % patients.len()].1.clone());
        let slot = slot.clone();
        tasks.push(tokio::spawn(async move {
            let body = booking
                .post(
                    "/api/v1/appointments",
                    Some(&token),
                    json!({"slot_id": slot, "reason": "bench"}),
                )
                .await;
            (
                body["id"].as_str().unwrap().parse::<Uuid>().unwrap(),
                Utc::now(),
            )
        }));
    }
    let mut responded: HashMap<Uuid, DateTime<Utc>> = HashMap::new();
    for t in tasks {
        let (id, at) = t.await.unwrap();
        responded.insert(id, at);
    }
    let booking_secs = started.elapsed().as_secs_f64();
    let deadline = Instant::now() + size.latency_limit;
    let sent = loop {
        let sent = sent_at(&notify_db);
        if sent.len() > total || Instant::now() > deadline {
            break sent;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert!(
        !size.smoke || sent.len() > total,
        "{} of {} emails accepted in {:?}",
        sent.len(),
        total + 1,
        size.latency_limit
    );
    #[derive(QueryableByName)]
    struct Event {
        #[diesel(sql_type = diesel::sql_types::Uuid)]
        id: Uuid,
        #[diesel(sql_type = diesel::sql_types::Uuid)]
        aggregate_id: Uuid,
    }
    let events = diesel::sql_query("SELECT id, aggregate_id FROM outbox_events")
        .load::<Event>(&mut booking.db.conn())
        .unwrap();
    let mut latencies: Vec<f64> = events
        .iter()
        .filter_map(|e| {
            let (done, asked) = (sent.get(&e.id)?, responded.get(&e.aggregate_id)?);
            Some((*done - *asked).num_microseconds()? as f64 / 1000.0)
        })
        .collect();
    latencies.sort_by(f64::total_cmp);
    println!(
        "{} bookings at {rate}/s over {booking_secs:.1} s; {} emails accepted",
        responded.len(),
        latencies.len()
    );
    println!(
        "latency ms: p50 {:.1}  p90 {:.1}  p99 {:.1}  max {:.1}",
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.9),
        percentile(&latencies, 0.99),
        latencies.last().copied().unwrap_or_default()
    );
    stop.stop();
    notifier.await.unwrap().unwrap();
    std::sync::Arc::into_inner(booking).unwrap().stop().await;
}

async fn throughput(sink: &Maildev, size: &Size) {
    let count = size.emails;
    let db = TestDb::empty("bench_notify");
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
                    version: 1,
                    manage_url: None,
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
    let (app, stop) = NotificationApp::build(&helpers::settings(&db, &topics, sink.smtp_port))
        .await
        .unwrap();
    let task = tokio::spawn(app.run_until_stopped());
    // Polled rarely: every poll makes maildev serialise thousands of emails, on the
    // same two cores as the system being measured.
    let deadline = Instant::now() + size.throughput_limit;
    let emails = loop {
        tokio::time::sleep(size.poll).await;
        let emails = sink.emails_to(&to).await;
        if emails.len() >= count || Instant::now() > deadline {
            break emails;
        }
    };
    assert!(
        !size.smoke || emails.len() >= count,
        "{} of {count} emails in the mail sink in {:?}",
        emails.len(),
        size.throughput_limit
    );
    let wall = started.elapsed().as_secs_f64();
    let sent = sent_at(&db);
    let first = *sent.values().min().unwrap();
    let last = *sent.values().max().unwrap();
    let span = (last - first).num_milliseconds() as f64 / 1000.0;
    println!(
        "{} emails in the mail sink; first to last accepted in {span:.2} s = {:.0} emails/s; {wall:.1} s from start (includes the ~3 s group join)",
        emails.len(),
        (sent.len() - 1) as f64 / span.max(0.001)
    );
    stop.stop();
    task.await.unwrap().unwrap();
}
