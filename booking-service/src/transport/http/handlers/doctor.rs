//! `/api/v1/doctor/...`: what a doctor's own account sees.

use crate::domain::Role;
use crate::service::schedule::DayEntry;
use crate::transport::http::dto::appointments::AppointmentResponse;
use crate::transport::http::error::ApiError;
use crate::transport::http::extractors::DoctorCaller;
use crate::transport::http::state::AppState;
use chrono::NaiveDate;
use paperclip::actix::{api_v2_operation, web, Apiv2Schema};
use serde::{Deserialize, Serialize};

#[derive(Debug, Deserialize, Apiv2Schema)]
#[serde(deny_unknown_fields)]
pub struct DayQuery {
    /// `YYYY-MM-DD` in the clinic's time zone; today there by default.
    pub date: Option<NaiveDate>,
}

/// A doctor's day.
#[derive(Debug, Serialize, Apiv2Schema)]
pub struct DoctorDay {
    pub doctor_id: uuid::Uuid,
    pub date: NaiveDate,
    /// The clinic's IANA time zone, in which `date` is meant.
    pub time_zone: String,
    /// The day's appointments that are not cancelled, earliest first, each with who
    /// the patient is: the doctor's own patient list.
    pub appointments: Vec<DayAppointment>,
}

/// An appointment of the day with its patient's name and age.
#[derive(Debug, Serialize, Apiv2Schema)]
pub struct DayAppointment {
    pub id: uuid::Uuid,
    pub slot_id: uuid::Uuid,
    pub patient_id: uuid::Uuid,
    /// The patient's full name (empty if the account was deleted since).
    pub patient_name: String,
    /// The patient's age in full years on the day, if they gave a birth date.
    pub patient_age: Option<u32>,
    pub doctor_id: uuid::Uuid,
    pub starts_at: chrono::DateTime<chrono::Utc>,
    pub ends_at: chrono::DateTime<chrono::Utc>,
    /// `booked`, `completed` (attended) or `no_show`.
    pub status: String,
    /// What the patient wrote when booking.
    pub reason: String,
}

impl From<DayEntry> for DayAppointment {
    fn from(e: DayEntry) -> Self {
        let a = AppointmentResponse::from(e.appointment);
        Self {
            id: a.id,
            slot_id: a.slot_id,
            patient_id: a.patient_id,
            patient_name: e.patient.full_name,
            patient_age: e.patient.age,
            doctor_id: a.doctor_id,
            starts_at: a.starts_at,
            ends_at: a.ends_at,
            status: a.status,
            reason: a.reason,
        }
    }
}

/// My appointments of a day
///
/// For a user with role `doctor` linked to a doctor: that doctor's appointments on the
/// date, in the clinic's time zone. 404 `not_found` when no doctor is linked to the
/// account.
#[api_v2_operation(tags(Doctor))]
pub async fn my_day(
    state: web::Data<AppState>,
    DoctorCaller(user): DoctorCaller,
    query: web::Query<DayQuery>,
) -> Result<web::Json<DoctorDay>, ApiError> {
    let schedule = &state.schedule;
    let doctor = schedule.own_doctor(user).await?;
    let day = schedule
        .day((user, Role::Doctor), doctor, query.date)
        .await?;
    let appointments = schedule.entries(&day).await?;
    Ok(web::Json(DoctorDay {
        doctor_id: day.doctor.id.0,
        date: day.date,
        time_zone: day.time_zone.name().to_owned(),
        appointments: appointments.into_iter().map(Into::into).collect(),
    }))
}
