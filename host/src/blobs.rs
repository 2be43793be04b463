//! Blob storage: component binaries, large inputs and output parts, in an [`ObjectStore`].
//!
//! Keys are built only here, from typed ids, so no caller can write outside its namespace:
//! - `components/{sha256}`: component bytes, stored once however many tenants upload them, and
//!   deleted once no tenant uses them (`coordinator::collect`);
//! - `inputs/{sha256}`: input blobs;
//! - `outputs/{job id}/{part index, 8 digits}.{lease epoch}`: output parts in order, each under
//!   the lease epoch of the attempt that wrote it (see [`Blobs::output`]);
//! - `spill/{random}`: broker messages too large for the transport, read once and deleted.
//!
//! [`Blobs::from_url`] opens a local directory (`file:///DIR`) or an S3-compatible bucket
//! (`s3://BUCKET?endpoint=…&region=…&allow_http=true`; credentials from the standard `AWS_*`
//! environment variables).

use std::sync::Arc;

use anyhow::Context as _;
use bytes::Bytes;
use futures::stream::BoxStream;
use futures::{StreamExt, TryFutureExt, TryStreamExt};
use object_store::path::Path;
use object_store::{ObjectMeta, ObjectStore, ObjectStoreExt, PutPayload};
use sha2::{Digest as _, Sha256};

use crate::ids::{Digest, JobId};

/// Errors of blob storage.
#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    /// No blob under that key.
    #[error("blob {0} not found")]
    NotFound(String),
    /// Stored bytes do not match their digest: they were corrupted or tampered with.
    #[error("blob {key} has digest {actual}, not the expected {expected}")]
    DigestMismatch { key: String, expected: Digest, actual: Digest },
    /// The object store failed.
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

/// Why a streamed upload failed.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    /// The body went past the limit.
    #[error("the upload is larger than the {limit} bytes the tier allows")]
    TooLarge { limit: u64 },
    /// Reading the body failed (the client went away).
    #[error("reading the upload failed: {0}")]
    Body(String),
    /// The object store failed.
    #[error(transparent)]
    Blob(#[from] BlobError),
}

/// After a streamed upload went past its limit, at most this many more bytes are read and dropped.
const DRAIN_BYTES: u64 = 64 * 1024 * 1024;

fn blob_err(e: object_store::Error, key: &Path) -> BlobError {
    BlobError::Internal(anyhow::Error::new(e).context(format!("writing blob {key}")))
}

/// The blob namespaces of one Niyanta installation over an object store.
#[derive(Clone, Debug)]
pub struct Blobs {
    store: Arc<dyn ObjectStore>,
}

fn component_key(d: Digest) -> Path {
    Path::from(format!("components/{d}"))
}

fn input_key(d: Digest) -> Path {
    Path::from(format!("inputs/{d}"))
}

fn output_dir(job: JobId) -> Path {
    Path::from(format!("outputs/{job}"))
}

fn output_key(job: JobId, part: u32, epoch: i64) -> Path {
    Path::from(format!("outputs/{job}/{part:08}.{epoch}"))
}

/// The part index and lease epoch of an output part's file name; a name without an epoch (stored
/// before parts were keyed by epoch) counts as epoch 0.
fn parse_output_name(name: &str) -> Option<(u32, i64)> {
    match name.split_once('.') {
        Some((part, epoch)) => Some((part.parse().ok()?, epoch.parse().ok()?)),
        None => Some((name.parse().ok()?, 0)),
    }
}

impl Blobs {
    /// Blob storage over `store`.
    pub fn new(store: Arc<dyn ObjectStore>) -> Self {
        Self { store }
    }

    /// Blob storage in a local directory (created when missing). A write returns once the file
    /// and its directory entry are on disk (`fsync`), as durable as a write to S3; deleting a
    /// job's last output part also removes its emptied directory.
    pub fn local(dir: &std::path::Path) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating blob directory {}", dir.display()))?;
        let fs = object_store::local::LocalFileSystem::new_with_prefix(dir)
            .with_context(|| format!("opening blob directory {}", dir.display()))?
            .with_fsync(true)
            .with_automatic_cleanup(true);
        Ok(Self::new(Arc::new(fs)))
    }

    /// Blob storage at `url`: `file:///DIR` (or a plain path) for a local directory, `s3://BUCKET`
    /// for an S3-compatible bucket. Query parameters of an `s3://` URL are object_store's S3
    /// settings (`endpoint`, `region`, `allow_http`, `access_key_id`, `secret_access_key`, …);
    /// unset ones come from the `AWS_*` environment variables. Errors name the setting at fault.
    pub fn from_url(url: &str) -> anyhow::Result<Self> {
        if let Some(path) = url.strip_prefix("file://") {
            return Self::local(std::path::Path::new(path));
        }
        if let Some(rest) = url.strip_prefix("s3://") {
            use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
            let (bucket, query) = rest.split_once('?').unwrap_or((rest, ""));
            anyhow::ensure!(
                !bucket.is_empty() && !bucket.contains('/'),
                "the blob URL {url} names no bucket (s3://BUCKET?…)"
            );
            let mut builder = AmazonS3Builder::from_env().with_bucket_name(bucket);
            for pair in query.split('&').filter(|p| !p.is_empty()) {
                let (k, v) = pair.split_once('=').unwrap_or((pair, "true"));
                let key: AmazonS3ConfigKey =
                    k.parse().map_err(|e| anyhow::anyhow!("the blob URL setting {k:?} is not an S3 setting: {e}"))?;
                builder = builder.with_config(key, v);
            }
            let store = builder.build().with_context(|| format!("opening the S3 bucket of {url}"))?;
            return Ok(Self::new(Arc::new(store)));
        }
        anyhow::ensure!(!url.contains("://"), "the blob URL {url} is neither file:///DIR nor s3://BUCKET");
        Self::local(std::path::Path::new(url))
    }

    /// Stores a message body that is too large for the broker; returns its key.
    pub async fn put_spill(&self, bytes: Bytes) -> Result<String, BlobError> {
        let key = Path::from(format!("spill/{}", uuid::Uuid::new_v4().simple()));
        self.put(&key, bytes).await?;
        Ok(key.to_string())
    }

    /// Reads and deletes a spilled message body. Only `spill/…` keys are accepted.
    pub async fn take_spill(&self, key: &str) -> Result<Bytes, BlobError> {
        let ok =
            key.strip_prefix("spill/").is_some_and(|id| !id.is_empty() && id.bytes().all(|b| b.is_ascii_hexdigit()));
        if !ok {
            return Err(BlobError::NotFound(key.to_owned()));
        }
        let key = Path::from(key);
        let bytes = self.get(&key).await?;
        if let Err(e) = self.store.delete(&key).await {
            tracing::warn!(%key, error = %e, "could not delete a spilled message");
        }
        Ok(bytes)
    }

    /// Deletes the spilled message bodies stored before `before_ms` (Unix ms): a spilled body
    /// is read and deleted by its receiver at once, so one left behind belongs to a message that
    /// was never received (a request that timed out first, a command to a worker that was gone).
    /// Returns how many were deleted.
    pub async fn purge_spill(&self, before_ms: i64) -> Result<usize, BlobError> {
        let mut deleted = 0;
        for meta in self.list(&Path::from("spill")).await? {
            // Not there: its receiver took it in the meantime.
            if meta.last_modified.timestamp_millis() < before_ms && self.delete(&meta.location).await? {
                deleted += 1;
            }
        }
        Ok(deleted)
    }

    /// Every blob under `prefix`.
    async fn list(&self, prefix: &Path) -> Result<Vec<ObjectMeta>, BlobError> {
        Ok(self
            .store
            .list(Some(prefix))
            .try_collect()
            .await
            .with_context(|| format!("listing blobs under {prefix}"))?)
    }

    /// Deletes `key`; returns whether it was there.
    async fn delete(&self, key: &Path) -> Result<bool, BlobError> {
        match self.store.delete(key).await {
            Ok(()) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(BlobError::Internal(anyhow::Error::new(e).context(format!("deleting blob {key}")))),
        }
    }

    async fn put(&self, key: &Path, bytes: Bytes) -> Result<(), BlobError> {
        self.store.put(key, PutPayload::from(bytes)).await.with_context(|| format!("storing blob {key}"))?;
        Ok(())
    }

    async fn get(&self, key: &Path) -> Result<Bytes, BlobError> {
        match self.store.get(key).await {
            Ok(r) => Ok(r.bytes().await.with_context(|| format!("reading blob {key}"))?),
            Err(object_store::Error::NotFound { .. }) => Err(BlobError::NotFound(key.to_string())),
            Err(e) => Err(BlobError::Internal(anyhow::Error::new(e).context(format!("reading blob {key}")))),
        }
    }

    async fn get_verified(&self, key: &Path, digest: Digest) -> Result<Bytes, BlobError> {
        let bytes = self.get(key).await?;
        let actual = Digest::of(&bytes);
        if actual != digest {
            return Err(BlobError::DigestMismatch { key: key.to_string(), expected: digest, actual });
        }
        Ok(bytes)
    }

    /// Stores component bytes under their digest (idempotent).
    pub async fn put_component(&self, digest: Digest, bytes: Bytes) -> Result<(), BlobError> {
        self.put(&component_key(digest), bytes).await
    }

    /// Component bytes, checked against `digest`: bytes that do not match are never returned.
    pub async fn component(&self, digest: Digest) -> Result<Bytes, BlobError> {
        self.get_verified(&component_key(digest), digest).await
    }

    /// Every stored component: its digest and size in bytes. A key under `components/` that is
    /// not a digest is skipped with a warning.
    pub async fn components(&self) -> Result<Vec<(Digest, u64)>, BlobError> {
        let mut found = Vec::new();
        for meta in self.list(&Path::from("components")).await? {
            match meta.location.filename().and_then(|name| name.parse::<Digest>().ok()) {
                Some(digest) => found.push((digest, meta.size)),
                None => {
                    tracing::warn!(key = %meta.location, "a blob under components/ is not named by a digest; skipped")
                }
            }
        }
        Ok(found)
    }

    /// Deletes a component's bytes (see `coordinator::collect` for when that is safe); returns
    /// whether they were there.
    pub async fn delete_component(&self, digest: Digest) -> Result<bool, BlobError> {
        self.delete(&component_key(digest)).await
    }

    /// Stores an input blob under its digest (idempotent).
    pub async fn put_input(&self, digest: Digest, bytes: Bytes) -> Result<(), BlobError> {
        self.put(&input_key(digest), bytes).await
    }

    /// Stores an input streamed from `body` under its digest, never holding more than a chunk in
    /// memory: the bytes go to `staging/{random}` while being hashed and are then renamed to
    /// `inputs/{sha256}`. More than `limit` bytes end the upload with [`StreamError::TooLarge`];
    /// nothing is kept of a failed upload. Returns the digest and the size in bytes.
    pub async fn put_input_stream<S, E>(&self, mut body: S, limit: u64) -> Result<(Digest, u64), StreamError>
    where
        S: futures::Stream<Item = Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        let staging = Path::from(format!("staging/{}", uuid::Uuid::new_v4()));
        let upload = self.store.put_multipart(&staging).await.map_err(|e| blob_err(e, &staging))?;
        let mut writer = object_store::WriteMultipart::new(upload);
        let mut hasher = Sha256::new();
        let mut size = 0u64;
        let result = loop {
            match body.next().await {
                None => break Ok(()),
                Some(Err(e)) => break Err(StreamError::Body(e.to_string())),
                Some(Ok(chunk)) => {
                    size += chunk.len() as u64;
                    if size > limit {
                        // Read (and drop) what the client still sends, up to a bound, so that it
                        // gets the refusal instead of a connection closed mid-request.
                        while size <= limit.saturating_add(DRAIN_BYTES) {
                            match body.next().await {
                                Some(Ok(c)) => size += c.len() as u64,
                                _ => break,
                            }
                        }
                        break Err(StreamError::TooLarge { limit });
                    }
                    hasher.update(&chunk);
                    if let Err(e) = writer.wait_for_capacity(4).await {
                        break Err(blob_err(e, &staging).into());
                    }
                    writer.put(chunk);
                }
            }
        };
        if let Err(e) = result {
            let _ = writer.abort().await;
            return Err(e);
        }
        writer.finish().await.map_err(|e| blob_err(e, &staging))?;
        let digest = Digest(hasher.finalize().into());
        let key = input_key(digest);
        self.store.rename(&staging, &key).await.map_err(|e| blob_err(e, &key))?;
        Ok((digest, size))
    }

    /// Bytes `start..end` of an input blob.
    pub async fn input_range(&self, digest: Digest, start: u64, end: u64) -> Result<Bytes, BlobError> {
        let key = input_key(digest);
        match self.store.get_range(&key, start..end).await {
            Ok(b) => Ok(b),
            Err(object_store::Error::NotFound { .. }) => Err(BlobError::NotFound(key.to_string())),
            Err(e) => Err(BlobError::Internal(anyhow::Error::new(e).context(format!("reading blob {key}")))),
        }
    }

    /// Stores output part `part` of a job, written by the attempt holding lease `epoch`. Each
    /// attempt writes under its own key, so an attempt whose lease was lost and handed on (a
    /// worker paused past its lease, then resumed) cannot overwrite the parts its successor
    /// wrote; [`Blobs::output`] picks the right one.
    pub async fn put_output_part(&self, job: JobId, epoch: i64, part: u32, bytes: Bytes) -> Result<(), BlobError> {
        self.put(&output_key(job, part, epoch), bytes).await
    }

    /// Deletes every output part stored for a job, by any attempt (none stored is not an error).
    pub async fn delete_output(&self, job: JobId) -> Result<(), BlobError> {
        for meta in self.list(&output_dir(job)).await? {
            self.delete(&meta.location).await?;
        }
        Ok(())
    }

    /// The keys of a job's output parts `0..parts`, each the one of the highest lease epoch.
    ///
    /// Why the highest: an attempt resumes from the last acknowledged checkpoint, whose parts
    /// were all written by the attempts that led to it, and writes every part from there on.
    /// A later claim has a higher epoch, so the attempt that ended the job wrote every part past
    /// its checkpoint under the highest epoch; an attempt that lost its lease (lower epoch) may
    /// write a part after the fact but never wins over it. The same holds for the parts before
    /// that checkpoint, one checkpoint back at a time. Errors with [`BlobError::NotFound`]
    /// when a part is missing.
    async fn output_keys(&self, job: JobId, parts: u32) -> Result<Vec<Path>, BlobError> {
        let mut best: Vec<Option<(i64, Path)>> = vec![None; parts as usize];
        for meta in self.list(&output_dir(job)).await? {
            let Some((part, epoch)) = meta.location.filename().and_then(parse_output_name) else {
                tracing::warn!(key = %meta.location, "a blob under a job's output is not an output part; skipped");
                continue;
            };
            if let Some(slot) = best.get_mut(part as usize)
                && slot.as_ref().is_none_or(|(e, _)| epoch > *e)
            {
                *slot = Some((epoch, meta.location));
            }
        }
        best.into_iter()
            .enumerate()
            .map(|(part, key)| {
                key.map(|(_, k)| k).ok_or_else(|| BlobError::NotFound(format!("{}/{part:08}", output_dir(job))))
            })
            .collect()
    }

    /// The output parts `0..parts` of a job, in order, as one stream of bytes (see
    /// [`Blobs::put_output_part`] for which attempt's parts are read).
    pub fn output(&self, job: JobId, parts: u32) -> BoxStream<'static, Result<Bytes, BlobError>> {
        let this = self.clone();
        async move {
            let keys = this.output_keys(job, parts).await?;
            Ok::<_, BlobError>(futures::stream::iter(keys).then(move |key| {
                let this = this.clone();
                async move { this.get(&key).await }
            }))
        }
        .try_flatten_stream()
        .boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn components_are_verified_and_outputs_stream_in_order() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let blobs = Blobs::local(dir.path())?;
        let bytes = Bytes::from_static(b"\0asm component bytes");
        let d = Digest::of(&bytes);
        blobs.put_component(d, bytes.clone()).await?;
        assert_eq!(blobs.component(d).await?, bytes);

        // Listed with their sizes, and deleted by digest.
        let other = Bytes::from_static(b"\0asm another component");
        blobs.put_component(Digest::of(&other), other.clone()).await?;
        let mut listed = blobs.components().await?;
        listed.sort();
        let mut expected = vec![(d, bytes.len() as u64), (Digest::of(&other), other.len() as u64)];
        expected.sort();
        assert_eq!(listed, expected);
        assert!(blobs.delete_component(Digest::of(&other)).await?);
        assert!(!blobs.delete_component(Digest::of(&other)).await?, "deleted already");
        assert_eq!(blobs.components().await?, vec![(d, bytes.len() as u64)]);

        // Tampered bytes on disk are refused.
        std::fs::write(dir.path().join(format!("components/{d}")), b"evil")?;
        assert!(matches!(blobs.component(d).await, Err(BlobError::DigestMismatch { .. })));
        assert!(matches!(blobs.component(Digest::of(b"x")).await, Err(BlobError::NotFound(_))));

        let job = JobId::new();
        blobs.put_output_part(job, 1, 1, Bytes::from_static(b"world")).await?;
        blobs.put_output_part(job, 1, 0, Bytes::from_static(b"hello ")).await?;
        let all: Vec<Bytes> = blobs.output(job, 2).try_collect().await?;
        assert_eq!(all.concat(), b"hello world");
        let missing: Result<Vec<Bytes>, _> = blobs.output(job, 3).try_collect().await;
        assert!(matches!(missing, Err(BlobError::NotFound(ref k)) if k.ends_with("/00000002")), "{missing:?}");

        // Deleting the output removes the parts and the job's emptied directory, and nothing else.
        let other = JobId::new();
        blobs.put_output_part(other, 1, 0, Bytes::from_static(b"kept")).await?;
        blobs.delete_output(job).await?;
        assert!(!dir.path().join(format!("outputs/{job}")).exists());
        let kept: Vec<Bytes> = blobs.output(other, 1).try_collect().await?;
        assert_eq!(kept.concat(), b"kept");
        Ok(())
    }

    #[tokio::test]
    async fn a_part_written_late_by_an_attempt_that_lost_its_lease_does_not_replace_its_successors()
    -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let blobs = Blobs::local(dir.path())?;
        let job = JobId::new();
        // Epoch 1 wrote part 0 and checkpointed; it was paused past its lease, and epoch 2
        // resumed from that checkpoint and wrote parts 1 and 2.
        blobs.put_output_part(job, 1, 0, Bytes::from_static(b"a")).await?;
        blobs.put_output_part(job, 2, 1, Bytes::from_static(b"b")).await?;
        blobs.put_output_part(job, 2, 2, Bytes::from_static(b"c")).await?;
        // Epoch 1, resumed, writes its own parts 1 and 2 after the fact (a non-deterministic
        // job: other bytes).
        blobs.put_output_part(job, 1, 1, Bytes::from_static(b"X")).await?;
        blobs.put_output_part(job, 1, 2, Bytes::from_static(b"Y")).await?;
        let all: Vec<Bytes> = blobs.output(job, 3).try_collect().await?;
        assert_eq!(all.concat(), b"abc");

        // A part stored before parts were keyed by epoch is still read, below any epoch.
        let old = JobId::new();
        blobs.put(&Path::from(format!("outputs/{old}/00000000")), Bytes::from_static(b"old")).await?;
        let all: Vec<Bytes> = blobs.output(old, 1).try_collect().await?;
        assert_eq!(all.concat(), b"old");
        // Deleting an output deletes every attempt's parts; a job without parts has none to delete.
        blobs.delete_output(job).await?;
        blobs.delete_output(old).await?;
        blobs.delete_output(JobId::new()).await?;
        let outputs = dir.path().join("outputs");
        assert!(!outputs.exists() || std::fs::read_dir(&outputs)?.next().is_none());
        Ok(())
    }

    #[tokio::test]
    async fn spilled_bodies_left_behind_are_purged_by_age() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let blobs = Blobs::local(dir.path())?;
        assert_eq!(blobs.purge_spill(crate::ids::now_ms() + 60_000).await?, 0, "nothing spilled yet");
        let a = blobs.put_spill(Bytes::from_static(b"a")).await?;
        let b = blobs.put_spill(Bytes::from_static(b"b")).await?;
        blobs.put_output_part(JobId::new(), 1, 0, Bytes::from_static(b"not a spill")).await?;
        // Stored after the cut-off: kept.
        assert_eq!(blobs.purge_spill(crate::ids::now_ms() - 60_000).await?, 0);
        assert_eq!(blobs.take_spill(&a).await?, Bytes::from_static(b"a"));
        // Stored before it: deleted, and nothing outside `spill/`.
        assert_eq!(blobs.purge_spill(crate::ids::now_ms() + 60_000).await?, 1);
        assert!(matches!(blobs.take_spill(&b).await, Err(BlobError::NotFound(_))));
        assert_eq!(std::fs::read_dir(dir.path().join("outputs"))?.count(), 1);
        Ok(())
    }

    #[tokio::test]
    async fn streamed_inputs_are_hashed_and_limited() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let blobs = Blobs::local(dir.path())?;
        let chunks =
            || futures::stream::iter((0..40u8).map(|i| Ok::<_, std::io::Error>(Bytes::from(vec![i; 256 * 1024]))));
        let whole: Vec<u8> = (0..40u8).flat_map(|i| vec![i; 256 * 1024]).collect();
        let (digest, size) = blobs.put_input_stream(chunks(), 10 << 20).await?;
        assert_eq!((digest, size), (Digest::of(&whole), whole.len() as u64));
        assert_eq!(blobs.input_range(digest, 1000, 300_000).await?, whole[1000..300_000]);

        // Over the limit: refused, and nothing is left behind.
        let err = blobs.put_input_stream(chunks(), 1 << 20).await.err();
        assert!(matches!(err, Some(StreamError::TooLarge { limit }) if limit == 1 << 20), "{err:?}");
        let staging = dir.path().join("staging");
        assert!(!staging.exists() || std::fs::read_dir(&staging)?.next().is_none());
        Ok(())
    }
}
