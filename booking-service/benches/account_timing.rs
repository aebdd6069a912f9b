//! Do login, password reset and registration take the same time for an address that
//! has an account and for one that has not? Against the real PostgreSQL and HTTP server
//! (release build, production bcrypt cost 12, the default `accounts.response_floor_ms`
//! of 400 ms, its own scratch database `medbook_bench_accounts`).
//!
//! Prints, for each endpoint, the median, p90 and mean latency of `BENCH_ROUNDS`
//! (default 30) sequential requests with a known and with an unknown address,
//! interleaved, and the difference of the medians. The e-mail rate limits are raised
//! so every request does its full work (a limited request would be faster). In smoke
//! mode (`MEDBOOK_BENCH_SMOKE=1`) 2 rounds by default.
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

use booking_service::settings::Settings;
use booking_service::startup::Application;
use medbook_test_support::bench;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

const DB: &str = "medbook_bench_accounts";

/// The request body of round `i`, for the known address or an unknown one.
type BodyOf = Box<dyn Fn(bool, usize) -> Value>;

fn stats(mut d: Vec<Duration>) -> (f64, f64, f64) {
    d.sort();
    let ms = |x: Duration| x.as_secs_f64() * 1000.0;
    let p = |q: f64| ms(d[((d.len() as f64 - 1.0) * q).round() as usize]);
    let mean = d.iter().map(|x| ms(*x)).sum::<f64>() / d.len() as f64;
    (p(0.5), p(0.9), mean)
}

async fn timed(client: &reqwest::Client, url: &str, body: Value) -> (Duration, u16) {
    let started = Instant::now();
    let res = client.post(url).json(&body).send().await.unwrap();
    let status = res.status().as_u16();
    let _ = res.bytes().await;
    (started.elapsed(), status)
}

#[tokio::main]
async fn main() {
    let rounds = bench::size("BENCH_ROUNDS", 30, 2);
    let settings: Settings = bench::settings([
        ("MEDBOOK_PROFILE", "dev".to_owned()),
        ("MEDBOOK_AUTH__BCRYPT_COST", "12".to_owned()),
        ("MEDBOOK_HTTP__ADDR", "127.0.0.1:0".to_owned()),
        ("MEDBOOK_HTTP__OPS_ADDR", "127.0.0.1:0".to_owned()),
        ("MEDBOOK_GRPC__ADDR", "127.0.0.1:0".to_owned()),
        ("MEDBOOK_AUDIT__RELAY_ENABLED", "false".to_owned()),
        ("MEDBOOK_OUTBOX__RELAY_ENABLED", "false".to_owned()),
        ("MEDBOOK_ACCOUNTS__EMAILS_PER_ADDRESS", "1000000".to_owned()),
        (
            "MEDBOOK_ACCOUNTS__REQUESTS_PER_CLIENT",
            "1000000".to_owned(),
        ),
        (
            "MEDBOOK_AUTH__LOGIN__MAX_FAILURES_PER_ACCOUNT",
            "1000000".to_owned(),
        ),
        (
            "MEDBOOK_AUTH__LOGIN__MAX_FAILURES_PER_CLIENT",
            "1000000".to_owned(),
        ),
        ("MEDBOOK_LOG__LEVEL", "error".to_owned()),
        ("MEDBOOK_DATABASE__URL", bench::scratch_db(DB)),
    ]);
    let floor = settings.accounts.response_floor_ms;
    let app = Application::build(settings).await.unwrap();
    let base = format!("http://127.0.0.1:{}", app.port());
    tokio::spawn(app.run_until_stopped());
    let client = reqwest::Client::new();
    let register = format!("{base}/api/v1/auth/register");
    let known = "known@example.com";
    let (_, status) = timed(
        &client,
        &register,
        json!({"email": known, "password": "plum-violin-42", "full_name": "Known Patient"}),
    )
    .await;
    assert_eq!(status, 202);
    println!(
        "bcrypt cost 12, accounts.response_floor_ms {floor}, {rounds} rounds per case, known and unknown interleaved"
    );

    let cases: [(&str, &str, BodyOf); 3] = [
        (
            "POST /api/v1/auth/login (wrong password)",
            "/api/v1/auth/login",
            Box::new(|is_known, i| {
                let email = if is_known {
                    known.to_owned()
                } else {
                    format!("nobody{i}@example.com")
                };
                json!({"email": email, "password": "not-the-password-1"})
            }),
        ),
        (
            "POST /api/v1/auth/password-reset",
            "/api/v1/auth/password-reset",
            Box::new(|is_known, i| {
                let email = if is_known {
                    known.to_owned()
                } else {
                    format!("nobody{i}@example.com")
                };
                json!({"email": email})
            }),
        ),
        (
            "POST /api/v1/auth/register",
            "/api/v1/auth/register",
            Box::new(|is_known, i| {
                let email = if is_known {
                    known.to_owned()
                } else {
                    format!("new{i}@example.com")
                };
                json!({"email": email, "password": "other-violin-43", "full_name": "Someone Else"})
            }),
        ),
    ];
    for (label, path, body) in cases {
        let url = format!("{base}{path}");
        let (mut k, mut u) = (Vec::new(), Vec::new());
        for i in 0..rounds {
            let (d, s) = timed(&client, &url, body(true, i)).await;
            assert!(s < 500, "{label}: {s}");
            k.push(d);
            let (d, s) = timed(&client, &url, body(false, i)).await;
            assert!(s < 500, "{label}: {s}");
            u.push(d);
        }
        let (k50, k90, kmean) = stats(k);
        let (u50, u90, umean) = stats(u);
        println!("{label}");
        println!("    known:   p50 {k50:7.1} ms  p90 {k90:7.1} ms  mean {kmean:7.1} ms");
        println!("    unknown: p50 {u50:7.1} ms  p90 {u90:7.1} ms  mean {umean:7.1} ms");
        println!("    difference of medians: {:+.1} ms", k50 - u50);
    }
    bench::drop_scratch_db(DB);
}
