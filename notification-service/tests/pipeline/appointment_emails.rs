//! What appointment e-mails carry on the real broker and mail sink: the patient's
//! manage link, and the no-show notice, sent only when the clinic asked for it.

use crate::helpers::*;
use medbook_shared::events::TOPIC_ATTENDANCE;
use medbook_test_support::kafka::TestTopics;
use medbook_test_support::mail::Maildev;
use serde_json::Value;
use std::time::Duration;

fn subject(mail: &Value) -> &str {
    mail["subject"].as_str().unwrap()
}

#[tokio::test]
async fn a_confirmation_carries_the_manage_link_in_text_and_html() {
    let db = notify_db();
    let topics = TestTopics::shared(1).await;
    let sink = Maildev::shared();
    let app = Running::start(&settings(&db, &topics, sink.smtp_port)).await;
    let to = address("manage");
    let booked = created(&to);
    topics.produce(vec![record(&booked)]).await;
    let emails = sink
        .wait_for(&to, 1, Duration::from_secs(30), Duration::ZERO)
        .await;
    let mail = &emails[0];
    assert!(subject(mail).starts_with("Appointment confirmed"));
    let url = manage_url(&booked);
    let text = mail["text"].as_str().unwrap();
    assert!(
        text.contains(&format!("\nCancel or reschedule: {url}\n")),
        "{text}"
    );
    let html = mail["html"].as_str().unwrap();
    assert!(
        html.contains(&format!(
            "Cancel or reschedule: <a href=\"{url}\">{url}</a>"
        )),
        "{html}"
    );
    // The calendar part is still there, and names the same appointment.
    let ics = sink.attachment(mail, 0).await;
    assert!(
        ics.contains(&format!(
            "UID:{}@medbook",
            booked.appointment().unwrap().appointment_id
        )),
        "{ics}"
    );
    app.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_no_show_is_emailed_only_when_the_clinic_asked_for_it() {
    let db = notify_db();
    let topics = TestTopics::shared(1).await;
    let sink = Maildev::shared();
    let app = Running::start(&settings(&db, &topics, sink.smtp_port)).await;
    let (quiet_to, told_to) = (address("no-show-quiet"), address("no-show-told"));
    let (quiet, told) = (created(&quiet_to), created(&told_to));
    let unwanted = no_show(&quiet, false);
    let wanted = no_show(&told, true);
    assert_eq!(record(&wanted).0, TOPIC_ATTENDANCE);
    topics
        .produce(vec![
            record(&quiet),
            record(&told),
            record(&unwanted),
            record(&wanted),
        ])
        .await;
    let emails = sink
        .wait_for(&told_to, 2, Duration::from_secs(30), Duration::ZERO)
        .await;
    let subjects: Vec<&str> = emails.iter().map(subject).collect();
    assert!(
        subjects[0].starts_with("Appointment confirmed"),
        "{subjects:?}"
    );
    assert_eq!(subjects[1], "We missed you: Dr. Who on 1 Dec 2026, 10:30");
    assert_eq!(event_id_of(&emails[1]), wanted.id.to_string());
    let notice = emails[1]["text"].as_str().unwrap();
    assert!(
        notice.contains("we missed you at your appointment."),
        "{notice}"
    );
    assert!(!notice.contains("Cancel or reschedule"), "{notice}");
    assert!(
        emails[1]["attachments"]
            .as_array()
            .is_none_or(|a| a.is_empty()),
        "no calendar part: {:?}",
        emails[1]["attachments"]
    );
    // The attendance partition is handled in order: the unwanted no-show was consumed
    // before the wanted one was sent, and the confirmations went before either.
    assert_eq!(
        app.metric("emails_handled_total{outcome=\"not_wanted\"}")
            .await,
        1.0
    );
    let quiet_mail = sink.emails_to(&quiet_to).await;
    let quiet_subjects: Vec<&str> = quiet_mail.iter().map(subject).collect();
    assert_eq!(quiet_subjects.len(), 1, "{quiet_subjects:?}");
    assert!(quiet_subjects[0].starts_with("Appointment confirmed"));
    app.shutdown().await.unwrap();
}
