//! The submission-rate bucket of a tenant, kept by the state store so that every coordinator of
//! an installation takes from the same one.
//!
//! The algorithm is GCRA, the generic cell rate algorithm (ATM Forum, Traffic Management
//! Specification 4.0, 1996), in its virtual-scheduling form: a bucket of `burst` tokens refilled
//! one per `interval_ns` is one number per tenant, its theoretical arrival time (TAT). Taking
//! `n` tokens at time `now` moves it to `max(TAT, now) + n × interval`, allowed when that is at
//! most `burst × interval` past `now`. It admits exactly what a token bucket of that size and
//! refill rate would.

use std::time::Duration;

/// The most a bucket's window (`burst × interval`) may span: 2⁶⁰ ns, about 36 years. Keeps the
/// arithmetic on Unix nanoseconds inside `i64` whatever the tier says.
const MAX_WINDOW_NS: i64 = 1 << 60;

/// A tier's submission bucket: `burst` tokens, one refilled every `interval_ns` nanoseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TokenBucket {
    /// Nanoseconds per token refilled (10⁹ / the rate per second, rounded down, at least 1).
    pub interval_ns: i64,
    /// Tokens the bucket holds when full: the largest submission it can ever admit at once.
    pub burst: u32,
}

impl TokenBucket {
    /// The bucket of a rate of `per_second` tokens (at least 1) in bursts of `burst`.
    pub fn new(per_second: u32, burst: u32) -> Self {
        Self { interval_ns: (1_000_000_000 / i64::from(per_second.max(1))).max(1), burst }
    }

    /// `burst × interval_ns`: how far ahead of now the TAT may run, ns.
    pub(crate) fn window_ns(&self) -> i64 {
        i64::from(self.burst).saturating_mul(self.interval_ns).min(MAX_WINDOW_NS)
    }

    /// What `tokens` tokens move the TAT by, ns; `None` when they are more than the burst, which
    /// the bucket can never hold.
    pub(crate) fn cost_ns(&self, tokens: u32) -> Option<i64> {
        (tokens <= self.burst).then(|| i64::from(tokens).saturating_mul(self.interval_ns).min(self.window_ns()))
    }

    /// For a request of `cost_ns` refused at `now_ns` with the bucket's TAT at `tat_ns`: the time
    /// until it would be admitted (at least 1 ns).
    pub(crate) fn wait(&self, tat_ns: i64, now_ns: i64, cost_ns: i64) -> Duration {
        let ns = tat_ns.max(now_ns).saturating_add(cost_ns).saturating_sub(self.window_ns()).saturating_sub(now_ns);
        Duration::from_nanos(u64::try_from(ns).unwrap_or(0).max(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bucket_admits_its_burst_then_one_token_per_interval() {
        let b = TokenBucket::new(4, 10);
        assert_eq!((b.interval_ns, b.window_ns()), (250_000_000, 2_500_000_000));
        assert_eq!(b.cost_ns(10), Some(2_500_000_000));
        assert_eq!(b.cost_ns(11), None);
        // Full at `now` (TAT in the past): a refusal cannot happen; a TAT a whole window ahead
        // needs one interval per token asked.
        let now = 1_000_000_000_000;
        assert_eq!(b.wait(now + b.window_ns(), now, b.interval_ns), Duration::from_millis(250));
        assert_eq!(b.wait(now + b.window_ns(), now, 3 * b.interval_ns), Duration::from_millis(750));
        // Rates above 10⁹ per second still refill, and absurd bursts stay inside i64.
        assert_eq!(TokenBucket::new(u32::MAX, 1).interval_ns, 1);
        let huge = TokenBucket { interval_ns: 1_000_000_000, burst: u32::MAX };
        assert_eq!(huge.window_ns(), MAX_WINDOW_NS);
        assert!(huge.cost_ns(u32::MAX).is_some_and(|c| c <= MAX_WINDOW_NS));
    }
}
