//! On-disk cache of compiled components.
//!
//! Files are named `{sha256 of the component}-{engine hash}.cwasm`, where the engine hash is a
//! SHA-256 over [`Engine::precompile_compatibility_hash`], so an upgraded or reconfigured engine
//! never loads an artifact it cannot run. Only files this host wrote are ever deserialized
//! (deserializing is `unsafe` because the bytes are trusted as machine code); tenants' bytes are
//! always compiled, never deserialized.
//!
//! A load marks its file used (its modification time); files unused for [`ARTIFACT_IDLE`] are
//! deleted by a sweep that runs at most every [`SWEEP_INTERVAL`], after a compile stored a new one.

use std::hash::{Hash, Hasher};
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

use anyhow::Context as _;
use parking_lot::Mutex;
use sha2::{Digest as _, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

use crate::ids::Digest;

/// An artifact unused for this long is deleted.
pub const ARTIFACT_IDLE: Duration = Duration::from_secs(24 * 3600);
/// Sweeps of the directory run at most this often.
pub const SWEEP_INTERVAL: Duration = Duration::from_secs(600);

/// Compiled artifacts of one engine configuration in one directory.
pub struct ArtifactCache {
    engine: Engine,
    dir: PathBuf,
    engine_hash: String,
    last_sweep: Mutex<Option<Instant>>,
}

struct ShaHasher(Sha256);

impl Hasher for ShaHasher {
    fn finish(&self) -> u64 {
        0
    }
    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
}

impl ArtifactCache {
    /// A cache in `dir` (created when missing).
    pub fn new(engine: &Engine, dir: PathBuf) -> anyhow::Result<Self> {
        std::fs::create_dir_all(&dir).with_context(|| format!("creating artifact cache {}", dir.display()))?;
        let mut h = ShaHasher(Sha256::new());
        engine.precompile_compatibility_hash().hash(&mut h);
        let engine_hash = hex::encode(&h.0.finalize()[..8]);
        Ok(Self { engine: engine.clone(), dir, engine_hash, last_sweep: Mutex::new(None) })
    }

    fn path(&self, digest: Digest) -> PathBuf {
        self.dir.join(format!("{digest}-{}.cwasm", self.engine_hash))
    }

    /// The cached component, if this host compiled it before. A damaged file is removed.
    pub fn load(&self, digest: Digest) -> Option<Component> {
        let path = self.path(digest);
        if !path.exists() {
            return None;
        }
        // SAFETY: the file was written by `store` of this process or an earlier run of this host
        // with the same engine configuration (the engine hash is in its name), into a directory
        // only the host writes. Tenant bytes are never deserialized.
        match unsafe { Component::deserialize_file(&self.engine, &path) } {
            Ok(c) => {
                let _ =
                    std::fs::File::options().append(true).open(&path).and_then(|f| f.set_modified(SystemTime::now()));
                Some(c)
            }
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "dropping unreadable compiled artifact");
                let _ = std::fs::remove_file(&path);
                None
            }
        }
    }

    /// Stores a compiled component; failures are logged and otherwise ignored (the cache is an
    /// optimisation).
    pub fn store(&self, digest: Digest, component: &Component) {
        let path = self.path(digest);
        let result = component.serialize().map_err(anyhow::Error::from).and_then(|bytes| {
            let tmp = path.with_extension(format!("tmp{}", std::process::id()));
            std::fs::write(&tmp, bytes)?;
            std::fs::rename(&tmp, &path)?;
            Ok(())
        });
        if let Err(e) = result {
            tracing::warn!(path = %path.display(), error = %e, "could not cache compiled artifact");
        }
    }

    /// Deletes the artifact of `digest`, if any.
    pub fn remove(&self, digest: Digest) {
        let _ = std::fs::remove_file(self.path(digest));
    }

    /// Deletes the artifacts unused for [`ARTIFACT_IDLE`] (other engines' files included), unless
    /// a sweep ran within [`SWEEP_INTERVAL`].
    pub fn sweep_if_due(&self) {
        {
            let mut last = self.last_sweep.lock();
            if last.is_some_and(|t| t.elapsed() < SWEEP_INTERVAL) {
                return;
            }
            *last = Some(Instant::now());
        }
        let Ok(entries) = std::fs::read_dir(&self.dir) else { return };
        for entry in entries.flatten() {
            let idle = entry
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|idle| idle > ARTIFACT_IDLE);
            if idle && entry.path().extension().is_some_and(|e| e == "cwasm") {
                tracing::debug!(path = %entry.path().display(), "deleting an unused compiled artifact");
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }
}
