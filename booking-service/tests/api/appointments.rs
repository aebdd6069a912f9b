//! Booking, cancelling, rescheduling; no double booking under concurrency.

use crate::helpers::{assert_error, practice, spawn_app, spawn_app_with, TestApp};
use diesel::RunQueryDsl;
use reqwest::Method;
use serde_json::{json, Value};
use std::collections::HashMap;

#[tokio::test]
async fn book_list_get_and_cancel() {
    let app = spawn_app().await;
    let p = practice(&app).await;
    let d = p.doctor_id();
    let ann = app.patient().await;
    let bob = app.patient().await;
    let slot = app.create_slot(&p.admin, &d, 60, 30).await;
    let sid = slot["id"].as_str().unwrap();

    let res = app.book(&ann, sid).await;
    assert_eq!(res.status(), 201);
    let appt: Value = res.json().await.unwrap();
    assert_eq!(appt["status"], "booked");
    assert_eq!(appt["doctor_name"], "Dr. Erika Mustermann");
    assert_eq!(appt["time_zone"], "Europe/Berlin");
    assert_eq!(appt["starts_at"], slot["starts_at"]);
    let aid = appt["id"].as_str().unwrap();

    assert_error(app.book(&bob, sid).await, 409, "slot_taken").await;
    let slot_now: Value = app
        .get(&format!("/api/v1/doctors/{d}/slots?status=booked"), None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(slot_now["items"][0]["id"], sid);

    // Patients see only their own.
    assert_eq!(
        app.get(&format!("/api/v1/appointments/{aid}"), Some(&ann.access))
            .await
            .status(),
        200
    );
    assert_error(
        app.get(&format!("/api/v1/appointments/{aid}"), Some(&bob.access))
            .await,
        404,
        "not_found",
    )
    .await;
    let mine: Value = app
        .get("/api/v1/appointments", Some(&ann.access))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(mine["total"], 1);
    let theirs: Value = app
        .get(
            &format!("/api/v1/appointments?patient_id={}", ann.id),
            Some(&bob.access),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(theirs["total"], 0, "patient_id is ignored for patients");
    let res = app
        .send_json(
            Method::POST,
            &format!("/api/v1/appointments/{aid}/cancel"),
            Some(&bob.access),
            &json!({}),
        )
        .await;
    assert_error(res, 404, "not_found").await;

    let res = app
        .send_json(
            Method::POST,
            &format!("/api/v1/appointments/{aid}/cancel"),
            Some(&ann.access),
            &json!({"reason": "feeling better"}),
        )
        .await;
    assert_eq!(res.status(), 200);
    let cancelled: Value = res.json().await.unwrap();
    assert_eq!(cancelled["status"], "cancelled");
    assert_eq!(cancelled["cancel_reason"], "feeling better");
    let res = app
        .send_json(
            Method::POST,
            &format!("/api/v1/appointments/{aid}/cancel"),
            Some(&ann.access),
            &json!({}),
        )
        .await;
    assert_error(res, 409, "appointment_not_active").await;
    // The slot is free again.
    assert_eq!(app.book(&bob, sid).await.status(), 201);
    let filtered: Value = app
        .get("/api/v1/appointments?status=cancelled", Some(&ann.access))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(filtered["total"], 1);

    // Admins list everything, filter, and cancel on behalf with a reason.
    let all: Value = app
        .get(
            &format!("/api/v1/appointments?doctor_id={d}"),
            Some(&p.admin.access),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(all["total"], 2);
    let bobs: Value = app
        .get(
            &format!("/api/v1/appointments?patient_id={}&status=booked", bob.id),
            Some(&p.admin.access),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(bobs["total"], 1);
    let bob_aid = bobs["items"][0]["id"].as_str().unwrap();
    let res = app
        .send_json(
            Method::POST,
            &format!("/api/v1/appointments/{bob_aid}/cancel"),
            Some(&p.admin.access),
            &json!({}),
        )
        .await;
    assert_error(res, 400, "validation_failed").await;
    let res = app
        .send_json(
            Method::POST,
            &format!("/api/v1/appointments/{bob_aid}/cancel"),
            Some(&p.admin.access),
            &json!({"reason": "doctor ill"}),
        )
        .await;
    assert_eq!(res.status(), 200);
    assert_error(
        app.get("/api/v1/appointments?status=done", Some(&ann.access))
            .await,
        400,
        "validation_failed",
    )
    .await;
    assert_error(
        app.get("/api/v1/appointments", None).await,
        401,
        "unauthorized",
    )
    .await;
}

#[tokio::test]
async fn unbookable_slots_get_clear_errors() {
    let app = spawn_app_with(|s| {
        s.booking.horizon_days = 30;
        s.booking.max_active_per_patient = 2;
    })
    .await;
    let p = practice(&app).await;
    let d = p.doctor_id();
    let ann = app.patient().await;

    assert_error(
        app.book(&ann, &uuid::Uuid::new_v4().to_string()).await,
        404,
        "not_found",
    )
    .await;
    let past = app.create_slot(&p.admin, &d, -120, 30).await;
    assert_error(
        app.book(&ann, past["id"].as_str().unwrap()).await,
        422,
        "slot_in_past",
    )
    .await;
    let far = app.create_slot(&p.admin, &d, 40 * 24 * 60, 30).await;
    assert_error(
        app.book(&ann, far["id"].as_str().unwrap()).await,
        422,
        "beyond_booking_horizon",
    )
    .await;
    let blocked = app.create_slot(&p.admin, &d, 60, 30).await;
    let bid = blocked["id"].as_str().unwrap();
    app.send_json(
        Method::POST,
        &format!("/api/v1/slots/{bid}/block"),
        Some(&p.admin.access),
        &json!({}),
    )
    .await;
    assert_error(app.book(&ann, bid).await, 409, "slot_unavailable").await;

    // The cap on upcoming appointments.
    let s1 = app.create_slot(&p.admin, &d, 120, 30).await;
    let s2 = app.create_slot(&p.admin, &d, 180, 30).await;
    let s3 = app.create_slot(&p.admin, &d, 240, 30).await;
    assert_eq!(
        app.book(&ann, s1["id"].as_str().unwrap()).await.status(),
        201
    );
    assert_eq!(
        app.book(&ann, s2["id"].as_str().unwrap()).await.status(),
        201
    );
    assert_error(
        app.book(&ann, s3["id"].as_str().unwrap()).await,
        422,
        "too_many_appointments",
    )
    .await;

    // An inactive doctor takes no bookings.
    let res = app
        .send_json(
            Method::PUT,
            &format!("/api/v1/doctors/{d}"),
            Some(&p.admin.access),
            &json!({"full_name": "Dr. Erika Mustermann", "specialty": "Cardiology", "clinic_id": p.clinic["id"], "status": "inactive"}),
        )
        .await;
    assert_eq!(res.status(), 200);
    let bob = app.patient().await;
    assert_error(
        app.book(&bob, s3["id"].as_str().unwrap()).await,
        422,
        "doctor_unavailable",
    )
    .await;

    // Malformed bookings.
    let res = app
        .send_json(
            Method::POST,
            "/api/v1/appointments",
            Some(&bob.access),
            &json!({"slot_id": "nope"}),
        )
        .await;
    assert_error(res, 400, "invalid_body").await;
    let res = app
        .send_json(
            Method::POST,
            "/api/v1/appointments",
            Some(&bob.access),
            &json!({"slot_id": s3["id"], "reason": "x".repeat(1001)}),
        )
        .await;
    assert_error(res, 400, "validation_failed").await;
    let res = app
        .send_json(
            Method::POST,
            "/api/v1/appointments",
            Some(&p.admin.access),
            &json!({"slot_id": s3["id"]}),
        )
        .await;
    assert_error(res, 403, "forbidden").await;
}

#[tokio::test]
async fn minimum_notice_is_enforced() {
    let app = spawn_app_with(|s| s.booking.min_notice_minutes = 120).await;
    let p = practice(&app).await;
    let ann = app.patient().await;
    let soon = app.create_slot(&p.admin, &p.doctor_id(), 60, 30).await;
    assert_error(
        app.book(&ann, soon["id"].as_str().unwrap()).await,
        422,
        "too_short_notice",
    )
    .await;
    let later = app.create_slot(&p.admin, &p.doctor_id(), 180, 30).await;
    assert_eq!(
        app.book(&ann, later["id"].as_str().unwrap()).await.status(),
        201
    );
}

#[tokio::test]
async fn idempotency_key_replays_the_original_booking() {
    let app = spawn_app().await;
    let p = practice(&app).await;
    let ann = app.patient().await;
    let slot = app.create_slot(&p.admin, &p.doctor_id(), 60, 30).await;
    let other = app.create_slot(&p.admin, &p.doctor_id(), 120, 30).await;
    let send = |slot_id: Value, key: &'static str| {
        app.request(Method::POST, "/api/v1/appointments")
            .bearer_auth(&ann.access)
            .header("idempotency-key", key)
            .json(&json!({"slot_id": slot_id, "reason": "check-up"}))
            .send()
    };
    let first = send(slot["id"].clone(), "key-1").await.unwrap();
    assert_eq!(first.status(), 201);
    let first: Value = first.json().await.unwrap();
    let retry = send(slot["id"].clone(), "key-1").await.unwrap();
    assert_eq!(retry.status(), 200);
    let retry: Value = retry.json().await.unwrap();
    assert_eq!(retry["id"], first["id"]);
    let mine: Value = app
        .get("/api/v1/appointments", Some(&ann.access))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(mine["total"], 1, "no second appointment");
    assert_error(
        send(other["id"].clone(), "key-1").await.unwrap(),
        422,
        "idempotency_key_reused",
    )
    .await;
    let res = app
        .request(Method::POST, "/api/v1/appointments")
        .bearer_auth(&ann.access)
        .header("idempotency-key", "x".repeat(201))
        .json(&json!({"slot_id": other["id"]}))
        .send()
        .await
        .unwrap();
    assert_error(res, 400, "validation_failed").await;
    // Concurrent retries with one key: one appointment.
    let key_slot = app.create_slot(&p.admin, &p.doctor_id(), 180, 30).await;
    let attempts = (0..6).map(|_| send(key_slot["id"].clone(), "key-2"));
    let results = futures_util::future::join_all(attempts).await;
    let statuses: Vec<u16> = results
        .into_iter()
        .map(|r| r.unwrap().status().as_u16())
        .collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == 201).count(),
        1,
        "{statuses:?}"
    );
    assert!(
        statuses.iter().all(|s| *s == 201 || *s == 200),
        "{statuses:?}"
    );
}

#[tokio::test]
async fn reschedule_moves_atomically_within_one_doctor() {
    let app = spawn_app().await;
    let p = practice(&app).await;
    let d = p.doctor_id();
    let ann = app.patient().await;
    let bob = app.patient().await;
    let a = app.create_slot(&p.admin, &d, 60, 30).await;
    let b = app.create_slot(&p.admin, &d, 120, 30).await;
    let taken = app.create_slot(&p.admin, &d, 180, 30).await;
    let other_doctor = app
        .create_doctor(
            &p.admin,
            p.clinic["id"].as_str().unwrap(),
            "Dr. Other",
            "ENT",
        )
        .await;
    let foreign = app
        .create_slot(&p.admin, other_doctor["id"].as_str().unwrap(), 60, 30)
        .await;
    let appt: Value = app
        .book(&ann, a["id"].as_str().unwrap())
        .await
        .json()
        .await
        .unwrap();
    let aid = appt["id"].as_str().unwrap();
    assert_eq!(
        app.book(&bob, taken["id"].as_str().unwrap()).await.status(),
        201
    );
    let url = format!("/api/v1/appointments/{aid}/reschedule");

    let res = app
        .send_json(
            Method::POST,
            &url,
            Some(&ann.access),
            &json!({"slot_id": taken["id"]}),
        )
        .await;
    assert_error(res, 409, "slot_taken").await;
    let res = app
        .send_json(
            Method::POST,
            &url,
            Some(&ann.access),
            &json!({"slot_id": foreign["id"]}),
        )
        .await;
    assert_error(res, 422, "different_doctor").await;
    let res = app
        .send_json(
            Method::POST,
            &url,
            Some(&bob.access),
            &json!({"slot_id": b["id"]}),
        )
        .await;
    assert_error(res, 404, "not_found").await;
    let res = app
        .send_json(
            Method::POST,
            &url,
            Some(&ann.access),
            &json!({"slot_id": a["id"]}),
        )
        .await;
    assert_error(res, 409, "same_slot").await;

    let res = app
        .send_json(
            Method::POST,
            &url,
            Some(&ann.access),
            &json!({"slot_id": b["id"]}),
        )
        .await;
    assert_eq!(res.status(), 200);
    let moved: Value = res.json().await.unwrap();
    assert_eq!(moved["slot_id"], b["id"]);
    assert_eq!(moved["id"], appt["id"]);
    let slots: Value = app
        .get(&format!("/api/v1/doctors/{d}/slots"), None)
        .await
        .json()
        .await
        .unwrap();
    let status: HashMap<String, String> = slots["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["id"].as_str().unwrap().to_owned(),
                s["status"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(status[a["id"].as_str().unwrap()], "available");
    assert_eq!(status[b["id"].as_str().unwrap()], "booked");
    assert_eq!(
        app.book(&bob, a["id"].as_str().unwrap()).await.status(),
        201,
        "old slot freed"
    );
}

#[derive(diesel::QueryableByName, Debug)]
struct Violation {
    #[diesel(sql_type = diesel::sql_types::Text)]
    problem: String,
}

/// Slots whose status disagrees with their appointments, or with two active ones.
fn invariant_violations(app: &TestApp) -> Vec<String> {
    let mut conn = app.db.conn();
    diesel::sql_query(
        "SELECT 'two active appointments on ' || slot_id::text AS problem FROM appointments
           WHERE status = 'booked' GROUP BY slot_id HAVING count(*) > 1
         UNION ALL
         SELECT 'booked slot without appointment ' || s.id::text FROM slots s
           WHERE s.status = 'booked'
             AND NOT EXISTS (SELECT 1 FROM appointments a WHERE a.slot_id = s.id AND a.status = 'booked')
         UNION ALL
         SELECT 'appointment on a non-booked slot ' || s.id::text FROM slots s
           JOIN appointments a ON a.slot_id = s.id AND a.status = 'booked'
           WHERE s.status <> 'booked'",
    )
    .load::<Violation>(&mut conn)
    .unwrap()
    .into_iter()
    .map(|v| v.problem)
    .collect()
}

#[tokio::test]
async fn fifty_concurrent_bookers_of_one_slot_one_wins() {
    let app = spawn_app_with(|s| s.database.pool_size = 10).await;
    let p = practice(&app).await;
    let slot = app.create_slot(&p.admin, &p.doctor_id(), 60, 30).await;
    let sid = slot["id"].as_str().unwrap().to_owned();
    let mut patients = Vec::new();
    for _ in 0..50 {
        patients.push(app.patient().await);
    }
    let attempts = patients.iter().map(|pt| app.book(pt, &sid));
    let results = futures_util::future::join_all(attempts).await;
    let statuses: Vec<u16> = results.iter().map(|r| r.status().as_u16()).collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == 201).count(),
        1,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 409).count(),
        49,
        "{statuses:?}"
    );
    #[derive(diesel::QueryableByName)]
    struct N {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    let active = diesel::sql_query(format!(
        "SELECT count(*) AS n FROM appointments WHERE slot_id = '{sid}' AND status = 'booked'"
    ))
    .get_result::<N>(&mut app.db.conn())
    .unwrap();
    assert_eq!(active.n, 1);
    assert!(invariant_violations(&app).is_empty());
}

#[tokio::test]
async fn random_booking_rescheduling_and_cancelling_never_double_books() {
    let app = spawn_app_with(|s| {
        s.database.pool_size = 10;
        s.booking.max_active_per_patient = 1000;
    })
    .await;
    let p = practice(&app).await;
    let d = p.doctor_id();
    let mut slot_ids = Vec::new();
    for i in 0..20 {
        let s = app.create_slot(&p.admin, &d, 60 + i * 30, 30).await;
        slot_ids.push(s["id"].as_str().unwrap().to_owned());
    }
    let mut clients = Vec::new();
    for _ in 0..32 {
        clients.push(app.patient().await);
    }
    // Appointments each client holds, carried from run to run.
    let mut held: Vec<Vec<String>> = vec![Vec::new(); clients.len()];
    for run in 0..3u64 {
        let tasks = clients
            .iter()
            .zip(std::mem::take(&mut held))
            .enumerate()
            .map(|(i, (client, mut mine))| {
                let app = &app;
                let slot_ids = &slot_ids;
                async move {
                    // A small deterministic PRNG per client and run.
                    let mut state = (run * 1000 + i as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
                    let mut next = move |n: usize| {
                        state ^= state << 13;
                        state ^= state >> 7;
                        state ^= state << 17;
                        (state % n as u64) as usize
                    };
                    let mut statuses = Vec::new();
                    for _ in 0..12 {
                        let op = next(3);
                        let res = if op == 0 || mine.is_empty() {
                            let res = app.book(client, &slot_ids[next(slot_ids.len())]).await;
                            let status = res.status().as_u16();
                            if status == 201 {
                                let body: Value = res.json().await.unwrap();
                                mine.push(body["id"].as_str().unwrap().to_owned());
                            }
                            status
                        } else if op == 1 {
                            let aid = mine[next(mine.len())].clone();
                            let target = &slot_ids[next(slot_ids.len())];
                            app.send_json(
                                Method::POST,
                                &format!("/api/v1/appointments/{aid}/reschedule"),
                                Some(&client.access),
                                &json!({"slot_id": target}),
                            )
                            .await
                            .status()
                            .as_u16()
                        } else {
                            let aid = mine.remove(next(mine.len()));
                            app.send_json(
                                Method::POST,
                                &format!("/api/v1/appointments/{aid}/cancel"),
                                Some(&client.access),
                                &json!({}),
                            )
                            .await
                            .status()
                            .as_u16()
                        };
                        statuses.push(res);
                    }
                    (statuses, mine)
                }
            });
        let mut all: Vec<u16> = Vec::new();
        for (statuses, mine) in futures_util::future::join_all(tasks).await {
            all.extend(statuses);
            held.push(mine);
        }
        assert!(all.iter().all(|s| *s < 500), "5xx in run {run}: {all:?}");
        assert!(
            all.iter().any(|s| *s == 200 || *s == 201),
            "run {run} changed nothing: {all:?}"
        );
        assert!(all.contains(&409), "run {run} had no contention: {all:?}");
        let violations = invariant_violations(&app);
        assert!(violations.is_empty(), "run {run}: {violations:?}");
    }
}

#[tokio::test]
async fn concurrent_reschedules_into_one_slot_one_wins() {
    let app = spawn_app().await;
    let p = practice(&app).await;
    let d = p.doctor_id();
    let target = app.create_slot(&p.admin, &d, 24 * 60, 30).await;
    let mut moves = Vec::new();
    for i in 0..20 {
        let patient = app.patient().await;
        let slot = app.create_slot(&p.admin, &d, 60 + i * 30, 30).await;
        let appt: Value = app
            .book(&patient, slot["id"].as_str().unwrap())
            .await
            .json()
            .await
            .unwrap();
        moves.push((patient, appt["id"].as_str().unwrap().to_owned()));
    }
    let body = json!({"slot_id": target["id"]});
    let urls: Vec<String> = moves
        .iter()
        .map(|(_, aid)| format!("/api/v1/appointments/{aid}/reschedule"))
        .collect();
    let attempts = moves
        .iter()
        .zip(&urls)
        .map(|((patient, _), url)| app.send_json(Method::POST, url, Some(&patient.access), &body));
    let statuses: Vec<u16> = futures_util::future::join_all(attempts)
        .await
        .iter()
        .map(|r| r.status().as_u16())
        .collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        1,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 409).count(),
        19,
        "{statuses:?}"
    );
    assert!(invariant_violations(&app).is_empty());
}
