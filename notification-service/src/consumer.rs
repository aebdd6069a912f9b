//! The Kafka side of the service: a consumer-group member on the appointment topics.
//! Offsets are stored (`enable.auto.offset.store=false`) only after the handler has
//! finished with a message — email accepted, duplicate skipped or dead letter
//! acknowledged — and committed periodically and on shutdown, so a crash redelivers
//! at most the messages since the last commit, which the delivery log de-duplicates.

use crate::service::{HandleError, Incoming, Metrics, NotificationHandler};
use crate::settings::Settings;
use medbook_shared::events::{TOPIC_CANCELLED, TOPIC_CREATED, TOPIC_RESCHEDULED};
use rdkafka::consumer::{CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Headers, Message};
use rdkafka::statistics::Statistics;
use rdkafka::ClientContext;
use std::time::Duration;
use tokio::sync::watch;

/// Feeds librdkafka's statistics (consumer lag) into the metrics and logs rebalances.
pub struct Context {
    metrics: Metrics,
}

impl ClientContext for Context {
    fn stats(&self, stats: Statistics) {
        for (topic, t) in &stats.topics {
            for (partition, p) in &t.partitions {
                if *partition >= 0 && p.consumer_lag >= 0 {
                    self.metrics.set_lag(topic, *partition, p.consumer_lag);
                }
            }
        }
    }
}

impl ConsumerContext for Context {
    fn post_rebalance(&self, _: &rdkafka::consumer::BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(tpl) => {
                tracing::info!(partitions = tpl.count(), "partitions assigned")
            }
            Rebalance::Revoke(tpl) => {
                tracing::info!(partitions = tpl.count(), "partitions revoked")
            }
            Rebalance::Error(e) => tracing::warn!(error = %e, "rebalance failed"),
        }
    }
}

pub type EventConsumer = StreamConsumer<Context>;

/// A group member subscribed to the three appointment topics.
pub fn subscribe(settings: &Settings, metrics: Metrics) -> anyhow::Result<EventConsumer> {
    let c = &settings.consumer;
    let mut config = settings.kafka.client_config("notification-service");
    config
        .set("group.id", &c.group_id)
        .set("enable.auto.commit", "true")
        .set("auto.commit.interval.ms", c.commit_interval_ms.to_string())
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", c.session_timeout_ms.to_string())
        .set("fetch.wait.max.ms", c.fetch_wait_max_ms.to_string())
        .set("statistics.interval.ms", "5000");
    let consumer: EventConsumer = config.create_with_context(Context { metrics })?;
    let topics: Vec<String> = [TOPIC_CREATED, TOPIC_CANCELLED, TOPIC_RESCHEDULED]
        .iter()
        .map(|t| settings.kafka.topic(t))
        .collect();
    let topics: Vec<&str> = topics.iter().map(String::as_str).collect();
    consumer.subscribe(&topics)?;
    tracing::info!(?topics, group = %c.group_id, "subscribed");
    Ok(consumer)
}

pub fn incoming(m: &BorrowedMessage<'_>) -> Incoming {
    Incoming {
        topic: m.topic().to_owned(),
        partition: m.partition(),
        offset: m.offset(),
        key: m.key().map(<[u8]>::to_vec),
        payload: m.payload().map(<[u8]>::to_vec),
        headers: m
            .headers()
            .map(|hs| {
                hs.iter()
                    .map(|h| (h.key.to_owned(), h.value.map(<[u8]>::to_vec)))
                    .collect()
            })
            .unwrap_or_default(),
    }
}

/// Consumes until `stop` turns true (after finishing the message in hand) or the
/// dead-letter cap is hit (an error). Either way, stored offsets are committed and
/// the group is left before returning.
pub async fn run(
    consumer: EventConsumer,
    handler: NotificationHandler,
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let result = loop {
        if *stop.borrow() {
            break Ok(());
        }
        let message = tokio::select! {
            _ = stop.changed() => break Ok(()),
            m = consumer.recv() => m,
        };
        let message = match message {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(error = %e, "kafka consumer error");
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        let incoming = incoming(&message);
        match handler.handle(&incoming).await {
            Ok(_) => {
                if let Err(e) = consumer.store_offset(
                    message.topic(),
                    message.partition(),
                    message.offset(),
                ) {
                    // The partition was revoked meanwhile; its new owner will see the
                    // message again and the delivery log makes that harmless.
                    tracing::warn!(error = %e, source = %incoming.source(), "offset not stored");
                }
            }
            Err(HandleError::Stopped) => break Ok(()),
            Err(HandleError::DeadLetterLimit(reason)) => {
                break Err(anyhow::anyhow!(
                    "stopped: {reason}; fix the cause, then restart (the message that hit the cap is not consumed)"
                ))
            }
        }
    };
    match consumer.commit_consumer_state(CommitMode::Sync) {
        Ok(()) | Err(KafkaError::ConsumerCommit(rdkafka::types::RDKafkaErrorCode::NoOffset)) => {}
        Err(e) => tracing::warn!(error = %e, "final commit failed"),
    }
    consumer.unsubscribe();
    // Dropping the consumer closes it: it leaves the group, so partitions move on at once.
    tokio::task::spawn_blocking(move || drop(consumer)).await?;
    tracing::info!("consumer stopped; offsets committed and group left");
    result
}
