//! Quotas checked when a tenant submits or uploads: the submission rate (a token bucket per
//! tenant), the bytes it keeps stored and its monthly fuel budget.
//!
//! The submission bucket lives in the state store ([`StateStore::take_submission_tokens`], GCRA),
//! so on PostgreSQL every coordinator of an installation takes from the same bucket: a tenant's
//! rate holds however many coordinators serve the API.
//!
//! [`StateStore::take_submission_tokens`]: crate::state::StateStore::take_submission_tokens

use std::sync::Arc;

use parking_lot::Mutex;

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

/// How long a tenant's counted queue length and stored bytes stand in for a new count (see
/// [`QueueCount`]).
pub(super) const QUEUE_COUNT_TTL: std::time::Duration = std::time::Duration::from_secs(1);

/// What a submission asks of its tenant's quotas: room for `jobs` under the tier's
/// `queued_jobs`, and for `params_bytes` (the JSON text of the jobs' params) under its
/// `stored_bytes` (`None`: no such quota).
#[derive(Clone, Copy, Debug)]
pub(super) struct Ask {
    pub jobs: u32,
    pub queued_limit: u32,
    pub params_bytes: u64,
    pub stored_limit: Option<u64>,
}

/// A tenant's figures as counted in the state store: its jobs waiting to start, and the bytes
/// it stores (`None` when not counted: its tier has no `stored_bytes` quota).
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Counted {
    pub queued: u32,
    pub stored: Option<u64>,
}

/// A tenant's queued and scheduled jobs, and the bytes it stores, as last counted by this
/// coordinator, plus what it added since (jobs queued, params stored), plus what it is inserting
/// now (`in_flight`, reserved before the insert). Counting takes time in proportion to the queue,
/// so a count younger than [`QUEUE_COUNT_TTL`] is reused while a submission fits under the
/// tier's `queued_jobs` and `stored_bytes` with it; otherwise both are counted again before
/// refusing. Jobs that left the queue, and bytes deleted, since only make the figures higher than
/// the truth (a recount settles them); what other coordinators added in that second, and
/// uploads of components and inputs, are not in them, so a tenant may pass a limit by what
/// those added in a second.
#[derive(Debug, Default)]
pub(super) struct QueueCount {
    queued: u32,
    in_flight: u32,
    stored: Option<u64>,
    bytes_in_flight: u64,
    counted_at: Option<std::time::Instant>,
}

impl QueueCount {
    /// Whether `ask` fits under its limits by a count fresh enough to stand in for a new one.
    fn admits(&self, ask: &Ask) -> bool {
        let fresh = self.counted_at.is_some_and(|at| at.elapsed() < QUEUE_COUNT_TTL);
        fresh && self.jobs_fit(ask) && self.bytes_fit(ask)
    }

    fn jobs_fit(&self, ask: &Ask) -> bool {
        u64::from(self.waiting()) + u64::from(ask.jobs) <= u64::from(ask.queued_limit)
    }

    fn bytes_fit(&self, ask: &Ask) -> bool {
        match (ask.stored_limit, self.stored_now()) {
            (None, _) => true,
            (Some(limit), Some(stored)) => stored.saturating_add(ask.params_bytes) <= limit,
            (Some(_), None) => false,
        }
    }

    /// Jobs waiting by this figure, those being inserted included.
    fn waiting(&self) -> u32 {
        self.queued.saturating_add(self.in_flight)
    }

    /// Bytes stored by this figure, the params being inserted included.
    fn stored_now(&self) -> Option<u64> {
        self.stored.map(|s| s.saturating_add(self.bytes_in_flight))
    }

    /// Records a new count (of committed jobs: those in flight stay reserved).
    fn counted(&mut self, c: Counted) {
        self.queued = c.queued;
        self.stored = c.stored;
        self.counted_at = Some(std::time::Instant::now());
    }
}

/// One tenant's [`QueueCount`] on this coordinator, and the gate that lets one submission at a
/// time check it (and count again) and reserve room.
#[derive(Debug, Default)]
pub(super) struct TenantQueue {
    gate: tokio::sync::Mutex<()>,
    count: Mutex<QueueCount>,
    /// Woken when the last reservation in flight is dropped: a recount waits for it.
    idle: tokio::sync::Notify,
}

impl TenantQueue {
    fn count(&self) -> parking_lot::MutexGuard<'_, QueueCount> {
        self.count.lock()
    }

    /// Reserves room for `ask`, counting the tenant's figures with `count` when the last count
    /// is too old or too full to admit it. Errors: `QueueFull` with the jobs waiting,
    /// `StoredBytes` with the bytes stored, or the count's error. Submissions of one tenant
    /// reserve one at a time and insert concurrently; the reservation holds its room until
    /// dropped.
    pub async fn reserve<F, Fut>(self: &Arc<Self>, ask: Ask, count: F) -> Result<Reservation, SubmitError>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = StateResult<Counted>>,
    {
        let _gate = self.gate.lock().await;
        if !self.count().admits(&ask) {
            self.settled().await;
            let counted = count().await?;
            let mut c = self.count();
            c.counted(counted);
            if !c.jobs_fit(&ask) {
                return Err(SubmitError::QueueFull { queued: c.waiting(), limit: ask.queued_limit });
            }
            if !c.bytes_fit(&ask) {
                return Err(SubmitError::StoredBytes {
                    stored: c.stored_now().unwrap_or_default(),
                    adding: ask.params_bytes,
                    limit: ask.stored_limit.unwrap_or_default(),
                });
            }
        }
        let mut c = self.count();
        c.in_flight = c.in_flight.saturating_add(ask.jobs);
        c.bytes_in_flight = c.bytes_in_flight.saturating_add(ask.params_bytes);
        Ok(Reservation { queue: self.clone(), ask, created: 0, created_bytes: 0 })
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

/// Room reserved in a tenant's quotas for a submission being inserted. Dropping it (also when
/// the submission is abandoned half way, as when its client goes away) frees the room; the jobs
/// and params bytes it set in `created` and `created_bytes` count from then on.
pub(super) struct Reservation {
    queue: Arc<TenantQueue>,
    ask: Ask,
    /// Jobs the insert created.
    pub created: u32,
    /// Bytes of params of the jobs the insert created.
    pub created_bytes: u64,
}

impl Drop for Reservation {
    fn drop(&mut self) {
        let mut c = self.queue.count();
        c.in_flight = c.in_flight.saturating_sub(self.ask.jobs);
        c.bytes_in_flight = c.bytes_in_flight.saturating_sub(self.ask.params_bytes);
        c.queued = c.queued.saturating_add(self.created);
        c.stored = c.stored.map(|s| s.saturating_add(self.created_bytes));
        if c.in_flight == 0 {
            self.queue.idle.notify_waiters();
        }
    }
}

impl Coordinator {
    /// Counts the tenant's figures for [`TenantQueue::reserve`]: its waiting jobs, and its
    /// stored bytes when its tier has a `stored_bytes` quota.
    pub(super) async fn count_quotas(&self, tenant: TenantId, tier: &Tier) -> StateResult<Counted> {
        let queued = self.state.queued_count(tenant).await?;
        let stored = match tier.stored_bytes {
            Some(_) => Some(self.state.stored_bytes(tenant).await?.total()),
            None => None,
        };
        Ok(Counted { queued, stored })
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
        let stored = self.state.stored_bytes(tenant).await?.total();
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
        {
            let mut o = self.over_budget.lock();
            *o = over;
        }
        Ok(())
    }

    /// The tenants out of fuel for this month, as last found by the catalog reload.
    pub(super) fn over_budget(&self) -> Vec<TenantId> {
        self.over_budget.lock().clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `jobs` jobs under a queue limit, without a stored-bytes quota.
    fn ask(jobs: u32, queued_limit: u32) -> Ask {
        Ask { jobs, queued_limit, params_bytes: 0, stored_limit: None }
    }

    fn queued(n: u32) -> StateResult<Counted> {
        Ok(Counted { queued: n, stored: None })
    }

    #[test]
    fn a_fresh_count_with_the_jobs_in_flight_admits_only_what_fits() {
        let mut q = QueueCount::default();
        assert!(!q.admits(&ask(1, 3)), "never counted: count first");
        q.counted(Counted { queued: 2, stored: None });
        assert!(q.admits(&ask(1, 3)));
        q.in_flight = 1;
        assert!(!q.admits(&ask(1, 3)), "a job being inserted holds its place");
        assert_eq!(q.waiting(), 3);
        q.counted_at = q.counted_at.map(|at| at - QUEUE_COUNT_TTL);
        q.in_flight = 0;
        assert!(!q.admits(&ask(1, 3)), "an old count is not reused");
        // A stored-bytes quota needs a count of the bytes.
        let bytes = Ask { params_bytes: 10, stored_limit: Some(100), ..ask(1, 3) };
        q.counted(Counted { queued: 0, stored: None });
        assert!(!q.admits(&bytes), "the bytes were not counted");
        q.counted(Counted { queued: 0, stored: Some(90) });
        assert!(q.admits(&bytes));
        q.bytes_in_flight = 1;
        assert!(!q.admits(&bytes), "params being inserted hold their bytes");
    }

    #[tokio::test]
    async fn params_bytes_are_reserved_and_counted_under_the_stored_bytes_quota() {
        let queue = Arc::new(TenantQueue::default());
        let asks = |bytes: u64| Ask { params_bytes: bytes, stored_limit: Some(1_000), ..ask(1, 100) };
        let stored = |n: u64| move || async move { Ok(Counted { queued: 0, stored: Some(n) }) };
        let mut first = queue.reserve(asks(500), stored(400)).await.expect("400 + 500 of 1000");
        assert_eq!(queue.count().stored_now(), Some(900), "the bytes in flight count");
        first.created = 1;
        first.created_bytes = 500;
        drop(first);
        // The 500 created stay in the fresh figure: 200 more do not fit, even counted again.
        match queue.reserve(asks(200), stored(900)).await {
            Err(SubmitError::StoredBytes { stored: 900, adding: 200, limit: 1_000 }) => {}
            other => panic!("expected the stored-bytes quota, got {:?}", other.map(|r| r.ask)),
        }
        // 100 fit the fresh figure without a count; an idempotent replay creates nothing, so
        // its bytes are freed when it ends.
        let counted = std::sync::atomic::AtomicBool::new(false);
        let count = || async {
            counted.store(true, std::sync::atomic::Ordering::SeqCst);
            Ok(Counted::default())
        };
        drop(queue.reserve(asks(100), count).await.expect("100 more fit"));
        assert!(!counted.load(std::sync::atomic::Ordering::SeqCst), "a fresh figure that admits is not counted again");
        assert_eq!(queue.count().stored_now(), Some(900));
    }

    #[tokio::test]
    async fn reservations_hold_room_until_dropped_even_when_abandoned() {
        let queue = Arc::new(TenantQueue::default());
        let empty = || async { queued(0) };
        let first = queue.reserve(ask(2, 3), empty).await.expect("room for 2 of 3");
        let second = queue.reserve(ask(1, 3), empty).await.expect("the fresh count has room for 1 more");
        // Full with the 3 being inserted: the next waits for them to end before counting again.
        let third = tokio::spawn({
            let queue = queue.clone();
            async move { queue.reserve(ask(3, 3), || async { queued(0) }).await.map(|r| r.ask.jobs) }
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
        let mut second = queue.reserve(ask(3, 3), empty).await.expect("still room for 3 of 3");
        second.created = 3;
        drop(second);
        // The 3 created count as queued while the count is fresh.
        let counted = std::sync::atomic::AtomicBool::new(false);
        let recount = || async {
            counted.store(true, std::sync::atomic::Ordering::SeqCst);
            queued(1)
        };
        queue.reserve(ask(1, 3), recount).await.expect("the recount finds room");
        assert!(counted.load(std::sync::atomic::Ordering::SeqCst), "a full fresh figure is counted again");
    }

    #[tokio::test]
    async fn a_recount_waits_for_the_inserts_in_flight() {
        use std::sync::atomic::{AtomicU32, Ordering};
        let queue = Arc::new(TenantQueue::default());
        // What the database holds; the insert of the first reservation commits into it.
        let stored = Arc::new(AtomicU32::new(0));
        let count = |stored: Arc<AtomicU32>| move || async move { queued(stored.load(Ordering::SeqCst)) };
        let mut first = queue.reserve(ask(2, 3), count(stored.clone())).await.expect("room for 2 of 3");
        // Two more do not fit the fresh figure: a recount is due, but the first insert is in flight.
        let waiting = tokio::spawn({
            let (queue, stored) = (queue.clone(), stored.clone());
            async move { queue.reserve(ask(2, 3), count(stored)).await.map(|r| r.ask.jobs) }
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
        let r = queue.reserve(ask(1, 3), count(stored)).await.expect("room for the last one");
        assert_eq!(r.ask.jobs, 1);
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
