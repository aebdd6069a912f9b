//! `ReviewRepository`: a review and the doctor's rating totals change together.

use super::audit;
use super::db::{map_err, Db};
use super::schema::{appointments, doctors, reviews, slots, users};
use crate::domain::audit::AuditEntry;
use crate::domain::booking::{AppointmentStatus, AuthorShownAs, Review};
use crate::domain::rejection::check_reviewable;
use crate::domain::{DoctorId, ReviewId};
use crate::service::booking_ports::{ReviewCommand, ReviewRejection, ReviewRepository};
use crate::service::ports::{Page, PageRequest, RepoError};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use uuid::Uuid;

type ReviewTuple = (Uuid, Uuid, String, String, i16, String, DateTime<Utc>);

/// What a review shows, with the reviewer's name from `users` (shown only as the
/// reviewer chose: [`AuthorShownAs::display`]).
macro_rules! review_columns {
    () => {
        (
            reviews::id,
            reviews::doctor_id,
            users::full_name,
            reviews::author_shown_as,
            reviews::rating,
            reviews::text,
            reviews::created_at,
        )
    };
}

fn to_review(
    (id, doctor_id, full_name, shown_as, rating, text, created_at): ReviewTuple,
) -> Result<Review, RepoError> {
    let author_shown_as = AuthorShownAs::parse(&shown_as)
        .map_err(|e| RepoError::Internal(anyhow::anyhow!("reviews.author_shown_as {e}")))?;
    Ok(Review {
        id: ReviewId(id),
        doctor_id: DoctorId(doctor_id),
        author: author_shown_as.display(&full_name),
        author_shown_as,
        rating,
        text,
        created_at,
    })
}

pub struct PgReviews {
    db: Db,
}

impl PgReviews {
    pub fn new(db: Db) -> Self {
        Self { db }
    }
}

#[async_trait]
impl ReviewRepository for PgReviews {
    async fn create(
        &self,
        cmd: ReviewCommand,
    ) -> Result<Result<Review, ReviewRejection>, RepoError> {
        let result = self
            .db
            .transaction(move |conn| {
                let row: Option<(String, DateTime<Utc>)> = appointments::table
                    .inner_join(slots::table)
                    .filter(appointments::id.eq(cmd.appointment_id))
                    .filter(appointments::patient_id.eq(cmd.patient_id))
                    .filter(appointments::doctor_id.eq(cmd.doctor_id))
                    .select((appointments::status, slots::ends_at))
                    .for_update()
                    .first(conn)
                    .optional()
                    .map_err(map_err)?;
                let found = match row {
                    None => None,
                    Some((status, ends_at)) => Some((
                        status.parse::<AppointmentStatus>().map_err(|e| {
                            RepoError::Internal(anyhow::anyhow!("appointments.status {e}"))
                        })?,
                        ends_at,
                    )),
                };
                if let Err(rejected) = check_reviewable(found, cmd.now) {
                    return Ok(Err(rejected));
                }
                diesel::insert_into(reviews::table)
                    .values((
                        reviews::id.eq(cmd.review_id),
                        reviews::doctor_id.eq(cmd.doctor_id),
                        reviews::patient_id.eq(cmd.patient_id),
                        reviews::appointment_id.eq(cmd.appointment_id),
                        reviews::rating.eq(cmd.rating.get()),
                        reviews::text.eq(&cmd.text),
                        reviews::created_at.eq(cmd.now),
                        reviews::author_shown_as.eq(cmd.author_shown_as.as_str()),
                    ))
                    .execute(conn)
                    .map_err(map_err)?;
                diesel::update(doctors::table.find(cmd.doctor_id))
                    .set((
                        doctors::rating_sum.eq(doctors::rating_sum + i64::from(cmd.rating.get())),
                        doctors::rating_count.eq(doctors::rating_count + 1),
                    ))
                    .execute(conn)
                    .map_err(map_err)?;
                let review = reviews::table
                    .inner_join(users::table)
                    .filter(reviews::id.eq(cmd.review_id))
                    .select(review_columns!())
                    .first::<ReviewTuple>(conn)
                    .map_err(map_err)?;
                audit::enqueue(
                    conn,
                    AuditEntry::new("review.created", "review", cmd.review_id).created(
                        &serde_json::json!({
                            "doctor_id": cmd.doctor_id,
                            "appointment_id": cmd.appointment_id,
                            "rating": cmd.rating.get(),
                            "author_shown_as": cmd.author_shown_as.as_str(),
                        }),
                    ),
                )?;
                to_review(review).map(Ok)
            })
            .await;
        match result {
            Err(RepoError::UniqueViolation(c)) if c == "reviews_appointment_id_key" => {
                Ok(Err(ReviewRejection::AlreadyReviewed))
            }
            other => other,
        }
    }

    async fn list(
        &self,
        doctor_id: DoctorId,
        page: PageRequest,
    ) -> Result<Page<Review>, RepoError> {
        self.db
            .run(move |conn| {
                let total: i64 = reviews::table
                    .filter(reviews::doctor_id.eq(doctor_id))
                    .count()
                    .get_result(conn)
                    .map_err(map_err)?;
                let rows = reviews::table
                    .inner_join(users::table)
                    .filter(reviews::doctor_id.eq(doctor_id))
                    .order((reviews::created_at.desc(), reviews::id.asc()))
                    .limit(i64::from(page.per_page))
                    .offset(page.offset())
                    .select(review_columns!())
                    .load::<ReviewTuple>(conn)
                    .map_err(map_err)?;
                Ok(Page {
                    items: rows.into_iter().map(to_review).collect::<Result<_, _>>()?,
                    total,
                    page: page.page,
                    per_page: page.per_page,
                })
            })
            .await
    }
}
