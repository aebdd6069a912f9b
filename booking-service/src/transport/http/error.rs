//! The HTTP error boundary: every error leaves as
//! `{"error":{"code","message","details"},"request_id"}`.
//!
//! * Service errors map exhaustively in `From<ServiceError>`.
//! * actix's own errors (bad JSON, wrong content type, bad path or query, payload too
//!   large) are routed here by the extractor configs in [`extractor_configs`]; anything
//!   else that produces a non-JSON error (unknown route, wrong method) is rewritten by
//!   the `json_errors` middleware.
//! * User input echoed in a message is HTML-escaped; a 500 says only
//!   "internal server error" and its cause goes to the request log line.

use crate::domain::rejection::Rejection;
use crate::domain::FieldError;
use crate::service::ServiceError;
use crate::transport::common::{self as wording, Refusal};
use actix_web::http::{header, StatusCode};
use actix_web::{HttpResponse, ResponseError};
use paperclip::actix::{api_v2_errors, Apiv2Schema};
use serde::Serialize;
use std::fmt;
use std::time::Duration;

/// The current request id (set by the request-id middleware), if called while serving
/// a request.
pub fn current_request_id() -> Option<String> {
    medbook_service_kit::context::request_id()
}

/// The JSON body of every error response.
#[derive(Debug, Serialize, Apiv2Schema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
    /// Id of the request, as in the `X-Request-Id` header.
    pub request_id: Option<String>,
}

#[derive(Debug, Serialize, Apiv2Schema)]
pub struct ErrorDetail {
    /// Stable machine-readable code, e.g. `validation_failed`, `email_taken`.
    pub code: String,
    /// Human-readable explanation; user input in it is HTML-escaped.
    pub message: String,
    /// Per-field problems, for validation errors.
    pub details: Vec<FieldDetail>,
}

#[derive(Debug, Clone, Serialize, Apiv2Schema)]
pub struct FieldDetail {
    pub field: String,
    pub message: String,
}

/// The cause of a 500, attached to the response for the request log (never the body).
#[derive(Debug, Clone)]
pub struct InternalCause(pub String);

#[api_v2_errors(
    code = 400,
    description = "Malformed or invalid input; `details` lists each bad field",
    code = 401,
    description = "Missing, invalid or expired credentials",
    code = 403,
    description = "Authenticated but not allowed",
    code = 404,
    description = "No such resource (or not yours)",
    code = 409,
    description = "Conflicts with existing data",
    code = 413,
    description = "Payload too large",
    code = 415,
    description = "Content type is not application/json",
    code = 422,
    description = "Well-formed but against a booking rule",
    code = 429,
    description = "Too many attempts; see Retry-After",
    code = 500,
    description = "Internal server error",
    code = 503,
    description = "Overloaded, timed out or a dependency is unavailable",
    default_schema = "ErrorBody"
)]
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub details: Vec<FieldDetail>,
    pub retry_after: Option<Duration>,
    pub cause: Option<String>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            details: Vec::new(),
            retry_after: None,
            cause: None,
        }
    }

    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub fn validation(errors: Vec<FieldError>) -> Self {
        let mut e = Self::bad_request("validation_failed", "one or more fields are invalid");
        e.details = errors
            .into_iter()
            .map(|f| FieldDetail {
                field: escape(&f.field),
                message: escape(&f.message),
            })
            .collect();
        e
    }

    pub fn unauthorized(message: &str) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }

    pub fn forbidden() -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "you are not allowed to do this",
        )
    }

    pub fn not_found(what: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("{what} not found"),
        )
    }

    pub fn internal(cause: impl fmt::Display) -> Self {
        let mut e = Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_error",
            "internal server error",
        );
        e.cause = Some(cause.to_string());
        e
    }

    pub fn timeout() -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "timeout",
            "the request took too long and was abandoned",
        )
    }

    pub fn with_retry_after(mut self, d: Duration) -> Self {
        self.retry_after = Some(d);
        self
    }

    /// A generic error for a bare status produced outside our handlers.
    pub fn from_status(status: StatusCode) -> Self {
        let (code, message) = match status {
            StatusCode::NOT_FOUND => ("not_found", "no such resource"),
            StatusCode::METHOD_NOT_ALLOWED => (
                "method_not_allowed",
                "this method is not allowed on this resource",
            ),
            StatusCode::PAYLOAD_TOO_LARGE => ("payload_too_large", "the request body is too large"),
            StatusCode::UNSUPPORTED_MEDIA_TYPE => (
                "unsupported_media_type",
                "the request body must be application/json",
            ),
            StatusCode::UNAUTHORIZED => ("unauthorized", "authentication required"),
            StatusCode::FORBIDDEN => ("forbidden", "you are not allowed to do this"),
            StatusCode::REQUEST_TIMEOUT => ("timeout", "the request took too long"),
            s if s.is_server_error() => ("internal_error", "internal server error"),
            _ => ("bad_request", "the request could not be processed"),
        };
        Self::new(status, code, message)
    }

    pub fn body(&self) -> ErrorBody {
        ErrorBody {
            error: ErrorDetail {
                code: self.code.to_owned(),
                message: self.message.clone(),
                details: self.details.clone(),
            },
            request_id: current_request_id(),
        }
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {}: {}",
            self.status.as_u16(),
            self.code,
            self.message
        )
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse {
        let mut res = HttpResponse::build(self.status);
        if let Some(d) = self.retry_after {
            res.insert_header((header::RETRY_AFTER, d.as_secs().max(1).to_string()));
        }
        let mut res = res.json(self.body());
        if let Some(cause) = &self.cause {
            res.extensions_mut().insert(InternalCause(cause.clone()));
        }
        res
    }
}

impl From<ServiceError> for ApiError {
    fn from(e: ServiceError) -> Self {
        match e {
            ServiceError::Validation(v) => ApiError::validation(v.0),
            ServiceError::InvalidCredentials => ApiError::new(
                StatusCode::UNAUTHORIZED,
                "invalid_credentials",
                "e-mail or password is incorrect",
            ),
            ServiceError::Unauthorized(why) => ApiError::unauthorized(wording::auth_failure(why)),
            ServiceError::Forbidden => ApiError::forbidden(),
            ServiceError::Rejected(r) => {
                ApiError::new(rejection_status(r), r.code(), wording::rejection(r))
            }
            ServiceError::NotFound(what) => ApiError::not_found(what),
            ServiceError::TooManyRequests { retry_after } => ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "too_many_attempts",
                "too many attempts; try again later",
            )
            .with_retry_after(retry_after),
            ServiceError::Overloaded { retry_after } => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "overloaded",
                "the server is busy; try again shortly",
            )
            .with_retry_after(retry_after),
            ServiceError::Unavailable(cause) => {
                let mut e = ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "unavailable",
                    "a dependency is unavailable; try again shortly",
                )
                .with_retry_after(Duration::from_secs(1));
                e.cause = Some(cause);
                e
            }
            ServiceError::AuditUnavailable => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "audit_unavailable",
                "the audit log cannot be read right now; try again shortly",
            ),
            ServiceError::Internal(cause) => ApiError::internal(format!("{cause:#}")),
        }
    }
}

/// The status of each kind of refusal: 403 for what the caller must do first, 404,
/// 409 for a clash with stored data (read again, pick another), 422 for a rule.
fn rejection_status(r: Rejection) -> StatusCode {
    match wording::refusal(r) {
        Refusal::ActFirst => StatusCode::FORBIDDEN,
        Refusal::NotFound => StatusCode::NOT_FOUND,
        Refusal::Clash => StatusCode::CONFLICT,
        Refusal::Rule => StatusCode::UNPROCESSABLE_ENTITY,
    }
}

impl From<crate::domain::ValidationErrors> for ApiError {
    fn from(e: crate::domain::ValidationErrors) -> Self {
        ApiError::validation(e.0)
    }
}

/// HTML-escapes text that may contain user input.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#x27;"),
            c if c.is_control() => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}

/// Extractor configurations that route actix's own errors through [`ApiError`].
pub mod extractor_configs {
    use super::*;
    use actix_web::error::{JsonPayloadError, PathError, QueryPayloadError};
    use actix_web::web::{JsonConfig, PathConfig, QueryConfig};

    pub fn json(limit: usize) -> JsonConfig {
        JsonConfig::default()
            .limit(limit)
            .content_type_required(true)
            .content_type(|mime| mime.essence_str() == "application/json")
            .error_handler(|err, _req| json_error(err).into())
    }

    pub fn json_error(err: JsonPayloadError) -> ApiError {
        match err {
            JsonPayloadError::ContentType => {
                ApiError::from_status(StatusCode::UNSUPPORTED_MEDIA_TYPE)
            }
            JsonPayloadError::OverflowKnownLength { .. } | JsonPayloadError::Overflow { .. } => {
                ApiError::from_status(StatusCode::PAYLOAD_TOO_LARGE)
            }
            JsonPayloadError::Deserialize(e) => {
                let (code, field) = if e.is_data() {
                    ("invalid_body", field_of(&e.to_string()))
                } else {
                    ("malformed_json", None)
                };
                let mut api = ApiError::bad_request(
                    code,
                    format!("the request body is not valid: {}", escape(&e.to_string())),
                );
                if let Some(field) = field {
                    api.details.push(FieldDetail {
                        field: escape(&field),
                        message: escape(&strip_position(&e.to_string())),
                    });
                }
                api
            }
            other => ApiError::bad_request(
                "malformed_json",
                format!(
                    "the request body could not be read: {}",
                    escape(&other.to_string())
                ),
            ),
        }
    }

    pub fn path() -> PathConfig {
        PathConfig::default().error_handler(|err: PathError, _req| {
            ApiError::bad_request(
                "invalid_path",
                format!("a path parameter is invalid: {}", escape(&err.to_string())),
            )
            .into()
        })
    }

    /// The account pages' forms.
    pub fn form(limit: usize) -> actix_web::web::FormConfig {
        actix_web::web::FormConfig::default()
            .limit(limit)
            .error_handler(|err, _req| {
                ApiError::bad_request(
                    "invalid_form",
                    format!("the form could not be read: {}", escape(&err.to_string())),
                )
                .into()
            })
    }

    pub fn query() -> QueryConfig {
        QueryConfig::default().error_handler(|err: QueryPayloadError, _req| {
            ApiError::bad_request(
                "invalid_query",
                format!("a query parameter is invalid: {}", escape(&err.to_string())),
            )
            .into()
        })
    }

    /// Pulls the field name out of serde's "missing field `x`" / "unknown field `x`".
    fn field_of(msg: &str) -> Option<String> {
        for marker in ["missing field `", "unknown field `", "duplicate field `"] {
            if let Some(rest) = msg.split(marker).nth(1) {
                return rest.split('`').next().map(str::to_owned);
            }
        }
        None
    }

    fn strip_position(msg: &str) -> String {
        msg.split(" at line ").next().unwrap_or(msg).to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::booking::BookingRejection;

    #[test]
    fn escapes_markup_and_controls() {
        assert_eq!(
            escape("<b>\"x\" & 'y'\n"),
            "&lt;b&gt;&quot;x&quot; &amp; &#x27;y&#x27;\u{FFFD}"
        );
    }

    #[test]
    fn booking_rejections_are_conflicts_or_rule_violations() {
        for (r, status) in [
            (BookingRejection::SlotTaken, 409),
            (BookingRejection::SlotBlocked, 409),
            (BookingRejection::SlotInPast, 422),
            (BookingRejection::TooManyActive, 422),
            (BookingRejection::IdempotencyKeyReused, 422),
            (BookingRejection::EmailUnverified, 403),
        ] {
            let e = ApiError::from(ServiceError::Rejected(r.into()));
            assert_eq!(e.status.as_u16(), status, "{r:?}");
            assert_eq!(e.code, r.code());
        }
    }

    #[test]
    fn no_constraint_name_reaches_a_client() {
        let e = ApiError::from(ServiceError::from(
            crate::service::ports::RepoError::UniqueViolation("users_email_key".into()),
        ));
        assert_eq!(e.status, StatusCode::CONFLICT);
        assert!(!e.message.contains("users_email_key"), "{}", e.message);
    }

    #[test]
    fn internal_errors_hide_their_cause() {
        let e = ApiError::from(ServiceError::Internal(anyhow::anyhow!(
            "password=hunter2 at db"
        )));
        assert_eq!(e.status, StatusCode::INTERNAL_SERVER_ERROR);
        assert!(!e.message.contains("hunter2"));
        assert!(e.cause.unwrap().contains("hunter2"));
    }
}
