//! The iCalendar (RFC 5545) part of the emails: one VEVENT per appointment, identified
//! by the appointment id, so a calendar updates the same entry on reschedule and
//! removes it on cancellation.

use chrono::{DateTime, Utc};
use medbook_shared::events::AppointmentSnapshot;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Confirmed,
    Cancelled,
}

impl Status {
    /// The iTIP method (RFC 5546) of the calendar part.
    pub fn method(self) -> &'static str {
        match self {
            Status::Confirmed => "REQUEST",
            Status::Cancelled => "CANCEL",
        }
    }
}

fn stamp(t: DateTime<Utc>) -> String {
    t.format("%Y%m%dT%H%M%SZ").to_string()
}

/// Escapes a TEXT value (RFC 5545 §3.3.11).
fn text(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            ';' => out.push_str("\\;"),
            ',' => out.push_str("\\,"),
            '\n' => out.push_str("\\n"),
            '\r' => {}
            c => out.push(c),
        }
    }
    out
}

/// Folds a content line at 75 octets without splitting a UTF-8 character (§3.1).
fn fold(line: &str) -> String {
    let mut out = String::with_capacity(line.len() + line.len() / 74 * 3);
    let mut width = 0;
    for c in line.chars() {
        let n = c.len_utf8();
        if width + n > 75 {
            out.push_str("\r\n ");
            width = 1;
        }
        out.push(c);
        width += n;
    }
    out
}

/// The calendar for appointment `a` as an event at `occurred_at` left it. `SEQUENCE`
/// grows with the event time, so later changes win in the patient's calendar.
pub fn event(
    a: &AppointmentSnapshot,
    occurred_at: DateTime<Utc>,
    organizer: &str,
    status: Status,
) -> String {
    let lines = [
        "BEGIN:VCALENDAR".to_owned(),
        "VERSION:2.0".to_owned(),
        "PRODID:-//medbook//notification-service//EN".to_owned(),
        format!("METHOD:{}", status.method()),
        "BEGIN:VEVENT".to_owned(),
        format!("UID:{}@medbook", a.appointment_id),
        format!("SEQUENCE:{}", occurred_at.timestamp().max(0)),
        format!("DTSTAMP:{}", stamp(occurred_at)),
        format!("DTSTART:{}", stamp(a.starts_at)),
        format!("DTEND:{}", stamp(a.ends_at)),
        format!(
            "SUMMARY:{}",
            text(&format!("{} ({})", a.doctor.full_name, a.doctor.specialty))
        ),
        format!(
            "LOCATION:{}",
            text(&format!(
                "{}, {}, {}",
                a.clinic.name, a.clinic.address, a.clinic.city
            ))
        ),
        format!("DESCRIPTION:{}", text(&a.reason)),
        format!("ORGANIZER:mailto:{organizer}"),
        format!(
            "ATTENDEE;CN={};ROLE=REQ-PARTICIPANT:mailto:{}",
            text(&a.patient.full_name).replace(':', " "),
            a.patient.email
        ),
        format!(
            "STATUS:{}",
            match status {
                Status::Confirmed => "CONFIRMED",
                Status::Cancelled => "CANCELLED",
            }
        ),
        "END:VEVENT".to_owned(),
        "END:VCALENDAR".to_owned(),
    ];
    let mut out = String::new();
    for line in lines {
        out.push_str(&fold(&line));
        out.push_str("\r\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_values_are_escaped() {
        assert_eq!(text("a;b,c\\d\ne"), "a\\;b\\,c\\\\d\\ne");
    }

    #[test]
    fn long_lines_fold_at_75_octets_on_char_boundaries() {
        let line = format!("DESCRIPTION:{}", "é".repeat(100));
        let folded = fold(&line);
        for part in folded.split("\r\n") {
            assert!(part.len() <= 75, "{} octets", part.len());
        }
        assert_eq!(folded.replace("\r\n ", ""), line);
    }
}
