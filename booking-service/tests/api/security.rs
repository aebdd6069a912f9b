//! The outside review's findings (issue "Patient data that does not leak"), each as the
//! probe that once succeeded and now must fail: links that outlive an address change,
//! reviewers named in public, an admin's change audited as anonymous through an encoded
//! path, forged client addresses, and the smaller ones.

use crate::helpers::{assert_error, practice, spawn_app, TestApp};
use reqwest::Method;
use serde_json::{json, Value};

fn token_of(link: &str) -> String {
    link.split("token=").nth(1).unwrap().to_owned()
}

async fn verify(app: &TestApp, link: &str) -> reqwest::Response {
    app.post(
        "/api/v1/auth/verify-email",
        &json!({"token": token_of(link)}),
    )
    .await
}

/// A patient registers with a typo; an admin corrects the address. The link mailed to
/// the typo must not switch the account back (and so hand it to that mailbox's owner).
#[tokio::test]
async fn a_link_to_an_address_an_admin_corrected_is_dead() {
    let app = spawn_app().await;
    let admin = app.admin().await;
    let id = uuid::Uuid::new_v4().simple();
    let typo = format!("ann-{id}@gmial.example");
    let right = format!("ann-{id}@gmail.example");
    assert_eq!(app.register(&typo, "plum-violin-42").await.status(), 202);
    let user_id = app.user_id(&typo);
    let old_link = app.outbox_link("account.verify_email", &typo).unwrap();
    // Ask for a reset to the typo too: that link must die with the address as well.
    app.post("/api/v1/auth/password-reset", &json!({"email": typo}))
        .await;
    let old_reset = app.outbox_link("account.password_reset", &typo).unwrap();

    let corrected = app
        .send_json(
            Method::PUT,
            &format!("/api/v1/patients/{user_id}"),
            Some(&admin.access),
            &json!({"email": right, "full_name": "Ann Lee"}),
        )
        .await;
    assert_eq!(
        corrected.status(),
        200,
        "{}",
        corrected.text().await.unwrap()
    );

    let res = verify(&app, &old_link).await;
    let body = assert_error(res, 400, "validation_failed").await;
    assert_eq!(body["error"]["details"][0]["field"], "token");
    let res = app
        .post(
            "/api/v1/auth/password-reset/confirm",
            &json!({"token": token_of(&old_reset), "new_password": "taken-over-99"}),
        )
        .await;
    assert_error(res, 400, "validation_failed").await;

    // The account kept the corrected address, and the typo's owner cannot log in.
    let row: Value = app
        .get(&format!("/api/v1/patients/{user_id}"), Some(&admin.access))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(row["email"], right);
    assert_eq!(row["email_verified"], false);
    assert_eq!(app.login(&typo, "taken-over-99").await.status(), 401);

    // Even back at the typo, the old link stays dead: it died with the change.
    let back = app
        .send_json(
            Method::PUT,
            &format!("/api/v1/patients/{user_id}"),
            Some(&admin.access),
            &json!({"email": typo, "full_name": "Ann Lee"}),
        )
        .await;
    assert_eq!(back.status(), 200);
    assert_error(verify(&app, &old_link).await, 400, "validation_failed").await;
}

/// A pending address change, withdrawn: its link must not complete it later.
#[tokio::test]
async fn a_link_of_a_withdrawn_address_change_is_dead() {
    let app = spawn_app().await;
    let ann = app.patient().await;
    let new = format!("moved-{}", ann.email);
    let asked = app
        .send_json(
            Method::PATCH,
            "/api/v1/me",
            Some(&ann.access),
            &json!({"email": new, "current_password": ann.password}),
        )
        .await;
    assert_eq!(asked.status(), 200);
    let link = app.outbox_link("account.verify_email", &new).unwrap();
    // Back to the current address: the change is withdrawn.
    let withdrawn = app
        .send_json(
            Method::PATCH,
            "/api/v1/me",
            Some(&ann.access),
            &json!({"email": ann.email, "current_password": ann.password}),
        )
        .await;
    assert_eq!(withdrawn.status(), 200);
    let me: Value = withdrawn.json().await.unwrap();
    assert_eq!(me["pending_email"], Value::Null);

    assert_error(verify(&app, &link).await, 400, "validation_failed").await;
    let me: Value = app
        .get("/api/v1/me", Some(&ann.access))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(me["email"], ann.email, "the address did not move");
}

/// A public list of a doctor's reviews is not a list of the doctor's patients: no
/// names but what each reviewer chose (initials by default), no appointment or account
/// ids; public doctor JSON carries no linked account.
#[tokio::test]
async fn public_reviews_show_only_what_the_reviewer_chose() {
    let app = spawn_app().await;
    let p = practice(&app).await;
    let d = p.doctor_id();
    let url = format!("/api/v1/doctors/{d}/reviews");
    let mut appointments = Vec::new();
    for (minutes, shown_as) in [
        (60, None),
        (120, Some("full_name")),
        (180, Some("anonymous")),
    ] {
        let patient = app.patient().await;
        let slot = app.create_slot(&p.admin, &d, minutes, 30).await;
        let sid = slot["id"].as_str().unwrap().to_owned();
        let appt: Value = app.book(&patient, &sid).await.json().await.unwrap();
        app.db.execute(&format!(
            "UPDATE slots SET starts_at = now() - interval '{} minutes', ends_at = now() - interval '{} minutes' WHERE id = '{sid}'",
            minutes + 30,
            minutes
        ));
        let mut review = json!({"appointment_id": appt["id"], "rating": 4, "text": "Fine."});
        if let Some(s) = shown_as {
            review["show_author_as"] = json!(s);
        }
        let res = app
            .send_json(Method::POST, &url, Some(&patient.access), &review)
            .await;
        assert_eq!(res.status(), 201, "{}", res.text().await.unwrap());
        appointments.push((appt["id"].as_str().unwrap().to_owned(), patient));
    }
    let bad = app
        .send_json(
            Method::POST,
            &url,
            Some(&appointments[0].1.access),
            &json!({"appointment_id": appointments[0].0, "rating": 4, "show_author_as": "email"}),
        )
        .await;
    let body = assert_error(bad, 400, "validation_failed").await;
    assert_eq!(body["error"]["details"][0]["field"], "show_author_as");

    let res = app.get(&url, None).await;
    assert_eq!(res.status(), 200);
    let text = res.text().await.unwrap();
    let list: Value = serde_json::from_str(&text).unwrap();
    let mut authors: Vec<&str> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["author"].as_str().unwrap())
        .collect();
    authors.sort_unstable();
    assert_eq!(authors, ["Anonymous patient", "T. P.", "Test Patient"]);
    for (appointment_id, patient) in &appointments {
        assert!(!text.contains(appointment_id.as_str()), "{text}");
        assert!(!text.contains(&patient.id.to_string()), "{text}");
        assert!(!text.contains(&patient.email), "{text}");
    }
    for item in list["items"].as_array().unwrap() {
        let keys: Vec<&String> = item.as_object().unwrap().keys().collect();
        assert_eq!(
            keys,
            [
                "author",
                "author_shown_as",
                "created_at",
                "doctor_id",
                "id",
                "rating",
                "text"
            ],
            "{item}"
        );
    }

    // The doctor's linked account is not public.
    let doctor: Value = app
        .get(&format!("/api/v1/doctors/{d}"), None)
        .await
        .json()
        .await
        .unwrap();
    assert!(doctor.get("user_id").is_none(), "{doctor}");
    let listed: Value = app.get("/api/v1/doctors", None).await.json().await.unwrap();
    assert!(listed["items"][0].get("user_id").is_none(), "{listed}");
}

/// Routing and authorization see the same decoded path: an admin's change through a
/// percent-encoded path is attributed to the admin, other callers are refused as on
/// the plain path, and a request no rule covers is refused, never passed.
#[tokio::test]
async fn an_encoded_path_is_authorized_and_audited_like_the_plain_one() {
    let app = spawn_app().await;
    let admin = app.admin().await;
    let patient = app.patient().await;
    let victim = app.patient().await;
    let encoded = format!("/api/v1/%70atients/{}", victim.id);

    let res = app
        .send_json(Method::DELETE, &encoded, None, &Value::Null)
        .await;
    assert_error(res, 401, "unauthorized").await;
    let res = app
        .send_json(
            Method::DELETE,
            &encoded,
            Some(&patient.access),
            &Value::Null,
        )
        .await;
    assert_error(res, 403, "forbidden").await;
    // Authorization before validation, on the encoded path too.
    let res = app
        .send_json(
            Method::GET,
            "/api/v1/%70atients/not-a-uuid",
            Some(&patient.access),
            &Value::Null,
        )
        .await;
    assert_error(res, 403, "forbidden").await;

    let res = app
        .send_json(Method::DELETE, &encoded, Some(&admin.access), &Value::Null)
        .await;
    assert_eq!(res.status(), 204);
    let deleted: Vec<Value> = crate::audit::records(&app)
        .into_iter()
        .filter(|r| r["action"] == "user.deleted")
        .collect();
    assert_eq!(deleted.len(), 1, "{deleted:?}");
    assert_eq!(
        deleted[0]["actor"],
        json!({"user": {"id": admin.id.to_string(), "role": "admin"}}),
        "{:?}",
        deleted[0]
    );

    let res = app
        .send_json(
            Method::PATCH,
            "/api/v1/doctors",
            Some(&admin.access),
            &json!({}),
        )
        .await;
    assert_eq!(res.headers()["allow"], "GET, POST");
    assert_error(res, 405, "method_not_allowed").await;
    let res = app.get("/api/v1/%64octors/x/nowhere", None).await;
    assert_error(res, 404, "not_found").await;
}

async fn register_from(app: &TestApp, forwarded_for: &str) -> u16 {
    let email = format!("p-{}@example.com", uuid::Uuid::new_v4().simple());
    app.request(Method::POST, "/api/v1/auth/register")
        .header("x-forwarded-for", forwarded_for)
        .json(&json!({"email": email, "password": "plum-violin-42", "full_name": "P Q"}))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

async fn login_from(app: &TestApp, forwarded_for: &str, email: &str, password: &str) -> u16 {
    app.request(Method::POST, "/api/v1/auth/login")
        .header("x-forwarded-for", forwarded_for)
        .json(&json!({"email": email, "password": password}))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// Behind the ingress (here: the test client's 127.0.0.1 as a trusted proxy), limits
/// count the client our proxy saw, the rightmost hop it appended: entries the client
/// writes itself change nothing; IPv6 clients count per /64.
#[tokio::test]
async fn limits_count_the_client_the_proxy_saw_not_what_it_claims() {
    let app = crate::helpers::spawn_app_with(|s| {
        s.http.trusted_proxies = vec!["127.0.0.0/8".into()];
        s.accounts.requests_per_client = 2;
    })
    .await;
    // A client rotating a forged leftmost entry stays one client.
    assert_eq!(register_from(&app, "1.1.1.1, 203.0.113.9").await, 202);
    assert_eq!(register_from(&app, "2.2.2.2, 203.0.113.9").await, 202);
    assert_eq!(register_from(&app, "3.3.3.3, 203.0.113.9").await, 429);
    // Another client behind the same proxy has its own budget.
    assert_eq!(register_from(&app, "203.0.113.10").await, 202);
    // IPv6: one /64 is one client.
    assert_eq!(register_from(&app, "2001:db8:1:2::1").await, 202);
    assert_eq!(register_from(&app, "2001:db8:1:2:ffff::2").await, 202);
    assert_eq!(register_from(&app, "2001:db8:1:2::3").await, 429);
    assert_eq!(register_from(&app, "2001:db8:1:3::1").await, 202);

    // Without trusted proxies the header is not believed at all: every request is the
    // socket peer's.
    let app = crate::helpers::spawn_app_with(|s| s.accounts.requests_per_client = 2).await;
    assert_eq!(register_from(&app, "203.0.113.1").await, 202);
    assert_eq!(register_from(&app, "203.0.113.2").await, 202);
    assert_eq!(register_from(&app, "203.0.113.3").await, 429);
}

/// Five wrong passwords stop the guesser's network on that account, not the owner
/// elsewhere, and forging the header does not reset the count.
#[tokio::test]
async fn failed_logins_stop_the_guesser_not_the_owner() {
    let app =
        crate::helpers::spawn_app_with(|s| s.http.trusted_proxies = vec!["127.0.0.1".into()]).await;
    let ann = app.patient().await;
    let home = "198.51.100.20";
    assert_eq!(login_from(&app, home, &ann.email, &ann.password).await, 200);
    for i in 0..5 {
        let forged = format!("10.0.0.{i}, 203.0.113.66");
        assert_eq!(
            login_from(&app, &forged, &ann.email, "wrong-guess").await,
            401
        );
    }
    let forged = "10.9.9.9, 203.0.113.66";
    assert_eq!(
        login_from(&app, forged, &ann.email, &ann.password).await,
        429
    );
    // The owner, from home or a new network, is not locked out.
    assert_eq!(login_from(&app, home, &ann.email, &ann.password).await, 200);
    assert_eq!(
        login_from(&app, "192.0.2.44", &ann.email, &ann.password).await,
        200
    );
}
