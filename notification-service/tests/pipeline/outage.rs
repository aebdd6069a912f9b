//! A mail server having a bad afternoon, on the real broker, PostgreSQL and SMTP
//! servers: an outage is waited out without a dead letter or a rebalance; a refused
//! recipient costs its partition no time; a connection the server closed while idle is
//! replaced without a failed attempt; a message waiting on one partition holds back no
//! other partition, and one appointment's events keep their order.

use crate::booking::BookingApp;
use crate::helpers::*;
use medbook_shared::events::TOPIC_DLQ;
use medbook_test_support::kafka::TestTopics;
use medbook_test_support::mail::Maildev;
use serde_json::json;
use std::collections::HashMap;
use std::time::{Duration, Instant};

async fn rebalances(app: &Running) -> f64 {
    app.metric("consumer_rebalances_total{kind=\"assign\"}")
        .await
        + app
            .metric("consumer_rebalances_total{kind=\"revoke\"}")
            .await
}

#[tokio::test]
async fn a_three_minute_smtp_outage_at_a_steady_booking_rate_delays_mail_and_loses_none() {
    const OUTAGE: Duration = Duration::from_secs(180);
    let db = notify_db();
    let topics = TestTopics::shared(3).await;
    let mut sink = Maildev::start(None).await;
    let port = sink.smtp_port;
    // The notification-service on its defaults.
    let app = Running::start(&default_settings(&db, &topics, port)).await;
    let booking = BookingApp::start(&topics, &[]).await;
    let admin = booking.admin().await;
    let doctor = booking
        .doctor(
            &admin,
            json!({"name": "Mitte", "city": "Berlin", "address": "Unter den Linden 1", "time_zone": "Europe/Berlin"}),
            "Dr. Outage",
            "General practice",
        )
        .await;
    let slots = booking.slots(doctor["id"].as_str().unwrap(), 200);
    let to = address("outage");
    let patient = booking.patient(&to, "Olga Utage").await;
    let mut slots = slots.into_iter();
    let mut book = || {
        let slot = slots.next().unwrap();
        let booking = &booking;
        let patient = patient.clone();
        async move {
            booking
                .post(
                    "/api/v1/appointments",
                    Some(&patient),
                    json!({"slot_id": slot, "reason": "check-up"}),
                )
                .await;
        }
    };
    // Joined and working: the verification link and the first confirmation are in.
    book().await;
    sink.wait_for(&to, 2, Duration::from_secs(60), Duration::ZERO)
        .await;
    let rebalances_before = rebalances(&app).await;

    sink.stop();
    let started = Instant::now();
    let mut booked = 1;
    let mut ticks = tokio::time::interval(Duration::from_secs(1));
    let mut saw_unavailable = false;
    while started.elapsed() < OUTAGE {
        ticks.tick().await;
        book().await;
        booked += 1;
        if !saw_unavailable {
            let (status, body) = ready(&app.http).await;
            saw_unavailable = status == 503 && body["smtp"] == "unavailable";
        }
        assert!(
            !app.task.is_finished(),
            "the service exited during the outage"
        );
    }
    assert!(saw_unavailable, "/ready never said smtp: unavailable");
    let health = reqwest::get(format!("{}/health", app.http)).await.unwrap();
    assert_eq!(health.status(), 200, "liveness stays fine");
    assert_eq!(app.metric("smtp_up").await, 0.0);
    assert!(app.metric("consumer_paused_partitions").await <= 3.0);

    // Back: everything booked during the outage arrives, once each.
    let sink = Maildev::start(Some(port)).await;
    let recovered = Instant::now();
    let emails = sink
        .wait_for(
            &to,
            booked - 1,
            Duration::from_secs(120),
            Duration::from_secs(2),
        )
        .await;
    let drained = recovered.elapsed();
    assert_eq!(emails.len(), booked - 1, "every email of the outage, once");
    let mut ids: Vec<String> = emails.iter().map(event_id_of).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), booked - 1);
    eprintln!(
        "{} emails held through a {}s outage; delivered {:.1}s after recovery",
        booked - 1,
        OUTAGE.as_secs(),
        drained.as_secs_f64()
    );
    for reason in ["poison", "permanent", "expired"] {
        assert_eq!(
            app.metric(&format!(
                "emails_dead_lettered_total{{reason=\"{reason}\"}}"
            ))
            .await,
            0.0,
            "{reason}"
        );
    }
    let mut dlq = topics.reader(&[TOPIC_DLQ]).await;
    assert!(
        dlq.read(0, Duration::ZERO, Duration::from_secs(3))
            .await
            .is_empty(),
        "nothing was dead-lettered"
    );
    assert_eq!(
        rebalances(&app).await,
        rebalances_before,
        "the group rebalanced during the outage"
    );
    medbook_test_support::eventually("/ready to recover", Duration::from_secs(10), || async {
        let (status, body) = ready(&app.http).await;
        (status == 200 && body["smtp"] == "ok").then_some(())
    })
    .await;
    assert!(!app.task.is_finished());
    app.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_refused_recipient_is_dead_lettered_and_its_partition_moves_on_within_a_second() {
    let db = notify_db();
    let topics = TestTopics::shared(1).await;
    let smtp = FaultSmtp::start(0).await;
    let app = Running::start(&default_settings(&db, &topics, smtp.smtp_port)).await;
    let warm = address("warm");
    topics.produce(vec![record(&created(&warm))]).await;
    medbook_test_support::eventually("the warm-up email", Duration::from_secs(60), || async {
        (!smtp.messages().await.is_empty()).then_some(())
    })
    .await;

    let refused = created(&address("reject"));
    let next = created(&address("next"));
    topics.produce(vec![record(&refused), record(&next)]).await;
    let next_to = next.appointment().unwrap().patient.email.clone();
    let accepted =
        medbook_test_support::eventually("the next email", Duration::from_secs(30), || async {
            smtp.messages()
                .await
                .into_iter()
                .find(|m| m["rcpt_tos"][0] == next_to.as_str())
        })
        .await;
    let mut reader = topics.reader(&[TOPIC_DLQ]).await;
    let letters = reader
        .read(1, Duration::from_secs(10), Duration::from_secs(1))
        .await
        .to_vec();
    assert_eq!(letters.len(), 1);
    assert_eq!(
        letters[0].header("dlq-error-kind").as_deref(),
        Some("permanent")
    );
    assert_eq!(letters[0].header("dlq-attempts").as_deref(), Some("1"));
    assert_eq!(
        letters[0]
            .header("medbook-event-id")
            .or_else(|| letters[0].json()["id"].as_str().map(str::to_owned)),
        Some(refused.id.to_string())
    );
    let failed_at =
        chrono::DateTime::parse_from_rfc3339(&letters[0].header("dlq-failed-at").unwrap()).unwrap();
    let sent_at = accepted["received_at"].as_f64().unwrap();
    let gap = sent_at - failed_at.timestamp_micros() as f64 / 1e6;
    assert!(
        (0.0..1.0).contains(&gap),
        "the next message was accepted {gap:.3}s after the dead letter"
    );
    app.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_connection_the_server_closed_while_idle_is_replaced_without_a_failed_attempt() {
    let db = notify_db();
    let topics = TestTopics::shared(1).await;
    // Closes connections idle for a second, with a 421, as maildev does after a while.
    let smtp = FaultSmtp::start_with(0, 1.0).await;
    let app = Running::start(&default_settings(&db, &topics, smtp.smtp_port)).await;
    let first = created(&address("first"));
    topics.produce(vec![record(&first)]).await;
    medbook_test_support::eventually("the first email", Duration::from_secs(60), || async {
        (smtp.messages().await.len() == 1).then_some(())
    })
    .await;
    medbook_test_support::eventually(
        "the server to close the idle connection",
        Duration::from_secs(10),
        || async { (smtp.stats().await["idle_closed"].as_i64() >= Some(1)).then_some(()) },
    )
    .await;

    let connections = smtp.stats().await["connections"].as_i64().unwrap();
    let second = created(&address("second"));
    topics.produce(vec![record(&second)]).await;
    medbook_test_support::eventually("the second email", Duration::from_secs(30), || async {
        (smtp.messages().await.len() == 2).then_some(())
    })
    .await;
    #[derive(diesel::QueryableByName)]
    struct Attempts {
        #[diesel(sql_type = diesel::sql_types::Integer)]
        attempts: i32,
    }
    let row: Attempts = diesel::RunQueryDsl::get_result(
        diesel::sql_query(format!(
            "SELECT attempts FROM deliveries WHERE event_id = '{}'",
            second.id
        )),
        &mut db.conn(),
    )
    .unwrap();
    assert_eq!(row.attempts, 1, "the closed connection cost no attempt");
    for kind in ["unavailable", "transient", "permanent"] {
        assert_eq!(
            app.metric(&format!("email_send_failures_total{{kind=\"{kind}\"}}"))
                .await,
            0.0
        );
    }
    assert_eq!(app.metric("smtp_reconnects_total").await, 1.0);
    assert_eq!(
        smtp.stats().await["connections"].as_i64().unwrap(),
        connections + 1,
        "one new connection, replacing the closed one"
    );
    app.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_message_waiting_on_one_partition_holds_back_no_other_and_order_is_kept() {
    let db = notify_db();
    let topics = TestTopics::shared(3).await;
    // `defer*` recipients get 451 for as long as this test runs.
    let smtp = FaultSmtp::start(1_000_000).await;
    let app = Running::start(&settings(&db, &topics, smtp.smtp_port)).await;
    let stuck = created(&address("defer"));
    topics.produce(vec![record(&stuck)]).await;
    medbook_test_support::eventually(
        "the deferred email to wait for a retry",
        Duration::from_secs(60),
        || async { (app.metric("emails_waiting_for_retry").await >= 1.0).then_some(()) },
    )
    .await;

    // Where each event landed.
    let mut reader = topics.reader(&["appointments.created"]).await;
    let mut partition_of: HashMap<String, i32> = HashMap::new();
    let stuck_partition = {
        let seen = reader
            .read(1, Duration::from_secs(10), Duration::ZERO)
            .await;
        seen[0].partition
    };
    // Events until at least three are on the other partitions.
    let mut others = Vec::new();
    let mut produced = 1;
    for _ in 0..10 {
        let batch: Vec<_> = (0..4).map(|_| created(&address("free"))).collect();
        topics.produce(batch.iter().map(record).collect()).await;
        produced += batch.len();
        for r in reader
            .read(produced, Duration::from_secs(10), Duration::ZERO)
            .await
        {
            partition_of.insert(r.json()["id"].as_str().unwrap().to_owned(), r.partition);
        }
        others.extend(
            batch
                .into_iter()
                .filter(|e| partition_of[&e.id.to_string()] != stuck_partition),
        );
        if others.len() >= 3 {
            break;
        }
    }
    assert!(others.len() >= 3);
    // Three events of one appointment on a free partition, in this order.
    let mut ordered = Vec::new();
    let base = others[0].clone();
    for i in 0..3 {
        let mut e = created(base.appointment().unwrap().patient.email.as_str());
        if let medbook_shared::events::Event::Appointment(
            medbook_shared::events::AppointmentEvent::Created(a),
        ) = &mut e.event
        {
            a.appointment_id = base.appointment().unwrap().appointment_id;
            a.reason = format!("step {i}");
        }
        ordered.push(e);
    }
    topics.produce(ordered.iter().map(record).collect()).await;

    for e in &others {
        let to = e.appointment().unwrap().patient.email.clone();
        medbook_test_support::eventually(
            "an email on a free partition",
            Duration::from_secs(30),
            || async {
                smtp.messages()
                    .await
                    .iter()
                    .any(|m| m["rcpt_tos"][0] == to.as_str())
                    .then_some(())
            },
        )
        .await;
    }
    let base_to = base.appointment().unwrap().patient.email.clone();
    let steps = medbook_test_support::eventually(
        "the appointment's three emails",
        Duration::from_secs(30),
        || async {
            let texts: Vec<String> = smtp
                .messages()
                .await
                .iter()
                .filter(|m| m["rcpt_tos"][0] == base_to.as_str())
                .filter_map(|m| m["text"].as_str().map(str::to_owned))
                .filter(|t| t.contains("step "))
                .collect();
            (texts.len() == 3).then_some(texts)
        },
    )
    .await;
    for (i, text) in steps.iter().enumerate() {
        assert!(
            text.contains(&format!("Reason: step {i}")),
            "out of order: {steps:?}"
        );
    }
    // The deferred one is still waiting, and the server counts as up.
    let stuck_to = stuck.appointment().unwrap().patient.email.clone();
    assert!(!smtp
        .messages()
        .await
        .iter()
        .any(|m| m["rcpt_tos"][0] == stuck_to.as_str()));
    assert_eq!(app.metric("emails_waiting_for_retry").await, 1.0);
    let (status, body) = ready(&app.http).await;
    assert_eq!((status, body["smtp"].as_str()), (200, Some("ok")), "{body}");
    app.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_rebalance_while_mail_waits_for_the_server_hands_it_over_once() {
    let db = notify_db();
    let topics = TestTopics::shared(3).await;
    let mut sink = Maildev::start(None).await;
    let port = sink.smtp_port;
    let s = settings(&db, &topics, port);
    let first = Running::start(&s).await;
    let warm = address("warm");
    topics.produce(vec![record(&created(&warm))]).await;
    sink.wait_for(&warm, 1, Duration::from_secs(60), Duration::ZERO)
        .await;

    sink.stop();
    let to = address("handover");
    let events: Vec<_> = (0..12).map(|_| created(&to)).collect();
    topics.produce(events.iter().map(record).collect()).await;
    medbook_test_support::eventually("mail waiting", Duration::from_secs(30), || async {
        (first.metric("emails_waiting_for_retry").await >= 2.0).then_some(())
    })
    .await;
    // A second member joins: partitions move while their mail waits.
    let second = Running::start(&s).await;
    medbook_test_support::eventually("the rebalance", Duration::from_secs(60), || async {
        (first
            .metric("consumer_rebalances_total{kind=\"revoke\"}")
            .await
            >= 1.0
            && second
                .metric("consumer_rebalances_total{kind=\"assign\"}")
                .await
                >= 1.0)
            .then_some(())
    })
    .await;

    let sink = Maildev::start(Some(port)).await;
    let emails = sink
        .wait_for(&to, 12, Duration::from_secs(90), Duration::from_secs(3))
        .await;
    let mut ids: Vec<String> = emails.iter().map(event_id_of).collect();
    ids.sort();
    let n = ids.len();
    ids.dedup();
    assert_eq!((n, ids.len()), (12, 12), "each email once");
    for app in [&first, &second] {
        for reason in ["poison", "permanent", "expired"] {
            assert_eq!(
                app.metric(&format!(
                    "emails_dead_lettered_total{{reason=\"{reason}\"}}"
                ))
                .await,
                0.0
            );
        }
    }
    second.shutdown().await.unwrap();
    first.shutdown().await.unwrap();
}

#[tokio::test]
async fn an_outage_while_no_mail_goes_out_shows_on_ready_and_so_does_the_return() {
    let db = notify_db();
    let topics = TestTopics::shared(1).await;
    let mut sink = Maildev::start(None).await;
    let port = sink.smtp_port;
    let mut s = default_settings(&db, &topics, port);
    s.smtp.idle_check_interval_ms = 500;
    let app = Running::start(&s).await;
    let smtp_is = |word: &'static str| {
        let http = app.http.clone();
        move || {
            let http = http.clone();
            async move { (ready(&http).await.1["smtp"] == word).then_some(()) }
        }
    };
    medbook_test_support::eventually("smtp: ok", Duration::from_secs(20), smtp_is("ok")).await;
    // No email at all: the prober notices on its own.
    sink.stop();
    medbook_test_support::eventually(
        "smtp: unavailable",
        Duration::from_secs(20),
        smtp_is("unavailable"),
    )
    .await;
    assert_eq!(app.metric("smtp_up").await, 0.0);
    let _sink = Maildev::start(Some(port)).await;
    medbook_test_support::eventually("smtp: ok again", Duration::from_secs(20), smtp_is("ok"))
        .await;
    assert_eq!(app.metric("smtp_up").await, 1.0);
    app.shutdown().await.unwrap();
}
