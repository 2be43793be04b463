//! Leadership: of several coordinators, one schedules, applies workers' reports and detects lost
//! workers; all of them serve the API.
//!
//! A coordinator with an [`Election`] campaigns every [`CAMPAIGN_EVERY`]; once elected it renews
//! its term every [`RENEW_EVERY`] and runs the leader's tasks (reports, scheduling, lease expiry)
//! until a renewal fails, then drops them and campaigns again. The term is the fencing token of
//! the scheduler's writes. A new leader knows no workers: it learns them from their heartbeats
//! during one lease timeout (adoption) and only then requeues the jobs of workers it never heard
//! from. Without an election (the embedded node) the coordinator leads from the start.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use futures::StreamExt;

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
}

impl Coordinator {
    /// The leadership this coordinator holds, if any.
    pub(super) fn leadership(&self) -> Option<Leadership> {
        self.leadership.lock().ok().and_then(|l| *l)
    }

    fn set_leadership(&self, l: Option<Leadership>) {
        if let Ok(mut cur) = self.leadership.lock() {
            *cur = l;
        }
        if let Ok(mut w) = self.workers.lock() {
            w.clear();
        }
        self.queue.changed();
        self.queue.forget_placed();
        if let Ok(mut p) = self.placed_labels.lock() {
            *p = None;
        }
    }

    /// Marks the adoption sweep done.
    pub(super) fn mark_swept(&self) {
        if let Ok(mut cur) = self.leadership.lock()
            && let Some(l) = cur.as_mut()
        {
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
        self.set_leadership(Some(Leadership { term: None, since: Instant::now(), swept: true }));
        let mut duties = self.leader_duties().await?;
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
            self.set_leadership(Some(Leadership { term: Some(term), since: Instant::now(), swept: false }));
            let mut duties = match self.leader_duties().await {
                Ok(d) => d,
                Err(e) => {
                    tracing::error!(error = %format!("{e:#}"), "could not start leading; resigning");
                    self.set_leadership(None);
                    let _ = election.resign(term).await;
                    tokio::time::sleep(CAMPAIGN_EVERY).await;
                    continue;
                }
            };
            let mut renew = tokio::time::interval(RENEW_EVERY);
            let mut renewed = Instant::now();
            loop {
                tokio::select! {
                    _ = renew.tick() => match election.renew(term, ttl_ms).await {
                        Ok(true) => renewed = Instant::now(),
                        Ok(false) => {
                            tracing::warn!(term = term.0, "leadership taken over; following");
                            break;
                        }
                        Err(e) if renewed.elapsed() >= ttl => {
                            tracing::warn!(term = term.0, error = %format!("{e:#}"), "could not renew the leadership in time; following");
                            break;
                        }
                        Err(e) => tracing::warn!(error = %format!("{e:#}"), "could not renew the leadership; retrying"),
                    },
                    Some(r) = duties.join_next() => {
                        tracing::error!(result = ?r.map(|r| r.map_err(|e| format!("{e:#}"))), "a leader task ended; resigning");
                        let _ = election.resign(term).await;
                        break;
                    }
                }
            }
            duties.abort_all();
            self.set_leadership(None);
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

    /// The leader's tasks: reports, scheduling, lease expiry, retention, the queue's vacuum, the
    /// spill sweep, and waking the scheduler when any coordinator queues a job.
    async fn leader_duties(self: &Arc<Self>) -> anyhow::Result<tokio::task::JoinSet<anyhow::Result<()>>> {
        // Reports that are already waiting are taken together and committed in one transaction.
        let mut reports = self.broker.reports().await?.ready_chunks(super::REPORT_BATCH);
        let mut set = tokio::task::JoinSet::new();
        let this = self.clone();
        set.spawn(async move {
            while let Some(batch) = reports.next().await {
                this.handle_batch(batch).await;
            }
            Ok(())
        });
        let this = self.clone();
        set.spawn(async move { this.schedule_loop().await });
        let this = self.clone();
        set.spawn(async move { this.expire_loop().await });
        if let Some(retention) = self.config.retention {
            let this = self.clone();
            set.spawn(async move { this.retention_loop(retention).await });
        }
        let this = self.clone();
        set.spawn(async move { this.queue_vacuum_loop().await });
        let this = self.clone();
        set.spawn(async move { this.spill_sweep_loop().await });
        let this = self.clone();
        let mut events = self.broker.events();
        set.spawn(async move {
            while let Some(e) = events.next().await {
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
