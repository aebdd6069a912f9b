//! [`SmtpMailer`]: sends [`Email`]s over SMTP with lettre (plain, STARTTLS or TLS;
//! optional credentials) and classifies failures for the retry rules: SMTP 5xx and
//! unusable addresses are permanent; 4xx replies transient; a server that cannot be
//! talked to (refused, dropped or timed-out connections, 421) unavailable.
//!
//! It keeps up to `smtp.max_connections` connections open and reuses them, so that
//! many partitions can send at once. A kept-open connection the server has closed
//! meanwhile (idle timeout: a 421 or EOF on the next command, a reset) is replaced and
//! the email sent on the new one at once: that is not a failed attempt.
//!
//! Each connection is its own TCP socket with `TCP_NODELAY`: lettre writes the
//! message body and the closing `.` as two writes, and with Nagle's algorithm on, the
//! second waits for the server's delayed ACK — about 40 ms per email on Linux, which
//! capped a consumer at ~20 emails/s. (With `smtp.tls: tls`, lettre opens the socket
//! itself and that delay remains.)

use crate::domain::mail::Email;
use crate::service::ports::{Mailer, SendError};
use crate::settings::{SmtpSettings, SmtpTls};
use lettre::message::header::ContentType;
use lettre::message::{Attachment, Mailbox, MultiPart, SinglePart};
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{AsyncSmtpConnection, TlsParameters};
use lettre::transport::smtp::extension::ClientId;
use lettre::Message;
use secrecy::ExposeSecret;
use std::sync::Mutex;
use std::time::Duration;
use tokio::sync::Semaphore;
use tracing::Instrument;

pub struct SmtpMailer {
    host: String,
    port: u16,
    mode: SmtpTls,
    tls: Option<TlsParameters>,
    credentials: Option<Credentials>,
    hello: ClientId,
    timeout: Duration,
    from: Mailbox,
    /// Open connections not in use.
    idle: Mutex<Vec<AsyncSmtpConnection>>,
    /// One permit per connection that may be open.
    permits: Semaphore,
    metrics: crate::service::Metrics,
}

fn network(what: &str, e: impl std::fmt::Display) -> SendError {
    SendError::Unavailable(format!("{what}: {e}"))
}

/// Whether a failure on a kept-open connection means the server had closed it: a 421
/// (RFC 5321 §3.8: the server is closing the channel), or no SMTP reply at all (EOF,
/// reset, broken pipe).
fn closed_by_server(e: &lettre::transport::smtp::Error) -> bool {
    match e.status() {
        Some(code) => code.to_string() == "421",
        None => !e.is_client(),
    }
}

impl SmtpMailer {
    /// `metrics` counts the connections replaced after the server closed them.
    pub fn new(
        smtp: &SmtpSettings,
        from: &str,
        metrics: crate::service::Metrics,
    ) -> anyhow::Result<Self> {
        let tls = match smtp.tls {
            SmtpTls::None => None,
            SmtpTls::Starttls | SmtpTls::Tls => Some(TlsParameters::new(smtp.host.clone())?),
        };
        let credentials = match (&smtp.username, &smtp.password) {
            (Some(user), Some(password)) => Some(Credentials::new(
                user.clone(),
                password.expose_secret().to_owned(),
            )),
            _ => None,
        };
        Ok(Self {
            host: smtp.host.clone(),
            port: smtp.port,
            mode: smtp.tls,
            tls,
            credentials,
            hello: ClientId::default(),
            timeout: Duration::from_millis(smtp.timeout_ms),
            from: from.parse()?,
            idle: Mutex::new(Vec::new()),
            permits: Semaphore::new(smtp.max_connections),
            metrics,
        })
    }

    async fn connect(&self) -> Result<AsyncSmtpConnection, SendError> {
        let mut conn = match (self.mode, &self.tls) {
            (SmtpTls::Tls, tls) => AsyncSmtpConnection::connect_tokio1(
                (self.host.as_str(), self.port),
                Some(self.timeout),
                &self.hello,
                tls.clone(),
                None,
            )
            .await
            .map_err(|e| classify(&e))?,
            (_, tls) => {
                let tcp = tokio::net::TcpStream::connect((self.host.as_str(), self.port))
                    .await
                    .map_err(|e| network("cannot connect", e))?;
                tcp.set_nodelay(true)
                    .map_err(|e| network("cannot set TCP_NODELAY", e))?;
                let mut conn =
                    AsyncSmtpConnection::connect_with_transport(Box::new(tcp), &self.hello)
                        .await
                        .map_err(|e| classify(&e))?;
                if let (SmtpTls::Starttls, Some(tls)) = (self.mode, tls) {
                    conn.starttls(tls.clone(), &self.hello)
                        .await
                        .map_err(|e| classify(&e))?;
                }
                conn
            }
        };
        if let Some(credentials) = &self.credentials {
            conn.auth(&[Mechanism::Plain, Mechanism::Login], credentials)
                .await
                .map_err(|e| classify(&e))?;
        }
        Ok(conn)
    }

    fn take_idle(&self) -> Option<AsyncSmtpConnection> {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        while let Some(conn) = idle.pop() {
            if !conn.has_broken() {
                return Some(conn);
            }
        }
        None
    }

    fn put_idle(&self, conn: AsyncSmtpConnection) {
        self.idle
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(conn);
    }

    /// `f` bounded by the timeout.
    async fn timed<T>(
        &self,
        f: impl std::future::Future<Output = Result<T, SendError>>,
    ) -> Result<T, SendError> {
        tokio::time::timeout(self.timeout, f)
            .await
            .unwrap_or_else(|_| {
                Err(SendError::Unavailable(format!(
                    "SMTP server did not answer within {:?}",
                    self.timeout
                )))
            })
    }
    fn message(&self, email: &Email) -> Result<Message, SendError> {
        let address = email
            .to_address
            .parse()
            .map_err(|e| SendError::Permanent(format!("invalid recipient address: {e}")))?;
        let body = MultiPart::alternative()
            .singlepart(SinglePart::plain(email.text.clone()))
            .singlepart(SinglePart::html(email.html.clone()));
        let body = match &email.calendar {
            None => MultiPart::mixed().multipart(body),
            Some(cal) => {
                let content_type = ContentType::parse(&format!(
                    "text/calendar; charset=utf-8; method={}",
                    cal.method
                ))
                .map_err(|e| SendError::Permanent(format!("calendar content type: {e}")))?;
                MultiPart::mixed().multipart(body).singlepart(
                    Attachment::new("appointment.ics".to_owned())
                        .body(cal.content.clone(), content_type),
                )
            }
        };
        Message::builder()
            .from(self.from.clone())
            .to(Mailbox::new(email.to_name.clone(), address))
            .subject(&email.subject)
            .message_id(Some(email.message_id.clone()))
            .multipart(body)
            .map_err(|e| SendError::Permanent(format!("cannot build the message: {e}")))
    }
}

/// Permanent replies about the recipient's mailbox (RFC 5321 §4.2.3): it does not
/// exist, is not here, is full, or its name is not allowed. Every other 5xx is the
/// server refusing our mail as such.
const RECIPIENT_REPLIES: [&str; 4] = ["550", "551", "552", "553"];

/// Maps lettre's error to the retry rules.
pub fn classify(e: &lettre::transport::smtp::Error) -> SendError {
    if e.is_client() {
        SendError::Permanent(e.to_string())
    } else if e.is_permanent() {
        let code = e.status().map(|c| c.to_string());
        if code.is_some_and(|c| RECIPIENT_REPLIES.contains(&c.as_str())) {
            SendError::Permanent(e.to_string())
        } else {
            SendError::Refused(e.to_string())
        }
    } else if e.is_transient() && !closed_by_server(e) {
        SendError::Transient(e.to_string())
    } else {
        SendError::Unavailable(e.to_string())
    }
}

#[async_trait::async_trait]
impl Mailer for SmtpMailer {
    /// One client span per attempt, a child of the message's consumer span.
    async fn send(&self, email: &Email) -> Result<(), SendError> {
        let span = tracing::info_span!(
            "smtp send",
            otel.name = "smtp send",
            otel.kind = "client",
            otel.status_code = tracing::field::Empty,
            server.address = %self.host,
            server.port = self.port,
            error.type = tracing::field::Empty,
        );
        let result = self.send_once(email).instrument(span.clone()).await;
        if let Err(e) = &result {
            span.record("otel.status_code", "error");
            span.record("error.type", e.kind());
        }
        result
    }

    async fn probe(&self) -> Result<(), SendError> {
        self.probe_once().await
    }
}

impl SmtpMailer {
    async fn send_once(&self, email: &Email) -> Result<(), SendError> {
        let message = self.message(email)?;
        let envelope = message.envelope().clone();
        let body = message.formatted();
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|_| SendError::Unavailable("mailer closed".into()))?;
        // A kept-open connection first; if the server had closed it, a fresh one at
        // once, without counting a failed attempt.
        if let Some(mut conn) = self.take_idle() {
            let sent = tokio::time::timeout(self.timeout, conn.send(&envelope, &body)).await;
            match sent {
                Ok(Ok(_)) => {
                    self.put_idle(conn);
                    return Ok(());
                }
                Ok(Err(e)) if !closed_by_server(&e) => return Err(classify(&e)),
                Ok(Err(e)) => {
                    tracing::debug!(error = %e, "kept-open SMTP connection was closed by the server; reconnecting");
                }
                Err(_) => {
                    tracing::debug!("kept-open SMTP connection timed out; reconnecting");
                }
            }
            self.metrics.smtp_reconnected();
        }
        let mut conn = self.timed(self.connect()).await?;
        self.timed(async {
            conn.send(&envelope, &body)
                .await
                .map(|_| ())
                .map_err(|e| classify(&e))
        })
        .await?;
        self.put_idle(conn);
        Ok(())
    }

    async fn probe_once(&self) -> Result<(), SendError> {
        let mut conn = self.timed(self.connect()).await?;
        let _ = tokio::time::timeout(self.timeout, conn.quit()).await;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mailer() -> SmtpMailer {
        let smtp = SmtpSettings {
            host: "localhost".into(),
            port: 25,
            tls: SmtpTls::None,
            username: None,
            password: None,
            timeout_ms: 1000,
            max_connections: 1,
            probe_interval_ms: 1000,
            idle_check_interval_ms: 1000,
        };
        let metrics = crate::service::Metrics::new().unwrap();
        SmtpMailer::new(&smtp, "medbook <no-reply@medbook.local>", metrics).unwrap()
    }

    fn email(to_name: Option<&str>) -> Email {
        Email {
            to_name: to_name.map(str::to_owned),
            to_address: "ann@example.com".into(),
            subject: "Verify your e-mail address".into(),
            text: "Hello,\n".into(),
            html: "<p>Hello,</p>".into(),
            calendar: None,
            message_id: "<1@medbook>".into(),
            event_id: "1".into(),
        }
    }

    fn to_header(email: &Email) -> String {
        let message = mailer().message(email).unwrap();
        let raw = String::from_utf8(message.formatted()).unwrap();
        raw.lines()
            .find(|l| l.starts_with("To: "))
            .unwrap()
            .to_owned()
    }

    #[test]
    fn the_to_header_names_the_recipient_only_when_there_is_a_name() {
        assert_eq!(to_header(&email(None)), "To: ann@example.com");
        assert_eq!(
            to_header(&email(Some("Ann Lima"))),
            "To: \"Ann Lima\" <ann@example.com>"
        );
    }
}
