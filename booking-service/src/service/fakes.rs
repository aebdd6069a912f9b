//! In-memory fakes of the ports, for unit tests of the use cases. The real
//! implementations are tested against PostgreSQL in `tests/api`.
// Test doubles: they index and cast freely, a panic there fails the test.
#![allow(
    clippy::indexing_slicing,
    clippy::cast_possible_truncation,
    clippy::cast_possible_wrap,
    clippy::cast_sign_loss
)]

use super::account_ports::{AccountStore, LiveToken, NewAccountToken, TokenPurpose, Verification};
use super::accounts::{AccountConfig, AccountService};
use super::auth::{AuthService, LoginLimits};
use super::patients::PatientService;
use super::ports::*;
use crate::domain::{NewUser, Password, Role, User, UserId};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use medbook_shared::events::{AccountEvent, EventEnvelope};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use uuid::Uuid;

pub const DUMMY_HASH: &str = "hash:dummy-never-matches";

pub struct Fakes {
    pub users: Arc<FakeUsers>,
    pub tokens: Arc<FakeTokens>,
    pub throttle: Arc<FakeThrottle>,
    pub hasher: Arc<FakeHasher>,
    pub issuer: Arc<FakeIssuer>,
    pub clock: Arc<FakeClock>,
    pub accounts: Arc<FakeAccounts>,
    pub revoked: Arc<FakeRevokedTokens>,
    pub audit: Arc<FakeAuditLog>,
}

/// A cache that never forgets or expires (the unit tests need no more).
#[derive(Default)]
pub struct FakeCache(Mutex<std::collections::HashMap<String, Vec<u8>>>);

#[async_trait]
impl super::cache_ports::Cache for FakeCache {
    async fn get(&self, key: &str) -> Option<Vec<u8>> {
        self.0.lock().unwrap().get(key).cloned()
    }
    async fn set(&self, key: &str, value: Vec<u8>) {
        self.0.lock().unwrap().insert(key.to_owned(), value);
    }
    async fn invalidate(&self, key: &str) {
        self.0.lock().unwrap().remove(key);
    }
}

/// Revoked token ids and per-user cut-offs, kept forever (the TTLs are the real
/// stores' business, held by their own tests).
#[derive(Default)]
pub struct FakeRevokedTokens {
    ids: Mutex<std::collections::HashSet<uuid::Uuid>>,
    users: Mutex<std::collections::HashMap<uuid::Uuid, DateTime<Utc>>>,
}

#[async_trait]
impl super::cache_ports::RevokedTokens for FakeRevokedTokens {
    async fn revoke(
        &self,
        token_id: uuid::Uuid,
        _ttl: Duration,
    ) -> Result<(), super::cache_ports::CacheError> {
        self.ids.lock().unwrap().insert(token_id);
        Ok(())
    }
    async fn revoke_user_before(
        &self,
        user_id: uuid::Uuid,
        before: DateTime<Utc>,
        _ttl: Duration,
    ) -> Result<(), super::cache_ports::CacheError> {
        self.users.lock().unwrap().insert(user_id, before);
        Ok(())
    }
    async fn is_revoked(
        &self,
        token_id: uuid::Uuid,
        user_id: uuid::Uuid,
        issued_at: DateTime<Utc>,
    ) -> Result<bool, super::cache_ports::CacheError> {
        // To the millisecond, as the real stores compare.
        let cut = self.users.lock().unwrap().get(&user_id).copied();
        Ok(self.ids.lock().unwrap().contains(&token_id)
            || cut.is_some_and(|c| issued_at.timestamp_millis() < c.timestamp_millis()))
    }
}

/// Keeps what it is told, for the unit tests to read.
#[derive(Default)]
pub struct FakeAuditLog(pub Mutex<Vec<crate::domain::audit::AuditEntry>>);

#[async_trait]
impl crate::service::ports::AuditLog for FakeAuditLog {
    async fn record(&self, entry: crate::domain::audit::AuditEntry) -> Result<(), RepoError> {
        self.0.lock().unwrap().push(entry);
        Ok(())
    }
}

impl Fakes {
    pub fn new() -> Self {
        let users: Arc<FakeUsers> = Arc::default();
        let tokens: Arc<FakeTokens> = Arc::default();
        let clock = Arc::new(FakeClock(Mutex::new(Utc::now())));
        Self {
            accounts: Arc::new(FakeAccounts {
                users: users.clone(),
                tokens: tokens.clone(),
                links: Mutex::default(),
                mails: Mutex::default(),
            }),
            users,
            tokens,
            throttle: Arc::default(),
            hasher: Arc::default(),
            issuer: Arc::new(FakeIssuer),
            clock,
            revoked: Arc::default(),
            audit: Arc::default(),
        }
    }

    pub fn accounts(&self) -> AccountService {
        let policy = |max_failures| ThrottlePolicy {
            max_failures,
            window: Duration::from_secs(3600),
            lockout: Duration::from_secs(3600),
        };
        AccountService::new(
            self.users.clone(),
            self.accounts.clone(),
            self.throttle.clone(),
            self.hasher.clone(),
            self.issuer.clone(),
            self.clock.clone(),
            self.cache(),
            self.revoked.clone(),
            AccountConfig {
                verify_url: "http://medbook.test/verify".into(),
                reset_url: "http://medbook.test/reset".into(),
                verification_ttl: Duration::from_secs(86_400),
                reset_ttl: Duration::from_secs(1_800),
                response_floor: Duration::from_millis(250),
                per_address: policy(3),
                per_client: policy(20),
            },
        )
    }

    fn cache(&self) -> Arc<dyn super::cache_ports::Cache> {
        Arc::new(FakeCache::default())
    }

    /// The stored user with this address.
    pub fn user(&self, email: &str) -> User {
        self.users
            .0
            .lock()
            .unwrap()
            .iter()
            .find(|u| u.email == email)
            .cloned()
            .unwrap()
    }

    /// A patient whose address is verified.
    pub async fn verified_patient(&self, email: &str, password: &str) -> User {
        self.users
            .insert(NewUser {
                id: UserId(Uuid::new_v4()),
                email: crate::domain::Email::parse(email).unwrap(),
                password_hash: Some(format!("hash:{password}")),
                role: Role::Patient,
                full_name: crate::domain::FullName::parse("Ann Lee").unwrap(),
                birth_date: None,
                gender: None,
                phone: None,
                email_verified_at: Some(Utc::now()),
            })
            .await
            .unwrap()
    }

    pub fn auth(&self) -> AuthService {
        AuthService::new(
            self.users.clone(),
            self.tokens.clone(),
            self.throttle.clone(),
            self.hasher.clone(),
            self.issuer.clone(),
            self.clock.clone(),
            DUMMY_HASH.into(),
            LoginLimits {
                per_account_and_client: ThrottlePolicy {
                    max_failures: 3,
                    window: Duration::from_secs(300),
                    lockout: Duration::from_secs(60),
                },
                per_account: ThrottlePolicy {
                    max_failures: 6,
                    window: Duration::from_secs(300),
                    lockout: Duration::from_secs(60),
                },
                per_client: ThrottlePolicy {
                    max_failures: 5,
                    window: Duration::from_secs(300),
                    lockout: Duration::from_secs(60),
                },
                known_client_for: Duration::from_secs(30 * 86_400),
                session_max: Duration::from_secs(90 * 86_400),
            },
            self.revoked.clone(),
            self.audit.clone(),
        )
    }

    pub fn patients(&self) -> PatientService {
        PatientService::new(
            self.users.clone(),
            self.tokens.clone(),
            self.hasher.clone(),
            self.clock.clone(),
            self.cache(),
            Arc::new(self.accounts()),
            self.throttle.clone(),
            ThrottlePolicy {
                max_failures: 3,
                window: Duration::from_secs(300),
                lockout: Duration::from_secs(60),
            },
        )
    }
}

pub struct FakeClock(Mutex<DateTime<Utc>>);

impl FakeClock {
    pub fn advance(&self, by: chrono::Duration) {
        let mut now = self.0.lock().unwrap();
        *now += by;
    }
}

impl Clock for FakeClock {
    fn now(&self) -> DateTime<Utc> {
        *self.0.lock().unwrap()
    }
}

/// Users, and which doctor records exist and the account each is linked to.
#[derive(Default)]
pub struct FakeUsers(
    Mutex<Vec<User>>,
    pub Mutex<std::collections::HashMap<crate::domain::DoctorId, Option<UserId>>>,
);

#[derive(Debug, Clone)]
struct FakeLink {
    token: NewAccountToken,
    used: bool,
}

/// Link tokens and queued account e-mails in memory, over the fake users and tokens.
pub struct FakeAccounts {
    users: Arc<FakeUsers>,
    tokens: Arc<FakeTokens>,
    links: Mutex<Vec<FakeLink>>,
    mails: Mutex<Vec<AccountEvent>>,
}

impl FakeAccounts {
    /// The account e-mails queued so far, oldest first.
    pub fn mails(&self) -> Vec<AccountEvent> {
        self.mails.lock().unwrap().clone()
    }

    fn queue(&self, mail: EventEnvelope) {
        if let medbook_shared::events::Event::Account(a) = mail.event {
            self.mails.lock().unwrap().push(a);
        }
    }

    fn store(&self, token: NewAccountToken) {
        let mut links = self.links.lock().unwrap();
        for l in links
            .iter_mut()
            .filter(|l| l.token.user_id == token.user_id && l.token.purpose == token.purpose)
        {
            l.used = true;
        }
        links.push(FakeLink { token, used: false });
    }

    /// Uses up a live token.
    fn consume(
        &self,
        purpose: TokenPurpose,
        hash: &str,
        now: DateTime<Utc>,
    ) -> Option<NewAccountToken> {
        let mut links = self.links.lock().unwrap();
        let link = links.iter_mut().find(|l| {
            l.token.token_hash == hash
                && l.token.purpose == purpose
                && !l.used
                && l.token.expires_at > now
        })?;
        link.used = true;
        Some(link.token.clone())
    }
}

#[async_trait]
impl AccountStore for FakeAccounts {
    async fn create_with_token(
        &self,
        user: NewUser,
        token: NewAccountToken,
        mail: EventEnvelope,
    ) -> Result<User, RepoError> {
        let user = self.users.insert(user).await?;
        self.store(token);
        self.queue(mail);
        Ok(user)
    }
    async fn issue(
        &self,
        token: NewAccountToken,
        mail: EventEnvelope,
        pending_email: Option<String>,
    ) -> Result<(), RepoError> {
        if let Some(pending) = pending_email {
            let changes = UserChanges {
                pending_email: Some(Some(crate::domain::Email::parse(&pending).unwrap())),
                ..Default::default()
            };
            self.users.update(token.user_id, changes).await?;
        }
        self.store(token);
        self.queue(mail);
        Ok(())
    }
    async fn notify(&self, mail: EventEnvelope) -> Result<(), RepoError> {
        self.queue(mail);
        Ok(())
    }
    async fn live_token(
        &self,
        purpose: TokenPurpose,
        token_hash: String,
        now: DateTime<Utc>,
    ) -> Result<Option<LiveToken>, RepoError> {
        Ok(self
            .links
            .lock()
            .unwrap()
            .iter()
            .find(|l| {
                l.token.token_hash == token_hash
                    && l.token.purpose == purpose
                    && !l.used
                    && l.token.expires_at > now
            })
            .map(|l| LiveToken {
                user_id: l.token.user_id,
                email: l.token.email.clone(),
            }))
    }
    async fn verify_email(
        &self,
        token_hash: String,
        now: DateTime<Utc>,
    ) -> Result<Verification, RepoError> {
        let Some(token) = self.consume(TokenPurpose::VerifyEmail, &token_hash, now) else {
            return Ok(Verification::Invalid);
        };
        let user = self.users.find_by_id(token.user_id).await?.unwrap();
        if user.link_target(&token.email) == crate::domain::LinkTarget::Elsewhere {
            return Ok(Verification::Invalid);
        }
        if user.email == token.email {
            let changes = UserChanges {
                email_verified_at: Some(Some(user.email_verified_at.unwrap_or(now))),
                ..Default::default()
            };
            let user = self.users.update(user.id, changes).await?.unwrap();
            return Ok(Verification::Verified(user));
        }
        let email = crate::domain::Email::parse(&token.email).unwrap();
        if self.users.find_by_email(&email).await?.is_some() {
            return Ok(Verification::AddressTaken);
        }
        let changes = UserChanges {
            email: Some(email),
            email_verified_at: Some(Some(now)),
            pending_email: Some(None),
            ..Default::default()
        };
        let changed = self.users.update(user.id, changes).await?.unwrap();
        self.queue(EventEnvelope::new(
            now,
            AccountEvent::EmailChanged(medbook_shared::events::EmailChange {
                account: medbook_shared::events::AccountInfo {
                    id: user.id.0,
                    email: user.email.clone(),
                    full_name: user.full_name.clone(),
                },
                new_email: token.email,
            }),
        ));
        Ok(Verification::Changed {
            user: changed,
            old_email: user.email,
        })
    }
    async fn reset_password(
        &self,
        token_hash: String,
        password_hash: String,
        now: DateTime<Utc>,
    ) -> Result<Option<User>, RepoError> {
        let Some(token) = self.consume(TokenPurpose::ResetPassword, &token_hash, now) else {
            return Ok(None);
        };
        let user = self.users.find_by_id(token.user_id).await?.unwrap();
        if user.link_target(&token.email) != crate::domain::LinkTarget::Current {
            return Ok(None);
        }
        let verified = user
            .email_verified_at
            .or((user.email == token.email).then_some(now));
        let changes = UserChanges {
            password_hash: Some(password_hash),
            email_verified_at: Some(verified),
            ..Default::default()
        };
        let user = self.users.update(user.id, changes).await?.unwrap();
        self.tokens.revoke_all_for_user(user.id, now).await?;
        Ok(Some(user))
    }
}

impl FakeUsers {
    pub fn count(&self) -> usize {
        self.0.lock().unwrap().len()
    }
}

fn to_user(n: NewUser) -> User {
    let now = Utc::now();
    User {
        id: n.id,
        email: n.email.as_str().to_owned(),
        password_hash: n.password_hash,
        role: n.role,
        full_name: n.full_name.as_str().to_owned(),
        birth_date: n.birth_date.map(|d| d.get()),
        gender: n.gender,
        phone: n.phone.map(|p| p.as_str().to_owned()),
        created_at: now,
        updated_at: now,
        email_verified_at: n.email_verified_at,
        pending_email: None,
    }
}

#[async_trait]
impl UserRepository for FakeUsers {
    async fn insert_doctor_account(
        &self,
        user: NewUser,
        doctor: crate::domain::DoctorId,
    ) -> Result<Result<User, DoctorAccountRefusal>, RepoError> {
        let mut doctors = self.1.lock().unwrap();
        match doctors.get(&doctor) {
            None => return Ok(Err(DoctorAccountRefusal::NoSuchDoctor)),
            Some(Some(_)) => return Ok(Err(DoctorAccountRefusal::AlreadyLinked)),
            Some(None) => {}
        }
        let mut all = self.0.lock().unwrap();
        if all.iter().any(|u| u.email == user.email.as_str()) {
            return Err(RepoError::UniqueViolation("users_email_key".into()));
        }
        let user = to_user(user);
        all.push(user.clone());
        doctors.insert(doctor, Some(user.id));
        Ok(Ok(user))
    }
    async fn insert(&self, user: NewUser) -> Result<User, RepoError> {
        let mut all = self.0.lock().unwrap();
        if all.iter().any(|u| u.email == user.email.as_str()) {
            return Err(RepoError::UniqueViolation("users_email_key".into()));
        }
        let u = to_user(user);
        all.push(u.clone());
        Ok(u)
    }
    async fn insert_all(&self, users: Vec<NewUser>) -> Result<Vec<User>, RepoError> {
        let mut all = self.0.lock().unwrap();
        let new: Vec<User> = users.into_iter().map(to_user).collect();
        // All or nothing, like one transaction under the unique index.
        for (i, u) in new.iter().enumerate() {
            let taken = all.iter().chain(&new[..i]).any(|o| o.email == u.email);
            if taken {
                return Err(RepoError::UniqueViolation("users_email_key".into()));
            }
        }
        all.extend(new.iter().cloned());
        Ok(new)
    }
    async fn find_by_id(&self, id: UserId) -> Result<Option<User>, RepoError> {
        Ok(self.0.lock().unwrap().iter().find(|u| u.id == id).cloned())
    }
    async fn find_by_email(&self, email: &crate::domain::Email) -> Result<Option<User>, RepoError> {
        Ok(self
            .0
            .lock()
            .unwrap()
            .iter()
            .find(|u| u.email == email.as_str())
            .cloned())
    }
    async fn existing_emails(&self, emails: Vec<String>) -> Result<Vec<String>, RepoError> {
        let all = self.0.lock().unwrap();
        Ok(emails
            .into_iter()
            .filter(|e| all.iter().any(|u| &u.email == e))
            .collect())
    }
    async fn update(&self, id: UserId, c: UserChanges) -> Result<Option<User>, RepoError> {
        let mut all = self.0.lock().unwrap();
        let Some(u) = all.iter_mut().find(|u| u.id == id) else {
            return Ok(None);
        };
        if let Some(v) = c.email {
            u.email = v.as_str().to_owned();
        }
        if let Some(v) = c.password_hash {
            u.password_hash = Some(v);
        }
        if let Some(v) = c.full_name {
            u.full_name = v.as_str().to_owned();
        }
        if let Some(v) = c.birth_date {
            u.birth_date = v.map(|d| d.get());
        }
        if let Some(v) = c.gender {
            u.gender = v;
        }
        if let Some(v) = c.phone {
            u.phone = v.map(|p| p.as_str().to_owned());
        }
        if let Some(v) = c.email_verified_at {
            u.email_verified_at = v;
        }
        if let Some(v) = c.pending_email {
            u.pending_email = v.map(|e| e.as_str().to_owned());
        }
        Ok(Some(u.clone()))
    }
    async fn delete(&self, id: UserId, role: Role) -> Result<bool, RepoError> {
        let mut all = self.0.lock().unwrap();
        let before = all.len();
        all.retain(|u| !(u.id == id && u.role == role));
        Ok(all.len() < before)
    }
    async fn list(
        &self,
        role: Role,
        search: Option<String>,
        page: PageRequest,
    ) -> Result<Page<User>, RepoError> {
        let all = self.0.lock().unwrap();
        let matching: Vec<User> = all
            .iter()
            .filter(|u| u.role == role)
            .filter(|u| {
                // Case-insensitive, like the repository's ILIKE.
                search.as_ref().is_none_or(|s| {
                    let s = s.to_lowercase();
                    u.full_name.to_lowercase().contains(&s) || u.email.contains(&s)
                })
            })
            .cloned()
            .collect();
        Ok(Page {
            total: matching.len() as i64,
            items: matching
                .into_iter()
                .skip(page.offset() as usize)
                .take(page.per_page as usize)
                .collect(),
            page: page.page,
            per_page: page.per_page,
        })
    }
    async fn all_with_role(&self, role: Role) -> Result<Vec<User>, RepoError> {
        Ok(self
            .0
            .lock()
            .unwrap()
            .iter()
            .filter(|u| u.role == role)
            .cloned()
            .collect())
    }
}

#[derive(Debug, Clone)]
struct StoredToken {
    user_id: UserId,
    family_id: Uuid,
    hash: String,
    expires_at: DateTime<Utc>,
    session_expires_at: DateTime<Utc>,
    rotated: bool,
    revoked: bool,
}

#[derive(Default)]
pub struct FakeTokens {
    tokens: Mutex<Vec<StoredToken>>,
    revoked_users: Mutex<Vec<UserId>>,
}

impl FakeTokens {
    pub fn revoked_users(&self) -> Vec<UserId> {
        self.revoked_users.lock().unwrap().clone()
    }
}

#[async_trait]
impl RefreshTokenRepository for FakeTokens {
    async fn insert(&self, t: NewRefreshToken) -> Result<(), RepoError> {
        self.tokens.lock().unwrap().push(StoredToken {
            user_id: t.user_id,
            family_id: t.family_id,
            hash: t.token_hash,
            expires_at: t.expires_at.min(t.session_expires_at),
            session_expires_at: t.session_expires_at,
            rotated: false,
            revoked: false,
        });
        Ok(())
    }
    async fn rotate(
        &self,
        presented: String,
        r: Replacement,
        now: DateTime<Utc>,
    ) -> Result<RotateOutcome, RepoError> {
        let mut all = self.tokens.lock().unwrap();
        let Some(t) = all.iter_mut().find(|t| t.hash == presented) else {
            return Ok(RotateOutcome::Rejected);
        };
        if t.revoked {
            return Ok(RotateOutcome::Rejected);
        }
        let (family, user, session_end) = (t.family_id, t.user_id, t.session_expires_at);
        if t.rotated {
            all.iter_mut()
                .filter(|t| t.family_id == family)
                .for_each(|t| t.revoked = true);
            return Ok(RotateOutcome::ReuseDetected);
        }
        if t.expires_at <= now || session_end <= now {
            return Ok(RotateOutcome::Rejected);
        }
        t.rotated = true;
        all.push(StoredToken {
            user_id: user,
            family_id: family,
            hash: r.token_hash,
            expires_at: r.expires_at.min(session_end),
            session_expires_at: session_end,
            rotated: false,
            revoked: false,
        });
        Ok(RotateOutcome::Rotated { user_id: user })
    }
    async fn revoke_family_of(&self, hash: String, _now: DateTime<Utc>) -> Result<bool, RepoError> {
        let mut all = self.tokens.lock().unwrap();
        let Some(family) = all.iter().find(|t| t.hash == hash).map(|t| t.family_id) else {
            return Ok(false);
        };
        all.iter_mut()
            .filter(|t| t.family_id == family)
            .for_each(|t| t.revoked = true);
        Ok(true)
    }
    async fn revoke_all_for_user(
        &self,
        user_id: UserId,
        _now: DateTime<Utc>,
    ) -> Result<u64, RepoError> {
        self.revoked_users.lock().unwrap().push(user_id);
        let mut all = self.tokens.lock().unwrap();
        let mut n = 0;
        for t in all
            .iter_mut()
            .filter(|t| t.user_id == user_id && !t.revoked)
        {
            t.revoked = true;
            n += 1;
        }
        Ok(n)
    }
}

/// (failures, window start, locked until) per key.
type ThrottleEntry = (u32, DateTime<Utc>, Option<DateTime<Utc>>);

/// Same semantics as the PostgreSQL throttle: a window of counted failures, then a
/// lockout; and the last success of each remembered key.
#[derive(Default)]
pub struct FakeThrottle(
    Mutex<HashMap<String, ThrottleEntry>>,
    Mutex<HashMap<String, DateTime<Utc>>>,
);

#[async_trait]
impl LoginThrottle for FakeThrottle {
    async fn locked_for(
        &self,
        key: String,
        now: DateTime<Utc>,
    ) -> Result<Option<Duration>, RepoError> {
        Ok(self
            .0
            .lock()
            .unwrap()
            .get(&key)
            .and_then(|(_, _, until)| *until)
            .filter(|until| *until > now)
            .and_then(|until| (until - now).to_std().ok()))
    }
    async fn record_failure(
        &self,
        key: String,
        policy: ThrottlePolicy,
        now: DateTime<Utc>,
    ) -> Result<(), RepoError> {
        let mut map = self.0.lock().unwrap();
        let window = chrono::Duration::from_std(policy.window).unwrap();
        let entry = map.entry(key).or_insert((0, now, None));
        if entry.1 + window <= now || entry.2.is_some_and(|u| u <= now) {
            *entry = (0, now, None);
        }
        entry.0 += 1;
        if entry.0 >= policy.max_failures {
            entry.2 = Some(now + chrono::Duration::from_std(policy.lockout).unwrap());
        }
        Ok(())
    }
    async fn clear(&self, key: String) -> Result<(), RepoError> {
        self.0.lock().unwrap().remove(&key);
        Ok(())
    }
    async fn remember_success(&self, key: String, now: DateTime<Utc>) -> Result<(), RepoError> {
        self.1.lock().unwrap().insert(key, now);
        Ok(())
    }
    async fn succeeded_since(&self, key: String, since: DateTime<Utc>) -> Result<bool, RepoError> {
        Ok(self
            .1
            .lock()
            .unwrap()
            .get(&key)
            .is_some_and(|t| *t >= since))
    }
}

/// "Hashes" as `hash:<password>`; counts verifications and can simulate saturation.
#[derive(Default)]
pub struct FakeHasher {
    hashes: AtomicUsize,
    verifications: AtomicUsize,
    last_hash: Mutex<Option<String>>,
    busy: AtomicBool,
}

impl FakeHasher {
    pub fn verifications(&self) -> usize {
        self.verifications.load(Ordering::SeqCst)
    }
    pub fn hashes(&self) -> usize {
        self.hashes.load(Ordering::SeqCst)
    }
    pub fn last_verified_hash(&self) -> Option<String> {
        self.last_hash.lock().unwrap().clone()
    }
    pub fn set_busy(&self, busy: bool) {
        self.busy.store(busy, Ordering::SeqCst);
    }
}

#[async_trait]
impl PasswordHasher for FakeHasher {
    async fn hash(&self, password: Password) -> Result<String, HashError> {
        if self.busy.load(Ordering::SeqCst) {
            return Err(HashError::Busy);
        }
        self.hashes.fetch_add(1, Ordering::SeqCst);
        Ok(format!("hash:{}", password.expose()))
    }
    async fn verify(&self, password: Password, hash: String) -> Result<bool, HashError> {
        if self.busy.load(Ordering::SeqCst) {
            return Err(HashError::Busy);
        }
        self.verifications.fetch_add(1, Ordering::SeqCst);
        let ok = hash == format!("hash:{}", password.expose());
        *self.last_hash.lock().unwrap() = Some(hash);
        Ok(ok)
    }
}

pub struct FakeIssuer;

impl TokenIssuer for FakeIssuer {
    fn issue_access(
        &self,
        user_id: UserId,
        role: Role,
        _now: DateTime<Utc>,
    ) -> anyhow::Result<IssuedAccessToken> {
        Ok(IssuedAccessToken {
            token: format!("access:{user_id}:{}", role.as_str()),
            expires_in: Duration::from_secs(900),
        })
    }
    fn verify_access(
        &self,
        _token: &str,
    ) -> Result<AccessClaims, crate::domain::rejection::AuthFailure> {
        Err(crate::domain::rejection::AuthFailure::Invalid)
    }
    fn new_refresh_token(&self) -> (String, String) {
        let secret = Uuid::new_v4().to_string();
        let hash = self.hash_refresh_token(&secret);
        (secret, hash)
    }
    fn hash_refresh_token(&self, secret: &str) -> String {
        format!("h:{secret}")
    }
    fn refresh_ttl(&self) -> Duration {
        Duration::from_secs(3600)
    }
    fn access_ttl(&self) -> Duration {
        Duration::from_secs(900)
    }
}
