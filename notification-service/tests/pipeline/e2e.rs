//! The whole pipeline: a patient registers, verifies the address with the link from
//! the e-mail, books, reschedules and cancels over HTTP; booking-service's outbox relay
//! publishes to the real broker; the notification-service emails the real mail sink.
//! Exactly four emails arrive, to the right person, with the right times in the
//! clinic's zone.

use crate::booking::{token_of, BookingApp};
use crate::helpers::{settings as notifier_settings, Running};
use medbook_test_support::kafka::TestTopics;
use medbook_test_support::mail::Maildev;
use serde_json::json;
use std::time::Duration;

#[tokio::test]
async fn register_verify_book_reschedule_cancel_reaches_the_patient_as_four_emails() {
    let notify_db = crate::helpers::notify_db();
    let topics = TestTopics::shared(3).await;
    let sink = Maildev::shared();
    let booking = BookingApp::start(&topics, &[]).await;
    let notifier = Running::start(&notifier_settings(&notify_db, &topics, sink.smtp_port)).await;

    // The clinic side: an admin (created as the CLI does), a clinic in Lisbon, a
    // doctor, two slots.
    let admin = booking.admin().await;
    let doctor = booking
        .doctor(
            &admin,
            json!({"name": "Clínica Baixa", "city": "Lisbon", "address": "Rua Augusta 1", "time_zone": "Europe/Lisbon"}),
            "Dr. Ana Sousa",
            "Dermatology",
        )
        .await;
    let day = (chrono::Utc::now() + chrono::Duration::days(3)).date_naive();
    let at = |h: u32| day.and_hms_opt(h, 0, 0).unwrap().and_utc();
    let slot = |h: u32| json!({"starts_at": at(h).to_rfc3339(), "ends_at": (at(h) + chrono::Duration::minutes(30)).to_rfc3339()});
    let path = format!("/api/v1/doctors/{}/slots", doctor["id"].as_str().unwrap());
    let first = booking.post(&path, Some(&admin), slot(10)).await;
    let second = booking.post(&path, Some(&admin), slot(15)).await;

    // The patient side, over HTTP and e-mail only.
    let email = crate::helpers::address("e2e");
    booking.register(&email, "Rita Lopes").await;
    let verification = sink
        .wait_for(&email, 1, Duration::from_secs(60), Duration::ZERO)
        .await;
    assert_eq!(verification[0]["subject"], "Verify your e-mail address");
    let text = verification[0]["text"].as_str().unwrap();
    let link = text
        .lines()
        .find(|l| l.starts_with("http") && l.contains("token="))
        .unwrap_or_else(|| panic!("no link in {text}"));
    assert!(text.contains("This link works until"), "{text}");
    booking.verify_email(&token_of(link)).await;
    let me = booking.log_in_patient(&email).await;
    let appt = booking
        .post(
            "/api/v1/appointments",
            Some(&me),
            json!({"slot_id": first["id"], "reason": "rash"}),
        )
        .await;
    let aid = appt["id"].as_str().unwrap();
    booking
        .post(
            &format!("/api/v1/appointments/{aid}/reschedule"),
            Some(&me),
            json!({"slot_id": second["id"]}),
        )
        .await;
    booking
        .post(
            &format!("/api/v1/appointments/{aid}/cancel"),
            Some(&me),
            json!({"reason": "cannot make it"}),
        )
        .await;

    let emails = sink
        .wait_for(&email, 4, Duration::from_secs(60), Duration::from_secs(3))
        .await;
    assert_eq!(
        emails.len(),
        4,
        "the verification link and one email per change"
    );
    for e in &emails {
        assert_eq!(e["to"][0]["address"], email.as_str());
        // Appointment e-mails greet the patient; the verification link went to an
        // address nobody had proven yet, so it names no one.
        if e["subject"] == "Verify your e-mail address" {
            assert!(e["to"][0]["name"].as_str().unwrap_or("").is_empty(), "{e}");
        } else {
            assert_eq!(e["to"][0]["name"], "Rita Lopes");
        }
        assert_eq!(e["from"][0]["address"], "no-reply@medbook.local");
    }
    let find = |prefix: &str| {
        emails
            .iter()
            .find(|e| e["subject"].as_str().unwrap().starts_with(prefix))
            .unwrap_or_else(|| panic!("no '{prefix}' email in {emails:?}"))
    };
    // Lisbon is on UTC in winter and UTC+1 in summer: the email says which.
    let local = |h: u32| {
        let t = at(h).with_timezone(&chrono_tz::Europe::Lisbon);
        format!(
            "{}–{} {} (Europe/Lisbon)",
            t.format("%A, %-d %B %Y, %H:%M"),
            (t + chrono::Duration::minutes(30)).format("%H:%M"),
            t.format("%Z")
        )
    };
    let created = find("Appointment confirmed");
    let text = created["text"].as_str().unwrap();
    assert!(text.contains(&format!("When: {}", local(10))), "{text}");
    assert!(
        text.contains("Doctor: Dr. Ana Sousa (Dermatology)"),
        "{text}"
    );
    assert!(
        text.contains("Where: Clínica Baixa, Rua Augusta 1, Lisbon"),
        "{text}"
    );
    assert!(created["html"].as_str().unwrap().contains("Dr. Ana Sousa"));
    let ics = sink.attachment(created, 0).await;
    // The attendee's name is a quoted parameter value (RFC 5545 / RFC 6868).
    assert!(
        ics.contains("ATTENDEE;CN=\"Rita Lopes\";ROLE=REQ-PARTICIPANT:mailto:"),
        "{ics}"
    );
    assert!(
        ics.contains(&format!("DTSTART:{}", at(10).format("%Y%m%dT%H%M%SZ"))),
        "{ics}"
    );
    assert!(ics.contains(&format!("UID:{aid}@medbook")), "{ics}");

    let moved = find("Appointment moved")["text"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(moved.contains(&format!("When: {}", local(15))), "{moved}");
    assert!(
        moved.contains(&format!("Previously: {}", local(10))),
        "{moved}"
    );

    let cancelled = find("Appointment cancelled")["text"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(cancelled.contains("cancelled as you asked"), "{cancelled}");
    assert!(
        cancelled.contains("Cancellation reason: cannot make it"),
        "{cancelled}"
    );

    assert_eq!(
        notifier
            .metric("emails_sent_total{outcome=\"first\"}")
            .await,
        4.0
    );
    notifier.shutdown().await.unwrap();
}
