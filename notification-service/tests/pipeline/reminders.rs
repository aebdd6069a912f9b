//! Reminders end to end: booked over HTTP, scheduled by booking-service, published
//! through its outbox, emailed by the notification-service into the real mail sink,
//! once; a moved appointment is reminded of its new time only, a cancelled one not at
//! all; a reminder that went stale on the way is dropped by the consumer.

use crate::booking::BookingApp;
use crate::helpers::*;
use chrono::{DurationRound, Utc};
use medbook_shared::events::*;
use medbook_test_support::kafka::TestTopics;
use medbook_test_support::mail::Maildev;
use serde_json::{json, Value};
use std::time::Duration;

fn subjects(emails: &[Value]) -> Vec<String> {
    emails
        .iter()
        .map(|e| e["subject"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn a_booked_appointment_is_reminded_once_a_moved_one_of_its_new_time_a_cancelled_one_not() {
    let notify_db = notify_db();
    let topics = TestTopics::shared(3).await;
    let sink = Maildev::shared();
    // Slots start on whole minutes, a little over an hour from now; the offset is
    // chosen so that their reminder falls due about 20 seconds from now.
    let now = Utc::now();
    let start = (now + chrono::Duration::minutes(62))
        .duration_trunc(chrono::Duration::minutes(1))
        .unwrap();
    let offset = (start - now - chrono::Duration::seconds(20)).num_seconds();
    let offset = format!("{offset}s");
    let booking = BookingApp::start(
        &topics,
        &[
            ("MEDBOOK_REMINDERS__OFFSETS", offset.as_str()),
            ("MEDBOOK_REMINDERS__POLL_INTERVAL_MS", "200"),
        ],
    )
    .await;
    let notifier = Running::start(&settings(&notify_db, &topics, sink.smtp_port)).await;
    let admin = booking.admin().await;
    let mut doctors = Vec::new();
    for name in ["Dr. Ana", "Dr. Ben", "Dr. Cid"] {
        let d = booking
            .doctor(
                &admin,
                json!({"name": format!("Clinic of {name}"), "city": "Lisbon", "address": "Rua Augusta 1", "time_zone": "Europe/Lisbon"}),
                name,
                "General practice",
            )
            .await;
        doctors.push(d["id"].as_str().unwrap().to_owned());
    }
    let slot = |doctor: &str, at: chrono::DateTime<Utc>| {
        let path = format!("/api/v1/doctors/{doctor}/slots");
        let body = json!({"starts_at": at.to_rfc3339(), "ends_at": (at + chrono::Duration::minutes(30)).to_rfc3339()});
        let booking = &booking;
        let admin = admin.clone();
        async move { booking.post(&path, Some(&admin), body).await["id"].clone() }
    };
    let kept = slot(&doctors[0], start).await;
    let far = slot(&doctors[1], start + chrono::Duration::hours(5)).await;
    let moved_to = slot(&doctors[1], start).await;
    let dropped = slot(&doctors[2], start).await;

    let (ann, ben, cid) = (address("ann"), address("ben"), address("cid"));
    let book = |who: String, name: &'static str, slot: Value| {
        let booking = &booking;
        async move {
            let token = booking.patient(&who, name).await;
            let a = booking
                .post(
                    "/api/v1/appointments",
                    Some(&token),
                    json!({"slot_id": slot, "reason": "check-up"}),
                )
                .await;
            (token, a["id"].as_str().unwrap().to_owned())
        }
    };
    book(ann.clone(), "Ann", kept).await;
    let (ben_token, ben_appt) = book(ben.clone(), "Ben", far).await;
    booking
        .post(
            &format!("/api/v1/appointments/{ben_appt}/reschedule"),
            Some(&ben_token),
            json!({"slot_id": moved_to}),
        )
        .await;
    let (cid_token, cid_appt) = book(cid.clone(), "Cid", dropped).await;
    booking
        .post(
            &format!("/api/v1/appointments/{cid_appt}/cancel"),
            Some(&cid_token),
            json!({}),
        )
        .await;

    // All three were due at the same instant. Each patient also has the verification
    // link of their registration.
    let ann_mail = sink
        .wait_for(&ann, 3, Duration::from_secs(90), Duration::ZERO)
        .await;
    let ben_mail = sink
        .wait_for(&ben, 4, Duration::from_secs(30), Duration::from_secs(3))
        .await;
    let ann_mail = {
        let again = sink.emails_to(&ann).await;
        assert_eq!(again.len(), ann_mail.len());
        again
    };
    let cid_mail = sink.emails_to(&cid).await;
    let reminder = |mails: &[Value]| -> Vec<Value> {
        mails
            .iter()
            .filter(|m| m["subject"].as_str().unwrap().starts_with("Reminder:"))
            .cloned()
            .collect()
    };
    assert_eq!(ann_mail.len(), 3, "{:?}", subjects(&ann_mail));
    assert_eq!(reminder(&ann_mail).len(), 1, "{:?}", subjects(&ann_mail));
    assert_eq!(ben_mail.len(), 4, "{:?}", subjects(&ben_mail));
    let ben_reminder = reminder(&ben_mail);
    assert_eq!(ben_reminder.len(), 1, "{:?}", subjects(&ben_mail));
    // Reminded of the new time, in the clinic's zone.
    let local = start.with_timezone(&chrono_tz::Europe::Lisbon);
    let when = local.format("%H:%M").to_string();
    let text = ben_reminder[0]["text"].as_str().unwrap();
    assert!(text.contains(&when), "{text}");
    assert!(text.contains("(Europe/Lisbon)"), "{text}");
    assert_eq!(
        cid_mail.len(),
        3,
        "verification, confirmation and cancellation only: {:?}",
        subjects(&cid_mail)
    );
    assert!(reminder(&cid_mail).is_empty());
    assert_eq!(notifier.metric("reminders_sent_total").await, 2.0);
    notifier.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_reminder_that_went_stale_or_late_on_the_way_is_dropped() {
    let db = notify_db();
    let topics = TestTopics::shared(1).await;
    let sink = Maildev::shared();
    let app = Running::start(&settings(&db, &topics, sink.smtp_port)).await;
    let to = address("stale");
    let booked = created(&to);
    let mut snapshot = booked.appointment().unwrap().clone();
    snapshot.starts_at = Utc::now() + chrono::Duration::hours(2);
    snapshot.ends_at = snapshot.starts_at + chrono::Duration::minutes(30);
    let cancelled = EventEnvelope::new(
        Utc::now(),
        AppointmentEvent::Cancelled(Cancellation {
            appointment: AppointmentSnapshot {
                version: 2,
                ..snapshot.clone()
            },
            cancelled_by: CancelledBy::Patient,
            cancel_reason: None,
        }),
    );
    let reminder = |a: AppointmentSnapshot| {
        EventEnvelope::new(
            Utc::now(),
            AppointmentEvent::Reminder(Reminder {
                appointment: a,
                offset: "2h".into(),
                due_at: Utc::now(),
            }),
        )
    };
    // Published before the cancellation, but arriving after it.
    let stale = reminder(snapshot.clone());
    // Held up until the appointment had begun.
    let mut begun = snapshot.clone();
    begun.appointment_id = uuid::Uuid::new_v4();
    begun.starts_at = Utc::now() - chrono::Duration::minutes(5);
    let late = reminder(begun);
    let rec = |e: &EventEnvelope| {
        (
            e.event_type().topic().to_owned(),
            Some(e.key().into_bytes()),
            e.encode().unwrap(),
        )
    };
    // The booking and its cancellation: the patient is told both, in that order.
    topics.produce(vec![rec(&booked), rec(&cancelled)]).await;
    sink.wait_for(&to, 2, Duration::from_secs(60), Duration::ZERO)
        .await;
    topics.produce(vec![rec(&stale), rec(&late)]).await;
    medbook_test_support::eventually(
        "both reminders dropped",
        Duration::from_secs(60),
        || async {
            (app.metric("reminders_skipped_total{reason=\"stale\"}")
                .await
                == 1.0
                && app
                    .metric("reminders_skipped_total{reason=\"started\"}")
                    .await
                    == 1.0)
                .then_some(())
        },
    )
    .await;
    let mail = sink.emails_to(&to).await;
    assert_eq!(
        subjects(&mail).len(),
        2,
        "the confirmation and the cancellation, no reminder: {mail:?}"
    );
    assert!(mail[1]["subject"]
        .as_str()
        .unwrap()
        .starts_with("Appointment cancelled"));
    app.shutdown().await.unwrap();
}
