//! `/api/v1/auth/*`: registration, login, refresh rotation, logout, token checks.

use crate::helpers::{assert_error, spawn_app, spawn_app_with, JWT_SECRET};
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use reqwest::Method;
use serde_json::{json, Value};

#[tokio::test]
async fn register_creates_an_unverified_patient_without_exposing_the_hash() {
    let app = spawn_app().await;
    let res = app
        .post(
            "/api/v1/auth/register",
            &json!({
                "email": "Ann.Lee@Example.com",
                "password": "correct horse",
                "full_name": "Ann Lee",
                "birth_date": "1990-04-01",
                "gender": "female",
                "phone": "+49 30 1234567"
            }),
        )
        .await;
    assert_eq!(res.status(), 202);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["email"], "ann.lee@example.com");
    let login: Value = app
        .login("ann.lee@example.com", "correct horse")
        .await
        .json()
        .await
        .unwrap();
    let token = login["access_token"].as_str().unwrap();
    let me: Value = app
        .get("/api/v1/me", Some(token))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(me["role"], "patient");
    assert_eq!(me["phone"], "+49301234567");
    assert_eq!(me["email_verified"], false);
    assert!(me.get("password_hash").is_none());
    assert!(me["id"].as_str().unwrap().len() == 36);
}

#[tokio::test]
async fn register_lists_every_invalid_field() {
    let app = spawn_app().await;
    let res = app
        .post(
            "/api/v1/auth/register",
            &json!({
                "email": "not-an-email",
                "password": "short",
                "full_name": " ",
                "birth_date": "2999-01-01",
                "gender": "robot",
                "phone": "12"
            }),
        )
        .await;
    let body = assert_error(res, 400, "validation_failed").await;
    let mut fields: Vec<&str> = body["error"]["details"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["field"].as_str().unwrap())
        .collect();
    fields.sort();
    assert_eq!(
        fields,
        [
            "birth_date",
            "email",
            "full_name",
            "gender",
            "password",
            "phone"
        ]
    );
}

#[tokio::test]
async fn passwords_over_72_bytes_are_refused_not_truncated() {
    let app = spawn_app().await;
    let base = "a".repeat(71);
    let ok = app.register("max@example.com", &format!("{base}X")).await;
    assert_eq!(ok.status(), 202, "72 bytes is allowed");
    // Same first 71 bytes, different 72nd: must not log in.
    let wrong = app.login("max@example.com", &format!("{base}Y")).await;
    assert_error(wrong, 401, "invalid_credentials").await;
    let too_long = app.register("long@example.com", &"a".repeat(73)).await;
    let body = assert_error(too_long, 400, "validation_failed").await;
    assert_eq!(body["error"]["details"][0]["field"], "password");
    assert!(body["error"]["details"][0]["message"]
        .as_str()
        .unwrap()
        .contains("72 bytes"));
    let login_long = app.login("max@example.com", &"a".repeat(80)).await;
    assert_error(login_long, 400, "validation_failed").await;
}

#[tokio::test]
async fn a_taken_address_answers_as_a_new_one_and_its_owner_is_told() {
    let app = spawn_app().await;
    let first = app.register("dup@example.com", "plum-violin-42").await;
    assert_eq!(first.status(), 202);
    let first_body: Value = first.json().await.unwrap();
    let again = app.register("DUP@example.com", "other-secret-77").await;
    assert_eq!(again.status(), 202);
    let again_body: Value = again.json().await.unwrap();
    assert_eq!(first_body, again_body, "the same answer");
    assert_eq!(
        app.outbox_count("account.verify_email", "dup@example.com"),
        1
    );
    assert_eq!(
        app.outbox_count("account.registration_attempted", "dup@example.com"),
        1,
        "the owner is told"
    );
    // The account is untouched: the first password still works, the second does not.
    assert_eq!(
        app.login("dup@example.com", "plum-violin-42")
            .await
            .status(),
        200
    );
    assert_eq!(
        app.login("dup@example.com", "other-secret-77")
            .await
            .status(),
        401
    );
}

#[tokio::test]
async fn malformed_and_mistyped_bodies_are_400_in_the_error_shape() {
    let app = spawn_app().await;
    let raw = |body: &'static str, content_type: &'static str| {
        app.request(Method::POST, "/api/v1/auth/register")
            .header("content-type", content_type)
            .body(body)
            .send()
    };
    assert_error(
        raw("{\"email\":", "application/json").await.unwrap(),
        400,
        "malformed_json",
    )
    .await;
    let missing = raw("{\"email\":\"a@example.com\"}", "application/json")
        .await
        .unwrap();
    let body = assert_error(missing, 400, "invalid_body").await;
    assert_eq!(body["error"]["details"][0]["field"], "password");
    let extra = raw(
        r#"{"email":"a@example.com","password":"long enough","full_name":"A","role":"admin"}"#,
        "application/json",
    )
    .await
    .unwrap();
    let body = assert_error(extra, 400, "invalid_body").await;
    assert_eq!(body["error"]["details"][0]["field"], "role");
    let wrong_type = raw(
        r#"{"email":"a@example.com","password":12345678,"full_name":"A"}"#,
        "application/json",
    )
    .await
    .unwrap();
    assert_error(wrong_type, 400, "invalid_body").await;
    let text = raw("email=a", "text/plain").await.unwrap();
    assert_error(text, 415, "unsupported_media_type").await;
    let long_name = app
        .post(
            "/api/v1/auth/register",
            &json!({"email": "b@example.com", "password": "long enough", "full_name": "x".repeat(201)}),
        )
        .await;
    let body = assert_error(long_name, 400, "validation_failed").await;
    assert_eq!(body["error"]["details"][0]["field"], "full_name");
}

#[tokio::test]
async fn unknown_email_and_wrong_password_look_the_same() {
    let app = spawn_app().await;
    app.register("ann@example.com", "correct horse").await;
    let wrong = assert_error(
        app.login("ann@example.com", "wrong horse").await,
        401,
        "invalid_credentials",
    )
    .await;
    let unknown = assert_error(
        app.login("bob@example.com", "wrong horse").await,
        401,
        "invalid_credentials",
    )
    .await;
    assert_eq!(wrong["error"], unknown["error"]);
    let ok = app.login("ANN@example.com", "correct horse").await;
    assert_eq!(ok.status(), 200);
    let body: Value = ok.json().await.unwrap();
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 900);
}

#[tokio::test]
async fn repeated_failures_lock_the_account_with_retry_after() {
    let app = spawn_app_with(|s| {
        s.auth.login.max_failures_per_account = 3;
        s.auth.login.lockout_secs = 120;
    })
    .await;
    app.register("ann@example.com", "correct horse").await;
    for _ in 0..3 {
        assert_error(
            app.login("ann@example.com", "wrong horse").await,
            401,
            "invalid_credentials",
        )
        .await;
    }
    let locked = app.login("ann@example.com", "correct horse").await;
    let retry_after: u64 = locked.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=120).contains(&retry_after), "{retry_after}");
    assert_error(locked, 429, "too_many_attempts").await;
    // Other accounts are unaffected.
    app.register("bob@example.com", "correct horse").await;
    assert_eq!(
        app.login("bob@example.com", "correct horse").await.status(),
        200
    );
}

#[tokio::test]
async fn lockouts_expire() {
    let app = spawn_app_with(|s| {
        s.auth.login.max_failures_per_account = 2;
        s.auth.login.lockout_secs = 1;
    })
    .await;
    app.register("ann@example.com", "correct horse").await;
    for _ in 0..2 {
        app.login("ann@example.com", "wrong horse").await;
    }
    assert_eq!(
        app.login("ann@example.com", "correct horse").await.status(),
        429
    );
    // The lockout ends after its second: logging in works again then.
    medbook_test_support::eventually(
        "the lockout to expire",
        std::time::Duration::from_secs(10),
        || async {
            let status = app.login("ann@example.com", "correct horse").await.status();
            assert!(matches!(status.as_u16(), 200 | 429), "{status}");
            (status == 200).then_some(())
        },
    )
    .await;
}

#[tokio::test]
async fn failures_from_one_client_address_are_throttled() {
    let app = spawn_app_with(|s| s.auth.login.max_failures_per_client = 4).await;
    for i in 0..4 {
        app.login(&format!("u{i}@example.com"), "wrong horse").await;
    }
    assert_error(
        app.login("fresh@example.com", "wrong horse").await,
        429,
        "too_many_attempts",
    )
    .await;
}

#[tokio::test]
async fn refresh_rotates_and_reuse_revokes_the_family() {
    let app = spawn_app().await;
    let user = app.patient().await;
    let first = app
        .post(
            "/api/v1/auth/refresh",
            &json!({"refresh_token": user.refresh}),
        )
        .await;
    assert_eq!(first.status(), 200);
    let first: Value = first.json().await.unwrap();
    let rotated = first["refresh_token"].as_str().unwrap();
    assert_ne!(rotated, user.refresh);
    let me = app.get("/api/v1/me", first["access_token"].as_str()).await;
    assert_eq!(me.status(), 200);

    // The old token again: reuse → the whole family dies, including `rotated`.
    let reuse = app
        .post(
            "/api/v1/auth/refresh",
            &json!({"refresh_token": user.refresh}),
        )
        .await;
    assert_error(reuse, 401, "unauthorized").await;
    let after = app
        .post("/api/v1/auth/refresh", &json!({"refresh_token": rotated}))
        .await;
    assert_error(after, 401, "unauthorized").await;
    // Another login is a separate family and still works.
    assert_eq!(app.login(&user.email, &user.password).await.status(), 200);
}

#[tokio::test]
async fn concurrent_refreshes_with_one_token_succeed_at_most_once() {
    let app = spawn_app().await;
    let user = app.patient().await;
    let body = json!({"refresh_token": user.refresh});
    let attempts = (0..8).map(|_| app.post("/api/v1/auth/refresh", &body));
    let results = futures_util::future::join_all(attempts).await;
    let ok = results.iter().filter(|r| r.status() == 200).count();
    assert!(ok <= 1, "{ok} refreshes succeeded");
    assert!(results
        .iter()
        .all(|r| r.status() == 200 || r.status() == 401));
}

#[tokio::test]
async fn logout_revokes_and_is_idempotent() {
    let app = spawn_app().await;
    let user = app.patient().await;
    let res = app
        .post(
            "/api/v1/auth/logout",
            &json!({"refresh_token": user.refresh}),
        )
        .await;
    assert_eq!(res.status(), 204);
    let again = app
        .post(
            "/api/v1/auth/logout",
            &json!({"refresh_token": user.refresh}),
        )
        .await;
    assert_eq!(again.status(), 204);
    let refresh = app
        .post(
            "/api/v1/auth/refresh",
            &json!({"refresh_token": user.refresh}),
        )
        .await;
    assert_error(refresh, 401, "unauthorized").await;
}

#[derive(serde::Serialize)]
struct Claims<'a> {
    sub: String,
    role: &'a str,
    iss: &'a str,
    aud: &'a str,
    exp: i64,
    iat: i64,
    jti: String,
    typ: &'a str,
}

fn claims(sub: uuid::Uuid, role: &str, exp_offset: i64) -> Claims<'_> {
    let now = chrono::Utc::now().timestamp();
    Claims {
        sub: sub.to_string(),
        role,
        iss: "medbook",
        aud: "medbook-api",
        exp: now + exp_offset,
        iat: now,
        jti: uuid::Uuid::new_v4().to_string(),
        typ: "access",
    }
}

#[tokio::test]
async fn forged_expired_and_misused_tokens_are_401() {
    let app = spawn_app().await;
    let user = app.patient().await;
    let key = EncodingKey::from_secret(JWT_SECRET.as_bytes());
    let b64 = |s: &str| {
        use base64_like::encode_url;
        encode_url(s.as_bytes())
    };

    let valid = encode(
        &Header::new(Algorithm::HS256),
        &claims(user.id, "patient", 600),
        &key,
    )
    .unwrap();
    assert_eq!(
        app.get("/api/v1/me", Some(&valid)).await.status(),
        200,
        "control"
    );

    let expired = encode(
        &Header::new(Algorithm::HS256),
        &claims(user.id, "patient", -120),
        &key,
    )
    .unwrap();
    let hs512 = encode(
        &Header::new(Algorithm::HS512),
        &claims(user.id, "patient", 600),
        &key,
    )
    .unwrap();
    let other_key = encode(
        &Header::new(Algorithm::HS256),
        &claims(user.id, "admin", 600),
        &EncodingKey::from_secret(b"some-other-secret-of-sufficient-length"),
    )
    .unwrap();
    let parts: Vec<&str> = valid.split('.').collect();
    let escalated_payload = b64(&serde_json::to_string(&claims(user.id, "admin", 600)).unwrap());
    let tampered = format!("{}.{}.{}", parts[0], escalated_payload, parts[2]);
    let none_alg = format!(
        "{}.{}.",
        b64(r#"{"alg":"none","typ":"JWT"}"#),
        b64(&serde_json::to_string(&claims(user.id, "admin", 600)).unwrap())
    );
    let mut wrong_aud = claims(user.id, "patient", 600);
    wrong_aud.aud = "someone-else";
    let wrong_aud = encode(&Header::new(Algorithm::HS256), &wrong_aud, &key).unwrap();
    let mut wrong_iss = claims(user.id, "patient", 600);
    wrong_iss.iss = "evil";
    let wrong_iss = encode(&Header::new(Algorithm::HS256), &wrong_iss, &key).unwrap();
    let mut not_access = claims(user.id, "patient", 600);
    not_access.typ = "refresh";
    let not_access = encode(&Header::new(Algorithm::HS256), &not_access, &key).unwrap();

    for (name, token) in [
        ("expired", expired),
        ("HS512", hs512),
        ("other key", other_key),
        ("tampered payload", tampered),
        ("alg none", none_alg),
        ("wrong audience", wrong_aud),
        ("wrong issuer", wrong_iss),
        ("not an access token", not_access),
        ("refresh token as access token", user.refresh.clone()),
        ("garbage", "abc.def.ghi".to_owned()),
    ] {
        let res = app.get("/api/v1/me", Some(&token)).await;
        assert_eq!(res.status(), 401, "{name} was accepted");
        assert_error(res, 401, "unauthorized").await;
    }
    assert_error(app.get("/api/v1/me", None).await, 401, "unauthorized").await;
    let basic = app
        .request(Method::GET, "/api/v1/me")
        .header("authorization", "Basic dXNlcjpwYXNz")
        .send()
        .await
        .unwrap();
    assert_error(basic, 401, "unauthorized").await;
}

/// Minimal URL-safe base64 without padding, for hand-made tokens.
mod base64_like {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

    pub fn encode_url(input: &[u8]) -> String {
        let mut out = String::new();
        for chunk in input.chunks(3) {
            let b = [
                chunk[0],
                *chunk.get(1).unwrap_or(&0),
                *chunk.get(2).unwrap_or(&0),
            ];
            let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
            let chars = chunk.len() + 1;
            for i in 0..chars {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            }
        }
        out
    }
}

#[tokio::test]
async fn hashing_is_bounded_and_other_endpoints_stay_up() {
    // One hashing slot, 20 ms to get it, real bcrypt cost: concurrent logins overflow.
    let app = spawn_app_with(|s| {
        s.auth.bcrypt_cost = 12;
        s.auth.max_concurrent_hashes = 1;
        s.auth.hash_wait_ms = 20;
    })
    .await;
    let emails: Vec<String> = (0..6).map(|i| format!("nobody{i}@example.com")).collect();
    let logins = emails.iter().map(|e| app.login(e, "some password"));
    let health = async {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        app.get("/health", None).await
    };
    let (results, health) = tokio::join!(futures_util::future::join_all(logins), health);
    assert_eq!(health.status(), 200);
    let statuses: Vec<u16> = results.iter().map(|r| r.status().as_u16()).collect();
    assert!(
        statuses.iter().all(|s| *s == 401 || *s == 503),
        "{statuses:?}"
    );
    assert!(statuses.contains(&503), "no request was shed: {statuses:?}");
    assert!(
        statuses.contains(&401),
        "no request was served: {statuses:?}"
    );
    for r in results {
        if r.status() == 503 {
            assert!(r.headers().contains_key("retry-after"));
            assert_error(r, 503, "overloaded").await;
        }
    }
}
