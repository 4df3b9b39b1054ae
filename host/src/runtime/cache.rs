//! Compiled policies kept on disk, so a restart loads machine code instead
//! of compiling every policy again (hundreds of milliseconds each).
//!
//! A file is named by the component's digest and the engine's compatibility
//! hash (wasmtime version, settings, CPU features), so a policy compiled
//! under other settings is never loaded. Only files this cache wrote are
//! deserialized; a tenant's upload is always a `.wasm` component, checked
//! and compiled here.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::{Path, PathBuf};

use wasmtime::Engine;
use wasmtime::component::Component;

use super::{LoadError, RuntimeError};

pub(super) struct CompiledCache {
    dir: PathBuf,
    /// Which engine settings the files were compiled under.
    engine_tag: String,
}

impl CompiledCache {
    pub(super) fn open(dir: &Path, engine: &Engine) -> Result<Self, RuntimeError> {
        std::fs::create_dir_all(dir).map_err(|e| {
            RuntimeError(format!(
                "cannot create the compiled-policy cache {}: {e}",
                dir.display()
            ))
        })?;
        let mut hasher = DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        Ok(CompiledCache {
            dir: dir.to_path_buf(),
            engine_tag: format!("{:016x}", hasher.finish()),
        })
    }

    /// The compiled component for `bytes` (whose digest is `digest`): from
    /// the cache when it holds it, else compiled now and stored.
    pub(super) fn component(
        &self,
        engine: &Engine,
        bytes: &[u8],
        digest: &str,
    ) -> Result<Component, LoadError> {
        let hex = digest.trim_start_matches("sha256:");
        let path = self.dir.join(format!("{hex}-{}.cwasm", self.engine_tag));
        // Read into memory rather than mapped: a file changed on disk while
        // the process runs must not change (or fault) code already loaded.
        if let Ok(code) = std::fs::read(&path) {
            // SAFETY: the file was written by `store` below from a component
            // this host compiled, under an engine with the same compatibility
            // hash; wasmtime checks the header and refuses other engines' files.
            match unsafe { Component::deserialize(engine, &code) } {
                Ok(component) => return Ok(component),
                Err(e) => tracing::warn!(
                    path = %path.display(),
                    error = %e,
                    "cached compiled policy is unusable; compiling again"
                ),
            }
        }
        let component =
            Component::new(engine, bytes).map_err(|e| LoadError::Invalid(format!("{e:#}")))?;
        if let Err(e) = self.store(&component, &path) {
            // The cache only saves time; a policy still loads without it.
            tracing::warn!(path = %path.display(), error = %e, "cannot cache the compiled policy");
        }
        Ok(component)
    }

    fn store(&self, component: &Component, path: &Path) -> Result<(), String> {
        let code = component.serialize().map_err(|e| e.to_string())?;
        // Written whole under another name, then renamed: a reader never
        // sees half a file.
        let partial = path.with_extension(format!("partial-{}", std::process::id()));
        std::fs::write(&partial, code)
            .and_then(|()| std::fs::rename(&partial, path))
            .map_err(|e| e.to_string())
    }
}
