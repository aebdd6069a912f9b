//! [`PgDeliveryLog`]: the `deliveries` table as the handler's de-duplication record.
//! A claim is stamped with the handler's clock (`now`), the same clock that later
//! judges it stale.

use super::Db;
use crate::service::ports::{Claim, ClaimRequest, DeliveryLog};
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
        now: DateTime<Utc>,
    ) -> anyhow::Result<Claim> {
        let request = request.clone();
        let stale_before = now - chrono::Duration::from_std(stale_after)?;
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
                                    deliveries::claimed_at.eq(now),
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
                                    deliveries::claimed_at.eq(now),
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
}
