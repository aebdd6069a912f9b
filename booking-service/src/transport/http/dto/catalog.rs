//! Bodies of the clinic and doctor endpoints.

use crate::domain::booking::{
    parse_clinic, parse_text, Clinic, ClinicInput, Doctor, DoctorInput, DoctorStatus, RatingSummary,
};
use crate::domain::ClinicId;
use crate::domain::UserId;
use crate::domain::ValidationErrors;
use chrono::{DateTime, NaiveDate, Utc};
use paperclip::actix::Apiv2Schema;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Longest doctor name, specialty and bio, in characters.
pub const MAX_DOCTOR_NAME_CHARS: usize = 200;
pub const MAX_SPECIALTY_CHARS: usize = 100;
pub const MAX_BIO_CHARS: usize = 5000;
pub const MAX_YEARS_OF_EXPERIENCE: i32 = 80;

#[derive(Debug, Deserialize, Apiv2Schema)]
#[serde(deny_unknown_fields)]
pub struct ClinicRequest {
    pub name: String,
    pub city: String,
    pub address: String,
    /// IANA time zone, e.g. `Europe/Berlin`; slot templates are laid out in it.
    pub time_zone: String,
}

impl ClinicRequest {
    pub fn into_input(self) -> Result<ClinicInput, ValidationErrors> {
        parse_clinic(&self.name, &self.city, &self.address, &self.time_zone)
    }
}

#[derive(Debug, Serialize, Apiv2Schema)]
pub struct ClinicResponse {
    pub id: Uuid,
    pub name: String,
    pub city: String,
    pub address: String,
    pub time_zone: String,
    #[serde(serialize_with = "super::common::rfc3339::serialize")]
    pub created_at: DateTime<Utc>,
    #[serde(serialize_with = "super::common::rfc3339::serialize")]
    pub updated_at: DateTime<Utc>,
}

impl From<Clinic> for ClinicResponse {
    fn from(c: Clinic) -> Self {
        Self {
            id: c.id.into(),
            name: c.name,
            city: c.city,
            address: c.address,
            time_zone: c.time_zone,
            created_at: c.created_at,
            updated_at: c.updated_at,
        }
    }
}

super::common::page_dto!(
    /// One page of clinics.
    ClinicPage,
    ClinicResponse
);

#[derive(Debug, Deserialize, Apiv2Schema)]
#[serde(deny_unknown_fields)]
pub struct ClinicListQuery {
    /// Case-insensitive substring of the city.
    pub city: Option<String>,
    pub page: Option<u32>,
    pub per_page: Option<u32>,
}

#[derive(Debug, Deserialize, Apiv2Schema)]
#[serde(deny_unknown_fields)]
pub struct DoctorRequest {
    pub full_name: String,
    pub specialty: String,
    pub clinic_id: Uuid,
    /// `active` (default), `on_leave` or `inactive`.
    pub status: Option<String>,
    pub bio: Option<String>,
    pub years_of_experience: Option<i32>,
    /// The doctor's own login (a user with role `doctor`), if any.
    pub user_id: Option<Uuid>,
}

impl DoctorRequest {
    pub fn into_input(self) -> Result<DoctorInput, ValidationErrors> {
        let mut e = ValidationErrors::new();
        let full_name = e.check(
            "full_name",
            parse_text(&self.full_name, MAX_DOCTOR_NAME_CHARS, false),
        );
        let specialty = e.check(
            "specialty",
            parse_text(&self.specialty, MAX_SPECIALTY_CHARS, false),
        );
        let status = e.check(
            "status",
            self.status
                .as_deref()
                .map_or(Ok(DoctorStatus::Active), str::parse),
        );
        let bio = e.check(
            "bio",
            parse_text(self.bio.as_deref().unwrap_or(""), MAX_BIO_CHARS, true),
        );
        let years = self.years_of_experience.unwrap_or(0);
        if !(0..=MAX_YEARS_OF_EXPERIENCE).contains(&years) {
            e.push(
                "years_of_experience",
                format!("must be between 0 and {MAX_YEARS_OF_EXPERIENCE}"),
            );
        }
        e.finish(|| {
            Some(DoctorInput {
                full_name: full_name?,
                specialty: specialty?,
                clinic_id: ClinicId(self.clinic_id),
                status: status?,
                bio: bio?,
                years_of_experience: years,
                user_id: self.user_id.map(UserId),
            })
        })
    }
}

#[derive(Debug, Serialize, Apiv2Schema)]
pub struct RatingSummaryResponse {
    /// Average stars (1–5, two decimals); null without reviews.
    pub average: Option<f64>,
    pub count: i64,
}

impl From<RatingSummary> for RatingSummaryResponse {
    fn from(r: RatingSummary) -> Self {
        Self {
            average: r.average,
            count: r.count,
        }
    }
}

/// A doctor as the catalogue shows it, declared once for the public shape and for the
/// admins' shape, which also carries the linked account (`$extra`, an optional id:
/// spelled out, since paperclip's derive cannot read a type passed through a macro).
macro_rules! doctor_dto {
    ($(#[$meta:meta])* $name:ident { $($(#[$fmeta:meta])* $extra:ident = $value:expr),* }) => {
        $(#[$meta])*
        #[derive(Debug, Serialize, Apiv2Schema)]
        pub struct $name {
            pub id: Uuid,
            pub full_name: String,
            pub specialty: String,
            /// `active`, `on_leave` or `inactive`.
            pub status: String,
            pub bio: String,
            pub years_of_experience: i32,
            pub clinic: ClinicResponse,
            pub rating: RatingSummaryResponse,
            $($(#[$fmeta])* pub $extra: Option<Uuid>,)*
            #[serde(serialize_with = "super::common::rfc3339::serialize")]
            pub created_at: DateTime<Utc>,
            #[serde(serialize_with = "super::common::rfc3339::serialize")]
            pub updated_at: DateTime<Utc>,
        }

        impl From<Doctor> for $name {
            fn from(d: Doctor) -> Self {
                $(let $extra = $value(&d);)*
                Self {
                    id: d.id.into(),
                    full_name: d.full_name,
                    specialty: d.specialty,
                    status: d.status.as_str().to_owned(),
                    bio: d.bio,
                    years_of_experience: d.years_of_experience,
                    clinic: d.clinic.into(),
                    rating: d.rating.into(),
                    $($extra,)*
                    created_at: d.created_at,
                    updated_at: d.updated_at,
                }
            }
        }
    };
}

doctor_dto!(
    /// A doctor, as anyone may read it: no account ids.
    DoctorResponse {}
);

doctor_dto!(
    /// A doctor as admins write and read it: also the account linked to the doctor.
    DoctorRecordResponse {
        /// The user (role `doctor`) linked to this doctor, if any.
        user_id = |d: &Doctor| d.user_id.map(|u| u.0)
    }
);

super::common::page_dto!(
    /// One page of doctors.
    DoctorPage,
    DoctorResponse
);

/// Doctor search filters; all optional and combined with AND.
#[derive(Debug, Deserialize, Apiv2Schema)]
#[serde(deny_unknown_fields)]
pub struct DoctorSearchQuery {
    /// Case-insensitive substring of the name.
    pub name: Option<String>,
    /// Exact specialty, case-insensitive.
    pub specialty: Option<String>,
    /// `active`, `on_leave` or `inactive`.
    pub status: Option<String>,
    /// Exact city of the clinic, case-insensitive.
    pub city: Option<String>,
    pub clinic_id: Option<Uuid>,
    /// Has an available future slot on this date (in the clinic's time zone).
    pub available_on: Option<NaiveDate>,
    /// `name` (default) or `rating` (best first).
    pub sort: Option<String>,
    pub page: Option<u32>,
    pub per_page: Option<u32>,
}
