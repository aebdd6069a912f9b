//! The minimal pages the links in account e-mails open, until there is a web front end
//! (`accounts.verify_email_url` / `accounts.reset_password_url` then point there).
//!
//! Opening a link (GET) changes nothing: mail scanners and link previews fetch links,
//! and must not verify an account or use up a reset link. The page shows a button
//! whose form POSTs the token; only that POST acts, through the same use case as the
//! JSON API. The pages load nothing from elsewhere, run no script, are never cached
//! and send no referrer (the token is in their URL).

use crate::service::ServiceError;
use crate::transport::http::error::{escape, ApiError, InternalCause};
use crate::transport::http::state::AppState;
use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpResponse};
use serde::Deserialize;

pub const VERIFY_PATH: &str = "/account/verify-email";
pub const RESET_PATH: &str = "/account/reset-password";

#[derive(Debug, Deserialize)]
pub struct TokenQuery {
    pub token: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct VerifyForm {
    pub token: String,
}

#[derive(Debug, Deserialize)]
pub struct ResetForm {
    pub token: String,
    pub new_password: String,
}

pub(crate) fn page(status: StatusCode, title: &str, body: &str) -> HttpResponse {
    let html = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <meta name=\"robots\" content=\"noindex\"><title>{title} · medbook</title>\
         <style>body{{font-family:sans-serif;max-width:32rem;margin:3rem auto;padding:0 1rem;line-height:1.5}}\
         button{{font-size:1rem;padding:.6rem 1.2rem}}input{{font-size:1rem;padding:.4rem;width:100%;box-sizing:border-box}}\
         .error{{color:#a00}}</style></head><body><h1>{title}</h1>{body}</body></html>",
        title = escape(title),
    );
    HttpResponse::build(status)
        .content_type("text/html; charset=utf-8")
        .insert_header((
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; \
             frame-ancestors 'none'; base-uri 'none'",
        ))
        .insert_header((header::REFERRER_POLICY, "no-referrer"))
        .insert_header((header::X_FRAME_OPTIONS, "DENY"))
        .body(html)
}

pub(crate) fn missing_token() -> HttpResponse {
    page(
        StatusCode::BAD_REQUEST,
        "Incomplete link",
        "<p>This link has no token. Open the link from the e-mail in full, or ask for a new one.</p>",
    )
}

/// A refused request as the API maps it (status, escaped messages, the cause of a
/// 5xx for the request log), rendered as a page.
pub(crate) fn refused(title: &str, e: ServiceError, next_step: &str) -> HttpResponse {
    let api = ApiError::from(e);
    let mut res = page(
        api.status,
        title,
        &format!("{}<p>{next_step}</p>", problems(&api)),
    );
    if let Some(cause) = api.cause {
        res.extensions_mut().insert(InternalCause(cause));
    }
    res
}

/// The error's messages (already HTML-escaped by `ApiError`), as a list.
fn problems(api: &ApiError) -> String {
    if api.details.is_empty() {
        return format!("<p class=\"error\">{}</p>", api.message);
    }
    let items: String = api
        .details
        .iter()
        .map(|f| {
            let what = match f.field.as_str() {
                "token" => "The link",
                "new_password" => "The new password",
                other => other,
            };
            format!("<li>{what} {}</li>", f.message)
        })
        .collect();
    format!("<ul class=\"error\">{items}</ul>")
}

/// `GET /account/verify-email?token=…`: the button, nothing else.
pub async fn verify_form(query: web::Query<TokenQuery>) -> HttpResponse {
    let Some(token) = query.into_inner().token.filter(|t| !t.trim().is_empty()) else {
        return missing_token();
    };
    page(
        StatusCode::OK,
        "Verify your e-mail address",
        &format!(
            "<p>Confirm that this address is yours to finish setting up your medbook account.</p>\
             <form method=\"post\" action=\"{VERIFY_PATH}\">\
             <input type=\"hidden\" name=\"token\" value=\"{}\">\
             <button type=\"submit\">Verify my e-mail address</button></form>",
            escape(&token)
        ),
    )
}

/// `POST /account/verify-email`: uses up the token.
pub async fn verify_submit(
    state: web::Data<AppState>,
    form: web::Form<VerifyForm>,
) -> HttpResponse {
    match state.accounts.verify_email(&form.token).await {
        Ok(user) => page(
            StatusCode::OK,
            "Address verified",
            &format!(
                "<p><strong>{}</strong> is verified. You can close this page and book appointments.</p>",
                escape(&user.email)
            ),
        ),
        Err(e) => refused(
            "This link did not work",
            e,
            "Log in and ask for a new verification e-mail.",
        ),
    }
}

fn reset_form_body(token: &str, problem: &str) -> String {
    format!(
        "{problem}<form method=\"post\" action=\"{RESET_PATH}\">\
         <input type=\"hidden\" name=\"token\" value=\"{}\">\
         <p><label for=\"new_password\">New password (8 characters to 72 bytes; not a common \
         password, not your name or e-mail address)</label>\
         <input id=\"new_password\" name=\"new_password\" type=\"password\" autocomplete=\"new-password\" \
         minlength=\"8\" required></p>\
         <button type=\"submit\">Set my new password</button></form>",
        escape(token)
    )
}

/// `GET /account/reset-password?token=…`: the form, nothing else.
pub async fn reset_form(query: web::Query<TokenQuery>) -> HttpResponse {
    let Some(token) = query.into_inner().token.filter(|t| !t.trim().is_empty()) else {
        return missing_token();
    };
    page(
        StatusCode::OK,
        "Choose a new password",
        &reset_form_body(&token, ""),
    )
}

/// `POST /account/reset-password`: sets the password; a refused one shows the form
/// again (the link still works).
pub async fn reset_submit(state: web::Data<AppState>, form: web::Form<ResetForm>) -> HttpResponse {
    let form = form.into_inner();
    match state
        .accounts
        .confirm_password_reset(&form.token, &form.new_password)
        .await
    {
        Ok(()) => page(
            StatusCode::OK,
            "Password changed",
            "<p>Your new password is set and every earlier session is logged out. Log in with the new password.</p>",
        ),
        Err(ServiceError::Validation(v)) if v.0.iter().all(|f| f.field == "new_password") => {
            let api = ApiError::from(ServiceError::Validation(v));
            page(
                api.status,
                "Choose a new password",
                &reset_form_body(&form.token, &problems(&api)),
            )
        }
        Err(e) => refused(
            "This link did not work",
            e,
            "Ask for a new password-reset e-mail.",
        ),
    }
}
