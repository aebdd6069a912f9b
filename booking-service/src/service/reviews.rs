//! Reviews: only the patient of a past, not cancelled appointment may review it, once.

use super::booking_ports::{ReviewCommand, ReviewRejection, ReviewRepository};
use super::cache_ports::{doctor_cache_key, Cache};
use super::ports::{Clock, Page, PageRequest};
use super::ServiceError;
use crate::domain::booking::{AuthorShownAs, Rating, Review};
use crate::domain::UserId;
use crate::domain::{AppointmentId, DoctorId, ReviewId};
use std::sync::Arc;
use uuid::Uuid;

pub struct ReviewService {
    reviews: Arc<dyn ReviewRepository>,
    cache: Arc<dyn Cache>,
    clock: Arc<dyn Clock>,
}

impl ReviewService {
    pub fn new(
        reviews: Arc<dyn ReviewRepository>,
        cache: Arc<dyn Cache>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            reviews,
            cache,
            clock,
        }
    }

    #[tracing::instrument(skip_all, fields(doctor_id = %doctor_id))]
    pub async fn create(
        &self,
        patient: UserId,
        doctor_id: DoctorId,
        appointment_id: AppointmentId,
        rating: Rating,
        text: String,
        author_shown_as: AuthorShownAs,
    ) -> Result<Review, ServiceError> {
        let cmd = ReviewCommand {
            review_id: ReviewId(Uuid::new_v4()),
            doctor_id,
            patient_id: patient,
            appointment_id,
            rating,
            text,
            author_shown_as,
            now: self.clock.now(),
        };
        let review = self.reviews.create(cmd).await?.map_err(|r| match r {
            ReviewRejection::NotYourAppointment => ServiceError::NotFound("appointment"),
            other => ServiceError::Rejected(other.into()),
        })?;
        // The doctor's rating summary changed.
        self.cache.invalidate(&doctor_cache_key(doctor_id)).await;
        Ok(review)
    }

    pub async fn list(
        &self,
        doctor_id: DoctorId,
        page: PageRequest,
    ) -> Result<Page<Review>, ServiceError> {
        Ok(self.reviews.list(doctor_id, page).await?)
    }
}
