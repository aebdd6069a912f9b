//! The use case: one Kafka message in, one email out, exactly once per event id.
//!
//! [`NotificationHandler::handle`] decodes the event, claims it in the delivery log
//! (the de-duplication record), renders and sends the email, retrying transient SMTP
//! failures with exponential backoff, and marks it sent. What cannot succeed — bytes
//! that are not an event, a permanent SMTP refusal, retries used up — goes to the
//! dead-letter topic. Only when `handle` returns may the consumer store the offset.
//! The handler depends on traits only, so its rules are tested without I/O.

pub mod limiter;
pub mod metrics;

use crate::domain::email::{self, Email};
pub use limiter::DeadLetterLimiter;
use medbook_shared::events::EventEnvelope;
pub use metrics::Metrics;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::watch;
use uuid::Uuid;

/// Why sending failed, as far as retrying is concerned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// SMTP 4xx, connection refused, timeout: may work later.
    #[error("transient: {0}")]
    Transient(String),
    /// SMTP 5xx, an invalid address: will never work.
    #[error("permanent: {0}")]
    Permanent(String),
}

#[async_trait::async_trait]
pub trait Mailer: Send + Sync {
    async fn send(&self, email: &Email) -> Result<(), SendError>;
}

/// The result of claiming an event in the delivery log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// This consumer now owns the event. `takeover` is true when an earlier consumer
    /// died while sending it: the email may already have been accepted once.
    Acquired { takeover: bool },
    /// The email was sent before: skip.
    AlreadySent,
    /// Another live consumer is sending it right now (a rebalance): wait.
    HeldElsewhere,
}

#[derive(Debug, Clone)]
pub struct ClaimRequest {
    pub event_id: Uuid,
    pub event_type: String,
    pub recipient: String,
    /// `topic/partition/offset`, for operators.
    pub source: String,
}

#[async_trait::async_trait]
pub trait DeliveryLog: Send + Sync {
    async fn claim(
        &self,
        request: &ClaimRequest,
        owner: Uuid,
        stale_after: Duration,
    ) -> anyhow::Result<Claim>;
    async fn mark_sent(&self, event_id: Uuid, attempts: u32) -> anyhow::Result<()>;
    /// Drops an unsent claim (after dead-lettering), so a replay can try again.
    async fn release(&self, event_id: Uuid, owner: Uuid) -> anyhow::Result<()>;
}

/// A message as the consumer received it.
#[derive(Debug, Clone)]
pub struct Incoming {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub payload: Option<Vec<u8>>,
    pub headers: Vec<(String, Option<Vec<u8>>)>,
}

impl Incoming {
    pub fn source(&self) -> String {
        format!("{}/{}/{}", self.topic, self.partition, self.offset)
    }
}

/// Why a message is dead-lettered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// Not an event this service understands.
    Poison,
    /// The email can never be sent.
    Permanent,
    /// Transient failures outlasted the retry budget.
    RetriesExhausted,
}

impl FailureKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Poison => "poison",
            Self::Permanent => "permanent",
            Self::RetriesExhausted => "retries_exhausted",
        }
    }
}

#[derive(Debug, Clone)]
pub struct DeadLetter {
    pub kind: FailureKind,
    pub error: String,
    pub attempts: u32,
    pub failed_at: chrono::DateTime<chrono::Utc>,
}

#[async_trait::async_trait]
pub trait DeadLetterSink: Send + Sync {
    /// Writes the original message with the failure's headers; returns once the broker
    /// has acknowledged it.
    async fn dead_letter(&self, message: &Incoming, letter: &DeadLetter) -> Result<(), String>;
}

#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    pub max_attempts: u32,
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
}

impl RetryPolicy {
    /// The pause after failed attempt `attempt` (1-based).
    pub fn backoff(&self, attempt: u32) -> Duration {
        let factor = 2u32.saturating_pow(attempt.saturating_sub(1).min(20));
        self.initial_backoff
            .saturating_mul(factor)
            .min(self.max_backoff)
    }
}

/// How handling ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Sent {
        attempts: u32,
        takeover: bool,
    },
    /// Already sent before (redelivery or replay): nothing done.
    Duplicate,
    DeadLettered(FailureKind),
}

/// Handling did not finish; the offset must not be stored.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HandleError {
    #[error("stopping: the message will be handled again after restart")]
    Stopped,
    #[error("dead-letter limit reached: {0}")]
    DeadLetterLimit(String),
}

pub struct NotificationHandler {
    mailer: Arc<dyn Mailer>,
    log: Arc<dyn DeliveryLog>,
    dlq: Arc<dyn DeadLetterSink>,
    retry: RetryPolicy,
    limiter: Mutex<DeadLetterLimiter>,
    metrics: Metrics,
    /// This process's claim owner id.
    owner: Uuid,
    /// Claims older than this belong to a dead consumer.
    stale_after: Duration,
    /// The `From` address, also the calendar organizer.
    organizer: String,
    stop: watch::Receiver<bool>,
}

/// How long to wait before asking a busy dependency (database, DLQ) again.
const DEPENDENCY_RETRY: Duration = Duration::from_millis(500);

impl NotificationHandler {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        mailer: Arc<dyn Mailer>,
        log: Arc<dyn DeliveryLog>,
        dlq: Arc<dyn DeadLetterSink>,
        retry: RetryPolicy,
        limiter: DeadLetterLimiter,
        metrics: Metrics,
        stale_after: Duration,
        organizer: String,
        stop: watch::Receiver<bool>,
    ) -> Self {
        Self {
            mailer,
            log,
            dlq,
            retry,
            limiter: Mutex::new(limiter),
            metrics,
            owner: Uuid::new_v4(),
            stale_after,
            organizer,
            stop,
        }
    }

    /// Sleeps, unless the service is stopping.
    async fn pause(&self, d: Duration) -> Result<(), HandleError> {
        let mut stop = self.stop.clone();
        if *stop.borrow() {
            return Err(HandleError::Stopped);
        }
        tokio::select! {
            _ = tokio::time::sleep(d) => Ok(()),
            _ = stop.changed() => Err(HandleError::Stopped),
        }
    }

    #[tracing::instrument(skip_all, fields(source = %message.source()))]
    pub async fn handle(&self, message: &Incoming) -> Result<Outcome, HandleError> {
        let started = Instant::now();
        let result = self.handle_inner(message).await;
        if let Ok(outcome) = &result {
            self.metrics.observe(outcome, started.elapsed());
        }
        result
    }

    async fn handle_inner(&self, message: &Incoming) -> Result<Outcome, HandleError> {
        let decoded = match &message.payload {
            None => Err("empty message".to_owned()),
            Some(bytes) => EventEnvelope::decode(bytes).map_err(|e| e.to_string()),
        };
        let event = match decoded {
            Ok(event) => event,
            Err(error) => {
                return self
                    .dead_letter(message, None, FailureKind::Poison, error, 0)
                    .await
            }
        };
        let email = match email::render(&event, &self.organizer) {
            Ok(email) => email,
            Err(e) => {
                return self
                    .dead_letter(message, None, FailureKind::Permanent, e.to_string(), 0)
                    .await
            }
        };
        let request = ClaimRequest {
            event_id: event.id,
            event_type: event.event_type().as_str().to_owned(),
            recipient: email.to_address.clone(),
            source: message.source(),
        };
        let takeover = loop {
            match self.log.claim(&request, self.owner, self.stale_after).await {
                Ok(Claim::Acquired { takeover }) => break takeover,
                Ok(Claim::AlreadySent) => return Ok(Outcome::Duplicate),
                Ok(Claim::HeldElsewhere) => {
                    tracing::info!(event_id = %event.id, "event is being sent by another consumer; waiting");
                }
                Err(e) => tracing::warn!(error = %e, "delivery log unavailable; retrying"),
            }
            self.pause(DEPENDENCY_RETRY).await?;
        };
        if takeover {
            tracing::warn!(event_id = %event.id, "taking over an event whose consumer died mid-send; the email may arrive twice (same Message-ID)");
        }
        let mut attempts = 0;
        loop {
            attempts += 1;
            match self.mailer.send(&email).await {
                Ok(()) => break,
                Err(SendError::Permanent(error)) => {
                    self.metrics.send_failed("permanent");
                    return self
                        .dead_letter(
                            message,
                            Some(event.id),
                            FailureKind::Permanent,
                            error,
                            attempts,
                        )
                        .await;
                }
                Err(SendError::Transient(error)) => {
                    self.metrics.send_failed("transient");
                    if attempts >= self.retry.max_attempts {
                        return self
                            .dead_letter(
                                message,
                                Some(event.id),
                                FailureKind::RetriesExhausted,
                                error,
                                attempts,
                            )
                            .await;
                    }
                    let wait = self.retry.backoff(attempts);
                    tracing::warn!(event_id = %event.id, attempts, %error, retry_in_ms = wait.as_millis() as u64, "sending failed; will retry");
                    self.pause(wait).await?;
                }
            }
        }
        // The SMTP server has the email; from here on, only recording it remains.
        while let Err(e) = self.log.mark_sent(event.id, attempts).await {
            tracing::warn!(error = %e, event_id = %event.id, "cannot record the sent email; retrying");
            tokio::time::sleep(DEPENDENCY_RETRY).await;
        }
        tracing::info!(event_id = %event.id, event_type = event.event_type().as_str(), attempts, "email sent");
        Ok(Outcome::Sent { attempts, takeover })
    }

    async fn dead_letter(
        &self,
        message: &Incoming,
        event_id: Option<Uuid>,
        kind: FailureKind,
        error: String,
        attempts: u32,
    ) -> Result<Outcome, HandleError> {
        if let Err(reason) = self
            .limiter
            .lock()
            .map_err(|_| HandleError::DeadLetterLimit("limiter poisoned".into()))?
            .admit(Instant::now())
        {
            tracing::error!(%reason, kind = kind.as_str(), %error, "too many dead letters; stopping the consumer");
            return Err(HandleError::DeadLetterLimit(reason));
        }
        let letter = DeadLetter {
            kind,
            error,
            attempts,
            failed_at: chrono::Utc::now(),
        };
        while let Err(e) = self.dlq.dead_letter(message, &letter).await {
            tracing::warn!(error = %e, "cannot write the dead letter; retrying");
            self.pause(DEPENDENCY_RETRY).await?;
        }
        if let Some(id) = event_id {
            if let Err(e) = self.log.release(id, self.owner).await {
                // The claim goes stale and a replay takes it over.
                tracing::warn!(error = %e, event_id = %id, "cannot release the claim");
            }
        }
        tracing::warn!(kind = kind.as_str(), error = %letter.error, attempts, "message dead-lettered");
        Ok(Outcome::DeadLettered(kind))
    }
}

#[cfg(test)]
mod tests;
