//! In-process broker: tokio channels, for the embedded all-in-one mode.

use std::collections::HashMap;

use async_trait::async_trait;
use futures::StreamExt;
use futures::stream::BoxStream;
use parking_lot::Mutex;
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio_stream::wrappers::UnboundedReceiverStream;

use super::*;

/// Channels inside one process.
pub struct MemoryBroker {
    workers: Mutex<HashMap<WorkerId, mpsc::UnboundedSender<Command>>>,
    reports_tx: mpsc::UnboundedSender<Delivery>,
    reports_rx: Mutex<Option<mpsc::UnboundedReceiver<Delivery>>>,
    events: broadcast::Sender<JobEvent>,
}

impl Default for MemoryBroker {
    fn default() -> Self {
        let (reports_tx, reports_rx) = mpsc::unbounded_channel();
        Self {
            workers: Mutex::new(HashMap::new()),
            reports_tx,
            reports_rx: Mutex::new(Some(reports_rx)),
            events: event_channel(),
        }
    }
}

#[async_trait]
impl Broker for MemoryBroker {
    async fn send_command(&self, worker: &WorkerId, cmd: Command) -> Result<(), BrokerError> {
        let tx = self.workers.lock().get(worker).cloned().ok_or_else(|| BrokerError::UnknownWorker(worker.clone()))?;
        tx.send(cmd).map_err(|_| BrokerError::UnknownWorker(worker.clone()))
    }

    async fn commands(&self, worker: &WorkerId) -> Result<BoxStream<'static, Command>, BrokerError> {
        let (tx, rx) = mpsc::unbounded_channel();
        self.workers.lock().insert(worker.clone(), tx);
        Ok(UnboundedReceiverStream::new(rx).boxed())
    }

    async fn report(&self, report: Report) -> Result<Ack, BrokerError> {
        let (tx, rx) = oneshot::channel();
        let delivery = Delivery::new(report, crate::trace::current(), move |ack| {
            let _ = tx.send(ack);
        });
        self.reports_tx.send(delivery).map_err(|_| BrokerError::Closed)?;
        rx.await.map_err(|_| BrokerError::Closed)
    }

    async fn reports(&self) -> Result<BoxStream<'static, Delivery>, BrokerError> {
        let rx = self
            .reports_rx
            .lock()
            .take()
            .ok_or_else(|| BrokerError::Internal(anyhow::anyhow!("reports are already consumed")))?;
        Ok(UnboundedReceiverStream::new(rx).boxed())
    }

    fn publish_event(&self, event: JobEvent) {
        let _ = self.events.send(event);
    }

    fn events(&self) -> BoxStream<'static, Observed> {
        observe(&self.events)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn reports_wait_for_their_ack_and_commands_reach_their_worker() -> anyhow::Result<()> {
        let broker = std::sync::Arc::new(MemoryBroker::default());
        let mut reports = broker.reports().await?;
        let b = broker.clone();
        let info = WorkerInfo { id: WorkerId("w0".into()), ..WorkerInfo::default() };
        let sender = tokio::spawn(async move { b.report(Report::Heartbeat { info, running: vec![] }).await });
        let d = reports.next().await.ok_or_else(|| anyhow::anyhow!("no delivery"))?;
        assert!(matches!(&d.report, Report::Heartbeat { info, .. } if info.id.0 == "w0"));
        d.ack(Ack::Stale);
        assert_eq!(sender.await??, Ack::Stale);

        let w = WorkerId("w1".into());
        assert!(matches!(
            broker.send_command(&w, Command::Cancel { job_id: JobId::new(), epoch: 1 }).await,
            Err(BrokerError::UnknownWorker(_))
        ));
        let mut cmds = broker.commands(&w).await?;
        let job = JobId::new();
        broker.send_command(&w, Command::Cancel { job_id: job, epoch: 3 }).await?;
        assert_eq!(cmds.next().await, Some(Command::Cancel { job_id: job, epoch: 3 }));
        Ok(())
    }

    #[tokio::test]
    async fn a_slow_subscriber_is_told_what_it_missed() {
        let broker = MemoryBroker::default();
        let mut events = broker.events();
        let event = |seq| JobEvent {
            job_id: JobId::new(),
            tenant_id: crate::ids::TenantId::new(),
            kind: crate::broker::JobEventKind::Checkpoint { seq },
        };
        let published = super::EVENT_BUFFER as u32 + 904;
        for seq in 0..published {
            broker.publish_event(event(seq));
        }
        assert_eq!(events.next().await, Some(Observed::Missed(904)));
        assert!(matches!(events.next().await, Some(Observed::Event(_))));
    }
}
