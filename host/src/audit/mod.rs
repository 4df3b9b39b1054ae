//! Reading the audit trail back: verifying each tenant's hash chain,
//! querying and exporting records, and the daily report.

mod checkpoint;
mod replay;
mod report;

pub use checkpoint::{Checkpoint, CheckpointError, generate_key, key_from_hex, key_to_hex};
pub use replay::{Replayed, replay};
pub use report::{DailyReport, Tally, daily_report, spend_chart_svg};

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

/// Milliseconds since the epoch of a UTC day written `YYYY-MM-DD`, at midnight.
pub fn parse_day(text: &str) -> Option<u64> {
    let mut parts = text.splitn(3, '-');
    let (y, m, d): (i64, i64, i64) = (
        parts.next()?.parse().ok()?,
        parts.next()?.parse().ok()?,
        parts.next()?.parse().ok()?,
    );
    if text.len() != 10 || !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        return None;
    }
    // Howard Hinnant's days-from-civil.
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let ms = u64::try_from(days).ok()? * 86_400_000;
    // Reject days that do not exist (2026-02-30 would roll over).
    (crate::store::utc_day(ms) == text).then_some(ms)
}

/// Which authorizations a query returns; every set field must match.
#[derive(Debug, Clone, Default)]
pub struct Query {
    /// Only this agent's.
    pub agent: Option<String>,
    /// Requested at or after this time.
    pub from_ms: Option<u64>,
    /// Requested before this time.
    pub to_ms: Option<u64>,
    /// Only this tier.
    pub tier: Option<tiergate_policy::Tier>,
    /// Only this status.
    pub status: Option<crate::governance::Status>,
    /// Only this audit id.
    pub audit_id: Option<String>,
    /// Only payments to this recipient.
    pub recipient: Option<String>,
    /// Only amounts at least this large.
    pub min_amount: Option<rust_decimal::Decimal>,
}

impl Query {
    /// Whether `a` matches every set filter.
    pub fn matches(&self, a: &crate::governance::Authorization) -> bool {
        let t = &a.transaction;
        self.agent.as_ref().is_none_or(|x| *x == t.agent)
            && self.from_ms.is_none_or(|x| t.requested_at_ms >= x)
            && self.to_ms.is_none_or(|x| t.requested_at_ms < x)
            && self.tier.is_none_or(|x| x == a.tier)
            && self.status.is_none_or(|x| x == a.status)
            && self.audit_id.as_ref().is_none_or(|x| *x == a.audit_id)
            && self.recipient.as_ref().is_none_or(|x| *x == t.recipient)
            && self.min_amount.is_none_or(|x| t.amount >= x)
    }
}

/// One authorization as a flat export row. The field names are stable: a
/// regulator's tooling may rely on them.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ExportRow {
    /// `aud-YYYY-MM-DD-NNN`.
    pub audit_id: String,
    /// Originator: the tenant.
    pub tenant: String,
    /// Originator: the agent.
    pub agent: String,
    /// The agent's team, if any.
    pub team: String,
    /// The idempotency key.
    pub transaction_id: String,
    /// Beneficiary.
    pub recipient: String,
    /// Trust in the beneficiary.
    pub recipient_trust: String,
    /// Exact amount, as text.
    pub amount: String,
    /// Currency or token.
    pub currency: String,
    /// Category.
    pub category: String,
    /// Settlement network, if any.
    pub network: String,
    /// Beneficiary jurisdiction, if known.
    pub jurisdiction: String,
    /// Tier applied.
    pub tier: String,
    /// Tier the policy returned.
    pub policy_tier: String,
    /// Current status.
    pub status: String,
    /// When the agent asked (UTC).
    pub requested_at: String,
    /// The same, in milliseconds since the epoch.
    pub requested_at_ms: u64,
    /// Owners who approved, `;`-separated.
    pub approved_by: String,
    /// Reason codes, `;`-separated.
    pub reason_codes: String,
    /// Guardrails that escalated the tier, `;`-separated.
    pub escalated_by: String,
    /// Settlement reference, once executed.
    pub execution_ref: String,
    /// `sha256:` of the request.
    pub content_hash: String,
}

impl From<&crate::governance::Authorization> for ExportRow {
    fn from(a: &crate::governance::Authorization) -> Self {
        let t = &a.transaction;
        let join = |items: Vec<&str>| items.join(";");
        ExportRow {
            audit_id: a.audit_id.clone(),
            tenant: t.tenant.clone(),
            agent: t.agent.clone(),
            team: a.team.clone().unwrap_or_default(),
            transaction_id: t.id.clone(),
            recipient: t.recipient.clone(),
            recipient_trust: t.recipient_trust.as_str().into(),
            amount: t.amount.to_string(),
            currency: t.currency.clone(),
            category: t.category.clone(),
            network: t.network.clone().unwrap_or_default(),
            jurisdiction: t.jurisdiction.clone().unwrap_or_default(),
            tier: a.tier.as_str().into(),
            policy_tier: a.policy_tier.as_str().into(),
            status: a.status.as_str().into(),
            requested_at: utc_time(t.requested_at_ms),
            requested_at_ms: t.requested_at_ms,
            approved_by: join(
                a.verdicts
                    .iter()
                    .filter(|v| v.act == crate::governance::Act::Approve)
                    .map(|v| v.actor.as_str())
                    .collect(),
            ),
            reason_codes: join(a.reasons.iter().map(|r| r.code.as_str()).collect()),
            escalated_by: join(a.escalations.iter().map(|e| e.guardrail.as_str()).collect()),
            execution_ref: a.execution_ref.clone().unwrap_or_default(),
            content_hash: a.content_hash.clone(),
        }
    }
}

impl ExportRow {
    /// The CSV header, in field order.
    pub const CSV_HEADER: &'static str = "audit_id,tenant,agent,team,transaction_id,recipient,recipient_trust,amount,currency,category,network,jurisdiction,tier,policy_tier,status,requested_at,requested_at_ms,approved_by,reason_codes,escalated_by,execution_ref,content_hash";

    /// The row as one CSV line (RFC 4180 quoting).
    pub fn csv(&self) -> String {
        let fields = [
            &self.audit_id,
            &self.tenant,
            &self.agent,
            &self.team,
            &self.transaction_id,
            &self.recipient,
            &self.recipient_trust,
            &self.amount,
            &self.currency,
            &self.category,
            &self.network,
            &self.jurisdiction,
            &self.tier,
            &self.policy_tier,
            &self.status,
            &self.requested_at,
            &self.requested_at_ms.to_string(),
            &self.approved_by,
            &self.reason_codes,
            &self.escalated_by,
            &self.execution_ref,
            &self.content_hash,
        ];
        fields
            .iter()
            .map(|f| csv_field(f))
            .collect::<Vec<_>>()
            .join(",")
    }
}

fn csv_field(f: &str) -> String {
    if f.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", f.replace('"', "\"\""))
    } else {
        f.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_round_trip_and_impossible_ones_are_refused() {
        assert_eq!(parse_day("1970-01-01"), Some(0));
        assert_eq!(parse_day("2026-06-27"), Some(1_782_518_400_000));
        assert_eq!(
            parse_day("2000-02-29")
                .map(crate::store::utc_day)
                .as_deref(),
            Some("2000-02-29")
        );
        for bad in [
            "2026-02-30",
            "2026-13-01",
            "26-06-27",
            "2026-6-27",
            "yesterday",
        ] {
            assert_eq!(parse_day(bad), None, "{bad}");
        }
        assert_eq!(
            utc_time(1_782_518_400_000 + 3_723_004),
            "2026-06-27 01:02:03.004"
        );
    }

    #[test]
    fn csv_quotes_what_needs_quoting() {
        assert_eq!(csv_field("plain"), "plain");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
    }
}
