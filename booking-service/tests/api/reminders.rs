//! Reminders on the real database and broker: written with the booking, replaced on
//! reschedule, removed on cancel; due ones turned into exactly one event each — also
//! with two replicas, and across a SIGKILL of the scheduler mid-batch; due at the
//! right instant across a daylight-saving change.

use crate::helpers::{
    count, id_of as id, post_ok as post, practice, spawn_app_with, TestApp, JWT_SECRET,
};
use booking_service::settings::Settings;
use chrono::{DateTime, TimeZone, Utc};
use diesel::{QueryableByName, RunQueryDsl};
use medbook_test_support::kafka::TestTopics;
use medbook_test_support::metric;
use serde_json::{json, Value};
use std::collections::{HashMap, HashSet};
use std::time::Duration;

#[derive(QueryableByName, Debug, Clone, PartialEq)]
struct ReminderRow {
    #[diesel(sql_type = diesel::sql_types::Uuid)]
    appointment_id: uuid::Uuid,
    #[diesel(sql_type = diesel::sql_types::Text)]
    offset_label: String,
    #[diesel(sql_type = diesel::sql_types::Timestamptz)]
    due_at: DateTime<Utc>,
    #[diesel(sql_type = diesel::sql_types::Integer)]
    version: i32,
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Uuid>)]
    event_id: Option<uuid::Uuid>,
}

fn reminders(app: &TestApp, filter: &str) -> Vec<ReminderRow> {
    diesel::sql_query(format!(
        "SELECT appointment_id, offset_label, due_at, version, event_id
         FROM appointment_reminders WHERE {filter} ORDER BY due_at, appointment_id"
    ))
    .load(&mut app.db.conn())
    .unwrap()
}

fn pending_of(app: &TestApp, appointment: &str) -> Vec<ReminderRow> {
    reminders(
        app,
        &format!("appointment_id = '{appointment}' AND published_at IS NULL"),
    )
}

fn ts(v: &Value, field: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(v[field].as_str().unwrap())
        .unwrap()
        .with_timezone(&Utc)
}

/// A slot of `doctor` from `starts_at`, lasting 30 minutes, written straight to the
/// database (tests need start times to the second); its id.
fn slot_at(app: &TestApp, doctor: &str, starts_at: DateTime<Utc>) -> String {
    let id = uuid::Uuid::new_v4();
    app.db.execute(&format!(
        "INSERT INTO slots (id, doctor_id, starts_at, ends_at, status)
         VALUES ('{id}', '{doctor}', '{}', '{}', 'available')",
        starts_at.to_rfc3339(),
        (starts_at + chrono::Duration::minutes(30)).to_rfc3339()
    ));
    id.to_string()
}

fn relay_and_scheduler(topics: &TestTopics, s: &mut Settings) {
    crate::helpers::quick_relay(topics, s);
    s.reminders.scheduler_enabled = true;
    s.reminders.poll_interval_ms = 100;
}

#[tokio::test]
async fn reminders_are_written_with_the_booking_replaced_on_reschedule_and_removed_on_cancel() {
    // Default offsets (24 h and 2 h); the scheduler is off so rows stay as written.
    let app = spawn_app_with(|s| s.reminders.scheduler_enabled = false).await;
    let p = practice(&app).await;
    let d = p.doctor_id();
    let ann = app.patient().await;

    // Three hours ahead: the day-before reminder has passed, only the 2 h one.
    let soon = app.create_slot(&p.admin, &d, 180, 30).await;
    let a = app.book(&ann, &id(&soon)).await;
    assert_eq!(a.status(), 201);
    let a: Value = a.json().await.unwrap();
    let rows = pending_of(&app, &id(&a));
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0].offset_label, "2h");
    assert_eq!(
        rows[0].due_at,
        ts(&soon, "starts_at") - chrono::Duration::hours(2)
    );
    assert_eq!(rows[0].version, 1);

    // Thirty hours ahead: both.
    let later = app.create_slot(&p.admin, &d, 30 * 60, 30).await;
    let moved_to = app.create_slot(&p.admin, &d, 50 * 60, 30).await;
    let b: Value = app.book(&ann, &id(&later)).await.json().await.unwrap();
    let bid = id(&b);
    let rows = pending_of(&app, &bid);
    let start = ts(&later, "starts_at");
    assert_eq!(
        rows.iter()
            .map(|r| (r.offset_label.as_str(), r.due_at))
            .collect::<Vec<_>>(),
        [
            ("24h", start - chrono::Duration::hours(24)),
            ("2h", start - chrono::Duration::hours(2)),
        ]
    );

    // Rescheduled: the old time's reminders are gone, the new time's in their place.
    post(
        &app,
        &ann,
        &format!("/api/v1/appointments/{bid}/reschedule"),
        json!({"slot_id": id(&moved_to)}),
    )
    .await;
    let rows = pending_of(&app, &bid);
    let start = ts(&moved_to, "starts_at");
    assert_eq!(
        rows.iter()
            .map(|r| (r.offset_label.as_str(), r.due_at, r.version))
            .collect::<Vec<_>>(),
        [
            ("24h", start - chrono::Duration::hours(24), 2),
            ("2h", start - chrono::Duration::hours(2), 2),
        ]
    );

    // Cancelled: none left, and the appointment's version counts every change.
    post(
        &app,
        &ann,
        &format!("/api/v1/appointments/{bid}/cancel"),
        json!({}),
    )
    .await;
    assert!(pending_of(&app, &bid).is_empty());
    assert_eq!(
        count(
            &app,
            &format!("SELECT version::bigint AS n FROM appointments WHERE id = '{bid}'")
        ),
        3
    );
    assert_eq!(
        metric(&app.ops_address, "reminders_scheduled_total").await,
        5.0,
        "1 + 2 + 2 rows written"
    );
}

#[tokio::test]
async fn a_reminder_across_a_daylight_saving_change_is_due_at_the_right_instant() {
    let app = spawn_app_with(|s| {
        s.reminders.scheduler_enabled = false;
        s.reminders.offsets = vec!["24h".into(), "2d".into()];
        s.booking.horizon_days = 400;
    })
    .await;
    let p = practice(&app).await; // a clinic in Europe/Berlin
    let patient = app.patient().await;
    // Monday 29 March 2027, 10:00 CEST; the clocks went forward on the Sunday at 02:00.
    let starts = Utc.with_ymd_and_hms(2027, 3, 29, 8, 0, 0).unwrap();
    let slot = slot_at(&app, &p.doctor_id(), starts);
    let booked: Value = app.book(&patient, &slot).await.json().await.unwrap();
    let rows = pending_of(&app, &id(&booked));
    assert_eq!(
        rows.iter()
            .map(|r| (r.offset_label.as_str(), r.due_at))
            .collect::<Vec<_>>(),
        [
            // Two days before on the wall clock: Saturday 10:00 CET = 09:00Z (49 h).
            ("2d", Utc.with_ymd_and_hms(2027, 3, 27, 9, 0, 0).unwrap()),
            // Exactly 24 hours before: Sunday 08:00Z = 10:00 CEST.
            ("24h", Utc.with_ymd_and_hms(2027, 3, 28, 8, 0, 0).unwrap()),
        ]
    );
}

#[tokio::test]
async fn due_reminders_become_one_event_each_and_moved_or_cancelled_ones_none() {
    let topics = TestTopics::shared(2).await;
    let app = spawn_app_with(|s| {
        relay_and_scheduler(&topics, s);
        s.reminders.offsets = vec!["1h".into()];
    })
    .await;
    let p = practice(&app).await;
    let clinic = id(&p.clinic);
    let d1 = p.doctor_id();
    let d2 = id(&app
        .create_doctor(&p.admin, &clinic, "Dr. Two", "Dermatology")
        .await);
    let d3 = id(&app
        .create_doctor(&p.admin, &clinic, "Dr. Three", "Neurology")
        .await);
    // Three patients: one patient's appointments never overlap in time.
    let (patient, second, third) = (
        app.patient().await,
        app.patient().await,
        app.patient().await,
    );
    // Each slot starts an hour and a few seconds from now: the 1 h reminder is due in
    // a few seconds.
    let start = Utc::now() + chrono::Duration::seconds(3600 + 6);
    let start = start - chrono::Duration::nanoseconds(start.timestamp_subsec_nanos().into());
    let kept = slot_at(&app, &d1, start);
    let far = slot_at(&app, &d2, start + chrono::Duration::hours(5));
    let moved_to = slot_at(&app, &d2, start);
    let dropped = slot_at(&app, &d3, start);

    let a: Value = app.book(&patient, &kept).await.json().await.unwrap();
    let b: Value = app.book(&second, &far).await.json().await.unwrap();
    let c: Value = app.book(&third, &dropped).await.json().await.unwrap();
    // b's reminder was written for five hours ahead; moving it replaces it.
    assert_eq!(pending_of(&app, &id(&b)).len(), 1);
    post(
        &app,
        &second,
        &format!("/api/v1/appointments/{}/reschedule", id(&b)),
        json!({"slot_id": moved_to}),
    )
    .await;
    post(
        &app,
        &third,
        &format!("/api/v1/appointments/{}/cancel", id(&c)),
        json!({}),
    )
    .await;

    let mut reader = topics.reader(&["appointments.reminders"]).await;
    // All three were due at the same instant: a second after the two, a third would
    // have been there too.
    let seen = reader
        .read(2, Duration::from_secs(30), Duration::from_secs(2))
        .await
        .to_vec();
    assert_eq!(seen.len(), 2, "{seen:?}");
    let by_key: HashMap<String, Value> = seen
        .iter()
        .map(|r| (r.key.clone().unwrap(), r.json()))
        .collect();
    let ra = &by_key[&id(&a)];
    assert_eq!(ra["type"], "appointment.reminder");
    assert_eq!(ra["data"]["version"], 1);
    assert_eq!(ra["data"]["offset"], "1h");
    assert_eq!(ra["data"]["patient"]["email"], patient.email.as_str());
    let rb = &by_key[&id(&b)];
    assert_eq!(rb["data"]["version"], 2, "the moved appointment's version");
    assert_eq!(ts(&rb["data"], "starts_at"), start, "the new time");
    assert!(!by_key.contains_key(&id(&c)));
    // The rows record the events they became.
    let published = reminders(&app, "published_at IS NOT NULL");
    assert_eq!(published.len(), 2);
    let ids: HashSet<String> = seen
        .iter()
        .map(|r| r.json()["id"].as_str().unwrap().to_owned())
        .collect();
    for r in &published {
        assert!(ids.contains(&r.event_id.unwrap().to_string()));
    }
    assert_eq!(
        metric(&app.ops_address, "reminders_published_total").await,
        2.0
    );
    assert_eq!(
        metric(&app.ops_address, "reminder_scheduler_lag_seconds_count").await,
        2.0
    );
}

/// Books `n` appointments 30 hours ahead and makes their reminders due now, as if the
/// clock had moved on; returns how many rows that made due.
async fn due_bookings(app: &TestApp, n: usize) -> i64 {
    let p = practice(app).await;
    let d = p.doctor_id();
    let patient = app.patient().await;
    let first = Utc::now() + chrono::Duration::hours(30);
    for i in 0..n {
        let slot = slot_at(app, &d, first + chrono::Duration::minutes(30 * i as i64));
        assert_eq!(app.book(&patient, &slot).await.status(), 201);
    }
    app.db
        .execute("UPDATE appointment_reminders SET due_at = now() WHERE published_at IS NULL");
    count(
        app,
        "SELECT count(*) AS n FROM appointment_reminders WHERE published_at IS NULL",
    )
}

fn reminder_events(app: &TestApp) -> i64 {
    count(
        app,
        "SELECT count(*) AS n FROM outbox_events WHERE event_type = 'appointment.reminder'",
    )
}

#[tokio::test]
async fn a_replica_passes_over_the_rows_another_holds_and_claims_the_next_free_ones() {
    use booking_service::repository::{Db, PgReminders, PoolSettings};
    use booking_service::service::reminders::ReminderStore;
    let a = spawn_app_with(|s| {
        s.reminders.offsets = vec!["24h".into()];
        s.reminders.scheduler_enabled = false;
        s.booking.max_active_per_patient = 1000;
    })
    .await;
    assert_eq!(due_bookings(&a, 10).await, 10);
    // Another replica's batch holds the five first due rows, mid-transaction.
    let mut other = a.db.conn();
    diesel::sql_query("BEGIN").execute(&mut other).unwrap();
    let held = diesel::sql_query(
        "SELECT r.id FROM appointment_reminders r JOIN appointments a ON a.id = r.appointment_id
         WHERE r.published_at IS NULL ORDER BY r.due_at LIMIT 5 FOR UPDATE OF r, a",
    )
    .execute(&mut other)
    .unwrap();
    assert_eq!(held, 5);
    let store = PgReminders::new(
        Db::new(&PoolSettings {
            url: a.db.url(),
            max_size: 2,
            connect_timeout: Duration::from_secs(5),
            statement_timeout: Duration::from_secs(5),
        })
        .unwrap(),
        a.settings.manage_links(),
    );
    // This replica claims the next five at once: work shared, not taken in turns.
    let batch = store.publish_due(Utc::now(), 5).await.unwrap();
    assert_eq!(batch.published.len(), 5);
    diesel::sql_query("ROLLBACK").execute(&mut other).unwrap();
    let batch = store.publish_due(Utc::now(), 10).await.unwrap();
    assert_eq!(
        batch.published.len(),
        5,
        "the five the other replica let go of"
    );
    assert_eq!(reminder_events(&a), 10);
}

#[tokio::test]
async fn two_replicas_publish_each_reminder_once() {
    let topics = TestTopics::shared(3).await;
    let a = spawn_app_with(|s| {
        relay_and_scheduler(&topics, s);
        s.reminders.offsets = vec!["24h".into()];
        s.reminders.batch_size = 5;
        s.reminders.scheduler_enabled = false; // until the rows are due
        s.booking.max_active_per_patient = 1000;
    })
    .await;
    let due = due_bookings(&a, 60).await;
    assert_eq!(due, 60);
    // Two replicas on the same database, each with its scheduler.
    let mut bases = Vec::new();
    for _ in 0..2 {
        let mut settings = a.settings.clone();
        settings.http.addr = "127.0.0.1:0".into();
        settings.reminders.scheduler_enabled = true;
        let replica = booking_service::startup::Application::build(settings)
            .await
            .unwrap();
        bases.push(format!("http://127.0.0.1:{}", replica.ops_port()));
        tokio::spawn(replica.run_until_stopped());
    }
    medbook_test_support::eventually(
        "every reminder published",
        Duration::from_secs(30),
        || async {
            (count(
                &a,
                "SELECT count(*) AS n FROM appointment_reminders WHERE published_at IS NULL",
            ) == 0)
                .then_some(())
        },
    )
    .await;
    assert_eq!(reminder_events(&a), 60, "one event per reminder");
    assert_eq!(
        count(
            &a,
            "SELECT count(DISTINCT aggregate_id) AS n FROM outbox_events WHERE event_type = 'appointment.reminder'"
        ),
        60
    );
    let mut published = 0.0;
    for base in &bases {
        published += metric(base, "reminders_published_total").await;
    }
    assert_eq!(published, 60.0);
    let mut reader = topics.reader(&["appointments.reminders"]).await;
    let seen = reader
        .read(60, Duration::from_secs(30), Duration::from_secs(2))
        .await;
    let ids: HashSet<String> = seen
        .iter()
        .map(|r| r.json()["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids.len(), 60);
    assert_eq!(seen.len(), 60, "no reminder published twice");
}

/// The real binary's scheduler, killed with SIGKILL while it works through due
/// reminders in batches: a batch is all or nothing, so after a restart every reminder
/// has exactly one event.
#[tokio::test]
async fn the_scheduler_killed_mid_batch_and_restarted_publishes_each_reminder_once() {
    let topics = TestTopics::shared(3).await;
    let app = spawn_app_with(|s| {
        s.reminders.offsets = vec!["24h".into()];
        s.reminders.scheduler_enabled = false;
        s.booking.max_active_per_patient = 1000;
    })
    .await;
    let total = due_bookings(&app, 400).await;
    assert_eq!(total, 400);

    let spawn = || {
        std::process::Command::new(env!("CARGO_BIN_EXE_booking-service"))
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .current_dir(std::env::temp_dir())
            .env("MEDBOOK_PROFILE", "dev")
            .env("MEDBOOK_AUTH__JWT_SECRET", JWT_SECRET)
            .env("MEDBOOK_DATABASE__URL", app.db.url())
            .env("MEDBOOK_HTTP__ADDR", "127.0.0.1:0")
            .env("MEDBOOK_HTTP__OPS_ADDR", "127.0.0.1:0")
            .env("MEDBOOK_GRPC__ADDR", "127.0.0.1:0")
            .env("MEDBOOK_REDIS__URL", crate::helpers::redis_url())
            .env("MEDBOOK_KAFKA__BROKERS", &topics.brokers)
            .env("MEDBOOK_KAFKA__TOPIC_PREFIX", &topics.prefix)
            .env("MEDBOOK_OUTBOX__POLL_INTERVAL_MS", "100")
            .env("MEDBOOK_OUTBOX__LEASE_MS", "4000")
            .env("MEDBOOK_OUTBOX__MESSAGE_TIMEOUT_MS", "3000")
            .env("MEDBOOK_REMINDERS__BATCH_SIZE", "5")
            .env("MEDBOOK_REMINDERS__POLL_INTERVAL_MS", "100")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap()
    };
    let published = || {
        count(
            &app,
            "SELECT count(*) AS n FROM appointment_reminders WHERE published_at IS NOT NULL",
        )
    };
    let mut child = spawn();
    // Killed as soon as it is under way.
    medbook_test_support::eventually(
        "the scheduler to be under way",
        Duration::from_secs(60),
        || async { (published() > 0).then_some(()) },
    )
    .await;
    std::process::Command::new("kill")
        .args(["-KILL", &child.id().to_string()])
        .status()
        .unwrap();
    child.wait().unwrap();
    let before = published();
    assert!(
        before < total,
        "the kill came too late to test anything: {before}"
    );
    // Each committed batch has its events, and nothing of a batch in flight survived.
    assert_eq!(reminder_events(&app), before);

    let mut child = spawn();
    medbook_test_support::eventually(
        "every reminder published",
        Duration::from_secs(60),
        || async { (published() == total).then_some(()) },
    )
    .await;
    assert_eq!(reminder_events(&app), total, "one event per reminder");
    assert_eq!(
        count(
            &app,
            "SELECT count(DISTINCT r.event_id) AS n FROM appointment_reminders r
             JOIN outbox_events o ON o.id = r.event_id"
        ),
        total
    );
    let mut reader = topics.reader(&["appointments.reminders"]).await;
    let seen = reader
        .read(
            total as usize,
            Duration::from_secs(60),
            Duration::from_secs(2),
        )
        .await;
    let _ = child.kill();
    let _ = child.wait();
    // The relay may publish an event twice around a kill (same id: the consumer's
    // delivery log sends one email); per appointment there is one reminder event.
    let mut per_appointment: HashMap<String, HashSet<String>> = HashMap::new();
    for r in seen {
        per_appointment
            .entry(r.key.clone().unwrap())
            .or_default()
            .insert(r.json()["id"].as_str().unwrap().to_owned());
    }
    assert_eq!(per_appointment.len(), total as usize);
    assert!(per_appointment.values().all(|ids| ids.len() == 1));
}
