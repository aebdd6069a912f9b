//! `/api/v1/patients`: admin management of patient records.

use crate::domain::UserId;
use crate::domain::ValidationErrors;
use crate::transport::http::dto::common::{
    check_filter, page_request, UserResponse, MAX_FILTER_CHARS,
};
use crate::transport::http::dto::patients::{PatientListQuery, PatientPage, PatientRequest};
use crate::transport::http::error::ApiError;
use crate::transport::http::extractors::AdminCaller;
use crate::transport::http::state::AppState;
use paperclip::actix::{api_v2_operation, web, CreatedJson, NoContent};
use uuid::Uuid;

/// List patients
///
/// Paged; `q` searches name and e-mail (case-insensitive substring).
#[api_v2_operation(tags(Patients))]
pub async fn list(
    state: web::Data<AppState>,
    _admin: AdminCaller,
    query: web::Query<PatientListQuery>,
) -> Result<web::Json<PatientPage>, ApiError> {
    let query = query.into_inner();
    let page = page_request(query.page, query.per_page)?;
    let mut e = ValidationErrors::new();
    check_filter(&mut e, "q", query.q.as_deref(), Some(MAX_FILTER_CHARS));
    e.finish(|| Some(()))?;
    let result = state.patients.list(query.q, page).await?;
    Ok(web::Json(PatientPage::from(result)))
}

/// Create a patient
#[api_v2_operation(tags(Patients))]
pub async fn create(
    state: web::Data<AppState>,
    _admin: AdminCaller,
    body: web::Json<PatientRequest>,
) -> Result<CreatedJson<UserResponse>, ApiError> {
    let (profile, password) = body.into_inner().into_new(state.patients.today())?;
    let user = state.patients.create(profile, password).await?;
    Ok(CreatedJson(user.into()))
}

/// Get a patient
#[api_v2_operation(tags(Patients))]
pub async fn get(
    state: web::Data<AppState>,
    _admin: AdminCaller,
    id: web::Path<Uuid>,
) -> Result<web::Json<UserResponse>, ApiError> {
    let user = state.patients.get(UserId(id.into_inner())).await?;
    Ok(web::Json(user.into()))
}

/// Replace a patient's profile
#[api_v2_operation(tags(Patients))]
pub async fn replace(
    state: web::Data<AppState>,
    _admin: AdminCaller,
    id: web::Path<Uuid>,
    body: web::Json<PatientRequest>,
) -> Result<web::Json<UserResponse>, ApiError> {
    let profile = body.into_inner().into_replacement(state.patients.today())?;
    let user = state
        .patients
        .replace(UserId(id.into_inner()), profile)
        .await?;
    Ok(web::Json(user.into()))
}

/// Delete a patient
///
/// Removes the patient and their sessions.
#[api_v2_operation(tags(Patients))]
pub async fn delete(
    state: web::Data<AppState>,
    _admin: AdminCaller,
    id: web::Path<Uuid>,
) -> Result<NoContent, ApiError> {
    state.patients.delete(UserId(id.into_inner())).await?;
    Ok(NoContent)
}
