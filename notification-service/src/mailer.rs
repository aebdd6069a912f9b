//! [`SmtpMailer`]: sends [`Email`]s with lettre's async SMTP transport (pooled
//! connections; plain, STARTTLS or TLS; optional credentials) and classifies failures
//! for the retry rules: SMTP 5xx and unusable addresses are permanent, everything else
//! (4xx, refused connections, timeouts) transient.

use crate::domain::email::Email;
use crate::service::{Mailer, SendError};
use crate::settings::{SmtpSettings, SmtpTls};
use lettre::message::header::ContentType;
use lettre::message::{Attachment, Mailbox, MultiPart, SinglePart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::transport::smtp::PoolConfig;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use secrecy::ExposeSecret;
use std::time::Duration;

pub struct SmtpMailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
}

impl SmtpMailer {
    pub fn new(smtp: &SmtpSettings, from: &str) -> anyhow::Result<Self> {
        let tls = match smtp.tls {
            SmtpTls::None => Tls::None,
            SmtpTls::Starttls => Tls::Required(TlsParameters::new(smtp.host.clone())?),
            SmtpTls::Tls => Tls::Wrapper(TlsParameters::new(smtp.host.clone())?),
        };
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&smtp.host)
            .port(smtp.port)
            .tls(tls)
            .timeout(Some(Duration::from_millis(smtp.timeout_ms)))
            .pool_config(PoolConfig::new().max_size(smtp.pool_size));
        if let (Some(user), Some(password)) = (&smtp.username, &smtp.password) {
            builder = builder.credentials(Credentials::new(
                user.clone(),
                password.expose_secret().to_owned(),
            ));
        }
        Ok(Self {
            transport: builder.build(),
            from: from.parse()?,
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
        self.transport
            .send(message)
            .await
            .map(|_| ())
            .map_err(|e| classify(&e))
    }
}
