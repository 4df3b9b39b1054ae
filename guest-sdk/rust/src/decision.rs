//! A policy's answer.

use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;

use crate::Tier;

/// Why a policy chose a tier: a stable machine code and a human sentence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reason {
    /// Short `snake_case` code, such as `amount_over_ceiling` (at most 64 bytes).
    pub code: String,
    /// One sentence for the owner or auditor (at most 1024 bytes).
    pub message: String,
}

/// A tier with the reasons for it and, optionally, a suggestion for the agent.
///
/// Every decision carries at least one reason, so the constructors take the
/// first one:
///
/// ```
/// use tiergate_policy::{Decision, Tier};
/// let d = Decision::new(Tier::Collaborative, "agent_hire", "hiring another agent needs a human")
///     .because("amount_over_supervised", "89.00 is over the supervised limit of 50.00")
///     .suggest("ask the budget owner to approve, or stay at or under 50.00");
/// assert_eq!(d.tier, Tier::Collaborative);
/// assert_eq!(d.reasons.len(), 2);
/// assert!(d.has_reason("agent_hire"));
/// ```
///
/// The host rejects (and treats as a policy failure) a decision with no
/// reason, more than 16 reasons, a code over 64 bytes, a message or
/// suggestion over 1024 bytes, an empty message, or a message or suggestion
/// holding a control or format character (a newline, ESC, a bidi override).
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub struct Decision {
    /// The tier the policy chose.
    pub tier: Tier,
    /// Why, most important first.
    pub reasons: Vec<Reason>,
    /// An alternative path for the agent when it is held or refused.
    pub suggestion: Option<String>,
}

impl Decision {
    /// A decision for `tier`, with its first reason.
    pub fn new(tier: Tier, code: impl Into<String>, message: impl Into<String>) -> Self {
        Decision {
            tier,
            reasons: vec![Reason {
                code: code.into(),
                message: message.into(),
            }],
            suggestion: None,
        }
    }

    /// Adds another reason.
    pub fn because(mut self, code: impl Into<String>, message: impl Into<String>) -> Self {
        self.reasons.push(Reason {
            code: code.into(),
            message: message.into(),
        });
        self
    }

    /// Sets the suggestion for the agent.
    pub fn suggest(mut self, suggestion: impl Into<String>) -> Self {
        self.suggestion = Some(suggestion.into());
        self
    }

    /// Whether one of the reasons has this code.
    pub fn has_reason(&self, code: &str) -> bool {
        self.reasons.iter().any(|r| r.code == code)
    }
}
