//! `/health`, `/ready` and `/metrics`.

use crate::transport::http::state::AppState;
use actix_web::http::StatusCode;
use actix_web::HttpResponse;
use paperclip::actix::{api_v2_operation, web, Apiv2Schema};
use serde::Serialize;

#[derive(Debug, Serialize, Apiv2Schema)]
pub struct HealthResponse {
    /// `ok`
    pub status: String,
}

/// Liveness
///
/// 200 while the process serves requests; checks nothing else.
#[api_v2_operation(tags(Ops))]
pub async fn health() -> web::Json<HealthResponse> {
    web::Json(HealthResponse {
        status: "ok".into(),
    })
}

#[derive(Debug, Serialize, Apiv2Schema)]
pub struct ReadyResponse {
    /// `ready` or `not_ready`
    pub status: String,
    /// `ok` or `unavailable`
    pub database: String,
}

/// Readiness
///
/// 200 when the database answers, 503 otherwise.
#[api_v2_operation(tags(Ops))]
pub async fn ready(state: web::Data<AppState>) -> HttpResponse {
    let check = tokio::time::timeout(std::time::Duration::from_secs(2), state.db.ping()).await;
    let db_ok = matches!(check, Ok(Ok(())));
    if let Ok(Err(e)) = &check {
        tracing::warn!(error = %e, "readiness: database check failed");
    }
    let (status, body) = if db_ok {
        (
            StatusCode::OK,
            ReadyResponse {
                status: "ready".into(),
                database: "ok".into(),
            },
        )
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            ReadyResponse {
                status: "not_ready".into(),
                database: "unavailable".into(),
            },
        )
    };
    HttpResponse::build(status).json(body)
}

/// Prometheus metrics
///
/// Text exposition format.
#[api_v2_operation(tags(Ops), produces = "text/plain")]
pub async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    let (open, idle, max) = state.db.stats();
    state.metrics.set_pool(open, idle, max);
    match state.metrics.render() {
        Ok(text) => HttpResponse::Ok()
            .content_type("text/plain; version=0.0.4")
            .body(text),
        Err(e) => {
            tracing::error!(error = %e, "rendering metrics failed");
            HttpResponse::InternalServerError().finish()
        }
    }
}
