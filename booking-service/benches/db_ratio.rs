//! How close the HTTP service comes to the database's own speed: each operation is
//! driven through the real HTTP server (release build, in-process, its own scratch
//! database `medbook_bench_ratio`), then `pgbench` runs the very statements the service
//! sends for it, at the same concurrency, on the same database; the ratio
//! HTTP req/s ÷ pgbench tps is printed for
//! 1. booking (`POST /api/v1/appointments`, 4 concurrent clients),
//! 2. a doctor's slots for a day (`GET /api/v1/doctors/{id}/slots?from=…&to=…`, 8),
//! 3. an uncached doctor (`GET /api/v1/doctors/{id}`, every doctor read once, 8).
//!
//! The statements are not copied from the repository code: they are captured with the
//! pool's [`StatementLog`] while the repositories (`PgAppointments` behind
//! `AppointmentService::book`, `PgSlots::list`, `PgDoctors::get`) do the operation on a
//! warm connection, and each `$n` is replaced by the pgbench value of that bind (a
//! `:variable` cast to the bind's type; values pgbench cannot produce itself, uuids and
//! timestamps, are computed from its integer variables with `md5(…)::uuid` and
//! `to_timestamp(…)`, which is how the seeded ids are made too; a NULL bind, the absent
//! idempotency key, is `nullif(:none::text, 'none')`, a parameter a generic plan cannot
//! fold away either). `Sql` sends one bind per occurrence of a `$n`, so the bind each
//! placeholder stands for is read from `src/repository/appointments.rs`, and the
//! captured text is checked against it. The write's event
//! payload, topic, reminder labels, request id and traceparent, and its audit row's
//! action, payload and request id, are those of a booking the HTTP phase made.
//!
//! Also printed: the database round trips of each operation (statements in the
//! capture, BEGIN/COMMIT included), HTTP p50/p99 latency, machine CPU use in each run,
//! and the CPU this process spent per request by thread group (load generator,
//! actix workers, the blocking pool where Diesel runs).
//!
//! Needs PostgreSQL (`MEDBOOK_TEST_DATABASE_URL`), Redis (`MEDBOOK_TEST_REDIS_URL`,
//! the revocation check of authenticated requests) and `pgbench` on `PATH`. About
//! 70 s with the default `BENCH_SECS=8` per run (plus 1 s warm-up each). In smoke mode
//! (`MEDBOOK_BENCH_SMOKE=1`) each run lasts 1 s and fewer doctors are read uncached.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use booking_service::domain::booking::{BookingPolicy, DEFAULT_NO_SHOW_WINDOW_DAYS};
use booking_service::domain::reminders::ReminderPlan;
use booking_service::domain::{Role, UserId};
use booking_service::repository::db::DbError;
use booking_service::repository::{
    Db, PgAppointments, PgDoctors, PgSlots, PoolSettings, StatementLog,
};
use booking_service::security::JwtIssuer;
use booking_service::service::appointments::AppointmentService;
use booking_service::service::booking_ports::{DoctorRepository, SlotFilter, SlotRepository};
use booking_service::service::outbox::OutboxSignal;
use booking_service::service::ports::{SystemClock, TokenIssuer};
use booking_service::settings::Settings;
use booking_service::startup::Application;
use chrono::{DateTime, TimeZone, Utc};
use diesel::connection::SimpleConnection;
use diesel::sql_types::{Integer, Nullable, Text, Uuid as SqlUuid};
use diesel::{Connection, PgConnection, RunQueryDsl};
use medbook_test_support::bench;
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use uuid::Uuid;

const DB: &str = "medbook_bench_ratio";
const JWT_SECRET: &str = "db-ratio-bench-secret-at-least-32-bytes-long";
const BOOKING_CONCURRENCY: usize = 4;
const READ_CONCURRENCY: usize = 8;
const WARMUP_SECS: u64 = 1;
/// Doctors with slots: the HTTP side books those below `SLOT_DOCTORS / 2`, pgbench the
/// others; doctor number `SLOT_DOCTORS` is the capture's.
const SLOT_DOCTORS: usize = 600;
/// Every 30 minutes from two days ahead: five days.
const SLOTS_PER_DOCTOR: usize = 240;
/// Doctors without slots, for the uncached reads: the HTTP side reads each once (fewer
/// in smoke mode).
const READ_DOCTORS: usize = 250_000;
const SMOKE_READ_DOCTORS: usize = 20_000;
/// Per side; a multiple of the booking concurrency, so no two clients share one.
const PATIENTS_PER_SIDE: usize = 400;
const MAX_ACTIVE: i64 = 1_000_000;
const REASON: &str = "check-up";
/// Executions of each operation in the statement capture (PostgreSQL decides between a
/// custom and a generic plan after five).
const CAPTURE_RUNS: usize = 8;
/// Ids are `md5((KEY + n)::text)::uuid`: random-looking, and computable in pgbench.
const CLINIC_KEY: usize = 900_000;
const DOCTOR_KEY: usize = 1_000_000;
const PATIENT_KEY: usize = 3_000_000;
const SLOT_KEY: usize = 100_000_000;
const APPOINTMENT_KEY: usize = 400_000_000;
const EVENT_KEY: usize = 500_000_000;
const AUDIT_KEY: usize = 600_000_000;

fn f64_of(n: usize) -> f64 {
    f64::from(u32::try_from(n).unwrap())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn percentile(sorted: &[Duration], pct: usize) -> Duration {
    let i = (sorted.len().saturating_sub(1) * pct + 50) / 100;
    sorted.get(i).copied().unwrap_or_default()
}

#[derive(diesel::QueryableByName)]
struct Id {
    #[diesel(sql_type = SqlUuid)]
    id: Uuid,
}

/// The ids `md5((key + n)::text)::uuid` for `n` in `ns`, in that order.
fn key_ids(conn: &mut PgConnection, key: usize, ns: &[usize]) -> Vec<Uuid> {
    let list = ns
        .iter()
        .map(|n| (key + n).to_string())
        .collect::<Vec<_>>()
        .join(",");
    diesel::sql_query(format!(
        "SELECT md5(k::text)::uuid AS id FROM unnest(ARRAY[{list}]::bigint[]) WITH ORDINALITY AS t(k, o) ORDER BY o"
    ))
    .load::<Id>(conn)
    .unwrap()
    .into_iter()
    .map(|r| r.id)
    .collect()
}

/// Replaces `$1`, `$2`… of `sql` by `values[0]`, `values[1]`…; every bind must be used
/// and none may be missing.
fn substitute(sql: &str, values: &[&str]) -> String {
    let mut out = String::new();
    let mut rest = sql;
    let mut highest = 0;
    while let Some(at) = rest.find('$') {
        let (before, from_dollar) = rest.split_at(at);
        out.push_str(before);
        let after = from_dollar.get(1..).unwrap_or_default();
        let digits = after.bytes().take_while(u8::is_ascii_digit).count();
        let (number, tail) = after.split_at(digits);
        let n: usize = number.parse().expect("a $n placeholder");
        highest = highest.max(n);
        out.push_str(
            values
                .get(n - 1)
                .unwrap_or_else(|| panic!("no pgbench value for ${n} of:\n{sql}")),
        );
        rest = tail;
    }
    out.push_str(rest);
    assert_eq!(
        highest,
        values.len(),
        "the statement has {highest} binds, the mapping {}:\n{sql}",
        values.len()
    );
    assert!(!out.contains(';'), "a pgbench command must not contain ';'");
    out
}

/// The `$n` placeholders of `sql`, in order of appearance.
fn placeholders(sql: &str) -> Vec<usize> {
    sql.split('$')
        .skip(1)
        .filter_map(|p| {
            let digits = p.bytes().take_while(u8::is_ascii_digit).count();
            p.get(..digits).and_then(|d| d.parse().ok())
        })
        .collect()
}

/// `Sql` (service-kit) sends one bind per occurrence of a `$n`, numbered in order of
/// appearance, so the statement on the wire has `$1…$m` where the constant has
/// repeated and reordered `$n`. Given the values of the constant's binds (in `.bind`
/// order), the values of the wire's placeholders; checks that `sent` is the constant
/// `name` of `repository::appointments` (`text`) renumbered that way.
fn wire_values<'a>(name: &str, text: &str, sent: &str, by_bind: &[&'a str]) -> Vec<&'a str> {
    let order = placeholders(text);
    let renumbered = {
        let values: Vec<String> = (1..=order.len()).map(|k| format!("${k}")).collect();
        let refs: Vec<&str> = values.iter().map(String::as_str).collect();
        let mut i = 0;
        let mut out = String::new();
        let mut rest = text;
        while let Some(at) = rest.find('$') {
            let (before, from_dollar) = rest.split_at(at);
            out.push_str(before);
            let after = from_dollar.get(1..).unwrap_or_default();
            let digits = after.bytes().take_while(u8::is_ascii_digit).count();
            out.push_str(refs.get(i).unwrap());
            i += 1;
            rest = after.get(digits..).unwrap_or_default();
        }
        out.push_str(rest);
        out
    };
    assert_eq!(
        renumbered.trim(),
        sent.trim(),
        "the statement sent is not {name} of appointments.rs, renumbered"
    );
    assert_eq!(
        order.iter().max().copied().unwrap_or(0),
        by_bind.len(),
        "{name} has a bind the bench does not know"
    );
    order.iter().map(|n| *by_bind.get(n - 1).unwrap()).collect()
}

/// One statement of a capture, as a pgbench command.
fn command(sql: &str, values: &[&str]) -> String {
    format!("{};\n", substitute(sql, values))
}

/// CPU time (ticks of 10 ms, Linux's `USER_HZ` of 100): of this process's threads, of
/// the PostgreSQL, Redis and pgbench processes, and of the whole machine.
#[derive(Default, Clone)]
struct Cpu {
    threads: BTreeMap<u64, (String, u64)>,
    processes: BTreeMap<u64, (String, u64)>,
    machine_busy: u64,
    machine_total: u64,
}

/// The name and utime + stime of a `/proc/…/stat`.
fn stat_ticks(path: &std::path::Path) -> Option<(String, u64)> {
    let stat = std::fs::read_to_string(path).ok()?;
    let (open, close) = (stat.find('(')?, stat.rfind(')')?);
    let name = stat
        .get(open + 1..close)?
        .trim_end_matches(|c: char| c.is_ascii_digit() || c == ' ')
        .to_owned();
    let fields: Vec<u64> = stat
        .get(close + 2..)?
        .split(' ')
        .map(|f| f.parse().unwrap_or(0))
        .collect();
    // Fields 14 and 15 of stat: 12 and 13 after the state.
    Some((name, fields.get(11)? + fields.get(12)?))
}

fn entries(dir: &str) -> Vec<(u64, std::path::PathBuf)> {
    std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .filter_map(|e| Some((e.file_name().to_str()?.parse().ok()?, e.path())))
                .collect()
        })
        .unwrap_or_default()
}

fn sample_cpu() -> Cpu {
    let mut cpu = Cpu::default();
    for (tid, path) in entries("/proc/self/task") {
        if let Some(t) = stat_ticks(&path.join("stat")) {
            cpu.threads.insert(tid, t);
        }
    }
    for (pid, path) in entries("/proc") {
        if let Some((name, ticks)) = stat_ticks(&path.join("stat")) {
            if name == "postgres" {
                // The process title: "postgres: user db host(port) state" for a
                // backend, "postgres: walwriter" and so on for the others.
                let title = std::fs::read_to_string(path.join("cmdline"))
                    .unwrap_or_default()
                    .replace('\0', " ");
                let kind = if !title.starts_with("postgres:") {
                    "postgres postmaster".to_owned()
                } else if title.contains("autovacuum") {
                    "postgres autovacuum".to_owned()
                } else if title.contains(DB) {
                    "postgres backends".to_owned()
                } else {
                    // "postgres: [cluster: ]walwriter"
                    let words: Vec<&str> = title.split_whitespace().skip(1).collect();
                    let word = words
                        .iter()
                        .find(|w| !w.ends_with(':'))
                        .copied()
                        .unwrap_or("other");
                    format!("postgres {word}")
                };
                cpu.processes.insert(pid, (kind, ticks));
            } else if ["redis-server", "pgbench"].contains(&name.as_str()) {
                cpu.processes.insert(pid, (name, ticks));
            }
        }
    }
    if let Ok(stat) = std::fs::read_to_string("/proc/stat") {
        let v: Vec<u64> = stat
            .lines()
            .next()
            .unwrap_or_default()
            .split_whitespace()
            .skip(1)
            .map(|f| f.parse().unwrap_or(0))
            .collect();
        cpu.machine_total = v.iter().take(8).sum();
        // Everything but idle and iowait.
        cpu.machine_busy =
            cpu.machine_total - v.get(3).copied().unwrap_or(0) - v.get(4).copied().unwrap_or(0);
    }
    cpu
}

/// Cores busy machine-wide between two samples, and µs of CPU per operation by
/// thread group of this process (`bench-client` is the load generator; the server's
/// actix workers and its blocking pool, where Diesel runs), by process (postgres,
/// redis-server, pgbench) and not attributed (kernel work such as loopback TCP, other
/// processes).
#[derive(Default)]
struct CpuUse {
    cores: f64,
    per_op: Vec<(String, f64)>,
}

fn cpu_use(before: &Cpu, after: &Cpu, ops: f64) -> CpuUse {
    let ticks = |t: u64| f64::from(u32::try_from(t).unwrap());
    let total = after
        .machine_total
        .saturating_sub(before.machine_total)
        .max(1);
    let busy = after.machine_busy.saturating_sub(before.machine_busy);
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    let mut groups: BTreeMap<String, u64> = BTreeMap::new();
    for (id, (name, t)) in &after.threads {
        let earlier = before.threads.get(id).map_or(0, |(_, t)| *t);
        *groups.entry(format!("service/{name}")).or_default() += t.saturating_sub(earlier);
    }
    for (id, (name, t)) in &after.processes {
        let earlier = before.processes.get(id).map_or(0, |(_, t)| *t);
        *groups.entry(name.clone()).or_default() += t.saturating_sub(earlier);
    }
    let attributed: u64 = groups.values().sum();
    groups.insert("unattributed".into(), busy.saturating_sub(attributed));
    let per_op = |t: u64| ticks(t) * 10_000.0 / ops.max(1.0);
    let service: u64 = groups
        .iter()
        .filter(|(k, _)| k.starts_with("service/"))
        .map(|(_, t)| t)
        .sum();
    let mut out = CpuUse {
        cores: ticks(busy) / ticks(total) * f64_of(cores),
        per_op: Vec::new(),
    };
    if service > 0 {
        out.per_op.push(("this process".into(), per_op(service)));
    }
    out.per_op.extend(
        groups
            .into_iter()
            .filter(|(_, t)| *t > 0)
            .map(|(k, t)| (k, per_op(t))),
    );
    out
}

fn cpu_text(c: &CpuUse) -> String {
    c.per_op
        .iter()
        .map(|(k, v)| format!("{k} {v:.0}"))
        .collect::<Vec<_>>()
        .join(", ")
}

struct HttpRun {
    done: usize,
    secs: f64,
    latencies: Vec<Duration>,
}

type MakeRequest = dyn Fn(&reqwest::Client, usize) -> Option<reqwest::RequestBuilder> + Send + Sync;

/// `concurrency` clients, each sending requests back to back for `secs` (or until
/// `make` has none left); client `w`'s `j`-th request is `make(t)` with
/// `t = j * concurrency + w`, `j` continuing from `next[w]`.
async fn drive(
    client: &reqwest::Client,
    concurrency: usize,
    secs: u64,
    next: &mut [usize],
    make: &Arc<MakeRequest>,
    expect: u16,
) -> HttpRun {
    let started = Instant::now();
    let deadline = started + Duration::from_secs(secs);
    let tasks: Vec<_> = (0..concurrency)
        .map(|w| {
            let client = client.clone();
            let make = make.clone();
            let mut j = next.get(w).copied().unwrap_or(0);
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                while Instant::now() < deadline {
                    let Some(request) = make(&client, j * concurrency + w) else {
                        break;
                    };
                    let t = Instant::now();
                    let res = request.send().await.unwrap();
                    let status = res.status().as_u16();
                    let body = res.bytes().await.unwrap();
                    assert_eq!(
                        status,
                        expect,
                        "unexpected answer: {}",
                        String::from_utf8_lossy(&body)
                    );
                    latencies.push(t.elapsed());
                    j += 1;
                }
                (j, latencies)
            })
        })
        .collect();
    let mut run = HttpRun {
        done: 0,
        secs: 0.0,
        latencies: Vec::new(),
    };
    for (w, task) in tasks.into_iter().enumerate() {
        let (j, latencies) = task.await.unwrap();
        if let Some(n) = next.get_mut(w) {
            *n = j;
        }
        run.done += latencies.len();
        run.latencies.extend(latencies);
    }
    run.secs = started.elapsed().as_secs_f64();
    run.latencies.sort();
    run
}

struct PgbenchRun {
    processed: usize,
    tps: f64,
    latency_ms: f64,
    cpu: CpuUse,
}

/// `pgbench -n -M prepared -c C -j C -T secs -f script` with `-D` variables; fails on
/// any failed transaction or aborted client.
fn pgbench(
    name: &str,
    script: &str,
    concurrency: usize,
    secs: u64,
    defines: &[(&str, String)],
) -> PgbenchRun {
    let path = std::env::temp_dir().join(format!("db_ratio_{name}_{}.sql", std::process::id()));
    std::fs::write(&path, script).unwrap();
    let mut cmd = std::process::Command::new("pgbench");
    cmd.args(["-n", "-M", "prepared"])
        .args([
            "-c",
            &concurrency.to_string(),
            "-j",
            &concurrency.to_string(),
        ])
        .args(["-T", &secs.to_string()])
        .arg("-f")
        .arg(&path);
    for (k, v) in defines {
        cmd.arg("-D").arg(format!("{k}={v}"));
    }
    cmd.arg(bench::db_url(DB))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let child = cmd.spawn().expect("pgbench on PATH");
    // CPU sampled inside the run (pgbench's connections end with it), a second in.
    let window = (secs >= 4).then(|| {
        std::thread::sleep(Duration::from_secs(1));
        let before = sample_cpu();
        let t = Instant::now();
        std::thread::sleep(Duration::from_secs(secs - 2));
        (before, sample_cpu(), t.elapsed().as_secs_f64())
    });
    let out = child.wait_with_output().unwrap();
    let _ = std::fs::remove_file(&path);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let value = |prefix: &str| -> Option<f64> {
        text.lines()
            .find_map(|l| l.trim().strip_prefix(prefix))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.split('/').next())
            .and_then(|v| v.parse().ok())
    };
    let failed = value("number of failed transactions:").unwrap_or(0.0);
    assert!(
        out.status.success() && failed == 0.0,
        "pgbench {name} failed:\n{text}\nscript:\n{script}"
    );
    PgbenchRun {
        processed: text
            .lines()
            .find_map(|l| {
                l.trim()
                    .strip_prefix("number of transactions actually processed:")
            })
            .and_then(|v| v.trim().split('/').next())
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0),
        tps: value("tps =").unwrap_or(0.0),
        latency_ms: value("latency average =").unwrap_or(0.0),
        cpu: window
            .map(|(before, after, secs)| {
                cpu_use(&before, &after, value("tps =").unwrap_or(0.0) * secs)
            })
            .unwrap_or_default(),
    }
}

struct Row {
    operation: &'static str,
    concurrency: usize,
    round_trips: usize,
    http: HttpRun,
    http_cpu: CpuUse,
    pgbench: PgbenchRun,
}

fn main() {
    tokio::runtime::Builder::new_multi_thread()
        // Named so the CPU report tells the load generator from the server's threads
        // (actix workers, and the blocking pool where Diesel runs).
        .thread_name("bench-client")
        .enable_all()
        .build()
        .unwrap()
        .block_on(run());
}

#[allow(clippy::too_many_lines)]
async fn run() {
    // Smoke mode: every run for a second, fewer doctors to read.
    let secs = u64::try_from(bench::size("BENCH_SECS", 8, 1)).unwrap();
    let read_doctor_count = bench::smoke(READ_DOCTORS, SMOKE_READ_DOCTORS);
    let db_url = bench::scratch_db(DB);
    let mut env = vec![
        ("MEDBOOK_PROFILE", "dev".to_owned()),
        ("MEDBOOK_AUTH__JWT_SECRET", JWT_SECRET.to_owned()),
        ("MEDBOOK_AUTH__BCRYPT_COST", "4".to_owned()),
        ("MEDBOOK_HTTP__ADDR", "127.0.0.1:0".to_owned()),
        ("MEDBOOK_HTTP__OPS_ADDR", "127.0.0.1:0".to_owned()),
        ("MEDBOOK_GRPC__ADDR", "127.0.0.1:0".to_owned()),
        ("MEDBOOK_AUDIT__RELAY_ENABLED", "false".to_owned()),
        ("MEDBOOK_ACCOUNTS__RESPONSE_FLOOR_MS", "0".to_owned()),
        ("MEDBOOK_DATABASE__URL", db_url.clone()),
        ("MEDBOOK_DATABASE__POOL_SIZE", "16".to_owned()),
        ("MEDBOOK_BOOKING__MIN_NOTICE_MINUTES", "0".to_owned()),
        (
            "MEDBOOK_BOOKING__MAX_ACTIVE_PER_PATIENT",
            MAX_ACTIVE.to_string(),
        ),
        ("MEDBOOK_CACHE__BACKEND", "memory".to_owned()),
        ("MEDBOOK_CACHE__MEMORY_CAPACITY", "400000".to_owned()),
        ("MEDBOOK_OUTBOX__RELAY_ENABLED", "false".to_owned()),
        ("MEDBOOK_REMINDERS__SCHEDULER_ENABLED", "false".to_owned()),
        ("MEDBOOK_REMINDERS__OFFSETS", "24h,2h".to_owned()),
        ("MEDBOOK_LOG__LEVEL", "error".to_owned()),
    ];
    if let Ok(url) = std::env::var("MEDBOOK_TEST_REDIS_URL") {
        env.push(("MEDBOOK_REDIS__URL", url));
    }
    if let Ok(brokers) = std::env::var("MEDBOOK_TEST_KAFKA_BROKERS") {
        env.push(("MEDBOOK_KAFKA__BROKERS", brokers));
    }
    let settings: Settings = bench::settings(env);
    let app = Application::build(settings).await.unwrap();
    let base_url = format!("http://127.0.0.1:{}", app.port());
    let handle = app.handle();
    let server = tokio::spawn(app.run_until_stopped());

    // Data: slots every 30 minutes from two days ahead (so both reminders are
    // scheduled), verified patients.
    let started = Instant::now();
    let base = (Utc::now().timestamp() / 3600 + 48) * 3600;
    let mut conn = PgConnection::establish(&db_url).unwrap();
    conn.batch_execute(&format!(
        "INSERT INTO clinics (id, name, city, address, time_zone)
           SELECT md5(({CLINIC_KEY} + c)::text)::uuid, 'Clinic ' || c,
                  (ARRAY['Berlin','London','New York','Sydney','Tokyo'])[1 + c % 5], c || ' Main Street',
                  (ARRAY['Europe/Berlin','Europe/London','America/New_York','Australia/Sydney','Asia/Tokyo'])[1 + c % 5]
           FROM generate_series(0, 19) c;
         INSERT INTO doctors (id, full_name, specialty, clinic_id, status, bio, years_of_experience, rating_sum, rating_count)
           SELECT md5(({DOCTOR_KEY} + d)::text)::uuid,
                  'Dr. ' || (ARRAY['Anna','Ben','Chloe','David','Elena','Farid','Grace','Hiro'])[1 + d % 8] || ' ' || d,
                  (ARRAY['Cardiology','Dermatology','Neurology','Pediatrics','Oncology'])[1 + d % 5],
                  md5(({CLINIC_KEY} + d % 20)::text)::uuid, 'active',
                  'Board-certified, sees adults and children; speaks English and German.', d % 30,
                  (d % 5 + 1) * (d % 7), d % 7
           FROM generate_series(0, {last_doctor}) d;
         INSERT INTO slots (id, doctor_id, starts_at, ends_at, status)
           SELECT md5(({SLOT_KEY} + d * {SLOTS_PER_DOCTOR} + s)::text)::uuid, md5(({DOCTOR_KEY} + d)::text)::uuid,
                  to_timestamp({base} + s * 1800), to_timestamp({base} + s * 1800 + 1800), 'available'
           FROM generate_series(0, {SLOT_DOCTORS}) d CROSS JOIN generate_series(0, {last_slot}) s;
         INSERT INTO users (id, email, role, full_name, email_verified_at)
           SELECT md5(({PATIENT_KEY} + p)::text)::uuid, 'patient' || p || '@bench.example', 'patient',
                  'Patient ' || p, now()
           FROM generate_series(0, {last_patient}) p;",
        last_doctor = SLOT_DOCTORS + read_doctor_count,
        last_slot = SLOTS_PER_DOCTOR - 1,
        last_patient = 2 * PATIENTS_PER_SIDE,
    ))
    .unwrap();
    conn.batch_execute("VACUUM ANALYZE").unwrap();
    println!(
        "data: {} doctors ({} with {SLOTS_PER_DOCTOR} slots each), {} patients, in {:.1} s",
        SLOT_DOCTORS + read_doctor_count + 1,
        SLOT_DOCTORS + 1,
        2 * PATIENTS_PER_SIDE + 1,
        started.elapsed().as_secs_f64()
    );
    let half = SLOT_DOCTORS / 2;
    let (side_doctors, side_slots) = (half, half * SLOTS_PER_DOCTOR);
    let day_start = (base / 86_400 + 2) * 86_400;
    let day_end = day_start + 86_400;
    let at = |t: i64| -> DateTime<Utc> { Utc.timestamp_opt(t, 0).single().unwrap() };

    // The statements, captured on one warm connection of a logging pool.
    let log = StatementLog::default();
    let pool = Db::with_statement_log(
        &PoolSettings {
            url: db_url.clone(),
            max_size: 1,
            connect_timeout: Duration::from_secs(5),
            statement_timeout: Duration::from_secs(10),
        },
        log.clone(),
    )
    .unwrap();
    let capture_doctor = key_ids(&mut conn, DOCTOR_KEY, &[SLOT_DOCTORS])
        .first()
        .copied()
        .unwrap();
    let capture_slot_numbers: Vec<usize> = (0..CAPTURE_RUNS)
        .map(|s| SLOT_DOCTORS * SLOTS_PER_DOCTOR + s)
        .collect();
    let capture_slots = key_ids(&mut conn, SLOT_KEY, &capture_slot_numbers);
    let capture_patient = UserId(
        key_ids(&mut conn, PATIENT_KEY, &[2 * PATIENTS_PER_SIDE])
            .first()
            .copied()
            .unwrap(),
    );
    let service = AppointmentService::new(
        Arc::new(PgAppointments::new(
            pool.clone(),
            Arc::new(OutboxSignal::default()),
        )),
        Arc::new(SystemClock),
        BookingPolicy {
            min_notice: chrono::Duration::zero(),
            horizon: chrono::Duration::days(90),
            max_active_per_patient: MAX_ACTIVE,
            change_deadline: chrono::Duration::zero(),
            no_show_limit: None,
            no_show_window: chrono::Duration::days(180),
            no_show_email: false,
        },
        booking_service::domain::links::ManageLinks::new(b"bench", "http://127.0.0.1:8080/manage"),
    )
    .with_reminders(ReminderPlan::parse(&["24h", "2h"]).unwrap());
    let mut booking_sql = Vec::new();
    for slot in &capture_slots {
        log.take();
        service
            .book(
                capture_patient,
                booking_service::domain::SlotId(*slot),
                REASON.into(),
                None,
            )
            .await
            .unwrap();
        booking_sql = log.take();
    }
    let slots_repo = PgSlots::new(pool.clone());
    let mut slots_sql = Vec::new();
    for _ in 0..CAPTURE_RUNS {
        log.take();
        slots_repo
            .list(SlotFilter {
                doctor_id: booking_service::domain::DoctorId(capture_doctor),
                from: at(day_start),
                to: at(day_end),
                status: None,
            })
            .await
            .unwrap();
        slots_sql = log.take();
    }
    let doctors_repo = PgDoctors::new(pool.clone());
    let mut doctor_sql = Vec::new();
    for _ in 0..CAPTURE_RUNS {
        log.take();
        doctors_repo
            .get(booking_service::domain::DoctorId(capture_doctor))
            .await
            .unwrap()
            .unwrap();
        doctor_sql = log.take();
    }
    // How PostgreSQL plans them after CAPTURE_RUNS executions: a statement that keeps
    // getting custom plans is planned again at every execution.
    #[derive(diesel::QueryableByName)]
    struct Plans {
        #[diesel(sql_type = Text)]
        statement: String,
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        generic_plans: i64,
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        custom_plans: i64,
    }
    let plans: Vec<Plans> = pool
        .run(|conn| {
            diesel::sql_query(
                "SELECT statement, generic_plans, custom_plans FROM pg_prepared_statements ORDER BY prepare_time",
            )
            .load(conn)
            .map_err(DbError::from)
        })
        .await
        .unwrap();
    println!("\nplans of the service's prepared statements after {CAPTURE_RUNS} executions (capture connection):");
    for p in &plans {
        let text = p.statement.split_whitespace().collect::<Vec<_>>().join(" ");
        println!(
            "  generic {:>2}, custom {:>2}: {}…",
            p.generic_plans,
            p.custom_plans,
            text.chars().take(70).collect::<String>()
        );
    }
    drop((service, slots_repo, doctors_repo, pool));
    println!("\nstatements sent (captured with StatementLog):");
    for (what, sent) in [
        ("booking", &booking_sql),
        ("slots for a day", &slots_sql),
        ("doctor", &doctor_sql),
    ] {
        println!("  {what}: {} round trips", sent.len());
        for s in sent {
            println!("    {}", s.split_whitespace().collect::<Vec<_>>().join(" "));
        }
    }
    let find = |sent: &[String], needle: &str| -> String {
        sent.iter()
            .find(|s| s.contains(needle))
            .unwrap_or_else(|| panic!("no statement with {needle:?} in {sent:#?}"))
            .clone()
    };
    assert_eq!(booking_sql.len(), 5, "{booking_sql:#?}");
    let (patient_facts, slot_facts, write) = (
        find(&booking_sql, "FROM users"),
        find(&booking_sql, "FROM slots s"),
        find(&booking_sql, "INSERT INTO outbox_events"),
    );
    assert_eq!(
        booking_sql.first().map(String::as_str),
        Some("BEGIN"),
        "{booking_sql:#?}"
    );
    assert_eq!(
        booking_sql.last().map(String::as_str),
        Some("COMMIT"),
        "{booking_sql:#?}"
    );
    assert_eq!(slots_sql.len(), 1, "{slots_sql:#?}");
    assert_eq!(doctor_sql.len(), 1, "{doctor_sql:#?}");

    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(16)
        .build()
        .unwrap();
    let issuer = JwtIssuer::new(
        JWT_SECRET.as_bytes(),
        "medbook",
        "medbook-api",
        Duration::from_secs(3600),
        Duration::from_secs(3600),
    );
    let mut rows = Vec::new();

    // 1. Booking. Request t: slot t (round robin over the side's doctors), patient
    //    t mod PATIENTS_PER_SIDE (so a client's patients are its own).
    let http_patients: Vec<usize> = (0..PATIENTS_PER_SIDE).collect();
    let tokens: Arc<Vec<String>> = Arc::new(
        key_ids(&mut conn, PATIENT_KEY, &http_patients)
            .into_iter()
            .map(|id| {
                issuer
                    .issue_access(UserId(id), Role::Patient, Utc::now())
                    .unwrap()
                    .token
            })
            .collect(),
    );
    let order: Vec<usize> = (0..side_slots)
        .map(|t| (t % side_doctors) * SLOTS_PER_DOCTOR + t / side_doctors)
        .collect();
    let http_slots = Arc::new(key_ids(&mut conn, SLOT_KEY, &order));
    let make: Arc<MakeRequest> = {
        let base_url = base_url.clone();
        Arc::new(move |client: &reqwest::Client, t: usize| {
            let slot = http_slots.get(t)?;
            let token = tokens.get(t % tokens.len())?;
            Some(
                client
                    .post(format!("{base_url}/api/v1/appointments"))
                    .bearer_auth(token)
                    .json(&json!({"slot_id": slot, "reason": REASON})),
            )
        })
    };
    let c = BOOKING_CONCURRENCY;
    let mut next = vec![0; c];
    drive(&client, c, WARMUP_SECS, &mut next, &make, 201).await;
    let before = sample_cpu();
    let http = drive(&client, c, secs, &mut next, &make, 201).await;
    let http_cpu = cpu_use(&before, &sample_cpu(), f64_of(http.done));
    assert!(
        next.iter().all(|j| j * c < side_slots),
        "the HTTP side ran out of slots: raise SLOTS_PER_DOCTOR"
    );

    // What the HTTP bookings wrote, for pgbench's values.
    #[derive(diesel::QueryableByName)]
    struct Written {
        #[diesel(sql_type = Text)]
        slot_status: String,
        #[diesel(sql_type = Text)]
        status: String,
        #[diesel(sql_type = Integer)]
        version: i32,
        #[diesel(sql_type = Text)]
        labels: String,
        #[diesel(sql_type = Text)]
        topic: String,
        #[diesel(sql_type = Text)]
        event_type: String,
        #[diesel(sql_type = Text)]
        payload: String,
        #[diesel(sql_type = Nullable<Text>)]
        request_id: Option<String>,
        #[diesel(sql_type = Nullable<Text>)]
        trace_parent: Option<String>,
        #[diesel(sql_type = Text)]
        audit_action: String,
        #[diesel(sql_type = Text)]
        audit_payload: String,
        #[diesel(sql_type = Nullable<Text>)]
        audit_request_id: Option<String>,
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        reminders: i64,
    }
    let w: Written = diesel::sql_query(
        "SELECT s.status AS slot_status, a.status, a.version,
                (SELECT array_agg(offset_label ORDER BY due_at)::text FROM appointment_reminders r WHERE r.appointment_id = a.id) AS labels,
                (SELECT count(*) FROM appointment_reminders r WHERE r.appointment_id = a.id) AS reminders,
                o.topic, o.event_type, o.payload, o.request_id, o.trace_parent,
                au.event_type AS audit_action, au.payload AS audit_payload, au.request_id AS audit_request_id
         FROM outbox_events o JOIN appointments a ON a.id = o.aggregate_id JOIN slots s ON s.id = a.slot_id
         -- The same booking's audit row (the statement's second outbox row).
         CROSS JOIN LATERAL (
             SELECT x.event_type, x.payload, x.request_id FROM outbox_events x
             WHERE x.sink = 'audit' AND x.id = x.aggregate_id AND strpos(x.payload, a.id::text) > 0
             ORDER BY x.seq DESC LIMIT 1) au
         WHERE o.sink = 'kafka'
         ORDER BY o.seq DESC LIMIT 1",
    )
    .get_result(&mut conn)
    .unwrap();
    assert_eq!(w.reminders, 2, "the pgbench script writes two reminders");
    let pside_patients = PATIENTS_PER_SIDE;
    let script = format!(
        "\\set t :j * {c} + :client_id
\\set j :j + 1
\\set p {PATIENT_KEY} + {pside_patients} + :t % {PATIENTS_PER_SIDE}
\\set d {half} + :t % {side_doctors}
\\set dk {DOCTOR_KEY} + :d
\\set s :t / {side_doctors}
\\set k {SLOT_KEY} + :d * {SLOTS_PER_DOCTOR} + :s
\\set start {base} + :s * 1800
\\set due1 :start - 86400
\\set due2 :start - 7200
\\set a {APPOINTMENT_KEY} + :t
\\set e {EVENT_KEY} + :t
\\set au {AUDIT_KEY} + :t
BEGIN;
{}{}{}COMMIT;
",
        command(
            &patient_facts,
            &wire_values(
                "LOCK_PATIENT",
                booking_service::repository::appointments::LOCK_PATIENT,
                &patient_facts,
                &["md5(:p::text)::uuid"]
            )
        ),
        command(
            &slot_facts,
            &wire_values(
                "SLOT_FACTS",
                booking_service::repository::appointments::SLOT_FACTS,
                &slot_facts,
                &[
                    "md5(:k::text)::uuid",
                    "md5(:p::text)::uuid",
                    ":booked::text",
                    "to_timestamp(:at)",
                    ":cap::int8",
                    "nullif(:none::text, 'none')",
                    // No no-show limit by default; the window's days.
                    "nullif(:none::text, 'none')::int8",
                    ":no_show_days::int4",
                ]
            )
        ),
        command(
            &write,
            &wire_values(
                "WRITE_BOOKING",
                booking_service::repository::appointments::WRITE_BOOKING,
                &write,
                &[
                    ":slot_status::text",
                    "md5(:k::text)::uuid",
                    "md5(:a::text)::uuid",
                    "md5(:p::text)::uuid",
                    "md5(:dk::text)::uuid",
                    ":booked::text",
                    ":reason::text",
                    "to_timestamp(:start)",
                    "to_timestamp(:at)",
                    ":version::int4",
                    "nullif(:none::text, 'none')",
                    "nullif(:none::text, 'none')",
                    ":labels::text[]",
                    "ARRAY[to_timestamp(:due1), to_timestamp(:due2)]",
                    // The event's outbox row, then the audit record's (id, aggregate
                    // id, topic, type, payload, time, request id, sink, traceparent).
                    "md5(:e::text)::uuid",
                    "md5(:a::text)::uuid",
                    ":topic::text",
                    ":event_type::text",
                    ":payload::text",
                    "to_timestamp(:at)",
                    if w.request_id.is_some() {
                        ":request_id::text"
                    } else {
                        "nullif(:none::text, 'none')"
                    },
                    "'kafka'::text",
                    if w.trace_parent.is_some() {
                        ":trace_parent::text"
                    } else {
                        "nullif(:none::text, 'none')"
                    },
                    "md5(:au::text)::uuid",
                    "md5(:au::text)::uuid",
                    "'audit'::text",
                    ":audit_action::text",
                    ":audit_payload::text",
                    "to_timestamp(:at)",
                    if w.audit_request_id.is_some() {
                        ":audit_request_id::text"
                    } else {
                        "nullif(:none::text, 'none')"
                    },
                    "'audit'::text",
                    if w.trace_parent.is_some() {
                        ":trace_parent::text"
                    } else {
                        "nullif(:none::text, 'none')"
                    },
                    // The appointment's end and its manage-link token's hash.
                    "to_timestamp(:start + 1800)",
                    "md5(:a::text)",
                ]
            )
        ),
    );
    let now = Utc::now().timestamp().to_string();
    let mut defines = vec![
        ("at", now.clone()),
        ("booked", w.status.clone()),
        ("slot_status", w.slot_status.clone()),
        ("cap", MAX_ACTIVE.to_string()),
        ("no_show_days", DEFAULT_NO_SHOW_WINDOW_DAYS.to_string()),
        ("reason", REASON.to_owned()),
        ("version", w.version.to_string()),
        ("labels", w.labels.clone()),
        ("topic", w.topic.clone()),
        ("event_type", w.event_type.clone()),
        ("payload", w.payload.clone()),
        ("request_id", w.request_id.clone().unwrap_or_default()),
        ("audit_action", w.audit_action.clone()),
        ("audit_payload", w.audit_payload.clone()),
        (
            "audit_request_id",
            w.audit_request_id.clone().unwrap_or_default(),
        ),
        ("trace_parent", w.trace_parent.clone().unwrap_or_default()),
        ("none", "none".to_owned()),
        ("j", "0".to_owned()),
    ];
    // pgbench refuses an empty `-D` value; the script does not use those (NULL binds).
    defines.retain(|(_, v)| !v.is_empty());
    println!(
        "\nbooking event payload: {} bytes, audit payload: {} bytes; pgbench booking script:\n{}",
        w.payload.len(),
        w.audit_payload.len(),
        script.replace(&w.payload, "…")
    );
    let warm = pgbench("booking", &script, c, WARMUP_SECS, &defines);
    if let Some(j) = defines.iter_mut().find(|(k, _)| *k == "j") {
        j.1 = warm.processed.to_string();
    }
    let budget = (side_slots / c).saturating_sub(warm.processed);
    let expected = warm.tps * 1.5 * f64_of(usize::try_from(secs).unwrap()) / f64_of(c);
    assert!(
        expected < f64_of(budget),
        "pgbench may run out of slots: raise SLOTS_PER_DOCTOR"
    );
    let pg = pgbench("booking", &script, c, secs, &defines);
    rows.push(Row {
        operation: "booking",
        concurrency: c,
        round_trips: booking_sql.len(),
        http,
        http_cpu,
        pgbench: pg,
    });

    // 2. A doctor's slots for a day: any doctor with slots, the same day; the doctor
    //    check before the query is served by the cache (every doctor read first).
    let slot_doctor_ids: Vec<usize> = (0..=SLOT_DOCTORS).collect();
    let slot_doctors = Arc::new(key_ids(&mut conn, DOCTOR_KEY, &slot_doctor_ids));
    for id in slot_doctors.iter() {
        let res = client
            .get(format!("{base_url}/api/v1/doctors/{id}"))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
    }
    let (from, to) = (at(day_start).to_rfc3339(), at(day_end).to_rfc3339());
    let query = format!(
        "from={}&to={}",
        from.replace('+', "%2B"),
        to.replace('+', "%2B")
    );
    let make: Arc<MakeRequest> = {
        let (base_url, slot_doctors) = (base_url.clone(), slot_doctors.clone());
        Arc::new(move |client: &reqwest::Client, t: usize| {
            let id = slot_doctors.get(t * 7919 % slot_doctors.len())?;
            Some(client.get(format!("{base_url}/api/v1/doctors/{id}/slots?{query}")))
        })
    };
    let c = READ_CONCURRENCY;
    let mut next = vec![0; c];
    drive(&client, c, WARMUP_SECS, &mut next, &make, 200).await;
    let before = sample_cpu();
    let http = drive(&client, c, secs, &mut next, &make, 200).await;
    let http_cpu = cpu_use(&before, &sample_cpu(), f64_of(http.done));
    let script = format!(
        "\\set d random(0, {SLOT_DOCTORS})
\\set dk {DOCTOR_KEY} + :d
{}",
        command(
            slots_sql.first().unwrap(),
            &[
                "md5(:dk::text)::uuid",
                "to_timestamp(:from)",
                "to_timestamp(:to)",
                ":lim::int8",
            ]
        )
    );
    println!("\npgbench slots script:\n{script}");
    let defines = [
        ("from", day_start.to_string()),
        ("to", day_end.to_string()),
        ("lim", "2000".to_owned()),
    ];
    pgbench("slots", &script, c, WARMUP_SECS, &defines);
    let pg = pgbench("slots", &script, c, secs, &defines);
    rows.push(Row {
        operation: "slots for a day",
        concurrency: c,
        round_trips: slots_sql.len(),
        http,
        http_cpu,
        pgbench: pg,
    });

    // 3. An uncached doctor: request t reads doctor t of those without slots, each once.
    let read_ids: Vec<usize> = (SLOT_DOCTORS + 1..=SLOT_DOCTORS + read_doctor_count).collect();
    let read_doctors = Arc::new(key_ids(&mut conn, DOCTOR_KEY, &read_ids));
    let make: Arc<MakeRequest> = {
        let base_url = base_url.clone();
        Arc::new(move |client: &reqwest::Client, t: usize| {
            let id = read_doctors.get(t)?;
            Some(client.get(format!("{base_url}/api/v1/doctors/{id}")))
        })
    };
    let mut next = vec![0; c];
    drive(&client, c, WARMUP_SECS, &mut next, &make, 200).await;
    let before = sample_cpu();
    let http = drive(&client, c, secs, &mut next, &make, 200).await;
    let http_cpu = cpu_use(&before, &sample_cpu(), f64_of(http.done));
    assert!(
        next.iter().all(|j| j * c < read_doctor_count),
        "the uncached reads ran out of doctors: raise READ_DOCTORS"
    );
    let script = format!(
        "\\set d random({}, {})
\\set dk {DOCTOR_KEY} + :d
{}",
        SLOT_DOCTORS + 1,
        SLOT_DOCTORS + read_doctor_count,
        command(
            doctor_sql.first().unwrap(),
            &["md5(:dk::text)::uuid", ":one::int8"]
        )
    );
    println!("\npgbench doctor script:\n{script}");
    let defines = [("one", "1".to_owned())];
    pgbench("doctor", &script, c, WARMUP_SECS, &defines);
    let pg = pgbench("doctor", &script, c, secs, &defines);
    rows.push(Row {
        operation: "uncached doctor",
        concurrency: c,
        round_trips: doctor_sql.len(),
        http,
        http_cpu,
        pgbench: pg,
    });

    println!(
        "\n{:<16} {:>4} {:>11} {:>9} {:>9} {:>10} {:>7} {:>7} {:>9} {:>6} {:>6}",
        "operation",
        "C",
        "round trips",
        "HTTP/s",
        "pgbench",
        "HTTP/pgb",
        "p50 ms",
        "p99 ms",
        "pgb ms",
        "CPU h",
        "CPU p"
    );
    for r in &rows {
        let http_rate = f64_of(r.http.done) / r.http.secs;
        println!(
            "{:<16} {:>4} {:>11} {:>9.0} {:>9.0} {:>9.2}× {:>7.2} {:>7.2} {:>9.2} {:>6.2} {:>6.2}",
            r.operation,
            r.concurrency,
            r.round_trips,
            http_rate,
            r.pgbench.tps,
            http_rate / r.pgbench.tps,
            ms(percentile(&r.http.latencies, 50)),
            ms(percentile(&r.http.latencies, 99)),
            r.pgbench.latency_ms,
            r.http_cpu.cores,
            r.pgbench.cpu.cores,
        );
    }
    println!(
        "(round trips: database statements per operation, BEGIN/COMMIT included; pgb ms: \
         pgbench's average latency; CPU h / CPU p: cores busy machine-wide during the HTTP \
         / pgbench run, of {})",
        std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
    );
    println!(
        "CPU per operation, µs (service/bench-client: the load generator; service/actix-*: \
         the server's workers; service/tokio-*: its blocking pool, where Diesel runs):"
    );
    for r in &rows {
        println!("  {:<16} HTTP:    {}", r.operation, cpu_text(&r.http_cpu));
        println!("  {:<16} pgbench: {}", "", cpu_text(&r.pgbench.cpu));
    }

    handle.stop(true).await;
    let _ = server.await;
    drop(conn);
    bench::drop_scratch_db(DB);
}
