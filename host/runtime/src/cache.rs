//! Compiled policies kept on disk, so a restart loads machine code instead
//! of compiling every policy again (hundreds of milliseconds each).
//!
//! A file is named by the component's digest and the engine's compatibility
//! hash (wasmtime version, settings, CPU features), so a policy compiled
//! under other settings is never loaded. Only files this cache wrote are
//! deserialized; a tenant's upload is always a `.wasm` component, checked
//! and compiled here.
//!
//! The files are native code that runs unchecked, so each carries a MAC
//! (HMAC-SHA256 over the component's digest, the engine's tag and the code)
//! under a key kept outside the directory, in `<dir>.key` beside it. A file
//! changed, truncated or swapped for another policy's (even one this cache
//! wrote) fails the check and is compiled again, never run. A digest stored
//! beside a file would prove nothing: whoever can rewrite the file can
//! rewrite its digest. The key only helps where the directory is easier to
//! write than the key is to read (a cache on shared or less trusted
//! storage, a process or volume that may write `compiled/` but not the
//! data directory): whoever can read the key can forge files.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use hmac::{Hmac, Mac};
use sha2::Sha256;
use wasmtime::Engine;
use wasmtime::component::Component;

use super::{LoadError, RuntimeError};

/// Bytes of the MAC at the end of every file.
const TAG_BYTES: usize = 32;
/// Bytes of the key.
const KEY_BYTES: usize = 32;

pub(super) struct CompiledCache {
    dir: PathBuf,
    /// Which engine settings the files were compiled under.
    engine_tag: String,
    key: [u8; KEY_BYTES],
}

impl CompiledCache {
    pub(super) fn open(dir: &Path, engine: &Engine) -> Result<Self, RuntimeError> {
        std::fs::create_dir_all(dir).map_err(|e| {
            RuntimeError::caused(
                format!("cannot create the compiled-policy cache {}", dir.display()),
                e,
            )
        })?;
        let key = key_for(dir)?;
        let mut hasher = DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        Ok(CompiledCache {
            dir: dir.to_path_buf(),
            engine_tag: format!("{:016x}", hasher.finish()),
            key,
        })
    }

    fn path(&self, digest: &str) -> PathBuf {
        let hex = digest.trim_start_matches("sha256:");
        self.dir.join(format!("{hex}-{}.cwasm", self.engine_tag))
    }

    /// Whether a file for `digest` is there (its check comes when it is
    /// loaded).
    pub(super) fn holds(&self, digest: &str) -> bool {
        self.path(digest).is_file()
    }

    /// The compiled component for `bytes` (whose digest is `digest`): from
    /// the cache when it holds it and its MAC checks, else `compile`d now
    /// and stored.
    pub(super) fn component(
        &self,
        engine: &Engine,
        digest: &str,
        compile: impl FnOnce() -> Result<Component, LoadError>,
    ) -> Result<Component, LoadError> {
        let path = self.path(digest);
        if let Ok(mut file) = std::fs::File::open(&path) {
            let mut bytes = Vec::new();
            let checked = match file.read_to_end(&mut bytes) {
                Ok(_) => self.checked(digest, &bytes),
                Err(_) => None,
            };
            match checked {
                Some(code) => match Self::load_checked(engine, &file, code) {
                    Ok(component) => return Ok(component),
                    Err(e) => tracing::warn!(
                        path = %path.display(),
                        error = %e,
                        "cached compiled policy is unusable; compiling again"
                    ),
                },
                None => tracing::warn!(
                    path = %path.display(),
                    "cached compiled policy fails its integrity check (changed, cut or swapped); compiling again"
                ),
            }
        }
        let component = compile()?;
        if let Err(e) = self.store(&component, digest, &path) {
            // The cache only saves time; a policy still loads without it.
            tracing::warn!(path = %path.display(), error = %e, "cannot cache the compiled policy");
        }
        Ok(component)
    }

    /// The component in `file`, whose bytes were just read and checked
    /// (`code`, the file less its MAC).
    ///
    /// Mapped rather than copied: machine code (tens of MB for a Python or
    /// TypeScript policy) is then paged in as it runs, and its pages are the
    /// page cache's, which the kernel may drop and read again. What is
    /// mapped is the file that was checked, through its descriptor, so a
    /// file renamed over the path since is not what runs. A file written
    /// over in place after its check would change code already loaded: this
    /// cache never writes one (it writes a new file and renames it over the
    /// old), and nothing else may write the directory. Where the file cannot
    /// be mapped, the checked bytes are copied.
    fn load_checked(
        engine: &Engine,
        file: &std::fs::File,
        code: &[u8],
    ) -> wasmtime::Result<Component> {
        use std::os::fd::AsRawFd;
        let descriptor = format!("/proc/self/fd/{}", file.as_raw_fd());
        // SAFETY: the MAC proves this cache wrote these bytes, from a
        // component this host compiled for this digest, under an engine
        // with the same compatibility hash; wasmtime checks the header and
        // refuses other engines' files. The mapping is of the same file,
        // which is never written in place (above).
        match unsafe { Component::deserialize_file(engine, &descriptor) } {
            Ok(component) => Ok(component),
            Err(e) => {
                tracing::debug!(error = %e, "cannot map a compiled policy; copying it");
                // SAFETY: as above, for the bytes read and checked.
                unsafe { Component::deserialize(engine, code) }
            }
        }
    }

    /// The code of a file whose MAC checks for `digest`.
    fn checked<'a>(&self, digest: &str, file: &'a [u8]) -> Option<&'a [u8]> {
        let (code, tag) = file.split_at_checked(file.len().checked_sub(TAG_BYTES)?)?;
        self.mac(digest, code).verify_slice(tag).ok()?;
        Some(code)
    }

    #[allow(clippy::expect_used, reason = "HMAC takes a key of any length")]
    fn mac(&self, digest: &str, code: &[u8]) -> Hmac<Sha256> {
        let mut mac =
            Hmac::<Sha256>::new_from_slice(&self.key).expect("HMAC takes a key of any size");
        for part in [
            b"tiergate compiled policy 1".as_slice(),
            digest.as_bytes(),
            self.engine_tag.as_bytes(),
        ] {
            mac.update(&(part.len() as u64).to_le_bytes());
            mac.update(part);
        }
        mac.update(code);
        mac
    }

    fn store(&self, component: &Component, digest: &str, path: &Path) -> Result<(), String> {
        let mut file = component.serialize().map_err(|e| e.to_string())?;
        let tag = self.mac(digest, &file).finalize().into_bytes();
        file.extend_from_slice(&tag);
        // Written whole under another name, then renamed: a reader never
        // sees half a file.
        // Readable by this user only: machine code and tenants' policies.
        let partial = path.with_extension(format!("partial-{}", std::process::id()));
        std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&partial)
            .and_then(|mut f| f.write_all(&file))
            .and_then(|()| std::fs::rename(&partial, path))
            .map_err(|e| e.to_string())
    }
}

/// The cache's key, from `<dir>.key` beside the directory, made (mode 0600)
/// on first use.
fn key_for(dir: &Path) -> Result<[u8; KEY_BYTES], RuntimeError> {
    let path = dir.with_extension("key");
    let failed = |what: &str, e: std::io::Error| {
        RuntimeError::caused(
            format!(
                "cannot {what} the compiled-policy cache's key {}",
                path.display()
            ),
            e,
        )
    };
    let mut key = [0u8; KEY_BYTES];
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
    {
        Ok(mut file) => {
            std::fs::File::open("/dev/urandom")
                .and_then(|mut r| r.read_exact(&mut key))
                .map_err(|e| failed("make", e))?;
            file.write_all(&key)
                .and_then(|()| file.sync_all())
                .map_err(|e| failed("write", e))?;
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            let bytes = std::fs::read(&path).map_err(|e| failed("read", e))?;
            key = bytes.try_into().map_err(|bytes: Vec<u8>| {
                RuntimeError::new(format!(
                    "the compiled-policy cache's key {} holds {} bytes, not {KEY_BYTES}: remove it and the cache directory to start both again",
                    path.display(),
                    bytes.len()
                ))
            })?;
        }
        Err(e) => return Err(failed("create", e)),
    }
    Ok(key)
}
