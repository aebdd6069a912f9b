//! Bodies of the clinic and doctor policy endpoints.

use crate::domain::booking::{BookingPolicy, ClinicPolicy, DoctorPolicy};
use paperclip::actix::Apiv2Schema;
use serde::{Deserialize, Serialize};

/// A clinic's own booking rules; a value left out (or null) falls back to the
/// service's default.
#[derive(Debug, Deserialize, Apiv2Schema)]
#[serde(deny_unknown_fields)]
pub struct ClinicPolicyRequest {
    /// A slot must start at least this many minutes after the booking.
    pub min_notice_minutes: Option<i32>,
    /// …and at most this many days ahead.
    pub horizon_days: Option<i32>,
    /// Patients may cancel or reschedule until this many minutes before the visit;
    /// admins still may later, giving a reason.
    pub change_deadline_minutes: Option<i32>,
    /// Upcoming appointments a patient may hold at this clinic's doctors and others.
    pub max_active_per_patient: Option<i32>,
    /// This many no-shows within `no_show_window_days` stop self-service booking;
    /// admins can still book for the patient. Null: no limit.
    pub no_show_limit: Option<i32>,
    /// Days of no-shows counted (default 180).
    pub no_show_window_days: Option<i32>,
    /// E-mail the patient about a recorded no-show (default false).
    pub no_show_email: Option<bool>,
}

impl From<ClinicPolicyRequest> for ClinicPolicy {
    fn from(r: ClinicPolicyRequest) -> Self {
        ClinicPolicy {
            min_notice_minutes: r.min_notice_minutes,
            horizon_days: r.horizon_days,
            change_deadline_minutes: r.change_deadline_minutes,
            max_active_per_patient: r.max_active_per_patient,
            no_show_limit: r.no_show_limit,
            no_show_window_days: r.no_show_window_days,
            no_show_email: r.no_show_email.unwrap_or(false),
        }
    }
}

/// A doctor's overrides of their clinic's rules about their own schedule.
#[derive(Debug, Deserialize, Apiv2Schema)]
#[serde(deny_unknown_fields)]
pub struct DoctorPolicyRequest {
    pub min_notice_minutes: Option<i32>,
    pub horizon_days: Option<i32>,
    pub change_deadline_minutes: Option<i32>,
}

impl From<DoctorPolicyRequest> for DoctorPolicy {
    fn from(r: DoctorPolicyRequest) -> Self {
        DoctorPolicy {
            min_notice_minutes: r.min_notice_minutes,
            horizon_days: r.horizon_days,
            change_deadline_minutes: r.change_deadline_minutes,
        }
    }
}

/// The rules in force: what a practice enforces after overrides and defaults.
#[derive(Debug, Serialize, Apiv2Schema)]
pub struct EffectivePolicy {
    pub min_notice_minutes: i64,
    pub horizon_days: i64,
    pub change_deadline_minutes: i64,
    pub max_active_per_patient: i64,
    /// Null: no-shows never stop self-service booking.
    pub no_show_limit: Option<i64>,
    pub no_show_window_days: i64,
    pub no_show_email: bool,
}

impl From<BookingPolicy> for EffectivePolicy {
    fn from(p: BookingPolicy) -> Self {
        Self {
            min_notice_minutes: p.min_notice.num_minutes(),
            horizon_days: p.horizon.num_days(),
            change_deadline_minutes: p.change_deadline.num_minutes(),
            max_active_per_patient: p.max_active_per_patient,
            no_show_limit: p.no_show_limit,
            no_show_window_days: p.no_show_window.num_days(),
            no_show_email: p.no_show_email,
        }
    }
}

/// A clinic's own rules (null: the default) and the rules in force.
#[derive(Debug, Serialize, Apiv2Schema)]
pub struct ClinicPolicyResponse {
    pub min_notice_minutes: Option<i32>,
    pub horizon_days: Option<i32>,
    pub change_deadline_minutes: Option<i32>,
    pub max_active_per_patient: Option<i32>,
    pub no_show_limit: Option<i32>,
    pub no_show_window_days: Option<i32>,
    pub no_show_email: bool,
    pub effective: EffectivePolicy,
}

impl From<(ClinicPolicy, BookingPolicy)> for ClinicPolicyResponse {
    fn from((c, effective): (ClinicPolicy, BookingPolicy)) -> Self {
        Self {
            min_notice_minutes: c.min_notice_minutes,
            horizon_days: c.horizon_days,
            change_deadline_minutes: c.change_deadline_minutes,
            max_active_per_patient: c.max_active_per_patient,
            no_show_limit: c.no_show_limit,
            no_show_window_days: c.no_show_window_days,
            no_show_email: c.no_show_email,
            effective: effective.into(),
        }
    }
}

/// A doctor's overrides (null: the clinic's rule) and the rules in force.
#[derive(Debug, Serialize, Apiv2Schema)]
pub struct DoctorPolicyResponse {
    pub min_notice_minutes: Option<i32>,
    pub horizon_days: Option<i32>,
    pub change_deadline_minutes: Option<i32>,
    pub effective: EffectivePolicy,
}

impl From<(DoctorPolicy, BookingPolicy)> for DoctorPolicyResponse {
    fn from((d, effective): (DoctorPolicy, BookingPolicy)) -> Self {
        Self {
            min_notice_minutes: d.min_notice_minutes,
            horizon_days: d.horizon_days,
            change_deadline_minutes: d.change_deadline_minutes,
            effective: effective.into(),
        }
    }
}
