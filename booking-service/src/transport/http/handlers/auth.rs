//! `POST /api/v1/auth/register|login|refresh|logout`.

use crate::transport::http::dto::auth::{
    LoginRequest, RefreshRequest, RegisterRequest, TokenResponse,
};
use crate::transport::http::dto::common::UserResponse;
use crate::transport::http::error::ApiError;
use crate::transport::http::extractors::{Caller, ClientAddr};
use crate::transport::http::state::AppState;
use paperclip::actix::{api_v2_operation, web, CreatedJson, NoContent};

/// Register a patient account
///
/// Creates a patient. Admins are created from the command line only.
#[api_v2_operation(tags(Auth))]
pub async fn register(
    state: web::Data<AppState>,
    body: web::Json<RegisterRequest>,
) -> Result<CreatedJson<UserResponse>, ApiError> {
    let registration = body
        .into_inner()
        .into_registration(state.patients.today())?;
    let user = state.auth.register(registration).await?;
    Ok(CreatedJson(user.into()))
}

/// Log in
///
/// Exchanges e-mail and password for an access token and a refresh token. Repeated
/// failures lock the account and the client address for a while (429 with Retry-After).
#[api_v2_operation(tags(Auth))]
pub async fn login(
    state: web::Data<AppState>,
    client: ClientAddr,
    body: web::Json<LoginRequest>,
) -> Result<web::Json<TokenResponse>, ApiError> {
    let body = body.into_inner();
    let pair = state
        .auth
        .login(&body.email, &body.password, client.0)
        .await?;
    Ok(web::Json(pair.into()))
}

/// Refresh tokens
///
/// Uses up the refresh token and returns a new pair. Presenting a refresh token that was
/// already used revokes every token descended from the same login.
#[api_v2_operation(tags(Auth))]
pub async fn refresh(
    state: web::Data<AppState>,
    body: web::Json<RefreshRequest>,
) -> Result<web::Json<TokenResponse>, ApiError> {
    let pair = state.auth.refresh(&body.refresh_token).await?;
    Ok(web::Json(pair.into()))
}

/// Log out
///
/// Revokes the refresh token and every token of the same login. With the access token
/// in `Authorization`, that token is refused from now on too. Idempotent.
#[api_v2_operation(tags(Auth))]
pub async fn logout(
    state: web::Data<AppState>,
    caller: Option<Caller>,
    body: web::Json<RefreshRequest>,
) -> Result<NoContent, ApiError> {
    let access = caller.map(|c| (c.token_id, c.expires_at));
    state.auth.logout(&body.refresh_token, access).await?;
    Ok(NoContent)
}
