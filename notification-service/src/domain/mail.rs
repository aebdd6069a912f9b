//! What every e-mail is made of, whichever event it tells about: the message the
//! transport sends, why one cannot be written, and the HTML escaping and links every
//! renderer uses. The appointment e-mails (`email`), the account e-mails
//! (`account_email`) and the waitlist offers (`waitlist_email`) build on it; it knows
//! none of them.

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
    /// The link the e-mail is about (an account link, a waitlist offer's booking link)
    /// is not a plain http(s) URL. The link itself is not named: it carries a token.
    #[error("the e-mail's link is not an http(s) URL")]
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

/// `url`, if it is a plain http(s) URL: anything else (`javascript:`, a line break, a
/// space) has no place in an `href` or a text body.
pub fn web_link(url: &str) -> Result<&str, RenderError> {
    let lower = url.to_ascii_lowercase();
    let scheme_ok = lower.starts_with("https://") || lower.starts_with("http://");
    if !scheme_ok || url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(RenderError::UnsafeLink);
    }
    Ok(url)
}

/// A link as a button labelled `label`, and below it its address for mail clients that
/// show no buttons. `url` must have passed [`web_link`]; both are HTML-escaped here.
pub fn html_button(url: &str, label: &str) -> String {
    let href = escape_html(url);
    format!(
        "<p><a href=\"{href}\" style=\"display:inline-block;padding:10px 18px;\
         background:#1a5fb4;color:#ffffff;text-decoration:none;border-radius:4px\">{}</a></p>\
         <p>If the button does not work, open this address in your browser:<br>\
         <a href=\"{href}\">{href}</a></p>",
        escape_html(label)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_http_links_pass() {
        for bad in [
            "javascript:alert(1)//https://x",
            "data:text/html,hi",
            "https://medbook.example/a b",
            "https://medbook.example/a\r\nBcc: x@y.z",
            "//medbook.example/a",
        ] {
            assert_eq!(web_link(bad), Err(RenderError::UnsafeLink), "{bad}");
        }
        for good in [
            "https://medbook.example/a?b=c&d=e",
            "HTTP://localhost:8080/x",
        ] {
            assert_eq!(web_link(good), Ok(good));
        }
    }

    #[test]
    fn a_button_escapes_its_address_and_label() {
        let html = html_button("https://x.example/?a=1&b=\"2\"", "<Book>");
        assert_eq!(
            html.matches("href=\"https://x.example/?a=1&amp;b=&quot;2&quot;\"")
                .count(),
            2,
            "{html}"
        );
        assert!(html.contains(">&lt;Book&gt;</a>"), "{html}");
    }
}
