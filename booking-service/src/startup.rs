//! Wiring: builds the pool, runs migrations, creates the use cases and the HTTP server.
//! `Application::build` binds the listener (port 0 picks a free port, which tests use).

use crate::audit_client::AuditClient;
use crate::cache::memory::MemoryCache;
use crate::cache::redis::{RedisCache, RedisRevokedTokens};
use crate::cache::{Cache, CacheMetrics, RevokedTokens};
use crate::messaging::KafkaPublisher;
use crate::repository::audit::PgAuditLog;
use crate::repository::day_feed::PgChangeSource;
use crate::repository::{
    migrations, Db, PgAccounts, PgAppointments, PgClinics, PgDoctors, PgLoginThrottle, PgOutbox,
    PgRefreshTokens, PgReminders, PgReviews, PgSlots, PgUsers,
};
use crate::security::{BcryptHasher, JwtIssuer};
use crate::service::accounts::AccountService;
use crate::service::appointments::AppointmentService;
use crate::service::audit_log::AuditLogService;
use crate::service::auth::{AuthService, LoginLimits};
use crate::service::authenticate::Authenticator;
use crate::service::catalog::CatalogService;
use crate::service::day_feed::{DayFeedListener, DayFeedMetrics};
use crate::service::outbox::{
    AppointmentCommits, EventPublisher, OutboxRelay, OutboxSignal, RelayMetrics, Sink,
};
use crate::service::patients::PatientService;
use crate::service::ports::{Clock, SystemClock, ThrottlePolicy, TokenIssuer};
use crate::service::reminders::{ReminderMetrics, ReminderScheduler};
use crate::service::reviews::ReviewService;
use crate::service::schedule::{DaySchedule, ScheduleFeed};
use crate::service::slots::SlotService;
use crate::settings::{CacheBackend, RevocationFailure, Settings};
use crate::transport::http::{self, metrics::Metrics, state::AppState, HttpAppConfig};
use actix_web::dev::{Server, ServerHandle};
use anyhow::Context;
use medbook_service_kit::ops::{DatabaseCheck, Probes, ReadinessCheck};
use secrecy::ExposeSecret;
use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

/// The use cases, built once from settings; shared by the HTTP server and the CLI.
pub struct Services {
    pub db: Db,
    pub metrics: Arc<Metrics>,
    pub auth: Arc<AuthService>,
    pub accounts: Arc<AccountService>,
    pub patients: Arc<PatientService>,
    pub catalog: Arc<CatalogService>,
    pub slots: Arc<SlotService>,
    pub appointments: Arc<AppointmentService>,
    pub reviews: Arc<ReviewService>,
    pub schedule: Arc<DaySchedule>,
    pub policies: Arc<crate::service::policies::PolicyService>,
    pub waitlist: Arc<crate::service::waitlist::WaitlistService>,
    pub calendar: Arc<crate::service::calendar::CalendarService>,
    pub booking_metrics: crate::service::booking_metrics::BookingMetrics,
    pub revoked: Arc<dyn RevokedTokens>,
    pub issuer: Arc<dyn TokenIssuer>,
    pub clock: Arc<dyn Clock>,
    /// Wakes this process's outbox relay after a committed appointment change.
    pub outbox_signal: OutboxSignal,
    pub reminder_metrics: ReminderMetrics,
}

impl Services {
    /// Connects (retrying for `database.startup_retry_secs`), migrates if configured,
    /// and builds every use case.
    pub async fn build(settings: &Settings) -> anyhow::Result<Self> {
        let db = settings
            .database
            .open(migrations::MIGRATIONS, MIGRATION_LOCK)
            .await?;

        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let metrics = Arc::new(Metrics::new()?);
        let cache_metrics = CacheMetrics::new(metrics.registry())?;
        let ttl = Duration::from_secs(settings.cache.ttl_secs);
        let redis_url = settings.redis.url.expose_secret();
        let redis_timeout = Duration::from_millis(settings.cache.redis_timeout_ms);
        let cache: Arc<dyn Cache> = match settings.cache.backend {
            CacheBackend::Memory => Arc::new(MemoryCache::new(
                settings.cache.memory_capacity,
                ttl,
                cache_metrics,
            )),
            CacheBackend::Redis => Arc::new(RedisCache::new(
                redis_url,
                ttl,
                redis_timeout,
                cache_metrics,
            )?),
        };
        let revoked: Arc<dyn RevokedTokens> =
            Arc::new(RedisRevokedTokens::new(redis_url, redis_timeout)?);
        let users = Arc::new(PgUsers::new(db.clone()));
        let tokens = Arc::new(PgRefreshTokens::new(db.clone()));
        let throttle = Arc::new(PgLoginThrottle::new(db.clone()));
        let hasher = Arc::new(BcryptHasher::new(
            settings.auth.bcrypt_cost,
            settings.hash_permits(),
            Duration::from_millis(settings.auth.hash_wait_ms),
        ));
        let cost = settings.auth.bcrypt_cost;
        let dummy_hash = crate::blocking::run(move || BcryptHasher::dummy_hash(cost)).await??;
        let issuer: Arc<dyn TokenIssuer> = Arc::new(JwtIssuer::new(
            settings.jwt_secret().expose_secret().as_bytes(),
            &settings.auth.jwt_issuer,
            &settings.auth.jwt_audience,
            Duration::from_secs(settings.auth.access_token_ttl_secs),
            Duration::from_secs(settings.auth.refresh_token_ttl_secs),
        ));
        let login = &settings.auth.login;
        let policy = |max_failures| ThrottlePolicy {
            max_failures,
            window: Duration::from_secs(login.window_secs),
            lockout: Duration::from_secs(login.lockout_secs),
        };
        let outbox_signal = OutboxSignal::default();
        // Filled by the day feed's listener, which only the server runs (`Application`).
        let feed = ScheduleFeed::new(settings.grpc.watcher_buffer.max(1) * 16);
        let accounts = Arc::new(AccountService::new(
            users.clone(),
            Arc::new(PgAccounts::new(db.clone(), Arc::new(outbox_signal.clone()))),
            throttle.clone(),
            hasher.clone(),
            issuer.clone(),
            clock.clone(),
            cache.clone(),
            revoked.clone(),
            settings.account_config(),
        ));
        let auth = Arc::new(AuthService::new(
            users.clone(),
            tokens.clone(),
            throttle.clone(),
            hasher.clone(),
            issuer.clone(),
            clock.clone(),
            dummy_hash,
            LoginLimits {
                per_account_and_client: policy(login.max_failures_per_account_and_client),
                per_account: policy(login.max_failures_per_account),
                per_client: policy(login.max_failures_per_client),
                known_client_for: Duration::from_secs(login.known_client_days * 86_400),
                session_max: Duration::from_secs(settings.auth.session_max_secs),
            },
            revoked.clone(),
            Arc::new(PgAuditLog::new(db.clone(), Arc::new(outbox_signal.clone()))),
        ));
        let users_for_schedule = users.clone();
        let patients = Arc::new(PatientService::new(
            users,
            tokens,
            hasher,
            clock.clone(),
            cache.clone(),
            accounts.clone(),
            throttle,
            policy(login.max_failures_per_account_and_client),
        ));
        let doctors = Arc::new(PgDoctors::new(db.clone()));
        let catalog = Arc::new(CatalogService::new(
            Arc::new(PgClinics::new(db.clone())),
            doctors,
            cache.clone(),
            clock.clone(),
        ));
        let slots = Arc::new(SlotService::new(
            Arc::new(PgSlots::new(db.clone())),
            catalog.clone(),
        ));
        let reminder_metrics = ReminderMetrics::new(metrics.registry())?;
        let booking_metrics =
            crate::service::booking_metrics::BookingMetrics::new(metrics.registry())?;
        let appointments = Arc::new(
            AppointmentService::new(
                Arc::new(PgAppointments::new(
                    db.clone(),
                    Arc::new(AppointmentCommits {
                        signal: outbox_signal.clone(),
                        reminders_scheduled: reminder_metrics.scheduled.clone(),
                    }),
                )),
                clock.clone(),
                settings.booking_policy(),
                settings.manage_links(),
            )
            .with_reminders(settings.reminder_plan())
            .with_metrics(booking_metrics.clone()),
        );
        let policies = Arc::new(crate::service::policies::PolicyService::new(
            Arc::new(crate::repository::policies::PgPolicies::new(db.clone())),
            settings.booking_policy(),
        ));
        let waitlist = Arc::new(
            crate::service::waitlist::WaitlistService::new(
                Arc::new(crate::repository::waitlist::PgWaitlist::new(db.clone())),
                appointments.clone(),
                clock.clone(),
            )
            .with_metrics(booking_metrics.clone()),
        );
        let calendar = Arc::new(crate::service::calendar::CalendarService::new(
            Arc::new(crate::repository::calendar::PgCalendars::new(db.clone())),
            clock.clone(),
            &settings.booking.calendar_url,
            &settings.booking.calendar_organizer,
        ));
        let reviews = Arc::new(ReviewService::new(
            Arc::new(PgReviews::new(db.clone())),
            cache,
            clock.clone(),
        ));
        let schedule = Arc::new(DaySchedule::new(
            catalog.clone(),
            appointments.clone(),
            users_for_schedule,
            feed,
            clock.clone(),
        ));
        Ok(Self {
            db,
            metrics,
            auth,
            accounts,
            patients,
            catalog,
            slots,
            appointments,
            reviews,
            schedule,
            revoked,
            issuer,
            clock,
            outbox_signal,
            reminder_metrics,
            policies,
            waitlist,
            calendar,
            booking_metrics,
        })
    }

    /// The waitlist matcher, if this replica runs one (`waitlist.matcher_enabled`).
    pub fn waitlist_matcher(
        &self,
        settings: &Settings,
    ) -> Option<crate::service::waitlist::WaitlistMatcher> {
        settings.waitlist.matcher_enabled.then(|| {
            crate::service::waitlist::WaitlistMatcher::new(
                Arc::new(crate::repository::waitlist::PgWaitlist::new(
                    self.db.clone(),
                )),
                self.clock.clone(),
                self.outbox_signal.clone(),
                settings.matcher_config(),
            )
            .with_metrics(self.booking_metrics.clone())
        })
    }

    /// The reminder scheduler, if this replica runs one (`reminders.scheduler_enabled`).
    pub fn reminder_scheduler(&self, settings: &Settings) -> Option<ReminderScheduler> {
        settings.reminders.scheduler_enabled.then(|| {
            ReminderScheduler::new(
                Arc::new(PgReminders::new(self.db.clone(), settings.manage_links())),
                self.clock.clone(),
                self.outbox_signal.clone(),
                settings.scheduler_config(),
                self.reminder_metrics.clone(),
            )
        })
    }

    /// The shipping side of the outbox, which only the server needs (commands never
    /// connect to Kafka or the audit-service): each sink's publisher, also asked by
    /// `/ready`, and its relay if this replica runs one (`outbox.relay_enabled`,
    /// `audit.relay_enabled`).
    pub fn outbox(&self, settings: &Settings) -> anyhow::Result<Shipping> {
        let publisher: Arc<dyn EventPublisher> = Arc::new(KafkaPublisher::new(
            settings.kafka.clone(),
            Duration::from_millis(settings.outbox.message_timeout_ms),
        )?);
        let audit = AuditClient::new(
            &settings.audit.addr,
            settings.audit.append_token(),
            settings.audit.read_token(),
            Duration::from_millis(settings.audit.timeout_ms),
            medbook_proto::observe::GrpcMetrics::new(
                self.metrics.registry(),
                "client",
                crate::audit_client::METHODS,
            )?,
        )?;
        let relay_of = |sink: Sink, publisher: Arc<dyn EventPublisher>| -> anyhow::Result<_> {
            Ok(OutboxRelay::new(
                Arc::new(PgOutbox::new(self.db.clone(), sink)),
                publisher,
                self.clock.clone(),
                self.outbox_signal.clone(),
                settings.relay_config(sink),
                RelayMetrics::new(self.metrics.registry(), sink)?,
            ))
        };
        let relay = settings
            .outbox
            .relay_enabled
            .then(|| relay_of(Sink::Kafka, publisher.clone()))
            .transpose()?;
        let audit_relay = settings
            .audit
            .relay_enabled
            .then(|| relay_of(Sink::Audit, Arc::new(audit.clone())))
            .transpose()?;
        Ok(Shipping {
            publisher,
            relay,
            audit,
            audit_relay,
        })
    }
}

/// The outbox's two sinks: Kafka and the audit-service.
pub struct Shipping {
    pub publisher: Arc<dyn EventPublisher>,
    pub relay: Option<OutboxRelay>,
    pub audit: AuditClient,
    pub audit_relay: Option<OutboxRelay>,
}

impl Services {
    /// The caller check every transport shares.
    pub fn authenticator(&self, settings: &Settings) -> Authenticator {
        Authenticator::new(
            self.issuer.clone(),
            self.revoked.clone(),
            settings.revocation_failure() == RevocationFailure::Deny,
        )
        .with_failure_counter(self.metrics.revocation_check_failures.clone())
    }

    /// The shared state of the HTTP handlers.
    pub fn into_state(self, settings: &Settings, audit: AuditClient) -> AppState {
        let authenticator = Arc::new(self.authenticator(settings));
        AppState {
            auth: self.auth,
            accounts: self.accounts,
            patients: self.patients,
            catalog: self.catalog,
            slots: self.slots,
            appointments: self.appointments,
            reviews: self.reviews,
            schedule: self.schedule,
            policies: self.policies,
            waitlist: self.waitlist,
            calendar: self.calendar,
            authenticator,
            audit_log: Arc::new(AuditLogService::new(Arc::new(audit))),
            metrics: self.metrics,
            trusted_proxies: settings.trusted_proxies(),
        }
    }
}

/// Applies pending migrations under the booking schema's advisory lock, so replicas
/// starting together do not race.
pub async fn apply_migrations(db: &Db) -> anyhow::Result<Vec<String>> {
    medbook_service_kit::startup::migrate(db, migrations::MIGRATIONS, MIGRATION_LOCK).await
}

/// The advisory lock key migrations of the booking database are applied under.
const MIGRATION_LOCK: i64 = 7243001;

/// `/ready` reports the broker and the audit-service, but neither makes the service
/// unready: bookings keep working while they are away, their events and audit records
/// waiting in the outbox.
struct SinkCheck(&'static str, Arc<dyn EventPublisher>);

#[async_trait::async_trait]
impl ReadinessCheck for SinkCheck {
    fn name(&self) -> &'static str {
        self.0
    }
    fn required(&self) -> bool {
        false
    }
    async fn check(&self) -> anyhow::Result<()> {
        self.1.check().await.map_err(anyhow::Error::msg)
    }
}

pub struct Application {
    port: u16,
    ops_port: u16,
    server: Server,
    /// The operators' listener; stopped when the public one has stopped.
    ops_server: Server,
    db: Db,
    relay: Option<BackgroundTask>,
    audit_relay: Option<BackgroundTask>,
    scheduler: Option<BackgroundTask>,
    /// The waitlist matcher, when `waitlist.matcher_enabled`.
    matcher: Option<BackgroundTask>,
    /// The gRPC ScheduleService, when `grpc.enabled`.
    grpc: Option<(u16, BackgroundTask)>,
    /// The day feed's listener (committed appointment changes, for the gRPC day
    /// watchers), when `grpc.enabled`.
    day_feed: Option<BackgroundTask>,
}

/// A running background loop (relay, scheduler) and the switch that stops it.
struct BackgroundTask {
    stop: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl BackgroundTask {
    /// Spawns `run` with the receiving end of its stop switch.
    fn spawn<F>(run: impl FnOnce(tokio::sync::watch::Receiver<bool>) -> F) -> Self
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        let (stop, stopped) = tokio::sync::watch::channel(false);
        Self {
            stop,
            task: tokio::spawn(run(stopped)),
        }
    }

    /// Stops it and waits up to 10 s for its round in progress; `late` is logged if
    /// that is not enough.
    async fn stop(self, late: &str) {
        let _ = self.stop.send(true);
        if tokio::time::timeout(Duration::from_secs(10), self.task)
            .await
            .is_err()
        {
            tracing::warn!("{late}");
        }
    }
}

impl Application {
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        let services = Services::build(&settings).await?;
        let db = services.db.clone();
        let shipping = services.outbox(&settings)?;
        let relay = shipping
            .relay
            .map(|relay| BackgroundTask::spawn(|stop| relay.run(stop)));
        let audit_relay = shipping
            .audit_relay
            .map(|relay| BackgroundTask::spawn(|stop| relay.run(stop)));
        let scheduler = services
            .reminder_scheduler(&settings)
            .map(|scheduler| BackgroundTask::spawn(|stop| scheduler.run(stop)));
        let matcher = services
            .waitlist_matcher(&settings)
            .map(|matcher| BackgroundTask::spawn(|stop| matcher.run(stop)));
        let audit_check: Arc<dyn EventPublisher> = Arc::new(shipping.audit.clone());
        let kafka_check = shipping.publisher.clone();
        let state = actix_web::web::Data::new(services.into_state(&settings, shipping.audit));
        let app_config = HttpAppConfig {
            request_timeout: settings.request_timeout(),
            max_body_bytes: settings.http.max_body_bytes,
            cors_origins: settings.http.cors_origins.clone(),
            swagger_ui: settings.swagger_ui(),
        };
        let listener = TcpListener::bind(&settings.http.addr)
            .with_context(|| format!("cannot listen on http.addr {}", settings.http.addr))?;
        let port = listener.local_addr()?.port();
        let doc = actix_web::web::Data::new(http::openapi::OpenApiDoc(http::openapi_document()));
        let ops_listener = TcpListener::bind(&settings.http.ops_addr).with_context(|| {
            format!("cannot listen on http.ops_addr {}", settings.http.ops_addr)
        })?;
        let ops_port = ops_listener.local_addr()?.port();
        let probes = actix_web::web::Data::new(
            Probes::new(state.metrics.registry().clone())
                .check(Arc::new(DatabaseCheck(db.clone())))
                .check(Arc::new(SinkCheck("kafka", kafka_check)))
                .check(Arc::new(SinkCheck("audit", audit_check)))
                .before_scrape({
                    let (db, metrics) = (db.clone(), state.metrics.clone());
                    move || {
                        let (open, idle, max) = db.stats();
                        metrics.set_pool(open, idle, max);
                    }
                }),
        );
        // Listening before the gRPC server answers: its first watchers hear every change.
        let day_feed = if settings.grpc.enabled {
            let source = PgChangeSource::new(
                settings.database.url.expose_secret(),
                Duration::from_millis(settings.database.connect_timeout_ms),
            )?;
            let listener = DayFeedListener::new(
                Arc::new(source),
                state.schedule.feed().clone(),
                DayFeedMetrics::new(state.metrics.registry())?,
            );
            let first = listener.listen().await;
            Some(BackgroundTask::spawn(|stop| listener.run(first, stop)))
        } else {
            None
        };
        let grpc = if settings.grpc.enabled {
            let (listener, local) = crate::transport::grpc::bind(&settings.grpc.addr)
                .await
                .with_context(|| format!("cannot listen on grpc.addr {}", settings.grpc.addr))?;
            let schedule = crate::transport::grpc::Schedule::new(
                crate::transport::grpc::Cases {
                    slots: state.slots.clone(),
                    appointments: state.appointments.clone(),
                    schedule: state.schedule.clone(),
                    authenticator: state.authenticator.clone(),
                },
                settings.grpc.watcher_buffer,
                Duration::from_secs(settings.grpc.watch_recheck_secs),
            );
            let metrics = medbook_proto::observe::GrpcMetrics::new(
                state.metrics.registry(),
                "server",
                crate::transport::grpc::METHODS,
            )?;
            let task = BackgroundTask::spawn(|stop| async move {
                if let Err(e) =
                    crate::transport::grpc::serve(listener, schedule, metrics, stop).await
                {
                    tracing::error!(error = %e, "grpc server failed");
                }
            });
            tracing::info!(grpc_addr = %settings.grpc.addr, grpc_port = local.port(), "grpc listening");
            Some((local.port(), task))
        } else {
            None
        };
        let ops_server = actix_web::HttpServer::new(move || http::build_ops_app(probes.clone()))
            .listen(ops_listener)?
            .disable_signals()
            .workers(1)
            .shutdown_timeout(5)
            .run();
        let mut server = actix_web::HttpServer::new(move || {
            http::build_app(state.clone(), doc.clone(), &app_config)
        })
        .listen(listener)?
        .disable_signals()
        .shutdown_timeout(settings.http.shutdown_grace_secs);
        if settings.http.workers > 0 {
            server = server.workers(settings.http.workers);
        }
        tracing::info!(addr = %settings.http.addr, port, ops_addr = %settings.http.ops_addr, ops_port, "listening");
        Ok(Self {
            port,
            ops_port,
            ops_server,
            server: server.run(),
            db,
            relay,
            audit_relay,
            scheduler,
            matcher,
            grpc,
            day_feed,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The gRPC ScheduleService's port, when enabled.
    pub fn grpc_port(&self) -> Option<u16> {
        self.grpc.as_ref().map(|(port, _)| *port)
    }

    /// The port of the operators' listener (`/metrics`, `/ready`, `/health`).
    pub fn ops_port(&self) -> u16 {
        self.ops_port
    }

    /// Stops the server: `stop(true)` finishes in-flight requests within the grace period.
    pub fn handle(&self) -> ServerHandle {
        self.server.handle()
    }

    /// Serves until stopped, lets the relay finish its round, then closes the pool.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let ops = self.ops_server.handle();
        let ops_task = tokio::spawn(self.ops_server);
        let result = self.server.await;
        // Readiness and metrics stay up while the API drains, then stop too.
        ops.stop(true).await;
        let _ = ops_task.await;
        if let Some((_, grpc)) = self.grpc {
            grpc.stop("grpc server did not stop in time").await;
        }
        if let Some(day_feed) = self.day_feed {
            day_feed
                .stop("day feed listener did not stop in time")
                .await;
        }
        // The scheduler and the matcher first: their last round's events then still
        // reach the relay.
        if let Some(matcher) = self.matcher {
            matcher
                .stop("waitlist matcher did not stop in time; its round rolls back")
                .await;
        }
        if let Some(scheduler) = self.scheduler {
            scheduler
                .stop("reminder scheduler did not stop in time; its batch rolls back")
                .await;
        }
        // A relay round waits at most for the broker's delivery reports.
        if let Some(relay) = self.relay {
            relay
                .stop("outbox relay did not stop in time; its claims will expire")
                .await;
        }
        if let Some(relay) = self.audit_relay {
            relay
                .stop("audit relay did not stop in time; its claims will expire")
                .await;
        }
        drop(self.db);
        tracing::info!("server stopped; database pool closed");
        result
    }
}

/// Stops `handle` gracefully on SIGTERM or SIGINT.
pub fn stop_on_signals(handle: ServerHandle) {
    tokio::spawn(async move {
        let signal = medbook_service_kit::signals::wait_for_stop_signal().await;
        tracing::info!(
            signal,
            "shutdown signal received; draining in-flight requests"
        );
        handle.stop(true).await;
    });
}
