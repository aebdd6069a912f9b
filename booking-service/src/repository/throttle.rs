//! `LoginThrottle` in PostgreSQL, so every replica sees the same counts. Each failure is
//! one upsert: the window restarts once it (or a lockout) has passed, and reaching the
//! limit sets `locked_until`.

use super::db::{map_err, Db};
use super::schema::{login_known_clients, login_throttle};
use crate::service::ports::{LoginThrottle, RepoError, ThrottlePolicy};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{Integer, Interval, Text, Timestamptz};
use std::time::Duration;

pub struct PgLoginThrottle {
    db: Db,
}

impl PgLoginThrottle {
    pub fn new(db: Db) -> Self {
        Self { db }
    }
}

fn interval(d: Duration) -> diesel::pg::data_types::PgInterval {
    diesel::pg::data_types::PgInterval::from_microseconds(
        i64::try_from(d.as_micros()).unwrap_or(i64::MAX),
    )
}

#[async_trait]
impl LoginThrottle for PgLoginThrottle {
    async fn locked_for(
        &self,
        key: String,
        now: DateTime<Utc>,
    ) -> Result<Option<Duration>, RepoError> {
        self.db
            .run(move |conn| {
                let until: Option<Option<DateTime<Utc>>> = login_throttle::table
                    .find(key)
                    .select(login_throttle::locked_until)
                    .first(conn)
                    .optional()
                    .map_err(map_err)?;
                Ok(until
                    .flatten()
                    .filter(|u| *u > now)
                    .and_then(|u| (u - now).to_std().ok()))
            })
            .await
    }

    async fn record_failure(
        &self,
        key: String,
        policy: ThrottlePolicy,
        now: DateTime<Utc>,
    ) -> Result<(), RepoError> {
        let max = i32::try_from(policy.max_failures).unwrap_or(i32::MAX);
        self.db
            .run(move |conn| {
                diesel::sql_query(
                    "INSERT INTO login_throttle AS t (key, failures, window_started_at, locked_until)
                     VALUES ($1, 1, $2, CASE WHEN 1 >= $3 THEN $2 + $5 END)
                     ON CONFLICT (key) DO UPDATE SET
                       failures = CASE
                         WHEN t.window_started_at + $4 <= $2 OR t.locked_until <= $2 THEN 1
                         ELSE t.failures + 1 END,
                       window_started_at = CASE
                         WHEN t.window_started_at + $4 <= $2 OR t.locked_until <= $2 THEN $2
                         ELSE t.window_started_at END,
                       locked_until = CASE
                         WHEN (CASE WHEN t.window_started_at + $4 <= $2 OR t.locked_until <= $2
                                    THEN 1 ELSE t.failures + 1 END) >= $3 THEN $2 + $5
                         WHEN t.locked_until <= $2 THEN NULL
                         ELSE t.locked_until END",
                )
                .bind::<Text, _>(key)
                .bind::<Timestamptz, _>(now)
                .bind::<Integer, _>(max)
                .bind::<Interval, _>(interval(policy.window))
                .bind::<Interval, _>(interval(policy.lockout))
                .execute(conn)
                .map(|_| ())
                .map_err(map_err)
            })
            .await
    }

    async fn remember_success(&self, key: String, now: DateTime<Utc>) -> Result<(), RepoError> {
        self.db
            .run(move |conn| {
                diesel::insert_into(login_known_clients::table)
                    .values((
                        login_known_clients::key.eq(&key),
                        login_known_clients::last_success_at.eq(now),
                    ))
                    .on_conflict(login_known_clients::key)
                    .do_update()
                    .set(login_known_clients::last_success_at.eq(now))
                    .execute(conn)
                    .map(|_| ())
                    .map_err(map_err)
            })
            .await
    }

    async fn succeeded_since(&self, key: String, since: DateTime<Utc>) -> Result<bool, RepoError> {
        self.db
            .run(move |conn| {
                diesel::select(diesel::dsl::exists(
                    login_known_clients::table
                        .filter(login_known_clients::key.eq(key))
                        .filter(login_known_clients::last_success_at.ge(since)),
                ))
                .get_result(conn)
                .map_err(map_err)
            })
            .await
    }

    async fn clear(&self, key: String) -> Result<(), RepoError> {
        self.db
            .run(move |conn| {
                diesel::delete(login_throttle::table.find(key))
                    .execute(conn)
                    .map(|_| ())
                    .map_err(map_err)
            })
            .await
    }
}
