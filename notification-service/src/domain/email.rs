//! The emails patients receive about their appointments: one per appointment event — a
//! plain-text and an HTML body, and, while the appointment is ahead, an iCalendar part
//! their calendar can take in (`medbook_shared::ics`). [`render`] also dispatches the
//! account e-mails ([`super::account_email`]) and the waitlist offers
//! ([`super::waitlist_email`]). Appointment times are shown in the clinic's own time
//! zone, with the zone named, because that is where the patient has to be.
//!
//! The confirmation, the reschedule notice and the reminder carry the patient's manage
//! link (`manage_url`: see, cancel or reschedule without logging in), the same in each;
//! the cancellation and the no-show notice do not, as the link no longer works then. A
//! manage link that is not a plain http(s) URL is left out rather than shown: the
//! e-mail still tells the patient about their appointment.

use super::mail::{escape_html, web_link, CalendarPart, Email, RenderError};
use super::{account_email, waitlist_email};
use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use medbook_shared::events::{
    AppointmentEvent, AppointmentSnapshot, CancelledBy, Event, EventEnvelope,
};
use medbook_shared::ics;

/// Renders the email for `event`. `organizer` is the sender's address, named in the
/// calendar part of appointment emails.
pub fn render(event: &EventEnvelope, organizer: &str) -> Result<Email, RenderError> {
    match &event.event {
        Event::Appointment(e) => render_appointment(event, e, organizer),
        Event::Account(e) => account_email::render(event, e),
        Event::Waitlist(offer) => waitlist_email::render(event, offer),
    }
}

/// What one appointment e-mail says, before it is laid out as text and HTML.
struct Content {
    subject: String,
    lead: String,
    /// Rows after the appointment's details.
    extra: Vec<(String, String)>,
    /// The calendar part, if the e-mail has one.
    calendar: Option<ics::Status>,
    /// Whether the patient's manage link is offered (while it works).
    manage: bool,
    /// Paragraphs before the signature.
    outro: Vec<String>,
}

fn render_appointment(
    event: &EventEnvelope,
    appointment_event: &AppointmentEvent,
    organizer: &str,
) -> Result<Email, RenderError> {
    let a = appointment_event.appointment();
    let tz = time_zone(&a.clinic.time_zone)?;
    let when = local_range(a.starts_at, a.ends_at, tz);
    let on = short_date(a.starts_at, tz);
    let doctor = &a.doctor.full_name;
    let content = match appointment_event {
        AppointmentEvent::Created(_) => Content {
            subject: format!("Appointment confirmed: {doctor} on {on}"),
            lead: "your appointment is booked.".to_owned(),
            extra: Vec::new(),
            calendar: Some(ics::Status::Confirmed),
            manage: true,
            outro: Vec::new(),
        },
        AppointmentEvent::Rescheduled(r) => Content {
            subject: format!("Appointment moved: {doctor} now on {on}"),
            lead: "your appointment has been moved to a new time.".to_owned(),
            extra: vec![(
                "Previously".to_owned(),
                local_range(r.previous.starts_at, r.previous.ends_at, tz),
            )],
            calendar: Some(ics::Status::Confirmed),
            manage: true,
            outro: Vec::new(),
        },
        AppointmentEvent::Reminder(_) => Content {
            subject: format!("Reminder: {doctor} on {on}"),
            lead: "this is a reminder of your upcoming appointment.".to_owned(),
            extra: Vec::new(),
            calendar: Some(ics::Status::Confirmed),
            manage: true,
            outro: Vec::new(),
        },
        AppointmentEvent::Cancelled(c) => {
            let by = match c.cancelled_by {
                CancelledBy::Patient => "as you asked",
                CancelledBy::Admin => "by the clinic",
            };
            let mut extra = Vec::new();
            if let Some(reason) = c.cancel_reason.as_deref().filter(|r| !r.trim().is_empty()) {
                extra.push(("Cancellation reason".to_owned(), reason.to_owned()));
            }
            Content {
                subject: format!("Appointment cancelled: {doctor} on {on}"),
                lead: format!("your appointment has been cancelled {by}."),
                extra,
                calendar: Some(ics::Status::Cancelled),
                manage: false,
                outro: Vec::new(),
            }
        }
        // Sent only when the clinic asked for it (`email_patient`); the service decides.
        // The visit is over: no calendar part, no manage link.
        AppointmentEvent::NoShow(_) => Content {
            subject: format!("We missed you: {doctor} on {on}"),
            lead: "we missed you at your appointment.".to_owned(),
            extra: Vec::new(),
            calendar: None,
            manage: false,
            outro: vec![
                "If something kept you from coming, we hope all is well. You are welcome \
                 to book a new appointment whenever it suits you."
                    .to_owned(),
            ],
        },
    };
    let mut rows = details(a, &when);
    rows.extend(content.extra);
    let body = Body {
        greeting: format!("Hello {},", a.patient.full_name),
        lead: content.lead,
        rows,
        manage_url: a
            .manage_url
            .as_deref()
            .filter(|_| content.manage)
            .and_then(|url| web_link(url).ok()),
        calendar: content.calendar.is_some(),
        outro: content.outro,
    };
    let calendar = content.calendar.map(|status| CalendarPart {
        method: status.method(),
        content: ics::event(a, event.occurred_at, organizer, status),
    });
    Ok(Email {
        to_name: Some(a.patient.full_name.clone()),
        to_address: a.patient.email.clone(),
        subject: content.subject,
        text: text_body(&body),
        html: html_body(&body),
        calendar,
        message_id: format!("<{}@medbook>", event.id),
        event_id: event.id.to_string(),
    })
}

/// The rows every appointment e-mail shows.
fn details(a: &AppointmentSnapshot, when: &str) -> Vec<(String, String)> {
    let mut rows = vec![
        ("When".to_owned(), when.to_owned()),
        (
            "Doctor".to_owned(),
            format!("{} ({})", a.doctor.full_name, a.doctor.specialty),
        ),
        (
            "Where".to_owned(),
            format!("{}, {}, {}", a.clinic.name, a.clinic.address, a.clinic.city),
        ),
    ];
    if !a.reason.trim().is_empty() {
        rows.push(("Reason".to_owned(), a.reason.clone()));
    }
    rows.push(("Appointment".to_owned(), a.appointment_id.to_string()));
    rows
}

/// The clinic's time zone, by its IANA name.
pub(super) fn time_zone(name: &str) -> Result<Tz, RenderError> {
    name.parse()
        .map_err(|_| RenderError::UnknownTimeZone(name.to_owned()))
}

/// `Tuesday, 1 December 2026, 10:30–11:00 CET (Europe/Berlin)`.
pub fn local_range(starts_at: DateTime<Utc>, ends_at: DateTime<Utc>, tz: Tz) -> String {
    let start = starts_at.with_timezone(&tz);
    let end = ends_at.with_timezone(&tz);
    let end_fmt = if start.date_naive() == end.date_naive() {
        end.format("%H:%M").to_string()
    } else {
        end.format("%A, %-d %B %Y, %H:%M").to_string()
    };
    format!(
        "{}–{} {} ({})",
        start.format("%A, %-d %B %Y, %H:%M"),
        end_fmt,
        start.format("%Z"),
        tz.name()
    )
}

/// `Tuesday, 1 December 2026, 10:15 CET (Europe/Berlin)`.
pub fn local_time(t: DateTime<Utc>, tz: Tz) -> String {
    let local = t.with_timezone(&tz);
    format!(
        "{} ({})",
        local.format("%A, %-d %B %Y, %H:%M %Z"),
        tz.name()
    )
}

/// `1 Dec 2026, 10:30`, for subjects.
pub(super) fn short_date(t: DateTime<Utc>, tz: Tz) -> String {
    t.with_timezone(&tz).format("%-d %b %Y, %H:%M").to_string()
}

/// `Key: value` lines.
pub(super) fn text_rows(rows: &[(String, String)]) -> String {
    rows.iter().map(|(k, v)| format!("{k}: {v}\n")).collect()
}

/// An HTML table of the rows, escaped.
pub(super) fn html_rows(rows: &[(String, String)]) -> String {
    let mut table = String::from("<table>");
    for (k, v) in rows {
        table.push_str(&format!(
            "<tr><th align=\"left\" style=\"padding-right:1em\">{}</th><td>{}</td></tr>",
            escape_html(k),
            escape_html(v)
        ));
    }
    table.push_str("</table>");
    table
}

/// An appointment e-mail, laid out once for text and HTML.
struct Body<'a> {
    greeting: String,
    lead: String,
    rows: Vec<(String, String)>,
    /// A plain http(s) URL ([`web_link`]).
    manage_url: Option<&'a str>,
    calendar: bool,
    outro: Vec<String>,
}

/// The label of the manage link, in both parts.
const MANAGE: &str = "Cancel or reschedule:";
const CALENDAR_ATTACHED: &str = "The calendar entry is attached.";

fn text_body(b: &Body<'_>) -> String {
    let mut out = format!("{}\n\n{}\n\n{}", b.greeting, b.lead, text_rows(&b.rows));
    let mut paragraphs: Vec<String> = Vec::new();
    if let Some(url) = b.manage_url {
        paragraphs.push(format!("{MANAGE} {url}"));
    }
    if b.calendar {
        paragraphs.push(CALENDAR_ATTACHED.to_owned());
    }
    paragraphs.extend(b.outro.iter().cloned());
    paragraphs.push("— medbook".to_owned());
    for p in paragraphs {
        out.push('\n');
        out.push_str(&p);
        out.push('\n');
    }
    out
}

fn html_body(b: &Body<'_>) -> String {
    let p = |s: &str| format!("<p>{}</p>", escape_html(s));
    let mut out = format!(
        "<!DOCTYPE html><html><body>{}{}{}",
        p(&b.greeting),
        p(&b.lead),
        html_rows(&b.rows)
    );
    if let Some(url) = b.manage_url {
        let href = escape_html(url);
        out.push_str(&format!(
            "<p>{} <a href=\"{href}\">{href}</a></p>",
            escape_html(MANAGE)
        ));
    }
    if b.calendar {
        out.push_str(&p(CALENDAR_ATTACHED));
    }
    for s in &b.outro {
        out.push_str(&p(s));
    }
    out.push_str("<p>— medbook</p></body></html>");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use medbook_shared::events::*;
    use uuid::Uuid;

    pub(crate) fn snapshot(tz: &str) -> AppointmentSnapshot {
        AppointmentSnapshot {
            appointment_id: Uuid::new_v4(),
            slot_id: Uuid::new_v4(),
            starts_at: Utc.with_ymd_and_hms(2026, 12, 1, 9, 30, 0).unwrap(),
            ends_at: Utc.with_ymd_and_hms(2026, 12, 1, 10, 0, 0).unwrap(),
            reason: "Chest pain <script>alert(1)</script> & co".into(),
            patient: PatientInfo {
                id: Uuid::new_v4(),
                email: "ana@example.com".into(),
                full_name: "Ana \"O'Brien\" Lima".into(),
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
                time_zone: tz.into(),
            },
            version: 1,
            manage_url: Some(MANAGE_URL.into()),
        }
    }

    const MANAGE_URL: &str = "https://medbook.example/appointments/manage?token=m4n&lang=en";
    const ESCAPED_MANAGE_URL: &str =
        "https://medbook.example/appointments/manage?token=m4n&amp;lang=en";

    fn at() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 22, 8, 0, 0).unwrap()
    }

    #[test]
    fn created_shows_the_clinic_local_time_with_its_zone_and_an_invite() {
        let e = EventEnvelope::new(at(), AppointmentEvent::Created(snapshot("Europe/Berlin")));
        let m = render(&e, "no-reply@medbook.local").unwrap();
        assert_eq!(m.to_address, "ana@example.com");
        assert_eq!(
            m.subject,
            "Appointment confirmed: Dr. Mia Chen on 1 Dec 2026, 10:30"
        );
        assert!(
            m.text
                .contains("When: Tuesday, 1 December 2026, 10:30–11:00 CET (Europe/Berlin)"),
            "{}",
            m.text
        );
        assert!(m.text.contains("Doctor: Dr. Mia Chen (Cardiology)"));
        assert!(m.text.contains("Where: Central, Hauptstr. 1, Berlin"));
        let cal = m.calendar.unwrap();
        assert_eq!(cal.method, "REQUEST");
        assert!(cal.content.contains("DTSTART:20261201T093000Z"));
        assert_eq!(m.message_id, format!("<{}@medbook>", e.id));
    }

    #[test]
    fn user_text_is_escaped_in_html_and_kept_in_text() {
        let e = EventEnvelope::new(at(), AppointmentEvent::Created(snapshot("UTC")));
        let m = render(&e, "no-reply@medbook.local").unwrap();
        assert!(!m.html.contains("<script>"));
        assert!(m
            .html
            .contains("Chest pain &lt;script&gt;alert(1)&lt;/script&gt; &amp; co"));
        assert!(m.html.contains("Hello Ana &quot;O&#39;Brien&quot; Lima,"));
        assert!(m
            .text
            .contains("Reason: Chest pain <script>alert(1)</script> & co"));
    }

    #[test]
    fn rescheduled_shows_old_and_new_times() {
        let e = EventEnvelope::new(
            at(),
            AppointmentEvent::Rescheduled(Reschedule {
                appointment: snapshot("America/New_York"),
                previous: PreviousSlot {
                    slot_id: Uuid::new_v4(),
                    starts_at: Utc.with_ymd_and_hms(2026, 11, 30, 14, 0, 0).unwrap(),
                    ends_at: Utc.with_ymd_and_hms(2026, 11, 30, 14, 30, 0).unwrap(),
                },
            }),
        );
        let m = render(&e, "no-reply@medbook.local").unwrap();
        assert!(m.subject.starts_with("Appointment moved"));
        assert!(
            m.text
                .contains("When: Tuesday, 1 December 2026, 04:30–05:00 EST (America/New_York)"),
            "{}",
            m.text
        );
        assert!(
            m.text.contains(
                "Previously: Monday, 30 November 2026, 09:00–09:30 EST (America/New_York)"
            ),
            "{}",
            m.text
        );
    }

    #[test]
    fn cancelled_says_by_whom_and_why_and_cancels_the_calendar_entry() {
        let e = EventEnvelope::new(
            at(),
            AppointmentEvent::Cancelled(Cancellation {
                appointment: snapshot("Europe/Berlin"),
                cancelled_by: CancelledBy::Admin,
                cancel_reason: Some("Doctor ill".into()),
            }),
        );
        let m = render(&e, "no-reply@medbook.local").unwrap();
        assert!(m.subject.starts_with("Appointment cancelled"));
        assert!(m.text.contains("cancelled by the clinic"));
        assert!(m.text.contains("Cancellation reason: Doctor ill"));
        let cal = m.calendar.unwrap();
        assert_eq!(cal.method, "CANCEL");
        assert!(cal.content.contains("STATUS:CANCELLED"));
    }

    #[test]
    fn a_reminder_shows_the_clinic_local_time_with_its_zone_and_the_calendar_entry() {
        let e = EventEnvelope::new(
            at(),
            AppointmentEvent::Reminder(Reminder {
                appointment: snapshot("America/New_York"),
                offset: "24h".into(),
                due_at: Utc.with_ymd_and_hms(2026, 11, 30, 9, 30, 0).unwrap(),
            }),
        );
        let m = render(&e, "no-reply@medbook.local").unwrap();
        assert_eq!(m.subject, "Reminder: Dr. Mia Chen on 1 Dec 2026, 04:30");
        assert!(m.text.contains("reminder of your upcoming appointment"));
        assert!(
            m.text
                .contains("When: Tuesday, 1 December 2026, 04:30–05:00 EST (America/New_York)"),
            "{}",
            m.text
        );
        assert!(m.html.contains("Dr. Mia Chen (Cardiology)"));
        let cal = m.calendar.unwrap();
        assert_eq!(cal.method, "REQUEST");
        assert!(cal.content.contains("DTSTART:20261201T093000Z"));
        assert_eq!(m.message_id, format!("<{}@medbook>", e.id));
    }

    #[test]
    fn an_unknown_zone_is_an_error() {
        let e = EventEnvelope::new(at(), AppointmentEvent::Created(snapshot("Mars/Olympus")));
        assert_eq!(
            render(&e, "x@y.z"),
            Err(RenderError::UnknownTimeZone("Mars/Olympus".into()))
        );
    }

    #[test]
    fn a_range_over_a_dst_change_shows_local_clock_times() {
        let s = local_range(
            Utc.with_ymd_and_hms(2026, 3, 29, 0, 30, 0).unwrap(),
            Utc.with_ymd_and_hms(2026, 3, 29, 1, 30, 0).unwrap(),
            "Europe/Berlin".parse().unwrap(),
        );
        // 01:30 CET, then the clocks jump an hour: it ends at 03:30 CEST.
        assert_eq!(s, "Sunday, 29 March 2026, 01:30–03:30 CET (Europe/Berlin)");
    }

    fn reschedule(a: AppointmentSnapshot) -> AppointmentEvent {
        AppointmentEvent::Rescheduled(Reschedule {
            appointment: a,
            previous: PreviousSlot {
                slot_id: Uuid::new_v4(),
                starts_at: Utc.with_ymd_and_hms(2026, 11, 30, 14, 0, 0).unwrap(),
                ends_at: Utc.with_ymd_and_hms(2026, 11, 30, 14, 30, 0).unwrap(),
            },
        })
    }

    fn reminder(a: AppointmentSnapshot) -> AppointmentEvent {
        AppointmentEvent::Reminder(Reminder {
            appointment: a,
            offset: "24h".into(),
            due_at: Utc.with_ymd_and_hms(2026, 11, 30, 9, 30, 0).unwrap(),
        })
    }

    fn cancellation(a: AppointmentSnapshot) -> AppointmentEvent {
        AppointmentEvent::Cancelled(Cancellation {
            appointment: a,
            cancelled_by: CancelledBy::Patient,
            cancel_reason: None,
        })
    }

    fn no_show(a: AppointmentSnapshot) -> AppointmentEvent {
        AppointmentEvent::NoShow(NoShow {
            appointment: a,
            email_patient: true,
        })
    }

    #[test]
    fn the_appointments_emails_ahead_of_it_carry_the_manage_link_in_both_parts() {
        for e in [
            AppointmentEvent::Created(snapshot("Europe/Berlin")),
            reschedule(snapshot("Europe/Berlin")),
            reminder(snapshot("Europe/Berlin")),
        ] {
            let m = render(&EventEnvelope::new(at(), e), "x@y.z").unwrap();
            assert!(
                m.text
                    .contains(&format!("\nCancel or reschedule: {MANAGE_URL}\n")),
                "{}",
                m.text
            );
            assert!(
                m.html.contains(&format!(
                    "<p>Cancel or reschedule: <a href=\"{ESCAPED_MANAGE_URL}\">\
                     {ESCAPED_MANAGE_URL}</a></p>"
                )),
                "{}",
                m.html
            );
            assert!(!m.html.contains(MANAGE_URL), "the raw `&` must be escaped");
            assert!(m.calendar.is_some());
        }
    }

    #[test]
    fn a_cancellation_or_a_no_show_has_no_manage_link() {
        for e in [cancellation(snapshot("UTC")), no_show(snapshot("UTC"))] {
            let m = render(&EventEnvelope::new(at(), e), "x@y.z").unwrap();
            for part in [&m.text, &m.html] {
                assert!(!part.contains("Cancel or reschedule"), "{part}");
                assert!(!part.contains("token=m4n"), "{part}");
            }
        }
    }

    #[test]
    fn without_a_manage_link_or_with_an_unsafe_one_the_email_goes_without_it() {
        for url in [
            None,
            Some("javascript:alert(1)//https://x"),
            Some("https://medbook.example/a\r\nBcc: x@y.z"),
        ] {
            let mut a = snapshot("UTC");
            a.manage_url = url.map(str::to_owned);
            let m = render(
                &EventEnvelope::new(at(), AppointmentEvent::Created(a)),
                "x@y.z",
            )
            .unwrap();
            assert!(!m.text.contains("Cancel or reschedule"), "{}", m.text);
            assert!(!m.html.contains("href="), "{}", m.html);
            assert!(m
                .text
                .ends_with("\n\nThe calendar entry is attached.\n\n— medbook\n"));
        }
    }

    #[test]
    fn a_no_show_says_we_missed_the_patient_without_a_calendar_part() {
        let e = EventEnvelope::new(at(), no_show(snapshot("America/New_York")));
        let m = render(&e, "no-reply@medbook.local").unwrap();
        assert_eq!(
            m.subject,
            "We missed you: Dr. Mia Chen on 1 Dec 2026, 04:30"
        );
        assert_eq!(m.to_address, "ana@example.com");
        assert!(m
            .text
            .starts_with("Hello Ana \"O'Brien\" Lima,\n\nwe missed you at your appointment.\n\n"));
        assert!(
            m.text
                .contains("When: Tuesday, 1 December 2026, 04:30–05:00 EST (America/New_York)"),
            "{}",
            m.text
        );
        assert!(m
            .text
            .contains("book a new appointment whenever it suits you"));
        assert!(!m.text.contains("calendar"), "{}", m.text);
        assert!(m.calendar.is_none());
        assert!(!m.html.contains("<script>"));
        assert!(m.html.contains("Hello Ana &quot;O&#39;Brien&quot; Lima,"));
        assert_eq!(m.message_id, format!("<{}@medbook>", e.id));
    }
}
