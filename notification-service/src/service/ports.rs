//! The ports the use case is built from: the mail transport, the stores it shares with
//! the rest of the consumer group (delivery log, e-mail order, dead-letter cap), the
//! dead-letter topic and the clock, with the words they speak. Real implementations:
//! `mailer` (SMTP), `repository::*` (PostgreSQL), `dlq` (Kafka), [`SystemClock`];
//! in-memory ones for tests in `fakes`.

use crate::domain::mail::Email;
pub use crate::domain::order::{Turn, TurnDecision};
use chrono::{DateTime, Utc};
use std::time::{Duration, Instant};
use uuid::Uuid;

/// Why sending failed, as far as retrying is concerned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// The server cannot be talked to: connection refused or dropped, a timeout, a
    /// 421 "service not available". Every email waits until it is back.
    #[error("SMTP server unavailable: {0}")]
    Unavailable(String),
    /// The server answered 4xx for this email: try it again later.
    #[error("transient: {0}")]
    Transient(String),
    /// This recipient or this message will never work: the mailbox does not exist or
    /// is full (550–553), the address is invalid, the message cannot be built.
    #[error("permanent: {0}")]
    Permanent(String),
    /// The server refuses our mail whoever it is for (any other 5xx: authentication,
    /// policy, protocol): most likely our misconfiguration, and it counts against the
    /// dead-letter cap.
    #[error("refused: {0}")]
    Refused(String),
}

impl SendError {
    /// The failure's kind, as `email_send_failures_total` labels it.
    pub fn kind(&self) -> &'static str {
        match self {
            SendError::Unavailable(_) => "unavailable",
            SendError::Transient(_) => "transient",
            SendError::Permanent(_) => "permanent",
            SendError::Refused(_) => "refused",
        }
    }
}

#[async_trait::async_trait]
pub trait Mailer: Send + Sync {
    async fn send(&self, email: &Email) -> Result<(), SendError>;
    /// Opens a connection and greets the server, sending nothing: is it back?
    async fn probe(&self) -> Result<(), SendError>;
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

/// The de-duplication record: which events were sent, and which one consumer is
/// sending right now.
#[async_trait::async_trait]
pub trait DeliveryLog: Send + Sync {
    /// Claims the event for `owner` at `now`. A claim of another owner taken longer
    /// than `stale_after` before `now` belongs to a consumer that died mid-send: it is
    /// taken over. Claiming one's own claim again renews it.
    async fn claim(
        &self,
        request: &ClaimRequest,
        owner: Uuid,
        stale_after: Duration,
        now: DateTime<Utc>,
    ) -> anyhow::Result<Claim>;
    /// Records the event as sent, whoever claimed it: every later claim is
    /// [`Claim::AlreadySent`].
    async fn mark_sent(&self, event_id: Uuid, attempts: u32) -> anyhow::Result<()>;
    /// Drops an unsent claim (after dead-lettering), so a replay can try again. Only
    /// `owner`'s own claim goes; a sent event stays sent.
    async fn release(&self, event_id: Uuid, owner: Uuid) -> anyhow::Result<()>;
}

/// The order of each appointment's e-mails ([`crate::domain::order`]), one record per
/// appointment for the whole consumer group: the latest version seen, the latest told,
/// and who is sending one of its e-mails right now.
#[async_trait::async_trait]
pub trait OrderStore: Send + Sync {
    /// Records that `appointment_id` has reached `version` (if that is newer than what
    /// is known) and returns the latest version known.
    async fn observe_version(&self, appointment_id: Uuid, version: i32) -> anyhow::Result<i32>;
    /// Asks whether the e-mail of `turn` may be sent at `now` ([`crate::domain::order`]);
    /// on [`TurnDecision::Go`], `owner` holds the appointment's lease until `now + lease`.
    async fn take_turn(
        &self,
        turn: &Turn,
        owner: Uuid,
        lease: Duration,
        forced: bool,
        now: DateTime<Utc>,
    ) -> anyhow::Result<TurnDecision>;
    /// Gives `owner`'s lease back (another's stays); with `told`, records that the
    /// patient has now been told about `turn.version` (sent, or decided never to be
    /// sent) — what was told never goes back.
    async fn end_turn(&self, turn: &Turn, owner: Uuid, told: bool) -> anyhow::Result<()>;
}

/// Whether one more dead letter fits under the cap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    Admitted,
    /// `count` dead letters within the window already; one leaves it in `retry_after`.
    Full {
        count: u32,
        retry_after: Duration,
    },
}

/// The dead-letter cap, one figure for the whole consumer group.
#[async_trait::async_trait]
pub trait DeadLetterBudget: Send + Sync {
    /// Counts one more dead letter of `kind` from `source` at `now`, unless the window
    /// ending at `now` is full; a refused one is not counted.
    async fn admit(
        &self,
        kind: FailureKind,
        source: &str,
        now: DateTime<Utc>,
    ) -> anyhow::Result<Admission>;
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
    /// The message's Kafka timestamp: when it entered the topic (published by the
    /// relay, or replayed from the DLQ). The mail's age counts from here.
    pub timestamp: Option<DateTime<Utc>>,
}

impl Incoming {
    pub fn source(&self) -> String {
        format!("{}/{}/{}", self.topic, self.partition, self.offset)
    }

    /// A header's value as text, when present and UTF-8.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .and_then(|(_, v)| v.as_deref())
            .and_then(|v| std::str::from_utf8(v).ok())
    }
}

/// Why a message is dead-lettered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// Not an event this service understands.
    Poison,
    /// This e-mail can never be sent (a bounced address, a message that cannot be built).
    Permanent,
    /// The server refused our mail for a reason that is not the recipient's.
    Refused,
    /// Transient failures lasted longer than `retry.max_age`.
    Expired,
}

impl FailureKind {
    pub const ALL: [FailureKind; 4] = [
        FailureKind::Poison,
        FailureKind::Permanent,
        FailureKind::Refused,
        FailureKind::Expired,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Poison => "poison",
            Self::Permanent => "permanent",
            Self::Refused => "refused",
            Self::Expired => "expired",
        }
    }

    /// Whether it counts against the dead-letter cap. Messages that are not events and
    /// mail the server refuses outright mean a misconfiguration (a broken producer,
    /// bad SMTP credentials): past the cap they are held, not dead-lettered, until an
    /// operator fixes the cause. A bounced address is one patient's problem, and mail
    /// that outlived an outage is not a fault of the service: neither is capped, so a
    /// burst of them never holds other patients' mail back.
    pub(crate) fn capped(self) -> bool {
        matches!(self, Self::Poison | Self::Refused)
    }
}

#[derive(Debug, Clone)]
pub struct DeadLetter {
    pub kind: FailureKind,
    pub error: String,
    pub attempts: u32,
    pub failed_at: DateTime<Utc>,
}

#[async_trait::async_trait]
pub trait DeadLetterSink: Send + Sync {
    /// Writes the original message with the failure's headers; returns once the broker
    /// has acknowledged it.
    async fn dead_letter(&self, message: &Incoming, letter: &DeadLetter) -> Result<(), String>;
}

/// Where the use case takes the time from for what it decides: whether an appointment
/// has started or a link expired, a mail's age, the stores' windows and leases, how
/// long an e-mail has waited for its turn. Tests set it instead of waiting.
pub trait Clock: Send + Sync {
    /// The wall time, compared with the times events and stored rows carry.
    fn now(&self) -> DateTime<Utc>;
    /// A monotonic reading, for how long something has waited: a wall clock that is
    /// stepped must not end (or stretch) a wait.
    fn instant(&self) -> Instant;
}

/// The system's clocks.
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }

    fn instant(&self) -> Instant {
        Instant::now()
    }
}
