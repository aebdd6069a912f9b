//! Every AuditService RPC: success, invalid input, authentication, proofs checked on
//! the client side with the crate's verification functions.

use crate::helpers::*;
use audit_service::grpc::status::violations_of;
use audit_service::merkle::{verify_consistency, verify_inclusion};
use audit_service::signing::{parse_public_key, Checkpoint};
use medbook_proto::audit::v1 as pb;
use tonic::Code;
use uuid::Uuid;

fn fields(status: &tonic::Status) -> Vec<String> {
    violations_of(status).into_iter().map(|(f, _)| f).collect()
}

#[tokio::test]
async fn appends_get_contiguous_indices_and_duplicates_their_original_one() {
    let db = audit_db();
    let dir = TempDir::new();
    let server = Server::start(&Config::new(&db, &dir));
    let mut c = server.client().await;

    let first: Vec<_> = (0..3).map(|i| record(&format!("a{i}"))).collect();
    let res = c.append(first.clone()).await.unwrap();
    assert_eq!(res.tree_size, 3);
    assert_eq!(
        res.results.iter().map(|r| r.index).collect::<Vec<_>>(),
        [0, 1, 2]
    );
    assert!(res.results.iter().all(|r| !r.duplicate));
    assert_eq!(res.results[1].id, first[1].id);

    // A batch mixing a record seen before, new ones and a repeat inside the batch.
    let new = record("b");
    let res = c
        .append(vec![
            first[1].clone(),
            new.clone(),
            new.clone(),
            record("c"),
        ])
        .await
        .unwrap();
    let got: Vec<_> = res.results.iter().map(|r| (r.index, r.duplicate)).collect();
    assert_eq!(got, [(1, true), (3, false), (3, true), (4, false)]);
    assert_eq!(res.tree_size, 5);
    assert_eq!(server.metric("audit_records_appended_total").await, 5.0);
    assert_eq!(server.metric("audit_append_duplicates_total").await, 2.0);

    // Sent again as a whole: nothing new.
    let res = c.append(first).await.unwrap();
    assert!(res.results.iter().all(|r| r.duplicate));
    assert_eq!(res.tree_size, 5);
    let rows: i64 = count(&db, "SELECT count(*) AS n FROM audit_records");
    assert_eq!(rows, 5);
}

#[derive(diesel::QueryableByName)]
struct N {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    n: i64,
}

pub fn count(db: &medbook_test_support::pg::TestDb, sql: &str) -> i64 {
    use diesel::RunQueryDsl;
    diesel::sql_query(sql)
        .get_result::<N>(&mut db.conn())
        .unwrap()
        .n
}

#[tokio::test]
async fn invalid_input_is_refused_with_its_fields_and_nothing_of_the_batch_is_kept() {
    let db = audit_db();
    let dir = TempDir::new();
    let server = Server::start(&Config::new(&db, &dir));
    let mut c = server.client().await;

    let good = record("ok");
    let mut bad_id = record("x");
    bad_id.id = "not-a-uuid".into();
    let mut no_actor = record("x");
    no_actor.actor = None;
    let mut empty_action = record("x");
    empty_action.action = "  ".into();
    let mut bad_user = record("x");
    bad_user.actor = Some(pb::Actor {
        kind: Some(pb::actor::Kind::User(pb::UserActor {
            user_id: "42".into(),
            role: "root".into(),
        })),
    });
    let mut huge = record("x");
    huge.changes[0].after = Some("x".repeat(20_000));
    let mut no_time = record("x");
    no_time.occurred_at = None;
    let err = c
        .append(vec![
            good.clone(),
            bad_id,
            no_actor,
            empty_action,
            bad_user,
            huge,
            no_time,
        ])
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    assert_eq!(
        fields(&err),
        [
            "records[1].id",
            "records[2].actor",
            "records[3].action",
            "records[4].actor.user.user_id",
            "records[4].actor.user.role",
            "records[5].changes[0].after",
            "records[6].occurred_at",
        ]
    );
    // All or nothing: the good record of the batch was not appended.
    assert_eq!(count(&db, "SELECT count(*) AS n FROM audit_records"), 0);
    let res = c.append(vec![good]).await.unwrap();
    assert_eq!(res.results[0].index, 0);

    let err = c.append(vec![]).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert_eq!(fields(&err), ["records"]);
    let too_many: Vec<_> = (0..501).map(|i| record(&i.to_string())).collect();
    let err = c.append(too_many).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("at most 500"), "{err:?}");
    assert_eq!(
        server
            .metric(r#"audit_rpc_requests_total{code="InvalidArgument",method="Append"}"#)
            .await,
        3.0
    );
    assert_eq!(
        server
            .metric(r#"audit_rpc_requests_total{code="Ok",method="Append"}"#)
            .await,
        1.0
    );
}

/// The codes of the five RPCs called with `c`'s credentials, in the order Append,
/// Query, GetCheckpoint, GetInclusionProof, GetConsistencyProof.
async fn codes(c: &Client) -> [Code; 5] {
    let mut c = c.clone();
    let code = |r: Result<(), tonic::Status>| r.map_or_else(|e| e.code(), |()| Code::Ok);
    [
        code(c.append(vec![record("y")]).await.map(drop)),
        code(c.query(pb::QueryRequest::default()).await.map(drop)),
        code(c.checkpoint().await.map(drop)),
        code(c.inclusion(0, 1).await.map(drop)),
        code(c.consistency(1, 1).await.map(drop)),
    ]
}

#[tokio::test]
async fn each_rpc_needs_a_credential_of_its_own_kind() {
    let db = audit_db();
    let dir = TempDir::new();
    let mut config = Config::new(&db, &dir);
    config.set("MEDBOOK_AUDIT__CHECKPOINT_EVERY", "1");
    let server = Server::start(&config);
    let c = server.client().await;
    c.clone().append(vec![record("x")]).await.unwrap();
    let rows = || count(&db, "SELECT count(*) AS n FROM audit_records");
    assert_eq!(rows(), 1);

    // The writer appends, and may see checkpoints and proofs; it may not read records.
    let writer = c.with_token(Some(APPEND_TOKEN));
    use Code::{Ok as Yes, PermissionDenied as Denied, Unauthenticated as Who};
    assert_eq!(codes(&writer).await, [Yes, Denied, Yes, Yes, Yes]);
    assert_eq!(rows(), 2);
    // A reader reads, and may not append.
    let reader = c.with_token(Some(READ_TOKEN));
    assert_eq!(codes(&reader).await, [Denied, Yes, Yes, Yes, Yes]);
    assert_eq!(rows(), 2, "the reader's Append added nothing");
    let e = reader.clone().append(vec![record("z")]).await.unwrap_err();
    assert_eq!(e.message(), "the read token may not call Append");
    let e = writer
        .clone()
        .query(pb::QueryRequest::default())
        .await
        .unwrap_err();
    assert_eq!(e.message(), "the append token may not call Query");

    // No credential, or one the service does not know: unauthenticated, whatever the call.
    let both = format!("{APPEND_TOKEN}{READ_TOKEN}");
    for token in [None, Some("wrong"), Some(""), Some(both.as_str())] {
        let anon = c.with_token(token);
        assert_eq!(codes(&anon).await, [Who; 5], "{token:?}");
        let e = anon
            .clone()
            .query(pb::QueryRequest::default())
            .await
            .unwrap_err();
        assert!(!e.message().contains(APPEND_TOKEN), "{e:?}");
        assert!(!e.message().contains(READ_TOKEN), "{e:?}");
    }
    // A token in another scheme is no token.
    for token in [APPEND_TOKEN, READ_TOKEN] {
        let mut r = tonic::Request::new(pb::QueryRequest::default());
        r.metadata_mut()
            .insert("authorization", format!("Basic {token}").parse().unwrap());
        let e = c.inner.clone().query(r).await.unwrap_err();
        assert_eq!(e.code(), Code::Unauthenticated);
    }
    assert_eq!(rows(), 2);
    for (code, method, at_least) in [
        ("Unauthenticated", "Append", 4.0),
        ("PermissionDenied", "Append", 2.0),
        ("PermissionDenied", "Query", 2.0),
        ("Ok", "GetCheckpoint", 2.0),
    ] {
        let got = server
            .metric(&format!(
                r#"audit_rpc_requests_total{{code="{code}",method="{method}"}}"#
            ))
            .await;
        assert!(got >= at_least, "{code} {method}: {got}");
    }
}

#[tokio::test]
async fn the_service_stamps_its_own_receive_time_and_keeps_it_on_a_repeat() {
    let db = audit_db();
    let dir = TempDir::new();
    let server = Server::start(&Config::new(&db, &dir));
    let mut c = server.client().await;

    // Written an hour ago (say, shipped late after an outage): received now.
    let hour_ago = chrono::Utc::now() - chrono::Duration::hours(1);
    let mut late = record("late");
    late.occurred_at = Some(medbook_proto::time::to_proto(hour_ago));
    let before = chrono::Utc::now();
    let res = c.append(vec![late.clone()]).await.unwrap();
    let after = chrono::Utc::now();
    assert!(!res.results[0].duplicate);
    let stored = |page: &pb::QueryResponse| {
        let r = &page.records[0];
        (
            medbook_proto::time::from_proto(r.received_at.as_ref().expect("received_at")).unwrap(),
            medbook_proto::time::from_proto(
                r.record.as_ref().unwrap().occurred_at.as_ref().unwrap(),
            )
            .unwrap(),
        )
    };
    let q = pb::QueryRequest {
        entity_type: "appointment".into(),
        entity_id: "late".into(),
        ..Default::default()
    };
    let (received, occurred) = stored(&c.query(q.clone()).await.unwrap());
    let tick = chrono::Duration::microseconds(1);
    assert!(
        before - tick <= received && received <= after,
        "{before} <= {received} <= {after}"
    );
    assert_eq!(
        occurred,
        audit_service::record::to_micros(hour_ago),
        "the writer's time kept"
    );
    // The column holds it, at PostgreSQL's precision.
    #[derive(diesel::QueryableByName)]
    struct Received {
        #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Timestamptz>)]
        received_at: Option<chrono::DateTime<chrono::Utc>>,
    }
    let column = {
        use diesel::RunQueryDsl;
        diesel::sql_query("SELECT received_at FROM audit_records WHERE idx = 0")
            .get_result::<Received>(&mut db.conn())
            .unwrap()
            .received_at
    };
    assert_eq!(column, Some(received));

    // Sent again later (a relay retrying): a duplicate, and its receive time stays.
    // Later by the clock, so a restamp would show: wait until it has moved on.
    medbook_test_support::eventually(
        "the clock past the first receive time",
        std::time::Duration::from_secs(5),
        || async {
            (chrono::Utc::now() > received + chrono::Duration::milliseconds(1)).then_some(())
        },
    )
    .await;
    let res = c.append(vec![late, record("other")]).await.unwrap();
    assert!(res.results[0].duplicate);
    assert_eq!(stored(&c.query(q).await.unwrap()).0, received);
    assert_eq!(count(&db, "SELECT count(*) AS n FROM audit_records"), 2);
    // One receive time per Append: both records of a batch share it.
    let (a, b) = (record("a"), record("b"));
    c.append(vec![a, b]).await.unwrap();
    let page = c.query(pb::QueryRequest::default()).await.unwrap();
    let mut times: Vec<_> = page
        .records
        .iter()
        .filter(|r| r.index >= 2)
        .map(|r| r.received_at.unwrap())
        .collect();
    times.dedup();
    assert_eq!(times.len(), 1, "{times:?}");
}

#[tokio::test]
async fn an_occurred_at_from_the_future_is_refused_naming_the_field() {
    let db = audit_db();
    let dir = TempDir::new();
    let mut config = Config::new(&db, &dir);
    let server = Server::start(&config);
    let mut c = server.client().await;
    let at = |t: chrono::DateTime<chrono::Utc>| {
        let mut r = record("t");
        r.occurred_at = Some(medbook_proto::time::to_proto(t));
        r
    };
    let now = chrono::Utc::now;
    // Within the default 5 minutes of skew, and any time in the past: accepted.
    c.append(vec![
        at(now() + chrono::Duration::minutes(4)),
        at(now() - chrono::Duration::days(2)),
    ])
    .await
    .unwrap();
    let err = c
        .append(vec![at(now()), at(now() + chrono::Duration::minutes(10))])
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    assert_eq!(fields(&err), ["records[1].occurred_at"]);
    let (_, description) = &violations_of(&err)[0];
    assert!(description.contains("300 s"), "{description}");
    assert_eq!(
        count(&db, "SELECT count(*) AS n FROM audit_records"),
        2,
        "none of the batch"
    );
    drop(c);
    drop(server);

    // The tolerance is a setting.
    config.set("MEDBOOK_AUDIT__MAX_FUTURE_SKEW_SECS", "3600");
    let server = Server::start(&config);
    let mut c = server.client().await;
    c.append(vec![at(now() + chrono::Duration::minutes(10))])
        .await
        .unwrap();
    let err = c
        .append(vec![at(now() + chrono::Duration::minutes(70))])
        .await
        .unwrap_err();
    assert_eq!(fields(&err), ["records[0].occurred_at"]);
}

#[tokio::test]
async fn queries_filter_page_newest_first_and_check_their_input() {
    let db = audit_db();
    let dir = TempDir::new();
    let server = Server::start(&Config::new(&db, &dir));
    let mut c = server.client().await;
    let alice = Uuid::new_v4().to_string();
    let base = chrono::Utc::now() - chrono::Duration::hours(1);
    let mut records = Vec::new();
    for i in 0..7 {
        let mut r = record_by(if i % 2 == 0 { "even" } else { "odd" }, &alice);
        r.occurred_at = Some(medbook_proto::time::to_proto(
            base + chrono::Duration::minutes(i),
        ));
        if i == 6 {
            r.action = "appointment.created".into();
        }
        records.push(r);
    }
    // Appended out of time order: newest first is by occurred_at.
    records.swap(0, 5);
    c.append(records.clone()).await.unwrap();
    c.append(vec![record("other")]).await.unwrap();

    let page = c
        .query(pb::QueryRequest {
            entity_type: "appointment".into(),
            entity_id: "even".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let entities: Vec<_> = page
        .records
        .iter()
        .map(|r| r.record.as_ref().unwrap().entity_id.as_str())
        .collect();
    assert_eq!(entities, ["even"; 4]);
    let times: Vec<_> = page
        .records
        .iter()
        .map(|r| r.record.as_ref().unwrap().occurred_at.unwrap().seconds)
        .collect();
    assert!(times.windows(2).all(|w| w[0] >= w[1]), "{times:?}");
    assert!(page.next_page_token.is_empty());
    assert_eq!(page.records[0].leaf_hash.len(), 32);

    // Pages of 3 by actor: 7, then the rest, no overlap.
    let mut seen = Vec::new();
    let mut token = String::new();
    loop {
        let page = c
            .query(pb::QueryRequest {
                actor_id: alice.clone(),
                page_size: 3,
                page_token: token.clone(),
                ..Default::default()
            })
            .await
            .unwrap();
        seen.extend(page.records.iter().map(|r| r.index));
        token = page.next_page_token;
        if token.is_empty() {
            break;
        }
    }
    assert_eq!(seen.len(), 7, "{seen:?}");
    seen.sort_unstable();
    seen.dedup();
    assert_eq!(seen.len(), 7);

    let created = c
        .query(pb::QueryRequest {
            action: "appointment.created".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(created.records.len(), 1);
    let window = c
        .query(pb::QueryRequest {
            actor_id: alice.clone(),
            from: Some(medbook_proto::time::to_proto(
                base + chrono::Duration::minutes(2),
            )),
            to: Some(medbook_proto::time::to_proto(
                base + chrono::Duration::minutes(4),
            )),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(window.records.len(), 2, "from inclusive, to exclusive");
    let all = c.query(pb::QueryRequest::default()).await.unwrap();
    assert_eq!(all.records.len(), 8);

    for (q, field) in [
        (
            pb::QueryRequest {
                actor_id: "alice".into(),
                ..Default::default()
            },
            "actor_id",
        ),
        (
            pb::QueryRequest {
                page_size: 101,
                ..Default::default()
            },
            "page_size",
        ),
        (
            pb::QueryRequest {
                page_token: "garbage".into(),
                ..Default::default()
            },
            "page_token",
        ),
        (
            pb::QueryRequest {
                entity_id: "even".into(),
                ..Default::default()
            },
            "entity_type",
        ),
    ] {
        let e = c.query(q).await.unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument);
        assert_eq!(fields(&e), [field]);
    }
}

#[tokio::test]
async fn checkpoints_and_proofs_verify_on_the_client() {
    let db = audit_db();
    let dir = TempDir::new();
    let mut config = Config::new(&db, &dir);
    config.set("MEDBOOK_AUDIT__CHECKPOINT_EVERY", "10");
    let server = Server::start(&config);
    let mut c = server.client().await;

    let e = c.checkpoint().await.unwrap_err();
    assert_eq!(e.code(), Code::NotFound, "{e:?}");
    let ids = c.append_n(23).await;
    let cp = c.checkpoint().await.unwrap();
    assert_eq!(
        cp.tree_size, 23,
        "a checkpoint after the batch that passed 10 records"
    );
    c.append_n(3).await;
    assert_eq!(
        c.checkpoint().await.unwrap().tree_size,
        23,
        "not yet 10 more"
    );
    let key = parse_public_key(&config.public_key).unwrap();
    assert_eq!(cp.public_key, key.as_bytes());
    let checkpoint = Checkpoint {
        origin: cp.origin.clone(),
        tree_size: cp.tree_size,
        root: hash(&cp.root_hash),
        issued_at: medbook_proto::time::from_proto(cp.issued_at.as_ref().unwrap()).unwrap(),
        signature: cp.signature.clone(),
        key_id: cp.key_id.clone(),
        public_key: cp.public_key.clone(),
        signed_text: cp.signed_text.clone(),
    };
    checkpoint.verify(&[key]).unwrap();
    assert_eq!(cp.origin, "medbook-audit");

    // Every record's inclusion in the checkpointed tree, against the signed root.
    let stored = c
        .query(pb::QueryRequest {
            page_size: 100,
            ..Default::default()
        })
        .await
        .unwrap();
    for r in &stored.records {
        if r.index >= cp.tree_size {
            continue;
        }
        let p = c.inclusion(r.index, cp.tree_size).await.unwrap();
        assert_eq!(p.leaf_hash, r.leaf_hash);
        assert_eq!(p.root_hash, cp.root_hash);
        verify_inclusion(
            r.index,
            cp.tree_size,
            &hash(&r.leaf_hash),
            &hashes(&p.path),
            &hash(&cp.root_hash),
        )
        .unwrap();
        // The leaf is the hash of the record at its index.
        assert!(ids.contains(&r.record.as_ref().unwrap().id));
    }
    // Consistency of every earlier size with the checkpoint, and with the full tree.
    for from in 1..=cp.tree_size {
        let p = c.consistency(from, cp.tree_size).await.unwrap();
        assert_eq!(p.to_root, cp.root_hash);
        verify_consistency(
            from,
            cp.tree_size,
            &hash(&p.from_root),
            &hash(&cp.root_hash),
            &hashes(&p.path),
        )
        .unwrap();
    }
    let p = c.consistency(23, 26).await.unwrap();
    verify_consistency(
        23,
        26,
        &hash(&cp.root_hash),
        &hash(&p.to_root),
        &hashes(&p.path),
    )
    .unwrap();
    let same = c.consistency(26, 26).await.unwrap();
    assert!(same.path.is_empty());
    assert_eq!(same.from_root, same.to_root);

    for (e, code) in [
        (c.inclusion(0, 27).await.unwrap_err(), Code::OutOfRange),
        (c.inclusion(5, 5).await.unwrap_err(), Code::InvalidArgument),
        (c.inclusion(0, 0).await.unwrap_err(), Code::InvalidArgument),
        (
            c.consistency(0, 5).await.unwrap_err(),
            Code::InvalidArgument,
        ),
        (
            c.consistency(6, 5).await.unwrap_err(),
            Code::InvalidArgument,
        ),
        (c.consistency(5, 27).await.unwrap_err(), Code::OutOfRange),
    ] {
        assert_eq!(e.code(), code, "{e:?}");
    }
}
