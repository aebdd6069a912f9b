//! [`SmtpStatus`]: whether the SMTP server is reachable, as the last attempt (or the
//! prober) found it. `/ready` reports it, the `smtp_up` gauge shows it, and emails
//! waiting for the server wake when it turns up again.

use prometheus::IntGauge;
use std::sync::Arc;
use tokio::sync::watch;

#[derive(Clone)]
pub struct SmtpStatus {
    up: Arc<watch::Sender<bool>>,
    gauge: IntGauge,
}

impl SmtpStatus {
    /// Starts as up: nothing has failed yet.
    pub fn new(gauge: IntGauge) -> Self {
        gauge.set(1);
        Self {
            up: Arc::new(watch::Sender::new(true)),
            gauge,
        }
    }

    pub fn is_up(&self) -> bool {
        *self.up.borrow()
    }

    /// Records what was seen; returns true if that changed the status.
    pub fn set_up(&self, up: bool) -> bool {
        self.gauge.set(i64::from(up));
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
    }
}
