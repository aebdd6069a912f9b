//! `/health`, `/ready` (database, broker, SMTP server) and `/metrics` of the
//! notification-service: an operators' listener, never to be exposed publicly. Its
//! answers carry `nosniff` and `no-store` like every answer of the system.

use crate::dlq::KafkaDeadLetters;
use crate::repository::Db;
use crate::service::{Metrics, SmtpStatus};
use actix_web::{web, App, HttpResponse, HttpServer};
use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

pub struct Probes {
    pub db: Db,
    pub dlq: Arc<KafkaDeadLetters>,
    pub metrics: Metrics,
    pub smtp: SmtpStatus,
}

async fn health() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({"status": "ok"}))
}

/// 200 when the database (de-duplication), the broker and the SMTP server answer:
/// without any of them, this service cannot make progress. The SMTP status is the last
/// attempt's (or the prober's) finding; while it is `unavailable`, mail waits in hand.
/// Liveness (`/health`) stays fine all the while: restarting would not help.
async fn ready(p: web::Data<Probes>) -> HttpResponse {
    let limit = Duration::from_secs(2);
    let (db, kafka) = futures_util::join!(
        tokio::time::timeout(limit, p.db.ping()),
        tokio::time::timeout(limit, p.dlq.check()),
    );
    let db_ok = matches!(db, Ok(Ok(())));
    let kafka_ok = matches!(kafka, Ok(Ok(())));
    let smtp_ok = p.smtp.is_up();
    let word = |ok: bool| if ok { "ok" } else { "unavailable" };
    let all = db_ok && kafka_ok && smtp_ok;
    let body = serde_json::json!({
        "status": if all { "ready" } else { "not_ready" },
        "database": word(db_ok),
        "kafka": word(kafka_ok),
        "smtp": word(smtp_ok),
    });
    if all {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}

async fn metrics(p: web::Data<Probes>) -> HttpResponse {
    match p.metrics.render() {
        Ok(text) => HttpResponse::Ok()
            .content_type("text/plain; version=0.0.4")
            .body(text),
        Err(e) => {
            tracing::error!(error = %e, "rendering metrics failed");
            HttpResponse::InternalServerError().finish()
        }
    }
}

pub fn server(listener: TcpListener, probes: Probes) -> std::io::Result<actix_web::dev::Server> {
    let probes = web::Data::new(probes);
    Ok(HttpServer::new(move || {
        App::new()
            .wrap(
                actix_web::middleware::DefaultHeaders::new()
                    .add((actix_web::http::header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
                    .add((actix_web::http::header::CACHE_CONTROL, "no-store")),
            )
            .app_data(probes.clone())
            .route("/health", web::get().to(health))
            .route("/ready", web::get().to(ready))
            .route("/metrics", web::get().to(metrics))
    })
    .listen(listener)?
    .workers(1)
    .disable_signals()
    .shutdown_timeout(5)
    .run())
}
