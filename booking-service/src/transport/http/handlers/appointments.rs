//! `/api/v1/appointments` and reviews.

use crate::domain::booking::AppointmentStatus;
use crate::domain::{Role, ValidationErrors};
use crate::service::appointments::Actor;
use crate::service::booking_ports::AppointmentFilter;
use crate::transport::http::dto::appointments::{
    AppointmentListQuery, AppointmentPage, AppointmentResponse, BookRequest, CancelRequest,
    PageQuery, RescheduleRequest, ReviewPage, ReviewRequest, ReviewResponse,
};
use crate::transport::http::dto::common::page_request;
use crate::transport::http::error::ApiError;
use crate::transport::http::extractors::{Caller, IdempotencyKey};
use crate::transport::http::state::AppState;
use actix_web::HttpResponse;
use paperclip::actix::{api_v2_operation, web, CreatedJson};
use uuid::Uuid;

fn actor(caller: &Caller) -> Result<Actor, ApiError> {
    match caller.role {
        Role::Patient => Ok(Actor::Patient(caller.id)),
        Role::Admin => Ok(Actor::Admin),
        Role::Doctor => Err(ApiError::forbidden()),
    }
}

/// Book an appointment
///
/// Of concurrent bookings of one slot exactly one succeeds; the others get 409
/// `slot_taken`. With an `Idempotency-Key` header a retry returns the original
/// appointment (200) instead of booking twice; the same key with a different body is 422.
#[api_v2_operation(tags(Appointments))]
pub async fn book(
    state: web::Data<AppState>,
    caller: Caller,
    key: IdempotencyKey,
    body: web::Json<BookRequest>,
) -> Result<HttpResponse, ApiError> {
    if caller.role != Role::Patient {
        return Err(ApiError::forbidden());
    }
    let reason = body.reason()?;
    let booked = state
        .appointments
        .book(caller.id, body.slot_id, reason, key.key)
        .await?;
    let body = AppointmentResponse::from(booked.appointment);
    Ok(if booked.replayed {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::Created().json(body)
    })
}

/// List appointments
///
/// Patients see their own; admins see all, filtered.
#[api_v2_operation(tags(Appointments))]
pub async fn list(
    state: web::Data<AppState>,
    caller: Caller,
    query: web::Query<AppointmentListQuery>,
) -> Result<web::Json<AppointmentPage>, ApiError> {
    let actor = actor(&caller)?;
    let q = query.into_inner();
    let mut e = ValidationErrors::new();
    let page = e.absorb(page_request(q.page, q.per_page));
    let status = e.check_opt(
        "status",
        q.status.as_deref().map(str::parse::<AppointmentStatus>),
    );
    if let (Some(from), Some(to)) = (q.from, q.to) {
        if to <= from {
            e.push("to", "must be after from");
        }
    }
    let (page, status) = e.finish(|| Some((page?, status?)))?;
    let filter = AppointmentFilter {
        patient_id: q.patient_id,
        doctor_id: q.doctor_id,
        status,
        from: q.from,
        to: q.to,
    };
    let result = state.appointments.list(actor, filter, page).await?;
    Ok(web::Json(AppointmentPage::from(result)))
}

/// Get an appointment
///
/// Another patient's appointment is 404.
#[api_v2_operation(tags(Appointments))]
pub async fn get(
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<Uuid>,
) -> Result<web::Json<AppointmentResponse>, ApiError> {
    let actor = actor(&caller)?;
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
    caller: Caller,
    id: web::Path<Uuid>,
    body: web::Json<CancelRequest>,
) -> Result<web::Json<AppointmentResponse>, ApiError> {
    let actor = actor(&caller)?;
    let reason = body.reason()?;
    if matches!(actor, Actor::Admin) && reason.as_deref().is_none_or(str::is_empty) {
        return Err(ApiError::validation(vec![crate::domain::FieldError::new(
            "reason",
            "is required when an admin cancels",
        )]));
    }
    Ok(web::Json(
        state
            .appointments
            .cancel(actor, id.into_inner(), reason)
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
    caller: Caller,
    id: web::Path<Uuid>,
    body: web::Json<RescheduleRequest>,
) -> Result<web::Json<AppointmentResponse>, ApiError> {
    let actor = actor(&caller)?;
    Ok(web::Json(
        state
            .appointments
            .reschedule(actor, id.into_inner(), body.slot_id)
            .await?
            .into(),
    ))
}

/// List a doctor's reviews
#[api_v2_operation(tags(Reviews))]
pub async fn list_reviews(
    state: web::Data<AppState>,
    id: web::Path<Uuid>,
    query: web::Query<PageQuery>,
) -> Result<web::Json<ReviewPage>, ApiError> {
    let page = page_request(query.page, query.per_page)?;
    let doctor_id = id.into_inner();
    state.catalog.doctor(doctor_id).await?;
    let result = state.reviews.list(doctor_id, page).await?;
    Ok(web::Json(ReviewPage::from(result)))
}

/// Review a doctor
///
/// Only the patient of a past, not cancelled appointment with this doctor, once.
#[api_v2_operation(tags(Reviews))]
pub async fn create_review(
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<Uuid>,
    body: web::Json<ReviewRequest>,
) -> Result<CreatedJson<ReviewResponse>, ApiError> {
    if caller.role != Role::Patient {
        return Err(ApiError::forbidden());
    }
    let (rating, text) = body.parse()?;
    let review = state
        .reviews
        .create(
            caller.id,
            id.into_inner(),
            body.appointment_id,
            rating,
            text,
        )
        .await?;
    Ok(CreatedJson(review.into()))
}
