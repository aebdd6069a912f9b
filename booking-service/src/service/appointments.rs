//! Booking, cancelling and rescheduling appointments, and listing them. Each change is
//! a request to `domain::decisions`, decided inside one transaction by the repository
//! (the unit of work); this layer adds the policy from configuration, the time, the
//! idempotency hash and the mapping of rejections to errors.

use super::booking_ports::{AppointmentFilter, AppointmentRepository, Booked};
use super::ports::{Clock, Page, PageRequest};
use super::ServiceError;
use crate::domain::booking::{Appointment, BookingPolicy, BookingRejection};
use crate::domain::decisions::{BookingRequest, CancelRequest, Idempotency, RescheduleRequest};
use crate::domain::inputs;
use crate::domain::reminders::ReminderPlan;
use crate::domain::UserId;
use crate::domain::{AppointmentId, SlotId};
use sha2::{Digest, Sha256};
use std::sync::Arc;
use uuid::Uuid;

pub use crate::domain::decisions::Actor;

/// A booking rule's refusal as the service's error (the two not-found ones as
/// not found).
pub fn rejection(r: BookingRejection) -> ServiceError {
    match r {
        BookingRejection::SlotNotFound => ServiceError::NotFound("slot"),
        BookingRejection::AppointmentNotFound => ServiceError::NotFound("appointment"),
        other => ServiceError::Rejected(other.into()),
    }
}

pub struct AppointmentService {
    appointments: Arc<dyn AppointmentRepository>,
    clock: Arc<dyn Clock>,
    policy: BookingPolicy,
    reminders: ReminderPlan,
    metrics: Option<super::booking_metrics::BookingMetrics>,
}

impl AppointmentService {
    pub fn new(
        appointments: Arc<dyn AppointmentRepository>,
        clock: Arc<dyn Clock>,
        policy: BookingPolicy,
    ) -> Self {
        Self {
            appointments,
            clock,
            policy,
            reminders: ReminderPlan::default(),
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
        };
        let cancelled = self.appointments.cancel(req).await?.map_err(rejection)?;
        self.count(|m| m.cancelled(by));
        Ok(cancelled)
    }

    #[tracing::instrument(skip_all, fields(appointment_id = %id))]
    pub async fn reschedule(
        &self,
        actor: Actor,
        id: AppointmentId,
        new_slot_id: SlotId,
    ) -> Result<Appointment, ServiceError> {
        let req = RescheduleRequest {
            appointment_id: id,
            actor,
            new_slot_id,
            now: self.clock.now(),
            policy: self.policy,
            reminders: self.reminders.clone(),
        };
        let moved = self.counted(self.appointments.reschedule(req).await?)?;
        self.count(|m| m.rescheduled());
        Ok(moved)
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
            },
        )
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
