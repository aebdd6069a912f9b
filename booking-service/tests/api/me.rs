//! `GET|PATCH /api/v1/me`.

use crate::helpers::{assert_error, spawn_app};
use reqwest::Method;
use serde_json::{json, Value};

#[tokio::test]
async fn me_shows_the_callers_own_profile() {
    let app = spawn_app().await;
    let ann = app.patient().await;
    let bob = app.patient().await;
    let res = app.get("/api/v1/me", Some(&ann.access)).await;
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["id"], ann.id.to_string());
    assert_eq!(body["email"], ann.email);
    let res: Value = app
        .get("/api/v1/me", Some(&bob.access))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(res["id"], bob.id.to_string());
}

#[tokio::test]
async fn patch_me_updates_and_clears_fields() {
    let app = spawn_app().await;
    let ann = app.patient().await;
    let res = app
        .send_json(
            Method::PATCH,
            "/api/v1/me",
            Some(&ann.access),
            &json!({"full_name": "Ann Marie Lee", "phone": "+44 20 7946 0958", "gender": "female", "birth_date": "1985-02-03"}),
        )
        .await;
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["full_name"], "Ann Marie Lee");
    assert_eq!(body["phone"], "+442079460958");
    assert_eq!(body["birth_date"], "1985-02-03");

    let res = app
        .send_json(
            Method::PATCH,
            "/api/v1/me",
            Some(&ann.access),
            &json!({"phone": null}),
        )
        .await;
    let body: Value = res.json().await.unwrap();
    assert!(body["phone"].is_null());
    assert_eq!(body["gender"], "female", "untouched fields stay");
}

#[tokio::test]
async fn patch_me_validates_and_rejects_unknown_fields() {
    let app = spawn_app().await;
    let ann = app.patient().await;
    let res = app
        .send_json(
            Method::PATCH,
            "/api/v1/me",
            Some(&ann.access),
            &json!({"phone": "12", "full_name": ""}),
        )
        .await;
    let body = assert_error(res, 400, "validation_failed").await;
    assert_eq!(body["error"]["details"].as_array().unwrap().len(), 2);
    let res = app
        .send_json(
            Method::PATCH,
            "/api/v1/me",
            Some(&ann.access),
            &json!({"role": "admin"}),
        )
        .await;
    assert_error(res, 400, "invalid_body").await;
    let me: Value = app
        .get("/api/v1/me", Some(&ann.access))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(me["role"], "patient");
    let res = app
        .send_json(
            Method::PATCH,
            "/api/v1/me",
            None,
            &json!({"full_name": "X"}),
        )
        .await;
    assert_error(res, 401, "unauthorized").await;
}

#[tokio::test]
async fn changing_email_needs_the_current_password() {
    let app = spawn_app().await;
    let ann = app.patient().await;
    let res = app
        .send_json(
            Method::PATCH,
            "/api/v1/me",
            Some(&ann.access),
            &json!({"email": "new@example.com"}),
        )
        .await;
    let body = assert_error(res, 400, "validation_failed").await;
    assert_eq!(body["error"]["details"][0]["field"], "current_password");
    let res = app
        .send_json(
            Method::PATCH,
            "/api/v1/me",
            Some(&ann.access),
            &json!({"email": "new@example.com", "current_password": ann.password}),
        )
        .await;
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    // The change waits for the new address to be verified (accounts.rs follows it).
    assert_eq!(body["email"], ann.email);
    assert_eq!(body["pending_email"], "new@example.com");
    assert_eq!(body["email_verified"], true);
    assert_eq!(app.login(&ann.email, &ann.password).await.status(), 200);
    assert!(app
        .outbox_link("account.verify_email", "new@example.com")
        .is_some());
}

#[tokio::test]
async fn changing_the_password_revokes_refresh_tokens() {
    let app = spawn_app().await;
    let ann = app.patient().await;
    let res = app
        .send_json(
            Method::PATCH,
            "/api/v1/me",
            Some(&ann.access),
            &json!({"new_password": "a brand new password", "current_password": "wrong password"}),
        )
        .await;
    assert_error(res, 400, "validation_failed").await;
    let res = app
        .send_json(
            Method::PATCH,
            "/api/v1/me",
            Some(&ann.access),
            &json!({"new_password": "a brand new password", "current_password": ann.password}),
        )
        .await;
    assert_eq!(res.status(), 200);
    let refresh = app
        .post(
            "/api/v1/auth/refresh",
            &json!({"refresh_token": ann.refresh}),
        )
        .await;
    assert_error(refresh, 401, "unauthorized").await;
    // Access tokens issued before are refused too: every session has ended.
    let old_access = app.get("/api/v1/me", Some(&ann.access)).await;
    assert_error(old_access, 401, "unauthorized").await;
    assert_error(
        app.login(&ann.email, &ann.password).await,
        401,
        "invalid_credentials",
    )
    .await;
    assert_eq!(
        app.login(&ann.email, "a brand new password").await.status(),
        200
    );
}
