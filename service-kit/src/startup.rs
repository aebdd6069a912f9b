//! Start-up steps every service takes: wait for its database (it may start after the
//! service, as in docker-compose or Kubernetes), then apply its embedded migrations under
//! an advisory lock, so replicas starting together do not race.

use crate::db::{Db, DbError};
use crate::retry;
use diesel::RunQueryDsl;
use diesel_migrations::{EmbeddedMigrations, MigrationHarness};
use std::time::Duration;

/// `postgres://user:secret@host/db` → `postgres://user:***@host/db`, for messages.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    match rest.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
            None => url.to_owned(),
        },
        None => url.to_owned(),
    }
}

/// Pings the database until it answers, for up to `window` (pauses doubling from
/// 200 ms to 5 s); fails naming the (redacted) URL after that.
pub async fn wait_for_database(db: &Db, url: &str, window: Duration) -> anyhow::Result<()> {
    retry::until(
        window,
        Duration::from_millis(200),
        Duration::from_secs(5),
        || db.ping(),
        |e: &DbError, pause| {
            let retry_in_ms = u64::try_from(pause.as_millis()).unwrap_or(u64::MAX);
            tracing::warn!(error = %e, retry_in_ms, "database not reachable yet");
        },
    )
    .await
    .map_err(|e| {
        anyhow::anyhow!(
            "database unreachable at {} after {}s: {e}",
            redact_url(url),
            window.as_secs()
        )
    })
}

/// Applies the pending `migrations` while holding advisory lock `lock_key` (one key
/// per database schema); returns the versions applied.
pub async fn migrate(
    db: &Db,
    migrations: EmbeddedMigrations,
    lock_key: i64,
) -> anyhow::Result<Vec<String>> {
    let applied = db
        .run(move |conn| -> anyhow::Result<Vec<String>> {
            diesel::sql_query(format!("SELECT pg_advisory_lock({lock_key})")).execute(conn)?;
            let result = conn
                .run_pending_migrations(migrations)
                .map(|v| v.iter().map(|m| m.to_string()).collect::<Vec<_>>())
                .map_err(|e| anyhow::anyhow!("running migrations failed: {e}"));
            diesel::sql_query(format!("SELECT pg_advisory_unlock({lock_key})")).execute(conn)?;
            result
        })
        .await?;
    if !applied.is_empty() {
        tracing::info!(migrations = ?applied, "migrations applied");
    }
    Ok(applied)
}

#[cfg(test)]
mod tests {
    use super::redact_url;

    #[test]
    fn redacts_passwords() {
        assert_eq!(
            redact_url("postgres://u:secret@h:5432/db"),
            "postgres://u:***@h:5432/db"
        );
        assert_eq!(redact_url("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(redact_url("no scheme"), "no scheme");
        assert_eq!(
            redact_url("postgres://u:p@ss@h/db"),
            "postgres://u:***@h/db"
        );
    }
}
