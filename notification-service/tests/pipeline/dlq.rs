//! The operators' dead-letter tools on the real broker: list, show, replay — safely.

use crate::helpers::*;
use medbook_test_support::kafka::TestTopics;
use medbook_test_support::mail::Maildev;
use std::time::Duration;

#[tokio::test]
async fn dead_letters_are_listed_shown_and_replayed_exactly_once() {
    let db = notify_db();
    let topics = TestTopics::shared(2).await;
    // Mail server down and mail kept for two seconds only: both events expire into
    // the DLQ.
    let mut sink = Maildev::start(None).await;
    let port = sink.smtp_port;
    sink.stop();
    let mut s = settings(&db, &topics, port);
    s.retry.max_age_secs = 2;
    let app = Running::start(&s).await;
    // Seen at start-up, before any email tries.
    medbook_test_support::eventually(
        "/ready to see the server down",
        Duration::from_secs(20),
        || async {
            let (status, body) = ready(&app.http).await;
            (status == 503 && body["smtp"] == "unavailable").then_some(())
        },
    )
    .await;
    let (to_a, to_b) = (address("replay-a"), address("replay-b"));
    let (a, b) = (created(&to_a), created(&to_b));
    topics.produce(vec![record(&a), record(&b)]).await;
    medbook_test_support::eventually("two dead letters", Duration::from_secs(60), || async {
        (app.metric("emails_dead_lettered_total{reason=\"expired\"}")
            .await
            == 2.0)
            .then_some(())
    })
    .await;

    let list = dlq(&s, &["list"]);
    assert_eq!(list.len(), 2, "{list:?}");
    for entry in &list {
        assert_eq!(entry["error_kind"], "expired");
        assert!(entry["attempts"].as_u64().unwrap() >= 1, "{entry}");
        assert_eq!(entry["delivery"], "not_sent");
        assert_eq!(
            entry["original_topic"],
            topics.topic("appointments.created")
        );
        assert!(
            entry["error"].as_str().unwrap().contains("onnection"),
            "{entry}"
        );
    }
    let first = &list[0];
    let shown = dlq(
        &s,
        &[
            "show",
            "--partition",
            &first["partition"].to_string(),
            "--offset",
            &first["offset"].to_string(),
        ],
    );
    let payload: serde_json::Value =
        serde_json::from_str(shown[0]["payload"].as_str().unwrap()).unwrap();
    assert_eq!(payload["id"], first["event_id"]);

    // The mail server is back.
    let sink = Maildev::start(Some(port)).await;
    let dry = dlq(&s, &["replay", "--all", "--dry-run"]);
    assert!(dry.iter().all(|l| l["action"] == "would_replay"), "{dry:?}");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        sink.emails_to(&to_a).await.is_empty(),
        "a dry run sends nothing"
    );

    // Only one event first, by id.
    let one = dlq(
        &s,
        &["replay", "--event-id", &a.id.to_string(), "--rate", "50"],
    );
    assert_eq!(one.len(), 1);
    assert_eq!(one[0]["action"], "replayed");
    sink.wait_for(&to_a, 1, Duration::from_secs(30), Duration::from_secs(1))
        .await;
    assert!(sink.emails_to(&to_b).await.is_empty());

    // Then everything, twice: the first run sends b, the second nothing.
    let all = dlq(&s, &["replay", "--all", "--rate", "50"]);
    let actions: Vec<&str> = all.iter().map(|l| l["action"].as_str().unwrap()).collect();
    assert!(actions.contains(&"replayed"), "{all:?}");
    sink.wait_for(&to_b, 1, Duration::from_secs(30), Duration::from_secs(1))
        .await;
    let again = dlq(&s, &["replay", "--all"]);
    assert!(
        again.iter().all(|l| l["action"] == "already_sent"),
        "{again:?}"
    );
    assert!(dlq(&s, &["list"]).iter().all(|e| e["delivery"] == "sent"));
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(sink.emails_to(&to_a).await.len(), 1);
    assert_eq!(sink.emails_to(&to_b).await.len(), 1);

    // Replaying around the skip still sends nothing twice: the consumer's delivery
    // log drops the redelivered event.
    let part = list[0]["partition"].to_string();
    let off = list[0]["offset"].as_i64().unwrap();
    let forced = dlq(
        &s,
        &[
            "replay",
            "--partition",
            &part,
            "--offsets",
            &format!("{off}-{off}"),
        ],
    );
    assert_eq!(forced[0]["action"], "already_sent");
    topics.produce(vec![record(&a)]).await;
    medbook_test_support::eventually(
        "the duplicate to be skipped",
        Duration::from_secs(20),
        || async { (app.metric("events_duplicate_total").await >= 1.0).then_some(()) },
    )
    .await;
    assert_eq!(sink.emails_to(&to_a).await.len(), 1);
    app.shutdown().await.unwrap();
}

#[tokio::test]
async fn replay_refuses_bad_selections() {
    let out = binary()
        .args(["dlq", "replay", "--offsets", "5-1", "--partition", "0"])
        .env("MEDBOOK_DATABASE__URL", "postgres://127.0.0.1:1/x")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let out = binary().args(["dlq", "replay"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "clap: a selection is required");
    assert!(String::from_utf8_lossy(&out.stderr).contains("--all"));
}
