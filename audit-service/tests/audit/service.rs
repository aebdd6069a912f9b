//! The service around the RPCs: gRPC health and reflection, the operators' endpoints,
//! restarts, the database's append-only triggers, a lost database.

use crate::helpers::*;
use crate::rpc::count;
use diesel::connection::SimpleConnection;
use futures_util::StreamExt;
use medbook_proto::audit::v1 as pb;
use std::time::Duration;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

async fn health(server: &Server, service: &str) -> Result<i32, tonic::Status> {
    HealthClient::new(server.channel().await)
        .check(HealthCheckRequest {
            service: service.into(),
        })
        .await
        .map(|r| r.into_inner().status)
}

#[tokio::test]
async fn health_is_serving_and_reflection_lists_the_service_in_both_versions() {
    let db = audit_db();
    let dir = TempDir::new();
    let server = Server::start(&Config::new(&db, &dir));
    for service in ["", "medbook.audit.v1.AuditService"] {
        assert_eq!(
            health(&server, service).await.unwrap(),
            ServingStatus::Serving as i32,
            "{service:?}"
        );
    }

    use tonic_reflection::pb::{v1, v1alpha};
    let req = v1::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(v1::server_reflection_request::MessageRequest::ListServices(
            String::new(),
        )),
    };
    let mut stream =
        v1::server_reflection_client::ServerReflectionClient::new(server.channel().await)
            .server_reflection_info(futures_util::stream::iter(vec![req]))
            .await
            .unwrap()
            .into_inner();
    let answer = stream.next().await.unwrap().unwrap();
    let Some(v1::server_reflection_response::MessageResponse::ListServicesResponse(list)) =
        answer.message_response
    else {
        panic!("{answer:?}")
    };
    let names: Vec<_> = list.service.iter().map(|s| s.name.as_str()).collect();
    assert!(
        names.contains(&"medbook.audit.v1.AuditService"),
        "{names:?}"
    );
    assert!(names.contains(&"grpc.health.v1.Health"), "{names:?}");
    assert!(
        !names.contains(&"medbook.schedule.v1.ScheduleService"),
        "{names:?}"
    );

    // v1alpha (grpcurl's and older clients' version), and a file lookup by symbol.
    let reqs = vec![
        v1alpha::ServerReflectionRequest {
            host: String::new(),
            message_request: Some(
                v1alpha::server_reflection_request::MessageRequest::ListServices(String::new()),
            ),
        },
        v1alpha::ServerReflectionRequest {
            host: String::new(),
            message_request: Some(
                v1alpha::server_reflection_request::MessageRequest::FileContainingSymbol(
                    "medbook.audit.v1.AuditService".into(),
                ),
            ),
        },
    ];
    let answers: Vec<_> =
        v1alpha::server_reflection_client::ServerReflectionClient::new(server.channel().await)
            .server_reflection_info(futures_util::stream::iter(reqs))
            .await
            .unwrap()
            .into_inner()
            .take(2)
            .collect()
            .await;
    match &answers[0].as_ref().unwrap().message_response {
        Some(v1alpha::server_reflection_response::MessageResponse::ListServicesResponse(l)) => {
            assert!(l
                .service
                .iter()
                .any(|s| s.name == "medbook.audit.v1.AuditService"));
        }
        other => panic!("{other:?}"),
    }
    match &answers[1].as_ref().unwrap().message_response {
        Some(v1alpha::server_reflection_response::MessageResponse::FileDescriptorResponse(f)) => {
            assert!(!f.file_descriptor_proto.is_empty());
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn ops_endpoints_report_health_readiness_and_metrics() {
    let db = audit_db();
    let dir = TempDir::new();
    let mut config = Config::new(&db, &dir);
    config.set("MEDBOOK_AUDIT__CHECKPOINT_EVERY", "2");
    let server = Server::start(&config);
    let res = reqwest::get(format!("{}/health", server.ops))
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let res = reqwest::get(format!("{}/ready", server.ops)).await.unwrap();
    assert_eq!(res.status(), 200);
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["database"], "ok");
    assert_eq!(body["log"], "ok");
    assert_eq!(
        server.metric("audit_latest_checkpoint_age_seconds").await,
        -1.0
    );

    let mut c = server.client().await;
    c.append_n(3).await;
    assert_eq!(server.metric("audit_tree_size").await, 3.0);
    assert_eq!(server.metric("audit_records_appended_total").await, 3.0);
    assert_eq!(server.metric("audit_checkpoints_issued_total").await, 1.0);
    let age = server.metric("audit_latest_checkpoint_age_seconds").await;
    assert!((0.0..60.0).contains(&age), "{age}");
    c.checkpoint().await.unwrap();
    assert_eq!(
        server
            .metric(r#"audit_rpc_requests_total{code="Ok",method="GetCheckpoint"}"#)
            .await,
        1.0
    );
}

#[tokio::test]
async fn a_restart_keeps_the_tree_and_appends_continue_at_the_next_index() {
    let db = audit_db();
    let dir = TempDir::new();
    let mut config = Config::new(&db, &dir);
    config.set("MEDBOOK_AUDIT__CHECKPOINT_EVERY", "5");
    let mut server = Server::start(&config);
    let mut c = server.client().await;
    c.append_n(7).await;
    let cp = c.checkpoint().await.unwrap();
    let root_7 = c.consistency(7, 7).await.unwrap().to_root;
    drop(c);
    server.stop();

    let server = Server::start(&config);
    let mut c = server.client().await;
    assert_eq!(
        c.checkpoint().await.unwrap(),
        cp,
        "the same latest checkpoint"
    );
    assert_eq!(c.consistency(7, 7).await.unwrap().to_root, root_7);
    let res = c.append(vec![record("after")]).await.unwrap();
    assert_eq!(res.results[0].index, 7);
    assert_eq!(res.tree_size, 8);
    let p = c.consistency(7, 8).await.unwrap();
    assert_eq!(p.from_root, root_7);
}

#[tokio::test]
async fn the_database_refuses_updates_deletes_and_truncates() {
    let db = audit_db();
    let dir = TempDir::new();
    let mut config = Config::new(&db, &dir);
    config.set("MEDBOOK_AUDIT__CHECKPOINT_EVERY", "1");
    let server = Server::start(&config);
    let mut c = server.client().await;
    c.append_n(1).await;
    c.append_n(1).await;
    let mut conn = db.conn();
    for sql in [
        "UPDATE audit_records SET action = 'x' WHERE idx = 0",
        "UPDATE audit_records SET action = 'x' WHERE false",
        "DELETE FROM audit_records WHERE idx = 1",
        "TRUNCATE audit_records CASCADE",
        "UPDATE audit_checkpoints SET tree_size = 9",
        "DELETE FROM audit_checkpoints",
        "TRUNCATE audit_checkpoints",
    ] {
        let err = conn.batch_execute(sql).unwrap_err().to_string();
        assert!(err.contains("append-only"), "{sql}: {err}");
    }
    assert_eq!(count(&db, "SELECT count(*) AS n FROM audit_records"), 2);
    assert_eq!(count(&db, "SELECT count(*) AS n FROM audit_checkpoints"), 2);
}

#[tokio::test]
async fn without_its_database_the_service_answers_unavailable_and_not_serving() {
    let db = audit_db();
    let dir = TempDir::new();
    let mut config = Config::new(&db, &dir);
    config.set("MEDBOOK_DATABASE__CONNECT_TIMEOUT_MS", "1000");
    let server = Server::start(&config);
    let mut c = server.client().await;
    c.append_n(1).await;
    db.drop_now();
    let e = c.append(vec![record("lost")]).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::Unavailable, "{e:?}");
    let e = c.query(pb::QueryRequest::default()).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::Unavailable, "{e:?}");
    assert!(!e.message().contains("postgres"), "{e:?}");
    // Proofs come from memory: still answered.
    c.inclusion(0, 1).await.unwrap();
    medbook_test_support::eventually("health NOT_SERVING", Duration::from_secs(20), || async {
        (health(&server, "").await.ok() == Some(ServingStatus::NotServing as i32)).then_some(())
    })
    .await;
    let res = reqwest::get(format!("{}/ready", server.ops)).await.unwrap();
    assert_eq!(res.status(), 503);
}
