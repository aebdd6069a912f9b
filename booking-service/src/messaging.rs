//! [`KafkaPublisher`]: the outbox relay's way to the broker, over the shared
//! [`ReliableProducer`] (idempotent, `acks=all`, results from delivery reports).

use crate::service::outbox::{EventPublisher, PendingEvent};
use medbook_shared::events::headers;
use medbook_shared::kafka::{KafkaSettings, OutgoingRecord, ReliableProducer};
use std::time::Duration;

pub struct KafkaPublisher {
    settings: KafkaSettings,
    producer: ReliableProducer,
}

impl KafkaPublisher {
    /// `message_timeout` bounds how long librdkafka tries to deliver one message before
    /// it reports failure; the relay then retries from the outbox.
    pub fn new(settings: KafkaSettings, message_timeout: Duration) -> anyhow::Result<Self> {
        let producer = ReliableProducer::new(&settings, "booking-service", message_timeout)?;
        Ok(Self { settings, producer })
    }
}

#[async_trait::async_trait]
impl EventPublisher for KafkaPublisher {
    async fn publish(&self, events: &[PendingEvent]) -> Vec<Result<(), String>> {
        let records: Vec<OutgoingRecord> = events
            .iter()
            .map(|e| OutgoingRecord {
                topic: self.settings.topic(&e.topic),
                key: Some(e.key.to_string().into_bytes()),
                payload: e.payload.clone().into_bytes(),
                headers: vec![
                    (
                        headers::EVENT_ID.to_owned(),
                        Some(e.id.to_string().into_bytes()),
                    ),
                    (
                        headers::EVENT_TYPE.to_owned(),
                        Some(e.event_type.clone().into_bytes()),
                    ),
                ]
                .into_iter()
                .chain(e.request_id.as_ref().map(|id| {
                    (
                        headers::REQUEST_ID.to_owned(),
                        Some(id.clone().into_bytes()),
                    )
                }))
                .collect(),
            })
            .collect();
        self.producer.deliver_all(&records).await
    }

    async fn check(&self) -> Result<(), String> {
        self.producer.check().await
    }
}
