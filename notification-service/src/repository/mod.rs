//! The notification-service's own PostgreSQL database: the delivery log that makes
//! sending idempotent. Diesel over an r2d2 pool; every query runs on the blocking pool.

pub mod deliveries;

use anyhow::Context;
use diesel::pg::PgConnection;
use diesel::r2d2::{ConnectionManager, Pool, PooledConnection};
use diesel::RunQueryDsl;
use diesel_migrations::{embed_migrations, EmbeddedMigrations, MigrationHarness};
use std::time::Duration;

pub use deliveries::PgDeliveryLog;

pub const MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations");

pub type PgConn = PooledConnection<ConnectionManager<PgConnection>>;

#[derive(Clone)]
pub struct Db {
    pool: Pool<ConnectionManager<PgConnection>>,
}

impl Db {
    /// Builds the pool without connecting; connections open on demand.
    pub fn new(url: &str, max_size: u32, connect_timeout: Duration) -> Self {
        let pool = Pool::builder()
            .max_size(max_size)
            .min_idle(Some(0))
            .connection_timeout(connect_timeout)
            .test_on_check_out(true)
            .build_unchecked(ConnectionManager::<PgConnection>::new(url));
        Self { pool }
    }

    /// Runs `f` with a pooled connection on the blocking thread pool.
    pub async fn run<T, F>(&self, f: F) -> anyhow::Result<T>
    where
        F: FnOnce(&mut PgConn) -> anyhow::Result<T> + Send + 'static,
        T: Send + 'static,
    {
        let pool = self.pool.clone();
        let span = tracing::Span::current();
        tokio::task::spawn_blocking(move || {
            span.in_scope(|| {
                let mut conn = pool.get().context("no database connection")?;
                f(&mut conn)
            })
        })
        .await
        .context("database task failed")?
    }

    pub async fn ping(&self) -> anyhow::Result<()> {
        self.run(|conn| {
            diesel::sql_query("SELECT 1").execute(conn)?;
            Ok(())
        })
        .await
    }

    /// Waits for the database for up to `window`, then applies pending migrations
    /// under an advisory lock (replicas may start together).
    pub async fn prepare(&self, window: Duration, migrate: bool) -> anyhow::Result<()> {
        let deadline = std::time::Instant::now() + window;
        let mut delay = Duration::from_millis(200);
        while let Err(e) = self.ping().await {
            if std::time::Instant::now() + delay >= deadline {
                anyhow::bail!("database unreachable after {}s: {e:#}", window.as_secs());
            }
            tracing::warn!(error = %e, "database not reachable yet");
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(5));
        }
        if migrate {
            let applied = self
                .run(|conn| {
                    diesel::sql_query("SELECT pg_advisory_lock(7243002)").execute(conn)?;
                    let result = conn
                        .run_pending_migrations(MIGRATIONS)
                        .map(|v| v.iter().map(|m| m.to_string()).collect::<Vec<_>>())
                        .map_err(|e| anyhow::anyhow!("running migrations failed: {e}"));
                    diesel::sql_query("SELECT pg_advisory_unlock(7243002)").execute(conn)?;
                    result
                })
                .await?;
            if !applied.is_empty() {
                tracing::info!(migrations = ?applied, "migrations applied");
            }
        }
        Ok(())
    }
}
