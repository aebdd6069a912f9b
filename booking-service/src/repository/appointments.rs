//! `AppointmentRepository`: booking, rescheduling and cancelling, each one transaction
//! and a unit of work around a decision of `domain::decisions`. It locks and loads the
//! facts (the patient's row, slots in id order so two transactions never wait on each
//! other in a cycle, the appointment), lets the domain decide, and writes what the
//! decision says (rows, reminders and the outbox event) in one statement. A booking is
//! five round trips: BEGIN, the patient's lock, the slot with the patient's facts, the
//! write, COMMIT; every statement
//! is prepared once per connection. The partial unique index
//! `appointments_one_active_per_slot` is the last line of defence: whatever happens
//! above, a slot never has two active bookings.

use super::audit::AuditRecord;
use super::db::{map_err, Db};
use super::outbox::OutboxRow;
use super::schema::{appointments, clinics, doctors, slots};
use super::sql::Sql;
use crate::domain::audit::AuditEntry;
use crate::domain::booking::{
    Appointment, AppointmentStatus, BookingRejection, ClinicPolicy, DoctorPolicy, DoctorStatus,
    Slot, SlotStatus,
};
use crate::domain::decisions::{
    decide_attendance, decide_booking, decide_cancel, decide_reschedule, AppointmentFacts,
    AttendanceDecision, AttendanceRequest, BookingDecision, BookingRequest, CancelDecision,
    CancelRequest, EarlierBooking, HoldFacts, HoldRelease, NewBooking, PatientFacts,
    RescheduleDecision, RescheduleRequest, SlotFacts,
};
use crate::domain::links::ManageLinks;
use crate::domain::reminders::DueReminder;
use crate::domain::schedule::parse_time_zone;
use crate::domain::{AppointmentId, ClinicId, DoctorId, SlotId, UserId};
use crate::service::booking_ports::{AppointmentFilter, AppointmentRepository, Booked};
use crate::service::ports::{CommitListener, Page, PageRequest, RepoError};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{
    Array, BigInt, Bool, Integer, Nullable, Text, Timestamptz, Uuid as SqlUuid,
};
use medbook_shared::events::{ClinicInfo, DoctorInfo, EventEnvelope, PatientInfo};
use std::sync::Arc;
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
        id: AppointmentId(id),
        slot_id: SlotId(slot_id),
        patient_id: UserId(patient_id),
        doctor_id: DoctorId(doctor_id),
        doctor_name,
        clinic_id: ClinicId(clinic_id),
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

fn internal(e: impl std::fmt::Display) -> RepoError {
    RepoError::Internal(anyhow::anyhow!("{e}"))
}

/// The patient's row, locked: it serialises the patient's bookings, so the cap and the
/// idempotency record hold. Its own statement, so that the next one (the slot's) takes
/// its snapshot after the lock: whatever an earlier booking of this patient committed
/// is then in view.
/// (Public for `benches/db_ratio.rs`, which replays it with pgbench.)
pub const LOCK_PATIENT: &str = "
SELECT id, email, full_name, email_verified_at IS NOT NULL AS email_verified
FROM users WHERE id = $1 AND role = 'patient'
FOR UPDATE";

#[derive(QueryableByName)]
struct PatientRow {
    #[diesel(sql_type = SqlUuid)]
    id: Uuid,
    #[diesel(sql_type = Text)]
    email: String,
    #[diesel(sql_type = Text)]
    full_name: String,
    #[diesel(sql_type = Bool)]
    email_verified: bool,
}

/// The slot's row, locked, with its doctor and clinic, and the patient's side of the
/// decision: their upcoming booked appointments counted up to the cap (an index range
/// scan that stops there) and the request's earlier idempotency record, if any.
/// (Public for `benches/db_ratio.rs`, which replays it with pgbench.)
pub const SLOT_FACTS: &str = concat!(
    "
SELECT s.id, s.doctor_id, s.starts_at, s.ends_at, s.status,
       h.entry_id AS hold_entry_id, h.patient_id AS hold_patient_id, h.expires_at AS hold_expires_at,
       ",
    practice_columns!(),
    ",
       (SELECT count(*) FROM (
            SELECT 1 FROM appointments a
            WHERE a.patient_id = $2 AND a.status = $3 AND a.starts_at > $4
            LIMIT COALESCE(c.max_active_per_patient, $5)) AS capped) AS upcoming,
       CASE WHEN COALESCE(c.no_show_limit, $7) IS NULL THEN 0 ELSE
       (SELECT count(*) FROM appointments a
        WHERE a.patient_id = $2 AND a.status = 'no_show'
          AND a.starts_at > $4 - make_interval(days => COALESCE(c.no_show_window_days, $8)))
       END AS no_shows,
       (SELECT i.request_hash FROM booking_idempotency i
        WHERE i.patient_id = $2 AND i.key = $6) AS request_hash,
       (SELECT i.appointment_id FROM booking_idempotency i
        WHERE i.patient_id = $2 AND i.key = $6) AS earlier_id
FROM slots s
JOIN doctors d ON d.id = s.doctor_id
JOIN clinics c ON c.id = d.clinic_id
LEFT JOIN slot_holds h ON h.slot_id = s.id
WHERE s.id = $1
FOR UPDATE OF s"
);

/// The earlier idempotency record alone, for a request whose slot does not exist (the
/// key reused with another slot is refused as such, not as an unknown slot).
const EARLIER_BOOKING: &str = "
SELECT request_hash, appointment_id AS earlier_id FROM booking_idempotency
WHERE patient_id = $1 AND key = $2";

#[derive(QueryableByName)]
struct EarlierRow {
    #[diesel(sql_type = Nullable<Text>)]
    request_hash: Option<String>,
    #[diesel(sql_type = Nullable<SqlUuid>)]
    earlier_id: Option<Uuid>,
}

impl EarlierRow {
    fn record(self) -> Option<EarlierBooking> {
        self.request_hash
            .zip(self.earlier_id)
            .map(|(request_hash, appointment_id)| EarlierBooking {
                request_hash,
                appointment_id: AppointmentId(appointment_id),
            })
    }
}

#[derive(QueryableByName)]
struct SlotFactsRow {
    #[diesel(embed)]
    slot: LockedSlotRow,
    #[diesel(embed)]
    practice: PracticeRow,
    #[diesel(sql_type = BigInt)]
    upcoming: i64,
    #[diesel(sql_type = BigInt)]
    no_shows: i64,
    #[diesel(embed)]
    earlier: EarlierRow,
}

/// A slot's hold, when it has one (`LEFT JOIN slot_holds h`).
#[derive(QueryableByName)]
struct HoldRow {
    #[diesel(sql_type = Nullable<SqlUuid>)]
    hold_entry_id: Option<Uuid>,
    #[diesel(sql_type = Nullable<SqlUuid>)]
    hold_patient_id: Option<Uuid>,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    hold_expires_at: Option<DateTime<Utc>>,
}

impl HoldRow {
    fn facts(&self) -> Option<HoldFacts> {
        Some(HoldFacts {
            entry_id: self.hold_entry_id?,
            patient_id: UserId(self.hold_patient_id?),
            expires_at: self.hold_expires_at?,
        })
    }
}

/// A reschedule's two slots, locked in id order, with their holds.
const LOCK_SLOTS: &str = "
SELECT s.id, s.doctor_id, s.starts_at, s.ends_at, s.status,
       h.entry_id AS hold_entry_id, h.patient_id AS hold_patient_id, h.expires_at AS hold_expires_at
FROM slots s LEFT JOIN slot_holds h ON h.slot_id = s.id
WHERE s.id = ANY($1)
ORDER BY s.id
FOR UPDATE OF s";

/// A slot's row and its hold (`slots s LEFT JOIN slot_holds h`).
#[derive(QueryableByName)]
struct LockedSlotRow {
    #[diesel(sql_type = SqlUuid)]
    id: Uuid,
    #[diesel(sql_type = SqlUuid)]
    doctor_id: Uuid,
    #[diesel(sql_type = Timestamptz)]
    starts_at: DateTime<Utc>,
    #[diesel(sql_type = Timestamptz)]
    ends_at: DateTime<Utc>,
    #[diesel(sql_type = Text)]
    status: String,
    #[diesel(embed)]
    hold: HoldRow,
}

impl LockedSlotRow {
    fn slot(&self) -> Result<Slot, RepoError> {
        Ok(Slot {
            id: SlotId(self.id),
            doctor_id: DoctorId(self.doctor_id),
            starts_at: self.starts_at,
            ends_at: self.ends_at,
            status: self.status.parse::<SlotStatus>().map_err(internal)?,
        })
    }
}

/// A hold the change uses up or releases, before the change is written (the hold
/// trigger would refuse the appointment otherwise): the holder's entry is booked, or
/// (an expired hold someone else takes) stays in line with the slot passed.
const RELEASE_HOLD: &str = "
WITH released AS (
    DELETE FROM slot_holds WHERE slot_id = $1 RETURNING entry_id, slot_id
), passed AS (
    INSERT INTO waitlist_passes (entry_id, slot_id)
    SELECT entry_id, slot_id FROM released WHERE NOT $2
    ON CONFLICT DO NOTHING
)
UPDATE waitlist_entries SET status = 'booked', updated_at = $3
WHERE $2 AND id IN (SELECT entry_id FROM released)";

/// After the booking is written: the holder's entry points at it.
const LINK_ENTRY: &str = "UPDATE waitlist_entries SET appointment_id = $1 WHERE id = $2";

fn release_hold(
    conn: &mut PgConnection,
    hold: &HoldRelease,
    at: DateTime<Utc>,
) -> Result<(), RepoError> {
    Sql::new(RELEASE_HOLD)
        .bind::<SqlUuid, _>(hold.slot_id)
        .bind::<Bool, _>(hold.used)
        .bind::<Timestamptz, _>(at)
        .execute(conn)
        .map(|_| ())
        .map_err(map_err)
}

fn link_entry(
    conn: &mut PgConnection,
    hold: Option<&HoldRelease>,
    appointment: Uuid,
) -> Result<(), RepoError> {
    match hold {
        Some(h) if h.used => Sql::new(LINK_ENTRY)
            .bind::<SqlUuid, _>(appointment)
            .bind::<SqlUuid, _>(h.entry_id)
            .execute(conn)
            .map(|_| ())
            .map_err(map_err),
        _ => Ok(()),
    }
}

/// The columns of [`PracticeRow`], from `doctors d` and `clinics c`.
macro_rules! practice_columns {
    () => {
        "d.full_name AS doctor_name, d.specialty, d.status AS doctor_status,
       c.id AS clinic_id, c.name AS clinic_name, c.city, c.address, c.time_zone,
       c.min_notice_minutes AS c_min_notice, c.horizon_days AS c_horizon,
       c.change_deadline_minutes AS c_deadline, c.max_active_per_patient AS c_max_active,
       c.no_show_limit AS c_no_show_limit, c.no_show_window_days AS c_no_show_window,
       c.no_show_email AS c_no_show_email,
       d.min_notice_minutes AS d_min_notice, d.horizon_days AS d_horizon,
       d.change_deadline_minutes AS d_deadline"
    };
}
use practice_columns;

/// A clinic's policy columns.
#[derive(QueryableByName)]
pub(super) struct ClinicPolicyRow {
    #[diesel(sql_type = Nullable<Integer>)]
    c_min_notice: Option<i32>,
    #[diesel(sql_type = Nullable<Integer>)]
    c_horizon: Option<i32>,
    #[diesel(sql_type = Nullable<Integer>)]
    c_deadline: Option<i32>,
    #[diesel(sql_type = Nullable<Integer>)]
    c_max_active: Option<i32>,
    #[diesel(sql_type = Nullable<Integer>)]
    c_no_show_limit: Option<i32>,
    #[diesel(sql_type = Nullable<Integer>)]
    c_no_show_window: Option<i32>,
    #[diesel(sql_type = Bool)]
    c_no_show_email: bool,
}

impl From<&ClinicPolicyRow> for ClinicPolicy {
    fn from(r: &ClinicPolicyRow) -> Self {
        ClinicPolicy {
            min_notice_minutes: r.c_min_notice,
            horizon_days: r.c_horizon,
            change_deadline_minutes: r.c_deadline,
            max_active_per_patient: r.c_max_active,
            no_show_limit: r.c_no_show_limit,
            no_show_window_days: r.c_no_show_window,
            no_show_email: r.c_no_show_email,
        }
    }
}

/// A doctor's policy columns.
#[derive(QueryableByName)]
pub(super) struct DoctorPolicyRow {
    #[diesel(sql_type = Nullable<Integer>)]
    d_min_notice: Option<i32>,
    #[diesel(sql_type = Nullable<Integer>)]
    d_horizon: Option<i32>,
    #[diesel(sql_type = Nullable<Integer>)]
    d_deadline: Option<i32>,
}

impl From<&DoctorPolicyRow> for DoctorPolicy {
    fn from(r: &DoctorPolicyRow) -> Self {
        DoctorPolicy {
            min_notice_minutes: r.d_min_notice,
            horizon_days: r.d_horizon,
            change_deadline_minutes: r.d_deadline,
        }
    }
}

/// What a practice's facts come to.
type Practice = (
    DoctorInfo,
    DoctorStatus,
    ClinicInfo,
    chrono_tz::Tz,
    ClinicPolicy,
    DoctorPolicy,
);

/// A doctor with their clinic, as the fact statements select them.
#[derive(QueryableByName)]
struct PracticeRow {
    #[diesel(sql_type = Text)]
    doctor_name: String,
    #[diesel(sql_type = Text)]
    specialty: String,
    #[diesel(sql_type = Text)]
    doctor_status: String,
    #[diesel(sql_type = SqlUuid)]
    clinic_id: Uuid,
    #[diesel(sql_type = Text)]
    clinic_name: String,
    #[diesel(sql_type = Text)]
    city: String,
    #[diesel(sql_type = Text)]
    address: String,
    #[diesel(sql_type = Text)]
    time_zone: String,
    #[diesel(embed)]
    clinic_policy: ClinicPolicyRow,
    #[diesel(embed)]
    doctor_policy: DoctorPolicyRow,
}

impl PracticeRow {
    fn facts(self, doctor_id: Uuid) -> Result<Practice, RepoError> {
        let clinic_policy = ClinicPolicy::from(&self.clinic_policy);
        let doctor_policy = DoctorPolicy::from(&self.doctor_policy);
        Ok((
            DoctorInfo {
                id: doctor_id,
                full_name: self.doctor_name,
                specialty: self.specialty,
            },
            self.doctor_status
                .parse::<DoctorStatus>()
                .map_err(internal)?,
            ClinicInfo {
                id: self.clinic_id,
                name: self.clinic_name,
                city: self.city,
                address: self.address,
                time_zone: self.time_zone.clone(),
            },
            parse_time_zone(&self.time_zone).map_err(internal)?,
            clinic_policy,
            doctor_policy,
        ))
    }
}

/// A slot's facts, the patient's counts (upcoming, no-shows) and earlier record.
type SplitFacts = (SlotFacts, (i64, i64), Option<EarlierBooking>);

impl SlotFactsRow {
    /// The slot's facts, and the patient's: upcoming count and earlier record.
    fn split(self) -> Result<SplitFacts, RepoError> {
        let r = self;
        let hold = r.slot.hold.facts();
        let (doctor, doctor_status, clinic, time_zone, clinic_policy, doctor_policy) =
            r.practice.facts(r.slot.doctor_id)?;
        let slot = SlotFacts {
            slot: r.slot.slot()?,
            doctor,
            doctor_status,
            clinic,
            time_zone,
            clinic_policy,
            doctor_policy,
            hold,
        };
        Ok((slot, (r.upcoming, r.no_shows), r.earlier.record()))
    }
}

/// The appointment's row, locked, with what its events carry; `FOR UPDATE OF a, s`
/// (cancelling) locks its slot in the same statement.
macro_rules! appointment_facts {
    ($lock:literal) => {
        concat!(
            "
SELECT a.id, a.slot_id, a.patient_id, a.status, a.reason, a.cancel_reason, a.cancelled_at,
       a.created_at, a.updated_at, a.version, s.starts_at, s.ends_at,
       u.email, u.full_name AS patient_name, d.id AS doctor_id,
       ",
            practice_columns!(),
            "
FROM appointments a
JOIN slots s ON s.id = a.slot_id
JOIN users u ON u.id = a.patient_id
JOIN doctors d ON d.id = a.doctor_id
JOIN clinics c ON c.id = d.clinic_id
WHERE a.id = $1
",
            $lock
        )
    };
}
pub(super) const APPOINTMENT_FACTS: &str = appointment_facts!("FOR UPDATE OF a");
const APPOINTMENT_AND_SLOT_FACTS: &str = appointment_facts!("FOR UPDATE OF a, s");

#[derive(QueryableByName)]
struct AppointmentFactsRow {
    #[diesel(sql_type = SqlUuid)]
    id: Uuid,
    #[diesel(sql_type = SqlUuid)]
    slot_id: Uuid,
    #[diesel(sql_type = SqlUuid)]
    patient_id: Uuid,
    #[diesel(sql_type = Text)]
    status: String,
    #[diesel(sql_type = Text)]
    reason: String,
    #[diesel(sql_type = Nullable<Text>)]
    cancel_reason: Option<String>,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    cancelled_at: Option<DateTime<Utc>>,
    #[diesel(sql_type = Timestamptz)]
    created_at: DateTime<Utc>,
    #[diesel(sql_type = Timestamptz)]
    updated_at: DateTime<Utc>,
    #[diesel(sql_type = Integer)]
    version: i32,
    #[diesel(sql_type = Timestamptz)]
    starts_at: DateTime<Utc>,
    #[diesel(sql_type = Timestamptz)]
    ends_at: DateTime<Utc>,
    #[diesel(sql_type = Text)]
    email: String,
    #[diesel(sql_type = Text)]
    patient_name: String,
    #[diesel(sql_type = SqlUuid)]
    doctor_id: Uuid,
    #[diesel(embed)]
    practice: PracticeRow,
}

impl TryFrom<AppointmentFactsRow> for AppointmentFacts {
    type Error = RepoError;
    fn try_from(r: AppointmentFactsRow) -> Result<Self, RepoError> {
        let (doctor, doctor_status, clinic, time_zone, clinic_policy, doctor_policy) =
            r.practice.facts(r.doctor_id)?;
        Ok(AppointmentFacts {
            appointment: Appointment {
                id: AppointmentId(r.id),
                slot_id: SlotId(r.slot_id),
                patient_id: UserId(r.patient_id),
                doctor_id: DoctorId(r.doctor_id),
                doctor_name: doctor.full_name.clone(),
                clinic_id: ClinicId(clinic.id),
                clinic_name: clinic.name.clone(),
                time_zone: clinic.time_zone.clone(),
                starts_at: r.starts_at,
                ends_at: r.ends_at,
                status: r.status.parse::<AppointmentStatus>().map_err(internal)?,
                reason: r.reason,
                cancel_reason: r.cancel_reason,
                cancelled_at: r.cancelled_at,
                created_at: r.created_at,
                updated_at: r.updated_at,
            },
            version: r.version,
            patient: PatientInfo {
                id: r.patient_id,
                email: r.email,
                full_name: r.patient_name,
            },
            doctor,
            doctor_status,
            clinic,
            time_zone,
            clinic_policy,
            doctor_policy,
        })
    }
}

/// The appointment's snapshot as its events carry it, built by the domain from the
/// same facts a change decides on (its row locked).
pub(super) fn current_snapshot(
    conn: &mut PgConnection,
    id: Uuid,
    links: &ManageLinks,
) -> Result<medbook_shared::events::AppointmentSnapshot, RepoError> {
    appointment_facts(conn, APPOINTMENT_FACTS, id)?
        .map(|f| f.snapshot(links))
        .ok_or_else(|| RepoError::Internal(anyhow::anyhow!("appointment {id} vanished")))
}

pub(super) fn appointment_facts(
    conn: &mut PgConnection,
    sql: &'static str,
    id: Uuid,
) -> Result<Option<AppointmentFacts>, RepoError> {
    Sql::new(sql)
        .bind::<SqlUuid, _>(id)
        .get_result::<AppointmentFactsRow>(conn)
        .optional()
        .map_err(map_err)?
        .map(AppointmentFacts::try_from)
        .transpose()
}

/// The change's two outbox rows, its event's and its audit record's, as the statement's
/// last eighteen binds ([`OutboxRow::bind`]: the same row every writer writes).
fn bind_rows(
    q: Sql,
    event: &EventEnvelope,
    entry: &AuditEntry,
    at: DateTime<Utc>,
) -> Result<Sql, RepoError> {
    let audit = AuditRecord::from_entry(entry.clone(), at).row()?;
    Ok(audit.bind(OutboxRow::event(event)?.bind(q)))
}

/// Reminders as three parallel arrays (offset label, due instant) for `unnest`.
fn reminder_arrays(reminders: &[DueReminder]) -> (Vec<String>, Vec<DateTime<Utc>>) {
    reminders
        .iter()
        .map(|r| (r.offset.clone(), r.due_at))
        .unzip()
}

/// Everything a booking writes, in one statement: the slot taken, the appointment, its
/// idempotency record (when the request had a key), its reminders and its event.
/// Foreign keys between the parts are checked at the end of the statement.
/// (Public for `benches/db_ratio.rs`, which replays it with pgbench.)
pub const WRITE_BOOKING: &str = "
WITH taken AS (
    UPDATE slots SET status = $1 WHERE id = $2
), appointment AS (
    INSERT INTO appointments
        (id, slot_id, patient_id, doctor_id, status, reason, starts_at, created_at, updated_at, version,
         ends_at, manage_token_hash)
    VALUES ($3, $2, $4, $5, $6, $7, $8, $9, $9, $10, $33, $34)
), idempotency AS (
    INSERT INTO booking_idempotency (patient_id, key, request_hash, appointment_id, created_at)
    SELECT $4, $11, $12, $3, $9 WHERE $11::text IS NOT NULL
), reminders AS (
    INSERT INTO appointment_reminders (id, appointment_id, offset_label, due_at, version, created_at)
    SELECT gen_random_uuid(), $3, r.label, r.due_at, $10, $9
    FROM unnest($13::text[], $14::timestamptz[]) AS r (label, due_at)
)
INSERT INTO outbox_events (id, aggregate_id, topic, event_type, payload, created_at, request_id, sink, trace_parent)
VALUES ($15, $16, $17, $18, $19, $20, $21, $22, $23),
       ($24, $25, $26, $27, $28, $29, $30, $31, $32)";

fn write_booking(conn: &mut PgConnection, b: &NewBooking) -> Result<(), RepoError> {
    let a = &b.appointment;
    let (labels, due) = reminder_arrays(&b.reminders);
    let q = Sql::new(WRITE_BOOKING)
        .bind::<Text, _>(b.slot_status.as_str())
        .bind::<SqlUuid, _>(a.slot_id)
        .bind::<SqlUuid, _>(a.id)
        .bind::<SqlUuid, _>(a.patient_id)
        .bind::<SqlUuid, _>(a.doctor_id)
        .bind::<Text, _>(a.status.as_str())
        .bind::<Text, _>(a.reason.clone())
        .bind::<Timestamptz, _>(a.starts_at)
        .bind::<Timestamptz, _>(a.created_at)
        .bind::<Integer, _>(b.version)
        .bind::<Nullable<Text>, _>(b.idempotency.as_ref().map(|i| i.key.clone()))
        .bind::<Nullable<Text>, _>(b.idempotency.as_ref().map(|i| i.request_hash.clone()))
        .bind::<Array<Text>, _>(labels)
        .bind::<Array<Timestamptz>, _>(due);
    bind_rows(q, &b.event, &b.audit, a.created_at)?
        .bind::<Timestamptz, _>(a.ends_at)
        .bind::<Text, _>(b.manage_token_hash.clone())
        .execute(conn)
        .map(|_| ())
        .map_err(map_err)
}

/// A move, in one statement: the old slot freed, the new one taken, the appointment
/// updated, its pending reminders replaced, its event.
const WRITE_RESCHEDULE: &str = "
WITH freed AS (
    UPDATE slots SET status = $1 WHERE id = $2
), taken AS (
    UPDATE slots SET status = $3 WHERE id = $4
), moved AS (
    UPDATE appointments SET slot_id = $4, starts_at = $5, updated_at = $6, version = $7,
           ends_at = $29
    WHERE id = $8
), dropped AS (
    DELETE FROM appointment_reminders WHERE appointment_id = $8 AND published_at IS NULL
), reminders AS (
    INSERT INTO appointment_reminders (id, appointment_id, offset_label, due_at, version, created_at)
    SELECT gen_random_uuid(), $8, r.label, r.due_at, $7, $6
    FROM unnest($9::text[], $10::timestamptz[]) AS r (label, due_at)
)
INSERT INTO outbox_events (id, aggregate_id, topic, event_type, payload, created_at, request_id, sink, trace_parent)
VALUES ($11, $12, $13, $14, $15, $16, $17, $18, $19),
       ($20, $21, $22, $23, $24, $25, $26, $27, $28)";

fn write_reschedule(conn: &mut PgConnection, d: &RescheduleDecision) -> Result<(), RepoError> {
    let a = &d.appointment;
    let (labels, due) = reminder_arrays(&d.reminders);
    let q = Sql::new(WRITE_RESCHEDULE)
        .bind::<Text, _>(d.freed.1.as_str())
        .bind::<SqlUuid, _>(d.freed.0)
        .bind::<Text, _>(d.taken.1.as_str())
        .bind::<SqlUuid, _>(d.taken.0)
        .bind::<Timestamptz, _>(a.starts_at)
        .bind::<Timestamptz, _>(a.updated_at)
        .bind::<Integer, _>(d.version)
        .bind::<SqlUuid, _>(a.id)
        .bind::<Array<Text>, _>(labels)
        .bind::<Array<Timestamptz>, _>(due);
    bind_rows(q, &d.event, &d.audit, a.updated_at)?
        .bind::<Timestamptz, _>(a.ends_at)
        .execute(conn)
        .map(|_| ())
        .map_err(map_err)
}

/// A cancellation, in one statement: the appointment updated, its slot freed (when the
/// decision says so), its pending reminders dropped, its event.
const WRITE_CANCEL: &str = "
WITH cancelled AS (
    UPDATE appointments
    SET status = $1, cancel_reason = $2, cancelled_at = $3, updated_at = $4, version = $5
    WHERE id = $6
), freed AS (
    UPDATE slots SET status = $7 WHERE id = $8
), dropped AS (
    DELETE FROM appointment_reminders WHERE appointment_id = $6 AND published_at IS NULL
)
INSERT INTO outbox_events (id, aggregate_id, topic, event_type, payload, created_at, request_id, sink, trace_parent)
VALUES ($9, $10, $11, $12, $13, $14, $15, $16, $17),
       ($18, $19, $20, $21, $22, $23, $24, $25, $26)";

fn write_cancel(conn: &mut PgConnection, d: &CancelDecision) -> Result<(), RepoError> {
    let a = &d.appointment;
    let q = Sql::new(WRITE_CANCEL)
        .bind::<Text, _>(a.status.as_str())
        .bind::<Nullable<Text>, _>(a.cancel_reason.clone())
        .bind::<Nullable<Timestamptz>, _>(a.cancelled_at)
        .bind::<Timestamptz, _>(a.updated_at)
        .bind::<Integer, _>(d.version)
        .bind::<SqlUuid, _>(a.id)
        .bind::<Text, _>(d.freed.map_or("", |(_, s)| s.as_str()))
        .bind::<Nullable<SqlUuid>, _>(d.freed.map(|(id, _)| id));
    bind_rows(q, &d.event, &d.audit, a.updated_at)?
        .execute(conn)
        .map(|_| ())
        .map_err(map_err)
}

/// A booking: lock and load the facts, let the domain decide, write the decision. The
/// `usize`: how many reminders it scheduled.
fn book_in_tx(
    conn: &mut PgConnection,
    req: &BookingRequest,
) -> Result<Result<(Booked, usize), BookingRejection>, RepoError> {
    let Some(p) = Sql::new(LOCK_PATIENT)
        .bind::<SqlUuid, _>(req.patient_id)
        .get_result::<PatientRow>(conn)
        .optional()
        .map_err(map_err)?
    else {
        return Ok(Err(BookingRejection::PatientNotFound));
    };
    let key = req.idempotency.as_ref().map(|i| i.key.clone());
    let row: Option<SlotFactsRow> = Sql::new(SLOT_FACTS)
        .bind::<SqlUuid, _>(req.slot_id)
        .bind::<SqlUuid, _>(req.patient_id)
        .bind::<Text, _>(AppointmentStatus::Booked.as_str())
        .bind::<Timestamptz, _>(req.now)
        .bind::<BigInt, _>(req.policy.max_active_per_patient)
        .bind::<Nullable<Text>, _>(key.clone())
        .bind::<Nullable<BigInt>, _>(req.policy.no_show_limit)
        .bind::<Integer, _>(i32::try_from(req.policy.no_show_window.num_days()).unwrap_or(i32::MAX))
        .get_result(conn)
        .optional()
        .map_err(map_err)?;
    let ((upcoming, no_shows), earlier, slot) = match row {
        Some(r) => {
            let (slot, counts, earlier) = r.split()?;
            (counts, earlier, Some(slot))
        }
        None => {
            let earlier = match key {
                Some(key) => Sql::new(EARLIER_BOOKING)
                    .bind::<SqlUuid, _>(req.patient_id)
                    .bind::<Text, _>(key)
                    .get_result::<EarlierRow>(conn)
                    .optional()
                    .map_err(map_err)?
                    .and_then(EarlierRow::record),
                None => None,
            };
            ((0, 0), earlier, None)
        }
    };
    let patient = PatientFacts {
        patient: PatientInfo {
            id: p.id,
            email: p.email,
            full_name: p.full_name,
        },
        email_verified: p.email_verified,
        upcoming,
        no_shows,
        earlier,
    };
    match decide_booking(req, &patient, slot.as_ref()) {
        Err(rejection) => Ok(Err(rejection)),
        Ok(BookingDecision::Replay(id)) => Ok(Ok((
            Booked {
                appointment: must_load(conn, id.into())?,
                replayed: true,
            },
            0,
        ))),
        Ok(BookingDecision::Book(b)) => {
            if let Some(hold) = &b.hold {
                release_hold(conn, hold, b.appointment.created_at)?;
            }
            write_booking(conn, &b)?;
            link_entry(conn, b.hold.as_ref(), b.appointment.id.0)?;
            Ok(Ok((
                Booked {
                    appointment: b.appointment,
                    replayed: false,
                },
                b.reminders.len(),
            )))
        }
    }
}

fn reschedule_in_tx(
    conn: &mut PgConnection,
    req: &RescheduleRequest,
) -> Result<Result<(Appointment, usize), BookingRejection>, RepoError> {
    let current = appointment_facts(conn, APPOINTMENT_FACTS, req.appointment_id.into())?;
    let mut new_slot = None;
    let mut hold = None;
    if let Some(c) = &current {
        // Both slots, locked in id order, with the requested one's hold.
        let mut ids = [c.appointment.slot_id.0, req.new_slot_id.0];
        ids.sort();
        let rows: Vec<LockedSlotRow> = Sql::new(LOCK_SLOTS)
            .bind::<Array<SqlUuid>, _>(ids.to_vec())
            .load(conn)
            .map_err(map_err)?;
        if let Some(r) = rows.into_iter().find(|r| r.id == req.new_slot_id.0) {
            hold = r.hold.facts();
            new_slot = Some(r.slot()?);
        }
    }
    match decide_reschedule(req, current.as_ref(), new_slot.as_ref(), hold.as_ref()) {
        Err(rejection) => Ok(Err(rejection)),
        Ok(d) => {
            if let Some(hold) = &d.hold {
                release_hold(conn, hold, d.appointment.updated_at)?;
            }
            write_reschedule(conn, &d)?;
            Ok(Ok((d.appointment, d.reminders.len())))
        }
    }
}

fn cancel_in_tx(
    conn: &mut PgConnection,
    req: &CancelRequest,
) -> Result<Result<(Appointment, usize), BookingRejection>, RepoError> {
    let current = appointment_facts(conn, APPOINTMENT_AND_SLOT_FACTS, req.appointment_id.into())?;
    match decide_cancel(req, current.as_ref()) {
        Err(rejection) => Ok(Err(rejection)),
        Ok(d) => {
            write_cancel(conn, &d)?;
            Ok(Ok((d.appointment, 0)))
        }
    }
}

/// Attendance: the appointment's outcome and who recorded it with its audit record in
/// one statement, then the no-show's event when there is one.
const WRITE_ATTENDANCE: &str = "
WITH marked AS (
    UPDATE appointments
    SET status = $1, attendance_marked_at = $2, attendance_marked_by = $3, updated_at = $2,
        version = $4
    WHERE id = $5
)
INSERT INTO outbox_events (id, aggregate_id, topic, event_type, payload, created_at, request_id, sink, trace_parent)
VALUES ($6, $7, $8, $9, $10, $11, $12, $13, $14)";

fn write_attendance(conn: &mut PgConnection, d: &AttendanceDecision) -> Result<(), RepoError> {
    let a = &d.appointment;
    let audit = AuditRecord::from_entry(d.audit.clone(), a.updated_at).row()?;
    let q = Sql::new(WRITE_ATTENDANCE)
        .bind::<Text, _>(a.status.as_str())
        .bind::<Timestamptz, _>(a.updated_at)
        .bind::<SqlUuid, _>(d.marked_by)
        .bind::<Integer, _>(d.version)
        .bind::<SqlUuid, _>(a.id);
    audit.bind(q).execute(conn).map_err(map_err)?;
    match &d.event {
        Some(e) => super::outbox::enqueue(conn, e),
        None => Ok(()),
    }
}

fn attendance_in_tx(
    conn: &mut PgConnection,
    req: &AttendanceRequest,
) -> Result<Result<(Appointment, usize), BookingRejection>, RepoError> {
    let current = appointment_facts(conn, APPOINTMENT_FACTS, req.appointment_id.into())?;
    match decide_attendance(req, current.as_ref()) {
        Err(rejection) => Ok(Err(rejection)),
        Ok(d) => {
            write_attendance(conn, &d)?;
            Ok(Ok((d.appointment, 0)))
        }
    }
}

/// A rule the database enforces caught what the row locks did not (a second active
/// appointment on a slot, a patient's overlapping appointment made concurrently, a
/// slot held for someone else): the database has the last word. Mapped after the
/// transaction has rolled back, never inside it.
fn slot_taken_on_unique<T>(e: RepoError) -> Result<Result<T, BookingRejection>, RepoError> {
    match e {
        RepoError::UniqueViolation(c) if c == "appointments_one_active_per_slot" => {
            Ok(Err(BookingRejection::SlotTaken))
        }
        RepoError::UniqueViolation(c) if c == "slot_holds_slot_held" => {
            Ok(Err(BookingRejection::SlotHeld))
        }
        RepoError::ExclusionViolation(c) if c == "appointments_patient_no_overlap" => {
            Ok(Err(BookingRejection::PatientOverlap))
        }
        other => Err(other),
    }
}

pub struct PgAppointments {
    db: Db,
    /// Told after a committed change, whose event is then in the outbox.
    commits: Arc<dyn CommitListener>,
}

impl PgAppointments {
    pub fn new(db: Db, commits: Arc<dyn CommitListener>) -> Self {
        Self { db, commits }
    }

    /// After a committed change (the `usize`: reminders it wrote).
    fn committed<T>(
        &self,
        result: Result<(T, usize), BookingRejection>,
    ) -> Result<T, BookingRejection> {
        result.map(|(value, scheduled)| {
            self.commits.committed(scheduled);
            value
        })
    }
}

#[async_trait]
impl AppointmentRepository for PgAppointments {
    async fn book(
        &self,
        req: BookingRequest,
    ) -> Result<Result<Booked, BookingRejection>, RepoError> {
        self.db
            .transaction(move |conn| book_in_tx(conn, &req))
            .await
            .or_else(slot_taken_on_unique)
            .map(|r| self.committed(r))
    }

    async fn reschedule(
        &self,
        req: RescheduleRequest,
    ) -> Result<Result<Appointment, BookingRejection>, RepoError> {
        self.db
            .transaction(move |conn| reschedule_in_tx(conn, &req))
            .await
            .or_else(slot_taken_on_unique)
            .map(|r| self.committed(r))
    }

    async fn cancel(
        &self,
        req: CancelRequest,
    ) -> Result<Result<Appointment, BookingRejection>, RepoError> {
        self.db
            .transaction(move |conn| cancel_in_tx(conn, &req))
            .await
            .map(|r| self.committed(r))
    }

    async fn record_attendance(
        &self,
        req: AttendanceRequest,
    ) -> Result<Result<Appointment, BookingRejection>, RepoError> {
        self.db
            .transaction(move |conn| attendance_in_tx(conn, &req))
            .await
            .map(|r| self.committed(r))
    }

    async fn by_manage_token(&self, token_hash: String) -> Result<Option<Appointment>, RepoError> {
        self.db
            .run(move |conn| {
                appointment_query!()
                    .filter(appointments::manage_token_hash.eq(token_hash))
                    .first::<AppointmentTuple>(conn)
                    .optional()
                    .map_err(map_err)?
                    .map(to_appointment)
                    .transpose()
            })
            .await
    }

    async fn get(&self, id: AppointmentId) -> Result<Option<Appointment>, RepoError> {
        self.db.run(move |conn| load(conn, id.into())).await
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
