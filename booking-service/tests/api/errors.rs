//! The one JSON error shape, for our errors and actix's own; request ids; escaping;
//! panics; timeouts; body limits.

use crate::helpers::{assert_error, spawn_app, spawn_app_with};
use booking_service::transport::http;
use reqwest::Method;
use serde_json::{json, Value};

#[tokio::test]
async fn unknown_routes_and_wrong_methods_get_json_errors() {
    let app = spawn_app().await;
    assert_error(app.get("/no/such/route", None).await, 404, "not_found").await;
    let res = app.request(Method::DELETE, "/health").send().await.unwrap();
    assert_error(res, 405, "method_not_allowed").await;
    let res = app
        .request(Method::GET, "/api/v1/auth/login")
        .send()
        .await
        .unwrap();
    assert_error(res, 405, "method_not_allowed").await;
}

#[tokio::test]
async fn request_ids_are_echoed_or_generated() {
    let app = spawn_app().await;
    let res = app
        .request(Method::GET, "/health")
        .header("x-request-id", "client-chosen-id-123")
        .send()
        .await
        .unwrap();
    assert_eq!(res.headers()["x-request-id"], "client-chosen-id-123");
    let res = app
        .request(Method::GET, "/nope")
        .header("x-request-id", "bad id with spaces <script>")
        .send()
        .await
        .unwrap();
    let id = res.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert_ne!(id, "bad id with spaces <script>");
    let body = assert_error(res, 404, "not_found").await;
    assert_eq!(body["request_id"], id);
}

#[tokio::test]
async fn echoed_input_is_escaped() {
    let app = spawn_app().await;
    let res = app
        .post(
            "/api/v1/auth/login",
            &json!({"email": "a@example.com", "password": "x", "<script>alert(1)</script>": 1}),
        )
        .await;
    let body = assert_error(res, 400, "invalid_body").await;
    let text = body.to_string();
    assert!(!text.contains("<script>"), "{text}");
    assert!(text.contains("&lt;script&gt;"), "{text}");
}

#[tokio::test]
async fn oversized_bodies_get_413() {
    let app = spawn_app_with(|s| s.http.max_body_bytes = 1024).await;
    let res = app
        .post(
            "/api/v1/auth/register",
            &json!({"email": "a@example.com", "password": "long enough", "full_name": "x".repeat(5000)}),
        )
        .await;
    assert_error(res, 413, "payload_too_large").await;
}

#[tokio::test]
async fn slow_requests_time_out_with_a_json_503() {
    // bcrypt at cost 12 takes far longer than the 50 ms limit.
    let app = spawn_app_with(|s| {
        s.auth.bcrypt_cost = 12;
        s.http.request_timeout_ms = 50;
    })
    .await;
    let res = app.register("slow@example.com", "long enough pw").await;
    assert_error(res, 503, "timeout").await;
    assert_eq!(app.get("/health", None).await.status(), 200);
}

#[tokio::test]
async fn a_panicking_handler_becomes_a_json_500_and_the_server_keeps_serving() {
    // The public app's error middleware around a handler that panics: a route outside
    // the access table is refused before any handler, so the stack is built here.
    use actix_web::middleware::from_fn;
    use http::middleware::{catch_panic, json_errors, request_id};
    let server = actix_web::HttpServer::new(move || {
        actix_web::App::new()
            .route(
                "/test/panic",
                actix_web::web::get().to(|| async {
                    if true {
                        panic!("secret internal detail");
                    }
                    "unreachable"
                }),
            )
            .route("/health", actix_web::web::get().to(|| async { "ok" }))
            .wrap(from_fn(json_errors::json_errors))
            .wrap(from_fn(catch_panic::catch_panic))
            .wrap(from_fn(request_id::request_id))
    })
    .workers(1)
    .bind("127.0.0.1:0")
    .unwrap();
    let port = server.addrs()[0].port();
    let server = server.run();
    let handle = server.handle();
    tokio::spawn(server);
    let client = reqwest::Client::new();
    for _ in 0..3 {
        let res = client
            .get(format!("http://127.0.0.1:{port}/test/panic"))
            .send()
            .await
            .unwrap();
        let body = assert_error(res, 500, "internal_error").await;
        assert!(!body.to_string().contains("secret"), "{body}");
    }
    let res = client
        .get(format!("http://127.0.0.1:{port}/health"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200, "the single worker survived");
    handle.stop(false).await;
}

#[tokio::test]
async fn cors_allows_configured_origins_only() {
    let app = spawn_app_with(|s| s.http.cors_origins = vec!["https://app.example".into()]).await;
    let res = app
        .request(Method::OPTIONS, "/api/v1/auth/login")
        .header("origin", "https://app.example")
        .header("access-control-request-method", "POST")
        .header("access-control-request-headers", "content-type")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(
        res.headers()["access-control-allow-origin"],
        "https://app.example"
    );
    let res = app
        .request(Method::GET, "/health")
        .header("origin", "https://evil.example")
        .send()
        .await
        .unwrap();
    assert!(res.headers().get("access-control-allow-origin").is_none());
    let status = res.status().as_u16();
    let _: Value = res.json().await.unwrap();
    assert!(status == 200 || status == 400, "{status}");
}

/// A NUL in a search filter is refused as invalid input (PostgreSQL cannot hold one
/// in a text value; the query used to fail with 500). Found by schemathesis.
#[tokio::test]
async fn a_nul_in_a_search_filter_is_a_validation_error() {
    let app = spawn_app().await;
    let admin = app.admin().await;
    for (path, token) in [
        ("/api/v1/doctors?name=a%00b", None),
        ("/api/v1/doctors?specialty=%00", None),
        ("/api/v1/doctors?city=x%00", None),
        ("/api/v1/clinics?city=%00", None),
        ("/api/v1/patients?q=%00", Some(admin.access.as_str())),
    ] {
        let res = app.get(path, token).await;
        assert_eq!(res.status(), 400, "{path}");
        let body: Value = res.json().await.unwrap();
        assert_eq!(body["error"]["code"], "validation_failed", "{path}");
        assert_eq!(
            body["error"]["details"][0]["message"], "must not contain NUL characters",
            "{path}"
        );
    }
}
