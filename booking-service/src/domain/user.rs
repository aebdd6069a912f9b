//! Users: patients, admins and doctors share one table and one entity.

use super::{BirthDate, Email, FullName, Phone};
use chrono::{DateTime, NaiveDate, Utc};
use std::fmt;
use std::str::FromStr;
use uuid::Uuid;

/// Typed id of a user.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct UserId(pub Uuid);

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Patient,
    Admin,
    Doctor,
}

impl Role {
    pub const ALL: [&'static str; 3] = ["patient", "admin", "doctor"];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Patient => "patient",
            Role::Admin => "admin",
            Role::Doctor => "doctor",
        }
    }
}

impl FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "patient" => Ok(Role::Patient),
            "admin" => Ok(Role::Admin),
            "doctor" => Ok(Role::Doctor),
            other => Err(format!("unknown role {other}")),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Gender {
    Female,
    Male,
    Other,
    Undisclosed,
}

impl Gender {
    pub const ALL: [&'static str; 4] = ["female", "male", "other", "undisclosed"];

    pub fn as_str(self) -> &'static str {
        match self {
            Gender::Female => "female",
            Gender::Male => "male",
            Gender::Other => "other",
            Gender::Undisclosed => "undisclosed",
        }
    }
}

impl FromStr for Gender {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "female" => Ok(Gender::Female),
            "male" => Ok(Gender::Male),
            "other" => Ok(Gender::Other),
            "undisclosed" => Ok(Gender::Undisclosed),
            _ => Err(format!("must be one of: {}", Gender::ALL.join(", "))),
        }
    }
}

/// A stored user. `password_hash` is `None` for records imported without a password:
/// such a user cannot log in until a password is set.
/// (Serializable for caches; the password hash is never serialized.)
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct User {
    pub id: UserId,
    pub email: String,
    #[serde(skip)]
    pub password_hash: Option<String>,
    pub role: Role,
    pub full_name: String,
    pub birth_date: Option<NaiveDate>,
    pub gender: Option<Gender>,
    pub phone: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// When the owner proved control of `email` (followed a verification or reset link);
    /// `None` until then. Only verified patients may book.
    pub email_verified_at: Option<DateTime<Utc>>,
    /// An address the user asked to change to; it replaces `email` once verified.
    pub pending_email: Option<String>,
}

impl User {
    pub fn email_verified(&self) -> bool {
        self.email_verified_at.is_some()
    }

    /// Where an e-mailed link's address stands to the account now. A link proves
    /// control of the address it went to, and counts only while that address is still
    /// the account's own ([`LinkTarget::Current`]) or the one it is changing to.
    pub fn link_target(&self, address: &str) -> LinkTarget {
        if self.email == address {
            LinkTarget::Current
        } else if self.pending_email.as_deref() == Some(address) {
            LinkTarget::Pending
        } else {
            LinkTarget::Elsewhere
        }
    }
}

/// See [`User::link_target`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkTarget {
    /// The account's address.
    Current,
    /// The address the account is changing to.
    Pending,
    /// Neither: the address changed after the link was sent; the link is dead.
    Elsewhere,
}

/// Everything needed to insert a user; built only from parsed values.
#[derive(Debug, Clone)]
pub struct NewUser {
    pub id: UserId,
    pub email: Email,
    pub password_hash: Option<String>,
    pub role: Role,
    pub full_name: FullName,
    pub birth_date: Option<BirthDate>,
    pub gender: Option<Gender>,
    pub phone: Option<Phone>,
    /// Set only where the address is known to work without a link being followed
    /// (demo data, the operator's `create-admin`); see README "Accounts".
    pub email_verified_at: Option<DateTime<Utc>>,
}

/// A patient's profile fields, as set by an admin (create / replace) or an import.
#[derive(Debug, Clone)]
pub struct PatientProfile {
    pub email: Email,
    pub full_name: FullName,
    pub birth_date: Option<BirthDate>,
    pub gender: Option<Gender>,
    pub phone: Option<Phone>,
}

/// Patient fields as they arrive (HTTP body, import file, CLI flags), before validation.
#[derive(Debug, Clone, Default)]
pub struct RawPatient {
    pub email: String,
    pub full_name: String,
    pub birth_date: Option<NaiveDate>,
    pub gender: Option<String>,
    pub phone: Option<String>,
}

impl PatientProfile {
    /// Validates every field and reports all problems at once.
    pub fn parse(raw: &RawPatient, today: NaiveDate) -> Result<Self, super::ValidationErrors> {
        let mut errors = super::ValidationErrors::new();
        let email = errors.check("email", Email::parse(&raw.email));
        let full_name = errors.check("full_name", FullName::parse(&raw.full_name));
        let birth_date = errors.check_opt(
            "birth_date",
            raw.birth_date.map(|d| BirthDate::parse(d, today)),
        );
        let gender = errors.check_opt("gender", raw.gender.as_deref().map(str::parse::<Gender>));
        let phone = errors.check_opt("phone", raw.phone.as_deref().map(Phone::parse));
        errors.finish(|| {
            Some(PatientProfile {
                email: email?,
                full_name: full_name?,
                birth_date: birth_date?,
                gender: gender?,
                phone: phone?,
            })
        })
    }
}
