//! Patient profiles: a patient's own profile (`/me`) and the admin use cases
//! (list, get, create, replace, delete, import, export) shared by HTTP and the CLI.

use super::accounts::AccountService;
use super::auth::email_conflict;
use super::cache_ports::{get_or_load, patient_cache_key, Cache};
use super::ports::{
    Clock, LoginThrottle, Page, PageRequest, PasswordHasher, RefreshTokenRepository,
    ThrottlePolicy, UserChanges, UserRepository,
};
use super::ServiceError;
use crate::domain::rejection::Rejection;
use crate::domain::{
    password_policy, BirthDate, Email, FieldError, FullName, Gender, NewUser, Password,
    PatientProfile, Phone, RawPatient, Role, User, UserId, ValidationErrors,
};
use std::collections::HashSet;
use std::sync::Arc;
use uuid::Uuid;

/// A patient's change to their own profile. `None` leaves a field alone; for the
/// optional fields `Some(None)` clears them. E-mail and password changes require the
/// current password; a new e-mail address takes effect once it is verified.
#[derive(Debug, Clone, Default)]
pub struct ProfileUpdate {
    pub full_name: Option<FullName>,
    pub birth_date: Option<Option<BirthDate>>,
    pub gender: Option<Option<Gender>>,
    pub phone: Option<Option<Phone>>,
    pub email: Option<Email>,
    pub new_password: Option<Password>,
    pub current_password: Option<String>,
}

/// One record of an import file, before validation.
#[derive(Debug, Clone)]
pub struct ImportRecord {
    pub id: Option<Uuid>,
    pub patient: RawPatient,
}

/// Why one record of an import was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RejectedRecord {
    /// 0-based position in the file.
    pub index: usize,
    pub email: String,
    pub errors: Vec<FieldError>,
}

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// Nothing was imported; every bad record is listed.
    #[error("{} record(s) rejected; nothing was imported", .0.len())]
    Rejected(Vec<RejectedRecord>),
    #[error(transparent)]
    Service(#[from] ServiceError),
}

pub struct PatientService {
    users: Arc<dyn UserRepository>,
    tokens: Arc<dyn RefreshTokenRepository>,
    hasher: Arc<dyn PasswordHasher>,
    clock: Arc<dyn Clock>,
    /// Patient by id (cache-aside); every change to a patient invalidates its entry.
    cache: Arc<dyn Cache>,
    /// Address changes go through verification.
    accounts: Arc<AccountService>,
    /// Wrong `current_password`s count like failed logins: a stolen access token is
    /// no password oracle.
    throttle: Arc<dyn LoginThrottle>,
    password_checks: ThrottlePolicy,
}

impl PatientService {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        users: Arc<dyn UserRepository>,
        tokens: Arc<dyn RefreshTokenRepository>,
        hasher: Arc<dyn PasswordHasher>,
        clock: Arc<dyn Clock>,
        cache: Arc<dyn Cache>,
        accounts: Arc<AccountService>,
        throttle: Arc<dyn LoginThrottle>,
        password_checks: ThrottlePolicy,
    ) -> Self {
        Self {
            users,
            tokens,
            hasher,
            clock,
            cache,
            accounts,
            throttle,
            password_checks,
        }
    }

    /// Today's date, for validating birth dates.
    pub fn today(&self) -> chrono::NaiveDate {
        self.clock.now().date_naive()
    }

    /// The caller's own account.
    #[tracing::instrument(skip_all, fields(user_id = %id))]
    pub async fn me(&self, id: UserId) -> Result<User, ServiceError> {
        self.users
            .find_by_id(id)
            .await?
            .ok_or(ServiceError::NotFound("user"))
    }

    /// Applies the caller's change to their own profile.
    #[tracing::instrument(skip_all, fields(user_id = %id))]
    pub async fn update_me(&self, id: UserId, update: ProfileUpdate) -> Result<User, ServiceError> {
        let current = self.me(id).await?;
        let sensitive = update.email.is_some() || update.new_password.is_some();
        if sensitive {
            let mut errors = ValidationErrors::new();
            match (&update.current_password, &current.password_hash) {
                (None, _) => errors.push(
                    "current_password",
                    "is required to change the e-mail address or password",
                ),
                (Some(given), Some(hash)) => {
                    let key = format!("current-password:{id}");
                    let now = self.clock.now();
                    if let Some(wait) = self.throttle.locked_for(key.clone(), now).await? {
                        return Err(ServiceError::TooManyRequests { retry_after: wait });
                    }
                    let ok = match Password::parse(given) {
                        Ok(p) => self.hasher.verify(p, hash.clone()).await?,
                        Err(_) => false,
                    };
                    if ok {
                        self.throttle.clear(key).await?;
                    } else {
                        self.throttle
                            .record_failure(key, self.password_checks, now)
                            .await?;
                        errors.push("current_password", "is incorrect");
                    }
                }
                (Some(_), None) => errors.push("current_password", "is incorrect"),
            }
            if let Some(p) = &update.new_password {
                let name = update
                    .full_name
                    .as_ref()
                    .map_or(current.full_name.as_str(), FullName::as_str);
                errors.check(
                    "new_password",
                    password_policy::check(p, &current.email, name),
                );
            }
            if !errors.is_empty() {
                return Err(errors.into());
            }
        }
        let password_changed = update.new_password.is_some();
        let password_hash = match update.new_password {
            Some(p) => Some(self.hasher.hash(p).await?),
            None => None,
        };
        let changes = UserChanges {
            password_hash,
            full_name: update.full_name,
            birth_date: update.birth_date,
            gender: update.gender,
            phone: update.phone,
            ..Default::default()
        };
        let user = self
            .users
            .update(id, changes)
            .await?
            .ok_or(ServiceError::NotFound("user"))?;
        self.cache.invalidate(&patient_cache_key(id)).await;
        if password_changed {
            let revoked = self
                .tokens
                .revoke_all_for_user(id, self.clock.now())
                .await?;
            self.accounts.end_access_tokens(id).await;
            tracing::info!(revoked, "password changed; every session revoked");
        }
        match update.email {
            Some(email) => self.accounts.request_email_change(&user, &email).await,
            None => Ok(user),
        }
    }

    #[tracing::instrument(skip_all)]
    pub async fn list(
        &self,
        search: Option<String>,
        page: PageRequest,
    ) -> Result<Page<User>, ServiceError> {
        let search = search
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty());
        Ok(self.users.list(Role::Patient, search, page).await?)
    }

    /// A patient by id, through the cache.
    #[tracing::instrument(skip_all, fields(patient_id = %id))]
    pub async fn get(&self, id: UserId) -> Result<User, ServiceError> {
        let users = self.users.clone();
        let found: Option<User> =
            get_or_load(self.cache.as_ref(), &patient_cache_key(id), || async move {
                users.find_by_id(id).await
            })
            .await?;
        match found {
            Some(u) if u.role == Role::Patient => Ok(u),
            _ => Err(ServiceError::NotFound("patient")),
        }
    }

    /// Creates a patient (an admin's act). Without a password the account cannot log
    /// in until its owner sets one through password reset. The address starts
    /// unverified: an admin cannot vouch for it (README, "Accounts").
    #[tracing::instrument(skip_all)]
    pub async fn create(
        &self,
        profile: PatientProfile,
        password: Option<Password>,
    ) -> Result<User, ServiceError> {
        self.insert(profile, password, None).await
    }

    /// Creates a patient whose address needs no verification: the demo data's, on a
    /// domain that receives no mail.
    pub async fn create_verified(
        &self,
        profile: PatientProfile,
        password: Option<Password>,
    ) -> Result<User, ServiceError> {
        self.insert(profile, password, Some(self.clock.now())).await
    }

    async fn insert(
        &self,
        profile: PatientProfile,
        password: Option<Password>,
        verified_at: Option<chrono::DateTime<chrono::Utc>>,
    ) -> Result<User, ServiceError> {
        if let Some(p) = &password {
            password_policy::require(
                "password",
                p,
                profile.email.as_str(),
                profile.full_name.as_str(),
            )?;
        }
        let password_hash = match password {
            Some(p) => Some(self.hasher.hash(p).await?),
            None => None,
        };
        let mut user = new_patient(UserId(Uuid::new_v4()), profile, password_hash);
        user.email_verified_at = verified_at;
        self.users.insert(user).await.map_err(email_conflict)
    }

    /// Replaces all profile fields of a patient.
    #[tracing::instrument(skip_all, fields(patient_id = %id))]
    pub async fn replace(&self, id: UserId, profile: PatientProfile) -> Result<User, ServiceError> {
        // Checked against the database, not the cache: this is a write.
        let current = match self.users.find_by_id(id).await? {
            Some(u) if u.role == Role::Patient => u,
            _ => return Err(ServiceError::NotFound("patient")),
        };
        // An address set by an admin is unverified until its owner follows a link.
        let new_address = current.email != profile.email.as_str();
        let changes = UserChanges {
            email_verified_at: new_address.then_some(None),
            pending_email: new_address.then_some(None),
            email: Some(profile.email),
            password_hash: None,
            full_name: Some(profile.full_name),
            birth_date: Some(profile.birth_date),
            gender: Some(profile.gender),
            phone: Some(profile.phone),
        };
        let user = self
            .users
            .update(id, changes)
            .await
            .map_err(email_conflict)?
            .ok_or(ServiceError::NotFound("patient"))?;
        self.cache.invalidate(&patient_cache_key(id)).await;
        Ok(user)
    }

    #[tracing::instrument(skip_all, fields(patient_id = %id))]
    pub async fn delete(&self, id: UserId) -> Result<(), ServiceError> {
        let deleted = match self.users.delete(id, Role::Patient).await {
            Ok(d) => d,
            Err(super::ports::RepoError::ForeignKeyViolation(_)) => {
                return Err(Rejection::PatientHasHistory.into())
            }
            Err(e) => return Err(e.into()),
        };
        self.cache.invalidate(&patient_cache_key(id)).await;
        if deleted {
            Ok(())
        } else {
            Err(ServiceError::NotFound("patient"))
        }
    }

    /// Imports patients all-or-nothing: every record is validated (fields, duplicate
    /// e-mails or ids within the file, e-mails already registered) and any rejection
    /// aborts the whole import with the full list of reasons.
    #[tracing::instrument(skip_all, fields(records = records.len()))]
    pub async fn import(&self, records: Vec<ImportRecord>) -> Result<Vec<User>, ImportError> {
        let today = self.today();
        let mut rejected = Vec::new();
        let mut valid = Vec::new();
        let mut seen_emails = HashSet::new();
        let mut seen_ids = HashSet::new();
        for (index, record) in records.iter().enumerate() {
            let mut errors = match PatientProfile::parse(&record.patient, today) {
                Ok(profile) => {
                    let mut errs = Vec::new();
                    if !seen_emails.insert(profile.email.as_str().to_owned()) {
                        errs.push(FieldError::new(
                            "email",
                            "appears more than once in the file",
                        ));
                    }
                    valid.push((index, record.id, profile));
                    errs
                }
                Err(v) => v.0,
            };
            if let Some(id) = record.id {
                if !seen_ids.insert(id) {
                    errors.push(FieldError::new("id", "appears more than once in the file"));
                }
            }
            if !errors.is_empty() {
                rejected.push(RejectedRecord {
                    index,
                    email: record.patient.email.clone(),
                    errors,
                });
            }
        }
        let emails: Vec<String> = valid
            .iter()
            .map(|(_, _, p)| p.email.as_str().to_owned())
            .collect();
        let taken: HashSet<String> = self
            .users
            .existing_emails(emails)
            .await
            .map_err(ServiceError::from)?
            .into_iter()
            .collect();
        for (index, _, profile) in &valid {
            if taken.contains(profile.email.as_str()) {
                rejected.push(RejectedRecord {
                    index: *index,
                    email: profile.email.as_str().to_owned(),
                    errors: vec![FieldError::new("email", "is already registered")],
                });
            }
        }
        if !rejected.is_empty() {
            rejected.sort_by_key(|r| r.index);
            return Err(ImportError::Rejected(rejected));
        }
        let users = valid
            .into_iter()
            .map(|(_, id, profile)| {
                new_patient(UserId(id.unwrap_or_else(Uuid::new_v4)), profile, None)
            })
            .collect();
        match self.users.insert_all(users).await {
            Ok(users) => Ok(users),
            // A concurrent insert won a race for an e-mail or id: still all-or-nothing.
            Err(super::ports::RepoError::UniqueViolation(c)) => {
                tracing::debug!(constraint = %c, "import collided");
                Err(ServiceError::Rejected(Rejection::ImportCollision).into())
            }
            Err(e) => Err(ServiceError::from(e).into()),
        }
    }

    /// All patients, oldest first, in the shape `import` reads.
    #[tracing::instrument(skip_all)]
    pub async fn export(&self) -> Result<Vec<User>, ServiceError> {
        Ok(self.users.all_with_role(Role::Patient).await?)
    }
}

fn new_patient(id: UserId, p: PatientProfile, password_hash: Option<String>) -> NewUser {
    NewUser {
        id,
        email: p.email,
        password_hash,
        role: Role::Patient,
        full_name: p.full_name,
        birth_date: p.birth_date,
        gender: p.gender,
        phone: p.phone,
        email_verified_at: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::fakes::Fakes;
    use chrono::NaiveDate;

    fn raw(email: &str) -> RawPatient {
        RawPatient {
            email: email.into(),
            full_name: "Ann Lee".into(),
            birth_date: NaiveDate::from_ymd_opt(1990, 1, 1),
            gender: Some("female".into()),
            phone: Some("+4930123456".into()),
        }
    }

    fn record(email: &str) -> ImportRecord {
        ImportRecord {
            id: None,
            patient: raw(email),
        }
    }

    #[tokio::test]
    async fn import_is_all_or_nothing_and_reports_every_bad_record() {
        let f = Fakes::new();
        let svc = f.patients();
        let existing = PatientProfile::parse(&raw("taken@example.com"), svc.today()).unwrap();
        svc.create(existing, None).await.unwrap();
        let mut bad_phone = record("c@example.com");
        bad_phone.patient.phone = Some("12".into());
        let records = vec![
            record("a@example.com"),
            record("taken@example.com"),
            bad_phone,
            record("A@example.com"),
        ];
        let Err(ImportError::Rejected(rejected)) = svc.import(records).await else {
            panic!("import should fail")
        };
        let indexes: Vec<usize> = rejected.iter().map(|r| r.index).collect();
        assert_eq!(indexes, vec![1, 2, 3]);
        assert_eq!(rejected[1].errors[0].field, "phone");
        assert_eq!(f.users.count(), 1, "nothing imported");
    }

    #[tokio::test]
    async fn import_then_export_round_trips() {
        let f = Fakes::new();
        let svc = f.patients();
        let id = Uuid::new_v4();
        let mut first = record("a@example.com");
        first.id = Some(id);
        svc.import(vec![first, record("b@example.com")])
            .await
            .unwrap();
        let exported = svc.export().await.unwrap();
        assert_eq!(exported.len(), 2);
        assert_eq!(exported[0].id, UserId(id));
        assert_eq!(exported[0].phone.as_deref(), Some("+4930123456"));
    }

    #[tokio::test]
    async fn password_change_needs_current_password_and_revokes_tokens() {
        let f = Fakes::new();
        let svc = f.patients();
        let profile = PatientProfile::parse(&raw("a@example.com"), svc.today()).unwrap();
        let user = svc
            .create(profile, Some(Password::parse("old password").unwrap()))
            .await
            .unwrap();
        let update = ProfileUpdate {
            new_password: Some(Password::parse("new password").unwrap()),
            ..Default::default()
        };
        let e = svc.update_me(user.id, update.clone()).await.unwrap_err();
        assert!(matches!(e, ServiceError::Validation(_)), "{e:?}");
        let wrong = ProfileUpdate {
            current_password: Some("not the password".into()),
            ..update.clone()
        };
        assert!(matches!(
            svc.update_me(user.id, wrong).await,
            Err(ServiceError::Validation(_))
        ));
        let right = ProfileUpdate {
            current_password: Some("old password".into()),
            ..update
        };
        svc.update_me(user.id, right).await.unwrap();
        assert_eq!(f.tokens.revoked_users(), vec![user.id]);
    }

    #[tokio::test]
    async fn current_password_is_no_oracle_for_a_stolen_token() {
        let f = Fakes::new();
        let svc = f.patients();
        let profile = PatientProfile::parse(&raw("a@example.com"), svc.today()).unwrap();
        let user = svc
            .create(profile, Some(Password::parse("old password").unwrap()))
            .await
            .unwrap();
        let attempt = |given: &str| ProfileUpdate {
            new_password: Some(Password::parse("new password").unwrap()),
            current_password: Some(given.into()),
            ..Default::default()
        };
        for guess in ["guess one", "guess two", "guess three"] {
            let e = svc.update_me(user.id, attempt(guess)).await.unwrap_err();
            assert!(matches!(e, ServiceError::Validation(_)), "{e:?}");
        }
        // Locked: even the right password is not checked now.
        let hashes = f.hasher.verifications();
        let e = svc
            .update_me(user.id, attempt("old password"))
            .await
            .unwrap_err();
        assert!(matches!(e, ServiceError::TooManyRequests { .. }), "{e:?}");
        assert_eq!(f.hasher.verifications(), hashes);
        f.clock.advance(chrono::Duration::seconds(61));
        svc.update_me(user.id, attempt("old password"))
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn admin_get_refuses_non_patients() {
        let f = Fakes::new();
        let svc = f.patients();
        let auth = f.auth();
        let admin = auth
            .create_admin(crate::service::auth::Registration {
                email: Email::parse("root@example.com").unwrap(),
                password: Password::parse("admin password").unwrap(),
                full_name: FullName::parse("Root").unwrap(),
                birth_date: None,
                gender: None,
                phone: None,
            })
            .await
            .unwrap();
        assert!(matches!(
            svc.get(admin.id).await,
            Err(ServiceError::NotFound("patient"))
        ));
        assert!(matches!(
            svc.delete(admin.id).await,
            Err(ServiceError::NotFound("patient"))
        ));
    }
}
