//! The tenants' payment keys. They live with the service (a key file only
//! its user can read, or an environment variable), never in a tenant's
//! rules, and no API returns them: only their public addresses.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use alloy::signers::local::PrivateKeySigner;

use crate::error::X402Error;

/// Where a tenant's key is read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    /// A file holding the key as 64 hex digits (`0x` optional), readable by
    /// its owner only (mode 0600 or stricter).
    File(PathBuf),
    /// An environment variable holding the key the same way.
    Env(String),
}

/// Each tenant's payment key.
#[derive(Default, Clone)]
pub struct PaymentKeys {
    by_tenant: BTreeMap<String, PrivateKeySigner>,
}

impl std::fmt::Debug for PaymentKeys {
    // The addresses only: a key never reaches a log.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map()
            .entries(self.by_tenant.iter().map(|(t, k)| (t, k.address())))
            .finish()
    }
}

impl PaymentKeys {
    /// No keys: no tenant can pay x402 resources.
    pub fn new() -> Self {
        PaymentKeys::default()
    }

    /// Reads `tenant`'s key from `source`.
    pub fn load(&mut self, tenant: &str, source: &KeySource) -> Result<(), X402Error> {
        let fail = |message: String| X402Error::Key {
            tenant: tenant.into(),
            message,
        };
        let text = match source {
            KeySource::File(path) => read_private(path).map_err(fail)?,
            KeySource::Env(name) => std::env::var(name).map_err(|_| {
                fail(format!(
                    "environment variable {name} is not set (or not UTF-8)"
                ))
            })?,
        };
        let hex = text.trim();
        let hex = hex.strip_prefix("0x").unwrap_or(hex);
        if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(fail(format!(
                "{} does not hold a secp256k1 private key: write it as 64 hex digits",
                describe(source)
            )));
        }
        let key: PrivateKeySigner = hex.parse().map_err(|e| {
            fail(format!(
                "{} is not a usable private key: {e}",
                describe(source)
            ))
        })?;
        self.by_tenant.insert(tenant.to_string(), key);
        Ok(())
    }

    /// Makes a new key for `tenant` in `path` (mode 0600) unless the file
    /// exists, then reads it: for the demo tenant.
    pub fn load_or_create(&mut self, tenant: &str, path: &Path) -> Result<(), X402Error> {
        if !path.exists() {
            write_new_key(path).map_err(|e| X402Error::Key {
                tenant: tenant.into(),
                message: format!("cannot write a new key to {}: {e}", path.display()),
            })?;
        }
        self.load(tenant, &KeySource::File(path.to_path_buf()))
    }

    /// `tenant`'s key.
    pub(crate) fn key(&self, tenant: &str) -> Result<&PrivateKeySigner, X402Error> {
        self.by_tenant
            .get(tenant)
            .ok_or_else(|| X402Error::NoKey(tenant.into()))
    }

    /// `tenant`'s paying address, checksummed, when it has a key.
    pub fn address(&self, tenant: &str) -> Option<String> {
        self.by_tenant
            .get(tenant)
            .map(|k| k.address().to_checksum(None))
    }

    /// The tenants with a key.
    pub fn tenants(&self) -> impl Iterator<Item = &str> {
        self.by_tenant.keys().map(String::as_str)
    }
}

fn describe(source: &KeySource) -> String {
    match source {
        KeySource::File(path) => format!("key file {}", path.display()),
        KeySource::Env(name) => format!("environment variable {name}"),
    }
}

/// A key file's text, refused when others may read it.
fn read_private(path: &Path) -> Result<String, String> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(path)
        .map_err(|e| format!("cannot read key file {}: {e}", path.display()))?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(format!(
            "key file {} has mode {mode:o}: others could read the tenant's payment key; run `chmod 600 {}`",
            path.display(),
            path.display()
        ));
    }
    std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read key file {}: {e}", path.display()))
}

/// 32 bytes from the system's randomness.
pub(crate) fn random_32() -> std::io::Result<[u8; 32]> {
    use std::io::Read;
    let mut bytes = [0u8; 32];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    Ok(bytes)
}

fn write_new_key(path: &Path) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    // Any 32 bytes below the curve order is a key; a random draw above it
    // has odds of about 2^-128, and is drawn again.
    let key = loop {
        let bytes = random_32()?;
        if PrivateKeySigner::from_slice(&bytes).is_ok() {
            break bytes;
        }
    };
    let hex: String = key.iter().map(|b| format!("{b:02x}")).collect();
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    writeln!(file, "0x{hex}")?;
    file.sync_all()
}
