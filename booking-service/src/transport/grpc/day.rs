//! `StreamDailyAppointments`: a snapshot of the day, then each committed change of it,
//! whichever replica, command or SQL session committed it (the database announces
//! changes; see `service::schedule`). For an announcement that may concern its day the
//! watcher looks the appointment up (once per announcement and replica) and sends it as
//! it is now.
//!
//! A watcher never slows a booking: the feed is a bounded broadcast that drops what a
//! watcher has not taken, and each watcher's outgoing queue is bounded (`grpc.
//! watcher_buffer`). A watcher that falls behind (its queue full, or the feed moved on
//! without it) is sent a fresh snapshot once its client has drained the queue; after
//! [`MAX_RESYNCS`] such restarts, or if the client does not drain it within
//! [`DRAIN_WAIT`], the stream ends with `RESOURCE_EXHAUSTED`. The last slot of the
//! queue is kept for that status. When changes may have gone unheard (the replica's
//! listener lost its connection to the database and is back) every watcher is sent a
//! fresh snapshot the same way; that restart is not the watcher's fault and does not
//! count towards [`MAX_RESYNCS`].

use super::day_appointment;
use crate::domain::booking::AppointmentStatus;
use crate::domain::AppointmentId;
use crate::service::schedule::{ChangeKind, Day, DaySchedule, FeedEvent};
use chrono::{DateTime, Utc};
use medbook_proto::schedule::v1 as pb;
use std::collections::HashMap;
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

async fn snapshot(schedule: &DaySchedule, day: &Day) -> Result<(pb::DayEvent, Shown), Status> {
    let appointments = schedule.entries(day).await.map_err(super::status)?;
    let held = appointments
        .iter()
        .map(|e| (e.appointment.id, e.appointment.starts_at))
        .collect();
    let event = pb::DayEvent {
        kind: Some(pb::day_event::Kind::Snapshot(pb::DaySnapshot {
            date: day.date.to_string(),
            time_zone: day.time_zone.name().to_owned(),
            appointments: appointments.into_iter().map(day_appointment).collect(),
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

/// Why a watcher starts again from a snapshot, if it does.
enum Behind {
    No,
    /// It fell behind: its queue was full, or the feed moved on without it.
    Slow,
    /// Changes may have gone unheard, through no fault of the watcher's.
    Unheard,
}

/// What a watcher shows: each appointment on its day, and when it starts.
type Shown = HashMap<AppointmentId, DateTime<Utc>>;

/// What an announced change is to a day's watcher, judged by the appointment as it is
/// now against what the watcher shows: `inside`, it starts on the day (at `starts_at`);
/// `active`, it is not cancelled; `shown`, when the watcher shows it, the start it
/// shows. `None`: nothing the watcher shows changed. Announcements arrive a moment
/// after their commit, so one may follow a snapshot that already holds its change, and
/// a quick second change may be read with the first announcement: judged so, neither
/// is sent twice.
fn change_kind(
    kind: ChangeKind,
    inside: bool,
    active: bool,
    starts_at: DateTime<Utc>,
    shown: Option<DateTime<Utc>>,
) -> Option<pb::ChangeKind> {
    let moved = shown != Some(starts_at);
    match kind {
        ChangeKind::Booked if inside && active && shown.is_none() => Some(pb::ChangeKind::Booked),
        ChangeKind::Cancelled if !active && shown.is_some() => Some(pb::ChangeKind::Cancelled),
        ChangeKind::Rescheduled if inside && active && moved => Some(pb::ChangeKind::RescheduledIn),
        ChangeKind::Rescheduled if !inside && shown.is_some() => {
            Some(pb::ChangeKind::RescheduledOut)
        }
        // Completed, no-show, or a change this version does not name.
        ChangeKind::StatusChanged if !active && shown.is_some() => Some(pb::ChangeKind::Cancelled),
        ChangeKind::StatusChanged if active && inside && shown.is_none() => {
            Some(pb::ChangeKind::Booked)
        }
        _ => None,
    }
}

async fn run(
    schedule: Arc<DaySchedule>,
    day: Day,
    buffer: usize,
    tx: mpsc::Sender<Result<pb::DayEvent, Status>>,
    mut feed: broadcast::Receiver<FeedEvent>,
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
                Ok(()) => Behind::No,
                Err(status) => {
                    tracing::info!(doctor_id = %day.doctor.id, code = ?status.code(), "day watcher's access ended");
                    let _ = tx.try_send(Err(status));
                    return;
                }
            },
            received = feed.recv() => match received {
                Err(broadcast::error::RecvError::Closed) => return,
                Err(broadcast::error::RecvError::Lagged(_)) => Behind::Slow,
                Ok(FeedEvent::Resync) => Behind::Unheard,
                Ok(FeedEvent::Change(announced)) => {
                    let notice = &announced.notice;
                    // Another doctor's, or another day's that was never on this one.
                    if !notice.touches(&day) && !held.contains_key(&notice.appointment_id) {
                        continue;
                    }
                    match schedule.announced(&announced).await {
                        Err(e) => {
                            tracing::warn!(doctor_id = %day.doctor.id, error = %e, "day watcher: announced appointment not readable; resyncing");
                            Behind::Unheard
                        }
                        Ok(None) => continue,
                        Ok(Some(entry)) => {
                            let a = &entry.appointment;
                            if a.doctor_id != day.doctor.id {
                                continue;
                            }
                            let Some(kind) = change_kind(
                                notice.kind,
                                day.contains(a.starts_at),
                                a.status != AppointmentStatus::Cancelled,
                                a.starts_at,
                                held.get(&a.id).copied(),
                            ) else {
                                continue;
                            };
                            match kind {
                                pb::ChangeKind::Booked | pb::ChangeKind::RescheduledIn => {
                                    held.insert(a.id, a.starts_at);
                                }
                                _ => {
                                    held.remove(&a.id);
                                }
                            }
                            let event = pb::DayEvent {
                                kind: Some(pb::day_event::Kind::Change(pb::AppointmentChange {
                                    kind: kind.into(),
                                    appointment: Some(day_appointment(entry)),
                                })),
                            };
                            if tx.capacity() > 1 && tx.try_send(Ok(event)).is_ok() {
                                Behind::No
                            } else {
                                Behind::Slow
                            }
                        }
                    }
                }
            },
        };
        let counted = match behind {
            Behind::No => continue,
            Behind::Slow => true,
            Behind::Unheard => false,
        };
        if counted {
            resyncs += 1;
        }
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
        if counted {
            tracing::info!(doctor_id = %day.doctor.id, resyncs, "day watcher fell behind; resyncing");
        } else {
            tracing::info!(doctor_id = %day.doctor.id, "changes may have gone unheard; day watcher resyncing");
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn at(h: u32) -> DateTime<Utc> {
        chrono::TimeZone::with_ymd_and_hms(&Utc, 2026, 12, 8, h, 0, 0)
            .single()
            .unwrap_or_default()
    }

    #[test]
    fn changes_are_judged_by_the_appointment_as_it_is_now_against_what_is_shown() {
        use pb::ChangeKind as Sent;
        use ChangeKind::*;
        let none = None;
        // A booking on the day, once; again (its announcement after the snapshot
        // that has it): nothing.
        assert_eq!(
            change_kind(Booked, true, true, at(9), none),
            Some(Sent::Booked)
        );
        assert_eq!(change_kind(Booked, true, true, at(9), Some(at(9))), None);
        // Booked, then cancelled or moved away before the first announcement was read.
        assert_eq!(change_kind(Booked, true, false, at(9), none), None);
        assert_eq!(change_kind(Booked, false, true, at(9), none), None);
        // Cancelled: only what is shown.
        assert_eq!(
            change_kind(Cancelled, true, false, at(9), Some(at(9))),
            Some(Sent::Cancelled)
        );
        assert_eq!(change_kind(Cancelled, true, false, at(9), none), None);
        // Moved within the day, onto it, off it; an announcement already shown.
        assert_eq!(
            change_kind(Rescheduled, true, true, at(11), Some(at(9))),
            Some(Sent::RescheduledIn)
        );
        assert_eq!(
            change_kind(Rescheduled, true, true, at(11), none),
            Some(Sent::RescheduledIn)
        );
        assert_eq!(
            change_kind(Rescheduled, false, true, at(11), Some(at(9))),
            Some(Sent::RescheduledOut)
        );
        assert_eq!(
            change_kind(Rescheduled, true, true, at(11), Some(at(11))),
            None
        );
        assert_eq!(change_kind(Rescheduled, false, true, at(11), none), None);
        // Other status changes: a cancellation or a booking if that is what it is now.
        assert_eq!(
            change_kind(StatusChanged, true, false, at(9), Some(at(9))),
            Some(Sent::Cancelled)
        );
        assert_eq!(
            change_kind(StatusChanged, true, true, at(9), none),
            Some(Sent::Booked)
        );
        assert_eq!(
            change_kind(StatusChanged, true, true, at(9), Some(at(9))),
            None
        );
    }
}
