//! Request extractors: the authenticated caller (bearer JWT), the admin guard and the
//! client address used for login throttling.

use super::error::ApiError;
use super::state::AppState;
use crate::domain::{Role, UserId};
use actix_web::dev::Payload;
use actix_web::{http::header, web, FromRequest, HttpRequest};
use futures_util::future::{ready, Ready};
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
}

/// A logged-in admin; anyone else gets 403.
#[derive(Debug, Clone, Apiv2Security)]
#[openapi(
    apiKey,
    alias = "bearerAuth",
    in = "header",
    name = "Authorization",
    description = "JWT access token from /api/v1/auth/login: `Bearer <token>`"
)]
pub struct AdminCaller(pub Caller);

fn authenticate(req: &HttpRequest) -> Result<Caller, ApiError> {
    let state = req
        .app_data::<web::Data<AppState>>()
        .ok_or_else(|| ApiError::internal("application state missing"))?;
    let value = req
        .headers()
        .get(header::AUTHORIZATION)
        .ok_or_else(|| ApiError::unauthorized("missing bearer token"))?
        .to_str()
        .map_err(|_| ApiError::unauthorized("malformed authorization header"))?;
    let token = value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| ApiError::unauthorized("authorization must be a bearer token"))?;
    let claims = state
        .issuer
        .verify_access(token)
        .map_err(ApiError::unauthorized)?;
    Ok(Caller {
        id: claims.user_id,
        role: claims.role,
        token_id: claims.token_id,
    })
}

impl FromRequest for Caller {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(authenticate(req))
    }
}

impl FromRequest for AdminCaller {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(authenticate(req).and_then(|c| {
            if c.role == Role::Admin {
                Ok(AdminCaller(c))
            } else {
                Err(ApiError::forbidden())
            }
        }))
    }
}

/// The client's IP address: the socket peer, or the first `X-Forwarded-For` entry
/// when `http.trust_forwarded_for` is set (only behind a proxy that sets it).
#[derive(Debug, Clone, Copy)]
pub struct ClientAddr(pub Option<IpAddr>);

impl FromRequest for ClientAddr {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let trust = req
            .app_data::<web::Data<AppState>>()
            .is_some_and(|s| s.trust_forwarded_for);
        let forwarded = trust
            .then(|| {
                req.connection_info()
                    .realip_remote_addr()
                    .map(str::to_owned)
            })
            .flatten()
            .and_then(|a| {
                a.parse::<IpAddr>()
                    .ok()
                    .or_else(|| a.parse::<std::net::SocketAddr>().ok().map(|s| s.ip()))
            });
        ready(Ok(ClientAddr(
            forwarded.or_else(|| req.peer_addr().map(|a| a.ip())),
        )))
    }
}

impl Apiv2Schema for ClientAddr {}
impl OperationModifier for ClientAddr {}
