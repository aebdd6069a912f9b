//! The operators' endpoints every service serves on its own listener (never the public
//! one): `/health` (liveness: the process answers), `/ready` (readiness: the checks the
//! service registers, each answered `ok` or `unavailable`) and `/metrics` (Prometheus
//! text format). Answers carry `nosniff` and `no-store`.

use crate::db::Db;
use actix_web::http::header;
use actix_web::{web, App, HttpResponse, HttpServer};
use async_trait::async_trait;
use prometheus::Registry;
use serde_json::{json, Map, Value};
use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

/// One dependency `/ready` asks about.
#[async_trait]
pub trait ReadinessCheck: Send + Sync {
    /// Its key in `/ready`'s answer (`database`, `kafka`, `smtp`).
    fn name(&self) -> &'static str;
    /// Whether the service is unready while this check fails. An informational check
    /// (`false`) is reported, but the service stays ready: it can work without it.
    fn required(&self) -> bool {
        true
    }
    async fn check(&self) -> anyhow::Result<()>;
}

/// The database answers `SELECT 1` through the pool.
pub struct DatabaseCheck(pub Db);

#[async_trait]
impl ReadinessCheck for DatabaseCheck {
    fn name(&self) -> &'static str {
        "database"
    }
    async fn check(&self) -> anyhow::Result<()> {
        Ok(self.0.ping().await?)
    }
}

type ScrapeHook = Box<dyn Fn() + Send + Sync>;

/// What the operators' endpoints report: the readiness checks and the metrics.
pub struct Probes {
    checks: Vec<Arc<dyn ReadinessCheck>>,
    registry: Registry,
    before_scrape: Vec<ScrapeHook>,
    check_timeout: Duration,
}

impl Probes {
    pub fn new(registry: Registry) -> Self {
        Self {
            checks: Vec::new(),
            registry,
            before_scrape: Vec::new(),
            check_timeout: Duration::from_secs(2),
        }
    }

    pub fn check(mut self, check: Arc<dyn ReadinessCheck>) -> Self {
        self.checks.push(check);
        self
    }

    /// Runs `hook` before each scrape (to sample gauges such as the pool's state).
    pub fn before_scrape(mut self, hook: impl Fn() + Send + Sync + 'static) -> Self {
        self.before_scrape.push(Box::new(hook));
        self
    }

    /// `/ready`'s answer: every check at once, each within the timeout.
    pub async fn readiness(&self) -> (bool, Value) {
        let results = futures_util::future::join_all(self.checks.iter().map(|c| async move {
            let outcome = tokio::time::timeout(self.check_timeout, c.check()).await;
            let ok = match outcome {
                Ok(Ok(())) => true,
                Ok(Err(e)) => {
                    tracing::warn!(check = c.name(), error = %e, "readiness check failed");
                    false
                }
                Err(_) => {
                    tracing::warn!(check = c.name(), "readiness check timed out");
                    false
                }
            };
            (c.name(), c.required(), ok)
        }))
        .await;
        let ready = results.iter().all(|(_, required, ok)| *ok || !required);
        let mut body = Map::new();
        body.insert(
            "status".into(),
            json!(if ready { "ready" } else { "not_ready" }),
        );
        for (name, _, ok) in results {
            body.insert(name.into(), json!(if ok { "ok" } else { "unavailable" }));
        }
        (ready, Value::Object(body))
    }

    /// The metrics in Prometheus' text format.
    pub fn render(&self) -> Result<String, prometheus::Error> {
        for hook in &self.before_scrape {
            hook();
        }
        prometheus::TextEncoder::new().encode_to_string(&self.registry.gather())
    }
}

/// Liveness: 200 while the process serves requests; checks nothing else.
pub async fn health() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

/// Readiness: 200 when every required check passes, 503 otherwise.
pub async fn ready(probes: web::Data<Probes>) -> HttpResponse {
    let (ready, body) = probes.readiness().await;
    if ready {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}

pub async fn metrics(probes: web::Data<Probes>) -> HttpResponse {
    match probes.render() {
        Ok(text) => HttpResponse::Ok()
            .content_type("text/plain; version=0.0.4")
            .body(text),
        Err(e) => {
            tracing::error!(error = %e, "rendering metrics failed");
            HttpResponse::InternalServerError().finish()
        }
    }
}

/// The three routes, for an app that adds its own middleware (`web::Data<Probes>`
/// must be registered on it).
pub fn routes(cfg: &mut web::ServiceConfig) {
    use crate::probe::{HEALTH_PATH, METRICS_PATH, READY_PATH};
    cfg.route(HEALTH_PATH, web::get().to(health))
        .route(READY_PATH, web::get().to(ready))
        .route(METRICS_PATH, web::get().to(metrics));
}

/// A stand-alone operators' server on `listener`: one worker, stopped by its owner
/// (no signal handling of its own), five seconds to finish a scrape.
pub fn server(listener: TcpListener, probes: Probes) -> std::io::Result<actix_web::dev::Server> {
    let probes = web::Data::new(probes);
    Ok(HttpServer::new(move || {
        App::new()
            .wrap(
                actix_web::middleware::DefaultHeaders::new()
                    .add((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
                    .add((header::CACHE_CONTROL, "no-store")),
            )
            .app_data(probes.clone())
            .configure(routes)
    })
    .listen(listener)?
    .workers(1)
    .disable_signals()
    .shutdown_timeout(5)
    .run())
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fixed(&'static str, bool, bool);

    #[async_trait]
    impl ReadinessCheck for Fixed {
        fn name(&self) -> &'static str {
            self.0
        }
        fn required(&self) -> bool {
            self.1
        }
        async fn check(&self) -> anyhow::Result<()> {
            if self.2 {
                Ok(())
            } else {
                anyhow::bail!("down")
            }
        }
    }

    #[tokio::test]
    async fn an_informational_check_never_makes_the_service_unready() {
        let probes = Probes::new(Registry::new())
            .check(Arc::new(Fixed("database", true, true)))
            .check(Arc::new(Fixed("kafka", false, false)));
        let (ready, body) = probes.readiness().await;
        assert!(ready);
        assert_eq!(
            body,
            json!({"status": "ready", "database": "ok", "kafka": "unavailable"})
        );
        let probes = Probes::new(Registry::new()).check(Arc::new(Fixed("database", true, false)));
        let (ready, body) = probes.readiness().await;
        assert!(!ready);
        assert_eq!(
            body,
            json!({"status": "not_ready", "database": "unavailable"})
        );
    }

    #[test]
    fn scrape_hooks_run_before_rendering() {
        let registry = Registry::new();
        let gauge = prometheus::IntGauge::new("sampled", "a sampled value").unwrap();
        registry.register(Box::new(gauge.clone())).unwrap();
        let g = gauge.clone();
        let probes = Probes::new(registry).before_scrape(move || g.set(7));
        assert!(probes.render().unwrap().contains("sampled 7"));
    }
}
