//! [`KafkaPublisher`]: the outbox relay's way to the broker, over the shared
//! [`ReliableProducer`] (idempotent, `acks=all`, results from delivery reports).

use crate::service::outbox::{EventPublisher, PendingEvent};
use medbook_shared::events::headers;
use medbook_shared::kafka::{KafkaSettings, OutgoingRecord, ReliableProducer};
use medbook_shared::trace_context;
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

/// The producer span of one outbox event, a child of the span that wrote the row.
fn producer_span(e: &PendingEvent, topic: &str) -> tracing::Span {
    let span = tracing::info_span!(
        "publish",
        otel.name = %format!("{topic} publish"),
        otel.kind = "producer",
        otel.status_code = tracing::field::Empty,
        error.message = tracing::field::Empty,
        messaging.system = "kafka",
        messaging.operation.type = "send",
        messaging.destination.name = %topic,
        messaging.message.id = %e.id,
        event_type = %e.event_type,
        request_id = e.request_id.as_deref().unwrap_or(""),
    );
    trace_context::set_remote_parent(
        &span,
        trace_context::context_from_traceparent(e.trace_parent.as_deref()),
    );
    span
}

#[async_trait::async_trait]
impl EventPublisher for KafkaPublisher {
    async fn publish(&self, events: &[PendingEvent]) -> Vec<Result<(), String>> {
        // One producer span per event, in the trace of the transaction that wrote it,
        // open until the broker's delivery report; its context travels in the headers.
        let spans: Vec<tracing::Span> = events
            .iter()
            .map(|e| producer_span(e, &self.settings.topic(&e.topic)))
            .collect();
        let records: Vec<OutgoingRecord> = events
            .iter()
            .zip(&spans)
            .map(|(e, span)| OutgoingRecord {
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
                .chain(trace_context::kafka_headers(span))
                .collect(),
            })
            .collect();
        let results = self.producer.deliver_all(&records).await;
        for (span, result) in spans.iter().zip(&results) {
            if let Err(e) = result {
                span.record("otel.status_code", "error");
                span.record("error.message", e.as_str());
            }
        }
        results
    }

    async fn check(&self) -> Result<(), String> {
        self.producer.check().await
    }
}
