//! The outbox table: appointment transactions append their event with [`enqueue`];
//! [`PgOutbox`] is the relay's view (claim, mark published, release, prune).

use super::db::{map_err, Db};
use super::schema::{appointments, clinics, doctors, outbox_events, slots, users};
use crate::service::outbox::{Backlog, OutboxStore, PendingEvent, Sink};
use crate::service::ports::RepoError;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Interval, Uuid as SqlUuid};
use medbook_shared::events::{
    AppointmentSnapshot, ClinicInfo, DoctorInfo, EventEnvelope, PatientInfo, TOPIC_ACCOUNTS,
};
use std::time::Duration;
use uuid::Uuid;

/// Everything an email about `appointment_id` needs, as committed so far in this
/// transaction.
pub fn snapshot(
    conn: &mut PgConnection,
    appointment_id: Uuid,
) -> Result<AppointmentSnapshot, RepoError> {
    type Row = (
        (Uuid, Uuid, String, i32),
        (DateTime<Utc>, DateTime<Utc>),
        (Uuid, String, String),
        (Uuid, String, String),
        (Uuid, String, String, String, String),
    );
    let (
        (appointment_id, slot_id, reason, version),
        (starts_at, ends_at),
        (patient_id, email, patient_name),
        (doctor_id, doctor_name, specialty),
        (clinic_id, clinic_name, city, address, time_zone),
    ): Row = appointments::table
        .inner_join(slots::table)
        .inner_join(users::table)
        .inner_join(doctors::table.inner_join(clinics::table))
        .filter(appointments::id.eq(appointment_id))
        .select((
            (
                appointments::id,
                appointments::slot_id,
                appointments::reason,
                appointments::version,
            ),
            (slots::starts_at, slots::ends_at),
            (users::id, users::email, users::full_name),
            (doctors::id, doctors::full_name, doctors::specialty),
            (
                clinics::id,
                clinics::name,
                clinics::city,
                clinics::address,
                clinics::time_zone,
            ),
        ))
        .first(conn)
        .map_err(map_err)?;
    Ok(AppointmentSnapshot {
        appointment_id,
        slot_id,
        starts_at,
        ends_at,
        reason,
        patient: PatientInfo {
            id: patient_id,
            email,
            full_name: patient_name,
        },
        doctor: DoctorInfo {
            id: doctor_id,
            full_name: doctor_name,
            specialty,
        },
        clinic: ClinicInfo {
            id: clinic_id,
            name: clinic_name,
            city,
            address,
            time_zone,
        },
        version,
    })
}

/// Appends `event` to the outbox inside the caller's transaction.
pub fn enqueue(conn: &mut PgConnection, event: &EventEnvelope) -> Result<(), RepoError> {
    let payload = event
        .encode()
        .map_err(|e| RepoError::Internal(anyhow::anyhow!("event not encodable: {e}")))?;
    let payload = String::from_utf8(payload)
        .map_err(|e| RepoError::Internal(anyhow::anyhow!("event not UTF-8: {e}")))?;
    diesel::insert_into(outbox_events::table)
        .values((
            outbox_events::id.eq(event.id),
            outbox_events::aggregate_id.eq(event.event.aggregate_id()),
            outbox_events::topic.eq(event.event_type().topic()),
            outbox_events::event_type.eq(event.event_type().as_str()),
            outbox_events::payload.eq(payload),
            outbox_events::created_at.eq(event.occurred_at),
            outbox_events::request_id.eq(medbook_service_kit::context::request_id()),
            outbox_events::trace_parent.eq(medbook_shared::trace_context::current_traceparent()),
        ))
        .execute(conn)
        .map(|_| ())
        .map_err(map_err)
}

#[derive(QueryableByName)]
struct ClaimedRow {
    #[diesel(sql_type = BigInt)]
    seq: i64,
    #[diesel(sql_type = SqlUuid)]
    id: Uuid,
    #[diesel(sql_type = SqlUuid)]
    aggregate_id: Uuid,
    #[diesel(sql_type = diesel::sql_types::Text)]
    topic: String,
    #[diesel(sql_type = diesel::sql_types::Text)]
    event_type: String,
    #[diesel(sql_type = diesel::sql_types::Text)]
    payload: String,
    #[diesel(sql_type = diesel::sql_types::Timestamptz)]
    created_at: DateTime<Utc>,
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Text>)]
    request_id: Option<String>,
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Text>)]
    trace_parent: Option<String>,
}

/// The claim: pending, unleased rows that are the oldest pending row of their
/// appointment, locked with SKIP LOCKED so concurrent relays pass each other by.
const CLAIM: &str = "
WITH next AS (
    SELECT o.seq FROM outbox_events o
    WHERE o.sink = $4 AND o.published_at IS NULL
      AND (o.locked_until IS NULL OR o.locked_until < now())
      AND NOT EXISTS (
          SELECT 1 FROM outbox_events e
          WHERE e.sink = o.sink AND e.aggregate_id = o.aggregate_id
            AND e.published_at IS NULL AND e.seq < o.seq)
    ORDER BY o.seq
    LIMIT $1
    FOR UPDATE SKIP LOCKED
)
UPDATE outbox_events u
SET locked_by = $2, locked_until = now() + $3, attempts = u.attempts + 1
FROM next WHERE u.seq = next.seq
RETURNING u.seq, u.id, u.aggregate_id, u.topic, u.event_type, u.payload, u.created_at,
          u.request_id, u.trace_parent";

/// Published rows are deleted this many at a time, so pruning never holds long locks.
const PRUNE_CHUNK: i64 = 5_000;
const PRUNE: &str = "
DELETE FROM outbox_events WHERE seq IN (
    SELECT seq FROM outbox_events WHERE sink = $3 AND published_at < $1
    ORDER BY published_at LIMIT $2)";

/// One sink's view of the outbox table.
pub struct PgOutbox {
    db: Db,
    sink: Sink,
}

impl PgOutbox {
    pub fn new(db: Db, sink: Sink) -> Self {
        Self { db, sink }
    }
}

#[async_trait]
impl OutboxStore for PgOutbox {
    async fn claim(
        &self,
        owner: Uuid,
        limit: i64,
        lease: Duration,
    ) -> Result<Vec<PendingEvent>, RepoError> {
        let lease = diesel::pg::data_types::PgInterval::from_microseconds(
            i64::try_from(lease.as_micros()).unwrap_or(i64::MAX),
        );
        let sink = self.sink.as_str();
        self.db
            .run(move |conn| {
                let mut rows: Vec<ClaimedRow> = diesel::sql_query(CLAIM)
                    .bind::<BigInt, _>(limit)
                    .bind::<SqlUuid, _>(owner)
                    .bind::<Interval, _>(lease)
                    .bind::<diesel::sql_types::Text, _>(sink)
                    .load(conn)
                    .map_err(map_err)?;
                rows.sort_by_key(|r| r.seq);
                Ok(rows
                    .into_iter()
                    .map(|r| PendingEvent {
                        seq: r.seq,
                        id: r.id,
                        key: r.aggregate_id,
                        topic: r.topic,
                        event_type: r.event_type,
                        payload: r.payload,
                        created_at: r.created_at,
                        request_id: r.request_id,
                        trace_parent: r.trace_parent,
                    })
                    .collect())
            })
            .await
    }

    async fn mark_published(&self, seqs: Vec<i64>) -> Result<(), RepoError> {
        self.db
            .run(move |conn| {
                diesel::update(
                    outbox_events::table
                        .filter(outbox_events::seq.eq_any(&seqs))
                        .filter(outbox_events::published_at.is_null()),
                )
                .set((
                    outbox_events::published_at.eq(diesel::dsl::now),
                    // Account e-mails carry single-use links: once on the broker, the
                    // outbox keeps no copy of them.
                    outbox_events::payload.eq(diesel::dsl::sql::<diesel::sql_types::Text>(
                        &format!("CASE WHEN topic = '{TOPIC_ACCOUNTS}' THEN '' ELSE payload END"),
                    )),
                    outbox_events::locked_by.eq(None::<Uuid>),
                    outbox_events::locked_until.eq(None::<DateTime<Utc>>),
                    outbox_events::last_error.eq(None::<String>),
                ))
                .execute(conn)
                .map(|_| ())
                .map_err(map_err)
            })
            .await
    }

    async fn release(&self, owner: Uuid, seqs: Vec<i64>, error: String) -> Result<(), RepoError> {
        self.db
            .run(move |conn| {
                diesel::update(
                    outbox_events::table
                        .filter(outbox_events::seq.eq_any(&seqs))
                        .filter(outbox_events::locked_by.eq(owner)),
                )
                .set((
                    outbox_events::locked_by.eq(None::<Uuid>),
                    outbox_events::locked_until.eq(None::<DateTime<Utc>>),
                    outbox_events::last_error.eq(&error),
                ))
                .execute(conn)
                .map(|_| ())
                .map_err(map_err)
            })
            .await
    }

    async fn backlog(&self) -> Result<Backlog, RepoError> {
        let sink = self.sink.as_str();
        self.db
            .run(move |conn| {
                let (pending, oldest): (i64, Option<DateTime<Utc>>) = outbox_events::table
                    .filter(outbox_events::sink.eq(sink))
                    .filter(outbox_events::published_at.is_null())
                    .select((
                        diesel::dsl::count_star(),
                        diesel::dsl::min(outbox_events::created_at),
                    ))
                    .first(conn)
                    .map_err(map_err)?;
                Ok(Backlog { pending, oldest })
            })
            .await
    }

    async fn prune(&self, cutoff: DateTime<Utc>) -> Result<u64, RepoError> {
        let sink = self.sink.as_str();
        self.db
            .run(move |conn| {
                let mut total = 0u64;
                loop {
                    let n = diesel::sql_query(PRUNE)
                        .bind::<diesel::sql_types::Timestamptz, _>(cutoff)
                        .bind::<BigInt, _>(PRUNE_CHUNK)
                        .bind::<diesel::sql_types::Text, _>(sink)
                        .execute(conn)
                        .map_err(map_err)?;
                    total += n as u64;
                    if i64::try_from(n).is_ok_and(|n| n < PRUNE_CHUNK) {
                        return Ok(total);
                    }
                }
            })
            .await
    }
}
