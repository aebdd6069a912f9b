//! Slots: public listing, admin creation (single and from a template), block, delete.

use crate::domain::{DoctorId, SlotId};
use crate::service::booking_ports::SlotFilter;
use crate::transport::http::dto::slots::{
    GenerateSlotsRequest, GenerationResponse, SlotList, SlotListQuery, SlotRequest, SlotResponse,
};
use crate::transport::http::error::ApiError;
use crate::transport::http::extractors::AdminCaller;
use crate::transport::http::state::AppState;
use chrono::Utc;
use paperclip::actix::{api_v2_operation, web, CreatedJson, NoContent};
use uuid::Uuid;

/// List a doctor's slots
///
/// From `from` (default now) to `to` (default 14 days later, at most 62).
#[api_v2_operation(tags(Slots))]
pub async fn list(
    state: web::Data<AppState>,
    id: web::Path<Uuid>,
    query: web::Query<SlotListQuery>,
) -> Result<web::Json<SlotList>, ApiError> {
    let filter = SlotFilter::try_from((id.into_inner(), query.into_inner(), Utc::now()))?;
    let slots = state.slots.list(filter).await?;
    Ok(web::Json(SlotList {
        items: slots.into_iter().map(Into::into).collect(),
    }))
}

/// Create a slot
///
/// 409 `slot_overlap` when it overlaps another slot of the doctor (back-to-back is fine).
#[api_v2_operation(tags(Slots))]
pub async fn create(
    state: web::Data<AppState>,
    _admin: AdminCaller,
    id: web::Path<Uuid>,
    body: web::Json<SlotRequest>,
) -> Result<CreatedJson<SlotResponse>, ApiError> {
    let range = body.into_inner().into_range()?;
    Ok(CreatedJson(
        state
            .slots
            .create(DoctorId(id.into_inner()), range)
            .await?
            .into(),
    ))
}

/// Generate slots from a weekly template
///
/// Laid out in the clinic's time zone, correct across daylight-saving changes; slots
/// that already exist (or overlap existing ones) are skipped, so re-running is harmless.
#[api_v2_operation(tags(Slots))]
pub async fn generate(
    state: web::Data<AppState>,
    _admin: AdminCaller,
    id: web::Path<Uuid>,
    body: web::Json<GenerateSlotsRequest>,
) -> Result<web::Json<GenerationResponse>, ApiError> {
    let template = body.into_inner().into_template()?;
    Ok(web::Json(
        state
            .slots
            .generate(DoctorId(id.into_inner()), template)
            .await?
            .into(),
    ))
}

/// Block a slot
#[api_v2_operation(tags(Slots))]
pub async fn block(
    state: web::Data<AppState>,
    _admin: AdminCaller,
    id: web::Path<Uuid>,
) -> Result<web::Json<SlotResponse>, ApiError> {
    Ok(web::Json(
        state
            .slots
            .set_blocked(SlotId(id.into_inner()), true)
            .await?
            .into(),
    ))
}

/// Unblock a slot
#[api_v2_operation(tags(Slots))]
pub async fn unblock(
    state: web::Data<AppState>,
    _admin: AdminCaller,
    id: web::Path<Uuid>,
) -> Result<web::Json<SlotResponse>, ApiError> {
    Ok(web::Json(
        state
            .slots
            .set_blocked(SlotId(id.into_inner()), false)
            .await?
            .into(),
    ))
}

/// Delete a slot
///
/// Only slots that were never booked.
#[api_v2_operation(tags(Slots))]
pub async fn delete(
    state: web::Data<AppState>,
    _admin: AdminCaller,
    id: web::Path<Uuid>,
) -> Result<NoContent, ApiError> {
    state.slots.delete(SlotId(id.into_inner())).await?;
    Ok(NoContent)
}
