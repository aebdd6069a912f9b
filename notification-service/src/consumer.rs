//! The Kafka side of the service: a consumer-group member on the event topics
//! (`EVENT_TOPICS`: appointments, attendance, accounts, waitlist offers).
//!
//! One task polls the consumer and hands each message to a worker of its partition;
//! each partition's worker handles its messages one after the other (so one
//! appointment's events keep their order), and partitions progress independently: a
//! message waiting out an outage or a slow recipient holds back only its own
//! partition. When a partition has `consumer.partition_buffer` messages waiting, it is
//! paused (backpressure) and resumed once they drain; the polling task keeps polling
//! all the while, so the member stays healthy in its group however long a message
//! waits. How many emails are sent at once is bounded by `smtp.max_connections`.
//!
//! Offsets are stored (`enable.auto.offset.store=false`) only after the handler has
//! finished with a message — email accepted, duplicate, stale reminder or expired link
//! or offer skipped, no e-mail wanted, dead letter acknowledged — and committed
//! periodically and on shutdown, so a crash redelivers at most the messages since the
//! last commit, which the delivery log de-duplicates. A revoked partition's worker is
//! told to let go of its message; its new owner takes it over.

use crate::service::{HandleError, Incoming, Metrics, NotificationHandler, Outcome};
use crate::settings::Settings;
use chrono::{DateTime, Utc};
use medbook_shared::events::EVENT_TOPICS;
use medbook_shared::kafka_log::KafkaContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Headers, Message};
use rdkafka::statistics::Statistics;
use rdkafka::{ClientContext, TopicPartitionList};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};

/// A partition assignment change, passed from librdkafka's callback to the loop.
#[derive(Debug)]
enum Assignment {
    Assigned(Vec<(String, i32)>),
    Revoked(Vec<(String, i32)>),
}

/// Feeds librdkafka's statistics (consumer lag) into the metrics, passes rebalances to
/// the polling loop, and logs librdkafka's reports through the shared
/// [`KafkaContext`] (a broker outage once, then at a low rate, and its end).
pub struct Context {
    metrics: Metrics,
    assignments: mpsc::UnboundedSender<Assignment>,
    kafka: KafkaContext,
}

impl ClientContext for Context {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        self.kafka.log(level, fac, log_message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        self.kafka.error(error, reason);
    }

    fn stats(&self, stats: Statistics) {
        for (topic, t) in &stats.topics {
            for (partition, p) in &t.partitions {
                if *partition >= 0 && p.consumer_lag >= 0 {
                    self.metrics.set_lag(topic, *partition, p.consumer_lag);
                }
            }
        }
        self.kafka.stats(stats);
    }
}

fn partitions(tpl: &TopicPartitionList) -> Vec<(String, i32)> {
    tpl.elements()
        .iter()
        .map(|e| (e.topic().to_owned(), e.partition()))
        .collect()
}

impl ConsumerContext for Context {
    fn post_rebalance(&self, _: &rdkafka::consumer::BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(tpl) => {
                tracing::info!(partitions = tpl.count(), "partitions assigned");
                self.metrics.rebalanced("assign");
                let _ = self.assignments.send(Assignment::Assigned(partitions(tpl)));
            }
            Rebalance::Revoke(tpl) => {
                tracing::info!(partitions = tpl.count(), "partitions revoked");
                self.metrics.rebalanced("revoke");
                let _ = self.assignments.send(Assignment::Revoked(partitions(tpl)));
            }
            Rebalance::Error(e) => tracing::warn!(error = %e, "rebalance failed"),
        }
    }
}

pub type EventConsumer = StreamConsumer<Context>;

/// A group member subscribed to the event topics, and the stream of its
/// assignment changes.
pub struct Subscription {
    consumer: EventConsumer,
    assignments: mpsc::UnboundedReceiver<Assignment>,
    partition_buffer: usize,
    metrics: Metrics,
}

pub fn subscribe(settings: &Settings, metrics: Metrics) -> anyhow::Result<Subscription> {
    let c = &settings.consumer;
    let mut config = settings.kafka.client_config("notification-service");
    config
        .set("group.id", &c.group_id)
        .set("enable.auto.commit", "true")
        .set("auto.commit.interval.ms", c.commit_interval_ms.to_string())
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", c.session_timeout_ms.to_string())
        .set("fetch.wait.max.ms", c.fetch_wait_max_ms.to_string());
    // Statistics (lag, and the end of a broker outage) come every
    // `kafka::STATISTICS_INTERVAL`, set by `client_config`.
    let (tx, assignments) = mpsc::unbounded_channel();
    let consumer: EventConsumer = config.create_with_context(Context {
        metrics: metrics.clone(),
        assignments: tx,
        kafka: KafkaContext::new("notification-service"),
    })?;
    let topics: Vec<String> = EVENT_TOPICS
        .iter()
        .map(|t| settings.kafka.topic(t))
        .collect();
    let topics: Vec<&str> = topics.iter().map(String::as_str).collect();
    consumer.subscribe(&topics)?;
    tracing::info!(?topics, group = %c.group_id, "subscribed");
    Ok(Subscription {
        consumer,
        assignments,
        partition_buffer: c.partition_buffer,
        metrics,
    })
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
        timestamp: m
            .timestamp()
            .to_millis()
            .and_then(DateTime::<Utc>::from_timestamp_millis),
    }
}

type Partition = (String, i32);

/// What a worker reports per message.
struct Done {
    partition: Partition,
    /// Which worker of the partition (a partition revoked and assigned back gets a new one).
    worker: u64,
    offset: i64,
    result: Result<Outcome, HandleError>,
}

/// A partition's worker, as the polling loop sees it.
struct Worker {
    id: u64,
    queue: mpsc::UnboundedSender<Incoming>,
    /// Turned true when the partition is revoked: let go of the message in hand.
    revoked: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
    /// Messages handed over and not yet done.
    pending: usize,
    /// The last offset handed over (a resumed fetch may bring it again).
    last_offset: i64,
    paused: bool,
}

/// A worker for `partition`. `predecessor` is the task of the partition's previous
/// worker, revoked but perhaps still finishing an email: the new one starts after it,
/// so that one partition never has two emails in flight.
fn spawn_worker(
    id: u64,
    partition: Partition,
    handler: Arc<NotificationHandler>,
    done: mpsc::UnboundedSender<Done>,
    predecessor: Option<tokio::task::JoinHandle<()>>,
) -> Worker {
    let (queue, mut messages) = mpsc::unbounded_channel::<Incoming>();
    let (revoked, cancel) = watch::channel(false);
    let task = tokio::spawn(async move {
        if let Some(previous) = predecessor {
            let _ = previous.await;
        }
        while let Some(m) = messages.recv().await {
            if *cancel.borrow() {
                break;
            }
            let result = handler.handle_cancellable(&m, &cancel).await;
            let stop = result.is_err();
            let _ = done.send(Done {
                partition: partition.clone(),
                worker: id,
                offset: m.offset,
                result,
            });
            if stop {
                break;
            }
        }
    });
    Worker {
        id,
        queue,
        revoked,
        task,
        pending: 0,
        last_offset: -1,
        paused: false,
    }
}

fn one(partition: &Partition) -> TopicPartitionList {
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition(&partition.0, partition.1);
    tpl
}

/// Consumes until `stop` turns true (workers finish the message in hand, or let go of
/// one that is waiting); stored offsets are then committed and the group is left. The
/// dead-letter cap does not end it: a message held by the cap holds its partition.
pub async fn run(
    subscription: Subscription,
    handler: Arc<NotificationHandler>,
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let Subscription {
        consumer,
        mut assignments,
        partition_buffer,
        metrics,
    } = subscription;
    let resume_at = partition_buffer / 2;
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<Done>();
    let mut workers: HashMap<Partition, Worker> = HashMap::new();
    // Workers of revoked partitions that may still be finishing an email.
    let mut retiring: HashMap<Partition, tokio::task::JoinHandle<()>> = HashMap::new();
    let mut next_worker = 0u64;
    let paused_count = |w: &HashMap<Partition, Worker>| w.values().filter(|w| w.paused).count();

    let store = |d: &Done| {
        if let Err(e) = consumer.store_offset(&d.partition.0, d.partition.1, d.offset) {
            // The partition was revoked meanwhile; its new owner will see the message
            // again and the delivery log makes that harmless.
            tracing::warn!(error = %e, topic = %d.partition.0, partition = d.partition.1, offset = d.offset, "offset not stored");
        }
    };

    loop {
        if *stop.borrow() {
            break;
        }
        tokio::select! {
            _ = stop.changed() => break,
            Some(change) = assignments.recv() => match change {
                Assignment::Revoked(parts) => {
                    retiring.retain(|_, task| !task.is_finished());
                    for p in parts {
                        metrics.forget_lag(&p.0, p.1);
                        if let Some(w) = workers.remove(&p) {
                            let _ = w.revoked.send(true);
                            retiring.insert(p, w.task);
                        }
                    }
                    metrics.set_paused(paused_count(&workers));
                }
                Assignment::Assigned(parts) => {
                    // A fresh assignment is never paused.
                    let mut tpl = TopicPartitionList::new();
                    for (t, p) in &parts {
                        tpl.add_partition(t, *p);
                    }
                    if let Err(e) = consumer.resume(&tpl) {
                        tracing::debug!(error = %e, "resuming assigned partitions");
                    }
                }
            },
            Some(d) = done_rx.recv() => {
                match &d.result {
                    Ok(_) => store(&d),
                    Err(HandleError::Stopped) => {}
                }
                if let Some(w) = workers.get_mut(&d.partition).filter(|w| w.id == d.worker) {
                    w.pending = w.pending.saturating_sub(1);
                    if w.paused && w.pending <= resume_at {
                        match consumer.resume(&one(&d.partition)) {
                            Ok(()) => w.paused = false,
                            Err(e) => tracing::warn!(error = %e, "cannot resume partition"),
                        }
                        metrics.set_paused(paused_count(&workers));
                    }
                }
            }
            m = consumer.recv() => {
                let message = match m {
                    Ok(m) => incoming(&m),
                    Err(e) => {
                        tracing::warn!(error = %e, "kafka consumer error");
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        continue;
                    }
                };
                let partition = (message.topic.clone(), message.partition);
                let worker = workers.entry(partition.clone()).or_insert_with(|| {
                    next_worker += 1;
                    spawn_worker(
                        next_worker,
                        partition.clone(),
                        handler.clone(),
                        done_tx.clone(),
                        retiring.remove(&partition),
                    )
                });
                if message.offset <= worker.last_offset {
                    continue; // fetched again after a resume: already handed over
                }
                worker.last_offset = message.offset;
                worker.pending += 1;
                if worker.queue.send(message).is_err() {
                    // The worker has ended (stopping); the message stays unconsumed.
                    continue;
                }
                if !worker.paused && worker.pending >= partition_buffer {
                    match consumer.pause(&one(&partition)) {
                        Ok(()) => {
                            worker.paused = true;
                            tracing::info!(topic = %partition.0, partition = partition.1, waiting = worker.pending, "partition paused: its messages are waiting");
                        }
                        Err(e) => tracing::warn!(error = %e, "cannot pause partition"),
                    }
                    metrics.set_paused(paused_count(&workers));
                }
            }
        }
    }

    // Workers finish the email being sent (a waiting one is let go of) and take no
    // new message; what they report is still stored.
    let tasks: Vec<_> = workers
        .into_values()
        .map(|w| {
            let _ = w.revoked.send(true);
            drop(w.queue);
            w.task
        })
        .chain(retiring.into_values())
        .collect();
    drop(done_tx);
    let finished = futures_util::future::join_all(tasks);
    if tokio::time::timeout(Duration::from_secs(30), finished)
        .await
        .is_err()
    {
        tracing::warn!("workers did not finish within 30 s");
    }
    while let Ok(d) = done_rx.try_recv() {
        if d.result.is_ok() {
            store(&d);
        }
    }
    match consumer.commit_consumer_state(CommitMode::Sync) {
        Ok(()) | Err(KafkaError::ConsumerCommit(rdkafka::types::RDKafkaErrorCode::NoOffset)) => {}
        Err(e) => tracing::warn!(error = %e, "final commit failed"),
    }
    consumer.unsubscribe();
    // Dropping the consumer closes it: it leaves the group, so partitions move on at once.
    tokio::task::spawn_blocking(move || drop(consumer)).await?;
    tracing::info!("consumer stopped; offsets committed and group left");
    Ok(())
}
