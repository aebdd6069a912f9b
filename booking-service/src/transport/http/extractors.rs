//! Request extractors: the authenticated caller (bearer JWT) and the role guards that
//! say who a handler serves (`AdminCaller`, `PatientCaller`, `ActorCaller`: anyone
//! else gets 403), the idempotency key and the client address used for throttling.

use super::error::ApiError;
use super::state::AppState;
use crate::domain::decisions::Actor;
use crate::domain::inputs;
use crate::domain::rejection::AuthFailure;
use crate::domain::{Role, UserId};
use crate::service::ServiceError;
use crate::transport::common::bearer;
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

impl From<crate::service::authenticate::Caller> for Caller {
    fn from(c: crate::service::authenticate::Caller) -> Self {
        Self {
            id: c.id,
            role: c.role,
            token_id: c.token_id,
            issued_at: c.issued_at,
            expires_at: c.expires_at,
        }
    }
}

/// The caller of a bearer token: the one check every transport shares
/// ([`crate::service::authenticate::Authenticator`]).
pub(crate) async fn check_token(state: &AppState, token: &str) -> Result<Caller, ApiError> {
    Ok(state.authenticator.authenticate(token).await?.into())
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
        .map(|v| v.to_str().map_err(|_| AuthFailure::Malformed))
        .transpose()
        .map_err(ServiceError::Unauthorized)?;
    let token = bearer(value).map_err(ServiceError::Unauthorized)?;
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

pub use crate::domain::inputs::MAX_IDEMPOTENCY_KEY_CHARS;

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
        const FIELD: &str = "Idempotency-Key";
        let parsed = match req.headers().get("idempotency-key").map(|v| v.to_str()) {
            None => Ok(None),
            Some(Err(_)) => Err(inputs::invalid_idempotency_key(FIELD)),
            Some(Ok(s)) => inputs::idempotency_key(FIELD, Some(s)),
        };
        ready(
            parsed
                .map(|key| IdempotencyKey { key })
                .map_err(|e| ApiError::validation(vec![e])),
        )
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
