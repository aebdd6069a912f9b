//! Accounts: e-mail verification (API and the served page), password reset, the
//! password policy, no enumeration, security headers and authorization before
//! validation. The links are read from the outbox rows the e-mails are published from
//! (the relay is off here; the notification-service pipeline tests read the same links
//! from the mail sink).

use crate::helpers::{assert_error, id_of, practice, spawn_app, spawn_app_with, TestApp};
use booking_service::transport::http::access::{Access, POLICY};
use reqwest::{Method, Response};
use serde_json::{json, Value};

fn token_of(link: &str) -> String {
    link.split("token=").nth(1).unwrap().to_owned()
}

async fn me(app: &TestApp, access: &str) -> Value {
    app.get("/api/v1/me", Some(access))
        .await
        .json()
        .await
        .unwrap()
}

async fn form(app: &TestApp, path: &str, fields: &[(&str, &str)]) -> Response {
    app.request(Method::POST, path)
        .form(fields)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn verification_link_opens_a_page_whose_button_verifies_and_then_booking_works() {
    let app = spawn_app().await;
    let practice = practice(&app).await;
    let slot = app
        .create_slot(&practice.admin, &practice.doctor_id(), 120, 30)
        .await;
    let ann = app.unverified_patient().await;

    let refused = app.book(&ann, &id_of(&slot)).await;
    let body = assert_error(refused, 403, "email_unverified").await;
    assert!(body["error"]["message"].as_str().unwrap().contains("verif"));

    let link = app.outbox_link("account.verify_email", &ann.email).unwrap();
    assert!(
        link.starts_with("http://127.0.0.1:8080/account/verify-email?token="),
        "{link}"
    );
    let path = link.trim_start_matches("http://127.0.0.1:8080");
    // Opening the link (what a mail scanner does) changes nothing.
    for _ in 0..2 {
        let page = app.get(path, None).await;
        assert_eq!(page.status(), 200);
        assert_eq!(page.headers()["cache-control"], "no-store");
        assert_eq!(page.headers()["referrer-policy"], "no-referrer");
        assert!(page.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .contains("default-src 'none'"));
        let html = page.text().await.unwrap();
        assert!(
            html.contains("<form method=\"post\" action=\"/account/verify-email\">"),
            "{html}"
        );
        assert!(html.contains(&token_of(&link)));
    }
    assert_eq!(me(&app, &ann.access).await["email_verified"], false);

    let done = form(
        &app,
        "/account/verify-email",
        &[("token", &token_of(&link))],
    )
    .await;
    assert_eq!(done.status(), 200);
    assert!(done.text().await.unwrap().contains("is verified"));
    assert_eq!(me(&app, &ann.access).await["email_verified"], true);
    assert_eq!(app.book(&ann, &id_of(&slot)).await.status(), 201);

    // Single use.
    let again = form(
        &app,
        "/account/verify-email",
        &[("token", &token_of(&link))],
    )
    .await;
    assert_eq!(again.status(), 400);
    assert!(again.text().await.unwrap().contains("did not work"));
}

#[tokio::test]
async fn the_json_endpoint_verifies_and_refuses_bad_tokens() {
    let app = spawn_app().await;
    let ann = app.unverified_patient().await;
    let bad = app
        .post(
            "/api/v1/auth/verify-email",
            &json!({"token": "not-a-token"}),
        )
        .await;
    let body = assert_error(bad, 400, "validation_failed").await;
    assert_eq!(body["error"]["details"][0]["field"], "token");
    let link = app.outbox_link("account.verify_email", &ann.email).unwrap();
    let ok = app
        .post(
            "/api/v1/auth/verify-email",
            &json!({"token": token_of(&link)}),
        )
        .await;
    assert_eq!(ok.status(), 200);
    assert_eq!(ok.headers()["cache-control"], "no-store");
    let body: Value = ok.json().await.unwrap();
    assert_eq!(body["email"], ann.email);
    assert_eq!(body["email_verified"], true);
}

#[tokio::test]
async fn expired_links_do_not_verify() {
    let app = spawn_app().await;
    let ann = app.unverified_patient().await;
    let link = app.outbox_link("account.verify_email", &ann.email).unwrap();
    app.db
        .execute("UPDATE account_tokens SET expires_at = now() - interval '1 second'");
    let res = app
        .post(
            "/api/v1/auth/verify-email",
            &json!({"token": token_of(&link)}),
        )
        .await;
    assert_error(res, 400, "validation_failed").await;
    let stored: i64 = crate::helpers::count(
        &app,
        &format!(
            "SELECT count(*) AS n FROM account_tokens WHERE token_hash = '{}'",
            token_of(&link)
        ),
    );
    assert_eq!(stored, 0, "the secret itself is never stored");
}

#[tokio::test]
async fn resending_is_limited_and_only_the_newest_link_works() {
    let app = spawn_app().await;
    let ann = app.unverified_patient().await;
    let first = app.outbox_link("account.verify_email", &ann.email).unwrap();
    for _ in 0..3 {
        let res = app
            .send_json(
                Method::POST,
                "/api/v1/me/email-verification",
                Some(&ann.access),
                &json!({}),
            )
            .await;
        assert_eq!(res.status(), 202);
    }
    let limited = app
        .send_json(
            Method::POST,
            "/api/v1/me/email-verification",
            Some(&ann.access),
            &json!({}),
        )
        .await;
    assert!(limited.headers().contains_key("retry-after"));
    assert_error(limited, 429, "too_many_attempts").await;
    assert_eq!(app.outbox_count("account.verify_email", &ann.email), 4);
    let old = app
        .post(
            "/api/v1/auth/verify-email",
            &json!({"token": token_of(&first)}),
        )
        .await;
    assert_error(old, 400, "validation_failed").await;
    let newest = app.outbox_link("account.verify_email", &ann.email).unwrap();
    let ok = app
        .post(
            "/api/v1/auth/verify-email",
            &json!({"token": token_of(&newest)}),
        )
        .await;
    assert_eq!(ok.status(), 200);
    let nothing_to_do = app
        .send_json(
            Method::POST,
            "/api/v1/me/email-verification",
            Some(&ann.access),
            &json!({}),
        )
        .await;
    assert_error(nothing_to_do, 409, "already_verified").await;
}

#[tokio::test]
async fn an_address_change_takes_effect_when_the_new_address_is_verified() {
    let app = spawn_app().await;
    let ann = app.patient().await;
    let new = format!("moved-{}", ann.email);
    let res = app
        .send_json(
            Method::PATCH,
            "/api/v1/me",
            Some(&ann.access),
            &json!({"email": new.to_uppercase(), "current_password": ann.password}),
        )
        .await;
    assert_eq!(res.status(), 200);
    let link = app.outbox_link("account.verify_email", &new).unwrap();
    let done = form(
        &app,
        "/account/verify-email",
        &[("token", &token_of(&link))],
    )
    .await;
    assert_eq!(done.status(), 200);
    let now = me(&app, &ann.access).await;
    assert_eq!(now["email"], new);
    assert_eq!(now["pending_email"], Value::Null);
    assert_eq!(now["email_verified"], true);
    assert_eq!(app.login(&new, &ann.password).await.status(), 200);
    assert_eq!(app.login(&ann.email, &ann.password).await.status(), 401);
    assert_eq!(
        app.outbox_count("account.email_changed", &ann.email),
        1,
        "the old address is told"
    );
}

/// The new address was free when asked for and taken before the link was followed.
#[tokio::test]
async fn an_address_taken_before_the_link_is_followed_is_a_conflict() {
    let app = spawn_app().await;
    let ann = app.patient().await;
    let new = format!("contested-{}", ann.email);
    let res = app
        .send_json(
            Method::PATCH,
            "/api/v1/me",
            Some(&ann.access),
            &json!({"email": new, "current_password": ann.password}),
        )
        .await;
    assert_eq!(res.status(), 200);
    let link = app.outbox_link("account.verify_email", &new).unwrap();
    assert_eq!(app.register(&new, "plum-violin-42").await.status(), 202);
    let res = app
        .post(
            "/api/v1/auth/verify-email",
            &json!({"token": token_of(&link)}),
        )
        .await;
    assert_error(res, 409, "email_taken").await;
    let unchanged = me(&app, &ann.access).await;
    assert_eq!(unchanged["email"], ann.email);
    assert_eq!(app.outbox_count("account.email_changed", &ann.email), 0);
}

#[tokio::test]
async fn moving_to_a_taken_address_answers_alike_and_tells_its_owner() {
    let app = spawn_app().await;
    let ann = app.patient().await;
    let bob = app.patient().await;
    let change = |to: String| {
        let app = &app;
        let ann = &ann;
        async move {
            let res = app
                .send_json(
                    Method::PATCH,
                    "/api/v1/me",
                    Some(&ann.access),
                    &json!({"email": to, "current_password": ann.password}),
                )
                .await;
            assert_eq!(res.status(), 200);
            res.json::<Value>().await.unwrap()
        }
    };
    let to_taken = change(bob.email.clone()).await;
    assert_eq!(to_taken["pending_email"], bob.email);
    assert_eq!(
        app.outbox_count("account.registration_attempted", &bob.email),
        1
    );
    assert_eq!(
        app.outbox_count("account.verify_email", &bob.email),
        1,
        "only bob's own, from his registration"
    );
    let to_free = change(format!("free-{}", ann.email)).await;
    let strip = |mut v: Value| {
        for k in ["pending_email", "updated_at"] {
            v.as_object_mut().unwrap().remove(k);
        }
        v
    };
    assert_eq!(strip(to_taken), strip(to_free), "the same answer otherwise");
}

#[tokio::test]
async fn password_reset_sets_a_new_password_and_ends_every_session() {
    let app = spawn_app().await;
    let ann = app.patient().await;
    let known = app
        .post("/api/v1/auth/password-reset", &json!({"email": ann.email}))
        .await;
    let unknown = app
        .post(
            "/api/v1/auth/password-reset",
            &json!({"email": "nobody-here@example.com"}),
        )
        .await;
    assert_eq!(known.status(), 202);
    assert_eq!(unknown.status(), 202);
    let known: Value = known.json().await.unwrap();
    let unknown: Value = unknown.json().await.unwrap();
    assert_eq!(known["message"], unknown["message"]);
    assert!(app
        .outbox_link("account.password_reset", "nobody-here@example.com")
        .is_none());

    let link = app
        .outbox_link("account.password_reset", &ann.email)
        .unwrap();
    assert!(link.starts_with("http://127.0.0.1:8080/account/reset-password?token="));
    let page = app
        .get(link.trim_start_matches("http://127.0.0.1:8080"), None)
        .await;
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(html.contains("name=\"new_password\""), "{html}");

    // The policy applies, and a refused password leaves the link usable.
    let weak = app
        .post(
            "/api/v1/auth/password-reset/confirm",
            &json!({"token": token_of(&link), "new_password": "password123"}),
        )
        .await;
    let body = assert_error(weak, 400, "validation_failed").await;
    assert_eq!(body["error"]["details"][0]["field"], "new_password");
    let weak_form = form(
        &app,
        "/account/reset-password",
        &[("token", &token_of(&link)), ("new_password", "12345678")],
    )
    .await;
    assert_eq!(weak_form.status(), 400);
    assert!(weak_form.text().await.unwrap().contains("most common"));

    let done = form(
        &app,
        "/account/reset-password",
        &[
            ("token", &token_of(&link)),
            ("new_password", "quiet-lantern-58"),
        ],
    )
    .await;
    assert_eq!(done.status(), 200, "{}", done.text().await.unwrap());
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
    let fresh: Value = app
        .login(&ann.email, "quiet-lantern-58")
        .await
        .json()
        .await
        .unwrap();
    let fresh = fresh["access_token"].as_str().unwrap();
    assert_eq!(app.get("/api/v1/me", Some(fresh)).await.status(), 200);
    let reused = app
        .post(
            "/api/v1/auth/password-reset/confirm",
            &json!({"token": token_of(&link), "new_password": "another-lantern-59"}),
        )
        .await;
    let body = assert_error(reused, 400, "validation_failed").await;
    assert_eq!(body["error"]["details"][0]["field"], "token");
}

#[tokio::test]
async fn reset_requests_are_limited_per_address_and_client_alike_for_unknown_addresses() {
    // Per client: 7 requests admitted; the seventh request (the third for the unknown
    // address) reaches the limit.
    let app = spawn_app_with(|s| s.accounts.requests_per_client = 7).await;
    let ann = app.patient().await;
    for email in [ann.email.as_str(), "nobody-here@example.com"] {
        for _ in 0..3 {
            let res = app
                .post("/api/v1/auth/password-reset", &json!({"email": email}))
                .await;
            assert_eq!(res.status(), 202, "{email}");
        }
        let limited = app
            .post("/api/v1/auth/password-reset", &json!({"email": email}))
            .await;
        assert_error(limited, 429, "too_many_attempts").await;
    }
    // The client is limited now, whatever the address.
    let other = app
        .post(
            "/api/v1/auth/password-reset",
            &json!({"email": "third@example.com"}),
        )
        .await;
    assert_error(other, 429, "too_many_attempts").await;
    assert_eq!(app.outbox_count("account.password_reset", &ann.email), 3);
}

#[tokio::test]
async fn admin_created_patients_start_unverified_and_a_reset_link_verifies_them() {
    let app = spawn_app().await;
    let practice = practice(&app).await;
    let slot = app
        .create_slot(&practice.admin, &practice.doctor_id(), 120, 30)
        .await;
    let email = format!("walk-in-{}@example.com", uuid::Uuid::new_v4().simple());
    let created = crate::helpers::post_ok(
        &app,
        &practice.admin,
        "/api/v1/patients",
        json!({"email": email, "full_name": "Walk In"}),
    )
    .await;
    assert_eq!(created["email_verified"], false);
    assert_eq!(
        app.outbox_count("account.verify_email", &email),
        0,
        "no e-mail at creation"
    );
    // No password yet: the patient sets one through password reset.
    app.post("/api/v1/auth/password-reset", &json!({"email": email}))
        .await;
    let link = app.outbox_link("account.password_reset", &email).unwrap();
    let res = app
        .post(
            "/api/v1/auth/password-reset/confirm",
            &json!({"token": token_of(&link), "new_password": "quiet-lantern-58"}),
        )
        .await;
    assert_eq!(res.status(), 204);
    let login: Value = app
        .login(&email, "quiet-lantern-58")
        .await
        .json()
        .await
        .unwrap();
    let user = crate::helpers::TestUser {
        id: created["id"].as_str().unwrap().parse().unwrap(),
        email: email.clone(),
        password: "quiet-lantern-58".into(),
        access: login["access_token"].as_str().unwrap().into(),
        refresh: login["refresh_token"].as_str().unwrap().into(),
    };
    assert_eq!(me(&app, &user.access).await["email_verified"], true);
    assert_eq!(app.book(&user, &id_of(&slot)).await.status(), 201);
}

#[tokio::test]
async fn common_passwords_and_ones_made_of_the_address_or_name_are_refused() {
    let app = spawn_app().await;
    for (email, password) in [
        ("a@example.com", "password"),
        ("b@example.com", "12345678"),
        ("c@example.com", "Password1"),
        ("margaret.hill@example.com", "margaret.hill-2026"),
        ("d@example.com", "TestPatient!2026"),
    ] {
        let res = app.register(email, password).await;
        let body = assert_error(res, 400, "validation_failed").await;
        assert_eq!(
            body["error"]["details"][0]["field"], "password",
            "{password}"
        );
    }
}

#[tokio::test]
async fn every_response_says_nosniff_and_personal_ones_are_not_stored() {
    let app = spawn_app().await;
    let ann = app.patient().await;
    let login = app.login(&ann.email, &ann.password).await;
    let refresh = app
        .post(
            "/api/v1/auth/refresh",
            &json!({"refresh_token": ann.refresh}),
        )
        .await;
    let personal = [
        login,
        refresh,
        app.get("/api/v1/me", Some(&ann.access)).await,
        app.get("/api/v1/appointments", Some(&ann.access)).await,
        app.register("someone@example.com", "plum-violin-42").await,
        app.get("/api/v1/me", None).await,
    ];
    for res in personal {
        let h = res.headers();
        assert_eq!(h["x-content-type-options"], "nosniff", "{}", res.url());
        assert_eq!(h["cache-control"], "no-store", "{}", res.url());
        assert_eq!(h["pragma"], "no-cache", "{}", res.url());
    }
    let public = [
        app.get("/api/v1/doctors", None).await,
        app.get("/api/v1/clinics", None).await,
        app.get("/nowhere", None).await,
        app.get("/swagger/index.html", None).await,
        app.ops_get("/metrics").await,
    ];
    for res in public {
        assert_eq!(
            res.headers()["x-content-type-options"],
            "nosniff",
            "{}",
            res.url()
        );
    }
    let catalogue = app.get("/api/v1/doctors", None).await;
    assert!(
        !catalogue.headers().contains_key("cache-control"),
        "the catalogue may be cached"
    );
}

/// Every route that needs a role, called without a token and with the wrong role, with
/// an empty body and a path parameter that is not an id: 401 and 403, never 400.
#[tokio::test]
async fn authorization_comes_before_validation_on_every_route() {
    let app = spawn_app().await;
    let patient = app.patient().await;
    let admin = app.admin().await;
    let mut admin_routes = 0;
    for (method, pattern, access) in POLICY {
        let Access::Roles(roles) = access else {
            continue;
        };
        let path = pattern.replace("{id}", "not-a-uuid");
        let method = Method::from_bytes(method.as_bytes()).unwrap();
        let call = |token: Option<&str>| {
            let mut r = app
                .request(method.clone(), &path)
                .header("content-type", "application/json")
                .body("");
            if let Some(t) = token {
                r = r.bearer_auth(t);
            }
            r.send()
        };
        let anonymous = call(None).await.unwrap();
        assert_error(anonymous, 401, "unauthorized").await;
        let garbage = call(Some("not.a.jwt")).await.unwrap();
        assert_error(garbage, 401, "unauthorized").await;
        for (role, user) in [("patient", &patient), ("admin", &admin)] {
            if roles.iter().any(|r| r.as_str() == role) {
                continue;
            }
            if role == "patient" {
                admin_routes += 1;
            }
            let res = call(Some(&user.access)).await.unwrap();
            let body = assert_error(res, 403, "forbidden").await;
            assert_eq!(
                body["error"]["details"],
                json!([]),
                "{method} {pattern}: {body}"
            );
        }
    }
    assert!(admin_routes >= 15, "{admin_routes} admin routes walked");
}

/// One reset link used by eight requests at once: exactly one sets its password.
#[tokio::test]
async fn concurrent_uses_of_one_reset_link_succeed_once() {
    let app = spawn_app().await;
    let ann = app.patient().await;
    app.post("/api/v1/auth/password-reset", &json!({"email": ann.email}))
        .await;
    let token = token_of(
        &app.outbox_link("account.password_reset", &ann.email)
            .unwrap(),
    );
    let attempts = (0..8).map(|i| {
        let app = &app;
        let token = token.clone();
        async move {
            let password = format!("quiet-lantern-{i}{i}");
            let res = app
                .post(
                    "/api/v1/auth/password-reset/confirm",
                    &json!({"token": token, "new_password": password}),
                )
                .await;
            (res.status().as_u16(), password)
        }
    });
    let results = futures_util::future::join_all(attempts).await;
    let winners: Vec<&String> = results
        .iter()
        .filter(|(s, _)| *s == 204)
        .map(|(_, p)| p)
        .collect();
    assert_eq!(winners.len(), 1, "{results:?}");
    assert!(
        results.iter().all(|(s, _)| *s == 204 || *s == 400),
        "{results:?}"
    );
    assert_eq!(app.login(&ann.email, winners[0]).await.status(), 200);
}
