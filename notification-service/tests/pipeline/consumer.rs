//! Handling on the real broker and SMTP servers: emails once per event, retries,
//! dead letters, the dead-letter cap shared by the group.

use crate::helpers::*;
use medbook_shared::events::TOPIC_DLQ;
use medbook_test_support::kafka::TestTopics;
use medbook_test_support::mail::Maildev;
use std::time::Duration;

#[tokio::test]
async fn each_event_is_emailed_once_however_often_it_is_delivered() {
    let db = notify_db();
    let topics = TestTopics::shared(2).await;
    let sink = Maildev::shared();
    let app = Running::start(&settings(&db, &topics, sink.smtp_port)).await;
    let to = address("once");
    let events: Vec<_> = (0..3).map(|_| created(&to)).collect();
    // Each event three times, as redelivery or a replay would bring it.
    let mut records = Vec::new();
    for _ in 0..3 {
        records.extend(events.iter().map(record));
    }
    topics.produce(records).await;
    let emails = sink
        .wait_for(&to, 3, Duration::from_secs(30), Duration::from_secs(2))
        .await;
    assert_eq!(emails.len(), 3, "one email per event");
    let mut ids: Vec<String> = emails.iter().map(event_id_of).collect();
    ids.sort();
    let mut expected: Vec<String> = events.iter().map(|e| e.id.to_string()).collect();
    expected.sort();
    assert_eq!(ids, expected);
    assert_eq!(app.metric("events_duplicate_total").await, 6.0);
    assert_eq!(
        app.metric("emails_sent_total{outcome=\"first\"}").await,
        3.0
    );
    app.shutdown().await.unwrap();
}

#[tokio::test]
async fn poison_and_permanent_failures_are_dead_lettered_and_the_partition_moves_on() {
    let db = notify_db();
    let topics = TestTopics::shared(1).await;
    let smtp = FaultSmtp::start(0).await;
    let s = settings(&db, &topics, smtp.smtp_port);
    let app = Running::start(&s).await;
    // Joined and working.
    topics
        .produce(vec![record(&created(&address("warm")))])
        .await;
    medbook_test_support::eventually("the warm-up email", Duration::from_secs(30), || async {
        (!smtp.messages().await.is_empty()).then_some(())
    })
    .await;

    let garbage = b"\x00\xffnot an event".to_vec();
    let mut v2: serde_json::Value =
        serde_json::from_slice(&created("x@example.com").encode().unwrap()).unwrap();
    v2["version"] = 2.into();
    let v2 = serde_json::to_vec(&v2).unwrap();
    let rejected = created(&address("reject"));
    let unusable = created("not an address");
    let good = created(&address("after"));
    topics
        .produce(vec![
            (
                "appointments.created".into(),
                Some(b"k1".to_vec()),
                garbage.clone(),
            ),
            (
                "appointments.created".into(),
                Some(b"k2".to_vec()),
                v2.clone(),
            ),
            record(&rejected),
            record(&unusable),
            record(&good),
        ])
        .await;
    let good_to = good.appointment().unwrap().patient.email.clone();
    medbook_test_support::eventually(
        "the good email after the bad ones",
        Duration::from_secs(10),
        || async {
            smtp.messages()
                .await
                .iter()
                .any(|m| m["rcpt_tos"][0] == good_to.as_str())
                .then_some(())
        },
    )
    .await;
    // The four bad messages in front of it held the partition back without retries
    // (how long that takes is for the benchmarks): see their attempt counts below.

    let mut reader = topics.reader(&[TOPIC_DLQ]).await;
    let letters = reader
        .read(4, Duration::from_secs(10), Duration::from_secs(1))
        .await
        .to_vec();
    assert_eq!(letters.len(), 4);
    let kinds: Vec<String> = letters
        .iter()
        .map(|l| l.header("dlq-error-kind").unwrap())
        .collect();
    assert_eq!(kinds, ["poison", "poison", "permanent", "permanent"]);
    let attempts: Vec<String> = letters
        .iter()
        .map(|l| l.header("dlq-attempts").unwrap())
        .collect();
    // Poison never reaches SMTP; a permanent refusal is not retried.
    assert_eq!(attempts, ["0", "0", "1", "1"]);
    assert_eq!(letters[0].payload, garbage, "original bytes unchanged");
    assert_eq!(letters[0].key.as_deref(), Some("k1"));
    assert_eq!(letters[1].payload, v2);
    assert!(letters[1]
        .header("dlq-error")
        .unwrap()
        .contains("version 2"));
    assert!(
        letters[2].header("dlq-error").unwrap().contains("550"),
        "{:?}",
        letters[2].header("dlq-error")
    );
    assert!(letters[3]
        .header("dlq-error")
        .unwrap()
        .contains("invalid recipient"));
    for (i, l) in letters.iter().enumerate() {
        assert_eq!(
            l.header("dlq-original-topic").unwrap(),
            topics.topic("appointments.created")
        );
        assert_eq!(l.header("dlq-original-partition").as_deref(), Some("0"));
        assert_eq!(
            l.header("dlq-original-offset").unwrap(),
            (i + 1).to_string()
        );
        let failed_at = l.header("dlq-failed-at").unwrap();
        assert!(
            chrono::DateTime::parse_from_rfc3339(&failed_at).is_ok(),
            "{failed_at}"
        );
        assert!(l.header("dlq-attempts").is_some());
    }
    assert_eq!(letters[2].header("dlq-attempts").as_deref(), Some("1"));
    assert_eq!(
        app.metric("emails_dead_lettered_total{reason=\"poison\"}")
            .await,
        2.0
    );
    assert_eq!(
        app.metric("emails_dead_lettered_total{reason=\"permanent\"}")
            .await,
        2.0
    );
    app.shutdown().await.unwrap();
}

#[tokio::test]
async fn transient_failures_are_retried_until_the_email_is_accepted() {
    let db = notify_db();
    let topics = TestTopics::shared(1).await;
    // 451 for the first two attempts per recipient.
    let smtp = FaultSmtp::start(2).await;
    let app = Running::start(&settings(&db, &topics, smtp.smtp_port)).await;
    let event = created(&address("defer"));
    topics.produce(vec![record(&event)]).await;
    medbook_test_support::eventually("the deferred email", Duration::from_secs(30), || async {
        (smtp.messages().await.len() == 1).then_some(())
    })
    .await;
    assert_eq!(
        app.metric("email_send_failures_total{kind=\"transient\"}")
            .await,
        2.0
    );
    #[derive(diesel::QueryableByName)]
    struct Row {
        #[diesel(sql_type = diesel::sql_types::Integer)]
        attempts: i32,
        #[diesel(sql_type = diesel::sql_types::Text)]
        status: String,
    }
    // The delivery log is written just after the server accepted the mail.
    let (attempts, status) = medbook_test_support::eventually(
        "the delivery marked sent",
        Duration::from_secs(10),
        || async {
            let row: Row = diesel::RunQueryDsl::get_result(
                diesel::sql_query(format!(
                    "SELECT attempts, status FROM deliveries WHERE event_id = '{}'",
                    event.id
                )),
                &mut db.conn(),
            )
            .unwrap();
            (row.status == "sent").then_some((row.attempts, row.status))
        },
    )
    .await;
    assert_eq!((attempts, status.as_str()), (3, "sent"));
    app.shutdown().await.unwrap();
}

#[tokio::test]
async fn an_smtp_outage_is_waited_out_and_the_email_then_delivered() {
    let db = notify_db();
    let topics = TestTopics::shared(1).await;
    let mut sink = Maildev::start(None).await;
    let port = sink.smtp_port;
    let s = settings(&db, &topics, port);
    let app = Running::start(&s).await;
    let warm = address("warm");
    topics.produce(vec![record(&created(&warm))]).await;
    sink.wait_for(&warm, 1, Duration::from_secs(30), Duration::ZERO)
        .await;

    sink.stop(); // connection refused from now on
    let to = address("outage");
    topics.produce(vec![record(&created(&to))]).await;
    medbook_test_support::eventually("failed attempts", Duration::from_secs(30), || async {
        (app.metric("email_send_failures_total{kind=\"unavailable\"}")
            .await
            >= 2.0)
            .then_some(())
    })
    .await;
    let sink = Maildev::start(Some(port)).await;
    let emails = sink
        .wait_for(&to, 1, Duration::from_secs(30), Duration::from_secs(1))
        .await;
    assert_eq!(emails.len(), 1);
    app.shutdown().await.unwrap();
}

/// How many rows of the group's dead-letter window there are.
fn in_window(db: &medbook_test_support::pg::TestDb) -> i64 {
    use diesel::prelude::*;
    #[derive(diesel::QueryableByName)]
    struct N {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    diesel::sql_query("SELECT count(*) AS n FROM dead_letter_window")
        .get_result::<N>(&mut db.conn())
        .unwrap()
        .n
}

#[tokio::test]
async fn the_dead_letter_cap_is_one_figure_for_the_group_and_holds_instead_of_exiting() {
    let db = notify_db();
    let topics = TestTopics::shared(2).await;
    let sink = Maildev::shared();
    let mut s = settings(&db, &topics, sink.smtp_port);
    s.dead_letters.max_per_window = 3;
    s.dead_letters.window_secs = 3600;
    // Two workers of one group, one partition each.
    let a = Running::start(&s).await;
    let b = Running::start(&s).await;
    medbook_test_support::eventually(
        "both workers hold a partition",
        Duration::from_secs(60),
        || async {
            (a.metric("consumer_rebalances_total{kind=\"assign\"}").await >= 1.0
                && b.metric("consumer_rebalances_total{kind=\"assign\"}").await >= 1.0)
                .then_some(())
        },
    )
    .await;
    let poison: Vec<_> = (0..8)
        .map(|i| {
            (
                "appointments.created".to_owned(),
                Some(format!("key {i}").into_bytes()),
                format!("garbage {i}").into_bytes(),
            )
        })
        .collect();
    topics.produce(poison).await;
    let mut reader = topics.reader(&[TOPIC_DLQ]).await;
    let first = reader
        .read(3, Duration::from_secs(30), Duration::from_secs(1))
        .await
        .len();
    medbook_test_support::eventually(
        "messages held by the cap",
        Duration::from_secs(30),
        || async {
            (a.metric("dead_letters_held").await + b.metric("dead_letters_held").await >= 1.0)
                .then_some(())
        },
    )
    .await;
    // Three for the whole group, not three per worker; and neither worker exited.
    assert_eq!(first, 3);
    assert_eq!(in_window(&db), 3);
    assert!(!a.task.is_finished() && !b.task.is_finished());

    // As the window moves on, the held messages are dead-lettered, in their order, by
    // the workers that held them — nobody restarted anything.
    // The window moves on (twice: it admits three each time).
    db.execute("UPDATE dead_letter_window SET at = at - interval '2 hours'");
    reader
        .read(6, Duration::from_secs(60), Duration::from_secs(1))
        .await;
    assert_eq!(in_window(&db), 3);
    db.execute("UPDATE dead_letter_window SET at = at - interval '2 hours'");
    let letters = reader
        .read(8, Duration::from_secs(60), Duration::from_secs(2))
        .await;
    let mut payloads: Vec<String> = letters
        .iter()
        .map(|l| String::from_utf8(l.payload.clone()).unwrap())
        .collect();
    payloads.sort();
    assert_eq!(
        payloads,
        (0..8).map(|i| format!("garbage {i}")).collect::<Vec<_>>()
    );
    assert_eq!(
        a.metric("dead_letters_held").await + b.metric("dead_letters_held").await,
        0.0
    );
    a.shutdown().await.unwrap();
    b.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_burst_of_bounced_addresses_never_trips_the_cap_or_holds_other_mail() {
    let db = notify_db();
    let topics = TestTopics::shared(1).await;
    let smtp = FaultSmtp::start(0).await;
    let mut s = settings(&db, &topics, smtp.smtp_port);
    s.dead_letters.max_per_window = 2;
    let app = Running::start(&s).await;
    // Twenty bounces, then one patient whose mail must go through at once.
    let mut records: Vec<_> = (0..20)
        .map(|i| record(&created(&address(&format!("reject{i}")))))
        .collect();
    let next = created(&address("next"));
    records.push(record(&next));
    topics.produce(records).await;
    let next_to = next.appointment().unwrap().patient.email.clone();
    medbook_test_support::eventually(
        "the next patient's email",
        Duration::from_secs(60),
        || async {
            smtp.messages()
                .await
                .into_iter()
                .find(|m| m["rcpt_tos"][0] == next_to.as_str())
        },
    )
    .await;
    let mut reader = topics.reader(&[TOPIC_DLQ]).await;
    assert_eq!(
        reader
            .read(20, Duration::from_secs(30), Duration::from_secs(1))
            .await
            .len(),
        20
    );
    assert_eq!(in_window(&db), 0);
    assert_eq!(app.metric("dead_letters_held").await, 0.0);
    app.shutdown().await.unwrap();
}

#[tokio::test]
async fn mail_the_server_refuses_outright_is_capped_and_held() {
    let db = notify_db();
    let topics = TestTopics::shared(1).await;
    let smtp = FaultSmtp::start(0).await;
    let mut s = settings(&db, &topics, smtp.smtp_port);
    s.dead_letters.max_per_window = 1;
    s.dead_letters.window_secs = 3600;
    let app = Running::start(&s).await;
    topics
        .produce(vec![
            record(&created(&address("refuse-a"))),
            record(&created(&address("refuse-b"))),
        ])
        .await;
    let mut reader = topics.reader(&[TOPIC_DLQ]).await;
    let letters = reader
        .read(1, Duration::from_secs(30), Duration::from_secs(1))
        .await
        .to_vec();
    assert_eq!(
        letters[0].header("dlq-error-kind").as_deref(),
        Some("refused")
    );
    medbook_test_support::eventually(
        "the second refusal is held",
        Duration::from_secs(30),
        || async { (app.metric("dead_letters_held").await >= 1.0).then_some(()) },
    )
    .await;
    assert_eq!(in_window(&db), 1);
    assert!(!app.task.is_finished());
    app.shutdown().await.unwrap();
}
