//! Past visits for the demo data set. Booking rules (rightly) refuse slots in the past,
//! so history is written directly: a past slot, a completed appointment and, often, a
//! review, with the doctor's rating totals updated in the same transaction.

use super::db::{map_err, Db};
use super::schema::{appointments, doctors, reviews, slots};
use crate::service::ports::RepoError;
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use uuid::Uuid;

/// One past visit to write.
#[derive(Debug, Clone)]
pub struct PastVisit {
    pub doctor_id: Uuid,
    pub patient_id: Uuid,
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
    pub review: Option<(i16, String)>,
    /// `completed`, or `booked` for a visit of today whose attendance the doctor has
    /// yet to record.
    pub status: &'static str,
}

/// Writes the visits; a visit whose slot would overlap an existing one is skipped.
pub async fn insert_past_visits(db: &Db, visits: Vec<PastVisit>) -> Result<u64, RepoError> {
    db.transaction(move |conn| {
        let mut written = 0;
        for v in &visits {
            let slot_id = Uuid::new_v4();
            let inserted = diesel::insert_into(slots::table)
                .values((
                    slots::id.eq(slot_id),
                    slots::doctor_id.eq(v.doctor_id),
                    slots::starts_at.eq(v.starts_at),
                    slots::ends_at.eq(v.ends_at),
                    slots::status.eq("booked"),
                ))
                .on_conflict_do_nothing()
                .execute(conn)
                .map_err(map_err)?;
            if inserted == 0 {
                continue;
            }
            let appointment_id = Uuid::new_v4();
            diesel::insert_into(appointments::table)
                .values((
                    appointments::id.eq(appointment_id),
                    appointments::slot_id.eq(slot_id),
                    appointments::patient_id.eq(v.patient_id),
                    appointments::doctor_id.eq(v.doctor_id),
                    appointments::status.eq(v.status),
                    appointments::reason.eq("Routine visit"),
                    appointments::starts_at.eq(v.starts_at),
                    appointments::ends_at.eq(v.ends_at),
                    appointments::created_at.eq(v.starts_at - chrono::Duration::days(7)),
                    appointments::updated_at.eq(v.ends_at),
                ))
                .execute(conn)
                .map_err(map_err)?;
            if let Some((rating, text)) = &v.review {
                diesel::insert_into(reviews::table)
                    .values((
                        reviews::id.eq(Uuid::new_v4()),
                        reviews::doctor_id.eq(v.doctor_id),
                        reviews::patient_id.eq(v.patient_id),
                        reviews::appointment_id.eq(appointment_id),
                        reviews::rating.eq(rating),
                        reviews::text.eq(text),
                        reviews::created_at.eq(v.ends_at + chrono::Duration::hours(2)),
                    ))
                    .execute(conn)
                    .map_err(map_err)?;
                diesel::update(doctors::table.find(v.doctor_id))
                    .set((
                        doctors::rating_sum.eq(doctors::rating_sum + i64::from(*rating)),
                        doctors::rating_count.eq(doctors::rating_count + 1),
                    ))
                    .execute(conn)
                    .map_err(map_err)?;
            }
            written += 1;
        }
        Ok(written)
    })
    .await
}

/// Whether any clinic exists (the demo data is loaded only into an empty database).
pub async fn has_clinics(db: &Db) -> Result<bool, RepoError> {
    db.run(|conn| {
        diesel::select(diesel::dsl::exists(
            super::schema::clinics::table.select(super::schema::clinics::id),
        ))
        .get_result(conn)
        .map_err(map_err)
    })
    .await
}
