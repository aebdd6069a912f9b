//! Benchmark of the gRPC ScheduleService against the real PostgreSQL (release build, its
//! own scratch database `medbook_bench_grpc`). Prints:
//! 1. `GetAvailableSlots` requests/s beside `GET /api/v1/doctors/{id}/slots` on the same
//!    doctor and slots, 8 concurrent clients each, for `BENCH_SECS` (default 5) each;
//! 2. booking throughput (16 concurrent clients) without day watchers, then with 100
//!    watchers of the booked doctor's day;
//! 3. for the run with watchers, the latency from sending a booking to each watcher's
//!    message about it, p50/p99 (an upper bound of commit-to-message: the commit lies
//!    between the two).
//!
//! In smoke mode (`MEDBOOK_BENCH_SMOKE=1`): listings for 1 s each, and 64 slots to book
//! instead of 1200.
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
use diesel::connection::SimpleConnection;
use diesel::{Connection, PgConnection, RunQueryDsl};
use medbook_proto::schedule::v1 as pb;
use medbook_proto::schedule::v1::schedule_service_client::ScheduleServiceClient;
use medbook_test_support::bench::{self, percentile};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_stream::StreamExt;

const DB: &str = "medbook_bench_grpc";
const WATCHERS: usize = 100;
const BOOKERS: usize = 16;
/// One-minute slots of one doctor on one day: room for both booking runs.
const SLOTS: i64 = 1200;

#[derive(diesel::QueryableByName)]
struct Id {
    #[diesel(sql_type = diesel::sql_types::Uuid)]
    id: uuid::Uuid,
}

/// Runs `job` from `clients` tasks for `secs`; returns calls per second.
async fn rate<F, Fut>(clients: usize, secs: u64, job: F) -> f64
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let job = Arc::new(job);
    let until = Instant::now() + Duration::from_secs(secs);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let job = job.clone();
        tasks.push(tokio::spawn(async move {
            let mut n = 0u64;
            while Instant::now() < until {
                job().await;
                n += 1;
            }
            n
        }));
    }
    let mut total = 0;
    for t in tasks {
        total += t.await.unwrap();
    }
    total as f64 / started.elapsed().as_secs_f64()
}

/// Books every slot of `slots` from `BOOKERS` clients; returns bookings/s and when each
/// booking's request was sent.
async fn book_all(
    base: &str,
    tokens: &[String],
    slots: Vec<String>,
) -> (f64, HashMap<String, Instant>) {
    let client = reqwest::Client::new();
    let queue = Arc::new(Mutex::new(slots));
    let sent = Arc::new(Mutex::new(HashMap::new()));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for token in tokens.iter().take(BOOKERS) {
        let (client, queue, sent) = (client.clone(), queue.clone(), sent.clone());
        let token = token.clone();
        let base = base.to_owned();
        tasks.push(tokio::spawn(async move {
            loop {
                let Some(slot) = queue.lock().unwrap().pop() else {
                    return;
                };
                let at = Instant::now();
                let res = client
                    .post(format!("{base}/api/v1/appointments"))
                    .bearer_auth(&token)
                    .json(&json!({"slot_id": slot, "reason": "bench"}))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(res.status(), 201);
                let body: Value = res.json().await.unwrap();
                sent.lock()
                    .unwrap()
                    .insert(body["id"].as_str().unwrap().to_owned(), at);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let elapsed = started.elapsed().as_secs_f64();
    let sent = Arc::try_unwrap(sent).unwrap().into_inner().unwrap();
    (sent.len() as f64 / elapsed, sent)
}

#[tokio::main]
async fn main() {
    let secs = bench::size("BENCH_SECS", 5, 1) as u64;
    let slot_count = bench::smoke(SLOTS, 64);
    let db_url = bench::scratch_db(DB);
    let settings: Settings = bench::settings([
        ("MEDBOOK_PROFILE", "dev".to_owned()),
        ("MEDBOOK_AUTH__BCRYPT_COST", "4".to_owned()),
        ("MEDBOOK_HTTP__ADDR", "127.0.0.1:0".to_owned()),
        ("MEDBOOK_HTTP__OPS_ADDR", "127.0.0.1:0".to_owned()),
        ("MEDBOOK_GRPC__ADDR", "127.0.0.1:0".to_owned()),
        ("MEDBOOK_ACCOUNTS__REQUESTS_PER_CLIENT", "100000".to_owned()),
        ("MEDBOOK_ACCOUNTS__RESPONSE_FLOOR_MS", "0".to_owned()),
        ("MEDBOOK_DATABASE__URL", db_url.clone()),
        ("MEDBOOK_DATABASE__POOL_SIZE", "16".to_owned()),
        ("MEDBOOK_BOOKING__MIN_NOTICE_MINUTES", "0".to_owned()),
        (
            "MEDBOOK_BOOKING__MAX_ACTIVE_PER_PATIENT",
            "1000000".to_owned(),
        ),
        ("MEDBOOK_OUTBOX__RELAY_ENABLED", "false".to_owned()),
        ("MEDBOOK_AUDIT__RELAY_ENABLED", "false".to_owned()),
        ("MEDBOOK_REMINDERS__SCHEDULER_ENABLED", "false".to_owned()),
        ("MEDBOOK_LOG__LEVEL", "error".to_owned()),
    ]);
    let app = Application::build(settings).await.unwrap();
    let base = format!("http://127.0.0.1:{}", app.port());
    let grpc = format!("http://127.0.0.1:{}", app.grpc_port().unwrap());
    tokio::spawn(app.run_until_stopped());

    // One clinic in UTC; doctor A with 40 slots over the next days (the listings),
    // doctor B with one-minute slots tomorrow (the bookings and the watched day).
    let tomorrow = (chrono::Utc::now() + chrono::Duration::days(1)).date_naive();
    let mut conn = PgConnection::establish(&db_url).unwrap();
    conn.batch_execute(&format!(
        "INSERT INTO clinics (id, name, city, address, time_zone)
           VALUES ('00000000-0000-0000-0000-00000000c001', 'Bench Clinic', 'London', '1 Road', 'UTC');
         INSERT INTO doctors (id, full_name, specialty, clinic_id, status)
           VALUES ('00000000-0000-0000-0000-00000000d001', 'Dr. Listing', 'Cardiology', '00000000-0000-0000-0000-00000000c001', 'active'),
                  ('00000000-0000-0000-0000-00000000d002', 'Dr. Booking', 'Cardiology', '00000000-0000-0000-0000-00000000c001', 'active');
         INSERT INTO slots (id, doctor_id, starts_at, ends_at, status)
           SELECT gen_random_uuid(), '00000000-0000-0000-0000-00000000d001',
                  date_trunc('hour', now()) + interval '2 hours' + s * interval '4 hours',
                  date_trunc('hour', now()) + interval '2 hours' + s * interval '4 hours' + interval '30 minutes', 'available'
           FROM generate_series(0, 39) s;
         INSERT INTO slots (id, doctor_id, starts_at, ends_at, status)
           SELECT gen_random_uuid(), '00000000-0000-0000-0000-00000000d002',
                  '{tomorrow}T00:00:00Z'::timestamptz + s * interval '1 minute',
                  '{tomorrow}T00:00:00Z'::timestamptz + (s + 1) * interval '1 minute', 'available'
           FROM generate_series(0, {last}) s;
         ANALYZE;",
        last = slot_count - 1
    ))
    .unwrap();

    // 1. Slot listings, gRPC beside HTTP.
    let listing = "00000000-0000-0000-0000-00000000d001";
    let http = reqwest::Client::new();
    let url = format!("{base}/api/v1/doctors/{listing}/slots?status=available");
    let probe: Value = http.get(&url).send().await.unwrap().json().await.unwrap();
    let channel = tonic::transport::Endpoint::from_shared(grpc.clone())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let probe_grpc = ScheduleServiceClient::new(channel.clone())
        .get_available_slots(pb::GetAvailableSlotsRequest {
            doctor_id: listing.into(),
            from: None,
            to: None,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        probe["items"].as_array().unwrap().len(),
        probe_grpc.slots.len()
    );
    println!(
        "slot listing: {} slots of one doctor over 14 days",
        probe_grpc.slots.len()
    );
    let http_rate = rate(8, secs, move || {
        let (http, url) = (http.clone(), url.clone());
        async move {
            let res = http.get(&url).send().await.unwrap();
            assert_eq!(res.status(), 200);
            res.bytes().await.unwrap();
        }
    })
    .await;
    let grpc_channel = channel.clone();
    let grpc_rate = rate(8, secs, move || {
        let mut c = ScheduleServiceClient::new(grpc_channel.clone());
        async move {
            c.get_available_slots(pb::GetAvailableSlotsRequest {
                doctor_id: listing.into(),
                from: None,
                to: None,
            })
            .await
            .unwrap();
        }
    })
    .await;
    println!("  HTTP GET /api/v1/doctors/{{id}}/slots: {http_rate:.0} req/s");
    println!(
        "  gRPC GetAvailableSlots:              {grpc_rate:.0} req/s ({:.2}x)",
        grpc_rate / http_rate
    );

    // Patients (verified) and an admin token for the watchers.
    let client = reqwest::Client::new();
    let mut tokens = Vec::new();
    for i in 0..BOOKERS {
        let email = format!("bench{i}@grpc.bench.test");
        let body =
            json!({"email": email, "password": "orchid-meadow-73", "full_name": "Bench Patient"});
        client
            .post(format!("{base}/api/v1/auth/register"))
            .json(&body)
            .send()
            .await
            .unwrap();
    }
    conn.batch_execute("UPDATE users SET email_verified_at = now()")
        .unwrap();
    for i in 0..BOOKERS {
        let login: Value = client
            .post(format!("{base}/api/v1/auth/login"))
            .json(&json!({"email": format!("bench{i}@grpc.bench.test"), "password": "orchid-meadow-73"}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let token = login["access_token"].as_str();
        tokens.push(token.unwrap_or_else(|| panic!("login: {login}")).to_owned());
    }
    // An admin watches (the role check is the same for a linked doctor).
    let admin_email = "admin@grpc.bench.test";
    client
        .post(format!("{base}/api/v1/auth/register"))
        .json(&json!({"email": admin_email, "password": "orchid-meadow-73", "full_name": "Bench Admin"}))
        .send()
        .await
        .unwrap();
    conn.batch_execute(&format!(
        "UPDATE users SET role = 'admin', email_verified_at = now() WHERE email = '{admin_email}'"
    ))
    .unwrap();
    let login: Value = client
        .post(format!("{base}/api/v1/auth/login"))
        .json(&json!({"email": admin_email, "password": "orchid-meadow-73"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let admin_token = login["access_token"].as_str().unwrap().to_owned();

    let slots: Vec<String> = diesel::sql_query(
        "SELECT id FROM slots WHERE doctor_id = '00000000-0000-0000-0000-00000000d002' ORDER BY starts_at",
    )
    .load::<Id>(&mut conn)
    .unwrap()
    .into_iter()
    .map(|r| r.id.to_string())
    .collect();
    let (first, second) = slots.split_at(slots.len() / 2);

    // 2. Bookings without watchers.
    let (plain, _) = book_all(&base, &tokens, first.to_vec()).await;
    println!(
        "bookings: {} without watchers: {plain:.0} bookings/s",
        first.len()
    );

    // 3. With 100 watchers of that doctor's day.
    let received: Arc<Mutex<Vec<(String, Instant)>>> = Arc::default();
    let mut watchers = Vec::new();
    let (ready_tx, mut ready_rx) = tokio::sync::mpsc::channel(WATCHERS);
    for _ in 0..WATCHERS {
        let mut c = ScheduleServiceClient::new(channel.clone());
        let mut req = tonic::Request::new(pb::StreamDailyAppointmentsRequest {
            doctor_id: "00000000-0000-0000-0000-00000000d002".into(),
            date: tomorrow.to_string(),
        });
        req.metadata_mut().insert(
            "authorization",
            format!("Bearer {admin_token}").parse().unwrap(),
        );
        let received = received.clone();
        let ready = ready_tx.clone();
        watchers.push(tokio::spawn(async move {
            let mut stream = c.stream_daily_appointments(req).await.unwrap().into_inner();
            while let Some(Ok(event)) = stream.next().await {
                let at = Instant::now();
                match event.kind {
                    Some(pb::day_event::Kind::Snapshot(_)) => {
                        let _ = ready.send(()).await;
                    }
                    Some(pb::day_event::Kind::Change(change)) => {
                        let id = change.appointment.unwrap().id;
                        received.lock().unwrap().push((id, at));
                    }
                    None => {}
                }
            }
        }));
    }
    for _ in 0..WATCHERS {
        ready_rx.recv().await.unwrap();
    }
    let (watched, sent) = book_all(&base, &tokens, second.to_vec()).await;
    // Every watcher gets every booking; wait (bounded) for the last messages.
    let expected = sent.len() * WATCHERS;
    let deadline = Instant::now() + Duration::from_secs(30);
    while received.lock().unwrap().len() < expected && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let got = received.lock().unwrap().clone();
    let mut latencies: Vec<Duration> = got
        .iter()
        .filter_map(|(id, at)| sent.get(id).map(|s| at.saturating_duration_since(*s)))
        .collect();
    latencies.sort();
    println!(
        "bookings: {} with {WATCHERS} watchers: {watched:.0} bookings/s ({:+.1}% vs none)",
        second.len(),
        (watched / plain - 1.0) * 100.0
    );
    println!(
        "watchers: {} of {expected} messages; booking sent -> watcher message p50 {:.2} ms, p99 {:.2} ms",
        got.len(),
        percentile(&latencies, 0.5).as_secs_f64() * 1000.0,
        percentile(&latencies, 0.99).as_secs_f64() * 1000.0,
    );
    for w in watchers {
        w.abort();
    }
    drop(conn);
    bench::drop_scratch_db(DB);
}
