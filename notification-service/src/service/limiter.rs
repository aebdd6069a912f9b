//! The cap on dead letters: more than `max` within `window` means something is wrong
//! with the service (bad SMTP credentials, a broken template), not with the messages,
//! and the consumer must stop rather than empty the topics into the DLQ.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

#[derive(Debug)]
pub struct DeadLetterLimiter {
    max: usize,
    window: Duration,
    recent: VecDeque<Instant>,
}

impl DeadLetterLimiter {
    pub fn new(max: u32, window: Duration) -> Self {
        Self {
            max: max as usize,
            window,
            recent: VecDeque::new(),
        }
    }

    /// Counts one more dead letter at `now`, or refuses it when the cap is reached.
    pub fn admit(&mut self, now: Instant) -> Result<(), String> {
        while self
            .recent
            .front()
            .is_some_and(|t| now.duration_since(*t) >= self.window)
        {
            self.recent.pop_front();
        }
        if self.recent.len() >= self.max {
            return Err(format!(
                "{} dead letters within {} s (dead_letters.max_per_window = {})",
                self.recent.len(),
                self.window.as_secs(),
                self.max
            ));
        }
        self.recent.push_back(now);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_beyond_the_cap_and_recovers_as_the_window_moves() {
        let mut l = DeadLetterLimiter::new(3, Duration::from_secs(60));
        let t0 = Instant::now();
        for i in 0..3 {
            l.admit(t0 + Duration::from_secs(i)).unwrap();
        }
        let err = l.admit(t0 + Duration::from_secs(10)).unwrap_err();
        assert!(err.contains("3 dead letters within 60 s"), "{err}");
        // The first one leaves the window at t0+60.
        l.admit(t0 + Duration::from_secs(60)).unwrap();
        assert!(l.admit(t0 + Duration::from_secs(60)).is_err());
    }

    #[test]
    fn zero_means_no_dead_letters_at_all() {
        let mut l = DeadLetterLimiter::new(0, Duration::from_secs(1));
        assert!(l.admit(Instant::now()).is_err());
    }
}
