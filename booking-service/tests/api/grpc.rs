//! The gRPC ScheduleService against the real application: every RPC's success and
//! error cases, the caller's token and role, and the live day stream.

use crate::helpers::{practice, spawn_app, TestApp, TestUser};
use medbook_proto::schedule::v1 as pb;
use medbook_proto::schedule::v1::schedule_service_client::ScheduleServiceClient;
use reqwest::Method;
use serde_json::{json, Value};
use std::time::Duration;
use tokio_stream::StreamExt;
use tonic::Code;
use tonic_types::StatusExt;

pub(crate) async fn client(app: &TestApp) -> ScheduleServiceClient<tonic::transport::Channel> {
    ScheduleServiceClient::connect(app.grpc_address.clone())
        .await
        .unwrap()
}

pub(crate) fn authed<T>(message: T, user: &TestUser) -> tonic::Request<T> {
    let mut req = tonic::Request::new(message);
    req.metadata_mut().insert(
        "authorization",
        format!("Bearer {}", user.access).parse().unwrap(),
    );
    req
}

fn ts(t: chrono::DateTime<chrono::Utc>) -> prost_types::Timestamp {
    medbook_proto::time::to_proto(t)
}

#[tokio::test]
async fn available_slots_match_the_http_listing_and_its_rules() {
    let app = spawn_app().await;
    let p = practice(&app).await;
    let d = p.doctor_id();
    let free = app.create_slot(&p.admin, &d, 60, 30).await;
    let taken = app.create_slot(&p.admin, &d, 120, 30).await;
    let patient = app.patient().await;
    assert_eq!(
        app.book(&patient, taken["id"].as_str().unwrap())
            .await
            .status(),
        201
    );

    let mut c = client(&app).await;
    let slots = c
        .get_available_slots(pb::GetAvailableSlotsRequest {
            doctor_id: d.clone(),
            from: None,
            to: None,
        })
        .await
        .unwrap()
        .into_inner()
        .slots;
    let ids: Vec<&str> = slots.iter().map(|s| s.id.as_str()).collect();
    assert_eq!(ids, vec![free["id"].as_str().unwrap()]);

    let http: Value = app
        .get(&format!("/api/v1/doctors/{d}/slots?status=available"), None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(http["items"].as_array().unwrap().len(), slots.len());

    // A bad id and a range the HTTP listing refuses, each named as a field violation.
    let err = c
        .get_available_slots(pb::GetAvailableSlotsRequest {
            doctor_id: "not-a-uuid".into(),
            from: None,
            to: None,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    let violations = err.get_details_bad_request().unwrap().field_violations;
    assert_eq!(violations[0].field, "doctor_id");
    let now = chrono::Utc::now();
    let err = c
        .get_available_slots(pb::GetAvailableSlotsRequest {
            doctor_id: d,
            from: Some(ts(now)),
            to: Some(ts(now - chrono::Duration::hours(1))),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    assert!(!err
        .get_details_bad_request()
        .unwrap()
        .field_violations
        .is_empty());
}

#[tokio::test]
async fn book_slot_follows_the_http_rules() {
    let app = spawn_app().await;
    let p = practice(&app).await;
    let d = p.doctor_id();
    let slot = app.create_slot(&p.admin, &d, 60, 30).await;
    let slot_id = slot["id"].as_str().unwrap().to_owned();
    let patient = app.patient().await;
    let mut c = client(&app).await;
    let book = |slot_id: &str, key: &str| pb::BookSlotRequest {
        slot_id: slot_id.to_owned(),
        reason: "check-up".into(),
        idempotency_key: key.to_owned(),
    };

    // No token; a malformed one; an admin's (only patients book).
    let err = c.book_slot(book(&slot_id, "")).await.unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
    let mut req = tonic::Request::new(book(&slot_id, ""));
    req.metadata_mut()
        .insert("authorization", "Bearer nonsense".parse().unwrap());
    assert_eq!(
        c.book_slot(req).await.unwrap_err().code(),
        Code::Unauthenticated
    );
    let err = c
        .book_slot(authed(book(&slot_id, ""), &p.admin))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);

    // Invalid fields, all reported.
    let err = c
        .book_slot(authed(
            pb::BookSlotRequest {
                slot_id: "x".into(),
                reason: "a".repeat(1001),
                idempotency_key: "has space".into(),
            },
            &patient,
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    let mut fields: Vec<String> = err
        .get_details_bad_request()
        .unwrap()
        .field_violations
        .into_iter()
        .map(|v| v.field)
        .collect();
    fields.sort();
    assert_eq!(fields, ["idempotency_key", "reason", "slot_id"]);

    // An unknown slot; an unverified patient.
    let err = c
        .book_slot(authed(
            book(&uuid::Uuid::new_v4().to_string(), ""),
            &patient,
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    let unverified = app.unverified_patient().await;
    let err = c
        .book_slot(authed(book(&slot_id, ""), &unverified))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert_eq!(
        err.get_details_error_info().unwrap().reason,
        "email_unverified"
    );

    // Booked; a retry with the key replays it; the slot is then taken for anyone else.
    let a = c
        .book_slot(authed(book(&slot_id, "grpc-key-1"), &patient))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(a.slot_id, slot_id);
    assert_eq!(a.patient_id, patient.id.to_string());
    assert_eq!(a.status, "booked");
    let again = c
        .book_slot(authed(book(&slot_id, "grpc-key-1"), &patient))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(again.id, a.id);
    let other = app.patient().await;
    let err = c
        .book_slot(authed(book(&slot_id, ""), &other))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Aborted);
    assert_eq!(err.get_details_error_info().unwrap().reason, "slot_taken");

    // The HTTP API sees the booking made over gRPC.
    let res = app
        .get(
            &format!("/api/v1/appointments/{}", a.id),
            Some(&patient.access),
        )
        .await;
    assert_eq!(res.status(), 200);
}

/// Cancelling over gRPC keeps the HTTP rules, held by the use case: an admin must give
/// a reason, a patient cancels only their own, a doctor not at all.
#[tokio::test]
async fn cancel_appointment_holds_the_admin_reason_rule() {
    let app = spawn_app().await;
    let p = practice(&app).await;
    let d = p.doctor_id();
    let slot = app.create_slot(&p.admin, &d, 60, 30).await;
    let patient = app.patient().await;
    let booked: Value = app
        .book(&patient, slot["id"].as_str().unwrap())
        .await
        .json()
        .await
        .unwrap();
    let id = booked["id"].as_str().unwrap().to_owned();
    let mut c = client(&app).await;
    let cancel = |reason: &str| pb::CancelAppointmentRequest {
        appointment_id: id.clone(),
        reason: reason.to_owned(),
    };

    // An admin without a reason (none, or blanks): refused, and nothing changed.
    for blank in ["", "   "] {
        let err = c
            .cancel_appointment(authed(cancel(blank), &p.admin))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{blank:?}");
        let violations = err.get_details_bad_request().unwrap().field_violations;
        assert_eq!(violations.len(), 1);
        assert_eq!(violations[0].field, "reason");
        assert_eq!(
            violations[0].description,
            "is required when an admin cancels"
        );
    }
    let still: Value = app
        .get(&format!("/api/v1/appointments/{id}"), Some(&patient.access))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(still["status"], "booked");

    // Another patient: not found; a doctor: not allowed; a bad id: its field.
    let other = app.patient().await;
    let err = c
        .cancel_appointment(authed(cancel(""), &other))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    let err = c
        .cancel_appointment(authed(
            pb::CancelAppointmentRequest {
                appointment_id: "nope".into(),
                reason: String::new(),
            },
            &patient,
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert_eq!(
        err.get_details_bad_request().unwrap().field_violations[0].field,
        "appointment_id"
    );

    // With a reason the admin cancels; the patient reads it over HTTP.
    let cancelled = c
        .cancel_appointment(authed(cancel("the doctor is ill"), &p.admin))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(cancelled.status, "cancelled");
    let read: Value = app
        .get(&format!("/api/v1/appointments/{id}"), Some(&patient.access))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(read["cancel_reason"], "the doctor is ill");
}

/// A user with role `doctor` (there is no sign-up for doctors: the role is set in the
/// database), linked to the doctor by an admin over HTTP.
pub(crate) async fn doctor_user(app: &TestApp, admin: &TestUser, doctor: &Value) -> TestUser {
    let user = app.patient().await;
    app.db.execute(&format!(
        "UPDATE users SET role = 'doctor' WHERE id = '{}'",
        user.id
    ));
    let res = app
        .send_json(
            Method::PUT,
            &format!("/api/v1/doctors/{}", doctor["id"].as_str().unwrap()),
            Some(&admin.access),
            &json!({
                "full_name": doctor["full_name"],
                "specialty": doctor["specialty"],
                "clinic_id": doctor["clinic"]["id"],
                "years_of_experience": 7,
                "user_id": user.id,
            }),
        )
        .await;
    assert_eq!(res.status(), 200, "{}", res.text().await.unwrap());
    let res = app.login(&user.email, &user.password).await;
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    TestUser {
        access: body["access_token"].as_str().unwrap().to_owned(),
        ..user
    }
}

pub(crate) async fn next_event_within(
    stream: &mut tonic::Streaming<pb::DayEvent>,
    deadline: Duration,
) -> pb::day_event::Kind {
    tokio::time::timeout(deadline, stream.next())
        .await
        .unwrap_or_else(|_| panic!("no message within {deadline:?}"))
        .expect("stream ended")
        .expect("stream failed")
        .kind
        .expect("empty event")
}

#[tokio::test]
async fn a_watcher_sees_the_snapshot_then_bookings_and_cancellations_live() {
    let app = spawn_app().await;
    let p = practice(&app).await;
    let d = p.doctor_id();
    let early = app.create_slot(&p.admin, &d, 30, 30).await;
    let late = app.create_slot(&p.admin, &d, 90, 30).await;
    let patient = app.patient().await;
    let first = app.book(&patient, early["id"].as_str().unwrap()).await;
    assert_eq!(first.status(), 201);
    let first: Value = first.json().await.unwrap();

    // The day in the clinic's zone (Europe/Berlin) of the first slot.
    let starts: chrono::DateTime<chrono::Utc> =
        early["starts_at"].as_str().unwrap().parse().unwrap();
    let date = starts
        .with_timezone(&chrono_tz::Europe::Berlin)
        .date_naive()
        .to_string();
    let late_starts: chrono::DateTime<chrono::Utc> =
        late["starts_at"].as_str().unwrap().parse().unwrap();
    let same_day = late_starts
        .with_timezone(&chrono_tz::Europe::Berlin)
        .date_naive()
        .to_string()
        == date;

    let mut c = client(&app).await;
    // A patient may not watch; an admin may; so may the doctor's own account.
    let err = c
        .stream_daily_appointments(authed(
            pb::StreamDailyAppointmentsRequest {
                doctor_id: d.clone(),
                date: date.clone(),
            },
            &patient,
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    let err = c
        .stream_daily_appointments(authed(
            pb::StreamDailyAppointmentsRequest {
                doctor_id: d.clone(),
                date: "2026-13-01".into(),
            },
            &p.admin,
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    let doctor = doctor_user(&app, &p.admin, &p.doctor).await;

    let mut stream = c
        .stream_daily_appointments(authed(
            pb::StreamDailyAppointmentsRequest {
                doctor_id: d.clone(),
                date: date.clone(),
            },
            &doctor,
        ))
        .await
        .unwrap()
        .into_inner();
    let pb::day_event::Kind::Snapshot(snapshot) =
        next_event_within(&mut stream, Duration::from_secs(5)).await
    else {
        panic!("the first message is the snapshot");
    };
    assert_eq!(snapshot.time_zone, "Europe/Berlin");
    assert_eq!(snapshot.appointments.len(), 1);
    assert_eq!(snapshot.appointments[0].id, first["id"].as_str().unwrap());

    // A booking over HTTP arrives (the late slot may fall on the next local day near
    // midnight; then the cancellation of the first one is what this day sees).
    let other = app.patient().await;
    let booked = app.book(&other, late["id"].as_str().unwrap()).await;
    assert_eq!(booked.status(), 201);
    let booked: Value = booked.json().await.unwrap();
    if same_day {
        // Within a second of the booking's response.
        let pb::day_event::Kind::Change(change) =
            next_event_within(&mut stream, Duration::from_secs(1)).await
        else {
            panic!("a change after the snapshot");
        };
        assert_eq!(change.kind(), pb::ChangeKind::Booked);
        assert_eq!(
            change.appointment.unwrap().id,
            booked["id"].as_str().unwrap()
        );
    }
    let res = app
        .send_json(
            Method::POST,
            &format!(
                "/api/v1/appointments/{}/cancel",
                first["id"].as_str().unwrap()
            ),
            Some(&patient.access),
            &json!({"reason": "travelling"}),
        )
        .await;
    assert_eq!(res.status(), 200);
    let pb::day_event::Kind::Change(change) =
        next_event_within(&mut stream, Duration::from_secs(1)).await
    else {
        panic!("the cancellation");
    };
    assert_eq!(change.kind(), pb::ChangeKind::Cancelled);
    assert_eq!(
        change.appointment.unwrap().id,
        first["id"].as_str().unwrap()
    );

    // Another doctor's day stays closed to this doctor, over gRPC and HTTP.
    let clinic = p.clinic["id"].as_str().unwrap();
    let second = app
        .create_doctor(&p.admin, clinic, "Dr. Other Person", "Dermatology")
        .await;
    let err = c
        .stream_daily_appointments(authed(
            pb::StreamDailyAppointmentsRequest {
                doctor_id: second["id"].as_str().unwrap().to_owned(),
                date: date.clone(),
            },
            &doctor,
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    let day: Value = app
        .get(
            &format!("/api/v1/doctor/appointments?date={date}"),
            Some(&doctor.access),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(day["doctor_id"], d.as_str());
    assert_eq!(day["time_zone"], "Europe/Berlin");
    for a in day["appointments"].as_array().unwrap() {
        assert_eq!(a["doctor_id"], d.as_str());
        assert_ne!(a["status"], "cancelled");
    }
    // Patients and admins are not doctors.
    let res = app
        .get("/api/v1/doctor/appointments", Some(&patient.access))
        .await;
    assert_eq!(res.status(), 403);
}

#[tokio::test]
async fn a_watcher_that_never_reads_does_not_slow_bookings() {
    let app = spawn_app().await;
    let p = practice(&app).await;
    let d = p.doctor_id();
    let mut c = client(&app).await;
    let date = chrono::Utc::now()
        .with_timezone(&chrono_tz::Europe::Berlin)
        .date_naive()
        .to_string();
    // Opened and never read.
    let _stalled = c
        .stream_daily_appointments(authed(
            pb::StreamDailyAppointmentsRequest {
                doctor_id: d.clone(),
                date,
            },
            &p.admin,
        ))
        .await
        .unwrap();
    let patient = app.patient().await;
    for i in 0..8 {
        let slot = app.create_slot(&p.admin, &d, 10 + i * 5, 5).await;
        let res = app.book(&patient, slot["id"].as_str().unwrap()).await;
        assert_eq!(res.status(), 201, "booking {i}");
    }
}

/// Reads the stream until it ends with a status, within `deadline`.
async fn end_status_within(
    stream: &mut tonic::Streaming<pb::DayEvent>,
    deadline: Duration,
) -> tonic::Status {
    tokio::time::timeout(deadline, async {
        loop {
            match stream.next().await {
                Some(Ok(_)) => continue,
                Some(Err(status)) => return status,
                None => panic!("the stream ended without a status"),
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("the stream was still open after {deadline:?}"))
}

async fn watch(
    c: &mut ScheduleServiceClient<tonic::transport::Channel>,
    doctor_id: &str,
    user: &TestUser,
) -> tonic::Streaming<pb::DayEvent> {
    let mut stream = c
        .stream_daily_appointments(authed(
            pb::StreamDailyAppointmentsRequest {
                doctor_id: doctor_id.to_owned(),
                date: chrono::Utc::now().date_naive().to_string(),
            },
            user,
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(matches!(
        next_event_within(&mut stream, Duration::from_secs(5)).await,
        pb::day_event::Kind::Snapshot(_)
    ));
    stream
}

/// A day watch lasts only as long as the access it was opened with: unlinking the
/// doctor's account (in the database, behind the cache's back), logging out and the
/// token's own expiry each end it.
#[tokio::test]
async fn a_day_watch_ends_with_its_access() {
    let app = crate::helpers::spawn_app_with(|s| s.grpc.watch_recheck_secs = 1).await;
    let p = practice(&app).await;
    let d = p.doctor_id();
    let doctor = doctor_user(&app, &p.admin, &p.doctor).await;
    let mut c = client(&app).await;
    // The doctor is read (and cached) before it is unlinked behind the cache's back.
    assert_eq!(
        app.get(&format!("/api/v1/doctors/{d}"), None)
            .await
            .status(),
        200
    );

    let mut stream = watch(&mut c, &d, &doctor).await;
    app.db.execute(&format!(
        "UPDATE doctors SET user_id = NULL WHERE id = '{d}'"
    ));
    let status = end_status_within(&mut stream, Duration::from_secs(5)).await;
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    // Nor can it be opened again from the cached doctor.
    let err = c
        .stream_daily_appointments(authed(
            pb::StreamDailyAppointmentsRequest {
                doctor_id: d.clone(),
                date: chrono::Utc::now().date_naive().to_string(),
            },
            &doctor,
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);

    // Logged out: the admin's watch ends.
    let mut stream = watch(&mut c, &d, &p.admin).await;
    let res = app
        .send_json(
            Method::POST,
            "/api/v1/auth/logout",
            Some(&p.admin.access),
            &json!({"refresh_token": p.admin.refresh}),
        )
        .await;
    assert_eq!(res.status(), 204);
    let status = end_status_within(&mut stream, Duration::from_secs(5)).await;
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");

    // A token that expires ends its watch when it does.
    let app = crate::helpers::spawn_app_with(|s| s.auth.access_token_ttl_secs = 3).await;
    let p = practice(&app).await;
    let mut c = client(&app).await;
    let mut stream = watch(&mut c, &p.doctor_id(), &p.admin).await;
    let status = end_status_within(&mut stream, Duration::from_secs(8)).await;
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    assert!(status.message().contains("expired"), "{status:?}");
}

/// A doctor records attendance over gRPC under the HTTP rules, and the day they watch
/// names its patients.
#[tokio::test]
async fn a_doctor_records_attendance_and_sees_named_patients() {
    let app = spawn_app().await;
    let p = practice(&app).await;
    let doctor = doctor_user(&app, &p.admin, &p.doctor).await;
    let patient = app.patient().await;
    let slot = app.create_slot(&p.admin, &p.doctor_id(), 60, 30).await;
    let booked: Value = app
        .book(&patient, slot["id"].as_str().unwrap())
        .await
        .json()
        .await
        .unwrap();
    let id = booked["id"].as_str().unwrap().to_owned();
    let mut c = client(&app).await;
    let mark = |outcome: &str| pb::RecordAttendanceRequest {
        appointment_id: id.clone(),
        outcome: outcome.to_owned(),
    };
    let err = c
        .record_attendance(authed(mark("no_show"), &doctor))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    let err = c
        .record_attendance(authed(mark("late"), &doctor))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert_eq!(
        err.get_details_bad_request().unwrap().field_violations[0].field,
        "outcome"
    );
    let err = c
        .record_attendance(authed(mark("no_show"), &patient))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);

    // The day the doctor watches names the patient.
    let date = chrono::DateTime::parse_from_rfc3339(slot["starts_at"].as_str().unwrap())
        .unwrap()
        .with_timezone(&chrono_tz::Europe::Berlin)
        .date_naive()
        .to_string();
    let mut stream = c
        .stream_daily_appointments(authed(
            pb::StreamDailyAppointmentsRequest {
                doctor_id: p.doctor_id(),
                date,
            },
            &doctor,
        ))
        .await
        .unwrap()
        .into_inner();
    let pb::day_event::Kind::Snapshot(day) =
        next_event_within(&mut stream, Duration::from_secs(10)).await
    else {
        panic!("a snapshot first")
    };
    let shown = day.appointments.iter().find(|a| a.id == id).unwrap();
    assert_eq!(shown.patient_name, "Test Patient");

    app.db.execute(&format!(
        "UPDATE slots SET starts_at = now() - interval '1 hour', ends_at = now() - interval '30 minutes'
          WHERE id = '{}'",
        slot["id"].as_str().unwrap()
    ));
    let marked = c
        .record_attendance(authed(mark("attended"), &doctor))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(marked.status, "completed");
    let err = c
        .record_attendance(authed(mark("no_show"), &p.admin))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Aborted, "{err:?}");
}
