//! `/api/v1/clinics` and `/api/v1/doctors`: public reads, admin writes.

use crate::domain::{ClinicId, DoctorId};
use crate::service::booking_ports::{DoctorQuery, DoctorRemoval};
use crate::transport::http::dto::catalog::{
    ClinicListQuery, ClinicPage, ClinicRequest, ClinicResponse, DoctorPage, DoctorRecordResponse,
    DoctorRequest, DoctorResponse, DoctorSearchQuery,
};
use crate::transport::http::dto::filters::{ClinicFilter, Listing};
use crate::transport::http::error::ApiError;
use crate::transport::http::extractors::AdminCaller;
use crate::transport::http::state::AppState;
use actix_web::HttpResponse;
use paperclip::actix::{api_v2_operation, web, CreatedJson, NoContent};
use uuid::Uuid;

/// List clinics
#[api_v2_operation(tags(Clinics))]
pub async fn list_clinics(
    state: web::Data<AppState>,
    query: web::Query<ClinicListQuery>,
) -> Result<web::Json<ClinicPage>, ApiError> {
    let Listing { filter, page } = Listing::<ClinicFilter>::try_from(query.into_inner())?;
    let result = state.catalog.clinics(filter.city, page).await?;
    Ok(web::Json(ClinicPage::from(result)))
}

/// Get a clinic
#[api_v2_operation(tags(Clinics))]
pub async fn get_clinic(
    state: web::Data<AppState>,
    id: web::Path<Uuid>,
) -> Result<web::Json<ClinicResponse>, ApiError> {
    Ok(web::Json(
        state
            .catalog
            .clinic(ClinicId(id.into_inner()))
            .await?
            .into(),
    ))
}

/// Create a clinic
#[api_v2_operation(tags(Clinics))]
pub async fn create_clinic(
    state: web::Data<AppState>,
    _admin: AdminCaller,
    body: web::Json<ClinicRequest>,
) -> Result<CreatedJson<ClinicResponse>, ApiError> {
    let input = body.into_inner().into_input()?;
    Ok(CreatedJson(
        state.catalog.create_clinic(input).await?.into(),
    ))
}

/// Update a clinic
#[api_v2_operation(tags(Clinics))]
pub async fn update_clinic(
    state: web::Data<AppState>,
    _admin: AdminCaller,
    id: web::Path<Uuid>,
    body: web::Json<ClinicRequest>,
) -> Result<web::Json<ClinicResponse>, ApiError> {
    let input = body.into_inner().into_input()?;
    Ok(web::Json(
        state
            .catalog
            .update_clinic(ClinicId(id.into_inner()), input)
            .await?
            .into(),
    ))
}

/// Delete a clinic
///
/// Only a clinic without doctors (409 `clinic_in_use` otherwise).
#[api_v2_operation(tags(Clinics))]
pub async fn delete_clinic(
    state: web::Data<AppState>,
    _admin: AdminCaller,
    id: web::Path<Uuid>,
) -> Result<NoContent, ApiError> {
    state
        .catalog
        .delete_clinic(ClinicId(id.into_inner()))
        .await?;
    Ok(NoContent)
}

/// Search doctors
///
/// Filters combine with AND; each result carries its rating summary.
#[api_v2_operation(tags(Doctors))]
pub async fn search_doctors(
    state: web::Data<AppState>,
    query: web::Query<DoctorSearchQuery>,
) -> Result<web::Json<DoctorPage>, ApiError> {
    let result = state
        .catalog
        .search(DoctorQuery::try_from(query.into_inner())?)
        .await?;
    Ok(web::Json(DoctorPage::from(result)))
}

/// Get a doctor
///
/// With clinic and rating summary.
#[api_v2_operation(tags(Doctors))]
pub async fn get_doctor(
    state: web::Data<AppState>,
    id: web::Path<Uuid>,
) -> Result<web::Json<DoctorResponse>, ApiError> {
    Ok(web::Json(
        state
            .catalog
            .doctor(DoctorId(id.into_inner()))
            .await?
            .into(),
    ))
}

/// Create a doctor
#[api_v2_operation(tags(Doctors))]
pub async fn create_doctor(
    state: web::Data<AppState>,
    _admin: AdminCaller,
    body: web::Json<DoctorRequest>,
) -> Result<CreatedJson<DoctorRecordResponse>, ApiError> {
    let input = body.into_inner().into_input()?;
    Ok(CreatedJson(
        state.catalog.create_doctor(input).await?.into(),
    ))
}

/// Update a doctor
///
/// Replaces every field, including `status`.
#[api_v2_operation(tags(Doctors))]
pub async fn update_doctor(
    state: web::Data<AppState>,
    _admin: AdminCaller,
    id: web::Path<Uuid>,
    body: web::Json<DoctorRequest>,
) -> Result<web::Json<DoctorRecordResponse>, ApiError> {
    let input = body.into_inner().into_input()?;
    Ok(web::Json(
        state
            .catalog
            .update_doctor(DoctorId(id.into_inner()), input)
            .await?
            .into(),
    ))
}

/// Remove a doctor
///
/// 204 when deleted; a doctor with appointments is kept as `inactive` instead (200 with the doctor).
#[api_v2_operation(tags(Doctors))]
pub async fn delete_doctor(
    state: web::Data<AppState>,
    _admin: AdminCaller,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    let id = id.into_inner();
    match state.catalog.remove_doctor(DoctorId(id)).await? {
        DoctorRemoval::Deactivated => {
            let doctor = state.catalog.doctor(DoctorId(id)).await?;
            Ok(HttpResponse::Ok().json(DoctorRecordResponse::from(doctor)))
        }
        _ => Ok(HttpResponse::NoContent().finish()),
    }
}
