//! Reading the audit trail back: verifying each tenant's hash chain,
//! querying and exporting records, and the daily report.

mod chain;
mod checkpoint;
mod replay;
mod report;
mod simulate;
mod stream;

pub use chain::{
    ChainBreak, ChainReport, ChainVerifier, StoredChain, VerifyError, verify_chain, verify_stored,
};
pub use checkpoint::{
    Checkpoint, CheckpointError, CheckpointLog, CheckpointSchedule, CheckpointsChecked, SignError,
    check_checkpoints, checkpoint_due, checkpoint_lengths, generate_key, key_from_hex, key_to_hex,
    sign_due, sign_due_each,
};
pub use ed25519_dalek::SigningKey;
pub use replay::{Replayed, replay, replay_event};
pub use report::{DailyReport, Tally, daily_report, spend_chart_svg};
pub use simulate::{Simulation, TierChange, simulate};
pub use stream::{authorizations, authorizations_between, events, matching};

pub use crate::utc::time as utc_time;

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
    pub status: Option<crate::record::Status>,
    /// Only this audit id.
    pub audit_id: Option<String>,
    /// Only payments to this recipient.
    pub recipient: Option<String>,
    /// Only amounts at least this large.
    pub min_amount: Option<rust_decimal::Decimal>,
}

impl Query {
    /// Whether `a` matches every set filter.
    pub fn matches(&self, a: &crate::record::Authorization) -> bool {
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
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
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
    /// Originator: the credential that submitted the request, if known.
    pub caller: String,
    /// Beneficiary: `true` for a self-hosted wallet, `false` for a hosted
    /// one, empty when unknown.
    pub self_hosted_wallet: String,
    /// Keep the records at least this many years.
    pub retention_years: u32,
}

impl From<&crate::record::Authorization> for ExportRow {
    fn from(a: &crate::record::Authorization) -> Self {
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
                    .filter(|v| v.act == crate::record::Act::Approve)
                    .map(|v| v.actor.as_str())
                    .collect(),
            ),
            reason_codes: join(a.reasons.iter().map(|r| r.code.as_str()).collect()),
            escalated_by: join(a.escalations.iter().map(|e| e.guardrail.as_str()).collect()),
            execution_ref: a.execution_ref.clone().unwrap_or_default(),
            content_hash: a.content_hash.clone(),
            caller: a.caller.clone().unwrap_or_default(),
            self_hosted_wallet: t
                .self_hosted_wallet
                .map(|b| b.to_string())
                .unwrap_or_default(),
            retention_years: a.retention_years,
        }
    }
}

impl ExportRow {
    /// The CSV header, in field order.
    pub const CSV_HEADER: &'static str = "audit_id,tenant,agent,team,transaction_id,recipient,recipient_trust,amount,currency,category,network,jurisdiction,tier,policy_tier,status,requested_at,requested_at_ms,approved_by,reason_codes,escalated_by,execution_ref,content_hash,caller,self_hosted_wallet,retention_years";

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
            &self.caller,
            &self.self_hosted_wallet,
            &self.retention_years.to_string(),
        ];
        fields
            .iter()
            .map(|f| csv_field(f))
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// One CSV cell. A cell a spreadsheet would run as a formula (one starting
/// with `=`, `+`, `-`, `@`, tab or CR) is neutralised as OWASP advises: a
/// single quote before it, and the cell quoted. Amounts are positive and
/// times are digits, so a numeric cell is never changed.
fn csv_field(f: &str) -> String {
    if f.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("\"'{}\"", f.replace('"', "\"\""))
    } else if f.contains([',', '"', '\n', '\r']) {
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

    #[test]
    fn csv_cells_that_a_spreadsheet_would_run_as_formulas_are_neutralised() {
        // OWASP's rule: a leading single quote, and the cell quoted.
        for (cell, written) in [
            (
                "=HYPERLINK(\"http://x.example\")",
                "\"'=HYPERLINK(\"\"http://x.example\"\")\"",
            ),
            ("+1", "\"'+1\""),
            ("-1", "\"'-1\""),
            ("@SUM(A1)", "\"'@SUM(A1)\""),
            ("\tcmd", "\"'\tcmd\""),
            ("\rcmd", "\"'\rcmd\""),
        ] {
            assert_eq!(csv_field(cell), written, "{cell:?}");
        }
        // Anywhere but first, the same characters are plain text.
        assert_eq!(csv_field("a=b"), "a=b");
        assert_eq!(csv_field("89.00"), "89.00");
        assert_eq!(csv_field(""), "");
    }
}
