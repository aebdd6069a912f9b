//! The storage port of the account flows (`service::accounts`): users created with
//! their first verification link, single-use link tokens, and the account e-mails
//! queued in the outbox in the same transaction as the change they announce.

use super::ports::RepoError;
use crate::domain::{NewUser, User, UserId};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use medbook_shared::events::EventEnvelope;
use uuid::Uuid;

/// What a link token is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenPurpose {
    VerifyEmail,
    ResetPassword,
}

impl TokenPurpose {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::VerifyEmail => "verify_email",
            Self::ResetPassword => "reset_password",
        }
    }
}

/// A link token to store: only the hash of its secret is kept.
#[derive(Debug, Clone)]
pub struct NewAccountToken {
    pub id: Uuid,
    pub user_id: UserId,
    pub purpose: TokenPurpose,
    pub token_hash: String,
    /// The address the link goes to.
    pub email: String,
    pub expires_at: DateTime<Utc>,
}

/// An unused, unexpired token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveToken {
    pub user_id: UserId,
    pub email: String,
}

/// What following a verification link did.
#[derive(Debug, Clone, PartialEq)]
pub enum Verification {
    /// The account's address is verified (it may have been already).
    Verified(User),
    /// The account's address changed to the verified one; the old address has been
    /// told (an `account.email_changed` notice is queued).
    Changed { user: User, old_email: String },
    /// Another account took the address after the link was sent.
    AddressTaken,
    /// Unknown, used, superseded or expired.
    Invalid,
}

#[async_trait]
pub trait AccountStore: Send + Sync {
    /// Inserts the user, its first verification token and the verification e-mail, in
    /// one transaction. An address that is taken is a `UniqueViolation`.
    async fn create_with_token(
        &self,
        user: NewUser,
        token: NewAccountToken,
        mail: EventEnvelope,
    ) -> Result<User, RepoError>;
    /// Marks the user's live tokens of the same purpose used (only the newest link
    /// works), stores `token` and queues `mail`, in one transaction. With
    /// `pending_email`, also records it as the address the user is changing to.
    async fn issue(
        &self,
        token: NewAccountToken,
        mail: EventEnvelope,
        pending_email: Option<String>,
    ) -> Result<(), RepoError>;
    /// Queues an e-mail that carries no link.
    async fn notify(&self, mail: EventEnvelope) -> Result<(), RepoError>;
    /// The token, if it is live.
    async fn live_token(
        &self,
        purpose: TokenPurpose,
        token_hash: String,
        now: DateTime<Utc>,
    ) -> Result<Option<LiveToken>, RepoError>;
    /// Uses up a verification token and verifies (or changes to) its address.
    async fn verify_email(
        &self,
        token_hash: String,
        now: DateTime<Utc>,
    ) -> Result<Verification, RepoError>;
    /// Uses up a reset token, sets the password, revokes every refresh token of the
    /// user and, when the link went to the account's current address, marks it
    /// verified: all in one transaction. `None` if the token is not live.
    async fn reset_password(
        &self,
        token_hash: String,
        password_hash: String,
        now: DateTime<Utc>,
    ) -> Result<Option<User>, RepoError>;
}
