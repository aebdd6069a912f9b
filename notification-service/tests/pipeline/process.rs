//! The real binary: SIGKILL mid-stream loses and duplicates nothing; SIGTERM finishes
//! the message in hand, commits and leaves the group; start-up failures are clear.

use crate::helpers::*;
use medbook_test_support::kafka::TestTopics;
use medbook_test_support::mail::Maildev;
use std::collections::HashMap;
use std::time::Duration;

#[tokio::test]
async fn killed_mid_stream_and_restarted_no_email_is_lost_or_sent_twice() {
    let db = notify_db();
    let topics = TestTopics::shared(3).await;
    let sink = Maildev::shared();
    let s = settings(&db, &topics, sink.smtp_port);
    let to = address("storm");
    let events: Vec<_> = (0..300).map(|_| created(&to)).collect();
    topics.produce(events.iter().map(record).collect()).await;

    let mut first = Process::spawn(&s);
    medbook_test_support::eventually(
        "the stream to be under way",
        Duration::from_secs(60),
        || async { (sink.emails_to(&to).await.len() >= 60).then_some(()) },
    )
    .await;
    first.signal("-KILL");
    first.wait(Duration::from_secs(10));
    let at_kill = sink.emails_to(&to).await.len();
    assert!(
        at_kill < 300,
        "killed too late to be mid-stream ({at_kill})"
    );

    let _second = Process::spawn(&s);
    let emails = sink
        .wait_for(&to, 300, Duration::from_secs(120), Duration::from_secs(3))
        .await;
    let mut per_event: HashMap<String, usize> = HashMap::new();
    for e in &emails {
        *per_event.entry(event_id_of(e)).or_default() += 1;
    }
    for e in &events {
        assert!(
            per_event.contains_key(&e.id.to_string()),
            "email of {} lost",
            e.id
        );
    }
    // SMTP has no transactions: an email that was between "accepted by SMTP" and
    // "recorded as sent" when the process died may go out again, and the delivery log
    // then shows a takeover for it. Partitions are sent concurrently, so that is at
    // most one email per partition (three here). Nothing else may repeat.
    let twice: Vec<&String> = per_event
        .iter()
        .filter(|(_, n)| **n > 1)
        .map(|(id, _)| id)
        .collect();
    let mut conn = db.conn();
    #[derive(diesel::QueryableByName)]
    struct N {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    #[derive(diesel::QueryableByName)]
    struct Id {
        #[diesel(sql_type = diesel::sql_types::Uuid)]
        event_id: uuid::Uuid,
    }
    let taken_over: Vec<String> = diesel::RunQueryDsl::load::<Id>(
        diesel::sql_query("SELECT event_id FROM deliveries WHERE takeovers > 0"),
        &mut conn,
    )
    .unwrap()
    .into_iter()
    .map(|r| r.event_id.to_string())
    .collect();
    assert!(twice.len() <= 3, "sent twice: {twice:?}");
    for id in &twice {
        assert!(
            taken_over.contains(id),
            "{id} sent twice without a takeover: {twice:?}"
        );
    }
    let sent: N = diesel::RunQueryDsl::get_result(
        diesel::sql_query("SELECT count(*) AS n FROM deliveries WHERE status = 'sent'"),
        &mut conn,
    )
    .unwrap();
    assert_eq!(sent.n, 300);
}

#[tokio::test]
async fn sigterm_commits_and_a_successor_resumes_without_redelivery() {
    let db = notify_db();
    let topics = TestTopics::shared(2).await;
    let sink = Maildev::shared();
    let s = settings(&db, &topics, sink.smtp_port);
    let to = address("term");
    topics
        .produce((0..20).map(|_| record(&created(&to))).collect())
        .await;
    let mut first = Process::spawn(&s);
    sink.wait_for(&to, 20, Duration::from_secs(60), Duration::ZERO)
        .await;
    first.signal("-TERM");
    assert_eq!(first.wait(Duration::from_secs(20)), Some(0));
    let mut stopped = false;
    while let Ok(line) = first.lines.recv_timeout(Duration::from_secs(1)) {
        stopped |= line["message"] == "consumer stopped; offsets committed and group left";
    }
    assert!(stopped, "no clean-stop log line");

    let second = Process::spawn(&s);
    let http = second.http();
    topics.produce(vec![record(&created(&to))]).await;
    let emails = sink
        .wait_for(&to, 21, Duration::from_secs(60), Duration::from_secs(2))
        .await;
    assert_eq!(emails.len(), 21);
    // Committed offsets: the successor did not even see the first 20 again.
    assert_eq!(metric(&http, "events_duplicate_total").await, 0.0);
    assert_eq!(
        metric(&http, "emails_sent_total{outcome=\"first\"}").await,
        1.0
    );
}

#[tokio::test]
async fn an_unreachable_database_fails_start_up_with_a_clear_message() {
    let out = binary()
        .env(
            "MEDBOOK_DATABASE__URL",
            "postgres://postgres@127.0.0.1:1/nothing",
        )
        .env("MEDBOOK_DATABASE__STARTUP_RETRY_SECS", "1")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("database unreachable"), "{stderr}");
    let out = binary().env("MEDBOOK_SMTP__PORT", "none").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("smtp.port"));
}
