//! Wiring: builds the pool, runs migrations, creates the use cases and the HTTP server.
//! `Application::build` binds the listener (port 0 picks a free port, which tests use).

use crate::repository::{
    db::PoolSettings, migrations, Db, PgLoginThrottle, PgRefreshTokens, PgUsers,
};
use crate::security::{BcryptHasher, JwtIssuer};
use crate::service::auth::{AuthService, LoginLimits};
use crate::service::patients::PatientService;
use crate::service::ports::{Clock, SystemClock, ThrottlePolicy, TokenIssuer};
use crate::settings::Settings;
use crate::transport::http::{self, metrics::Metrics, state::AppState, HttpAppConfig};
use actix_web::dev::{Server, ServerHandle};
use anyhow::Context;
use secrecy::ExposeSecret;
use std::net::TcpListener;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The use cases, built once from settings; shared by the HTTP server and the CLI.
pub struct Services {
    pub db: Db,
    pub auth: Arc<AuthService>,
    pub patients: Arc<PatientService>,
    pub issuer: Arc<dyn TokenIssuer>,
}

/// `postgres://user:secret@host/db` → `postgres://user:***@host/db`, for messages.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let userinfo = &url[scheme_end + 3..at];
            match userinfo.split_once(':') {
                Some((user, _)) => format!("{}{}:***{}", &url[..scheme_end + 3], user, &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

impl Services {
    /// Connects (retrying for `database.startup_retry_secs`), migrates if configured,
    /// and builds every use case.
    pub async fn build(settings: &Settings) -> anyhow::Result<Self> {
        let url = settings.database.url.expose_secret().to_owned();
        let db = Db::new(&PoolSettings {
            url: url.clone(),
            max_size: settings.database.pool_size,
            connect_timeout: Duration::from_millis(settings.database.connect_timeout_ms),
            statement_timeout: Duration::from_millis(settings.database.statement_timeout_ms),
        })?;
        wait_for_database(
            &db,
            &url,
            Duration::from_secs(settings.database.startup_retry_secs),
        )
        .await?;
        if settings.database.run_migrations {
            apply_migrations(&db).await?;
        }

        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
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
        let auth = Arc::new(AuthService::new(
            users.clone(),
            tokens.clone(),
            throttle,
            hasher.clone(),
            issuer.clone(),
            clock.clone(),
            dummy_hash,
            LoginLimits {
                per_account: policy(login.max_failures_per_account),
                per_client: policy(login.max_failures_per_client),
            },
        ));
        let patients = Arc::new(PatientService::new(users, tokens, hasher, clock));
        Ok(Self {
            db,
            auth,
            patients,
            issuer,
        })
    }
}

async fn wait_for_database(db: &Db, url: &str, window: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + window;
    let mut delay = Duration::from_millis(200);
    loop {
        match db.ping().await {
            Ok(()) => return Ok(()),
            Err(e) if Instant::now() + delay < deadline => {
                tracing::warn!(error = %e, retry_in_ms = delay.as_millis() as u64, "database not reachable yet");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
            Err(e) => {
                anyhow::bail!(
                    "database unreachable at {} after {}s: {e}",
                    redact_url(url),
                    window.as_secs()
                )
            }
        }
    }
}

/// Applies pending migrations under an advisory lock, so replicas starting together
/// do not race.
pub async fn apply_migrations(db: &Db) -> anyhow::Result<Vec<String>> {
    let pool = db.pool().clone();
    let applied = crate::blocking::run(move || -> anyhow::Result<Vec<String>> {
        use diesel::RunQueryDsl;
        let mut conn = pool
            .get()
            .context("no database connection for migrations")?;
        diesel::sql_query("SELECT pg_advisory_lock(7243001)").execute(&mut conn)?;
        let result = migrations::run_pending(&mut conn);
        diesel::sql_query("SELECT pg_advisory_unlock(7243001)").execute(&mut conn)?;
        result
    })
    .await??;
    if !applied.is_empty() {
        tracing::info!(migrations = ?applied, "migrations applied");
    }
    Ok(applied)
}

pub struct Application {
    port: u16,
    server: Server,
    db: Db,
}

impl Application {
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        let services = Services::build(&settings).await?;
        let metrics = Arc::new(Metrics::new()?);
        let state = actix_web::web::Data::new(AppState {
            auth: services.auth,
            patients: services.patients,
            issuer: services.issuer,
            db: services.db.clone(),
            metrics,
            trust_forwarded_for: settings.http.trust_forwarded_for,
        });
        let app_config = HttpAppConfig {
            request_timeout: settings.request_timeout(),
            max_body_bytes: settings.http.max_body_bytes,
            cors_origins: settings.http.cors_origins.clone(),
        };
        let listener = TcpListener::bind(&settings.http.addr)
            .with_context(|| format!("cannot listen on http.addr {}", settings.http.addr))?;
        let port = listener.local_addr()?.port();
        let doc = actix_web::web::Data::new(http::openapi::OpenApiDoc(http::openapi_document()));
        let mut server = actix_web::HttpServer::new(move || {
            http::build_app(state.clone(), doc.clone(), &app_config)
        })
        .listen(listener)?
        .disable_signals()
        .shutdown_timeout(settings.http.shutdown_grace_secs);
        if settings.http.workers > 0 {
            server = server.workers(settings.http.workers);
        }
        tracing::info!(addr = %settings.http.addr, port, "listening");
        Ok(Self {
            port,
            server: server.run(),
            db: services.db,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Stops the server: `stop(true)` finishes in-flight requests within the grace period.
    pub fn handle(&self) -> ServerHandle {
        self.server.handle()
    }

    /// Serves until stopped, then closes the pool.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let result = self.server.await;
        drop(self.db);
        tracing::info!("server stopped; database pool closed");
        result
    }
}

/// Stops `handle` gracefully on SIGTERM or SIGINT.
pub fn stop_on_signals(handle: ServerHandle) {
    tokio::spawn(async move {
        let signal = wait_for_signal().await;
        tracing::info!(
            signal,
            "shutdown signal received; draining in-flight requests"
        );
        handle.stop(true).await;
    });
}

async fn wait_for_signal() -> &'static str {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("cannot install signal handlers");
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn redacts_passwords() {
        assert_eq!(
            super::redact_url("postgres://u:secret@h:5432/db"),
            "postgres://u:***@h:5432/db"
        );
        assert_eq!(super::redact_url("postgres://u@h/db"), "postgres://u@h/db");
    }
}
