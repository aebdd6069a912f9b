//! `X-Request-Id`: taken from the request when it is a sane token, generated
//! otherwise; echoed on every response and available to error bodies. The request runs
//! inside a `request` span carrying the id (and, once authenticated, the caller), so
//! every log line it causes says which request it belongs to; the id is also the
//! request's context (`medbook_service_kit::context`), stored with the outbox rows it
//! writes and sent on with their events.
//!
//! The `request` span is also the OpenTelemetry server span of the request: a W3C
//! `traceparent` sent by the caller makes it a child of the caller's span (a malformed
//! one is ignored and a new trace begins); `observe` records the status on it.

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::error::InternalError;
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::{Error, HttpMessage};
use tracing::Instrument;
use uuid::Uuid;

pub const HEADER: &str = "x-request-id";

/// The request id, also stored in the request's extensions.
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

fn acceptable(id: &str) -> bool {
    (1..=128).contains(&id.len())
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':'))
}

pub async fn request_id(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, Error> {
    let id = req
        .headers()
        .get(HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|v| acceptable(v))
        .map(str::to_owned)
        .unwrap_or_else(|| Uuid::new_v4().to_string());
    req.extensions_mut().insert(RequestId(id.clone()));
    let header_value = HeaderValue::from_str(&id).ok();
    // Computed from the app's resource map, before the request is routed.
    let route = crate::transport::http::access::routed_pattern(req.request())
        .unwrap_or_else(|| "unmatched".to_owned());
    // Probes and scrapes (every few seconds, forever) are not traced: a trace each
    // would bury the ones people look for.
    let probe = matches!(req.path(), "/health" | "/ready" | "/metrics");
    let span = if probe {
        tracing::Span::none()
    } else {
        tracing::info_span!(
        "request",
        otel.name = %format!("{} {route}", req.method()),
        otel.kind = "server",
        otel.status_code = tracing::field::Empty,
        http.request.method = %req.method(),
        http.route = %route,
        http.response.status_code = tracing::field::Empty,
        request_id = %id,
        user_id = tracing::field::Empty,
        role = tracing::field::Empty,
        )
    };
    let parent = medbook_shared::trace_context::context_from(|key| {
        req.headers()
            .get(key)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    });
    medbook_shared::trace_context::set_remote_parent(&span, parent);
    medbook_service_kit::context::with_request_id(
        id,
        async move {
            match next.call(req).await {
                Ok(mut res) => {
                    if let Some(v) = header_value {
                        res.headers_mut().insert(HeaderName::from_static(HEADER), v);
                    }
                    Ok(res.map_into_boxed_body())
                }
                // Errors raised by middleware (timeout, panic) have no request left to
                // build a `ServiceResponse` from: render them here, inside the request-id
                // scope, and hand the finished response to actix.
                Err(e) => {
                    let mut response = e.error_response();
                    if let Some(v) = header_value {
                        response
                            .headers_mut()
                            .insert(HeaderName::from_static(HEADER), v);
                    }
                    Err(InternalError::from_response(e.to_string(), response).into())
                }
            }
        }
        .instrument(span),
    )
    .await
}
