//! Signed checkpoints: a tenant's chain length and head hash, signed with an
//! Ed25519 key kept outside the database. Whoever holds a checkpoint can later
//! show that nothing before it was rewritten, removed or cut off, even by
//! someone who recomputed every hash after editing the records.

use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use serde::{Deserialize, Serialize};

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::{ChainBreak, ChainReport, StoredChain, verify_chain};
use crate::store::AuditEvent;

/// A signed statement: "tenant T's chain had N events ending in hash H at time A".
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// The tenant.
    pub tenant: String,
    /// Events in the chain when signed.
    pub events: u64,
    /// The last event's hash.
    pub head: String,
    /// When it was signed (ms since the epoch).
    pub at_ms: u64,
    /// The signer's Ed25519 public key, hex.
    pub public_key: String,
    /// The signature over [`Checkpoint::message`], hex.
    pub signature: String,
}

/// Why a checkpoint does not hold.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CheckpointError {
    /// The signature or key is not valid.
    #[error(
        "checkpoint of {tenant} at {events} events: the signature does not verify with its key"
    )]
    BadSignature {
        /// The tenant.
        tenant: String,
        /// Its length.
        events: u64,
    },
    /// Signed by another key than the trusted one.
    #[error("checkpoint of {tenant} was signed by {found}, not the trusted key {trusted}")]
    UntrustedKey {
        /// The tenant.
        tenant: String,
        /// The key that signed.
        found: String,
        /// The key trusted.
        trusted: String,
    },
    /// The chain is shorter than the checkpoint: records were cut off.
    #[error(
        "checkpoint of {tenant} names {events} events, but the chain holds only {found}: records were removed from its end"
    )]
    Truncated {
        /// The tenant.
        tenant: String,
        /// Its length.
        events: u64,
        /// The chain's length now.
        found: u64,
    },
    /// The chain no longer has the signed head at the signed length.
    #[error(
        "checkpoint of {tenant}: event {events} now hashes to {found}, not the signed {head}: the chain was rewritten"
    )]
    Rewritten {
        /// The tenant.
        tenant: String,
        /// Its length.
        events: u64,
        /// The signed head.
        head: String,
        /// The hash found there now.
        found: String,
    },
    /// The chain itself is broken.
    #[error(transparent)]
    Chain(#[from] ChainBreak),
}

impl Checkpoint {
    /// The signed bytes: a fixed prefix and the fields, one per line.
    pub fn message(tenant: &str, events: u64, head: &str, at_ms: u64) -> String {
        format!("tiergate-checkpoint-v1\n{tenant}\n{events}\n{head}\n{at_ms}")
    }

    /// Signs the head of `events` (a tenant's whole chain, verified first).
    pub fn sign(
        key: &SigningKey,
        tenant: &str,
        events: &[AuditEvent],
        at_ms: u64,
    ) -> Result<Self, ChainBreak> {
        Ok(Self::sign_head(key, tenant, &verify_chain(events)?, at_ms))
    }

    /// Signs a chain already verified.
    pub fn sign_head(key: &SigningKey, tenant: &str, chain: &ChainReport, at_ms: u64) -> Self {
        let message = Self::message(tenant, chain.events, &chain.head, at_ms);
        Checkpoint {
            tenant: tenant.to_string(),
            events: chain.events,
            head: chain.head.clone(),
            at_ms,
            public_key: hex(key.verifying_key().as_bytes()),
            signature: hex(&key.sign(message.as_bytes()).to_bytes()),
        }
    }

    /// Checks the signature (against `trusted`, a hex public key, when given)
    /// and that `events` still begin with the signed prefix.
    pub fn check(
        &self,
        events: &[AuditEvent],
        trusted: Option<&str>,
    ) -> Result<(), CheckpointError> {
        self.check_signature(trusted)?;
        let count = self.events as usize;
        let head = match events.len() >= count {
            true => Some(verify_chain(&events[..count])?.head),
            false => None,
        };
        self.check_head(events.len() as u64, head.as_deref(), trusted)
    }

    /// Checks the signature and the chain as verified elsewhere (such as by
    /// [`verify_stored`](super::verify_stored)): its length now, and its head
    /// hash at the signed length (`None` when it no longer reaches it).
    pub fn check_head(
        &self,
        chain_events: u64,
        head_at_signed_length: Option<&str>,
        trusted: Option<&str>,
    ) -> Result<(), CheckpointError> {
        self.check_signature(trusted)?;
        if chain_events < self.events {
            return Err(CheckpointError::Truncated {
                tenant: self.tenant.clone(),
                events: self.events,
                found: chain_events,
            });
        }
        match head_at_signed_length {
            Some(head) if head == self.head => Ok(()),
            found => Err(CheckpointError::Rewritten {
                tenant: self.tenant.clone(),
                events: self.events,
                head: self.head.clone(),
                found: found.unwrap_or("nothing").to_string(),
            }),
        }
    }

    fn check_signature(&self, trusted: Option<&str>) -> Result<(), CheckpointError> {
        if let Some(trusted) = trusted.filter(|t| *t != self.public_key) {
            return Err(CheckpointError::UntrustedKey {
                tenant: self.tenant.clone(),
                found: self.public_key.clone(),
                trusted: trusted.to_string(),
            });
        }
        let bad = || CheckpointError::BadSignature {
            tenant: self.tenant.clone(),
            events: self.events,
        };
        let key = unhex::<32>(&self.public_key)
            .and_then(|k| VerifyingKey::from_bytes(&k).ok())
            .ok_or_else(bad)?;
        let signature = unhex::<64>(&self.signature)
            .map(|s| Signature::from_bytes(&s))
            .ok_or_else(bad)?;
        let message = Self::message(&self.tenant, self.events, &self.head, self.at_ms);
        key.verify(message.as_bytes(), &signature)
            .map_err(|_| bad())
    }
}

/// When checkpoints are due: after this many new events, and at least this
/// often while the chain grows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckpointSchedule {
    /// Sign again once the chain has grown by this many events.
    pub every_events: u64,
    /// Sign again once the last checkpoint is this old (ms), if anything was added.
    pub every_ms: u64,
}

impl Default for CheckpointSchedule {
    /// Every 1000 events, and daily.
    fn default() -> Self {
        CheckpointSchedule {
            every_events: 1000,
            every_ms: 86_400_000,
        }
    }
}

/// Whether a tenant whose chain holds `chain_events` needs a new checkpoint,
/// given its latest one.
pub fn checkpoint_due(
    latest: Option<&Checkpoint>,
    chain_events: u64,
    now_ms: u64,
    schedule: &CheckpointSchedule,
) -> bool {
    match latest {
        None => chain_events > 0,
        Some(c) => {
            chain_events > c.events
                && (chain_events - c.events >= schedule.every_events
                    || now_ms.saturating_sub(c.at_ms) >= schedule.every_ms)
        }
    }
}

/// A file of checkpoints, one JSON object per line, only ever appended to.
/// Keep it (or copies of it) where whoever could rewrite the store cannot.
#[derive(Debug, Clone)]
pub struct CheckpointLog {
    path: PathBuf,
}

impl CheckpointLog {
    /// The log at `path` (created on the first append).
    pub fn new(path: impl Into<PathBuf>) -> Self {
        CheckpointLog { path: path.into() }
    }

    /// Every checkpoint in the log, in order; a missing file holds none.
    pub fn read(&self) -> Result<Vec<Checkpoint>, std::io::Error> {
        let text = match std::fs::read_to_string(&self.path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        text.lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
            .map(|(i, l)| {
                serde_json::from_str(l).map_err(|e| {
                    std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        format!("{}:{}: not a checkpoint: {e}", self.path.display(), i + 1),
                    )
                })
            })
            .collect()
    }

    /// The latest checkpoint of each tenant.
    pub fn latest(&self) -> Result<BTreeMap<String, Checkpoint>, std::io::Error> {
        let mut latest = BTreeMap::new();
        for c in self.read()? {
            latest.insert(c.tenant.clone(), c);
        }
        Ok(latest)
    }

    /// The checkpoints of `tenant` signed by `public_key` (hex), in order.
    pub fn of(&self, tenant: &str, public_key: &str) -> Result<Vec<Checkpoint>, std::io::Error> {
        Ok(self
            .read()?
            .into_iter()
            .filter(|c| c.tenant == tenant && c.public_key == public_key)
            .collect())
    }

    /// Appends checkpoints and syncs them to disk. A new log is readable by
    /// its owner only.
    pub fn append(&self, checkpoints: &[Checkpoint]) -> Result<(), std::io::Error> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .mode(0o600)
            .open(&self.path)?;
        for c in checkpoints {
            let line = serde_json::to_string(c).map_err(std::io::Error::other)?;
            writeln!(file, "{line}")?;
        }
        file.sync_all()
    }

    /// Where the log is.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// A tenant's chain checked against the checkpoints one key signed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CheckpointsChecked {
    /// The signing key trusted, hex.
    pub public_key: String,
    /// The tenant's checkpoints by that key that were checked.
    pub checked: u64,
    /// The chain length of the latest one.
    pub latest_events: Option<u64>,
    /// When the latest one was signed (ms since the epoch).
    pub latest_at_ms: Option<u64>,
    /// The first checkpoint that does not hold, and why.
    pub broken: Option<String>,
}

/// The chain lengths `checkpoints` were signed at: what
/// [`verify_stored`](super::verify_stored) must note heads at for
/// [`check_checkpoints`].
pub fn checkpoint_lengths(checkpoints: &[Checkpoint]) -> std::collections::BTreeSet<u64> {
    checkpoints.iter().map(|c| c.events).collect()
}

/// Checks each of `checkpoints` (signed by `public_key`) against a chain
/// verified with their lengths noted; the first that fails is named.
pub fn check_checkpoints(
    checkpoints: &[Checkpoint],
    chain: &StoredChain,
    public_key: &str,
) -> CheckpointsChecked {
    let broken = checkpoints.iter().find_map(|c| {
        let head = chain.heads.get(&c.events).map(String::as_str);
        c.check_head(chain.report.events, head, Some(public_key))
            .err()
            .map(|e| e.to_string())
    });
    let latest = checkpoints.iter().max_by_key(|c| (c.events, c.at_ms));
    CheckpointsChecked {
        public_key: public_key.to_string(),
        checked: checkpoints.len() as u64,
        latest_events: latest.map(|c| c.events),
        latest_at_ms: latest.map(|c| c.at_ms),
        broken,
    }
}

/// A new signing key from the operating system's entropy.
pub fn generate_key() -> std::io::Result<SigningKey> {
    use std::io::Read;
    let mut seed = [0u8; 32];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut seed)?;
    Ok(SigningKey::from_bytes(&seed))
}

/// A signing key as stored in a key file: 64 hex digits.
pub fn key_from_hex(text: &str) -> Option<SigningKey> {
    unhex::<32>(text.trim()).map(|b| SigningKey::from_bytes(&b))
}

/// A signing key as written to a key file.
pub fn key_to_hex(key: &SigningKey) -> String {
    hex(&key.to_bytes())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex<const N: usize>(text: &str) -> Option<[u8; N]> {
    if text.len() != 2 * N {
        return None;
    }
    let mut out = [0u8; N];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

/// Why signing checkpoints failed.
#[derive(Debug, thiserror::Error)]
pub enum SignError {
    /// A tenant's chain is broken, or no longer matches its last checkpoint:
    /// nothing is signed for it.
    #[error("tenant {tenant}: not signing a chain that does not verify: {source}")]
    Chain {
        /// The tenant.
        tenant: String,
        /// What is wrong.
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The store could not be read.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    /// The checkpoint log could not be read or written.
    #[error("checkpoint log {path}: {source}")]
    Log {
        /// The log.
        path: PathBuf,
        /// The failure.
        source: std::io::Error,
    },
}

/// Signs and appends a checkpoint for every tenant that is due under
/// `schedule` (every tenant with events when `schedule` is `None`).
///
/// A tenant's chain is verified from its latest checkpoint in the log
/// signed with this key (or from the start), so a run costs the events
/// added since. Returns the checkpoints written; when any tenant's chain
/// does not verify, nothing is written and its error is returned.
pub fn sign_due(
    store: &dyn crate::store::Store,
    key: &SigningKey,
    log: &CheckpointLog,
    schedule: Option<&CheckpointSchedule>,
    now_ms: u64,
) -> Result<Vec<Checkpoint>, SignError> {
    let (due, mut refused) = due_checkpoints(store, key, log, schedule, now_ms)?;
    if !refused.is_empty() {
        return Err(refused.swap_remove(0));
    }
    log.append(&due).map_err(|source| SignError::Log {
        path: log.path().to_path_buf(),
        source,
    })?;
    Ok(due)
}

/// [`sign_due`], tenant by tenant: the tenants whose chains verify are
/// signed and appended, and each other tenant's error is returned beside
/// them, so one broken chain stops no other tenant's checkpoints.
pub fn sign_due_each(
    store: &dyn crate::store::Store,
    key: &SigningKey,
    log: &CheckpointLog,
    schedule: Option<&CheckpointSchedule>,
    now_ms: u64,
) -> Result<(Vec<Checkpoint>, Vec<SignError>), SignError> {
    let (due, refused) = due_checkpoints(store, key, log, schedule, now_ms)?;
    log.append(&due).map_err(|source| SignError::Log {
        path: log.path().to_path_buf(),
        source,
    })?;
    Ok((due, refused))
}

/// The checkpoints due, signed but not written, and the tenants refused.
/// Only reading the log or the store fails the whole run.
fn due_checkpoints(
    store: &dyn crate::store::Store,
    key: &SigningKey,
    log: &CheckpointLog,
    schedule: Option<&CheckpointSchedule>,
    now_ms: u64,
) -> Result<(Vec<Checkpoint>, Vec<SignError>), SignError> {
    let log_error = |source| SignError::Log {
        path: log.path().to_path_buf(),
        source,
    };
    let ours = hex(key.verifying_key().as_bytes());
    let latest: BTreeMap<String, Checkpoint> = log
        .read()
        .map_err(log_error)?
        .into_iter()
        .filter(|c| c.public_key == ours)
        .map(|c| (c.tenant.clone(), c))
        .collect();
    let mut signed = Vec::new();
    let mut refused = Vec::new();
    for tenant in store.tenants()? {
        match sign_one(
            store,
            key,
            &ours,
            &tenant,
            latest.get(&tenant),
            schedule,
            now_ms,
        ) {
            Ok(Some(c)) => signed.push(c),
            Ok(None) => {}
            Err(SignError::Store(e)) => return Err(e.into()),
            Err(e) => refused.push(e),
        }
    }
    Ok((signed, refused))
}

/// A tenant's checkpoint when one is due, resuming from its last one.
fn sign_one(
    store: &dyn crate::store::Store,
    key: &SigningKey,
    ours: &str,
    tenant: &str,
    last: Option<&Checkpoint>,
    schedule: Option<&CheckpointSchedule>,
    now_ms: u64,
) -> Result<Option<Checkpoint>, SignError> {
    let from = last.map(|c| (c.events, c.head.as_str()));
    let broken = |source: Box<dyn std::error::Error + Send + Sync>| SignError::Chain {
        tenant: tenant.to_string(),
        source,
    };
    if let Some(c) = last {
        c.check_signature(Some(ours))
            .map_err(|e| broken(Box::new(e)))?;
        // Resuming is sound only if the signed head is still where it was.
        let at = store.events_after(tenant, c.events.saturating_sub(1), 1)?;
        let head = at.first().filter(|e| e.seq == c.events).map(|e| &e.hash);
        let chain_events = match head {
            Some(_) => c.events,
            None => store.events_after(tenant, 0, usize::MAX)?.len() as u64,
        };
        c.check_head(chain_events, head.map(String::as_str), Some(ours))
            .map_err(|e| broken(Box::new(e)))?;
    }
    let chain = match super::verify_stored(store, tenant, from, &Default::default(), &mut |_| {}) {
        Ok(chain) => chain.report,
        Err(super::VerifyError::Store(e)) => return Err(e.into()),
        Err(super::VerifyError::Broken(e)) => return Err(broken(Box::new(e))),
    };
    let due = match schedule {
        Some(s) => checkpoint_due(last, chain.events, now_ms, s),
        None => true,
    };
    Ok(due.then(|| Checkpoint::sign_head(key, tenant, &chain, now_ms)))
}
