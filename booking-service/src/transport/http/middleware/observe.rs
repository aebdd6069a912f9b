//! One structured log line per request (method, matched route, status, latency,
//! request id; the cause of a 5xx) and the HTTP metrics.

use super::request_id::RequestId;
use crate::transport::http::error::{ApiError, InternalCause};
use crate::transport::http::state::AppState;
use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::{web, Error, HttpMessage};
use std::time::Instant;

struct InFlight(Option<prometheus::IntGauge>);

impl InFlight {
    fn enter(gauge: Option<prometheus::IntGauge>) -> Self {
        if let Some(g) = &gauge {
            g.inc();
        }
        Self(gauge)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if let Some(g) = &self.0 {
            g.dec();
        }
    }
}

pub async fn observe(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, Error> {
    let start = Instant::now();
    let metrics = req
        .app_data::<web::Data<AppState>>()
        .map(|s| s.metrics.clone());
    let _in_flight = InFlight::enter(metrics.as_ref().map(|m| m.in_flight.clone()));
    let method = req.method().to_string();
    let request_id = req
        .extensions()
        .get::<RequestId>()
        .map(|r| r.0.clone())
        .unwrap_or_default();
    // Computed from the app's resource map, before the request is routed.
    let route = crate::transport::http::access::routed_pattern(req.request())
        .unwrap_or_else(|| "unmatched".to_owned());
    let result = next.call(req).await;
    let (status, cause) = match &result {
        Ok(res) => (
            res.status().as_u16(),
            res.response()
                .extensions()
                .get::<InternalCause>()
                .map(|c| c.0.clone()),
        ),
        Err(e) => (
            e.as_response_error().status_code().as_u16(),
            e.as_error::<ApiError>().and_then(|a| a.cause.clone()),
        ),
    };
    let elapsed = start.elapsed();
    // This middleware runs inside the `request` span (`request_id`), the server span.
    let span = tracing::Span::current();
    span.record("http.response.status_code", status);
    if status >= 500 {
        span.record("otel.status_code", "error");
    }
    if let Some(m) = &metrics {
        m.requests
            .with_label_values(&[method.as_str(), route.as_str(), &status.to_string()])
            .inc();
        m.latency
            .with_label_values(&[method.as_str(), route.as_str()])
            .observe(elapsed.as_secs_f64());
    }
    let latency_ms = elapsed.as_secs_f64() * 1000.0;
    match cause {
        Some(cause) => tracing::error!(
            target: "http",
            method, route, status, latency_ms, request_id, error = %cause,
            "request failed"
        ),
        None if status >= 500 => tracing::warn!(
            target: "http", method, route, status, latency_ms, request_id, "request"
        ),
        None => tracing::info!(
            target: "http", method, route, status, latency_ms, request_id, "request"
        ),
    }
    result.map(ServiceResponse::map_into_boxed_body)
}
