//! Wiring: database, SMTP, Kafka consumer and dead-letter producer, the handler, and
//! the operators' listener (`/health`, `/ready`, `/metrics`; the service kit's).

use crate::consumer;
use crate::dlq::KafkaDeadLetters;
use crate::mailer::SmtpMailer;
use crate::repository::{
    Db, PgDeadLetterBudget, PgDeliveryLog, PgOrderStore, MIGRATIONS, MIGRATION_LOCK,
};
use crate::service::{
    probe_smtp, HandlerParts, Mailer, Metrics, NotificationHandler, ProbeIntervals, SmtpStatus,
    SystemClock,
};
use crate::settings::Settings;
use anyhow::Context;
use async_trait::async_trait;
use medbook_service_kit::ops::{self, DatabaseCheck, Probes, ReadinessCheck};
use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// The pool, not yet connected (commands that only read use it as is).
pub fn database(settings: &Settings) -> anyhow::Result<Db> {
    Db::new(&settings.database.pool_settings())
}

/// `/ready` is 200 only when the database (de-duplication), the broker and the SMTP
/// server answer: without any of them this service cannot make progress. Liveness
/// (`/health`) stays fine all the while: restarting would not help.
struct BrokerCheck(Arc<KafkaDeadLetters>);

#[async_trait]
impl ReadinessCheck for BrokerCheck {
    fn name(&self) -> &'static str {
        "kafka"
    }
    async fn check(&self) -> anyhow::Result<()> {
        self.0.check().await.map_err(anyhow::Error::msg)
    }
}

/// The last attempt's (or the prober's) finding; while it is `unavailable`, mail waits
/// in hand.
struct SmtpCheck(SmtpStatus);

#[async_trait]
impl ReadinessCheck for SmtpCheck {
    fn name(&self) -> &'static str {
        "smtp"
    }
    async fn check(&self) -> anyhow::Result<()> {
        if self.0.is_up() {
            Ok(())
        } else {
            anyhow::bail!("the SMTP server did not answer the last attempt")
        }
    }
}

pub struct NotificationApp {
    http_port: u16,
    server: actix_web::dev::Server,
    subscription: consumer::Subscription,
    handler: Arc<NotificationHandler>,
    mailer: Arc<dyn Mailer>,
    probe: ProbeIntervals,
    dlq_size: crate::dlq::DlqSize,
    metrics: Metrics,
    stop: watch::Receiver<bool>,
}

/// How often the dead-letter topic is counted for `dlq_messages`.
const DLQ_SIZE_INTERVAL: Duration = Duration::from_secs(10);

/// Stops a running [`NotificationApp`]: the message in hand is finished first.
#[derive(Clone)]
pub struct StopHandle(Arc<watch::Sender<bool>>);

impl StopHandle {
    pub fn stop(&self) {
        let _ = self.0.send(true);
    }
}

impl NotificationApp {
    pub async fn build(settings: &Settings) -> anyhow::Result<(Self, StopHandle)> {
        let db = settings.database.open(MIGRATIONS, MIGRATION_LOCK).await?;
        let metrics = Metrics::new()?;
        let (stop_tx, stop) = watch::channel(false);
        let dlq = Arc::new(KafkaDeadLetters::new(
            &settings.kafka,
            Duration::from_millis(settings.consumer.dlq_timeout_ms),
        )?);
        let smtp = SmtpStatus::new(metrics.smtp_up_gauge());
        let mailer: Arc<dyn Mailer> = Arc::new(SmtpMailer::new(
            &settings.smtp,
            &settings.email.from,
            metrics.clone(),
        )?);
        let handler = Arc::new(NotificationHandler::new(
            HandlerParts {
                mailer: mailer.clone(),
                log: Arc::new(PgDeliveryLog::new(db.clone())),
                order_store: Arc::new(PgOrderStore::new(db.clone())),
                dlq: dlq.clone(),
                retry: settings.retry_policy(),
                budget: Arc::new(PgDeadLetterBudget::new(
                    db.clone(),
                    settings.dead_letters.max_per_window,
                    Duration::from_secs(settings.dead_letters.window_secs),
                )),
                order: settings.order_policy(),
                metrics: metrics.clone(),
                smtp: smtp.clone(),
                clock: Arc::new(SystemClock),
                stale_after: Duration::from_secs(settings.dedup.claim_timeout_secs),
                organizer: sender_address(&settings.email.from),
            },
            stop.clone(),
        ));
        let subscription = consumer::subscribe(settings, metrics.clone())?;
        let dlq_size = crate::dlq::DlqSize::new(
            &settings.kafka,
            Duration::from_millis(settings.consumer.dlq_timeout_ms),
        )?;
        let listener = TcpListener::bind(&settings.http.addr)
            .with_context(|| format!("cannot listen on http.addr {}", settings.http.addr))?;
        let http_port = listener.local_addr()?.port();
        let server = ops::server(
            listener,
            Probes::new(metrics.registry().clone())
                .check(Arc::new(DatabaseCheck(db)))
                .check(Arc::new(BrokerCheck(dlq)))
                .check(Arc::new(SmtpCheck(smtp))),
        )?;
        tracing::info!(port = http_port, "probes and metrics listening");
        Ok((
            Self {
                http_port,
                server,
                subscription,
                handler,
                mailer,
                probe: ProbeIntervals {
                    down: Duration::from_millis(settings.smtp.probe_interval_ms),
                    idle: Duration::from_millis(settings.smtp.idle_check_interval_ms),
                },
                dlq_size,
                metrics,
                stop,
            },
            StopHandle(Arc::new(stop_tx)),
        ))
    }

    pub fn http_port(&self) -> u16 {
        self.http_port
    }

    /// Consumes until stopped (or the dead-letter cap stops it), then stops the HTTP
    /// server.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        let handle = self.server.handle();
        let server = tokio::spawn(self.server);
        let (probe_stop, probe_stopped) = watch::channel(false);
        let prober = tokio::spawn(probe_smtp(
            self.mailer,
            self.handler.smtp().clone(),
            self.probe,
            probe_stopped,
        ));
        let sizer = tokio::spawn(crate::dlq::watch_size(
            self.dlq_size,
            self.metrics,
            DLQ_SIZE_INTERVAL,
            probe_stop.subscribe(),
        ));
        let result = consumer::run(self.subscription, self.handler, self.stop).await;
        let _ = probe_stop.send(true);
        let _ = prober.await;
        let _ = sizer.await;
        handle.stop(true).await;
        let _ = server.await;
        result
    }
}

/// The address part of `name <addr>`.
fn sender_address(from: &str) -> String {
    from.parse::<lettre::message::Mailbox>()
        .map(|m| m.email.to_string())
        .unwrap_or_else(|_| from.to_owned())
}
