//! Reading a server-sent event stream (`text/event-stream`): `event:` and `data:` lines, events
//! separated by a blank line.

use futures::{Stream, StreamExt};

/// One event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    pub event: String,
    pub data: String,
}

/// Splits a byte stream into events; comments (keep-alives) are skipped.
pub fn events(
    bytes: impl Stream<Item = reqwest::Result<bytes::Bytes>> + Unpin,
) -> impl Stream<Item = anyhow::Result<SseEvent>> {
    futures::stream::unfold((bytes, String::new()), |(mut bytes, mut buf)| async move {
        loop {
            if let Some(end) = buf.find("\n\n") {
                let block: String = buf.drain(..end + 2).collect();
                if let Some(ev) = parse_block(&block) {
                    return Some((Ok(ev), (bytes, buf)));
                }
                continue;
            }
            match bytes.next().await {
                Some(Ok(chunk)) => buf.push_str(&String::from_utf8_lossy(&chunk).replace("\r\n", "\n")),
                Some(Err(e)) => {
                    return Some((Err(anyhow::Error::new(e).context("reading the event stream")), (bytes, buf)));
                }
                None => return None,
            }
        }
    })
}

fn parse_block(block: &str) -> Option<SseEvent> {
    let mut event = String::from("message");
    let mut data = Vec::new();
    for line in block.lines() {
        if let Some(v) = line.strip_prefix("event:") {
            event = v.trim().to_owned();
        } else if let Some(v) = line.strip_prefix("data:") {
            data.push(v.strip_prefix(' ').unwrap_or(v));
        }
    }
    (!data.is_empty()).then(|| SseEvent { event, data: data.join("\n") })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn splits_events_across_chunks() {
        let chunks: Vec<reqwest::Result<bytes::Bytes>> = vec![
            Ok(bytes::Bytes::from_static(b"event: job\ndata: {\"a\"")),
            Ok(bytes::Bytes::from_static(b":1}\n\n: keep-alive\n\nevent: state\ndata: x\n\n")),
        ];
        let got: Vec<SseEvent> = events(futures::stream::iter(chunks)).filter_map(|e| async { e.ok() }).collect().await;
        assert_eq!(
            got,
            vec![
                SseEvent { event: "job".into(), data: "{\"a\":1}".into() },
                SseEvent { event: "state".into(), data: "x".into() },
            ]
        );
    }
}
