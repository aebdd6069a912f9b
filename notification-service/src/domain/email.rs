//! The emails patients receive: one per appointment event — a plain-text and an HTML
//! body, and an iCalendar part their calendar can take in — and one per account event
//! (verification and reset links, security notices; see [`super::account_email`]).
//! Appointment times are shown in the clinic's own time zone, with the zone named,
//! because that is where the patient has to be.

use super::mail::{escape_html, CalendarPart, Email, RenderError};
use super::{account_email, ics};
use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use medbook_shared::events::{
    AppointmentEvent, AppointmentSnapshot, CancelledBy, Event, EventEnvelope,
};

/// Renders the email for `event`. `organizer` is the sender's address, named in the
/// calendar part of appointment emails.
pub fn render(event: &EventEnvelope, organizer: &str) -> Result<Email, RenderError> {
    match &event.event {
        Event::Appointment(e) => render_appointment(event, e, organizer),
        Event::Account(e) => account_email::render(event, e),
    }
}

fn render_appointment(
    event: &EventEnvelope,
    appointment_event: &AppointmentEvent,
    organizer: &str,
) -> Result<Email, RenderError> {
    let a = appointment_event.appointment();
    let tz: Tz = a
        .clinic
        .time_zone
        .parse()
        .map_err(|_| RenderError::UnknownTimeZone(a.clinic.time_zone.clone()))?;
    let when = local_range(a.starts_at, a.ends_at, tz);
    let details = Details::new(a, &when);
    let (subject, lead, extra, calendar) = match appointment_event {
        AppointmentEvent::Created(_) => (
            format!(
                "Appointment confirmed: {} on {}",
                a.doctor.full_name,
                short_date(a.starts_at, tz)
            ),
            "your appointment is booked.".to_owned(),
            Vec::new(),
            ics::Status::Confirmed,
        ),
        AppointmentEvent::Rescheduled(r) => (
            format!(
                "Appointment moved: {} now on {}",
                a.doctor.full_name,
                short_date(a.starts_at, tz)
            ),
            "your appointment has been moved to a new time.".to_owned(),
            vec![(
                "Previously".to_owned(),
                local_range(r.previous.starts_at, r.previous.ends_at, tz),
            )],
            ics::Status::Confirmed,
        ),
        AppointmentEvent::Reminder(_) => (
            format!(
                "Reminder: {} on {}",
                a.doctor.full_name,
                short_date(a.starts_at, tz)
            ),
            "this is a reminder of your upcoming appointment.".to_owned(),
            Vec::new(),
            ics::Status::Confirmed,
        ),
        AppointmentEvent::Cancelled(c) => {
            let by = match c.cancelled_by {
                CancelledBy::Patient => "as you asked",
                CancelledBy::Admin => "by the clinic",
            };
            let mut extra = Vec::new();
            if let Some(reason) = c.cancel_reason.as_deref().filter(|r| !r.trim().is_empty()) {
                extra.push(("Cancellation reason".to_owned(), reason.to_owned()));
            }
            (
                format!(
                    "Appointment cancelled: {} on {}",
                    a.doctor.full_name,
                    short_date(a.starts_at, tz)
                ),
                format!("your appointment has been cancelled {by}."),
                extra,
                ics::Status::Cancelled,
            )
        }
    };
    let mut rows = details.rows;
    rows.extend(extra);
    let greeting = format!("Hello {},", a.patient.full_name);
    let text = text_body(&greeting, &lead, &rows);
    let html = html_body(&greeting, &lead, &rows);
    let calendar = CalendarPart {
        method: calendar.method(),
        content: ics::event(a, event.occurred_at, organizer, calendar),
    };
    Ok(Email {
        to_name: Some(a.patient.full_name.clone()),
        to_address: a.patient.email.clone(),
        subject,
        text,
        html,
        calendar: Some(calendar),
        message_id: format!("<{}@medbook>", event.id),
        event_id: event.id.to_string(),
    })
}

struct Details {
    rows: Vec<(String, String)>,
}

impl Details {
    fn new(a: &AppointmentSnapshot, when: &str) -> Self {
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
        Self { rows }
    }
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

fn short_date(t: DateTime<Utc>, tz: Tz) -> String {
    t.with_timezone(&tz).format("%-d %b %Y, %H:%M").to_string()
}

fn text_body(greeting: &str, lead: &str, rows: &[(String, String)]) -> String {
    let mut out = format!("{greeting}\n\n{lead}\n\n");
    for (k, v) in rows {
        out.push_str(&format!("{k}: {v}\n"));
    }
    out.push_str("\nThe calendar entry is attached.\n\n— medbook\n");
    out
}

fn html_body(greeting: &str, lead: &str, rows: &[(String, String)]) -> String {
    let mut table = String::new();
    for (k, v) in rows {
        table.push_str(&format!(
            "<tr><th align=\"left\" style=\"padding-right:1em\">{}</th><td>{}</td></tr>",
            escape_html(k),
            escape_html(v)
        ));
    }
    format!(
        "<!DOCTYPE html><html><body><p>{}</p><p>{}</p><table>{}</table>\
         <p>The calendar entry is attached.</p><p>— medbook</p></body></html>",
        escape_html(greeting),
        escape_html(lead),
        table
    )
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
        }
    }

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
}
