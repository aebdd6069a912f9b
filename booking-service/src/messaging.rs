//! [`KafkaPublisher`]: the outbox relay's way to the broker. An idempotent producer
//! (`enable.idempotence=true`, `acks=all`), so librdkafka's own retries never write a
//! message twice or out of order; each result is the broker's delivery report.

use crate::service::outbox::{EventPublisher, PendingEvent};
use futures_util::future::join_all;
use medbook_shared::events::headers;
use medbook_shared::kafka::KafkaSettings;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use std::sync::{Arc, RwLock};
use std::time::Duration;

pub struct KafkaPublisher {
    settings: KafkaSettings,
    message_timeout: Duration,
    /// Replaced when librdkafka reports a fatal error (the idempotent producer's state
    /// can become unusable, e.g. after an epoch clash); the outbox keeps the events.
    producer: RwLock<Arc<FutureProducer>>,
}

impl KafkaPublisher {
    /// `message_timeout` bounds how long librdkafka tries to deliver one message before
    /// it reports failure; the relay then retries from the outbox.
    pub fn new(settings: KafkaSettings, message_timeout: Duration) -> anyhow::Result<Self> {
        let producer = Self::producer(&settings, message_timeout)?;
        Ok(Self {
            settings,
            message_timeout,
            producer: RwLock::new(Arc::new(producer)),
        })
    }

    fn producer(
        settings: &KafkaSettings,
        message_timeout: Duration,
    ) -> anyhow::Result<FutureProducer> {
        let mut config = settings.client_config("booking-service");
        config
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", "5")
            .set("message.timeout.ms", message_timeout.as_millis().to_string());
        Ok(config.create()?)
    }

    fn current(&self) -> Arc<FutureProducer> {
        match self.producer.read() {
            Ok(p) => p.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Builds a new producer if the current one is in a fatal state.
    fn renew_if_fatal(&self, producer: &FutureProducer) {
        let Some((code, reason)) = producer.client().fatal_error() else {
            return;
        };
        tracing::error!(%code, %reason, "kafka producer failed fatally; creating a new one");
        match Self::producer(&self.settings, self.message_timeout) {
            Ok(fresh) => {
                if let Ok(mut slot) = self.producer.write() {
                    *slot = Arc::new(fresh);
                }
            }
            Err(e) => tracing::error!(error = %e, "cannot create a kafka producer"),
        }
    }
}

#[async_trait::async_trait]
impl EventPublisher for KafkaPublisher {
    async fn publish(&self, events: &[PendingEvent]) -> Vec<Result<(), String>> {
        let producer = self.current();
        // Enqueue in order (per key, the idempotent producer keeps that order), then
        // wait for all delivery reports together.
        let pending: Vec<_> = events
            .iter()
            .map(|e| {
                let topic = self.settings.topic(&e.topic);
                let key = e.key.to_string();
                let id = e.id.to_string();
                let record = FutureRecord::to(&topic)
                    .key(&key)
                    .payload(e.payload.as_bytes())
                    .headers(
                        OwnedHeaders::new()
                            .insert(Header {
                                key: headers::EVENT_ID,
                                value: Some(&id),
                            })
                            .insert(Header {
                                key: headers::EVENT_TYPE,
                                value: Some(&e.event_type),
                            }),
                    );
                producer
                    .send_result(record)
                    .map_err(|(err, _)| format!("not enqueued: {err}"))
            })
            .collect();
        let results = join_all(pending.into_iter().map(|p| async move {
            match p {
                Ok(delivery) => match delivery.await {
                    Ok(Ok(_)) => Ok(()),
                    Ok(Err((err, _))) => Err(err.to_string()),
                    Err(_) => Err("producer dropped the message".to_owned()),
                },
                Err(e) => Err(e),
            }
        }))
        .await;
        if results.iter().any(Result::is_err) {
            self.renew_if_fatal(&producer);
        }
        results
    }

    async fn check(&self) -> Result<(), String> {
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
