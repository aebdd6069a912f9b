//! The use case: one Kafka message in, one email out, exactly once per event id.
//!
//! [`NotificationHandler::handle`] decodes the event, claims it in the delivery log
//! (the de-duplication record), renders and sends the email and marks it sent.
//!
//! A mail server that is down, slow or busy (refused or dropped connections, timeouts,
//! 4xx replies) is backpressure, not a fault of the message: the handler keeps the
//! message and retries with capped exponential backoff and jitter for as long as the
//! mail is younger than `retry.max_age` (24 h by default, as an MTA queues for days),
//! waking early when the SMTP prober sees the server come back. Only what can never
//! be sent — bytes that are not an event, a permanent refusal (5xx, an unusable
//! address), mail older than the maximum age — goes to the dead-letter topic, and only
//! the first two count against the dead-letter cap.
//!
//! Reminders are sent only while they are current: the delivery log keeps the latest
//! version of every appointment seen in any appointment event, and a reminder for an
//! older version, or for an appointment that has started, is dropped, not sent late.
//! A no-show notice is sent only when the clinic asked for it (`email_patient`); one it
//! did not ask for is consumed without an e-mail ([`Outcome::NotWanted`]). Sent, it
//! takes its turn like a reminder: it repeats the appointment's current version.
//! Account e-mails (verification and reset links, security notices) and waitlist
//! offers take the same path, de-duplicated by event id, without versions; one whose
//! link has expired, or whose offer's hold has ended, is dropped too — a link that no
//! longer works helps nobody, and an offered slot has gone to the next in line. These
//! deadlines are checked again right before every attempt, and a retry never waits
//! past them.
//!
//! Only when `handle` returns may the consumer store the offset. The handler depends
//! on its ports ([`ports`]) only, time included, so its rules are tested without I/O.

#[cfg(test)]
pub(crate) mod contracts;
#[cfg(test)]
pub(crate) mod fakes;
pub mod health;
pub mod metrics;
pub mod ports;

use crate::domain::email;
use chrono::{DateTime, Utc};
pub use health::SmtpStatus;
use medbook_shared::events::{AppointmentEvent, AppointmentSnapshot, Event, EventEnvelope};
pub use metrics::Metrics;
pub use ports::{
    Admission, Claim, ClaimRequest, Clock, DeadLetter, DeadLetterBudget, DeadLetterSink,
    DeliveryLog, FailureKind, Incoming, Mailer, OrderStore, SendError, SystemClock, Turn,
    TurnDecision,
};
use rand::Rng;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;
use tracing::Instrument;
use uuid::Uuid;

#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
    /// Mail older than this (counted from the message's timestamp) is dead-lettered
    /// instead of retried once more.
    pub max_age: Duration,
}

impl RetryPolicy {
    /// The longest pause after failed attempt `attempt` (1-based): doubling, capped.
    pub fn backoff(&self, attempt: u32) -> Duration {
        medbook_service_kit::retry::Backoff::nth(self.initial_backoff, self.max_backoff, attempt)
    }

    /// The pause actually taken: uniformly between half of [`Self::backoff`] and all
    /// of it ("equal jitter"), so a backlog does not retry in lockstep.
    pub fn jittered(&self, attempt: u32) -> Duration {
        let full = self.backoff(attempt);
        let half = full / 2;
        half + rand::thread_rng().gen_range(Duration::ZERO..=full - half)
    }
}

/// Why an email was not sent: a reminder no longer current, an account link that no
/// longer works, a waitlist offer whose hold ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SkipReason {
    /// The appointment changed (moved, cancelled) after the reminder was written.
    Stale,
    /// The appointment has started: a reminder now would be late.
    Started,
    /// The account e-mail's link expired before it could be sent.
    LinkExpired,
    /// The waitlist offer expired (its slot went to the next in line) before it could
    /// be sent.
    OfferExpired,
    /// The patient was already told about a later version of the appointment (a
    /// confirmation that arrives after the cancellation, a replayed old dead letter).
    Superseded,
}

impl SkipReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Stale => "stale",
            Self::Started => "started",
            Self::LinkExpired => "link_expired",
            Self::OfferExpired => "offer_expired",
            Self::Superseded => "superseded",
        }
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
    /// A reminder, account e-mail or offer no longer worth sending.
    Skipped(SkipReason),
    /// An event nobody asked to be e-mailed about: a no-show of a clinic that does not
    /// e-mail patients about missed visits. Consumed, nothing sent.
    NotWanted,
    DeadLettered(FailureKind),
}

impl Outcome {
    /// Every outcome's label in `emails_handled_total` (and on the consumer span).
    pub const LABELS: [&'static str; 5] = [
        "sent",
        "duplicate",
        "skipped",
        "not_wanted",
        "dead_lettered",
    ];

    pub fn label(&self) -> &'static str {
        match self {
            Outcome::Sent { .. } => "sent",
            Outcome::Duplicate => "duplicate",
            Outcome::Skipped(_) => "skipped",
            Outcome::NotWanted => "not_wanted",
            Outcome::DeadLettered(_) => "dead_lettered",
        }
    }
}

/// Handling did not finish; the offset must not be stored.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HandleError {
    #[error("stopping: the message will be handled again after restart")]
    Stopped,
}

pub struct NotificationHandler {
    mailer: Arc<dyn Mailer>,
    log: Arc<dyn DeliveryLog>,
    order_store: Arc<dyn OrderStore>,
    dlq: Arc<dyn DeadLetterSink>,
    retry: RetryPolicy,
    budget: Arc<dyn DeadLetterBudget>,
    order: OrderPolicy,
    metrics: Metrics,
    smtp: SmtpStatus,
    clock: Arc<dyn Clock>,
    /// This process's claim owner id.
    owner: Uuid,
    /// Claims older than this belong to a dead consumer.
    stale_after: Duration,
    /// The `From` address, also the calendar organizer.
    organizer: String,
    stop: watch::Receiver<bool>,
    /// A cancel switch that never turns, for waits nothing but a stop may end (its
    /// sender is kept so that the receiver never reports a closed channel).
    never: (watch::Sender<bool>, watch::Receiver<bool>),
}

/// How long to wait before asking a busy dependency (database, DLQ) again.
const DEPENDENCY_RETRY: Duration = Duration::from_millis(500);

/// How long an appointment e-mail waits for an earlier version of its appointment.
#[derive(Debug, Clone, Copy)]
pub struct OrderPolicy {
    /// After this long waiting for an earlier version, the e-mail goes out anyway (and
    /// the earlier one, should it come later, is superseded).
    pub max_wait: Duration,
    /// How often a waiting e-mail asks again.
    pub recheck: Duration,
}

/// The ports and rules a handler is built from.
pub struct HandlerParts {
    pub mailer: Arc<dyn Mailer>,
    pub log: Arc<dyn DeliveryLog>,
    pub order_store: Arc<dyn OrderStore>,
    pub dlq: Arc<dyn DeadLetterSink>,
    pub retry: RetryPolicy,
    pub budget: Arc<dyn DeadLetterBudget>,
    pub order: OrderPolicy,
    pub metrics: Metrics,
    pub smtp: SmtpStatus,
    pub clock: Arc<dyn Clock>,
    pub stale_after: Duration,
    pub organizer: String,
}

impl NotificationHandler {
    pub fn new(parts: HandlerParts, stop: watch::Receiver<bool>) -> Self {
        Self {
            mailer: parts.mailer,
            log: parts.log,
            order_store: parts.order_store,
            dlq: parts.dlq,
            retry: parts.retry,
            budget: parts.budget,
            order: parts.order,
            metrics: parts.metrics,
            smtp: parts.smtp,
            clock: parts.clock,
            owner: Uuid::new_v4(),
            stale_after: parts.stale_after,
            organizer: parts.organizer,
            stop,
            never: watch::channel(false),
        }
    }

    pub fn smtp(&self) -> &SmtpStatus {
        &self.smtp
    }

    /// Sleeps for `d`, or until `wake` fires; fails if the service is stopping or the
    /// partition was taken away (`cancel`).
    async fn pause(
        &self,
        d: Duration,
        cancel: &watch::Receiver<bool>,
        wake: Option<watch::Receiver<bool>>,
    ) -> Result<(), HandleError> {
        let mut stop = self.stop.clone();
        let mut cancel = cancel.clone();
        if *stop.borrow() || *cancel.borrow() {
            return Err(HandleError::Stopped);
        }
        let woken = async move {
            match wake {
                // Wakes when the SMTP server is seen up again.
                Some(mut up) => {
                    let _ = up.wait_for(|up| *up).await;
                }
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(d) => Ok(()),
            _ = woken => Ok(()),
            _ = stop.changed() => Err(HandleError::Stopped),
            _ = cancel.changed() => Err(HandleError::Stopped),
        }
    }

    /// Handles `message`; only a stop of the service interrupts it.
    pub async fn handle(&self, message: &Incoming) -> Result<Outcome, HandleError> {
        self.handle_cancellable(message, &self.never.1).await
    }

    /// Handles `message` until it is done, the service stops, or `cancel` turns true
    /// (its partition was revoked: the new owner takes the message over).
    /// Every log line of the message names it: where it came from, the HTTP request
    /// that caused it (`x-request-id` header), and once decoded its event and aggregate.
    /// Its span is the consumer span of the trace the message's `traceparent` header
    /// names (the relay's producer span), so the email joins the booking's trace.
    pub async fn handle_cancellable(
        &self,
        message: &Incoming,
        cancel: &watch::Receiver<bool>,
    ) -> Result<Outcome, HandleError> {
        let span = tracing::info_span!(
            "handle",
            otel.name = %format!("{} process", message.topic),
            otel.kind = "consumer",
            otel.status_code = tracing::field::Empty,
            messaging.system = "kafka",
            messaging.operation.type = "process",
            messaging.destination.name = %message.topic,
            messaging.destination.partition.id = message.partition,
            messaging.kafka.offset = message.offset,
            outcome = tracing::field::Empty,
            source = %message.source(),
            request_id = message.header(medbook_shared::events::headers::REQUEST_ID),
            event_id = tracing::field::Empty,
            event_type = tracing::field::Empty,
            aggregate_id = tracing::field::Empty,
        );
        medbook_shared::trace_context::set_remote_parent(
            &span,
            medbook_shared::trace_context::context_from(|key| {
                message.header(key).map(str::to_owned)
            }),
        );
        async {
            // How long handling took, for the histogram: a measurement, not a decision,
            // so it is not the clock's to set.
            let started = Instant::now();
            let result = self.handle_inner(message, cancel).await;
            let current = tracing::Span::current();
            match &result {
                Ok(outcome) => {
                    current.record("outcome", outcome.label());
                    if matches!(outcome, Outcome::DeadLettered(_)) {
                        current.record("otel.status_code", "error");
                    }
                    self.metrics.observe(outcome, started.elapsed());
                }
                Err(_) => {
                    current.record("outcome", "interrupted");
                }
            }
            result
        }
        .instrument(span)
        .await
    }

    /// Whether the email is still worth sending (`None`: send it): a reminder while
    /// its appointment is current and ahead, an account e-mail while its link works, an
    /// offer while it holds.
    async fn skip_reason(
        &self,
        event: &EventEnvelope,
        cancel: &watch::Receiver<bool>,
    ) -> Result<Option<SkipReason>, HandleError> {
        if let Some(reason) = self.too_late(event) {
            return Ok(Some(reason));
        }
        match &event.event {
            Event::Appointment(AppointmentEvent::Reminder(r)) => {
                let latest = self.latest_version(&r.appointment, cancel).await?;
                Ok((latest > r.appointment.version).then_some(SkipReason::Stale))
            }
            Event::Appointment(_) | Event::Account(_) | Event::Waitlist(_) => Ok(None),
        }
    }

    /// Whether the e-mail's own deadline ([`deadline`]) has passed by the clock.
    fn too_late(&self, event: &EventEnvelope) -> Option<SkipReason> {
        deadline(event)
            .filter(|(at, _)| *at <= self.clock.now())
            .map(|(_, reason)| reason)
    }

    /// Records the appointment's version; returns the latest known.
    async fn latest_version(
        &self,
        a: &AppointmentSnapshot,
        cancel: &watch::Receiver<bool>,
    ) -> Result<i32, HandleError> {
        loop {
            match self
                .order_store
                .observe_version(a.appointment_id, a.version)
                .await
            {
                Ok(v) => return Ok(v),
                Err(e) => tracing::warn!(error = %e, "delivery log unavailable; retrying"),
            }
            self.pause(DEPENDENCY_RETRY, cancel, None).await?;
        }
    }

    async fn handle_inner(
        &self,
        message: &Incoming,
        cancel: &watch::Receiver<bool>,
    ) -> Result<Outcome, HandleError> {
        let decoded = match &message.payload {
            None => Err("empty message".to_owned()),
            Some(bytes) => EventEnvelope::decode(bytes).map_err(|e| e.to_string()),
        };
        let event = match decoded {
            Ok(event) => {
                let span = tracing::Span::current();
                span.record("event_id", tracing::field::display(event.id));
                span.record("event_type", event.event_type().as_str());
                span.record(
                    "aggregate_id",
                    tracing::field::display(event.event.aggregate_id()),
                );
                event
            }
            Err(error) => {
                let letter = Letter::new(FailureKind::Poison, error, 0);
                return self.dead_letter(message, None, letter, cancel).await;
            }
        };
        if !wanted(&event) {
            tracing::info!(event_id = %event.id, event_type = event.event_type().as_str(), "no e-mail wanted for this event (the clinic does not e-mail patients about missed visits)");
            return Ok(Outcome::NotWanted);
        }
        // This handling's lease owner: two events of one appointment handled by two
        // workers of this process are two owners.
        let me = Uuid::new_v4();
        let turn = turn_of(&event);
        let held = Held {
            event_id: Some(event.id),
            turn: turn.as_ref(),
            me,
        };
        let email = match email::render(&event, &self.organizer) {
            Ok(email) => email,
            Err(e) => {
                let letter = Letter::new(FailureKind::Permanent, e.to_string(), 0);
                return self.dead_letter(message, Some(held), letter, cancel).await;
            }
        };
        // Every appointment event tells the log the appointment's version, so that a
        // reminder of an older one is recognised as stale. Account events have none.
        if let Event::Appointment(e) = &event.event {
            if !matches!(e, AppointmentEvent::Reminder(_)) {
                self.latest_version(e.appointment(), cancel).await?;
            }
        }
        if let Some(reason) = self.skip_reason(&event, cancel).await? {
            tracing::info!(event_id = %event.id, event_type = event.event_type().as_str(), reason = reason.as_str(), "email dropped");
            return Ok(Outcome::Skipped(reason));
        }
        let request = ClaimRequest {
            event_id: event.id,
            event_type: event.event_type().as_str().to_owned(),
            recipient: email.to_address.clone(),
            source: message.source(),
        };
        let takeover = loop {
            match self
                .log
                .claim(&request, self.owner, self.stale_after, self.clock.now())
                .await
            {
                Ok(Claim::Acquired { takeover }) => break takeover,
                Ok(Claim::AlreadySent) => {
                    // Sent before, perhaps by a consumer that died before recording
                    // that the patient was told: record it now (idempotent).
                    if let Some(turn) = &turn {
                        self.end_turn(turn, me, !turn.repeats).await;
                    }
                    return Ok(Outcome::Duplicate);
                }
                Ok(Claim::HeldElsewhere) => {
                    tracing::info!(event_id = %event.id, "event is being sent by another consumer; waiting");
                }
                Err(e) => tracing::warn!(error = %e, "delivery log unavailable; retrying"),
            }
            self.pause(DEPENDENCY_RETRY, cancel, None).await?;
        };
        if takeover {
            tracing::warn!(event_id = %event.id, "taking over an event whose consumer died mid-send; the email may arrive twice (same Message-ID)");
        }
        // The mail's age counts from when it entered the topic.
        let born = message.timestamp.unwrap_or(event.occurred_at);
        let mut attempts = 0;
        let mut order = OrderWait::default();
        loop {
            if let Some(turn) = &turn {
                if let TurnDecision::Superseded { told } =
                    self.wait_for_turn(turn, me, &mut order, cancel).await?
                {
                    tracing::info!(event_id = %event.id, version = turn.version, told, "email dropped: the patient was already told about a later version");
                    self.release(event.id).await;
                    return Ok(Outcome::Skipped(SkipReason::Superseded));
                }
            }
            // However long the claim, the turn or the server took: never sent late.
            if let Some(reason) = self.too_late(&event) {
                tracing::info!(event_id = %event.id, event_type = event.event_type().as_str(), reason = reason.as_str(), "email dropped: its deadline passed before it could be sent");
                if let Some(turn) = &turn {
                    self.end_turn(turn, me, false).await;
                }
                self.release(event.id).await;
                return Ok(Outcome::Skipped(reason));
            }
            attempts += 1;
            let error = match self.mailer.send(&email).await {
                Ok(()) => {
                    self.smtp.set_up(true);
                    break;
                }
                Err(SendError::Permanent(error)) => {
                    self.metrics.send_failed("permanent");
                    let letter = Letter::new(FailureKind::Permanent, error, attempts);
                    return self.dead_letter(message, Some(held), letter, cancel).await;
                }
                Err(SendError::Refused(error)) => {
                    self.metrics.send_failed("refused");
                    if let Some(turn) = &turn {
                        self.end_turn(turn, me, false).await;
                    }
                    if self
                        .within_cap(FailureKind::Refused, message, &error, cancel)
                        .await?
                    {
                        let letter = Letter::new(FailureKind::Refused, error, attempts);
                        return self.dead_letter_admitted(message, Some(held), letter).await;
                    }
                    // Held by the cap for a while: perhaps the cause was fixed meanwhile.
                    continue;
                }
                Err(SendError::Unavailable(error)) => {
                    self.metrics.send_failed("unavailable");
                    if self.smtp.set_up(false) {
                        tracing::warn!(%error, "SMTP server unavailable; holding mail until it is back");
                    }
                    error
                }
                Err(SendError::Transient(error)) => {
                    self.metrics.send_failed("transient");
                    error
                }
            };
            // Another e-mail of the appointment may use the wire while this one waits.
            if let Some(turn) = &turn {
                self.end_turn(turn, me, false).await;
            }
            let age = (self.clock.now() - born).to_std().unwrap_or_default();
            if age >= self.retry.max_age {
                let letter = Letter::new(
                    FailureKind::Expired,
                    format!(
                        "not sent within retry.max_age ({} s); last error: {error}",
                        self.retry.max_age.as_secs()
                    ),
                    attempts,
                );
                return self.dead_letter(message, Some(held), letter, cancel).await;
            }
            // A retry never waits past the e-mail's deadline: it is dropped at it.
            let until_deadline = deadline(&event).map_or(Duration::MAX, |(at, _)| {
                (at - self.clock.now()).to_std().unwrap_or_default()
            });
            let wait = self
                .retry
                .jittered(attempts)
                .min(self.retry.max_age - age)
                .min(until_deadline);
            tracing::info!(event_id = %event.id, attempts, %error, retry_in_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX), "sending failed; will retry");
            self.metrics.retrying(1);
            let paused = self
                .pause(
                    wait,
                    cancel,
                    (!self.smtp.is_up()).then(|| self.smtp.subscribe()),
                )
                .await;
            self.metrics.retrying(-1);
            if let Err(stopped) = paused {
                // Nothing is in flight between attempts: whoever handles the message
                // next may take it over at once.
                self.release(event.id).await;
                return Err(stopped);
            }
            // An appointment that changed or started, or a link that expired, while the
            // mail waited.
            if let Some(reason) = self.skip_reason(&event, cancel).await? {
                tracing::info!(event_id = %event.id, event_type = event.event_type().as_str(), reason = reason.as_str(), "email dropped after waiting");
                self.release(event.id).await;
                return Ok(Outcome::Skipped(reason));
            }
        }
        // The SMTP server has the email; from here on, only recording it remains.
        while let Err(e) = self.log.mark_sent(event.id, attempts).await {
            tracing::warn!(error = %e, event_id = %event.id, "cannot record the sent email; retrying");
            tokio::time::sleep(DEPENDENCY_RETRY).await;
        }
        if let Some(turn) = &turn {
            self.end_turn(turn, me, !turn.repeats).await;
        }
        if matches!(
            event.event,
            Event::Appointment(AppointmentEvent::Reminder(_))
        ) {
            self.metrics.reminder_sent();
        }
        tracing::info!(event_id = %event.id, event_type = event.event_type().as_str(), attempts, "email sent");
        Ok(Outcome::Sent { attempts, takeover })
    }

    /// Waits until the e-mail of `turn` may be sent ([`TurnDecision::Go`], with the
    /// appointment's lease) or is superseded. Waiting for an earlier version ends after
    /// `order.max_wait`: the e-mail then goes out anyway.
    async fn wait_for_turn(
        &self,
        turn: &Turn,
        me: Uuid,
        order: &mut OrderWait,
        cancel: &watch::Receiver<bool>,
    ) -> Result<TurnDecision, HandleError> {
        loop {
            if !order.forced
                && order
                    .since
                    .is_some_and(|since| self.waited_since(since) >= self.order.max_wait)
            {
                order.forced = true;
                tracing::warn!(appointment_id = %turn.appointment_id, version = turn.version, waited_secs = self.order.max_wait.as_secs(), "an earlier version of the appointment was not handled in time; sending this one anyway (the earlier one will be dropped as superseded)");
            }
            match self
                .order_store
                .take_turn(turn, me, self.stale_after, order.forced, self.clock.now())
                .await
            {
                Ok(decision @ (TurnDecision::Go | TurnDecision::Superseded { .. })) => {
                    if let Some(since) = order.since.take() {
                        let ended = match decision {
                            TurnDecision::Superseded { .. } => "superseded",
                            _ if order.forced => "forced",
                            _ => "in_order",
                        };
                        self.metrics.order_waited(ended, self.waited_since(since));
                    }
                    return Ok(decision);
                }
                Ok(TurnDecision::WaitEarlier { told }) => {
                    if order.since.is_none() {
                        tracing::info!(appointment_id = %turn.appointment_id, version = turn.version, told, "waiting for an earlier version of the appointment to be told first");
                        order.since = Some(self.clock.instant());
                    }
                }
                Ok(TurnDecision::WaitBusy) => {}
                Err(e) => tracing::warn!(error = %e, "delivery log unavailable; retrying"),
            }
            self.pause(self.order.recheck, cancel, None).await?;
        }
    }

    /// How long since `since` (a reading of the clock's monotonic time).
    fn waited_since(&self, since: Instant) -> Duration {
        self.clock.instant().saturating_duration_since(since)
    }

    /// Ends this handling's turn; recording what the patient was told is retried until
    /// it is stored (a later version waits on it), a mere lease release is tried once
    /// (the lease expires on its own).
    async fn end_turn(&self, turn: &Turn, me: Uuid, told: bool) {
        loop {
            match self.order_store.end_turn(turn, me, told).await {
                Ok(()) => return,
                Err(e) if told => {
                    tracing::warn!(error = %e, appointment_id = %turn.appointment_id, "cannot record what the patient was told; retrying");
                    tokio::time::sleep(DEPENDENCY_RETRY).await;
                }
                Err(e) => {
                    tracing::warn!(error = %e, appointment_id = %turn.appointment_id, "cannot release the appointment's lease; it expires on its own");
                    return;
                }
            }
        }
    }

    async fn release(&self, event_id: Uuid) {
        if let Err(e) = self.log.release(event_id, self.owner).await {
            // The claim goes stale and a replay takes it over.
            tracing::warn!(error = %e, %event_id, "cannot release the claim");
        }
    }

    /// Counts a dead letter of a capped kind against the group's cap. When the cap is
    /// reached the message is held — not dead-lettered, its offset not stored, its
    /// partition waiting — until the window has room again (`dead_letters_held` and
    /// the alert on it tell operators); then `false` is returned, and the caller tries
    /// the message again before dead-lettering it.
    async fn within_cap(
        &self,
        kind: FailureKind,
        message: &Incoming,
        error: &str,
        cancel: &watch::Receiver<bool>,
    ) -> Result<bool, HandleError> {
        loop {
            match self
                .budget
                .admit(kind, &message.source(), self.clock.now())
                .await
            {
                Ok(Admission::Admitted) => return Ok(true),
                Ok(Admission::Full { count, retry_after }) => {
                    tracing::error!(kind = kind.as_str(), %error, count, retry_in_secs = retry_after.as_secs(), "dead-letter cap reached for the consumer group: holding the message instead of dead-lettering it; fix the cause");
                    self.metrics.held_by_cap(1);
                    let waited = self
                        .pause(
                            retry_after.clamp(DEPENDENCY_RETRY, CAP_RECHECK),
                            cancel,
                            None,
                        )
                        .await;
                    self.metrics.held_by_cap(-1);
                    waited?;
                    return Ok(false);
                }
                Err(e) => {
                    tracing::warn!(error = %e, "delivery log unavailable; retrying");
                    self.pause(DEPENDENCY_RETRY, cancel, None).await?;
                }
            }
        }
    }

    /// Dead-letters `message`, once the cap (for capped kinds) admits it.
    async fn dead_letter(
        &self,
        message: &Incoming,
        held: Option<Held<'_>>,
        letter: Letter,
        cancel: &watch::Receiver<bool>,
    ) -> Result<Outcome, HandleError> {
        if letter.kind.capped() {
            while !self
                .within_cap(letter.kind, message, &letter.error, cancel)
                .await?
            {}
        }
        self.dead_letter_admitted(message, held, letter).await
    }

    async fn dead_letter_admitted(
        &self,
        message: &Incoming,
        held: Option<Held<'_>>,
        letter: Letter,
    ) -> Result<Outcome, HandleError> {
        let kind = letter.kind;
        let letter = DeadLetter {
            kind,
            error: letter.error,
            attempts: letter.attempts,
            failed_at: self.clock.now(),
        };
        while let Err(e) = self.dlq.dead_letter(message, &letter).await {
            tracing::warn!(error = %e, "cannot write the dead letter; retrying");
            self.pause(DEPENDENCY_RETRY, &self.never.1, None).await?;
        }
        if let Some(held) = held {
            if let Some(id) = held.event_id {
                self.release(id).await;
            }
            // This version is decided: later ones need not wait for it. A replay of
            // the letter is still sent while no later version was told.
            if let Some(turn) = held.turn {
                self.end_turn(turn, held.me, !turn.repeats).await;
            }
        }
        tracing::warn!(kind = kind.as_str(), error = %letter.error, attempts = letter.attempts, "message dead-lettered");
        Ok(Outcome::DeadLettered(kind))
    }
}

/// How often a message held by the dead-letter cap asks again, at most.
const CAP_RECHECK: Duration = Duration::from_secs(5);

/// A failure on its way to the DLQ.
struct Letter {
    kind: FailureKind,
    error: String,
    attempts: u32,
}

impl Letter {
    fn new(kind: FailureKind, error: String, attempts: u32) -> Self {
        Self {
            kind,
            error,
            attempts,
        }
    }
}

/// What a handling holds that a dead letter must give back.
#[derive(Clone, Copy)]
struct Held<'a> {
    event_id: Option<Uuid>,
    turn: Option<&'a Turn>,
    me: Uuid,
}

/// One e-mail's wait for an earlier version of its appointment.
#[derive(Debug, Default)]
struct OrderWait {
    since: Option<Instant>,
    /// It waited its longest: it goes out without the earlier version.
    forced: bool,
}

/// The order slot of an appointment event's e-mail; account e-mails and waitlist offers
/// have none (they are de-duplicated by event id only).
fn turn_of(event: &EventEnvelope) -> Option<Turn> {
    match &event.event {
        Event::Appointment(e) => {
            let a = e.appointment();
            Some(Turn {
                appointment_id: a.appointment_id,
                version: a.version,
                // Neither changes the appointment: they tell about the version as it is.
                repeats: matches!(
                    e,
                    AppointmentEvent::Reminder(_) | AppointmentEvent::NoShow(_)
                ),
            })
        }
        Event::Account(_) | Event::Waitlist(_) => None,
    }
}

/// Whether anyone wants an e-mail about `event`: not about a no-show the clinic does
/// not e-mail patients about.
fn wanted(event: &EventEnvelope) -> bool {
    match &event.event {
        Event::Appointment(AppointmentEvent::NoShow(n)) => n.email_patient,
        Event::Appointment(_) | Event::Account(_) | Event::Waitlist(_) => true,
    }
}

/// When the e-mail stops being worth sending, and why: a reminder when its
/// appointment starts, an account link when it expires, an offer when its hold ends.
/// The other e-mails have no deadline.
fn deadline(event: &EventEnvelope) -> Option<(DateTime<Utc>, SkipReason)> {
    match &event.event {
        // `AppointmentSnapshot::has_started`: due at the start, as the scheduler sees it.
        Event::Appointment(AppointmentEvent::Reminder(r)) => {
            Some((r.appointment.starts_at, SkipReason::Started))
        }
        Event::Appointment(_) => None,
        Event::Account(a) => a
            .expires_at()
            .map(|expires_at| (expires_at, SkipReason::LinkExpired)),
        Event::Waitlist(o) => Some((o.expires_at, SkipReason::OfferExpired)),
    }
}

/// How often the prober greets the SMTP server.
#[derive(Debug, Clone, Copy)]
pub struct ProbeIntervals {
    /// While the server is marked unavailable: how soon its return is noticed.
    pub down: Duration,
    /// While it is up but no email has gone out for this long: how soon an outage of
    /// an idle service is noticed (`/ready`).
    pub idle: Duration,
}

/// Greets the SMTP server at start-up; then, while it is marked unavailable, every
/// `down` interval, marking it up at the first answer (which wakes every email
/// waiting for it); and while it is up but has not answered for the `idle` interval
/// (no email went out), once, marking it unavailable if it does not answer. Runs until
/// `stop` turns true.
pub async fn probe_smtp(
    mailer: Arc<dyn Mailer>,
    status: SmtpStatus,
    intervals: ProbeIntervals,
    mut stop: watch::Receiver<bool>,
) {
    let check = |result: Result<(), SendError>| match result {
        Ok(()) => {
            if status.set_up(true) {
                tracing::info!("SMTP server reachable again; waiting mail is retried now");
            }
        }
        Err(e) => {
            if status.set_up(false) {
                tracing::warn!(error = %e, "SMTP server unavailable; mail waits until it is back");
            }
        }
    };
    check(mailer.probe().await);
    let mut up = status.subscribe();
    while !*stop.borrow() {
        let marked_down = async {
            let _ = up.wait_for(|up| !*up).await;
        };
        let probe_now = if status.is_up() {
            let quiet = intervals.idle.saturating_sub(status.silent_for());
            tokio::select! {
                _ = tokio::time::sleep(quiet) => status.is_up() && status.silent_for() >= intervals.idle,
                _ = marked_down => false,
                _ = stop.changed() => false,
            }
        } else {
            tokio::select! {
                _ = tokio::time::sleep(intervals.down) => !status.is_up(),
                _ = stop.changed() => false,
            }
        };
        if probe_now {
            check(mailer.probe().await);
        }
    }
}

#[cfg(test)]
mod tests;
