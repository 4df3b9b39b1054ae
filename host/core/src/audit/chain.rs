//! The hash chain: recomputing it, in memory or page by page from a store.

use std::collections::{BTreeMap, BTreeSet};

use super::stream;
use crate::store::{AuditEvent, GENESIS_HASH, Store, StoreError, event_hash};

/// A verified chain.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ChainReport {
    /// How many events the chain holds.
    pub events: u64,
    /// The last event's hash: what a checkpoint commits to.
    pub head: String,
}

/// The first place a tenant's chain is broken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ChainBreak {
    /// Sequence numbers jump: records were removed.
    #[error(
        "event {expected} is missing: the chain jumps from {before} to {found} (records were removed)"
    )]
    Missing {
        /// The sequence number that should come next.
        expected: u64,
        /// The one before the gap.
        before: u64,
        /// The one found instead.
        found: u64,
    },
    /// An event does not point at the hash of the one before it.
    #[error(
        "event {seq} does not follow event {before}: it names {named} as its predecessor's hash, but that is {actual} (records were reordered or replaced)"
    )]
    Unlinked {
        /// The event.
        seq: u64,
        /// The event before it.
        before: u64,
        /// The predecessor hash it names.
        named: String,
        /// The predecessor's actual hash.
        actual: String,
    },
    /// An event's content no longer matches its hash.
    #[error(
        "event {seq} ({kind} of {tx_id}) was changed: its content hashes to {computed}, but it records {stored}"
    )]
    Changed {
        /// The event.
        seq: u64,
        /// Its kind, as stored now.
        kind: String,
        /// Its transaction.
        tx_id: String,
        /// The hash of its content as stored now.
        computed: String,
        /// The hash it records.
        stored: String,
    },
}

/// Recomputes a tenant's chain from its first event and reports the first
/// broken link. (Events cut off the end leave an intact, shorter chain: a
/// checkpoint of an earlier length and head shows that.)
pub fn verify_chain(events: &[AuditEvent]) -> Result<ChainReport, ChainBreak> {
    let mut verifier = ChainVerifier::new();
    for e in events {
        verifier.push(e)?;
    }
    Ok(verifier.report())
}

/// Checks a chain one event at a time, so a chain of any length is verified
/// in constant memory.
#[derive(Debug, Clone)]
pub struct ChainVerifier {
    prev_hash: String,
    prev_seq: u64,
}

impl Default for ChainVerifier {
    fn default() -> Self {
        Self::new()
    }
}

impl ChainVerifier {
    /// Starts at the beginning of a chain.
    pub fn new() -> Self {
        ChainVerifier {
            prev_hash: GENESIS_HASH.to_string(),
            prev_seq: 0,
        }
    }

    /// Continues after a point already trusted, such as a signed checkpoint:
    /// the next event must be `events + 1` and name `head` as its predecessor.
    pub fn resume(events: u64, head: &str) -> Self {
        ChainVerifier {
            prev_hash: head.to_string(),
            prev_seq: events,
        }
    }

    /// Checks the next event.
    pub fn push(&mut self, e: &AuditEvent) -> Result<(), ChainBreak> {
        let (prev_seq, prev_hash) = (self.prev_seq, &self.prev_hash);
        if e.seq != prev_seq + 1 {
            return Err(ChainBreak::Missing {
                expected: prev_seq + 1,
                before: prev_seq,
                found: e.seq,
            });
        }
        if e.prev_hash != *prev_hash {
            return Err(ChainBreak::Unlinked {
                seq: e.seq,
                before: prev_seq,
                named: e.prev_hash.clone(),
                actual: prev_hash.clone(),
            });
        }
        let computed = event_hash(
            &e.prev_hash,
            e.seq,
            &e.audit_id,
            &e.tx_id,
            e.at_ms,
            &e.event,
            e.retain_until_ms,
        );
        if computed != e.hash {
            return Err(ChainBreak::Changed {
                seq: e.seq,
                kind: e.event.kind.clone(),
                tx_id: e.tx_id.clone(),
                computed,
                stored: e.hash.clone(),
            });
        }
        self.prev_hash = e.hash.clone();
        self.prev_seq = e.seq;
        Ok(())
    }

    /// The chain checked so far.
    pub fn report(&self) -> ChainReport {
        ChainReport {
            events: self.prev_seq,
            head: self.prev_hash.clone(),
        }
    }
}

/// Why a stored chain could not be verified.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// The chain is broken.
    #[error(transparent)]
    Broken(#[from] ChainBreak),
    /// The store could not be read.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A stored chain, verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredChain {
    /// Its length and head.
    pub report: ChainReport,
    /// The head hash at each length asked for (that the chain reaches).
    pub heads: BTreeMap<u64, String>,
}

/// Verifies a tenant's stored chain page by page, from the start or from a
/// trusted point, noting the head hash at each length in `heads_at` (so
/// checkpoints can be checked in the same pass). `progress` hears the count
/// of events checked after each page.
pub fn verify_stored(
    store: &dyn Store,
    tenant: &str,
    from: Option<(u64, &str)>,
    heads_at: &BTreeSet<u64>,
    progress: &mut dyn FnMut(u64),
) -> Result<StoredChain, VerifyError> {
    let mut verifier = match from {
        Some((events, head)) => ChainVerifier::resume(events, head),
        None => ChainVerifier::new(),
    };
    let mut heads = BTreeMap::new();
    if heads_at.contains(&verifier.prev_seq) {
        heads.insert(verifier.prev_seq, verifier.prev_hash.clone());
    }
    for page in stream::event_pages(store, tenant, verifier.prev_seq) {
        for e in &page? {
            verifier.push(e)?;
            if heads_at.contains(&e.seq) {
                heads.insert(e.seq, e.hash.clone());
            }
        }
        progress(verifier.prev_seq);
    }
    Ok(StoredChain {
        report: verifier.report(),
        heads,
    })
}
