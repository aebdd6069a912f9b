//! The outbox table: appointment transactions append their event with [`enqueue`];
//! [`PgOutbox`] is the relay's view (claim, mark published, release, prune).

use super::db::{map_err, Db};
use super::schema::outbox_events;
use crate::service::outbox::{Backlog, OutboxStore, PendingEvent, Sink};
use crate::service::ports::RepoError;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Interval, Uuid as SqlUuid};
use medbook_shared::events::{EventEnvelope, TOPIC_ACCOUNTS};
use std::time::Duration;
use uuid::Uuid;

/// One outbox row, as every writer fills it: Diesel's [`enqueue`] and
/// [`super::audit::enqueue`], and the appointment changes' single statements, which bind
/// the same row ([`OutboxRow::bind`]). One shape, written one way.
#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = outbox_events)]
pub struct OutboxRow {
    pub id: Uuid,
    pub aggregate_id: Uuid,
    pub topic: String,
    pub event_type: String,
    /// The exact JSON published.
    pub payload: String,
    pub created_at: DateTime<Utc>,
    /// The request that caused it.
    pub request_id: Option<String>,
    pub sink: &'static str,
    /// The writer's W3C `traceparent`, so the publication joins the change's trace.
    pub trace_parent: Option<String>,
}

/// The columns [`OutboxRow::bind`] binds, in its order.
pub const OUTBOX_COLUMNS: &str =
    "id, aggregate_id, topic, event_type, payload, created_at, request_id, sink, trace_parent";

impl OutboxRow {
    /// `event`'s row for the Kafka sink, in the current request's context.
    pub fn event(event: &EventEnvelope) -> Result<Self, RepoError> {
        let payload = event
            .encode()
            .map_err(|e| RepoError::Internal(anyhow::anyhow!("event not encodable: {e}")))?;
        let payload = String::from_utf8(payload)
            .map_err(|e| RepoError::Internal(anyhow::anyhow!("event not UTF-8: {e}")))?;
        Ok(Self {
            id: event.id,
            aggregate_id: event.event.aggregate_id(),
            topic: event.event_type().topic().to_owned(),
            event_type: event.event_type().as_str().to_owned(),
            payload,
            created_at: event.occurred_at,
            request_id: medbook_service_kit::context::request_id(),
            sink: Sink::Kafka.as_str(),
            trace_parent: medbook_shared::trace_context::current_traceparent(),
        })
    }

    /// The row's nine columns as the next binds of a hand-written statement, in
    /// [`OUTBOX_COLUMNS`] order.
    pub fn bind(self, q: super::sql::Sql) -> super::sql::Sql {
        use diesel::sql_types::{Nullable, Text, Timestamptz};
        q.bind::<SqlUuid, _>(self.id)
            .bind::<SqlUuid, _>(self.aggregate_id)
            .bind::<Text, _>(self.topic)
            .bind::<Text, _>(self.event_type)
            .bind::<Text, _>(self.payload)
            .bind::<Timestamptz, _>(self.created_at)
            .bind::<Nullable<Text>, _>(self.request_id)
            .bind::<Text, _>(self.sink)
            .bind::<Nullable<Text>, _>(self.trace_parent)
    }

    /// Inserts the row in the caller's transaction.
    pub fn insert(self, conn: &mut PgConnection) -> Result<(), RepoError> {
        diesel::insert_into(outbox_events::table)
            .values(self)
            .execute(conn)
            .map(|_| ())
            .map_err(map_err)
    }
}

/// Appends `event` to the outbox inside the caller's transaction.
pub fn enqueue(conn: &mut PgConnection, event: &EventEnvelope) -> Result<(), RepoError> {
    OutboxRow::event(event)?.insert(conn)
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
