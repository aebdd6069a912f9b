//! Business metrics of the booking use cases: what was booked, cancelled (and by whom)
//! and rescheduled, and why bookings were refused (`slot_taken` is a conflict: someone
//! else was faster). Counted after the commit, so a rolled-back change never counts.
//! Labels are bounded: the actor's role and the refusal's error code.

use crate::domain::booking::BookingRejection;
use prometheus::{IntCounter, IntCounterVec, Opts, Registry};

/// The waitlist's event labels.
pub const WAITLIST_EVENTS: [&str; 5] = ["joined", "left", "offered", "offer_expired", "booked"];

#[derive(Clone)]
pub struct BookingMetrics {
    booked: IntCounter,
    cancelled: IntCounterVec,
    rescheduled: IntCounter,
    rejections: IntCounterVec,
    attendance: IntCounterVec,
    waitlist: IntCounterVec,
}

impl BookingMetrics {
    pub fn new(registry: &Registry) -> prometheus::Result<Self> {
        let m = Self::unregistered()?;
        registry.register(Box::new(m.booked.clone()))?;
        registry.register(Box::new(m.cancelled.clone()))?;
        registry.register(Box::new(m.rescheduled.clone()))?;
        registry.register(Box::new(m.rejections.clone()))?;
        registry.register(Box::new(m.attendance.clone()))?;
        registry.register(Box::new(m.waitlist.clone()))?;
        Ok(m)
    }

    fn unregistered() -> prometheus::Result<Self> {
        let m = Self {
            booked: IntCounter::new("appointments_booked_total", "Appointments booked")?,
            cancelled: IntCounterVec::new(
                Opts::new(
                    "appointments_cancelled_total",
                    "Appointments cancelled, by who cancelled (patient, admin)",
                ),
                &["by"],
            )?,
            rescheduled: IntCounter::new(
                "appointments_rescheduled_total",
                "Appointments moved to another slot",
            )?,
            rejections: IntCounterVec::new(
                Opts::new(
                    "booking_rejections_total",
                    "Bookings and reschedules refused, by the error code (slot_taken: a conflict)",
                ),
                &["reason"],
            )?,
            attendance: IntCounterVec::new(
                Opts::new(
                    "appointments_attendance_total",
                    "Started appointments recorded, by outcome (attended, no_show)",
                ),
                &["outcome"],
            )?,
            waitlist: IntCounterVec::new(
                Opts::new(
                    "waitlist_events_total",
                    "Waitlist activity: joined, left, offered, offer_expired, booked",
                ),
                &["event"],
            )?,
        };
        for outcome in ["attended", "no_show"] {
            m.attendance.with_label_values(&[outcome]);
        }
        for event in WAITLIST_EVENTS {
            m.waitlist.with_label_values(&[event]);
        }
        for by in ["patient", "admin"] {
            m.cancelled.with_label_values(&[by]);
        }
        for r in BookingRejection::ALL {
            m.rejections.with_label_values(&[r.code()]);
        }
        Ok(m)
    }

    pub fn booked(&self) {
        self.booked.inc();
    }

    pub fn cancelled(&self, by: &'static str) {
        self.cancelled.with_label_values(&[by]).inc();
    }

    pub fn rescheduled(&self) {
        self.rescheduled.inc();
    }

    pub fn attendance(&self, outcome: crate::domain::decisions::Attendance) {
        self.attendance.with_label_values(&[outcome.as_str()]).inc();
    }

    /// Counts `n` waitlist events of a kind ([`WAITLIST_EVENTS`]).
    pub fn waitlist(&self, event: &'static str, n: u64) {
        self.waitlist.with_label_values(&[event]).inc_by(n);
    }

    /// Counts a refusal of the booking rules (not an outage), by its code.
    pub fn refused(&self, r: BookingRejection) {
        self.rejections.with_label_values(&[r.code()]).inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn series_exist_before_any_booking() {
        let registry = Registry::new();
        BookingMetrics::new(&registry).unwrap();
        let text = prometheus::TextEncoder::new()
            .encode_to_string(&registry.gather())
            .unwrap();
        for line in [
            "appointments_booked_total 0",
            r#"appointments_cancelled_total{by="admin"} 0"#,
            r#"booking_rejections_total{reason="slot_taken"} 0"#,
            "appointments_rescheduled_total 0",
        ] {
            assert!(text.contains(line), "{line} in {text}");
        }
    }
}
