//! Quotas checked when a tenant submits or uploads: the submission rate (a token bucket per
//! tenant), the bytes it keeps stored and its monthly fuel budget.
//!
//! The submission bucket lives in the state store ([`StateStore::take_submission_tokens`], GCRA),
//! so on PostgreSQL every coordinator of an installation takes from the same bucket: a tenant's
//! rate holds however many coordinators serve the API.
//!
//! [`StateStore::take_submission_tokens`]: crate::state::StateStore::take_submission_tokens

use std::sync::{Arc, Mutex};

use super::{Coordinator, SubmitError};
use crate::ids::{TenantId, now_ms, parse_rfc3339, rfc3339};
use crate::state::{StateResult, TokenBucket};
use crate::tier::Tier;

/// The start of the calendar month (UTC) that `at_ms` (Unix ms) falls in, Unix ms.
pub fn month_start_ms(at_ms: i64) -> i64 {
    let day = rfc3339(at_ms);
    parse_rfc3339(&format!("{}-01T00:00:00Z", &day[..7])).unwrap_or(0)
}

impl Coordinator {
    /// Takes `jobs` tokens from the tenant's submission bucket, or refuses: `RateLimited` with
    /// the time until they are there, `BatchOverBurst` (nothing asked of the store) when the
    /// bucket can never hold that many. A tier without `submissions_per_second` takes nothing.
    pub(super) async fn take_submission_tokens(
        &self,
        tenant: TenantId,
        tier: &Tier,
        jobs: usize,
    ) -> Result<(), SubmitError> {
        let Some(rate) = tier.submissions_per_second.filter(|r| *r > 0) else { return Ok(()) };
        let burst = tier.submission_burst.filter(|b| *b > 0).unwrap_or(rate);
        let n = u32::try_from(jobs).unwrap_or(u32::MAX);
        if n == 0 {
            return Ok(());
        }
        if n > burst {
            return Err(SubmitError::BatchOverBurst { jobs: n, burst });
        }
        match self.state.take_submission_tokens(tenant, TokenBucket::new(rate, burst), n).await? {
            None => Ok(()),
            Some(wait) => Err(SubmitError::RateLimited {
                rate,
                burst,
                // Rounded up: a wait under a millisecond is not "retry in 0 ms".
                retry_after_ms: u64::try_from(wait.as_nanos().div_ceil(1_000_000)).unwrap_or(u64::MAX),
            }),
        }
    }
}

/// How long a tenant's counted queue length stands in for a new count (see [`QueueCount`]).
pub(super) const QUEUE_COUNT_TTL: std::time::Duration = std::time::Duration::from_secs(1);

/// A tenant's queued and scheduled jobs as last counted by this coordinator, plus the jobs it
/// queued since, plus those it is inserting now (`in_flight`, reserved before the insert).
/// Counting takes time in proportion to the queue, so a count younger than [`QUEUE_COUNT_TTL`]
/// is reused while a submission fits under the tier's `queued_jobs` with it; otherwise the queue
/// is counted again before refusing. Jobs that left the queue since only make the figure higher
/// than the truth (a recount settles it); jobs other coordinators queued in that second are not
/// in it, so with several coordinators a tenant may pass its limit by what they accept in a
/// second.
#[derive(Debug, Default)]
pub(super) struct QueueCount {
    queued: u32,
    in_flight: u32,
    counted_at: Option<std::time::Instant>,
}

impl QueueCount {
    /// Whether `n` more jobs fit under `limit` by a count fresh enough to stand in for a new one.
    fn admits(&self, n: u32, limit: u32) -> bool {
        let fresh = self.counted_at.is_some_and(|at| at.elapsed() < QUEUE_COUNT_TTL);
        fresh && u64::from(self.waiting()) + u64::from(n) <= u64::from(limit)
    }

    /// Jobs waiting by this figure, those being inserted included.
    fn waiting(&self) -> u32 {
        self.queued.saturating_add(self.in_flight)
    }

    /// Records a new count (of committed jobs: those in flight stay reserved).
    fn counted(&mut self, queued: u32) {
        self.queued = queued;
        self.counted_at = Some(std::time::Instant::now());
    }
}

/// One tenant's [`QueueCount`] on this coordinator, and the gate that lets one submission at a
/// time check it (and count the queue) and reserve room.
#[derive(Debug, Default)]
pub(super) struct TenantQueue {
    gate: tokio::sync::Mutex<()>,
    count: Mutex<QueueCount>,
    /// Woken when the last reservation in flight is dropped: a recount waits for it.
    idle: tokio::sync::Notify,
}

impl TenantQueue {
    fn count(&self) -> std::sync::MutexGuard<'_, QueueCount> {
        self.count.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Reserves room for `n` jobs under `limit`, counting the queue with `count` when the last
    /// count is too old or too full to admit them. Errors: `QueueFull` with the jobs waiting,
    /// or the count's error. Submissions of one tenant reserve one at a time and insert
    /// concurrently; the reservation holds its room until dropped.
    pub async fn reserve<F, Fut>(self: &Arc<Self>, n: u32, limit: u32, count: F) -> Result<Reservation, SubmitError>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = StateResult<u32>>,
    {
        let _gate = self.gate.lock().await;
        if !self.count().admits(n, limit) {
            self.settled().await;
            let counted = count().await?;
            let mut c = self.count();
            c.counted(counted);
            if !c.admits(n, limit) {
                return Err(SubmitError::QueueFull { queued: c.waiting(), limit });
            }
        }
        let mut c = self.count();
        c.in_flight = c.in_flight.saturating_add(n);
        Ok(Reservation { queue: self.clone(), n, created: 0 })
    }

    /// Waits until no reservation is in flight. A count must not overlap an insert: one that
    /// ends during the count adds its jobs to the figure the count then replaces, so the jobs
    /// could be lost from it (or counted twice). Called under the gate, so no new reservation
    /// starts meanwhile.
    async fn settled(&self) {
        loop {
            let idle = self.idle.notified();
            if self.count().in_flight == 0 {
                return;
            }
            idle.await;
        }
    }
}

/// Room reserved in a tenant's queue for a submission being inserted. Dropping it (also when
/// the submission is abandoned half way, as when its client goes away) frees the room; the jobs
/// it set in `created` count as queued from then on.
pub(super) struct Reservation {
    queue: Arc<TenantQueue>,
    n: u32,
    /// Jobs the insert created.
    pub created: u32,
}

impl Drop for Reservation {
    fn drop(&mut self) {
        let mut c = self.queue.count();
        c.in_flight = c.in_flight.saturating_sub(self.n);
        c.queued = c.queued.saturating_add(self.created);
        if c.in_flight == 0 {
            self.queue.idle.notify_waiters();
        }
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

    #[test]
    fn a_fresh_count_with_the_jobs_in_flight_admits_only_what_fits() {
        let mut q = QueueCount::default();
        assert!(!q.admits(1, 3), "never counted: count first");
        q.counted(2);
        assert!(q.admits(1, 3));
        q.in_flight = 1;
        assert!(!q.admits(1, 3), "a job being inserted holds its place");
        assert_eq!(q.waiting(), 3);
        q.counted_at = q.counted_at.map(|at| at - QUEUE_COUNT_TTL);
        q.in_flight = 0;
        assert!(!q.admits(1, 3), "an old count is not reused");
    }

    #[tokio::test]
    async fn reservations_hold_room_until_dropped_even_when_abandoned() {
        let queue = Arc::new(TenantQueue::default());
        let empty = || async { Ok(0) };
        let first = queue.reserve(2, 3, empty).await.expect("room for 2 of 3");
        let second = queue.reserve(1, 3, empty).await.expect("the fresh count has room for 1 more");
        // Full with the 3 being inserted: the next waits for them to end before counting again.
        let third = tokio::spawn({
            let queue = queue.clone();
            async move { queue.reserve(3, 3, || async { Ok(0) }).await.map(|r| r.n) }
        });
        for _ in 0..20 {
            tokio::task::yield_now().await;
        }
        assert!(!third.is_finished(), "the queue holds the jobs being inserted");
        // Abandoned before their inserts created anything: the room is free again.
        drop(first);
        tokio::task::yield_now().await;
        assert!(!third.is_finished(), "one insert is still in flight");
        drop(second);
        third.await.expect("task").expect("room for 3 of 3 once the first two were abandoned");
        let mut second = queue.reserve(3, 3, empty).await.expect("still room for 3 of 3");
        second.created = 3;
        drop(second);
        // The 3 created count as queued while the count is fresh.
        let counted = std::sync::atomic::AtomicBool::new(false);
        let recount = || async {
            counted.store(true, std::sync::atomic::Ordering::SeqCst);
            Ok(1)
        };
        queue.reserve(1, 3, recount).await.expect("the recount finds room");
        assert!(counted.load(std::sync::atomic::Ordering::SeqCst), "a full fresh figure is counted again");
    }

    #[tokio::test]
    async fn a_recount_waits_for_the_inserts_in_flight() {
        use std::sync::atomic::{AtomicU32, Ordering};
        let queue = Arc::new(TenantQueue::default());
        // What the database holds; the insert of the first reservation commits into it.
        let stored = Arc::new(AtomicU32::new(0));
        let count = |stored: Arc<AtomicU32>| move || async move { Ok(stored.load(Ordering::SeqCst)) };
        let mut first = queue.reserve(2, 3, count(stored.clone())).await.expect("room for 2 of 3");
        // Two more do not fit the fresh figure: a recount is due, but the first insert is in flight.
        let waiting = tokio::spawn({
            let (queue, stored) = (queue.clone(), stored.clone());
            async move { queue.reserve(2, 3, count(stored)).await.map(|r| r.n) }
        });
        for _ in 0..20 {
            tokio::task::yield_now().await;
        }
        assert!(!waiting.is_finished(), "no count while an insert is in flight");
        stored.store(2, Ordering::SeqCst);
        first.created = 2;
        drop(first);
        // Counted after the insert ended: the 2 stored jobs leave room for 1, not 2.
        match waiting.await.expect("task") {
            Err(SubmitError::QueueFull { queued: 2, limit: 3 }) => {}
            other => panic!("expected a full queue, got {other:?}"),
        }
        let r = queue.reserve(1, 3, count(stored)).await.expect("room for the last one");
        assert_eq!(r.n, 1);
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
