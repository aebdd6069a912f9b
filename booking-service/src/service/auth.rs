//! Registration, login, token refresh and logout.
//!
//! * Login verifies against a dummy hash when the account is unknown (or has no
//!   password), so both failures cost one bcrypt verification and look the same.
//! * Failed logins slow an attacker without locking the owner out (OWASP ASVS 5.0,
//!   V6 anti-automation). They are counted per client network (an IPv4 address, an
//!   IPv6 /64), per account *and* client network, and per account over all networks.
//!   A locked network or account-and-network answers `TooManyRequests` until its
//!   lockout expires: a guesser is stopped where it guesses from. The account-wide
//!   limit stops a guesser spread over many networks, but never the networks the
//!   account logged in from within `known_client_for`: strangers cannot keep the owner
//!   out by failing on purpose. (An owner on a new network during such an attack
//!   resets the password by e-mail, which clears the account-wide count.)
//! * Refresh tokens rotate on every use; presenting an already rotated token revokes
//!   its whole family (someone holds a stolen copy).

use super::cache_ports::RevokedTokens;
use super::ports::AuditLog;
use super::ports::{
    Clock, DoctorAccountRefusal, IssuedAccessToken, LoginThrottle, NewRefreshToken, PasswordHasher,
    RefreshTokenRepository, Replacement, RotateOutcome, ThrottlePolicy, TokenIssuer,
    UserRepository,
};
use super::ServiceError;
use crate::domain::audit::AuditEntry;
use crate::domain::rejection::{AuthFailure, Rejection};
use crate::domain::{
    BirthDate, ClientNetwork, DoctorId, Email, FullName, Gender, NewUser, Password, Phone, Role,
    User, UserId, ValidationErrors,
};
use chrono::{DateTime, Utc};
use medbook_service_kit::context::{self, Actor};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;
use uuid::Uuid;

/// A validated registration.
#[derive(Debug, Clone)]
pub struct Registration {
    pub email: Email,
    pub password: Password,
    pub full_name: FullName,
    pub birth_date: Option<BirthDate>,
    pub gender: Option<Gender>,
    pub phone: Option<Phone>,
}

/// Access and refresh token handed to a client.
#[derive(Debug, Clone)]
pub struct TokenPair {
    pub access: IssuedAccessToken,
    pub refresh_token: String,
    pub refresh_expires_in: Duration,
}

/// Failed-login limits (see the module's documentation).
#[derive(Debug, Clone, Copy)]
pub struct LoginLimits {
    /// One account from one client network.
    pub per_account_and_client: ThrottlePolicy,
    /// One account from every network together; not applied to its known networks.
    pub per_account: ThrottlePolicy,
    /// One client network, whatever the accounts.
    pub per_client: ThrottlePolicy,
    /// How long a network the account logged in from stays known.
    pub known_client_for: Duration,
    /// A login's absolute lifetime: refreshing never extends a session past it.
    pub session_max: Duration,
}

/// The throttle keys of one login attempt.
struct LoginKeys {
    account: String,
    account_from_client: String,
    client: Option<String>,
    network: Option<ClientNetwork>,
}

impl LoginKeys {
    fn new(email: &Email, client: Option<IpAddr>) -> Self {
        let network = client.map(ClientNetwork::from);
        let from = network.map_or_else(|| "unknown".to_owned(), |n| n.to_string());
        Self {
            account: format!("account:{email}"),
            account_from_client: format!("account:{email}:from:{from}"),
            client: network.map(|n| format!("client:{n}")),
            network,
        }
    }

    /// The key a successful login remembers (by account id: it outlives address changes).
    fn known(&self, user: UserId) -> Option<String> {
        self.network.map(|n| format!("account:{user}:{n}"))
    }
}

pub struct AuthService {
    users: Arc<dyn UserRepository>,
    tokens: Arc<dyn RefreshTokenRepository>,
    throttle: Arc<dyn LoginThrottle>,
    hasher: Arc<dyn PasswordHasher>,
    issuer: Arc<dyn TokenIssuer>,
    clock: Arc<dyn Clock>,
    dummy_hash: String,
    limits: LoginLimits,
    revoked: Arc<dyn RevokedTokens>,
    audit: Arc<dyn AuditLog>,
}

impl AuthService {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        users: Arc<dyn UserRepository>,
        tokens: Arc<dyn RefreshTokenRepository>,
        throttle: Arc<dyn LoginThrottle>,
        hasher: Arc<dyn PasswordHasher>,
        issuer: Arc<dyn TokenIssuer>,
        clock: Arc<dyn Clock>,
        dummy_hash: String,
        limits: LoginLimits,
        revoked: Arc<dyn RevokedTokens>,
        audit: Arc<dyn AuditLog>,
    ) -> Self {
        Self {
            audit,
            users,
            tokens,
            throttle,
            hasher,
            issuer,
            clock,
            dummy_hash,
            limits,
            revoked,
        }
    }

    /// Creates an admin (command line only; never reachable over public HTTP). The
    /// operator running the command vouches for the address: it counts as verified.
    #[tracing::instrument(skip_all)]
    pub async fn create_admin(&self, reg: Registration) -> Result<User, ServiceError> {
        self.create_staff(reg, Role::Admin).await
    }

    /// Creates the account of a doctor (command line only), verified like an admin's,
    /// and links the doctor's record to it: both or neither.
    #[tracing::instrument(skip_all, fields(doctor_id = %doctor))]
    pub async fn create_doctor_account(
        &self,
        doctor: DoctorId,
        reg: Registration,
    ) -> Result<User, ServiceError> {
        let user = self.new_staff(reg, Role::Doctor).await?;
        match self
            .users
            .insert_doctor_account(user, doctor)
            .await
            .map_err(email_conflict)?
        {
            Ok(user) => Ok(user),
            Err(DoctorAccountRefusal::NoSuchDoctor) => Err(ServiceError::NotFound("doctor")),
            Err(DoctorAccountRefusal::AlreadyLinked) => Err(Rejection::DoctorHasAccount.into()),
        }
    }

    async fn create_staff(&self, reg: Registration, role: Role) -> Result<User, ServiceError> {
        let user = self.new_staff(reg, role).await?;
        self.users.insert(user).await.map_err(email_conflict)
    }

    /// A staff account (verified at once) after the password policy and hashing.
    async fn new_staff(&self, reg: Registration, role: Role) -> Result<NewUser, ServiceError> {
        crate::domain::password_policy::require(
            "password",
            &reg.password,
            reg.email.as_str(),
            reg.full_name.as_str(),
        )?;
        let hash = self.hasher.hash(reg.password).await?;
        let user = NewUser {
            id: UserId(Uuid::new_v4()),
            email: reg.email,
            password_hash: Some(hash),
            role,
            full_name: reg.full_name,
            birth_date: reg.birth_date,
            gender: reg.gender,
            phone: reg.phone,
            email_verified_at: Some(self.clock.now()),
        };
        Ok(user)
    }

    /// Checks credentials and issues a token pair.
    #[tracing::instrument(skip_all)]
    pub async fn login(
        &self,
        email: &str,
        password: &str,
        client: Option<IpAddr>,
    ) -> Result<TokenPair, ServiceError> {
        let mut errors = ValidationErrors::new();
        let email = errors.check("email", Email::parse(email));
        if password.len() > crate::domain::values::MAX_PASSWORD_BYTES {
            errors.push(
                "password",
                format!(
                    "must be at most {} bytes",
                    crate::domain::values::MAX_PASSWORD_BYTES
                ),
            );
        }
        let email = errors.finish(|| email)?;
        let now = self.clock.now();
        let keys = LoginKeys::new(&email, client);
        for key in keys.client.iter().chain([&keys.account_from_client]) {
            if let Some(wait) = self.throttle.locked_for(key.clone(), now).await? {
                return Err(ServiceError::TooManyRequests { retry_after: wait });
            }
        }

        let user = self.users.find_by_email(&email).await?;
        if let Some(wait) = self.throttle.locked_for(keys.account.clone(), now).await? {
            // Spread guessing reached the account's limit: only networks the account
            // logged in from before may go on.
            let since = now
                - chrono::Duration::from_std(self.limits.known_client_for)
                    .unwrap_or(chrono::Duration::days(30));
            let known = match user.as_ref().and_then(|u| keys.known(u.id)) {
                Some(key) => self.throttle.succeeded_since(key, since).await?,
                None => false,
            };
            if !known {
                return Err(ServiceError::TooManyRequests { retry_after: wait });
            }
        }
        let (hash, candidate) = match user {
            Some(u) => match u.password_hash.clone() {
                Some(h) => (h, Some(u)),
                None => (self.dummy_hash.clone(), None),
            },
            None => (self.dummy_hash.clone(), None),
        };
        // Passwords too short to be valid still cost a full verification.
        let verified = match Password::parse(password) {
            Ok(p) => self.hasher.verify(p, hash).await?,
            Err(_) => {
                let filler =
                    Password::parse("medbook-timing-filler").map_err(anyhow::Error::msg)?;
                let _ = self.hasher.verify(filler, hash).await?;
                false
            }
        };
        match (verified, candidate) {
            (true, Some(user)) => {
                // The owner's own failures from here are forgiven; strangers' count
                // against the account stays until its window passes.
                self.throttle
                    .clear(keys.account_from_client.clone())
                    .await?;
                if let Some(key) = keys.known(user.id) {
                    self.throttle.remember_success(key, now).await?;
                }
                // The session is audited as the user who opened it.
                let actor = Actor::User {
                    id: user.id.to_string(),
                    role: user.role.as_str().to_owned(),
                };
                context::with_actor(actor, self.issue_pair(&user, now)).await
            }
            (_, candidate) => {
                // Ids only: an unknown address is not recorded at all.
                let entry = match &candidate {
                    Some(u) => AuditEntry::new("login.failed", "user", u.id),
                    None => AuditEntry::new("login.failed", "login", "unknown-account"),
                };
                self.audit.record(entry).await?;
                let limits = [
                    (
                        Some(keys.account_from_client),
                        self.limits.per_account_and_client,
                    ),
                    (Some(keys.account), self.limits.per_account),
                    (keys.client, self.limits.per_client),
                ];
                for (key, policy) in limits {
                    if let Some(key) = key {
                        self.throttle.record_failure(key, policy, now).await?;
                    }
                }
                Err(ServiceError::InvalidCredentials)
            }
        }
    }

    /// Exchanges a refresh token for a new pair; the presented token is used up.
    #[tracing::instrument(skip_all)]
    pub async fn refresh(&self, refresh_token: &str) -> Result<TokenPair, ServiceError> {
        let now = self.clock.now();
        let presented = self.issuer.hash_refresh_token(refresh_token);
        let (secret, hash) = self.issuer.new_refresh_token();
        let replacement = Replacement {
            id: Uuid::new_v4(),
            token_hash: hash,
            expires_at: now + self.refresh_ttl(),
        };
        match self.tokens.rotate(presented, replacement, now).await? {
            RotateOutcome::Rotated { user_id } => {
                let user = self
                    .users
                    .find_by_id(user_id)
                    .await?
                    .ok_or(ServiceError::Unauthorized(AuthFailure::AccountGone))?;
                let access = self.issuer.issue_access(user.id, user.role, now)?;
                Ok(TokenPair {
                    access,
                    refresh_token: secret,
                    refresh_expires_in: self.issuer.refresh_ttl(),
                })
            }
            RotateOutcome::ReuseDetected => {
                tracing::warn!("refresh token reuse detected; token family revoked");
                Err(ServiceError::Unauthorized(AuthFailure::RefreshReused))
            }
            RotateOutcome::Rejected => Err(ServiceError::Unauthorized(AuthFailure::RefreshInvalid)),
        }
    }

    /// Revokes the refresh token's family (unknown tokens are accepted silently) and,
    /// when the caller presented one, the access token until it would have expired.
    /// If the revocation store is down the access token simply runs out.
    #[tracing::instrument(skip_all)]
    pub async fn logout(
        &self,
        refresh_token: &str,
        access: Option<(Uuid, DateTime<Utc>)>,
    ) -> Result<(), ServiceError> {
        let now = self.clock.now();
        let hash = self.issuer.hash_refresh_token(refresh_token);
        self.tokens.revoke_family_of(hash, now).await?;
        if let Some((token_id, expires_at)) = access {
            let ttl = (expires_at - now).to_std().unwrap_or_default();
            if !ttl.is_zero() {
                if let Err(e) = self.revoked.revoke(token_id, ttl).await {
                    tracing::warn!(error = %e, "could not revoke the access token; it stays valid until it expires");
                }
            }
        }
        Ok(())
    }

    async fn issue_pair(&self, user: &User, now: DateTime<Utc>) -> Result<TokenPair, ServiceError> {
        let access = self.issuer.issue_access(user.id, user.role, now)?;
        let (secret, hash) = self.issuer.new_refresh_token();
        self.tokens
            .insert(NewRefreshToken {
                id: Uuid::new_v4(),
                user_id: user.id,
                family_id: Uuid::new_v4(),
                token_hash: hash,
                expires_at: now + self.refresh_ttl(),
                session_expires_at: now
                    + chrono::Duration::from_std(self.limits.session_max)
                        .unwrap_or(chrono::Duration::days(90)),
            })
            .await?;
        Ok(TokenPair {
            access,
            refresh_token: secret,
            refresh_expires_in: self.issuer.refresh_ttl(),
        })
    }

    fn refresh_ttl(&self) -> chrono::Duration {
        chrono::Duration::from_std(self.issuer.refresh_ttl()).unwrap_or(chrono::Duration::days(30))
    }
}

/// Maps a unique violation on insert/update of a user to the `email_taken` conflict.
pub(crate) fn email_conflict(e: super::ports::RepoError) -> ServiceError {
    match e {
        super::ports::RepoError::UniqueViolation(_) => Rejection::EmailTaken.into(),
        other => other.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::fakes::Fakes;

    #[tokio::test]
    async fn register_then_login_issues_tokens() {
        let f = Fakes::new();
        let auth = f.auth();
        let user = f.verified_patient("ann@example.com", "correct horse").await;
        assert_eq!(user.role, Role::Patient);
        let pair = auth
            .login("ANN@example.com", "correct horse", None)
            .await
            .unwrap();
        assert!(pair.access.token.starts_with("access:"));
        assert!(!pair.refresh_token.is_empty());
    }

    #[tokio::test]
    async fn unknown_email_costs_one_verification_like_a_wrong_password() {
        let f = Fakes::new();
        let auth = f.auth();
        f.verified_patient("ann@example.com", "correct horse").await;
        let before = f.hasher.verifications();
        let unknown = auth
            .login("bob@example.com", "whatever12", None)
            .await
            .unwrap_err();
        assert_eq!(f.hasher.verifications(), before + 1, "dummy hash verified");
        let wrong = auth
            .login("ann@example.com", "whatever12", None)
            .await
            .unwrap_err();
        assert_eq!(f.hasher.verifications(), before + 2);
        let short = auth
            .login("ann@example.com", "short", None)
            .await
            .unwrap_err();
        assert_eq!(
            f.hasher.verifications(),
            before + 3,
            "short passwords verify too"
        );
        for e in [unknown, wrong, short] {
            assert!(matches!(e, ServiceError::InvalidCredentials), "{e:?}");
        }
    }

    #[tokio::test]
    async fn unknown_email_verifies_against_the_dummy_hash() {
        let f = Fakes::new();
        let auth = f.auth();
        let _ = auth.login("nobody@example.com", "whatever12", None).await;
        assert_eq!(
            f.hasher.last_verified_hash().as_deref(),
            Some(crate::service::fakes::DUMMY_HASH)
        );
    }

    #[tokio::test]
    async fn repeated_failures_lock_the_account_temporarily() {
        let f = Fakes::new();
        let auth = f.auth();
        f.verified_patient("ann@example.com", "correct horse").await;
        for _ in 0..3 {
            let e = auth
                .login("ann@example.com", "wrong password", None)
                .await
                .unwrap_err();
            assert!(matches!(e, ServiceError::InvalidCredentials));
        }
        let e = auth
            .login("ann@example.com", "correct horse", None)
            .await
            .unwrap_err();
        let ServiceError::TooManyRequests { retry_after } = e else {
            panic!("expected lockout, got {e:?}")
        };
        assert!(retry_after <= Duration::from_secs(60) && retry_after > Duration::ZERO);
        f.clock.advance(chrono::Duration::seconds(61));
        auth.login("ann@example.com", "correct horse", None)
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn a_strangers_failures_never_lock_the_owner_out() {
        let f = Fakes::new();
        let auth = f.auth();
        f.verified_patient("ann@example.com", "correct horse").await;
        let home: IpAddr = "2001:db8:1:2::10".parse().unwrap();
        auth.login("ann@example.com", "correct horse", Some(home))
            .await
            .unwrap();
        // One stranger, rotating through the addresses of its own /64: one client,
        // stopped after the per-account-and-client limit.
        for i in 0..3 {
            let ip: IpAddr = format!("2001:db8:bad:1::{i}").parse().unwrap();
            let e = auth
                .login("ann@example.com", "guess", Some(ip))
                .await
                .unwrap_err();
            assert!(matches!(e, ServiceError::InvalidCredentials), "{e:?}");
        }
        let rotated: IpAddr = "2001:db8:bad:1::99".parse().unwrap();
        let e = auth
            .login("ann@example.com", "correct horse", Some(rotated))
            .await
            .unwrap_err();
        assert!(matches!(e, ServiceError::TooManyRequests { .. }), "{e:?}");
        // Strangers spread over many networks reach the account's own limit...
        for i in 0..3 {
            let ip: IpAddr = format!("198.51.100.{i}").parse().unwrap();
            let _ = auth.login("ann@example.com", "guess", Some(ip)).await;
        }
        let fresh: IpAddr = "203.0.113.200".parse().unwrap();
        let e = auth
            .login("ann@example.com", "correct horse", Some(fresh))
            .await
            .unwrap_err();
        assert!(matches!(e, ServiceError::TooManyRequests { .. }), "{e:?}");
        // ...which never shuts out the network the owner logged in from before (its
        // other addresses in the same /64 included).
        let home_again: IpAddr = "2001:db8:1:2::77".parse().unwrap();
        auth.login("ann@example.com", "correct horse", Some(home_again))
            .await
            .unwrap();
        // Nor does the owner's own typo there lock anything for long.
        let e = auth
            .login("ann@example.com", "typo", Some(home))
            .await
            .unwrap_err();
        assert!(matches!(e, ServiceError::InvalidCredentials), "{e:?}");
        auth.login("ann@example.com", "correct horse", Some(home))
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn failures_from_one_client_lock_that_client() {
        let f = Fakes::new();
        let auth = f.auth();
        let ip: IpAddr = "10.1.2.3".parse().unwrap();
        for i in 0..5 {
            let _ = auth
                .login(&format!("u{i}@example.com"), "wrong password", Some(ip))
                .await;
        }
        let e = auth
            .login("other@example.com", "wrong password", Some(ip))
            .await
            .unwrap_err();
        assert!(matches!(e, ServiceError::TooManyRequests { .. }), "{e:?}");
        let other_ip: IpAddr = "10.9.9.9".parse().unwrap();
        let e = auth
            .login("other@example.com", "wrong password", Some(other_ip))
            .await
            .unwrap_err();
        assert!(matches!(e, ServiceError::InvalidCredentials), "{e:?}");
    }

    #[tokio::test]
    async fn refresh_rotates_and_reuse_revokes_the_family() {
        let f = Fakes::new();
        let auth = f.auth();
        f.verified_patient("ann@example.com", "correct horse").await;
        let first = auth
            .login("ann@example.com", "correct horse", None)
            .await
            .unwrap();
        let second = auth.refresh(&first.refresh_token).await.unwrap();
        assert_ne!(second.refresh_token, first.refresh_token);
        let reuse = auth.refresh(&first.refresh_token).await.unwrap_err();
        assert!(matches!(reuse, ServiceError::Unauthorized(_)));
        let after = auth.refresh(&second.refresh_token).await.unwrap_err();
        assert!(
            matches!(after, ServiceError::Unauthorized(_)),
            "family revoked"
        );
    }

    #[tokio::test]
    async fn logout_revokes() {
        let f = Fakes::new();
        let auth = f.auth();
        f.verified_patient("ann@example.com", "correct horse").await;
        let pair = auth
            .login("ann@example.com", "correct horse", None)
            .await
            .unwrap();
        auth.logout(&pair.refresh_token, None).await.unwrap();
        assert!(auth.refresh(&pair.refresh_token).await.is_err());
        auth.logout("never-issued", None).await.unwrap();
    }

    #[tokio::test]
    async fn busy_hasher_is_overloaded_not_internal() {
        let f = Fakes::new();
        let auth = f.auth();
        f.hasher.set_busy(true);
        let e = auth
            .login("ann@example.com", "whatever12", None)
            .await
            .unwrap_err();
        assert!(matches!(e, ServiceError::Overloaded { .. }), "{e:?}");
    }

    #[tokio::test]
    async fn overlong_password_is_a_validation_error() {
        let f = Fakes::new();
        let auth = f.auth();
        let e = auth
            .login("ann@example.com", &"a".repeat(73), None)
            .await
            .unwrap_err();
        let ServiceError::Validation(v) = e else {
            panic!("{e:?}")
        };
        assert_eq!(v.0[0].field, "password");
    }
}
