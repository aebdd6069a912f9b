//! The connection pool and the one way to use it: [`Db::run`], which takes a
//! connection and runs a closure on the blocking pool.

use crate::blocking;
use crate::service::ports::RepoError;
use diesel::pg::PgConnection;
use diesel::r2d2::{ConnectionManager, CustomizeConnection, Pool, PooledConnection};
use diesel::result::{DatabaseErrorKind, Error as DieselError};
use diesel::{Connection, RunQueryDsl};
use std::time::Duration;

pub type PgPool = Pool<ConnectionManager<PgConnection>>;
pub type PgConn = PooledConnection<ConnectionManager<PgConnection>>;

#[derive(Debug, Clone)]
pub struct PoolSettings {
    pub url: String,
    pub max_size: u32,
    pub connect_timeout: Duration,
    pub statement_timeout: Duration,
}

/// Sets the statement timeout on every new connection.
#[derive(Debug)]
struct SessionSetup {
    statement_timeout_ms: u128,
}

impl CustomizeConnection<PgConnection, diesel::r2d2::Error> for SessionSetup {
    fn on_acquire(&self, conn: &mut PgConnection) -> Result<(), diesel::r2d2::Error> {
        use diesel::connection::SimpleConnection;
        conn.batch_execute(&format!(
            "SET statement_timeout = {}; SET TIME ZONE 'UTC'",
            self.statement_timeout_ms
        ))
        .map_err(diesel::r2d2::Error::QueryError)
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
        let manager = ConnectionManager::<PgConnection>::new(settings.url.clone());
        let pool = Pool::builder()
            .max_size(settings.max_size)
            .min_idle(Some(0))
            .connection_timeout(settings.connect_timeout)
            // A connection the server killed is replaced rather than failing a request.
            .test_on_check_out(true)
            .connection_customizer(Box::new(SessionSetup {
                statement_timeout_ms: settings.statement_timeout.as_millis(),
            }))
            .build_unchecked(manager);
        Ok(Self { pool })
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Runs `f` with a pooled connection on the blocking thread pool.
    pub async fn run<T, F>(&self, f: F) -> Result<T, RepoError>
    where
        F: FnOnce(&mut PgConn) -> Result<T, RepoError> + Send + 'static,
        T: Send + 'static,
    {
        let pool = self.pool.clone();
        blocking::run(move || {
            let mut conn = pool
                .get()
                .map_err(|e| RepoError::Unavailable(e.to_string()))?;
            f(&mut conn)
        })
        .await
        .map_err(RepoError::Internal)?
    }

    /// Runs `f` in a transaction, retrying a few times on serialization failures and
    /// deadlocks (which PostgreSQL resolves by aborting one side).
    pub async fn transaction<T, F>(&self, f: F) -> Result<T, RepoError>
    where
        F: Fn(&mut PgConnection) -> Result<T, RepoError> + Send + 'static,
        T: Send + 'static,
    {
        self.run(move |conn| {
            let mut attempt = 0;
            loop {
                attempt += 1;
                let result = conn.transaction::<T, TxError, _>(|conn| f(conn).map_err(TxError));
                match result {
                    Ok(v) => return Ok(v),
                    Err(TxError(RepoError::Retryable(m))) if attempt < 4 => {
                        tracing::debug!(attempt, error = %m, "retrying transaction");
                        std::thread::sleep(Duration::from_millis(5 * attempt));
                    }
                    Err(TxError(e)) => return Err(e),
                }
            }
        })
        .await
    }

    /// `SELECT 1` through the pool: used by `/ready`.
    pub async fn ping(&self) -> Result<(), RepoError> {
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
pub fn map_err(e: DieselError) -> RepoError {
    match e {
        DieselError::DatabaseError(DatabaseErrorKind::UniqueViolation, info) => {
            RepoError::UniqueViolation(info.constraint_name().unwrap_or("unique").to_owned())
        }
        DieselError::DatabaseError(DatabaseErrorKind::ClosedConnection, info) => {
            RepoError::Unavailable(info.message().to_owned())
        }
        DieselError::DatabaseError(DatabaseErrorKind::ForeignKeyViolation, info) => {
            RepoError::ForeignKeyViolation(
                info.constraint_name().unwrap_or("foreign key").to_owned(),
            )
        }
        DieselError::DatabaseError(DatabaseErrorKind::SerializationFailure, info) => {
            RepoError::Retryable(info.message().to_owned())
        }
        // Diesel has no kinds for these SQLSTATEs (23P01, 40P01); PostgreSQL's messages
        // are stable.
        DieselError::DatabaseError(_, info)
            if info.message().contains("violates exclusion constraint") =>
        {
            RepoError::ExclusionViolation(info.constraint_name().unwrap_or("exclusion").to_owned())
        }
        DieselError::DatabaseError(_, info) if info.message().contains("deadlock detected") => {
            RepoError::Retryable(info.message().to_owned())
        }
        other => RepoError::Internal(other.into()),
    }
}

/// The error type of [`Db::transaction`]'s closure: diesel's own errors (begin, commit)
/// are classified like any other.
#[derive(Debug)]
struct TxError(RepoError);

impl From<DieselError> for TxError {
    fn from(e: DieselError) -> Self {
        TxError(map_err(e))
    }
}
