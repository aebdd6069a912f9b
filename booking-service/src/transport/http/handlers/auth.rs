//! `POST /api/v1/auth/*`: registration, login, tokens, e-mail verification and
//! password reset.

use crate::transport::http::dto::auth::{
    AcceptedResponse, LoginRequest, PasswordResetConfirmRequest, PasswordResetRequest,
    RefreshRequest, RegisterRequest, TokenResponse, VerifiedResponse, VerifyEmailRequest,
};
use crate::transport::http::error::ApiError;
use crate::transport::http::extractors::{Caller, ClientAddr};
use crate::transport::http::state::AppState;
use paperclip::actix::{api_v2_operation, web, AcceptedJson, NoContent};

/// Register a patient account
///
/// Answers 202 and sends an e-mail. A new address gets a verification link (valid for
/// `accounts.verification_ttl_secs`, 24 h by default, once). An address that already
/// has an account gets nothing new: its owner is told that someone tried, with a
/// password-reset link. The answer and its timing are the same in both cases, so the
/// endpoint does not reveal which addresses are registered. The account can log in at
/// once but can book only once its address is verified. Limited per client address
/// (`accounts.requests_per_client` per `accounts.rate_window_secs`; 429 beyond).
/// Admins are created from the command line only.
#[api_v2_operation(tags(Auth))]
pub async fn register(
    state: web::Data<AppState>,
    client: ClientAddr,
    body: web::Json<RegisterRequest>,
) -> Result<AcceptedJson<AcceptedResponse>, ApiError> {
    let registration = body
        .into_inner()
        .into_registration(state.patients.today())?;
    let email = registration.email.as_str().to_owned();
    state.accounts.register(registration, client.0).await?;
    Ok(AcceptedJson(AcceptedResponse::mail_sent(Some(email))))
}

/// Log in
///
/// Exchanges e-mail and password for an access token and a refresh token. Repeated
/// failures lock the account and the client address for a while (429 with Retry-After).
/// Accounts with an unverified address can log in; booking waits for verification.
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

/// Verify an e-mail address
///
/// Uses up the token of a verification link. For a new account it verifies the
/// address; for an address change (`PATCH /api/v1/me`) the new address replaces the old
/// one, which is told by e-mail. 400 when the token is unknown, expired, superseded by a
/// newer link or already used; 409 `email_taken` when another account took the new
/// address meanwhile.
#[api_v2_operation(tags(Auth))]
pub async fn verify_email(
    state: web::Data<AppState>,
    body: web::Json<VerifyEmailRequest>,
) -> Result<web::Json<VerifiedResponse>, ApiError> {
    let user = state.accounts.verify_email(&body.token).await?;
    Ok(web::Json(VerifiedResponse {
        email: user.email,
        email_verified: true,
    }))
}

/// Ask for a password reset
///
/// Always 202 with the same body, whether or not the address has an account; if it
/// has, a reset link (valid for `accounts.reset_ttl_secs`, 30 min by default, once) is
/// e-mailed to it, and earlier reset links stop working. Limited per address
/// (`accounts.emails_per_address`) and per client (`accounts.requests_per_client`) per
/// `accounts.rate_window_secs`, counted alike for unknown addresses: 429 beyond.
#[api_v2_operation(tags(Auth))]
pub async fn password_reset(
    state: web::Data<AppState>,
    client: ClientAddr,
    body: web::Json<PasswordResetRequest>,
) -> Result<AcceptedJson<AcceptedResponse>, ApiError> {
    state
        .accounts
        .request_password_reset(&body.email, client.0)
        .await?;
    let email = crate::domain::Email::parse(&body.email)
        .map(|e| e.as_str().to_owned())
        .ok();
    Ok(AcceptedJson(AcceptedResponse::mail_sent(email)))
}

/// Set a new password with a reset link
///
/// Uses up the link's token, sets the password (the same rules as at registration) and
/// revokes every refresh token of the account: every session has to log in again.
/// Following the link also verifies the address it was sent to. A refused password
/// (400 on `new_password`) leaves the link usable; an unknown, expired or used token is
/// 400 on `token`.
#[api_v2_operation(tags(Auth))]
pub async fn password_reset_confirm(
    state: web::Data<AppState>,
    body: web::Json<PasswordResetConfirmRequest>,
) -> Result<NoContent, ApiError> {
    state
        .accounts
        .confirm_password_reset(&body.token, &body.new_password)
        .await?;
    Ok(NoContent)
}
