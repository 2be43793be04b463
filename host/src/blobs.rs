//! Blob storage: component binaries, large inputs and output parts, in an [`ObjectStore`].
//!
//! Keys are built only here, from typed ids, so no caller can write outside its namespace:
//! - `components/{sha256}`: component bytes, stored once however many tenants upload them;
//! - `inputs/{sha256}`: input blobs;
//! - `outputs/{job id}/{part index, 8 digits}`: output parts in order.

use std::sync::Arc;

use anyhow::Context as _;
use bytes::Bytes;
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

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

fn output_key(job: JobId, part: u32) -> Path {
    Path::from(format!("outputs/{job}/{part:08}"))
}

impl Blobs {
    /// Blob storage over `store`.
    pub fn new(store: Arc<dyn ObjectStore>) -> Self {
        Self { store }
    }

    /// Blob storage in a local directory (created when missing).
    pub fn local(dir: &std::path::Path) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating blob directory {}", dir.display()))?;
        let fs = object_store::local::LocalFileSystem::new_with_prefix(dir)
            .with_context(|| format!("opening blob directory {}", dir.display()))?;
        Ok(Self::new(Arc::new(fs)))
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

    /// Stores an input blob under its digest (idempotent).
    pub async fn put_input(&self, digest: Digest, bytes: Bytes) -> Result<(), BlobError> {
        self.put(&input_key(digest), bytes).await
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

    /// Stores output part `part` of a job (overwriting a part an earlier attempt left).
    pub async fn put_output_part(&self, job: JobId, part: u32, bytes: Bytes) -> Result<(), BlobError> {
        self.put(&output_key(job, part), bytes).await
    }

    /// The output parts `0..parts` of a job, in order, as one stream of bytes.
    pub fn output(&self, job: JobId, parts: u32) -> BoxStream<'static, Result<Bytes, BlobError>> {
        let this = self.clone();
        futures::stream::iter(0..parts)
            .then(move |part| {
                let this = this.clone();
                async move { this.get(&output_key(job, part)).await }
            })
            .into_stream()
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

        // Tampered bytes on disk are refused.
        std::fs::write(dir.path().join(format!("components/{d}")), b"evil")?;
        assert!(matches!(blobs.component(d).await, Err(BlobError::DigestMismatch { .. })));
        assert!(matches!(blobs.component(Digest::of(b"x")).await, Err(BlobError::NotFound(_))));

        let job = JobId::new();
        blobs.put_output_part(job, 1, Bytes::from_static(b"world")).await?;
        blobs.put_output_part(job, 0, Bytes::from_static(b"hello ")).await?;
        let all: Vec<Bytes> = blobs.output(job, 2).try_collect().await?;
        assert_eq!(all.concat(), b"hello world");
        Ok(())
    }
}
