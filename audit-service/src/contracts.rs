//! One contract test per port, run against the in-memory fake the unit tests use and
//! against the real implementation (PostgreSQL, the wall clock): what a fake promises
//! is what the real thing does, so the fakes cannot drift.

use crate::fakes::{key, record, t, FakeClock, FakeStore};
use crate::merkle::Hash;
use crate::ports::{Appended, Clock, Cursor, DbError, Filter, LogStore, StoredRecord, SystemClock};
use crate::record::Actor;
use crate::repository::{Db, PgLogStore, MIGRATIONS};
use crate::signing::Checkpoint;
use chrono::{DateTime, Utc};
use medbook_service_kit::db::PoolSettings;
use medbook_test_support::pg::TestDb;
use std::sync::Arc;
use uuid::Uuid;

const NO_HASHES: Vec<Hash> = Vec::new();
const NO_LEAVES: Vec<(u64, Vec<u8>)> = Vec::new();
const NO_ROWS: Vec<StoredRecord> = Vec::new();

fn indices(rows: &[StoredRecord]) -> Vec<u64> {
    rows.iter().map(|r| r.index).collect()
}

fn new(id: Uuid, index: u64) -> Appended {
    Appended {
        id,
        index,
        duplicate: false,
    }
}

fn duplicate(id: Uuid, index: u64) -> Appended {
    Appended {
        id,
        index,
        duplicate: true,
    }
}

async fn log_store_contract(store: &dyn LogStore) {
    let ann = Uuid::new_v4();
    let user = |role: &str| Actor::User {
        id: ann,
        role: role.into(),
    };
    let a = record(
        "appointment.booked",
        ("appointment", "a1"),
        user("patient"),
        0,
    );
    let mut b = record(
        "reminder.sent",
        ("appointment", "a2"),
        Actor::System("reminders".into()),
        60,
    );
    // A record from before receive times were stamped.
    b.received_at = None;
    let c = record(
        "patient.updated",
        ("patient", "p1"),
        Actor::User {
            id: Uuid::new_v4(),
            role: "admin".into(),
        },
        60,
    );
    let d = record(
        "appointment.cancelled",
        ("appointment", "a1"),
        user("patient"),
        120,
    );

    assert_eq!(store.latest_checkpoint().await.unwrap(), None);
    assert_eq!(store.leaf_hashes(0, 10).await.unwrap(), NO_LEAVES);
    assert_eq!(
        store.query(Filter::default(), None, 10).await.unwrap(),
        NO_ROWS
    );

    // A batch holding a duplicate of its own.
    let out = store
        .append(0, Arc::new(vec![a.clone(), b.clone(), a.clone()]))
        .await
        .unwrap();
    assert_eq!(
        out.results,
        vec![new(a.id, 0), new(b.id, 1), duplicate(a.id, 0)]
    );
    assert_eq!(out.leaves, vec![a.leaf_hash(0), b.leaf_hash(1)]);
    assert_eq!(out.catch_up, NO_HASHES);

    // A stored id is a duplicate; new records take the next indices.
    let out = store
        .append(2, Arc::new(vec![c.clone(), b.clone()]))
        .await
        .unwrap();
    assert_eq!(out.results, vec![new(c.id, 2), duplicate(b.id, 1)]);
    assert_eq!(out.leaves, vec![c.leaf_hash(2)]);
    assert_eq!(out.catch_up, NO_HASHES);

    // A caller holding one leaf (another replica appended since) gets the rest first.
    let out = store.append(1, Arc::new(vec![d.clone()])).await.unwrap();
    assert_eq!(out.catch_up, vec![b.leaf_hash(1), c.leaf_hash(2)]);
    assert_eq!(out.results, vec![new(d.id, 3)]);
    assert_eq!(out.leaves, vec![d.leaf_hash(3)]);

    // A caller holding more than is stored: refused, nothing stored.
    let stray = record(
        "appointment.booked",
        ("appointment", "a9"),
        user("doctor"),
        5,
    );
    let err = store
        .append(5, Arc::new(vec![stray.clone()]))
        .await
        .unwrap_err();
    assert!(
        matches!(err, DbError::Internal(_))
            && err
                .to_string()
                .contains("holds 4 records, fewer than the 5 loaded"),
        "{err}"
    );
    // Only duplicates: nothing new.
    let out = store.append(4, Arc::new(vec![a.clone()])).await.unwrap();
    assert_eq!(out.results, vec![duplicate(a.id, 0)]);
    assert_eq!((out.leaves, out.catch_up), (NO_HASHES, NO_HASHES));

    assert_eq!(
        store.leaf_hashes(1, 2).await.unwrap(),
        vec![(1, b.leaf_hash(1).to_vec()), (2, c.leaf_hash(2).to_vec())]
    );
    assert_eq!(
        store.leaf_hashes(0, 10).await.unwrap().len(),
        4,
        "the refused record is not stored"
    );
    assert_eq!(store.leaf_hashes(4, 10).await.unwrap(), NO_LEAVES);

    // Newest first; equal times by index.
    let all = store.query(Filter::default(), None, 10).await.unwrap();
    assert_eq!(indices(&all), [3, 2, 1, 0]);
    let by_index = |i: u64| all.iter().find(|r| r.index == i).unwrap();
    for (i, r) in [(0, &a), (1, &b), (2, &c), (3, &d)] {
        let row = by_index(i);
        assert_eq!(row.record().as_ref(), Some(r), "index {i}");
        assert_eq!(row.leaf_hash, r.leaf_hash(i).to_vec(), "index {i}");
        assert!(
            (Utc::now() - row.appended_at).num_seconds().abs() < 60,
            "appended_at {}",
            row.appended_at
        );
    }
    assert_eq!(by_index(1).received_at, None);
    assert_eq!(by_index(1).actor_id, "reminders");

    // Pages.
    let page = store.query(Filter::default(), None, 2).await.unwrap();
    assert_eq!(indices(&page), [3, 2]);
    let after = page.last().map(|r| Cursor {
        occurred_at: r.occurred_at,
        index: r.index,
    });
    let page = store.query(Filter::default(), after, 2).await.unwrap();
    assert_eq!(indices(&page), [1, 0]);
    let after = Some(Cursor {
        occurred_at: t(0),
        index: 0,
    });
    assert_eq!(
        store.query(Filter::default(), after, 2).await.unwrap(),
        NO_ROWS
    );

    // Filters.
    let filtered = |f: Filter| async move { indices(&store.query(f, None, 10).await.unwrap()) };
    let text = |s: &str| Some(s.to_owned());
    let cases: Vec<(Filter, Vec<u64>)> = vec![
        (
            Filter {
                entity_type: text("appointment"),
                entity_id: text("a1"),
                ..Filter::default()
            },
            vec![3, 0],
        ),
        (
            Filter {
                entity_type: text("appointment"),
                ..Filter::default()
            },
            vec![3, 1, 0],
        ),
        (
            Filter {
                actor_id: Some(ann.to_string()),
                ..Filter::default()
            },
            vec![3, 0],
        ),
        (
            Filter {
                actor_id: text("reminders"),
                ..Filter::default()
            },
            vec![1],
        ),
        (
            Filter {
                action: text("patient.updated"),
                ..Filter::default()
            },
            vec![2],
        ),
        (
            Filter {
                from: Some(t(60)),
                ..Filter::default()
            },
            vec![3, 2, 1],
        ),
        (
            Filter {
                to: Some(t(60)),
                ..Filter::default()
            },
            vec![0],
        ),
        (
            Filter {
                from: Some(t(60)),
                to: Some(t(120)),
                ..Filter::default()
            },
            vec![2, 1],
        ),
        (
            Filter {
                entity_type: text("nothing"),
                ..Filter::default()
            },
            vec![],
        ),
    ];
    for (f, expected) in cases {
        assert_eq!(filtered(f.clone()).await, expected, "{f:?}");
    }

    // Checkpoints: the largest tree's is the latest; a size already stored keeps
    // the first one.
    let signer = key(7);
    let cp = |size: u64, issued: DateTime<Utc>| {
        Checkpoint::sign(
            &signer,
            "contract",
            size,
            [u8::try_from(size).unwrap(); 32],
            issued,
        )
    };
    assert!(store.insert_checkpoint(cp(2, t(10))).await.unwrap());
    assert_eq!(store.latest_checkpoint().await.unwrap(), Some(cp(2, t(10))));
    assert!(store.insert_checkpoint(cp(4, t(20))).await.unwrap());
    assert!(!store.insert_checkpoint(cp(4, t(30))).await.unwrap());
    assert!(store.insert_checkpoint(cp(3, t(40))).await.unwrap());
    assert_eq!(store.latest_checkpoint().await.unwrap(), Some(cp(4, t(20))));

    // Appends at once, all knowing 4 leaves (replicas that have not seen each
    // other's): contiguous indices, each taking the leaves of those before it first.
    let batches: Vec<Arc<Vec<_>>> = (0..6)
        .map(|n| {
            Arc::new(
                (0..10)
                    .map(|i| record("x.y", ("appointment", "a"), user("doctor"), n * 10 + i))
                    .collect(),
            )
        })
        .collect();
    let mut outcomes: Vec<_> =
        futures_util::future::join_all(batches.iter().map(|batch| store.append(4, batch.clone())))
            .await
            .into_iter()
            .map(Result::unwrap)
            .collect();
    outcomes.sort_by_key(|o| o.results.first().map(|r| r.index));
    let mut before = vec![];
    for (o, first) in outcomes.iter().zip((4..).step_by(10)) {
        assert_eq!(
            o.results.iter().map(|r| r.index).collect::<Vec<_>>(),
            (first..first + 10).collect::<Vec<_>>()
        );
        assert_eq!(o.catch_up, before, "the leaves before index {first}");
        before.extend(o.leaves.iter().copied());
    }
    assert_eq!(store.leaf_hashes(0, 100).await.unwrap().len(), 64);
}

/// What the log relies on in a clock: it does not run backwards, and it tells a
/// plausible time (checkpoints carry it).
async fn clock_contract(clock: &dyn Clock) {
    let earliest = DateTime::from_timestamp(1_735_689_600, 0).unwrap(); // 2025-01-01
    let latest = DateTime::from_timestamp(4_102_444_800, 0).unwrap(); // 2100-01-01
    let mut previous = clock.now();
    assert!(
        previous > earliest && previous < latest,
        "{previous} is not a plausible time"
    );
    for _ in 0..1000 {
        let now = clock.now();
        assert!(now >= previous, "{now} came after {previous}");
        previous = now;
    }
}

/// A store on a fresh database with the audit schema (the real PostgreSQL of the test
/// run).
fn pg() -> (TestDb, PgLogStore) {
    let db = TestDb::migrated(
        "audit",
        MIGRATIONS,
        std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations")),
    );
    let pool = Db::new(&PoolSettings {
        url: db.url(),
        max_size: 8,
        connect_timeout: std::time::Duration::from_secs(5),
        statement_timeout: std::time::Duration::from_secs(5),
    })
    .unwrap();
    (db, PgLogStore::new(pool))
}

#[tokio::test]
async fn fake_store_keeps_the_contract() {
    log_store_contract(&FakeStore::default()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_store_keeps_the_contract() {
    let (_db, store) = pg();
    log_store_contract(&store).await;
}

#[tokio::test]
async fn fake_clock_keeps_the_contract() {
    clock_contract(&FakeClock::default()).await;
}

#[tokio::test]
async fn system_clock_keeps_the_contract() {
    clock_contract(&SystemClock).await;
}

#[test]
fn the_system_clock_is_the_wall_clock() {
    let before = Utc::now();
    let now = SystemClock.now();
    assert!(before <= now && now <= Utc::now(), "{now}");
}

#[test]
fn the_fake_clock_moves_only_when_told() {
    let clock = FakeClock::at(t(0));
    assert_eq!(clock.now(), t(0));
    clock.advance(chrono::Duration::seconds(90));
    assert_eq!(clock.now(), t(90));
    clock.set(t(5));
    assert_eq!(clock.now(), t(5));
}
