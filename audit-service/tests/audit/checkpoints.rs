//! Checkpoints are issued every N records and every T seconds while the tree grew.

use crate::helpers::*;
use std::time::Duration;

#[tokio::test]
async fn a_checkpoint_follows_every_n_records() {
    let db = audit_db();
    let dir = TempDir::new();
    let mut config = Config::new(&db, &dir);
    config.set("MEDBOOK_AUDIT__CHECKPOINT_EVERY", "3");
    let server = Server::start(&config);
    let mut c = server.client().await;
    let mut sizes = Vec::new();
    for _ in 0..7 {
        c.append_n(1).await;
        sizes.push(c.checkpoint().await.map(|cp| cp.tree_size).unwrap_or(0));
    }
    assert_eq!(sizes, [0, 0, 3, 3, 3, 6, 6]);
    assert_eq!(server.metric("audit_checkpoints_issued_total").await, 2.0);
}

#[tokio::test]
async fn a_checkpoint_follows_every_interval_while_the_tree_grew() {
    let db = audit_db();
    let dir = TempDir::new();
    let mut config = Config::new(&db, &dir);
    config.set("MEDBOOK_AUDIT__CHECKPOINT_INTERVAL_SECS", "1");
    let server = Server::start(&config);
    let mut c = server.client().await;
    c.append_n(2).await;
    let cp = medbook_test_support::eventually(
        "a timed checkpoint of 2 records",
        Duration::from_secs(15),
        || {
            let mut c = c.clone();
            async move { c.checkpoint().await.ok().filter(|cp| cp.tree_size == 2) }
        },
    )
    .await;
    c.append_n(1).await;
    let later = medbook_test_support::eventually(
        "a timed checkpoint of 3 records",
        Duration::from_secs(15),
        || {
            let mut c = c.clone();
            async move { c.checkpoint().await.ok().filter(|cp| cp.tree_size == 3) }
        },
    )
    .await;
    assert!(later.issued_at.unwrap().seconds >= cp.issued_at.unwrap().seconds);
    assert_eq!(server.metric("audit_checkpoints_issued_total").await, 2.0);
}
