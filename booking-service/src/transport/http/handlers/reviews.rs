//! `/api/v1/doctors/{id}/reviews`: anyone reads a doctor's reviews; the patient of a
//! past visit writes one.

use crate::domain::AppointmentId;
use crate::domain::DoctorId;
use crate::service::ports::PageRequest;
use crate::transport::http::dto::appointments::{
    PageQuery, ReviewPage, ReviewRequest, ReviewResponse,
};
use crate::transport::http::error::ApiError;
use crate::transport::http::extractors::PatientCaller;
use crate::transport::http::state::AppState;
use paperclip::actix::{api_v2_operation, web, CreatedJson};
use uuid::Uuid;

/// List a doctor's reviews
#[api_v2_operation(tags(Reviews))]
pub async fn list_reviews(
    state: web::Data<AppState>,
    id: web::Path<Uuid>,
    query: web::Query<PageQuery>,
) -> Result<web::Json<ReviewPage>, ApiError> {
    let page = PageRequest::try_from(query.into_inner())?;
    let doctor_id = id.into_inner();
    state.catalog.doctor(DoctorId(doctor_id)).await?;
    let result = state.reviews.list(DoctorId(doctor_id), page).await?;
    Ok(web::Json(ReviewPage::from(result)))
}

/// Review a doctor
///
/// Only the patient of a past, not cancelled appointment with this doctor, once.
#[api_v2_operation(tags(Reviews))]
pub async fn create_review(
    state: web::Data<AppState>,
    PatientCaller(patient): PatientCaller,
    id: web::Path<Uuid>,
    body: web::Json<ReviewRequest>,
) -> Result<CreatedJson<ReviewResponse>, ApiError> {
    let (rating, text, shown_as) = body.parse()?;
    let review = state
        .reviews
        .create(
            patient,
            DoctorId(id.into_inner()),
            AppointmentId(body.appointment_id),
            rating,
            text,
            shown_as,
        )
        .await?;
    Ok(CreatedJson(review.into()))
}
