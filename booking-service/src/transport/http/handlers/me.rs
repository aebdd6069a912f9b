//! `GET|PATCH /api/v1/me`: the caller's own profile.

use crate::transport::http::dto::auth::UpdateMeRequest;
use crate::transport::http::dto::common::UserResponse;
use crate::transport::http::error::ApiError;
use crate::transport::http::extractors::Caller;
use crate::transport::http::state::AppState;
use paperclip::actix::{api_v2_operation, web};

/// Get my profile
#[api_v2_operation(tags(Me))]
pub async fn get_me(
    state: web::Data<AppState>,
    caller: Caller,
) -> Result<web::Json<UserResponse>, ApiError> {
    let user = state.patients.me(caller.id).await?;
    Ok(web::Json(user.into()))
}

/// Update my profile
///
/// Omitted fields are unchanged; `null` clears `birth_date`, `gender` or `phone`.
/// Changing `email` or `new_password` requires `current_password`; a new password
/// revokes all refresh tokens.
#[api_v2_operation(tags(Me))]
pub async fn update_me(
    state: web::Data<AppState>,
    caller: Caller,
    body: web::Json<UpdateMeRequest>,
) -> Result<web::Json<UserResponse>, ApiError> {
    let update = body.into_inner().into_update(state.patients.today())?;
    let user = state.patients.update_me(caller.id, update).await?;
    Ok(web::Json(user.into()))
}
