//! Prometheus metrics of the notification-service.

use super::{FailureKind, Outcome, SkipReason};
use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry,
};
use std::time::Duration;

#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    sent: IntCounterVec,
    handled: IntCounterVec,
    dlq_messages: IntGauge,
    send_failures: IntCounterVec,
    dead_lettered: IntCounterVec,
    duplicates: prometheus::IntCounter,
    handling: Histogram,
    lag: IntGaugeVec,
    smtp_up: IntGauge,
    retrying: IntGauge,
    reminders_sent: IntCounter,
    reminders_skipped: IntCounterVec,
    account_emails_skipped: IntCounterVec,
    offers_skipped: IntCounterVec,
    smtp_reconnects: IntCounter,
    rebalances: IntCounterVec,
    paused: IntGauge,
    superseded: IntCounter,
    order_waits: HistogramVec,
    held_by_cap: IntGauge,
}

impl Metrics {
    pub fn new() -> prometheus::Result<Self> {
        let registry = Registry::new();
        let m = Self {
            sent: IntCounterVec::new(
                Opts::new("emails_sent_total", "Emails the SMTP server accepted"),
                &["outcome"],
            )?,
            handled: IntCounterVec::new(
                Opts::new(
                    "emails_handled_total",
                    "Messages handled, by outcome: sent, duplicate, skipped, not_wanted (no e-mail asked for: a no-show of a clinic that does not e-mail patients about them), dead_lettered",
                ),
                &["outcome"],
            )?,
            dlq_messages: IntGauge::new(
                "dlq_messages",
                "Messages on the dead-letter topic (replayed ones too, until the topic's retention removes them); -1 until first read",
            )?,
            send_failures: IntCounterVec::new(
                Opts::new("email_send_failures_total", "Failed sending attempts"),
                &["kind"],
            )?,
            dead_lettered: IntCounterVec::new(
                Opts::new("emails_dead_lettered_total", "Messages written to the DLQ"),
                &["reason"],
            )?,
            duplicates: prometheus::IntCounter::new(
                "events_duplicate_total",
                "Events skipped because their email was already sent",
            )?,
            handling: Histogram::with_opts(
                HistogramOpts::new(
                    "message_handling_seconds",
                    "Time from receiving a message to having handled it",
                )
                .buckets(vec![
                    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
                    30.0, 60.0,
                ]),
            )?,
            lag: IntGaugeVec::new(
                Opts::new(
                    "consumer_lag_messages",
                    "Messages behind the partition's end, as librdkafka reports it",
                ),
                &["topic", "partition"],
            )?,
            smtp_up: IntGauge::new(
                "smtp_up",
                "1 while the SMTP server is reachable, 0 while mail waits for it",
            )?,
            retrying: IntGauge::new(
                "emails_waiting_for_retry",
                "Emails held in hand between failed attempts (outage or 4xx)",
            )?,
            reminders_sent: IntCounter::new(
                "reminders_sent_total",
                "Reminder emails the SMTP server accepted",
            )?,
            reminders_skipped: IntCounterVec::new(
                Opts::new(
                    "reminders_skipped_total",
                    "Reminders dropped: the appointment changed (stale) or started",
                ),
                &["reason"],
            )?,
            account_emails_skipped: IntCounterVec::new(
                Opts::new(
                    "account_emails_skipped_total",
                    "Account e-mails dropped: their link expired (link_expired) before sending",
                ),
                &["reason"],
            )?,
            offers_skipped: IntCounterVec::new(
                Opts::new(
                    "waitlist_offers_skipped_total",
                    "Waitlist offers dropped: their hold ended (offer_expired) before sending",
                ),
                &["reason"],
            )?,
            smtp_reconnects: IntCounter::new(
                "smtp_reconnects_total",
                "Kept-open SMTP connections found closed by the server and replaced",
            )?,
            rebalances: IntCounterVec::new(
                Opts::new(
                    "consumer_rebalances_total",
                    "Partition assignments and revocations of this group member",
                ),
                &["kind"],
            )?,
            paused: IntGauge::new(
                "consumer_paused_partitions",
                "Partitions paused because their messages wait (backpressure)",
            )?,
            superseded: IntCounter::new(
                "appointment_emails_superseded_total",
                "Appointment e-mails not sent because the patient was already told about a later version",
            )?,
            order_waits: HistogramVec::new(
                HistogramOpts::new(
                    "email_order_wait_seconds",
                    "How long appointment e-mails waited for an earlier version of their appointment, by how the wait ended: in_order, forced (order.max_wait passed), superseded",
                )
                .buckets(vec![0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0]),
                &["ended"],
            )?,
            held_by_cap: IntGauge::new(
                "dead_letters_held",
                "Messages held because the consumer group's dead-letter cap is reached (they are not dead-lettered, their partitions wait)",
            )?,
            registry,
        };
        m.registry.register(Box::new(m.sent.clone()))?;
        m.registry.register(Box::new(m.handled.clone()))?;
        m.registry.register(Box::new(m.dlq_messages.clone()))?;
        for outcome in Outcome::LABELS {
            m.handled.with_label_values(&[outcome]);
        }
        for first in ["first", "after_takeover"] {
            m.sent.with_label_values(&[first]);
        }
        m.dlq_messages.set(-1);
        for ended in ["in_order", "forced", "superseded"] {
            m.order_waits.with_label_values(&[ended]);
        }
        m.registry.register(Box::new(m.superseded.clone()))?;
        m.registry.register(Box::new(m.order_waits.clone()))?;
        m.registry.register(Box::new(m.held_by_cap.clone()))?;
        for reason in [SkipReason::Stale, SkipReason::Started] {
            m.reminders_skipped.with_label_values(&[reason.as_str()]);
        }
        m.account_emails_skipped
            .with_label_values(&[SkipReason::LinkExpired.as_str()]);
        m.offers_skipped
            .with_label_values(&[SkipReason::OfferExpired.as_str()]);
        for kind in ["unavailable", "transient", "permanent", "refused"] {
            m.send_failures.with_label_values(&[kind]);
        }
        for kind in FailureKind::ALL {
            m.dead_lettered.with_label_values(&[kind.as_str()]);
        }
        m.registry.register(Box::new(m.send_failures.clone()))?;
        m.registry.register(Box::new(m.dead_lettered.clone()))?;
        m.registry.register(Box::new(m.duplicates.clone()))?;
        m.registry.register(Box::new(m.handling.clone()))?;
        m.registry.register(Box::new(m.lag.clone()))?;
        m.registry.register(Box::new(m.smtp_up.clone()))?;
        m.registry.register(Box::new(m.retrying.clone()))?;
        m.registry.register(Box::new(m.reminders_sent.clone()))?;
        m.registry.register(Box::new(m.reminders_skipped.clone()))?;
        m.registry
            .register(Box::new(m.account_emails_skipped.clone()))?;
        m.registry.register(Box::new(m.offers_skipped.clone()))?;
        m.registry.register(Box::new(m.smtp_reconnects.clone()))?;
        m.registry.register(Box::new(m.rebalances.clone()))?;
        m.registry.register(Box::new(m.paused.clone()))?;
        Ok(m)
    }

    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    pub fn set_dlq_messages(&self, n: i64) {
        self.dlq_messages.set(n);
    }

    pub fn observe(&self, outcome: &Outcome, took: Duration) {
        self.handling.observe(took.as_secs_f64());
        self.handled.with_label_values(&[outcome.label()]).inc();
        match outcome {
            Outcome::Sent { takeover, .. } => self
                .sent
                .with_label_values(&[if *takeover { "after_takeover" } else { "first" }])
                .inc(),
            Outcome::Duplicate => self.duplicates.inc(),
            Outcome::Skipped(SkipReason::Superseded) => self.superseded.inc(),
            Outcome::Skipped(reason @ (SkipReason::Stale | SkipReason::Started)) => self
                .reminders_skipped
                .with_label_values(&[reason.as_str()])
                .inc(),
            Outcome::Skipped(reason @ SkipReason::LinkExpired) => self
                .account_emails_skipped
                .with_label_values(&[reason.as_str()])
                .inc(),
            Outcome::Skipped(reason @ SkipReason::OfferExpired) => self
                .offers_skipped
                .with_label_values(&[reason.as_str()])
                .inc(),
            // Counted by `emails_handled_total{outcome="not_wanted"}` alone.
            Outcome::NotWanted => {}
            Outcome::DeadLettered(kind) => {
                self.dead_lettered.with_label_values(&[kind.as_str()]).inc()
            }
        }
    }

    pub fn send_failed(&self, kind: &str) {
        self.send_failures.with_label_values(&[kind]).inc();
    }

    pub fn smtp_up_gauge(&self) -> IntGauge {
        self.smtp_up.clone()
    }

    pub fn retrying(&self, delta: i64) {
        self.retrying.add(delta);
    }

    pub fn reminder_sent(&self) {
        self.reminders_sent.inc();
    }

    /// An e-mail's wait for an earlier version of its appointment ended.
    pub fn order_waited(&self, ended: &str, waited: Duration) {
        self.order_waits
            .with_label_values(&[ended])
            .observe(waited.as_secs_f64());
    }

    pub fn held_by_cap(&self, delta: i64) {
        self.held_by_cap.add(delta);
    }

    pub fn smtp_reconnected(&self) {
        self.smtp_reconnects.inc();
    }

    pub fn rebalanced(&self, kind: &str) {
        self.rebalances.with_label_values(&[kind]).inc();
    }

    pub fn set_paused(&self, n: usize) {
        self.paused.set(i64::try_from(n).unwrap_or(i64::MAX));
    }

    pub fn set_lag(&self, topic: &str, partition: i32, lag: i64) {
        self.lag
            .with_label_values(&[topic, &partition.to_string()])
            .set(lag);
    }

    /// A partition given up: its lag is its new owner's to report.
    pub fn forget_lag(&self, topic: &str, partition: i32) {
        let _ = self
            .lag
            .remove_label_values(&[topic, &partition.to_string()]);
    }

    pub fn render(&self) -> Result<String, prometheus::Error> {
        prometheus::TextEncoder::new().encode_to_string(&self.registry.gather())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_partition_given_up_stops_reporting_its_lag() {
        let m = Metrics::new().unwrap();
        m.set_lag("appointments.created", 2, 40);
        assert!(m.render().unwrap().contains("partition=\"2\""));
        m.forget_lag("appointments.created", 2);
        assert!(!m.render().unwrap().contains("partition=\"2\""));
    }
}
