//! `SlotRepository`: the exclusion constraint `slots_no_overlap` is what keeps a doctor's
//! slots apart; bulk generation inserts with `ON CONFLICT DO NOTHING`, so re-running a
//! template skips what exists.

use super::audit;
use super::db::{map_err, Db};
use super::schema::{appointments, slots};
use crate::domain::audit::{json, AuditEntry};
use crate::domain::booking::{Slot, SlotStatus};
use crate::domain::schedule::SlotRange;
use crate::domain::{DoctorId, SlotId};
use crate::service::booking_ports::{GenerationReport, SlotChange, SlotFilter, SlotRepository};
use crate::service::ports::RepoError;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use uuid::Uuid;

#[derive(Queryable, Selectable, Clone)]
#[diesel(table_name = slots)]
pub(crate) struct SlotRow {
    pub id: Uuid,
    pub doctor_id: Uuid,
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
    pub status: String,
}

impl TryFrom<SlotRow> for Slot {
    type Error = RepoError;
    fn try_from(r: SlotRow) -> Result<Self, RepoError> {
        Ok(Slot {
            id: SlotId(r.id),
            doctor_id: DoctorId(r.doctor_id),
            starts_at: r.starts_at,
            ends_at: r.ends_at,
            status: r
                .status
                .parse::<SlotStatus>()
                .map_err(|e| RepoError::Internal(anyhow::anyhow!(e)))?,
        })
    }
}

#[derive(Insertable)]
#[diesel(table_name = slots)]
struct NewSlotRow {
    id: Uuid,
    doctor_id: Uuid,
    starts_at: DateTime<Utc>,
    ends_at: DateTime<Utc>,
    status: &'static str,
}

/// What the audit log records of a slot.
fn audited(s: &Slot) -> serde_json::Value {
    serde_json::json!({
        "doctor_id": s.doctor_id,
        "starts_at": s.starts_at,
        "ends_at": s.ends_at,
        "status": s.status.as_str(),
    })
}

pub struct PgSlots {
    db: Db,
}

impl PgSlots {
    pub fn new(db: Db) -> Self {
        Self { db }
    }
}

/// Locks and returns a slot.
fn lock_slot(conn: &mut PgConnection, id: Uuid) -> Result<Option<Slot>, RepoError> {
    slots::table
        .find(id)
        .select(SlotRow::as_select())
        .for_update()
        .first(conn)
        .optional()
        .map_err(map_err)?
        .map(Slot::try_from)
        .transpose()
}

#[async_trait]
impl SlotRepository for PgSlots {
    async fn create(
        &self,
        id: SlotId,
        doctor_id: DoctorId,
        range: SlotRange,
    ) -> Result<Slot, RepoError> {
        let row = NewSlotRow {
            id: id.into(),
            doctor_id: doctor_id.into(),
            starts_at: range.starts_at(),
            ends_at: range.ends_at(),
            status: SlotStatus::Available.as_str(),
        };
        self.db
            .transaction(move |conn| {
                let slot = diesel::insert_into(slots::table)
                    .values(&row)
                    .returning(SlotRow::as_returning())
                    .get_result(conn)
                    .map_err(map_err)
                    .and_then(Slot::try_from)?;
                audit::enqueue(
                    conn,
                    AuditEntry::new("slot.created", "slot", slot.id).created(&audited(&slot)),
                )?;
                Ok(slot)
            })
            .await
    }

    async fn insert_generated(
        &self,
        doctor_id: DoctorId,
        ranges: Vec<SlotRange>,
    ) -> Result<GenerationReport, RepoError> {
        let total = ranges.len() as u64;
        let rows: Vec<NewSlotRow> = ranges
            .into_iter()
            .map(|r| NewSlotRow {
                id: Uuid::new_v4(),
                doctor_id: doctor_id.into(),
                starts_at: r.starts_at(),
                ends_at: r.ends_at(),
                status: SlotStatus::Available.as_str(),
            })
            .collect();
        let (first, last) = (
            rows.first().map(|r| r.starts_at),
            rows.last().map(|r| r.ends_at),
        );
        self.db
            .transaction(move |conn| {
                let mut created = 0u64;
                for chunk in rows.chunks(2000) {
                    created += diesel::insert_into(slots::table)
                        .values(chunk)
                        .on_conflict_do_nothing()
                        .execute(conn)
                        .map_err(map_err)? as u64;
                }
                audit::enqueue(
                    conn,
                    AuditEntry::new("slots.generated", "doctor", doctor_id)
                        .field("slots_created", None, json(&created))
                        .field("slots_skipped", None, json(&(total - created)))
                        .field("from", None, json(&first))
                        .field("to", None, json(&last)),
                )?;
                Ok(GenerationReport {
                    created,
                    skipped: total - created,
                })
            })
            .await
    }

    async fn set_blocked(&self, id: SlotId, blocked: bool) -> Result<SlotChange, RepoError> {
        self.db
            .transaction(move |conn| {
                let Some(slot) = lock_slot(conn, id.into())? else {
                    return Ok(SlotChange::NotFound);
                };
                if slot.status == SlotStatus::Booked {
                    return Ok(SlotChange::Booked);
                }
                let status = if blocked {
                    SlotStatus::Blocked
                } else {
                    SlotStatus::Available
                };
                let updated = diesel::update(slots::table.find(id))
                    .set(slots::status.eq(status.as_str()))
                    .returning(SlotRow::as_returning())
                    .get_result(conn)
                    .map_err(map_err)?;
                let action = if blocked {
                    "slot.blocked"
                } else {
                    "slot.unblocked"
                };
                audit::enqueue(
                    conn,
                    AuditEntry::new(action, "slot", id).field(
                        "status",
                        json(&slot.status.as_str()),
                        json(&status.as_str()),
                    ),
                )?;
                Ok(SlotChange::Done(Some(Slot::try_from(updated)?)))
            })
            .await
    }

    async fn delete_unbooked(&self, id: SlotId) -> Result<SlotChange, RepoError> {
        self.db
            .transaction(move |conn| {
                let Some(slot) = lock_slot(conn, id.into())? else {
                    return Ok(SlotChange::NotFound);
                };
                let has_history: bool = diesel::select(diesel::dsl::exists(
                    appointments::table.filter(appointments::slot_id.eq(id)),
                ))
                .get_result(conn)
                .map_err(map_err)?;
                if slot.status == SlotStatus::Booked || has_history {
                    return Ok(SlotChange::Booked);
                }
                diesel::delete(slots::table.find(id))
                    .execute(conn)
                    .map_err(map_err)?;
                audit::enqueue(
                    conn,
                    AuditEntry::new("slot.deleted", "slot", id).deleted(&audited(&slot)),
                )?;
                Ok(SlotChange::Done(None))
            })
            .await
    }

    async fn get(&self, id: SlotId) -> Result<Option<Slot>, RepoError> {
        self.db
            .run(move |conn| {
                slots::table
                    .find(id)
                    .select(SlotRow::as_select())
                    .first(conn)
                    .optional()
                    .map_err(map_err)?
                    .map(Slot::try_from)
                    .transpose()
            })
            .await
    }

    async fn list(&self, f: SlotFilter) -> Result<Vec<Slot>, RepoError> {
        self.db
            .run(move |conn| {
                let mut q = slots::table
                    .filter(slots::doctor_id.eq(f.doctor_id))
                    .filter(slots::starts_at.ge(f.from))
                    .filter(slots::starts_at.lt(f.to))
                    .into_boxed();
                if let Some(s) = f.status {
                    q = q.filter(slots::status.eq(s.as_str()));
                }
                q.order(slots::starts_at.asc())
                    .limit(2000)
                    .select(SlotRow::as_select())
                    .load(conn)
                    .map_err(map_err)?
                    .into_iter()
                    .map(Slot::try_from)
                    .collect()
            })
            .await
    }
}
