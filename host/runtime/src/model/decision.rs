//! What classification produces: a tier, reasons, and when the policy failed,
//! what went wrong.

use serde::{Deserialize, Serialize};
use tiergate_policy::Tier;

use super::context::ContextRead;

/// Why a tier was chosen: a stable machine code and a human sentence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Reason {
    /// Short `snake_case` code.
    pub code: String,
    /// One sentence for the owner or auditor.
    pub message: String,
}

impl Reason {
    /// A reason with its machine code and its sentence.
    pub fn new(code: impl Into<String>, message: impl Into<String>) -> Self {
        Reason {
            code: code.into(),
            message: message.into(),
        }
    }
}

/// The outcome of classifying one transaction.
///
/// When the policy failed, `failure` says how, `tier` is the failure tier (or
/// the stricter tier the policy asked for, if it could still be read), and
/// `reasons` starts with a `policy_*` code.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    /// The tier to apply.
    pub tier: Tier,
    /// Why, most important first.
    pub reasons: Vec<Reason>,
    /// An alternative path for the agent, when the policy offered one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suggestion: Option<String>,
    /// How the policy failed, if it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<PolicyFailure>,
    /// Every question the policy asked the context and the answer it got, in
    /// order: with the transaction and the policy, enough to replay the
    /// decision.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub context_reads: Vec<ContextRead>,
    /// Fuel the policy used (a deterministic measure of its work).
    pub fuel_used: u64,
}

impl Decision {
    /// Whether one of the reasons has this code.
    pub fn has_reason(&self, code: &str) -> bool {
        self.reasons.iter().any(|r| r.code == code)
    }
}

/// How a policy failed. Each kind becomes a reason code such as
/// `policy_fuel_exhausted` on the decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum FailureKind {
    /// The policy trapped: a panic, `unreachable`, or an illegal operation.
    Trap,
    /// The policy used all its fuel (its deterministic CPU budget).
    FuelExhausted,
    /// The policy ran past its wall-clock deadline.
    Timeout,
    /// The policy tried to grow its memory past the limit.
    MemoryLimit,
    /// The policy overflowed its stack.
    StackOverflow,
    /// The policy returned an error instead of a decision.
    PolicyError,
    /// The decision broke the contract's size bounds.
    DecisionOversized,
    /// The decision was unusable: no reason, or a code that is not `snake_case`.
    DecisionMalformed,
    /// The policy returned a tier it did not declare in its metadata.
    UndeclaredTier,
    /// The policy asked the context more questions than allowed.
    TooManyContextReads,
    /// The policy asked the context a question larger than any real one
    /// (a category longer than a transaction's can be).
    ContextQuestionOversized,
    /// The policy asked about a longer window than the contract serves
    /// (31 days).
    ContextWindowTooLong,
    /// The exact answer to the policy's context question does not fit the
    /// contract's decimal (amounts stored before the amount bound).
    ContextAnswerTooLarge,
    /// The policy handed the host more at once than it takes from a policy
    /// (256 KiB): in one host call's arguments, or in its answer.
    TransferOversized,
    /// The policy was not run: it failed too many times in a row, and the
    /// host suspended it for a while (its failure breaker is open).
    PolicySuspended,
    /// The policy was not run: its tenant's CPU budget for policies is
    /// spent for now (a looping policy cannot take the machine).
    CpuBudgetExhausted,
    /// The host could not run the policy (for example, out of instance slots).
    Host,
}

impl FailureKind {
    /// Whether the host decided this without the policy running to its end
    /// (suspended, out of CPU budget, the host's own fault): nothing the
    /// policy did, so no replay can reproduce it.
    pub fn decided_by_host(self) -> bool {
        matches!(
            self,
            FailureKind::PolicySuspended | FailureKind::CpuBudgetExhausted | FailureKind::Host
        )
    }

    /// The reason code this failure puts on the decision.
    pub fn code(self) -> &'static str {
        match self {
            FailureKind::Trap => "policy_trap",
            FailureKind::FuelExhausted => "policy_fuel_exhausted",
            FailureKind::Timeout => "policy_timeout",
            FailureKind::MemoryLimit => "policy_memory_limit",
            FailureKind::StackOverflow => "policy_stack_overflow",
            FailureKind::PolicyError => "policy_error",
            FailureKind::DecisionOversized => "policy_decision_oversized",
            FailureKind::DecisionMalformed => "policy_decision_malformed",
            FailureKind::UndeclaredTier => "policy_undeclared_tier",
            FailureKind::TooManyContextReads => "policy_too_many_context_reads",
            FailureKind::ContextQuestionOversized => "policy_context_question_oversized",
            FailureKind::ContextWindowTooLong => "policy_context_window_too_long",
            FailureKind::ContextAnswerTooLarge => "policy_context_answer_too_large",
            FailureKind::TransferOversized => "policy_transfer_oversized",
            FailureKind::PolicySuspended => "policy_suspended",
            FailureKind::CpuBudgetExhausted => "policy_cpu_budget_exhausted",
            FailureKind::Host => "host_error",
        }
    }
}

/// A policy failure, kept on the decision for the audit record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PolicyFailure {
    /// What kind of failure.
    pub kind: FailureKind,
    /// What the host saw: the trap message, the policy's error text, the
    /// panic message it printed, or the bound it broke.
    pub detail: String,
}
