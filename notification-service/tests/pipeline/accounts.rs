//! Account e-mails on the real broker and mail sink: consumed from the accounts topic,
//! sent once per event id.

use crate::helpers::*;
use medbook_shared::events::{AccountEvent, Event, TOPIC_ACCOUNTS};
use medbook_test_support::kafka::TestTopics;
use medbook_test_support::mail::Maildev;
use std::time::Duration;

#[tokio::test]
async fn a_verification_link_is_emailed_once_to_its_address() {
    let db = notify_db();
    let topics = TestTopics::shared(1).await;
    let sink = Maildev::shared();
    let app = Running::start(&settings(&db, &topics, sink.smtp_port)).await;
    let to = address("verify");
    let event = verify_email(&to);
    let Event::Account(AccountEvent::VerifyEmail(link)) = &event.event else {
        unreachable!()
    };
    // Delivered twice, as a redelivery would bring it.
    let rec = record(&event);
    assert_eq!(rec.0, TOPIC_ACCOUNTS);
    topics.produce(vec![rec.clone(), rec]).await;
    let emails = sink
        .wait_for(&to, 1, Duration::from_secs(30), Duration::from_secs(2))
        .await;
    assert_eq!(emails.len(), 1, "one email per event: {emails:?}");
    let mail = &emails[0];
    assert_eq!(mail["to"][0]["address"], to.as_str());
    assert_eq!(mail["subject"], "Verify your e-mail address");
    assert_eq!(event_id_of(mail), event.id.to_string());
    let text = mail["text"].as_str().unwrap();
    assert!(text.contains(&link.link), "{text}");
    assert!(text.contains("This link works until"), "{text}");
    assert!(mail["html"]
        .as_str()
        .unwrap()
        .contains(&format!("href=\"{}\"", link.link)));
    assert!(
        mail["attachments"].as_array().is_none_or(|a| a.is_empty()),
        "no calendar part: {:?}",
        mail["attachments"]
    );
    // The name was typed by whoever registered, not by the owner of the address: the
    // message carries none of it (subject, bodies, To header).
    assert!(
        !mail.to_string().contains(STRANGERS_NAME),
        "a stranger's text reached the inbox: {mail}"
    );
    let health = reqwest::get(format!("{}/health", app.http)).await.unwrap();
    assert_eq!(health.headers()["x-content-type-options"], "nosniff");
    medbook_test_support::eventually("the duplicate counted", Duration::from_secs(10), || async {
        (app.metric("events_duplicate_total").await == 1.0).then_some(())
    })
    .await;
    app.shutdown().await.unwrap();
}

/// The newcomer's path, across both services and the real mail sink: register, follow
/// the verification e-mail's link (the page, then its button), book; ask for a reset,
/// follow that e-mail's link to the form, set a new password; the refresh token from
/// before no longer works.
#[tokio::test]
async fn register_verify_book_then_reset_the_password_through_the_emails() {
    let notify_db = notify_db();
    let topics = TestTopics::shared(3).await;
    let sink = Maildev::shared();
    let booking = crate::booking::BookingApp::start(&topics, &[]).await;
    let notifier = Running::start(&settings(&notify_db, &topics, sink.smtp_port)).await;
    let admin = booking.admin().await;
    let doctor = booking
        .doctor(
            &admin,
            serde_json::json!({"name": "Praxis Mitte", "city": "Berlin", "address": "Torstr. 1", "time_zone": "Europe/Berlin"}),
            "Dr. Jonas Weber",
            "Cardiology",
        )
        .await;
    let slot = booking.slots(doctor["id"].as_str().unwrap(), 1).remove(0);
    let client = reqwest::Client::new();
    // Links name the configured public URL; here the service is on a random port.
    let local = |link: &str| {
        let path = link.split_once("/account/").map(|(_, p)| p).unwrap();
        format!("{}/account/{path}", booking.base)
    };
    let link_in = |mail: &serde_json::Value| {
        mail["text"]
            .as_str()
            .unwrap()
            .lines()
            .find(|l| l.starts_with("http") && l.contains("token="))
            .unwrap()
            .trim()
            .to_owned()
    };

    let email = address("newcomer");
    booking.register(&email, "Lena Vogel").await;
    let mails = sink
        .wait_for(&email, 1, Duration::from_secs(60), Duration::ZERO)
        .await;
    assert_eq!(mails[0]["subject"], "Verify your e-mail address");
    let page = client.get(local(&link_in(&mails[0]))).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(page
        .text()
        .await
        .unwrap()
        .contains("Verify my e-mail address"));
    let token = crate::booking::token_of(&link_in(&mails[0]));
    let verified = client
        .post(format!("{}/account/verify-email", booking.base))
        .form(&[("token", token.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(verified.status(), 200);

    let pair = booking
        .post(
            "/api/v1/auth/login",
            None,
            serde_json::json!({"email": email, "password": "violet ferry 2207"}),
        )
        .await;
    let access = pair["access_token"].as_str().unwrap();
    let old_refresh = pair["refresh_token"].as_str().unwrap().to_owned();
    booking
        .post(
            "/api/v1/appointments",
            Some(access),
            serde_json::json!({"slot_id": slot, "reason": "check-up"}),
        )
        .await;
    let mails = sink
        .wait_for(&email, 2, Duration::from_secs(60), Duration::ZERO)
        .await;
    assert!(mails[1]["subject"]
        .as_str()
        .unwrap()
        .starts_with("Appointment confirmed"));

    booking
        .post(
            "/api/v1/auth/password-reset",
            None,
            serde_json::json!({"email": email}),
        )
        .await;
    let mails = sink
        .wait_for(&email, 3, Duration::from_secs(60), Duration::ZERO)
        .await;
    assert_eq!(mails[2]["subject"], "Reset your medbook password");
    let reset_link = link_in(&mails[2]);
    let form = client.get(local(&reset_link)).send().await.unwrap();
    assert!(form.text().await.unwrap().contains("name=\"new_password\""));
    let done = client
        .post(format!("{}/account/reset-password", booking.base))
        .form(&[
            ("token", crate::booking::token_of(&reset_link).as_str()),
            ("new_password", "copper-meadow-91"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(done.status(), 200);
    let refused = client
        .post(format!("{}/api/v1/auth/refresh", booking.base))
        .json(&serde_json::json!({"refresh_token": old_refresh}))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401, "the old refresh token is revoked");
    booking.login(&email, "copper-meadow-91").await;
    notifier.shutdown().await.unwrap();
    booking.stop().await;
}
