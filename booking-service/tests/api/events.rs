//! Appointment events on the real broker: one per change, written in the change's
//! transaction and published by the outbox relay — also across a broker outage, a
//! SIGKILL of the service, and with two relays on one database.

use crate::helpers::{
    count, id_of as id, post_ok as post, practice, spawn_app_with, TestApp, JWT_SECRET,
};
use booking_service::settings::Settings;
use diesel::{QueryableByName, RunQueryDsl};
use medbook_test_support::kafka::{PrivateBroker, Received, TestTopics};
use medbook_test_support::process::{service_command, ServiceProcess};
use reqwest::Method;
use serde_json::{json, Value};
use std::collections::{HashMap, HashSet};
use std::time::Duration;

const EVENT_TOPICS: [&str; 3] = [
    "appointments.created",
    "appointments.cancelled",
    "appointments.rescheduled",
];

/// The relay on, publishing to `topics`, quick to retry.
fn relay_to(topics: &TestTopics) -> impl FnOnce(&mut Settings) + '_ {
    move |s: &mut Settings| crate::helpers::quick_relay(topics, s)
}

async fn metric(app: &TestApp, name: &str) -> f64 {
    let text = app.ops_get("/metrics").await.text().await.unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .unwrap_or_else(|| panic!("{name} not in /metrics"))
        .trim()
        .parse()
        .unwrap()
}

#[tokio::test]
async fn book_reschedule_cancel_publish_one_complete_event_each() {
    let topics = TestTopics::shared(3).await;
    let app = spawn_app_with(relay_to(&topics)).await;
    let p = practice(&app).await;
    let d = p.doctor_id();
    let ann = app.patient().await;
    let first = app.create_slot(&p.admin, &d, 60, 30).await;
    let second = app.create_slot(&p.admin, &d, 120, 30).await;

    let booked = app
        .request(Method::POST, "/api/v1/appointments")
        .bearer_auth(&ann.access)
        .header("Idempotency-Key", "evt-1")
        .json(&json!({"slot_id": id(&first), "reason": "palpitations"}))
        .send()
        .await
        .unwrap();
    assert_eq!(booked.status(), 201);
    let booked: Value = booked.json().await.unwrap();
    let aid = id(&booked);
    // A replay and a refused booking change nothing, so they publish nothing.
    let replay = app
        .request(Method::POST, "/api/v1/appointments")
        .bearer_auth(&ann.access)
        .header("Idempotency-Key", "evt-1")
        .json(&json!({"slot_id": id(&first), "reason": "palpitations"}))
        .send()
        .await
        .unwrap();
    assert_eq!(replay.status(), 200);
    assert_eq!(
        app.book(&app.patient().await, &id(&first)).await.status(),
        409
    );
    post(
        &app,
        &ann,
        &format!("/api/v1/appointments/{aid}/reschedule"),
        json!({"slot_id": id(&second)}),
    )
    .await;
    post(
        &app,
        &ann,
        &format!("/api/v1/appointments/{aid}/cancel"),
        json!({"reason": "feeling better"}),
    )
    .await;

    let mut reader = topics.reader(&EVENT_TOPICS).await;
    let seen = reader
        .read(3, Duration::from_secs(30), Duration::from_secs(2))
        .await
        .to_vec();
    assert_eq!(seen.len(), 3, "exactly one event per change: {seen:?}");
    let by_topic: HashMap<&str, &Received> = seen.iter().map(|r| (r.topic.as_str(), r)).collect();
    for r in &seen {
        let e = r.json();
        assert_eq!(r.key.as_deref(), Some(aid.as_str()), "keyed by appointment");
        assert_eq!(r.header("medbook-event-id").as_deref(), e["id"].as_str());
        assert_eq!(e["version"], 1);
        let data = &e["data"];
        assert_eq!(data["appointment_id"], aid.as_str());
        assert_eq!(data["patient"]["email"], ann.email.as_str());
        assert_eq!(data["doctor"]["full_name"], "Dr. Erika Mustermann");
        assert_eq!(data["clinic"]["time_zone"], "Europe/Berlin");
        assert_eq!(data["reason"], "palpitations");
    }
    let created = by_topic["appointments.created"].json();
    assert_eq!(created["type"], "appointment.created");
    assert_eq!(created["data"]["starts_at"], first["starts_at"]);
    let moved = by_topic["appointments.rescheduled"].json();
    assert_eq!(moved["type"], "appointment.rescheduled");
    assert_eq!(moved["data"]["starts_at"], second["starts_at"]);
    assert_eq!(moved["data"]["previous"]["starts_at"], first["starts_at"]);
    let cancelled = by_topic["appointments.cancelled"].json();
    assert_eq!(cancelled["type"], "appointment.cancelled");
    assert_eq!(cancelled["data"]["cancelled_by"], "patient");
    assert_eq!(cancelled["data"]["cancel_reason"], "feeling better");

    medbook_test_support::eventually("the outbox to drain", Duration::from_secs(10), || async {
        (count(
            &app,
            "SELECT count(*) AS n FROM outbox_events WHERE sink = 'kafka' AND published_at IS NULL",
        ) == 0)
            .then_some(())
    })
    .await;
    assert_eq!(
        count(
            &app,
            "SELECT count(*) AS n FROM outbox_events WHERE topic LIKE 'appointments.%'"
        ),
        3
    );
    // The patient's verification e-mail went out too; once published, the outbox
    // keeps no copy of its single-use link.
    let account_mails = count(
        &app,
        "SELECT count(*) AS n FROM outbox_events WHERE topic = 'accounts.emails'",
    );
    assert!(account_mails >= 1);
    assert_eq!(
        count(
            &app,
            "SELECT count(*) AS n FROM outbox_events WHERE topic = 'accounts.emails' AND payload <> ''"
        ),
        0
    );
    tokio::time::sleep(Duration::from_millis(1500)).await; // a stats refresh
    assert_eq!(metric(&app, "outbox_backlog").await, 0.0);
    assert_eq!(
        metric(&app, "outbox_published_total").await,
        (3 + account_mails) as f64
    );
}

#[tokio::test]
async fn an_appointments_reschedules_arrive_in_order() {
    let topics = TestTopics::shared(3).await;
    let app = spawn_app_with(relay_to(&topics)).await;
    let p = practice(&app).await;
    let d = p.doctor_id();
    let ann = app.patient().await;
    let mut slots = Vec::new();
    for i in 0..8 {
        slots.push(app.create_slot(&p.admin, &d, 60 + i * 30, 30).await);
    }
    let aid = id(&post(
        &app,
        &ann,
        "/api/v1/appointments",
        json!({"slot_id": id(&slots[0]), "reason": "x"}),
    )
    .await);
    for s in &slots[1..] {
        post(
            &app,
            &ann,
            &format!("/api/v1/appointments/{aid}/reschedule"),
            json!({"slot_id": id(s)}),
        )
        .await;
    }
    let mut reader = topics.reader(&["appointments.rescheduled"]).await;
    let seen = reader
        .read(7, Duration::from_secs(30), Duration::from_secs(1))
        .await;
    assert_eq!(seen.len(), 7);
    let starts: Vec<Value> = seen
        .iter()
        .map(|r| r.json()["data"]["starts_at"].clone())
        .collect();
    let expected: Vec<Value> = slots[1..].iter().map(|s| s["starts_at"].clone()).collect();
    assert_eq!(
        starts, expected,
        "one partition, in the order they happened"
    );
}

#[tokio::test]
async fn bookings_succeed_while_the_broker_is_down_and_their_events_follow() {
    let broker = PrivateBroker::start().await;
    let topics = TestTopics::create(&broker.brokers(), 2).await;
    let app = spawn_app_with(relay_to(&topics)).await;
    let p = practice(&app).await;
    let d = p.doctor_id();
    let mut slots = Vec::new();
    for i in 0..6 {
        slots.push(app.create_slot(&p.admin, &d, 60 + i * 30, 30).await);
    }
    // Warm up: the relay's producer is connected when the outage starts.
    let early = app.patient().await;
    app.book(&early, &id(&slots[0])).await;
    let mut reader = topics.reader(&["appointments.created"]).await;
    reader
        .read(1, Duration::from_secs(30), Duration::ZERO)
        .await;

    broker.pause();
    let mut booked = HashSet::new();
    for s in &slots[1..] {
        let patient = app.patient().await;
        let res = app.book(&patient, &id(s)).await;
        assert_eq!(res.status(), 201, "bookings do not need the broker");
        booked.insert(id(&res.json::<Value>().await.unwrap()));
    }
    // After message.timeout.ms (3 s) deliveries fail and are retried from the outbox;
    // the backlog is visible meanwhile.
    medbook_test_support::eventually(
        "a failed delivery and a 4 s old backlog",
        Duration::from_secs(30),
        || async {
            (metric(&app, "outbox_publish_failures_total").await >= 1.0
                && metric(&app, "outbox_oldest_pending_age_seconds").await >= 4.0)
                .then_some(())
        },
    )
    .await;
    assert!(metric(&app, "outbox_backlog").await >= 5.0);
    assert!(metric(&app, "outbox_oldest_pending_age_seconds").await >= 4.0);
    assert!(metric(&app, "outbox_publish_failures_total").await >= 1.0);
    broker.resume();

    let seen = reader
        .read(6, Duration::from_secs(60), Duration::from_secs(2))
        .await;
    let keys: HashSet<String> = seen.iter().filter_map(|r| r.key.clone()).collect();
    for a in &booked {
        assert!(keys.contains(a), "event of {a} missing");
    }
    // A delivery that timed out may still have reached the broker, and is then
    // published again: the same event id, which consumers de-duplicate.
    let ids: Vec<String> = seen
        .iter()
        .map(|r| r.json()["id"].as_str().unwrap().to_owned())
        .collect();
    let distinct: HashSet<&String> = ids.iter().collect();
    assert_eq!(distinct.len(), 6, "one distinct event per booking");
    medbook_test_support::eventually("the outbox to drain", Duration::from_secs(20), || async {
        (count(
            &app,
            "SELECT count(*) AS n FROM outbox_events WHERE sink = 'kafka' AND published_at IS NULL",
        ) == 0)
            .then_some(())
    })
    .await;
}

#[tokio::test]
async fn two_relays_on_one_database_publish_each_event_once() {
    let topics = TestTopics::shared(3).await;
    let a = spawn_app_with(relay_to(&topics)).await;
    // A second replica on the same database.
    let mut settings = a.settings.clone();
    settings.http.addr = "127.0.0.1:0".into();
    let b = booking_service::startup::Application::build(settings)
        .await
        .unwrap();
    tokio::spawn(b.run_until_stopped());

    let p = practice(&a).await;
    let d = p.doctor_id();
    let mut total = 0;
    for i in 0..30 {
        let slot = a.create_slot(&p.admin, &d, 60 + i * 30, 30).await;
        let patient = a.patient().await;
        assert_eq!(a.book(&patient, &id(&slot)).await.status(), 201);
        total += 1;
    }
    let mut reader = topics.reader(&["appointments.created"]).await;
    let seen = reader
        .read(total, Duration::from_secs(30), Duration::from_secs(3))
        .await;
    let ids: HashSet<String> = seen
        .iter()
        .map(|r| r.json()["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids.len(), total);
    assert_eq!(seen.len(), total, "no event published twice");
}

#[tokio::test]
async fn published_events_are_pruned_after_the_retention_period() {
    let topics = TestTopics::shared(1).await;
    let app = spawn_app_with(|s| {
        relay_to(&topics)(s);
        s.outbox.retention_hours = 0;
        s.outbox.prune_interval_secs = 1;
    })
    .await;
    let p = practice(&app).await;
    let slot = app.create_slot(&p.admin, &p.doctor_id(), 60, 30).await;
    assert_eq!(
        app.book(&app.patient().await, &id(&slot)).await.status(),
        201
    );
    topics
        .reader(&["appointments.created"])
        .await
        .read(1, Duration::from_secs(30), Duration::ZERO)
        .await;
    medbook_test_support::eventually(
        "the published row to be pruned",
        Duration::from_secs(10),
        || async {
            (count(
                &app,
                "SELECT count(*) AS n FROM outbox_events WHERE sink = 'kafka'",
            ) == 0)
                .then_some(())
        },
    )
    .await;
    assert!(metric(&app, "outbox_pruned_total").await >= 1.0);
}

/// The real binary, killed with SIGKILL in the middle of a booking storm: every change
/// the database committed has its event once the service is back.
#[tokio::test]
async fn sigkill_during_a_booking_storm_loses_no_event() {
    let topics = TestTopics::shared(3).await;
    let app = spawn_app_with(|_| {}).await; // fixtures only; its relay is off
    let p = practice(&app).await;
    let d = p.doctor_id();
    app.db.execute(&format!(
        "INSERT INTO slots (id, doctor_id, starts_at, ends_at, status)
         SELECT gen_random_uuid(), '{d}', date_trunc('minute', now()) + (i * interval '30 minutes') + interval '1 hour',
                date_trunc('minute', now()) + (i * interval '30 minutes') + interval '90 minutes', 'available'
         FROM generate_series(0, 399) AS i"
    ));
    let mut patients = Vec::new();
    for _ in 0..8 {
        patients.push(app.patient().await);
    }

    // The service's connections carry a name, so the test can tell when the killed
    // process's backends are gone: a COMMIT it sent just before dying still completes
    // (the backend may be waiting on the WAL flush), and counting before that would
    // miss a committed change whose event then "appears from nowhere".
    let storm_app = format!(
        "sigkill-storm-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    );
    let url = app.db.url();
    let sep = if url.contains('?') { '&' } else { '?' };
    let service_url = format!("{url}{sep}application_name={storm_app}");
    let spawn = || {
        let mut cmd = service_command(env!("CARGO_BIN_EXE_booking-service"));
        cmd.env("MEDBOOK_PROFILE", "dev")
            .env("MEDBOOK_AUTH__JWT_SECRET", JWT_SECRET)
            .env("MEDBOOK_DATABASE__URL", &service_url)
            .env("MEDBOOK_HTTP__ADDR", "127.0.0.1:0")
            .env("MEDBOOK_HTTP__OPS_ADDR", "127.0.0.1:0")
            .env("MEDBOOK_GRPC__ADDR", "127.0.0.1:0")
            .env("MEDBOOK_REDIS__URL", crate::helpers::redis_url())
            .env("MEDBOOK_BOOKING__MIN_NOTICE_MINUTES", "0")
            .env("MEDBOOK_BOOKING__MAX_ACTIVE_PER_PATIENT", "1000")
            .env("MEDBOOK_KAFKA__BROKERS", &topics.brokers)
            .env("MEDBOOK_KAFKA__TOPIC_PREFIX", &topics.prefix)
            .env("MEDBOOK_OUTBOX__POLL_INTERVAL_MS", "100")
            .env("MEDBOOK_OUTBOX__LEASE_MS", "4000")
            .env("MEDBOOK_OUTBOX__MESSAGE_TIMEOUT_MS", "3000")
            .stderr(std::process::Stdio::null());
        let service = ServiceProcess::spawn(&mut cmd);
        let port = service.wait_for("listening", Duration::from_secs(60))["port"]
            .as_u64()
            .unwrap();
        (service, format!("http://127.0.0.1:{port}"))
    };

    let (mut service, base) = spawn();
    let slot_ids: Vec<String> = {
        let mut conn = app.db.conn();
        #[derive(QueryableByName)]
        struct Id {
            #[diesel(sql_type = diesel::sql_types::Uuid)]
            id: uuid::Uuid,
        }
        diesel::sql_query("SELECT id FROM slots ORDER BY starts_at")
            .load::<Id>(&mut conn)
            .unwrap()
            .into_iter()
            .map(|r| r.id.to_string())
            .collect()
    };
    assert_eq!(slot_ids.len(), 400);
    let client = reqwest::Client::new();
    let mut workers = Vec::new();
    for (w, patient) in patients.iter().enumerate() {
        let client = client.clone();
        let base = base.clone();
        let token = patient.access.clone();
        let mine: Vec<String> = slot_ids.iter().skip(w).step_by(8).cloned().collect();
        workers.push(tokio::spawn(async move {
            for (i, slot) in mine.iter().enumerate() {
                let res = client
                    .post(format!("{base}/api/v1/appointments"))
                    .bearer_auth(&token)
                    .json(&json!({"slot_id": slot, "reason": "storm"}))
                    .send()
                    .await;
                let Ok(res) = res else { return };
                // Cancel every third booking: a second event for the same appointment.
                if i % 3 == 0 && res.status() == 201 {
                    let aid = res.json::<Value>().await.unwrap()["id"]
                        .as_str()
                        .unwrap()
                        .to_owned();
                    if client
                        .post(format!("{base}/api/v1/appointments/{aid}/cancel"))
                        .bearer_auth(&token)
                        .json(&json!({}))
                        .send()
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
            }
        }));
    }
    // Let the storm run, then kill the service in the middle of it.
    medbook_test_support::eventually(
        "the storm to be under way",
        Duration::from_secs(30),
        || async { (count(&app, "SELECT count(*) AS n FROM appointments") >= 60).then_some(()) },
    )
    .await;
    let sessions = format!(
        "SELECT count(*) AS n FROM pg_stat_activity WHERE application_name = '{storm_app}'"
    );
    assert!(
        count(&app, &sessions) > 0,
        "the service's sessions are not named"
    );
    service.signal("-KILL");
    service.child.wait().unwrap();
    for w in workers {
        w.await.unwrap();
    }
    medbook_test_support::eventually(
        "the killed process's database sessions to end",
        Duration::from_secs(30),
        || async { (count(&app, &sessions) == 0).then_some(()) },
    )
    .await;
    let created = count(&app, "SELECT count(*) AS n FROM appointments");
    let cancelled = count(
        &app,
        "SELECT count(*) AS n FROM appointments WHERE status = 'cancelled'",
    );
    assert!(created >= 60);

    // Back up: the new process's relay publishes what the killed one had not.
    let (service, _) = spawn();
    let mut reader = topics
        .reader(&["appointments.created", "appointments.cancelled"])
        .await;
    let expected = (created + cancelled) as usize;
    let seen = reader
        .read(expected, Duration::from_secs(60), Duration::from_secs(2))
        .await
        .to_vec();
    drop(service);
    let mut events: HashMap<(String, String), usize> = HashMap::new();
    for r in &seen {
        *events
            .entry((r.topic.clone(), r.key.clone().unwrap()))
            .or_default() += 1;
    }
    #[derive(QueryableByName)]
    struct Row {
        #[diesel(sql_type = diesel::sql_types::Uuid)]
        id: uuid::Uuid,
        #[diesel(sql_type = diesel::sql_types::Text)]
        status: String,
    }
    let rows = diesel::sql_query("SELECT id, status FROM appointments")
        .load::<Row>(&mut app.db.conn())
        .unwrap();
    for r in &rows {
        let key = r.id.to_string();
        assert!(
            events.contains_key(&("appointments.created".into(), key.clone())),
            "created event of {key} lost"
        );
        if r.status == "cancelled" {
            assert!(
                events.contains_key(&("appointments.cancelled".into(), key.clone())),
                "cancelled event of {key} lost"
            );
        }
    }
    // Nothing the database does not know about, and only the few events in flight at
    // the kill may have been published twice (same event id).
    assert_eq!(
        events.len(),
        expected,
        "{} events for {expected} changes",
        events.len()
    );
    let distinct: HashSet<String> = seen
        .iter()
        .map(|r| r.json()["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(distinct.len(), expected);
    // And every committed change has its audit record: the same transaction wrote it.
    let unaudited = count(
        &app,
        "SELECT count(*) AS n FROM appointments a WHERE NOT EXISTS (
             SELECT 1 FROM outbox_events o WHERE o.sink = 'audit' AND o.event_type = 'appointment.booked'
               AND o.payload::jsonb ->> 'entity_id' = a.id::text)
           OR (a.status = 'cancelled' AND NOT EXISTS (
             SELECT 1 FROM outbox_events o WHERE o.sink = 'audit' AND o.event_type = 'appointment.cancelled'
               AND o.payload::jsonb ->> 'entity_id' = a.id::text))",
    );
    assert_eq!(unaudited, 0, "committed changes without an audit record");
    let audited = count(
        &app,
        "SELECT count(*) AS n FROM outbox_events WHERE sink = 'audit' AND event_type LIKE 'appointment.%'",
    );
    assert_eq!(
        audited as usize, expected,
        "one record per change, none extra"
    );
}

/// librdkafka's reports of an outage go through the shared `KafkaContext`: the outage
/// is a condition (logged once, then at a low rate) from the first failure until the
/// client's statistics show the broker up again.
#[tokio::test]
async fn a_broker_outage_is_one_condition_until_the_broker_is_back() {
    use medbook_shared::kafka::{KafkaSettings, ReliableProducer};
    let mut broker = PrivateBroker::start().await;
    let settings = KafkaSettings {
        brokers: broker.brokers(),
        topic_prefix: String::new(),
        // Quick statistics and reconnects, so the test is quick too.
        properties: [
            ("statistics_interval_ms", "200"),
            ("reconnect_backoff_max_ms", "500"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect(),
    };
    let producer =
        ReliableProducer::new(&settings, "outage-log-test", Duration::from_secs(5)).unwrap();
    producer.check().await.unwrap();
    assert!(producer.broker_conditions().is_empty());

    broker.stop();
    let conditions = medbook_test_support::eventually(
        "the outage to be reported",
        Duration::from_secs(30),
        || async {
            let open = producer.broker_conditions();
            open.iter().any(|c| c == "all brokers").then_some(open)
        },
    )
    .await;
    assert!(
        conditions.len() <= 3,
        "all brokers, and at most the bootstrap and the learned address: {conditions:?}"
    );

    broker.restart().await;
    medbook_test_support::eventually("the outage to be over", Duration::from_secs(30), || async {
        producer.broker_conditions().is_empty().then_some(())
    })
    .await;
}
