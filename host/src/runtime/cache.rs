//! On-disk cache of compiled components.
//!
//! Files are named `{sha256 of the component}-{engine hash}.cwasm`, where the engine hash is a
//! SHA-256 over [`Engine::precompile_compatibility_hash`], so an upgraded or reconfigured engine
//! never loads an artifact it cannot run. Only files this host wrote are ever deserialized
//! (deserializing is `unsafe` because the bytes are trusted as machine code); tenants' bytes are
//! always compiled, never deserialized.

use std::hash::{Hash, Hasher};
use std::path::PathBuf;

use anyhow::Context as _;
use sha2::{Digest as _, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

use crate::ids::Digest;

/// Compiled artifacts of one engine configuration in one directory.
pub struct ArtifactCache {
    engine: Engine,
    dir: PathBuf,
    engine_hash: String,
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
        Ok(Self { engine: engine.clone(), dir, engine_hash })
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
            Ok(c) => Some(c),
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
}
