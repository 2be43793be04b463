//! [`JobIo`] for the worker: input from the job record or the object store, output parts to the
//! object store, checkpoints, progress and logs as reports to the coordinator.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use parking_lot::Mutex;
use tracing::Instrument;

use crate::blobs::Blobs;
use crate::broker::{Ack, Broker, Report};
use crate::ids::{JobId, WorkerId};
use crate::runtime::JobIo;
use crate::runtime::LeaseLost;
use crate::state::{Checkpoint, InputRef, JobUpdate, LogLine, Progress};

use super::{job_report, send_report};

/// How often coalesced progress and batched log lines are sent.
pub const REPORT_INTERVAL: Duration = Duration::from_millis(200);

#[derive(Default)]
struct Pending {
    progress: Option<Progress>,
    logs: Vec<LogLine>,
}

/// The worker side of one attempt.
pub struct WorkerIo {
    pub(super) worker: WorkerId,
    pub(super) job_id: JobId,
    pub(super) epoch: i64,
    pub(super) input: InputRef,
    pub(super) blobs: Blobs,
    pub(super) broker: Arc<dyn Broker>,
    /// Whether the coordinator confirmed the lease (answered the `Running` report): `None` while
    /// the answer is on its way. Output parts wait for it, so an attempt whose lease turned out
    /// stale stores no part at all (one that loses its lease later stores under its own epoch,
    /// which the job's output never reads: see [`Blobs::put_output_part`]).
    confirmed: tokio::sync::watch::Receiver<Option<bool>>,
    pending: Arc<Mutex<Pending>>,
    flusher: Option<tokio::task::JoinHandle<()>>,
}

impl WorkerIo {
    pub(super) fn new(
        worker: WorkerId,
        job_id: JobId,
        epoch: i64,
        input: InputRef,
        blobs: Blobs,
        broker: Arc<dyn Broker>,
        confirmed: tokio::sync::watch::Receiver<Option<bool>>,
    ) -> Self {
        Self { worker, job_id, epoch, input, blobs, broker, confirmed, pending: Arc::default(), flusher: None }
    }

    fn report(&self, update: JobUpdate) -> Report {
        job_report(&self.worker, self.job_id, self.epoch, update)
    }

    /// A handle that sends what is pending; used once the attempt ended.
    pub(super) fn pending_sender(&self) -> PendingSender {
        PendingSender {
            worker: self.worker.clone(),
            job_id: self.job_id,
            epoch: self.epoch,
            broker: self.broker.clone(),
            pending: self.pending.clone(),
        }
    }

    fn start_flusher(&mut self) {
        if self.flusher.is_some() {
            return;
        }
        let sender = self.pending_sender();
        self.flusher = Some(tokio::spawn(
            async move {
                let mut tick = tokio::time::interval(REPORT_INTERVAL);
                loop {
                    tick.tick().await;
                    if sender.send().await == Some(Ack::Stale) {
                        return;
                    }
                }
            }
            .in_current_span(),
        ));
    }
}

impl Drop for WorkerIo {
    fn drop(&mut self) {
        if let Some(f) = self.flusher.take() {
            f.abort();
        }
    }
}

/// Sends coalesced progress and batched logs.
pub struct PendingSender {
    worker: WorkerId,
    job_id: JobId,
    epoch: i64,
    broker: Arc<dyn Broker>,
    pending: Arc<Mutex<Pending>>,
}

impl PendingSender {
    /// Sends what is pending; `None` when nothing was.
    pub async fn send(&self) -> Option<Ack> {
        let (progress, logs) = {
            let mut p = self.pending.lock();
            (p.progress.take(), std::mem::take(&mut p.logs))
        };
        let mut last = None;
        if !logs.is_empty() {
            let r = job_report(&self.worker, self.job_id, self.epoch, JobUpdate::Logs(logs));
            last = Some(send_report(self.broker.as_ref(), r).await);
        }
        if let Some(progress) = progress {
            let r = job_report(&self.worker, self.job_id, self.epoch, JobUpdate::Progress(progress));
            last = Some(send_report(self.broker.as_ref(), r).await);
        }
        last
    }
}

#[async_trait]
impl JobIo for WorkerIo {
    async fn read_input(&mut self, offset: u64, len: u32) -> anyhow::Result<Vec<u8>> {
        match &self.input {
            InputRef::Inline(bytes) => {
                let start = usize::try_from(offset).unwrap_or(usize::MAX).min(bytes.len());
                let end = start.saturating_add(len as usize).min(bytes.len());
                Ok(bytes[start..end].to_vec())
            }
            InputRef::Blob { digest, size } => {
                let end = offset.saturating_add(u64::from(len)).min(*size);
                if offset >= end {
                    return Ok(Vec::new());
                }
                Ok(self.blobs.input_range(*digest, offset, end).await?.to_vec())
            }
        }
    }

    async fn flush_output(&mut self, part: u32, bytes: Vec<u8>) -> anyhow::Result<()> {
        match self.confirmed.wait_for(Option::is_some).await.map(|c| *c) {
            Ok(Some(true)) => {}
            _ => return Err(LeaseLost.into()),
        }
        self.blobs.put_output_part(self.job_id, self.epoch, part, bytes.into()).await?;
        Ok(())
    }

    async fn checkpoint(&mut self, cp: Checkpoint) -> anyhow::Result<()> {
        // Progress and logs before the checkpoint, so that what the API shows is never older.
        self.pending_sender().send().await;
        let r = self.report(JobUpdate::Checkpoint(cp));
        match send_report(self.broker.as_ref(), r).await {
            Ack::Ok => Ok(()),
            Ack::Stale => Err(LeaseLost.into()),
        }
    }

    fn progress(&mut self, p: Progress) {
        {
            let mut pending = self.pending.lock();
            pending.progress = Some(p);
        }
        self.start_flusher();
    }

    fn log(&mut self, line: LogLine) {
        {
            let mut pending = self.pending.lock();
            pending.logs.push(line);
        }
        self.start_flusher();
    }
}

#[cfg(test)]
mod tests {
    use futures::TryStreamExt;

    use super::*;
    use crate::broker::memory::MemoryBroker;

    fn attempt(blobs: &Blobs, job: JobId, epoch: i64, confirmed: Option<bool>) -> WorkerIo {
        let (_, rx) = tokio::sync::watch::channel(confirmed);
        let broker: Arc<dyn Broker> = Arc::new(MemoryBroker::default());
        WorkerIo::new(WorkerId("w".into()), job, epoch, InputRef::Inline(Vec::new()), blobs.clone(), broker, rx)
    }

    #[tokio::test]
    async fn an_attempt_that_lost_its_lease_cannot_replace_its_successors_output_parts() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let blobs = Blobs::local(dir.path())?;
        let job = JobId::new();
        let mut first = attempt(&blobs, job, 1, Some(true));
        let mut second = attempt(&blobs, job, 2, Some(true));
        first.flush_output(0, b"first 0 ".to_vec()).await?;
        // The first attempt's lease passed to the second, which resumed after part 0.
        second.flush_output(1, b"second 1".to_vec()).await?;
        // The first attempt, woken up late, writes its part 1 before it learns of it.
        first.flush_output(1, b"first 1".to_vec()).await?;
        let output: Vec<bytes::Bytes> = blobs.output(job, 2).try_collect().await?;
        assert_eq!(output.concat(), b"first 0 second 1");

        // An attempt whose lease the coordinator refused writes nothing.
        let mut refused = attempt(&blobs, job, 3, Some(false));
        let err = refused.flush_output(1, b"refused".to_vec()).await.err();
        assert!(err.is_some_and(|e| e.is::<LeaseLost>()));
        let output: Vec<bytes::Bytes> = blobs.output(job, 2).try_collect().await?;
        assert_eq!(output.concat(), b"first 0 second 1");
        Ok(())
    }
}
