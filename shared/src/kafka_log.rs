//! librdkafka's logs and errors, with lasting conditions reported once, then at a low
//! rate, and their end reported too.
//!
//! With the broker away, librdkafka reports the same thing many times a second: a
//! global `AllBrokersDown` error after every failed reconnect, a
//! `BrokerTransportFailure` error and a `FAIL` log line per broker connection. Passed on
//! as they come, they drowned everything else (8,924 of the 8,929 lines of a benchmark
//! run). [`KafkaContext`], the client context of every medbook Kafka client, passes
//! them through a [`ConditionLog`] instead:
//!
//! * the first report of a condition is logged (as librdkafka's message, at error level);
//! * later reports of it are counted, and logged at most once per [`REPEAT_INTERVAL`],
//!   with how many were suppressed and how long the condition has lasted;
//! * when it is over, one line says so (info), with its duration.
//!
//! Conditions are keyed by what they are about: `all brokers` for `AllBrokersDown`, and
//! the broker's name (`host:port/id`, as librdkafka writes it) for a connection failure.
//!
//! **When is it over?** librdkafka reports failures but never successes, so the end is
//! read from its statistics (`statistics.interval.ms`, set for every client by
//! [`crate::kafka::KafkaSettings::client_config`]): a broker whose connection is in
//! state `UP` is reachable. Nothing is over while no broker is up. Once one is,
//! `all brokers` is over; a broker's own condition is over once that broker is up, or
//! idle (`INIT`: librdkafka connects to a broker only when it needs it, so a broker
//! whose connection was closed and that is not needed is not retried) or gone from the
//! list; a bootstrap address's (`…/bootstrap`, only a way in) is over at once, as
//! librdkafka may never reconnect it. A broker still being retried (`TRY_CONNECT`,
//! `CONNECT`, `DOWN`) while others are up stays a condition, logged at the low rate.
//! The statistics arrive on a timer whether or not the client has anything to send or
//! receive, so a quiet service reports the end within one interval; a delivery report
//! or a consumed message would only come with traffic.

use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::ConsumerContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::statistics::Statistics;
use rdkafka::ClientContext;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How often a lasting condition is logged again, at most.
pub const REPEAT_INTERVAL: Duration = Duration::from_secs(30);

/// The condition key of `AllBrokersDown`.
pub const ALL_BROKERS: &str = "all brokers";

/// What to do with one report of a condition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Report {
    /// The condition starts: log it.
    First,
    /// It goes on and the last line about it is old enough: log it again, with the
    /// reports suppressed since that line and how long it has lasted.
    Again { suppressed: u64, lasting: Duration },
    /// It goes on and was logged recently: count it, log nothing.
    Suppressed,
}

/// A condition that ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ended {
    pub lasted: Duration,
    /// Reports since the last line about it.
    pub suppressed: u64,
}

#[derive(Debug, Clone, Copy)]
struct Open {
    since: Instant,
    last_logged: Instant,
    suppressed: u64,
}

/// Which conditions are going on, and when each was last logged. Time is passed in
/// (`now`), so tests run it on a clock of their own.
#[derive(Debug)]
pub struct ConditionLog {
    interval: Duration,
    open: HashMap<String, Open>,
}

impl ConditionLog {
    pub fn new(interval: Duration) -> Self {
        Self {
            interval,
            open: HashMap::new(),
        }
    }

    /// A report of condition `key` at `now`.
    pub fn report(&mut self, key: &str, now: Instant) -> Report {
        match self.open.get_mut(key) {
            None => {
                self.open.insert(
                    key.to_owned(),
                    Open {
                        since: now,
                        last_logged: now,
                        suppressed: 0,
                    },
                );
                Report::First
            }
            Some(open) if now.saturating_duration_since(open.last_logged) >= self.interval => {
                let again = Report::Again {
                    suppressed: open.suppressed,
                    lasting: now.saturating_duration_since(open.since),
                };
                open.last_logged = now;
                open.suppressed = 0;
                again
            }
            Some(open) => {
                open.suppressed += 1;
                Report::Suppressed
            }
        }
    }

    /// Condition `key` is over (if it was going on).
    pub fn end(&mut self, key: &str, now: Instant) -> Option<Ended> {
        self.open.remove(key).map(|open| Ended {
            lasted: now.saturating_duration_since(open.since),
            suppressed: open.suppressed,
        })
    }

    /// The conditions going on.
    pub fn open(&self) -> impl Iterator<Item = &str> {
        self.open.keys().map(String::as_str)
    }
}

/// The broker a librdkafka message is about: messages start with its name
/// (`127.0.0.1:9092/bootstrap: Connect to … failed`), log lines after the thread
/// (`[thrd:127.0.0.1:9092/bootstrap]: 127.0.0.1:9092/bootstrap: …`).
fn broker_of(message: &str) -> Option<&str> {
    let message = match message.strip_prefix("[thrd:") {
        Some(rest) => rest.split_once("]: ").map_or(rest, |(_, m)| m),
        None => message,
    };
    let (name, _) = message.split_once(": ")?;
    (name.contains('/') && !name.contains(' ')).then_some(name)
}

/// The condition a global error reports, if it is one that lasts: all brokers down,
/// or a broker that cannot be reached (connection, name resolution).
pub fn condition_of_error(error: &KafkaError, reason: &str) -> Option<String> {
    let KafkaError::Global(code) = error else {
        return None;
    };
    match code {
        RDKafkaErrorCode::AllBrokersDown => Some(ALL_BROKERS.to_owned()),
        RDKafkaErrorCode::BrokerTransportFailure
        | RDKafkaErrorCode::Resolve
        | RDKafkaErrorCode::NetworkException
        | RDKafkaErrorCode::BrokerNotAvailable => {
            Some(broker_of(reason).unwrap_or("a broker").to_owned())
        }
        _ => None,
    }
}

/// The condition a log line reports, if it is one that lasts: a `FAIL` line (a broker
/// connection failed or was lost).
pub fn condition_of_log(facility: &str, message: &str) -> Option<String> {
    (facility == "FAIL").then(|| broker_of(message).unwrap_or("a broker").to_owned())
}

/// The conditions the statistics show to be over: see the module documentation.
pub fn ended_by<'a>(stats: &Statistics, open: impl Iterator<Item = &'a str>) -> Vec<String> {
    let state = |name: &str| {
        stats
            .brokers
            .values()
            .find(|b| b.name == name)
            .map(|b| b.state.as_str())
    };
    let any_up = stats
        .brokers
        .values()
        .any(|b| b.source != "internal" && b.source != "logical" && b.state == "UP");
    if !any_up {
        return Vec::new();
    }
    open.filter(|key| {
        *key == ALL_BROKERS
            || *key == "a broker"
            || key.ends_with("/bootstrap")
            || matches!(state(key), Some("UP") | Some("INIT") | None)
    })
    .map(str::to_owned)
    .collect()
}

/// What the context emits; the caller writes it to the log. Separate from logging so
/// that tests can look at it.
#[derive(Debug, Clone)]
pub enum Line {
    /// Not a lasting condition: as librdkafka reported it.
    Pass {
        level: RDKafkaLogLevel,
        text: String,
    },
    /// A condition starts.
    First { condition: String, text: String },
    /// A condition goes on.
    Again {
        condition: String,
        text: String,
        suppressed: u64,
        lasting: Duration,
    },
    /// A condition is over.
    Ended { condition: String, ended: Ended },
}

/// Something telling the time (tests use one they move by hand).
pub trait Clock: Send + Sync {
    fn now(&self) -> Instant;
}

#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        Instant::now()
    }
}

/// librdkafka's reports of one client, through a [`ConditionLog`].
pub struct BrokerLog<C: Clock = SystemClock> {
    client: String,
    clock: C,
    conditions: Mutex<ConditionLog>,
}

impl BrokerLog<SystemClock> {
    pub fn new(client: &str) -> Self {
        Self::with_clock(client, SystemClock, REPEAT_INTERVAL)
    }
}

impl<C: Clock> BrokerLog<C> {
    pub fn with_clock(client: &str, clock: C, interval: Duration) -> Self {
        Self {
            client: client.to_owned(),
            clock,
            conditions: Mutex::new(ConditionLog::new(interval)),
        }
    }

    fn with_conditions<T>(&self, f: impl FnOnce(&mut ConditionLog) -> T) -> T {
        match self.conditions.lock() {
            Ok(mut c) => f(&mut c),
            Err(poisoned) => f(&mut poisoned.into_inner()),
        }
    }

    fn reported(&self, condition: String, text: String) -> Option<Line> {
        let now = self.clock.now();
        match self.with_conditions(|c| c.report(&condition, now)) {
            Report::First => Some(Line::First { condition, text }),
            Report::Again {
                suppressed,
                lasting,
            } => Some(Line::Again {
                condition,
                text,
                suppressed,
                lasting,
            }),
            Report::Suppressed => None,
        }
    }

    /// A log line of librdkafka's.
    pub fn on_log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) -> Option<Line> {
        let text = format!("{facility} {message}");
        match condition_of_log(facility, message) {
            Some(condition) => self.reported(condition, text),
            None => Some(Line::Pass { level, text }),
        }
    }

    /// A global error of librdkafka's.
    pub fn on_error(&self, error: &KafkaError, reason: &str) -> Option<Line> {
        let text = format!("{error}: {reason}");
        match condition_of_error(error, reason) {
            Some(condition) => self.reported(condition, text),
            None => Some(Line::Pass {
                level: RDKafkaLogLevel::Error,
                text,
            }),
        }
    }

    /// librdkafka's statistics: the conditions they show to be over.
    pub fn on_stats(&self, stats: &Statistics) -> Vec<Line> {
        let now = self.clock.now();
        self.with_conditions(|c| {
            let over = ended_by(stats, c.open());
            over.into_iter()
                .filter_map(|condition| {
                    c.end(&condition, now)
                        .map(|ended| Line::Ended { condition, ended })
                })
                .collect()
        })
    }

    /// Conditions going on (for tests and diagnostics).
    pub fn open_conditions(&self) -> Vec<String> {
        self.with_conditions(|c| c.open().map(str::to_owned).collect())
    }

    /// Writes a line to the log, naming the client.
    pub fn emit(&self, line: Line) {
        let client = self.client.as_str();
        match line {
            Line::Pass { level, text } => match level {
                RDKafkaLogLevel::Emerg
                | RDKafkaLogLevel::Alert
                | RDKafkaLogLevel::Critical
                | RDKafkaLogLevel::Error => tracing::error!(client, "librdkafka: {text}"),
                RDKafkaLogLevel::Warning => tracing::warn!(client, "librdkafka: {text}"),
                RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => {
                    tracing::info!(client, "librdkafka: {text}")
                }
                RDKafkaLogLevel::Debug => tracing::debug!(client, "librdkafka: {text}"),
            },
            Line::First { condition, text } => tracing::error!(
                client,
                condition,
                "librdkafka: {text} (repeats are logged at most every {} s until it is over)",
                REPEAT_INTERVAL.as_secs()
            ),
            Line::Again {
                condition,
                text,
                suppressed,
                lasting,
            } => tracing::error!(
                client,
                condition,
                suppressed,
                lasting_secs = lasting.as_secs(),
                "librdkafka: still failing: {text}"
            ),
            Line::Ended { condition, ended } => tracing::info!(
                client,
                condition,
                lasted_secs = ended.lasted.as_secs(),
                suppressed = ended.suppressed,
                "{}",
                if condition == ALL_BROKERS {
                    "kafka brokers reachable again"
                } else {
                    "kafka broker reachable again"
                }
            ),
        }
    }
}

/// The client context of every medbook Kafka client (producers, consumers, admin):
/// librdkafka's logs and errors through a [`BrokerLog`]. The notification consumer's
/// own context wraps one too.
pub struct KafkaContext {
    log: Arc<BrokerLog>,
}

impl KafkaContext {
    pub fn new(client: &str) -> Self {
        Self::with_log(Arc::new(BrokerLog::new(client)))
    }

    /// A context sharing `log` (a client replaced by a new one keeps the conditions
    /// going on, so an outage is not logged as new).
    pub fn with_log(log: Arc<BrokerLog>) -> Self {
        Self { log }
    }

    pub fn broker_log(&self) -> &Arc<BrokerLog> {
        &self.log
    }
}

impl ClientContext for KafkaContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        if let Some(line) = self.log.on_log(level, fac, log_message) {
            self.log.emit(line);
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        if let Some(line) = self.log.on_error(&error, reason) {
            self.log.emit(line);
        }
    }

    fn stats(&self, statistics: Statistics) {
        for line in self.log.on_stats(&statistics) {
            self.log.emit(line);
        }
    }
}

impl ConsumerContext for KafkaContext {}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};

    /// A clock moved by hand, in milliseconds from a fixed start.
    #[derive(Clone)]
    struct ManualClock {
        start: Instant,
        millis: Arc<AtomicU64>,
    }

    impl ManualClock {
        fn new() -> Self {
            Self {
                start: Instant::now(),
                millis: Arc::new(AtomicU64::new(0)),
            }
        }
        fn advance(&self, d: Duration) {
            self.millis.fetch_add(
                u64::try_from(d.as_millis()).unwrap_or(u64::MAX),
                Ordering::SeqCst,
            );
        }
    }

    impl Clock for ManualClock {
        fn now(&self) -> Instant {
            self.start + Duration::from_millis(self.millis.load(Ordering::SeqCst))
        }
    }

    const DOWN: &str = "1/1 brokers are down";
    const REFUSED: &str = "127.0.0.1:19092/bootstrap: Connect to ipv4#127.0.0.1:19092 failed: Connection refused (after 0ms in state CONNECT)";

    fn stats(brokers: &[(&str, &str, &str)]) -> Statistics {
        Statistics {
            brokers: brokers
                .iter()
                .map(|(name, source, state)| {
                    let broker = rdkafka::statistics::Broker {
                        name: (*name).to_owned(),
                        source: (*source).to_owned(),
                        state: (*state).to_owned(),
                        ..Default::default()
                    };
                    ((*name).to_owned(), broker)
                })
                .collect(),
            ..Default::default()
        }
    }

    #[test]
    fn a_lasting_condition_is_logged_once_then_every_interval_with_a_count() {
        let start = Instant::now();
        let at = |s: u64| start + Duration::from_millis(s);
        let mut log = ConditionLog::new(Duration::from_secs(30));
        assert_eq!(log.report("all brokers", at(0)), Report::First);
        // Eight a second for 29.9 s: all suppressed.
        for i in 1..240 {
            assert_eq!(log.report("all brokers", at(i * 125)), Report::Suppressed);
        }
        assert_eq!(
            log.report("all brokers", at(30_000)),
            Report::Again {
                suppressed: 239,
                lasting: Duration::from_secs(30)
            }
        );
        assert_eq!(log.report("all brokers", at(30_500)), Report::Suppressed);
        // Another condition has a log of its own.
        assert_eq!(log.report("b:1/1", at(30_600)), Report::First);
        assert_eq!(
            log.end("all brokers", at(45_000)),
            Some(Ended {
                lasted: Duration::from_secs(45),
                suppressed: 1
            })
        );
        assert_eq!(log.end("all brokers", at(45_001)), None, "ended once");
        // After the end, a new report starts a new condition.
        assert_eq!(log.report("all brokers", at(46_000)), Report::First);
    }

    #[test]
    fn broker_outage_errors_are_conditions_and_other_reports_pass() {
        let down = KafkaError::Global(RDKafkaErrorCode::AllBrokersDown);
        assert_eq!(
            condition_of_error(&down, DOWN).as_deref(),
            Some(ALL_BROKERS)
        );
        let transport = KafkaError::Global(RDKafkaErrorCode::BrokerTransportFailure);
        assert_eq!(
            condition_of_error(&transport, REFUSED).as_deref(),
            Some("127.0.0.1:19092/bootstrap")
        );
        let other = KafkaError::Global(RDKafkaErrorCode::MessageTimedOut);
        assert_eq!(condition_of_error(&other, "x"), None);
        assert_eq!(
            condition_of_log(
                "FAIL",
                &format!("[thrd:127.0.0.1:19092/bootstrap]: {REFUSED}")
            )
            .as_deref(),
            Some("127.0.0.1:19092/bootstrap")
        );
        assert_eq!(condition_of_log("CONFWARN", "[thrd:app]: x: y"), None);
    }

    #[test]
    fn the_outage_ends_when_the_statistics_show_a_broker_up() {
        let clock = ManualClock::new();
        let log = BrokerLog::with_clock("test", clock.clone(), Duration::from_secs(30));
        let down = KafkaError::Global(RDKafkaErrorCode::AllBrokersDown);
        let transport = KafkaError::Global(RDKafkaErrorCode::BrokerTransportFailure);
        assert!(matches!(
            log.on_error(&down, DOWN),
            Some(Line::First { .. })
        ));
        assert!(matches!(
            log.on_error(&transport, REFUSED),
            Some(Line::First { .. })
        ));
        let mut lines = 0;
        for _ in 0..480 {
            clock.advance(Duration::from_millis(125));
            lines += usize::from(log.on_error(&down, DOWN).is_some());
            lines += usize::from(log.on_error(&transport, REFUSED).is_some());
        }
        assert_eq!(lines, 4, "a minute of reports: two lines per condition");
        // Statistics during the outage end nothing.
        let outage = stats(&[
            ("127.0.0.1:19092/bootstrap", "configured", "CONNECT"),
            (":0/internal", "internal", "UP"),
        ]);
        assert!(log.on_stats(&outage).is_empty());
        assert_eq!(log.open_conditions().len(), 2);
        // A learned broker up again: both are over (the bootstrap address is only the
        // way in), each said once.
        clock.advance(Duration::from_secs(5));
        let back = stats(&[
            ("127.0.0.1:19092/bootstrap", "configured", "INIT"),
            ("127.0.0.1:19092/1", "learned", "UP"),
        ]);
        let mut ended = log.on_stats(&back);
        ended.sort_by_key(|l| format!("{l:?}"));
        assert_eq!(ended.len(), 2);
        assert!(ended.iter().all(|l| matches!(
            l,
            Line::Ended { ended, .. } if ended.lasted == Duration::from_secs(65)
        )));
        assert!(log.on_stats(&back).is_empty(), "said once");
        assert!(log.open_conditions().is_empty());
    }

    #[test]
    fn a_broker_of_several_stays_down_while_the_others_are_up() {
        let clock = ManualClock::new();
        let log = BrokerLog::with_clock("test", clock.clone(), Duration::from_secs(30));
        let transport = KafkaError::Global(RDKafkaErrorCode::BrokerTransportFailure);
        let refused = "b2:9092/2: Connect to ipv4#10.0.0.2:9092 failed: Connection refused";
        assert!(log.on_error(&transport, refused).is_some());
        let partial = stats(&[
            ("b1:9092/1", "learned", "UP"),
            ("b2:9092/2", "learned", "DOWN"),
        ]);
        assert!(log.on_stats(&partial).is_empty(), "b2 is still down");
        clock.advance(Duration::from_secs(10));
        assert!(log.on_error(&transport, refused).is_none(), "rate-limited");
        let retrying = stats(&[
            ("b1:9092/1", "learned", "UP"),
            ("b2:9092/2", "learned", "TRY_CONNECT"),
        ]);
        assert!(
            log.on_stats(&retrying).is_empty(),
            "b2 is still being retried"
        );
        let all_up = stats(&[
            ("b1:9092/1", "learned", "UP"),
            ("b2:9092/2", "learned", "UP"),
        ]);
        assert_eq!(log.on_stats(&all_up).len(), 1);
        // A connection the broker closed, to a broker not needed since: not retried.
        let closed = "b2:9092/2: Disconnected (after 600000ms in state UP)";
        assert!(log.on_log(RDKafkaLogLevel::Error, "FAIL", closed).is_some());
        let idle = stats(&[
            ("b1:9092/1", "learned", "UP"),
            ("b2:9092/2", "learned", "INIT"),
        ]);
        assert_eq!(log.on_stats(&idle).len(), 1);
    }
}
