//! iCalendar (RFC 5545) for appointments, in the two places a calendar meets them: the
//! part of a patient's e-mail their calendar takes in ([`event`]: one VEVENT, iTIP
//! `METHOD:REQUEST` or `CANCEL`, RFC 5546), and the subscription feeds booking-service
//! serves ([`feed`]: many VEVENTs, `METHOD:PUBLISH`). One function writes every VEVENT
//! ([`vevent`]), identified by the appointment id with the appointment's version as
//! `SEQUENCE`, so a calendar that has both the invitation and the feed holds one entry,
//! updated on reschedule and marked cancelled on cancellation.
//!
//! Names and addresses come from users, so each kind of slot has its own encoder and
//! nothing a user typed can end a content line or start a parameter: property values
//! are TEXT-escaped ([`text`]), parameter values are quoted and caret-encoded
//! ([`param`]), calendar addresses lose their control characters ([`address`]).

use crate::events::AppointmentSnapshot;
use chrono::{DateTime, Utc};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Confirmed,
    Cancelled,
}

impl Status {
    /// The iTIP method (RFC 5546) of an e-mail's calendar part.
    pub fn method(self) -> &'static str {
        match self {
            Status::Confirmed => "REQUEST",
            Status::Cancelled => "CANCEL",
        }
    }

    /// The VEVENT's `STATUS`.
    fn as_str(self) -> &'static str {
        match self {
            Status::Confirmed => "CONFIRMED",
            Status::Cancelled => "CANCELLED",
        }
    }
}

/// How a VEVENT travels, which decides whether it names its attendee.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Delivery {
    /// An iTIP request or cancellation sent to the patient: it names them (`ATTENDEE`).
    Invitation,
    /// A published calendar (`METHOD:PUBLISH`): RFC 5546 §3.2.1 allows no `ATTENDEE`,
    /// and a feed's URL is shared more widely than a mailbox, so no patient's address
    /// is in it.
    Publication,
}

/// One appointment of a feed: as it is now (`status`), last changed at `stamp`
/// (the VEVENT's `DTSTAMP`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FeedEntry<'a> {
    pub appointment: &'a AppointmentSnapshot,
    pub status: Status,
    pub stamp: DateTime<Utc>,
}

fn utc(t: DateTime<Utc>) -> String {
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

/// The longest physical line, in octets, without its CRLF (§3.1).
const LINE_OCTETS: usize = 75;

/// Folds a content line at 75 octets without splitting a UTF-8 character (§3.1).
/// Where it can, it folds before a run of spaces or tabs rather than after it, so that
/// no physical line ends in one: §3.1 keeps such whitespace, but readers that trim
/// each physical line (the `ical` crate does) would lose a space of the value.
fn fold(line: &str) -> String {
    let mut out = String::with_capacity(line.len() + line.len() / 74 * 3);
    // The physical line being written; after the first, it starts with the fold's space.
    let mut current = String::with_capacity(LINE_OCTETS);
    for c in line.chars() {
        if current.len() + c.len_utf8() > LINE_OCTETS {
            let fold_space = usize::from(!out.is_empty());
            let kept = current.trim_end_matches([' ', '\t']).len();
            let blanks = current.len() - kept;
            // The blanks move on when something stays behind and they fit there.
            let moved = kept > fold_space && 1 + blanks + c.len_utf8() <= LINE_OCTETS;
            let carried = current.split_off(if moved { kept } else { current.len() });
            out.push_str(&current);
            out.push_str("\r\n");
            current = format!(" {carried}");
        }
        current.push(c);
    }
    out.push_str(&current);
    out
}

/// Folds `lines` and ends each with CRLF.
fn write(lines: &[String]) -> String {
    let mut out = String::new();
    for line in lines {
        out.push_str(&fold(line));
        out.push_str("\r\n");
    }
    out
}

/// The VEVENT of appointment `a`, unfolded, added to `lines`: the one writer of
/// appointments for e-mails and feeds alike. `SEQUENCE` is the appointment's version
/// (booked 1, each change + 1), so a later change always wins in the patient's
/// calendar, however close together the changes were; `stamp` is its `DTSTAMP`.
fn vevent(
    lines: &mut Vec<String>,
    a: &AppointmentSnapshot,
    stamp: DateTime<Utc>,
    organizer: &str,
    status: Status,
    delivery: Delivery,
) {
    lines.extend([
        "BEGIN:VEVENT".to_owned(),
        format!("UID:{}@medbook", a.appointment_id),
        format!("SEQUENCE:{}", a.version.max(0)),
        format!("DTSTAMP:{}", utc(stamp)),
        format!("DTSTART:{}", utc(a.starts_at)),
        format!("DTEND:{}", utc(a.ends_at)),
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
    ]);
    if delivery == Delivery::Invitation {
        lines.push(format!(
            "ATTENDEE;CN={};ROLE=REQ-PARTICIPANT:{}",
            param(&a.patient.full_name),
            address(&a.patient.email)
        ));
    }
    lines.extend([
        format!("STATUS:{}", status.as_str()),
        "END:VEVENT".to_owned(),
    ]);
}

/// The calendar part of an e-mail about appointment `a`, as an event at `occurred_at`
/// left it: the iTIP request (`Confirmed`) or cancellation (`Cancelled`) for the patient.
pub fn event(
    a: &AppointmentSnapshot,
    occurred_at: DateTime<Utc>,
    organizer: &str,
    status: Status,
) -> String {
    let mut lines = vec![
        "BEGIN:VCALENDAR".to_owned(),
        "VERSION:2.0".to_owned(),
        "PRODID:-//medbook//notification-service//EN".to_owned(),
        format!("METHOD:{}", status.method()),
    ];
    vevent(
        &mut lines,
        a,
        occurred_at,
        organizer,
        status,
        Delivery::Invitation,
    );
    lines.push("END:VCALENDAR".to_owned());
    write(&lines)
}

/// A subscription calendar (RFC 5545, METHOD:PUBLISH, X-WR-CALNAME) of these
/// appointments: each VEVENT is built by the same code as the e-mail attachment's (same
/// UID, SEQUENCE, escaping), so a calendar that has both sees one entry.
///
/// The VEVENTs carry no `ATTENDEE` (see [`Delivery::Publication`]). A feed with no
/// entries is a calendar without components, as feed servers commonly serve an empty
/// calendar (RFC 5545 asks for at least one; calendar clients accept none).
pub fn feed(calendar_name: &str, organizer: &str, entries: &[FeedEntry<'_>]) -> String {
    let mut lines = vec![
        "BEGIN:VCALENDAR".to_owned(),
        "VERSION:2.0".to_owned(),
        "PRODID:-//medbook//calendar-feed//EN".to_owned(),
        "CALSCALE:GREGORIAN".to_owned(),
        "METHOD:PUBLISH".to_owned(),
        format!("X-WR-CALNAME:{}", text(calendar_name)),
    ];
    for e in entries {
        vevent(
            &mut lines,
            e.appointment,
            e.stamp,
            organizer,
            e.status,
            Delivery::Publication,
        );
    }
    lines.push("END:VCALENDAR".to_owned());
    write(&lines)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::{ClinicInfo, DoctorInfo, PatientInfo};
    use chrono::TimeZone;
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
            manage_url: None,
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

    #[test]
    fn no_physical_line_ends_in_a_blank_when_the_fold_can_go_before_it() {
        for line in [
            format!("DESCRIPTION:{}.", "ab ".repeat(80)),
            format!("DESCRIPTION:{}.", "abcd    ".repeat(40)),
            format!("SUMMARY:{}.", "é \t".repeat(70)),
        ] {
            let folded = fold(&line);
            for physical in folded.split("\r\n") {
                assert!(physical.len() <= 75, "{} octets", physical.len());
                assert!(!physical.ends_with([' ', '\t']), "{physical:?}");
            }
            assert_eq!(folded.replace("\r\n ", ""), line);
        }
        // Nothing but blanks on a line: there is nowhere else to fold, and it still
        // unfolds to the same line.
        let line = format!("DESCRIPTION:a{}b", " ".repeat(200));
        let folded = fold(&line);
        assert!(folded.split("\r\n").all(|l| l.len() <= 75));
        assert_eq!(folded.replace("\r\n ", ""), line);
    }

    /// A doctor's name that tries to end the VEVENT and start one of its own.
    const HOSTILE_DOCTOR: &str =
        "Mia\r\nEND:VEVENT\nBEGIN:VEVENT\nUID:evil@medbook; \"Chen\", \\ MD";

    fn at(h: u32, m: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 12, 1, h, m, 0).unwrap()
    }

    /// Undoes TEXT escaping (§3.3.11), which the `ical` crate leaves to its caller.
    fn unescape(v: &str) -> String {
        let mut out = String::new();
        let mut chars = v.chars();
        while let Some(c) = chars.next() {
            if c != '\\' {
                out.push(c);
                continue;
            }
            match chars.next() {
                Some('n' | 'N') => out.push('\n'),
                Some(c @ ('\\' | ';' | ',')) => out.push(c),
                other => panic!("a stray backslash before {other:?}"),
            }
        }
        out
    }

    /// `ics` as an independent reader (the `ical` crate) sees it: exactly one calendar.
    fn read(ics: &str) -> ical::parser::ical::component::IcalCalendar {
        let mut calendars = ical::IcalParser::new(std::io::BufReader::new(ics.as_bytes()));
        let calendar = calendars
            .next()
            .expect("a calendar")
            .unwrap_or_else(|e| panic!("{e}: {ics}"));
        assert!(calendars.next().is_none(), "one calendar: {ics}");
        calendar
    }

    /// The value of the only property `name` in `properties`.
    fn only<'p>(properties: &'p [ical::property::Property], name: &str) -> &'p str {
        let found: Vec<&ical::property::Property> =
            properties.iter().filter(|p| p.name == name).collect();
        assert_eq!(found.len(), 1, "one {name}: {properties:?}");
        found[0].value.as_deref().unwrap_or("")
    }

    /// Three appointments, the second moved twice and then cancelled, the third of a
    /// doctor with a hostile name and a long reason full of spaces and separators.
    fn feed_appointments() -> Vec<AppointmentSnapshot> {
        let mut first = snapshot("Ana", "ana@example.com");
        first.starts_at = at(8, 0);
        first.ends_at = at(8, 30);
        let mut second = snapshot("Ben", "ben@example.com");
        second.starts_at = at(9, 0);
        second.ends_at = at(9, 30);
        second.version = 3;
        let mut third = snapshot(HOSTILE_NAME, "cid@example.com");
        third.starts_at = at(10, 15);
        third.ends_at = at(11, 0);
        third.version = 2;
        third.doctor.full_name = HOSTILE_DOCTOR.into();
        // Ends in a letter: a reader trims the blanks that end a content line.
        third.reason = format!(
            "{}end",
            "Back pain; since Monday, worse at night \\ ".repeat(6)
        );
        third.clinic.name = "Praxis \"Nord\", Haus 2".into();
        vec![first, second, third]
    }

    const CALENDAR_NAME: &str = "Dr. Mia Chen; \"Praxis\", Berlin\r\nMETHOD:REQUEST";

    fn entries(appointments: &[AppointmentSnapshot]) -> Vec<FeedEntry<'_>> {
        appointments
            .iter()
            .zip([Status::Confirmed, Status::Cancelled, Status::Confirmed])
            .map(|(appointment, status)| FeedEntry {
                appointment,
                status,
                stamp: Utc.with_ymd_and_hms(2026, 11, 20, 7, 0, 0).unwrap()
                    + chrono::Duration::minutes(i64::from(appointment.version)),
            })
            .collect()
    }

    #[test]
    fn a_feed_reads_back_as_one_published_calendar_of_every_appointment() {
        let appointments = feed_appointments();
        let entries = entries(&appointments);
        let ics = feed(CALENDAR_NAME, "no-reply@medbook.local", &entries);
        let lines = unfolded(&ics);
        assert_eq!(lines.first().map(String::as_str), Some("BEGIN:VCALENDAR"));
        assert_eq!(lines.last().map(String::as_str), Some("END:VCALENDAR"));
        let calendar = read(&ics);
        assert_eq!(only(&calendar.properties, "VERSION"), "2.0");
        assert_eq!(only(&calendar.properties, "METHOD"), "PUBLISH");
        assert_eq!(
            unescape(only(&calendar.properties, "X-WR-CALNAME")),
            // The line break became an escaped one: no second METHOD.
            "Dr. Mia Chen; \"Praxis\", Berlin\nMETHOD:REQUEST"
        );
        assert_eq!(calendar.events.len(), 3, "{ics}");
        let expected = [
            ("CONFIRMED", "20261201T080000Z", "20261201T083000Z", 1),
            ("CANCELLED", "20261201T090000Z", "20261201T093000Z", 3),
            ("CONFIRMED", "20261201T101500Z", "20261201T110000Z", 2),
        ];
        for ((event, a), (status, start, end, sequence)) in
            calendar.events.iter().zip(&appointments).zip(expected)
        {
            let p = &event.properties;
            assert_eq!(
                only(p, "UID"),
                format!("{}@medbook", a.appointment_id),
                "{ics}"
            );
            assert_eq!(only(p, "SEQUENCE"), sequence.to_string());
            assert_eq!(only(p, "STATUS"), status);
            assert_eq!(only(p, "DTSTART"), start);
            assert_eq!(only(p, "DTEND"), end);
            assert_eq!(
                only(p, "DTSTAMP"),
                format!("20261120T07{:02}00Z", a.version)
            );
            assert_eq!(only(p, "ORGANIZER"), "mailto:no-reply@medbook.local");
            assert_eq!(
                unescape(only(p, "SUMMARY")),
                format!(
                    "{} ({})",
                    a.doctor.full_name.replace("\r\n", "\n"),
                    a.doctor.specialty
                )
            );
            assert_eq!(unescape(only(p, "DESCRIPTION")), a.reason);
            assert_eq!(
                unescape(only(p, "LOCATION")),
                format!("{}, {}, {}", a.clinic.name, a.clinic.address, a.clinic.city)
            );
            // A published calendar names no attendee: no patient's name or address.
            assert!(p.iter().all(|p| p.name != "ATTENDEE"), "{p:?}");
            assert!(!ics.contains(&a.patient.email), "{ics}");
        }
        assert!(!ics.contains("Boss"), "a patient's name in the feed: {ics}");
    }

    #[test]
    fn a_feed_event_is_the_invitations_event_without_its_attendee() {
        // Built by one function: a calendar holding both sees one entry, and a change
        // to how appointments are written reaches e-mails and feeds alike.
        let appointments = feed_appointments();
        let entries = entries(&appointments);
        let published = unfolded(&feed(CALENDAR_NAME, "no-reply@medbook.local", &entries));
        let blocks: Vec<&[String]> = published.split(|l| l == "BEGIN:VEVENT").skip(1).collect();
        assert_eq!(blocks.len(), entries.len());
        for (block, e) in blocks.iter().zip(&entries) {
            let invitation = unfolded(&event(
                e.appointment,
                e.stamp,
                "no-reply@medbook.local",
                e.status,
            ));
            let start = invitation.iter().position(|l| l == "BEGIN:VEVENT").unwrap();
            let end = invitation.iter().position(|l| l == "END:VEVENT").unwrap();
            let expected: Vec<&String> = invitation[start + 1..=end]
                .iter()
                .filter(|l| !l.starts_with("ATTENDEE"))
                .collect();
            let end = block.iter().position(|l| l == "END:VEVENT").unwrap();
            let got: Vec<&String> = block[..=end].iter().collect();
            assert_eq!(got, expected);
        }
    }

    #[test]
    fn an_invitation_reads_back_with_its_hostile_attendee_inside_one_parameter() {
        let ics = calendar(HOSTILE_NAME, "ann@example.com");
        let calendar = read(&ics);
        assert_eq!(only(&calendar.properties, "METHOD"), "REQUEST");
        assert_eq!(calendar.events.len(), 1);
        let p = &calendar.events[0].properties;
        let attendee: Vec<&ical::property::Property> =
            p.iter().filter(|p| p.name == "ATTENDEE").collect();
        assert_eq!(attendee.len(), 1, "{p:?}");
        assert_eq!(attendee[0].value.as_deref(), Some("mailto:ann@example.com"));
        let params = attendee[0].params.as_ref().unwrap();
        let keys: Vec<&str> = params.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["CN", "ROLE"]);
        assert_eq!(
            params[0].1,
            ["Ann ^'Boss^'; ROLE=CHAIR:mailto:evil@x^nBEGIN:VEVENT"]
        );
        assert_eq!(only(p, "STATUS"), "CONFIRMED");
    }

    #[test]
    fn an_empty_feed_is_a_calendar_without_events() {
        let ics = feed("Nobody", "no-reply@medbook.local", &[]);
        let calendar = read(&ics);
        assert_eq!(only(&calendar.properties, "METHOD"), "PUBLISH");
        assert_eq!(only(&calendar.properties, "X-WR-CALNAME"), "Nobody");
        assert!(calendar.events.is_empty());
    }
}
