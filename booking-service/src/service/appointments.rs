//! Booking, cancelling and rescheduling appointments, and listing them. The rules are
//! checked inside one transaction per change (see `repository::appointments`); this
//! layer adds the policy from configuration, idempotency hashing and error mapping.

use super::booking_ports::{
    AppointmentFilter, AppointmentRepository, BookCommand, Booked, CancelCommand, RescheduleCommand,
};
use super::ports::{Clock, Page, PageRequest};
use super::ServiceError;
use crate::domain::booking::{Appointment, BookingPolicy, BookingRejection};
use crate::domain::UserId;
use sha2::{Digest, Sha256};
use std::sync::Arc;
use uuid::Uuid;

/// Who is acting: a patient (only their own appointments) or an admin.
#[derive(Debug, Clone, Copy)]
pub enum Actor {
    Patient(UserId),
    Admin,
}

impl Actor {
    fn patient_id(self) -> Option<Uuid> {
        match self {
            Actor::Patient(id) => Some(id.0),
            Actor::Admin => None,
        }
    }
}

pub fn rejection(r: BookingRejection) -> ServiceError {
    use BookingRejection::*;
    let (conflict, code, message) = match r {
        SlotNotFound => return ServiceError::NotFound("slot"),
        AppointmentNotFound => return ServiceError::NotFound("appointment"),
        SlotTaken => (
            true,
            "slot_taken",
            "the slot has just been booked by someone else",
        ),
        SlotBlocked => (true, "slot_unavailable", "the slot is not open for booking"),
        SameSlot => (true, "same_slot", "the appointment is already in this slot"),
        NotActive => (
            true,
            "appointment_not_active",
            "the appointment is cancelled or over",
        ),
        SlotInPast => (false, "slot_in_past", "the slot has already started"),
        TooShortNotice => (
            false,
            "too_short_notice",
            "the slot starts too soon to be booked",
        ),
        BeyondHorizon => (
            false,
            "beyond_booking_horizon",
            "the slot is too far in the future",
        ),
        DoctorUnavailable => (
            false,
            "doctor_unavailable",
            "the doctor is not taking bookings",
        ),
        TooManyActive => (
            false,
            "too_many_appointments",
            "you already hold the maximum number of upcoming appointments",
        ),
        DifferentDoctor => (
            false,
            "different_doctor",
            "an appointment can only move to a slot of the same doctor",
        ),
        AlreadyStarted => (
            false,
            "appointment_started",
            "the appointment has already started",
        ),
        IdempotencyKeyReused => (
            false,
            "idempotency_key_reused",
            "this Idempotency-Key was used with a different request",
        ),
    };
    if conflict {
        ServiceError::Conflict {
            code,
            message: message.into(),
        }
    } else {
        ServiceError::Unprocessable {
            code,
            message: message.into(),
        }
    }
}

pub struct AppointmentService {
    appointments: Arc<dyn AppointmentRepository>,
    clock: Arc<dyn Clock>,
    policy: BookingPolicy,
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
        }
    }

    /// Books a slot. With an idempotency key, a retry returns the original appointment
    /// (`Booked::replayed`), and the same key with another request is refused.
    #[tracing::instrument(skip_all, fields(patient_id = %patient, slot_id = %slot_id))]
    pub async fn book(
        &self,
        patient: UserId,
        slot_id: Uuid,
        reason: String,
        idempotency_key: Option<String>,
    ) -> Result<Booked, ServiceError> {
        let idempotency = idempotency_key.map(|key| {
            let hash = hex::encode(Sha256::digest(format!("{slot_id}\n{reason}").as_bytes()));
            (key, hash)
        });
        let cmd = BookCommand {
            appointment_id: Uuid::new_v4(),
            patient_id: patient.0,
            slot_id,
            reason,
            idempotency,
            now: self.clock.now(),
            policy: self.policy,
        };
        self.appointments.book(cmd).await?.map_err(rejection)
    }

    #[tracing::instrument(skip_all, fields(appointment_id = %id))]
    pub async fn cancel(
        &self,
        actor: Actor,
        id: Uuid,
        reason: Option<String>,
    ) -> Result<Appointment, ServiceError> {
        let cmd = CancelCommand {
            appointment_id: id,
            patient_id: actor.patient_id(),
            reason,
            now: self.clock.now(),
        };
        self.appointments.cancel(cmd).await?.map_err(rejection)
    }

    #[tracing::instrument(skip_all, fields(appointment_id = %id))]
    pub async fn reschedule(
        &self,
        actor: Actor,
        id: Uuid,
        new_slot_id: Uuid,
    ) -> Result<Appointment, ServiceError> {
        let cmd = RescheduleCommand {
            appointment_id: id,
            patient_id: actor.patient_id(),
            new_slot_id,
            now: self.clock.now(),
            policy: self.policy,
        };
        self.appointments.reschedule(cmd).await?.map_err(rejection)
    }

    /// An appointment; a patient asking for someone else's gets "not found".
    pub async fn get(&self, actor: Actor, id: Uuid) -> Result<Appointment, ServiceError> {
        match (self.appointments.get(id).await?, actor) {
            (Some(a), Actor::Admin) => Ok(a),
            (Some(a), Actor::Patient(p)) if a.patient_id == p.0 => Ok(a),
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
            filter.patient_id = Some(p.0);
        }
        Ok(self.appointments.list(filter, page).await?)
    }
}
