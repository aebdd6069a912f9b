//! [`SmtpStatus`]: whether the SMTP server is reachable, as the last attempt (or the
//! prober) found it. `/ready` reports it, the `smtp_up` gauge shows it, and emails
//! waiting for the server wake when it turns up again.

use prometheus::IntGauge;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::watch;

#[derive(Clone)]
pub struct SmtpStatus {
    up: Arc<watch::Sender<bool>>,
    /// When the server last answered (an email accepted, a probe greeted).
    last_answer: Arc<Mutex<Instant>>,
    gauge: IntGauge,
}

impl SmtpStatus {
    /// Starts as up: nothing has failed yet.
    pub fn new(gauge: IntGauge) -> Self {
        gauge.set(1);
        Self {
            up: Arc::new(watch::Sender::new(true)),
            last_answer: Arc::new(Mutex::new(Instant::now())),
            gauge,
        }
    }

    /// How long ago the server last answered.
    pub fn silent_for(&self) -> Duration {
        self.last_answer
            .lock()
            .map(|t| t.elapsed())
            .unwrap_or_default()
    }

    pub fn is_up(&self) -> bool {
        *self.up.borrow()
    }

    /// Records what was seen; returns true if that changed the status.
    pub fn set_up(&self, up: bool) -> bool {
        self.gauge.set(i64::from(up));
        if up {
            if let Ok(mut t) = self.last_answer.lock() {
                *t = Instant::now();
            }
        }
        self.up.send_if_modified(|v| std::mem::replace(v, up) != up)
    }

    pub fn subscribe(&self) -> watch::Receiver<bool> {
        self.up.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn changes_are_reported_once_and_wake_subscribers() {
        let gauge = IntGauge::new("smtp_up", "x").unwrap();
        let s = SmtpStatus::new(gauge.clone());
        assert!(s.is_up());
        assert!(!s.set_up(true));
        let mut rx = s.subscribe();
        assert!(s.set_up(false));
        assert!(!s.set_up(false));
        assert_eq!(gauge.get(), 0);
        let waiter = tokio::spawn(async move { rx.wait_for(|up| *up).await.map(|_| ()) });
        assert!(s.set_up(true));
        waiter.await.unwrap().unwrap();
        assert_eq!(gauge.get(), 1);
        assert!(s.silent_for() < Duration::from_secs(5));
    }
}
