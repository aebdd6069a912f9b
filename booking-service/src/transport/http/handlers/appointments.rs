//! `/api/v1/appointments`: a patient books; a patient (their own) or an admin (any)
//! lists, reads, cancels and reschedules.

use crate::domain::{AppointmentId, SlotId};
use crate::service::booking_ports::AppointmentFilter;
use crate::transport::http::dto::appointments::{
    AppointmentListQuery, AppointmentPage, AppointmentResponse, BookRequest, CancelRequest,
    RescheduleRequest,
};
use crate::transport::http::dto::filters::Listing;
use crate::transport::http::error::ApiError;
use crate::transport::http::extractors::{ActorCaller, IdempotencyKey, PatientCaller};
use crate::transport::http::state::AppState;
use actix_web::HttpResponse;
use paperclip::actix::{api_v2_operation, web};
use uuid::Uuid;

/// Book an appointment
///
/// Of concurrent bookings of one slot exactly one succeeds; the others get 409
/// `slot_taken`. With an `Idempotency-Key` header a retry returns the original
/// appointment (200) instead of booking twice; the same key with a different body is 422.
#[api_v2_operation(tags(Appointments))]
pub async fn book(
    state: web::Data<AppState>,
    PatientCaller(patient): PatientCaller,
    key: IdempotencyKey,
    body: web::Json<BookRequest>,
) -> Result<HttpResponse, ApiError> {
    let reason = body.reason()?;
    let booked = state
        .appointments
        .book(patient, SlotId(body.slot_id), reason, key.key)
        .await?;
    Ok(booked_response(booked))
}

/// 201 with a new booking, 200 with the one an earlier request with the same
/// `Idempotency-Key` made.
pub(super) fn booked_response(booked: crate::service::booking_ports::Booked) -> HttpResponse {
    let body = AppointmentResponse::from(booked.appointment);
    if booked.replayed {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::Created().json(body)
    }
}

/// List appointments
///
/// Patients see their own; admins see all, filtered.
#[api_v2_operation(tags(Appointments))]
pub async fn list(
    state: web::Data<AppState>,
    ActorCaller(actor): ActorCaller,
    query: web::Query<AppointmentListQuery>,
) -> Result<web::Json<AppointmentPage>, ApiError> {
    let Listing { filter, page } = Listing::<AppointmentFilter>::try_from(query.into_inner())?;
    let result = state.appointments.list(actor, filter, page).await?;
    Ok(web::Json(AppointmentPage::from(result)))
}

/// Get an appointment
///
/// Another patient's appointment is 404.
#[api_v2_operation(tags(Appointments))]
pub async fn get(
    state: web::Data<AppState>,
    ActorCaller(actor): ActorCaller,
    id: web::Path<Uuid>,
) -> Result<web::Json<AppointmentResponse>, ApiError> {
    Ok(web::Json(
        state.appointments.get(actor, id.into_inner()).await?.into(),
    ))
}

/// Cancel an appointment
///
/// Patients: their own, before it starts. Admins: any, with a reason. The slot is freed.
#[api_v2_operation(tags(Appointments))]
pub async fn cancel(
    state: web::Data<AppState>,
    ActorCaller(actor): ActorCaller,
    id: web::Path<Uuid>,
    body: web::Json<CancelRequest>,
) -> Result<web::Json<AppointmentResponse>, ApiError> {
    Ok(web::Json(
        state
            .appointments
            .cancel(
                actor,
                AppointmentId(id.into_inner()),
                body.into_inner().reason,
            )
            .await?
            .into(),
    ))
}

/// Reschedule an appointment
///
/// Moves it atomically to another available slot of the same doctor.
#[api_v2_operation(tags(Appointments))]
pub async fn reschedule(
    state: web::Data<AppState>,
    ActorCaller(actor): ActorCaller,
    id: web::Path<Uuid>,
    body: web::Json<RescheduleRequest>,
) -> Result<web::Json<AppointmentResponse>, ApiError> {
    Ok(web::Json(
        state
            .appointments
            .reschedule(
                actor,
                AppointmentId(id.into_inner()),
                SlotId(body.slot_id),
                body.reason.clone(),
            )
            .await?
            .into(),
    ))
}
