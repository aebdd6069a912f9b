//! The `appointment_reminders` table, as the scheduler sees it ([`PgReminders`]: claim
//! due rows, write their events, mark them published). Rows are written and removed by
//! the appointment transactions, with the rest of each decision
//! (`repository::appointments`).

use super::db::{map_err, Db};
use super::outbox;
use super::schema::appointment_reminders;
use crate::service::ports::RepoError;
use crate::service::reminders::{ReminderBatch, ReminderStore};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Text, Timestamptz, Uuid as SqlUuid};
use medbook_shared::events::{AppointmentEvent, EventEnvelope, Reminder};
use uuid::Uuid;

#[derive(QueryableByName)]
struct DueRow {
    #[diesel(sql_type = SqlUuid)]
    id: Uuid,
    #[diesel(sql_type = SqlUuid)]
    appointment_id: Uuid,
    #[diesel(sql_type = Text)]
    offset_label: String,
    #[diesel(sql_type = Timestamptz)]
    due_at: DateTime<Utc>,
}

/// Due rows, claimed: the first `$2` due rows that nobody else holds, each locked with
/// its appointment in one step (SKIP LOCKED on both), so that replicas running the
/// scheduler at once claim disjoint rows and share the work — rows another replica
/// holds, or whose appointment is being changed right now, are passed over for the
/// next free ones, never waited for. (Picking the first rows first and locking them
/// afterwards would give every replica the same rows, and all but one nothing.)
const CLAIM_DUE: &str = "
SELECT r.id, r.appointment_id, r.offset_label, r.due_at
FROM appointment_reminders r
JOIN appointments a ON a.id = r.appointment_id
WHERE r.published_at IS NULL AND r.due_at <= $1
ORDER BY r.due_at
LIMIT $2
FOR UPDATE OF r, a SKIP LOCKED";

pub struct PgReminders {
    db: Db,
    /// The manage link every reminder carries.
    links: crate::domain::links::ManageLinks,
}

impl PgReminders {
    pub fn new(db: Db, links: crate::domain::links::ManageLinks) -> Self {
        Self { db, links }
    }
}

#[async_trait]
impl ReminderStore for PgReminders {
    async fn publish_due(
        &self,
        now: DateTime<Utc>,
        limit: i64,
    ) -> Result<ReminderBatch, RepoError> {
        let links = self.links.clone();
        self.db
            .transaction(move |conn| {
                let rows: Vec<DueRow> = diesel::sql_query(CLAIM_DUE)
                    .bind::<Timestamptz, _>(now)
                    .bind::<BigInt, _>(limit)
                    .load(conn)
                    .map_err(map_err)?;
                let mut batch = ReminderBatch::default();
                for row in rows {
                    let appointment =
                        super::appointments::current_snapshot(conn, row.appointment_id, &links)?;
                    // Rows are replaced with every change of the appointment, so the
                    // snapshot's version is the row's. An appointment that has started
                    // means the scheduler was down for the reminder's whole window: a
                    // reminder now would be late.
                    if appointment.has_started(now) {
                        diesel::delete(appointment_reminders::table.find(row.id))
                            .execute(conn)
                            .map_err(map_err)?;
                        batch.skipped_started += 1;
                        continue;
                    }
                    let event = EventEnvelope::new(
                        now,
                        AppointmentEvent::Reminder(Reminder {
                            appointment,
                            offset: row.offset_label,
                            due_at: row.due_at,
                        }),
                    );
                    outbox::enqueue(conn, &event)?;
                    diesel::update(appointment_reminders::table.find(row.id))
                        .set((
                            appointment_reminders::published_at.eq(now),
                            appointment_reminders::event_id.eq(event.id),
                        ))
                        .execute(conn)
                        .map_err(map_err)?;
                    batch
                        .published
                        .push((now - row.due_at).to_std().unwrap_or_default());
                }
                Ok(batch)
            })
            .await
    }

    async fn pending(&self) -> Result<i64, RepoError> {
        self.db
            .run(|conn| {
                appointment_reminders::table
                    .filter(appointment_reminders::published_at.is_null())
                    .count()
                    .get_result(conn)
                    .map_err(map_err)
            })
            .await
    }
}
