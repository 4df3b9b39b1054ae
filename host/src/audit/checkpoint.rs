//! Signed checkpoints: a tenant's chain length and head hash, signed with an
//! Ed25519 key kept outside the database. Whoever holds a checkpoint can later
//! show that nothing before it was rewritten, removed or cut off, even by
//! someone who recomputed every hash after editing the records.

use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use serde::{Deserialize, Serialize};

use super::{ChainBreak, verify_chain};
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
        let report = verify_chain(events)?;
        let message = Self::message(tenant, report.events, &report.head, at_ms);
        Ok(Checkpoint {
            tenant: tenant.to_string(),
            events: report.events,
            head: report.head,
            at_ms,
            public_key: hex(key.verifying_key().as_bytes()),
            signature: hex(&key.sign(message.as_bytes()).to_bytes()),
        })
    }

    /// Checks the signature (against `trusted`, a hex public key, when given)
    /// and that `events` still begin with the signed prefix.
    pub fn check(
        &self,
        events: &[AuditEvent],
        trusted: Option<&str>,
    ) -> Result<(), CheckpointError> {
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
            .map_err(|_| bad())?;
        let count = self.events as usize;
        if events.len() < count {
            return Err(CheckpointError::Truncated {
                tenant: self.tenant.clone(),
                events: self.events,
                found: events.len() as u64,
            });
        }
        let report = verify_chain(&events[..count])?;
        if report.head != self.head {
            return Err(CheckpointError::Rewritten {
                tenant: self.tenant.clone(),
                events: self.events,
                head: self.head.clone(),
                found: report.head,
            });
        }
        Ok(())
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
