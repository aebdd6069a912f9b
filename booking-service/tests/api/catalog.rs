//! Clinics, doctors, search, slots, reviews, caches and logged-out tokens.

use crate::helpers::{assert_error, practice, redis_url, spawn_app, spawn_app_with};
use booking_service::settings::{CacheBackend, RevocationFailure};
use reqwest::Method;
use serde_json::{json, Value};

#[tokio::test]
async fn clinics_are_managed_by_admins_and_read_by_anyone() {
    let app = spawn_app().await;
    let admin = app.admin().await;
    let patient = app.patient().await;
    let body = json!({"name": "Mitte", "city": "Berlin", "address": "Unter den Linden 1", "time_zone": "Europe/Berlin"});
    let res = app
        .send_json(
            Method::POST,
            "/api/v1/clinics",
            Some(&patient.access),
            &body,
        )
        .await;
    assert_error(res, 403, "forbidden").await;
    let bad = json!({"name": "", "city": "Berlin", "address": "x", "time_zone": "Mars/Olympus"});
    let res = app
        .send_json(Method::POST, "/api/v1/clinics", Some(&admin.access), &bad)
        .await;
    let err = assert_error(res, 400, "validation_failed").await;
    let fields: Vec<&str> = err["error"]["details"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["name", "time_zone"]);

    let clinic = app.create_clinic(&admin, "Berlin", "Europe/Berlin").await;
    let id = clinic["id"].as_str().unwrap();
    let mut changed = body.clone();
    changed["city"] = json!("Potsdam");
    let res = app
        .send_json(
            Method::PUT,
            &format!("/api/v1/clinics/{id}"),
            Some(&admin.access),
            &changed,
        )
        .await;
    assert_eq!(res.status(), 200);
    let list: Value = app
        .get("/api/v1/clinics?city=pots", None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(list["total"], 1);
    assert_eq!(
        app.get(&format!("/api/v1/clinics/{id}"), None)
            .await
            .status(),
        200
    );

    app.create_doctor(&admin, id, "Dr. A", "Dermatology").await;
    let res = app
        .request(Method::DELETE, &format!("/api/v1/clinics/{id}"))
        .bearer_auth(&admin.access)
        .send()
        .await
        .unwrap();
    assert_error(res, 409, "clinic_in_use").await;
    let empty = app.create_clinic(&admin, "Hamburg", "Europe/Berlin").await;
    let res = app
        .request(
            Method::DELETE,
            &format!("/api/v1/clinics/{}", empty["id"].as_str().unwrap()),
        )
        .bearer_auth(&admin.access)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 204);
}

#[tokio::test]
async fn doctors_crud_and_removal_keeps_history() {
    let app = spawn_app().await;
    let p = practice(&app).await;
    let id = p.doctor_id();
    let clinic_id = p.clinic["id"].as_str().unwrap();
    let detail: Value = app
        .get(&format!("/api/v1/doctors/{id}"), None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(detail["clinic"]["time_zone"], "Europe/Berlin");
    assert_eq!(detail["rating"]["count"], 0);
    assert!(detail["rating"]["average"].is_null());

    let res = app
        .send_json(
            Method::PUT,
            &format!("/api/v1/doctors/{id}"),
            Some(&p.admin.access),
            &json!({"full_name": "Dr. Erika M.", "specialty": "Cardiology", "clinic_id": clinic_id, "status": "on_leave"}),
        )
        .await;
    assert_eq!(res.status(), 200);
    let detail: Value = app
        .get(&format!("/api/v1/doctors/{id}"), None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        detail["status"], "on_leave",
        "the cached entry was invalidated"
    );
    assert_eq!(detail["full_name"], "Dr. Erika M.");

    let res = app
        .send_json(
            Method::POST,
            "/api/v1/doctors",
            Some(&p.admin.access),
            &json!({"full_name": "Dr. X", "specialty": "Cardiology", "clinic_id": uuid::Uuid::new_v4(), "status": "retired", "years_of_experience": 99}),
        )
        .await;
    let err = assert_error(res, 400, "validation_failed").await;
    assert_eq!(err["error"]["details"].as_array().unwrap().len(), 2);
    let res = app
        .send_json(
            Method::POST,
            "/api/v1/doctors",
            Some(&p.admin.access),
            &json!({"full_name": "Dr. X", "specialty": "Cardiology", "clinic_id": uuid::Uuid::new_v4()}),
        )
        .await;
    let err = assert_error(res, 400, "validation_failed").await;
    assert_eq!(err["error"]["details"][0]["field"], "clinic_id");

    // Without appointments: deleted. With: kept as inactive.
    let spare = app
        .create_doctor(&p.admin, clinic_id, "Dr. Spare", "ENT")
        .await;
    let spare_id = spare["id"].as_str().unwrap();
    let res = app
        .request(Method::DELETE, &format!("/api/v1/doctors/{spare_id}"))
        .bearer_auth(&p.admin.access)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 204);
    assert_error(
        app.get(&format!("/api/v1/doctors/{spare_id}"), None).await,
        404,
        "not_found",
    )
    .await;

    let busy = app
        .create_doctor(&p.admin, clinic_id, "Dr. Busy", "ENT")
        .await;
    let busy_id = busy["id"].as_str().unwrap();
    let slot = app.create_slot(&p.admin, busy_id, 120, 30).await;
    let patient = app.patient().await;
    assert_eq!(
        app.book(&patient, slot["id"].as_str().unwrap())
            .await
            .status(),
        201
    );
    let res = app
        .request(Method::DELETE, &format!("/api/v1/doctors/{busy_id}"))
        .bearer_auth(&p.admin.access)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["status"], "inactive");
}

#[tokio::test]
async fn search_filters_pages_and_sorts() {
    let app = spawn_app().await;
    let admin = app.admin().await;
    let berlin = app.create_clinic(&admin, "Berlin", "Europe/Berlin").await;
    let auckland = app
        .create_clinic(&admin, "Auckland", "Pacific/Auckland")
        .await;
    let b = berlin["id"].as_str().unwrap();
    let a = auckland["id"].as_str().unwrap();
    app.create_doctor(&admin, b, "Anna Schmidt", "Cardiology")
        .await;
    app.create_doctor(&admin, b, "Bernd Schmitt", "Dermatology")
        .await;
    let kiwi = app
        .create_doctor(&admin, a, "Kiri Schmidt-Walker", "cardiology")
        .await;
    let kiwi_id = kiwi["id"].as_str().unwrap();

    let by_name: Value = app
        .get("/api/v1/doctors?name=SCHMID", None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(by_name["total"], 2);
    let by_spec: Value = app
        .get("/api/v1/doctors?specialty=Cardiology", None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(by_spec["total"], 2, "specialty is case-insensitive");
    let by_city: Value = app
        .get("/api/v1/doctors?city=auckland", None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(by_city["total"], 1);
    let by_clinic: Value = app
        .get(
            &format!("/api/v1/doctors?clinic_id={b}&per_page=1&page=2"),
            None,
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(by_clinic["total"], 2);
    assert_eq!(by_clinic["items"].as_array().unwrap().len(), 1);
    assert_eq!(
        by_clinic["items"][0]["full_name"], "Bernd Schmitt",
        "sorted by name"
    );
    let by_status: Value = app
        .get("/api/v1/doctors?status=on_leave", None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(by_status["total"], 0);

    // A slot at 20:00 UTC three days ahead is the next morning in Auckland.
    let day = (chrono::Utc::now() + chrono::Duration::days(3)).date_naive();
    let start = day.and_hms_opt(20, 0, 0).unwrap().and_utc();
    let res = app
        .send_json(
            Method::POST,
            &format!("/api/v1/doctors/{kiwi_id}/slots"),
            Some(&admin.access),
            &json!({"starts_at": start.to_rfc3339(), "ends_at": (start + chrono::Duration::minutes(30)).to_rfc3339()}),
        )
        .await;
    assert_eq!(res.status(), 201);
    let local_day = day.succ_opt().unwrap();
    let on_local: Value = app
        .get(&format!("/api/v1/doctors?available_on={local_day}"), None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(on_local["total"], 1);
    assert_eq!(on_local["items"][0]["id"], kiwi_id);
    let on_utc: Value = app
        .get(&format!("/api/v1/doctors?available_on={day}"), None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(on_utc["total"], 0, "the UTC date is not the clinic's date");

    for bad in [
        "status=retired",
        "sort=age",
        "per_page=0",
        "available_on=tomorrow",
        "nope=1",
    ] {
        let res = app.get(&format!("/api/v1/doctors?{bad}"), None).await;
        assert_eq!(res.status(), 400, "{bad}");
    }
}

#[tokio::test]
async fn slots_never_overlap_and_templates_are_idempotent() {
    let app = spawn_app().await;
    let p = practice(&app).await;
    let d = p.doctor_id();
    let tok = Some(p.admin.access.as_str());
    let first = app.create_slot(&p.admin, &d, 24 * 60, 30).await;
    // Back to back is fine; a one-minute overlap is not.
    app.create_slot(&p.admin, &d, 24 * 60 + 30, 30).await;
    let start = chrono::DateTime::parse_from_rfc3339(first["starts_at"].as_str().unwrap()).unwrap();
    let overlap = json!({
        "starts_at": (start + chrono::Duration::minutes(59)).to_rfc3339(),
        "ends_at": (start + chrono::Duration::minutes(89)).to_rfc3339()
    });
    let res = app
        .send_json(
            Method::POST,
            &format!("/api/v1/doctors/{d}/slots"),
            tok,
            &overlap,
        )
        .await;
    assert_error(res, 409, "slot_overlap").await;
    let backwards = json!({"starts_at": start.to_rfc3339(), "ends_at": start.to_rfc3339()});
    let res = app
        .send_json(
            Method::POST,
            &format!("/api/v1/doctors/{d}/slots"),
            tok,
            &backwards,
        )
        .await;
    assert_error(res, 400, "validation_failed").await;

    let from = (chrono::Utc::now() + chrono::Duration::days(10)).date_naive();
    let to = from + chrono::Duration::days(6);
    let template = json!({
        "weekdays": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"],
        "start_time": "09:00", "end_time": "12:00", "slot_minutes": 25, "buffer_minutes": 5,
        "from": from, "to": to
    });
    let res = app
        .send_json(
            Method::POST,
            &format!("/api/v1/doctors/{d}/slots/generate"),
            tok,
            &template,
        )
        .await;
    assert_eq!(res.status(), 200);
    let report: Value = res.json().await.unwrap();
    assert_eq!(report["created"], 42, "6 slots a day for 7 days");
    let again: Value = app
        .send_json(
            Method::POST,
            &format!("/api/v1/doctors/{d}/slots/generate"),
            tok,
            &template,
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(again, json!({"created": 0, "skipped": 42}));
    // Local 09:00 in Berlin.
    let list: Value = app
        .get(
            &format!(
                "/api/v1/doctors/{d}/slots?from={}T00:00:00Z&to={}T00:00:00Z",
                from,
                to + chrono::Duration::days(1)
            ),
            None,
        )
        .await
        .json()
        .await
        .unwrap();
    let items = list["items"].as_array().unwrap();
    assert_eq!(items.len(), 42);
    let first_local = chrono::DateTime::parse_from_rfc3339(items[0]["starts_at"].as_str().unwrap())
        .unwrap()
        .with_timezone(&chrono_tz::Europe::Berlin);
    assert_eq!(first_local.format("%H:%M").to_string(), "09:00");

    let bad = json!({"weekdays": ["funday"], "start_time": "12:00", "end_time": "09:00", "slot_minutes": 2, "from": to, "to": from});
    let res = app
        .send_json(
            Method::POST,
            &format!("/api/v1/doctors/{d}/slots/generate"),
            tok,
            &bad,
        )
        .await;
    let err = assert_error(res, 400, "validation_failed").await;
    assert!(err["error"]["details"].as_array().unwrap().len() >= 3);

    // Block, unblock, delete; a booked slot can be neither blocked nor deleted.
    let sid = items[0]["id"].as_str().unwrap();
    let blocked: Value = app
        .send_json(
            Method::POST,
            &format!("/api/v1/slots/{sid}/block"),
            tok,
            &json!({}),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(blocked["status"], "blocked");
    let only_blocked: Value = app
        .get(
            &format!(
                "/api/v1/doctors/{d}/slots?from={}T00:00:00Z&to={}T00:00:00Z&status=blocked",
                from, to
            ),
            None,
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(only_blocked["items"].as_array().unwrap().len(), 1);
    let unblocked: Value = app
        .send_json(
            Method::POST,
            &format!("/api/v1/slots/{sid}/unblock"),
            tok,
            &json!({}),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(unblocked["status"], "available");
    let res = app
        .request(Method::DELETE, &format!("/api/v1/slots/{sid}"))
        .bearer_auth(&p.admin.access)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 204);
    let booked_id = items[1]["id"].as_str().unwrap();
    let patient = app.patient().await;
    assert_eq!(app.book(&patient, booked_id).await.status(), 201);
    let res = app
        .send_json(
            Method::POST,
            &format!("/api/v1/slots/{booked_id}/block"),
            tok,
            &json!({}),
        )
        .await;
    assert_error(res, 409, "slot_booked").await;
    let res = app
        .request(Method::DELETE, &format!("/api/v1/slots/{booked_id}"))
        .bearer_auth(&p.admin.access)
        .send()
        .await
        .unwrap();
    assert_error(res, 409, "slot_booked").await;
    let res = app
        .get(
            &format!("/api/v1/doctors/{d}/slots?from=2030-01-01T00:00:00Z&to=2029-01-01T00:00:00Z"),
            None,
        )
        .await;
    assert_error(res, 400, "validation_failed").await;
}

#[tokio::test]
async fn reviews_only_after_a_real_visit_and_once() {
    let app = spawn_app().await;
    let p = practice(&app).await;
    let d = p.doctor_id();
    let patient = app.patient().await;
    let other = app.patient().await;
    let slot = app.create_slot(&p.admin, &d, 60, 30).await;
    let sid = slot["id"].as_str().unwrap();
    let appt: Value = app.book(&patient, sid).await.json().await.unwrap();
    let aid = appt["id"].as_str().unwrap();
    let review = json!({"appointment_id": aid, "rating": 5, "text": "Kind and thorough."});
    let url = format!("/api/v1/doctors/{d}/reviews");
    let res = app
        .send_json(Method::POST, &url, Some(&patient.access), &review)
        .await;
    assert_error(res, 422, "appointment_not_over").await;

    // Let time pass: the visit happened an hour ago.
    app.db.execute(&format!(
        "UPDATE slots SET starts_at = now() - interval '90 minutes', ends_at = now() - interval '60 minutes' WHERE id = '{sid}'"
    ));
    let before: Value = app
        .get(&format!("/api/v1/doctors/{d}"), None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(before["rating"]["count"], 0);
    let res = app
        .send_json(Method::POST, &url, Some(&other.access), &review)
        .await;
    assert_error(res, 404, "not_found").await;
    let bad = json!({"appointment_id": aid, "rating": 6, "text": "x".repeat(2001)});
    let res = app
        .send_json(Method::POST, &url, Some(&patient.access), &bad)
        .await;
    let err = assert_error(res, 400, "validation_failed").await;
    assert_eq!(err["error"]["details"].as_array().unwrap().len(), 2);
    let res = app
        .send_json(Method::POST, &url, Some(&patient.access), &review)
        .await;
    assert_eq!(res.status(), 201);
    let res = app
        .send_json(Method::POST, &url, Some(&patient.access), &review)
        .await;
    assert_error(res, 409, "already_reviewed").await;

    let after: Value = app
        .get(&format!("/api/v1/doctors/{d}"), None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        after["rating"]["count"], 1,
        "the cached doctor was invalidated"
    );
    assert_eq!(after["rating"]["average"], 5.0);
    let list: Value = app.get(&url, None).await.json().await.unwrap();
    assert_eq!(list["total"], 1);
    // Initials by default; nothing ties the review to the appointment or the account.
    assert_eq!(list["items"][0]["author"], "T. P.");
    assert_eq!(list["items"][0]["author_shown_as"], "initials");
    let sorted: Value = app
        .get("/api/v1/doctors?sort=rating", None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(sorted["items"][0]["id"], d.as_str());

    // A cancelled visit cannot be reviewed.
    let slot2 = app.create_slot(&p.admin, &d, 120, 30).await;
    let sid2 = slot2["id"].as_str().unwrap();
    let appt2: Value = app.book(&patient, sid2).await.json().await.unwrap();
    let aid2 = appt2["id"].as_str().unwrap();
    app.send_json(
        Method::POST,
        &format!("/api/v1/appointments/{aid2}/cancel"),
        Some(&patient.access),
        &json!({}),
    )
    .await;
    app.db.execute(&format!(
        "UPDATE slots SET starts_at = now() - interval '5 hours', ends_at = now() - interval '270 minutes' WHERE id = '{sid2}'"
    ));
    let res = app
        .send_json(
            Method::POST,
            &url,
            Some(&patient.access),
            &json!({"appointment_id": aid2, "rating": 1}),
        )
        .await;
    assert_error(res, 422, "appointment_cancelled").await;
}

async fn metric(app: &crate::helpers::TestApp, name: &str) -> f64 {
    let text = app.ops_get("/metrics").await.text().await.unwrap();
    text.lines()
        .filter(|l| l.starts_with(name))
        .filter_map(|l| l.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()))
        .sum()
}

#[tokio::test]
async fn doctor_and_patient_reads_go_through_the_memory_cache() {
    let app = spawn_app().await;
    let p = practice(&app).await;
    let d = p.doctor_id();
    app.get(&format!("/api/v1/doctors/{d}"), None).await;
    let hits = metric(&app, "cache_hits_total").await;
    app.get(&format!("/api/v1/doctors/{d}"), None).await;
    assert_eq!(metric(&app, "cache_hits_total").await, hits + 1.0);

    let patient = app.patient().await;
    let path = format!("/api/v1/patients/{}", patient.id);
    app.get(&path, Some(&p.admin.access)).await;
    let res = app
        .send_json(
            Method::PATCH,
            "/api/v1/me",
            Some(&patient.access),
            &json!({"full_name": "Renamed Patient"}),
        )
        .await;
    assert_eq!(res.status(), 200);
    let fresh: Value = app
        .get(&path, Some(&p.admin.access))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        fresh["full_name"], "Renamed Patient",
        "the cached patient was invalidated"
    );
}

#[tokio::test]
async fn redis_cache_serves_hits_and_degrades_when_redis_is_down() {
    let app = spawn_app_with(|s| s.cache.backend = CacheBackend::Redis).await;
    let p = practice(&app).await;
    let d = p.doctor_id();
    app.get(&format!("/api/v1/doctors/{d}"), None).await;
    let hits = metric(&app, "cache_hits_total{cache=\"redis\"}").await;
    let first: Value = app
        .get(&format!("/api/v1/doctors/{d}"), None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        metric(&app, "cache_hits_total{cache=\"redis\"}").await,
        hits + 1.0
    );
    assert_eq!(first["full_name"], "Dr. Erika Mustermann");
    let mut redis = redis::Client::open(redis_url())
        .unwrap()
        .get_connection()
        .unwrap();
    let ttl: i64 = redis::cmd("TTL")
        .arg(format!("medbook:cache:doctor:{d}"))
        .query(&mut redis)
        .unwrap();
    assert!(ttl > 0, "every key has a TTL ({ttl})");

    // Redis unreachable: reads fall back to the database, never to errors.
    let down = spawn_app_with(|s| {
        s.cache.backend = CacheBackend::Redis;
        s.redis.url = "redis://127.0.0.1:1".to_owned().into();
    })
    .await;
    let p = practice(&down).await;
    let d = p.doctor_id();
    for _ in 0..3 {
        let res = down.get(&format!("/api/v1/doctors/{d}"), None).await;
        assert_eq!(res.status(), 200);
    }
    assert!(metric(&down, "cache_errors_total").await >= 1.0);
    // Tokens are still accepted (revocation checks default to allow) and counted.
    assert_eq!(
        down.get("/api/v1/me", Some(&p.admin.access)).await.status(),
        200
    );
    assert!(metric(&down, "auth_revocation_check_failures_total").await >= 1.0);
}

#[tokio::test]
async fn logout_refuses_the_access_token_at_once() {
    let app = spawn_app().await;
    let user = app.patient().await;
    assert_eq!(
        app.get("/api/v1/me", Some(&user.access)).await.status(),
        200
    );
    let res = app
        .send_json(
            Method::POST,
            "/api/v1/auth/logout",
            Some(&user.access),
            &json!({"refresh_token": user.refresh}),
        )
        .await;
    assert_eq!(res.status(), 204);
    let res = app.get("/api/v1/me", Some(&user.access)).await;
    let err = assert_error(res, 401, "unauthorized").await;
    assert!(err["error"]["message"]
        .as_str()
        .unwrap()
        .contains("logged out"));
    // Another login still works.
    let again = app.login(&user.email, &user.password).await;
    assert_eq!(again.status(), 200);
}

#[tokio::test]
async fn revocation_store_down_can_be_configured_to_deny() {
    let app = spawn_app_with(|s| {
        s.redis.url = "redis://127.0.0.1:1".to_owned().into();
        s.auth.revocation_check_failure = Some(RevocationFailure::Deny);
    })
    .await;
    let user = app.patient().await;
    let res = app.get("/api/v1/me", Some(&user.access)).await;
    assert_error(res, 503, "unavailable").await;
}

/// In production nothing needs configuring: a token whose revocation cannot be checked
/// is refused (a logged-out session never comes back while Redis is down).
#[tokio::test]
async fn revocation_checks_fail_closed_in_production() {
    let app = spawn_app_with(|s| {
        s.profile = booking_service::settings::Profile::Production;
        s.redis.url = "redis://127.0.0.1:1".to_owned().into();
        s.auth.revocation_check_failure = None;
    })
    .await;
    let user = app.patient().await;
    let res = app.get("/api/v1/me", Some(&user.access)).await;
    assert_error(res, 503, "unavailable").await;
}
