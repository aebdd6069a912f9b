//! Bodies of the appointment and review endpoints.

use crate::domain::booking::{parse_text, Appointment, AuthorShownAs, Rating, Review};
use crate::domain::inputs;
use crate::domain::ValidationErrors;
use chrono::{DateTime, Utc};
use paperclip::actix::Apiv2Schema;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

pub use crate::domain::inputs::MAX_REASON_CHARS;
/// Longest review text, in characters.
pub const MAX_REVIEW_CHARS: usize = 2000;

/// A booking: the slot and an optional reason for the visit.
#[derive(Debug, Deserialize, Apiv2Schema)]
#[serde(deny_unknown_fields)]
pub struct BookRequest {
    pub slot_id: Uuid,
    /// Up to 1000 characters.
    pub reason: Option<String>,
}

impl BookRequest {
    pub fn reason(&self) -> Result<String, ValidationErrors> {
        inputs::visit_reason(self.reason.as_deref()).map_err(|e| ValidationErrors(vec![e]))
    }
}

#[derive(Debug, Deserialize, Apiv2Schema)]
#[serde(deny_unknown_fields)]
pub struct CancelRequest {
    /// Up to 1000 characters.
    pub reason: Option<String>,
}

#[derive(Debug, Deserialize, Apiv2Schema)]
#[serde(deny_unknown_fields)]
pub struct RescheduleRequest {
    /// Another available slot of the same doctor.
    pub slot_id: Uuid,
    /// Up to 1000 characters: why (an admin); required of an admin past the clinic's
    /// deadline for patients.
    pub reason: Option<String>,
}

#[derive(Debug, Serialize, Apiv2Schema)]
pub struct AppointmentResponse {
    pub id: Uuid,
    pub slot_id: Uuid,
    pub patient_id: Uuid,
    pub doctor_id: Uuid,
    pub doctor_name: String,
    pub clinic_id: Uuid,
    pub clinic_name: String,
    /// The clinic's IANA time zone.
    pub time_zone: String,
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
    /// `booked`, `cancelled`, `completed` or `no_show`.
    pub status: String,
    pub reason: String,
    pub cancel_reason: Option<String>,
    pub cancelled_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<Appointment> for AppointmentResponse {
    fn from(a: Appointment) -> Self {
        Self {
            id: a.id.into(),
            slot_id: a.slot_id.into(),
            patient_id: a.patient_id.0,
            doctor_id: a.doctor_id.into(),
            doctor_name: a.doctor_name,
            clinic_id: a.clinic_id.into(),
            clinic_name: a.clinic_name,
            time_zone: a.time_zone,
            starts_at: a.starts_at,
            ends_at: a.ends_at,
            status: a.status.as_str().to_owned(),
            reason: a.reason,
            cancel_reason: a.cancel_reason,
            cancelled_at: a.cancelled_at,
            created_at: a.created_at,
            updated_at: a.updated_at,
        }
    }
}

super::common::page_dto!(
    /// One page of appointments.
    AppointmentPage,
    AppointmentResponse
);

/// Filters; `patient_id` and `doctor_id` are for admins (patients always see their own).
#[derive(Debug, Deserialize, Apiv2Schema)]
#[serde(deny_unknown_fields)]
pub struct AppointmentListQuery {
    /// `booked`, `cancelled`, `completed` or `no_show`.
    pub status: Option<String>,
    /// Appointments starting at or after this time.
    pub from: Option<DateTime<Utc>>,
    /// Appointments starting before this time.
    pub to: Option<DateTime<Utc>>,
    pub patient_id: Option<Uuid>,
    pub doctor_id: Option<Uuid>,
    pub page: Option<u32>,
    pub per_page: Option<u32>,
}

#[derive(Debug, Deserialize, Apiv2Schema)]
#[serde(deny_unknown_fields)]
pub struct ReviewRequest {
    /// The (past, not cancelled) appointment being reviewed.
    pub appointment_id: Uuid,
    /// 1 to 5.
    pub rating: i64,
    /// Up to 2000 characters.
    pub text: Option<String>,
    /// How the review names you in public: `initials` (default, e.g. "A. L."),
    /// `full_name` or `anonymous`.
    pub show_author_as: Option<String>,
}

impl ReviewRequest {
    pub fn parse(&self) -> Result<(Rating, String, AuthorShownAs), ValidationErrors> {
        let mut e = ValidationErrors::new();
        let rating = e.check("rating", Rating::parse(self.rating));
        let text = e.check(
            "text",
            parse_text(self.text.as_deref().unwrap_or(""), MAX_REVIEW_CHARS, true),
        );
        let shown_as = match self.show_author_as.as_deref() {
            None => Some(AuthorShownAs::default()),
            Some(s) => e.check("show_author_as", AuthorShownAs::parse(s)),
        };
        e.finish(|| Some((rating?, text?, shown_as?)))
    }
}

/// A review as anyone reads it: no appointment, patient or account ids, and the author
/// only as they chose to be shown.
#[derive(Debug, Serialize, Apiv2Schema)]
pub struct ReviewResponse {
    pub id: Uuid,
    pub doctor_id: Uuid,
    /// The author as they chose to be shown: initials ("A. L."), full name, or
    /// "Anonymous patient".
    pub author: String,
    /// `initials`, `full_name` or `anonymous`.
    pub author_shown_as: String,
    pub rating: i16,
    pub text: String,
    pub created_at: DateTime<Utc>,
}

impl From<Review> for ReviewResponse {
    fn from(r: Review) -> Self {
        Self {
            id: r.id.into(),
            doctor_id: r.doctor_id.into(),
            author: r.author,
            author_shown_as: r.author_shown_as.as_str().to_owned(),
            rating: r.rating,
            text: r.text,
            created_at: r.created_at,
        }
    }
}

super::common::page_dto!(
    /// One page of reviews.
    ReviewPage,
    ReviewResponse
);

#[derive(Debug, Deserialize, Apiv2Schema)]
#[serde(deny_unknown_fields)]
pub struct PageQuery {
    pub page: Option<u32>,
    pub per_page: Option<u32>,
}
