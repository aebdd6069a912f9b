//! `/health`, `/ready`, `/metrics`: on the operators' listener, not the public one.

use crate::helpers::spawn_app;
use reqwest::Method;
use serde_json::{json, Value};

#[tokio::test]
async fn health_and_ready() {
    let app = spawn_app().await;
    let res = app.get("/health", None).await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.json::<Value>().await.unwrap()["status"], "ok");
    assert_eq!(app.ops_get("/health").await.status(), 200);
    let res = app.ops_get("/ready").await;
    assert_eq!(res.status(), 200);
    let body = res.json::<Value>().await.unwrap();
    assert_eq!(body["database"], "ok");
    assert_eq!(body["kafka"], "ok");
}

#[tokio::test]
async fn an_unreachable_broker_is_reported_but_keeps_the_service_ready() {
    let app = crate::helpers::spawn_app_with(|s| s.kafka.brokers = "127.0.0.1:1".into()).await;
    let res = app.ops_get("/ready").await;
    // Bookings go on while the broker is away (their events wait in the outbox).
    assert_eq!(res.status(), 200);
    let body = res.json::<Value>().await.unwrap();
    assert_eq!(body["status"], "ready");
    assert_eq!(body["kafka"], "unavailable");
}

#[tokio::test]
async fn ready_is_503_when_the_database_is_gone() {
    let app = spawn_app().await;
    assert_eq!(app.ops_get("/ready").await.status(), 200);
    app.db.drop_now();
    let res = app.ops_get("/ready").await;
    assert_eq!(res.status(), 503);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["database"], "unavailable");
    // Liveness does not depend on the database; data endpoints fail cleanly.
    assert_eq!(app.get("/health", None).await.status(), 200);
    let res = app.login("a@example.com", "whatever pw").await;
    assert_eq!(res.status(), 503, "{}", res.text().await.unwrap());
}

#[tokio::test]
async fn metrics_count_requests_by_route_pattern() {
    let app = spawn_app().await;
    let admin = app.admin().await;
    let id = uuid::Uuid::new_v4();
    app.get(&format!("/api/v1/patients/{id}"), Some(&admin.access))
        .await;
    app.send_json(
        Method::POST,
        "/api/v1/auth/login",
        None,
        &json!({"email": "x@example.com", "password": "y"}),
    )
    .await;
    let text = app.ops_get("/metrics").await.text().await.unwrap();
    assert!(
        text.contains(
            r#"http_requests_total{method="GET",route="/api/v1/patients/{id}",status="404"} 1"#
        ),
        "{text}"
    );
    assert!(
        !text.contains(&id.to_string()),
        "raw paths must not become labels"
    );
    assert!(
        text.contains("http_request_duration_seconds_bucket"),
        "{text}"
    );
    assert!(text.contains("http_requests_in_flight"), "{text}");
    assert!(
        text.contains(r#"db_pool_connections{state="max"} 5"#),
        "{text}"
    );
}

#[tokio::test]
async fn operators_endpoints_are_not_served_on_the_public_listener() {
    let app = spawn_app().await;
    for path in ["/metrics", "/ready"] {
        let res = app.get(path, None).await;
        assert_eq!(res.status(), 404, "{path} is public");
        assert_eq!(app.ops_get(path).await.status(), 200, "{path} on ops");
    }
    // The ops listener serves nothing of the API.
    assert_eq!(app.ops_get("/api/v1/doctors").await.status(), 404);
    // By default it listens on another address than the API, and only locally.
    let defaults = booking_service::settings::Settings::load_from(
        &medbook_shared::config_loader::ConfigSources {
            file: None,
            env: vec![("MEDBOOK_PROFILE".into(), "dev".into())],
        },
    )
    .unwrap();
    assert_ne!(defaults.http.ops_addr, defaults.http.addr);
    assert!(defaults.http.ops_addr.starts_with("127.0.0.1:"));
}
