//! How much of a request body the server holds: every body read whole is bounded by the
//! caller's tier, and refused before it is read when its `Content-Length` is over the bound.
//!
//! - Component uploads (`PUT /v1/workloads/{name}`): the tier's `component_bytes`.
//! - JSON submissions (`POST /v1/jobs`, `POST /v1/jobs/batch`): [`json_body_limit`].
//! - Every other body read whole (the admin endpoints' JSON): the router's ceiling
//!   ([`BodyCeiling`], the largest tier's `component_bytes` and at least 16 MiB), which also caps
//!   the two above. Input uploads are streamed to the object store instead (see
//!   [`crate::blobs::Blobs::put_input_stream`]).

use axum::body::Bytes;
use axum::extract::Request;
use axum::http::{HeaderMap, StatusCode, header};
use bytes::BytesMut;
use futures::StreamExt;

use super::ApiError;
use crate::tier::Tier;

/// Bytes of JSON a submission may hold besides its params: an inline input of
/// [`crate::state::INLINE_LIMIT`] (64 KiB) in base64 (87,384 bytes) and the other fields, with
/// room to spare (128 KiB). Larger inputs go through `POST /v1/inputs`, which streams them.
pub const JOB_JSON_ALLOWANCE: u64 = 128 * 1024;

/// Most jobs in one batch (`POST /v1/jobs/batch`).
pub const MAX_BATCH: u32 = 1000;

/// The router's body limit, in bytes: the largest request body of any kind (see [`super::app`]).
#[derive(Clone, Copy, Debug)]
pub struct BodyCeiling(pub u64);

/// The largest batch a tenant on `tier` may send: its `submission_burst` (or its
/// `submissions_per_second` without one), at most [`MAX_BATCH`] jobs. A larger batch is refused
/// (422) whatever its size, so a body for more jobs is never needed.
pub fn max_batch(tier: &Tier) -> u32 {
    let burst = tier.submission_burst.or(tier.submissions_per_second).filter(|b| *b > 0);
    burst.unwrap_or(MAX_BATCH).min(MAX_BATCH)
}

/// The largest JSON body, in bytes, a tenant on `tier` may send to submit jobs (one or a batch):
/// `params_bytes` + [`JOB_JSON_ALLOWANCE`] for each job of its largest batch ([`max_batch`]),
/// capped by the router's `ceiling`. Built-in tiers: free 9.4 MiB ((64 KiB + 128 KiB) × 50);
/// standard and premium the ceiling (64 MiB with the built-in tiers).
pub fn json_body_limit(tier: &Tier, ceiling: BodyCeiling) -> u64 {
    let per_job = tier.params_bytes.saturating_add(JOB_JSON_ALLOWANCE);
    per_job.saturating_mul(u64::from(max_batch(tier))).min(ceiling.0)
}

/// The body's declared length (`Content-Length`), when it has a valid one.
pub fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers.get(header::CONTENT_LENGTH)?.to_str().ok()?.trim().parse().ok()
}

/// Why a body was not read whole.
#[derive(Debug)]
pub enum BodyError {
    /// Over the limit: `declared` by its `Content-Length` (nothing was read), or passed while
    /// reading, with `read` bytes received by then (what was read is dropped).
    TooLarge { declared: Option<u64>, read: u64, limit: u64 },
    /// Reading failed: the client went away, or sent a malformed body.
    Read(String),
}

impl BodyError {
    /// The answer: 413 with `code` naming `what` was refused (e.g. "the component"), its size
    /// and the limit, followed by `why` (where the limit comes from); 400 `invalid_body` when
    /// reading failed.
    pub fn into_api(self, code: &'static str, what: &str, why: &str) -> ApiError {
        match self {
            Self::TooLarge { declared: Some(size), limit, .. } => ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                code,
                format!("{what} is {size} bytes (Content-Length); the limit is {limit} bytes ({why})"),
            ),
            Self::TooLarge { declared: None, read, limit } => ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                code,
                format!(
                    "{what} is larger than {limit} bytes (refused after {read} bytes were read); the limit is \
                     {limit} bytes ({why})"
                ),
            ),
            Self::Read(m) => ApiError::bad_request("invalid_body", format!("reading the request body failed: {m}")),
        }
    }
}

/// After a refusal, what the client still sends is read and dropped in the background while the
/// answer goes out, up to this many bytes (16 MiB) and for up to [`LINGER_TIME`]; then the
/// connection is closed. Without it, a client still sending its body would see its connection
/// reset, often before it reads the answer (HTTP servers' "lingering close"). Nothing is held.
pub const LINGER_BYTES: u64 = 16 * 1024 * 1024;

/// See [`LINGER_BYTES`].
pub const LINGER_TIME: std::time::Duration = std::time::Duration::from_secs(5);

/// Reads and drops the rest of a refused body in the background (see [`LINGER_BYTES`]). Not for
/// a client that asked `Expect: 100-continue`: reading would invite it to send the body, which
/// the answer spares it.
pub fn linger<S, E>(headers: &HeaderMap, rest: S)
where
    S: futures::Stream<Item = Result<Bytes, E>> + Send + Unpin + 'static,
{
    if headers.get(header::EXPECT).is_some() {
        return;
    }
    tokio::spawn(async move {
        let mut rest = rest;
        let mut dropped = 0u64;
        let drain = async {
            while let Some(Ok(chunk)) = rest.next().await {
                dropped += chunk.len() as u64;
                if dropped > LINGER_BYTES {
                    break;
                }
            }
        };
        let _ = tokio::time::timeout(LINGER_TIME, drain).await;
    });
}

/// Reads a request body whole, never holding more than `limit` bytes of it: refused from its
/// `Content-Length` before anything is read when that declares more, otherwise (a chunked body
/// without `Content-Length`) as soon as the bytes read pass `limit`. The rest of a refused body
/// is dropped as it comes while the answer goes out (see [`linger`]).
pub async fn read_body(req: Request, limit: u64) -> Result<Bytes, BodyError> {
    let declared = content_length(req.headers());
    if let Some(size) = declared.filter(|n| *n > limit) {
        let (parts, body) = req.into_parts();
        linger(&parts.headers, body.into_data_stream());
        return Err(BodyError::TooLarge { declared: Some(size), read: 0, limit });
    }
    let (parts, body) = req.into_parts();
    // The chunks are kept as they come and joined at the end: a body refused half way never
    // cost more than what was read (a buffer grown by doubling would hold up to twice that).
    let mut chunks: Vec<Bytes> = Vec::new();
    let mut read = 0u64;
    let mut body = body.into_data_stream();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| BodyError::Read(e.to_string()))?;
        read += chunk.len() as u64;
        if read > limit {
            linger(&parts.headers, body);
            return Err(BodyError::TooLarge { declared: None, read, limit });
        }
        chunks.push(chunk);
    }
    if chunks.len() == 1 {
        return Ok(chunks.swap_remove(0));
    }
    let mut whole = BytesMut::with_capacity(usize::try_from(read).unwrap_or(0));
    for c in chunks {
        whole.extend_from_slice(&c);
    }
    Ok(whole.freeze())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tier::default_tiers;

    const MIB: u64 = 1024 * 1024;

    #[test]
    fn the_json_limit_follows_the_tier() {
        let tiers = default_tiers();
        let ceiling = BodyCeiling(64 * MIB);
        assert_eq!(max_batch(&tiers["free"]), 50);
        assert_eq!(json_body_limit(&tiers["free"], ceiling), (64 + 128) * 1024 * 50);
        assert_eq!(json_body_limit(&tiers["standard"], ceiling), 64 * MIB, "capped by the ceiling");
        assert_eq!(max_batch(&tiers["premium"]), MAX_BATCH, "no burst: the largest batch");
        let mut t = tiers["free"].clone();
        t.submission_burst = None;
        t.submissions_per_second = Some(2);
        assert_eq!(max_batch(&t), 2, "the burst defaults to the rate");
    }

    async fn read(body: axum::body::Body, length: Option<u64>, limit: u64) -> Result<Bytes, BodyError> {
        let mut req = Request::builder();
        if let Some(n) = length {
            req = req.header(header::CONTENT_LENGTH, n);
        }
        read_body(req.body(body).unwrap(), limit).await
    }

    /// A body of ten 4-byte chunks, counting those taken from it.
    fn chunks(taken: &std::sync::Arc<std::sync::atomic::AtomicU64>) -> axum::body::Body {
        let taken = taken.clone();
        axum::body::Body::from_stream(futures::stream::iter(0..10).map(move |_| {
            taken.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Ok::<_, std::io::Error>(Bytes::from_static(b"xxxx"))
        }))
    }

    #[tokio::test]
    async fn bodies_are_refused_from_their_length_or_as_soon_as_they_pass_the_limit() {
        use std::sync::atomic::{AtomicU64, Ordering};
        assert_eq!(read("abc".into(), Some(3), 3).await.unwrap(), "abc");
        // Declared over the limit: refused before a byte is read.
        let taken = std::sync::Arc::new(AtomicU64::new(0));
        let err = read(chunks(&taken), Some(40), 3).await.unwrap_err();
        assert!(matches!(err, BodyError::TooLarge { declared: Some(40), read: 0, limit: 3 }), "{err:?}");
        assert_eq!(taken.load(Ordering::SeqCst), 0);
        // The rest is read and dropped in the background, so the client gets the answer.
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        assert_eq!(taken.load(Ordering::SeqCst), 10);

        // Chunked: refused at the chunk that passes the limit.
        let taken = std::sync::Arc::new(AtomicU64::new(0));
        let err = read(chunks(&taken), None, 10).await.unwrap_err();
        assert_eq!(taken.load(Ordering::SeqCst), 3, "nothing read past the refusal");
        assert!(matches!(err, BodyError::TooLarge { declared: None, read: 12, limit: 10 }), "{err:?}");
        let api = err.into_api("body_too_large", "the request body", "the tier's");
        assert_eq!((api.status.as_u16(), api.code), (413, "body_too_large"));
        assert!(api.message.contains("larger than 10 bytes (refused after 12 bytes"), "{}", api.message);

        // A client that waits for `100 Continue` is not invited to send the rest.
        let taken = std::sync::Arc::new(AtomicU64::new(0));
        let req = Request::builder().header(header::CONTENT_LENGTH, 40).header(header::EXPECT, "100-continue");
        assert!(read_body(req.body(chunks(&taken)).unwrap(), 3).await.is_err());
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        assert_eq!(taken.load(Ordering::SeqCst), 0);
    }
}
