//! Quotas checked when a tenant submits or uploads: the submission rate (a token bucket per
//! tenant), the bytes it keeps stored and its monthly fuel budget.
//!
//! The bucket is governor's GCRA limiter, which behaves as a token bucket of `submission_burst`
//! tokens refilled at `submissions_per_second` (GCRA: ATM Forum Traffic Management 4.0, 1996).
//! Buckets live in each coordinator's memory: with N coordinators behind a load balancer a
//! tenant may submit up to N times its rate.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::Mutex;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, InsufficientCapacity, Quota, RateLimiter};

use super::{Coordinator, SubmitError};
use crate::ids::{TenantId, now_ms, parse_rfc3339, rfc3339};
use crate::tier::Tier;

/// The start of the calendar month (UTC) that `at_ms` (Unix ms) falls in, Unix ms.
pub fn month_start_ms(at_ms: i64) -> i64 {
    let day = rfc3339(at_ms);
    parse_rfc3339(&format!("{}-01T00:00:00Z", &day[..7])).unwrap_or(0)
}

struct Bucket {
    rate: NonZeroU32,
    burst: NonZeroU32,
    limiter: DefaultDirectRateLimiter,
}

/// The submission buckets of the tenants that submitted through this coordinator.
#[derive(Default)]
pub(super) struct RateLimits {
    buckets: Mutex<HashMap<TenantId, Bucket>>,
}

impl RateLimits {
    /// Takes `jobs` tokens from the tenant's bucket, or refuses: `RateLimited` with the time
    /// until they are there, `BatchOverBurst` when the bucket can never hold that many. A tier
    /// without `submissions_per_second` takes nothing.
    pub(super) fn take(&self, tenant: TenantId, tier: &Tier, jobs: usize) -> Result<(), SubmitError> {
        let Some(rate) = tier.submissions_per_second.and_then(NonZeroU32::new) else { return Ok(()) };
        let burst = tier.submission_burst.and_then(NonZeroU32::new).unwrap_or(rate);
        let Some(n) = u32::try_from(jobs).ok().and_then(NonZeroU32::new) else { return Ok(()) };
        let Ok(mut buckets) = self.buckets.lock() else { return Ok(()) };
        let bucket = buckets.entry(tenant).or_insert_with(|| Bucket::new(rate, burst));
        if bucket.rate != rate || bucket.burst != burst {
            *bucket = Bucket::new(rate, burst);
        }
        match bucket.limiter.check_n(n) {
            Ok(Ok(())) => Ok(()),
            Ok(Err(not_until)) => Err(SubmitError::RateLimited {
                rate: rate.get(),
                burst: burst.get(),
                retry_after_ms: not_until.wait_time_from(DefaultClock::default().now()).as_millis() as u64,
            }),
            Err(InsufficientCapacity(_)) => Err(SubmitError::BatchOverBurst { jobs: n.get(), burst: burst.get() }),
        }
    }
}

impl Bucket {
    fn new(rate: NonZeroU32, burst: NonZeroU32) -> Self {
        Self { rate, burst, limiter: RateLimiter::direct(Quota::per_second(rate).allow_burst(burst)) }
    }
}

impl Coordinator {
    /// Checks that storing `adding` more bytes keeps the tenant within its tier's
    /// `stored_bytes`. Errors: `StoredBytes` naming the figures.
    pub async fn check_stored_bytes(&self, tenant: TenantId, tier: &Tier, adding: u64) -> Result<(), SubmitError> {
        let Some(limit) = tier.stored_bytes else { return Ok(()) };
        if adding == 0 {
            return Ok(());
        }
        let stored = self.state.stored_bytes(tenant).await?;
        if stored.saturating_add(adding) > limit {
            return Err(SubmitError::StoredBytes { stored, adding, limit });
        }
        Ok(())
    }
}

impl Coordinator {
    /// Checks that the tenant has fuel left in its tier's monthly budget. Errors: `FuelBudget`
    /// with the fuel metered since the month began.
    pub async fn check_fuel_budget(&self, tenant: TenantId, tier: &Tier) -> Result<(), SubmitError> {
        let Some(budget) = tier.fuel_per_month else { return Ok(()) };
        let since = month_start_ms(now_ms());
        let used: u64 = self.state.usage(tenant, since, i64::MAX).await?.iter().map(|w| w.usage.fuel).sum();
        if used >= budget {
            return Err(SubmitError::FuelBudget { used, budget, since: rfc3339(since) });
        }
        Ok(())
    }

    /// Finds the tenants whose metered fuel this month reached their tier's budget: the
    /// scheduler leaves their queued jobs waiting. Run by the leader with the catalog reload.
    pub(super) async fn refresh_fuel_budgets(&self) -> anyhow::Result<()> {
        let used = self.state.fuel_since(month_start_ms(now_ms())).await?;
        let mut over = Vec::new();
        for (tenant, fuel) in used {
            if let Some(t) = self.tenant(tenant).await?
                && self.tier(&t).fuel_per_month.is_some_and(|budget| fuel >= budget)
            {
                over.push(tenant);
            }
        }
        if let Ok(mut o) = self.over_budget.lock() {
            *o = over;
        }
        Ok(())
    }

    /// The tenants out of fuel for this month, as last found by the catalog reload.
    pub(super) fn over_budget(&self) -> Vec<TenantId> {
        self.over_budget.lock().map(|o| o.clone()).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tier::default_tiers;

    #[test]
    fn the_bucket_holds_the_burst_then_refills_at_the_rate() {
        let limits = RateLimits::default();
        let mut tier = default_tiers()["free"].clone();
        tier.submissions_per_second = Some(10);
        tier.submission_burst = Some(5);
        let t = TenantId::new();
        limits.take(t, &tier, 5).expect("the burst fits");
        match limits.take(t, &tier, 1) {
            Err(SubmitError::RateLimited { rate: 10, burst: 5, retry_after_ms }) => {
                assert!(retry_after_ms <= 100, "one token comes back within 100 ms, not {retry_after_ms}")
            }
            other => panic!("expected a rate limit, got {other:?}"),
        }
        // Another tenant has its own bucket; a batch over the burst can never pass.
        limits.take(TenantId::new(), &tier, 5).expect("own bucket");
        assert!(matches!(limits.take(t, &tier, 6), Err(SubmitError::BatchOverBurst { jobs: 6, burst: 5 })));
        std::thread::sleep(std::time::Duration::from_millis(120));
        limits.take(t, &tier, 1).expect("refilled");
        // No rate: no limit.
        tier.submissions_per_second = None;
        limits.take(t, &tier, 100_000).expect("unlimited");
    }

    #[test]
    fn months_start_at_midnight_utc_on_the_first() {
        let ms = parse_rfc3339("2026-11-21T13:45:07Z").unwrap();
        assert_eq!(rfc3339(month_start_ms(ms)), "2026-11-01T00:00:00.000Z");
        let first = parse_rfc3339("2024-03-01T00:00:00Z").unwrap();
        assert_eq!(month_start_ms(first), first);
        assert_eq!(rfc3339(month_start_ms(first - 1)), "2024-02-01T00:00:00.000Z");
    }
}
