//! The iCalendar (RFC 5545) part of the emails: one VEVENT per appointment, identified
//! by the appointment id, so a calendar updates the same entry on reschedule and
//! removes it on cancellation.
//!
//! Names and addresses come from users, so each kind of slot has its own encoder and
//! nothing a user typed can end a content line or start a parameter: property values
//! are TEXT-escaped ([`text`]), parameter values are quoted and caret-encoded
//! ([`param`]), calendar addresses lose their control characters ([`address`]).

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

/// Escapes a TEXT value (RFC 5545 §3.3.11). Control characters other than a line
/// break (escaped) and a tab (allowed) are dropped: TEXT has no room for them.
fn text(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            ';' => out.push_str("\\;"),
            ',' => out.push_str("\\,"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push('\t'),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

/// Encodes a parameter value (RFC 5545 §3.2) as a quoted-string, so that `;`, `:` and
/// `,` stay inside it, with RFC 6868 caret encoding for what a quoted-string cannot
/// hold: `^` becomes `^^`, a line break (CRLF, LF or CR) `^n`, and `"` `^'`. Other
/// control characters are dropped; a tab is allowed (`QSAFE-CHAR` includes `WSP`).
/// TEXT escaping (backslashes) means nothing inside a parameter.
fn param(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '^' => out.push_str("^^"),
            '"' => out.push_str("^'"),
            '\r' => {
                chars.next_if_eq(&'\n');
                out.push_str("^n");
            }
            '\n' => out.push_str("^n"),
            '\t' => out.push('\t'),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A `mailto:` calendar address (RFC 5545 §3.3.3) for `email`. The address was
/// validated where it was entered; its control characters are dropped all the same,
/// so that it can never end the content line.
fn address(email: &str) -> String {
    let email: String = email.chars().filter(|c| !c.is_control()).collect();
    format!("mailto:{email}")
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

/// The calendar for appointment `a` as an event at `occurred_at` left it. `SEQUENCE` is
/// the appointment's version (booked 1, each change + 1), so a later change always
/// wins in the patient's calendar, however close together the changes were.
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
        format!("SEQUENCE:{}", a.version.max(0)),
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
        format!("ORGANIZER:{}", address(organizer)),
        format!(
            "ATTENDEE;CN={};ROLE=REQ-PARTICIPANT:{}",
            param(&a.patient.full_name),
            address(&a.patient.email)
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
    use chrono::TimeZone;
    use medbook_shared::events::{ClinicInfo, DoctorInfo, PatientInfo};
    use uuid::Uuid;

    /// A full name that tries to close the CN parameter, add a parameter, end the
    /// property and start a new component.
    const HOSTILE_NAME: &str = "Ann \"Boss\"; ROLE=CHAIR:mailto:evil@x\nBEGIN:VEVENT";

    fn snapshot(full_name: &str, email: &str) -> AppointmentSnapshot {
        AppointmentSnapshot {
            appointment_id: Uuid::new_v4(),
            slot_id: Uuid::new_v4(),
            starts_at: Utc.with_ymd_and_hms(2026, 12, 1, 9, 30, 0).unwrap(),
            ends_at: Utc.with_ymd_and_hms(2026, 12, 1, 10, 0, 0).unwrap(),
            reason: "Check-up".into(),
            patient: PatientInfo {
                id: Uuid::new_v4(),
                email: email.into(),
                full_name: full_name.into(),
            },
            doctor: DoctorInfo {
                id: Uuid::new_v4(),
                full_name: "Dr. Mia Chen".into(),
                specialty: "Cardiology".into(),
            },
            clinic: ClinicInfo {
                id: Uuid::new_v4(),
                name: "Central".into(),
                city: "Berlin".into(),
                address: "Hauptstr. 1".into(),
                time_zone: "Europe/Berlin".into(),
            },
            version: 1,
        }
    }

    fn calendar(full_name: &str, email: &str) -> String {
        let at = Utc.with_ymd_and_hms(2026, 11, 22, 8, 0, 0).unwrap();
        event(
            &snapshot(full_name, email),
            at,
            "no-reply@medbook.local",
            Status::Confirmed,
        )
    }

    #[test]
    fn the_sequence_is_the_appointment_version_not_the_clock() {
        let at = Utc.with_ymd_and_hms(2026, 11, 22, 8, 0, 0).unwrap();
        let mut a = snapshot("Ana", "ana@example.com");
        // Two changes within one second still order: only the version counts.
        for version in [1, 2, 3] {
            a.version = version;
            let ics = event(&a, at, "no-reply@medbook.local", Status::Confirmed);
            let lines = unfolded(&ics);
            assert!(lines.contains(&format!("SEQUENCE:{version}")), "{lines:?}");
        }
    }

    /// The content lines of `ics` as a calendar client sees them: every physical line
    /// ends with CRLF, none is longer than 75 octets, and folds are undone (§3.1).
    fn unfolded(ics: &str) -> Vec<String> {
        let body = ics.strip_suffix("\r\n").expect("ends with CRLF");
        for physical in body.split("\r\n") {
            assert!(
                physical.len() <= 75,
                "{} octets: {physical:?}",
                physical.len()
            );
            assert!(
                !physical.contains(['\r', '\n']),
                "a bare line break: {physical:?}"
            );
        }
        body.replace("\r\n ", "")
            .split("\r\n")
            .map(str::to_owned)
            .collect()
    }

    /// One content line split as RFC 5545 §3.1 reads it: the name, then parameters
    /// up to the first `:` outside quotes, each parameter ending at a `;` outside
    /// quotes; then the value.
    fn parse(line: &str) -> (String, Vec<(String, String)>, String) {
        let mut parts = vec![String::new()];
        let mut quoted = false;
        let mut value = None;
        for (i, c) in line.char_indices() {
            match c {
                '"' => quoted = !quoted,
                ';' if !quoted => {
                    parts.push(String::new());
                    continue;
                }
                ':' if !quoted => {
                    value = Some(line[i + 1..].to_owned());
                    break;
                }
                _ => {}
            }
            parts.last_mut().unwrap().push(c);
        }
        assert!(!quoted, "an unterminated quoted-string in {line:?}");
        let name = parts.remove(0);
        let params = parts
            .into_iter()
            .map(|p| {
                let (k, v) = p.split_once('=').expect("a parameter is NAME=value");
                (k.to_owned(), v.to_owned())
            })
            .collect();
        (name, params, value.expect("a content line has a value"))
    }

    /// Undoes RFC 6868 caret encoding on a quoted parameter value.
    fn decode_param(v: &str) -> String {
        let inner = v.strip_prefix('"').and_then(|v| v.strip_suffix('"'));
        let mut chars = inner.expect("a quoted-string").chars();
        let mut out = String::new();
        while let Some(c) = chars.next() {
            if c != '^' {
                out.push(c);
                continue;
            }
            match chars.next() {
                Some('n') => out.push('\n'),
                Some('\'') => out.push('"'),
                Some('^') => out.push('^'),
                other => panic!("a stray caret before {other:?}"),
            }
        }
        out
    }

    #[test]
    fn a_hostile_name_stays_inside_the_quoted_cn_parameter() {
        let ics = calendar(HOSTILE_NAME, "ann@example.com");
        let lines = unfolded(&ics);
        assert_eq!(
            lines.iter().filter(|l| l.starts_with("ATTENDEE")).count(),
            1,
            "{ics}"
        );
        assert_eq!(lines.iter().filter(|l| *l == "BEGIN:VEVENT").count(), 1);
        assert_eq!(lines.iter().filter(|l| l.starts_with("BEGIN:")).count(), 2);
        let attendee = lines.iter().find(|l| l.starts_with("ATTENDEE")).unwrap();
        assert_eq!(
            attendee,
            "ATTENDEE;CN=\"Ann ^'Boss^'; ROLE=CHAIR:mailto:evil@x^nBEGIN:VEVENT\";\
             ROLE=REQ-PARTICIPANT:mailto:ann@example.com"
        );
        let (name, params, value) = parse(attendee);
        assert_eq!(name, "ATTENDEE");
        let keys: Vec<&str> = params.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["CN", "ROLE"], "{params:?}");
        assert_eq!(params[1].1, "REQ-PARTICIPANT");
        assert_eq!(decode_param(&params[0].1), HOSTILE_NAME);
        assert_eq!(value, "mailto:ann@example.com");
        // No other line carries a parameter or names the injected role.
        for line in &lines {
            let (name, params, _) = parse(line);
            assert!(params.is_empty() || name == "ATTENDEE", "{line}");
        }
    }

    #[test]
    fn parameter_values_are_quoted_and_caret_encoded() {
        assert_eq!(param("Ann O'Neil"), "\"Ann O'Neil\"");
        assert_eq!(param("a;b:c,d"), "\"a;b:c,d\"");
        assert_eq!(param("x^y \"z\""), "\"x^^y ^'z^'\"");
        assert_eq!(param("a\r\nb\nc\rd"), "\"a^nb^nc^nd\"");
        assert_eq!(param("a\u{0}b\u{7f}c\u{1b}d\te"), "\"abcd\te\"");
        assert_eq!(param(""), "\"\"");
    }

    #[test]
    fn an_address_cannot_end_its_line() {
        let ics = calendar("Ann", "ann@example.com\r\nATTENDEE:mailto:evil@x");
        let lines = unfolded(&ics);
        let attendees: Vec<&String> = lines.iter().filter(|l| l.starts_with("ATTENDEE")).collect();
        assert_eq!(attendees.len(), 1, "{ics}");
        assert!(attendees[0].ends_with(":mailto:ann@example.comATTENDEE:mailto:evil@x"));
        assert_eq!(address("a@b.c\u{0}\n"), "mailto:a@b.c");
    }

    #[test]
    fn a_long_quoted_name_folds_and_unfolds_to_the_same_parameter() {
        let name = format!("Ann \"{}\" Lima", "é^".repeat(60));
        let ics = calendar(&name, "ann@example.com");
        let lines = unfolded(&ics);
        let attendee = lines.iter().find(|l| l.starts_with("ATTENDEE")).unwrap();
        let (_, params, _) = parse(attendee);
        assert_eq!(decode_param(&params[0].1), name);
    }

    #[test]
    fn text_values_are_escaped() {
        assert_eq!(text("a;b,c\\d\ne"), "a\\;b\\,c\\\\d\\ne");
        assert_eq!(text("a\r\nb\u{0}c\u{1b}d\te"), "a\\nbcd\te");
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
