//! [`PgOrderStore`]: the `appointment_versions` table as the order of each appointment's
//! e-mails, shared by every worker of the consumer group ([`crate::domain::order`]).
//! A lease runs out by the handler's clock (`now`).

use super::Db;
use crate::domain::order::{self, Turn, TurnDecision};
use crate::service::ports::OrderStore;
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use std::time::Duration;
use uuid::Uuid;

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

pub struct PgOrderStore {
    db: Db,
}

impl PgOrderStore {
    pub fn new(db: Db) -> Self {
        Self { db }
    }
}

#[async_trait::async_trait]
impl OrderStore for PgOrderStore {
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

    async fn take_turn(
        &self,
        turn: &Turn,
        owner: Uuid,
        lease: Duration,
        forced: bool,
        now: DateTime<Utc>,
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
