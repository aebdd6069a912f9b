//! What clinics ask for most, against the real application and PostgreSQL: manage
//! links in e-mails, clinic policies, the patient overlap rule, attendance and
//! no-shows, a doctor's day that names its patients, the waitlist (its hold and
//! expiry driven by a clock of the test's own), and calendar feeds read by an
//! iCalendar parser.

use crate::grpc::doctor_user;
use crate::helpers::{
    assert_error, count, id_of, post_ok, practice, spawn_app, spawn_app_with, Practice, TestApp,
    TestUser,
};
use booking_service::repository::waitlist::PgWaitlist;
use booking_service::repository::{Db, PoolSettings};
use booking_service::service::outbox::OutboxSignal;
use booking_service::service::ports::Clock;
use booking_service::service::waitlist::WaitlistMatcher;
use chrono::{DateTime, Duration, Utc};
use reqwest::Method;
use serde_json::{json, Value};
use std::sync::Mutex;

/// A clock the test moves.
struct TestClock(Mutex<DateTime<Utc>>);

impl TestClock {
    fn new() -> Self {
        Self(Mutex::new(Utc::now()))
    }
    fn advance(&self, by: Duration) {
        *self.0.lock().unwrap() += by;
    }
}

impl Clock for TestClock {
    fn now(&self) -> DateTime<Utc> {
        *self.0.lock().unwrap()
    }
}

/// The newest outbox event of `event_type` about appointment `id`.
fn event_of(app: &TestApp, event_type: &str, id: &str) -> Value {
    events_of(app, event_type)
        .into_iter()
        .find(|e| e["data"]["appointment_id"] == id)
        .unwrap_or_else(|| panic!("no {event_type} event for {id}"))
}

/// Every outbox event of `event_type`, newest first.
fn events_of(app: &TestApp, event_type: &str) -> Vec<Value> {
    #[derive(diesel::QueryableByName)]
    struct Payload {
        #[diesel(sql_type = diesel::sql_types::Text)]
        payload: String,
    }
    let rows: Vec<Payload> = diesel::RunQueryDsl::load(
        diesel::sql_query(
            "SELECT payload FROM outbox_events WHERE event_type = $1 AND sink = 'kafka' ORDER BY seq DESC",
        )
        .bind::<diesel::sql_types::Text, _>(event_type),
        &mut app.db.conn(),
    )
    .unwrap();
    rows.iter()
        .map(|r| serde_json::from_str(&r.payload).unwrap())
        .collect()
}

/// The token of a link.
fn token_of(url: &str) -> String {
    url.split("token=").nth(1).unwrap().to_owned()
}

async fn form(app: &TestApp, path: &str, fields: &[(&str, &str)]) -> reqwest::Response {
    app.client
        .post(app.url(path))
        .form(fields)
        .send()
        .await
        .unwrap()
}

async fn page(app: &TestApp, path: &str) -> (u16, reqwest::header::HeaderMap, String) {
    let res = app.client.get(app.url(path)).send().await.unwrap();
    let status = res.status().as_u16();
    let headers = res.headers().clone();
    (status, headers, res.text().await.unwrap())
}

async fn book_ok(app: &TestApp, patient: &TestUser, slot: &Value) -> Value {
    let res = app.book(patient, slot["id"].as_str().unwrap()).await;
    assert_eq!(res.status(), 201, "{}", res.text().await.unwrap());
    res.json().await.unwrap()
}

/// Books, as `patient`, a new 30-minute slot of the practice's doctor `minutes` ahead.
async fn book_in(app: &TestApp, p: &Practice, patient: &TestUser, minutes: i64) -> Value {
    let slot = app.create_slot(&p.admin, &p.doctor_id(), minutes, 30).await;
    book_ok(app, patient, &slot).await
}

fn appointment_status(app: &TestApp, id: &str) -> (String, String) {
    #[derive(diesel::QueryableByName)]
    struct Row {
        #[diesel(sql_type = diesel::sql_types::Text)]
        status: String,
        #[diesel(sql_type = diesel::sql_types::Text)]
        slot_id: String,
    }
    let r: Row = diesel::RunQueryDsl::get_result(
        diesel::sql_query(format!(
            "SELECT status, slot_id::text AS slot_id FROM appointments WHERE id = '{id}'"
        )),
        &mut app.db.conn(),
    )
    .unwrap();
    (r.status, r.slot_id)
}

/// Moves an appointment (and its slot) `hours` hours into the past: the visit has
/// started.
fn started(app: &TestApp, appointment: &Value, hours: i64) {
    app.db.execute(&format!(
        "UPDATE slots SET starts_at = now() - interval '{hours} hours',
                          ends_at = now() - interval '{hours} hours' + interval '30 minutes'
          WHERE id = '{s}';
         UPDATE appointments SET starts_at = now() - interval '{hours} hours',
                                 ends_at = now() - interval '{hours} hours' + interval '30 minutes'
          WHERE id = '{a}'",
        s = appointment["slot_id"].as_str().unwrap(),
        a = appointment["id"].as_str().unwrap(),
    ));
}

#[tokio::test]
async fn a_manage_link_shows_moves_and_cancels_the_appointment_without_a_login() {
    let app = spawn_app().await;
    let p = practice(&app).await;
    let patient = app.patient().await;
    let first = app.create_slot(&p.admin, &p.doctor_id(), 120, 30).await;
    let second = app.create_slot(&p.admin, &p.doctor_id(), 240, 30).await;
    let booked = book_ok(&app, &patient, &first).await;
    let id = id_of(&booked);

    // The confirmation's event carries the link; its token is stored only hashed.
    let created = event_of(&app, "appointment.created", &id);
    let url = created["data"]["manage_url"].as_str().unwrap().to_owned();
    assert!(
        url.starts_with("http://127.0.0.1:8080/manage?token="),
        "{url}"
    );
    let token = token_of(&url);
    assert_eq!(
        count(
            &app,
            &format!("SELECT count(*) AS n FROM appointments WHERE manage_token_hash = '{token}'")
        ),
        0,
        "the token itself is not stored"
    );

    // Opening the link changes nothing and shows the appointment with both forms.
    let (status, headers, html) = page(&app, &format!("/manage?token={token}")).await;
    assert_eq!(status, 200, "{html}");
    assert!(html.contains("Dr. Erika Mustermann"), "{html}");
    assert!(html.contains("Cancel my appointment") && html.contains("Move my appointment"));
    assert!(
        html.contains(second["id"].as_str().unwrap()),
        "the free slot is offered"
    );
    assert!(!html.contains("<script"));
    assert_eq!(headers["cache-control"], "no-store");
    assert_eq!(headers["referrer-policy"], "no-referrer");
    assert!(headers["content-security-policy"]
        .to_str()
        .unwrap()
        .contains("default-src 'none'"));
    assert_eq!(appointment_status(&app, &id).0, "booked");

    // Moving keeps the link: the rescheduled e-mail carries the same one.
    let res = form(
        &app,
        "/manage/reschedule",
        &[
            ("token", token.as_str()),
            ("slot_id", second["id"].as_str().unwrap()),
        ],
    )
    .await;
    assert_eq!(res.status(), 200, "{}", res.text().await.unwrap());
    assert_eq!(
        appointment_status(&app, &id),
        ("booked".into(), second["id"].as_str().unwrap().to_owned())
    );
    let moved = event_of(&app, "appointment.rescheduled", &id);
    assert_eq!(moved["data"]["manage_url"], url.as_str());

    // Cancelling through it is the patient's own cancellation, audited as them.
    let res = form(
        &app,
        "/manage/cancel",
        &[("token", token.as_str()), ("reason", "feeling better")],
    )
    .await;
    assert_eq!(res.status(), 200, "{}", res.text().await.unwrap());
    assert_eq!(appointment_status(&app, &id).0, "cancelled");
    let cancelled = event_of(&app, "appointment.cancelled", &id);
    assert_eq!(cancelled["data"]["cancelled_by"], "patient");
    assert_eq!(
        count(
            &app,
            &format!(
                "SELECT count(*) AS n FROM outbox_events WHERE sink = 'audit'
                   AND event_type = 'appointment.cancelled'
                   AND payload::jsonb -> 'actor' -> 'user' ->> 'id' = '{}'
                   AND payload::jsonb -> 'actor' -> 'user' ->> 'role' = 'patient'",
                patient.id
            )
        ),
        1
    );

    // A stale link says what happened; a wrong one is not found; a used one refuses.
    let (status, _, html) = page(&app, &format!("/manage?token={token}")).await;
    assert_eq!(status, 200);
    assert!(html.contains("This appointment was cancelled"), "{html}");
    assert!(!html.contains("<form"));
    let res = form(&app, "/manage/cancel", &[("token", token.as_str())]).await;
    assert_eq!(res.status(), 409);
    let forged = format!("{}A", &token[..42]);
    let (status, _, html) = page(&app, &format!("/manage?token={forged}")).await;
    assert_eq!(status, 404, "{html}");
    let (status, _, _) = page(&app, "/manage").await;
    assert_eq!(status, 400);
}

#[tokio::test]
async fn the_clinics_change_deadline_stops_late_patient_changes_but_not_admins() {
    let app = spawn_app().await;
    let p = practice(&app).await;
    let clinic = id_of(&p.clinic);
    let patient = app.patient().await;

    let policy = post_put(
        &app,
        &p.admin,
        &format!("/api/v1/clinics/{clinic}/policy"),
        json!({"change_deadline_minutes": 1440}),
    )
    .await;
    assert_eq!(policy["change_deadline_minutes"], 1440);
    assert_eq!(policy["effective"]["change_deadline_minutes"], 1440);
    assert_eq!(policy["effective"]["min_notice_minutes"], 0, "the default");
    // Anyone may read the rules a clinic books by.
    let public: Value = app
        .get(&format!("/api/v1/clinics/{clinic}/policy"), None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(public["effective"]["change_deadline_minutes"], 1440);

    let slot = app.create_slot(&p.admin, &p.doctor_id(), 60, 30).await;
    let other = app.create_slot(&p.admin, &p.doctor_id(), 180, 30).await;
    let booked = book_ok(&app, &patient, &slot).await;
    let id = id_of(&booked);
    let res = app
        .send_json(
            Method::POST,
            &format!("/api/v1/appointments/{id}/cancel"),
            Some(&patient.access),
            &json!({}),
        )
        .await;
    let body = assert_error(res, 422, "change_deadline_passed").await;
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("deadline"));
    let res = app
        .send_json(
            Method::POST,
            &format!("/api/v1/appointments/{id}/reschedule"),
            Some(&patient.access),
            &json!({"slot_id": other["id"]}),
        )
        .await;
    assert_error(res, 422, "change_deadline_passed").await;
    // The manage page says so instead of offering what would be refused.
    let url = event_of(&app, "appointment.created", &id)["data"]["manage_url"]
        .as_str()
        .unwrap()
        .to_owned();
    let (status, _, html) = page(&app, &format!("/manage?token={}", token_of(&url))).await;
    assert_eq!(status, 200);
    assert!(
        html.contains("too close") && html.contains("1 day"),
        "{html}"
    );
    assert!(!html.contains("<form"));
    let res = form(&app, "/manage/cancel", &[("token", &token_of(&url))]).await;
    assert_eq!(res.status(), 422);

    // The doctor's own deadline wins over the clinic's.
    let doctor = post_put(
        &app,
        &p.admin,
        &format!("/api/v1/doctors/{}/policy", p.doctor_id()),
        json!({"change_deadline_minutes": 30}),
    )
    .await;
    assert_eq!(doctor["effective"]["change_deadline_minutes"], 30);
    let res = app
        .send_json(
            Method::POST,
            &format!("/api/v1/appointments/{id}/reschedule"),
            Some(&patient.access),
            &json!({"slot_id": other["id"]}),
        )
        .await;
    assert_eq!(res.status(), 200, "{}", res.text().await.unwrap());

    post_put(
        &app,
        &p.admin,
        &format!("/api/v1/doctors/{}/policy", p.doctor_id()),
        json!({"change_deadline_minutes": 600}),
    )
    .await;
    // Admins still act, with a reason, whatever the deadline.
    let third = app.create_slot(&p.admin, &p.doctor_id(), 300, 30).await;
    let res = app
        .send_json(
            Method::POST,
            &format!("/api/v1/appointments/{id}/reschedule"),
            Some(&p.admin.access),
            &json!({"slot_id": third["id"]}),
        )
        .await;
    assert_error(res, 422, "reason_required").await;
    let res = app
        .send_json(
            Method::POST,
            &format!("/api/v1/appointments/{id}/reschedule"),
            Some(&p.admin.access),
            &json!({"slot_id": third["id"], "reason": "the doctor asked"}),
        )
        .await;
    assert_eq!(res.status(), 200, "{}", res.text().await.unwrap());
    post_ok(
        &app,
        &p.admin,
        &format!("/api/v1/appointments/{id}/cancel"),
        json!({"reason": "patient called"}),
    )
    .await;

    // Values out of bounds are refused by field; only admins set rules.
    let res = app
        .send_json(
            Method::PUT,
            &format!("/api/v1/clinics/{clinic}/policy"),
            Some(&p.admin.access),
            &json!({"horizon_days": 0, "no_show_limit": 101}),
        )
        .await;
    let body = assert_error(res, 400, "validation_failed").await;
    let fields: Vec<&str> = body["error"]["details"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["horizon_days", "no_show_limit"]);
    let res = app
        .send_json(
            Method::PUT,
            &format!("/api/v1/clinics/{clinic}/policy"),
            Some(&patient.access),
            &json!({}),
        )
        .await;
    assert_error(res, 403, "forbidden").await;
    let res = app
        .send_json(
            Method::PUT,
            &format!("/api/v1/clinics/{}/policy", uuid::Uuid::new_v4()),
            Some(&p.admin.access),
            &json!({}),
        )
        .await;
    assert_error(res, 404, "not_found").await;
    assert!(
        count(
            &app,
            "SELECT count(*) AS n FROM outbox_events WHERE sink = 'audit' AND event_type = 'policy.updated'"
        ) >= 3
    );
}

async fn post_put(app: &TestApp, admin: &TestUser, path: &str, body: Value) -> Value {
    let res = app
        .send_json(Method::PUT, path, Some(&admin.access), &body)
        .await;
    let status = res.status();
    let body: Value = res.json().await.unwrap();
    assert_eq!(status, 200, "{body}");
    body
}

#[tokio::test]
async fn notice_horizon_and_cap_are_the_clinics() {
    let app = spawn_app().await;
    let p = practice(&app).await;
    let patient = app.patient().await;
    post_put(
        &app,
        &p.admin,
        &format!("/api/v1/clinics/{}/policy", id_of(&p.clinic)),
        json!({"min_notice_minutes": 120, "horizon_days": 2, "max_active_per_patient": 1}),
    )
    .await;
    let soon = app.create_slot(&p.admin, &p.doctor_id(), 60, 30).await;
    let far = app
        .create_slot(&p.admin, &p.doctor_id(), 3 * 24 * 60, 30)
        .await;
    let fine = app.create_slot(&p.admin, &p.doctor_id(), 180, 30).await;
    let also_fine = app.create_slot(&p.admin, &p.doctor_id(), 300, 30).await;
    assert_error(
        app.book(&patient, soon["id"].as_str().unwrap()).await,
        422,
        "too_short_notice",
    )
    .await;
    assert_error(
        app.book(&patient, far["id"].as_str().unwrap()).await,
        422,
        "beyond_booking_horizon",
    )
    .await;
    book_ok(&app, &patient, &fine).await;
    assert_error(
        app.book(&patient, also_fine["id"].as_str().unwrap()).await,
        422,
        "too_many_appointments",
    )
    .await;
}

#[tokio::test]
async fn a_patient_never_holds_two_overlapping_appointments_whoever_the_doctors() {
    let app = spawn_app().await;
    let p = practice(&app).await;
    let second_doctor = app
        .create_doctor(&p.admin, &id_of(&p.clinic), "Dr. Max Muster", "Dermatology")
        .await;
    let patient = app.patient().await;
    let a = app.create_slot(&p.admin, &p.doctor_id(), 120, 30).await;
    let overlapping = app
        .create_slot(&p.admin, &id_of(&second_doctor), 135, 30)
        .await;
    let adjacent = app
        .create_slot(&p.admin, &id_of(&second_doctor), 165, 30)
        .await;
    let first = book_ok(&app, &patient, &a).await;
    assert_error(
        app.book(&patient, overlapping["id"].as_str().unwrap())
            .await,
        422,
        "overlapping_appointment",
    )
    .await;
    // Back to back is fine; so is the overlapping one once the first is cancelled.
    book_ok(&app, &patient, &adjacent).await;
    post_ok(
        &app,
        &patient,
        &format!("/api/v1/appointments/{}/cancel", id_of(&first)),
        json!({}),
    )
    .await;
    let moved_in = book_ok(&app, &patient, &overlapping).await;
    // The rule is the database's, whatever writes: a direct insert is refused too.
    post_ok(
        &app,
        &patient,
        &format!("/api/v1/appointments/{}/cancel", id_of(&moved_in)),
        json!({}),
    )
    .await;
    book_ok(&app, &patient, &a).await;
    let mut conn = app.db.conn();
    let err = diesel::RunQueryDsl::execute(
        diesel::sql_query(format!(
            "INSERT INTO appointments (id, slot_id, patient_id, doctor_id, status, starts_at, ends_at, version)
             SELECT gen_random_uuid(), s.id, '{}', s.doctor_id, 'booked', s.starts_at, s.ends_at, 1
             FROM slots s WHERE s.id = '{}'",
            patient.id,
            overlapping["id"].as_str().unwrap()
        )),
        &mut conn,
    )
    .unwrap_err();
    assert!(
        err.to_string().contains("appointments_patient_no_overlap"),
        "{err}"
    );
}

#[tokio::test]
async fn a_doctor_records_a_no_show_once_and_the_clinics_limit_stops_self_service() {
    let app = spawn_app().await;
    let p = practice(&app).await;
    let doctor = doctor_user(&app, &p.admin, &p.doctor).await;
    let patient = app.patient().await;
    let first = book_in(&app, &p, &patient, 60).await;
    let path = format!("/api/v1/appointments/{}/attendance", id_of(&first));
    let mark = |user: &TestUser, outcome: &str| {
        let (app, path, token, outcome) = (&app, &path, user.access.clone(), outcome.to_owned());
        async move {
            app.send_json(
                Method::POST,
                path,
                Some(&token),
                &json!({"outcome": outcome}),
            )
            .await
        }
    };
    assert_error(
        mark(&doctor, "no_show").await,
        422,
        "appointment_not_started",
    )
    .await;
    started(&app, &first, 2);
    assert_error(mark(&patient, "no_show").await, 403, "forbidden").await;
    assert_error(mark(&doctor, "absent").await, 400, "validation_failed").await;
    // Another doctor's account does not see it.
    let other_doctor = app
        .create_doctor(&p.admin, &id_of(&p.clinic), "Dr. Other", "Surgery")
        .await;
    let stranger = doctor_user(&app, &p.admin, &other_doctor).await;
    assert_error(mark(&stranger, "no_show").await, 404, "not_found").await;

    let res = mark(&doctor, "no_show").await;
    assert_eq!(res.status(), 200, "{}", res.text().await.unwrap());
    let marked: Value = res.json().await.unwrap();
    assert_eq!(marked["status"], "no_show");
    assert_error(mark(&doctor, "attended").await, 409, "attendance_recorded").await;
    let event = event_of(&app, "appointment.no_show", &id_of(&first));
    assert_eq!(
        event["data"]["email_patient"], false,
        "off unless the clinic turns it on"
    );
    assert_eq!(
        count(
            &app,
            &format!(
                "SELECT count(*) AS n FROM appointments WHERE id = '{}' AND attendance_marked_by = '{}'",
                id_of(&first),
                doctor.id
            )
        ),
        1
    );

    // The clinic: e-mail about no-shows, and one stops self-service booking.
    post_put(
        &app,
        &p.admin,
        &format!("/api/v1/clinics/{}/policy", id_of(&p.clinic)),
        json!({"no_show_limit": 2, "no_show_window_days": 30, "no_show_email": true}),
    )
    .await;
    let second = book_in(&app, &p, &patient, 120).await;
    started(&app, &second, 4);
    post_ok(
        &app,
        &p.admin,
        &format!("/api/v1/appointments/{}/attendance", id_of(&second)),
        json!({"outcome": "no_show"}),
    )
    .await;
    assert_eq!(
        event_of(&app, "appointment.no_show", &id_of(&second))["data"]["email_patient"],
        true
    );
    let third = app.create_slot(&p.admin, &p.doctor_id(), 180, 30).await;
    let res = app.book(&patient, third["id"].as_str().unwrap()).await;
    let body = assert_error(res, 422, "too_many_no_shows").await;
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("clinic"));
    // The clinic can still book for the patient.
    let res = app
        .send_json(
            Method::POST,
            &format!("/api/v1/patients/{}/appointments", patient.id),
            Some(&p.admin.access),
            &json!({"slot_id": third["id"], "reason": "booked by phone"}),
        )
        .await;
    assert_eq!(res.status(), 201, "{}", res.text().await.unwrap());
    // Only for a patient who exists: another id, or a staff account, is not found.
    for someone in [uuid::Uuid::new_v4(), doctor.id] {
        let res = app
            .send_json(
                Method::POST,
                &format!("/api/v1/patients/{someone}/appointments"),
                Some(&p.admin.access),
                &json!({"slot_id": third["id"]}),
            )
            .await;
        assert_error(res, 404, "not_found").await;
    }
    let metrics = app.ops_get("/metrics").await.text().await.unwrap();
    assert!(
        metrics.contains("appointments_attendance_total{outcome=\"no_show\"} 2"),
        "{metrics}"
    );
    assert!(metrics.contains("booking_rejections_total{reason=\"too_many_no_shows\"} 1"));
}

#[tokio::test]
async fn a_doctors_day_names_its_patients_with_their_age() {
    let app = spawn_app().await;
    let p = practice(&app).await;
    let doctor = doctor_user(&app, &p.admin, &p.doctor).await;
    let patient = app.patient().await;
    let res = app
        .send_json(
            Method::PATCH,
            "/api/v1/me",
            Some(&patient.access),
            &json!({"full_name": "Ada Lovelace", "birth_date": "1990-01-01"}),
        )
        .await;
    assert_eq!(res.status(), 200, "{}", res.text().await.unwrap());
    let slot = app.create_slot(&p.admin, &p.doctor_id(), 30, 30).await;
    let booked = book_ok(&app, &patient, &slot).await;
    let date = chrono::DateTime::parse_from_rfc3339(slot["starts_at"].as_str().unwrap())
        .unwrap()
        .with_timezone(&chrono_tz::Europe::Berlin)
        .date_naive();
    let day: Value = app
        .get(
            &format!("/api/v1/doctor/appointments?date={date}"),
            Some(&doctor.access),
        )
        .await
        .json()
        .await
        .unwrap();
    let entry = day["appointments"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["id"] == booked["id"])
        .unwrap_or_else(|| panic!("{day}"))
        .clone();
    assert_eq!(entry["patient_name"], "Ada Lovelace");
    let expected_age = date.years_since("1990-01-01".parse().unwrap()).unwrap();
    assert_eq!(entry["patient_age"], expected_age);
    assert_eq!(entry["reason"], "check-up");
}

/// A database pool of the test's own, for the matcher it drives.
fn pool(app: &TestApp) -> Db {
    Db::new(&PoolSettings {
        url: app.db.url(),
        max_size: 2,
        connect_timeout: std::time::Duration::from_secs(5),
        statement_timeout: std::time::Duration::from_secs(5),
    })
    .unwrap()
}

fn matcher(app: &TestApp, clock: std::sync::Arc<TestClock>) -> WaitlistMatcher {
    WaitlistMatcher::new(
        std::sync::Arc::new(PgWaitlist::new(pool(app))),
        clock,
        OutboxSignal::default(),
        app.settings.matcher_config(),
    )
}

async fn join(app: &TestApp, patient: &TestUser, doctor: &str, days: i64) -> Value {
    let today = Utc::now().date_naive();
    post_ok(
        app,
        patient,
        "/api/v1/me/waitlist",
        json!({"doctor_id": doctor, "from_date": today, "to_date": today + Duration::days(days)}),
    )
    .await
}

fn offers_to(app: &TestApp, email: &str) -> Vec<Value> {
    events_of(app, "waitlist.offer")
        .into_iter()
        .filter(|e| e["data"]["patient"]["email"] == email)
        .collect()
}

#[tokio::test]
async fn a_freed_slot_is_held_for_the_first_in_line_and_passes_on_when_the_offer_lapses() {
    let app = spawn_app().await;
    let p = practice(&app).await;
    let doctor = p.doctor_id();
    let (holder, first, second) = (
        app.patient().await,
        app.patient().await,
        app.patient().await,
    );
    let slot = app.create_slot(&p.admin, &doctor, 24 * 60, 30).await;
    let slot_id = slot["id"].as_str().unwrap();
    let booked = book_ok(&app, &holder, &slot).await;
    let entry = join(&app, &first, &doctor, 7).await;
    assert_eq!(entry["status"], "waiting");
    join(&app, &second, &doctor, 7).await;
    // One live entry per doctor; ranges are checked.
    let res = app
        .send_json(
            Method::POST,
            "/api/v1/me/waitlist",
            Some(&first.access),
            &json!({"doctor_id": doctor, "from_date": "2026-01-02", "to_date": "2026-01-01"}),
        )
        .await;
    assert_error(res, 400, "validation_failed").await;
    let today = Utc::now().date_naive();
    let res = app
        .send_json(
            Method::POST,
            "/api/v1/me/waitlist",
            Some(&first.access),
            &json!({"doctor_id": doctor, "from_date": today, "to_date": today}),
        )
        .await;
    assert_error(res, 409, "already_on_waitlist").await;

    let clock = std::sync::Arc::new(TestClock::new());
    let m = matcher(&app, clock.clone());
    assert_eq!(m.round().await.unwrap(), (0, 0), "nothing is free yet");

    // The slot frees: the first in line is offered it, and it is held for them.
    post_ok(
        &app,
        &holder,
        &format!("/api/v1/appointments/{}/cancel", id_of(&booked)),
        json!({}),
    )
    .await;
    assert_eq!(m.round().await.unwrap(), (0, 1));
    assert_eq!(m.round().await.unwrap(), (0, 0), "one offer per slot");
    let offers = offers_to(&app, &first.email);
    assert_eq!(offers.len(), 1);
    assert!(offers_to(&app, &second.email).is_empty());
    let offer = &offers[0]["data"];
    assert_eq!(offer["slot_id"], slot_id);
    let expires: DateTime<Utc> = offer["expires_at"].as_str().unwrap().parse().unwrap();
    assert_eq!(expires, clock.now() + Duration::minutes(15));
    let first_link = offer["link"].as_str().unwrap().to_owned();
    for someone in [&holder, &second] {
        assert_error(app.book(someone, slot_id).await, 409, "slot_held").await;
    }
    let mine: Value = app
        .get("/api/v1/me/waitlist", Some(&first.access))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(mine["entries"][0]["status"], "offered");
    assert_eq!(mine["entries"][0]["offer"]["slot_id"], slot_id);
    let (status, headers, html) = page(
        &app,
        &format!("/waitlist/offer?token={}", token_of(&first_link)),
    )
    .await;
    assert_eq!(status, 200, "{html}");
    assert!(html.contains("Book this time"));
    assert_eq!(headers["cache-control"], "no-store");

    // Unanswered for longer than the hold: it passes to the next in line.
    clock.advance(Duration::minutes(16));
    assert_eq!(m.round().await.unwrap(), (1, 1));
    let offers = offers_to(&app, &second.email);
    assert_eq!(offers.len(), 1);
    let second_link = offers[0]["data"]["link"].as_str().unwrap().to_owned();
    let (status, _, html) = page(
        &app,
        &format!("/waitlist/offer?token={}", token_of(&first_link)),
    )
    .await;
    assert_eq!(status, 410, "{html}");
    assert!(html.contains("still on the waitlist"));
    let res = form(
        &app,
        "/waitlist/offer",
        &[("token", &token_of(&first_link))],
    )
    .await;
    assert_eq!(res.status(), 410);
    let mine: Value = app
        .get("/api/v1/me/waitlist", Some(&first.access))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(mine["entries"][0]["status"], "waiting", "back in line");

    // The second patient books it from the link, as themselves.
    let res = form(
        &app,
        "/waitlist/offer",
        &[("token", &token_of(&second_link))],
    )
    .await;
    let html = res.text().await.unwrap();
    assert!(html.contains("Appointment booked"), "{html}");
    let theirs: Value = app
        .get("/api/v1/me/waitlist", Some(&second.access))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(theirs["entries"][0]["status"], "booked");
    let appointment = theirs["entries"][0]["appointment_id"].as_str().unwrap();
    assert_eq!(appointment_status(&app, appointment).1, slot_id);
    // A second press shows the booking it made; nothing more is booked.
    let again = form(
        &app,
        "/waitlist/offer",
        &[("token", &token_of(&second_link))],
    )
    .await;
    assert_eq!(again.status(), 200);
    assert!(again.text().await.unwrap().contains("Appointment booked"));
    let (status, _, html) = page(
        &app,
        &format!("/waitlist/offer?token={}", token_of(&second_link)),
    )
    .await;
    assert_eq!(status, 200);
    assert!(html.contains("You booked this time"), "{html}");
    assert_eq!(
        count(
            &app,
            &format!(
                "SELECT count(*) AS n FROM outbox_events WHERE sink = 'audit'
                   AND event_type = 'appointment.booked'
                   AND payload::jsonb -> 'actor' -> 'user' ->> 'id' = '{}'",
                second.id
            )
        ),
        1
    );
    // Nothing is free any more, and the first patient is still in line.
    assert_eq!(m.round().await.unwrap(), (0, 0));
    let metrics = app.ops_get("/metrics").await.text().await.unwrap();
    assert!(
        metrics.contains("waitlist_events_total{event=\"booked\"} 1"),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_hold_is_a_database_rule_and_leaving_releases_it() {
    let app = spawn_app().await;
    let p = practice(&app).await;
    let doctor = p.doctor_id();
    let (waiting, other) = (app.patient().await, app.patient().await);
    // A slot already free when they join is theirs to book: no offer is made for it.
    app.create_slot(&p.admin, &doctor, 20 * 60, 30).await;
    let entry = join(&app, &waiting, &doctor, 3).await;
    let m = matcher(&app, std::sync::Arc::new(TestClock::new()));
    assert_eq!(m.round().await.unwrap(), (0, 0));
    // A new slot is offered as soon as it opens.
    let slot = app.create_slot(&p.admin, &doctor, 24 * 60, 30).await;
    let slot_id = slot["id"].as_str().unwrap();
    assert_eq!(m.round().await.unwrap(), (0, 1));
    let err = diesel::RunQueryDsl::execute(
        diesel::sql_query(format!(
            "INSERT INTO appointments (id, slot_id, patient_id, doctor_id, status, starts_at, ends_at, version)
             SELECT gen_random_uuid(), s.id, '{}', s.doctor_id, 'booked', s.starts_at, s.ends_at, 1
             FROM slots s WHERE s.id = '{slot_id}'",
            other.id
        )),
        &mut app.db.conn(),
    )
    .unwrap_err();
    assert!(
        err.to_string().contains("held for another patient"),
        "{err}"
    );
    // A held slot the clinic deletes takes its hold with it; the entry is back in line
    // and offered the next free slot.
    let other_slot = app.create_slot(&p.admin, &doctor, 26 * 60, 30).await;
    assert_eq!(
        m.round().await.unwrap(),
        (0, 0),
        "one offer per entry at a time"
    );
    let res = app
        .request(Method::DELETE, &format!("/api/v1/slots/{slot_id}"))
        .bearer_auth(&p.admin.access)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 204, "{}", res.text().await.unwrap());
    assert_eq!(m.round().await.unwrap(), (0, 1));
    assert_eq!(
        offers_to(&app, &waiting.email)[0]["data"]["slot_id"],
        other_slot["id"]
    );
    let slot = other_slot;
    // Leaving releases the hold at once.
    let res = app
        .request(
            Method::DELETE,
            &format!("/api/v1/me/waitlist/{}", id_of(&entry)),
        )
        .bearer_auth(&waiting.access)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 204);
    book_ok(&app, &other, &slot).await;
    let res = app
        .request(
            Method::DELETE,
            &format!("/api/v1/me/waitlist/{}", id_of(&entry)),
        )
        .bearer_auth(&waiting.access)
        .send()
        .await
        .unwrap();
    assert_error(res, 404, "not_found").await;
}

#[tokio::test]
async fn two_matchers_share_the_work_and_never_offer_a_slot_twice() {
    let app = spawn_app().await;
    let p = practice(&app).await;
    let doctor = p.doctor_id();
    let mut patients = Vec::new();
    for _ in 0..6 {
        let patient = app.patient().await;
        join(&app, &patient, &doctor, 5).await;
        patients.push(patient);
    }
    for i in 0..4 {
        app.create_slot(&p.admin, &doctor, 24 * 60 + i * 30, 30)
            .await;
    }
    let clock = std::sync::Arc::new(TestClock::new());
    let (a, b) = (matcher(&app, clock.clone()), matcher(&app, clock.clone()));
    let (ra, rb) = tokio::join!(a.round(), b.round());
    let offered = ra.unwrap().1 + rb.unwrap().1;
    assert_eq!(offered, 4);
    assert_eq!(count(&app, "SELECT count(*) AS n FROM slot_holds"), 4);
    assert_eq!(
        count(&app, "SELECT count(DISTINCT entry_id) AS n FROM slot_holds"),
        4
    );
    assert_eq!(events_of(&app, "waitlist.offer").len(), 4);
    // First come, first served: the four oldest entries hold the slots.
    for patient in &patients[..4] {
        assert_eq!(offers_to(&app, &patient.email).len(), 1);
    }
    // A patient who could not book is passed over: at the clinic's cap, the next
    // entry in line gets the freed slot.
    post_put_policy(
        &app,
        &p.admin,
        &id_of(&p.clinic),
        json!({"max_active_per_patient": 1}),
    )
    .await;
    let capped = &patients[4];
    let booked = app.create_slot(&p.admin, &doctor, 48 * 60, 30).await;
    app.db.execute(&format!(
        "UPDATE waitlist_entries SET status = 'left' WHERE patient_id = '{}'",
        capped.id
    ));
    book_ok(&app, capped, &booked).await;
    app.db.execute(&format!(
        "UPDATE waitlist_entries SET status = 'waiting' WHERE patient_id = '{}'",
        capped.id
    ));
    app.create_slot(&p.admin, &doctor, 24 * 60 + 4 * 30, 30)
        .await;
    assert_eq!(a.round().await.unwrap(), (0, 1));
    assert!(offers_to(&app, &capped.email).is_empty());
    assert_eq!(offers_to(&app, &patients[5].email).len(), 1);
}

async fn post_put_policy(app: &TestApp, admin: &TestUser, clinic: &str, body: Value) {
    post_put(
        app,
        admin,
        &format!("/api/v1/clinics/{clinic}/policy"),
        body,
    )
    .await;
}

#[tokio::test]
async fn a_replicas_matcher_offers_freed_slots_on_its_own() {
    let app = spawn_app_with(|s| {
        s.waitlist.matcher_enabled = true;
        s.waitlist.poll_interval_ms = 100;
    })
    .await;
    let p = practice(&app).await;
    let patient = app.patient().await;
    join(&app, &patient, &p.doctor_id(), 2).await;
    app.create_slot(&p.admin, &p.doctor_id(), 24 * 60, 30).await;
    medbook_test_support::eventually(
        "an offer from the running matcher",
        std::time::Duration::from_secs(10),
        || async { (!offers_to(&app, &patient.email).is_empty()).then_some(()) },
    )
    .await;
}

/// The events of a feed, as a calendar application reads them.
fn parse_feed(body: &str) -> Vec<std::collections::HashMap<String, String>> {
    let mut calendars = ical::IcalParser::new(std::io::BufReader::new(body.as_bytes()));
    let calendar = calendars
        .next()
        .expect("a calendar")
        .expect("a valid calendar");
    assert!(calendars.next().is_none());
    calendar
        .events
        .into_iter()
        .map(|e| {
            e.properties
                .into_iter()
                .filter_map(|p| Some((p.name, p.value?)))
                .collect()
        })
        .collect()
}

async fn feed(app: &TestApp, url: &str) -> (u16, String) {
    let path = url.strip_prefix("http://127.0.0.1:8080").unwrap();
    let res = app.client.get(app.url(path)).send().await.unwrap();
    let status = res.status().as_u16();
    if status == 200 {
        assert_eq!(
            res.headers()["content-type"],
            "text/calendar; charset=utf-8"
        );
    }
    (status, res.text().await.unwrap())
}

#[tokio::test]
async fn patients_and_doctors_subscribe_to_calendar_feeds_at_urls_they_can_rotate() {
    let app = spawn_app().await;
    let p = practice(&app).await;
    let doctor = doctor_user(&app, &p.admin, &p.doctor).await;
    let patient = app.patient().await;
    let kept = book_in(&app, &p, &patient, 120).await;
    let dropped = book_in(&app, &p, &patient, 240).await;
    post_ok(
        &app,
        &patient,
        &format!("/api/v1/appointments/{}/cancel", id_of(&dropped)),
        json!({}),
    )
    .await;

    let url = post_ok(&app, &patient, "/api/v1/me/calendar-feed", json!({})).await["url"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(url.starts_with("http://127.0.0.1:8080/calendar/") && url.ends_with(".ics"));
    let (status, body) = feed(&app, &url).await;
    assert_eq!(status, 200, "{body}");
    let events = parse_feed(&body);
    assert_eq!(events.len(), 2, "{body}");
    let by_uid = |id: &str| {
        events
            .iter()
            .find(|e| e["UID"] == format!("{id}@medbook"))
            .unwrap_or_else(|| panic!("no event for {id}: {body}"))
            .clone()
    };
    // UID and SEQUENCE as the e-mails' attachments have them: the version.
    let k = by_uid(&id_of(&kept));
    assert_eq!(k["STATUS"], "CONFIRMED");
    assert_eq!(k["SEQUENCE"], "1");
    let d = by_uid(&id_of(&dropped));
    assert_eq!(d["STATUS"], "CANCELLED");
    assert_eq!(
        d["SEQUENCE"],
        event_of(&app, "appointment.cancelled", &id_of(&dropped))["data"]["version"].to_string()
    );

    let doctor_url = post_ok(&app, &doctor, "/api/v1/doctor/calendar-feed", json!({})).await["url"]
        .as_str()
        .unwrap()
        .to_owned();
    let (status, body) = feed(&app, &doctor_url).await;
    assert_eq!(status, 200);
    assert_eq!(parse_feed(&body).len(), 2);

    // Rotating replaces the URL: the old one is gone.
    let rotated = post_ok(&app, &patient, "/api/v1/me/calendar-feed", json!({})).await["url"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_ne!(rotated, url);
    assert_eq!(feed(&app, &url).await.0, 404);
    assert_eq!(feed(&app, &rotated).await.0, 200);
    // Only patients have a patient feed, only doctors a doctor's.
    let res = app
        .send_json(
            Method::POST,
            "/api/v1/me/calendar-feed",
            Some(&doctor.access),
            &json!({}),
        )
        .await;
    assert_error(res, 403, "forbidden").await;
    assert_eq!(
        feed(&app, "http://127.0.0.1:8080/calendar/nothing.ics")
            .await
            .0,
        404
    );
}
