//! Waitlist offers on the real broker and mail sink: consumed from their topic, sent
//! once per event id with the booking link and the hold in the clinic's time zone; an
//! offer whose hold ended before it could be sent is dropped, never sent late, and the
//! partition goes on.

use crate::helpers::*;
use medbook_shared::events::{Event, EventEnvelope, WaitlistOffer, TOPIC_WAITLIST};
use medbook_test_support::kafka::TestTopics;
use medbook_test_support::mail::Maildev;
use serde_json::Value;
use std::time::Duration;

fn offer_of(e: &EventEnvelope) -> &WaitlistOffer {
    let Event::Waitlist(o) = &e.event else {
        panic!("not an offer")
    };
    o
}

fn text(mail: &Value) -> &str {
    mail["text"].as_str().unwrap()
}

#[tokio::test]
async fn an_offer_is_emailed_once_with_its_booking_link_and_how_long_it_is_held() {
    let db = notify_db();
    let topics = TestTopics::shared(1).await;
    let sink = Maildev::shared();
    let app = Running::start(&settings(&db, &topics, sink.smtp_port)).await;
    let to = address("offer");
    let event = offer(&to, chrono::Duration::minutes(15));
    let o = offer_of(&event);
    // Delivered twice, as a redelivery would bring it.
    let rec = record(&event);
    assert_eq!(rec.0, TOPIC_WAITLIST);
    topics.produce(vec![rec.clone(), rec]).await;
    medbook_test_support::eventually("the duplicate counted", Duration::from_secs(30), || async {
        (app.metric("events_duplicate_total").await == 1.0).then_some(())
    })
    .await;
    let emails = sink.emails_to(&to).await;
    assert_eq!(emails.len(), 1, "one email per event: {emails:?}");
    let mail = &emails[0];
    assert_eq!(event_id_of(mail), event.id.to_string());
    assert_eq!(
        mail["subject"],
        "A slot opened up: Dr. Who on 1 Dec 2026, 10:30"
    );
    let berlin = |t: chrono::DateTime<chrono::Utc>| {
        t.with_timezone(&chrono_tz::Europe::Berlin)
            .format("%A, %-d %B %Y, %H:%M %Z (Europe/Berlin)")
            .to_string()
    };
    let body = text(mail);
    assert!(body.contains(&format!("Book it: {}\n", o.link)), "{body}");
    assert!(
        body.contains(&format!("held for you until {}.", berlin(o.expires_at))),
        "{body}"
    );
    assert!(
        body.contains("When: Tuesday, 1 December 2026, 10:30–11:00 CET (Europe/Berlin)"),
        "{body}"
    );
    assert!(
        body.contains("Doctor: Dr. Who (General practice)"),
        "{body}"
    );
    assert!(
        body.contains("Where: Mitte, Unter den Linden 1, Berlin"),
        "{body}"
    );
    let html = mail["html"].as_str().unwrap();
    assert!(
        html.contains(&format!("href=\"{}\"", o.link.replace('&', "&amp;"))),
        "{html}"
    );
    assert!(
        mail["attachments"].as_array().is_none_or(|a| a.is_empty()),
        "nothing is booked yet, so no calendar part: {:?}",
        mail["attachments"]
    );
    app.shutdown().await.unwrap();
}

#[tokio::test]
async fn an_offer_whose_hold_ended_is_never_sent_and_the_next_one_is() {
    let db = notify_db();
    let topics = TestTopics::shared(1).await;
    let sink = Maildev::shared();
    let app = Running::start(&settings(&db, &topics, sink.smtp_port)).await;
    let to = address("late-offer");
    // The first offer's hold ended while it waited on the topic; the slot went to the
    // next in line, who turned it down, and the patient's next offer follows it on the
    // same partition.
    let expired = offer(&to, -chrono::Duration::seconds(30));
    let current = offer(&to, chrono::Duration::minutes(15));
    topics
        .produce(vec![record(&expired), record(&current)])
        .await;
    let emails = sink
        .wait_for(&to, 1, Duration::from_secs(30), Duration::ZERO)
        .await;
    // One partition, handled in order: the expired offer was decided before this one.
    assert_eq!(emails.len(), 1, "{emails:?}");
    assert_eq!(event_id_of(&emails[0]), current.id.to_string());
    assert!(text(&emails[0]).contains(&offer_of(&current).link));
    assert!(!text(&emails[0]).contains(&offer_of(&expired).link));
    assert_eq!(
        app.metric("waitlist_offers_skipped_total{reason=\"offer_expired\"}")
            .await,
        1.0
    );
    assert_eq!(
        app.metric("emails_handled_total{outcome=\"skipped\"}")
            .await,
        1.0
    );
    assert_eq!(
        app.metric("emails_dead_lettered_total{reason=\"expired\"}")
            .await,
        0.0,
        "dropped, not dead-lettered"
    );
    app.shutdown().await.unwrap();
}
