//! Bodies of the slot endpoints.

use crate::domain::booking::Slot;
use crate::domain::schedule::{RawWeeklyTemplate, SlotRange, WeeklyTemplate};
use crate::domain::ValidationErrors;
use crate::service::booking_ports::GenerationReport;
use chrono::{DateTime, NaiveDate, Utc};
use paperclip::actix::Apiv2Schema;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

// How many days a slot listing covers by default, and at most.
pub use crate::service::booking_ports::{DEFAULT_LIST_DAYS, MAX_LIST_DAYS};

/// A single slot; times are RFC 3339 with offset, half-open `[starts_at, ends_at)`.
#[derive(Debug, Deserialize, Apiv2Schema)]
#[serde(deny_unknown_fields)]
pub struct SlotRequest {
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
}

impl SlotRequest {
    pub fn into_range(self) -> Result<SlotRange, ValidationErrors> {
        let mut e = ValidationErrors::new();
        let range = e.check("ends_at", SlotRange::parse(self.starts_at, self.ends_at));
        e.finish(|| range)
    }
}

/// A weekly template laid out in the clinic's time zone over a date range.
#[derive(Debug, Deserialize, Apiv2Schema)]
#[serde(deny_unknown_fields)]
pub struct GenerateSlotsRequest {
    /// `mon` … `sun`.
    pub weekdays: Vec<String>,
    /// Local `HH:MM`.
    pub start_time: String,
    /// Local `HH:MM`; the last slot ends by then.
    pub end_time: String,
    pub slot_minutes: u32,
    /// Gap between consecutive slots (default 0).
    pub buffer_minutes: Option<u32>,
    pub from: NaiveDate,
    /// Inclusive.
    pub to: NaiveDate,
}

impl GenerateSlotsRequest {
    pub fn into_template(self) -> Result<WeeklyTemplate, ValidationErrors> {
        WeeklyTemplate::parse(&RawWeeklyTemplate {
            weekdays: self.weekdays,
            start_time: self.start_time,
            end_time: self.end_time,
            slot_minutes: self.slot_minutes,
            buffer_minutes: self.buffer_minutes.unwrap_or(0),
            from: self.from,
            to: self.to,
        })
    }
}

#[derive(Debug, Serialize, Apiv2Schema)]
pub struct GenerationResponse {
    pub created: u64,
    /// Slots that overlapped existing ones (e.g. on a re-run) and were left out.
    pub skipped: u64,
}

impl From<GenerationReport> for GenerationResponse {
    fn from(r: GenerationReport) -> Self {
        Self {
            created: r.created,
            skipped: r.skipped,
        }
    }
}

#[derive(Debug, Serialize, Apiv2Schema)]
pub struct SlotResponse {
    pub id: Uuid,
    pub doctor_id: Uuid,
    #[serde(serialize_with = "super::common::rfc3339::serialize")]
    pub starts_at: DateTime<Utc>,
    #[serde(serialize_with = "super::common::rfc3339::serialize")]
    pub ends_at: DateTime<Utc>,
    /// `available`, `booked` or `blocked`.
    pub status: String,
}

impl From<Slot> for SlotResponse {
    fn from(s: Slot) -> Self {
        Self {
            id: s.id.into(),
            doctor_id: s.doctor_id.into(),
            starts_at: s.starts_at,
            ends_at: s.ends_at,
            status: s.status.as_str().to_owned(),
        }
    }
}

#[derive(Debug, Serialize, Apiv2Schema)]
pub struct SlotList {
    pub items: Vec<SlotResponse>,
}

#[derive(Debug, Deserialize, Apiv2Schema)]
#[serde(deny_unknown_fields)]
pub struct SlotListQuery {
    /// Default: now.
    pub from: Option<DateTime<Utc>>,
    /// Default: `from` + 14 days; at most 62 days after `from`.
    pub to: Option<DateTime<Utc>>,
    /// `available`, `booked` or `blocked`.
    pub status: Option<String>,
}
