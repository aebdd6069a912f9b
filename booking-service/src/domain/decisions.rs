//! Booking, rescheduling and cancelling, decided.
//!
//! Each change is a pure function of the facts its transaction has locked (the slot, the
//! doctor's status, the patient's upcoming appointments, an earlier request with the
//! same idempotency key, the policy, the time) that returns either a rejection or the
//! change to persist together with the event to emit. The repository is the unit of
//! work around it: it locks and loads the facts, hands them here, and writes what comes
//! back in the same transaction (`repository::appointments`). Nothing here touches a
//! database, so every rule is tested below without one.

use super::booking::{
    check_bookable, check_patient, Appointment, AppointmentStatus, BookingPolicy, BookingRejection,
    ClinicPolicy, DoctorPolicy, DoctorStatus, Slot, SlotStatus,
};
use super::links::ManageLinks;
use super::reminders::{DueReminder, ReminderPlan};
use super::{AppointmentId, SlotId, UserId};
use chrono::{DateTime, SubsecRound, Utc};
use chrono_tz::Tz;
use medbook_shared::events::{
    AppointmentEvent, AppointmentSnapshot, Cancellation, CancelledBy, ClinicInfo, DoctorInfo,
    EventEnvelope, NoShow, PatientInfo, PreviousSlot, Reschedule,
};

use super::audit::{json, AuditEntry};

/// Who is acting: a patient (only on their own appointments) or an admin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Actor {
    Patient(UserId),
    Admin,
}

impl Actor {
    /// The patient, when a patient acts.
    pub fn patient_id(self) -> Option<UserId> {
        match self {
            Actor::Patient(id) => Some(id),
            Actor::Admin => None,
        }
    }

    /// Who the audit trail and the events name.
    pub fn as_str(self) -> &'static str {
        match self {
            Actor::Patient(_) => "patient",
            Actor::Admin => "admin",
        }
    }

    fn may_act_on(self, appointment: &Appointment) -> bool {
        self.patient_id()
            .is_none_or(|p| p == appointment.patient_id)
    }
}

/// The database keeps timestamps to the microsecond; decisions use the time as it will
/// be stored, so what a change returns equals what a later read gives.
fn as_stored(t: DateTime<Utc>) -> DateTime<Utc> {
    t.trunc_subsecs(6)
}

/// A client's `Idempotency-Key` and the hash of the request it came with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Idempotency {
    pub key: String,
    pub request_hash: String,
}

#[derive(Debug, Clone)]
pub struct BookingRequest {
    pub appointment_id: AppointmentId,
    pub patient_id: UserId,
    pub slot_id: SlotId,
    pub reason: String,
    pub idempotency: Option<Idempotency>,
    pub now: DateTime<Utc>,
    /// The service's default rules; the slot's clinic and doctor may have their own.
    pub policy: BookingPolicy,
    /// Reminders to schedule with the booking.
    pub reminders: ReminderPlan,
    /// An admin booking for the patient: the no-show limit does not apply.
    pub by_admin: bool,
    pub links: ManageLinks,
}

/// The appointment an earlier request with the same idempotency key created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EarlierBooking {
    pub request_hash: String,
    pub appointment_id: AppointmentId,
}

/// The patient, their row locked (which serialises their bookings, so the cap holds).
#[derive(Debug, Clone)]
pub struct PatientFacts {
    pub patient: PatientInfo,
    pub email_verified: bool,
    /// Their booked appointments still ahead, counted up to the policy's cap (the
    /// count stops there, so it costs the same whatever their history).
    pub upcoming: i64,
    /// Their no-shows within the clinic's window (counted when the clinic sets a limit).
    pub no_shows: i64,
    /// Set when the request's idempotency key was used before.
    pub earlier: Option<EarlierBooking>,
}

/// A slot's hold for a waitlisted patient.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HoldFacts {
    pub entry_id: uuid::Uuid,
    pub patient_id: UserId,
    pub expires_at: DateTime<Utc>,
}

/// What a change does to the hold on the slot it takes: the holder's own booking uses
/// it up (their waitlist entry is then booked); an expired hold is released for anyone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HoldRelease {
    pub slot_id: SlotId,
    pub entry_id: uuid::Uuid,
    /// The holder booked it.
    pub used: bool,
}

/// Whether `patient` may take a slot with this hold at `now`, and what becomes of it.
pub fn check_hold(
    slot_id: SlotId,
    hold: Option<&HoldFacts>,
    patient: UserId,
    now: DateTime<Utc>,
) -> Result<Option<HoldRelease>, BookingRejection> {
    let Some(h) = hold else { return Ok(None) };
    if h.patient_id == patient {
        return Ok(Some(HoldRelease {
            slot_id,
            entry_id: h.entry_id,
            used: true,
        }));
    }
    if h.expires_at > now {
        return Err(BookingRejection::SlotHeld);
    }
    Ok(Some(HoldRelease {
        slot_id,
        entry_id: h.entry_id,
        used: false,
    }))
}

/// A slot, its row locked, with its doctor and clinic.
#[derive(Debug, Clone)]
pub struct SlotFacts {
    pub slot: Slot,
    pub doctor: DoctorInfo,
    pub doctor_status: DoctorStatus,
    pub clinic: ClinicInfo,
    pub time_zone: Tz,
    pub clinic_policy: ClinicPolicy,
    pub doctor_policy: DoctorPolicy,
    pub hold: Option<HoldFacts>,
}

/// What a booking request comes to.
#[derive(Debug, Clone)]
pub enum BookingDecision {
    /// A retry of the request that created this appointment: answer with it again.
    Replay(AppointmentId),
    Book(Box<NewBooking>),
}

/// A booking to write: the slot becomes booked, the appointment, its idempotency
/// record, its reminders and its event are inserted.
#[derive(Debug, Clone)]
pub struct NewBooking {
    pub appointment: Appointment,
    pub slot_status: SlotStatus,
    pub version: i32,
    pub idempotency: Option<Idempotency>,
    pub reminders: Vec<DueReminder>,
    pub event: EventEnvelope,
    pub audit: AuditEntry,
    /// The hash of the appointment's manage-link token.
    pub manage_token_hash: String,
    pub hold: Option<HoldRelease>,
}

pub fn decide_booking(
    req: &BookingRequest,
    patient: &PatientFacts,
    slot: Option<&SlotFacts>,
) -> Result<BookingDecision, BookingRejection> {
    check_patient(patient.email_verified)?;
    if let (Some(asked), Some(earlier)) = (&req.idempotency, &patient.earlier) {
        if asked.request_hash != earlier.request_hash {
            return Err(BookingRejection::IdempotencyKeyReused);
        }
        return Ok(BookingDecision::Replay(earlier.appointment_id));
    }
    let facts = slot.ok_or(BookingRejection::SlotNotFound)?;
    let policy = req
        .policy
        .for_practice(&facts.clinic_policy, &facts.doctor_policy);
    check_bookable(&facts.slot, facts.doctor_status, req.now, &policy)?;
    let hold = check_hold(facts.slot.id, facts.hold.as_ref(), req.patient_id, req.now)?;
    if patient.upcoming >= policy.max_active_per_patient {
        return Err(BookingRejection::TooManyActive);
    }
    if !req.by_admin
        && policy
            .no_show_limit
            .is_some_and(|limit| patient.no_shows >= limit)
    {
        return Err(BookingRejection::TooManyNoShows);
    }
    let now = as_stored(req.now);
    let version = 1;
    let appointment = Appointment {
        id: req.appointment_id,
        slot_id: facts.slot.id,
        patient_id: req.patient_id,
        doctor_id: facts.slot.doctor_id,
        doctor_name: facts.doctor.full_name.clone(),
        clinic_id: facts.clinic.id.into(),
        clinic_name: facts.clinic.name.clone(),
        time_zone: facts.clinic.time_zone.clone(),
        starts_at: facts.slot.starts_at,
        ends_at: facts.slot.ends_at,
        status: AppointmentStatus::Booked,
        reason: req.reason.clone(),
        cancel_reason: None,
        cancelled_at: None,
        created_at: now,
        updated_at: now,
    };
    let snapshot = snapshot(
        &appointment,
        version,
        &patient.patient,
        &facts.doctor,
        &facts.clinic,
        &req.links,
    );
    Ok(BookingDecision::Book(Box::new(NewBooking {
        manage_token_hash: req.links.hash(appointment.id, appointment.patient_id),
        hold,
        reminders: req
            .reminders
            .schedule(appointment.starts_at, facts.time_zone, now),
        event: EventEnvelope::new(now, AppointmentEvent::Created(snapshot)),
        audit: AuditEntry::new("appointment.booked", "appointment", appointment.id).created(
            &serde_json::json!({
                "slot_id": appointment.slot_id,
                "patient_id": appointment.patient_id,
                "doctor_id": appointment.doctor_id,
                "starts_at": appointment.starts_at,
                "status": appointment.status.as_str(),
                "version": version,
                "by": if req.by_admin { "admin" } else { "patient" },
                "from_waitlist": hold.is_some_and(|h| h.used),
            }),
        ),
        appointment,
        slot_status: SlotStatus::Booked,
        version,
        idempotency: req.idempotency.clone(),
    })))
}

/// An appointment, its row locked, with what its events carry.
#[derive(Debug, Clone)]
pub struct AppointmentFacts {
    /// As stored, with its slot's times.
    pub appointment: Appointment,
    pub version: i32,
    pub patient: PatientInfo,
    pub doctor: DoctorInfo,
    pub doctor_status: DoctorStatus,
    pub clinic: ClinicInfo,
    pub time_zone: Tz,
    pub clinic_policy: ClinicPolicy,
    pub doctor_policy: DoctorPolicy,
}

impl AppointmentFacts {
    /// What the appointment's events say about it now (a reminder's snapshot).
    pub fn snapshot(&self, links: &ManageLinks) -> AppointmentSnapshot {
        snapshot(
            &self.appointment,
            self.version,
            &self.patient,
            &self.doctor,
            &self.clinic,
            links,
        )
    }

    /// The rules of this appointment's practice.
    pub fn policy(&self, defaults: BookingPolicy) -> BookingPolicy {
        defaults.for_practice(&self.clinic_policy, &self.doctor_policy)
    }
}

/// A patient may change an appointment only before the clinic's deadline (and before
/// it starts); an admin at any time.
fn check_patient_may_change(
    actor: Actor,
    starts_at: DateTime<Utc>,
    now: DateTime<Utc>,
    policy: &BookingPolicy,
) -> Result<(), BookingRejection> {
    if actor.patient_id().is_none() {
        return Ok(());
    }
    if starts_at <= now {
        return Err(BookingRejection::AlreadyStarted);
    }
    if starts_at - now < policy.change_deadline {
        return Err(BookingRejection::ChangeDeadlinePassed);
    }
    Ok(())
}

#[derive(Debug, Clone)]
pub struct RescheduleRequest {
    pub appointment_id: AppointmentId,
    pub actor: Actor,
    pub new_slot_id: SlotId,
    pub now: DateTime<Utc>,
    pub policy: BookingPolicy,
    /// The reminders of the new time replace the pending ones of the old.
    pub reminders: ReminderPlan,
    pub links: ManageLinks,
    /// Why (an admin); required past the clinic's deadline for patients.
    pub reason: Option<String>,
}

/// A move to write: one slot freed, one taken, the appointment updated, its pending
/// reminders replaced by `reminders`, and the event.
#[derive(Debug, Clone)]
pub struct RescheduleDecision {
    pub appointment: Appointment,
    pub version: i32,
    pub freed: (SlotId, SlotStatus),
    pub taken: (SlotId, SlotStatus),
    pub reminders: Vec<DueReminder>,
    pub event: EventEnvelope,
    pub audit: AuditEntry,
    pub hold: Option<HoldRelease>,
}

/// `new_slot`: the requested slot. It and the appointment's current slot are locked
/// (the repository locks both in id order, so two moves never wait on each other in a
/// cycle).
pub fn decide_reschedule(
    req: &RescheduleRequest,
    current: Option<&AppointmentFacts>,
    new_slot: Option<&Slot>,
    new_slot_hold: Option<&HoldFacts>,
) -> Result<RescheduleDecision, BookingRejection> {
    let facts = current
        .filter(|f| req.actor.may_act_on(&f.appointment))
        .ok_or(BookingRejection::AppointmentNotFound)?;
    let a = &facts.appointment;
    if a.status != AppointmentStatus::Booked {
        return Err(BookingRejection::NotActive);
    }
    if a.slot_id == req.new_slot_id {
        return Err(BookingRejection::SameSlot);
    }
    let new = new_slot
        .filter(|s| s.id == req.new_slot_id)
        .ok_or(BookingRejection::SlotNotFound)?;
    let policy = facts.policy(req.policy);
    check_patient_may_change(req.actor, a.starts_at, req.now, &policy)?;
    // Past a deadline the clinic set (patients may no longer), an admin says why.
    if req.actor == Actor::Admin
        && policy.change_deadline > chrono::Duration::zero()
        && a.starts_at - req.now < policy.change_deadline
        && req.reason.is_none()
    {
        return Err(BookingRejection::ReasonRequired);
    }
    if new.doctor_id != a.doctor_id {
        return Err(BookingRejection::DifferentDoctor);
    }
    check_bookable(new, facts.doctor_status, req.now, &policy)?;
    let hold = check_hold(new.id, new_slot_hold, a.patient_id, req.now)?;
    let now = as_stored(req.now);
    let version = facts.version + 1;
    let appointment = Appointment {
        slot_id: new.id,
        starts_at: new.starts_at,
        ends_at: new.ends_at,
        updated_at: now,
        ..a.clone()
    };
    let event = AppointmentEvent::Rescheduled(Reschedule {
        appointment: snapshot(
            &appointment,
            version,
            &facts.patient,
            &facts.doctor,
            &facts.clinic,
            &req.links,
        ),
        previous: PreviousSlot {
            slot_id: a.slot_id.0,
            starts_at: a.starts_at,
            ends_at: a.ends_at,
        },
    });
    Ok(RescheduleDecision {
        reminders: req
            .reminders
            .schedule(appointment.starts_at, facts.time_zone, now),
        event: EventEnvelope::new(now, event),
        audit: AuditEntry::new("appointment.rescheduled", "appointment", a.id)
            .field("slot_id", json(&a.slot_id), json(&new.id))
            .field("starts_at", json(&a.starts_at), json(&new.starts_at))
            .field("version", json(&facts.version), json(&version))
            .field("reason", None, json(&req.reason)),
        freed: (a.slot_id, SlotStatus::Available),
        taken: (new.id, SlotStatus::Booked),
        appointment,
        version,
        hold,
    })
}

#[derive(Debug, Clone)]
pub struct CancelRequest {
    pub appointment_id: AppointmentId,
    /// A patient may cancel only their own appointment, and only before it starts.
    pub actor: Actor,
    pub reason: Option<String>,
    pub now: DateTime<Utc>,
    pub policy: BookingPolicy,
    pub links: ManageLinks,
}

/// A cancellation to write: the appointment updated, its slot freed when still ahead,
/// its pending reminders dropped, and the event.
#[derive(Debug, Clone)]
pub struct CancelDecision {
    pub appointment: Appointment,
    pub version: i32,
    /// A future slot is open again; a past one stays as it was.
    pub freed: Option<(SlotId, SlotStatus)>,
    pub event: EventEnvelope,
    pub audit: AuditEntry,
}

/// `current`: the appointment and its slot, both locked.
pub fn decide_cancel(
    req: &CancelRequest,
    current: Option<&AppointmentFacts>,
) -> Result<CancelDecision, BookingRejection> {
    let facts = current
        .filter(|f| req.actor.may_act_on(&f.appointment))
        .ok_or(BookingRejection::AppointmentNotFound)?;
    let a = &facts.appointment;
    if a.status != AppointmentStatus::Booked {
        return Err(BookingRejection::NotActive);
    }
    check_patient_may_change(req.actor, a.starts_at, req.now, &facts.policy(req.policy))?;
    let now = as_stored(req.now);
    let version = facts.version + 1;
    let appointment = Appointment {
        status: AppointmentStatus::Cancelled,
        cancel_reason: req.reason.clone(),
        cancelled_at: Some(now),
        updated_at: now,
        ..a.clone()
    };
    let event = AppointmentEvent::Cancelled(Cancellation {
        appointment: snapshot(
            &appointment,
            version,
            &facts.patient,
            &facts.doctor,
            &facts.clinic,
            &req.links,
        ),
        cancelled_by: match req.actor {
            Actor::Patient(_) => CancelledBy::Patient,
            Actor::Admin => CancelledBy::Admin,
        },
        cancel_reason: req.reason.clone(),
    });
    let cancelled_by = match req.actor {
        Actor::Patient(_) => "patient",
        Actor::Admin => "admin",
    };
    Ok(CancelDecision {
        audit: AuditEntry::new("appointment.cancelled", "appointment", a.id)
            .field("status", json(&a.status.as_str()), json(&"cancelled"))
            .field("cancelled_by", None, json(&cancelled_by))
            .field("cancel_reason", None, json(&req.reason))
            .field("version", json(&facts.version), json(&version)),
        freed: (a.starts_at > req.now).then_some((a.slot_id, SlotStatus::Available)),
        event: EventEnvelope::new(now, event),
        appointment,
        version,
    })
}

/// Whether a started visit was attended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attendance {
    Attended,
    NoShow,
}

impl Attendance {
    pub fn as_str(self) -> &'static str {
        match self {
            Attendance::Attended => "attended",
            Attendance::NoShow => "no_show",
        }
    }

    pub fn status(self) -> AppointmentStatus {
        match self {
            Attendance::Attended => AppointmentStatus::Completed,
            Attendance::NoShow => AppointmentStatus::NoShow,
        }
    }
}

impl std::str::FromStr for Attendance {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "attended" => Ok(Attendance::Attended),
            "no_show" => Ok(Attendance::NoShow),
            _ => Err("must be one of: attended, no_show".into()),
        }
    }
}

/// Who records attendance: the appointment's doctor (their user account) or an admin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recorder {
    Doctor {
        user: UserId,
        doctor: super::DoctorId,
    },
    Admin(UserId),
}

#[derive(Debug, Clone)]
pub struct AttendanceRequest {
    pub appointment_id: AppointmentId,
    pub recorder: Recorder,
    pub outcome: Attendance,
    pub now: DateTime<Utc>,
    pub policy: BookingPolicy,
    pub links: ManageLinks,
}

/// The outcome to write: the appointment's status, who recorded it, and (no-shows) the
/// event the clinic's e-mail setting rides on.
#[derive(Debug, Clone)]
pub struct AttendanceDecision {
    pub appointment: Appointment,
    pub version: i32,
    pub marked_by: UserId,
    pub event: Option<EventEnvelope>,
    pub audit: AuditEntry,
}

/// `current`: the appointment, locked. Once it has started, its doctor or an admin
/// records it attended or missed, once; another doctor gets "not found".
pub fn decide_attendance(
    req: &AttendanceRequest,
    current: Option<&AppointmentFacts>,
) -> Result<AttendanceDecision, BookingRejection> {
    let facts = current
        .filter(|f| match req.recorder {
            Recorder::Doctor { doctor, .. } => f.appointment.doctor_id == doctor,
            Recorder::Admin(_) => true,
        })
        .ok_or(BookingRejection::AppointmentNotFound)?;
    let a = &facts.appointment;
    match a.status {
        AppointmentStatus::Booked => {}
        AppointmentStatus::Completed | AppointmentStatus::NoShow => {
            return Err(BookingRejection::AttendanceRecorded)
        }
        AppointmentStatus::Cancelled => return Err(BookingRejection::NotActive),
    }
    if a.starts_at > req.now {
        return Err(BookingRejection::NotStarted);
    }
    let now = as_stored(req.now);
    let version = facts.version + 1;
    let appointment = Appointment {
        status: req.outcome.status(),
        updated_at: now,
        ..a.clone()
    };
    let (marked_by, by) = match req.recorder {
        Recorder::Doctor { user, .. } => (user, "doctor"),
        Recorder::Admin(user) => (user, "admin"),
    };
    let event = (req.outcome == Attendance::NoShow).then(|| {
        EventEnvelope::new(
            now,
            AppointmentEvent::NoShow(NoShow {
                appointment: snapshot(
                    &appointment,
                    version,
                    &facts.patient,
                    &facts.doctor,
                    &facts.clinic,
                    &req.links,
                ),
                email_patient: facts.policy(req.policy).no_show_email,
            }),
        )
    });
    Ok(AttendanceDecision {
        audit: AuditEntry::new("appointment.attendance", "appointment", a.id)
            .field(
                "status",
                json(&a.status.as_str()),
                json(&appointment.status.as_str()),
            )
            .field("recorded_by", None, json(&by))
            .field("version", json(&facts.version), json(&version)),
        appointment,
        version,
        marked_by,
        event,
    })
}

/// What the appointment's events say about it.
fn snapshot(
    a: &Appointment,
    version: i32,
    patient: &PatientInfo,
    doctor: &DoctorInfo,
    clinic: &ClinicInfo,
    links: &ManageLinks,
) -> AppointmentSnapshot {
    AppointmentSnapshot {
        appointment_id: a.id.0,
        slot_id: a.slot_id.0,
        starts_at: a.starts_at,
        ends_at: a.ends_at,
        reason: a.reason.clone(),
        patient: patient.clone(),
        doctor: doctor.clone(),
        clinic: clinic.clone(),
        version,
        manage_url: Some(links.url(a.id, a.patient_id)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{ClinicId, DoctorId};
    use chrono::{Duration, TimeZone};
    use medbook_shared::events::Event;
    use uuid::Uuid;

    const POLICY: BookingPolicy = BookingPolicy {
        min_notice: Duration::hours(2),
        horizon: Duration::days(90),
        max_active_per_patient: 2,
        change_deadline: Duration::zero(),
        no_show_limit: None,
        no_show_window: Duration::days(180),
        no_show_email: false,
    };

    fn links() -> ManageLinks {
        ManageLinks::new(b"test secret", "https://clinic.example/manage")
    }

    fn now() -> DateTime<Utc> {
        // Sub-microsecond digits on purpose: decisions store to the microsecond.
        Utc.with_ymd_and_hms(2026, 12, 1, 9, 0, 0).unwrap() + Duration::nanoseconds(123_456_789)
    }

    fn patient(upcoming: i64) -> PatientFacts {
        PatientFacts {
            patient: PatientInfo {
                id: Uuid::from_u128(1),
                email: "ann@example.com".into(),
                full_name: "Ann Patient".into(),
            },
            email_verified: true,
            upcoming,
            no_shows: 0,
            earlier: None,
        }
    }

    fn clinic() -> ClinicInfo {
        ClinicInfo {
            id: Uuid::from_u128(3),
            name: "North".into(),
            city: "Berlin".into(),
            address: "Main St 1".into(),
            time_zone: "Europe/Berlin".into(),
        }
    }

    fn doctor() -> DoctorInfo {
        DoctorInfo {
            id: Uuid::from_u128(2),
            full_name: "Dr. Anna Adams".into(),
            specialty: "cardiology".into(),
        }
    }

    fn slot(id: u128, starts_in: Duration, status: SlotStatus) -> Slot {
        let starts_at = Utc.with_ymd_and_hms(2026, 12, 1, 9, 0, 0).unwrap() + starts_in;
        Slot {
            id: SlotId(Uuid::from_u128(id)),
            doctor_id: DoctorId(doctor().id),
            starts_at,
            ends_at: starts_at + Duration::minutes(30),
            status,
        }
    }

    fn slot_facts(s: Slot, doctor_status: DoctorStatus) -> SlotFacts {
        SlotFacts {
            slot: s,
            doctor: doctor(),
            doctor_status,
            clinic: clinic(),
            time_zone: chrono_tz::Europe::Berlin,
            clinic_policy: ClinicPolicy::default(),
            doctor_policy: DoctorPolicy::default(),
            hold: None,
        }
    }

    fn plan() -> ReminderPlan {
        ReminderPlan::parse(&["24h", "2h"]).unwrap()
    }

    fn request(idempotency: Option<(&str, &str)>) -> BookingRequest {
        BookingRequest {
            appointment_id: AppointmentId(Uuid::from_u128(10)),
            patient_id: UserId(Uuid::from_u128(1)),
            slot_id: SlotId(Uuid::from_u128(20)),
            reason: "check-up".into(),
            idempotency: idempotency.map(|(k, h)| Idempotency {
                key: k.into(),
                request_hash: h.into(),
            }),
            now: now(),
            policy: POLICY,
            reminders: plan(),
            by_admin: false,
            links: links(),
        }
    }

    fn booked(d: Result<BookingDecision, BookingRejection>) -> NewBooking {
        match d {
            Ok(BookingDecision::Book(b)) => *b,
            other => panic!("expected a booking, got {other:?}"),
        }
    }

    #[test]
    fn a_booking_takes_the_slot_and_emits_its_event_and_reminders() {
        let s = slot_facts(
            slot(20, Duration::days(2), SlotStatus::Available),
            DoctorStatus::Active,
        );
        let b = booked(decide_booking(
            &request(Some(("k", "h"))),
            &patient(1),
            Some(&s),
        ));
        assert_eq!(b.slot_status, SlotStatus::Booked);
        assert_eq!(b.version, 1);
        assert_eq!(b.appointment.status, AppointmentStatus::Booked);
        assert_eq!(b.appointment.starts_at, s.slot.starts_at);
        assert_eq!(b.appointment.doctor_name, "Dr. Anna Adams");
        assert_eq!(
            b.appointment.created_at.timestamp_subsec_nanos(),
            123_456_000
        );
        assert_eq!(b.idempotency.as_ref().map(|i| i.key.as_str()), Some("k"));
        // Both reminders are ahead: a day and two hours before the start.
        let due: Vec<_> = b.reminders.iter().map(|r| r.offset.as_str()).collect();
        assert_eq!(due, ["24h", "2h"]);
        assert_eq!(
            b.reminders[0].due_at,
            s.slot.starts_at - Duration::hours(24)
        );
        match &b.event.event {
            Event::Appointment(AppointmentEvent::Created(snap)) => {
                assert_eq!(snap.appointment_id, b.appointment.id.0);
                assert_eq!(snap.patient.email, "ann@example.com");
                assert_eq!(snap.clinic.time_zone, "Europe/Berlin");
                assert_eq!(snap.version, 1);
            }
            other => panic!("unexpected event {other:?}"),
        }
    }

    #[test]
    fn reminders_already_past_are_not_scheduled() {
        // Starts in 10 hours: the 24 h reminder would be in the past.
        let s = slot_facts(
            slot(20, Duration::hours(10), SlotStatus::Available),
            DoctorStatus::Active,
        );
        let b = booked(decide_booking(&request(None), &patient(0), Some(&s)));
        let due: Vec<_> = b.reminders.iter().map(|r| r.offset.as_str()).collect();
        assert_eq!(due, ["2h"]);
    }

    #[test]
    fn booking_rejections_come_in_order() {
        let s = slot_facts(
            slot(20, Duration::days(2), SlotStatus::Available),
            DoctorStatus::Active,
        );
        let mut unverified = patient(0);
        unverified.email_verified = false;
        assert_eq!(
            decide_booking(&request(None), &unverified, Some(&s)).err(),
            Some(BookingRejection::EmailUnverified)
        );
        assert_eq!(
            decide_booking(&request(None), &patient(0), None).err(),
            Some(BookingRejection::SlotNotFound)
        );
        assert_eq!(
            decide_booking(&request(None), &patient(2), Some(&s)).err(),
            Some(BookingRejection::TooManyActive)
        );
        let taken = slot_facts(
            slot(20, Duration::days(2), SlotStatus::Booked),
            DoctorStatus::Active,
        );
        assert_eq!(
            decide_booking(&request(None), &patient(0), Some(&taken)).err(),
            Some(BookingRejection::SlotTaken)
        );
        let on_leave = slot_facts(
            slot(20, Duration::days(2), SlotStatus::Available),
            DoctorStatus::OnLeave,
        );
        assert_eq!(
            decide_booking(&request(None), &patient(0), Some(&on_leave)).err(),
            Some(BookingRejection::DoctorUnavailable)
        );
    }

    #[test]
    fn an_earlier_key_replays_or_is_refused() {
        let mut p = patient(2);
        p.earlier = Some(EarlierBooking {
            request_hash: "h".into(),
            appointment_id: AppointmentId(Uuid::from_u128(99)),
        });
        // A replay wins over the cap and the slot (now taken by the first request).
        assert!(matches!(
            decide_booking(&request(Some(("k", "h"))), &p, None),
            Ok(BookingDecision::Replay(id)) if id == AppointmentId(Uuid::from_u128(99))
        ));
        assert_eq!(
            decide_booking(&request(Some(("k", "other"))), &p, None).err(),
            Some(BookingRejection::IdempotencyKeyReused)
        );
    }

    fn current(starts_in: Duration, status: AppointmentStatus) -> AppointmentFacts {
        let s = slot(20, starts_in, SlotStatus::Booked);
        AppointmentFacts {
            appointment: Appointment {
                id: AppointmentId(Uuid::from_u128(10)),
                slot_id: s.id,
                patient_id: UserId(Uuid::from_u128(1)),
                doctor_id: s.doctor_id,
                doctor_name: "Dr. Anna Adams".into(),
                clinic_id: ClinicId(clinic().id),
                clinic_name: "North".into(),
                time_zone: "Europe/Berlin".into(),
                starts_at: s.starts_at,
                ends_at: s.ends_at,
                status,
                reason: "check-up".into(),
                cancel_reason: None,
                cancelled_at: None,
                created_at: now() - Duration::days(1),
                updated_at: now() - Duration::days(1),
            },
            version: 3,
            patient: patient(0).patient,
            doctor: doctor(),
            doctor_status: DoctorStatus::Active,
            clinic: clinic(),
            time_zone: chrono_tz::Europe::Berlin,
            clinic_policy: ClinicPolicy::default(),
            doctor_policy: DoctorPolicy::default(),
        }
    }

    fn move_to(actor: Actor, new_slot: u128) -> RescheduleRequest {
        RescheduleRequest {
            appointment_id: AppointmentId(Uuid::from_u128(10)),
            actor,
            new_slot_id: SlotId(Uuid::from_u128(new_slot)),
            now: now(),
            policy: POLICY,
            reminders: plan(),
            links: links(),
            reason: None,
        }
    }

    const OWNER: Actor = Actor::Patient(UserId(Uuid::from_u128(1)));
    const STRANGER: Actor = Actor::Patient(UserId(Uuid::from_u128(7)));

    #[test]
    fn a_move_frees_one_slot_takes_another_and_replaces_reminders() {
        let cur = current(Duration::days(2), AppointmentStatus::Booked);
        let new = slot(21, Duration::days(3), SlotStatus::Available);
        let d = decide_reschedule(&move_to(OWNER, 21), Some(&cur), Some(&new), None).unwrap();
        assert_eq!(d.freed, (cur.appointment.slot_id, SlotStatus::Available));
        assert_eq!(d.taken, (new.id, SlotStatus::Booked));
        assert_eq!(d.version, 4);
        assert_eq!(d.appointment.starts_at, new.starts_at);
        assert_eq!(d.appointment.created_at, cur.appointment.created_at);
        assert_eq!(d.reminders.len(), 2);
        assert_eq!(d.reminders[1].due_at, new.starts_at - Duration::hours(2));
        match &d.event.event {
            Event::Appointment(AppointmentEvent::Rescheduled(r)) => {
                assert_eq!(r.previous.starts_at, cur.appointment.starts_at);
                assert_eq!(r.previous.slot_id, cur.appointment.slot_id.0);
                assert_eq!(r.appointment.starts_at, new.starts_at);
                assert_eq!(r.appointment.version, 4);
            }
            other => panic!("unexpected event {other:?}"),
        }
    }

    #[test]
    fn move_rejections() {
        let cur = current(Duration::days(2), AppointmentStatus::Booked);
        let new = slot(21, Duration::days(3), SlotStatus::Available);
        let reject =
            |req: &RescheduleRequest, cur: Option<&AppointmentFacts>, new: Option<&Slot>| {
                decide_reschedule(req, cur, new, None).err()
            };
        assert_eq!(
            reject(&move_to(OWNER, 21), None, Some(&new)),
            Some(BookingRejection::AppointmentNotFound)
        );
        assert_eq!(
            reject(&move_to(STRANGER, 21), Some(&cur), Some(&new)),
            Some(BookingRejection::AppointmentNotFound)
        );
        assert_eq!(
            reject(&move_to(OWNER, 20), Some(&cur), None),
            Some(BookingRejection::SameSlot)
        );
        assert_eq!(
            reject(&move_to(OWNER, 22), Some(&cur), None),
            Some(BookingRejection::SlotNotFound)
        );
        let cancelled = current(Duration::days(2), AppointmentStatus::Cancelled);
        assert_eq!(
            reject(&move_to(OWNER, 21), Some(&cancelled), Some(&new)),
            Some(BookingRejection::NotActive)
        );
        let started = current(Duration::minutes(-5), AppointmentStatus::Booked);
        assert_eq!(
            reject(&move_to(OWNER, 21), Some(&started), Some(&new)),
            Some(BookingRejection::AlreadyStarted)
        );
        // An admin may move an appointment that has started.
        assert!(
            decide_reschedule(&move_to(Actor::Admin, 21), Some(&started), Some(&new), None).is_ok()
        );
        let mut elsewhere = new.clone();
        elsewhere.doctor_id = DoctorId(Uuid::from_u128(77));
        assert_eq!(
            reject(&move_to(OWNER, 21), Some(&cur), Some(&elsewhere)),
            Some(BookingRejection::DifferentDoctor)
        );
        let mut on_leave = cur.clone();
        on_leave.doctor_status = DoctorStatus::OnLeave;
        assert_eq!(
            reject(&move_to(OWNER, 21), Some(&on_leave), Some(&new)),
            Some(BookingRejection::DoctorUnavailable)
        );
        let taken = slot(21, Duration::days(3), SlotStatus::Booked);
        assert_eq!(
            reject(&move_to(OWNER, 21), Some(&cur), Some(&taken)),
            Some(BookingRejection::SlotTaken)
        );
    }

    fn cancel(actor: Actor) -> CancelRequest {
        CancelRequest {
            appointment_id: AppointmentId(Uuid::from_u128(10)),
            actor,
            reason: Some("ill".into()),
            now: now(),
            policy: POLICY,
            links: links(),
        }
    }

    #[test]
    fn every_event_carries_the_same_manage_link_and_the_booking_stores_its_hash() {
        let s = slot_facts(
            slot(20, Duration::days(2), SlotStatus::Available),
            DoctorStatus::Active,
        );
        let b = booked(decide_booking(&request(None), &patient(0), Some(&s)));
        let a = (b.appointment.id, b.appointment.patient_id);
        let url = links().url(a.0, a.1);
        assert_eq!(b.event.appointment().unwrap().manage_url, Some(url.clone()));
        assert_eq!(b.manage_token_hash, links().hash(a.0, a.1));
        let c = current(Duration::days(2), AppointmentStatus::Booked);
        let moved = decide_reschedule(
            &move_to(Actor::Admin, 21),
            Some(&c),
            Some(&slot(21, Duration::days(3), SlotStatus::Available)),
            None,
        )
        .unwrap();
        let cancelled = decide_cancel(&cancel(Actor::Admin), Some(&c)).unwrap();
        for e in [&moved.event, &cancelled.event] {
            assert_eq!(e.appointment().unwrap().manage_url, Some(url.clone()));
        }
    }

    #[test]
    fn a_patient_may_not_change_an_appointment_after_the_clinics_deadline() {
        let mut c = current(Duration::hours(20), AppointmentStatus::Booked);
        c.clinic_policy.change_deadline_minutes = Some(24 * 60);
        let patient = Actor::Patient(UserId(Uuid::from_u128(1)));
        assert_eq!(
            decide_cancel(&cancel(patient), Some(&c)).unwrap_err(),
            BookingRejection::ChangeDeadlinePassed
        );
        assert_eq!(
            decide_reschedule(
                &move_to(patient, 21),
                Some(&c),
                Some(&slot(21, Duration::days(3), SlotStatus::Available)),
                None,
            )
            .unwrap_err(),
            BookingRejection::ChangeDeadlinePassed
        );
        assert!(decide_cancel(&cancel(Actor::Admin), Some(&c)).is_ok());
        // An admin moving it past the deadline says why.
        let new = slot(21, Duration::days(3), SlotStatus::Available);
        let mut by_admin = move_to(Actor::Admin, 21);
        assert_eq!(
            decide_reschedule(&by_admin, Some(&c), Some(&new), None).unwrap_err(),
            BookingRejection::ReasonRequired
        );
        by_admin.reason = Some("the doctor is ill".into());
        assert!(decide_reschedule(&by_admin, Some(&c), Some(&new), None).is_ok());
        // The doctor's override wins over the clinic's deadline.
        c.doctor_policy.change_deadline_minutes = Some(60);
        assert!(decide_cancel(&cancel(patient), Some(&c)).is_ok());
    }

    #[test]
    fn a_held_slot_is_only_the_holders_until_the_hold_expires() {
        let mut s = slot_facts(
            slot(20, Duration::days(2), SlotStatus::Available),
            DoctorStatus::Active,
        );
        let entry = Uuid::from_u128(77);
        s.hold = Some(HoldFacts {
            entry_id: entry,
            patient_id: UserId(Uuid::from_u128(99)),
            expires_at: now() + Duration::minutes(5),
        });
        assert_eq!(
            decide_booking(&request(None), &patient(0), Some(&s)).unwrap_err(),
            BookingRejection::SlotHeld
        );
        s.hold = s.hold.map(|h| HoldFacts {
            patient_id: UserId(Uuid::from_u128(1)),
            ..h
        });
        let b = booked(decide_booking(&request(None), &patient(0), Some(&s)));
        assert_eq!(
            b.hold,
            Some(HoldRelease {
                slot_id: s.slot.id,
                entry_id: entry,
                used: true
            })
        );
        s.hold = Some(HoldFacts {
            entry_id: entry,
            patient_id: UserId(Uuid::from_u128(99)),
            expires_at: now(),
        });
        let b = booked(decide_booking(&request(None), &patient(0), Some(&s)));
        assert_eq!(b.hold.map(|h| h.used), Some(false), "expired: released");
    }

    #[test]
    fn too_many_no_shows_stop_self_service_but_not_an_admin() {
        let mut s = slot_facts(
            slot(20, Duration::days(2), SlotStatus::Available),
            DoctorStatus::Active,
        );
        s.clinic_policy.no_show_limit = Some(2);
        let mut p = patient(0);
        p.no_shows = 2;
        assert_eq!(
            decide_booking(&request(None), &p, Some(&s)).unwrap_err(),
            BookingRejection::TooManyNoShows
        );
        let mut by_admin = request(None);
        by_admin.by_admin = true;
        assert!(decide_booking(&by_admin, &p, Some(&s)).is_ok());
        p.no_shows = 1;
        assert!(decide_booking(&request(None), &p, Some(&s)).is_ok());
        // The clinic's cap replaces the default.
        s.clinic_policy.max_active_per_patient = Some(1);
        assert_eq!(
            decide_booking(&request(None), &patient(1), Some(&s)).unwrap_err(),
            BookingRejection::TooManyActive
        );
    }

    fn attendance(recorder: Recorder, outcome: Attendance, at: DateTime<Utc>) -> AttendanceRequest {
        AttendanceRequest {
            appointment_id: AppointmentId(Uuid::from_u128(10)),
            recorder,
            outcome,
            now: at,
            policy: POLICY,
            links: links(),
        }
    }

    #[test]
    fn attendance_is_recorded_once_after_the_start_by_the_doctor_or_an_admin() {
        let mut c = current(Duration::hours(1), AppointmentStatus::Booked);
        let own = Recorder::Doctor {
            user: UserId(Uuid::from_u128(50)),
            doctor: c.appointment.doctor_id,
        };
        let later = now() + Duration::hours(2);
        assert_eq!(
            decide_attendance(&attendance(own, Attendance::NoShow, now()), Some(&c)).unwrap_err(),
            BookingRejection::NotStarted
        );
        let other = Recorder::Doctor {
            user: UserId(Uuid::from_u128(51)),
            doctor: crate::domain::DoctorId(Uuid::from_u128(52)),
        };
        assert_eq!(
            decide_attendance(&attendance(other, Attendance::NoShow, later), Some(&c)).unwrap_err(),
            BookingRejection::AppointmentNotFound
        );
        let d = decide_attendance(&attendance(own, Attendance::NoShow, later), Some(&c)).unwrap();
        assert_eq!(d.appointment.status, AppointmentStatus::NoShow);
        assert_eq!(d.version, 4);
        assert_eq!(d.marked_by, UserId(Uuid::from_u128(50)));
        let Some(Event::Appointment(AppointmentEvent::NoShow(n))) = d.event.map(|e| e.event) else {
            panic!("a no-show is an event")
        };
        assert!(!n.email_patient, "no e-mail unless the clinic turns it on");
        c.clinic_policy.no_show_email = true;
        let d = decide_attendance(
            &attendance(
                Recorder::Admin(UserId(Uuid::from_u128(60))),
                Attendance::NoShow,
                later,
            ),
            Some(&c),
        )
        .unwrap();
        let Some(Event::Appointment(AppointmentEvent::NoShow(n))) = d.event.map(|e| e.event) else {
            panic!("a no-show is an event")
        };
        assert!(n.email_patient);
        let attended =
            decide_attendance(&attendance(own, Attendance::Attended, later), Some(&c)).unwrap();
        assert_eq!(attended.appointment.status, AppointmentStatus::Completed);
        assert!(attended.event.is_none());
        c.appointment.status = AppointmentStatus::NoShow;
        assert_eq!(
            decide_attendance(&attendance(own, Attendance::Attended, later), Some(&c)).unwrap_err(),
            BookingRejection::AttendanceRecorded
        );
        c.appointment.status = AppointmentStatus::Cancelled;
        assert_eq!(
            decide_attendance(&attendance(own, Attendance::Attended, later), Some(&c)).unwrap_err(),
            BookingRejection::NotActive
        );
    }

    #[test]
    fn a_cancellation_frees_a_future_slot_and_says_who_cancelled() {
        let cur = current(Duration::days(2), AppointmentStatus::Booked);
        let d = decide_cancel(&cancel(OWNER), Some(&cur)).unwrap();
        assert_eq!(d.appointment.status, AppointmentStatus::Cancelled);
        assert_eq!(d.appointment.cancel_reason.as_deref(), Some("ill"));
        assert_eq!(d.appointment.cancelled_at, Some(as_stored(now())));
        assert_eq!(
            d.freed,
            Some((cur.appointment.slot_id, SlotStatus::Available))
        );
        assert_eq!(d.version, 4);
        match &d.event.event {
            Event::Appointment(AppointmentEvent::Cancelled(c)) => {
                assert_eq!(c.cancelled_by, CancelledBy::Patient);
                assert_eq!(c.appointment.version, 4);
            }
            other => panic!("unexpected event {other:?}"),
        }
        // An admin cancelling a visit that has started leaves the slot as it was.
        let started = current(Duration::minutes(-5), AppointmentStatus::Booked);
        let d = decide_cancel(&cancel(Actor::Admin), Some(&started)).unwrap();
        assert_eq!(d.freed, None);
        assert!(matches!(
            &d.event.event,
            Event::Appointment(AppointmentEvent::Cancelled(c)) if c.cancelled_by == CancelledBy::Admin
        ));
    }

    #[test]
    fn cancel_rejections() {
        let cur = current(Duration::days(2), AppointmentStatus::Booked);
        assert_eq!(
            decide_cancel(&cancel(STRANGER), Some(&cur)).err(),
            Some(BookingRejection::AppointmentNotFound)
        );
        assert_eq!(
            decide_cancel(&cancel(OWNER), None).err(),
            Some(BookingRejection::AppointmentNotFound)
        );
        let done = current(Duration::days(2), AppointmentStatus::Cancelled);
        assert_eq!(
            decide_cancel(&cancel(OWNER), Some(&done)).err(),
            Some(BookingRejection::NotActive)
        );
        let started = current(Duration::minutes(-5), AppointmentStatus::Booked);
        assert_eq!(
            decide_cancel(&cancel(OWNER), Some(&started)).err(),
            Some(BookingRejection::AlreadyStarted)
        );
    }
}
