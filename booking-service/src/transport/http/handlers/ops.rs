//! `/health` (both listeners), `/ready` and `/metrics` (the operators' listener only,
//! `http.ops_addr`; not in the public OpenAPI document).

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
    /// `ok` or `unavailable`. Informational: while the broker is away, bookings go on
    /// and their events wait in the outbox, so this alone never makes the service
    /// unready.
    pub kafka: String,
}

fn state_word(ok: bool) -> String {
    if ok { "ok" } else { "unavailable" }.to_owned()
}

/// Readiness: 200 when the database answers, 503 otherwise. The broker's state is
/// reported too, but does not make the service unready: bookings keep working while it
/// is away.
pub async fn ready(state: web::Data<AppState>) -> HttpResponse {
    let limit = std::time::Duration::from_secs(2);
    let (db, kafka) = futures_util::join!(
        tokio::time::timeout(limit, state.db.ping()),
        tokio::time::timeout(limit, state.publisher.check()),
    );
    let db_ok = matches!(db, Ok(Ok(())));
    if let Ok(Err(e)) = &db {
        tracing::warn!(error = %e, "readiness: database check failed");
    }
    let kafka_ok = matches!(kafka, Ok(Ok(())));
    if let Ok(Err(e)) = &kafka {
        tracing::warn!(error = %e, "readiness: kafka check failed");
    }
    let status = if db_ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    HttpResponse::build(status).json(ReadyResponse {
        status: if db_ok { "ready" } else { "not_ready" }.into(),
        database: state_word(db_ok),
        kafka: state_word(kafka_ok),
    })
}

/// Prometheus metrics, text exposition format.
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
