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
    /// 8 characters to 72 bytes (UTF-8); not one of the 20,000 most common passwords;
    /// must not contain the e-mail address, its part before `@`, or the name (parts of
    /// 4 characters or more), whatever the case.
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
        let birth_date = e.check_opt(
            "birth_date",
            self.birth_date.map(|d| BirthDate::parse(d, today)),
        );
        let gender = e.check_opt("gender", self.gender.as_deref().map(str::parse));
        let phone = e.check_opt("phone", self.phone.as_deref().map(Phone::parse));
        e.finish(|| {
            Some(Registration {
                email: email?,
                password: password?,
                full_name: full_name?,
                birth_date: birth_date?,
                gender: gender?,
                phone: phone?,
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

/// The answer to a request whose outcome is told by e-mail only (registration, reset,
/// re-sending a verification link). It is the same whether or not the address has an
/// account.
#[derive(Debug, Serialize, Apiv2Schema)]
pub struct AcceptedResponse {
    /// The address, as normalised (trimmed, lower case), or `null` when the e-mail goes
    /// to the account's own address.
    pub email: Option<String>,
    pub message: String,
}

impl AcceptedResponse {
    pub fn mail_sent(email: Option<String>) -> Self {
        Self {
            email,
            message: "Check your inbox: if this address can receive it, an e-mail with the next step is on its way.".into(),
        }
    }
}

/// The token from a verification link (`?token=…`).
#[derive(Debug, Deserialize, Apiv2Schema)]
#[serde(deny_unknown_fields)]
pub struct VerifyEmailRequest {
    pub token: String,
}

/// A verified address.
#[derive(Debug, Serialize, Apiv2Schema)]
pub struct VerifiedResponse {
    /// The account's address, now verified (after an address change: the new one).
    pub email: String,
    /// Always `true`.
    pub email_verified: bool,
}

#[derive(Debug, Deserialize, Apiv2Schema)]
#[serde(deny_unknown_fields)]
pub struct PasswordResetRequest {
    pub email: String,
}

/// The token from a reset link and the new password.
#[derive(Debug, Deserialize, Apiv2Schema)]
#[serde(deny_unknown_fields)]
pub struct PasswordResetConfirmRequest {
    pub token: String,
    /// The same rules as at registration.
    pub new_password: String,
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
        // An explicit `null` (clear the field) is `Some(None)`: transpose keeps it unchecked.
        let full_name = e.check_opt("full_name", self.full_name.as_deref().map(FullName::parse));
        let birth_date = e.check_opt(
            "birth_date",
            self.birth_date
                .map(|d| d.map(|d| BirthDate::parse(d, today)).transpose()),
        );
        let gender = e.check_opt(
            "gender",
            self.gender
                .map(|g| g.as_deref().map(str::parse).transpose()),
        );
        let phone = e.check_opt(
            "phone",
            self.phone
                .map(|p| p.as_deref().map(Phone::parse).transpose()),
        );
        let email = e.check_opt("email", self.email.as_deref().map(Email::parse));
        let new_password = e.check_opt(
            "new_password",
            self.new_password.as_deref().map(Password::parse),
        );
        let current_password = self.current_password;
        e.finish(|| {
            Some(ProfileUpdate {
                full_name: full_name?,
                birth_date: birth_date?,
                gender: gender?,
                phone: phone?,
                email: email?,
                new_password: new_password?,
                current_password,
            })
        })
    }
}
