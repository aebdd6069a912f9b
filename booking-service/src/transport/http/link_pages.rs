//! The pages the links in appointment e-mails open, without a login: the manage page
//! (see the appointment, cancel it, move it to another free slot of the same doctor),
//! a waitlist offer (book the held slot), and the calendar feeds.
//!
//! The same rules as the account pages (`pages`): opening a link (GET) changes
//! nothing — mail scanners and previews fetch links — and only the page's form POSTs
//! act, through the same use cases as the JSON API, as the patient the link is for
//! (audited so). No script, a strict CSP, never cached (`Cache-Control: no-store`, as
//! every response but the public catalogue's), no referrer (the token is in the URL). A
//! stale link says what became of the appointment or the offer.

use super::pages::{missing_token, page, refused, TokenQuery};
use crate::domain::booking::Appointment;
use crate::domain::SlotId;
use crate::service::appointments::Managed;
use crate::service::booking_ports::SlotFilter;
use crate::service::waitlist::OfferState;
use crate::service::ServiceError;
use crate::transport::http::error::escape;
use crate::transport::http::state::AppState;
use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpResponse};
use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde::Deserialize;

pub const MANAGE_PATH: &str = "/manage";
pub const MANAGE_CANCEL_PATH: &str = "/manage/cancel";
pub const MANAGE_RESCHEDULE_PATH: &str = "/manage/reschedule";
pub const OFFER_PATH: &str = "/waitlist/offer";

/// Free slots the manage page offers to move to: the doctor's next days.
const MOVE_WINDOW_DAYS: i64 = 14;
const MOVE_CHOICES: usize = 40;

#[derive(Debug, Deserialize)]
pub struct CancelForm {
    pub token: String,
    pub reason: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct RescheduleForm {
    pub token: String,
    pub slot_id: Option<uuid::Uuid>,
}

#[derive(Debug, Deserialize)]
pub struct OfferForm {
    pub token: String,
}

/// A time as the clinic's patients read it: weekday, date and time in its zone.
fn local(t: DateTime<Utc>, zone: &str) -> String {
    match zone.parse::<Tz>() {
        Ok(tz) => t
            .with_timezone(&tz)
            .format("%A %-d %B %Y, %H:%M")
            .to_string(),
        Err(_) => t.format("%A %-d %B %Y, %H:%M UTC").to_string(),
    }
}

fn summary(a: &Appointment) -> String {
    format!(
        "<p><strong>{}</strong> at {}<br>{} ({})</p>{}",
        escape(&a.doctor_name),
        escape(&a.clinic_name),
        escape(&local(a.starts_at, &a.time_zone)),
        escape(&a.time_zone),
        if a.reason.is_empty() {
            String::new()
        } else {
            format!("<p>Reason for the visit: {}</p>", escape(&a.reason))
        },
    )
}

fn link_not_found() -> HttpResponse {
    page(
        StatusCode::NOT_FOUND,
        "This link is not valid",
        "<p>It may be incomplete: open the link from the e-mail in full. If you booked \
         with an account, you can also see your appointments there.</p>",
    )
}

/// `GET /manage?token=…`: the appointment and, while it can be changed, the two forms.
pub async fn manage_page(
    state: web::Data<AppState>,
    query: web::Query<TokenQuery>,
) -> HttpResponse {
    let Some(token) = query.into_inner().token.filter(|t| !t.trim().is_empty()) else {
        return missing_token();
    };
    match state.appointments.managed(&token).await {
        Ok(Managed::Active(a)) => manage_active(&state, &token, a).await,
        Ok(Managed::Cancelled(a)) => page(
            StatusCode::OK,
            "This appointment was cancelled",
            &format!(
                "{}<p>It was cancelled{}. Nothing more can be done with this link; book \
                 again if you need another appointment.</p>",
                summary(&a),
                a.cancelled_at
                    .map(|t| format!(" on {}", escape(&local(t, &a.time_zone))))
                    .unwrap_or_default()
            ),
        ),
        Ok(Managed::Over(a)) => page(
            StatusCode::OK,
            "This appointment is over",
            &format!(
                "{}<p>It has started or taken place, so it can no longer be changed here.</p>",
                summary(&a)
            ),
        ),
        Err(ServiceError::NotFound(_)) => link_not_found(),
        Err(e) => refused("This page is not available", e, "Try again in a moment."),
    }
}

async fn manage_active(state: &AppState, token: &str, a: Appointment) -> HttpResponse {
    let now = state.schedule.now();
    let deadline = match state.policies.doctor(a.doctor_id).await {
        Ok((_, effective)) => effective.change_deadline,
        Err(e) => return refused("This page is not available", e, "Try again in a moment."),
    };
    if a.starts_at - now < deadline {
        return page(
            StatusCode::OK,
            "Your appointment",
            &format!(
                "{}<p>It is too close to the appointment to cancel or move it online (the \
                 clinic's deadline is {} before the visit). Please call the clinic.</p>",
                summary(&a),
                escape(&duration_words(deadline))
            ),
        );
    }
    let filter = SlotFilter::parse(
        a.doctor_id,
        Some(now),
        Some(now + chrono::Duration::days(MOVE_WINDOW_DAYS)),
        Some("available"),
        now,
    )
    .map_err(ServiceError::from);
    let slots = match filter {
        Ok(filter) => state.slots.list(filter).await,
        Err(e) => Err(e),
    };
    let slots = match slots {
        Ok(slots) => slots,
        Err(e) => return refused("This page is not available", e, "Try again in a moment."),
    };
    let choices: String = slots
        .iter()
        .filter(|s| s.id != a.slot_id)
        .take(MOVE_CHOICES)
        .map(|s| {
            format!(
                "<label><input type=\"radio\" name=\"slot_id\" value=\"{}\" required> {}</label><br>",
                s.id.0,
                escape(&local(s.starts_at, &a.time_zone))
            )
        })
        .collect();
    let move_form = if choices.is_empty() {
        format!("<p>No other time of this doctor is free in the next {MOVE_WINDOW_DAYS} days.</p>")
    } else {
        format!(
            "<form method=\"post\" action=\"{MANAGE_RESCHEDULE_PATH}\">\
             <input type=\"hidden\" name=\"token\" value=\"{t}\">{choices}\
             <p><button type=\"submit\">Move my appointment</button></p></form>",
            t = escape(token)
        )
    };
    let deadline_note = if deadline > chrono::Duration::zero() {
        format!(
            "<p>You can cancel or move it online until {} before the visit.</p>",
            escape(&duration_words(deadline))
        )
    } else {
        String::new()
    };
    page(
        StatusCode::OK,
        "Your appointment",
        &format!(
            "{summary}{deadline_note}<h2>Cancel it</h2>\
             <form method=\"post\" action=\"{MANAGE_CANCEL_PATH}\">\
             <input type=\"hidden\" name=\"token\" value=\"{t}\">\
             <p><label for=\"reason\">Reason (optional)</label>\
             <input id=\"reason\" name=\"reason\" maxlength=\"1000\"></p>\
             <button type=\"submit\">Cancel my appointment</button></form>\
             <h2>Or move it</h2>{move_form}",
            summary = summary(&a),
            t = escape(token)
        ),
    )
}

fn duration_words(d: chrono::Duration) -> String {
    let minutes = d.num_minutes();
    if minutes % (24 * 60) == 0 {
        let days = minutes / (24 * 60);
        format!("{days} day{}", if days == 1 { "" } else { "s" })
    } else if minutes % 60 == 0 {
        let hours = minutes / 60;
        format!("{hours} hour{}", if hours == 1 { "" } else { "s" })
    } else {
        format!("{minutes} minutes")
    }
}

/// `POST /manage/cancel`: cancels as the patient.
pub async fn manage_cancel(
    state: web::Data<AppState>,
    form: web::Form<CancelForm>,
) -> HttpResponse {
    let form = form.into_inner();
    let reason = form.reason.filter(|r| !r.trim().is_empty());
    match state.appointments.cancel_by_link(&form.token, reason).await {
        Ok(a) => page(
            StatusCode::OK,
            "Appointment cancelled",
            &format!(
                "{}<p>Your appointment is cancelled and the time is free for someone else. \
                 We have sent you a confirmation.</p>",
                summary(&a)
            ),
        ),
        Err(ServiceError::NotFound("link")) => link_not_found(),
        Err(e) => refused(
            "The appointment was not cancelled",
            e,
            "Open the link from the e-mail again to see the appointment as it is now.",
        ),
    }
}

/// `POST /manage/reschedule`: moves as the patient.
pub async fn manage_reschedule(
    state: web::Data<AppState>,
    form: web::Form<RescheduleForm>,
) -> HttpResponse {
    let form = form.into_inner();
    let Some(slot) = form.slot_id else {
        return page(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Choose a time",
            "<p>Pick one of the free times, then press the button. Go back to try again.</p>",
        );
    };
    match state
        .appointments
        .reschedule_by_link(&form.token, SlotId(slot))
        .await
    {
        Ok(a) => page(
            StatusCode::OK,
            "Appointment moved",
            &format!(
                "{}<p>This is your new time; the link in your e-mail keeps working for \
                     it. We have sent you a confirmation.</p>",
                summary(&a)
            ),
        ),
        Err(ServiceError::NotFound("link")) => link_not_found(),
        Err(e) => refused(
            "The appointment was not moved",
            e,
            "Open the link from the e-mail again to choose another time.",
        ),
    }
}

fn offer_gone() -> HttpResponse {
    page(
        StatusCode::GONE,
        "This offer is no longer open",
        "<p>The time was held for you for a limited while, and that has passed (or it was \
         booked already). You are still on the waitlist: we will e-mail you when another \
         time frees up.</p>",
    )
}

/// `GET /waitlist/offer?token=…`: the held slot and the button that books it.
pub async fn offer_page(state: web::Data<AppState>, query: web::Query<TokenQuery>) -> HttpResponse {
    let Some(token) = query.into_inner().token.filter(|t| !t.trim().is_empty()) else {
        return missing_token();
    };
    match state.waitlist.offer(&token).await {
        Ok(OfferState::Open(o)) => page(
            StatusCode::OK,
            "A time is free for you",
            &format!(
                "<p><strong>{}</strong> ({}) at {}, {}<br>{} ({})</p>\
                 <p>It is held for you until {}.</p>\
                 <form method=\"post\" action=\"{OFFER_PATH}\">\
                 <input type=\"hidden\" name=\"token\" value=\"{}\">\
                 <button type=\"submit\">Book this time</button></form>",
                escape(&o.doctor_name),
                escape(&o.specialty),
                escape(&o.clinic_name),
                escape(&o.clinic_address),
                escape(&local(o.slot.starts_at, &o.time_zone)),
                escape(&o.time_zone),
                escape(&local(o.slot.expires_at, &o.time_zone)),
                escape(&token),
            ),
        ),
        Ok(OfferState::Booked(patient, appointment)) => {
            match state
                .appointments
                .get(
                    crate::domain::decisions::Actor::Patient(patient),
                    appointment.0,
                )
                .await
            {
                Ok(a) => page(
                    StatusCode::OK,
                    "You booked this time",
                    &format!(
                        "{}<p>It is booked from this offer. The confirmation e-mail has a \
                         link to cancel or move it.</p>",
                        summary(&a)
                    ),
                ),
                Err(e) => refused("This page is not available", e, "Try again in a moment."),
            }
        }
        Ok(OfferState::Gone) => offer_gone(),
        Err(ServiceError::NotFound(_)) => link_not_found(),
        Err(e) => refused("This page is not available", e, "Try again in a moment."),
    }
}

/// `POST /waitlist/offer`: books the held slot as the patient it is held for.
pub async fn offer_accept(state: web::Data<AppState>, form: web::Form<OfferForm>) -> HttpResponse {
    match state.waitlist.accept(&form.token).await {
        Ok(booked) => {
            let a = booked.appointment;
            page(
                StatusCode::OK,
                "Appointment booked",
                &format!(
                    "{}<p>It is booked. We have sent you a confirmation with a link to \
                     cancel or move it.</p>",
                    summary(&a)
                ),
            )
        }
        Err(ServiceError::Rejected(crate::domain::rejection::Rejection::OfferGone)) => offer_gone(),
        Err(ServiceError::NotFound(_)) => link_not_found(),
        Err(e) => refused(
            "The time was not booked",
            e,
            "You are still on the waitlist; we will e-mail you when another time frees up.",
        ),
    }
}

/// `GET /calendar/{token}.ics`: a calendar feed.
pub async fn calendar_feed(state: web::Data<AppState>, file: web::Path<String>) -> HttpResponse {
    let file = file.into_inner();
    let Some(token) = file.strip_suffix(".ics") else {
        return HttpResponse::NotFound().finish();
    };
    match state.calendar.feed(token).await {
        Ok(feed) => HttpResponse::Ok()
            .content_type("text/calendar; charset=utf-8")
            .insert_header((header::REFERRER_POLICY, "no-referrer"))
            .insert_header((
                header::CONTENT_DISPOSITION,
                "inline; filename=\"medbook.ics\"",
            ))
            .body(feed.body),
        Err(ServiceError::NotFound(_)) => HttpResponse::NotFound()
            .content_type("text/plain; charset=utf-8")
            .body("no calendar at this address (the URL may have been replaced)\n"),
        Err(e) => {
            let api = crate::transport::http::error::ApiError::from(e);
            HttpResponse::build(api.status)
                .content_type("text/plain; charset=utf-8")
                .body("the calendar is not available right now\n")
        }
    }
}
