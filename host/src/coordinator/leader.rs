//! Leadership: of several coordinators, one schedules, applies workers' reports and detects lost
//! workers; all of them serve the API.
//!
//! A coordinator with an [`Election`] campaigns every [`CAMPAIGN_EVERY`]; once elected it renews
//! its term every [`RENEW_EVERY`] and runs the leader's tasks (reports, scheduling, lease expiry)
//! until the term is over, then stops them and campaigns again. The term is the fencing token of
//! the scheduler's writes. A new leader knows no workers: it learns them from their heartbeats
//! during one lease timeout (adoption) and only then requeues the jobs of workers it never heard
//! from. Without an election (the embedded node) the coordinator leads from the start.
//!
//! The term is over for this coordinator, at once, when its own clock says so: a term granted
//! or renewed by a statement sent at `t` is held until `t` plus nine tenths of the time to live
//! (the database counts from when the statement ran, which is later). So a coordinator that was
//! paused, or whose renewal hangs, stops acting as leader before another one can be elected,
//! and two never lead at once. The leader's tasks are stopped by a [`CancellationToken`] that
//! each checks only while it waits, never in the middle of a transaction; the next campaign
//! waits until they have all stopped.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use futures::StreamExt;
use tokio_util::sync::CancellationToken;

use super::Coordinator;
use crate::broker::{JobEventKind, Observed};
use crate::state::postgres::PostgresStore;
use crate::state::{JobState, LeaderTerm, StateResult};

/// How often a follower tries to take the leadership.
pub const CAMPAIGN_EVERY: Duration = Duration::from_millis(500);
/// How often the leader renews its term (a third of the default time to live).
pub const RENEW_EVERY: Duration = Duration::from_secs(1);

/// Leader election among coordinators.
#[async_trait]
pub trait Election: Send + Sync + 'static {
    /// Takes the leadership for `holder` for `ttl_ms` when nobody holds it; the new term, or
    /// `None` when another coordinator leads.
    async fn campaign(&self, holder: &str, ttl_ms: u64) -> StateResult<Option<LeaderTerm>>;
    /// Extends the term; `false` when it is over.
    async fn renew(&self, term: LeaderTerm, ttl_ms: u64) -> StateResult<bool>;
    /// Ends the term at once.
    async fn resign(&self, term: LeaderTerm) -> StateResult<()>;
}

#[async_trait]
impl Election for PostgresStore {
    async fn campaign(&self, holder: &str, ttl_ms: u64) -> StateResult<Option<LeaderTerm>> {
        PostgresStore::campaign(self, holder, ttl_ms).await
    }
    async fn renew(&self, term: LeaderTerm, ttl_ms: u64) -> StateResult<bool> {
        PostgresStore::renew(self, term, ttl_ms).await
    }
    async fn resign(&self, term: LeaderTerm) -> StateResult<()> {
        PostgresStore::resign(self, term).await
    }
}

/// The leadership this coordinator holds.
#[derive(Clone, Copy, Debug)]
pub(super) struct Leadership {
    /// The fencing token; `None` for an unelected single coordinator.
    pub term: Option<LeaderTerm>,
    /// When it began.
    pub since: Instant,
    /// Whether the jobs of workers that did not show up during adoption were requeued.
    pub swept: bool,
    /// When the term ends unless renewed before (see the module's docs); `None`: never.
    pub valid_until: Option<Instant>,
}

/// The share of the time to live for which a grant or renewal sent at `t` holds from `t`.
fn held_for(ttl: Duration) -> Duration {
    ttl - ttl / 10
}

impl Coordinator {
    /// The leadership this coordinator holds, if any: none once its term ran out unrenewed.
    pub(super) fn leadership(&self) -> Option<Leadership> {
        let now = Instant::now();
        self.leadership.lock().filter(|l| l.valid_until.is_none_or(|until| now < until))
    }

    /// Extends the current term to `until` (a renewal sent before it was over succeeded).
    fn extend_leadership(&self, until: Instant) {
        if let Some(l) = self.leadership.lock().as_mut() {
            l.valid_until = Some(until);
        }
    }

    fn set_leadership(&self, l: Option<Leadership>) {
        *self.leadership.lock() = l;
        self.workers.lock().clear();
        self.queue.changed();
        self.queue.forget_placed();
        *self.placed_labels.lock() = None;
    }

    /// Marks the adoption sweep done.
    pub(super) fn mark_swept(&self) {
        if let Some(l) = self.leadership.lock().as_mut() {
            l.swept = true;
        }
    }

    /// Whether this coordinator leads now.
    pub fn is_leader(&self) -> bool {
        self.leadership().is_some()
    }

    /// Leads from now on, without an election (the only coordinator).
    pub(super) async fn lead_alone(self: Arc<Self>) -> anyhow::Result<()> {
        let orphans = self.state.requeue_orphans(None, &[]).await?;
        if !orphans.is_empty() {
            tracing::info!(jobs = orphans.len(), "queued again the jobs whose leases died with the last process");
        }
        self.set_leadership(Some(Leadership { term: None, since: Instant::now(), swept: true, valid_until: None }));
        let mut duties = self.leader_duties(&CancellationToken::new()).await?;
        match duties.join_next().await {
            Some(Ok(r)) => r.and(Err(anyhow::anyhow!("a leader task ended unexpectedly"))),
            Some(Err(e)) => Err(anyhow::Error::new(e).context("a leader task panicked")),
            None => Ok(()),
        }
    }

    /// Campaigns, leads while the term lasts, and campaigns again; never returns.
    pub(super) async fn campaign_loop(self: Arc<Self>, election: Arc<dyn Election>) -> anyhow::Result<()> {
        let ttl = self.config.leader_ttl;
        let ttl_ms = ttl.as_millis() as u64;
        loop {
            let sent = Instant::now();
            let term = match election.campaign(&self.config.id, ttl_ms).await {
                Ok(Some(term)) => term,
                Ok(None) => {
                    tokio::time::sleep(CAMPAIGN_EVERY).await;
                    continue;
                }
                Err(e) => {
                    tracing::warn!(error = %format!("{e:#}"), "campaign failed; retrying");
                    tokio::time::sleep(CAMPAIGN_EVERY).await;
                    continue;
                }
            };
            tracing::info!(coordinator = %self.config.id, term = term.0, "leading");
            let valid_until = Some(sent + held_for(ttl));
            self.set_leadership(Some(Leadership { term: Some(term), since: sent, swept: false, valid_until }));
            let stop = CancellationToken::new();
            let mut duties = match self.leader_duties(&stop).await {
                Ok(d) => d,
                Err(e) => {
                    tracing::error!(error = %format!("{e:#}"), "could not start leading; resigning");
                    self.set_leadership(None);
                    let _ = election.resign(term).await;
                    tokio::time::sleep(CAMPAIGN_EVERY).await;
                    continue;
                }
            };
            self.hold_term(election.as_ref(), term, &mut duties).await;
            stop.cancel();
            self.set_leadership(None);
            // Each task stops at its next wait, after the transaction it may be in.
            let stopping = Instant::now();
            while let Some(r) = duties.join_next().await {
                if let Ok(Err(e)) = r {
                    tracing::warn!(error = %format!("{e:#}"), "a leader task failed while stopping");
                }
            }
            tracing::info!(term = term.0, stopped_in_ms = stopping.elapsed().as_millis() as u64, "following");
        }
    }

    /// Renews `term` every [`RENEW_EVERY`] until it is over: taken over, run out unrenewed (a
    /// renewal that failed, or hung, for as long as the term had left), or a leader task ended
    /// (then it is resigned).
    async fn hold_term(
        &self,
        election: &dyn Election,
        term: LeaderTerm,
        duties: &mut tokio::task::JoinSet<anyhow::Result<()>>,
    ) {
        let ttl = self.config.leader_ttl;
        let mut renew = tokio::time::interval(RENEW_EVERY);
        renew.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        renew.tick().await; // the first tick is at once: the campaign just set the term
        loop {
            let Some(until) = self.leadership().and_then(|l| l.valid_until) else {
                tracing::warn!(
                    term = term.0,
                    "the leader term ran out unrenewed (a pause, or a slow database); following"
                );
                return;
            };
            tokio::select! {
                _ = renew.tick() => {
                    let sent = Instant::now();
                    let left = until.saturating_duration_since(sent);
                    match tokio::time::timeout(left, election.renew(term, ttl.as_millis() as u64)).await {
                        Ok(Ok(true)) => self.extend_leadership(sent + held_for(ttl)),
                        Ok(Ok(false)) => {
                            tracing::warn!(term = term.0, "leadership taken over; following");
                            return;
                        }
                        Ok(Err(e)) => tracing::warn!(error = %format!("{e:#}"), "could not renew the leadership; retrying"),
                        // The loop's next turn finds the term over.
                        Err(_) => tracing::warn!(term = term.0, "the renewal did not answer while the term lasted"),
                    }
                }
                // Wakes when the term runs out, so that a lapse is noticed even between ticks.
                () = tokio::time::sleep_until(until.into()) => {}
                Some(r) = duties.join_next() => {
                    tracing::error!(result = ?r.map(|r| r.map_err(|e| format!("{e:#}"))), "a leader task ended; resigning");
                    let _ = election.resign(term).await;
                    return;
                }
            }
        }
    }

    /// Ends this coordinator's leadership at once (on shutdown), so another takes over without
    /// waiting for the term to expire.
    pub async fn resign(&self) {
        if let (Some(election), Some(Leadership { term: Some(term), .. })) = (&self.election, self.leadership()) {
            self.set_leadership(None);
            if let Err(e) = election.resign(term).await {
                tracing::warn!(error = %format!("{e:#}"), "could not resign the leadership");
            }
        }
    }

    /// The leader's tasks: reports, scheduling, lease expiry, retention, the collection of unused
    /// components, the queue's vacuum, the spill sweep, and waking the scheduler when any coordinator queues a job. Each returns
    /// `Ok(())` once `stop` is cancelled, at its next wait.
    async fn leader_duties(
        self: &Arc<Self>,
        stop: &CancellationToken,
    ) -> anyhow::Result<tokio::task::JoinSet<anyhow::Result<()>>> {
        // Reports that are already waiting are taken together and committed in one transaction.
        let mut reports = self.broker.reports().await?.ready_chunks(super::REPORT_BATCH);
        let mut set = tokio::task::JoinSet::new();
        let (this, until) = (self.clone(), stop.clone());
        set.spawn(async move {
            while let Some(Some(batch)) = until.run_until_cancelled(reports.next()).await {
                this.handle_batch(batch).await;
            }
            Ok(())
        });
        let (this, until) = (self.clone(), stop.clone());
        set.spawn(async move { this.schedule_loop(until).await });
        let (this, until) = (self.clone(), stop.clone());
        set.spawn(async move { this.expire_loop(until).await });
        if let Some(retention) = self.config.retention {
            let (this, until) = (self.clone(), stop.clone());
            set.spawn(async move { this.retention_loop(retention, until).await });
        }
        let (this, until) = (self.clone(), stop.clone());
        set.spawn(async move { this.collect_loop(until).await });
        let (this, until) = (self.clone(), stop.clone());
        set.spawn(async move { this.queue_vacuum_loop(until).await });
        let (this, until) = (self.clone(), stop.clone());
        set.spawn(async move { this.spill_sweep_loop(until).await });
        let (this, until) = (self.clone(), stop.clone());
        let mut events = self.broker.events();
        set.spawn(async move {
            while let Some(Some(e)) = until.run_until_cancelled(events.next()).await {
                // A job placed at submission published `queued` too, but was never in the queue.
                let queued = match e {
                    Observed::Event(e) => {
                        matches!(e.kind, JobEventKind::State { state: JobState::Queued, .. })
                            && !this.queue.is_placed_echo(e.job_id)
                    }
                    Observed::Missed(_) => {
                        this.queue.forget_placed();
                        true
                    }
                };
                if queued {
                    this.queue_changed();
                }
            }
            Ok(())
        });
        Ok(set)
    }
}
