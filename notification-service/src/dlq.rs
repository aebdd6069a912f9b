//! The dead-letter topic: writing to it ([`KafkaDeadLetters`]), reading it back
//! ([`read_all`]) and replaying entries to their original topics ([`replay`]).
//!
//! A dead letter is the original message unchanged — key, value and headers — plus
//! `dlq-*` headers saying where it came from and why it failed.

use crate::service::ports::{DeadLetter, DeadLetterSink, Incoming};
use chrono::{DateTime, Utc};
use medbook_shared::events::{headers, EventEnvelope, TOPIC_DLQ};
use medbook_shared::kafka::{KafkaSettings, OutgoingRecord, ReliableProducer};
use medbook_shared::kafka_log::KafkaContext;
use rdkafka::consumer::{BaseConsumer, Consumer, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::{Offset, TopicPartitionList};
use serde::Serialize;
use std::collections::HashSet;
use std::time::Duration;
use uuid::Uuid;

pub const ORIGINAL_TOPIC: &str = "dlq-original-topic";
pub const ORIGINAL_PARTITION: &str = "dlq-original-partition";
pub const ORIGINAL_OFFSET: &str = "dlq-original-offset";
pub const ERROR: &str = "dlq-error";
pub const ERROR_KIND: &str = "dlq-error-kind";
pub const ATTEMPTS: &str = "dlq-attempts";
pub const FAILED_AT: &str = "dlq-failed-at";
/// Set on replayed messages: the dead letter they came from.
pub const REPLAYED_FROM: &str = "medbook-replayed-from";

/// Writes dead letters with an idempotent producer and waits for the broker's ack.
pub struct KafkaDeadLetters {
    topic: String,
    producer: ReliableProducer,
}

impl KafkaDeadLetters {
    pub fn new(settings: &KafkaSettings, timeout: Duration) -> anyhow::Result<Self> {
        Ok(Self {
            topic: settings.topic(TOPIC_DLQ),
            producer: ReliableProducer::new(settings, "notification-service-dlq", timeout)?,
        })
    }

    pub async fn check(&self) -> Result<(), String> {
        self.producer.check().await
    }
}

/// Counts the messages on the dead-letter topic (the sum over its partitions of high
/// minus low watermark) for the `dlq_messages` gauge, with a client of its own that
/// joins no group.
pub struct DlqSize {
    topic: String,
    consumer: std::sync::Arc<BaseConsumer<KafkaContext>>,
    timeout: Duration,
}

impl DlqSize {
    pub fn new(settings: &KafkaSettings, timeout: Duration) -> anyhow::Result<Self> {
        let consumer: BaseConsumer<KafkaContext> = settings
            .client_config("notification-service-dlq-size")
            .create_with_context(KafkaContext::new("notification-service-dlq-size"))?;
        Ok(Self {
            topic: settings.topic(TOPIC_DLQ),
            consumer: std::sync::Arc::new(consumer),
            timeout,
        })
    }

    /// The topic's message count now; librdkafka's calls block, so they run on the
    /// blocking pool.
    pub async fn read(&self) -> anyhow::Result<i64> {
        let (consumer, topic, timeout) = (self.consumer.clone(), self.topic.clone(), self.timeout);
        tokio::task::spawn_blocking(move || -> anyhow::Result<i64> {
            let mut total = 0i64;
            for p in partitions_of(consumer.as_ref(), &topic, timeout)? {
                let (low, high) = consumer.fetch_watermarks(&topic, p, timeout)?;
                total += (high - low).max(0);
            }
            Ok(total)
        })
        .await?
    }
}

/// The partitions of `topic` (blocking: librdkafka's metadata call); an error when the
/// topic does not exist or has none.
fn partitions_of<C: Consumer<KafkaContext>>(
    consumer: &C,
    topic: &str,
    timeout: Duration,
) -> anyhow::Result<Vec<i32>> {
    let metadata = consumer.fetch_metadata(Some(topic), timeout)?;
    let partitions: Vec<i32> = metadata
        .topics()
        .iter()
        .filter(|t| t.name() == topic && t.error().is_none())
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect();
    if partitions.is_empty() {
        anyhow::bail!("topic {topic} does not exist or has no partitions");
    }
    Ok(partitions)
}

/// Refreshes `metrics`' `dlq_messages` every `interval` until `stop`.
pub async fn watch_size(
    size: DlqSize,
    metrics: crate::service::Metrics,
    interval: Duration,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        match size.read().await {
            Ok(n) => metrics.set_dlq_messages(n),
            Err(e) => tracing::warn!(error = %e, "cannot count the dead letters"),
        }
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}

fn header(name: &str, value: impl ToString) -> (String, Option<Vec<u8>>) {
    (name.to_owned(), Some(value.to_string().into_bytes()))
}

#[async_trait::async_trait]
impl DeadLetterSink for KafkaDeadLetters {
    async fn dead_letter(&self, message: &Incoming, letter: &DeadLetter) -> Result<(), String> {
        let mut hs: Vec<_> = message
            .headers
            .iter()
            .filter(|(k, _)| !k.starts_with("dlq-"))
            .cloned()
            .collect();
        hs.extend([
            header(ORIGINAL_TOPIC, &message.topic),
            header(ORIGINAL_PARTITION, message.partition),
            header(ORIGINAL_OFFSET, message.offset),
            header(ERROR, &letter.error),
            header(ERROR_KIND, letter.kind.as_str()),
            header(ATTEMPTS, letter.attempts),
            header(FAILED_AT, letter.failed_at.to_rfc3339()),
        ]);
        let record = OutgoingRecord {
            topic: self.topic.clone(),
            key: message.key.clone(),
            payload: message.payload.clone().unwrap_or_default(),
            headers: hs,
        };
        self.producer
            .deliver_all(std::slice::from_ref(&record))
            .await
            .into_iter()
            .next()
            .unwrap_or_else(|| Err("no delivery report".into()))
    }
}

/// One dead letter as read back.
#[derive(Debug, Clone, Serialize)]
pub struct DlqEntry {
    pub partition: i32,
    pub offset: i64,
    pub original_topic: Option<String>,
    pub original_partition: Option<i32>,
    pub original_offset: Option<i64>,
    pub error_kind: Option<String>,
    pub error: Option<String>,
    pub attempts: Option<u32>,
    pub failed_at: Option<DateTime<Utc>>,
    pub event_id: Option<Uuid>,
    pub event_type: Option<String>,
    #[serde(skip)]
    pub key: Option<Vec<u8>>,
    #[serde(skip)]
    pub payload: Vec<u8>,
    #[serde(skip)]
    pub headers: Vec<(String, Option<Vec<u8>>)>,
}

impl DlqEntry {
    fn from_message(m: &Incoming) -> Self {
        let get = |name: &str| {
            m.headers
                .iter()
                .find(|(k, _)| k == name)
                .and_then(|(_, v)| v.as_deref())
                .map(|v| String::from_utf8_lossy(v).into_owned())
        };
        let payload = m.payload.clone().unwrap_or_default();
        let decoded = EventEnvelope::decode(&payload).ok();
        Self {
            partition: m.partition,
            offset: m.offset,
            original_topic: get(ORIGINAL_TOPIC),
            original_partition: get(ORIGINAL_PARTITION).and_then(|v| v.parse().ok()),
            original_offset: get(ORIGINAL_OFFSET).and_then(|v| v.parse().ok()),
            error_kind: get(ERROR_KIND),
            error: get(ERROR),
            attempts: get(ATTEMPTS).and_then(|v| v.parse().ok()),
            failed_at: get(FAILED_AT)
                .and_then(|v| DateTime::parse_from_rfc3339(&v).ok())
                .map(|t| t.with_timezone(&Utc)),
            event_id: get(headers::EVENT_ID)
                .and_then(|v| v.parse().ok())
                .or(decoded.as_ref().map(|e| e.id)),
            event_type: get(headers::EVENT_TYPE)
                .or(decoded.map(|e| e.event_type().as_str().to_owned())),
            key: m.key.clone(),
            payload,
            headers: m.headers.clone(),
        }
    }

    /// Payload and headers for `dlq show`.
    pub fn detail(&self) -> serde_json::Value {
        let mut v = match serde_json::to_value(self) {
            Ok(serde_json::Value::Object(map)) => map,
            _ => serde_json::Map::new(),
        };
        v.insert(
            "key".into(),
            self.key
                .as_deref()
                .map(|k| String::from_utf8_lossy(k).into_owned())
                .into(),
        );
        v.insert(
            "payload".into(),
            String::from_utf8_lossy(&self.payload).into_owned().into(),
        );
        let headers: serde_json::Value = self
            .headers
            .iter()
            .map(|(k, val)| {
                serde_json::json!({
                    "key": k,
                    "value": val.as_deref().map(|b| String::from_utf8_lossy(b).into_owned()),
                })
            })
            .collect::<Vec<_>>()
            .into();
        v.insert("headers".into(), headers);
        serde_json::Value::Object(v)
    }
}

/// Reads the whole dead-letter topic, oldest first (by failure time, then position).
/// Reads each partition to its end (partition EOF), without joining a consumer group.
pub async fn read_all(
    settings: &KafkaSettings,
    timeout: Duration,
) -> anyhow::Result<Vec<DlqEntry>> {
    let topic = settings.topic(TOPIC_DLQ);
    let mut config = settings.client_config("notification-service-dlq-reader");
    config
        // Needed by librdkafka for assign(); never joined or committed.
        .set("group.id", format!("medbook-dlq-reader-{}", Uuid::new_v4()))
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true");
    let consumer: StreamConsumer<KafkaContext> =
        config.create_with_context(KafkaContext::new("notification-service-dlq-reader"))?;
    let partitions = {
        let topic = topic.clone();
        let c: StreamConsumer<KafkaContext> = settings
            .client_config("notification-service-dlq-reader")
            .create_with_context(KafkaContext::new("notification-service-dlq-reader"))?;
        tokio::task::spawn_blocking(move || partitions_of(&c, &topic, Duration::from_secs(10)))
            .await??
    };
    let mut tpl = TopicPartitionList::new();
    for p in &partitions {
        tpl.add_partition_offset(&topic, *p, Offset::Beginning)?;
    }
    consumer.assign(&tpl)?;
    let mut done = HashSet::new();
    let mut entries = Vec::new();
    let deadline = tokio::time::Instant::now() + timeout;
    while done.len() < partitions.len() {
        let next = tokio::time::timeout_at(deadline, consumer.recv())
            .await
            .map_err(|_| anyhow::anyhow!("reading {topic} took longer than {timeout:?}"))?;
        match next {
            Ok(m) => entries.push(DlqEntry::from_message(&crate::consumer::incoming(&m))),
            Err(KafkaError::PartitionEOF(p)) => {
                done.insert(p);
            }
            Err(e) => return Err(e.into()),
        }
    }
    entries.sort_by_key(|e| (e.failed_at, e.partition, e.offset));
    Ok(entries)
}

/// Which dead letters to replay.
#[derive(Debug, Clone)]
pub enum Selection {
    All,
    EventIds(Vec<Uuid>),
    /// Offsets `from..=to` of one DLQ partition.
    Offsets {
        partition: i32,
        from: i64,
        to: i64,
    },
}

impl Selection {
    pub fn matches(&self, e: &DlqEntry) -> bool {
        match self {
            Selection::All => true,
            Selection::EventIds(ids) => e.event_id.is_some_and(|id| ids.contains(&id)),
            Selection::Offsets {
                partition,
                from,
                to,
            } => e.partition == *partition && (*from..=*to).contains(&e.offset),
        }
    }
}

/// What replay did (or, with `dry_run`, would do) with one entry.
#[derive(Debug, Clone, Serialize)]
pub struct ReplayLine {
    pub partition: i32,
    pub offset: i64,
    pub event_id: Option<Uuid>,
    pub to_topic: Option<String>,
    /// `replayed`, `would_replay`, `already_sent` or `no_original_topic`.
    pub action: &'static str,
}

/// Re-publishes the selected entries to their original topics, oldest first, at most
/// `rate` per second. Entries whose email the delivery log records as sent are
/// skipped; the consumer's de-duplication would drop them anyway.
pub async fn replay(
    settings: &KafkaSettings,
    entries: &[DlqEntry],
    already_sent: &HashSet<Uuid>,
    dry_run: bool,
    rate: f64,
    mut report: impl FnMut(&ReplayLine),
) -> anyhow::Result<usize> {
    let producer = ReliableProducer::new(
        settings,
        "notification-service-replay",
        Duration::from_secs(30),
    )?;
    let gap = Duration::from_secs_f64(1.0 / rate.max(0.001));
    let mut replayed = 0;
    for e in entries {
        let mut line = ReplayLine {
            partition: e.partition,
            offset: e.offset,
            event_id: e.event_id,
            to_topic: e.original_topic.clone(),
            action: "replayed",
        };
        let Some(topic) = &e.original_topic else {
            line.action = "no_original_topic";
            report(&line);
            continue;
        };
        if e.event_id.is_some_and(|id| already_sent.contains(&id)) {
            line.action = "already_sent";
            report(&line);
            continue;
        }
        if dry_run {
            line.action = "would_replay";
            report(&line);
            continue;
        }
        let mut hs: Vec<_> = e
            .headers
            .iter()
            .filter(|(k, _)| !k.starts_with("dlq-") && k != REPLAYED_FROM)
            .cloned()
            .collect();
        hs.push(header(
            REPLAYED_FROM,
            format!("{}/{}/{}", settings.topic(TOPIC_DLQ), e.partition, e.offset),
        ));
        let record = OutgoingRecord {
            topic: topic.clone(),
            key: e.key.clone(),
            payload: e.payload.clone(),
            headers: hs,
        };
        if let Some(Err(err)) = producer
            .deliver_all(std::slice::from_ref(&record))
            .await
            .into_iter()
            .next()
        {
            anyhow::bail!(
                "replaying {}/{} failed: {err} ({replayed} replayed before)",
                e.partition,
                e.offset
            );
        }
        replayed += 1;
        report(&line);
        tokio::time::sleep(gap).await;
    }
    Ok(replayed)
}
