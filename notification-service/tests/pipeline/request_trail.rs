//! One grep follows a booking from its HTTP request to the SMTP server: the request id
//! the client sent is stored with the outbox row, travels as a Kafka header, and the
//! notification-service's log line of the email names it.

use crate::booking::BookingApp;
use crate::helpers::{address, notify_db, settings as notifier_settings, Process};
use medbook_test_support::kafka::TestTopics;
use medbook_test_support::mail::Maildev;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

// Multi-threaded: the in-process booking-service (its relay) keeps running while the
// test blocks reading the notifier's log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_request_id_of_a_booking_is_in_the_log_line_of_its_email() {
    let notify_db = notify_db();
    let topics = TestTopics::shared(3).await;
    let sink = Maildev::shared();
    let booking = BookingApp::start(&topics, &[]).await;
    // The notification-service as a process: its log is its stdout.
    let notifier = Process::spawn(&notifier_settings(&notify_db, &topics, sink.smtp_port));

    let admin = booking.admin().await;
    let doctor = booking
        .doctor(
            &admin,
            json!({"name": "North", "city": "Berlin", "address": "Main St 1", "time_zone": "Europe/Berlin"}),
            "Dr. Tom Trace",
            "Cardiology",
        )
        .await;
    let slot = booking.slots(doctor["id"].as_str().unwrap(), 1).remove(0);
    let email = address("trail");
    let patient = booking.patient(&email, "Tess Trail").await;

    let request_id = format!("trail-{}", uuid::Uuid::new_v4().simple());
    let res = booking
        .client
        .post(format!("{}/api/v1/appointments", booking.base))
        .bearer_auth(&patient)
        .header("x-request-id", &request_id)
        .json(&json!({"slot_id": slot, "reason": "follow me"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let appointment: Value = res.json().await.unwrap();

    // The outbox row keeps it.
    let stored = {
        use diesel::RunQueryDsl;
        #[derive(diesel::QueryableByName)]
        struct Row {
            #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Text>)]
            request_id: Option<String>,
        }
        diesel::sql_query(format!(
            "SELECT request_id FROM outbox_events WHERE aggregate_id = '{}'",
            appointment["id"].as_str().unwrap()
        ))
        .get_result::<Row>(&mut booking.db.conn())
        .unwrap()
        .request_id
    };
    assert_eq!(stored.as_deref(), Some(request_id.as_str()));

    // The notifier's "email sent" line names the request, the event and the appointment.
    let deadline = Instant::now() + Duration::from_secs(60);
    let line = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let v = notifier
            .lines
            .recv_timeout(left)
            .unwrap_or_else(|_| panic!("no 'email sent' line with request_id {request_id}"));
        if v["message"] == "email sent" && v["request_id"] == request_id.as_str() {
            break v;
        }
    };
    assert_eq!(line["event_type"], "appointment.created");
    assert_eq!(line["aggregate_id"], appointment["id"]);
    assert!(line["event_id"].is_string(), "{line}");
    let mails = sink
        .wait_for(&email, 2, Duration::from_secs(30), Duration::ZERO)
        .await;
    assert!(
        mails.iter().any(|m| m["subject"]
            .as_str()
            .is_some_and(|s| s.starts_with("Appointment confirmed"))),
        "{mails:?}"
    );
    booking.stop().await;
}
