//! What a policy may ask the host about the past.

use alloc::string::String;

use rust_decimal::Decimal;

use crate::{Tier, Window};

/// Which of the agent's earlier transactions to count.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ActivityFilter {
    /// All of them.
    All,
    /// Only those of this category.
    Category(String),
    /// Only those that received this tier.
    Tier(Tier),
}

/// How many transactions matched and what they added up to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Activity {
    /// Number of matching transactions.
    pub count: u64,
    /// Their total in the classified transaction's currency (other currencies
    /// are counted but not summed; the host never converts).
    pub total: Decimal,
}

/// What the host knows about the transaction's recipient, within the tenant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RecipientHistory {
    /// When the tenant first paid this recipient, if ever.
    pub first_seen_ms: Option<u64>,
    /// How many earlier payments the tenant made to it.
    pub payment_count: u64,
}

/// Read-only questions about the past, answered by the host from one
/// snapshot taken before classification (so asking twice gives the same
/// answer).
///
/// Inside the sandbox this calls the host; in native tests use
/// [`testing::TestContext`](crate::testing::TestContext).
pub trait Context {
    /// The agent's earlier transactions matching `filter` whose request time
    /// lies in the `window` before this transaction's, at most
    /// [`Window::LONGEST`] (31 days): asking about a longer one fails the
    /// classification closed (the tenant's failure tier applies).
    fn activity(&self, window: Window, filter: ActivityFilter) -> Activity;

    /// History of the transaction's recipient.
    fn recipient_history(&self) -> RecipientHistory;
}
