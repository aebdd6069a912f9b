//! What every e-mail is made of, whichever event it tells about: the message the
//! transport sends, why one cannot be written, and the HTML escaping both renderers
//! use. The appointment e-mails (`email`) and the account e-mails (`account_email`)
//! build on it; it knows neither.

/// What to send; the transport turns it into MIME.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email {
    /// The display name of the `To` header; `None` when the e-mail may reach someone
    /// who did not choose the name (see `account_email`).
    pub to_name: Option<String>,
    pub to_address: String,
    pub subject: String,
    pub text: String,
    pub html: String,
    pub calendar: Option<CalendarPart>,
    /// `<event-id@medbook>`: a redelivered email carries the same id, which mail
    /// clients use to fold duplicates.
    pub message_id: String,
    pub event_id: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CalendarPart {
    /// `REQUEST` or `CANCEL` (RFC 5546).
    pub method: &'static str,
    pub content: String,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RenderError {
    #[error("unknown time zone `{0}`")]
    UnknownTimeZone(String),
    /// The link is not a plain http(s) URL. The link itself is not named: it carries a
    /// token.
    #[error("the account e-mail's link is not an http(s) URL")]
    UnsafeLink,
}

/// Escapes text for HTML element content and attribute values.
pub fn escape_html(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}
