//! Batches: several messages to one subject carried as one NATS message.
//!
//! At thousands of jobs per second every job would otherwise cost about nine NATS messages
//! (assignment, two reports and their answers, three events), each a protocol frame, a wake-up of
//! the server and of every receiver. Messages that wait together to the same subject therefore
//! leave as one: a message with the header `Niyanta-Batch` whose payload is a JSON array of
//! envelopes, one per message, each `{"trace": traceparent or null, "spill": key or null,
//! "body": value or null}` (`body` is null when the value was spilled to blob storage, see the
//! module above). A message without the header is one value, its trace context and spill key in
//! headers as before; a lone message is always sent that way.
//!
//! Nothing waits to form a batch: a batch is what piled up while the previous send was under way,
//! so a lone message leaves at once and a burst leaves in few messages.

use async_nats::{Client, HeaderMap, Message};
use bytes::Bytes;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use tokio::sync::mpsc;

use super::{SPILL_HEADER, trace_of};
use crate::blobs::Blobs;
use crate::trace::TRACEPARENT;

/// Header marking a message whose payload is a batch.
const BATCH_HEADER: &str = "Niyanta-Batch";

/// Most messages taken from the outbox at once.
const OUTBOX_DRAIN: usize = 1024;

/// One encoded message: its JSON body (empty when spilled), the trace context of the span it was
/// sent from and the blob key of a spilled body.
#[derive(Clone, Debug, Default)]
pub(super) struct Outgoing {
    pub trace: Option<String>,
    pub spill: Option<String>,
    pub body: Bytes,
}

impl Outgoing {
    /// A message with this JSON body and nothing else.
    pub fn plain(body: Vec<u8>) -> Self {
        Self { body: Bytes::from(body), ..Self::default() }
    }

    /// The headers of this message sent alone.
    pub fn headers(&self) -> HeaderMap {
        let mut headers = HeaderMap::new();
        if let Some(tp) = &self.trace {
            headers.insert(TRACEPARENT, tp.as_str());
        }
        if let Some(key) = &self.spill {
            headers.insert(SPILL_HEADER, key.as_str());
        }
        headers
    }

    /// Bytes this message takes in a batch, at most.
    pub fn batched_len(&self) -> usize {
        // The envelope's keys and punctuation take 35 bytes; trace contexts and spill keys need no
        // escaping, the margin covers it anyway.
        self.body.len() + self.trace.as_ref().map_or(0, String::len) + self.spill.as_ref().map_or(0, String::len) + 64
    }
}

/// The headers and payload that carry `items`: the one message as it is, or a batch of several.
pub(super) fn message(items: &[Outgoing]) -> (HeaderMap, Bytes) {
    match items {
        [one] => (one.headers(), one.body.clone()),
        many => {
            let mut headers = HeaderMap::new();
            headers.insert(BATCH_HEADER, many.len().to_string().as_str());
            (headers, encode(many))
        }
    }
}

/// The payload of a batch of `items`.
fn encode(items: &[Outgoing]) -> Bytes {
    let mut out = Vec::with_capacity(items.iter().map(Outgoing::batched_len).sum::<usize>() + 2);
    out.push(b'[');
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(b"{\"trace\":");
        push_string(&mut out, item.trace.as_deref());
        out.extend_from_slice(b",\"spill\":");
        push_string(&mut out, item.spill.as_deref());
        out.extend_from_slice(b",\"body\":");
        if item.body.is_empty() {
            out.extend_from_slice(b"null");
        } else {
            out.extend_from_slice(&item.body);
        }
        out.push(b'}');
    }
    out.push(b']');
    Bytes::from(out)
}

fn push_string(out: &mut Vec<u8>, s: Option<&str>) {
    // Writing a `str` or `None` to a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, &s);
}

/// How many of the first of the (non-empty) `items` one batch of `limit` bytes carries: at least
/// one, as a message larger than `limit` on its own goes alone.
pub(super) fn fitting<'a>(items: impl IntoIterator<Item = &'a Outgoing>, limit: usize) -> usize {
    let mut size = 0;
    let fit = items
        .into_iter()
        .take_while(|o| {
            size += o.batched_len();
            size <= limit
        })
        .count();
    fit.max(1)
}

/// The splits of `items` whose batches fit in `limit` bytes each (see [`fitting`]), in order.
fn split_within(mut items: Vec<Outgoing>, limit: usize) -> Vec<Vec<Outgoing>> {
    let mut splits = Vec::new();
    while !items.is_empty() {
        let rest = items.split_off(fitting(&items, limit));
        splits.push(std::mem::replace(&mut items, rest));
    }
    splits
}

#[derive(Deserialize)]
#[serde(bound = "T: DeserializeOwned")]
struct Envelope<T> {
    trace: Option<String>,
    spill: Option<String>,
    body: Option<T>,
}

/// Whether `msg` carries a batch.
pub(super) fn is_batch(msg: &Message) -> bool {
    msg.headers.as_ref().is_some_and(|h| h.get(BATCH_HEADER).is_some())
}

/// The values `msg` carries, each with its trace context: one for a plain message, each of a
/// batch's in order. Spilled bodies are read back from blob storage (and deleted there). Errors:
/// a payload that does not decode, or a spilled body that cannot be read.
pub(super) async fn unpack<T: DeserializeOwned>(
    blobs: &Blobs,
    msg: &Message,
) -> anyhow::Result<Vec<(T, Option<String>)>> {
    if !is_batch(msg) {
        let spilled = msg.headers.as_ref().and_then(|h| h.get(SPILL_HEADER)).map(|v| v.as_str().to_owned());
        let value = match spilled {
            Some(key) => serde_json::from_slice(&blobs.take_spill(&key).await?)?,
            None => serde_json::from_slice(&msg.payload)?,
        };
        return Ok(vec![(value, trace_of(msg))]);
    }
    let envelopes: Vec<Envelope<T>> = serde_json::from_slice(&msg.payload)?;
    let mut values = Vec::with_capacity(envelopes.len());
    for e in envelopes {
        let value = match (e.body, e.spill) {
            (Some(body), _) => body,
            (None, Some(key)) => serde_json::from_slice(&blobs.take_spill(&key).await?)?,
            (None, None) => anyhow::bail!("a batch item has neither a body nor a spill key"),
        };
        values.push((value, e.trace));
    }
    Ok(values)
}

/// Sends `items` to `subject`: alone as a plain message, else as batches within `limit` bytes.
pub(super) async fn publish(client: &Client, subject: &str, items: Vec<Outgoing>, limit: usize) {
    for split in split_within(items, limit) {
        let (headers, payload) = message(&split);
        if let Err(e) = client.publish_with_headers(subject.to_owned(), headers, payload).await {
            tracing::warn!(error = %e, subject, "could not publish");
        }
    }
}

/// The task that sends what the broker publishes (commands, events, answers to reports): whatever
/// waits in `outbox` when it looks is grouped by subject, in the order each subject first
/// appears, and each group leaves as few messages as fit (`limit` bytes of payload each). Messages
/// to one subject keep their order.
pub(super) async fn run_outbox(client: Client, mut outbox: mpsc::UnboundedReceiver<(String, Outgoing)>, limit: usize) {
    let mut taken = Vec::with_capacity(OUTBOX_DRAIN);
    while outbox.recv_many(&mut taken, OUTBOX_DRAIN).await > 0 {
        let mut groups: Vec<(String, Vec<Outgoing>)> = Vec::new();
        for (subject, item) in taken.drain(..) {
            match groups.iter_mut().find(|(s, _)| *s == subject) {
                Some((_, items)) => items.push(item),
                None => groups.push((subject, vec![item])),
            }
        }
        for (subject, items) in groups {
            publish(&client, &subject, items, limit).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(body: &str, trace: Option<&str>, spill: Option<&str>) -> Outgoing {
        Outgoing { trace: trace.map(Into::into), spill: spill.map(Into::into), body: Bytes::from(body.to_owned()) }
    }

    #[test]
    fn a_batch_is_an_array_of_envelopes_that_decodes_in_order() -> anyhow::Result<()> {
        let items = [
            item(r#"{"n":1}"#, Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"), None),
            item("", None, Some("spill/abc")),
            item(r#"{"n":"three \"quoted\""}"#, None, None),
        ];
        let json: serde_json::Value = serde_json::from_slice(&encode(&items))?;
        assert_eq!(
            json,
            serde_json::json!([
                {"trace": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "spill": null, "body": {"n": 1}},
                {"trace": null, "spill": "spill/abc", "body": null},
                {"trace": null, "spill": null, "body": {"n": "three \"quoted\""}},
            ])
        );
        let envelopes: Vec<Envelope<serde_json::Value>> = serde_json::from_slice(&encode(&items))?;
        assert_eq!(envelopes.len(), 3);
        assert!(envelopes[1].body.is_none() && envelopes[1].spill.as_deref() == Some("spill/abc"));
        assert_eq!(envelopes[2].body, Some(serde_json::json!({"n": "three \"quoted\""})));
        Ok(())
    }

    #[test]
    fn splits_keep_order_and_fit_the_limit_unless_one_message_is_larger() {
        let items: Vec<Outgoing> = [10, 10, 10, 500, 10].iter().map(|n| item(&"x".repeat(*n), None, None)).collect();
        // Each small item takes 74 bytes in a batch: two fit in 200.
        let splits = split_within(items, 200);
        let sizes: Vec<Vec<usize>> = splits.iter().map(|s| s.iter().map(|i| i.body.len()).collect()).collect();
        assert_eq!(sizes, vec![vec![10, 10], vec![10], vec![500], vec![10]]);
        for s in &splits {
            assert!(s.len() == 1 || encode(s).len() <= 200, "a batch of {} passed the limit", s.len());
        }
    }
}
