//! The gauges of `/metrics` that describe the whole installation: jobs by state and tier, the
//! queue's depth and oldest job (from the state store), and worker slots (the leader's view).

use crate::ids::now_ms;
use crate::metrics;
use crate::state::{JobRecord, JobState};

use super::Coordinator;

impl Coordinator {
    /// Sets the installation gauges from the state store and, while leading, the workers'
    /// slots. Errors: the store could not be read.
    pub async fn refresh_gauges(&self) -> anyhow::Result<()> {
        let counts = self.state.job_counts().await?;
        metrics::JOBS.reset();
        let mut queued = 0;
        for (tier, state, n) in counts {
            metrics::JOBS.with_label_values(&[state.as_str(), tier.as_str()]).set(n as i64);
            if state == JobState::Queued {
                queued += n;
            }
        }
        metrics::JOBS_QUEUED.set(queued as i64);
        let oldest = self.state.oldest_queued_at_ms().await?;
        metrics::QUEUE_OLDEST_AGE.set(oldest.map_or(0, |at| (now_ms() - at).max(0) / 1000));
        metrics::SLOTS.reset();
        if self.is_leader() {
            let (used, total) = self
                .workers
                .lock()
                .values()
                .fold((0u64, 0u64), |(u, t), w| (u + w.running.len() as u64, t + u64::from(w.info.slots)));
            metrics::SLOTS.with_label_values(&["used"]).set(used as i64);
            metrics::SLOTS.with_label_values(&["free"]).set(total.saturating_sub(used) as i64);
        }
        Ok(())
    }

    /// The tier name of a job's tenant as cached (for metric labels); `unknown` when not cached.
    pub(super) fn tier_label(&self, job: &JobRecord) -> String {
        self.tenants.lock().get(&job.tenant_id).map_or_else(|| "unknown".into(), |t| t.tier.clone())
    }
}
