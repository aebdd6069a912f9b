//! [`SmtpMailer`]: sends [`Email`]s over SMTP with lettre (plain, STARTTLS or TLS;
//! optional credentials) and classifies failures for the retry rules: SMTP 5xx and
//! unusable addresses are permanent, everything else (4xx, refused connections,
//! timeouts) transient.
//!
//! It keeps one connection open and reuses it. The connection is its own TCP socket
//! with `TCP_NODELAY`: lettre writes the message body and the closing `.` as two
//! writes, and with Nagle's algorithm on, the second waits for the server's delayed
//! ACK — about 40 ms per email on Linux, which capped a consumer at ~20 emails/s.
//! (With `smtp.tls: tls`, lettre opens the socket itself and that delay remains.)

use crate::domain::email::Email;
use crate::service::{Mailer, SendError};
use crate::settings::{SmtpSettings, SmtpTls};
use lettre::message::header::ContentType;
use lettre::message::{Attachment, Mailbox, MultiPart, SinglePart};
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{AsyncSmtpConnection, TlsParameters};
use lettre::transport::smtp::extension::ClientId;
use lettre::Message;
use secrecy::ExposeSecret;
use std::time::Duration;
use tokio::sync::Mutex;

pub struct SmtpMailer {
    host: String,
    port: u16,
    mode: SmtpTls,
    tls: Option<TlsParameters>,
    credentials: Option<Credentials>,
    hello: ClientId,
    timeout: Duration,
    from: Mailbox,
    connection: Mutex<Option<AsyncSmtpConnection>>,
}

fn network(what: &str, e: impl std::fmt::Display) -> SendError {
    SendError::Transient(format!("{what}: {e}"))
}

impl SmtpMailer {
    pub fn new(smtp: &SmtpSettings, from: &str) -> anyhow::Result<Self> {
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
            connection: Mutex::new(None),
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

    /// One attempt on the open connection (opened first if needed). The flag in the
    /// error says whether an already open connection failed (rather than the server
    /// refusing): such a connection may simply have gone stale.
    async fn attempt(
        &self,
        slot: &mut Option<AsyncSmtpConnection>,
        message: &Message,
    ) -> Result<(), (SendError, bool)> {
        if slot.as_ref().is_none_or(AsyncSmtpConnection::has_broken) {
            *slot = Some(self.connect().await.map_err(|e| (e, false))?);
        }
        let Some(conn) = slot.as_mut() else {
            return Err((SendError::Transient("no connection".into()), false));
        };
        let result = conn.send(message.envelope(), &message.formatted()).await;
        result.map(|_| ()).map_err(|e| {
            // lettre aborts the connection on any failure; open a new one next time.
            *slot = None;
            (classify(&e), !e.is_transient() && !e.is_permanent())
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
            .to(Mailbox::new(Some(email.to_name.clone()), address))
            .subject(&email.subject)
            .message_id(Some(email.message_id.clone()))
            .multipart(body)
            .map_err(|e| SendError::Permanent(format!("cannot build the message: {e}")))
    }
}

/// Maps lettre's error to the retry rules.
pub fn classify(e: &lettre::transport::smtp::Error) -> SendError {
    if e.is_permanent() || e.is_client() {
        SendError::Permanent(e.to_string())
    } else {
        SendError::Transient(e.to_string())
    }
}

#[async_trait::async_trait]
impl Mailer for SmtpMailer {
    async fn send(&self, email: &Email) -> Result<(), SendError> {
        let message = self.message(email)?;
        let mut slot = self.connection.lock().await;
        let mut result =
            tokio::time::timeout(self.timeout, self.attempt(&mut slot, &message)).await;
        // A kept-open connection the server has closed meanwhile: one more try on a
        // fresh connection before calling it a failure.
        if matches!(result, Ok(Err((_, true)))) {
            result = tokio::time::timeout(self.timeout, self.attempt(&mut slot, &message)).await;
        }
        match result {
            Ok(r) => r.map_err(|(e, _)| e),
            Err(_) => {
                *slot = None;
                Err(SendError::Transient(format!(
                    "SMTP server did not answer within {:?}",
                    self.timeout
                )))
            }
        }
    }
}
