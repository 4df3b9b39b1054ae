//! The policy's context, answered from one read of the store.

use rust_decimal::Decimal;

use crate::model::context::{
    Activity, ActivityFilter, ContextRead, ContextSource, RecipientHistory,
};
use crate::store::{History, HistoryReads, StoreError};

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
        activity(&self.history, self.at_ms, &self.currency, window_ms, filter)
    }

    fn recipient(&self) -> RecipientHistory {
        recipient(&self.history)
    }
}

/// Whether the store, inside `record`, gives every answer in `reads`: then
/// a decision made on an earlier snapshot is the one this snapshot would
/// give, since a policy sees nothing but the transaction, its configuration
/// and these answers.
pub(crate) fn same_answers(
    history: &dyn HistoryReads,
    at_ms: u64,
    currency: &str,
    reads: &[ContextRead],
) -> Result<bool, StoreError> {
    for read in reads {
        let same = match read {
            ContextRead::AgentActivity {
                window,
                filter,
                answer,
            } => {
                let since = at_ms.saturating_sub(window.as_millis());
                history.activity(since, at_ms, currency, filter)? == *answer
            }
            ContextRead::Recipient { answer } => history.recipient()? == *answer,
        };
        if !same {
            return Ok(false);
        }
    }
    Ok(true)
}

fn activity(
    history: &History,
    at_ms: u64,
    currency: &str,
    window_ms: u64,
    filter: &ActivityFilter,
) -> Activity {
    let since = at_ms.saturating_sub(window_ms);
    let mut activity = Activity {
        count: 0,
        total: Decimal::ZERO,
    };
    for p in &history.payments {
        // Inclusive at both ends: a burst within one millisecond still counts.
        let in_window = p.requested_at_ms >= since && p.requested_at_ms <= at_ms;
        let matches = match filter {
            ActivityFilter::All => true,
            ActivityFilter::Category(c) => &p.category == c,
            ActivityFilter::Tier(t) => p.tier == *t,
        };
        if in_window && matches {
            activity.count += 1;
            if p.currency == currency {
                activity.total += p.amount;
            }
        }
    }
    activity
}

fn recipient(history: &History) -> RecipientHistory {
    RecipientHistory {
        first_seen_ms: history.recipient_first_paid_ms,
        payment_count: history.recipient_payments,
    }
}

#[cfg(test)]
mod tests {
    use tiergate_policy::{Tier, Window};

    use super::*;
    use crate::store::PastPayment;

    /// The store's answers, from a history in memory.
    struct Stored(History);

    impl HistoryReads for Stored {
        fn activity(
            &self,
            since_ms: u64,
            until_ms: u64,
            currency: &str,
            filter: &ActivityFilter,
        ) -> Result<Activity, StoreError> {
            Ok(activity(
                &self.0,
                until_ms,
                currency,
                until_ms - since_ms,
                filter,
            ))
        }
        fn recipient(&self) -> Result<RecipientHistory, StoreError> {
            Ok(recipient(&self.0))
        }
        fn all(&self) -> Result<History, StoreError> {
            Ok(self.0.clone())
        }
    }

    fn paid(at_ms: u64, category: &str, tier: Tier) -> PastPayment {
        PastPayment {
            requested_at_ms: at_ms,
            amount: Decimal::new(250, 2),
            currency: "USDC".into(),
            category: category.into(),
            tier,
        }
    }

    #[test]
    fn an_early_decision_stands_only_while_its_answers_do() {
        let at = 10_000_000;
        let mut history = History {
            payments: vec![paid(at - 1_000, "embeddings", Tier::Autonomous)],
            recipient_first_paid_ms: Some(1),
            recipient_payments: 1,
        };
        let early = HistoryContext {
            history: history.clone(),
            at_ms: at,
            currency: "USDC".into(),
        };
        let asked = ActivityFilter::Category("embeddings".into());
        let reads = vec![
            ContextRead::AgentActivity {
                window: Window::hours(1),
                filter: asked.clone(),
                answer: early.agent_activity(Window::hours(1).as_millis(), &asked),
            },
            ContextRead::Recipient {
                answer: early.recipient(),
            },
        ];
        let holds = |h: &History, reads: &[ContextRead]| {
            same_answers(&Stored(h.clone()), at, "USDC", reads).unwrap()
        };
        assert!(holds(&history, &reads));
        assert!(holds(&history, &[]));

        // Another category, or a payment before the window, changes no answer.
        history
            .payments
            .push(paid(at - 500, "compute", Tier::Autonomous));
        history
            .payments
            .push(paid(at - 7_200_000, "embeddings", Tier::Autonomous));
        assert!(holds(&history, &reads));

        // One more payment the policy counted changes its answer.
        history
            .payments
            .push(paid(at, "embeddings", Tier::Supervised));
        assert!(!holds(&history, &reads));
        history.payments.pop();

        // So does a payment to the recipient since.
        history.recipient_payments = 2;
        assert!(!holds(&history, &reads));
    }
}
