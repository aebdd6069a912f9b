//! Kafka client settings shared by the services (`kafka.*` keys) and the few admin
//! operations tests and tools need. Only plain Kafka protocol features are used, so any
//! Kafka-compatible broker works.

use crate::config_loader::ConfigLoadError;
use crate::kafka_log::{BrokerLog, KafkaContext};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::ClientConfig;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::time::Duration;

/// How often librdkafka reports its statistics to the client context.
pub const STATISTICS_INTERVAL: Duration = Duration::from_secs(5);

/// The `kafka` section of a service's configuration.
#[derive(Debug, Clone, Deserialize)]
pub struct KafkaSettings {
    /// Comma separated `host:port` list (librdkafka's `bootstrap.servers`).
    pub brokers: String,
    /// Put in front of every topic name; empty in production. Lets several deployments
    /// (or test runs) share one cluster.
    #[serde(default)]
    pub topic_prefix: String,
    /// Extra librdkafka properties, applied last. `_` in a name stands for `.`, so that
    /// they can come from environment variables: `MEDBOOK_KAFKA__PROPERTIES__SECURITY_PROTOCOL`
    /// sets `security.protocol` (librdkafka's names have no `_`).
    #[serde(default)]
    pub properties: BTreeMap<String, String>,
}

impl KafkaSettings {
    pub fn validate(&self) -> Result<(), ConfigLoadError> {
        if !self
            .brokers
            .split(',')
            .all(crate::config_loader::is_host_port)
        {
            return Err(ConfigLoadError::invalid(
                "kafka.brokers",
                "must be a comma separated list of host:port",
            ));
        }
        if !self
            .topic_prefix
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
        {
            return Err(ConfigLoadError::invalid(
                "kafka.topic_prefix",
                "may only contain ASCII letters, digits, '.', '_' and '-'",
            ));
        }
        Ok(())
    }

    /// The full name of one of the system's topics.
    pub fn topic(&self, base: &str) -> String {
        crate::events::topic_name(&self.topic_prefix, base)
    }

    /// A client configuration with the brokers, `client.id`, statistics every
    /// [`STATISTICS_INTERVAL`] (they tell [`KafkaContext`] when an outage is over) and
    /// the extra properties. Create clients with
    /// `create_with_context(KafkaContext::new(client_id))`.
    pub fn client_config(&self, client_id: &str) -> ClientConfig {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", &self.brokers)
            .set("client.id", client_id)
            .set(
                "statistics.interval.ms",
                STATISTICS_INTERVAL.as_millis().to_string(),
            );
        for (k, v) in &self.properties {
            config.set(k.replace('_', "."), v);
        }
        config
    }

    /// Creates the system's topics (with the prefix, replication factor 1) if they do not
    /// exist yet; existing topics are left as they are. For local runs and tests: a
    /// production cluster's topics are created by its deployment (see docker-compose).
    pub async fn create_topics(
        &self,
        partitions: i32,
        timeout: Duration,
    ) -> Result<(), anyhow::Error> {
        let admin: AdminClient<KafkaContext> = self
            .client_config("medbook-admin")
            .create_with_context(KafkaContext::new("medbook-admin"))?;
        let names: Vec<String> = crate::events::ALL_TOPICS
            .iter()
            .map(|t| self.topic(t))
            .collect();
        let topics: Vec<NewTopic> = names
            .iter()
            .map(|n| NewTopic::new(n, partitions, TopicReplication::Fixed(1)))
            .collect();
        let results = admin
            .create_topics(
                &topics,
                &AdminOptions::new().operation_timeout(Some(timeout)),
            )
            .await?;
        for result in results {
            match result {
                Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((topic, code)) => anyhow::bail!("cannot create topic {topic}: {code}"),
            }
        }
        Ok(())
    }
}

/// A message to publish, owning its parts.
#[derive(Debug, Clone)]
pub struct OutgoingRecord {
    pub topic: String,
    pub key: Option<Vec<u8>>,
    pub payload: Vec<u8>,
    pub headers: Vec<(String, Option<Vec<u8>>)>,
}

/// An idempotent producer (`enable.idempotence=true`, `acks=all`: librdkafka's own
/// retries never duplicate or reorder a message) that waits for the broker's delivery
/// reports. When the producer becomes unusable — a fatal error, or fenced after its
/// epoch was bumped following timed-out messages — it is replaced by a new one; the
/// caller still holds the failed records and retries them.
pub struct ReliableProducer {
    config: ClientConfig,
    /// Shared by every producer this one is replaced with.
    log: std::sync::Arc<BrokerLog>,
    inner: std::sync::RwLock<std::sync::Arc<FutureProducer<KafkaContext>>>,
}

impl ReliableProducer {
    /// `message_timeout` is librdkafka's `message.timeout.ms`: how long one delivery may
    /// take before it is reported failed.
    pub fn new(
        settings: &KafkaSettings,
        client_id: &str,
        message_timeout: Duration,
    ) -> anyhow::Result<Self> {
        let mut config = settings.client_config(client_id);
        config
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", "5")
            .set(
                "message.timeout.ms",
                message_timeout.as_millis().to_string(),
            );
        let log = std::sync::Arc::new(BrokerLog::new(client_id));
        let producer = config.create_with_context(KafkaContext::with_log(log.clone()))?;
        Ok(Self {
            config,
            log,
            inner: std::sync::RwLock::new(std::sync::Arc::new(producer)),
        })
    }

    /// The broker conditions (outages) going on, as librdkafka's reports tell them
    /// (see [`crate::kafka_log`]).
    pub fn broker_conditions(&self) -> Vec<String> {
        self.log.open_conditions()
    }

    fn current(&self) -> std::sync::Arc<FutureProducer<KafkaContext>> {
        match self.inner.read() {
            Ok(p) => p.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    fn renew(&self, why: &str) {
        tracing::error!(reason = why, "kafka producer unusable; creating a new one");
        match self
            .config
            .create_with_context::<_, FutureProducer<KafkaContext>>(KafkaContext::with_log(
                self.log.clone(),
            )) {
            Ok(fresh) => {
                if let Ok(mut slot) = self.inner.write() {
                    *slot = std::sync::Arc::new(fresh);
                }
            }
            Err(e) => tracing::error!(error = %e, "cannot create a kafka producer"),
        }
    }

    /// Enqueues the records in order (per partition, the idempotent producer keeps
    /// that order) and waits for every delivery report. One result per record.
    pub async fn deliver_all(&self, records: &[OutgoingRecord]) -> Vec<Result<(), String>> {
        let producer = self.current();
        let pending: Vec<_> = records
            .iter()
            .map(|r| {
                let mut headers = OwnedHeaders::new_with_capacity(r.headers.len());
                for (key, value) in &r.headers {
                    headers = headers.insert(Header {
                        key,
                        value: value.as_deref(),
                    });
                }
                let mut record: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(&r.topic)
                    .payload(r.payload.as_slice())
                    .headers(headers);
                if let Some(key) = &r.key {
                    record = record.key(key.as_slice());
                }
                producer
                    .send_result(record)
                    .map_err(|(err, _)| (err, "not enqueued: "))
            })
            .collect();
        let mut unusable = None;
        let mut results = Vec::with_capacity(pending.len());
        for p in pending {
            let outcome = match p {
                Ok(delivery) => match delivery.await {
                    Ok(Ok(_)) => Ok(()),
                    Ok(Err((err, _))) => Err((err, "")),
                    Err(_) => {
                        results.push(Err("producer dropped the message".to_owned()));
                        continue;
                    }
                },
                Err(e) => Err(e),
            };
            results.push(outcome.map_err(|(err, prefix)| {
                if err.rdkafka_error_code() == Some(RDKafkaErrorCode::ProducerFenced) {
                    unusable.get_or_insert_with(|| err.to_string());
                }
                format!("{prefix}{err}")
            }));
        }
        if let Some((code, reason)) = producer.client().fatal_error() {
            unusable.get_or_insert(format!("{code}: {reason}"));
        }
        if let Some(why) = unusable {
            self.renew(&why);
        }
        results
    }

    /// Asks the cluster for its metadata (a reachability check).
    pub async fn check(&self) -> Result<(), String> {
        let producer = self.current();
        tokio::task::spawn_blocking(move || {
            producer
                .client()
                .fetch_metadata(None, Duration::from_secs(2))
                .map(|_| ())
                .map_err(|e| e.to_string())
        })
        .await
        .map_err(|e| e.to_string())?
    }
}
