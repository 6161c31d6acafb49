//! Timers on the shard: sleep, deadlines for any future, and a ticker.
//!
//! All of these need to run on a shard (they use the executor's timer
//! ring); a group's clock is normally driven by the shard's one ticker, not
//! by a timer per group.

use crate::error::FiberError;
use futures_lite::future;
use std::future::Future;
use std::time::{Duration, Instant};

/// Completes after `dur`.
pub async fn sleep(dur: Duration) {
    glommio::timer::Timer::new(dur).await;
}

/// Completes at `deadline` (at once if it has passed).
pub async fn sleep_until(deadline: Instant) {
    let now = Instant::now();
    if deadline > now {
        sleep(deadline - now).await;
    }
}

/// Runs `fut` for at most `dur`; [`FiberError::Timeout`] if it takes longer
/// (the future is dropped then).
pub async fn timeout<F: Future>(dur: Duration, fut: F) -> Result<F::Output, FiberError> {
    future::or(async { Ok(fut.await) }, async {
        sleep(dur).await;
        Err(FiberError::Timeout(dur))
    })
    .await
}

/// Runs `fut` until `deadline`; [`FiberError::Timeout`] if it is not done by
/// then.
pub async fn timeout_at<F: Future>(deadline: Instant, fut: F) -> Result<F::Output, FiberError> {
    let dur = deadline.saturating_duration_since(Instant::now());
    timeout(dur, fut).await
}

/// A periodic clock: [`Ticker::tick`] completes once per period. When the
/// fiber falls behind (it was busy for several periods), the missed ticks are
/// not replayed in a burst; `tick` returns how many periods passed instead,
/// so a Raft clock can advance by that many ticks at once.
#[derive(Debug)]
pub struct Ticker {
    period: Duration,
    next: Instant,
}

impl Ticker {
    /// A ticker whose first tick is one `period` from now.
    pub fn new(period: Duration) -> Result<Self, FiberError> {
        if period.is_zero() {
            return Err(FiberError::InvalidConfig {
                field: "ticker period",
                reason: "must be above zero".into(),
            });
        }
        Ok(Ticker {
            period,
            next: Instant::now() + period,
        })
    }

    /// The period.
    pub fn period(&self) -> Duration {
        self.period
    }

    /// Waits for the next tick; returns the number of periods elapsed since
    /// the previous one (1 unless the caller fell behind).
    pub async fn tick(&mut self) -> u64 {
        sleep_until(self.next).await;
        let now = Instant::now();
        let behind = now.saturating_duration_since(self.next);
        let extra = (behind.as_nanos() / self.period.as_nanos().max(1)) as u64;
        let periods = 1 + extra;
        self.next += self.period * u32::try_from(periods).unwrap_or(u32::MAX);
        periods
    }
}
