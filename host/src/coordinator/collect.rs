//! Garbage collection of components: the bytes of a component (`components/{sha256}`, stored
//! once for every tenant that uploads the same bytes) are deleted once no tenant uses them.
//!
//! A tenant *holds* a component ([`crate::state::StateStore::hold_component`]) from its upload
//! on, while a workload of the tenant names it or a job of the tenant that has not ended
//! (scheduled, queued, assigned, running, or waiting to retry) needs it, and for
//! [`super::CoordinatorConfig::component_grace`] after that. A tenant's stored bytes count the
//! components it holds in use. While leading, [`Coordinator::collect_loop`] sweeps the holds
//! (marking the unused ones, releasing those unused for the grace period), then deletes the
//! components nobody holds: it claims them in the state store, deletes their bytes, and forgets
//! them. A dead job keeps no component; re-driving it holds its component again if it is still
//! stored.
//!
//! The order that keeps an upload safe from a deletion in flight (see [`Coordinator::store_workload`]):
//! the upload holds the component first, then stores its bytes, then records the workload; the
//! collector claims a component only while nobody holds it (checked in the claiming statement),
//! deletes its bytes only after the claim committed, and forgets it only after that. A hold
//! refused while a claim stands waits for the deletion to end; a hold that commits first makes
//! the claim pass the component by. So the bytes an upload stores always land after any
//! deletion that could remove them. A submission reads its workload's digest and inserts its job
//! a few milliseconds later: the grace period, counted from when the workload stopped naming the
//! component, covers that too.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio_util::sync::CancellationToken;

use super::Coordinator;
use crate::blobs::BlobError;
use crate::ids::{Digest, TenantId, now_ms};
use crate::state::{ComponentHold, StateError, Workload};

/// The default of [`super::CoordinatorConfig::component_grace`]: 10 minutes.
pub const DEFAULT_COMPONENT_GRACE: Duration = Duration::from_secs(600);

/// How often the components in the object store are matched with their records (and when a
/// leadership begins): those stored without one are recorded, so they are collected when unused.
const ADOPT_EVERY: Duration = Duration::from_secs(3_600);

/// Components claimed per statement.
const CLAIM_BATCH: u32 = 100;

/// How long an upload waits for a deletion of the same bytes to end.
const COLLECTING_WAIT: Duration = Duration::from_secs(10);

/// Why an uploaded component could not be stored.
#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    /// The same bytes were being deleted for longer than an upload waits (a leader that stopped
    /// half-way: the next one finishes the deletion within a sweep). Nothing was recorded.
    #[error("component {0} is being deleted; upload it again in a few seconds")]
    Collecting(Digest),
    /// The state store failed.
    #[error(transparent)]
    State(#[from] StateError),
    /// The object store failed.
    #[error(transparent)]
    Blob(#[from] BlobError),
}

impl Coordinator {
    /// Stores an uploaded component's `bytes` and records `workload`, which names them by digest,
    /// for the tenant: holds the component, stores the bytes, records the workload (see the
    /// module's docs). Errors: [`UploadError`]; after one, the bytes may be stored, and are
    /// deleted when no tenant holds them.
    pub async fn store_workload(&self, tenant: TenantId, workload: &Workload, bytes: Bytes) -> Result<(), UploadError> {
        let digest = workload.digest;
        // A second turn only when the hold was released in between (more than the grace period
        // passed between the hold and the record) and the bytes may be gone.
        for _ in 0..2 {
            self.hold_for_upload(tenant, digest, bytes.len() as u64).await?;
            self.blobs.put_component(digest, bytes.clone()).await?;
            if self.state.put_workload(tenant, workload).await? == ComponentHold::Held {
                return Ok(());
            }
        }
        Err(UploadError::Collecting(digest))
    }

    /// Holds a component for an upload, waiting (up to [`COLLECTING_WAIT`]) while the same bytes
    /// are being deleted.
    async fn hold_for_upload(&self, tenant: TenantId, digest: Digest, size: u64) -> Result<(), UploadError> {
        let start = Instant::now();
        loop {
            match self.state.hold_component(tenant, digest, Some(size)).await? {
                ComponentHold::Held => return Ok(()),
                _ if start.elapsed() >= COLLECTING_WAIT => return Err(UploadError::Collecting(digest)),
                _ => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    }

    /// While leading, every component grace period (at least once a minute, at most once a
    /// second): sweeps the tenants' holds, then deletes the components nobody holds, a hundred
    /// per transaction (see the module's docs). At its first tick and every hour, it first
    /// records the components stored without a record.
    pub(super) async fn collect_loop(self: Arc<Self>, stop: CancellationToken) -> anyhow::Result<()> {
        let grace = self.config.component_grace;
        let mut tick = tokio::time::interval(grace.clamp(Duration::from_secs(1), Duration::from_secs(60)));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut adopted: Option<Instant> = None;
        while stop.run_until_cancelled(tick.tick()).await.is_some() {
            if adopted.is_none_or(|at| at.elapsed() >= ADOPT_EVERY) {
                match self.adopt_components().await {
                    Ok(()) => adopted = Some(Instant::now()),
                    Err(e) => {
                        tracing::warn!(error = %format!("{e:#}"), "could not match the stored components with their records; retrying at the next tick")
                    }
                }
            }
            if let Err(e) = self.collect_components(grace, &stop).await {
                tracing::warn!(error = %format!("{e:#}"), "could not delete unused components; retrying at the next tick");
            }
        }
        Ok(())
    }

    /// Records the components in the object store that have no record.
    async fn adopt_components(&self) -> anyhow::Result<()> {
        let found = self.blobs.components().await?;
        let adopted = self.state.adopt_components(&found).await?;
        if adopted > 0 {
            tracing::info!(components = adopted, "recorded stored components that had no record");
        }
        Ok(())
    }

    /// One sweep, then the deletions, each logged and counted in the metrics
    /// `niyanta_components_collected_total` and `niyanta_component_bytes_freed_total`.
    async fn collect_components(&self, grace: Duration, stop: &CancellationToken) -> anyhow::Result<()> {
        let grace_ms = i64::try_from(grace.as_millis()).unwrap_or(i64::MAX);
        let sweep = self.state.sweep_components(now_ms(), grace_ms).await?;
        if sweep.holds_released > 0 || sweep.unreferenced > 0 {
            tracing::debug!(
                holds_released = sweep.holds_released,
                unreferenced = sweep.unreferenced,
                "swept the component holds"
            );
        }
        while !stop.is_cancelled() {
            let claimed = self.state.claim_components(now_ms(), CLAIM_BATCH).await?;
            for &(digest, size) in &claimed {
                // A coordinator whose term ran out (paused since its claim) deletes nothing: the
                // next leader's claim returns the component again.
                if !self.is_leader() {
                    return Ok(());
                }
                let stored = self.blobs.delete_component(digest).await?;
                if let Some(runtime) = self.runtime.get() {
                    runtime.forget(digest).await;
                }
                if self.state.forget_component(digest).await? {
                    crate::metrics::COMPONENTS_COLLECTED.inc();
                    if stored {
                        crate::metrics::COMPONENT_BYTES_FREED.inc_by(size);
                    }
                    tracing::info!(%digest, bytes = size, stored, "deleted a component no workload or job uses any more");
                }
            }
            if (claimed.len() as u32) < CLAIM_BATCH {
                break;
            }
        }
        Ok(())
    }
}
