//! [`PgDeadLetterBudget`]: the dead-letter cap of the whole consumer group, counted in
//! the `dead_letter_window` table whichever worker dead-letters.

use super::Db;
use crate::service::ports::{Admission, DeadLetterBudget, FailureKind};
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use std::time::Duration;

diesel::table! {
    dead_letter_window (id) {
        id -> Int8,
        at -> Timestamptz,
        kind -> Text,
        source -> Text,
    }
}

/// The advisory lock key under which one admission is decided at a time.
const BUDGET_LOCK: i64 = 7243101;

pub struct PgDeadLetterBudget {
    db: Db,
    max: u32,
    window: Duration,
}

impl PgDeadLetterBudget {
    pub fn new(db: Db, max: u32, window: Duration) -> Self {
        Self { db, max, window }
    }
}

#[async_trait::async_trait]
impl DeadLetterBudget for PgDeadLetterBudget {
    async fn admit(
        &self,
        kind: FailureKind,
        source: &str,
        now: DateTime<Utc>,
    ) -> anyhow::Result<Admission> {
        let (max, source) = (i64::from(self.max), source.to_owned());
        let window = chrono::Duration::from_std(self.window)?;
        self.db
            .run(move |conn| {
                conn.transaction(|conn| {
                    diesel::sql_query("SELECT pg_advisory_xact_lock($1)")
                        .bind::<diesel::sql_types::BigInt, _>(BUDGET_LOCK)
                        .execute(conn)?;
                    let since = now - window;
                    // What left the window is forgotten (the DLQ topic keeps the letters).
                    diesel::delete(
                        dead_letter_window::table.filter(dead_letter_window::at.le(since)),
                    )
                    .execute(conn)?;
                    let (count, oldest): (i64, Option<DateTime<Utc>>) = dead_letter_window::table
                        .select((
                            diesel::dsl::count_star(),
                            diesel::dsl::min(dead_letter_window::at),
                        ))
                        .first(conn)?;
                    if count >= max {
                        let retry_after = oldest
                            .map(|t| (t + window - now).to_std().unwrap_or_default())
                            .unwrap_or_default();
                        return Ok(Admission::Full {
                            count: u32::try_from(count).unwrap_or(u32::MAX),
                            retry_after,
                        });
                    }
                    diesel::insert_into(dead_letter_window::table)
                        .values((
                            dead_letter_window::at.eq(now),
                            dead_letter_window::kind.eq(kind.as_str()),
                            dead_letter_window::source.eq(&source),
                        ))
                        .execute(conn)?;
                    Ok(Admission::Admitted)
                })
            })
            .await
    }
}
