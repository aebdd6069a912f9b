//! `/api/v1/patients`: admin only; patients never reach each other's data.

use crate::helpers::{assert_error, spawn_app};
use reqwest::Method;
use serde_json::{json, Value};

fn patient_body(email: &str, name: &str) -> Value {
    json!({
        "email": email,
        "full_name": name,
        "birth_date": "1970-06-15",
        "gender": "male",
        "phone": "+1 415 555 0100"
    })
}

#[tokio::test]
async fn admin_manages_patients_end_to_end() {
    let app = spawn_app().await;
    let admin = app.admin().await;
    let tok = Some(admin.access.as_str());

    let res = app
        .send_json(
            Method::POST,
            "/api/v1/patients",
            tok,
            &patient_body("carl@example.com", "Carl Jung"),
        )
        .await;
    assert_eq!(res.status(), 201);
    let carl: Value = res.json().await.unwrap();
    let id = carl["id"].as_str().unwrap().to_owned();
    assert_eq!(carl["phone"], "+14155550100");

    let res = app.get(&format!("/api/v1/patients/{id}"), tok).await;
    assert_eq!(res.status(), 200);

    let mut replacement = patient_body("carl.jung@example.com", "Carl G. Jung");
    replacement["phone"] = Value::Null;
    let res = app
        .send_json(
            Method::PUT,
            &format!("/api/v1/patients/{id}"),
            tok,
            &replacement,
        )
        .await;
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["email"], "carl.jung@example.com");
    assert!(body["phone"].is_null());

    let res = app
        .request(Method::DELETE, &format!("/api/v1/patients/{id}"))
        .bearer_auth(&admin.access)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 204);
    assert_error(
        app.get(&format!("/api/v1/patients/{id}"), tok).await,
        404,
        "not_found",
    )
    .await;
    let res = app
        .request(Method::DELETE, &format!("/api/v1/patients/{id}"))
        .bearer_auth(&admin.access)
        .send()
        .await
        .unwrap();
    assert_error(res, 404, "not_found").await;
}

#[tokio::test]
async fn list_pages_and_searches() {
    let app = spawn_app().await;
    let admin = app.admin().await;
    let tok = Some(admin.access.as_str());
    for i in 0..5 {
        let res = app
            .send_json(
                Method::POST,
                "/api/v1/patients",
                tok,
                &patient_body(&format!("p{i}@example.com"), &format!("Person {i}")),
            )
            .await;
        assert_eq!(res.status(), 201);
    }
    app.send_json(
        Method::POST,
        "/api/v1/patients",
        tok,
        &patient_body("zed@clinic.org", "Zed 100%_Match"),
    )
    .await;

    let page: Value = app
        .get("/api/v1/patients?per_page=2&page=2", tok)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(page["total"], 6);
    assert_eq!(page["page"], 2);
    assert_eq!(page["per_page"], 2);
    assert_eq!(page["items"].as_array().unwrap().len(), 2);

    let found: Value = app
        .get("/api/v1/patients?q=CLINIC", tok)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(found["total"], 1);
    let wildcard: Value = app
        .get("/api/v1/patients?q=100%25_", tok)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(wildcard["total"], 1, "% and _ match literally");
    let none: Value = app
        .get("/api/v1/patients?q=%25", tok)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(none["total"], 1);
    // The admin is not a patient and is not listed.
    let all: Value = app
        .get("/api/v1/patients?per_page=100", tok)
        .await
        .json()
        .await
        .unwrap();
    assert!(all["items"]
        .as_array()
        .unwrap()
        .iter()
        .all(|p| p["role"] == "patient"));

    assert_error(
        app.get("/api/v1/patients?per_page=0", tok).await,
        400,
        "validation_failed",
    )
    .await;
    assert_error(
        app.get("/api/v1/patients?per_page=101", tok).await,
        400,
        "validation_failed",
    )
    .await;
    assert_error(
        app.get("/api/v1/patients?page=abc", tok).await,
        400,
        "invalid_query",
    )
    .await;
    assert_error(
        app.get("/api/v1/patients?bogus=1", tok).await,
        400,
        "invalid_query",
    )
    .await;
}

#[tokio::test]
async fn validation_and_conflicts() {
    let app = spawn_app().await;
    let admin = app.admin().await;
    let tok = Some(admin.access.as_str());
    let res = app
        .send_json(
            Method::POST,
            "/api/v1/patients",
            tok,
            &json!({"email": "x", "full_name": "", "birth_date": "1800-01-01", "gender": "?", "phone": "abc", "password": "short"}),
        )
        .await;
    let body = assert_error(res, 400, "validation_failed").await;
    assert_eq!(body["error"]["details"].as_array().unwrap().len(), 6);

    app.send_json(
        Method::POST,
        "/api/v1/patients",
        tok,
        &patient_body("a@example.com", "A"),
    )
    .await;
    let res = app
        .send_json(
            Method::POST,
            "/api/v1/patients",
            tok,
            &patient_body("A@EXAMPLE.com", "A2"),
        )
        .await;
    assert_error(res, 409, "email_taken").await;

    assert_error(
        app.get("/api/v1/patients/not-a-uuid", tok).await,
        400,
        "invalid_path",
    )
    .await;
    let missing = uuid::Uuid::new_v4();
    assert_error(
        app.get(&format!("/api/v1/patients/{missing}"), tok).await,
        404,
        "not_found",
    )
    .await;
    let res = app
        .send_json(
            Method::PUT,
            &format!("/api/v1/patients/{missing}"),
            tok,
            &patient_body("n@example.com", "N"),
        )
        .await;
    assert_error(res, 404, "not_found").await;
    // An admin id is not a patient id.
    assert_error(
        app.get(&format!("/api/v1/patients/{}", admin.id), tok)
            .await,
        404,
        "not_found",
    )
    .await;
}

#[tokio::test]
async fn a_patient_created_with_a_password_can_log_in() {
    let app = spawn_app().await;
    let admin = app.admin().await;
    let mut body = patient_body("walkin@example.com", "Walk In");
    body["password"] = json!("initial password");
    let res = app
        .send_json(Method::POST, "/api/v1/patients", Some(&admin.access), &body)
        .await;
    assert_eq!(res.status(), 201);
    assert_eq!(
        app.login("walkin@example.com", "initial password")
            .await
            .status(),
        200
    );
    // Without a password: the account exists but cannot log in.
    app.send_json(
        Method::POST,
        "/api/v1/patients",
        Some(&admin.access),
        &patient_body("nopw@example.com", "No Pw"),
    )
    .await;
    assert_error(
        app.login("nopw@example.com", "anything at all").await,
        401,
        "invalid_credentials",
    )
    .await;
}

#[tokio::test]
async fn patients_cannot_use_admin_routes_or_see_each_other() {
    let app = spawn_app().await;
    let ann = app.patient().await;
    let bob = app.patient().await;
    let tok = Some(ann.access.as_str());
    let bob_path = format!("/api/v1/patients/{}", bob.id);
    assert_error(app.get("/api/v1/patients", tok).await, 403, "forbidden").await;
    assert_error(app.get(&bob_path, tok).await, 403, "forbidden").await;
    let res = app
        .send_json(
            Method::PUT,
            &bob_path,
            tok,
            &patient_body("hijack@example.com", "H"),
        )
        .await;
    assert_error(res, 403, "forbidden").await;
    let res = app
        .request(Method::DELETE, &bob_path)
        .bearer_auth(&ann.access)
        .send()
        .await
        .unwrap();
    assert_error(res, 403, "forbidden").await;
    let res = app
        .send_json(
            Method::POST,
            "/api/v1/patients",
            tok,
            &patient_body("new@example.com", "N"),
        )
        .await;
    assert_error(res, 403, "forbidden").await;
    // Without a token at all: 401.
    assert_error(app.get("/api/v1/patients", None).await, 401, "unauthorized").await;
    // Bob is untouched.
    let me: Value = app
        .get("/api/v1/me", Some(&bob.access))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(me["email"], bob.email);
}
