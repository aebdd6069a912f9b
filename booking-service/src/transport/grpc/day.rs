//! `StreamDailyAppointments`: a snapshot of the day, then each committed change of it.
//!
//! A watcher never slows a booking: the feed is a bounded broadcast that drops what a
//! watcher has not taken, and each watcher's outgoing queue is bounded (`grpc.
//! watcher_buffer`). A watcher that falls behind (its queue full, or the feed moved on
//! without it) is sent a fresh snapshot once its client has drained the queue; after
//! [`MAX_RESYNCS`] such restarts, or if the client does not drain it within
//! [`DRAIN_WAIT`], the stream ends with `RESOURCE_EXHAUSTED`. The last slot of the
//! queue is kept for that status.

use super::appointment;
use crate::domain::AppointmentId;
use crate::service::schedule::{ChangeKind, Day, DaySchedule};
use medbook_proto::schedule::v1 as pb;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{broadcast, mpsc};
use tonic::Status;

pub type DayStream = tokio_stream::wrappers::ReceiverStream<Result<pb::DayEvent, Status>>;

/// The access a watch was opened with, and how it is kept honest while it lasts.
#[derive(Clone)]
pub struct Access {
    /// When the caller's token expires: the stream ends then (`UNAUTHENTICATED`).
    pub expires_at: chrono::DateTime<chrono::Utc>,
    /// How often [`Access::check`] runs.
    pub recheck_every: Duration,
    /// Checks the token (revoked by logout or a password reset) and the caller's
    /// right to the day in the database; its error status ends the stream.
    #[allow(clippy::type_complexity)]
    pub check: Arc<
        dyn Fn() -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), Status>> + Send>>
            + Send
            + Sync,
    >,
}

pub const MAX_RESYNCS: u32 = 3;
pub const DRAIN_WAIT: Duration = Duration::from_secs(10);

async fn snapshot(
    schedule: &DaySchedule,
    day: &Day,
) -> Result<(pb::DayEvent, HashSet<AppointmentId>), Status> {
    let appointments = schedule.appointments(day).await.map_err(super::status)?;
    let held = appointments.iter().map(|a| a.id).collect();
    let event = pb::DayEvent {
        kind: Some(pb::day_event::Kind::Snapshot(pb::DaySnapshot {
            date: day.date.to_string(),
            time_zone: day.time_zone.name().to_owned(),
            appointments: appointments.into_iter().map(appointment).collect(),
        })),
    };
    Ok((event, held))
}

/// Starts watching `day`.
pub fn watch(schedule: Arc<DaySchedule>, day: Day, buffer: usize, access: Access) -> DayStream {
    let buffer = buffer.max(1);
    // One slot more than the changes may use: room for the closing status.
    let (tx, rx) = mpsc::channel(buffer + 1);
    // Subscribed before the snapshot is read, so no change falls between the two.
    let feed = schedule.feed().subscribe();
    tokio::spawn(run(schedule, day, buffer, tx, feed, access));
    DayStream::new(rx)
}

async fn run(
    schedule: Arc<DaySchedule>,
    day: Day,
    buffer: usize,
    tx: mpsc::Sender<Result<pb::DayEvent, Status>>,
    mut feed: broadcast::Receiver<Arc<crate::service::schedule::AppointmentChange>>,
    access: Access,
) {
    let mut held = match snapshot(&schedule, &day).await {
        Ok((event, held)) => {
            if tx.send(Ok(event)).await.is_err() {
                return;
            }
            held
        }
        Err(status) => {
            let _ = tx.send(Err(status)).await;
            return;
        }
    };
    let until_end = (day.ends - schedule.now()).to_std().unwrap_or_default();
    let day_over = tokio::time::sleep(until_end);
    tokio::pin!(day_over);
    let until_expiry = (access.expires_at - schedule.now())
        .to_std()
        .unwrap_or_default();
    let token_over = tokio::time::sleep(until_expiry);
    tokio::pin!(token_over);
    let mut recheck = tokio::time::interval_at(
        tokio::time::Instant::now() + access.recheck_every,
        access.recheck_every,
    );
    recheck.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut resyncs = 0;
    loop {
        let behind = tokio::select! {
            _ = &mut day_over => return,
            _ = tx.closed() => return,
            _ = &mut token_over => {
                // The last slot of the queue is kept for this status.
                let _ = tx.try_send(Err(Status::unauthenticated(
                    "the access token expired; reconnect with a fresh one",
                )));
                return;
            }
            _ = recheck.tick() => match (access.check)().await {
                Ok(()) => false,
                Err(status) => {
                    tracing::info!(doctor_id = %day.doctor.id, code = ?status.code(), "day watcher's access ended");
                    let _ = tx.try_send(Err(status));
                    return;
                }
            },
            received = feed.recv() => match received {
                Err(broadcast::error::RecvError::Closed) => return,
                Err(broadcast::error::RecvError::Lagged(_)) => true,
                Ok(change) => {
                    let a = &change.appointment;
                    if a.doctor_id != day.doctor.id {
                        continue;
                    }
                    let inside = day.contains(a.starts_at);
                    let was = held.contains(&a.id);
                    let kind = match change.kind {
                        ChangeKind::Booked if inside => pb::ChangeKind::Booked,
                        ChangeKind::Cancelled if inside || was => pb::ChangeKind::Cancelled,
                        ChangeKind::Rescheduled if inside => pb::ChangeKind::RescheduledIn,
                        ChangeKind::Rescheduled if was => pb::ChangeKind::RescheduledOut,
                        _ => continue,
                    };
                    match kind {
                        pb::ChangeKind::Booked | pb::ChangeKind::RescheduledIn => {
                            held.insert(a.id);
                        }
                        _ => {
                            held.remove(&a.id);
                        }
                    }
                    let event = pb::DayEvent {
                        kind: Some(pb::day_event::Kind::Change(pb::AppointmentChange {
                            kind: kind.into(),
                            appointment: Some(appointment(a.clone())),
                        })),
                    };
                    if tx.capacity() > 1 {
                        tx.try_send(Ok(event)).is_err()
                    } else {
                        true
                    }
                }
            },
        };
        if !behind {
            continue;
        }
        resyncs += 1;
        // Whatever the feed still holds is superseded by the snapshot.
        feed = feed.resubscribe();
        let drained = resyncs <= MAX_RESYNCS
            && tokio::time::timeout(DRAIN_WAIT, tx.reserve_many(buffer))
                .await
                .is_ok_and(|permits| permits.is_ok());
        if !drained {
            tracing::info!(doctor_id = %day.doctor.id, resyncs, "day watcher too slow; closed");
            let _ = tx.try_send(Err(Status::resource_exhausted(
                "this watcher fell behind the day's changes too often; reconnect",
            )));
            return;
        }
        tracing::info!(doctor_id = %day.doctor.id, resyncs, "day watcher fell behind; resyncing");
        match snapshot(&schedule, &day).await {
            Ok((event, now_held)) => {
                held = now_held;
                if tx.send(Ok(event)).await.is_err() {
                    return;
                }
            }
            Err(status) => {
                let _ = tx.send(Err(status)).await;
                return;
            }
        }
    }
}
