//! The clinic's day over real e-mail: a patient cancels from the link in her
//! confirmation without logging in; the freed slot is held for the first patient on the
//! doctor's waitlist, who books it from the link in the offer e-mail while nobody else
//! can take it; and once the clinic's change deadline has passed, neither the link nor
//! the API lets the patient cancel. booking-service runs in this process with its outbox
//! relay and waitlist matcher; every link the test follows is the one the e-mail carries.

use crate::booking::{token_of, BookingApp};
use crate::helpers::{address, settings as notifier_settings, Running};
use chrono::{DateTime, Duration as Span, NaiveDate, Utc};
use chrono_tz::Europe::Lisbon;
use medbook_test_support::kafka::TestTopics;
use medbook_test_support::mail::Maildev;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::time::Duration;

/// Where the e-mails' links point: the public address the clinic would configure,
/// served in this test by the in-process booking-service (see [`Site::follow`]).
const PUBLIC_BASE: &str = "https://medbook.test";
const MAIL_WAIT: Duration = Duration::from_secs(60);

/// The booking-service as a patient's browser and an API client reach it.
struct Site<'a> {
    app: &'a BookingApp,
    /// No cookies, no credentials: what opening a link from an e-mail sends.
    browser: reqwest::Client,
}

impl Site<'_> {
    /// The address of a link from an e-mail, on the app: only the host differs.
    fn follow(&self, link: &str) -> String {
        let rest = link
            .strip_prefix(PUBLIC_BASE)
            .unwrap_or_else(|| panic!("{link} is not under {PUBLIC_BASE}"));
        format!("{}{rest}", self.app.base)
    }

    /// Opens a link from an e-mail: the page's status and HTML.
    async fn open(&self, link: &str) -> (StatusCode, String) {
        let res = self.browser.get(self.follow(link)).send().await.unwrap();
        (res.status(), res.text().await.unwrap())
    }

    /// Submits `form` as the browser does, with what the patient typed in `typed`.
    async fn submit(&self, form: &Form, typed: &[(&str, &str)]) -> (StatusCode, String) {
        let mut fields: Vec<(&str, &str)> = form
            .hidden
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        fields.extend_from_slice(typed);
        let res = self
            .browser
            .post(format!("{}{}", self.app.base, form.action))
            .form(&fields)
            .send()
            .await
            .unwrap();
        (res.status(), res.text().await.unwrap())
    }

    /// An API call, whatever its answer.
    async fn api(
        &self,
        method: Method,
        path: &str,
        token: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut req = self
            .app
            .client
            .request(method, format!("{}{path}", self.app.base))
            .bearer_auth(token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let res = req.send().await.unwrap();
        (res.status(), res.json().await.unwrap_or(Value::Null))
    }

    /// An admin's PUT that must succeed.
    async fn put(&self, path: &str, token: &str, body: Value) -> Value {
        let (status, answer) = self.api(Method::PUT, path, token, Some(body)).await;
        assert_eq!(status, StatusCode::OK, "PUT {path}: {answer}");
        answer
    }

    /// An API read that must succeed.
    async fn get(&self, path: &str, token: &str) -> Value {
        let (status, body) = self.api(Method::GET, path, token, None).await;
        assert_eq!(status, StatusCode::OK, "GET {path}: {body}");
        body
    }
}

/// A form of a page: where it posts and its hidden fields.
#[derive(Debug)]
struct Form {
    action: String,
    hidden: Vec<(String, String)>,
}

/// The value of `name="…"` in an HTML tag.
fn attribute<'a>(tag: &'a str, name: &str) -> Option<&'a str> {
    let (_, rest) = tag.split_once(&format!(" {name}=\""))?;
    rest.split_once('"').map(|(v, _)| v)
}

/// The form of `page` with the button labelled `button` (the pages have no script:
/// what a form posts is in its markup).
fn form(page: &str, button: &str) -> Form {
    let markup = page
        .split("<form")
        .skip(1)
        .map(|f| f.split("</form>").next().unwrap_or(f))
        .find(|f| f.contains(&format!(">{button}</button>")))
        .unwrap_or_else(|| panic!("no form with '{button}' in {page}"));
    assert!(markup.starts_with(" method=\"post\""), "{markup}");
    Form {
        action: attribute(markup, "action").unwrap().to_owned(),
        hidden: markup
            .split("<input")
            .skip(1)
            .filter(|i| i.contains("type=\"hidden\""))
            .map(|i| {
                (
                    attribute(i, "name").unwrap().to_owned(),
                    attribute(i, "value").unwrap().to_owned(),
                )
            })
            .collect(),
    }
}

/// The first e-mail to `to` whose subject starts with `subject`.
async fn mail(sink: &Maildev, to: &str, subject: &str) -> Value {
    medbook_test_support::eventually(&format!("'{subject}…' to {to}"), MAIL_WAIT, || async {
        sink.emails_to(to).await.into_iter().find(|m| {
            m["subject"]
                .as_str()
                .is_some_and(|s| s.starts_with(subject))
        })
    })
    .await
}

/// The subjects of `mails` up to their colon (what they are about, not the details).
fn subjects(mails: &[Value]) -> Vec<String> {
    mails
        .iter()
        .map(|m| {
            let s = m["subject"].as_str().unwrap();
            s.split(':').next().unwrap_or(s).to_owned()
        })
        .collect()
}

fn text(mail: &Value) -> &str {
    mail["text"].as_str().unwrap()
}

/// What follows `label` on its line of the e-mail's text (a link, a time).
fn after<'a>(mail: &'a Value, label: &str) -> &'a str {
    text(mail)
        .lines()
        .find_map(|l| l.strip_prefix(label))
        .unwrap_or_else(|| panic!("no '{label}' line in {}", text(mail)))
        .trim()
}

/// The manage link of an appointment e-mail, the same in its text and its HTML.
fn manage_link(mail: &Value) -> String {
    let link = after(mail, "Cancel or reschedule:").to_owned();
    assert!(
        link.starts_with(&format!("{PUBLIC_BASE}/manage?token=")),
        "{link}"
    );
    let html = mail["html"].as_str().unwrap();
    assert!(html.contains(&format!("href=\"{link}\"")), "{html}");
    link
}

fn time(v: &Value) -> DateTime<Utc> {
    v.as_str().unwrap().parse().unwrap()
}

/// A time as the e-mails write it: in the clinic's zone, named.
fn lisbon(t: DateTime<Utc>) -> String {
    t.with_timezone(&Lisbon)
        .format("%A, %-d %B %Y, %H:%M %Z (Europe/Lisbon)")
        .to_string()
}

#[tokio::test]
async fn a_patient_cancels_from_her_email_the_waitlist_books_the_slot_and_late_changes_are_refused()
{
    let notify_db = crate::helpers::notify_db();
    let topics = TestTopics::shared(3).await;
    let sink = Maildev::shared();
    let manage_url = format!("{PUBLIC_BASE}/manage");
    let offer_url = format!("{PUBLIC_BASE}/waitlist/offer");
    let booking = BookingApp::start(
        &topics,
        &[
            ("MEDBOOK_BOOKING__MANAGE_URL", &manage_url),
            ("MEDBOOK_WAITLIST__OFFER_URL", &offer_url),
            ("MEDBOOK_WAITLIST__POLL_INTERVAL_MS", "200"),
        ],
    )
    .await;
    let notifier = Running::start(&notifier_settings(&notify_db, &topics, sink.smtp_port)).await;
    let site = Site {
        app: &booking,
        browser: reqwest::Client::new(),
    };

    // The clinic: a doctor in Lisbon with one slot on the day the waitlist wants
    // (`day`) and two on later days, outside the range anyone waits for.
    let admin = booking.admin().await;
    let doctor = booking
        .doctor(
            &admin,
            json!({"name": "Clínica Estrela", "city": "Lisbon", "address": "Rua da Estrela 4", "time_zone": "Europe/Lisbon"}),
            "Dr. Inês Carvalho",
            "General practice",
        )
        .await;
    let doctor_id = doctor["id"].as_str().unwrap().to_owned();
    let clinic_id = doctor["clinic"]["id"].as_str().unwrap().to_owned();
    let day: NaiveDate = (Utc::now() + Span::days(3)).date_naive();
    let at = |d: NaiveDate, h: u32| d.and_hms_opt(h, 0, 0).unwrap().and_utc();
    let slots_path = format!("/api/v1/doctors/{doctor_id}/slots");
    let mut slots = Vec::new();
    for starts in [
        at(day, 10),
        at(day + Span::days(1), 9),
        at(day + Span::days(2), 15),
    ] {
        let s = booking
            .post(
                &slots_path,
                Some(&admin),
                json!({"starts_at": starts.to_rfc3339(), "ends_at": (starts + Span::minutes(30)).to_rfc3339()}),
            )
            .await;
        slots.push(s["id"].as_str().unwrap().to_owned());
    }
    let freed = slots[0].clone();
    let freed_at = at(day, 10);

    // Three patients with verified addresses, logged in.
    let (a_mail, b_mail, c_mail) = (address("ana"), address("bruno"), address("carla"));
    let a = booking.patient(&a_mail, "Ana Martins").await;
    let b = booking.patient(&b_mail, "Bruno Reis").await;
    let c = booking.patient(&c_mail, "Carla Nunes").await;

    // A books the slot; then B joins the waitlist for the two days around it, where
    // nothing else is free.
    let booked_a = booking
        .post(
            "/api/v1/appointments",
            Some(&a),
            json!({"slot_id": freed, "reason": "persistent cough"}),
        )
        .await;
    let a_id = booked_a["id"].as_str().unwrap().to_owned();
    let entry = booking
        .post(
            "/api/v1/me/waitlist",
            Some(&b),
            json!({"doctor_id": doctor_id, "from_date": day - Span::days(1), "to_date": day}),
        )
        .await;
    assert_eq!(entry["status"], "waiting", "{entry}");

    // A's confirmation carries the manage link; it opens the appointment, no login.
    let confirmation = mail(&sink, &a_mail, "Appointment confirmed").await;
    assert!(
        text(&confirmation).contains(&format!(
            "When: {}",
            freed_at
                .with_timezone(&Lisbon)
                .format("%A, %-d %B %Y, %H:%M")
        )),
        "{}",
        text(&confirmation)
    );
    let a_link = manage_link(&confirmation);
    let a_token = token_of(&a_link);
    let (status, page) = site.open(&a_link).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert!(page.contains("Your appointment"), "{page}");
    assert!(page.contains("Dr. Inês Carvalho"), "{page}");
    assert!(
        page.contains("Reason for the visit: persistent cough"),
        "{page}"
    );
    // Opening the link changed nothing, and the matcher had nothing to offer B.
    assert_eq!(
        site.get(&format!("/api/v1/appointments/{a_id}"), &admin)
            .await["status"],
        "booked"
    );
    let waiting = site.get("/api/v1/me/waitlist", &b).await;
    assert_eq!(waiting["entries"][0]["status"], "waiting", "{waiting}");

    // The page's cancel form, sent with the link's token and nothing else.
    let cancel = form(&page, "Cancel my appointment");
    assert_eq!(cancel.action, "/manage/cancel");
    assert_eq!(cancel.hidden, [("token".to_owned(), a_token.clone())]);
    let (status, page) = site.submit(&cancel, &[("reason", "feeling better")]).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert!(page.contains("Appointment cancelled"), "{page}");
    let cancelled = site.get(&format!("/api/v1/appointments/{a_id}"), &a).await;
    assert_eq!(cancelled["status"], "cancelled", "{cancelled}");
    assert_eq!(cancelled["cancel_reason"], "feeling better", "{cancelled}");
    let (_, page) = site.open(&a_link).await;
    assert!(page.contains("This appointment was cancelled"), "{page}");
    let notice = mail(&sink, &a_mail, "Appointment cancelled").await;
    assert!(
        text(&notice).contains("cancelled as you asked"),
        "{}",
        text(&notice)
    );
    assert!(
        text(&notice).contains("Cancellation reason: feeling better"),
        "{}",
        text(&notice)
    );

    // The freed slot is held for B, who is e-mailed a booking link and the hold.
    let offer = mail(&sink, &b_mail, "A slot opened up: Dr. Inês Carvalho on").await;
    let held = site.get("/api/v1/me/waitlist", &b).await;
    assert_eq!(held["entries"][0]["status"], "offered", "{held}");
    assert_eq!(
        held["entries"][0]["offer"]["slot_id"],
        freed.as_str(),
        "{held}"
    );
    let expires_at = time(&held["entries"][0]["offer"]["expires_at"]);
    let hold = expires_at - Utc::now();
    assert!(
        hold > Span::minutes(14) && hold <= Span::minutes(15),
        "held for {hold}"
    );
    let offer_link = after(&offer, "Book it:").to_owned();
    assert!(
        offer_link.starts_with(&format!("{offer_url}?token=")),
        "{offer_link}"
    );
    assert!(
        text(&offer).contains(&format!("held for you until {}.", lisbon(expires_at))),
        "{}",
        text(&offer)
    );
    assert!(
        offer["html"]
            .as_str()
            .unwrap()
            .contains(&format!("href=\"{offer_link}\"")),
        "{}",
        offer["html"]
    );

    // While it is held, nobody else can book it.
    let (status, body) = site
        .api(
            Method::POST,
            "/api/v1/appointments",
            &c,
            Some(json!({"slot_id": freed})),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["error"]["code"], "slot_held", "{body}");

    // B opens the offer and books it with the page's button.
    let (status, page) = site.open(&offer_link).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert!(page.contains("A time is free for you"), "{page}");
    let held_until = expires_at
        .with_timezone(&Lisbon)
        .format("%A %-d %B %Y, %H:%M");
    assert!(
        page.contains(&format!("It is held for you until {held_until}.")),
        "{page}"
    );
    let book = form(&page, "Book this time");
    assert_eq!(book.hidden, [("token".to_owned(), token_of(&offer_link))]);
    let (status, page) = site.submit(&book, &[]).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert!(page.contains("Appointment booked"), "{page}");
    let mine = site.get("/api/v1/appointments", &b).await;
    assert_eq!(mine["total"], 1, "{mine}");
    let b_appt = &mine["items"][0];
    assert_eq!(b_appt["slot_id"], freed.as_str(), "{b_appt}");
    assert_eq!(b_appt["status"], "booked", "{b_appt}");
    let b_id = b_appt["id"].as_str().unwrap().to_owned();
    let entry = site.get("/api/v1/me/waitlist", &b).await;
    assert_eq!(entry["entries"][0]["status"], "booked", "{entry}");
    assert_eq!(
        entry["entries"][0]["appointment_id"],
        b_id.as_str(),
        "{entry}"
    );
    // The offer's link, opened again, shows the booking it made.
    let (status, page) = site.open(&offer_link).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert!(page.contains("You booked this time"), "{page}");

    // B's confirmation, with a manage link of B's own.
    let b_confirmation = mail(&sink, &b_mail, "Appointment confirmed").await;
    let b_link = manage_link(&b_confirmation);
    assert_ne!(token_of(&b_link), a_token);
    let (status, page) = site.open(&b_link).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let b_cancel = form(&page, "Cancel my appointment");
    assert_eq!(b_cancel.hidden, [("token".to_owned(), token_of(&b_link))]);

    // The clinic wants changes a week ahead: the visit, three days away, is too close.
    site.put(
        &format!("/api/v1/clinics/{clinic_id}/policy"),
        &admin,
        json!({"change_deadline_minutes": 7 * 24 * 60}),
    )
    .await;
    let (status, page) = site.open(&b_link).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert!(page.contains("too close to the appointment"), "{page}");
    assert!(page.contains("7 days before the visit"), "{page}");
    assert!(!page.contains("Cancel my appointment"), "{page}");
    // The form B opened before the rule changed, sent now.
    let (status, page) = site.submit(&b_cancel, &[]).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{page}");
    assert!(page.contains("The appointment was not cancelled"), "{page}");
    assert!(page.contains("deadline has passed"), "{page}");
    let (status, body) = site
        .api(
            Method::POST,
            &format!("/api/v1/appointments/{b_id}/cancel"),
            &b,
            Some(json!({"reason": "changed my mind"})),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["error"]["code"], "change_deadline_passed", "{body}");
    let kept = site
        .get(&format!("/api/v1/appointments/{b_id}"), &admin)
        .await;
    assert_eq!(kept["status"], "booked", "{kept}");
    assert_eq!(kept["slot_id"], freed.as_str(), "{kept}");

    // Each patient got the mail of what happened to them and nothing else; C only the
    // verification link.
    for (to, expected) in [
        (
            &a_mail,
            &[
                "Appointment cancelled",
                "Appointment confirmed",
                "Verify your e-mail address",
            ][..],
        ),
        (
            &b_mail,
            &[
                "A slot opened up",
                "Appointment confirmed",
                "Verify your e-mail address",
            ][..],
        ),
        (&c_mail, &["Verify your e-mail address"][..]),
    ] {
        medbook_test_support::eventually(&format!("{expected:?} to {to}"), MAIL_WAIT, || async {
            let mut got = subjects(&sink.emails_to(to).await);
            got.sort();
            assert!(got.len() <= expected.len(), "to {to}: {got:?}");
            (got == expected).then_some(())
        })
        .await;
    }

    notifier.shutdown().await.unwrap();
    booking.stop().await;
}
