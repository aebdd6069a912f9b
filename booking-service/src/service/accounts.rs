//! Accounts people can trust: registration with a verified e-mail address, address
//! changes that take effect only once the new address is verified, and password reset.
//!
//! * **Links.** Every link carries a random 256-bit secret; only its SHA-256 is stored.
//!   A link is single-use, expires (`accounts.verification_ttl_secs`,
//!   `accounts.reset_ttl_secs`), and a newer link of the same purpose supersedes the
//!   older ones. The e-mails go out through the outbox, in the same transaction as the
//!   token they carry.
//! * **No enumeration.** Registration answers the same whether or not the address has an
//!   account (its owner is told instead, with a reset link); a reset request answers the
//!   same whether or not it exists. Both hash a password or not alike, count the same
//!   rate limits, and are padded to `accounts.response_floor_ms`, so neither their
//!   answer nor their timing tells an attacker which addresses are registered.
//! * **Rate limits.** Requests per client address (registration, reset) and e-mails
//!   per address and per account are limited with the failed-login throttle's counters
//!   (`LoginThrottle`, shared by every replica). A limit that only an existing account
//!   could hit (the notice to an owner) is applied silently, never as a 429.

use super::account_ports::{AccountStore, NewAccountToken, TokenPurpose, Verification};
use super::auth::Registration;
use super::cache_ports::{patient_cache_key, Cache, RevokedTokens};
use super::ports::{
    Clock, LoginThrottle, PasswordHasher, RepoError, ThrottlePolicy, TokenIssuer, UserChanges,
    UserRepository,
};
use super::ServiceError;
use crate::domain::rejection::Rejection;
use crate::domain::{password_policy, ClientNetwork, Email, NewUser, Password, Role, User, UserId};
use crate::domain::{FieldError, ValidationErrors};
use chrono::{DateTime, Utc};
use medbook_shared::events::{AccountEvent, AccountInfo, AccountLink, EventEnvelope};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;
use uuid::Uuid;

/// Links, lifetimes and limits of the account flows.
#[derive(Debug, Clone)]
pub struct AccountConfig {
    /// Page the verification link opens (`?token=…` is appended).
    pub verify_url: String,
    /// Page the reset link opens.
    pub reset_url: String,
    pub verification_ttl: Duration,
    pub reset_ttl: Duration,
    /// Registration and reset requests answer no sooner than this.
    pub response_floor: Duration,
    /// E-mails to one address or account: verification, reset, notices.
    pub per_address: ThrottlePolicy,
    /// Registration and reset requests from one client address.
    pub per_client: ThrottlePolicy,
}

/// The e-mails that carry a link.
#[derive(Debug, Clone, Copy)]
enum LinkMail {
    /// Verifies the address it goes to.
    Verify,
    /// Sets a new password.
    Reset,
    /// Tells an owner someone tried to use the address; its link resets the password.
    RegistrationAttempt,
}

pub struct AccountService {
    users: Arc<dyn UserRepository>,
    store: Arc<dyn AccountStore>,
    throttle: Arc<dyn LoginThrottle>,
    hasher: Arc<dyn PasswordHasher>,
    issuer: Arc<dyn TokenIssuer>,
    clock: Arc<dyn Clock>,
    cache: Arc<dyn Cache>,
    revoked: Arc<dyn RevokedTokens>,
    config: AccountConfig,
}

fn invalid_token() -> ServiceError {
    ValidationErrors(vec![FieldError::new(
        "token",
        "is invalid, expired or already used; ask for a new link",
    )])
    .into()
}

impl AccountService {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        users: Arc<dyn UserRepository>,
        store: Arc<dyn AccountStore>,
        throttle: Arc<dyn LoginThrottle>,
        hasher: Arc<dyn PasswordHasher>,
        issuer: Arc<dyn TokenIssuer>,
        clock: Arc<dyn Clock>,
        cache: Arc<dyn Cache>,
        revoked: Arc<dyn RevokedTokens>,
        config: AccountConfig,
    ) -> Self {
        Self {
            users,
            store,
            throttle,
            hasher,
            issuer,
            clock,
            cache,
            revoked,
            config,
        }
    }

    /// Ends every access token of `id` issued before now (refresh tokens are revoked
    /// in the database by the caller). If the revocation store is down the tokens run
    /// out on their own within `auth.access_token_ttl_secs`.
    pub async fn end_access_tokens(&self, id: UserId) {
        let ttl = self.issuer.access_ttl();
        if let Err(e) = self
            .revoked
            .revoke_user_before(id.0, self.clock.now(), ttl)
            .await
        {
            tracing::warn!(error = %e, user_id = %id, "could not revoke the access tokens; they stay valid until they expire");
        }
    }

    /// Registers a patient, or — when the address has an account — tells its owner.
    /// Either way the caller learns only that an e-mail is on its way.
    #[tracing::instrument(skip_all)]
    pub async fn register(
        &self,
        reg: Registration,
        client: Option<IpAddr>,
    ) -> Result<(), ServiceError> {
        self.padded(self.register_inner(reg, client)).await
    }

    async fn register_inner(
        &self,
        reg: Registration,
        client: Option<IpAddr>,
    ) -> Result<(), ServiceError> {
        password_policy::require(
            "password",
            &reg.password,
            reg.email.as_str(),
            reg.full_name.as_str(),
        )?;
        let now = self.clock.now();
        if let Some(ip) = client {
            self.admit(
                format!("register:client:{}", ClientNetwork::from(ip)),
                self.config.per_client,
                now,
            )
            .await?;
        }
        // Hashed whether or not the address is taken: both answers cost the same.
        let hash = self.hasher.hash(reg.password).await?;
        if let Some(owner) = self.users.find_by_email(&reg.email).await? {
            return self.tell_owner(&owner, now).await;
        }
        let user = NewUser {
            id: UserId(Uuid::new_v4()),
            email: reg.email.clone(),
            password_hash: Some(hash),
            role: Role::Patient,
            full_name: reg.full_name,
            birth_date: reg.birth_date,
            gender: reg.gender,
            phone: reg.phone,
            email_verified_at: None,
        };
        let (token, mail) = self.link_mail(
            LinkMail::Verify,
            user.id,
            user.email.as_str(),
            user.full_name.as_str(),
            now,
        );
        match self.store.create_with_token(user, token, mail).await {
            Ok(_) => Ok(()),
            // Registered concurrently: the same answer as for any taken address.
            Err(RepoError::UniqueViolation(_)) => match self.users.find_by_email(&reg.email).await?
            {
                Some(owner) => self.tell_owner(&owner, now).await,
                None => Ok(()),
            },
            Err(e) => Err(e.into()),
        }
    }

    /// Someone tried to register (or move an account) to `owner`'s address: the owner
    /// gets a notice with a reset link, at most `per_address` times per window.
    async fn tell_owner(&self, owner: &User, now: DateTime<Utc>) -> Result<(), ServiceError> {
        let key = format!("notice:user:{}", owner.id);
        if self.throttle.locked_for(key.clone(), now).await?.is_some() {
            tracing::info!("owner notice suppressed by its rate limit");
            return Ok(());
        }
        self.throttle
            .record_failure(key, self.config.per_address, now)
            .await?;
        let (token, mail) = self.link_mail(
            LinkMail::RegistrationAttempt,
            owner.id,
            &owner.email,
            &owner.full_name,
            now,
        );
        self.store.issue(token, mail, None).await?;
        Ok(())
    }

    /// Sends a new verification link: to the pending address if an address change
    /// waits, else to the account's address if it is not verified yet.
    #[tracing::instrument(skip_all, fields(user_id = %id))]
    pub async fn resend_verification(&self, id: UserId) -> Result<(), ServiceError> {
        let user = self
            .users
            .find_by_id(id)
            .await?
            .ok_or(ServiceError::NotFound("user"))?;
        let target = match (&user.pending_email, user.email_verified()) {
            (Some(pending), _) => pending.clone(),
            (None, false) => user.email.clone(),
            (None, true) => return Err(Rejection::AlreadyVerified.into()),
        };
        let now = self.clock.now();
        self.admit(format!("verify:user:{id}"), self.config.per_address, now)
            .await?;
        let (token, mail) =
            self.link_mail(LinkMail::Verify, user.id, &target, &user.full_name, now);
        self.store.issue(token, mail, None).await?;
        Ok(())
    }

    /// Starts a change of `user`'s address to `new_email`: it becomes the pending
    /// address and gets a verification link; the account keeps its current (verified)
    /// address until the link is followed. If another account has the address, its
    /// owner is told instead; the caller's answer is the same.
    #[tracing::instrument(skip_all, fields(user_id = %user.id))]
    pub async fn request_email_change(
        &self,
        user: &User,
        new_email: &Email,
    ) -> Result<User, ServiceError> {
        if new_email.as_str() == user.email {
            // Back to the current address: any pending change is dropped.
            return self.set_pending(user.id, None).await;
        }
        let now = self.clock.now();
        self.admit(
            format!("verify:user:{}", user.id),
            self.config.per_address,
            now,
        )
        .await?;
        if let Some(owner) = self.users.find_by_email(new_email).await? {
            self.tell_owner(&owner, now).await?;
            return self.set_pending(user.id, Some(new_email.clone())).await;
        }
        let (token, mail) = self.link_mail(
            LinkMail::Verify,
            user.id,
            new_email.as_str(),
            &user.full_name,
            now,
        );
        self.store
            .issue(token, mail, Some(new_email.as_str().to_owned()))
            .await?;
        self.cache.invalidate(&patient_cache_key(user.id)).await;
        self.users
            .find_by_id(user.id)
            .await?
            .ok_or(ServiceError::NotFound("user"))
    }

    async fn set_pending(&self, id: UserId, pending: Option<Email>) -> Result<User, ServiceError> {
        let changes = UserChanges {
            pending_email: Some(pending),
            ..Default::default()
        };
        let user = self
            .users
            .update(id, changes)
            .await?
            .ok_or(ServiceError::NotFound("user"))?;
        self.cache.invalidate(&patient_cache_key(id)).await;
        Ok(user)
    }

    /// Follows a verification link.
    #[tracing::instrument(skip_all)]
    pub async fn verify_email(&self, token: &str) -> Result<User, ServiceError> {
        let hash = self.issuer.hash_refresh_token(token.trim());
        match self.store.verify_email(hash, self.clock.now()).await? {
            Verification::Verified(user) => {
                self.cache.invalidate(&patient_cache_key(user.id)).await;
                Ok(user)
            }
            Verification::Changed { user, .. } => {
                self.cache.invalidate(&patient_cache_key(user.id)).await;
                tracing::info!(user_id = %user.id, "e-mail address changed after verification");
                Ok(user)
            }
            Verification::AddressTaken => Err(Rejection::AddressTaken.into()),
            Verification::Invalid => Err(invalid_token()),
        }
    }

    /// Asks for a reset link. The answer is the same whether or not `email` has an
    /// account; limits count per address string and per client.
    #[tracing::instrument(skip_all)]
    pub async fn request_password_reset(
        &self,
        email: &str,
        client: Option<IpAddr>,
    ) -> Result<(), ServiceError> {
        self.padded(self.request_reset_inner(email, client)).await
    }

    async fn request_reset_inner(
        &self,
        email: &str,
        client: Option<IpAddr>,
    ) -> Result<(), ServiceError> {
        let mut errors = ValidationErrors::new();
        let email = errors.check("email", Email::parse(email));
        let email = errors.finish(|| email)?;
        let now = self.clock.now();
        if let Some(ip) = client {
            self.admit(
                format!("reset:client:{}", ClientNetwork::from(ip)),
                self.config.per_client,
                now,
            )
            .await?;
        }
        self.admit(
            format!("reset:account:{email}"),
            self.config.per_address,
            now,
        )
        .await?;
        let Some(user) = self.users.find_by_email(&email).await? else {
            return Ok(());
        };
        let (token, mail) =
            self.link_mail(LinkMail::Reset, user.id, &user.email, &user.full_name, now);
        self.store.issue(token, mail, None).await?;
        Ok(())
    }

    /// Follows a reset link: sets the new password (same rules as at registration)
    /// and logs out every session of the account. A refused password leaves the link
    /// usable.
    #[tracing::instrument(skip_all)]
    pub async fn confirm_password_reset(
        &self,
        token: &str,
        new_password: &str,
    ) -> Result<(), ServiceError> {
        let now = self.clock.now();
        let hash = self.issuer.hash_refresh_token(token.trim());
        let live = self
            .store
            .live_token(TokenPurpose::ResetPassword, hash.clone(), now)
            .await?
            .ok_or_else(invalid_token)?;
        let user = self
            .users
            .find_by_id(live.user_id)
            .await?
            .ok_or_else(invalid_token)?;
        let mut errors = ValidationErrors::new();
        let password = errors.check(
            "new_password",
            Password::parse(new_password)
                .and_then(|p| password_policy::check(&p, &user.email, &user.full_name).map(|()| p)),
        );
        let password = errors.finish(|| password)?;
        let password_hash = self.hasher.hash(password).await?;
        let user = self
            .store
            .reset_password(hash, password_hash, now)
            .await?
            .ok_or_else(invalid_token)?;
        self.cache.invalidate(&patient_cache_key(user.id)).await;
        self.end_access_tokens(user.id).await;
        // The lockout of the old password's failures ends with it.
        self.throttle
            .clear(format!("account:{}", user.email))
            .await?;
        tracing::info!(user_id = %user.id, "password reset; every session revoked");
        Ok(())
    }

    /// Counts a request against `key`, refusing it once the limit is reached.
    async fn admit(
        &self,
        key: String,
        policy: ThrottlePolicy,
        now: DateTime<Utc>,
    ) -> Result<(), ServiceError> {
        if let Some(wait) = self.throttle.locked_for(key.clone(), now).await? {
            return Err(ServiceError::TooManyRequests { retry_after: wait });
        }
        self.throttle.record_failure(key, policy, now).await?;
        Ok(())
    }

    /// Runs `work`, answering no sooner than `accounts.response_floor_ms` after the
    /// start, whatever its outcome.
    async fn padded<T>(&self, work: impl std::future::Future<Output = T>) -> T {
        let started = tokio::time::Instant::now();
        let result = work.await;
        tokio::time::sleep_until(started + self.config.response_floor).await;
        result
    }

    /// A new token for the user `id` and the e-mail to `address` whose link carries
    /// its secret.
    fn link_mail(
        &self,
        kind: LinkMail,
        id: UserId,
        address: &str,
        full_name: &str,
        now: DateTime<Utc>,
    ) -> (NewAccountToken, EventEnvelope) {
        let (secret, token_hash) = self.issuer.new_refresh_token();
        let (purpose, base, ttl) = match kind {
            LinkMail::Verify => (
                TokenPurpose::VerifyEmail,
                &self.config.verify_url,
                self.config.verification_ttl,
            ),
            LinkMail::Reset | LinkMail::RegistrationAttempt => (
                TokenPurpose::ResetPassword,
                &self.config.reset_url,
                self.config.reset_ttl,
            ),
        };
        let expires_at =
            now + chrono::Duration::from_std(ttl).unwrap_or(chrono::Duration::hours(1));
        let separator = if base.contains('?') { '&' } else { '?' };
        let token = NewAccountToken {
            id: Uuid::new_v4(),
            user_id: id,
            purpose,
            token_hash,
            email: address.to_owned(),
            expires_at,
        };
        let link = AccountLink {
            account: AccountInfo {
                id: id.0,
                email: address.to_owned(),
                full_name: full_name.to_owned(),
            },
            link: format!("{base}{separator}token={secret}"),
            expires_at,
        };
        let event = match kind {
            LinkMail::Verify => AccountEvent::VerifyEmail(link),
            LinkMail::Reset => AccountEvent::PasswordReset(link),
            LinkMail::RegistrationAttempt => AccountEvent::RegistrationAttempted(link),
        };
        (token, EventEnvelope::new(now, event))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::FullName;
    use crate::service::fakes::Fakes;
    use medbook_shared::events::Event;

    fn registration(email: &str, password: &str) -> Registration {
        Registration {
            email: Email::parse(email).unwrap(),
            password: Password::parse(password).unwrap(),
            full_name: FullName::parse("Ann Lee").unwrap(),
            birth_date: None,
            gender: None,
            phone: None,
        }
    }

    fn token_of(link: &AccountLink) -> String {
        link.link.split("token=").nth(1).unwrap().to_owned()
    }

    #[tokio::test]
    async fn registration_sends_a_link_that_verifies_once() {
        let f = Fakes::new();
        let accounts = f.accounts();
        accounts
            .register(registration("ann@example.com", "plum-violin-42"), None)
            .await
            .unwrap();
        let user = f.user("ann@example.com");
        assert!(!user.email_verified());
        let mails = f.accounts.mails();
        let [AccountEvent::VerifyEmail(link)] = mails.as_slice() else {
            panic!("{mails:?}")
        };
        assert_eq!(link.account.email, "ann@example.com");
        assert!(link.link.starts_with("http://medbook.test/verify?token="));
        let verified = accounts.verify_email(&token_of(link)).await.unwrap();
        assert!(verified.email_verified());
        let again = accounts.verify_email(&token_of(link)).await.unwrap_err();
        assert!(matches!(again, ServiceError::Validation(_)), "{again:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn registering_a_taken_address_answers_alike_and_tells_the_owner() {
        let f = Fakes::new();
        let accounts = f.accounts();
        let started = tokio::time::Instant::now();
        accounts
            .register(registration("ann@example.com", "plum-violin-42"), None)
            .await
            .unwrap();
        let new_took = started.elapsed();
        let hashes = f.hasher.hashes();
        let started = tokio::time::Instant::now();
        accounts
            .register(registration("ANN@example.com", "other-secret-77"), None)
            .await
            .unwrap();
        assert_eq!(started.elapsed(), new_took, "both padded to the floor");
        assert_eq!(new_took, Duration::from_millis(250));
        assert_eq!(f.hasher.hashes(), hashes + 1, "a taken address hashes too");
        assert_eq!(f.users.count(), 1);
        let mails = f.accounts.mails();
        assert!(
            matches!(&mails[1], AccountEvent::RegistrationAttempted(l) if l.account.email == "ann@example.com"),
            "{mails:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn reset_requests_take_the_floor_and_send_only_to_accounts() {
        let f = Fakes::new();
        let accounts = f.accounts();
        f.verified_patient("ann@example.com", "plum-violin-42")
            .await;
        for email in ["ann@example.com", "nobody@example.com"] {
            let started = tokio::time::Instant::now();
            accounts.request_password_reset(email, None).await.unwrap();
            assert_eq!(started.elapsed(), Duration::from_millis(250), "{email}");
        }
        let mails = f.accounts.mails();
        assert_eq!(mails.len(), 1, "{mails:?}");
        assert!(matches!(&mails[0], AccountEvent::PasswordReset(_)));
    }

    #[tokio::test]
    async fn reset_sets_the_password_revokes_sessions_and_is_single_use() {
        let f = Fakes::new();
        let accounts = f.accounts();
        let auth = f.auth();
        let user = f
            .verified_patient("ann@example.com", "plum-violin-42")
            .await;
        let pair = auth
            .login("ann@example.com", "plum-violin-42", None)
            .await
            .unwrap();
        accounts
            .request_password_reset("ann@example.com", None)
            .await
            .unwrap();
        let mails = f.accounts.mails();
        let [AccountEvent::PasswordReset(link)] = mails.as_slice() else {
            panic!("{mails:?}")
        };
        let token = token_of(link);
        // The policy applies, and a refused password leaves the link usable.
        for bad in ["password1", "short", "ann@example.com-x"] {
            let e = accounts
                .confirm_password_reset(&token, bad)
                .await
                .unwrap_err();
            let ServiceError::Validation(v) = e else {
                panic!("{e:?}")
            };
            assert_eq!(v.0[0].field, "new_password");
        }
        accounts
            .confirm_password_reset(&token, "new-violin-43")
            .await
            .unwrap();
        assert!(f.tokens.revoked_users().contains(&user.id));
        assert!(auth.refresh(&pair.refresh_token).await.is_err());
        let an_hour_ago = chrono::Utc::now() - chrono::Duration::hours(1);
        assert!(
            f.revoked
                .is_revoked(Uuid::new_v4(), user.id.0, an_hour_ago)
                .await
                .unwrap(),
            "access tokens issued before the reset are revoked"
        );
        auth.login("ann@example.com", "new-violin-43", None)
            .await
            .unwrap();
        let reused = accounts
            .confirm_password_reset(&token, "third-violin-44")
            .await
            .unwrap_err();
        assert!(matches!(reused, ServiceError::Validation(_)));
    }

    #[tokio::test]
    async fn a_reset_link_proves_the_address_of_an_unverified_account() {
        let f = Fakes::new();
        let accounts = f.accounts();
        accounts
            .register(registration("ann@example.com", "plum-violin-42"), None)
            .await
            .unwrap();
        accounts
            .request_password_reset("ann@example.com", None)
            .await
            .unwrap();
        let Some(AccountEvent::PasswordReset(link)) = f.accounts.mails().pop() else {
            panic!()
        };
        accounts
            .confirm_password_reset(&token_of(&link), "new-violin-43")
            .await
            .unwrap();
        assert!(f.user("ann@example.com").email_verified());
    }

    #[tokio::test]
    async fn reset_requests_are_limited_per_address_whether_or_not_it_exists() {
        let f = Fakes::new();
        let accounts = f.accounts();
        for _ in 0..3 {
            accounts
                .request_password_reset("nobody@example.com", None)
                .await
                .unwrap();
        }
        let e = accounts
            .request_password_reset("nobody@example.com", None)
            .await
            .unwrap_err();
        assert!(matches!(e, ServiceError::TooManyRequests { .. }), "{e:?}");
        accounts
            .request_password_reset("other@example.com", None)
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn an_address_change_waits_for_the_new_address_to_be_verified() {
        let f = Fakes::new();
        let accounts = f.accounts();
        let user = f
            .verified_patient("ann@example.com", "plum-violin-42")
            .await;
        let new = Email::parse("ann.lee@example.org").unwrap();
        let pending = accounts.request_email_change(&user, &new).await.unwrap();
        assert_eq!(pending.email, "ann@example.com", "unchanged until verified");
        assert_eq!(
            pending.pending_email.as_deref(),
            Some("ann.lee@example.org")
        );
        assert!(pending.email_verified());
        let Some(AccountEvent::VerifyEmail(link)) = f.accounts.mails().pop() else {
            panic!()
        };
        assert_eq!(link.account.email, "ann.lee@example.org");
        let changed = accounts.verify_email(&token_of(&link)).await.unwrap();
        assert_eq!(changed.email, "ann.lee@example.org");
        assert_eq!(changed.pending_email, None);
        let Some(AccountEvent::EmailChanged(notice)) = f.accounts.mails().pop() else {
            panic!()
        };
        assert_eq!(notice.account.email, "ann@example.com", "old address told");
    }

    #[tokio::test]
    async fn moving_to_a_taken_address_looks_the_same_and_tells_its_owner() {
        let f = Fakes::new();
        let accounts = f.accounts();
        let user = f
            .verified_patient("ann@example.com", "plum-violin-42")
            .await;
        f.verified_patient("bob@example.com", "plum-violin-42")
            .await;
        let taken = Email::parse("bob@example.com").unwrap();
        let pending = accounts.request_email_change(&user, &taken).await.unwrap();
        assert_eq!(pending.pending_email.as_deref(), Some("bob@example.com"));
        let mails = f.accounts.mails();
        assert!(
            matches!(mails.as_slice(), [AccountEvent::RegistrationAttempted(l)] if l.account.email == "bob@example.com"),
            "{mails:?}"
        );
    }

    #[tokio::test]
    async fn resend_goes_to_the_unverified_address_and_is_limited() {
        let f = Fakes::new();
        let accounts = f.accounts();
        accounts
            .register(registration("ann@example.com", "plum-violin-42"), None)
            .await
            .unwrap();
        let user = f.user("ann@example.com");
        for _ in 0..3 {
            accounts.resend_verification(user.id).await.unwrap();
        }
        let e = accounts.resend_verification(user.id).await.unwrap_err();
        assert!(matches!(e, ServiceError::TooManyRequests { .. }), "{e:?}");
        // Only the newest link works.
        let mails = f.accounts.mails();
        let links: Vec<String> = mails
            .iter()
            .map(|m| match m {
                AccountEvent::VerifyEmail(l) => token_of(l),
                other => panic!("{other:?}"),
            })
            .collect();
        assert!(accounts.verify_email(&links[0]).await.is_err());
        accounts.verify_email(&links[3]).await.unwrap();
        let e = accounts.resend_verification(user.id).await.unwrap_err();
        assert!(
            matches!(e, ServiceError::Rejected(Rejection::AlreadyVerified)),
            "{e:?}"
        );
    }

    #[test]
    fn account_events_are_events() {
        let e: Event = AccountEvent::EmailChanged(medbook_shared::events::EmailChange {
            account: AccountInfo {
                id: Uuid::new_v4(),
                email: "a@example.com".into(),
                full_name: "A".into(),
            },
            new_email: "b@example.com".into(),
        })
        .into();
        assert!(e.appointment().is_none());
    }
}
