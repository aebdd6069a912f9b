//! `CalendarRepository` over PostgreSQL: feed tokens (hashed) on the patient's account
//! and on the doctor, and the feed's appointments with what their events carry.

use super::audit::AuditRecord;
use super::db::{map_err, Db};
use super::parties::{parties_columns, PartiesRow};
use super::sql::Sql;
use crate::domain::audit::AuditEntry;
use crate::service::calendar::{CalendarRepository, FeedItem, FeedOwner};
use crate::service::ports::RepoError;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{Bool, Integer, Text, Timestamptz, Uuid as SqlUuid};
use medbook_shared::events::AppointmentSnapshot;
use uuid::Uuid;

#[derive(QueryableByName)]
struct OwnerRow {
    #[diesel(sql_type = Text)]
    kind: String,
    #[diesel(sql_type = SqlUuid)]
    id: Uuid,
    #[diesel(sql_type = Text)]
    name: String,
}

/// Appointments of a patient or a doctor (`$1` is whose, `$2` which side), booked or
/// done or cancelled, from `$3` on.
macro_rules! items_query {
    ($side:literal) => {
        concat!(
            "
SELECT a.id, a.slot_id, a.starts_at, a.ends_at, a.reason, a.version, a.status = 'cancelled' AS cancelled,
       a.updated_at, ",
            parties_columns!(),
            "
FROM appointments a
JOIN users u ON u.id = a.patient_id
JOIN doctors d ON d.id = a.doctor_id
JOIN clinics c ON c.id = d.clinic_id
WHERE ",
            $side,
            " = $1 AND a.starts_at >= $2
ORDER BY a.starts_at, a.id
LIMIT 1000"
        )
    };
}

#[derive(QueryableByName)]
struct ItemRow {
    #[diesel(sql_type = SqlUuid)]
    id: Uuid,
    #[diesel(sql_type = SqlUuid)]
    slot_id: Uuid,
    #[diesel(sql_type = Timestamptz)]
    starts_at: DateTime<Utc>,
    #[diesel(sql_type = Timestamptz)]
    ends_at: DateTime<Utc>,
    #[diesel(sql_type = Text)]
    reason: String,
    #[diesel(sql_type = Integer)]
    version: i32,
    #[diesel(sql_type = Bool)]
    cancelled: bool,
    #[diesel(sql_type = Timestamptz)]
    updated_at: DateTime<Utc>,
    #[diesel(embed)]
    parties: PartiesRow,
}

impl From<ItemRow> for FeedItem {
    fn from(r: ItemRow) -> Self {
        let (patient, doctor, clinic) = r.parties.infos();
        FeedItem {
            appointment: AppointmentSnapshot {
                appointment_id: r.id,
                slot_id: r.slot_id,
                starts_at: r.starts_at,
                ends_at: r.ends_at,
                reason: r.reason,
                patient,
                doctor,
                clinic,
                version: r.version,
                manage_url: None,
            },
            cancelled: r.cancelled,
            updated_at: r.updated_at,
        }
    }
}

pub struct PgCalendars {
    db: Db,
}

impl PgCalendars {
    pub fn new(db: Db) -> Self {
        Self { db }
    }
}

#[async_trait]
impl CalendarRepository for PgCalendars {
    async fn set_token(&self, owner: FeedOwner, token_hash: String) -> Result<bool, RepoError> {
        self.db
            .transaction(move |conn| {
                let (sql, id, entity) = match owner {
                    FeedOwner::Patient(u) => (
                        "UPDATE users SET calendar_token_hash = $1 WHERE id = $2",
                        u.0,
                        "user",
                    ),
                    FeedOwner::Doctor(d) => (
                        "UPDATE doctors SET calendar_token_hash = $1 WHERE id = $2",
                        d.0,
                        "doctor",
                    ),
                };
                let n = Sql::new(sql)
                    .bind::<Text, _>(token_hash.clone())
                    .bind::<SqlUuid, _>(id)
                    .execute(conn)
                    .map_err(map_err)?;
                if n == 0 {
                    return Ok(false);
                }
                // The token is a secret: the record says that it changed, not what to.
                AuditRecord::from_entry(
                    AuditEntry::new("calendar_feed.rotated", entity, id).field(
                        "calendar_feed",
                        None,
                        Some(serde_json::json!("rotated")),
                    ),
                    Utc::now(),
                )
                .row()?
                .insert(conn)?;
                Ok(true)
            })
            .await
    }

    async fn owner(&self, token_hash: String) -> Result<Option<(FeedOwner, String)>, RepoError> {
        self.db
            .run(move |conn| {
                let row = Sql::new(
                    "SELECT 'patient' AS kind, id, full_name AS name FROM users
                      WHERE calendar_token_hash = $1 AND role = 'patient'
                     UNION ALL
                     SELECT 'doctor' AS kind, id, full_name AS name FROM doctors
                      WHERE calendar_token_hash = $1",
                )
                .bind::<Text, _>(token_hash)
                .get_result::<OwnerRow>(conn)
                .optional()
                .map_err(map_err)?;
                Ok(row.map(|r| {
                    let owner = if r.kind == "doctor" {
                        FeedOwner::Doctor(crate::domain::DoctorId(r.id))
                    } else {
                        FeedOwner::Patient(crate::domain::UserId(r.id))
                    };
                    (owner, r.name)
                }))
            })
            .await
    }

    async fn items(
        &self,
        owner: FeedOwner,
        since: DateTime<Utc>,
    ) -> Result<Vec<FeedItem>, RepoError> {
        self.db
            .run(move |conn| {
                let q = match owner {
                    FeedOwner::Patient(u) => {
                        Sql::new(items_query!("a.patient_id")).bind::<SqlUuid, _>(u.0)
                    }
                    FeedOwner::Doctor(d) => {
                        Sql::new(items_query!("a.doctor_id")).bind::<SqlUuid, _>(d.0)
                    }
                };
                Ok(q.bind::<Timestamptz, _>(since)
                    .load::<ItemRow>(conn)
                    .map_err(map_err)?
                    .into_iter()
                    .map(FeedItem::from)
                    .collect())
            })
            .await
    }
}
