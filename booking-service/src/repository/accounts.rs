//! `AccountStore` over `users`, `account_tokens`, `refresh_tokens` and the outbox: every
//! account change commits together with the e-mail that announces it, and a link token
//! is used up by one conditional UPDATE, so two clicks cannot both succeed.

use super::audit;
use super::db::{map_err, Db};
use super::outbox;
use super::schema::{account_tokens, users};
use super::users::UserRow;
use crate::domain::audit::{json, AuditEntry};
use crate::domain::{LinkTarget, NewUser, User, UserId};
use crate::service::account_ports::{
    AccountStore, LiveToken, NewAccountToken, TokenPurpose, Verification,
};
use crate::service::ports::{CommitListener, RepoError};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::PgConnection;
use medbook_shared::events::{AccountEvent, AccountInfo, EmailChange, EventEnvelope};
use std::sync::Arc;
use uuid::Uuid;

pub struct PgAccounts {
    db: Db,
    /// Told after a committed change that wrote an event.
    signal: Arc<dyn CommitListener>,
}

impl PgAccounts {
    pub fn new(db: Db, signal: Arc<dyn CommitListener>) -> Self {
        Self { db, signal }
    }
}

/// Marks the user's live tokens of `purpose` used: only the newest link works.
fn supersede(
    conn: &mut PgConnection,
    user_id: Uuid,
    purpose: TokenPurpose,
    now: DateTime<Utc>,
) -> Result<(), RepoError> {
    diesel::update(
        account_tokens::table
            .filter(account_tokens::user_id.eq(user_id))
            .filter(account_tokens::purpose.eq(purpose.as_str()))
            .filter(account_tokens::used_at.is_null()),
    )
    .set(account_tokens::used_at.eq(now))
    .execute(conn)
    .map(|_| ())
    .map_err(map_err)
}

fn insert_token(conn: &mut PgConnection, t: &NewAccountToken) -> Result<(), RepoError> {
    diesel::insert_into(account_tokens::table)
        .values((
            account_tokens::id.eq(t.id),
            account_tokens::user_id.eq(t.user_id.0),
            account_tokens::purpose.eq(t.purpose.as_str()),
            account_tokens::token_hash.eq(&t.token_hash),
            account_tokens::email.eq(&t.email),
            account_tokens::expires_at.eq(t.expires_at),
        ))
        .execute(conn)
        .map(|_| ())
        .map_err(map_err)
}

/// Uses up a live token: `(user id, address it went to)`, or `None`.
fn consume(
    conn: &mut PgConnection,
    purpose: TokenPurpose,
    token_hash: &str,
    now: DateTime<Utc>,
) -> Result<Option<(Uuid, String)>, RepoError> {
    diesel::update(
        account_tokens::table
            .filter(account_tokens::token_hash.eq(token_hash))
            .filter(account_tokens::purpose.eq(purpose.as_str()))
            .filter(account_tokens::used_at.is_null())
            .filter(account_tokens::expires_at.gt(now)),
    )
    .set(account_tokens::used_at.eq(now))
    .returning((account_tokens::user_id, account_tokens::email))
    .get_result(conn)
    .optional()
    .map_err(map_err)
}

fn load_user(conn: &mut PgConnection, id: Uuid) -> Result<User, RepoError> {
    users::table
        .find(id)
        .select(UserRow::as_select())
        .for_update()
        .first(conn)
        .map_err(map_err)
        .and_then(User::try_from)
}

#[async_trait]
impl AccountStore for PgAccounts {
    async fn create_with_token(
        &self,
        user: NewUser,
        token: NewAccountToken,
        mail: EventEnvelope,
    ) -> Result<User, RepoError> {
        let row = super::users::NewUserRow::from(user);
        let user = self
            .db
            .transaction(move |conn| {
                let user = super::users::insert_row(conn, &row)?;
                insert_token(conn, &token)?;
                outbox::enqueue(conn, &mail)?;
                audit::enqueue(
                    conn,
                    AuditEntry::new("patient.registered", "user", user.id)
                        .by(user.id, user.role.as_str())
                        .field("role", None, json(&user.role.as_str()))
                        .field("email", None, json(&user.email))
                        .field("full_name", None, json(&user.full_name)),
                )?;
                Ok(user)
            })
            .await?;
        self.signal.committed(0);
        Ok(user)
    }

    async fn issue(
        &self,
        token: NewAccountToken,
        mail: EventEnvelope,
        pending_email: Option<String>,
    ) -> Result<(), RepoError> {
        self.db
            .transaction(move |conn| {
                // The new pending address first: changing it ends every link out
                // (the `users_address_changed` trigger), the new one included if it
                // were already stored.
                if let Some(pending) = &pending_email {
                    diesel::update(users::table.find(token.user_id.0))
                        .set((
                            users::pending_email.eq(pending),
                            users::updated_at.eq(mail.occurred_at),
                        ))
                        .execute(conn)
                        .map_err(map_err)?;
                }
                supersede(conn, token.user_id.0, token.purpose, mail.occurred_at)?;
                insert_token(conn, &token)?;
                let action = match (token.purpose, &pending_email) {
                    (TokenPurpose::ResetPassword, _) => "password_reset.requested",
                    (TokenPurpose::VerifyEmail, Some(_)) => "email_change.requested",
                    (TokenPurpose::VerifyEmail, None) => "email_verification.requested",
                };
                audit::enqueue(
                    conn,
                    AuditEntry::new(action, "user", token.user_id).field(
                        "pending_email",
                        None,
                        pending_email.as_ref().and_then(json),
                    ),
                )?;
                outbox::enqueue(conn, &mail)
            })
            .await?;
        self.signal.committed(0);
        Ok(())
    }

    async fn notify(&self, mail: EventEnvelope) -> Result<(), RepoError> {
        self.db
            .transaction(move |conn| outbox::enqueue(conn, &mail))
            .await?;
        self.signal.committed(0);
        Ok(())
    }

    async fn live_token(
        &self,
        purpose: TokenPurpose,
        token_hash: String,
        now: DateTime<Utc>,
    ) -> Result<Option<LiveToken>, RepoError> {
        self.db
            .run(move |conn| {
                account_tokens::table
                    .filter(account_tokens::token_hash.eq(&token_hash))
                    .filter(account_tokens::purpose.eq(purpose.as_str()))
                    .filter(account_tokens::used_at.is_null())
                    .filter(account_tokens::expires_at.gt(now))
                    .select((account_tokens::user_id, account_tokens::email))
                    .first::<(Uuid, String)>(conn)
                    .optional()
                    .map_err(map_err)
                    .map(|t| {
                        t.map(|(user_id, email)| LiveToken {
                            user_id: UserId(user_id),
                            email,
                        })
                    })
            })
            .await
    }

    async fn verify_email(
        &self,
        token_hash: String,
        now: DateTime<Utc>,
    ) -> Result<Verification, RepoError> {
        let result = self
            .db
            .transaction(move |conn| {
                let Some((user_id, address)) =
                    consume(conn, TokenPurpose::VerifyEmail, &token_hash, now)?
                else {
                    return Ok(Verification::Invalid);
                };
                let user = load_user(conn, user_id)?;
                // A link proves control of the address it was sent to, and counts only
                // while that address is still the account's own or its pending one.
                match user.link_target(&address) {
                    LinkTarget::Elsewhere => return Ok(Verification::Invalid),
                    LinkTarget::Pending => {}
                    LinkTarget::Current => {
                        let user = diesel::update(users::table.find(user_id))
                            .set((
                                users::email_verified_at.eq(user.email_verified_at.unwrap_or(now)),
                                users::updated_at.eq(now),
                            ))
                            .returning(UserRow::as_returning())
                            .get_result(conn)
                            .map_err(map_err)
                            .and_then(User::try_from)?;
                        audit::enqueue(
                            conn,
                            AuditEntry::new("email.verified", "user", user.id)
                                .by(user.id, user.role.as_str())
                                .field("email_verified", None, json(&true)),
                        )?;
                        return Ok(Verification::Verified(user));
                    }
                }
                // An address change: the link proves the new address works. If another
                // account took it meanwhile, the unique index refuses the update (below).
                let changed = diesel::update(users::table.find(user_id))
                    .set((
                        users::email.eq(&address),
                        users::email_verified_at.eq(Some(now)),
                        users::pending_email.eq(None::<String>),
                        users::updated_at.eq(now),
                    ))
                    .returning(UserRow::as_returning())
                    .get_result(conn)
                    .map_err(map_err)
                    .and_then(User::try_from)?;
                // Reset links sent to the old address must not work any more.
                supersede(conn, user_id, TokenPurpose::ResetPassword, now)?;
                let notice = EventEnvelope::new(
                    now,
                    AccountEvent::EmailChanged(EmailChange {
                        account: AccountInfo {
                            id: user_id,
                            email: user.email.clone(),
                            full_name: user.full_name.clone(),
                        },
                        new_email: address.clone(),
                    }),
                );
                outbox::enqueue(conn, &notice)?;
                audit::enqueue(
                    conn,
                    AuditEntry::new("email.changed", "user", user_id)
                        .by(user_id, changed.role.as_str())
                        .field("email", json(&user.email), json(&changed.email)),
                )?;
                Ok(Verification::Changed {
                    user: changed,
                    old_email: user.email,
                })
            })
            .await;
        match result {
            Ok(v @ Verification::Changed { .. }) => {
                self.signal.committed(0);
                Ok(v)
            }
            // Another account has the address: the transaction rolled back.
            Err(RepoError::UniqueViolation(_)) => Ok(Verification::AddressTaken),
            other => other,
        }
    }

    async fn reset_password(
        &self,
        token_hash: String,
        password_hash: String,
        now: DateTime<Utc>,
    ) -> Result<Option<User>, RepoError> {
        self.db
            .transaction(move |conn| {
                let Some((user_id, address)) =
                    consume(conn, TokenPurpose::ResetPassword, &token_hash, now)?
                else {
                    return Ok(None);
                };
                let user = load_user(conn, user_id)?;
                // A reset link counts only while it went to the account's address.
                if user.link_target(&address) != LinkTarget::Current {
                    return Ok(None);
                }
                // The link reached the account's address: that proves control of it.
                let verified_at = match user.email_verified_at {
                    Some(at) => Some(at),
                    None if user.email == address => Some(now),
                    None => None,
                };
                let user = diesel::update(users::table.find(user_id))
                    .set((
                        users::password_hash.eq(Some(&password_hash)),
                        users::email_verified_at.eq(verified_at),
                        users::updated_at.eq(now),
                    ))
                    .returning(UserRow::as_returning())
                    .get_result(conn)
                    .map_err(map_err)
                    .and_then(User::try_from)?;
                supersede(conn, user_id, TokenPurpose::ResetPassword, now)?;
                super::refresh_tokens::revoke_all_of(conn, UserId(user_id), now)?;
                audit::enqueue(
                    conn,
                    AuditEntry::new("password.reset", "user", user_id)
                        .by(user_id, user.role.as_str())
                        .field("password_changed", None, json(&true))
                        .field("sessions_revoked", None, json(&true)),
                )?;
                Ok(Some(user))
            })
            .await
    }
}
