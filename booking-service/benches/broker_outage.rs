//! A broker outage longer than librdkafka's own delivery timeout, against a private
//! tansu broker paused with SIGSTOP (`./scripts/bench-broker-outage.sh`).
//!
//! With `message.timeout.ms` at librdkafka's default of 300 s and the broker paused for
//! `BENCH_OUTAGE_SECS` (default 330), every delivery in flight times out inside
//! librdkafka. Bookings made during the outage must still succeed, quickly, and every
//! event must reach the broker after it returns — from the outbox, not from
//! librdkafka's queue. Prints booking latency during the outage, the time from the
//! broker's return to the last event, and how many events were published twice.
//!
//! In smoke mode (`MEDBOOK_BENCH_SMOKE=1`) the same path at a smaller scale: a 5 s
//! outage beyond a 3 s delivery timeout (lease 4 s), 5 bookings, a 2 s settle.
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

#[path = "../../notification-service/tests/pipeline/booking.rs"]
mod booking;

use booking::BookingApp;
use medbook_test_support::bench;
use medbook_test_support::kafka::{PrivateBroker, TestTopics};
use serde_json::json;
use std::collections::HashSet;
use std::time::{Duration, Instant};

#[tokio::main]
async fn main() {
    // Delivery timeout and lease (ms), settle time and the bound of the final read (s).
    let (timeout_ms, lease_ms, settle, read_bound) =
        bench::smoke(("300000", "360000", 10, 600), ("3000", "4000", 2, 60));
    let outage = bench::size("BENCH_OUTAGE_SECS", 330, 5) as u64;
    let bookings = bench::size("BENCH_OUTAGE_BOOKINGS", 50, 5);
    bench::quiet_logs();
    let broker = PrivateBroker::start().await;
    let topics = TestTopics::create(&broker.brokers(), 3).await;
    // librdkafka's default delivery timeout, and a lease beyond it.
    let booking = BookingApp::start(
        &topics,
        &[
            ("MEDBOOK_OUTBOX__MESSAGE_TIMEOUT_MS", timeout_ms),
            ("MEDBOOK_OUTBOX__LEASE_MS", lease_ms),
        ],
    )
    .await;
    let admin = booking.admin().await;
    let doctor = booking
        .doctor(
            &admin,
            json!({"name": "O", "city": "Berlin", "address": "1 A St", "time_zone": "Europe/Berlin"}),
            "Dr. O",
            "GP",
        )
        .await;
    let slots = booking.slots(doctor["id"].as_str().unwrap(), bookings + 1);
    let patient = booking.patient("outage-patient@example.com", "P").await;
    let book = |slot: &str| {
        booking.post(
            "/api/v1/appointments",
            Some(&patient),
            json!({"slot_id": slot, "reason": "outage"}),
        )
    };
    book(&slots[0]).await;
    let mut reader = topics.reader(&["appointments.created"]).await;
    reader
        .read(1, Duration::from_secs(60), Duration::ZERO)
        .await;

    println!("\n== broker outage of {outage} s (message.timeout.ms = {timeout_ms}) ==");
    broker.pause();
    let paused = Instant::now();
    let mut latencies = Vec::new();
    for slot in &slots[1..] {
        let t = Instant::now();
        book(slot).await;
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
    let settle = Duration::from_secs(settle);
    let seen = reader
        .read(bookings + 1, Duration::from_secs(read_bound), settle)
        .await;
    let ids: HashSet<String> = seen
        .iter()
        .map(|r| r.json()["id"].as_str().unwrap().to_owned())
        .collect();
    println!(
        "broker back: all {} events on the topic within {:.1} s; {} messages in all, {} published twice (same event id)",
        ids.len(),
        (resumed.elapsed() - settle).as_secs_f64(),
        seen.len(),
        seen.len() - ids.len()
    );
    assert_eq!(ids.len(), bookings + 1, "an event was lost");
}
