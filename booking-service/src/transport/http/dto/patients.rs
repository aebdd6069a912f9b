//! Bodies of the admin patient endpoints and the import/export file format.

use super::common::UserResponse;
use crate::domain::{Password, PatientProfile, RawPatient, User, ValidationErrors};
use crate::service::patients::ImportRecord;
use chrono::NaiveDate;
use paperclip::actix::Apiv2Schema;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// A patient's profile fields (create and full replace).
#[derive(Debug, Deserialize, Apiv2Schema)]
#[serde(deny_unknown_fields)]
pub struct PatientRequest {
    pub email: String,
    pub full_name: String,
    pub birth_date: Option<NaiveDate>,
    /// `female`, `male`, `other` or `undisclosed`.
    pub gender: Option<String>,
    /// International format, e.g. `+49 30 123456`.
    pub phone: Option<String>,
    /// Only on create; without it the patient cannot log in yet.
    pub password: Option<String>,
}

impl PatientRequest {
    fn raw(&self) -> RawPatient {
        RawPatient {
            email: self.email.clone(),
            full_name: self.full_name.clone(),
            birth_date: self.birth_date,
            gender: self.gender.clone(),
            phone: self.phone.clone(),
        }
    }

    pub fn into_new(
        self,
        today: NaiveDate,
    ) -> Result<(PatientProfile, Option<Password>), ValidationErrors> {
        let mut e = ValidationErrors::new();
        let profile = e.absorb(PatientProfile::parse(&self.raw(), today));
        let password = e.check_opt("password", self.password.as_deref().map(Password::parse));
        e.finish(|| Some((profile?, password?)))
    }

    pub fn into_replacement(self, today: NaiveDate) -> Result<PatientProfile, ValidationErrors> {
        let mut e = ValidationErrors::new();
        let profile = e.absorb(PatientProfile::parse(&self.raw(), today));
        if self.password.is_some() {
            e.push(
                "password",
                "cannot be set here; patients change it through /api/v1/me",
            );
        }
        e.finish(|| profile)
    }
}

#[derive(Debug, Deserialize, Apiv2Schema)]
#[serde(deny_unknown_fields)]
pub struct PatientListQuery {
    /// Case-insensitive substring of the name or e-mail.
    pub q: Option<String>,
    pub page: Option<u32>,
    pub per_page: Option<u32>,
}

super::common::page_dto!(
    /// One page of patients.
    PatientPage,
    UserResponse
);

/// One record of a patient import/export file (a JSON array of these).
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PatientRecord {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<Uuid>,
    pub email: String,
    pub full_name: String,
    #[serde(default)]
    pub birth_date: Option<NaiveDate>,
    #[serde(default)]
    pub gender: Option<String>,
    #[serde(default)]
    pub phone: Option<String>,
}

impl From<PatientRecord> for ImportRecord {
    fn from(r: PatientRecord) -> Self {
        ImportRecord {
            id: r.id,
            patient: RawPatient {
                email: r.email,
                full_name: r.full_name,
                birth_date: r.birth_date,
                gender: r.gender,
                phone: r.phone,
            },
        }
    }
}

impl From<User> for PatientRecord {
    fn from(u: User) -> Self {
        PatientRecord {
            id: Some(u.id.0),
            email: u.email,
            full_name: u.full_name,
            birth_date: u.birth_date,
            gender: u.gender.map(|g| g.as_str().to_owned()),
            phone: u.phone,
        }
    }
}
