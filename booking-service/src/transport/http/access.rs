//! Who may call which route, decided before anything else looks at the request.
//!
//! [`POLICY`] names every route of the public listener with the roles it admits. The
//! [`authorize`] middleware runs before routing hands the request to its handler, so
//! a caller without the right role gets 401/403 before its body, path or query is
//! parsed: a patient probing an admin route learns nothing about its validation rules.
//! The caller it authenticated is kept in the request's extensions, where the
//! `Caller` extractor finds it (one token check and one revocation lookup per request).
//!
//! A test compares the table with the OpenAPI document, so a route cannot be added to
//! one and forgotten in the other; the document states each operation's rule
//! (`x-medbook-roles`).

use super::error::ApiError;
use super::extractors::authenticate;
use crate::domain::Role;
use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderValue};
use actix_web::http::{Method, StatusCode};
use actix_web::middleware::Next;
use actix_web::{Error, HttpMessage};
use medbook_service_kit::context::{self, Actor};

/// What a route admits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone, with or without a token.
    Public,
    /// A valid access token of one of these roles.
    Roles(&'static [Role]),
}

const ANY_USER: Access = Access::Roles(&[Role::Patient, Role::Admin, Role::Doctor]);
const PATIENT: Access = Access::Roles(&[Role::Patient]);
const PATIENT_OR_ADMIN: Access = Access::Roles(&[Role::Patient, Role::Admin]);
const ADMIN: Access = Access::Roles(&[Role::Admin]);
const DOCTOR: Access = Access::Roles(&[Role::Doctor]);
const DOCTOR_OR_ADMIN: Access = Access::Roles(&[Role::Doctor, Role::Admin]);
use Access::Public;

/// Every route of the public listener: method, route pattern, access.
pub const POLICY: &[(&str, &str, Access)] = &[
    ("POST", "/api/v1/auth/register", Public),
    ("POST", "/api/v1/auth/login", Public),
    ("POST", "/api/v1/auth/refresh", Public),
    ("POST", "/api/v1/auth/logout", Public),
    ("POST", "/api/v1/auth/verify-email", Public),
    ("POST", "/api/v1/auth/password-reset", Public),
    ("POST", "/api/v1/auth/password-reset/confirm", Public),
    ("GET", "/api/v1/me", ANY_USER),
    ("PATCH", "/api/v1/me", ANY_USER),
    ("POST", "/api/v1/me/email-verification", ANY_USER),
    ("GET", "/api/v1/patients", ADMIN),
    ("POST", "/api/v1/patients", ADMIN),
    ("GET", "/api/v1/patients/{id}", ADMIN),
    ("PUT", "/api/v1/patients/{id}", ADMIN),
    ("DELETE", "/api/v1/patients/{id}", ADMIN),
    ("GET", "/api/v1/clinics", Public),
    ("POST", "/api/v1/clinics", ADMIN),
    ("GET", "/api/v1/clinics/{id}", Public),
    ("PUT", "/api/v1/clinics/{id}", ADMIN),
    ("DELETE", "/api/v1/clinics/{id}", ADMIN),
    ("GET", "/api/v1/doctors", Public),
    ("POST", "/api/v1/doctors", ADMIN),
    ("GET", "/api/v1/doctors/{id}", Public),
    ("PUT", "/api/v1/doctors/{id}", ADMIN),
    ("DELETE", "/api/v1/doctors/{id}", ADMIN),
    ("GET", "/api/v1/doctors/{id}/reviews", Public),
    ("POST", "/api/v1/doctors/{id}/reviews", PATIENT),
    ("GET", "/api/v1/doctors/{id}/slots", Public),
    ("POST", "/api/v1/doctors/{id}/slots", ADMIN),
    ("POST", "/api/v1/doctors/{id}/slots/generate", ADMIN),
    ("DELETE", "/api/v1/slots/{id}", ADMIN),
    ("POST", "/api/v1/slots/{id}/block", ADMIN),
    ("POST", "/api/v1/slots/{id}/unblock", ADMIN),
    ("GET", "/api/v1/appointments", PATIENT_OR_ADMIN),
    ("POST", "/api/v1/appointments", PATIENT),
    ("GET", "/api/v1/appointments/{id}", PATIENT_OR_ADMIN),
    ("POST", "/api/v1/appointments/{id}/cancel", PATIENT_OR_ADMIN),
    (
        "POST",
        "/api/v1/appointments/{id}/reschedule",
        PATIENT_OR_ADMIN,
    ),
    ("GET", "/health", Public),
    ("GET", "/account/verify-email", Public),
    ("POST", "/account/verify-email", Public),
    ("GET", "/account/reset-password", Public),
    ("POST", "/account/reset-password", Public),
    ("GET", "/api/v1/audit", ADMIN),
    ("GET", "/api/v1/doctor/appointments", DOCTOR),
    ("POST", "/api/v1/doctor/calendar-feed", DOCTOR),
    (
        "POST",
        "/api/v1/appointments/{id}/attendance",
        DOCTOR_OR_ADMIN,
    ),
    ("POST", "/api/v1/patients/{id}/appointments", ADMIN),
    ("GET", "/api/v1/clinics/{id}/policy", Public),
    ("PUT", "/api/v1/clinics/{id}/policy", ADMIN),
    ("GET", "/api/v1/doctors/{id}/policy", Public),
    ("PUT", "/api/v1/doctors/{id}/policy", ADMIN),
    ("GET", "/api/v1/me/waitlist", PATIENT),
    ("POST", "/api/v1/me/waitlist", PATIENT),
    ("DELETE", "/api/v1/me/waitlist/{id}", PATIENT),
    ("POST", "/api/v1/me/calendar-feed", PATIENT),
    // Links that act without a login: the secret token is the credential.
    ("GET", "/manage", Public),
    ("POST", "/manage/cancel", Public),
    ("POST", "/manage/reschedule", Public),
    ("GET", "/waitlist/offer", Public),
    ("POST", "/waitlist/offer", Public),
    ("GET", "/calendar/{file}", Public),
    // The OpenAPI document and Swagger UI (`swagger`, routed only when
    // `http.swagger_ui` is on): outside the document, public.
    ("GET", "/openapi.json", Public),
    ("GET", "/swagger", Public),
    ("GET", "/swagger/", Public),
    ("GET", "/swagger/{file}", Public),
];

/// The rule of a route, if it is one of ours.
pub fn rule(method: &Method, pattern: &str) -> Option<Access> {
    POLICY
        .iter()
        .find(|(m, p, _)| *p == pattern && *m == method.as_str())
        .map(|(_, _, a)| *a)
}

/// Role names for the OpenAPI document; `None` for public routes.
pub fn role_names(access: Access) -> Option<Vec<&'static str>> {
    match access {
        Access::Public => None,
        Access::Roles(roles) => Some(roles.iter().map(|r| r.as_str()).collect()),
    }
}

/// The rule of the request's route, matched once per request and kept in its
/// extensions for the next middleware that asks.
#[derive(Debug, Clone, Copy)]
struct RouteRule(Option<Access>);

/// The route pattern of the request, matched against the same (percent-decoded) path
/// the router dispatches on: `req.match_pattern()` reads the raw path, so
/// `/api/v1/%70atients` would match no pattern there and still reach the patients
/// handler.
pub fn routed_pattern(req: &actix_web::HttpRequest) -> Option<String> {
    if let Some(RoutePattern(pattern)) = req.extensions().get::<RoutePattern>() {
        return pattern.clone();
    }
    // Matching walks the resource map: once per request, kept for the next asker
    // (the request log line and metrics, the access check).
    let pattern = req.resource_map().match_pattern(req.match_info().as_str());
    req.extensions_mut().insert(RoutePattern(pattern.clone()));
    pattern
}

/// The request's route pattern, matched once.
#[derive(Debug, Clone)]
struct RoutePattern(Option<String>);

pub fn rule_of(req: &actix_web::HttpRequest) -> Option<Access> {
    if let Some(RouteRule(access)) = req.extensions().get::<RouteRule>() {
        return *access;
    }
    let access = routed_pattern(req).and_then(|p| rule(req.method(), &p));
    req.extensions_mut().insert(RouteRule(access));
    access
}

/// The answer to a request no rule covers: 405 with the methods the table has for a
/// known path (`Allow`), else 404. Never passed on.
fn uncovered(req: ServiceRequest) -> ServiceResponse<BoxBody> {
    let allowed: Vec<&str> = routed_pattern(req.request())
        .map(|pattern| {
            POLICY
                .iter()
                .filter(|(_, p, _)| *p == pattern)
                .map(|(m, _, _)| *m)
                .collect()
        })
        .unwrap_or_default();
    if allowed.is_empty() {
        return req.error_response(ApiError::from_status(StatusCode::NOT_FOUND));
    }
    let mut res = req.error_response(ApiError::from_status(StatusCode::METHOD_NOT_ALLOWED));
    if let Ok(value) = HeaderValue::from_str(&allowed.join(", ")) {
        res.headers_mut().insert(header::ALLOW, value);
    }
    res
}

/// Whether a response to this request may be stored by caches: only public reads
/// (the catalogue) may; everything else carries tokens or personal data.
pub fn cacheable(req: &actix_web::HttpRequest) -> bool {
    req.method() == Method::GET
        && req.path().starts_with("/api/")
        && rule_of(req) == Some(Access::Public)
}

/// Refuses callers without the route's role before the handler (and its extractors)
/// run.
pub async fn authorize(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, Error> {
    let mut actor = None;
    let Some(access) = rule_of(req.request()) else {
        return Ok(uncovered(req));
    };
    if let Access::Roles(roles) = access {
        let refused = match authenticate(req.request().clone()).await {
            Ok(caller) if roles.contains(&caller.role) => {
                let span = tracing::Span::current();
                span.record("user_id", tracing::field::display(caller.id));
                span.record("role", caller.role.as_str());
                actor = Some(Actor::User {
                    id: caller.id.to_string(),
                    role: caller.role.as_str().to_owned(),
                });
                req.extensions_mut().insert(caller);
                None
            }
            Ok(_) => Some(ApiError::forbidden()),
            Err(e) => Some(e),
        };
        if let Some(e) = refused {
            return Ok(req.error_response(e));
        }
    }
    let handled = async move {
        next.call(req)
            .await
            .map(ServiceResponse::map_into_boxed_body)
    };
    // The caller is who every change below is audited as.
    match actor {
        Some(actor) => context::with_actor(actor, handled).await,
        None => handled.await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_has_one_rule() {
        let mut seen = std::collections::HashSet::new();
        for (m, p, _) in POLICY {
            assert!(seen.insert((m, p)), "{m} {p} listed twice");
            assert!(Method::from_bytes(m.as_bytes()).is_ok(), "{m}");
        }
        assert_eq!(
            rule(&Method::POST, "/api/v1/patients"),
            Some(ADMIN),
            "admin routes are admin"
        );
        assert_eq!(rule(&Method::GET, "/api/v1/doctors"), Some(Public));
        assert_eq!(rule(&Method::PATCH, "/api/v1/doctors"), None);
    }
}
