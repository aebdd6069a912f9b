//! Bodies of `/api/v1/auth/*` and `/api/v1/me`.

use crate::domain::{BirthDate, Email, FullName, Password, Phone, ValidationErrors};
use crate::service::auth::{Registration, TokenPair};
use crate::service::patients::ProfileUpdate;
use chrono::NaiveDate;
use paperclip::actix::Apiv2Schema;
use serde::{Deserialize, Serialize};

/// A new patient account.
#[derive(Debug, Deserialize, Apiv2Schema)]
#[serde(deny_unknown_fields)]
pub struct RegisterRequest {
    pub email: String,
    /// 8 characters to 72 bytes.
    pub password: String,
    pub full_name: String,
    pub birth_date: Option<NaiveDate>,
    /// `female`, `male`, `other` or `undisclosed`.
    pub gender: Option<String>,
    /// International format, e.g. `+49 30 123456`.
    pub phone: Option<String>,
}

impl RegisterRequest {
    pub fn into_registration(self, today: NaiveDate) -> Result<Registration, ValidationErrors> {
        let mut e = ValidationErrors::new();
        let email = e.check("email", Email::parse(&self.email));
        let password = e.check("password", Password::parse(&self.password));
        let full_name = e.check("full_name", FullName::parse(&self.full_name));
        let birth_date = self
            .birth_date
            .map(|d| e.check("birth_date", BirthDate::parse(d, today)));
        let gender = self.gender.map(|g| e.check("gender", g.parse()));
        let phone = self.phone.map(|p| e.check("phone", Phone::parse(&p)));
        e.finish(|| {
            Some(Registration {
                email: email?,
                password: password?,
                full_name: full_name?,
                birth_date: lift(birth_date)?,
                gender: lift(gender)?,
                phone: lift(phone)?,
            })
        })
    }
}

#[derive(Debug, Deserialize, Apiv2Schema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    pub email: String,
    pub password: String,
}

#[derive(Debug, Deserialize, Apiv2Schema)]
#[serde(deny_unknown_fields)]
pub struct RefreshRequest {
    pub refresh_token: String,
}

/// Tokens issued by login and refresh.
#[derive(Debug, Serialize, Apiv2Schema)]
pub struct TokenResponse {
    /// JWT for `Authorization: Bearer …`.
    pub access_token: String,
    /// Always `Bearer`.
    pub token_type: String,
    /// Seconds until the access token expires.
    pub expires_in: u64,
    /// Opaque, single-use: each refresh returns a new one.
    pub refresh_token: String,
    pub refresh_expires_in: u64,
}

impl From<TokenPair> for TokenResponse {
    fn from(p: TokenPair) -> Self {
        Self {
            access_token: p.access.token,
            token_type: "Bearer".into(),
            expires_in: p.access.expires_in.as_secs(),
            refresh_token: p.refresh_token,
            refresh_expires_in: p.refresh_expires_in.as_secs(),
        }
    }
}

/// A change to the caller's own profile. Omitted fields stay as they are; `null`
/// clears `birth_date`, `gender` or `phone`. Changing `email` or setting
/// `new_password` requires `current_password`; a new password logs out every session.
#[derive(Debug, Default, Deserialize, Apiv2Schema)]
#[serde(deny_unknown_fields)]
pub struct UpdateMeRequest {
    pub full_name: Option<String>,
    #[serde(default, deserialize_with = "super::common::double_option")]
    pub birth_date: Option<Option<NaiveDate>>,
    #[serde(default, deserialize_with = "super::common::double_option")]
    pub gender: Option<Option<String>>,
    #[serde(default, deserialize_with = "super::common::double_option")]
    pub phone: Option<Option<String>>,
    pub email: Option<String>,
    pub current_password: Option<String>,
    pub new_password: Option<String>,
}

impl UpdateMeRequest {
    pub fn into_update(self, today: NaiveDate) -> Result<ProfileUpdate, ValidationErrors> {
        let mut e = ValidationErrors::new();
        let full_name = self
            .full_name
            .map(|n| e.check("full_name", FullName::parse(&n)));
        let birth_date = self
            .birth_date
            .map(|d| d.map(|d| e.check("birth_date", BirthDate::parse(d, today))));
        let gender = self.gender.map(|g| g.map(|g| e.check("gender", g.parse())));
        let phone = self
            .phone
            .map(|p| p.map(|p| e.check("phone", Phone::parse(&p))));
        let email = self.email.map(|m| e.check("email", Email::parse(&m)));
        let new_password = self
            .new_password
            .map(|p| e.check("new_password", Password::parse(&p)));
        let current_password = self.current_password;
        e.finish(|| {
            Some(ProfileUpdate {
                full_name: lift(full_name)?,
                birth_date: lift_nested(birth_date)?,
                gender: lift_nested(gender)?,
                phone: lift_nested(phone)?,
                email: lift(email)?,
                new_password: lift(new_password)?,
                current_password,
            })
        })
    }
}

/// `Some(None)` (a failed check) becomes `None` (abort); otherwise unwraps one level.
pub(crate) fn lift<T>(v: Option<Option<T>>) -> Option<Option<T>> {
    match v {
        None => Some(None),
        Some(Some(x)) => Some(Some(x)),
        Some(None) => None,
    }
}

pub(crate) fn lift_nested<T>(v: Option<Option<Option<T>>>) -> Option<Option<Option<T>>> {
    match v {
        None => Some(None),
        Some(None) => Some(Some(None)),
        Some(Some(Some(x))) => Some(Some(Some(x))),
        Some(Some(None)) => None,
    }
}
