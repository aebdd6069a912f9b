//! `/api/v1/me`: the caller's own profile, and its e-mail verification.

use crate::transport::http::dto::auth::{AcceptedResponse, UpdateMeRequest};
use crate::transport::http::dto::common::UserResponse;
use crate::transport::http::error::ApiError;
use crate::transport::http::extractors::Caller;
use crate::transport::http::state::AppState;
use paperclip::actix::{api_v2_operation, web, AcceptedJson};

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
/// (the same rules as at registration) revokes all refresh tokens. A new `email` does
/// not replace the current one at once: it becomes `pending_email` and gets a
/// verification link, and replaces `email` when the link is followed (the old address
/// is told). The answer is the same when the new address belongs to another account;
/// its owner is told instead. At most `accounts.emails_per_address` changes per
/// `accounts.rate_window_secs` (429).
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

/// Send me a new verification link
///
/// To the pending address of an address change, or else to the account's address
/// while it is unverified; earlier links stop working. 409 `already_verified` when
/// there is nothing to verify; at most `accounts.emails_per_address` per
/// `accounts.rate_window_secs` (429).
#[api_v2_operation(tags(Me))]
pub async fn resend_verification(
    state: web::Data<AppState>,
    caller: Caller,
) -> Result<AcceptedJson<AcceptedResponse>, ApiError> {
    state.accounts.resend_verification(caller.id).await?;
    Ok(AcceptedJson(AcceptedResponse::mail_sent(None)))
}
