//! Booking, cancelling and rescheduling appointments, and listing them. Each change is
//! a request to `domain::decisions`, decided inside one transaction by the repository
//! (the unit of work); this layer adds the policy from configuration, the time, the
//! idempotency hash and the mapping of rejections to errors.

use super::booking_ports::{AppointmentFilter, AppointmentRepository, Booked};
use super::ports::{Clock, Page, PageRequest};
use super::ServiceError;
use crate::domain::booking::{Appointment, AppointmentStatus, BookingPolicy, BookingRejection};
use crate::domain::decisions::{
    Attendance, AttendanceRequest, BookingRequest, CancelRequest, Idempotency, Recorder,
    RescheduleRequest,
};
use crate::domain::inputs;
use crate::domain::links::{self, ManageLinks};
use crate::domain::reminders::ReminderPlan;
use crate::domain::UserId;
use crate::domain::{AppointmentId, SlotId};
use sha2::{Digest, Sha256};
use std::sync::Arc;
use uuid::Uuid;

pub use crate::domain::decisions::Actor;

/// The audit trail's actor for a patient acting through a link.
fn patient_actor(patient: UserId) -> medbook_service_kit::context::Actor {
    medbook_service_kit::context::Actor::User {
        id: patient.0.to_string(),
        role: crate::domain::Role::Patient.as_str().to_owned(),
    }
}

/// A booking rule's refusal as the service's error (the two not-found ones as
/// not found).
pub fn rejection(r: BookingRejection) -> ServiceError {
    match r {
        BookingRejection::SlotNotFound => ServiceError::NotFound("slot"),
        BookingRejection::AppointmentNotFound => ServiceError::NotFound("appointment"),
        BookingRejection::PatientNotFound => ServiceError::NotFound("patient"),
        other => ServiceError::Rejected(other.into()),
    }
}

pub struct AppointmentService {
    appointments: Arc<dyn AppointmentRepository>,
    clock: Arc<dyn Clock>,
    policy: BookingPolicy,
    reminders: ReminderPlan,
    links: ManageLinks,
    metrics: Option<super::booking_metrics::BookingMetrics>,
}

/// What an appointment's manage link finds.
#[derive(Debug, Clone)]
pub enum Managed {
    /// Booked and not yet started: it can be cancelled or moved (within the clinic's
    /// rules).
    Active(Appointment),
    /// Cancelled: the link says so, and when.
    Cancelled(Appointment),
    /// Started, attended, missed: the link has no more to do.
    Over(Appointment),
}

impl AppointmentService {
    pub fn new(
        appointments: Arc<dyn AppointmentRepository>,
        clock: Arc<dyn Clock>,
        policy: BookingPolicy,
        links: ManageLinks,
    ) -> Self {
        Self {
            appointments,
            clock,
            policy,
            reminders: ReminderPlan::default(),
            links,
            metrics: None,
        }
    }

    /// Counts bookings, cancellations, reschedules and refusals in `metrics`.
    pub fn with_metrics(mut self, metrics: super::booking_metrics::BookingMetrics) -> Self {
        self.metrics = Some(metrics);
        self
    }

    fn count(&self, f: impl FnOnce(&super::booking_metrics::BookingMetrics)) {
        if let Some(m) = &self.metrics {
            f(m);
        }
    }

    /// Counts a refusal of the booking rules, and passes the result on as the
    /// service's error.
    fn counted<T>(&self, result: Result<T, BookingRejection>) -> Result<T, ServiceError> {
        result.map_err(|r| {
            self.count(|m| m.refused(r));
            rejection(r)
        })
    }

    /// Schedules these reminders with every booking and reschedule.
    pub fn with_reminders(mut self, reminders: ReminderPlan) -> Self {
        self.reminders = reminders;
        self
    }

    /// Books a slot. With an idempotency key, a retry returns the original appointment
    /// (`Booked::replayed`), and the same key with another request is refused.
    #[tracing::instrument(skip_all, fields(patient_id = %patient, slot_id = %slot_id))]
    pub async fn book(
        &self,
        patient: UserId,
        slot_id: SlotId,
        reason: String,
        idempotency_key: Option<String>,
    ) -> Result<Booked, ServiceError> {
        self.book_as(patient, slot_id, reason, idempotency_key, false)
            .await
    }

    /// An admin books for a patient: the clinic's rules hold, except the no-show limit
    /// (that one stops self-service only).
    #[tracing::instrument(skip_all, fields(patient_id = %patient, slot_id = %slot_id))]
    pub async fn book_for_patient(
        &self,
        patient: UserId,
        slot_id: SlotId,
        reason: String,
        idempotency_key: Option<String>,
    ) -> Result<Booked, ServiceError> {
        self.book_as(patient, slot_id, reason, idempotency_key, true)
            .await
    }

    async fn book_as(
        &self,
        patient: UserId,
        slot_id: SlotId,
        reason: String,
        idempotency_key: Option<String>,
        by_admin: bool,
    ) -> Result<Booked, ServiceError> {
        let idempotency = idempotency_key.map(|key| Idempotency {
            request_hash: hex::encode(Sha256::digest(format!("{slot_id}\n{reason}").as_bytes())),
            key,
        });
        let req = BookingRequest {
            appointment_id: AppointmentId(Uuid::new_v4()),
            patient_id: patient,
            slot_id,
            reason,
            idempotency,
            now: self.clock.now(),
            policy: self.policy,
            reminders: self.reminders.clone(),
            by_admin,
            links: self.links.clone(),
        };
        let booked = self.counted(self.appointments.book(req).await?)?;
        if !booked.replayed {
            self.count(|m| m.booked());
        }
        Ok(booked)
    }

    /// Cancels an appointment: a patient their own, before it starts; an admin any,
    /// giving a reason ([`inputs::cancel_reason`]), whichever way the request came in.
    #[tracing::instrument(skip_all, fields(appointment_id = %id))]
    pub async fn cancel(
        &self,
        actor: Actor,
        id: AppointmentId,
        reason: Option<String>,
    ) -> Result<Appointment, ServiceError> {
        let reason = inputs::cancel_reason(actor, reason.as_deref())?;
        let by = match actor {
            Actor::Patient(_) => "patient",
            Actor::Admin => "admin",
        };
        let req = CancelRequest {
            appointment_id: id,
            actor,
            reason,
            now: self.clock.now(),
            policy: self.policy,
            links: self.links.clone(),
        };
        let cancelled = self.counted(self.appointments.cancel(req).await?)?;
        self.count(|m| m.cancelled(by));
        Ok(cancelled)
    }

    #[tracing::instrument(skip_all, fields(appointment_id = %id))]
    pub async fn reschedule(
        &self,
        actor: Actor,
        id: AppointmentId,
        new_slot_id: SlotId,
        reason: Option<String>,
    ) -> Result<Appointment, ServiceError> {
        let reason = inputs::change_reason(reason.as_deref())?;
        let req = RescheduleRequest {
            appointment_id: id,
            actor,
            new_slot_id,
            now: self.clock.now(),
            policy: self.policy,
            reminders: self.reminders.clone(),
            links: self.links.clone(),
            reason,
        };
        let moved = self.counted(self.appointments.reschedule(req).await?)?;
        self.count(|m| m.rescheduled());
        Ok(moved)
    }

    /// Records whether a started visit was attended: its doctor (a doctor's account
    /// linked to `doctor`) or an admin, once. A no-show is published (the clinic
    /// decides whether the patient is e-mailed) and counts toward the clinic's limit.
    #[tracing::instrument(skip_all, fields(appointment_id = %id, outcome = outcome.as_str()))]
    pub async fn record_attendance(
        &self,
        recorder: Recorder,
        id: AppointmentId,
        outcome: Attendance,
    ) -> Result<Appointment, ServiceError> {
        let req = AttendanceRequest {
            appointment_id: id,
            recorder,
            outcome,
            now: self.clock.now(),
            policy: self.policy,
            links: self.links.clone(),
        };
        let marked = self.counted(self.appointments.record_attendance(req).await?)?;
        self.count(|m| m.attendance(outcome));
        Ok(marked)
    }

    /// What a manage link opens. A link that is malformed or matches nothing is "not
    /// found" (`link`); a stale one finds its appointment, which says what happened.
    pub async fn managed(&self, token: &str) -> Result<Managed, ServiceError> {
        if !links::well_formed(token) {
            return Err(ServiceError::NotFound("link"));
        }
        let a = self
            .appointments
            .by_manage_token(links::token_hash(token))
            .await?
            .ok_or(ServiceError::NotFound("link"))?;
        Ok(match a.status {
            AppointmentStatus::Cancelled => Managed::Cancelled(a),
            AppointmentStatus::Booked if a.starts_at > self.clock.now() => Managed::Active(a),
            _ => Managed::Over(a),
        })
    }

    /// Cancels through a manage link: as the patient, under the patient's rules, and
    /// audited as the patient.
    pub async fn cancel_by_link(
        &self,
        token: &str,
        reason: Option<String>,
    ) -> Result<Appointment, ServiceError> {
        let a = self.linked(token).await?;
        let actor = Actor::Patient(a.patient_id);
        medbook_service_kit::context::with_actor(
            patient_actor(a.patient_id),
            self.cancel(actor, a.id, reason),
        )
        .await
    }

    /// Moves through a manage link to another slot of the same doctor, as the patient.
    pub async fn reschedule_by_link(
        &self,
        token: &str,
        new_slot: SlotId,
    ) -> Result<Appointment, ServiceError> {
        let a = self.linked(token).await?;
        let actor = Actor::Patient(a.patient_id);
        medbook_service_kit::context::with_actor(
            patient_actor(a.patient_id),
            self.reschedule(actor, a.id, new_slot, None),
        )
        .await
    }

    /// The appointment of a manage link, whatever its state (the change decides).
    async fn linked(&self, token: &str) -> Result<Appointment, ServiceError> {
        Ok(match self.managed(token).await? {
            Managed::Active(a) | Managed::Cancelled(a) | Managed::Over(a) => a,
        })
    }

    /// An appointment; a patient asking for someone else's gets "not found".
    pub async fn get(&self, actor: Actor, id: Uuid) -> Result<Appointment, ServiceError> {
        match (self.appointments.get(AppointmentId(id)).await?, actor) {
            (Some(a), Actor::Admin) => Ok(a),
            (Some(a), Actor::Patient(p)) if a.patient_id == p => Ok(a),
            _ => Err(ServiceError::NotFound("appointment")),
        }
    }

    /// A patient's own appointments, or (admin) any, filtered.
    pub async fn list(
        &self,
        actor: Actor,
        mut filter: AppointmentFilter,
        page: PageRequest,
    ) -> Result<Page<Appointment>, ServiceError> {
        if let Actor::Patient(p) = actor {
            filter.patient_id = Some(p);
        }
        Ok(self.appointments.list(filter, page).await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::booking::AppointmentStatus;
    use crate::domain::rejection::Rejection;
    use crate::domain::{ClinicId, DoctorId};
    use crate::service::ports::{RepoError, SystemClock};
    use async_trait::async_trait;
    use chrono::Utc;
    use std::sync::Mutex;

    /// Records what reached the repository and answers with fixed outcomes.
    #[derive(Default)]
    struct FakeAppointments {
        stored: Mutex<Vec<Appointment>>,
        last_book: Mutex<Option<BookingRequest>>,
        last_filter: Mutex<Option<AppointmentFilter>>,
        reject_with: Mutex<Option<BookingRejection>>,
    }

    fn appointment(patient: UserId) -> Appointment {
        let now = Utc::now();
        Appointment {
            id: AppointmentId(Uuid::new_v4()),
            slot_id: SlotId(Uuid::new_v4()),
            patient_id: patient,
            doctor_id: DoctorId(Uuid::new_v4()),
            doctor_name: "Dr. A".into(),
            clinic_id: ClinicId(Uuid::new_v4()),
            clinic_name: "C".into(),
            time_zone: "UTC".into(),
            starts_at: now,
            ends_at: now,
            status: AppointmentStatus::Booked,
            reason: String::new(),
            cancel_reason: None,
            cancelled_at: None,
            created_at: now,
            updated_at: now,
        }
    }

    #[async_trait]
    impl AppointmentRepository for FakeAppointments {
        async fn book(
            &self,
            cmd: BookingRequest,
        ) -> Result<Result<Booked, BookingRejection>, RepoError> {
            let patient = cmd.patient_id;
            *self.last_book.lock().unwrap() = Some(cmd);
            Ok(match *self.reject_with.lock().unwrap() {
                Some(r) => Err(r),
                None => Ok(Booked {
                    appointment: appointment(patient),
                    replayed: false,
                }),
            })
        }
        async fn reschedule(
            &self,
            _: RescheduleRequest,
        ) -> Result<Result<Appointment, BookingRejection>, RepoError> {
            Ok(Err(BookingRejection::SlotTaken))
        }
        async fn cancel(
            &self,
            cmd: CancelRequest,
        ) -> Result<Result<Appointment, BookingRejection>, RepoError> {
            Ok(match cmd.actor {
                Actor::Patient(_) => Err(BookingRejection::AlreadyStarted),
                Actor::Admin => Ok(appointment(UserId(Uuid::new_v4()))),
            })
        }
        async fn record_attendance(
            &self,
            _: AttendanceRequest,
        ) -> Result<Result<Appointment, BookingRejection>, RepoError> {
            Ok(Err(BookingRejection::NotStarted))
        }
        async fn by_manage_token(&self, hash: String) -> Result<Option<Appointment>, RepoError> {
            let links = ManageLinks::new(b"k", "https://x/manage");
            Ok(self
                .stored
                .lock()
                .unwrap()
                .iter()
                .find(|a| links.hash(a.id, a.patient_id) == hash)
                .cloned())
        }
        async fn get(&self, id: AppointmentId) -> Result<Option<Appointment>, RepoError> {
            Ok(self
                .stored
                .lock()
                .unwrap()
                .iter()
                .find(|a| a.id == id)
                .cloned())
        }
        async fn list(
            &self,
            filter: AppointmentFilter,
            page: PageRequest,
        ) -> Result<Page<Appointment>, RepoError> {
            *self.last_filter.lock().unwrap() = Some(filter);
            Ok(Page {
                items: vec![],
                total: 0,
                page: page.page,
                per_page: page.per_page,
            })
        }
    }

    fn service(repo: Arc<FakeAppointments>) -> AppointmentService {
        AppointmentService::new(
            repo,
            Arc::new(SystemClock),
            BookingPolicy {
                min_notice: chrono::Duration::minutes(30),
                horizon: chrono::Duration::days(10),
                max_active_per_patient: 3,
                change_deadline: chrono::Duration::zero(),
                no_show_limit: None,
                no_show_window: chrono::Duration::days(180),
                no_show_email: false,
            },
            ManageLinks::new(b"k", "https://x/manage"),
        )
    }

    #[tokio::test]
    async fn a_manage_link_finds_its_appointment_and_says_what_became_of_it() {
        let repo = Arc::new(FakeAppointments::default());
        let svc = service(repo.clone());
        let links = ManageLinks::new(b"k", "https://x/manage");
        let mut a = appointment(UserId(Uuid::new_v4()));
        a.starts_at = Utc::now() + chrono::Duration::days(1);
        repo.stored.lock().unwrap().push(a.clone());
        let token = links.token(a.id, a.patient_id);
        assert!(
            matches!(svc.managed(&token).await, Ok(Managed::Active(found)) if found.id == a.id)
        );
        for bad in ["", "short", &links::random_token()] {
            assert!(matches!(
                svc.managed(bad).await,
                Err(ServiceError::NotFound("link"))
            ));
        }
        repo.stored.lock().unwrap()[0].status = AppointmentStatus::Cancelled;
        assert!(matches!(
            svc.managed(&token).await,
            Ok(Managed::Cancelled(_))
        ));
        repo.stored.lock().unwrap()[0].status = AppointmentStatus::Booked;
        repo.stored.lock().unwrap()[0].starts_at = Utc::now() - chrono::Duration::minutes(1);
        assert!(matches!(svc.managed(&token).await, Ok(Managed::Over(_))));
    }

    #[tokio::test]
    async fn booking_passes_policy_and_hashes_the_idempotent_request() {
        let repo = Arc::new(FakeAppointments::default());
        let svc = service(repo.clone());
        let patient = UserId(Uuid::new_v4());
        let slot = Uuid::new_v4();
        svc.book(patient, SlotId(slot), "a".into(), Some("k".into()))
            .await
            .unwrap();
        let first = repo.last_book.lock().unwrap().clone().unwrap();
        assert_eq!(first.policy.max_active_per_patient, 3);
        let Idempotency {
            key,
            request_hash: hash_a,
        } = first.idempotency.unwrap();
        assert_eq!(key, "k");
        svc.book(patient, SlotId(slot), "b".into(), Some("k".into()))
            .await
            .unwrap();
        let hash_b = repo
            .last_book
            .lock()
            .unwrap()
            .clone()
            .unwrap()
            .idempotency
            .unwrap()
            .request_hash;
        assert_ne!(hash_a, hash_b, "a different body has a different hash");
    }

    #[tokio::test]
    async fn rejections_come_back_as_the_domains() {
        let repo = Arc::new(FakeAppointments::default());
        let svc = service(repo.clone());
        for rejection in [
            BookingRejection::SlotTaken,
            BookingRejection::SlotBlocked,
            BookingRejection::SlotInPast,
            BookingRejection::TooManyActive,
            BookingRejection::IdempotencyKeyReused,
        ] {
            *repo.reject_with.lock().unwrap() = Some(rejection);
            let err = svc
                .book(
                    UserId(Uuid::new_v4()),
                    SlotId(Uuid::new_v4()),
                    String::new(),
                    None,
                )
                .await
                .unwrap_err();
            // Which status each becomes is the transports' mapping (tested there).
            assert!(
                matches!(err, ServiceError::Rejected(Rejection::Booking(r)) if r == rejection),
                "{rejection:?} became {err:?}"
            );
        }
        *repo.reject_with.lock().unwrap() = Some(BookingRejection::SlotNotFound);
        let err = svc
            .book(
                UserId(Uuid::new_v4()),
                SlotId(Uuid::new_v4()),
                String::new(),
                None,
            )
            .await
            .unwrap_err();
        assert!(matches!(err, ServiceError::NotFound("slot")));
    }

    #[tokio::test]
    async fn patients_only_ever_see_their_own() {
        let repo = Arc::new(FakeAppointments::default());
        let svc = service(repo.clone());
        let owner = UserId(Uuid::new_v4());
        let stranger = UserId(Uuid::new_v4());
        let a = appointment(owner);
        repo.stored.lock().unwrap().push(a.clone());
        assert!(svc.get(Actor::Patient(owner), a.id.into()).await.is_ok());
        assert!(matches!(
            svc.get(Actor::Patient(stranger), a.id.into()).await,
            Err(ServiceError::NotFound("appointment"))
        ));
        assert!(svc.get(Actor::Admin, a.id.into()).await.is_ok());

        let asked = AppointmentFilter {
            patient_id: Some(owner),
            ..Default::default()
        };
        let page = PageRequest {
            page: 1,
            per_page: 10,
        };
        svc.list(Actor::Patient(stranger), asked.clone(), page)
            .await
            .unwrap();
        assert_eq!(
            repo.last_filter.lock().unwrap().clone().unwrap().patient_id,
            Some(stranger)
        );
        svc.list(Actor::Admin, asked, page).await.unwrap();
        assert_eq!(
            repo.last_filter.lock().unwrap().clone().unwrap().patient_id,
            Some(owner)
        );

        let err = svc
            .cancel(Actor::Patient(owner), a.id, None)
            .await
            .unwrap_err();
        assert!(matches!(
            err,
            ServiceError::Rejected(Rejection::Booking(BookingRejection::AlreadyStarted))
        ));
    }
}
