//! Deleting what is no longer needed: ended jobs past the retention period, the queue's dead
//! entries, and spilled message bodies whose message was never received.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::Coordinator;

/// A spilled message body this old is deleted by [`Coordinator::spill_sweep_loop`]. A body is
/// read within its message's delivery (a report's request times out in seconds), so one this old
/// was never read.
const SPILL_KEPT: Duration = Duration::from_secs(3_600);

impl Coordinator {
    /// While leading, every minute (or every retention period when that is shorter, but at most
    /// once a second): deletes the jobs that ended more than the retention period ago, a
    /// thousand per transaction, then their output blobs.
    pub(super) async fn retention_loop(
        self: Arc<Self>,
        retention: Duration,
        stop: CancellationToken,
    ) -> anyhow::Result<()> {
        const BATCH: u32 = 1_000;
        let every = retention.clamp(Duration::from_secs(1), Duration::from_secs(60));
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        while stop.run_until_cancelled(tick.tick()).await.is_some() {
            let before = crate::ids::now_ms() - retention.as_millis() as i64;
            while !stop.is_cancelled() {
                let purged = match self.state.purge_finished(before, BATCH).await {
                    Ok(p) => p,
                    Err(e) => {
                        tracing::warn!(error = %format!("{e:#}"), "could not purge ended jobs; retrying at the next tick");
                        break;
                    }
                };
                for (job, _) in purged.iter().filter(|(_, blobs)| *blobs) {
                    if let Err(e) = self.blobs.delete_output(*job).await {
                        tracing::warn!(job_id = %job, error = %e, "could not delete a purged job's output");
                    }
                }
                if !purged.is_empty() {
                    tracing::info!(jobs = purged.len(), "purged ended jobs past the retention period");
                }
                if (purged.len() as u32) < BATCH {
                    break;
                }
            }
        }
        Ok(())
    }

    /// While leading, every second: reclaims the queue's dead entries (see
    /// [`crate::state::StateStore::vacuum_queue`]), so that the scheduler's reads of the queue
    /// do not slow down as jobs are claimed.
    pub(super) async fn queue_vacuum_loop(self: Arc<Self>, stop: CancellationToken) -> anyhow::Result<()> {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        while stop.run_until_cancelled(tick.tick()).await.is_some() {
            if let Err(e) = self.state.vacuum_queue().await {
                tracing::warn!(error = %format!("{e:#}"), "could not vacuum the queue; retrying in a second");
            }
        }
        Ok(())
    }

    /// While leading, every ten minutes: deletes the spilled message bodies stored more than
    /// [`SPILL_KEPT`] ago (see [`crate::blobs::Blobs::purge_spill`]).
    pub(super) async fn spill_sweep_loop(self: Arc<Self>, stop: CancellationToken) -> anyhow::Result<()> {
        let mut tick = tokio::time::interval(Duration::from_secs(600));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        while stop.run_until_cancelled(tick.tick()).await.is_some() {
            let before = crate::ids::now_ms() - SPILL_KEPT.as_millis() as i64;
            match self.blobs.purge_spill(before).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(bodies = n, "deleted spilled message bodies that were never received"),
                Err(e) => {
                    tracing::warn!(error = %format!("{e:#}"), "could not delete old spilled message bodies; retrying in ten minutes")
                }
            }
        }
        Ok(())
    }
}
