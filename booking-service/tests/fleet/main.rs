//! The fleet test: two booking-service processes and two notification-service processes
//! on one database, one broker and one mail sink — the production binaries — under a
//! couple of minutes of mixed booking, cancelling and rescheduling through both
//! replicas while processes are killed (SIGKILL and SIGTERM) and restarted, the broker
//! and the mail server are frozen (SIGSTOP) and the database connections are cut.
//!
//! Then it checks what a clinic relies on: every slot's status agrees with its
//! appointments; every event was published and became exactly one e-mail (duplicates
//! only where a worker died mid-send, counted); each appointment's e-mails arrived in
//! version order; no answer was a 5xx but a deliberate 503; and a booking retried with
//! its `Idempotency-Key` after a cut connection got its own appointment back. It prints
//! its figures.
//!
//! Run alone: `cargo test -p booking-service --test fleet -- --nocapture` (after
//! `cargo build -p notification-service`; `./scripts/test.sh` does both).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::cast_possible_truncation,
    clippy::cast_possible_wrap,
    clippy::cast_sign_loss,
    clippy::cast_precision_loss,
    clippy::cast_lossless,
    clippy::print_stdout
)]

use diesel::prelude::*;
use medbook_test_support::kafka::{PrivateBroker, TestTopics};
use medbook_test_support::mail::Maildev;
use medbook_test_support::pg::TestDb;
use medbook_test_support::process::{service_command, ServiceProcess};
use rand::seq::SliceRandom;
use rand::Rng;
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use uuid::Uuid;

const JWT_SECRET: &str = "fleet-test-secret-that-is-long-enough-for-hs256";
const GROUP: &str = "fleet-notifications";
/// How long the mixed load runs; the faults are spread over it.
const LOAD: Duration = Duration::from_secs(100);
const CLIENTS: usize = 8;

fn booking_binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_booking-service"))
}

/// The notification-service binary beside booking-service's (built by
/// `./scripts/test.sh`); its absence fails the test loudly.
fn notification_binary() -> PathBuf {
    let path = booking_binary().with_file_name("notification-service");
    assert!(
        path.exists(),
        "{} is missing: run `cargo build -p notification-service` first (./scripts/test.sh does)",
        path.display()
    );
    path
}

/// One process of the fleet, restartable with the same environment and ports.
struct Member {
    name: String,
    binary: PathBuf,
    env: Vec<(String, String)>,
    process: Option<ServiceProcess>,
    /// Its HTTP base URL (booking-service: the API; notification-service: probes).
    base: String,
    /// The message of the log line that says it is up.
    ready_message: &'static str,
}

impl Member {
    fn start(&mut self) {
        // Its log, kept for whoever reads a failure: target/fleet/<name>.log.
        let log = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../target/fleet"))
            .join(format!("{}.log", self.name));
        let process = ServiceProcess::spawn_logging(
            service_command(&self.binary)
                .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
                .stderr(Stdio::null()),
            Some(&log),
        );
        process.wait_for(self.ready_message, Duration::from_secs(90));
        self.process = Some(process);
    }

    /// Stops it with `sig` and waits for the exit (SIGTERM: a graceful stop).
    fn stop(&mut self, sig: &str) {
        let mut process = self.process.take().unwrap();
        process.signal(sig);
        process.wait(Duration::from_secs(60));
    }

    /// Stops it with `sig` and starts it again, off the async workers (both block).
    fn restart(&mut self, sig: &str) {
        tokio::task::block_in_place(|| {
            self.stop(sig);
            self.start();
        });
    }
}

fn free_addr() -> String {
    format!("127.0.0.1:{}", medbook_test_support::free_port())
}

fn booking_member(name: &str, db: &TestDb, topics: &TestTopics) -> Member {
    let addr = free_addr();
    let env = [
        ("MEDBOOK_DATABASE__URL", db.url()),
        ("MEDBOOK_HTTP__ADDR", addr.clone()),
        ("MEDBOOK_HTTP__OPS_ADDR", "127.0.0.1:0".into()),
        ("MEDBOOK_HTTP__SHUTDOWN_GRACE_SECS", "5".into()),
        ("MEDBOOK_GRPC__ADDR", "127.0.0.1:0".into()),
        ("MEDBOOK_AUTH__JWT_SECRET", JWT_SECRET.into()),
        ("MEDBOOK_AUTH__BCRYPT_COST", "10".into()),
        ("MEDBOOK_KAFKA__BROKERS", topics.brokers.clone()),
        ("MEDBOOK_KAFKA__TOPIC_PREFIX", topics.prefix.clone()),
        ("MEDBOOK_OUTBOX__POLL_INTERVAL_MS", "100".into()),
        ("MEDBOOK_OUTBOX__MESSAGE_TIMEOUT_MS", "5000".into()),
        ("MEDBOOK_OUTBOX__BACKOFF_MAX_MS", "2000".into()),
        ("MEDBOOK_OUTBOX__LEASE_MS", "8000".into()),
        // The audit trail has its own tests; this fleet is about bookings and e-mails.
        ("MEDBOOK_AUDIT__RELAY_ENABLED", "false".into()),
        ("MEDBOOK_AUDIT__APPEND_TOKEN", "fleet-append-token".into()),
        ("MEDBOOK_AUDIT__READ_TOKEN", "fleet-read-token".into()),
        ("MEDBOOK_BOOKING__MAX_ACTIVE_PER_PATIENT", "1000".into()),
        ("MEDBOOK_LOG__LEVEL", "warn,booking_service=info".into()),
    ];
    Member {
        name: name.into(),
        binary: booking_binary(),
        env: env.into_iter().map(|(k, v)| (k.to_owned(), v)).collect(),
        process: None,
        base: format!("http://{addr}"),
        ready_message: "listening",
    }
}

fn notification_member(name: &str, db: &TestDb, topics: &TestTopics, smtp_port: u16) -> Member {
    let addr = free_addr();
    let env = [
        ("MEDBOOK_DATABASE__URL", db.url()),
        ("MEDBOOK_HTTP__ADDR", addr.clone()),
        ("MEDBOOK_KAFKA__BROKERS", topics.brokers.clone()),
        ("MEDBOOK_KAFKA__TOPIC_PREFIX", topics.prefix.clone()),
        ("MEDBOOK_CONSUMER__GROUP_ID", GROUP.into()),
        ("MEDBOOK_CONSUMER__SESSION_TIMEOUT_MS", "6000".into()),
        ("MEDBOOK_CONSUMER__COMMIT_INTERVAL_MS", "200".into()),
        ("MEDBOOK_SMTP__PORT", smtp_port.to_string()),
        ("MEDBOOK_SMTP__TIMEOUT_MS", "3000".into()),
        ("MEDBOOK_RETRY__INITIAL_BACKOFF_MS", "200".into()),
        ("MEDBOOK_RETRY__MAX_BACKOFF_MS", "1000".into()),
        ("MEDBOOK_DEDUP__CLAIM_TIMEOUT_SECS", "3".into()),
        ("MEDBOOK_LOG__LEVEL", "info".into()),
    ];
    Member {
        name: name.into(),
        binary: notification_binary(),
        env: env.into_iter().map(|(k, v)| (k.to_owned(), v)).collect(),
        process: None,
        base: format!("http://{addr}"),
        ready_message: "subscribed",
    }
}

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    n: i64,
}

fn count(db: &TestDb, sql: &str) -> i64 {
    diesel::sql_query(sql)
        .get_result::<Count>(&mut db.conn())
        .unwrap()
        .n
}

#[derive(QueryableByName, Clone)]
struct SlotRow {
    #[diesel(sql_type = diesel::sql_types::Uuid)]
    id: Uuid,
    #[diesel(sql_type = diesel::sql_types::Uuid)]
    doctor_id: Uuid,
}

#[derive(QueryableByName)]
struct EventRow {
    #[diesel(sql_type = diesel::sql_types::Uuid)]
    id: Uuid,
    #[diesel(sql_type = diesel::sql_types::Uuid)]
    aggregate_id: Uuid,
    #[diesel(sql_type = diesel::sql_types::Text)]
    event_type: String,
    #[diesel(sql_type = diesel::sql_types::Text)]
    payload: String,
}

/// What the clients saw.
#[derive(Default)]
struct Tally {
    /// (operation, status) -> count; status 0: no answer (connection cut).
    answers: BTreeMap<(String, u16), u64>,
    /// 5xx answers other than 503, with their bodies.
    server_errors: Vec<String>,
    /// Bookings whose first try got no answer and were retried with the same key:
    /// (patient, key, appointment id the retry returned).
    retried: Vec<(Uuid, String, Uuid)>,
}

struct Patient {
    id: Uuid,
    token: String,
}

#[derive(Clone)]
struct Clients {
    http: reqwest::Client,
    bases: Arc<Vec<String>>,
    tally: Arc<Mutex<Tally>>,
}

impl Clients {
    fn record(&self, op: &str, status: u16, body: &str) {
        let mut t = self.tally.lock().unwrap();
        *t.answers.entry((op.to_owned(), status)).or_default() += 1;
        if status >= 500 && status != 503 {
            t.server_errors.push(format!("{op} {status}: {body}"));
        }
    }

    /// Sends to replica `first`, and on no answer (the replica is down or the
    /// connection was cut) to the other one, up to a deadline: as a client behind a
    /// load balancer retries. Returns the answer and whether a retry was needed.
    async fn send(
        &self,
        op: &str,
        first: usize,
        build: impl Fn(&reqwest::Client, &str) -> reqwest::RequestBuilder,
    ) -> Option<(u16, Value, bool)> {
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut replica = first;
        let mut retried = false;
        // Retries are paced, ten a second at most, as a client's should be.
        let mut pace = tokio::time::interval(Duration::from_millis(100));
        loop {
            pace.tick().await;
            let base = &self.bases[replica % self.bases.len()];
            match build(&self.http, base).send().await {
                Ok(res) => {
                    let status = res.status().as_u16();
                    let text = res.text().await.unwrap_or_default();
                    self.record(op, status, &text);
                    if status == 503 && Instant::now() < deadline {
                        // Deliberate: the database or broker is away; try again.
                        retried = true;
                        replica += 1;
                        continue;
                    }
                    let body = serde_json::from_str(&text).unwrap_or(Value::Null);
                    return Some((status, body, retried));
                }
                Err(_) => {
                    self.record(op, 0, "");
                    if Instant::now() >= deadline {
                        return None;
                    }
                    retried = true;
                    replica += 1;
                }
            }
        }
    }
}

async fn login(http: &reqwest::Client, base: &str, email: &str) -> String {
    let res = http
        .post(format!("{base}/api/v1/auth/login"))
        .json(&json!({"email": email, "password": booking_service::demo::DEMO_PATIENT_PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200, "login of {email}");
    res.json::<Value>().await.unwrap()["access_token"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// One client: books, cancels and reschedules at random for its patients until `until`.
async fn client(
    clients: Clients,
    patients: Arc<Vec<Patient>>,
    slots: Arc<Vec<SlotRow>>,
    until: Instant,
    seed: usize,
) {
    let mut mine: Vec<(usize, Uuid, Uuid)> = Vec::new(); // (patient, appointment, doctor)
    let mut n = seed;
    while Instant::now() < until {
        n += 1;
        let replica = n % 2;
        let choice: u8 = rand::thread_rng().gen_range(0..10);
        if mine.is_empty() || choice < 5 {
            let p = rand::thread_rng().gen_range(0..patients.len());
            let slot = slots.choose(&mut rand::thread_rng()).unwrap().clone();
            let key = Uuid::new_v4().to_string();
            let token = patients[p].token.clone();
            let answer = clients
                .send("book", replica, |http, base| {
                    http.post(format!("{base}/api/v1/appointments"))
                        .bearer_auth(&token)
                        .header("Idempotency-Key", &key)
                        .json(&json!({"slot_id": slot.id, "reason": "fleet"}))
                })
                .await;
            if let Some((status, body, retried)) = answer {
                if status == 201 || status == 200 {
                    let id: Uuid = body["id"].as_str().unwrap().parse().unwrap();
                    mine.push((p, id, slot.doctor_id));
                    if retried {
                        clients
                            .tally
                            .lock()
                            .unwrap()
                            .retried
                            .push((patients[p].id, key, id));
                    }
                }
            }
        } else if choice < 7 {
            let i = rand::thread_rng().gen_range(0..mine.len());
            let (p, id, _) = mine.swap_remove(i);
            let token = patients[p].token.clone();
            clients
                .send("cancel", replica, |http, base| {
                    http.post(format!("{base}/api/v1/appointments/{id}/cancel"))
                        .bearer_auth(&token)
                        .json(&json!({}))
                })
                .await;
        } else {
            let i = rand::thread_rng().gen_range(0..mine.len());
            let (p, id, doctor) = mine[i];
            let candidates: Vec<&SlotRow> =
                slots.iter().filter(|s| s.doctor_id == doctor).collect();
            let slot = (*candidates.choose(&mut rand::thread_rng()).unwrap()).clone();
            let token = patients[p].token.clone();
            clients
                .send("reschedule", replica, |http, base| {
                    http.post(format!("{base}/api/v1/appointments/{id}/reschedule"))
                        .bearer_auth(&token)
                        .json(&json!({"slot_id": slot.id}))
                })
                .await;
        }
    }
}

/// Cuts every database connection of `db` but the caller's.
fn cut_connections(db: &TestDb) -> i64 {
    let name = db.url().rsplit('/').next().unwrap().to_owned();
    count(
        db,
        &format!(
            "SELECT count(pg_terminate_backend(pid)) AS n FROM pg_stat_activity
             WHERE datname = '{name}' AND pid <> pg_backend_pid()"
        ),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_fleet_keeps_its_promises_through_kills_freezes_and_cut_connections() {
    let started = Instant::now();
    let booking_db = TestDb::migrated(
        "fleet",
        booking_service::repository::migrations::MIGRATIONS,
        std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../migrations")),
    );
    let notify_db = TestDb::migrated(
        "fleetnotify",
        NOTIFICATION_MIGRATIONS,
        std::path::Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../notification-service/migrations"
        )),
    );
    let broker = PrivateBroker::start().await;
    let topics = TestTopics::create(&broker.brokers(), 3).await;
    let mail = Maildev::start(None).await;

    let mut booking: Vec<Member> = (0..2)
        .map(|i| booking_member(&format!("booking-{i}"), &booking_db, &topics))
        .collect();
    // Demo data through the CLI: clinics, doctors, a month of slots, patients.
    let seeded = service_command(booking_binary())
        .envs(booking[0].env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        // Demo accounts have a published password: only the dev profile loads them.
        .env("MEDBOOK_PROFILE", "dev")
        .args(["seed-demo", "--doctors", "4", "--patients", "12"])
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(seeded.success(), "seed-demo failed");
    for m in &mut booking {
        m.start();
    }
    let mut workers: Vec<Member> = (0..2)
        .map(|i| {
            notification_member(
                &format!("notification-{i}"),
                &notify_db,
                &topics,
                mail.smtp_port,
            )
        })
        .collect();
    for w in &mut workers {
        w.start();
    }

    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap();
    let mut patients = Vec::new();
    for i in 1..=12 {
        let email = format!("patient{i:02}@demo.medbook.local");
        let token = login(&http, &booking[i % 2].base, &email).await;
        let id: Uuid = {
            #[derive(QueryableByName)]
            struct Id {
                #[diesel(sql_type = diesel::sql_types::Uuid)]
                id: Uuid,
            }
            diesel::sql_query("SELECT id FROM users WHERE email = $1")
                .bind::<diesel::sql_types::Text, _>(&email)
                .get_result::<Id>(&mut booking_db.conn())
                .unwrap()
                .id
        };
        patients.push(Patient { id, token });
    }
    // Slots more than a day ahead: no reminder falls due during the run.
    let slots: Vec<SlotRow> = diesel::sql_query(
        "SELECT id, doctor_id FROM slots WHERE status = 'available' AND starts_at > now() + interval '3 days'",
    )
    .load(&mut booking_db.conn())
    .unwrap();
    assert!(slots.len() > 50, "only {} slots", slots.len());
    let clients = Clients {
        http: http.clone(),
        bases: Arc::new(booking.iter().map(|m| m.base.clone()).collect()),
        tally: Arc::default(),
    };

    // The load.
    let until = Instant::now() + LOAD;
    let patients = Arc::new(patients);
    // One slot kept out of the load, for the booking retried after the cut.
    let mut slots = slots;
    let kept_slot = slots.remove(0);
    let slots = Arc::new(slots);
    let load: Vec<_> = (0..CLIENTS)
        .map(|i| {
            tokio::spawn(client(
                clients.clone(),
                patients.clone(),
                slots.clone(),
                until,
                i,
            ))
        })
        .collect();

    // The faults, on a schedule over the load (each at its second of the run).
    let t0 = tokio::time::Instant::now();
    let at = |secs: u64| tokio::time::sleep_until(t0 + Duration::from_secs(secs));
    let mut faults = Vec::new();
    at(8).await;
    workers[0].restart("-KILL");
    faults.push("SIGKILL notification-0");
    at(18).await;
    broker.pause();
    faults.push("SIGSTOP broker 5 s");
    at(23).await;
    broker.resume();
    at(30).await;
    booking[0].restart("-TERM");
    faults.push("SIGTERM booking-0");
    at(40).await;
    mail.pause();
    faults.push("SIGSTOP mail server 5 s");
    at(45).await;
    mail.resume();
    // A booking, then every database connection cut, then the same booking retried
    // with its key through the other replica: its own appointment comes back.
    at(52).await;
    let key = Uuid::new_v4().to_string();
    let slot = kept_slot;
    let p = &patients[0];
    let book = |base: String| {
        http.post(format!("{base}/api/v1/appointments"))
            .bearer_auth(&p.token)
            .header("Idempotency-Key", &key)
            .json(&json!({"slot_id": slot.id, "reason": "fleet"}))
            .send()
    };
    let first = book(booking[0].base.clone()).await.unwrap();
    let first_status = first.status().as_u16();
    let first_body: Value = first.json().await.unwrap();
    let cut = cut_connections(&booking_db) + cut_connections(&notify_db);
    faults.push("database connections cut");
    // The replica may answer 503 while its pool reconnects: asked again until it
    // answers otherwise.
    let again = medbook_test_support::eventually(
        "the booking retried with its key answered",
        Duration::from_secs(30),
        || async {
            let res = book(booking[1].base.clone()).await.ok()?;
            (res.status() != 503).then_some(res)
        },
    )
    .await;
    let again_status = again.status().as_u16();
    let again_body: Value = again.json().await.unwrap();
    at(62).await;
    booking[1].restart("-KILL");
    faults.push("SIGKILL booking-1");
    at(72).await;
    workers[1].restart("-TERM");
    faults.push("SIGTERM notification-1");
    at(82).await;
    workers[0].restart("-KILL");
    faults.push("SIGKILL notification-0");
    for l in load {
        l.await.unwrap();
    }
    let load_took = t0.elapsed();

    // Quiet: every event in the outbox published to the broker (the audit records
    // wait for an audit-service this test does not run), every event e-mailed.
    let published = medbook_test_support::eventually(
        "the outbox published",
        Duration::from_secs(120),
        || async {
            (count(
                &booking_db,
                "SELECT count(*) AS n FROM outbox_events WHERE published_at IS NULL AND sink = 'kafka'",
            ) == 0)
                .then_some(())
        },
    );
    published.await;
    let events: Vec<EventRow> = diesel::sql_query(
        "SELECT id, aggregate_id, event_type, payload FROM outbox_events
         WHERE sink = 'kafka' AND event_type LIKE 'appointment.%' ORDER BY seq",
    )
    .load(&mut booking_db.conn())
    .unwrap();
    let by_id: HashMap<Uuid, &EventRow> = events.iter().map(|e| (e.id, e)).collect();
    let changes: HashSet<Uuid> = events
        .iter()
        .filter(|e| e.event_type != "appointment.reminder")
        .map(|e| e.id)
        .collect();
    let emails = medbook_test_support::eventually(
        "an e-mail for every booking, cancellation and reschedule",
        Duration::from_secs(180),
        || async {
            let all = mail.all().await;
            let seen: HashSet<Uuid> = all.iter().filter_map(event_id).collect();
            changes.is_subset(&seen).then_some(all)
        },
    )
    .await;

    // 1. Slots agree with their appointments: a slot is booked exactly when one
    //    appointment that is not cancelled holds it (the demo's past visits included).
    let inconsistent = count(
        &booking_db,
        "SELECT count(*) AS n FROM slots s WHERE (s.status = 'booked') <> EXISTS (
             SELECT 1 FROM appointments a WHERE a.slot_id = s.id AND a.status <> 'cancelled')",
    );
    let double = count(
        &booking_db,
        "SELECT count(*) AS n FROM (SELECT slot_id FROM appointments WHERE status <> 'cancelled'
             GROUP BY slot_id HAVING count(*) > 1) d",
    );
    assert_eq!(
        (inconsistent, double),
        (0, 0),
        "slots disagree with appointments"
    );

    // 2. Every event became exactly one e-mail; duplicates only after a takeover.
    let mut per_event: HashMap<Uuid, usize> = HashMap::new();
    for e in &emails {
        if let Some(id) = event_id(e) {
            *per_event.entry(id).or_default() += 1;
        }
    }
    let unknown = per_event
        .keys()
        .filter(|id| !by_id.contains_key(id))
        .count();
    assert_eq!(unknown, 0, "e-mails for events the outbox never had");
    let duplicates: usize = per_event.values().map(|n| n - 1).sum();
    let takeovers = count(
        &notify_db,
        "SELECT coalesce(sum(takeovers), 0)::bigint AS n FROM deliveries",
    );
    assert!(
        duplicates as i64 <= takeovers,
        "{duplicates} duplicate e-mails but only {takeovers} takeovers of a dead worker's send"
    );
    let superseded = changes
        .iter()
        .filter(|id| !per_event.contains_key(id))
        .count();
    assert_eq!(superseded, 0);

    // 3. Each appointment's e-mails arrived in version order (maildev lists them in
    //    the order it accepted them).
    let mut versions: HashMap<Uuid, Vec<(i64, Uuid)>> = HashMap::new();
    for e in &emails {
        let id = event_id(e).unwrap();
        let event = by_id[&id];
        let payload: Value = serde_json::from_str(&event.payload).unwrap();
        let version = payload["data"]["version"]
            .as_i64()
            .or_else(|| payload["data"]["appointment"]["version"].as_i64())
            .unwrap_or_else(|| panic!("no version in {payload}"));
        versions
            .entry(event.aggregate_id)
            .or_default()
            .push((version, id));
    }
    let mut out_of_order = Vec::new();
    for (appointment, seen) in &versions {
        let mut last: Option<(i64, Uuid)> = None;
        for &(v, id) in seen {
            if let Some((lv, lid)) = last {
                if v < lv
                    || (v == lv && id != lid && changes.contains(&id) && changes.contains(&lid))
                {
                    out_of_order.push(format!("{appointment}: version {v} after {lv}"));
                }
            }
            last = Some((v, id));
        }
    }
    assert!(
        out_of_order.is_empty(),
        "{} out of order: {:?}",
        out_of_order.len(),
        &out_of_order[..out_of_order.len().min(10)]
    );

    // 4. No 5xx but deliberate 503s.
    let tally = clients.tally.lock().unwrap();
    assert!(tally.server_errors.is_empty(), "{:?}", tally.server_errors);

    // 5. The booking retried with its key after the cut got its own appointment back,
    //    and so did every booking the load had to retry.
    assert_eq!(first_status, 201, "{first_body}");
    assert!(
        matches!(again_status, 200 | 201),
        "{again_status} {again_body}"
    );
    assert_eq!(
        again_body["id"], first_body["id"],
        "the retry got another appointment"
    );
    for (patient, key, id) in &tally.retried {
        #[derive(QueryableByName)]
        struct Kept {
            #[diesel(sql_type = diesel::sql_types::Uuid)]
            appointment_id: Uuid,
        }
        let kept: Vec<Kept> = diesel::sql_query(
            "SELECT appointment_id FROM booking_idempotency WHERE patient_id = $1 AND key = $2",
        )
        .bind::<diesel::sql_types::Uuid, _>(patient)
        .bind::<diesel::sql_types::Text, _>(key)
        .load(&mut booking_db.conn())
        .unwrap();
        assert_eq!(kept.len(), 1);
        assert_eq!(
            &kept[0].appointment_id, id,
            "a retried booking got another appointment"
        );
    }

    let appointments = count(&booking_db, "SELECT count(*) AS n FROM appointments");
    let waits = count(&notify_db, "SELECT count(*) AS n FROM appointment_versions");
    println!("fleet: 2 booking-service + 2 notification-service processes, {CLIENTS} clients, load {:.0} s, whole test {:.0} s", load_took.as_secs_f64(), started.elapsed().as_secs_f64());
    println!(
        "fleet: faults: {}; {cut} database connections cut",
        faults.join(", ")
    );
    for ((op, status), n) in &tally.answers {
        println!(
            "fleet: {op} -> {} x{n}",
            if *status == 0 {
                "no answer".to_owned()
            } else {
                status.to_string()
            }
        );
    }
    println!(
        "fleet: the booking retried with its key after the cut: {first_status} then {again_status}, the same appointment"
    );
    println!(
        "fleet: {} appointment events ({} changes) over {appointments} appointments ({waits} seen by the notification-service); {} e-mails; {duplicates} duplicate(s) after {takeovers} takeover(s); 0 out of order; 0 slots inconsistent; {} bookings retried with their key",
        events.len(),
        changes.len(),
        emails.len(),
        tally.retried.len()
    );
}

/// The event id an e-mail carries in its Message-ID (`<event-id@medbook>`).
fn event_id(email: &Value) -> Option<Uuid> {
    email["messageId"]
        .as_str()?
        .trim_matches(|c| c == '<' || c == '>')
        .trim_end_matches("@medbook")
        .parse()
        .ok()
}

/// The notification-service's schema (its own database).
const NOTIFICATION_MIGRATIONS: diesel_migrations::EmbeddedMigrations =
    diesel_migrations::embed_migrations!("../notification-service/migrations");
