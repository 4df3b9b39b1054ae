//! The canonical form of an audit event, which its hash covers.
//!
//! Written by hand rather than by serializing a `serde_json::Value`: the key
//! order of a `Value` depends on whether any crate in the build turns on
//! serde_json's `preserve_order` feature, and a hash must not change with
//! the dependency tree. Here keys are sorted at every level, always.

use serde_json::Value;

use super::EventDraft;
use tiergate_runtime::model::digest::Sha256Writer;

/// The hash that chains an audit event to the one before it.
///
/// Canonical form: the previous event's hash, a newline, then the compact
/// JSON object `{"seq","audit_id","tx_id","at_ms","kind","actor","detail"}`
/// plus `"retain_until_ms"` when the event has one (events stored before
/// retention dates existed have none), with the keys of every object, the
/// detail's included, in byte order and `actor` null when absent; SHA-256
/// over those bytes, written `sha256:<hex>`.
pub fn event_hash(
    prev_hash: &str,
    seq: u64,
    audit_id: &str,
    tx_id: &str,
    at_ms: u64,
    event: &EventDraft,
    retain_until_ms: u64,
) -> String {
    hashed(
        prev_hash,
        seq,
        audit_id,
        tx_id,
        at_ms,
        event,
        retain_until_ms,
    )
    .hash
}

/// An event as a store keeps it: its detail in canonical JSON and its hash
/// over that same text, so the detail is written once.
pub struct Hashed {
    pub detail: String,
    pub hash: String,
}

/// [`event_hash`], with the canonical detail text it hashed.
fn hashed(
    prev_hash: &str,
    seq: u64,
    audit_id: &str,
    tx_id: &str,
    at_ms: u64,
    event: &EventDraft,
    retain_until_ms: u64,
) -> Hashed {
    let detail = canonical_json(&event.detail);
    let hash = EventFields {
        seq,
        audit_id,
        tx_id,
        at_ms,
        retain_until_ms,
        kind: &event.kind,
        actor: event.actor.as_deref(),
        detail: &detail,
    }
    .hash(prev_hash);
    Hashed { detail, hash }
}

/// An event placed in its tenant's chain, ready to be stored.
pub struct Chained<'a> {
    /// Its place in the tenant's chain, from 1.
    pub seq: u64,
    /// The hash of the event before it, which its own hash covers.
    pub prev_hash: String,
    /// The event as drafted.
    pub event: &'a EventDraft,
    /// Its canonical detail and hash.
    pub hashed: Hashed,
}

/// When an event recorded at `now_ms` may be deleted, kept `years`: at
/// least the years asked for, since 366 days a year never falls short.
pub fn retain_until(now_ms: u64, years: u32) -> u64 {
    now_ms + u64::from(years) * 366 * 86_400_000
}

/// `events` placed after the chain's last event (its sequence number and
/// hash; none for an empty chain), each linked to the one before.
pub fn chain<'a>(
    last: Option<(u64, String)>,
    audit_id: &str,
    tx_id: &str,
    at_ms: u64,
    events: &'a [EventDraft],
    retain_until_ms: u64,
) -> Vec<Chained<'a>> {
    let (mut seq, mut prev_hash) = last.unwrap_or((0, super::GENESIS_HASH.to_string()));
    events
        .iter()
        .map(|event| {
            seq += 1;
            let hashed = hashed(
                &prev_hash,
                seq,
                audit_id,
                tx_id,
                at_ms,
                event,
                retain_until_ms,
            );
            let prev_hash = std::mem::replace(&mut prev_hash, hashed.hash.clone());
            Chained {
                seq,
                prev_hash,
                event,
                hashed,
            }
        })
        .collect()
}

/// An event's hashed fields, with its detail already in canonical JSON.
struct EventFields<'a> {
    seq: u64,
    audit_id: &'a str,
    tx_id: &'a str,
    at_ms: u64,
    retain_until_ms: u64,
    kind: &'a str,
    actor: Option<&'a str>,
    /// From [`canonical_json`].
    detail: &'a str,
}

impl EventFields<'_> {
    /// [`event_hash`], written straight into the digest key by key (this runs
    /// inside the store's write transaction, several times per payment).
    fn hash(&self, prev_hash: &str) -> String {
        let mut h = Sha256Writer::default();
        h.feed(prev_hash.as_bytes());
        h.feed(b"\n{\"actor\":");
        match self.actor {
            Some(actor) => string(&mut h, actor),
            None => h.feed(b"null"),
        }
        h.feed(format!(",\"at_ms\":{},\"audit_id\":", self.at_ms).as_bytes());
        string(&mut h, self.audit_id);
        h.feed(b",\"detail\":");
        h.feed(self.detail.as_bytes());
        h.feed(b",\"kind\":");
        string(&mut h, self.kind);
        if self.retain_until_ms != 0 {
            h.feed(format!(",\"retain_until_ms\":{}", self.retain_until_ms).as_bytes());
        }
        h.feed(format!(",\"seq\":{},\"tx_id\":", self.seq).as_bytes());
        string(&mut h, self.tx_id);
        h.feed(b"}");
        h.finish()
    }
}

/// `value` as compact JSON with the keys of every object in byte order:
/// the same text whatever serde_json's features.
pub fn canonical_json(value: &Value) -> String {
    let mut out = Vec::with_capacity(128);
    write_canonical(&mut out, value);
    String::from_utf8_lossy(&out).into_owned()
}

#[allow(clippy::expect_used, reason = "writing to a Vec cannot fail")]
fn write_canonical(out: &mut Vec<u8>, value: &Value) {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
            out.push(b'{');
            for (i, (key, item)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                string(out, key);
                out.push(b':');
                write_canonical(out, item);
            }
            out.push(b'}');
        }
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_canonical(out, item);
            }
            out.push(b']');
        }
        // Scalars have one compact form.
        scalar => serde_json::to_writer(out, scalar).expect("writing to memory cannot fail"),
    }
}

/// A JSON string, escaped as serde_json escapes it.
#[allow(
    clippy::expect_used,
    reason = "called with a Vec, which cannot fail a write"
)]
fn string(out: &mut impl std::io::Write, text: &str) {
    serde_json::to_writer(out, text).expect("writing to memory cannot fail");
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    /// The documented form built independently: every object turned into a
    /// `BTreeMap` (sorted whatever serde_json's features), then serialized.
    #[derive(serde::Serialize)]
    #[serde(untagged)]
    enum Sorted {
        Object(BTreeMap<String, Sorted>),
        Array(Vec<Sorted>),
        Scalar(Value),
    }

    fn sorted(v: &Value) -> Sorted {
        match v {
            Value::Object(m) => {
                Sorted::Object(m.iter().map(|(k, v)| (k.clone(), sorted(v))).collect())
            }
            Value::Array(a) => Sorted::Array(a.iter().map(sorted).collect()),
            other => Sorted::Scalar(other.clone()),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn documented_hash(
        prev_hash: &str,
        seq: u64,
        audit_id: &str,
        tx_id: &str,
        at_ms: u64,
        event: &EventDraft,
        retain_until_ms: u64,
    ) -> String {
        let mut content = BTreeMap::new();
        content.insert("seq", sorted(&seq.into()));
        content.insert("audit_id", sorted(&audit_id.into()));
        content.insert("tx_id", sorted(&tx_id.into()));
        content.insert("at_ms", sorted(&at_ms.into()));
        content.insert("kind", sorted(&event.kind.clone().into()));
        content.insert("actor", sorted(&event.actor.clone().into()));
        content.insert("detail", sorted(&event.detail));
        if retain_until_ms != 0 {
            content.insert("retain_until_ms", sorted(&retain_until_ms.into()));
        }
        let text = serde_json::to_string(&content).unwrap();
        tiergate_runtime::model::digest::sha256(format!("{prev_hash}\n{text}").as_bytes())
    }

    fn detail() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            "-?(0|[1-9][0-9]{0,29})\\.[0-9]{1,30}".prop_map(|n| serde_json::from_str(&n).unwrap()),
            any::<String>().prop_map(Value::from),
        ];
        leaf.prop_recursive(3, 24, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
                prop::collection::vec((any::<String>(), inner), 0..5)
                    .prop_map(|kv| Value::Object(kv.into_iter().collect())),
            ]
        })
    }

    proptest! {
        /// The hash is the documented canonical form's, whatever the text
        /// (quotes, control characters, non-ASCII), numbers and key order.
        #[test]
        fn event_hashes_are_the_documented_canonical_form(
            prev in "sha256:[0-9a-f]{64}",
            seq in any::<u64>(),
            audit_id in any::<String>(),
            tx_id in any::<String>(),
            at_ms in any::<u64>(),
            kind in any::<String>(),
            actor in proptest::option::of(any::<String>()),
            detail in detail(),
            retain in prop_oneof![Just(0u64), any::<u64>()],
        ) {
            let event = EventDraft { kind, actor, detail };
            prop_assert_eq!(
                event_hash(&prev, seq, &audit_id, &tx_id, at_ms, &event, retain),
                documented_hash(&prev, seq, &audit_id, &tx_id, at_ms, &event, retain)
            );
        }

        /// Stored detail text read back and written again is the same text,
        /// so a stored chain verifies.
        #[test]
        fn canonical_detail_survives_a_round_trip(detail in detail()) {
            let text = canonical_json(&detail);
            let back: Value = serde_json::from_str(&text).unwrap();
            prop_assert_eq!(canonical_json(&back), text);
        }
    }

    #[test]
    fn a_known_event_keeps_its_hash() {
        // What the form gave when it was a `serde_json::Value` with sorted
        // keys (serde_json without `preserve_order`), as stored chains have
        // it: a change here breaks every stored chain.
        let event = EventDraft {
            kind: "authorized".into(),
            actor: None,
            detail: serde_json::json!({"tier": "autonomous", "amount": "0.02", "a": [1, {"z": 1, "b": 2}]}),
        };
        assert_eq!(
            event_hash(
                crate::store::GENESIS_HASH,
                1,
                "aud-2026-11-28-001",
                "tx-1",
                1_764_288_000_000,
                &event,
                0
            ),
            KNOWN
        );
    }
    const KNOWN: &str = "sha256:611752f9a1da8f6409344ececcdfc23ff2c67e261098bef7fd58b91cb6135cec";
}
