//! The reminder scheduler: turns due reminder rows into `appointment.reminder` events.
//!
//! Bookings write reminder rows in their own transaction (see `domain::reminders`);
//! this loop claims the due ones with `FOR UPDATE SKIP LOCKED`, so every replica may
//! run it and each row is taken by one of them, and in one transaction writes each
//! row's event into the outbox and marks the row published. A scheduler killed
//! mid-batch rolls the whole batch back; the rows are claimed again after restart.
//! Exactly one event per reminder, then, and the outbox relay, the idempotent producer
//! and the notification-service's delivery log carry it to exactly one email.

use super::outbox::{every, OutboxSignal};
use super::ports::{Clock, RepoError};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use medbook_service_kit::retry::Backoff;
use prometheus::{Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts, Registry};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// What one claim did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ReminderBatch {
    /// How late each published reminder was: now − due time.
    pub published: Vec<Duration>,
    /// Rows dropped because their appointment had started by the time they were claimed
    /// (the scheduler was down past the reminder's whole window).
    pub skipped_started: u64,
}

impl ReminderBatch {
    pub fn claimed(&self) -> usize {
        self.published
            .len()
            .saturating_add(usize::try_from(self.skipped_started).unwrap_or(usize::MAX))
    }
}

#[async_trait]
pub trait ReminderStore: Send + Sync {
    /// In one transaction: claims up to `limit` rows due at `now`, writes their events
    /// to the outbox and marks them published.
    async fn publish_due(&self, now: DateTime<Utc>, limit: i64)
        -> Result<ReminderBatch, RepoError>;
    /// Rows not yet published (due or not).
    async fn pending(&self) -> Result<i64, RepoError>;
}

#[derive(Debug, Clone)]
pub struct SchedulerConfig {
    pub batch_size: i64,
    /// How often to look for due rows.
    pub poll_interval: Duration,
    pub backoff_max: Duration,
    /// How often the `reminders_pending` gauge is refreshed (a count over the table).
    pub stats_interval: Duration,
}

#[derive(Clone)]
pub struct ReminderMetrics {
    pub scheduled: IntCounter,
    published: IntCounter,
    skipped: IntCounterVec,
    lag: Histogram,
    pending: IntGauge,
}

impl ReminderMetrics {
    pub fn new(registry: &Registry) -> prometheus::Result<Self> {
        let m = Self {
            scheduled: IntCounter::new(
                "reminders_scheduled_total",
                "Reminder rows written by bookings and reschedules",
            )?,
            published: IntCounter::new(
                "reminders_published_total",
                "Reminders turned into appointment.reminder events in the outbox",
            )?,
            skipped: IntCounterVec::new(
                Opts::new(
                    "reminders_skipped_total",
                    "Due reminders dropped by the scheduler",
                ),
                &["reason"],
            )?,
            lag: Histogram::with_opts(
                HistogramOpts::new(
                    "reminder_scheduler_lag_seconds",
                    "From a reminder's due time to its event in the outbox",
                )
                .buckets(vec![
                    0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0,
                ]),
            )?,
            pending: IntGauge::new(
                "reminders_pending",
                "Reminder rows not yet published (due or not)",
            )?,
        };
        registry.register(Box::new(m.scheduled.clone()))?;
        registry.register(Box::new(m.published.clone()))?;
        registry.register(Box::new(m.skipped.clone()))?;
        m.skipped.with_label_values(&["started"]);
        registry.register(Box::new(m.lag.clone()))?;
        registry.register(Box::new(m.pending.clone()))?;
        Ok(m)
    }
}

pub struct ReminderScheduler {
    store: Arc<dyn ReminderStore>,
    clock: Arc<dyn Clock>,
    /// Wakes the outbox relay once events are committed.
    outbox: OutboxSignal,
    config: SchedulerConfig,
    metrics: ReminderMetrics,
}

impl ReminderScheduler {
    pub fn new(
        store: Arc<dyn ReminderStore>,
        clock: Arc<dyn Clock>,
        outbox: OutboxSignal,
        config: SchedulerConfig,
        metrics: ReminderMetrics,
    ) -> Self {
        Self {
            store,
            clock,
            outbox,
            config,
            metrics,
        }
    }

    /// One claim; returns how many rows it took.
    pub async fn round(&self) -> Result<usize, RepoError> {
        let batch = self
            .store
            .publish_due(self.clock.now(), self.config.batch_size)
            .await?;
        if !batch.published.is_empty() {
            self.outbox.notify();
            self.metrics.published.inc_by(batch.published.len() as u64);
            for lag in &batch.published {
                self.metrics.lag.observe(lag.as_secs_f64());
            }
            tracing::info!(
                published = batch.published.len(),
                "reminders due: events written"
            );
        }
        if batch.skipped_started > 0 {
            self.metrics
                .skipped
                .with_label_values(&["started"])
                .inc_by(batch.skipped_started);
            tracing::warn!(
                skipped = batch.skipped_started,
                "reminders dropped: their appointments had already started"
            );
        }
        Ok(batch.claimed())
    }

    async fn refresh_pending(&self) {
        match self.store.pending().await {
            Ok(n) => self.metrics.pending.set(n),
            Err(e) => tracing::warn!(error = %e, "reminder scheduler: cannot count pending rows"),
        }
    }

    /// Runs until `stop` turns true: claim rounds, and beside them the pending gauge on
    /// its own interval. Returns after the round in progress.
    pub async fn run(self, stop: watch::Receiver<bool>) {
        tracing::info!("reminder scheduler started");
        tokio::join!(
            self.claim_until(stop.clone()),
            every(self.config.stats_interval, stop, || self.refresh_pending()),
        );
        tracing::info!("reminder scheduler stopped");
    }

    async fn claim_until(&self, mut stop: watch::Receiver<bool>) {
        let mut backoff = Backoff::new(self.config.poll_interval, self.config.backoff_max);
        while !*stop.borrow() {
            let pause = match self.round().await {
                Ok(n) if i64::try_from(n).unwrap_or(i64::MAX) >= self.config.batch_size => continue,
                Ok(_) => {
                    backoff.reset();
                    self.config.poll_interval
                }
                Err(e) => {
                    tracing::warn!(error = %e, "reminder scheduler: cannot claim due reminders");
                    backoff.next_delay()
                }
            };
            tokio::select! {
                _ = tokio::time::sleep(pause) => {}
                _ = stop.changed() => {}
            }
        }
    }
}

#[cfg(test)]
#[allow(
    clippy::cast_possible_truncation,
    clippy::cast_possible_wrap,
    clippy::cast_sign_loss,
    clippy::cast_precision_loss
)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    struct FixedClock(DateTime<Utc>);
    impl Clock for FixedClock {
        fn now(&self) -> DateTime<Utc> {
            self.0
        }
    }

    /// Due times of unpublished rows; publishing removes them.
    struct FakeStore {
        due: Mutex<Vec<DateTime<Utc>>>,
        fail: bool,
    }

    #[async_trait]
    impl ReminderStore for FakeStore {
        async fn publish_due(
            &self,
            now: DateTime<Utc>,
            limit: i64,
        ) -> Result<ReminderBatch, RepoError> {
            if self.fail {
                return Err(RepoError::Internal(anyhow::anyhow!("down")));
            }
            let mut due = self.due.lock().unwrap();
            due.sort();
            let n = due
                .iter()
                .take_while(|d| **d <= now)
                .count()
                .min(limit as usize);
            let taken: Vec<_> = due.drain(..n).collect();
            Ok(ReminderBatch {
                published: taken.iter().map(|d| (now - *d).to_std().unwrap()).collect(),
                skipped_started: 0,
            })
        }
        async fn pending(&self) -> Result<i64, RepoError> {
            Ok(self.due.lock().unwrap().len() as i64)
        }
    }

    fn scheduler(
        store: Arc<FakeStore>,
        now: DateTime<Utc>,
        batch: i64,
    ) -> (ReminderScheduler, Registry) {
        let registry = Registry::new();
        let s = ReminderScheduler::new(
            store,
            Arc::new(FixedClock(now)),
            OutboxSignal::default(),
            SchedulerConfig {
                batch_size: batch,
                poll_interval: Duration::from_millis(10),
                backoff_max: Duration::from_millis(50),
                stats_interval: Duration::from_millis(10),
            },
            ReminderMetrics::new(&registry).unwrap(),
        );
        (s, registry)
    }

    fn value(registry: &Registry, name: &str) -> f64 {
        registry
            .gather()
            .iter()
            .find(|f| f.name() == name)
            .map(|f| {
                let m = &f.get_metric()[0];
                if f.get_field_type() == prometheus::proto::MetricType::HISTOGRAM {
                    m.get_histogram().get_sample_count() as f64
                } else if f.get_field_type() == prometheus::proto::MetricType::GAUGE {
                    m.get_gauge().get_value()
                } else {
                    m.get_counter().get_value()
                }
            })
            .unwrap_or(0.0)
    }

    #[tokio::test]
    async fn only_due_rows_are_published_in_batches_and_counted() {
        let now = Utc::now();
        let store = Arc::new(FakeStore {
            due: Mutex::new(vec![
                now - chrono::Duration::seconds(3),
                now - chrono::Duration::seconds(2),
                now - chrono::Duration::seconds(1),
                now + chrono::Duration::hours(1),
            ]),
            fail: false,
        });
        let (s, registry) = scheduler(store.clone(), now, 2);
        assert_eq!(s.round().await.unwrap(), 2);
        assert_eq!(s.round().await.unwrap(), 1);
        assert_eq!(s.round().await.unwrap(), 0);
        s.refresh_pending().await;
        assert_eq!(value(&registry, "reminders_published_total"), 3.0);
        assert_eq!(value(&registry, "reminder_scheduler_lag_seconds"), 3.0);
        assert_eq!(value(&registry, "reminders_pending"), 1.0);
    }

    #[tokio::test]
    async fn a_failing_store_is_an_error_and_the_loop_keeps_going_until_stopped() {
        let store = Arc::new(FakeStore {
            due: Mutex::new(vec![]),
            fail: true,
        });
        let (s, _) = scheduler(store, Utc::now(), 10);
        assert!(s.round().await.is_err());
        let (tx, rx) = watch::channel(false);
        let task = tokio::spawn(s.run(rx));
        tokio::task::yield_now().await;
        tx.send(true).unwrap();
        tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .unwrap()
            .unwrap();
    }
}
