//! The day feed's listener: one per replica, it listens for the appointment changes the
//! database announces as they commit ([`ChangeSource`]; PostgreSQL's LISTEN/NOTIFY in
//! production, `repository::day_feed`) and hands each to this process's day watchers
//! through the [`ScheduleFeed`].
//!
//! Nothing may be missed silently. When the listener's connection is lost it listens
//! again, waiting [`RETRY_FIRST`], twice that, … up to [`RETRY_MAX`] between attempts,
//! and once it listens again it tells every watcher to resynchronise (a fresh snapshot
//! of its day): what committed while it was away was never heard. An announcement it
//! cannot read does the same.

use super::ports::RepoError;
use super::schedule::{ChangeNotice, ScheduleFeed};
use async_trait::async_trait;
use medbook_service_kit::retry::Backoff;
use prometheus::{IntCounter, IntGauge, Registry};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// The first pause before listening again after the connection was lost.
pub const RETRY_FIRST: Duration = Duration::from_millis(250);
/// The longest pause between attempts to listen again.
pub const RETRY_MAX: Duration = Duration::from_secs(30);

/// Where committed appointment changes are announced.
#[async_trait]
pub trait ChangeSource: Send + Sync {
    /// Starts listening: every change committed after this returns is announced on the
    /// subscription, in commit order.
    async fn listen(&self) -> Result<Box<dyn ChangeSubscription>, RepoError>;
}

/// One unbroken stretch of listening.
#[async_trait]
pub trait ChangeSubscription: Send {
    /// The next announcement: a change, or `None` for one that could not be read. An
    /// error means the connection is lost and with it the subscription: announcements
    /// made since were not heard.
    async fn next(&mut self) -> Result<Option<ChangeNotice>, RepoError>;
}

/// The listener's health: whether it listens now, how often it had to listen again.
#[derive(Clone)]
pub struct DayFeedMetrics {
    connected: IntGauge,
    reconnects: IntCounter,
    notifications: IntCounter,
}

impl DayFeedMetrics {
    pub fn new(registry: &Registry) -> prometheus::Result<Self> {
        let m = Self::unregistered()?;
        registry.register(Box::new(m.connected.clone()))?;
        registry.register(Box::new(m.reconnects.clone()))?;
        registry.register(Box::new(m.notifications.clone()))?;
        Ok(m)
    }

    fn unregistered() -> prometheus::Result<Self> {
        Ok(Self {
            connected: IntGauge::new(
                "day_feed_listener_connected",
                "1 while this replica listens for committed appointment changes (the live day feed), else 0",
            )?,
            reconnects: IntCounter::new(
                "day_feed_listener_reconnects_total",
                "Times the day feed's listener listened again after losing its connection (its watchers then resync)",
            )?,
            notifications: IntCounter::new(
                "day_feed_notifications_total",
                "Committed appointment changes this replica's day feed listener heard",
            )?,
        })
    }
}

/// Listens for committed changes and hands them to the feed; see the module docs.
pub struct DayFeedListener {
    source: Arc<dyn ChangeSource>,
    feed: ScheduleFeed,
    metrics: DayFeedMetrics,
    retry: (Duration, Duration),
}

impl DayFeedListener {
    pub fn new(source: Arc<dyn ChangeSource>, feed: ScheduleFeed, metrics: DayFeedMetrics) -> Self {
        Self {
            source,
            feed,
            metrics,
            retry: (RETRY_FIRST, RETRY_MAX),
        }
    }

    /// Pauses between attempts to listen again other than the defaults (tests).
    pub fn with_retry(mut self, first: Duration, max: Duration) -> Self {
        self.retry = (first, max);
        self
    }

    /// Starts listening. Start-up waits for it, so that the first watchers hear every
    /// change; a failure is logged, and [`Self::run`] keeps trying.
    pub async fn listen(&self) -> Option<Box<dyn ChangeSubscription>> {
        match self.source.listen().await {
            Ok(subscription) => {
                self.metrics.connected.set(1);
                Some(subscription)
            }
            Err(e) => {
                tracing::warn!(error = %e, "day feed: cannot listen for appointment changes yet; retrying");
                None
            }
        }
    }

    /// Hands announcements to the feed until `stop`, listening again whenever the
    /// connection is lost. `first`: the subscription [`Self::listen`] started, if any.
    pub async fn run(
        self,
        first: Option<Box<dyn ChangeSubscription>>,
        mut stop: watch::Receiver<bool>,
    ) {
        let mut backoff = Backoff::new(self.retry.0, self.retry.1);
        let mut listened_before = first.is_some();
        let mut current = first;
        loop {
            if let Some(mut subscription) = current.take() {
                let lost = loop {
                    tokio::select! {
                        _ = stop.wait_for(|stopped| *stopped) => return,
                        next = subscription.next() => match next {
                            Ok(Some(notice)) => {
                                self.metrics.notifications.inc();
                                self.feed.announce(notice);
                            }
                            Ok(None) => {
                                tracing::warn!("day feed: an announcement could not be read; watchers resync");
                                self.feed.resync();
                            }
                            Err(e) => break e,
                        },
                    }
                };
                self.metrics.connected.set(0);
                tracing::warn!(error = %lost, "day feed: lost the listening connection; listening again");
            }
            let pause = backoff.next_delay();
            tokio::select! {
                _ = stop.wait_for(|stopped| *stopped) => return,
                _ = tokio::time::sleep(pause) => {}
            }
            let listened = tokio::select! {
                _ = stop.wait_for(|stopped| *stopped) => return,
                listened = self.source.listen() => listened,
            };
            match listened {
                Ok(subscription) => {
                    backoff.reset();
                    self.metrics.connected.set(1);
                    if listened_before {
                        self.metrics.reconnects.inc();
                    }
                    listened_before = true;
                    // Listening before the watchers read their snapshots: a change
                    // committed from now on is in the snapshot or heard after it.
                    tracing::info!(
                        watchers = self.feed.watchers(),
                        "day feed: listening again; every watcher resyncs"
                    );
                    self.feed.resync();
                    current = Some(subscription);
                }
                Err(e) => {
                    tracing::warn!(error = %e, failures = backoff.failures(), "day feed: cannot listen for appointment changes; retrying");
                }
            }
        }
    }
}

/// A [`ChangeSource`] the unit tests drive: announce, lose the connection, refuse to
/// listen.
#[cfg(test)]
pub(crate) mod fake {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Mutex;
    use tokio::sync::mpsc;

    type Item = Result<Option<ChangeNotice>, RepoError>;

    #[derive(Default)]
    pub struct FakeChangeSource {
        current: Mutex<Option<mpsc::UnboundedSender<Item>>>,
        refusals: AtomicUsize,
        listens: AtomicUsize,
    }

    impl FakeChangeSource {
        /// Announces a change on the current subscription; false when none listens.
        pub fn announce(&self, notice: ChangeNotice) -> bool {
            self.send(Ok(Some(notice)))
        }

        /// An announcement that cannot be read.
        pub fn garble(&self) -> bool {
            self.send(Ok(None))
        }

        /// Loses the connection of the current subscription.
        pub fn drop_connection(&self) -> bool {
            let sent = self.send(Err(RepoError::Unavailable("connection lost".into())));
            *self.current.lock().unwrap_or_else(|e| e.into_inner()) = None;
            sent
        }

        /// The next `n` attempts to listen fail.
        pub fn refuse(&self, n: usize) {
            self.refusals.store(n, Ordering::SeqCst);
        }

        /// Successful attempts to listen so far.
        pub fn listens(&self) -> usize {
            self.listens.load(Ordering::SeqCst)
        }

        fn send(&self, item: Item) -> bool {
            self.current
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .as_ref()
                .is_some_and(|tx| tx.send(item).is_ok())
        }
    }

    struct FakeSubscription(mpsc::UnboundedReceiver<Item>);

    #[async_trait]
    impl ChangeSubscription for FakeSubscription {
        async fn next(&mut self) -> Item {
            self.0
                .recv()
                .await
                .unwrap_or_else(|| Err(RepoError::Unavailable("closed".into())))
        }
    }

    #[async_trait]
    impl ChangeSource for FakeChangeSource {
        async fn listen(&self) -> Result<Box<dyn ChangeSubscription>, RepoError> {
            let refused = self
                .refusals
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok();
            if refused {
                return Err(RepoError::Unavailable("refused".into()));
            }
            let (tx, rx) = mpsc::unbounded_channel();
            *self.current.lock().unwrap_or_else(|e| e.into_inner()) = Some(tx);
            self.listens.fetch_add(1, Ordering::SeqCst);
            Ok(Box::new(FakeSubscription(rx)))
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::fake::FakeChangeSource;
    use super::*;
    use crate::domain::{AppointmentId, DoctorId};
    use crate::service::schedule::{ChangeKind, FeedEvent};
    use tokio::sync::broadcast;
    use uuid::Uuid;

    const WITHIN: Duration = Duration::from_secs(5);

    fn notice() -> ChangeNotice {
        ChangeNotice {
            appointment_id: AppointmentId(Uuid::new_v4()),
            doctor_id: DoctorId(Uuid::new_v4()),
            kind: ChangeKind::Booked,
            version: 1,
            starts_at: chrono::Utc::now(),
            previous_starts_at: None,
        }
    }

    struct Running {
        source: Arc<FakeChangeSource>,
        watcher: broadcast::Receiver<FeedEvent>,
        metrics: DayFeedMetrics,
        stop: watch::Sender<bool>,
        task: tokio::task::JoinHandle<()>,
    }

    /// A listener over a fake source, its first attempt to listen done (or refused
    /// `refusals` times), with one watcher subscribed.
    async fn running(refusals: usize) -> Running {
        let source = Arc::new(FakeChangeSource::default());
        source.refuse(refusals);
        let feed = ScheduleFeed::new(16);
        let metrics = DayFeedMetrics::unregistered().unwrap();
        let listener = DayFeedListener::new(source.clone(), feed.clone(), metrics.clone())
            .with_retry(Duration::from_millis(1), Duration::from_millis(20));
        let watcher = feed.subscribe();
        let first = listener.listen().await;
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(listener.run(first, stopped));
        Running {
            source,
            watcher,
            metrics,
            stop,
            task,
        }
    }

    async fn next(watcher: &mut broadcast::Receiver<FeedEvent>) -> FeedEvent {
        tokio::time::timeout(WITHIN, watcher.recv())
            .await
            .expect("an event in time")
            .expect("the feed is open")
    }

    #[tokio::test]
    async fn announcements_reach_the_watchers() {
        let mut r = running(0).await;
        assert_eq!(r.metrics.connected.get(), 1);
        let n = notice();
        assert!(r.source.announce(n.clone()));
        let FeedEvent::Change(got) = next(&mut r.watcher).await else {
            panic!("a change");
        };
        assert_eq!(got.notice, n);
        assert_eq!(r.metrics.notifications.get(), 1);
        assert_eq!(r.metrics.reconnects.get(), 0);
        r.stop.send(true).unwrap();
        tokio::time::timeout(WITHIN, r.task).await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn a_lost_connection_is_listened_again_and_every_watcher_resyncs() {
        let mut r = running(0).await;
        // Two attempts fail before the third listens again.
        r.source.refuse(2);
        assert!(r.source.drop_connection());
        let FeedEvent::Resync = next(&mut r.watcher).await else {
            panic!("a resync after listening again");
        };
        assert_eq!(r.source.listens(), 2);
        assert_eq!(r.metrics.reconnects.get(), 1);
        assert_eq!(r.metrics.connected.get(), 1);
        // And changes flow again, after the resync.
        let n = notice();
        assert!(r.source.announce(n.clone()));
        let FeedEvent::Change(got) = next(&mut r.watcher).await else {
            panic!("a change");
        };
        assert_eq!(got.notice, n);
        r.stop.send(true).unwrap();
        tokio::time::timeout(WITHIN, r.task).await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn a_listener_that_could_not_listen_at_start_keeps_trying() {
        let mut r = running(3).await;
        assert_eq!(r.metrics.connected.get(), 0);
        // Watchers that came meanwhile missed whatever committed: they resync.
        let FeedEvent::Resync = next(&mut r.watcher).await else {
            panic!("a resync once listening");
        };
        assert_eq!(r.metrics.connected.get(), 1);
        assert_eq!(r.metrics.reconnects.get(), 0, "not a reconnection");
        r.stop.send(true).unwrap();
        tokio::time::timeout(WITHIN, r.task).await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn an_unreadable_announcement_makes_the_watchers_resync() {
        let mut r = running(0).await;
        assert!(r.source.garble());
        let FeedEvent::Resync = next(&mut r.watcher).await else {
            panic!("a resync");
        };
        assert_eq!(r.source.listens(), 1, "the connection is kept");
        r.stop.send(true).unwrap();
        tokio::time::timeout(WITHIN, r.task).await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn stopping_ends_the_listener_while_it_waits_to_listen_again() {
        let source = Arc::new(FakeChangeSource::default());
        source.refuse(usize::MAX);
        let listener = DayFeedListener::new(
            source.clone(),
            ScheduleFeed::new(4),
            DayFeedMetrics::unregistered().unwrap(),
        )
        .with_retry(Duration::from_secs(3600), Duration::from_secs(3600));
        let first = listener.listen().await;
        assert!(first.is_none());
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(listener.run(first, stopped));
        stop.send(true).unwrap();
        tokio::time::timeout(WITHIN, task).await.unwrap().unwrap();
    }
}
