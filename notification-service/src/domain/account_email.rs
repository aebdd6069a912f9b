//! The account e-mails: the address-verification link, the password-reset link, the
//! notice that someone tried to register with an address that already has an account
//! (its link resets the password), and the notice to the old address that the
//! account's address was changed. Plain text and HTML, no calendar part.
//!
//! A link carries a single-use token: it is shown to the recipient in full and never
//! named anywhere else (not in errors, not in logs).
//!
//! None of them names the account's holder — not in the greeting ("Hello,"), the
//! subject, the bodies or the `To` header — because any of them can reach an address
//! whose owner never chose the name, or the account, and the event does not say
//! which:
//! - the verification link (`VerifyEmail`) goes, by definition, to an address nobody
//!   has proven yet: the one just registered, or the new one of an address change;
//! - the reset link (`PasswordReset`) and the notice of a second registration
//!   (`RegistrationAttempted`) go to the account's address, which is unproven while
//!   the account is unverified — a stranger can register someone else's address, then
//!   ask for a reset or register again, with no further proof;
//! - the notice of an address change (`EmailChanged`) goes to the old address, which
//!   may have been an unverified one too.
//!
//! A full name is up to 200 characters of the registrant's choosing; put in a greeting
//! it would let anyone have medbook send their text ("your account is locked, call…")
//! to any address. The only recipient-specific text these e-mails carry is the
//! recipient's own address and, in an address-change notice, the new address.

use super::mail::{escape_html, html_button, web_link, Email, RenderError};
use chrono::{DateTime, Utc};
use medbook_shared::events::{AccountEvent, AccountLink, EventEnvelope};

/// What one account e-mail says, before it is laid out as text and HTML.
struct Content<'a> {
    subject: &'static str,
    /// Paragraphs before the link.
    intro: Vec<String>,
    link: Option<Link<'a>>,
    /// Paragraphs after the link.
    outro: Vec<String>,
}

struct Link<'a> {
    url: &'a str,
    /// The button's label in HTML.
    label: &'static str,
    expires_at: DateTime<Utc>,
}

impl<'a> Link<'a> {
    /// The link of `l`, if it is a plain http(s) URL ([`web_link`]).
    fn of(l: &'a AccountLink, label: &'static str) -> Result<Self, RenderError> {
        Ok(Self {
            url: web_link(&l.link)?,
            label,
            expires_at: l.expires_at,
        })
    }

    /// `This link works until 2 Dec 2026, 08:00 UTC and only once.`
    fn validity(&self) -> String {
        format!(
            "This link works until {} and only once.",
            self.expires_at.format("%-d %b %Y, %H:%M UTC")
        )
    }
}

/// The greeting of every account e-mail: the holder's name may not be the
/// recipient's (see the module documentation).
const GREETING: &str = "Hello,";

/// Renders the e-mail for the account event `account` of `event`.
pub(super) fn render(event: &EventEnvelope, account: &AccountEvent) -> Result<Email, RenderError> {
    let to = account.account();
    let content = match account {
        AccountEvent::VerifyEmail(l) => Content {
            subject: "Verify your e-mail address",
            intro: vec![format!(
                "please confirm that {} is your e-mail address by opening this link:",
                l.account.email
            )],
            link: Some(Link::of(l, "Verify my e-mail address")?),
            outro: vec![
                "If you did not create a medbook account or add this address to one, \
                 ignore this e-mail: the address is not used until it is confirmed."
                    .to_owned(),
            ],
        },
        AccountEvent::PasswordReset(l) => Content {
            subject: "Reset your medbook password",
            intro: vec![format!(
                "someone asked to reset the password of the medbook account of {}. \
                 If it was you, set a new password here:",
                l.account.email
            )],
            link: Some(Link::of(l, "Set a new password")?),
            outro: vec![
                "If you did not ask for this, ignore this e-mail: your password stays as it is."
                    .to_owned(),
            ],
        },
        AccountEvent::RegistrationAttempted(l) => Content {
            subject: "Someone tried to register with your e-mail address",
            intro: vec![
                format!(
                    "someone tried to register a new medbook account with {}, \
                     but this address already has an account.",
                    l.account.email
                ),
                "If it was you, you need no new account: sign in, or if you have \
                 forgotten your password, set a new one here:"
                    .to_owned(),
            ],
            link: Some(Link::of(l, "Set a new password")?),
            outro: vec![
                "If it was not you, ignore this e-mail: nothing about your account has changed."
                    .to_owned(),
            ],
        },
        AccountEvent::EmailChanged(c) => Content {
            subject: "Your medbook e-mail address was changed",
            intro: vec![
                format!(
                    "the e-mail address of your medbook account was changed from {} to {}. \
                     From now on, medbook e-mails go to {}.",
                    c.account.email, c.new_email, c.new_email
                ),
                format!(
                    "We are telling you at {} because it was the account's address until now.",
                    c.account.email
                ),
            ],
            link: None,
            outro: vec![
                "If you did not make this change, someone else may be using your account: \
                 reset your password and contact your clinic right away."
                    .to_owned(),
            ],
        },
    };
    Ok(Email {
        // No name anywhere: see the module documentation.
        to_name: None,
        to_address: to.email.clone(),
        subject: content.subject.to_owned(),
        text: text_body(GREETING, &content),
        html: html_body(GREETING, &content),
        calendar: None,
        message_id: format!("<{}@medbook>", event.id),
        event_id: event.id.to_string(),
    })
}

fn text_body(greeting: &str, c: &Content<'_>) -> String {
    let mut paragraphs = vec![greeting.to_owned()];
    paragraphs.extend(c.intro.iter().cloned());
    if let Some(link) = &c.link {
        paragraphs.push(link.url.to_owned());
        paragraphs.push(link.validity());
    }
    paragraphs.extend(c.outro.iter().cloned());
    paragraphs.push("— medbook".to_owned());
    let mut out = paragraphs.join("\n\n");
    out.push('\n');
    out
}

fn html_body(greeting: &str, c: &Content<'_>) -> String {
    let p = |s: &str| format!("<p>{}</p>", escape_html(s));
    let mut out = String::from("<!DOCTYPE html><html><body>");
    out.push_str(&p(greeting));
    for s in &c.intro {
        out.push_str(&p(s));
    }
    if let Some(link) = &c.link {
        out.push_str(&html_button(link.url, link.label));
        out.push_str(&p(&link.validity()));
    }
    for s in &c.outro {
        out.push_str(&p(s));
    }
    out.push_str("<p>— medbook</p></body></html>");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use medbook_shared::events::{AccountInfo, EmailChange, Event};
    use uuid::Uuid;

    /// The e-mail of an account event, called as the service calls `email::render`
    /// (the dispatch over all events lives above this module, not here).
    fn render(e: &EventEnvelope, _organizer: &str) -> Result<Email, RenderError> {
        match &e.event {
            Event::Account(account) => super::render(e, account),
            Event::Appointment(_) | Event::Waitlist(_) => {
                panic!("not an account event: {}", e.event_type().as_str())
            }
        }
    }

    const LINK: &str = "https://medbook.example/account/reset-password?token=abc123&lang=en";
    const ESCAPED_LINK: &str =
        "https://medbook.example/account/reset-password?token=abc123&amp;lang=en";

    fn account() -> AccountInfo {
        AccountInfo {
            id: Uuid::new_v4(),
            email: "ann@example.com".into(),
            full_name: "<b>Ann</b> O'Neil".into(),
        }
    }

    fn link() -> AccountLink {
        AccountLink {
            account: account(),
            link: LINK.into(),
            expires_at: Utc.with_ymd_and_hms(2026, 12, 2, 8, 0, 0).unwrap(),
        }
    }

    fn envelope(e: AccountEvent) -> EventEnvelope {
        EventEnvelope::new(Utc.with_ymd_and_hms(2026, 12, 1, 8, 0, 0).unwrap(), e)
    }

    /// What every account e-mail must be: to the account's address with no display
    /// name, a greeting without a name, the account's name nowhere (it may not be the
    /// recipient's), no calendar part, the event's Message-ID.
    fn assert_account_email(e: &EventEnvelope, m: &Email, subject: &str, to: &str) {
        assert_eq!(m.subject, subject);
        assert_eq!(m.to_address, to);
        assert_eq!(m.to_name, None);
        assert!(m.calendar.is_none());
        assert_eq!(m.message_id, format!("<{}@medbook>", e.id));
        assert_eq!(m.event_id, e.id.to_string());
        assert!(m.text.starts_with("Hello,\n\n"), "{}", m.text);
        assert!(m.html.contains("<p>Hello,</p>"), "{}", m.html);
        for part in [&m.subject, &m.text, &m.html] {
            assert!(!part.contains("Ann"), "{part}");
            assert!(!part.contains("Neil"), "{part}");
        }
        assert!(!m.text.contains("calendar"));
    }

    /// A full name chosen to turn the e-mail into someone else's message.
    const LURE: &str = "Your account is locked, call +1 555 0100";

    fn with_name(mut l: AccountLink, full_name: &str) -> AccountLink {
        l.account.full_name = full_name.into();
        l
    }

    fn assert_no_lure(m: &Email) {
        assert_eq!(m.to_name, None);
        for part in [&m.subject, &m.text, &m.html] {
            assert!(!part.contains(LURE), "{part}");
            assert!(!part.contains("555 0100"), "{part}");
        }
    }

    #[test]
    fn a_verification_link_does_not_carry_the_registrants_text() {
        // Registration and address change alike: the address is not proven yet.
        let e = envelope(AccountEvent::VerifyEmail(with_name(link(), LURE)));
        let m = render(&e, "no-reply@medbook.local").unwrap();
        assert_no_lure(&m);
        assert!(m.text.starts_with("Hello,\n\n"), "{}", m.text);
        assert!(m.html.contains("<p>Hello,</p>"), "{}", m.html);
    }

    #[test]
    fn no_account_email_carries_the_account_holders_name() {
        // An account can hold an address it never proved: a stranger who registered
        // someone else's address can then ask for a reset, register again, or move the
        // account away, and each e-mail goes to that address.
        for event in [
            AccountEvent::VerifyEmail(with_name(link(), LURE)),
            AccountEvent::PasswordReset(with_name(link(), LURE)),
            AccountEvent::RegistrationAttempted(with_name(link(), LURE)),
            AccountEvent::EmailChanged(EmailChange {
                account: AccountInfo {
                    full_name: LURE.into(),
                    ..account()
                },
                new_email: "ann@example.org".into(),
            }),
        ] {
            let m = render(&envelope(event), "no-reply@medbook.local").unwrap();
            assert_no_lure(&m);
        }
    }

    fn assert_link(m: &Email) {
        // In full in the text part, on a line of its own, and as a button and a
        // visible address in HTML.
        assert!(m.text.contains(&format!("\n\n{LINK}\n\n")), "{}", m.text);
        assert!(
            m.text
                .contains("This link works until 2 Dec 2026, 08:00 UTC and only once."),
            "{}",
            m.text
        );
        assert_eq!(
            m.html.matches(&format!("href=\"{ESCAPED_LINK}\"")).count(),
            2,
            "{}",
            m.html
        );
        assert!(m.html.contains(&format!(">{ESCAPED_LINK}</a>")));
        assert!(!m.html.contains(LINK), "the raw `&` must be escaped");
        assert!(m
            .html
            .contains("<p>This link works until 2 Dec 2026, 08:00 UTC and only once.</p>"));
    }

    #[test]
    fn verify_email_asks_to_confirm_the_address_with_the_link() {
        let e = envelope(AccountEvent::VerifyEmail(link()));
        let m = render(&e, "no-reply@medbook.local").unwrap();
        assert_account_email(&e, &m, "Verify your e-mail address", "ann@example.com");
        assert_link(&m);
        assert!(m
            .text
            .contains("please confirm that ann@example.com is your e-mail address"));
        assert!(m.html.contains(">Verify my e-mail address</a>"));
    }

    #[test]
    fn password_reset_offers_the_link_and_says_to_ignore_it_otherwise() {
        let e = envelope(AccountEvent::PasswordReset(link()));
        let m = render(&e, "no-reply@medbook.local").unwrap();
        assert_account_email(&e, &m, "Reset your medbook password", "ann@example.com");
        assert_link(&m);
        assert!(m.html.contains(">Set a new password</a>"));
        assert!(m
            .text
            .contains("If you did not ask for this, ignore this e-mail"));
    }

    #[test]
    fn a_registration_attempt_offers_a_password_reset_if_it_was_the_owner() {
        let e = envelope(AccountEvent::RegistrationAttempted(link()));
        let m = render(&e, "no-reply@medbook.local").unwrap();
        assert_account_email(
            &e,
            &m,
            "Someone tried to register with your e-mail address",
            "ann@example.com",
        );
        assert_link(&m);
        assert!(m.text.contains("already has an account"));
        assert!(m.text.contains("If it was you"));
        assert!(m.text.contains("If it was not you, ignore this e-mail"));
        assert!(m.html.contains(">Set a new password</a>"));
    }

    #[test]
    fn an_address_change_is_told_to_the_old_address_without_a_link() {
        let e = envelope(AccountEvent::EmailChanged(EmailChange {
            account: account(),
            new_email: "ann<new>@example.org".into(),
        }));
        let m = render(&e, "no-reply@medbook.local").unwrap();
        assert_account_email(
            &e,
            &m,
            "Your medbook e-mail address was changed",
            "ann@example.com",
        );
        assert!(
            m.text
                .contains("changed from ann@example.com to ann<new>@example.org"),
            "{}",
            m.text
        );
        assert!(m.html.contains("to ann&lt;new&gt;@example.org"));
        assert!(m.text.contains("contact your clinic"));
        assert!(!m.text.contains("This link works until"));
        assert!(!m.html.contains("href="));
    }

    #[test]
    fn a_link_that_is_not_http_is_refused_without_naming_it() {
        for bad in [
            "javascript:alert(1)//https://x",
            "data:text/html,hi",
            "https://medbook.example/a b",
            "https://medbook.example/a\r\nBcc: x@y.z",
        ] {
            let mut l = link();
            l.link = bad.into();
            let err = render(&envelope(AccountEvent::VerifyEmail(l)), "x@y.z").unwrap_err();
            assert_eq!(err, RenderError::UnsafeLink);
            assert!(!err.to_string().contains(bad));
        }
        let mut l = link();
        l.link = "HTTP://localhost:8080/verify?token=t".into();
        assert!(render(&envelope(AccountEvent::PasswordReset(l)), "x@y.z").is_ok());
    }
}
