//! The traits the use cases depend on: storage, password hashing, tokens, throttling and
//! time. Real implementations: `repository::*` (PostgreSQL), `security::*` (bcrypt, JWT).

use crate::domain::{DoctorId, Email, NewUser, Password, Role, User, UserId};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use std::time::Duration;
use uuid::Uuid;

/// Storage failures (the service kit's classification of database errors).
pub use medbook_service_kit::DbError as RepoError;

/// A page request: 1-based page number and page size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageRequest {
    pub page: u32,
    pub per_page: u32,
}

impl PageRequest {
    pub fn offset(&self) -> i64 {
        i64::from(self.page.saturating_sub(1)) * i64::from(self.per_page)
    }
}

/// One page of results and the total count.
#[derive(Debug, Clone)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub total: i64,
    pub page: u32,
    pub per_page: u32,
}

/// Changes to a user, as parsed values; `None` leaves a field alone, `Some(None)` clears
/// an optional one.
#[derive(Debug, Clone, Default)]
pub struct UserChanges {
    pub email: Option<Email>,
    pub password_hash: Option<String>,
    pub full_name: Option<crate::domain::FullName>,
    pub birth_date: Option<Option<crate::domain::BirthDate>>,
    pub gender: Option<Option<crate::domain::Gender>>,
    pub phone: Option<Option<crate::domain::Phone>>,
    pub email_verified_at: Option<Option<DateTime<Utc>>>,
    pub pending_email: Option<Option<Email>>,
}

/// Why a doctor's account was not created.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DoctorAccountRefusal {
    NoSuchDoctor,
    /// The doctor's record is linked to an account already.
    AlreadyLinked,
}

#[async_trait]
pub trait UserRepository: Send + Sync {
    async fn insert(&self, user: NewUser) -> Result<User, RepoError>;
    /// Inserts a doctor's account and links it to the doctor's record, in one
    /// transaction with the doctor's row locked; nothing is written when the doctor does
    /// not exist or has an account already.
    async fn insert_doctor_account(
        &self,
        user: NewUser,
        doctor: DoctorId,
    ) -> Result<Result<User, DoctorAccountRefusal>, RepoError>;
    /// Inserts all users in one transaction, or none of them.
    async fn insert_all(&self, users: Vec<NewUser>) -> Result<Vec<User>, RepoError>;
    async fn find_by_id(&self, id: UserId) -> Result<Option<User>, RepoError>;
    async fn find_by_email(&self, email: &Email) -> Result<Option<User>, RepoError>;
    /// Which of these e-mails are already taken.
    async fn existing_emails(&self, emails: Vec<String>) -> Result<Vec<String>, RepoError>;
    async fn update(&self, id: UserId, changes: UserChanges) -> Result<Option<User>, RepoError>;
    /// Deletes the user if it has this role; returns whether a row went.
    async fn delete(&self, id: UserId, role: Role) -> Result<bool, RepoError>;
    async fn list(
        &self,
        role: Role,
        search: Option<String>,
        page: PageRequest,
    ) -> Result<Page<User>, RepoError>;
    /// All users of a role, oldest first (for export).
    async fn all_with_role(&self, role: Role) -> Result<Vec<User>, RepoError>;
}

/// A refresh token to store: only the hash of the secret is kept.
#[derive(Debug, Clone)]
pub struct NewRefreshToken {
    pub id: Uuid,
    pub user_id: UserId,
    pub family_id: Uuid,
    pub token_hash: String,
    pub expires_at: DateTime<Utc>,
    /// The session's absolute end: no token of the family outlives it.
    pub session_expires_at: DateTime<Utc>,
}

/// The token that replaces a rotated one; it joins the rotated token's family.
#[derive(Debug, Clone)]
pub struct Replacement {
    pub id: Uuid,
    pub token_hash: String,
    /// Wanted expiry; the stored one is no later than the session's end.
    pub expires_at: DateTime<Utc>,
}

/// What presenting a refresh token did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RotateOutcome {
    /// The token was valid and has been replaced by the new one.
    Rotated { user_id: UserId },
    /// The token had already been rotated: its whole family is now revoked.
    ReuseDetected,
    /// Unknown, expired or revoked.
    Rejected,
}

#[async_trait]
pub trait RefreshTokenRepository: Send + Sync {
    async fn insert(&self, token: NewRefreshToken) -> Result<(), RepoError>;
    /// Atomically checks `presented_hash` and, if it is live, marks it rotated and stores
    /// `replacement` (in the same family). Concurrent calls with one token: at most one
    /// gets `Rotated`.
    async fn rotate(
        &self,
        presented_hash: String,
        replacement: Replacement,
        now: DateTime<Utc>,
    ) -> Result<RotateOutcome, RepoError>;
    /// Revokes the family the token belongs to; returns false if the token is unknown.
    async fn revoke_family_of(
        &self,
        token_hash: String,
        now: DateTime<Utc>,
    ) -> Result<bool, RepoError>;
    async fn revoke_all_for_user(
        &self,
        user_id: UserId,
        now: DateTime<Utc>,
    ) -> Result<u64, RepoError>;
}

/// Limits on failed logins.
#[derive(Debug, Clone, Copy)]
pub struct ThrottlePolicy {
    pub max_failures: u32,
    pub window: Duration,
    pub lockout: Duration,
}

#[async_trait]
pub trait LoginThrottle: Send + Sync {
    /// If `key` is locked out, how long until it is free again.
    async fn locked_for(
        &self,
        key: String,
        now: DateTime<Utc>,
    ) -> Result<Option<Duration>, RepoError>;
    /// Counts a failure for `key`, locking it when the policy's limit is reached.
    async fn record_failure(
        &self,
        key: String,
        policy: ThrottlePolicy,
        now: DateTime<Utc>,
    ) -> Result<(), RepoError>;
    async fn clear(&self, key: String) -> Result<(), RepoError>;
    /// Remembers that `key` (an account and a client network) logged in at `now`.
    async fn remember_success(&self, key: String, now: DateTime<Utc>) -> Result<(), RepoError>;
    /// Whether `key` logged in at `since` or later.
    async fn succeeded_since(&self, key: String, since: DateTime<Utc>) -> Result<bool, RepoError>;
}

#[derive(Debug, thiserror::Error)]
pub enum HashError {
    /// No hashing slot became free within the wait budget.
    #[error("password hashing is saturated")]
    Busy,
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

/// Password hashing, bounded in concurrency by the implementation.
#[async_trait]
pub trait PasswordHasher: Send + Sync {
    async fn hash(&self, password: Password) -> Result<String, HashError>;
    async fn verify(&self, password: Password, hash: String) -> Result<bool, HashError>;
}

/// Claims of a verified access token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessClaims {
    pub user_id: UserId,
    pub role: Role,
    pub token_id: Uuid,
    pub issued_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

/// An issued access token.
#[derive(Debug, Clone)]
pub struct IssuedAccessToken {
    pub token: String,
    pub expires_in: Duration,
}

pub trait TokenIssuer: Send + Sync {
    fn issue_access(
        &self,
        user_id: UserId,
        role: Role,
        now: DateTime<Utc>,
    ) -> anyhow::Result<IssuedAccessToken>;
    /// Verifies signature, algorithm, issuer, audience, expiry and token type.
    fn verify_access(
        &self,
        token: &str,
    ) -> Result<AccessClaims, crate::domain::rejection::AuthFailure>;
    /// A fresh opaque refresh token: `(secret for the client, hash to store)`.
    fn new_refresh_token(&self) -> (String, String);
    fn hash_refresh_token(&self, secret: &str) -> String;
    fn refresh_ttl(&self) -> Duration;
    fn access_ttl(&self) -> Duration;
}

/// Audit records of events that change nothing else (a failed login): written on their
/// own. Changes write theirs in their own transaction, in the repositories.
#[async_trait]
pub trait AuditLog: Send + Sync {
    async fn record(&self, entry: crate::domain::audit::AuditEntry) -> Result<(), RepoError>;
}

pub trait Clock: Send + Sync {
    fn now(&self) -> DateTime<Utc>;
}

/// The wall clock.
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// Told after a transaction that wrote outbox rows has committed, so the relays need
/// not wait for their next poll; `reminders` is how many reminders it scheduled.
pub trait CommitListener: Send + Sync {
    fn committed(&self, reminders: usize);
}
