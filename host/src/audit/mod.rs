//! Reading the audit trail back: verifying each tenant's hash chain, and
//! telling one payment's story from its records.

use crate::store::{AuditEvent, GENESIS_HASH, event_hash};

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
    let mut prev_hash = GENESIS_HASH.to_string();
    let mut prev_seq = 0;
    for e in events {
        if e.seq != prev_seq + 1 {
            return Err(ChainBreak::Missing {
                expected: prev_seq + 1,
                before: prev_seq,
                found: e.seq,
            });
        }
        if e.prev_hash != prev_hash {
            return Err(ChainBreak::Unlinked {
                seq: e.seq,
                before: prev_seq,
                named: e.prev_hash.clone(),
                actual: prev_hash,
            });
        }
        let computed = event_hash(
            &e.prev_hash,
            e.seq,
            &e.audit_id,
            &e.tx_id,
            e.at_ms,
            &e.event,
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
        prev_hash = e.hash.clone();
        prev_seq = e.seq;
    }
    Ok(ChainReport {
        events: prev_seq,
        head: prev_hash,
    })
}

/// `YYYY-MM-DD HH:MM:SS.mmm` (UTC) of a Unix time in milliseconds.
pub fn utc_time(ms: u64) -> String {
    let of_day = ms % 86_400_000;
    format!(
        "{} {:02}:{:02}:{:02}.{:03}",
        crate::store::utc_day(ms),
        of_day / 3_600_000,
        of_day / 60_000 % 60,
        of_day / 1000 % 60,
        of_day % 1000
    )
}
