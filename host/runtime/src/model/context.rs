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

/// The longest window `agent-activity` serves: 31 days, so a monthly cap
/// sees a whole month. The host reads that much of an agent's history; a
/// policy asking for more fails closed ([`ContextError::WindowTooLong`]).
pub const MAX_WINDOW_MS: u64 = tiergate_policy::Window::LONGEST.as_millis();

/// Why the host cannot answer a policy's context question. The
/// classification fails closed on the tenant's failure tier, naming it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ContextError {
    /// The policy asked about a window longer than [`MAX_WINDOW_MS`].
    #[error(
        "the policy asked about the last {window_ms} ms of the agent's payments; the contract serves at most 31 days ({MAX_WINDOW_MS} ms)"
    )]
    WindowTooLong {
        /// The window asked for.
        window_ms: u64,
    },
    /// The exact total of the matching payments does not fit a decimal
    /// (28 digits): amounts stored before [`MAX_AMOUNT`](super::money::MAX_AMOUNT)
    /// existed can add up past it. Never a rounded or clamped answer.
    #[error(
        "the exact total of the agent's {count} matching payments, {total}, does not fit the contract's decimal (28 digits)"
    )]
    TotalTooLarge {
        /// How many payments matched.
        count: u64,
        /// Their exact total.
        total: String,
    },
}

/// The answer to an `agent-activity` question, or why there is none.
pub type ActivityResult = Result<Activity, ContextError>;

/// Refuses a window longer than the contract serves.
pub fn check_window(window_ms: u64) -> Result<(), ContextError> {
    if window_ms > MAX_WINDOW_MS {
        return Err(ContextError::WindowTooLong { window_ms });
    }
    Ok(())
}

/// Counts matching payments and sums their amounts exactly, into an
/// [`Activity`] when the total fits.
#[derive(Debug, Default)]
pub struct ActivitySum {
    count: u64,
    total: money::ExactSum,
}

impl ActivitySum {
    /// Counts one payment; `amount` is summed when it is in the asked
    /// currency (others are counted, not summed).
    pub fn add(&mut self, amount: Option<Decimal>) {
        self.count += 1;
        if let Some(amount) = amount {
            self.total.add(amount);
        }
    }

    /// The answer.
    pub fn finish(self) -> ActivityResult {
        match self.total.to_decimal() {
            Some(total) => Ok(Activity {
                count: self.count,
                total,
            }),
            None => Err(ContextError::TotalTooLarge {
                count: self.count,
                total: self.total.to_string(),
            }),
        }
    }
}

/// Answers a policy's context questions for one classification.
///
/// Implementations answer from one snapshot taken before the classification
/// starts: the same question must get the same answer, and nothing may block
/// (the policy runs under a deadline). The governance pipeline builds one
/// from its store; [`StaticContext`] answers from fixed values.
pub trait ContextSource: Send + Sync {
    /// The agent's earlier transactions matching `filter` in the `window_ms`
    /// milliseconds before the classified transaction; an error (a window
    /// over [`MAX_WINDOW_MS`], a total that does not fit) fails the
    /// classification closed.
    fn agent_activity(&self, window_ms: u64, filter: &ActivityFilter) -> ActivityResult;

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
    fn agent_activity(&self, window_ms: u64, filter: &ActivityFilter) -> ActivityResult {
        check_window(window_ms)?;
        Ok(self
            .activity
            .iter()
            .find(|a| a.window.as_millis() == window_ms && a.filter == *filter)
            .map(|a| Activity {
                count: a.count,
                total: a.total,
            })
            .unwrap_or_default())
    }

    fn recipient(&self) -> RecipientHistory {
        self.recipient
    }
}
