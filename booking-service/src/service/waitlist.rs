//! The waitlist's use cases: patients join, list and leave; an offer's link shows the
//! held slot and books it; the matcher (every replica runs one, sharing the work
//! through row locks) lets lapsed offers go and offers free slots to the first in line.
//! Offers leave through the outbox like every other event, so one is never lost and
//! never sent for a hold that was not committed.

use super::appointments::AppointmentService;
use super::booking_metrics::BookingMetrics;
use super::booking_ports::Booked;
use super::outbox::OutboxSignal;
use super::ports::{Clock, RepoError};
use super::ServiceError;
use crate::domain::booking::BookingPolicy;
use crate::domain::decisions::Actor;
use crate::domain::links;
use crate::domain::rejection::Rejection;
use crate::domain::waitlist::{parse_range, OfferView, WaitlistEntry};
use crate::domain::{AppointmentId, DoctorId, UserId};
use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, Utc};
use medbook_service_kit::retry::Backoff;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use uuid::Uuid;

/// Why joining is refused, beyond validation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JoinRefusal {
    DoctorNotFound,
    /// The patient already waits for this doctor.
    AlreadyWaiting,
}

#[derive(Debug, Clone)]
pub struct NewEntry {
    pub id: Uuid,
    pub patient_id: UserId,
    pub doctor_id: DoctorId,
    pub from_date: NaiveDate,
    pub to_date: NaiveDate,
    pub now: DateTime<Utc>,
}

#[async_trait]
pub trait WaitlistRepository: Send + Sync {
    /// Joins the line (audited in the same transaction).
    async fn join(&self, entry: NewEntry) -> Result<Result<WaitlistEntry, JoinRefusal>, RepoError>;
    /// The patient's entries, live ones first, newest first.
    async fn list(&self, patient: UserId) -> Result<Vec<WaitlistEntry>, RepoError>;
    /// Leaves the line: a waiting entry becomes `left` and its hold, if any, is released.
    /// `false`: no live entry of the patient has this id.
    async fn leave(&self, patient: UserId, id: Uuid, now: DateTime<Utc>)
        -> Result<bool, RepoError>;
    /// The held offer whose link token hashes to `token_hash`.
    async fn offer(&self, token_hash: String) -> Result<Option<OfferView>, RepoError>;
    /// The patient and appointment an offer with this token was booked as.
    async fn booked_from_offer(
        &self,
        token_hash: String,
    ) -> Result<Option<(UserId, AppointmentId)>, RepoError>;
}

/// What the matcher needs to offer a slot: how long it is held, where the link
/// points, and the service's default rules (a slot is offered only if its patient
/// could book it).
#[derive(Debug, Clone)]
pub struct OfferRules {
    pub hold: chrono::Duration,
    pub offer_url: String,
    pub defaults: BookingPolicy,
}

#[async_trait]
pub trait WaitlistMatching: Send + Sync {
    /// Releases up to `limit` holds that lapsed by `now`: each entry is back in line
    /// and never offered that slot again. Returns how many.
    async fn expire(&self, now: DateTime<Utc>, limit: i64) -> Result<u64, RepoError>;
    /// Offers up to `limit` free slots, each to the first entry in line whose range it
    /// falls in: hold, offer event and audit record in one transaction per offer.
    async fn offer(
        &self,
        now: DateTime<Utc>,
        limit: i64,
        rules: &OfferRules,
    ) -> Result<u64, RepoError>;
}

/// What an offer's link opens.
#[derive(Debug, Clone)]
pub enum OfferState {
    /// Held for the patient until `slot.expires_at`.
    Open(Box<OfferView>),
    /// Booked from this offer already.
    Booked(UserId, AppointmentId),
    /// It lapsed, or was withdrawn: nothing to book any more.
    Gone,
}

pub struct WaitlistService {
    repo: Arc<dyn WaitlistRepository>,
    appointments: Arc<AppointmentService>,
    clock: Arc<dyn Clock>,
    metrics: Option<BookingMetrics>,
}

impl WaitlistService {
    pub fn new(
        repo: Arc<dyn WaitlistRepository>,
        appointments: Arc<AppointmentService>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            repo,
            appointments,
            clock,
            metrics: None,
        }
    }

    pub fn with_metrics(mut self, metrics: BookingMetrics) -> Self {
        self.metrics = Some(metrics);
        self
    }

    fn count(&self, event: &'static str) {
        if let Some(m) = &self.metrics {
            m.waitlist(event, 1);
        }
    }

    /// Joins `doctor`'s waitlist for the days `from..=to` (the clinic's calendar).
    pub async fn join(
        &self,
        patient: UserId,
        doctor: DoctorId,
        from: NaiveDate,
        to: NaiveDate,
    ) -> Result<WaitlistEntry, ServiceError> {
        let now = self.clock.now();
        let (from_date, to_date) = parse_range(from, to, now.date_naive())?;
        let joined = self
            .repo
            .join(NewEntry {
                id: Uuid::new_v4(),
                patient_id: patient,
                doctor_id: doctor,
                from_date,
                to_date,
                now,
            })
            .await?;
        match joined {
            Ok(entry) => {
                self.count("joined");
                Ok(entry)
            }
            Err(JoinRefusal::DoctorNotFound) => Err(ServiceError::NotFound("doctor")),
            Err(JoinRefusal::AlreadyWaiting) => Err(Rejection::AlreadyWaiting.into()),
        }
    }

    pub async fn list(&self, patient: UserId) -> Result<Vec<WaitlistEntry>, ServiceError> {
        Ok(self.repo.list(patient).await?)
    }

    pub async fn leave(&self, patient: UserId, id: Uuid) -> Result<(), ServiceError> {
        if self.repo.leave(patient, id, self.clock.now()).await? {
            self.count("left");
            Ok(())
        } else {
            Err(ServiceError::NotFound("waitlist entry"))
        }
    }

    /// What an offer's link shows; a malformed or unknown token is "not found".
    pub async fn offer(&self, token: &str) -> Result<OfferState, ServiceError> {
        if !links::well_formed(token) {
            return Err(ServiceError::NotFound("offer"));
        }
        let hash = links::token_hash(token);
        Ok(match self.repo.offer(hash.clone()).await? {
            Some(view) if view.slot.expires_at > self.clock.now() => {
                OfferState::Open(Box::new(view))
            }
            _ => match self.repo.booked_from_offer(hash).await? {
                Some((patient, appointment)) => OfferState::Booked(patient, appointment),
                None => OfferState::Gone,
            },
        })
    }

    /// Books the held slot for the patient the offer was made to, as that patient
    /// (audited so), under the clinic's rules; the hold is used up and the entry booked
    /// in the booking's own transaction.
    pub async fn accept(&self, token: &str) -> Result<Booked, ServiceError> {
        let view = match self.offer(token).await? {
            OfferState::Open(view) => view,
            // A second press: the booking it made.
            OfferState::Booked(patient, appointment) => {
                return Ok(Booked {
                    appointment: self
                        .appointments
                        .get(Actor::Patient(patient), appointment.0)
                        .await?,
                    replayed: true,
                })
            }
            OfferState::Gone => return Err(Rejection::OfferGone.into()),
        };
        let actor = medbook_service_kit::context::Actor::User {
            id: view.patient_id.0.to_string(),
            role: crate::domain::Role::Patient.as_str().to_owned(),
        };
        let booked = medbook_service_kit::context::with_actor(
            actor,
            self.appointments.book(
                view.patient_id,
                view.slot.slot_id,
                String::new(),
                // Two presses at once: the second replays the first's booking.
                Some(format!("waitlist-offer-{}", view.entry_id)),
            ),
        )
        .await?;
        if !booked.replayed {
            self.count("booked");
        }
        Ok(booked)
    }
}

#[derive(Debug, Clone)]
pub struct MatcherConfig {
    pub rules: OfferRules,
    pub batch_size: i64,
    pub poll_interval: Duration,
    pub backoff_max: Duration,
}

/// Lets lapsed offers go and makes new ones, round after round.
pub struct WaitlistMatcher {
    store: Arc<dyn WaitlistMatching>,
    clock: Arc<dyn Clock>,
    outbox: OutboxSignal,
    config: MatcherConfig,
    metrics: Option<BookingMetrics>,
}

impl WaitlistMatcher {
    pub fn new(
        store: Arc<dyn WaitlistMatching>,
        clock: Arc<dyn Clock>,
        outbox: OutboxSignal,
        config: MatcherConfig,
    ) -> Self {
        Self {
            store,
            clock,
            outbox,
            config,
            metrics: None,
        }
    }

    pub fn with_metrics(mut self, metrics: BookingMetrics) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// One round: lapsed holds first (their slots are then free for the next in line),
    /// then offers. Returns (expired, offered).
    pub async fn round(&self) -> Result<(u64, u64), RepoError> {
        let now = self.clock.now();
        let expired = self.store.expire(now, self.config.batch_size).await?;
        let offered = self
            .store
            .offer(now, self.config.batch_size, &self.config.rules)
            .await?;
        if offered > 0 {
            self.outbox.notify();
        }
        if let Some(m) = &self.metrics {
            m.waitlist("offer_expired", expired);
            m.waitlist("offered", offered);
        }
        if expired > 0 || offered > 0 {
            tracing::info!(expired, offered, "waitlist: offers lapsed and made");
        }
        Ok((expired, offered))
    }

    /// Runs until `stop` turns true.
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        tracing::info!("waitlist matcher started");
        let mut backoff = Backoff::new(self.config.poll_interval, self.config.backoff_max);
        while !*stop.borrow() {
            let pause = match self.round().await {
                Ok((e, o))
                    if i64::try_from(e.max(o)).unwrap_or(i64::MAX) >= self.config.batch_size =>
                {
                    continue
                }
                Ok(_) => {
                    backoff.reset();
                    self.config.poll_interval
                }
                Err(e) => {
                    tracing::warn!(error = %e, "waitlist matcher: round failed");
                    backoff.next_delay()
                }
            };
            tokio::select! {
                _ = tokio::time::sleep(pause) => {}
                _ = stop.changed() => {}
            }
        }
        tracing::info!("waitlist matcher stopped");
    }
}
