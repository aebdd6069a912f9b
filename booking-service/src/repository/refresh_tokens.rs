//! `RefreshTokenRepository`: rotation happens in one transaction with the presented
//! row locked (`FOR UPDATE`), so of two concurrent refreshes with the same token the
//! second waits, sees the token rotated and revokes the family.

use super::audit;
use super::db::{map_err, Db};
use super::schema::refresh_tokens;
use crate::domain::audit::{json, AuditEntry};
use crate::domain::UserId;
use crate::service::ports::{
    NewRefreshToken, RefreshTokenRepository, Replacement, RepoError, RotateOutcome,
};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use uuid::Uuid;

#[derive(Insertable)]
#[diesel(table_name = refresh_tokens)]
struct NewRow {
    id: Uuid,
    user_id: Uuid,
    family_id: Uuid,
    token_hash: String,
    expires_at: DateTime<Utc>,
    session_expires_at: DateTime<Utc>,
}

#[derive(Queryable, Selectable)]
#[diesel(table_name = refresh_tokens)]
struct Row {
    id: Uuid,
    user_id: Uuid,
    family_id: Uuid,
    expires_at: DateTime<Utc>,
    rotated_at: Option<DateTime<Utc>>,
    revoked_at: Option<DateTime<Utc>>,
    session_expires_at: DateTime<Utc>,
}

pub struct PgRefreshTokens {
    db: Db,
}

impl PgRefreshTokens {
    pub fn new(db: Db) -> Self {
        Self { db }
    }
}

fn revoke_family(conn: &mut PgConnection, family: Uuid, now: DateTime<Utc>) -> QueryResult<usize> {
    diesel::update(
        refresh_tokens::table
            .filter(refresh_tokens::family_id.eq(family))
            .filter(refresh_tokens::revoked_at.is_null()),
    )
    .set(refresh_tokens::revoked_at.eq(now))
    .execute(conn)
}

#[async_trait]
impl RefreshTokenRepository for PgRefreshTokens {
    async fn insert(&self, t: NewRefreshToken) -> Result<(), RepoError> {
        let row = NewRow {
            id: t.id,
            user_id: t.user_id.0,
            family_id: t.family_id,
            token_hash: t.token_hash,
            expires_at: t.expires_at.min(t.session_expires_at),
            session_expires_at: t.session_expires_at,
        };
        self.db
            .transaction(move |conn| {
                diesel::insert_into(refresh_tokens::table)
                    .values(&row)
                    .execute(conn)
                    .map_err(map_err)?;
                // A session starts only at a login (the caller's context names the user).
                audit::enqueue(
                    conn,
                    AuditEntry::new("login.succeeded", "user", row.user_id).field(
                        "session",
                        None,
                        json(&row.family_id),
                    ),
                )
            })
            .await
    }

    async fn rotate(
        &self,
        presented_hash: String,
        replacement: Replacement,
        now: DateTime<Utc>,
    ) -> Result<RotateOutcome, RepoError> {
        self.db
            .transaction(move |conn| {
                let row: Option<Row> = refresh_tokens::table
                    .filter(refresh_tokens::token_hash.eq(&presented_hash))
                    .select(Row::as_select())
                    .for_update()
                    .first(conn)
                    .optional()
                    .map_err(map_err)?;
                let Some(row) = row else {
                    return Ok(RotateOutcome::Rejected);
                };
                if row.revoked_at.is_some() {
                    return Ok(RotateOutcome::Rejected);
                }
                if row.rotated_at.is_some() {
                    revoke_family(conn, row.family_id, now).map_err(map_err)?;
                    audit::enqueue(
                        conn,
                        AuditEntry::new("refresh_token.reuse_detected", "user", row.user_id)
                            .field("session", None, json(&row.family_id))
                            .field("session_revoked", None, json(&true)),
                    )?;
                    return Ok(RotateOutcome::ReuseDetected);
                }
                if row.expires_at <= now || row.session_expires_at <= now {
                    return Ok(RotateOutcome::Rejected);
                }
                diesel::update(refresh_tokens::table.find(row.id))
                    .set(refresh_tokens::rotated_at.eq(now))
                    .execute(conn)
                    .map_err(map_err)?;
                diesel::insert_into(refresh_tokens::table)
                    .values(&NewRow {
                        id: replacement.id,
                        user_id: row.user_id,
                        family_id: row.family_id,
                        token_hash: replacement.token_hash.clone(),
                        expires_at: replacement.expires_at.min(row.session_expires_at),
                        session_expires_at: row.session_expires_at,
                    })
                    .execute(conn)
                    .map_err(map_err)?;
                audit::enqueue(
                    conn,
                    AuditEntry::new("session.refreshed", "user", row.user_id).field(
                        "session",
                        None,
                        json(&row.family_id),
                    ),
                )?;
                Ok(RotateOutcome::Rotated {
                    user_id: UserId(row.user_id),
                })
            })
            .await
    }

    async fn revoke_family_of(
        &self,
        token_hash: String,
        now: DateTime<Utc>,
    ) -> Result<bool, RepoError> {
        self.db
            .transaction(move |conn| {
                let family: Option<(Uuid, Uuid, String)> = refresh_tokens::table
                    .inner_join(super::schema::users::table)
                    .filter(refresh_tokens::token_hash.eq(&token_hash))
                    .select((
                        refresh_tokens::family_id,
                        refresh_tokens::user_id,
                        super::schema::users::role,
                    ))
                    .first(conn)
                    .optional()
                    .map_err(map_err)?;
                let Some((family, user_id, role)) = family else {
                    return Ok(false);
                };
                revoke_family(conn, family, now).map_err(map_err)?;
                audit::enqueue(
                    conn,
                    AuditEntry::new("logout", "user", user_id)
                        .by(user_id, &role)
                        .field("session", None, json(&family)),
                )?;
                Ok(true)
            })
            .await
    }

    async fn revoke_all_for_user(
        &self,
        user_id: UserId,
        now: DateTime<Utc>,
    ) -> Result<u64, RepoError> {
        self.db
            .run(move |conn| revoke_all_of(conn, user_id, now))
            .await
    }
}

/// Revokes every live refresh token of `user_id`, inside the caller's transaction if
/// it has one (a password reset does it with the password change).
pub(crate) fn revoke_all_of(
    conn: &mut PgConnection,
    user_id: UserId,
    now: DateTime<Utc>,
) -> Result<u64, RepoError> {
    diesel::update(
        refresh_tokens::table
            .filter(refresh_tokens::user_id.eq(user_id.0))
            .filter(refresh_tokens::revoked_at.is_null()),
    )
    .set(refresh_tokens::revoked_at.eq(now))
    .execute(conn)
    .map(|n| n as u64)
    .map_err(map_err)
}
