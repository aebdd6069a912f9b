//! The day feed's [`ChangeSource`] over PostgreSQL: a connection of its own (never one
//! of the pool's: it stays open, waiting) that `LISTEN`s on [`CHANNEL`], where the
//! trigger on `appointments` announces every committed change (migration
//! `2026-12-08-000014_day_feed_notify`). Diesel cannot wait on a connection's socket;
//! tokio-postgres can, so this one connection uses it.
//!
//! The connection names itself [`APPLICATION_NAME`] (`pg_stat_activity`), and asks the
//! server something every [`PING_EVERY`]: a connection that died without a word (a
//! network gone quiet) is noticed within [`PING_TIMEOUT`] of the next ask.

use crate::domain::{AppointmentId, DoctorId};
use crate::service::day_feed::{ChangeSource, ChangeSubscription};
use crate::service::ports::RepoError;
use crate::service::schedule::{ChangeKind, ChangeNotice};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_postgres::{AsyncMessage, NoTls};
use uuid::Uuid;

/// The channel the trigger announces changes on.
pub const CHANNEL: &str = "appointment_changes";
/// How the listening connection shows in `pg_stat_activity.application_name`.
pub const APPLICATION_NAME: &str = "booking-service day-feed";
/// How often an idle listening connection is checked.
pub const PING_EVERY: Duration = Duration::from_secs(30);
/// How long `LISTEN` and a check may take before the connection counts as lost.
pub const PING_TIMEOUT: Duration = Duration::from_secs(10);

pub struct PgChangeSource {
    config: tokio_postgres::Config,
}

impl PgChangeSource {
    /// Over the service's database URL (`database.url`).
    pub fn new(url: &str, connect_timeout: Duration) -> anyhow::Result<Self> {
        let mut config: tokio_postgres::Config = url.parse().map_err(|e| {
            anyhow::anyhow!(
                "database.url, for the day feed's listener: {}",
                describe(&e)
            )
        })?;
        config
            .application_name(APPLICATION_NAME)
            .connect_timeout(connect_timeout);
        Ok(Self { config })
    }
}

/// An error with its causes ("db error: FATAL: terminating connection …").
fn describe(e: &tokio_postgres::Error) -> String {
    let mut text = e.to_string();
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}

fn lost(what: impl std::fmt::Display) -> RepoError {
    RepoError::Unavailable(format!("day feed listener: {what}"))
}

#[async_trait]
impl ChangeSource for PgChangeSource {
    async fn listen(&self) -> Result<Box<dyn ChangeSubscription>, RepoError> {
        let (client, mut connection) = self
            .config
            .connect(NoTls)
            .await
            .map_err(|e| lost(describe(&e)))?;
        let (tx, messages) = mpsc::unbounded_channel();
        // Drives the connection (the client's own requests too) and passes on what the
        // server announces; ends with the connection, saying why.
        let driver = tokio::spawn(async move {
            loop {
                let message = std::future::poll_fn(|cx| connection.poll_message(cx)).await;
                let item = match message {
                    Some(Ok(AsyncMessage::Notification(n))) if n.channel() == CHANNEL => {
                        Ok(n.payload().to_owned())
                    }
                    Some(Ok(_)) => continue,
                    Some(Err(e)) => Err(describe(&e)),
                    None => Err("the server closed the connection".to_owned()),
                };
                let end = item.is_err();
                if tx.send(item).is_err() || end {
                    return;
                }
            }
        });
        let subscription = PgSubscription {
            client,
            messages,
            driver,
            ping: tokio::time::interval_at(tokio::time::Instant::now() + PING_EVERY, PING_EVERY),
        };
        match tokio::time::timeout(
            PING_TIMEOUT,
            subscription
                .client
                .batch_execute(&format!("LISTEN {CHANNEL}")),
        )
        .await
        {
            Ok(Ok(())) => Ok(Box::new(subscription)),
            Ok(Err(e)) => Err(lost(describe(&e))),
            Err(_) => Err(lost("LISTEN got no answer in time")),
        }
    }
}

struct PgSubscription {
    client: tokio_postgres::Client,
    messages: mpsc::UnboundedReceiver<Result<String, String>>,
    driver: tokio::task::JoinHandle<()>,
    ping: tokio::time::Interval,
}

impl Drop for PgSubscription {
    fn drop(&mut self) {
        self.driver.abort();
    }
}

#[async_trait]
impl ChangeSubscription for PgSubscription {
    async fn next(&mut self) -> Result<Option<ChangeNotice>, RepoError> {
        loop {
            tokio::select! {
                biased;
                message = self.messages.recv() => return match message {
                    Some(Ok(payload)) => Ok(parse(&payload)),
                    Some(Err(e)) => Err(lost(e)),
                    None => Err(lost("the connection's driver ended")),
                },
                _ = self.ping.tick() => {
                    match tokio::time::timeout(PING_TIMEOUT, self.client.simple_query("SELECT 1")).await {
                        Ok(Ok(_)) => {}
                        Ok(Err(e)) => return Err(lost(describe(&e))),
                        Err(_) => return Err(lost("no answer to a check in time")),
                    }
                }
            }
        }
    }
}

/// The trigger's payload.
#[derive(serde::Deserialize)]
struct Payload {
    appointment_id: Uuid,
    doctor_id: Uuid,
    kind: String,
    version: i32,
    starts_at: DateTime<Utc>,
    previous_starts_at: Option<DateTime<Utc>>,
}

/// A payload as a notice; `None` (logged) if it is not one. A kind this version does
/// not know counts as a status change: watchers then judge by the appointment itself.
pub fn parse(payload: &str) -> Option<ChangeNotice> {
    let p: Payload = match serde_json::from_str(payload) {
        Ok(p) => p,
        Err(e) => {
            let start: String = payload.chars().take(200).collect();
            tracing::warn!(error = %e, payload = %start, "day feed: unreadable announcement");
            return None;
        }
    };
    let kind = match p.kind.as_str() {
        "booked" => ChangeKind::Booked,
        "cancelled" => ChangeKind::Cancelled,
        "rescheduled" => ChangeKind::Rescheduled,
        _ => ChangeKind::StatusChanged,
    };
    Some(ChangeNotice {
        appointment_id: AppointmentId(p.appointment_id),
        doctor_id: DoctorId(p.doctor_id),
        kind,
        version: p.version,
        starts_at: p.starts_at,
        previous_starts_at: p.previous_starts_at,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn payloads_of_the_trigger_parse() {
        let n = parse(
            r#"{"appointment_id" : "6f1c7a52-0a0e-4f57-9a43-5d2f1c1b2a10", "doctor_id" : "0d5c3a1e-7a55-4c1b-8a9e-1b2c3d4e5f60", "kind" : "rescheduled", "version" : 3, "starts_at" : "2026-12-08T09:30:00.000000Z", "previous_starts_at" : "2026-12-07T23:30:00.000000Z"}"#,
        )
        .unwrap();
        assert_eq!(n.kind, ChangeKind::Rescheduled);
        assert_eq!(n.version, 3);
        assert_eq!(
            n.starts_at,
            "2026-12-08T09:30:00Z".parse::<DateTime<Utc>>().unwrap()
        );
        assert_eq!(
            n.previous_starts_at,
            Some("2026-12-07T23:30:00Z".parse().unwrap())
        );
        let n = parse(
            r#"{"appointment_id":"6f1c7a52-0a0e-4f57-9a43-5d2f1c1b2a10","doctor_id":"0d5c3a1e-7a55-4c1b-8a9e-1b2c3d4e5f60","kind":"no_show_marked","version":2,"starts_at":"2026-12-08T09:30:00Z","previous_starts_at":null}"#,
        )
        .unwrap();
        assert_eq!(n.kind, ChangeKind::StatusChanged);
        assert_eq!(n.previous_starts_at, None);
    }

    #[test]
    fn anything_else_is_unreadable() {
        assert!(parse("").is_none());
        assert!(parse("hello").is_none());
        assert!(parse(r#"{"appointment_id":"nope"}"#).is_none());
    }
}
