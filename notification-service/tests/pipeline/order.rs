//! One appointment's e-mails in the order of its versions, on the real broker and mail
//! sink: across topics (each handled by its own worker), after the longest wait, and
//! through a DLQ replay.

use crate::helpers::*;
use medbook_shared::events::*;
use medbook_test_support::kafka::TestTopics;
use medbook_test_support::mail::Maildev;
use serde_json::Value;
use std::time::Duration;

/// Version `version` of `booked`'s appointment, cancelled by the patient.
fn cancelled(booked: &EventEnvelope, version: i32) -> EventEnvelope {
    let mut a = booked.appointment().unwrap().clone();
    a.version = version;
    EventEnvelope::new(
        chrono::Utc::now(),
        AppointmentEvent::Cancelled(Cancellation {
            appointment: a,
            cancelled_by: CancelledBy::Patient,
            cancel_reason: None,
        }),
    )
}

fn subject_kind(email: &Value) -> String {
    email["subject"]
        .as_str()
        .unwrap()
        .split(':')
        .next()
        .unwrap()
        .to_owned()
}

/// The calendar's `SEQUENCE` of an appointment e-mail.
async fn sequence(sink: &Maildev, email: &Value) -> i32 {
    let ics = sink.attachment(email, 0).await;
    ics.lines()
        .find_map(|l| l.strip_prefix("SEQUENCE:"))
        .unwrap_or_else(|| panic!("no SEQUENCE in {ics}"))
        .trim()
        .parse()
        .unwrap()
}

/// The version the notification-service last told the patient about, if it has seen
/// the appointment.
fn told(db: &medbook_test_support::pg::TestDb, appointment_id: uuid::Uuid) -> Option<i32> {
    use diesel::prelude::*;
    #[derive(diesel::QueryableByName)]
    struct Told {
        #[diesel(sql_type = diesel::sql_types::Integer)]
        told_version: i32,
    }
    diesel::sql_query("SELECT told_version FROM appointment_versions WHERE appointment_id = $1")
        .bind::<diesel::sql_types::Uuid, _>(appointment_id)
        .get_result::<Told>(&mut db.conn())
        .optional()
        .unwrap()
        .map(|t| t.told_version)
}

#[tokio::test]
async fn a_cancellation_consumed_before_its_confirmation_is_emailed_after_it() {
    let db = notify_db();
    let topics = TestTopics::shared(2).await;
    let sink = Maildev::shared();
    let app = Running::start(&settings(&db, &topics, sink.smtp_port)).await;
    let to = address("order");
    let booked = created(&to);
    let id = booked.appointment().unwrap().appointment_id;
    // The cancellation reaches the service first, on its own topic and worker.
    topics.produce(vec![record(&cancelled(&booked, 2))]).await;
    medbook_test_support::eventually(
        "the cancellation waits for version 1",
        Duration::from_secs(60),
        || async { (told(&db, id) == Some(0)).then_some(()) },
    )
    .await;
    assert!(sink.emails_to(&to).await.is_empty());
    topics.produce(vec![record(&booked)]).await;
    medbook_test_support::eventually("both e-mails", Duration::from_secs(60), || async {
        (sink.emails_to(&to).await.len() == 2).then_some(())
    })
    .await;
    let emails = sink.emails_to(&to).await;
    let kinds: Vec<String> = emails.iter().map(subject_kind).collect();
    assert_eq!(kinds, ["Appointment confirmed", "Appointment cancelled"]);
    assert_eq!(sequence(&sink, &emails[0]).await, 1);
    assert_eq!(sequence(&sink, &emails[1]).await, 2);
    assert_eq!(told(&db, id), Some(2));
    assert_eq!(
        app.metric("email_order_wait_seconds_count{ended=\"in_order\"}")
            .await,
        1.0
    );
    app.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_change_goes_after_the_longest_wait_and_the_late_confirmation_is_not_sent() {
    let db = notify_db();
    let topics = TestTopics::shared(2).await;
    let sink = Maildev::shared();
    let mut s = settings(&db, &topics, sink.smtp_port);
    s.order.max_wait_secs = 2;
    let app = Running::start(&s).await;
    let to = address("forced");
    let booked = created(&to);
    topics.produce(vec![record(&cancelled(&booked, 2))]).await;
    sink.wait_for(&to, 1, Duration::from_secs(60), Duration::ZERO)
        .await;
    assert_eq!(
        app.metric("email_order_wait_seconds_count{ended=\"forced\"}")
            .await,
        1.0
    );
    // The confirmation turns up after the patient was told of the cancellation.
    topics.produce(vec![record(&booked)]).await;
    medbook_test_support::eventually(
        "the confirmation dropped",
        Duration::from_secs(60),
        || async { (app.metric("appointment_emails_superseded_total").await == 1.0).then_some(()) },
    )
    .await;
    let kinds: Vec<String> = sink.emails_to(&to).await.iter().map(subject_kind).collect();
    assert_eq!(kinds, ["Appointment cancelled"]);
    app.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_replayed_dead_letter_older_than_what_the_patient_was_told_is_not_sent() {
    let db = notify_db();
    let topics = TestTopics::shared(1).await;
    // The mail server is down and mail is kept two seconds: the confirmation expires
    // into the DLQ.
    let mut down = Maildev::start(None).await;
    let port = down.smtp_port;
    down.stop();
    let mut s = settings(&db, &topics, port);
    s.retry.max_age_secs = 2;
    let app = Running::start(&s).await;
    let to = address("replayed");
    let booked = created(&to);
    topics.produce(vec![record(&booked)]).await;
    medbook_test_support::eventually(
        "the confirmation dead-lettered",
        Duration::from_secs(60),
        || async {
            (app.metric("emails_dead_lettered_total{reason=\"expired\"}")
                .await
                == 1.0)
                .then_some(())
        },
    )
    .await;
    // The server is back; the cancellation goes out at once (version 1 is decided).
    let sink = Maildev::start(Some(port)).await;
    topics.produce(vec![record(&cancelled(&booked, 2))]).await;
    sink.wait_for(&to, 1, Duration::from_secs(60), Duration::ZERO)
        .await;
    // An operator replays the DLQ: the old confirmation must not follow the cancellation.
    let replayed = dlq(&s, &["replay", "--all"]);
    assert_eq!(replayed.len(), 1, "{replayed:?}");
    medbook_test_support::eventually("the replay dropped", Duration::from_secs(60), || async {
        (app.metric("appointment_emails_superseded_total").await == 1.0).then_some(())
    })
    .await;
    let kinds: Vec<String> = sink.emails_to(&to).await.iter().map(subject_kind).collect();
    assert_eq!(kinds, ["Appointment cancelled"]);
    app.shutdown().await.unwrap();
}
