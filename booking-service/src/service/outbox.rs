//! The outbox relay: publishes the events that appointment changes wrote to the outbox
//! table, in order per appointment, and marks them published only after the broker has
//! confirmed delivery. While the broker is down it backs off and retries; bookings are
//! not affected because they only write rows. Published rows are pruned after a
//! retention period.
//!
//! Several replicas may run a relay against one database: a claim is a short lease
//! taken with `FOR UPDATE SKIP LOCKED`, and only the oldest pending event of each
//! appointment is ever claimable, so two relays never publish the same row at once
//! and one appointment's events never overtake each other.

use super::ports::{Clock, RepoError};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use medbook_service_kit::retry::Backoff;
use prometheus::{Gauge, IntCounter, IntGauge, Registry};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{watch, Notify};
use uuid::Uuid;

/// An event waiting in the outbox, as claimed by a relay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingEvent {
    pub seq: i64,
    pub id: Uuid,
    /// The appointment id: the message key.
    pub key: Uuid,
    /// The topic without the deployment's prefix.
    pub topic: String,
    pub event_type: String,
    pub payload: String,
    pub created_at: DateTime<Utc>,
    /// The HTTP request that caused it, if any (reminders have none).
    pub request_id: Option<String>,
    /// The W3C `traceparent` of the span that wrote it: the relay's span continues
    /// that trace.
    pub trace_parent: Option<String>,
}

/// Size and age of the unpublished part of the outbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backlog {
    pub pending: i64,
    pub oldest: Option<DateTime<Utc>>,
}

#[async_trait]
pub trait OutboxStore: Send + Sync {
    /// Leases up to `limit` claimable rows to `owner` for `lease`: unpublished, not
    /// leased by anyone else, and the oldest pending row of their appointment. Returned
    /// in `seq` order.
    async fn claim(
        &self,
        owner: Uuid,
        limit: i64,
        lease: Duration,
    ) -> Result<Vec<PendingEvent>, RepoError>;
    async fn mark_published(&self, seqs: Vec<i64>) -> Result<(), RepoError>;
    /// Gives rows back after a failed publication, recording the error.
    async fn release(&self, owner: Uuid, seqs: Vec<i64>, error: String) -> Result<(), RepoError>;
    async fn backlog(&self) -> Result<Backlog, RepoError>;
    /// Deletes rows published before `cutoff`; returns how many.
    async fn prune(&self, cutoff: DateTime<Utc>) -> Result<u64, RepoError>;
}

#[async_trait]
pub trait EventPublisher: Send + Sync {
    /// Publishes every event and waits for the broker's delivery reports. The result
    /// has one entry per event, in the same order.
    async fn publish(&self, events: &[PendingEvent]) -> Vec<Result<(), String>>;
    /// Whether the broker answers at all (for `/ready`).
    async fn check(&self) -> Result<(), String>;
}

/// Where an outbox row goes: the outbox has one table and two sinks, each shipped by
/// its own relay of the same design.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Sink {
    /// Domain events, to Kafka.
    Kafka,
    /// Audit records, to the audit-service over gRPC.
    Audit,
}

impl Sink {
    pub fn as_str(self) -> &'static str {
        match self {
            Sink::Kafka => "kafka",
            Sink::Audit => "audit",
        }
    }

    /// The prefix of the relay's metric names.
    fn metric_prefix(self) -> &'static str {
        match self {
            Sink::Kafka => "outbox",
            Sink::Audit => "audit_outbox",
        }
    }
}

/// Wakes the relays when a transaction has written rows, so they need not wait for
/// their next poll.
#[derive(Debug, Clone, Default)]
pub struct OutboxSignal(Arc<[Notify; 2]>);

impl OutboxSignal {
    pub fn notify(&self) {
        for n in self.0.iter() {
            n.notify_one();
        }
    }

    async fn notified(&self, sink: Sink) {
        let [kafka, audit] = &*self.0;
        match sink {
            Sink::Kafka => kafka.notified().await,
            Sink::Audit => audit.notified().await,
        }
    }
}

impl super::ports::CommitListener for OutboxSignal {
    fn committed(&self, _reminders: usize) {
        self.notify();
    }
}

/// What an appointment change's commit tells: the relays (its event is in the
/// outbox) and `reminders_scheduled_total`.
pub struct AppointmentCommits {
    pub signal: OutboxSignal,
    pub reminders_scheduled: prometheus::IntCounter,
}

impl super::ports::CommitListener for AppointmentCommits {
    fn committed(&self, reminders: usize) {
        self.signal.notify();
        self.reminders_scheduled
            .inc_by(u64::try_from(reminders).unwrap_or(u64::MAX));
    }
}

#[derive(Debug, Clone)]
pub struct RelayConfig {
    pub sink: Sink,
    pub batch_size: i64,
    /// How long a claim keeps other replicas away; longer than a publication can take.
    pub lease: Duration,
    /// How often to look for rows other replicas' transactions wrote.
    pub poll_interval: Duration,
    pub backoff_initial: Duration,
    pub backoff_max: Duration,
    /// Published rows are kept this long (for inspection), then pruned.
    pub retention: Duration,
    pub prune_interval: Duration,
    /// How often the backlog gauges are refreshed.
    pub stats_interval: Duration,
}

#[derive(Clone)]
pub struct RelayMetrics {
    backlog: IntGauge,
    oldest_age: Gauge,
    published: IntCounter,
    failures: IntCounter,
    pruned: IntCounter,
}

impl RelayMetrics {
    /// The relay of `sink`'s gauges and counters (`outbox_*` for Kafka,
    /// `audit_outbox_*` for the audit sink).
    pub fn new(registry: &Registry, sink: Sink) -> prometheus::Result<Self> {
        let p = sink.metric_prefix();
        let m = Self {
            backlog: IntGauge::new(format!("{p}_backlog"), "Rows written but not yet shipped")?,
            oldest_age: Gauge::new(
                format!("{p}_oldest_pending_age_seconds"),
                "Age of the oldest unshipped row (0 when none)",
            )?,
            published: IntCounter::new(format!("{p}_published_total"), "Rows the sink confirmed")?,
            failures: IntCounter::new(
                format!("{p}_publish_failures_total"),
                "Row shipments that failed and will be retried",
            )?,
            pruned: IntCounter::new(
                format!("{p}_pruned_total"),
                "Shipped rows deleted after the retention period",
            )?,
        };
        registry.register(Box::new(m.backlog.clone()))?;
        registry.register(Box::new(m.oldest_age.clone()))?;
        registry.register(Box::new(m.published.clone()))?;
        registry.register(Box::new(m.failures.clone()))?;
        registry.register(Box::new(m.pruned.clone()))?;
        Ok(m)
    }
}

pub struct OutboxRelay {
    /// This relay's claim owner id; one per process.
    id: Uuid,
    store: Arc<dyn OutboxStore>,
    publisher: Arc<dyn EventPublisher>,
    clock: Arc<dyn Clock>,
    signal: OutboxSignal,
    config: RelayConfig,
    metrics: RelayMetrics,
}

/// What one round did; drives the loop's pacing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Round {
    /// Nothing was claimable.
    Idle,
    /// Everything claimed was published.
    Published(usize),
    /// The store or the broker failed; back off.
    Failed,
}

impl OutboxRelay {
    pub fn new(
        store: Arc<dyn OutboxStore>,
        publisher: Arc<dyn EventPublisher>,
        clock: Arc<dyn Clock>,
        signal: OutboxSignal,
        config: RelayConfig,
        metrics: RelayMetrics,
    ) -> Self {
        Self {
            id: Uuid::new_v4(),
            store,
            publisher,
            clock,
            signal,
            config,
            metrics,
        }
    }

    /// Claims one batch, publishes it, and records the outcome.
    // At debug level: a round is bookkeeping, and a span per idle poll would fill the
    // trace store. Each event gets its own span, in the trace of its writer (publisher).
    #[tracing::instrument(level = "debug", skip_all, fields(relay = %self.id, sink = self.config.sink.as_str()))]
    pub async fn round(&self) -> Round {
        let batch = match self
            .store
            .claim(self.id, self.config.batch_size, self.config.lease)
            .await
        {
            Ok(batch) => batch,
            Err(e) => {
                tracing::warn!(error = %e, "outbox: cannot claim events");
                return Round::Failed;
            }
        };
        if batch.is_empty() {
            return Round::Idle;
        }
        let results = self.publisher.publish(&batch).await;
        let mut delivered = Vec::with_capacity(batch.len());
        let mut failed = Vec::new();
        let mut first_error = None;
        for (event, result) in batch.iter().zip(results) {
            match result {
                Ok(()) => delivered.push(event.seq),
                Err(e) => {
                    failed.push(event.seq);
                    first_error.get_or_insert(e);
                }
            }
        }
        let count = delivered.len();
        if !delivered.is_empty() {
            if let Err(e) = self.store.mark_published(delivered).await {
                // The broker has them; the lease runs out and they are published again.
                // Consumers de-duplicate by event id.
                tracing::warn!(error = %e, "outbox: delivered events not marked published");
                return Round::Failed;
            }
            self.metrics.published.inc_by(count as u64);
        }
        match first_error {
            None => Round::Published(count),
            Some(error) => {
                self.metrics.failures.inc_by(failed.len() as u64);
                tracing::warn!(failed = failed.len(), delivered = count, %error, "outbox: publication failed; will retry");
                if let Err(e) = self.store.release(self.id, failed, error).await {
                    tracing::warn!(error = %e, "outbox: cannot release events; their lease will expire");
                }
                Round::Failed
            }
        }
    }

    async fn refresh_stats(&self) {
        match self.store.backlog().await {
            Ok(b) => {
                self.metrics.backlog.set(b.pending);
                let age = b.oldest.map_or(0.0, |t| {
                    (self.clock.now() - t)
                        .to_std()
                        .map_or(0.0, |age| age.as_secs_f64())
                });
                self.metrics.oldest_age.set(age);
            }
            Err(e) => tracing::warn!(error = %e, "outbox: cannot read the backlog"),
        }
    }

    async fn prune(&self) {
        let Ok(retention) = chrono::Duration::from_std(self.config.retention) else {
            return;
        };
        match self.store.prune(self.clock.now() - retention).await {
            Ok(0) => {}
            Ok(n) => {
                self.metrics.pruned.inc_by(n);
                tracing::info!(pruned = n, "outbox: published events pruned");
            }
            Err(e) => tracing::warn!(error = %e, "outbox: cannot prune"),
        }
    }

    /// Runs until `stop` turns true: publication rounds, and beside them the backlog
    /// gauges and pruning on their own intervals. Returns after the round in progress.
    pub async fn run(self, stop: watch::Receiver<bool>) {
        tracing::info!(relay = %self.id, sink = self.config.sink.as_str(), "outbox relay started");
        tokio::join!(
            self.publish_until(stop.clone()),
            every(self.config.stats_interval, stop.clone(), || self
                .refresh_stats()),
            every(self.config.prune_interval, stop, || self.prune()),
        );
        tracing::info!(relay = %self.id, "outbox relay stopped");
    }

    async fn publish_until(&self, mut stop: watch::Receiver<bool>) {
        let mut backoff = Backoff::new(self.config.backoff_initial, self.config.backoff_max);
        while !*stop.borrow() {
            let pause = match self.round().await {
                Round::Published(n) => {
                    backoff.reset();
                    if i64::try_from(n).unwrap_or(i64::MAX) >= self.config.batch_size {
                        continue; // more may be waiting
                    }
                    self.config.poll_interval
                }
                Round::Idle => {
                    backoff.reset();
                    self.config.poll_interval
                }
                Round::Failed => backoff.next_delay(),
            };
            let waiting_for_broker = backoff.failures() > 0;
            tokio::select! {
                _ = tokio::time::sleep(pause) => {}
                // New events: go at once, unless the broker is being waited for.
                _ = self.signal.notified(self.config.sink), if !waiting_for_broker => {}
                _ = stop.changed() => {}
            }
        }
    }
}

/// Runs `job` every `period` until `stop` turns true.
pub(crate) async fn every<F, Fut>(period: Duration, mut stop: watch::Receiver<bool>, job: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let mut ticks = tokio::time::interval(period);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while !*stop.borrow() {
        tokio::select! {
            _ = ticks.tick() => job().await,
            _ = stop.changed() => {}
        }
    }
}

#[cfg(test)]
#[allow(
    clippy::cast_possible_truncation,
    clippy::cast_possible_wrap,
    clippy::cast_sign_loss
)]
mod tests {
    use super::*;
    use crate::service::ports::SystemClock;
    use std::collections::BTreeMap;
    use std::sync::Mutex;

    #[derive(Default)]
    struct Row {
        event: Option<PendingEvent>,
        published: bool,
        leased_to: Option<Uuid>,
        error: Option<String>,
    }

    /// The store's contract in memory: head-of-appointment claims, leases.
    #[derive(Default)]
    struct MemStore {
        rows: Mutex<BTreeMap<i64, Row>>,
    }

    impl MemStore {
        fn add(&self, seq: i64, key: Uuid) {
            let event = PendingEvent {
                seq,
                id: Uuid::new_v4(),
                key,
                topic: "appointments.created".into(),
                event_type: "appointment.created".into(),
                payload: format!("{{\"n\":{seq}}}"),
                created_at: Utc::now(),
                request_id: None,
                trace_parent: None,
            };
            self.rows.lock().unwrap().insert(
                seq,
                Row {
                    event: Some(event),
                    ..Row::default()
                },
            );
        }
    }

    #[async_trait]
    impl OutboxStore for MemStore {
        async fn claim(
            &self,
            owner: Uuid,
            limit: i64,
            _: Duration,
        ) -> Result<Vec<PendingEvent>, RepoError> {
            let mut rows = self.rows.lock().unwrap();
            let mut heads = std::collections::HashSet::new();
            let mut out = Vec::new();
            for row in rows.values_mut() {
                let Some(e) = row.event.clone() else { continue };
                if row.published || !heads.insert(e.key) {
                    continue;
                }
                if row.leased_to.is_none() && (out.len() as i64) < limit {
                    row.leased_to = Some(owner);
                    out.push(e);
                }
            }
            Ok(out)
        }
        async fn mark_published(&self, seqs: Vec<i64>) -> Result<(), RepoError> {
            let mut rows = self.rows.lock().unwrap();
            for s in seqs {
                let row = rows.get_mut(&s).unwrap();
                row.published = true;
                row.leased_to = None;
            }
            Ok(())
        }
        async fn release(&self, _: Uuid, seqs: Vec<i64>, error: String) -> Result<(), RepoError> {
            let mut rows = self.rows.lock().unwrap();
            for s in seqs {
                let row = rows.get_mut(&s).unwrap();
                row.leased_to = None;
                row.error = Some(error.clone());
            }
            Ok(())
        }
        async fn backlog(&self) -> Result<Backlog, RepoError> {
            let rows = self.rows.lock().unwrap();
            let pending: Vec<_> = rows.values().filter(|r| !r.published).collect();
            Ok(Backlog {
                pending: pending.len() as i64,
                oldest: pending
                    .iter()
                    .filter_map(|r| r.event.as_ref().map(|e| e.created_at))
                    .min(),
            })
        }
        async fn prune(&self, _: DateTime<Utc>) -> Result<u64, RepoError> {
            Ok(0)
        }
    }

    /// Records what it was asked to publish; fails events whose seq is in `refuse`.
    #[derive(Default)]
    struct Broker {
        log: Mutex<Vec<i64>>,
        refuse: Mutex<Vec<i64>>,
        down: std::sync::atomic::AtomicBool,
        /// Publish calls answered while down.
        refused_calls: std::sync::atomic::AtomicUsize,
    }

    #[async_trait]
    impl EventPublisher for Broker {
        async fn publish(&self, events: &[PendingEvent]) -> Vec<Result<(), String>> {
            let down = self.down.load(std::sync::atomic::Ordering::SeqCst);
            if down {
                self.refused_calls
                    .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
            let refuse = self.refuse.lock().unwrap().clone();
            events
                .iter()
                .map(|e| {
                    if down || refuse.contains(&e.seq) {
                        Err("broker unavailable".into())
                    } else {
                        self.log.lock().unwrap().push(e.seq);
                        Ok(())
                    }
                })
                .collect()
        }
        async fn check(&self) -> Result<(), String> {
            Ok(())
        }
    }

    fn relay(store: Arc<MemStore>, broker: Arc<Broker>, batch: i64) -> OutboxRelay {
        OutboxRelay::new(
            store,
            broker,
            Arc::new(SystemClock),
            OutboxSignal::default(),
            RelayConfig {
                sink: Sink::Kafka,
                batch_size: batch,
                lease: Duration::from_secs(30),
                poll_interval: Duration::from_millis(10),
                backoff_initial: Duration::from_millis(10),
                backoff_max: Duration::from_millis(100),
                retention: Duration::from_secs(3600),
                prune_interval: Duration::from_secs(3600),
                stats_interval: Duration::from_secs(3600),
            },
            RelayMetrics::new(&Registry::new(), Sink::Kafka).unwrap(),
        )
    }

    #[tokio::test]
    async fn publishes_each_appointments_events_in_order() {
        let store = Arc::new(MemStore::default());
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        for (seq, key) in [(1, a), (2, a), (3, b), (4, a), (5, b)] {
            store.add(seq, key);
        }
        let broker = Arc::new(Broker::default());
        let relay = relay(store.clone(), broker.clone(), 100);
        assert_eq!(relay.round().await, Round::Published(2)); // heads: 1 (a), 3 (b)
        assert_eq!(relay.round().await, Round::Published(2)); // 2 (a), 5 (b)
        assert_eq!(relay.round().await, Round::Published(1)); // 4 (a)
        assert_eq!(relay.round().await, Round::Idle);
        assert_eq!(*broker.log.lock().unwrap(), vec![1, 3, 2, 5, 4]);
        assert_eq!(store.backlog().await.unwrap().pending, 0);
    }

    #[tokio::test]
    async fn a_failed_event_is_kept_and_blocks_only_its_appointment() {
        let store = Arc::new(MemStore::default());
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        for (seq, key) in [(1, a), (2, a), (3, b)] {
            store.add(seq, key);
        }
        let broker = Arc::new(Broker::default());
        broker.refuse.lock().unwrap().push(1);
        let relay = relay(store.clone(), broker.clone(), 100);
        assert_eq!(relay.round().await, Round::Failed);
        assert_eq!(relay.round().await, Round::Failed);
        // b went through; a's second event waits behind its first.
        assert_eq!(*broker.log.lock().unwrap(), vec![3]);
        {
            let rows = store.rows.lock().unwrap();
            assert!(!rows[&1].published && rows[&1].leased_to.is_none());
            assert_eq!(rows[&1].error.as_deref(), Some("broker unavailable"));
        }
        broker.refuse.lock().unwrap().clear();
        assert_eq!(relay.round().await, Round::Published(1));
        assert_eq!(relay.round().await, Round::Published(1));
        assert_eq!(*broker.log.lock().unwrap(), vec![3, 1, 2]);
    }

    #[tokio::test]
    async fn the_loop_waits_out_an_outage_then_delivers_everything() {
        let store = Arc::new(MemStore::default());
        for seq in 1..=50 {
            store.add(seq, Uuid::new_v4());
        }
        let broker = Arc::new(Broker::default());
        broker.down.store(true, std::sync::atomic::Ordering::SeqCst);
        let (stop_tx, stop_rx) = watch::channel(false);
        let task = tokio::spawn(relay(store.clone(), broker.clone(), 20).run(stop_rx));
        // Refused twice: the relay has tried, backed off and tried again.
        medbook_test_support::eventually("two refused rounds", Duration::from_secs(10), || async {
            (broker
                .refused_calls
                .load(std::sync::atomic::Ordering::SeqCst)
                >= 2)
                .then_some(())
        })
        .await;
        assert!(broker.log.lock().unwrap().is_empty());
        broker
            .down
            .store(false, std::sync::atomic::Ordering::SeqCst);
        tokio::time::timeout(Duration::from_secs(5), async {
            while broker.log.lock().unwrap().len() < 50 {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await
        .unwrap();
        stop_tx.send(true).unwrap();
        tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .unwrap()
            .unwrap();
        let mut log = broker.log.lock().unwrap().clone();
        log.sort();
        assert_eq!(log, (1..=50).collect::<Vec<_>>());
    }
}
