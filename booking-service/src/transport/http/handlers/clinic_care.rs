//! What clinics ask for most: their own booking rules, attendance and no-shows, admins
//! booking for a patient, the waitlist, and calendar feeds.

use crate::domain::decisions::{Attendance, Recorder};
use crate::domain::{AppointmentId, ClinicId, DoctorId, Role, SlotId, UserId, ValidationErrors};
use crate::service::calendar::FeedOwner;
use crate::transport::http::dto::appointments::{AppointmentResponse, BookRequest};
use crate::transport::http::dto::policies::{
    ClinicPolicyRequest, ClinicPolicyResponse, DoctorPolicyRequest, DoctorPolicyResponse,
};
use crate::transport::http::dto::waitlist::{
    AttendanceRequest, CalendarFeedResponse, JoinWaitlistRequest, WaitlistEntryResponse,
    WaitlistResponse,
};
use crate::transport::http::error::ApiError;
use crate::transport::http::extractors::{
    AdminCaller, Caller, DoctorCaller, IdempotencyKey, PatientCaller,
};
use crate::transport::http::state::AppState;
use actix_web::HttpResponse;
use paperclip::actix::{api_v2_operation, web};
use uuid::Uuid;

/// A clinic's booking rules
///
/// Its own values (null: the service's default) and the rules in force.
#[api_v2_operation(tags(Clinics))]
pub async fn get_clinic_policy(
    state: web::Data<AppState>,
    id: web::Path<Uuid>,
) -> Result<web::Json<ClinicPolicyResponse>, ApiError> {
    Ok(web::Json(
        state
            .policies
            .clinic(ClinicId(id.into_inner()))
            .await?
            .into(),
    ))
}

/// Set a clinic's booking rules
///
/// Replaces them all: minimum notice, booking horizon, the deadline for patients to
/// cancel or reschedule, the cap on a patient's upcoming appointments, the no-show
/// limit and window, and whether patients are e-mailed about a no-show. Applies from
/// the next request on every replica. Audited.
#[api_v2_operation(tags(Clinics))]
pub async fn put_clinic_policy(
    state: web::Data<AppState>,
    _admin: AdminCaller,
    id: web::Path<Uuid>,
    body: web::Json<ClinicPolicyRequest>,
) -> Result<web::Json<ClinicPolicyResponse>, ApiError> {
    Ok(web::Json(
        state
            .policies
            .set_clinic(ClinicId(id.into_inner()), body.into_inner().into())
            .await?
            .into(),
    ))
}

/// A doctor's booking rules
///
/// The doctor's overrides (null: the clinic's rule) and the rules in force.
#[api_v2_operation(tags(Doctors))]
pub async fn get_doctor_policy(
    state: web::Data<AppState>,
    id: web::Path<Uuid>,
) -> Result<web::Json<DoctorPolicyResponse>, ApiError> {
    Ok(web::Json(
        state
            .policies
            .doctor(DoctorId(id.into_inner()))
            .await?
            .into(),
    ))
}

/// Set a doctor's overrides
///
/// Minimum notice, booking horizon and the patients' change deadline for this doctor's
/// schedule, over the clinic's. Audited.
#[api_v2_operation(tags(Doctors))]
pub async fn put_doctor_policy(
    state: web::Data<AppState>,
    _admin: AdminCaller,
    id: web::Path<Uuid>,
    body: web::Json<DoctorPolicyRequest>,
) -> Result<web::Json<DoctorPolicyResponse>, ApiError> {
    Ok(web::Json(
        state
            .policies
            .set_doctor(DoctorId(id.into_inner()), body.into_inner().into())
            .await?
            .into(),
    ))
}

/// Record attendance
///
/// Once the appointment has started, its doctor (a doctor's account, for their own
/// appointments; another doctor's get 404) or an admin records it `attended` or
/// `no_show`, once (then 409 `attendance_recorded`; before the start 422
/// `appointment_not_started`). A no-show is published; the patient is e-mailed only if
/// the clinic turned that on, and it counts toward the clinic's no-show limit.
#[api_v2_operation(tags(Appointments))]
pub async fn record_attendance(
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<Uuid>,
    body: web::Json<AttendanceRequest>,
) -> Result<web::Json<AppointmentResponse>, ApiError> {
    let outcome = body
        .outcome
        .parse::<Attendance>()
        .map_err(|m| ValidationErrors(vec![crate::domain::FieldError::new("outcome", m)]))?;
    let recorder = match caller.role {
        Role::Admin => Recorder::Admin(caller.id),
        Role::Doctor => Recorder::Doctor {
            user: caller.id,
            doctor: state.schedule.own_doctor(caller.id).await?,
        },
        Role::Patient => return Err(ApiError::forbidden()),
    };
    Ok(web::Json(
        state
            .appointments
            .record_attendance(recorder, AppointmentId(id.into_inner()), outcome)
            .await?
            .into(),
    ))
}

/// Book for a patient
///
/// An admin books a slot for the patient (phone bookings, or a patient stopped by the
/// no-show limit, which does not apply here). Every other rule of the clinic holds.
#[api_v2_operation(tags(Patients))]
pub async fn book_for_patient(
    state: web::Data<AppState>,
    _admin: AdminCaller,
    id: web::Path<Uuid>,
    key: IdempotencyKey,
    body: web::Json<BookRequest>,
) -> Result<HttpResponse, ApiError> {
    let reason = body.reason()?;
    let booked = state
        .appointments
        .book_for_patient(
            UserId(id.into_inner()),
            SlotId(body.slot_id),
            reason,
            key.key,
        )
        .await?;
    Ok(super::appointments::booked_response(booked))
}

/// My waitlist
///
/// Live entries first. An `offered` entry has a slot held for you until
/// `offer.expires_at`: the offer e-mail's link books it.
#[api_v2_operation(tags(Waitlist))]
pub async fn my_waitlist(
    state: web::Data<AppState>,
    PatientCaller(patient): PatientCaller,
) -> Result<web::Json<WaitlistResponse>, ApiError> {
    let entries = state.waitlist.list(patient).await?;
    Ok(web::Json(WaitlistResponse {
        entries: entries.into_iter().map(Into::into).collect(),
    }))
}

/// Join a doctor's waitlist
///
/// Wait for a slot of the doctor between `from_date` and `to_date` (the clinic's
/// calendar, at most 92 days). When one frees up (a cancellation, a reschedule, a new
/// slot; slots already free when you join are yours to book), the first patient in line
/// is e-mailed an offer and the slot is held for them for a while (`waitlist.hold_minutes`); an
/// unanswered offer passes to the next in line. One live entry per doctor (409
/// `already_on_waitlist`).
#[api_v2_operation(tags(Waitlist))]
pub async fn join_waitlist(
    state: web::Data<AppState>,
    PatientCaller(patient): PatientCaller,
    body: web::Json<JoinWaitlistRequest>,
) -> Result<HttpResponse, ApiError> {
    let b = body.into_inner();
    let entry = state
        .waitlist
        .join(patient, DoctorId(b.doctor_id), b.from_date, b.to_date)
        .await?;
    Ok(HttpResponse::Created().json(WaitlistEntryResponse::from(entry)))
}

/// Leave a waitlist
///
/// A slot held for the entry is released at once.
#[api_v2_operation(tags(Waitlist))]
pub async fn leave_waitlist(
    state: web::Data<AppState>,
    PatientCaller(patient): PatientCaller,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    state.waitlist.leave(patient, id.into_inner()).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// My calendar feed
///
/// A new secret URL of an iCalendar feed of your appointments (upcoming, and the last
/// 30 days; cancelled ones marked so). Calling again replaces the URL.
#[api_v2_operation(tags(Me))]
pub async fn rotate_my_feed(
    state: web::Data<AppState>,
    PatientCaller(patient): PatientCaller,
) -> Result<web::Json<CalendarFeedResponse>, ApiError> {
    let url = state.calendar.rotate(FeedOwner::Patient(patient)).await?;
    Ok(web::Json(CalendarFeedResponse { url }))
}

/// My schedule's calendar feed
///
/// For a doctor's account: a new secret URL of an iCalendar feed of the linked
/// doctor's appointments. Calling again replaces the URL.
#[api_v2_operation(tags(Doctor))]
pub async fn rotate_doctor_feed(
    state: web::Data<AppState>,
    DoctorCaller(user): DoctorCaller,
) -> Result<web::Json<CalendarFeedResponse>, ApiError> {
    let doctor = state.schedule.own_doctor(user).await?;
    let url = state.calendar.rotate(FeedOwner::Doctor(doctor)).await?;
    Ok(web::Json(CalendarFeedResponse { url }))
}
