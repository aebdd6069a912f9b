//! Bodies of the waitlist and calendar-feed endpoints.

use crate::domain::waitlist::WaitlistEntry;
use chrono::{DateTime, NaiveDate, Utc};
use paperclip::actix::Apiv2Schema;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Wait for a slot of a doctor between two days (the clinic's calendar).
#[derive(Debug, Deserialize, Apiv2Schema)]
#[serde(deny_unknown_fields)]
pub struct JoinWaitlistRequest {
    pub doctor_id: Uuid,
    /// First day, `YYYY-MM-DD`.
    pub from_date: NaiveDate,
    /// Last day, `YYYY-MM-DD`.
    pub to_date: NaiveDate,
}

/// A slot held for the entry.
#[derive(Debug, Serialize, Apiv2Schema)]
pub struct HeldSlotResponse {
    pub slot_id: Uuid,
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
    /// Book it before then (the link in the offer e-mail); afterwards it goes to the
    /// next in line.
    pub expires_at: DateTime<Utc>,
}

#[derive(Debug, Serialize, Apiv2Schema)]
pub struct WaitlistEntryResponse {
    pub id: Uuid,
    pub doctor_id: Uuid,
    pub doctor_name: String,
    pub from_date: NaiveDate,
    pub to_date: NaiveDate,
    /// `waiting`, `offered` (a slot is held for you), `booked` or `left`.
    pub status: String,
    pub offer: Option<HeldSlotResponse>,
    /// Once booked from an offer.
    pub appointment_id: Option<Uuid>,
    pub created_at: DateTime<Utc>,
}

impl From<WaitlistEntry> for WaitlistEntryResponse {
    fn from(e: WaitlistEntry) -> Self {
        Self {
            id: e.id,
            doctor_id: e.doctor_id.0,
            doctor_name: e.doctor_name,
            from_date: e.from_date,
            to_date: e.to_date,
            status: e.status.as_str().to_owned(),
            offer: e.offer.map(|o| HeldSlotResponse {
                slot_id: o.slot_id.0,
                starts_at: o.starts_at,
                ends_at: o.ends_at,
                expires_at: o.expires_at,
            }),
            appointment_id: e.appointment_id,
            created_at: e.created_at,
        }
    }
}

#[derive(Debug, Serialize, Apiv2Schema)]
pub struct WaitlistResponse {
    /// Live entries first, newest first.
    pub entries: Vec<WaitlistEntryResponse>,
}

/// A calendar feed's secret URL.
#[derive(Debug, Serialize, Apiv2Schema)]
pub struct CalendarFeedResponse {
    /// Subscribe to it in a calendar application. Anyone with the URL can read the
    /// feed: rotate it (call again) if it leaked; the old URL then stops working.
    pub url: String,
}

/// Whether a started appointment was attended.
#[derive(Debug, Deserialize, Apiv2Schema)]
#[serde(deny_unknown_fields)]
pub struct AttendanceRequest {
    /// `attended` or `no_show`.
    pub outcome: String,
}
