//! What the notification-service's benchmarks share: tunables, percentiles, a doctor.
// Each benchmark uses a different part of it.
#![allow(dead_code)]

use crate::booking::BookingApp;
use serde_json::json;

/// A doctor in a Berlin clinic, created by a fresh admin; its id.
pub async fn doctor(booking: &BookingApp) -> String {
    let admin = booking.admin().await;
    let doctor = booking
        .doctor(
            &admin,
            json!({"name": "Bench", "city": "Berlin", "address": "1 A St", "time_zone": "Europe/Berlin"}),
            "Dr. Bench",
            "GP",
        )
        .await;
    doctor["id"].as_str().unwrap().to_owned()
}

/// A tunable from the environment, or its default.
pub fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A size of the bench: the `BENCH_*` variable `name` when set, else `full`, or
/// `small` in smoke mode (`MEDBOOK_BENCH_SMOKE=1`).
pub fn size(name: &str, full: usize, small: usize) -> usize {
    env_usize(name, smoke(full, small))
}

/// `full`, or `small` in smoke mode.
pub fn smoke<T>(full: T, small: T) -> T {
    if medbook_test_support::bench_smoke() {
        small
    } else {
        full
    }
}

/// The `p` quantile of sorted values (nearest rank).
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}
