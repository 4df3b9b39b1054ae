//! What a policy may ask about the past, and the snapshot that answers.

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use tiergate_policy::{Tier, Window};

use super::money;

/// Which of the agent's earlier transactions to count.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActivityFilter {
    /// All of them.
    All,
    /// Only those of this category.
    Category(String),
    /// Only those that received this tier.
    Tier(Tier),
}

/// How many transactions matched and their total in the classified
/// transaction's currency.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Activity {
    /// Number of matching transactions.
    pub count: u64,
    /// Their total (other currencies are counted, not summed).
    #[serde(with = "money::exact")]
    pub total: Decimal,
}

/// What the host knows about the transaction's recipient, within the tenant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct RecipientHistory {
    /// When the tenant first paid this recipient, if ever.
    pub first_seen_ms: Option<u64>,
    /// How many earlier payments the tenant made to it.
    pub payment_count: u64,
}

/// Answers a policy's context questions for one classification.
///
/// Implementations answer from one snapshot taken before the classification
/// starts: the same question must get the same answer, and nothing may block
/// (the policy runs under a deadline). The governance pipeline builds one
/// from its store; [`StaticContext`] answers from fixed values.
pub trait ContextSource: Send + Sync {
    /// The agent's earlier transactions matching `filter` in the `window_ms`
    /// milliseconds before the classified transaction.
    fn agent_activity(&self, window_ms: u64, filter: &ActivityFilter) -> Activity;

    /// History of the classified transaction's recipient.
    fn recipient(&self) -> RecipientHistory;
}

/// One question a policy asked and the answer it got.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "ask", rename_all = "snake_case")]
pub enum ContextRead {
    /// `agent-activity(window, filter)`.
    AgentActivity {
        /// The look-back window.
        window: Window,
        /// Which transactions were counted.
        filter: ActivityFilter,
        /// The answer.
        #[serde(flatten)]
        answer: Activity,
    },
    /// `recipient()`.
    Recipient {
        /// The answer.
        #[serde(flatten)]
        answer: RecipientHistory,
    },
}

/// A context with fixed answers: for the CLI's `--context` file, tests, and
/// replaying a decision from its recorded [`ContextRead`]s.
///
/// A question without a set answer gets no activity (count 0, total 0), as
/// for an agent with no past.
///
/// JSON form:
/// ```json
/// {
///   "activity": [
///     {"window": "1h", "filter": {"tier": "autonomous"}, "count": 999, "total": "12.40"},
///     {"window": "24h", "filter": "all", "count": 3, "total": "140.00"}
///   ],
///   "recipient": {"first_seen_ms": 1780000000000, "payment_count": 12}
/// }
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StaticContext {
    /// Answers to `agent-activity`.
    #[serde(default)]
    pub activity: Vec<ActivityAnswer>,
    /// The answer to `recipient`.
    #[serde(default)]
    pub recipient: RecipientHistory,
}

/// One fixed `agent-activity` answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActivityAnswer {
    /// The window this answer is for.
    pub window: Window,
    /// The filter this answer is for.
    pub filter: ActivityFilter,
    /// Number of matching transactions.
    pub count: u64,
    /// Their total.
    #[serde(with = "money::exact", default)]
    pub total: Decimal,
}

impl StaticContext {
    /// A context that answers exactly what a decision's reads recorded.
    pub fn replaying(reads: &[ContextRead]) -> Self {
        let mut ctx = StaticContext::default();
        for read in reads {
            match read {
                ContextRead::AgentActivity {
                    window,
                    filter,
                    answer,
                } => ctx.activity.push(ActivityAnswer {
                    window: *window,
                    filter: filter.clone(),
                    count: answer.count,
                    total: answer.total,
                }),
                ContextRead::Recipient { answer } => ctx.recipient = *answer,
            }
        }
        ctx
    }
}

impl ContextSource for StaticContext {
    fn agent_activity(&self, window_ms: u64, filter: &ActivityFilter) -> Activity {
        self.activity
            .iter()
            .find(|a| a.window.as_millis() == window_ms && a.filter == *filter)
            .map(|a| Activity {
                count: a.count,
                total: a.total,
            })
            .unwrap_or_default()
    }

    fn recipient(&self) -> RecipientHistory {
        self.recipient
    }
}
