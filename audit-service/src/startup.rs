//! Wiring: the signing key, the listeners, the database and the log, the gRPC server
//! (AuditService, `grpc.health.v1`, reflection v1 and v1alpha), the operators'
//! listener (`/health`, `/ready`, `/metrics`; the service kit's) and the checkpoint
//! timer.
//!
//! Both listeners are bound first, so the process is reachable while it loads the log
//! (a million leaves take a few seconds): meanwhile gRPC health says NOT_SERVING,
//! `/ready` says `not_ready` and AuditService calls are UNAVAILABLE. A health monitor
//! then follows the database: NOT_SERVING while it does not answer.

use crate::grpc::auth::Credentials;
use crate::grpc::{AppendPolicy, AuditGrpc, AuditServiceServer, SERVED};
use crate::log::{AuditLog, Loaded, LogConfig};
use crate::metrics::Metrics;
use crate::ports::{Clock, SystemClock};
use crate::repository::{Db, PgLogStore, MIGRATIONS, MIGRATION_LOCK};
use crate::settings::Settings;
use anyhow::Context;
use async_trait::async_trait;
use medbook_proto::observe::{GrpcMetrics, ServerObserveLayer};
use medbook_service_kit::ops::{self, DatabaseCheck, Probes, ReadinessCheck};
use std::future::Future;
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tonic_health::ServingStatus;

/// The AuditService's methods, whose metric series exist before the first call.
const METHODS: &[(&str, &str)] = &[
    ("medbook.audit.v1.AuditService", "Append"),
    ("medbook.audit.v1.AuditService", "Query"),
    ("medbook.audit.v1.AuditService", "GetCheckpoint"),
    ("medbook.audit.v1.AuditService", "GetInclusionProof"),
    ("medbook.audit.v1.AuditService", "GetConsistencyProof"),
];

/// How long calls in flight may take to finish after a stop signal.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// How often the health monitor asks the database.
const HEALTH_INTERVAL: Duration = Duration::from_secs(2);

struct LogLoaded(Loaded);

#[async_trait]
impl ReadinessCheck for LogLoaded {
    fn name(&self) -> &'static str {
        "log"
    }
    async fn check(&self) -> anyhow::Result<()> {
        match self.0.get() {
            Some(_) => Ok(()),
            None => anyhow::bail!("the log is still loading"),
        }
    }
}

/// Serves until `stop` completes.
pub async fn serve(
    settings: Settings,
    stop: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let key = settings.signing_key_for_serving()?;
    let mut trusted = vec![key.verifying_key()];
    trusted.extend(settings.audit.previous_keys()?);
    let metrics = Metrics::new()?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);

    let grpc_listener = tokio::net::TcpListener::bind(&settings.grpc.addr)
        .await
        .with_context(|| format!("cannot listen on grpc.addr {}", settings.grpc.addr))?;
    let grpc_port = grpc_listener.local_addr()?.port();
    let ops_listener = std::net::TcpListener::bind(&settings.http.ops_addr)
        .with_context(|| format!("cannot listen on http.ops_addr {}", settings.http.ops_addr))?;
    let ops_port = ops_listener.local_addr()?.port();

    let db = medbook_service_kit::db::Db::new(&settings.database.pool_settings())?;
    let loaded: Loaded = Arc::new(OnceLock::new());
    let hook_log = loaded.clone();
    let probes = Probes::new(metrics.registry().clone())
        .check(Arc::new(DatabaseCheck(db.clone())))
        .check(Arc::new(LogLoaded(loaded.clone())))
        .before_scrape(move || {
            if let Some(log) = hook_log.get() {
                log.sample();
            }
        });
    let ops_server = ops::server(ops_listener, probes)?;
    let ops_handle = ops_server.handle();
    let ops_task = tokio::spawn(ops_server);
    tracing::info!(port = ops_port, "probes and metrics listening");

    let (reporter, health) = tonic_health::server::health_reporter();
    set_health(&reporter, ServingStatus::NotServing).await;
    let mut reflection_v1 = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(medbook_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET);
    let mut reflection_v1alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(medbook_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET);
    for name in SERVED {
        reflection_v1 = reflection_v1.with_service_name(name);
        reflection_v1alpha = reflection_v1alpha.with_service_name(name);
    }
    let audit = AuditGrpc::new(
        loaded.clone(),
        clock.clone(),
        metrics.clone(),
        Credentials::new(settings.audit.append_token(), settings.audit.read_token()),
        AppendPolicy {
            max_batch: settings.audit.max_batch,
            max_future_skew: settings.audit.max_future_skew(),
        },
    );
    let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
    let mut grpc_stop = stop_rx.clone();
    let grpc_metrics = GrpcMetrics::new(metrics.registry(), "server", METHODS)?;
    let grpc = tonic::transport::Server::builder()
        // A server span (continuing the caller's trace) and RED metrics per call.
        .layer(ServerObserveLayer::new(grpc_metrics, &SERVED))
        .add_service(health)
        .add_service(reflection_v1.build_v1()?)
        .add_service(reflection_v1alpha.build_v1alpha()?)
        .add_service(
            AuditServiceServer::new(audit)
                // A full batch of maximal records, and a margin.
                .max_decoding_message_size(64 * 1024 * 1024),
        )
        .serve_with_incoming_shutdown(
            tonic::transport::server::TcpIncoming::from(grpc_listener).with_nodelay(Some(true)),
            async move {
                let _ = grpc_stop.wait_for(|s| *s).await;
            },
        );
    let grpc_task = tokio::spawn(grpc);
    tracing::info!(port = grpc_port, "grpc listening");
    tokio::spawn(async move {
        stop.await;
        let _ = stop_tx.send(true);
    });

    // The database, the migrations, the tree; a failure here ends the process.
    let opened = async {
        let db = settings.database.open(MIGRATIONS, MIGRATION_LOCK).await?;
        let log = AuditLog::open(
            Arc::new(PgLogStore::new(db.clone())),
            clock,
            key,
            trusted,
            LogConfig {
                origin: settings.audit.origin.clone(),
                checkpoint_every: settings.audit.checkpoint_every,
            },
            metrics.clone(),
        )
        .await?;
        anyhow::Ok((db, log))
    };
    let opened = tokio::select! {
        log = opened => Some(log),
        _ = stop_rx.wait_for(|s| *s) => None,
    };
    let (log_db, log) = match opened {
        Some(Ok((log_db, log))) => (log_db, Arc::new(log)),
        Some(Err(e)) => {
            ops_handle.stop(false).await;
            return Err(e);
        }
        None => {
            ops_handle.stop(true).await;
            return Ok(());
        }
    };
    let _ = loaded.set(log.clone());
    set_health(&reporter, ServingStatus::Serving).await;
    tracing::info!(tree_size = log.size(), "audit-service ready");

    let monitor = tokio::spawn(monitor_health(log_db, reporter, stop_rx.clone()));
    let ticker = tokio::spawn(checkpoint_timer(
        log.clone(),
        Duration::from_secs(settings.audit.checkpoint_interval_secs),
        stop_rx.clone(),
    ));

    let mut grpc_task = grpc_task;
    let served = tokio::select! {
        served = &mut grpc_task => served,
        _ = stop_rx.wait_for(|s| *s) => {
            // Calls in flight finish; connections a client keeps open idle do not
            // hold the process beyond the grace period.
            match tokio::time::timeout(SHUTDOWN_GRACE, &mut grpc_task).await {
                Ok(served) => served,
                Err(_) => {
                    grpc_task.abort();
                    tracing::info!("closed the connections still open after the grace period");
                    Ok(Ok(()))
                }
            }
        }
    };
    let _ = monitor.await;
    let _ = ticker.await;
    ops_handle.stop(true).await;
    let _ = ops_task.await;
    match served {
        Ok(Ok(())) => {
            tracing::info!("audit-service stopped");
            Ok(())
        }
        Ok(Err(e)) => Err(anyhow::anyhow!("the gRPC server failed: {e}")),
        Err(e) => Err(anyhow::anyhow!("the gRPC server task failed: {e}")),
    }
}

async fn set_health(reporter: &tonic_health::server::HealthReporter, status: ServingStatus) {
    reporter.set_service_status("", status).await;
    reporter
        .set_service_status("medbook.audit.v1.AuditService", status)
        .await;
}

/// SERVING while the database answers, NOT_SERVING while it does not.
async fn monitor_health(
    db: Db,
    reporter: tonic_health::server::HealthReporter,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut serving = true;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(HEALTH_INTERVAL) => {}
            _ = stop.wait_for(|s| *s) => break,
        }
        let up = tokio::time::timeout(HEALTH_INTERVAL, db.ping())
            .await
            .is_ok_and(|r| r.is_ok());
        if up != serving {
            serving = up;
            tracing::warn!(serving, "database reachability changed");
            let status = if up {
                ServingStatus::Serving
            } else {
                ServingStatus::NotServing
            };
            set_health(&reporter, status).await;
        }
    }
    set_health(&reporter, ServingStatus::NotServing).await;
}

/// A checkpoint every `interval` while the tree grew.
async fn checkpoint_timer(
    log: Arc<AuditLog>,
    interval: Duration,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        if let Err(e) = log.checkpoint_if_grown().await {
            tracing::warn!(error = %e, "timed checkpoint failed; retrying at the next tick");
        }
    }
}
