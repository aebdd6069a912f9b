//! Request extractors: the authenticated caller (bearer JWT) and the role guards that
//! say who a handler serves (`AdminCaller`, `PatientCaller`, `ActorCaller`: anyone
//! else gets 403), the idempotency key and the client address used for throttling.

use super::error::ApiError;
use super::state::AppState;
use crate::domain::decisions::Actor;
use crate::domain::{Role, UserId};
use actix_web::dev::Payload;
use actix_web::{http::header, web, FromRequest, HttpMessage, HttpRequest};
use futures_util::future::{ready, LocalBoxFuture, Ready};
use paperclip::actix::{Apiv2Security, OperationModifier};
use paperclip::v2::schema::Apiv2Schema;
use std::net::IpAddr;
use uuid::Uuid;

/// Any logged-in user, from `Authorization: Bearer <access token>`.
#[derive(Debug, Clone, Apiv2Security)]
#[openapi(
    apiKey,
    alias = "bearerAuth",
    in = "header",
    name = "Authorization",
    description = "JWT access token from /api/v1/auth/login: `Bearer <token>`"
)]
pub struct Caller {
    pub id: UserId,
    pub role: Role,
    pub token_id: Uuid,
    pub issued_at: chrono::DateTime<chrono::Utc>,
    pub expires_at: chrono::DateTime<chrono::Utc>,
}

/// A caller of a given role, documented like [`Caller`] (the same bearer scheme).
macro_rules! role_guard {
    ($(#[$doc:meta])* $name:ident($inner:ty)) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Apiv2Security)]
        #[openapi(
            apiKey,
            alias = "bearerAuth",
            in = "header",
            name = "Authorization",
            description = "JWT access token from /api/v1/auth/login: `Bearer <token>`"
        )]
        pub struct $name(pub $inner);
    };
}

role_guard!(
    /// A logged-in admin; anyone else gets 403.
    AdminCaller(Caller)
);

role_guard!(
    /// A logged-in patient; anyone else gets 403.
    PatientCaller(UserId)
);

role_guard!(
    /// A logged-in doctor (a user with role `doctor`); anyone else gets 403.
    DoctorCaller(UserId)
);

role_guard!(
    /// A patient (acting on their own appointments) or an admin (on any); a doctor gets
    /// 403.
    ActorCaller(Actor)
);

fn state(req: &HttpRequest) -> Result<web::Data<AppState>, ApiError> {
    req.app_data::<web::Data<AppState>>()
        .cloned()
        .ok_or_else(|| ApiError::internal("application state missing"))
}

/// The bearer token of an `Authorization` value.
pub(crate) fn bearer(value: Option<&str>) -> Result<&str, ApiError> {
    let value = value.ok_or_else(|| ApiError::unauthorized("missing bearer token"))?;
    value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| ApiError::unauthorized("authorization must be a bearer token"))
}

/// A verified token that has not been logged out. When the revocation store (Redis)
/// cannot be asked, `auth.revocation_check_failure` decides: `deny` (503; always in
/// production) or `allow` (the dev profile's default; counted in
/// `auth_revocation_check_failures_total`). Used by HTTP and gRPC.
pub(crate) async fn check_token(state: &AppState, token: &str) -> Result<Caller, ApiError> {
    let claims = state
        .issuer
        .verify_access(token)
        .map_err(ApiError::unauthorized)?;
    let caller = Caller {
        id: claims.user_id,
        role: claims.role,
        token_id: claims.token_id,
        issued_at: claims.issued_at,
        expires_at: claims.expires_at,
    };
    match state
        .revoked
        .is_revoked(caller.token_id, caller.id.0, caller.issued_at)
        .await
    {
        Ok(false) => {
            // Whatever the request changes from here on is audited as this caller,
            // whichever part of the request (middleware or extractor) checked it.
            medbook_service_kit::context::authenticated(
                medbook_service_kit::context::Actor::User {
                    id: caller.id.to_string(),
                    role: caller.role.as_str().to_owned(),
                },
            );
            Ok(caller)
        }
        Ok(true) => Err(ApiError::unauthorized(
            "token has been revoked (logged out, or the password changed)",
        )),
        Err(e) => {
            state.metrics.revocation_check_failures.inc();
            if state.deny_when_revocation_unknown {
                let mut err = ApiError::new(
                    actix_web::http::StatusCode::SERVICE_UNAVAILABLE,
                    "unavailable",
                    "cannot verify the session right now; try again shortly",
                )
                .with_retry_after(std::time::Duration::from_secs(1));
                err.cause = Some(e.to_string());
                Err(err)
            } else {
                tracing::warn!(error = %e, "revocation store unavailable; accepting token");
                Ok(caller)
            }
        }
    }
}

/// The request's caller (the `access` middleware authenticates protected routes first
/// and leaves the caller in the extensions).
pub(crate) async fn authenticate(req: HttpRequest) -> Result<Caller, ApiError> {
    if let Some(caller) = req.extensions().get::<Caller>() {
        return Ok(caller.clone());
    }
    let state = state(&req)?;
    let value = req
        .headers()
        .get(header::AUTHORIZATION)
        .map(|v| {
            v.to_str()
                .map_err(|_| ApiError::unauthorized("malformed authorization header"))
        })
        .transpose()?;
    let token = bearer(value)?;
    check_token(&state, token).await
}

impl FromRequest for Caller {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        Box::pin(authenticate(req.clone()))
    }
}

/// An extractor for the callers `accept` turns into `Some`; others get 403.
fn guarded<T: 'static>(
    req: &HttpRequest,
    accept: fn(Caller) -> Option<T>,
) -> LocalBoxFuture<'static, Result<T, ApiError>> {
    let req = req.clone();
    Box::pin(async move { accept(authenticate(req).await?).ok_or_else(ApiError::forbidden) })
}

impl FromRequest for AdminCaller {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        guarded(req, |c| (c.role == Role::Admin).then_some(AdminCaller(c)))
    }
}

impl FromRequest for PatientCaller {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        guarded(req, |c| {
            (c.role == Role::Patient).then_some(PatientCaller(c.id))
        })
    }
}

impl FromRequest for DoctorCaller {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        guarded(req, |c| {
            (c.role == Role::Doctor).then_some(DoctorCaller(c.id))
        })
    }
}

impl FromRequest for ActorCaller {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        guarded(req, |c| match c.role {
            Role::Patient => Some(ActorCaller(Actor::Patient(c.id))),
            Role::Admin => Some(ActorCaller(Actor::Admin)),
            Role::Doctor => None,
        })
    }
}

/// Longest `Idempotency-Key`, in (visible ASCII) characters.
pub const MAX_IDEMPOTENCY_KEY_CHARS: usize = 200;

/// The rule of an idempotency key, over HTTP and gRPC alike.
pub fn valid_idempotency_key(s: &str) -> bool {
    (1..=MAX_IDEMPOTENCY_KEY_CHARS).contains(&s.len()) && s.chars().all(|c| c.is_ascii_graphic())
}

/// The `Idempotency-Key` header of a booking (optional, 1–200 visible ASCII characters).
#[derive(Debug, Clone)]
pub struct IdempotencyKey {
    pub key: Option<String>,
}

// Documented by hand: paperclip's `Apiv2Header` derive cannot express an optional header.
impl Apiv2Schema for IdempotencyKey {
    fn header_parameter_schema(
    ) -> Vec<paperclip::v2::models::Parameter<paperclip::v2::models::DefaultSchemaRaw>> {
        vec![paperclip::v2::models::Parameter {
            description: Some(
                "Makes a retried booking return the original appointment (1–200 visible ASCII characters)"
                    .into(),
            ),
            in_: paperclip::v2::models::ParameterIn::Header,
            name: "Idempotency-Key".into(),
            required: false,
            data_type: Some(paperclip::v2::models::DataType::String),
            max_length: u32::try_from(MAX_IDEMPOTENCY_KEY_CHARS).ok(),
            min_length: Some(1),
            ..Default::default()
        }]
    }
}
impl OperationModifier for IdempotencyKey {}

impl FromRequest for IdempotencyKey {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let parsed = match req.headers().get("idempotency-key") {
            None => Ok(IdempotencyKey { key: None }),
            Some(v) => match v.to_str() {
                Ok(s) if valid_idempotency_key(s) => Ok(IdempotencyKey {
                    key: Some(s.to_owned()),
                }),
                _ => Err(ApiError::validation(vec![crate::domain::FieldError::new(
                    "Idempotency-Key",
                    "must be 1 to 200 visible ASCII characters",
                )])),
            },
        };
        ready(parsed)
    }
}

/// The client's IP address: the socket peer, or, behind the trusted proxies of
/// `http.trusted_proxies`, the rightmost `X-Forwarded-For` hop that is not one of them
/// ([`super::client_ip::client_ip`]).
#[derive(Debug, Clone, Copy)]
pub struct ClientAddr(pub Option<IpAddr>);

impl FromRequest for ClientAddr {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let Some(peer) = req.peer_addr().map(|a| a.ip()) else {
            return ready(Ok(ClientAddr(None)));
        };
        let Some(trusted) = req
            .app_data::<web::Data<AppState>>()
            .map(|s| &s.trusted_proxies)
        else {
            return ready(Ok(ClientAddr(Some(peer))));
        };
        let forwarded = req
            .headers()
            .get_all("x-forwarded-for")
            .filter_map(|v| v.to_str().ok());
        ready(Ok(ClientAddr(Some(super::client_ip::client_ip(
            peer, forwarded, trusted,
        )))))
    }
}

impl Apiv2Schema for ClientAddr {}
impl OperationModifier for ClientAddr {}
