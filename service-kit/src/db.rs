//! The PostgreSQL pool (Diesel over r2d2) and the one way to use it: [`Db::run`],
//! which takes a connection and runs a closure on the blocking pool, and
//! [`Db::transaction`]. [`DbError`] classifies what can go wrong, so that an outage is
//! never mistaken for "not found" and constraint violations can be answered precisely.
//!
//! Connections are not tested with a `SELECT 1` at every checkout (a round trip per
//! request): a connection the server has closed fails its statement, is marked broken
//! and is dropped by the pool when returned. A transaction whose `BEGIN` finds its
//! connection dead is started again on another one (nothing had happened yet).

use crate::blocking;
use crate::retry::Backoff;
use diesel::connection::{Instrumentation, InstrumentationEvent, TransactionManager};
use diesel::pg::PgConnection;
use diesel::r2d2::R2D2Connection;
use diesel::r2d2::{ConnectionManager, CustomizeConnection, Pool, PooledConnection};
use diesel::result::{DatabaseErrorKind, Error as DieselError};
use diesel::{Connection, RunQueryDsl};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

/// Storage failures, kept apart so an outage is never mistaken for "not found".
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("database unavailable: {0}")]
    Unavailable(String),
    #[error("unique constraint violated: {0}")]
    UniqueViolation(String),
    #[error("exclusion constraint violated: {0}")]
    ExclusionViolation(String),
    #[error("foreign key violated: {0}")]
    ForeignKeyViolation(String),
    /// Serialization failure or deadlock that survived the retries.
    #[error("transaction conflict: {0}")]
    Retryable(String),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl From<DieselError> for DbError {
    fn from(e: DieselError) -> Self {
        map_err(e)
    }
}

pub type PgPool = Pool<ConnectionManager<PgConnection>>;
pub type PgConn = PooledConnection<ConnectionManager<PgConnection>>;

#[derive(Debug, Clone)]
pub struct PoolSettings {
    pub url: String,
    pub max_size: u32,
    pub connect_timeout: Duration,
    pub statement_timeout: Duration,
}

/// The SQL of every statement the pool's connections send (binds left out), in order:
/// how tests count the round trips of an operation.
#[derive(Debug, Clone, Default)]
pub struct StatementLog(Arc<Mutex<Vec<String>>>);

impl StatementLog {
    /// The statements logged so far; the log starts again empty.
    pub fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

impl Instrumentation for StatementLog {
    fn on_connection_event(&mut self, event: InstrumentationEvent<'_>) {
        if let InstrumentationEvent::StartQuery { query, .. } = event {
            let text = query.to_string();
            let sql = text.split(" -- binds:").next().unwrap_or_default();
            self.0
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(sql.trim().to_owned());
        }
    }
}

/// Sets the statement timeout on every new connection.
#[derive(Debug)]
struct SessionSetup {
    statement_timeout_ms: u128,
    log: Option<StatementLog>,
}

impl CustomizeConnection<PgConnection, diesel::r2d2::Error> for SessionSetup {
    fn on_acquire(&self, conn: &mut PgConnection) -> Result<(), diesel::r2d2::Error> {
        use diesel::connection::SimpleConnection;
        conn.batch_execute(&format!(
            "SET statement_timeout = {}; SET TIME ZONE 'UTC'",
            self.statement_timeout_ms
        ))
        .map_err(diesel::r2d2::Error::QueryError)?;
        if let Some(log) = &self.log {
            conn.set_instrumentation(log.clone());
        }
        Ok(())
    }
}

#[derive(Clone)]
pub struct Db {
    pool: PgPool,
}

impl Db {
    /// Builds the pool without connecting (connections are opened on demand), so
    /// start-up can report an unreachable database with its own retry loop.
    pub fn new(settings: &PoolSettings) -> anyhow::Result<Self> {
        Self::build(settings, None)
    }

    /// A pool whose connections log every statement they send into `log`.
    pub fn with_statement_log(settings: &PoolSettings, log: StatementLog) -> anyhow::Result<Self> {
        Self::build(settings, Some(log))
    }

    fn build(settings: &PoolSettings, log: Option<StatementLog>) -> anyhow::Result<Self> {
        let manager = ConnectionManager::<PgConnection>::new(settings.url.clone());
        let pool = Pool::builder()
            .max_size(settings.max_size)
            .min_idle(Some(0))
            .connection_timeout(settings.connect_timeout)
            .test_on_check_out(false)
            .connection_customizer(Box::new(SessionSetup {
                statement_timeout_ms: settings.statement_timeout.as_millis(),
                log,
            }))
            .build_unchecked(manager);
        Ok(Self { pool })
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Runs `f` with a pooled connection on the blocking thread pool. `E` is the
    /// caller's error type (`DbError` itself, or e.g. `anyhow::Error`).
    pub async fn run<T, E, F>(&self, f: F) -> Result<T, E>
    where
        F: FnOnce(&mut PgConn) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: From<DbError> + Send + 'static,
    {
        let pool = self.pool.clone();
        blocking::run(move || {
            let _span = db_span("db.query").entered();
            let mut conn = checkout(&pool)?;
            f(&mut conn)
        })
        .await
        .map_err(|e| E::from(DbError::Internal(e)))?
    }

    /// Runs `f` in a transaction, retrying a few times on serialization failures and
    /// deadlocks (which PostgreSQL resolves by aborting one side), and on another
    /// connection when `BEGIN` finds this one closed by the server (nothing ran yet).
    pub async fn transaction<T, F>(&self, f: F) -> Result<T, DbError>
    where
        F: Fn(&mut PgConnection) -> Result<T, DbError> + Send + 'static,
        T: Send + 'static,
    {
        let pool = self.pool.clone();
        blocking::run(move || {
            let span = db_span("db.transaction");
            let _entered = span.clone().entered();
            let mut conn = checkout(&pool)?;
            let mut conflicts = Backoff::new(Duration::from_millis(5), Duration::from_millis(50));
            let mut attempt = 0;
            loop {
                attempt += 1;
                match in_transaction(&mut conn, &f) {
                    Ok(v) => {
                        span.record("db.attempts", attempt);
                        return Ok(v);
                    }
                    Err(Failure::Begin(e)) if conn.is_broken() && attempt < 4 => {
                        tracing::info!(error = %e, "connection closed by the server; using another");
                        // Returned broken, the pool drops it and has room for a new one.
                        drop(conn);
                        conn = checkout(&pool)?;
                    }
                    Err(Failure::Begin(e)) => return Err(map_err(e)),
                    Err(Failure::Body(DbError::Retryable(m))) if attempt < 4 => {
                        tracing::debug!(attempt, error = %m, "retrying transaction");
                        std::thread::sleep(conflicts.next_delay());
                    }
                    Err(Failure::Body(e)) => return Err(e),
                }
            }
        })
        .await
        .map_err(DbError::Internal)?
    }

    /// `SELECT 1` through the pool: used by `/ready` and while waiting at start-up.
    pub async fn ping(&self) -> Result<(), DbError> {
        self.run(|conn| {
            diesel::sql_query("SELECT 1")
                .execute(conn)
                .map(|_| ())
                .map_err(map_err)
        })
        .await
    }

    /// Pool statistics: (open connections, idle connections, max size).
    pub fn stats(&self) -> (u32, u32, u32) {
        let state = self.pool.state();
        (
            state.connections,
            state.idle_connections,
            self.pool.max_size(),
        )
    }
}

/// Classifies a Diesel error.
/// The client span of one unit of database work (a checkout and what runs on it),
/// a child of the caller's span. Work done outside any span (pollers, probes) gets
/// none: a trace per idle poll would bury the traces people look for.
fn db_span(name: &'static str) -> tracing::Span {
    if tracing::Span::current().is_none() {
        return tracing::Span::none();
    }
    tracing::info_span!(
        "db",
        otel.name = name,
        otel.kind = "client",
        db.system.name = "postgresql",
        db.attempts = tracing::field::Empty,
    )
}

pub fn map_err(e: DieselError) -> DbError {
    match e {
        DieselError::DatabaseError(DatabaseErrorKind::UniqueViolation, info) => {
            DbError::UniqueViolation(info.constraint_name().unwrap_or("unique").to_owned())
        }
        DieselError::DatabaseError(DatabaseErrorKind::ClosedConnection, info) => {
            DbError::Unavailable(info.message().to_owned())
        }
        DieselError::DatabaseError(DatabaseErrorKind::ForeignKeyViolation, info) => {
            DbError::ForeignKeyViolation(info.constraint_name().unwrap_or("foreign key").to_owned())
        }
        DieselError::DatabaseError(DatabaseErrorKind::SerializationFailure, info) => {
            DbError::Retryable(info.message().to_owned())
        }
        // Diesel has no kinds for these SQLSTATEs (23P01, 40P01); PostgreSQL's messages
        // are stable.
        DieselError::DatabaseError(_, info)
            if info.message().contains("violates exclusion constraint") =>
        {
            DbError::ExclusionViolation(info.constraint_name().unwrap_or("exclusion").to_owned())
        }
        DieselError::DatabaseError(_, info) if info.message().contains("deadlock detected") => {
            DbError::Retryable(info.message().to_owned())
        }
        other => DbError::Internal(other.into()),
    }
}

fn checkout(pool: &PgPool) -> Result<PgConn, DbError> {
    pool.get().map_err(|e| DbError::Unavailable(e.to_string()))
}

/// How a transaction failed: before anything ran (`BEGIN`), or in its body or commit.
enum Failure {
    Begin(DieselError),
    Body(DbError),
}

/// `BEGIN`, `f`, `COMMIT` (or `ROLLBACK` when `f` fails).
fn in_transaction<T, F>(conn: &mut PgConnection, f: &F) -> Result<T, Failure>
where
    F: Fn(&mut PgConnection) -> Result<T, DbError>,
{
    type Manager = <PgConnection as Connection>::TransactionManager;
    Manager::begin_transaction(conn).map_err(Failure::Begin)?;
    // As Diesel's own `Connection::transaction` does it.
    match f(conn) {
        Ok(value) => {
            Manager::commit_transaction(conn).map_err(|e| Failure::Body(map_err(e)))?;
            Ok(value)
        }
        Err(e) => match Manager::rollback_transaction(conn) {
            Ok(()) | Err(DieselError::BrokenTransactionManager) => Err(Failure::Body(e)),
            Err(rollback) => Err(Failure::Body(map_err(rollback))),
        },
    }
}
