//! [`PgDeliveryLog`]: the `deliveries` table as the handler's de-duplication record.

use super::Db;
use crate::domain::order::{self, Turn, TurnDecision};
use crate::service::{Claim, ClaimRequest, DeliveryLog};
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use std::time::Duration;
use uuid::Uuid;

diesel::table! {
    deliveries (event_id) {
        event_id -> Uuid,
        event_type -> Text,
        recipient -> Text,
        status -> Text,
        claimed_by -> Uuid,
        claimed_at -> Timestamptz,
        takeovers -> Int4,
        attempts -> Int4,
        sent_at -> Nullable<Timestamptz>,
        source -> Text,
    }
}

diesel::table! {
    appointment_versions (appointment_id) {
        appointment_id -> Uuid,
        version -> Int4,
        updated_at -> Timestamptz,
        told_version -> Int4,
        holder -> Nullable<Uuid>,
        held_until -> Nullable<Timestamptz>,
    }
}

const SENDING: &str = "sending";
const SENT: &str = "sent";

/// What the log says about one event, for operators (`dlq list`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryRecord {
    pub status: String,
    pub sent_at: Option<DateTime<Utc>>,
    pub takeovers: i32,
}

pub struct PgDeliveryLog {
    db: Db,
}

impl PgDeliveryLog {
    pub fn new(db: Db) -> Self {
        Self { db }
    }

    /// The records of the given events (those that have one).
    pub async fn lookup(
        &self,
        ids: Vec<Uuid>,
    ) -> anyhow::Result<std::collections::HashMap<Uuid, DeliveryRecord>> {
        self.db
            .run(move |conn| {
                let rows: Vec<(Uuid, String, Option<DateTime<Utc>>, i32)> = deliveries::table
                    .filter(deliveries::event_id.eq_any(&ids))
                    .select((
                        deliveries::event_id,
                        deliveries::status,
                        deliveries::sent_at,
                        deliveries::takeovers,
                    ))
                    .load(conn)?;
                Ok(rows
                    .into_iter()
                    .map(|(id, status, sent_at, takeovers)| {
                        (
                            id,
                            DeliveryRecord {
                                status,
                                sent_at,
                                takeovers,
                            },
                        )
                    })
                    .collect())
            })
            .await
    }
}

#[async_trait::async_trait]
impl DeliveryLog for PgDeliveryLog {
    async fn claim(
        &self,
        request: &ClaimRequest,
        owner: Uuid,
        stale_after: Duration,
    ) -> anyhow::Result<Claim> {
        let request = request.clone();
        let stale_before = Utc::now() - chrono::Duration::from_std(stale_after)?;
        self.db
            .run(move |conn| {
                conn.transaction(|conn| {
                    let existing: Option<(String, Uuid, DateTime<Utc>)> = deliveries::table
                        .find(request.event_id)
                        .select((
                            deliveries::status,
                            deliveries::claimed_by,
                            deliveries::claimed_at,
                        ))
                        .for_update()
                        .first(conn)
                        .optional()?;
                    let claim = match existing {
                        None => {
                            let inserted = diesel::insert_into(deliveries::table)
                                .values((
                                    deliveries::event_id.eq(request.event_id),
                                    deliveries::event_type.eq(&request.event_type),
                                    deliveries::recipient.eq(&request.recipient),
                                    deliveries::status.eq(SENDING),
                                    deliveries::claimed_by.eq(owner),
                                    deliveries::claimed_at.eq(diesel::dsl::now),
                                    deliveries::source.eq(&request.source),
                                ))
                                .on_conflict_do_nothing()
                                .execute(conn)?;
                            // Lost an insert race: someone else has it now.
                            if inserted == 1 {
                                Claim::Acquired { takeover: false }
                            } else {
                                Claim::HeldElsewhere
                            }
                        }
                        Some((status, _, _)) if status == SENT => Claim::AlreadySent,
                        Some((_, by, at)) if by == owner || at < stale_before => {
                            let takeover = by != owner;
                            diesel::update(deliveries::table.find(request.event_id))
                                .set((
                                    deliveries::claimed_by.eq(owner),
                                    deliveries::claimed_at.eq(diesel::dsl::now),
                                    deliveries::source.eq(&request.source),
                                    deliveries::takeovers
                                        .eq(deliveries::takeovers + i32::from(takeover)),
                                ))
                                .execute(conn)?;
                            Claim::Acquired { takeover }
                        }
                        Some(_) => Claim::HeldElsewhere,
                    };
                    Ok(claim)
                })
            })
            .await
    }

    async fn mark_sent(&self, event_id: Uuid, attempts: u32) -> anyhow::Result<()> {
        self.db
            .run(move |conn| {
                diesel::update(deliveries::table.find(event_id))
                    .set((
                        deliveries::status.eq(SENT),
                        deliveries::sent_at.eq(diesel::dsl::now),
                        deliveries::attempts.eq(i32::try_from(attempts).unwrap_or(i32::MAX)),
                    ))
                    .execute(conn)?;
                Ok(())
            })
            .await
    }

    async fn observe_version(&self, appointment_id: Uuid, version: i32) -> anyhow::Result<i32> {
        self.db
            .run(move |conn| {
                use diesel::upsert::excluded;
                let latest: i32 = diesel::insert_into(appointment_versions::table)
                    .values((
                        appointment_versions::appointment_id.eq(appointment_id),
                        appointment_versions::version.eq(version),
                    ))
                    .on_conflict(appointment_versions::appointment_id)
                    .do_update()
                    .set((
                        appointment_versions::version.eq(diesel::dsl::sql::<
                            diesel::sql_types::Integer,
                        >(
                            "GREATEST(appointment_versions.version, EXCLUDED.version)",
                        )),
                        appointment_versions::updated_at
                            .eq(excluded(appointment_versions::updated_at)),
                    ))
                    .returning(appointment_versions::version)
                    .get_result(conn)?;
                Ok(latest)
            })
            .await
    }

    async fn release(&self, event_id: Uuid, owner: Uuid) -> anyhow::Result<()> {
        self.db
            .run(move |conn| {
                diesel::delete(
                    deliveries::table
                        .find(event_id)
                        .filter(deliveries::status.eq(SENDING))
                        .filter(deliveries::claimed_by.eq(owner)),
                )
                .execute(conn)?;
                Ok(())
            })
            .await
    }

    async fn take_turn(
        &self,
        turn: &Turn,
        owner: Uuid,
        lease: Duration,
        forced: bool,
    ) -> anyhow::Result<TurnDecision> {
        let turn = *turn;
        let lease = chrono::Duration::from_std(lease)?;
        self.db
            .run(move |conn| {
                conn.transaction(|conn| {
                    // First sight of the appointment: nothing told yet. (A reminder's
                    // version is not a new version: it does not set `version`.)
                    diesel::insert_into(appointment_versions::table)
                        .values((
                            appointment_versions::appointment_id.eq(turn.appointment_id),
                            appointment_versions::version.eq(turn.version),
                            appointment_versions::told_version.eq(0),
                        ))
                        .on_conflict_do_nothing()
                        .execute(conn)?;
                    let (told, holder, held_until): (i32, Option<Uuid>, Option<DateTime<Utc>>) =
                        appointment_versions::table
                            .find(turn.appointment_id)
                            .select((
                                appointment_versions::told_version,
                                appointment_versions::holder,
                                appointment_versions::held_until,
                            ))
                            .for_update()
                            .first(conn)?;
                    let now = Utc::now();
                    let holder = holder.filter(|_| held_until.is_some_and(|t| t > now));
                    let decision = order::decide(&turn, told, holder, owner, forced);
                    if decision == TurnDecision::Go {
                        diesel::update(appointment_versions::table.find(turn.appointment_id))
                            .set((
                                appointment_versions::holder.eq(Some(owner)),
                                appointment_versions::held_until.eq(Some(now + lease)),
                            ))
                            .execute(conn)?;
                    }
                    Ok(decision)
                })
            })
            .await
    }

    async fn end_turn(&self, turn: &Turn, owner: Uuid, told: bool) -> anyhow::Result<()> {
        let turn = *turn;
        self.db
            .run(move |conn| {
                diesel::sql_query(
                    "UPDATE appointment_versions SET
                        told_version = CASE WHEN $3 THEN GREATEST(told_version, $2) ELSE told_version END,
                        holder = CASE WHEN holder = $4 THEN NULL ELSE holder END,
                        held_until = CASE WHEN holder = $4 THEN NULL ELSE held_until END,
                        updated_at = now()
                     WHERE appointment_id = $1",
                )
                .bind::<diesel::sql_types::Uuid, _>(turn.appointment_id)
                .bind::<diesel::sql_types::Integer, _>(turn.version)
                .bind::<diesel::sql_types::Bool, _>(told)
                .bind::<diesel::sql_types::Uuid, _>(owner)
                .execute(conn)?;
                Ok(())
            })
            .await
    }
}
