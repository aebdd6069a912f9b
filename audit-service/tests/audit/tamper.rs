//! `verify` on an intact log (one from before the service stamped receive times too),
//! and on logs tampered with by a superuser who gets past the triggers
//! (`session_replication_role = replica`): each time it fails naming the first bad
//! index and what happened there.

use crate::helpers::*;
use diesel::connection::SimpleConnection;
use serde_json::Value;

/// A log of 20 records with a checkpoint at every size (so a root mismatch is
/// localised to one index), verified once; the service stopped.
async fn log_of_20(
    every: &str,
    batch: usize,
) -> (medbook_test_support::pg::TestDb, TempDir, Config) {
    let db = audit_db();
    let dir = TempDir::new();
    let mut config = Config::new(&db, &dir);
    config.set("MEDBOOK_AUDIT__CHECKPOINT_EVERY", every);
    let mut server = Server::start(&config);
    let mut c = server.client().await;
    for _ in 0..(20 / batch) {
        c.append_n(batch).await;
    }
    drop(c);
    server.stop();
    let (code, report) = verify(&config, &[]);
    assert_eq!(code, 0, "{report}");
    assert_eq!(report["ok"], true);
    assert_eq!(report["records"], 20);
    assert_eq!(report["state_updated"], true);
    (db, dir, config)
}

fn tamper(db: &medbook_test_support::pg::TestDb, sql: &str) {
    db.conn()
        .batch_execute(&format!("SET session_replication_role = replica; {sql}"))
        .unwrap_or_else(|e| panic!("{e}: {sql}"));
}

fn failed(config: &Config) -> Value {
    let (code, report) = verify(config, &[]);
    assert_eq!(code, 1, "{report}");
    assert_eq!(report["ok"], false, "{report}");
    report
}

#[tokio::test]
async fn an_intact_log_verifies_and_the_state_file_follows_it() {
    let (_db, dir, config) = log_of_20("1", 1).await;
    let state: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.0.join("verify-state.json")).unwrap())
            .unwrap();
    assert_eq!(state["tree_size"], 20);
    let server = Server::start(&config);
    server.client().await.append_n(3).await;
    let (code, report) = verify(&config, &[]);
    assert_eq!(code, 0, "{report}");
    assert_eq!(report["previously_verified_size"], 20);
    assert_eq!(report["latest_checkpoint"]["tree_size"], 23);
    assert_eq!(report["checkpoints"], 21);
    // --state points elsewhere: a first verification there.
    let other = dir.0.join("other.json");
    let (code, report) = verify(&config, &["--state", other.to_str().unwrap()]);
    assert_eq!(code, 0, "{report}");
    assert!(report["previously_verified_size"].is_null());
    assert!(other.exists());
}

#[tokio::test]
async fn an_altered_field_is_named_by_its_index() {
    let (db, _dir, config) = log_of_20("1", 1).await;
    tamper(
        &db,
        "UPDATE audit_records SET action = 'appointment.created' WHERE idx = 7",
    );
    let r = failed(&config);
    assert_eq!(r["first_bad_index"], 7, "{r}");
    assert_eq!(r["problem"], "altered", "{r}");
}

#[tokio::test]
async fn an_altered_field_with_its_leaf_hash_recomputed_is_found_by_the_checkpoints() {
    let (db, _dir, config) = log_of_20("1", 1).await;
    let mut conn = db.conn();
    let rows = audit_service::repository::rows_after(&mut conn, None, 100).unwrap();
    let mut record = rows[12].record().unwrap();
    record.entity_id = "someone-else".into();
    let leaf = record.leaf_hash(12);
    tamper(
        &db,
        &format!(
            "UPDATE audit_records SET entity_id = 'someone-else', leaf_hash = '\\x{}'::bytea WHERE idx = 12",
            hex::encode(leaf)
        ),
    );
    let r = failed(&config);
    assert_eq!(r["first_bad_index"], 12, "{r}");
    assert_eq!(r["problem"], "altered", "{r}");
    assert!(r["detail"].as_str().unwrap().contains("checkpoint"), "{r}");
}

#[tokio::test]
async fn a_changed_or_blanked_receive_time_is_named_by_its_index() {
    let (db, _dir, config) = log_of_20("1", 1).await;
    tamper(
        &db,
        "UPDATE audit_records SET received_at = received_at - interval '1 hour' WHERE idx = 7",
    );
    let r = failed(&config);
    assert_eq!(r["first_bad_index"], 7, "{r}");
    assert_eq!(r["problem"], "altered", "{r}");
    // Put back exactly: verifies again.
    tamper(
        &db,
        "UPDATE audit_records SET received_at = received_at + interval '1 hour' WHERE idx = 7",
    );
    let (code, report) = verify(&config, &[]);
    assert_eq!(code, 0, "{report}");
    // Blanked, as if the record were older than receive times: its leaf no longer matches.
    tamper(
        &db,
        "UPDATE audit_records SET received_at = NULL WHERE idx = 11",
    );
    let r = failed(&config);
    assert_eq!(r["first_bad_index"], 11, "{r}");
    assert_eq!(r["problem"], "altered", "{r}");
}

#[tokio::test]
async fn a_receive_time_rewritten_with_its_leaf_hash_is_found_by_the_checkpoints() {
    let (db, _dir, config) = log_of_20("1", 1).await;
    let mut conn = db.conn();
    let rows = audit_service::repository::rows_after(&mut conn, None, 100).unwrap();
    let mut record = rows[12].record().unwrap();
    let earlier = record.received_at.unwrap() - chrono::Duration::hours(3);
    record.received_at = Some(earlier);
    let leaf = record.leaf_hash(12);
    tamper(
        &db,
        &format!(
            "UPDATE audit_records SET received_at = '{}'::timestamptz, leaf_hash = '\\x{}'::bytea WHERE idx = 12",
            earlier.to_rfc3339(),
            hex::encode(leaf)
        ),
    );
    let r = failed(&config);
    assert_eq!(r["first_bad_index"], 12, "{r}");
    assert_eq!(r["problem"], "altered", "{r}");
    assert!(r["detail"].as_str().unwrap().contains("checkpoint"), "{r}");
}

/// Records stored before the service stamped receive times (received_at NULL, leaves of
/// the version-1 encoding): the service loads them, appends after them, and `verify`
/// accepts the mixed log.
#[tokio::test]
async fn a_log_from_before_receive_times_still_verifies_and_grows() {
    use audit_service::record::{Actor, Record};
    use audit_service::repository::{insert_records, NewRow};
    let db = audit_db();
    let dir = TempDir::new();
    let mut config = Config::new(&db, &dir);
    config.set("MEDBOOK_AUDIT__CHECKPOINT_EVERY", "1");
    let old: Vec<Record> = (0..3)
        .map(|i| Record {
            id: uuid::Uuid::new_v4(),
            actor: Actor::System("cli".into()),
            action: "slot.created".into(),
            entity_type: "slot".into(),
            entity_id: format!("old-{i}"),
            changes: vec![],
            source: "cli".into(),
            request_id: String::new(),
            occurred_at: audit_service::record::to_micros(chrono::Utc::now()),
            received_at: None,
        })
        .collect();
    let rows: Vec<NewRow<'_>> = old
        .iter()
        .zip(0u64..)
        .map(|(record, index)| NewRow {
            index,
            record,
            leaf_hash: record.leaf_hash(index),
        })
        .collect();
    insert_records(&mut db.conn(), &rows).unwrap();

    let mut server = Server::start(&config);
    let mut c = server.client().await;
    c.append_n(2).await;
    assert_eq!(c.checkpoint().await.unwrap().tree_size, 5);
    let page = c.query(all_records()).await.unwrap();
    let mut stamped: Vec<(u64, bool)> = page
        .records
        .iter()
        .map(|r| (r.index, r.received_at.is_some()))
        .collect();
    stamped.sort_unstable();
    assert_eq!(
        stamped,
        [(0, false), (1, false), (2, false), (3, true), (4, true)]
    );
    drop(c);
    server.stop();
    let (code, report) = verify(&config, &[]);
    assert_eq!(code, 0, "{report}");
    assert_eq!(report["records"], 5);
}

fn all_records() -> medbook_proto::audit::v1::QueryRequest {
    medbook_proto::audit::v1::QueryRequest {
        page_size: 100,
        ..Default::default()
    }
}

#[tokio::test]
async fn with_sparse_checkpoints_a_rewritten_row_is_localised_to_their_range() {
    // Checkpoints at 5, 10, 15, 20: the change at 12 is somewhere in 10..=14.
    let (db, _dir, config) = log_of_20("5", 5).await;
    let mut conn = db.conn();
    let rows = audit_service::repository::rows_after(&mut conn, None, 100).unwrap();
    let mut record = rows[12].record().unwrap();
    record.source = "cli".into();
    let leaf = record.leaf_hash(12);
    tamper(
        &db,
        &format!(
            "UPDATE audit_records SET source = 'cli', leaf_hash = '\\x{}'::bytea WHERE idx = 12",
            hex::encode(leaf)
        ),
    );
    let r = failed(&config);
    assert_eq!(r["first_bad_index"], 10, "{r}");
    assert_eq!(r["problem"], "altered", "{r}");
    assert!(r["detail"].as_str().unwrap().contains("10 and 14"), "{r}");
}

#[tokio::test]
async fn a_deleted_middle_row_is_named() {
    let (db, _dir, config) = log_of_20("1", 1).await;
    tamper(&db, "DELETE FROM audit_records WHERE idx = 9");
    let r = failed(&config);
    assert_eq!(r["first_bad_index"], 9, "{r}");
    assert_eq!(r["problem"], "deleted", "{r}");
}

#[tokio::test]
async fn a_deleted_last_row_is_named() {
    let (db, _dir, config) = log_of_20("1", 1).await;
    tamper(&db, "DELETE FROM audit_records WHERE idx = 19");
    let r = failed(&config);
    assert_eq!(r["first_bad_index"], 19, "{r}");
    assert_eq!(r["problem"], "deleted", "{r}");
}

#[tokio::test]
async fn an_inserted_row_is_named() {
    let (db, _dir, config) = log_of_20("1", 1).await;
    tamper(
        &db,
        "ALTER TABLE audit_records DROP CONSTRAINT audit_records_pkey;
         INSERT INTO audit_records (idx, id, actor_kind, actor_id, actor_role, action,
             entity_type, entity_id, changes, source, request_id, occurred_at, received_at,
             leaf_hash)
         SELECT idx, gen_random_uuid(), actor_kind, actor_id, actor_role, 'login.succeeded',
             entity_type, entity_id, changes, source, request_id, occurred_at, received_at,
             leaf_hash
         FROM audit_records WHERE idx = 5",
    );
    let r = failed(&config);
    assert_eq!(r["first_bad_index"], 5, "{r}");
    assert_eq!(r["problem"], "inserted", "{r}");
}

#[tokio::test]
async fn two_swapped_rows_are_named() {
    let (db, _dir, config) = log_of_20("1", 1).await;
    tamper(
        &db,
        "UPDATE audit_records SET idx = 1000000 WHERE idx = 3;
         UPDATE audit_records SET idx = 3 WHERE idx = 8;
         UPDATE audit_records SET idx = 8 WHERE idx = 1000000;",
    );
    let r = failed(&config);
    assert_eq!(r["first_bad_index"], 3, "{r}");
    assert_eq!(r["problem"], "reordered", "{r}");
    assert!(r["detail"].as_str().unwrap().contains('8'), "{r}");
}

#[tokio::test]
async fn a_truncated_log_with_its_checkpoints_is_caught_by_the_state_file() {
    let (db, _dir, config) = log_of_20("1", 1).await;
    tamper(
        &db,
        "DELETE FROM audit_records WHERE idx >= 15;
         DELETE FROM audit_checkpoints WHERE tree_size > 15;",
    );
    let r = failed(&config);
    assert_eq!(r["first_bad_index"], 15, "{r}");
    assert_eq!(r["problem"], "deleted", "{r}");
}

#[tokio::test]
async fn a_forged_checkpoint_is_reported() {
    let (db, _dir, config) = log_of_20("1", 1).await;
    tamper(
        &db,
        "UPDATE audit_checkpoints SET signature = set_byte(signature, 0, get_byte(signature, 0) # 1) WHERE tree_size = 4",
    );
    let r = failed(&config);
    assert_eq!(r["problem"], "bad_checkpoint", "{r}");
    assert!(r["detail"].as_str().unwrap().contains("tree size 4"), "{r}");
}
