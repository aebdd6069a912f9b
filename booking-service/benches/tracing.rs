//! Benchmark of the tracing cost: booking throughput and p99 latency with tracing off
//! beside tracing on (every span recorded, 100% sampling, exported over OTLP gRPC to
//! the receiver at `MEDBOOK_BENCH_OTLP_ENDPOINT`), in one run against the real
//! PostgreSQL (scratch database `medbook_bench_tracing`). The OpenTelemetry layer sits
//! behind a reload handle, so eight phases alternate in one process (off, on, off, …)
//! and drift falls on both sides. Prints each phase and the cost; the target is under
//! 10% of throughput. Run it with `./scripts/bench-tracing.sh`, which starts rotel;
//! without `MEDBOOK_BENCH_OTLP_ENDPOINT` the bench starts a rotel itself, as that script
//! does (`start_rotel` of scripts/lib/tracing.sh), and stops it at the end. In smoke mode
//! (`MEDBOOK_BENCH_SMOKE=1`) two phases (off, on) of 3 bookings per client.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    clippy::indexing_slicing,
    clippy::cast_possible_truncation,
    clippy::cast_possible_wrap,
    clippy::cast_sign_loss,
    clippy::cast_precision_loss,
    clippy::cast_lossless
)]

use booking_service::settings::Settings;
use booking_service::startup::Application;
use diesel::connection::SimpleConnection;
use diesel::{Connection, PgConnection, RunQueryDsl};
use medbook_shared::telemetry::{OtlpProtocol, TracingSettings};
use medbook_test_support::bench;
use opentelemetry::trace::TracerProvider as _;
use serde_json::{json, Value};
use std::time::{Duration, Instant};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// The OpenTelemetry layer over the filtered registry, switched on and off.
type OtelLayer = tracing_opentelemetry::OpenTelemetryLayer<
    tracing_subscriber::layer::Layered<tracing_subscriber::EnvFilter, tracing_subscriber::Registry>,
    opentelemetry_sdk::trace::SdkTracer,
>;

const CLIENTS: usize = 32;
const PER_CLIENT: usize = 40;
/// Phases, alternating off and on: eight, so that drift and noise fall on both sides.
const PHASES: usize = 8;
/// Smoke mode: bookings per client and phases.
const SMOKE_PER_CLIENT: usize = 3;
const SMOKE_PHASES: usize = 2;
const DB: &str = "medbook_bench_tracing";

#[derive(diesel::QueryableByName)]
struct Id {
    #[diesel(sql_type = diesel::sql_types::Uuid)]
    id: uuid::Uuid,
}

/// A rotel started by the bench, as scripts/bench-tracing.sh starts it (installed into
/// .tools/rotel-venv if missing); killed when dropped, a failed run included.
struct Rotel {
    pid: String,
    spans: std::path::PathBuf,
}

impl Rotel {
    /// Starts it on two free ports; returns it and its OTLP/gRPC endpoint.
    fn start() -> (Self, String) {
        let root = std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."));
        let grpc = medbook_test_support::free_port();
        let http = medbook_test_support::free_port();
        let out = std::process::Command::new("bash")
            .current_dir(root)
            .args([
                "-c",
                r#"source scripts/lib/common.sh; source scripts/lib/tracing.sh
                   start_rotel "$1" "$2" target/bench-tracing/spans.jsonl; echo "$ROTEL_PID""#,
                "bash",
                &grpc.to_string(),
                &http.to_string(),
            ])
            .stderr(std::process::Stdio::inherit())
            .output()
            .unwrap();
        assert!(out.status.success(), "rotel did not start");
        let pid = String::from_utf8(out.stdout).unwrap().trim().to_owned();
        let spans = root.join("target/bench-tracing/spans.jsonl");
        (Self { pid, spans }, format!("http://127.0.0.1:{grpc}"))
    }
}

impl Drop for Rotel {
    fn drop(&mut self) {
        let _ = std::process::Command::new("kill").arg(&self.pid).status();
    }
}

#[tokio::main]
async fn main() {
    let (per_client, phases) = bench::smoke((PER_CLIENT, PHASES), (SMOKE_PER_CLIENT, SMOKE_PHASES));
    let (rotel, endpoint) = match std::env::var("MEDBOOK_BENCH_OTLP_ENDPOINT") {
        Ok(endpoint) => (None, endpoint),
        Err(_) => {
            let (rotel, endpoint) = Rotel::start();
            (Some(rotel), endpoint)
        }
    };
    let provider = medbook_shared::telemetry::tracer_provider(
        "booking-service",
        &TracingSettings {
            otlp_endpoint: endpoint.clone(),
            otlp_protocol: OtlpProtocol::Grpc,
            sample_ratio: 1.0,
            ..TracingSettings::default()
        },
    )
    .unwrap();
    let (otel, switch) = tracing_subscriber::reload::Layer::new(None::<OtelLayer>);
    tracing_subscriber::registry()
        .with(tracing_subscriber::EnvFilter::new("info"))
        .with(otel)
        .init();
    opentelemetry::global::set_text_map_propagator(
        opentelemetry_sdk::propagation::TraceContextPropagator::new(),
    );

    let db_url = bench::scratch_db(DB);
    let settings: Settings = bench::settings([
        ("MEDBOOK_PROFILE", "dev"),
        ("MEDBOOK_AUTH__BCRYPT_COST", "4"),
        ("MEDBOOK_HTTP__ADDR", "127.0.0.1:0"),
        ("MEDBOOK_HTTP__OPS_ADDR", "127.0.0.1:0"),
        ("MEDBOOK_GRPC__ADDR", "127.0.0.1:0"),
        ("MEDBOOK_AUDIT__RELAY_ENABLED", "false"),
        ("MEDBOOK_OUTBOX__RELAY_ENABLED", "false"),
        ("MEDBOOK_ACCOUNTS__REQUESTS_PER_CLIENT", "100000"),
        ("MEDBOOK_ACCOUNTS__RESPONSE_FLOOR_MS", "0"),
        ("MEDBOOK_DATABASE__POOL_SIZE", "16"),
        ("MEDBOOK_BOOKING__MIN_NOTICE_MINUTES", "0"),
        ("MEDBOOK_BOOKING__MAX_ACTIVE_PER_PATIENT", "1000000"),
        // 20 000 slots at times of their own reach 417 days ahead.
        ("MEDBOOK_BOOKING__HORIZON_DAYS", "730"),
        ("MEDBOOK_DATABASE__URL", db_url.as_str()),
    ]);
    let app = Application::build(settings).await.unwrap();
    let base = format!("http://127.0.0.1:{}", app.port());
    tokio::spawn(app.run_until_stopped());

    let mut conn = PgConnection::establish(&db_url).unwrap();
    conn.batch_execute(
        "INSERT INTO clinics (id, name, city, address, time_zone)
           VALUES (gen_random_uuid(), 'Clinic', 'Berlin', '1 Main Street', 'Europe/Berlin');
         INSERT INTO doctors (id, full_name, specialty, clinic_id, status, rating_sum, rating_count)
           SELECT gen_random_uuid(), 'Dr. Bench ' || d, 'Cardiology', (SELECT id FROM clinics), 'active', 0, 0
           FROM generate_series(0, 199) d;
         -- Every slot at a time of its own: a patient never holds two overlapping
         -- appointments, and each client books many.
         INSERT INTO slots (id, doctor_id, starts_at, ends_at, status)
           SELECT gen_random_uuid(), d.id,
                  date_trunc('hour', now()) + interval '2 hours' + (d.n * 100 + s) * interval '30 minutes',
                  date_trunc('hour', now()) + interval '2 hours' + (d.n * 100 + s) * interval '30 minutes' + interval '30 minutes',
                  'available'
           FROM (SELECT id, row_number() OVER (ORDER BY id) - 1 AS n FROM doctors) d
           CROSS JOIN generate_series(0, 99) s;
         ANALYZE;",
    )
    .unwrap();
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(64)
        .build()
        .unwrap();
    let mut tokens = Vec::new();
    for i in 0..CLIENTS {
        let email = format!("bench{i}@example.com");
        let body = json!({"email": email, "password": "violin-meadow-42", "full_name": "Bench"});
        client
            .post(format!("{base}/api/v1/auth/register"))
            .json(&body)
            .send()
            .await
            .unwrap();
        let login: Value = client
            .post(format!("{base}/api/v1/auth/login"))
            .json(&json!({"email": email, "password": "violin-meadow-42"}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        tokens.push(login["access_token"].as_str().unwrap().to_owned());
    }
    conn.batch_execute("UPDATE users SET email_verified_at = now()")
        .unwrap();
    let mut slots: Vec<uuid::Uuid> = diesel::sql_query("SELECT id FROM slots ORDER BY random()")
        .load::<Id>(&mut conn)
        .unwrap()
        .into_iter()
        .map(|r| r.id)
        .collect();

    println!(
        "tracing bench: {phases} phases (off, on, ...) of {CLIENTS} clients x {per_client} bookings; spans to {endpoint}"
    );
    let mut results: Vec<(bool, f64, Duration)> = Vec::new();
    for on in (0..phases).map(|phase| phase % 2 == 1) {
        switch
            .reload(
                on.then(|| {
                    medbook_shared::telemetry::otel_layer(provider.tracer("booking-service"))
                }),
            )
            .unwrap();
        let batch: Vec<uuid::Uuid> = slots.drain(..CLIENTS * per_client).collect();
        let started = Instant::now();
        let tasks = tokens.iter().enumerate().map(|(i, token)| {
            let (client, base, token) = (client.clone(), base.clone(), token.clone());
            let mine: Vec<uuid::Uuid> = batch.iter().skip(i).step_by(CLIENTS).copied().collect();
            async move {
                let mut times = Vec::new();
                for slot in mine {
                    let t = Instant::now();
                    let res = client
                        .post(format!("{base}/api/v1/appointments"))
                        .bearer_auth(&token)
                        .json(&json!({"slot_id": slot}))
                        .send()
                        .await
                        .unwrap();
                    assert_eq!(res.status(), 201, "{}", res.text().await.unwrap());
                    times.push(t.elapsed());
                }
                times
            }
        });
        let mut times: Vec<Duration> = futures_util::future::join_all(tasks)
            .await
            .into_iter()
            .flatten()
            .collect();
        let secs = started.elapsed().as_secs_f64();
        times.sort();
        let p99 = times[((times.len() - 1) as f64 * 0.99).round() as usize];
        let rate = times.len() as f64 / secs;
        println!(
            "  tracing {:>3}: {rate:>6.0} bookings/s, p99 {:>6.1} ms",
            if on { "on" } else { "off" },
            p99.as_secs_f64() * 1000.0
        );
        results.push((on, rate, p99));
    }
    let mean = |on: bool, f: &dyn Fn(&(bool, f64, Duration)) -> f64| {
        let v: Vec<f64> = results.iter().filter(|r| r.0 == on).map(f).collect();
        v.iter().sum::<f64>() / v.len() as f64
    };
    let (off_rate, on_rate) = (mean(false, &|r| r.1), mean(true, &|r| r.1));
    let (off_p99, on_p99) = (
        mean(false, &|r| r.2.as_secs_f64() * 1000.0),
        mean(true, &|r| r.2.as_secs_f64() * 1000.0),
    );
    let cost = (1.0 - on_rate / off_rate) * 100.0;
    println!(
        "tracing off: {off_rate:.0} bookings/s, p99 {off_p99:.1} ms; on: {on_rate:.0} bookings/s, p99 {on_p99:.1} ms; throughput cost {cost:.1}% (target < 10%: {})",
        if cost < 10.0 { "met" } else { "NOT met" }
    );
    let _ = tokio::task::spawn_blocking(move || provider.shutdown()).await;
    if let Some(rotel) = rotel {
        // The receiver writes the last batch a moment later: up to 5 s for the file to
        // stop growing.
        let count = || {
            std::fs::read_to_string(&rotel.spans)
                .unwrap_or_default()
                .lines()
                .count()
        };
        let mut seen = count();
        for _ in 0..20 {
            tokio::time::sleep(Duration::from_millis(250)).await;
            let now = count();
            if now > 0 && now == seen {
                break;
            }
            seen = now;
        }
        println!("spans received: {seen}");
    }
}
