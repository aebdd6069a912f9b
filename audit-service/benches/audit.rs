//! Benchmark of the audit-service against the real PostgreSQL of
//! `scripts/lib/test-env.sh` (`MEDBOOK_TEST_DATABASE_URL`), release build:
//!
//! 1. appends per second through gRPC by batch size (1, 10, 100, 500), the service
//!    running as its binary, `BENCH_CLIENTS` concurrent clients (default 4) for
//!    `BENCH_APPEND_SECS` per size (default 5);
//! 2. `verify` over `BENCH_VERIFY_RECORDS` records (default 1,000,000), bulk-inserted
//!    with the service's own insert statement and signed by one checkpoint, then the
//!    service's start-up (loading the tree of that many leaves).
//!
//! `cargo bench -p audit-service --bench audit`; a default run takes about two minutes
//! on two cores.
//!
//! In smoke mode (`MEDBOOK_BENCH_SMOKE=1`, debug build under `cargo test --bench`):
//! 2 clients for 1 s per batch size, and `verify` over 12,000 records (three insert
//! chunks, the last one partial).
#![allow(
    clippy::unwrap_used, clippy::expect_used, clippy::print_stdout,
    // Benchmarks index and cast freely: a panic there is a failed run.
    clippy::indexing_slicing,
    clippy::cast_possible_truncation,
    clippy::cast_possible_wrap,
    clippy::cast_sign_loss,
    clippy::cast_precision_loss,
    clippy::cast_lossless
)]

use audit_service::merkle::Tree;
use audit_service::record::{Actor, FieldChange, Record};
use audit_service::repository::{self, NewRow};
use audit_service::signing::{Checkpoint, SigningKey};
use base64::Engine;
use chrono::Utc;
use medbook_proto::audit::v1 as pb;
use medbook_service_kit::db::{Db, PoolSettings};
use medbook_test_support::bench;
use medbook_test_support::pg::TestDb;
use medbook_test_support::process::{service_command, ServiceProcess};
use pb::audit_service_client::AuditServiceClient;
use std::process::Stdio;
use std::time::{Duration, Instant};
use uuid::Uuid;

/// The writer's credential: Append, and (like the read token) checkpoints and proofs.
const TOKEN: &str = "bench-append-token";
const READ_TOKEN: &str = "bench-read-token";

/// The run's size: the `BENCH_*` tunables, else the defaults (small in smoke mode).
struct Size {
    /// Appends: concurrent clients, seconds per batch size.
    clients: usize,
    append_secs: u64,
    /// Records `verify` checks.
    verify_records: u64,
}

impl Size {
    fn get() -> Self {
        Self {
            clients: bench::size("BENCH_CLIENTS", 4, 2),
            append_secs: bench::size("BENCH_APPEND_SECS", 5, 1) as u64,
            verify_records: bench::size("BENCH_VERIFY_RECORDS", 1_000_000, 12_000) as u64,
        }
    }
}

fn audit_db() -> TestDb {
    TestDb::migrated(
        "auditbench",
        repository::MIGRATIONS,
        std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations")),
    )
}

/// The binary, serving (killed when dropped).
struct Service {
    _process: ServiceProcess,
    grpc: String,
    ready_after: Duration,
}

fn start(db: &TestDb, seed_b64: &str) -> Service {
    let started = Instant::now();
    let process = ServiceProcess::spawn(
        service_command(env!("CARGO_BIN_EXE_audit-service"))
            .env("MEDBOOK_PROFILE", "production")
            .env("MEDBOOK_DATABASE__URL", db.url())
            .env("MEDBOOK_GRPC__ADDR", "127.0.0.1:0")
            .env("MEDBOOK_HTTP__OPS_ADDR", "127.0.0.1:0")
            .env("MEDBOOK_LOG__LEVEL", "info")
            .env("MEDBOOK_AUDIT__SIGNING_KEY", seed_b64)
            .env("MEDBOOK_AUDIT__APPEND_TOKEN", TOKEN)
            .env("MEDBOOK_AUDIT__READ_TOKEN", READ_TOKEN)
            .stderr(Stdio::inherit()),
    );
    let port = process.wait_for("grpc listening", Duration::from_secs(600))["port"].clone();
    process.wait_for("audit-service ready", Duration::from_secs(600));
    Service {
        _process: process,
        grpc: format!("http://127.0.0.1:{port}"),
        ready_after: started.elapsed(),
    }
}

fn pb_record(i: usize) -> pb::AuditRecord {
    pb::AuditRecord {
        id: Uuid::new_v4().to_string(),
        actor: Some(pb::Actor {
            kind: Some(pb::actor::Kind::User(pb::UserActor {
                user_id: Uuid::new_v4().to_string(),
                role: "patient".into(),
            })),
        }),
        action: "appointment.booked".into(),
        entity_type: "appointment".into(),
        entity_id: Uuid::new_v4().to_string(),
        changes: vec![pb::FieldChange {
            field: "status".into(),
            before: None,
            after: Some("\"booked\"".into()),
        }],
        source: "http".into(),
        request_id: format!("bench-{i}"),
        traceparent: String::new(),
        occurred_at: Some(medbook_proto::time::to_proto(Utc::now())),
    }
}

async fn appends(seed: &str, size: &Size) {
    let (clients, secs) = (size.clients, size.append_secs);
    let db = audit_db();
    let service = start(&db, seed);
    println!("appends through gRPC ({clients} clients, {secs} s per batch size):");
    println!("  batch  records/s  batches/s  p50 ms  p99 ms");
    let channel = tonic::transport::Channel::from_shared(service.grpc.clone())
        .unwrap()
        .connect()
        .await
        .unwrap();
    for batch in [1usize, 10, 100, 500] {
        let deadline = Instant::now() + Duration::from_secs(secs);
        let started = Instant::now();
        let tasks: Vec<_> = (0..clients)
            .map(|_| {
                let mut client =
                    AuditServiceClient::new(channel.clone()).max_decoding_message_size(64 << 20);
                tokio::spawn(async move {
                    let mut latencies = Vec::new();
                    while Instant::now() < deadline {
                        let records = (0..batch).map(pb_record).collect();
                        let mut req = tonic::Request::new(pb::AppendRequest { records });
                        req.metadata_mut()
                            .insert("authorization", format!("Bearer {TOKEN}").parse().unwrap());
                        let t = Instant::now();
                        client.append(req).await.unwrap();
                        latencies.push(t.elapsed().as_secs_f64() * 1000.0);
                    }
                    latencies
                })
            })
            .collect();
        let mut latencies = Vec::new();
        for t in tasks {
            latencies.extend(t.await.unwrap());
        }
        let elapsed = started.elapsed().as_secs_f64();
        latencies.sort_by(f64::total_cmp);
        let p = |q: f64| latencies[((latencies.len() - 1) as f64 * q).round() as usize];
        println!(
            "  {batch:>5}  {:>9.0}  {:>9.1}  {:>6.1}  {:>6.1}",
            (latencies.len() * batch) as f64 / elapsed,
            latencies.len() as f64 / elapsed,
            p(0.5),
            p(0.99)
        );
    }
}

fn record(i: u64) -> Record {
    Record {
        id: Uuid::new_v4(),
        actor: Actor::User {
            id: Uuid::new_v4(),
            role: "patient".into(),
        },
        action: "appointment.booked".into(),
        entity_type: "appointment".into(),
        entity_id: Uuid::new_v4().to_string(),
        changes: vec![FieldChange {
            field: "status".into(),
            before: None,
            after: Some("\"booked\"".into()),
        }],
        source: "http".into(),
        request_id: format!("bench-{i}"),
        occurred_at: audit_service::record::to_micros(Utc::now()),
        received_at: Some(audit_service::record::to_micros(Utc::now())),
    }
}

async fn verify_large(seed: &str, key: &SigningKey, size: &Size) {
    let n = size.verify_records;
    let db = audit_db();
    let pool = Db::new(&PoolSettings {
        url: db.url(),
        max_size: 4,
        connect_timeout: Duration::from_secs(10),
        statement_timeout: Duration::from_secs(600),
    })
    .unwrap();
    println!("verify over {n} records:");
    let started = Instant::now();
    const CHUNK: u64 = 5_000;
    let mut tree = Tree::new();
    let mut next = 0u64;
    while next < n {
        let end = (next + CHUNK).min(n);
        let records: Vec<Record> = (next..end).map(record).collect();
        let leaves: Vec<_> = (next..end)
            .zip(&records)
            .map(|(i, r)| r.leaf_hash(i))
            .collect();
        for l in &leaves {
            tree.push(*l);
        }
        pool.run(move |conn| {
            let rows: Vec<NewRow<'_>> = records
                .iter()
                .zip(leaves)
                .enumerate()
                .map(|(k, (record, leaf_hash))| NewRow {
                    index: next + k as u64,
                    record,
                    leaf_hash,
                })
                .collect();
            repository::insert_records(conn, &rows).map_err(medbook_service_kit::db::map_err)
        })
        .await
        .unwrap();
        next = end;
    }
    let cp = Checkpoint::sign(key, "medbook-audit", n, tree.root(n).unwrap(), Utc::now());
    pool.run(move |conn| {
        repository::insert_checkpoint(conn, &cp).map_err(medbook_service_kit::db::map_err)
    })
    .await
    .unwrap();
    pool.run(|conn| {
        use diesel::RunQueryDsl;
        diesel::sql_query("VACUUM ANALYZE audit_records")
            .execute(conn)
            .map_err(medbook_service_kit::db::map_err)
    })
    .await
    .unwrap();
    println!(
        "  bulk insert:        {:>7.1} s ({:.0} records/s)",
        started.elapsed().as_secs_f64(),
        n as f64 / started.elapsed().as_secs_f64()
    );

    let state = std::env::temp_dir().join(format!("audit-bench-{}.json", Uuid::new_v4()));
    let started = Instant::now();
    let report =
        audit_service::verify::verify(&pool, "medbook-audit", &[key.verifying_key()], &state)
            .await
            .unwrap();
    let took = started.elapsed().as_secs_f64();
    assert!(report.ok, "{report:?}");
    assert_eq!(report.records, n);
    println!(
        "  verify:             {took:>7.1} s ({:.0} records/s), ok",
        n as f64 / took
    );
    let _ = std::fs::remove_file(state);

    let service = start(&db, seed);
    println!(
        "  service start-up:   {:>7.1} s (tree of {n} leaves loaded and checked)",
        service.ready_after.as_secs_f64()
    );
    // One proof from the loaded tree.
    let mut client = AuditServiceClient::new(
        tonic::transport::Channel::from_shared(service.grpc.clone())
            .unwrap()
            .connect()
            .await
            .unwrap(),
    );
    let mut req = tonic::Request::new(pb::GetInclusionProofRequest {
        index: n / 3,
        tree_size: n,
    });
    req.metadata_mut()
        .insert("authorization", format!("Bearer {TOKEN}").parse().unwrap());
    let t = Instant::now();
    let proof = client.get_inclusion_proof(req).await.unwrap().into_inner();
    println!(
        "  inclusion proof:    {:>7.2} ms ({} hashes)",
        t.elapsed().as_secs_f64() * 1000.0,
        proof.path.len()
    );
}

#[tokio::main]
async fn main() {
    medbook_test_support::env("MEDBOOK_TEST_DATABASE_URL");
    let seed: [u8; 32] = rand::random();
    let seed_b64 = base64::engine::general_purpose::STANDARD.encode(seed);
    let key = SigningKey::from_base64(&secrecy::SecretString::from(seed_b64.clone())).unwrap();
    let size = Size::get();
    appends(&seed_b64, &size).await;
    verify_large(&seed_b64, &key, &size).await;
}
