//! The policy's context, answered from one read of the store.

use rust_decimal::Decimal;

use crate::model::context::{Activity, ActivityFilter, ContextSource, RecipientHistory};
use crate::store::History;

/// Answers a policy's questions about one transaction from a snapshot of the
/// agent's past read before classification.
pub(crate) struct HistoryContext {
    pub history: History,
    /// The classified transaction's request time: windows end here.
    pub at_ms: u64,
    /// The classified transaction's currency: only these amounts are summed.
    pub currency: String,
}

impl ContextSource for HistoryContext {
    fn agent_activity(&self, window_ms: u64, filter: &ActivityFilter) -> Activity {
        let since = self.at_ms.saturating_sub(window_ms);
        let mut activity = Activity {
            count: 0,
            total: Decimal::ZERO,
        };
        for p in &self.history.payments {
            // Inclusive at both ends: a burst within one millisecond still counts.
            let in_window = p.requested_at_ms >= since && p.requested_at_ms <= self.at_ms;
            let matches = match filter {
                ActivityFilter::All => true,
                ActivityFilter::Category(c) => &p.category == c,
                ActivityFilter::Tier(t) => p.tier == *t,
            };
            if in_window && matches {
                activity.count += 1;
                if p.currency == self.currency {
                    activity.total += p.amount;
                }
            }
        }
        activity
    }

    fn recipient(&self) -> RecipientHistory {
        RecipientHistory {
            first_seen_ms: self.history.recipient_first_paid_ms,
            payment_count: self.history.recipient_payments,
        }
    }
}
