//! Benchmark of the booking core, against the real PostgreSQL on 127.0.0.1 and the real
//! HTTP server (release build, its own scratch database `medbook_bench_core`).
//!
//! Prints:
//! 1. bookings per second with 32 concurrent clients over distinct slots;
//! 2. doctor search latency (p50/p99) with the data scaled to 10,000 doctors and
//!    1,000,000 slots;
//! 3. `GET /api/v1/doctors/{id}` requests per second, uncached (first read of every
//!    doctor) and cached (second read).
//!
//! Local traffic only; every phase is bounded. Scale with `BENCH_DOCTORS` and
//! `BENCH_SLOTS_PER_DOCTOR` (defaults 10000 and 100). In smoke mode
//! (`MEDBOOK_BENCH_SMOKE=1`) every phase runs on small data: 200 doctors with 20 slots
//! each, 5 bookings per client, 4 search rounds per client.
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
use medbook_test_support::bench::{self, percentile};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

const CLIENTS: usize = 32;
const DB: &str = "medbook_bench_core";

#[derive(diesel::QueryableByName)]
struct Id {
    #[diesel(sql_type = diesel::sql_types::Uuid)]
    id: uuid::Uuid,
}

#[tokio::main]
async fn main() {
    let doctors = bench::size("BENCH_DOCTORS", 10_000, 200);
    let per_doctor = bench::size("BENCH_SLOTS_PER_DOCTOR", 100, 20);
    // Bookings per client, and search requests per client.
    let (per_client, rounds) = bench::smoke((60, 40), (5, 4));
    let db_url = bench::scratch_db(DB);
    let settings: Settings = bench::settings([
        ("MEDBOOK_PROFILE", "dev".to_owned()),
        ("MEDBOOK_AUTH__BCRYPT_COST", "4".to_owned()),
        ("MEDBOOK_HTTP__ADDR", "127.0.0.1:0".to_owned()),
        ("MEDBOOK_HTTP__OPS_ADDR", "127.0.0.1:0".to_owned()),
        ("MEDBOOK_GRPC__ADDR", "127.0.0.1:0".to_owned()),
        ("MEDBOOK_AUDIT__RELAY_ENABLED", "false".to_owned()),
        // 32 registrations from one address, and no padding to measure.
        ("MEDBOOK_ACCOUNTS__REQUESTS_PER_CLIENT", "100000".to_owned()),
        ("MEDBOOK_ACCOUNTS__RESPONSE_FLOOR_MS", "0".to_owned()),
        ("MEDBOOK_DATABASE__URL", db_url.clone()),
        ("MEDBOOK_DATABASE__POOL_SIZE", "16".to_owned()),
        ("MEDBOOK_BOOKING__MIN_NOTICE_MINUTES", "0".to_owned()),
        (
            "MEDBOOK_BOOKING__MAX_ACTIVE_PER_PATIENT",
            "1000000".to_owned(),
        ),
        ("MEDBOOK_CACHE__MEMORY_CAPACITY", "20000".to_owned()),
        ("MEDBOOK_LOG__LEVEL", "error".to_owned()),
    ]);
    let app = Application::build(settings).await.unwrap();
    let base = format!("http://127.0.0.1:{}", app.port());
    let ops_base = format!("http://127.0.0.1:{}", app.ops_port());
    tokio::spawn(app.run_until_stopped());

    // Data at scale, written in SQL for speed: clinics, doctors, slots every 30 minutes
    // over the coming weeks.
    let started = Instant::now();
    let mut conn = PgConnection::establish(&db_url).unwrap();
    conn.batch_execute(&format!(
        "INSERT INTO clinics (id, name, city, address, time_zone)
           SELECT gen_random_uuid(), 'Clinic ' || c, (ARRAY['Berlin','London','New York','Sydney','Tokyo'])[1 + c % 5],
                  c || ' Main Street', (ARRAY['Europe/Berlin','Europe/London','America/New_York','Australia/Sydney','Asia/Tokyo'])[1 + c % 5]
           FROM generate_series(0, 49) c;
         INSERT INTO doctors (id, full_name, specialty, clinic_id, status, rating_sum, rating_count)
           SELECT gen_random_uuid(),
                  'Dr. ' || (ARRAY['Anna','Ben','Chloe','David','Elena','Farid','Grace','Hiro','Isabel','Jonas'])[1 + d % 10]
                    || ' ' || (ARRAY['Adams','Becker','Costa','Dubois','Eriksen','Fischer','Garcia','Hoffmann'])[1 + (d / 10) % 8] || ' ' || d,
                  (ARRAY['Cardiology','Dermatology','Neurology','Pediatrics','Oncology','Urology','Psychiatry','Orthopedics',
                         'Gynecology','Endocrinology','Pulmonology','Ophthalmology','Otolaryngology','Gastroenterology','Family Medicine'])[1 + d % 15],
                  (SELECT id FROM clinics ORDER BY id OFFSET d % 50 LIMIT 1),
                  CASE WHEN d % 20 = 0 THEN 'on_leave' ELSE 'active' END,
                  (d % 5 + 1) * (d % 7), d % 7
           FROM generate_series(0, {last_doctor}) d;
         INSERT INTO slots (id, doctor_id, starts_at, ends_at, status)
           SELECT gen_random_uuid(), d.id,
                  date_trunc('hour', now()) + interval '2 hours' + s * interval '30 minutes',
                  date_trunc('hour', now()) + interval '2 hours' + s * interval '30 minutes' + interval '30 minutes',
                  'available'
           FROM doctors d CROSS JOIN generate_series(0, {last_slot}) s;
         ANALYZE;",
        last_doctor = doctors - 1,
        last_slot = per_doctor - 1,
    ))
    .unwrap();
    println!(
        "data: {doctors} doctors, {} slots, written in {:.1} s",
        doctors * per_doctor,
        started.elapsed().as_secs_f64()
    );

    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(64)
        .build()
        .unwrap();

    // 1. Bookings per second: 32 patients, each booking its own slots back to back.
    let mut tokens = Vec::new();
    for i in 0..CLIENTS {
        let email = format!("bench{i}@example.com");
        let body = json!({"email": email, "password": "plum-harbour-42", "full_name": "Bench"});
        client
            .post(format!("{base}/api/v1/auth/register"))
            .json(&body)
            .send()
            .await
            .unwrap();
        let login: Value = client
            .post(format!("{base}/api/v1/auth/login"))
            .json(&json!({"email": email, "password": "plum-harbour-42"}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        tokens.push(login["access_token"].as_str().unwrap().to_owned());
    }
    // As following the verification links does: only verified patients book.
    conn.batch_execute("UPDATE users SET email_verified_at = now()")
        .unwrap();
    // One doctor per client (a patient never holds two appointments at one time):
    // ordered by time, then doctor, so that every CLIENTS-th slot is one doctor's.
    assert!(
        per_doctor >= per_client,
        "each client books one doctor's slots"
    );
    let slot_ids: Vec<uuid::Uuid> = diesel::sql_query(format!(
        "SELECT s.id FROM slots s
           JOIN (SELECT id, row_number() OVER (ORDER BY id) AS n FROM doctors
                  WHERE status = 'active' ORDER BY id LIMIT {CLIENTS}) d ON d.id = s.doctor_id
         ORDER BY s.starts_at, d.n LIMIT {}",
        CLIENTS * per_client
    ))
    .load::<Id>(&mut conn)
    .unwrap()
    .into_iter()
    .map(|r| r.id)
    .collect();
    let started = Instant::now();
    let tasks = tokens.iter().enumerate().map(|(i, token)| {
        let client = client.clone();
        let base = base.clone();
        let mine: Vec<uuid::Uuid> = slot_ids.iter().skip(i).step_by(CLIENTS).copied().collect();
        let token = token.clone();
        async move {
            let mut ok = 0;
            for slot in mine {
                let res = client
                    .post(format!("{base}/api/v1/appointments"))
                    .bearer_auth(&token)
                    .json(&json!({"slot_id": slot}))
                    .send()
                    .await
                    .unwrap();
                if res.status() == 201 {
                    ok += 1;
                }
            }
            ok
        }
    });
    let booked: usize = futures_util::future::join_all(tasks)
        .await
        .into_iter()
        .sum();
    let secs = started.elapsed().as_secs_f64();
    println!(
        "bookings: {booked} of {} in {secs:.2} s = {:.0} bookings/s ({CLIENTS} concurrent clients, distinct slots)",
        slot_ids.len(),
        booked as f64 / secs
    );

    // 2. Search latency over a mix of filters, 8 concurrent clients.
    let day = (chrono::Utc::now() + chrono::Duration::days(1)).date_naive();
    let queries = [
        "name=anna".to_owned(),
        "specialty=Cardiology".to_owned(),
        "city=Berlin&sort=rating".to_owned(),
        format!("available_on={day}&specialty=Neurology"),
        "name=fischer&city=Tokyo".to_owned(),
        "status=active&page=20".to_owned(),
        format!("available_on={day}&city=London&sort=rating"),
        "name=dr&per_page=100".to_owned(),
    ];
    let tasks = (0..8).map(|w| {
        let client = client.clone();
        let base = base.clone();
        let queries = queries.clone();
        async move {
            let mut times = Vec::new();
            for r in 0..rounds {
                let q = &queries[(w + r) % queries.len()];
                let t = Instant::now();
                let res = client
                    .get(format!("{base}/api/v1/doctors?{q}"))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(res.status(), 200);
                let _ = res.bytes().await.unwrap();
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
    times.sort();
    println!(
        "search: {} requests, p50 {:.1} ms, p99 {:.1} ms (8 concurrent clients, {doctors} doctors, {} slots)",
        times.len(),
        percentile(&times, 0.50).as_secs_f64() * 1000.0,
        percentile(&times, 0.99).as_secs_f64() * 1000.0,
        doctors * per_doctor
    );

    // 3. GET /doctors/{id}: every doctor once (misses), then again (hits).
    let ids: Vec<uuid::Uuid> = diesel::sql_query("SELECT id FROM doctors ORDER BY id LIMIT 5000")
        .load::<Id>(&mut conn)
        .unwrap()
        .into_iter()
        .map(|r| r.id)
        .collect();
    for label in ["uncached (first read)", "cached (second read)"] {
        let started = Instant::now();
        let tasks = (0..CLIENTS).map(|w| {
            let client = client.clone();
            let base = base.clone();
            let mine: Vec<uuid::Uuid> = ids.iter().skip(w).step_by(CLIENTS).copied().collect();
            async move {
                for id in mine {
                    let res = client
                        .get(format!("{base}/api/v1/doctors/{id}"))
                        .send()
                        .await
                        .unwrap();
                    assert_eq!(res.status(), 200);
                    let _ = res.bytes().await.unwrap();
                }
            }
        });
        futures_util::future::join_all(tasks).await;
        let secs = started.elapsed().as_secs_f64();
        println!(
            "GET /api/v1/doctors/{{id}} {label}: {} requests in {secs:.2} s = {:.0} req/s",
            ids.len(),
            ids.len() as f64 / secs
        );
    }
    let metrics = client
        .get(format!("{ops_base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for line in metrics.lines().filter(|l| l.starts_with("cache_")) {
        println!("  {line}");
    }
}
