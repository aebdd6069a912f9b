//! The waitlist offer: a slot that freed up, held for the patient first in line on the
//! doctor's waiting list until the offer expires. It names the doctor, the clinic and
//! the time, the link that books the slot, and until when the slot is held — times in
//! the clinic's own time zone, as in every appointment e-mail. No calendar part:
//! nothing is booked until the patient follows the link.
//!
//! The link carries a token, like an account e-mail's: it is shown to the recipient in
//! full and must be a plain http(s) URL, or the offer cannot be written. An offer the
//! service could not send before it expired is dropped there, never sent late (the
//! slot has gone to the next in line by then).

use super::email::{html_rows, local_range, local_time, short_date, text_rows, time_zone};
use super::mail::{escape_html, html_button, web_link, Email, RenderError};
use medbook_shared::events::{EventEnvelope, WaitlistOffer};

/// Renders the e-mail of the waitlist offer `offer` of `event`.
pub(super) fn render(event: &EventEnvelope, offer: &WaitlistOffer) -> Result<Email, RenderError> {
    let tz = time_zone(&offer.clinic.time_zone)?;
    let link = web_link(&offer.link)?;
    let rows = vec![
        (
            "When".to_owned(),
            local_range(offer.starts_at, offer.ends_at, tz),
        ),
        (
            "Doctor".to_owned(),
            format!("{} ({})", offer.doctor.full_name, offer.doctor.specialty),
        ),
        (
            "Where".to_owned(),
            format!(
                "{}, {}, {}",
                offer.clinic.name, offer.clinic.address, offer.clinic.city
            ),
        ),
    ];
    let greeting = format!("Hello {},", offer.patient.full_name);
    let lead = "a slot you were waiting for has opened up, and it is held for you.";
    let held = format!(
        "It is held for you until {}. After that it is offered to the next patient on \
         the waiting list.",
        local_time(offer.expires_at, tz)
    );
    let outro = "If you no longer need it, ignore this e-mail.";
    let text = format!(
        "{greeting}\n\n{lead}\n\n{}\nBook it: {link}\n\n{held}\n\n{outro}\n\n— medbook\n",
        text_rows(&rows)
    );
    let p = |s: &str| format!("<p>{}</p>", escape_html(s));
    let html = format!(
        "<!DOCTYPE html><html><body>{}{}{}{}{}{}<p>— medbook</p></body></html>",
        p(&greeting),
        p(lead),
        html_rows(&rows),
        html_button(link, "Book this slot"),
        p(&held),
        p(outro),
    );
    Ok(Email {
        to_name: Some(offer.patient.full_name.clone()),
        to_address: offer.patient.email.clone(),
        subject: format!(
            "A slot opened up: {} on {}",
            offer.doctor.full_name,
            short_date(offer.starts_at, tz)
        ),
        text,
        html,
        calendar: None,
        message_id: format!("<{}@medbook>", event.id),
        event_id: event.id.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeZone, Utc};
    use medbook_shared::events::{ClinicInfo, DoctorInfo, Event, PatientInfo};
    use uuid::Uuid;

    const LINK: &str = "https://medbook.example/waitlist/offer?token=0ff3r&lang=en";
    const ESCAPED_LINK: &str = "https://medbook.example/waitlist/offer?token=0ff3r&amp;lang=en";

    fn offer(tz: &str) -> WaitlistOffer {
        WaitlistOffer {
            entry_id: Uuid::new_v4(),
            slot_id: Uuid::new_v4(),
            starts_at: Utc.with_ymd_and_hms(2026, 12, 1, 9, 30, 0).unwrap(),
            ends_at: Utc.with_ymd_and_hms(2026, 12, 1, 10, 0, 0).unwrap(),
            patient: PatientInfo {
                id: Uuid::new_v4(),
                email: "ana@example.com".into(),
                full_name: "Ana <b>\"O'Brien\"</b>".into(),
            },
            doctor: DoctorInfo {
                id: Uuid::new_v4(),
                full_name: "Dr. Mia <i>Chen</i>".into(),
                specialty: "Cardiology & more".into(),
            },
            clinic: ClinicInfo {
                id: Uuid::new_v4(),
                name: "Central <script>x</script>".into(),
                city: "Berlin".into(),
                address: "Hauptstr. 1".into(),
                time_zone: tz.into(),
            },
            link: LINK.into(),
            expires_at: Utc.with_ymd_and_hms(2026, 11, 30, 17, 45, 0).unwrap(),
        }
    }

    fn envelope(o: WaitlistOffer) -> EventEnvelope {
        EventEnvelope::new(Utc.with_ymd_and_hms(2026, 11, 30, 17, 30, 0).unwrap(), o)
    }

    fn render(e: &EventEnvelope) -> Result<Email, RenderError> {
        match &e.event {
            Event::Waitlist(o) => super::render(e, o),
            _ => panic!("not an offer: {}", e.event_type().as_str()),
        }
    }

    #[test]
    fn an_offer_names_doctor_clinic_time_link_and_hold_in_the_clinics_zone() {
        let e = envelope(offer("America/New_York"));
        let m = render(&e).unwrap();
        assert_eq!(m.to_address, "ana@example.com");
        assert_eq!(
            m.subject,
            "A slot opened up: Dr. Mia <i>Chen</i> on 1 Dec 2026, 04:30"
        );
        assert!(m.calendar.is_none());
        assert_eq!(m.message_id, format!("<{}@medbook>", e.id));
        assert_eq!(m.event_id, e.id.to_string());
        for line in [
            "When: Tuesday, 1 December 2026, 04:30–05:00 EST (America/New_York)",
            "Doctor: Dr. Mia <i>Chen</i> (Cardiology & more)",
            "Where: Central <script>x</script>, Hauptstr. 1, Berlin",
            &format!("Book it: {LINK}"),
            "It is held for you until Monday, 30 November 2026, 12:45 EST (America/New_York).",
        ] {
            assert!(m.text.contains(line), "{line} in {}", m.text);
        }
        assert_eq!(
            m.html.matches(&format!("href=\"{ESCAPED_LINK}\"")).count(),
            2,
            "{}",
            m.html
        );
        assert!(m.html.contains(">Book this slot</a>"));
        assert!(m
            .html
            .contains("until Monday, 30 November 2026, 12:45 EST (America/New_York)."));
    }

    #[test]
    fn what_users_typed_is_escaped_in_html() {
        let m = render(&envelope(offer("Europe/Berlin"))).unwrap();
        for raw in ["<b>", "<i>", "<script>", LINK] {
            assert!(!m.html.contains(raw), "{raw} in {}", m.html);
        }
        assert!(m
            .html
            .contains("Hello Ana &lt;b&gt;&quot;O&#39;Brien&quot;&lt;/b&gt;,"));
        assert!(m
            .html
            .contains("Dr. Mia &lt;i&gt;Chen&lt;/i&gt; (Cardiology &amp; more)"));
        assert!(m.html.contains("Central &lt;script&gt;x&lt;/script&gt;"));
        assert!(m
            .text
            .contains("until Monday, 30 November 2026, 18:45 CET (Europe/Berlin)"));
    }

    #[test]
    fn an_offer_whose_link_is_not_http_or_whose_zone_is_unknown_cannot_be_written() {
        let mut o = offer("UTC");
        o.link = "javascript:alert(1)//https://x".into();
        let err = render(&envelope(o)).unwrap_err();
        assert_eq!(err, RenderError::UnsafeLink);
        assert!(!err.to_string().contains("javascript"));
        assert_eq!(
            render(&envelope(offer("Mars/Olympus"))),
            Err(RenderError::UnknownTimeZone("Mars/Olympus".into()))
        );
    }
}
