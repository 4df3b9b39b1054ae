//! What authorize answers, and the statuses a payment moves through.

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use tiergate_policy::{RecipientTrust, Tier};

use tiergate_runtime::model::decision::{PolicyFailure, Reason};
use tiergate_runtime::model::transaction::Transaction;

/// Where a payment stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// The owner was notified and may veto until the deadline; then it executes.
    PendingVeto,
    /// Waiting for explicit approval until the deadline; then it expires.
    AwaitingApproval,
    /// Handed to the executor; its result is not recorded yet.
    Executing,
    /// Executed; the executor's reference is recorded.
    Executed,
    /// The executor failed; nothing moved, and the error is recorded.
    ExecutionFailed,
    /// Vetoed by an owner inside the window.
    Vetoed,
    /// Rejected by an owner.
    Rejected,
    /// Not approved in time: auto-rejected.
    Expired,
    /// Prohibited: never executes.
    Blocked,
}

impl Status {
    /// Whether the payment's money counts against budgets: held while it
    /// may still execute, spent once it has.
    pub fn holds_budget(self) -> bool {
        matches!(
            self,
            Status::PendingVeto | Status::AwaitingApproval | Status::Executing | Status::Executed
        )
    }

    /// The status's name as stored and printed.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::PendingVeto => "pending_veto",
            Status::AwaitingApproval => "awaiting_approval",
            Status::Executing => "executing",
            Status::Executed => "executed",
            Status::ExecutionFailed => "execution_failed",
            Status::Vetoed => "vetoed",
            Status::Rejected => "rejected",
            Status::Expired => "expired",
            Status::Blocked => "blocked",
        }
    }
}

impl std::str::FromStr for Status {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        const ALL: [Status; 9] = [
            Status::PendingVeto,
            Status::AwaitingApproval,
            Status::Executing,
            Status::Executed,
            Status::ExecutionFailed,
            Status::Vetoed,
            Status::Rejected,
            Status::Expired,
            Status::Blocked,
        ];
        ALL.into_iter().find(|x| x.as_str() == s).ok_or_else(|| {
            let names: Vec<&str> = ALL.iter().map(|x| x.as_str()).collect();
            format!("unknown status `{s}`: expected one of {}", names.join(", "))
        })
    }
}

/// One owner's recorded verdict.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Verdict {
    /// Who decided.
    pub actor: String,
    /// The API key the verdict came with, when it came with one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_id: Option<String>,
    /// What they decided.
    pub act: Act,
    /// Why, in their words.
    pub reason: String,
    /// When.
    pub at_ms: u64,
}

/// What an owner may do to a held payment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Act {
    /// Approve a payment awaiting approval.
    Approve,
    /// Reject a payment awaiting approval.
    Reject,
    /// Stop a payment inside its veto window.
    Veto,
}

/// A guardrail that made the tier stricter than the policy's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Escalation {
    /// Which guardrail: `max_per_transaction`, `agent_daily_budget`,
    /// `team_daily_budget:<team>`, `tenant_daily_budget`; or what the
    /// registry demands: `unlisted_agent`, `category_mismatch`,
    /// `jurisdiction_mismatch`, `without_jurisdiction`,
    /// `recipient_max_per_payment`.
    pub guardrail: String,
    /// The tier it demanded.
    #[cfg_attr(feature = "openapi", schema(value_type = tiergate_runtime::model::schema::TierName))]
    pub tier: Tier,
    /// What it saw: "480.00 committed in the last 24h plus 30.00 is over the
    /// limit of 500.00".
    pub detail: String,
}

/// The answer to an authorization request, and the payment's current state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Authorization {
    /// The payment as governed: as requested, with the host's request time
    /// and the recipient trust and jurisdiction the policy saw (see
    /// `provenance` for what the request declared).
    pub transaction: Transaction,
    /// The audit id of the authorization record: `aud-YYYY-MM-DD-NNN`.
    pub audit_id: String,
    /// `sha256:` of the request's content; approvals must name it.
    pub content_hash: String,
    /// The tier applied: the policy's, made stricter by guardrails.
    #[cfg_attr(feature = "openapi", schema(value_type = tiergate_runtime::model::schema::TierName))]
    pub tier: Tier,
    /// The tier the policy returned.
    #[cfg_attr(feature = "openapi", schema(value_type = tiergate_runtime::model::schema::TierName))]
    pub policy_tier: Tier,
    /// Where the payment stands.
    pub status: Status,
    /// Why: the policy's reasons, then the guardrails'.
    pub reasons: Vec<Reason>,
    /// Guardrails that escalated the tier.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub escalations: Vec<Escalation>,
    /// How the policy failed, when it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy_failure: Option<PolicyFailure>,
    /// An alternative path for the agent when it is held or refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suggestion: Option<String>,
    /// When the veto window closes or the approval times out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadline_ms: Option<u64>,
    /// Distinct owners who must approve (explicit approval only).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub approvals_required: u32,
    /// Verdicts recorded so far.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub verdicts: Vec<Verdict>,
    /// The executor's reference, once executed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub execution_ref: Option<String>,
    /// The executor's error, if it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub execution_error: Option<String>,
    /// Years its audit records are kept at least (from the tenant's
    /// `retention_years` when it was authorized).
    #[serde(default = "five")]
    pub retention_years: u32,
    /// The team the agent belongs to, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub team: Option<String>,
    /// The credential (such as an API key's id) that submitted the request,
    /// when the host knows it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub caller: Option<String>,
    /// Where the recipient's trust and jurisdiction came from and what the
    /// request declared; absent on payments recorded before the registry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provenance: Option<Provenance>,
}

fn five() -> u32 {
    5
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

impl Authorization {
    /// The payment as a key that asks to pay may see it: what other agents
    /// committed (a team's or the tenant's budget used) is left out of the
    /// reasons and escalations; owners and auditors see it all.
    pub fn for_requester(mut self) -> Self {
        let shared =
            |name: &str| name == "tenant_daily_budget" || name.starts_with("team_daily_budget");
        let said = |name: &str, tier: Tier| {
            let whose = if name == "tenant_daily_budget" {
                "the tenant's agents together"
            } else {
                "the agent's team together"
            };
            format!(
                "with this payment {whose} would commit more than their budget allows in 24 hours (escalated to {tier})"
            )
        };
        for e in &mut self.escalations {
            if shared(&e.guardrail) {
                e.detail = said(&e.guardrail, e.tier);
            }
        }
        for r in &mut self.reasons {
            if let Some(name) = r.code.strip_prefix("guardrail_")
                && shared(name)
            {
                let tier = self
                    .escalations
                    .iter()
                    .find(|e| e.guardrail.starts_with(name))
                    .map_or(self.tier, |e| e.tier);
                r.message = said(name, tier);
            }
        }
        self
    }

    /// The amount, for budget sums.
    pub fn amount(&self) -> Decimal {
        self.transaction.amount
    }
}

/// Where a value the policy saw came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// The tenant's registry.
    Registry,
    /// The tenant's own executed payments to the recipient.
    History,
    /// The request, which may only have made it stricter (or, with
    /// `[trust] source = "caller"`, the request alone).
    Caller,
    /// Nobody: the host does not know it.
    None,
}

/// What the request declared and where the values the policy saw came
/// from, kept in the payment's record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Provenance {
    /// Where the recipient trust the policy saw came from.
    pub trust_from: Source,
    /// Where the jurisdiction the policy saw came from.
    pub jurisdiction_from: Source,
    /// The trust the request declared.
    #[cfg_attr(feature = "openapi", schema(value_type = tiergate_runtime::model::schema::TrustName))]
    pub declared_trust: RecipientTrust,
    /// The jurisdiction the request declared, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub declared_jurisdiction: Option<String>,
    /// The request declared more trust than the host gives: the claim was
    /// set aside.
    pub claimed_looser: bool,
    /// Whether the tenant lists the agent.
    pub agent_listed: bool,
}
