//! What is audited: every mutating route and command leaves exactly one audit record,
//! written in the change's own transaction (the outbox's audit sink), with the actor,
//! the source and the request id, and without personal data or secrets.

use crate::helpers::{practice, spawn_app, TestApp, TestUser, JWT_SECRET};
use diesel::prelude::*;
use medbook_test_support::process::{service_command, ServiceProcess};
use reqwest::Method;
use serde_json::{json, Value};

#[derive(QueryableByName)]
struct Row {
    #[diesel(sql_type = diesel::sql_types::Text)]
    payload: String,
}

/// The audit records queued so far, oldest first.
pub(crate) fn records(app: &TestApp) -> Vec<Value> {
    diesel::sql_query("SELECT payload FROM outbox_events WHERE sink = 'audit' ORDER BY seq")
        .load::<Row>(&mut app.db.conn())
        .unwrap()
        .into_iter()
        .map(|r| serde_json::from_str(&r.payload).unwrap())
        .collect()
}

/// Runs `step` and returns the one record it left; fails unless it left exactly one,
/// of `action`.
async fn one_record<F: std::future::Future<Output = ()>>(
    app: &TestApp,
    action: &str,
    step: F,
) -> Value {
    let before = records(app).len();
    step.await;
    let after = records(app);
    let new: Vec<&Value> = after[before..].iter().collect();
    let actions: Vec<&str> = new.iter().map(|r| r["action"].as_str().unwrap()).collect();
    assert_eq!(actions, vec![action], "records of the step");
    new[0].clone()
}

async fn send(
    app: &TestApp,
    method: Method,
    path: &str,
    token: Option<&str>,
    body: Value,
) -> Value {
    let res = app.send_json(method, path, token, &body).await;
    let status = res.status();
    let text = res.text().await.unwrap();
    assert!(status.is_success(), "{path}: {status} {text}");
    serde_json::from_str(&text).unwrap_or(Value::Null)
}

fn token_of(link: &str) -> String {
    link.split("token=").nth(1).unwrap().to_owned()
}

fn assert_actor(record: &Value, user: &TestUser, role: &str) {
    assert_eq!(
        record["actor"]["user"]["id"],
        user.id.to_string(),
        "{record}"
    );
    assert_eq!(record["actor"]["user"]["role"], role, "{record}");
}

#[tokio::test]
async fn every_mutating_route_and_command_leaves_exactly_one_record() {
    let app = spawn_app().await;
    let p = practice(&app).await;
    let admin = &p.admin;
    let a = Some(admin.access.as_str());
    let d = p.doctor_id();

    // Accounts.
    let email = format!("walk-{}@example.com", uuid::Uuid::new_v4().simple());
    let password = "harbor-lantern-81";
    let r = one_record(&app, "patient.registered", async {
        let res = app.register(&email, password).await;
        assert_eq!(res.status(), 202);
    })
    .await;
    assert_eq!(r["source"], "http");
    assert!(r["request_id"].is_string());
    let link = app.outbox_link("account.verify_email", &email).unwrap();
    one_record(&app, "email.verified", async {
        send(
            &app,
            Method::POST,
            "/api/v1/auth/verify-email",
            None,
            json!({"token": token_of(&link)}),
        )
        .await;
    })
    .await;
    one_record(&app, "login.failed", async {
        assert_eq!(app.login(&email, "wrong-password-1").await.status(), 401);
    })
    .await;
    let mut tokens = Value::Null;
    let r = one_record(&app, "login.succeeded", async {
        let res = app.login(&email, password).await;
        assert_eq!(res.status(), 200);
        tokens = res.json().await.unwrap();
    })
    .await;
    let user_id = app.user_id(&email);
    assert_eq!(r["actor"]["user"]["id"], user_id.to_string());
    let patient = TestUser {
        id: user_id,
        email: email.clone(),
        password: password.into(),
        access: tokens["access_token"].as_str().unwrap().into(),
        refresh: tokens["refresh_token"].as_str().unwrap().into(),
    };
    let me = Some(patient.access.as_str());
    let first_refresh = patient.refresh.clone();
    let mut second = Value::Null;
    one_record(&app, "session.refreshed", async {
        second = send(
            &app,
            Method::POST,
            "/api/v1/auth/refresh",
            None,
            json!({"refresh_token": first_refresh}),
        )
        .await;
    })
    .await;
    one_record(&app, "refresh_token.reuse_detected", async {
        let res = app
            .send_json(
                Method::POST,
                "/api/v1/auth/refresh",
                None,
                &json!({"refresh_token": first_refresh}),
            )
            .await;
        assert_eq!(res.status(), 401);
    })
    .await;
    let r = one_record(&app, "user.updated", async {
        send(
            &app,
            Method::PATCH,
            "/api/v1/me",
            me,
            json!({"phone": "+49 30 1234567"}),
        )
        .await;
    })
    .await;
    assert_actor(&r, &patient, "patient");
    assert_eq!(r["changes"][0]["field"], "phone");
    assert_eq!(r["changes"][0]["after"], "\"[redacted]\"");
    let r = one_record(&app, "email_change.requested", async {
        let new = format!("walk-new-{}@example.com", uuid::Uuid::new_v4().simple());
        send(
            &app,
            Method::PATCH,
            "/api/v1/me",
            me,
            json!({"email": new, "current_password": password}),
        )
        .await;
    })
    .await;
    assert_actor(&r, &patient, "patient");
    one_record(&app, "email_verification.requested", async {
        let res = app
            .send_json(
                Method::POST,
                "/api/v1/me/email-verification",
                me,
                &json!({}),
            )
            .await;
        assert!(res.status().is_success(), "{}", res.status());
    })
    .await;
    one_record(&app, "password_reset.requested", async {
        let res = app
            .post("/api/v1/auth/password-reset", &json!({"email": email}))
            .await;
        assert_eq!(res.status(), 202);
    })
    .await;
    let reset = app.outbox_link("account.password_reset", &email).unwrap();
    one_record(&app, "password.reset", async {
        send(
            &app,
            Method::POST,
            "/api/v1/auth/password-reset/confirm",
            None,
            json!({"token": token_of(&reset), "new_password": "meadow-compass-42"}),
        )
        .await;
    })
    .await;
    let res = app.login(&email, "meadow-compass-42").await;
    let fresh: Value = res.json().await.unwrap();
    let access = fresh["access_token"].as_str().unwrap().to_owned();
    let refresh = fresh["refresh_token"].as_str().unwrap().to_owned();
    one_record(&app, "password.changed", async {
        send(
            &app,
            Method::PATCH,
            "/api/v1/me",
            Some(&access),
            json!({"current_password": "meadow-compass-42", "new_password": "violet-harbor-93"}),
        )
        .await;
    })
    .await;
    one_record(&app, "logout", async {
        let res = app
            .send_json(
                Method::POST,
                "/api/v1/auth/logout",
                None,
                &json!({"refresh_token": refresh}),
            )
            .await;
        assert!(res.status().is_success());
    })
    .await;

    // Admins: patients, clinics, doctors, slots.
    let mut created = Value::Null;
    let r = one_record(&app, "patient.created", async {
        created = send(
            &app,
            Method::POST,
            "/api/v1/patients",
            a,
            json!({
            "email": format!("made-{}@example.com", uuid::Uuid::new_v4().simple()),
            "full_name": "Made By Admin", "password": "quiet-orchard-55"}),
        )
        .await;
    })
    .await;
    assert_actor(&r, admin, "admin");
    let pid = created["id"].as_str().unwrap().to_owned();
    one_record(&app, "user.updated", async {
        send(
            &app,
            Method::PUT,
            &format!("/api/v1/patients/{pid}"),
            a,
            json!({
            "email": created["email"], "full_name": "Renamed By Admin"}),
        )
        .await;
    })
    .await;
    one_record(&app, "user.deleted", async {
        let res = app
            .send_json(
                Method::DELETE,
                &format!("/api/v1/patients/{pid}"),
                a,
                &json!({}),
            )
            .await;
        assert_eq!(res.status(), 204);
    })
    .await;
    let mut clinic = Value::Null;
    one_record(&app, "clinic.created", async {
        clinic = send(&app, Method::POST, "/api/v1/clinics", a,
                      json!({"name": "Walk Clinic", "city": "Porto", "address": "1 Rua", "time_zone": "Europe/Lisbon"})).await;
    })
    .await;
    let cid = clinic["id"].as_str().unwrap().to_owned();
    let r = one_record(&app, "clinic.updated", async {
        send(&app, Method::PUT, &format!("/api/v1/clinics/{cid}"), a,
             json!({"name": "Walk Clinic II", "city": "Porto", "address": "1 Rua", "time_zone": "Europe/Lisbon"})).await;
    })
    .await;
    assert_eq!(
        r["changes"],
        json!([{"field": "name", "before": "\"Walk Clinic\"", "after": "\"Walk Clinic II\""}])
    );
    let mut doctor = Value::Null;
    one_record(&app, "doctor.created", async {
        doctor = send(
            &app,
            Method::POST,
            "/api/v1/doctors",
            a,
            json!({"full_name": "Dr. Walk", "specialty": "ENT", "clinic_id": cid}),
        )
        .await;
    })
    .await;
    let did = doctor["id"].as_str().unwrap().to_owned();
    one_record(&app, "doctor.updated", async {
        send(
            &app,
            Method::PUT,
            &format!("/api/v1/doctors/{did}"),
            a,
            json!({"full_name": "Dr. Walk", "specialty": "Otology", "clinic_id": cid}),
        )
        .await;
    })
    .await;
    one_record(&app, "doctor.deleted", async {
        let res = app
            .send_json(
                Method::DELETE,
                &format!("/api/v1/doctors/{did}"),
                a,
                &json!({}),
            )
            .await;
        assert!(res.status().is_success());
    })
    .await;
    one_record(&app, "clinic.deleted", async {
        let res = app
            .send_json(
                Method::DELETE,
                &format!("/api/v1/clinics/{cid}"),
                a,
                &json!({}),
            )
            .await;
        assert!(res.status().is_success());
    })
    .await;
    let mut slot = Value::Null;
    one_record(&app, "slot.created", async {
        slot = app.create_slot(admin, &d, 60, 30).await;
    })
    .await;
    let sid = slot["id"].as_str().unwrap().to_owned();
    one_record(&app, "slot.blocked", async {
        send(
            &app,
            Method::POST,
            &format!("/api/v1/slots/{sid}/block"),
            a,
            json!({}),
        )
        .await;
    })
    .await;
    one_record(&app, "slot.unblocked", async {
        send(
            &app,
            Method::POST,
            &format!("/api/v1/slots/{sid}/unblock"),
            a,
            json!({}),
        )
        .await;
    })
    .await;
    one_record(&app, "slot.deleted", async {
        let res = app
            .send_json(
                Method::DELETE,
                &format!("/api/v1/slots/{sid}"),
                a,
                &json!({}),
            )
            .await;
        assert_eq!(res.status(), 204);
    })
    .await;
    let from = (chrono::Utc::now() + chrono::Duration::days(2)).date_naive();
    let r = one_record(&app, "slots.generated", async {
        send(
            &app,
            Method::POST,
            &format!("/api/v1/doctors/{d}/slots/generate"),
            a,
            json!({
            "weekdays": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"],
            "start_time": "09:00", "end_time": "10:00", "slot_minutes": 30,
            "from": from, "to": from}),
        )
        .await;
    })
    .await;
    assert_eq!(
        r["changes"][0],
        json!({"field": "slots_created", "before": null, "after": "2"})
    );

    // Appointments and reviews, by a patient and by an admin.
    let booker = app.patient().await;
    let b = Some(booker.access.as_str());
    let s1 = app.create_slot(admin, &d, 120, 30).await;
    let s2 = app.create_slot(admin, &d, 180, 30).await;
    let mut appt = Value::Null;
    let r = one_record(&app, "appointment.booked", async {
        let res = app.book(&booker, s1["id"].as_str().unwrap()).await;
        assert_eq!(res.status(), 201);
        appt = res.json().await.unwrap();
    })
    .await;
    assert_actor(&r, &booker, "patient");
    let aid = appt["id"].as_str().unwrap().to_owned();
    assert_eq!(r["entity_id"], aid.as_str());
    one_record(&app, "appointment.rescheduled", async {
        send(
            &app,
            Method::POST,
            &format!("/api/v1/appointments/{aid}/reschedule"),
            b,
            json!({"slot_id": s2["id"]}),
        )
        .await;
    })
    .await;
    let r = one_record(&app, "appointment.cancelled", async {
        send(
            &app,
            Method::POST,
            &format!("/api/v1/appointments/{aid}/cancel"),
            a,
            json!({"reason": "doctor ill"}),
        )
        .await;
    })
    .await;
    assert_actor(&r, admin, "admin");
    let fields: Vec<&str> = r["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["field"].as_str().unwrap())
        .collect();
    assert!(
        fields.contains(&"cancel_reason") && fields.contains(&"cancelled_by"),
        "{r}"
    );
    let s3 = app.create_slot(admin, &d, 240, 30).await;
    let visit: Value = app
        .book(&booker, s3["id"].as_str().unwrap())
        .await
        .json()
        .await
        .unwrap();
    let s3id = s3["id"].as_str().unwrap();
    app.db.execute(&format!(
        "UPDATE slots SET starts_at = now() - interval '90 minutes', ends_at = now() - interval '60 minutes' WHERE id = '{s3id}'"
    ));
    one_record(&app, "review.created", async {
        send(
            &app,
            Method::POST,
            &format!("/api/v1/doctors/{d}/reviews"),
            b,
            json!({"appointment_id": visit["id"], "rating": 4, "text": "Fine."}),
        )
        .await;
    })
    .await;

    // Over gRPC: the same use case, audited as the calling patient, source `grpc`.
    let s4 = app.create_slot(admin, &d, 300, 30).await;
    let r = one_record(&app, "appointment.booked", async {
        use medbook_proto::schedule::v1 as pb;
        let mut c =
            pb::schedule_service_client::ScheduleServiceClient::connect(app.grpc_address.clone())
                .await
                .unwrap();
        let mut req = tonic::Request::new(pb::BookSlotRequest {
            slot_id: s4["id"].as_str().unwrap().to_owned(),
            reason: "grpc".into(),
            idempotency_key: String::new(),
        });
        req.metadata_mut().insert(
            "authorization",
            format!("Bearer {}", booker.access).parse().unwrap(),
        );
        c.book_slot(req).await.unwrap();
    })
    .await;
    assert_eq!(r["source"], "grpc");
    assert_actor(&r, &booker, "patient");

    // Commands: the record names the command as the actor.
    let cli = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_booking-service"))
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .current_dir(std::env::temp_dir())
            .env("MEDBOOK_AUTH__JWT_SECRET", JWT_SECRET)
            .env("MEDBOOK_PROFILE", "dev")
            .env("MEDBOOK_AUTH__BCRYPT_COST", "4")
            .env("MEDBOOK_LOG__LEVEL", "warn")
            .env("MEDBOOK_ADMIN_PASSWORD", "granite-window-47")
            .env("MEDBOOK_DATABASE__URL", app.db.url())
            .args(args)
            .output()
            .unwrap()
    };
    let r = one_record(&app, "admin.created", async {
        let out = cli(&["create-admin", "--email", "second-admin@example.com"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    })
    .await;
    assert_eq!(r["source"], "cli");
    assert_eq!(r["actor"]["system"], "cli create-admin");
    let file = std::env::temp_dir().join(format!("walk-import-{}.json", uuid::Uuid::new_v4()));
    std::fs::write(&file, json!([
        {"email": format!("imp1-{}@example.com", uuid::Uuid::new_v4().simple()), "full_name": "Imported One"},
        {"email": format!("imp2-{}@example.com", uuid::Uuid::new_v4().simple()), "full_name": "Imported Two"}
    ]).to_string()).unwrap();
    let r = one_record(&app, "patients.imported", async {
        let out = cli(&["patients", "import", file.to_str().unwrap()]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    })
    .await;
    assert_eq!(r["changes"][0]["after"], "2");
    let _ = std::fs::remove_file(&file);

    // Nothing in the log identifies a patient or holds a secret.
    for r in records(&app) {
        let text = r.to_string();
        assert!(!text.contains("@example.com"), "an address in {text}");
        assert!(!text.contains(&patient.password), "a password in {text}");
        assert!(
            !text.contains("meadow-compass-42") && !text.contains("$2"),
            "a secret in {text}"
        );
        assert!(
            !text.contains("Made By Admin") && !text.contains("Imported One"),
            "a name in {text}"
        );
    }
}

/// The audit-service's two credentials in these tests: the writer's (Append) and the
/// readers' (Query).
const AUDIT_APPEND_TOKEN: &str = "test-audit-append-token-5d1e";
const AUDIT_READ_TOKEN: &str = "test-audit-read-token-0a7c";

/// A real audit-service process (the workspace's binary) on `port`, with its own
/// database, a dev signing key and both tokens required; killed when dropped.
struct AuditProcess {
    _process: ServiceProcess,
}

impl AuditProcess {
    fn binary() -> std::path::PathBuf {
        let bin = std::path::Path::new(env!("CARGO_BIN_EXE_booking-service"))
            .with_file_name(format!("audit-service{}", std::env::consts::EXE_SUFFIX));
        assert!(
            bin.exists(),
            "{} is missing: build it with `cargo build -p audit-service` (scripts/test.sh does)",
            bin.display()
        );
        bin
    }

    /// Starts it and waits until it listens.
    fn start(db: &medbook_test_support::pg::TestDb, port: u16, key: &std::path::Path) -> Self {
        let process = ServiceProcess::spawn(
            service_command(Self::binary())
                .env("MEDBOOK_PROFILE", "dev")
                .env("MEDBOOK_DATABASE__URL", db.url())
                .env("MEDBOOK_GRPC__ADDR", format!("127.0.0.1:{port}"))
                .env("MEDBOOK_HTTP__OPS_ADDR", "127.0.0.1:0")
                .env("MEDBOOK_AUDIT__SIGNING_KEY_FILE", key)
                .env("MEDBOOK_AUDIT__APPEND_TOKEN", AUDIT_APPEND_TOKEN)
                .env("MEDBOOK_AUDIT__READ_TOKEN", AUDIT_READ_TOKEN)
                .arg("serve")
                .stderr(std::process::Stdio::null()),
        );
        process.wait_for("grpc listening", std::time::Duration::from_secs(60));
        Self { _process: process }
    }

    fn kill(self) {
        drop(self);
    }
}

/// Every page of `GET /api/v1/audit?{query}`.
async fn audit_pages(app: &TestApp, admin: &TestUser, query: &str) -> Vec<Value> {
    let mut items = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let mut path = format!("/api/v1/audit?per_page=100&{query}");
        if let Some(t) = &token {
            path.push_str(&format!("&page_token={t}"));
        }
        let res = app.get(&path, Some(&admin.access)).await;
        assert_eq!(res.status(), 200, "{}", res.text().await.unwrap());
        let page: Value = res.json().await.unwrap();
        items.extend(page["items"].as_array().unwrap().iter().cloned());
        match page["next_page_token"].as_str() {
            Some(t) => token = Some(t.to_owned()),
            None => return items,
        }
    }
}

/// The audit-service away while 200 bookings are made: they all succeed, and every
/// record arrives once it is back, none twice. Then an admin reads who cancelled.
#[tokio::test]
async fn records_wait_out_an_audit_service_outage_and_admins_read_them() {
    let audit_db = medbook_test_support::pg::TestDb::empty("medbook_audit");
    let key = std::env::temp_dir().join(format!("audit-test-{}.key", uuid::Uuid::new_v4()));
    let port = medbook_test_support::free_port();
    let app = crate::helpers::spawn_app_with(|s| {
        s.audit.relay_enabled = true;
        s.audit.addr = format!("http://127.0.0.1:{port}");
        s.audit.append_token = Some(AUDIT_APPEND_TOKEN.into());
        s.audit.read_token = Some(AUDIT_READ_TOKEN.into());
        s.audit.timeout_ms = 1000;
        s.outbox.poll_interval_ms = 100;
        s.outbox.backoff_initial_ms = 50;
        s.outbox.backoff_max_ms = 500;
        s.booking.max_active_per_patient = 1000;
    })
    .await;
    let p = practice(&app).await;
    let d = p.doctor_id();
    app.db.execute(&format!(
        "INSERT INTO slots (id, doctor_id, starts_at, ends_at, status)
         SELECT gen_random_uuid(), '{d}', date_trunc('minute', now()) + (i * interval '30 minutes') + interval '1 hour',
                date_trunc('minute', now()) + (i * interval '30 minutes') + interval '90 minutes', 'available'
         FROM generate_series(0, 199) AS i"
    ));
    #[derive(QueryableByName)]
    struct Id {
        #[diesel(sql_type = diesel::sql_types::Uuid)]
        id: uuid::Uuid,
    }
    let slots: Vec<Id> = diesel::sql_query("SELECT id FROM slots ORDER BY starts_at")
        .load(&mut app.db.conn())
        .unwrap();
    let patient = app.patient().await;
    let pending = |app: &TestApp| {
        crate::helpers::count(
            app,
            "SELECT count(*) AS n FROM outbox_events WHERE sink = 'audit' AND published_at IS NULL",
        )
    };

    // Down during the bookings: every one succeeds.
    for s in &slots {
        let res = app.book(&patient, &s.id.to_string()).await;
        assert_eq!(res.status(), 201);
    }
    assert!(pending(&app) >= 200, "the records wait in the outbox");

    // Back: everything arrives.
    let audit = AuditProcess::start(&audit_db, port, &key);
    medbook_test_support::eventually(
        "every audit record shipped",
        std::time::Duration::from_secs(60),
        || async { (pending(&app) == 0).then_some(()) },
    )
    .await;
    let booked = audit_pages(&app, &p.admin, "action=appointment.booked").await;
    let ids: std::collections::HashSet<&str> = booked
        .iter()
        .map(|r| r["entity_id"].as_str().unwrap())
        .collect();
    assert_eq!(booked.len(), 200, "none twice");
    assert_eq!(ids.len(), 200, "none lost");

    // A second outage: an admin cancels while the audit-service is down.
    let first = booked[0]["entity_id"].as_str().unwrap().to_owned();
    audit.kill();
    let res = app
        .send_json(
            Method::POST,
            &format!("/api/v1/appointments/{first}/cancel"),
            Some(&p.admin.access),
            &json!({"reason": "clinic closed"}),
        )
        .await;
    assert_eq!(res.status(), 200);
    let res = app
        .get(
            "/api/v1/audit?action=appointment.cancelled",
            Some(&p.admin.access),
        )
        .await;
    crate::helpers::assert_error(res, 503, "audit_unavailable").await;
    let _audit = AuditProcess::start(&audit_db, port, &key);
    medbook_test_support::eventually(
        "the cancellation shipped",
        std::time::Duration::from_secs(60),
        || async { (pending(&app) == 0).then_some(()) },
    )
    .await;
    let trail = audit_pages(
        &app,
        &p.admin,
        &format!("entity_type=appointment&entity_id={first}"),
    )
    .await;
    let actions: Vec<&str> = trail
        .iter()
        .map(|r| r["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        ["appointment.cancelled", "appointment.booked"],
        "newest first"
    );
    assert_eq!(trail[0]["actor"]["user_id"], p.admin.id.to_string());
    assert_eq!(trail[0]["actor"]["role"], "admin");
    let reason = trail[0]["changes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["field"] == "cancel_reason")
        .unwrap();
    assert_eq!(reason["after"], "\"clinic closed\"");
    assert!(trail[0]["index"].as_u64().unwrap() > trail[1]["index"].as_u64().unwrap());
    // The audit-service's own receive time, beside the change's: the cancellation
    // waited out the outage, so it was received after it happened.
    let at = |r: &Value, k: &str| {
        chrono::DateTime::parse_from_rfc3339(r[k].as_str().unwrap_or_else(|| panic!("{k}: {r}")))
            .unwrap()
    };
    assert!(
        at(&trail[0], "received_at") > at(&trail[0], "occurred_at"),
        "{}",
        trail[0]
    );

    // Only admins read the log; bad filters are 400s.
    let res = app.get("/api/v1/audit", Some(&patient.access)).await;
    assert_eq!(res.status(), 403);
    let res = app
        .get(
            "/api/v1/audit?entity_id=x&per_page=0",
            Some(&p.admin.access),
        )
        .await;
    let body = crate::helpers::assert_error(res, 400, "validation_failed").await;
    assert_eq!(body["error"]["details"].as_array().unwrap().len(), 2);
    let _ = std::fs::remove_file(&key);
}

/// booking-service holding its two audit credentials the wrong way round: the relay's
/// Append and the admin's read are both refused by the audit-service, so nothing is
/// appended (the records wait in the outbox) and `GET /api/v1/audit` answers 503.
#[tokio::test]
async fn swapped_audit_credentials_neither_append_nor_read() {
    let audit_db = medbook_test_support::pg::TestDb::empty("medbook_audit");
    let key = std::env::temp_dir().join(format!("audit-test-{}.key", uuid::Uuid::new_v4()));
    let port = medbook_test_support::free_port();
    let _audit = AuditProcess::start(&audit_db, port, &key);
    let app = crate::helpers::spawn_app_with(|s| {
        s.audit.relay_enabled = true;
        s.audit.addr = format!("http://127.0.0.1:{port}");
        s.audit.append_token = Some(AUDIT_READ_TOKEN.into());
        s.audit.read_token = Some(AUDIT_APPEND_TOKEN.into());
        s.audit.timeout_ms = 1000;
        s.outbox.poll_interval_ms = 100;
        s.outbox.backoff_initial_ms = 50;
        s.outbox.backoff_max_ms = 200;
    })
    .await;
    let p = practice(&app).await;
    let shipped = || {
        crate::helpers::count(
            &app,
            "SELECT count(*) AS n FROM outbox_events WHERE sink = 'audit' AND published_at IS NOT NULL",
        )
    };
    let pending = || {
        crate::helpers::count(
            &app,
            "SELECT count(*) AS n FROM outbox_events WHERE sink = 'audit' AND published_at IS NULL",
        )
    };
    assert!(pending() > 0, "practice() leaves audit records");
    // Several rounds of the relay, each refused (its failure counter says so).
    let failures = || async {
        let text = app.ops_get("/metrics").await.text().await.unwrap();
        text.lines()
            .find_map(|l| l.strip_prefix("audit_outbox_publish_failures_total "))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    medbook_test_support::eventually(
        "three refused rounds of the audit relay",
        std::time::Duration::from_secs(30),
        || async { (failures().await >= 3.0).then_some(()) },
    )
    .await;
    assert_eq!(shipped(), 0);
    assert!(pending() > 0);
    let res = app.get("/api/v1/audit", Some(&p.admin.access)).await;
    crate::helpers::assert_error(res, 503, "audit_unavailable").await;
    let _ = std::fs::remove_file(&key);
}
