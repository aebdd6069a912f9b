//! Retrying with exponential backoff, the one way every service does it: delays from
//! `backon`'s [`ExponentialBuilder`] (doubling from a first delay up to a cap), used as
//! [`Backoff`] by loops that run for the life of the process (reset after a success),
//! and by [`until`] for an operation retried until it succeeds or a deadline passes.

use backon::{BackoffBuilder, ExponentialBackoff, ExponentialBuilder, Retryable};
use std::cell::Cell;
use std::future::Future;
use std::time::Duration;
use tokio::time::Instant;

/// backon multiplies in `f32`; whole microseconds keep the figures exact.
fn whole_micros(d: Duration) -> Duration {
    let micros = d.as_nanos().saturating_add(500) / 1000;
    Duration::from_micros(u64::try_from(micros).unwrap_or(u64::MAX))
}

fn builder(initial: Duration, max: Duration) -> ExponentialBuilder {
    ExponentialBuilder::default()
        .with_min_delay(initial)
        .with_max_delay(max.max(initial))
        .with_factor(2.0)
        .without_max_times()
}

/// Delays for a loop that retries after failures: `initial`, twice that, … up to
/// `max`, and back to `initial` after [`Backoff::reset`].
#[derive(Debug)]
pub struct Backoff {
    builder: ExponentialBuilder,
    delays: ExponentialBackoff,
    max: Duration,
    failures: u32,
}

impl Backoff {
    pub fn new(initial: Duration, max: Duration) -> Self {
        let builder = builder(initial, max);
        Self {
            delays: builder.build(),
            builder,
            max: max.max(initial),
            failures: 0,
        }
    }

    /// The pause after one more failure.
    pub fn next_delay(&mut self) -> Duration {
        self.failures = self.failures.saturating_add(1);
        whole_micros(self.delays.next().unwrap_or(self.max))
    }

    /// After a success: the next failure waits `initial` again.
    pub fn reset(&mut self) {
        self.delays = self.builder.build();
        self.failures = 0;
    }

    /// Failures since the last success.
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// The pause after failed attempt `attempt` (1-based) of a sequence, without
    /// keeping state (for retries scheduled across messages).
    pub fn nth(initial: Duration, max: Duration, attempt: u32) -> Duration {
        let skip = usize::try_from(attempt.saturating_sub(1).min(40)).unwrap_or(40);
        whole_micros(
            builder(initial, max)
                .build()
                .nth(skip)
                .unwrap_or(max.max(initial)),
        )
    }
}

/// Runs `op` until it succeeds, waiting `initial`, twice that, … (at most `max`)
/// between attempts, and gives up with the last error once the next attempt would
/// start after `window`. `on_retry` hears each failure and the pause that follows.
pub async fn until<T, E, F, Fut>(
    window: Duration,
    initial: Duration,
    max: Duration,
    op: F,
    mut on_retry: impl FnMut(&E, Duration),
) -> Result<T, E>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let deadline = Instant::now() + window;
    // The pause that would follow the next failure (`when` is asked before it is known).
    let next_pause = Cell::new(initial);
    op.retry(builder(initial, max))
        .sleep(tokio::time::sleep)
        .when(|_| Instant::now() + next_pause.get() < deadline)
        .notify(|e, pause| {
            let pause = whole_micros(pause);
            next_pause.set((pause * 2).min(max.max(initial)));
            on_retry(e, pause);
        })
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn delays_double_up_to_the_cap_and_reset() {
        let mut b = Backoff::new(MS * 100, MS * 500);
        let first: Vec<_> = (0..5).map(|_| b.next_delay()).collect();
        assert_eq!(first, [MS * 100, MS * 200, MS * 400, MS * 500, MS * 500]);
        assert_eq!(b.failures(), 5);
        b.reset();
        assert_eq!(b.failures(), 0);
        assert_eq!(b.next_delay(), MS * 100);
    }

    #[test]
    fn nth_is_the_delay_after_that_attempt() {
        assert_eq!(Backoff::nth(MS * 10, MS * 1000, 1), MS * 10);
        assert_eq!(Backoff::nth(MS * 10, MS * 1000, 3), MS * 40);
        assert_eq!(Backoff::nth(MS * 10, MS * 1000, 30), MS * 1000);
        assert_eq!(Backoff::nth(MS * 10, MS * 1000, u32::MAX), MS * 1000);
    }

    #[tokio::test(start_paused = true)]
    async fn until_retries_then_succeeds() {
        let mut calls = 0;
        let mut pauses = Vec::new();
        let result: Result<u32, &str> = until(
            Duration::from_secs(60),
            MS * 100,
            MS * 1000,
            || {
                calls += 1;
                let n = calls;
                async move {
                    if n < 4 {
                        Err("not yet")
                    } else {
                        Ok(n)
                    }
                }
            },
            |_, pause| pauses.push(pause),
        )
        .await;
        assert_eq!(result, Ok(4));
        assert_eq!(pauses, [MS * 100, MS * 200, MS * 400]);
    }

    #[tokio::test(start_paused = true)]
    async fn until_gives_up_after_the_window() {
        let mut calls = 0u32;
        let result: Result<(), u32> = until(
            MS * 50,
            MS * 20,
            MS * 20,
            || {
                calls += 1;
                let n = calls;
                async move { Err(n) }
            },
            |_, _| {},
        )
        .await;
        // Attempts at 0, 20 and 40 ms; a fourth would start at 60 ms, after the window.
        assert_eq!(result, Err(3));
    }
}
