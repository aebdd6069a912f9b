//! `/api/v1/doctor/...`: what a doctor's own account sees.

use crate::domain::Role;
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
    /// The day's appointments that are not cancelled, earliest first.
    pub appointments: Vec<AppointmentResponse>,
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
    let appointments = schedule.appointments(&day).await?;
    Ok(web::Json(DoctorDay {
        doctor_id: day.doctor.id.0,
        date: day.date,
        time_zone: day.time_zone.name().to_owned(),
        appointments: appointments.into_iter().map(Into::into).collect(),
    }))
}
