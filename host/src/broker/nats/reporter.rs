//! A worker's reports leave in batches: one request carries the reports that piled up while the
//! earlier requests were answered, and its answer is the JSON array of their [`Ack`]s in order.
//!
//! At most [`IN_FLIGHT`] requests are unanswered at a time. A lone report leaves at once; under
//! load, reports wait for a free request and leave together, so a worker running hundreds of short
//! jobs sends a few requests per commit of the coordinator rather than two per job. A request
//! that fails (no coordinator answers, the timeout passes) fails every report in it, and each is
//! sent again by its sender ([`crate::worker`] retries until answered).

use std::sync::Arc;

use async_nats::Client;
use tokio::sync::{Semaphore, mpsc, oneshot};

use super::batch::{Outgoing, fitting, message};
use crate::broker::{Ack, BrokerError};

/// Report requests a worker keeps unanswered at once.
pub(super) const IN_FLIGHT: usize = 4;

/// Most reports in one request.
const MOST: usize = 512;

/// A report on its way, and where its answer goes.
pub(super) type Pending = (Outgoing, oneshot::Sender<Result<Ack, BrokerError>>);

/// Sends the reports queued in `queue` to `subject` until every sender is gone; requests carry at
/// most `limit` bytes of payload.
pub(super) async fn run(client: Client, subject: String, mut queue: mpsc::UnboundedReceiver<Pending>, limit: usize) {
    let in_flight = Arc::new(Semaphore::new(IN_FLIGHT));
    let mut waiting: Vec<Pending> = Vec::new();
    loop {
        // The permit first: while every request is out, reports pile up in the queue.
        let Ok(permit) = in_flight.clone().acquire_owned().await else { return };
        if waiting.is_empty() {
            if queue.recv_many(&mut waiting, MOST).await == 0 {
                return;
            }
        } else {
            while waiting.len() < MOST {
                match queue.try_recv() {
                    Ok(p) => waiting.push(p),
                    Err(_) => break,
                }
            }
        }
        // One request of what fits; the rest waits for the next permit.
        let take = fitting(waiting.iter().map(|(o, _)| o), limit);
        let batch: Vec<Pending> = waiting.drain(..take).collect();
        let (client, subject) = (client.clone(), subject.clone());
        tokio::spawn(async move {
            request(&client, subject, batch).await;
            drop(permit);
        });
    }
}

/// Sends one request of `batch` and hands each sender its answer.
async fn request(client: &Client, subject: String, batch: Vec<Pending>) {
    let (items, answers): (Vec<Outgoing>, Vec<_>) = batch.into_iter().unzip();
    let (headers, payload) = message(&items);
    let acks = client
        .request_with_headers(subject, headers, payload)
        .await
        .map_err(|e| format!("reports not answered: {e}"))
        .and_then(|reply| {
            match items.len() {
                // A lone report is answered by its ack, a batch by the array of its reports' acks.
                1 => serde_json::from_slice::<Ack>(&reply.payload).map(|a| vec![a]),
                _ => serde_json::from_slice::<Vec<Ack>>(&reply.payload),
            }
            .map_err(|e| e.to_string())
        })
        .and_then(|acks| match acks.len() == items.len() {
            true => Ok(acks),
            false => Err(format!("{} answers to {} reports", acks.len(), items.len())),
        });
    match acks {
        Ok(acks) => {
            for (answer, ack) in answers.into_iter().zip(acks) {
                let _ = answer.send(Ok(ack));
            }
        }
        Err(e) => {
            for answer in answers {
                let _ = answer.send(Err(BrokerError::Internal(anyhow::anyhow!("{e}"))));
            }
        }
    }
}
