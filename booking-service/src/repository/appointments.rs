//! `AppointmentRepository`: booking, rescheduling and cancelling are each one
//! transaction that locks the rows it changes (slots in id order, so two transactions
//! never wait on each other in a cycle) and keeps `slots.status` in step with the
//! appointments. The partial unique index `appointments_one_active_per_slot` is the
//! last line of defence: whatever happens above, a slot never has two active bookings.

use super::db::{map_err, Db};
use super::outbox;
use super::reminders;
use super::schema::{appointments, booking_idempotency, clinics, doctors, slots, users};
use super::slots::{lock_slot, SlotRow};
use crate::domain::booking::{
    check_bookable, check_patient, Appointment, AppointmentStatus, BookingRejection, DoctorStatus,
    Slot, SlotStatus,
};
use crate::service::booking_ports::{
    AppointmentFilter, AppointmentRepository, BookCommand, Booked, CancelCommand, RescheduleCommand,
};
use crate::service::outbox::OutboxSignal;
use crate::service::ports::{Page, PageRequest, RepoError};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use medbook_shared::events::{
    AppointmentEvent, Cancellation, CancelledBy, EventEnvelope, PreviousSlot, Reschedule,
};
use prometheus::IntCounter;
use uuid::Uuid;

type AppointmentTuple = (
    (
        Uuid,
        Uuid,
        Uuid,
        Uuid,
        String,
        String,
        Option<String>,
        Option<DateTime<Utc>>,
        DateTime<Utc>,
        DateTime<Utc>,
    ),
    (DateTime<Utc>, DateTime<Utc>),
    String,
    (Uuid, String, String),
);

fn to_appointment(t: AppointmentTuple) -> Result<Appointment, RepoError> {
    let (
        (
            id,
            slot_id,
            patient_id,
            doctor_id,
            status,
            reason,
            cancel_reason,
            cancelled_at,
            created_at,
            updated_at,
        ),
        (starts_at, ends_at),
        doctor_name,
        (clinic_id, clinic_name, time_zone),
    ) = t;
    Ok(Appointment {
        id,
        slot_id,
        patient_id,
        doctor_id,
        doctor_name,
        clinic_id,
        clinic_name,
        time_zone,
        starts_at,
        ends_at,
        status: status
            .parse::<AppointmentStatus>()
            .map_err(|e| RepoError::Internal(anyhow::anyhow!(e)))?,
        reason,
        cancel_reason,
        cancelled_at,
        created_at,
        updated_at,
    })
}

macro_rules! appointment_query {
    () => {
        appointments::table
            .inner_join(slots::table)
            .inner_join(doctors::table.inner_join(clinics::table))
            .select((
                (
                    appointments::id,
                    appointments::slot_id,
                    appointments::patient_id,
                    appointments::doctor_id,
                    appointments::status,
                    appointments::reason,
                    appointments::cancel_reason,
                    appointments::cancelled_at,
                    appointments::created_at,
                    appointments::updated_at,
                ),
                (slots::starts_at, slots::ends_at),
                doctors::full_name,
                (clinics::id, clinics::name, clinics::time_zone),
            ))
    };
}

fn load(conn: &mut PgConnection, id: Uuid) -> Result<Option<Appointment>, RepoError> {
    appointment_query!()
        .filter(appointments::id.eq(id))
        .first::<AppointmentTuple>(conn)
        .optional()
        .map_err(map_err)?
        .map(to_appointment)
        .transpose()
}

fn must_load(conn: &mut PgConnection, id: Uuid) -> Result<Appointment, RepoError> {
    load(conn, id)?.ok_or_else(|| RepoError::Internal(anyhow::anyhow!("appointment {id} vanished")))
}

fn doctor_status(conn: &mut PgConnection, doctor_id: Uuid) -> Result<DoctorStatus, RepoError> {
    let s: String = doctors::table
        .find(doctor_id)
        .select(doctors::status)
        .first(conn)
        .map_err(map_err)?;
    s.parse()
        .map_err(|e: String| RepoError::Internal(anyhow::anyhow!(e)))
}

fn set_slot_status(conn: &mut PgConnection, id: Uuid, status: SlotStatus) -> Result<(), RepoError> {
    diesel::update(slots::table.find(id))
        .set(slots::status.eq(status.as_str()))
        .execute(conn)
        .map(|_| ())
        .map_err(map_err)
}

/// Locks the appointment row; checks ownership when a patient acts.
fn lock_appointment(
    conn: &mut PgConnection,
    id: Uuid,
    patient_id: Option<Uuid>,
) -> Result<Option<(Uuid, Uuid, String)>, RepoError> {
    let row: Option<(Uuid, Uuid, String)> = appointments::table
        .find(id)
        .select((
            appointments::slot_id,
            appointments::patient_id,
            appointments::status,
        ))
        .for_update()
        .first(conn)
        .optional()
        .map_err(map_err)?;
    Ok(row.filter(|(_, owner, _)| patient_id.is_none_or(|p| p == *owner)))
}

/// The booking, and how many reminders it scheduled.
fn book_in_tx(
    conn: &mut PgConnection,
    cmd: &BookCommand,
) -> Result<Result<(Booked, usize), BookingRejection>, RepoError> {
    // Serialise each patient's bookings, so the cap on active appointments holds.
    let verified_at: Option<DateTime<Utc>> = users::table
        .find(cmd.patient_id)
        .select(users::email_verified_at)
        .for_update()
        .first(conn)
        .map_err(map_err)?;
    if let Err(r) = check_patient(verified_at.is_some()) {
        return Ok(Err(r));
    }
    if let Some((key, hash)) = &cmd.idempotency {
        let earlier: Option<(String, Uuid)> = booking_idempotency::table
            .find((cmd.patient_id, key))
            .select((
                booking_idempotency::request_hash,
                booking_idempotency::appointment_id,
            ))
            .first(conn)
            .optional()
            .map_err(map_err)?;
        if let Some((earlier_hash, appointment_id)) = earlier {
            if &earlier_hash != hash {
                return Ok(Err(BookingRejection::IdempotencyKeyReused));
            }
            return Ok(Ok((
                Booked {
                    appointment: must_load(conn, appointment_id)?,
                    replayed: true,
                },
                0,
            )));
        }
    }
    let Some(slot) = lock_slot(conn, cmd.slot_id)? else {
        return Ok(Err(BookingRejection::SlotNotFound));
    };
    let status = doctor_status(conn, slot.doctor_id)?;
    if let Err(r) = check_bookable(&slot, status, cmd.now, &cmd.policy) {
        return Ok(Err(r));
    }
    let active: i64 = appointments::table
        .inner_join(slots::table)
        .filter(appointments::patient_id.eq(cmd.patient_id))
        .filter(appointments::status.eq(AppointmentStatus::Booked.as_str()))
        .filter(slots::starts_at.gt(cmd.now))
        .count()
        .get_result(conn)
        .map_err(map_err)?;
    if active >= cmd.policy.max_active_per_patient {
        return Ok(Err(BookingRejection::TooManyActive));
    }
    set_slot_status(conn, slot.id, SlotStatus::Booked)?;
    diesel::insert_into(appointments::table)
        .values((
            appointments::id.eq(cmd.appointment_id),
            appointments::slot_id.eq(slot.id),
            appointments::patient_id.eq(cmd.patient_id),
            appointments::doctor_id.eq(slot.doctor_id),
            appointments::status.eq(AppointmentStatus::Booked.as_str()),
            appointments::reason.eq(&cmd.reason),
            appointments::created_at.eq(cmd.now),
            appointments::updated_at.eq(cmd.now),
        ))
        .execute(conn)
        .map_err(map_err)?;
    if let Some((key, hash)) = &cmd.idempotency {
        diesel::insert_into(booking_idempotency::table)
            .values((
                booking_idempotency::patient_id.eq(cmd.patient_id),
                booking_idempotency::key.eq(key),
                booking_idempotency::request_hash.eq(hash),
                booking_idempotency::appointment_id.eq(cmd.appointment_id),
            ))
            .execute(conn)
            .map_err(map_err)?;
    }
    let snapshot = outbox::snapshot(conn, cmd.appointment_id)?;
    let scheduled = reminders::schedule(conn, &snapshot, &cmd.reminders, cmd.now)?;
    outbox::enqueue(
        conn,
        &EventEnvelope::new(cmd.now, AppointmentEvent::Created(snapshot)),
    )?;
    Ok(Ok((
        Booked {
            appointment: must_load(conn, cmd.appointment_id)?,
            replayed: false,
        },
        scheduled,
    )))
}

/// The partial unique index caught a second active appointment on a slot (the row
/// locks make this unreachable, but the database has the last word). Mapped after the
/// transaction has rolled back, never inside it.
fn slot_taken_on_unique<T>(e: RepoError) -> Result<Result<T, BookingRejection>, RepoError> {
    match e {
        RepoError::UniqueViolation(c) if c == "appointments_one_active_per_slot" => {
            Ok(Err(BookingRejection::SlotTaken))
        }
        other => Err(other),
    }
}

pub struct PgAppointments {
    db: Db,
    /// Woken after a committed change, whose event is then in the outbox.
    signal: OutboxSignal,
    /// Reminders written by committed bookings and reschedules.
    reminders_scheduled: IntCounter,
}

impl PgAppointments {
    pub fn new(db: Db, signal: OutboxSignal, reminders_scheduled: IntCounter) -> Self {
        Self {
            db,
            signal,
            reminders_scheduled,
        }
    }

    /// After a committed change (the `usize`: reminders it wrote): wakes the relay, whose
    /// event is now in the outbox, and counts the reminders.
    fn committed<T>(
        &self,
        result: Result<(T, usize), BookingRejection>,
    ) -> Result<T, BookingRejection> {
        result.map(|(value, scheduled)| {
            self.signal.notify();
            self.reminders_scheduled.inc_by(scheduled as u64);
            value
        })
    }
}

#[async_trait]
impl AppointmentRepository for PgAppointments {
    async fn book(&self, cmd: BookCommand) -> Result<Result<Booked, BookingRejection>, RepoError> {
        self.db
            .transaction(move |conn| book_in_tx(conn, &cmd))
            .await
            .or_else(slot_taken_on_unique)
            .map(|r| self.committed(r))
    }

    async fn reschedule(
        &self,
        cmd: RescheduleCommand,
    ) -> Result<Result<Appointment, BookingRejection>, RepoError> {
        self.db
            .transaction(move |conn| {
                let Some((old_slot_id, _, status)) =
                    lock_appointment(conn, cmd.appointment_id, cmd.patient_id)?
                else {
                    return Ok(Err(BookingRejection::AppointmentNotFound));
                };
                if status != AppointmentStatus::Booked.as_str() {
                    return Ok(Err(BookingRejection::NotActive));
                }
                if old_slot_id == cmd.new_slot_id {
                    return Ok(Err(BookingRejection::SameSlot));
                }
                let mut ids = [old_slot_id, cmd.new_slot_id];
                ids.sort();
                let locked: Vec<Slot> = slots::table
                    .filter(slots::id.eq_any(ids))
                    .order(slots::id.asc())
                    .select(SlotRow::as_select())
                    .for_update()
                    .load(conn)
                    .map_err(map_err)?
                    .into_iter()
                    .map(Slot::try_from)
                    .collect::<Result<_, _>>()?;
                let old = locked.iter().find(|s| s.id == old_slot_id);
                let Some(new) = locked.iter().find(|s| s.id == cmd.new_slot_id) else {
                    return Ok(Err(BookingRejection::SlotNotFound));
                };
                let Some(old) = old else {
                    return Err(RepoError::Internal(anyhow::anyhow!(
                        "slot of appointment missing"
                    )));
                };
                if cmd.patient_id.is_some() && old.starts_at <= cmd.now {
                    return Ok(Err(BookingRejection::AlreadyStarted));
                }
                if new.doctor_id != old.doctor_id {
                    return Ok(Err(BookingRejection::DifferentDoctor));
                }
                let status = doctor_status(conn, new.doctor_id)?;
                if let Err(r) = check_bookable(new, status, cmd.now, &cmd.policy) {
                    return Ok(Err(r));
                }
                set_slot_status(conn, old.id, SlotStatus::Available)?;
                set_slot_status(conn, new.id, SlotStatus::Booked)?;
                diesel::update(appointments::table.find(cmd.appointment_id))
                    .set((
                        appointments::slot_id.eq(new.id),
                        appointments::updated_at.eq(cmd.now),
                        appointments::version.eq(appointments::version + 1),
                    ))
                    .execute(conn)
                    .map_err(map_err)?;
                let snapshot = outbox::snapshot(conn, cmd.appointment_id)?;
                // The old time's reminders go; the new time's come.
                reminders::drop_pending(conn, cmd.appointment_id)?;
                let scheduled = reminders::schedule(conn, &snapshot, &cmd.reminders, cmd.now)?;
                let event = AppointmentEvent::Rescheduled(Reschedule {
                    appointment: snapshot,
                    previous: PreviousSlot {
                        slot_id: old.id,
                        starts_at: old.starts_at,
                        ends_at: old.ends_at,
                    },
                });
                outbox::enqueue(conn, &EventEnvelope::new(cmd.now, event))?;
                Ok(Ok((must_load(conn, cmd.appointment_id)?, scheduled)))
            })
            .await
            .or_else(slot_taken_on_unique)
            .map(|r| self.committed(r))
    }

    async fn cancel(
        &self,
        cmd: CancelCommand,
    ) -> Result<Result<Appointment, BookingRejection>, RepoError> {
        self.db
            .transaction(move |conn| {
                let Some((slot_id, _, status)) =
                    lock_appointment(conn, cmd.appointment_id, cmd.patient_id)?
                else {
                    return Ok(Err(BookingRejection::AppointmentNotFound));
                };
                if status != AppointmentStatus::Booked.as_str() {
                    return Ok(Err(BookingRejection::NotActive));
                }
                let Some(slot) = lock_slot(conn, slot_id)? else {
                    return Err(RepoError::Internal(anyhow::anyhow!(
                        "slot of appointment missing"
                    )));
                };
                if cmd.patient_id.is_some() && slot.starts_at <= cmd.now {
                    return Ok(Err(BookingRejection::AlreadyStarted));
                }
                diesel::update(appointments::table.find(cmd.appointment_id))
                    .set((
                        appointments::status.eq(AppointmentStatus::Cancelled.as_str()),
                        appointments::cancel_reason.eq(&cmd.reason),
                        appointments::cancelled_at.eq(cmd.now),
                        appointments::updated_at.eq(cmd.now),
                        appointments::version.eq(appointments::version + 1),
                    ))
                    .execute(conn)
                    .map_err(map_err)?;
                // A cancelled past slot stays as it was; a future one is free again.
                if slot.starts_at > cmd.now {
                    set_slot_status(conn, slot.id, SlotStatus::Available)?;
                }
                reminders::drop_pending(conn, cmd.appointment_id)?;
                let event = AppointmentEvent::Cancelled(Cancellation {
                    appointment: outbox::snapshot(conn, cmd.appointment_id)?,
                    cancelled_by: match cmd.patient_id {
                        Some(_) => CancelledBy::Patient,
                        None => CancelledBy::Admin,
                    },
                    cancel_reason: cmd.reason.clone(),
                });
                outbox::enqueue(conn, &EventEnvelope::new(cmd.now, event))?;
                Ok(Ok((must_load(conn, cmd.appointment_id)?, 0)))
            })
            .await
            .map(|r| self.committed(r))
    }

    async fn get(&self, id: Uuid) -> Result<Option<Appointment>, RepoError> {
        self.db.run(move |conn| load(conn, id)).await
    }

    async fn list(
        &self,
        f: AppointmentFilter,
        page: PageRequest,
    ) -> Result<Page<Appointment>, RepoError> {
        self.db
            .run(move |conn| {
                macro_rules! filtered {
                    () => {{
                        let mut q = appointment_query!().into_boxed();
                        if let Some(p) = f.patient_id {
                            q = q.filter(appointments::patient_id.eq(p));
                        }
                        if let Some(d) = f.doctor_id {
                            q = q.filter(appointments::doctor_id.eq(d));
                        }
                        if let Some(s) = f.status {
                            q = q.filter(appointments::status.eq(s.as_str()));
                        }
                        if let Some(from) = f.from {
                            q = q.filter(slots::starts_at.ge(from));
                        }
                        if let Some(to) = f.to {
                            q = q.filter(slots::starts_at.lt(to));
                        }
                        q
                    }};
                }
                let total: i64 = filtered!().count().get_result(conn).map_err(map_err)?;
                let rows = filtered!()
                    .order((slots::starts_at.desc(), appointments::id.asc()))
                    .limit(i64::from(page.per_page))
                    .offset(page.offset())
                    .load::<AppointmentTuple>(conn)
                    .map_err(map_err)?;
                Ok(Page {
                    items: rows
                        .into_iter()
                        .map(to_appointment)
                        .collect::<Result<_, _>>()?,
                    total,
                    page: page.page,
                    per_page: page.per_page,
                })
            })
            .await
    }
}
