//! The policy's context, answered from one read of the store.

use std::sync::atomic::{AtomicBool, Ordering};

use crate::store::{ActivityQuestion, History, HistoryReads, StoreError};
use tiergate_runtime::model::context::{
    Activity, ActivityFilter, ActivityResult, ContextRead, ContextSource, RecipientHistory,
    check_window,
};

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
    fn agent_activity(&self, window_ms: u64, filter: &ActivityFilter) -> ActivityResult {
        check_window(window_ms)?;
        // Inclusive at both ends: a burst within one millisecond still counts.
        let since = self.at_ms.saturating_sub(window_ms);
        self.history
            .activity(since, self.at_ms, &self.currency, filter)
    }

    fn recipient(&self) -> RecipientHistory {
        self.history.recipient()
    }
}

/// Answers a policy's questions from the store on demand, for a
/// classification before the write lock. A failed read answers nothing
/// useful, so it marks the whole classification as not to be kept.
pub(crate) struct ReadsContext {
    pub reads: Box<dyn HistoryReads + Send + Sync>,
    pub at_ms: u64,
    pub currency: String,
    failed: AtomicBool,
}

impl ReadsContext {
    pub(crate) fn new(
        reads: Box<dyn HistoryReads + Send + Sync>,
        at_ms: u64,
        currency: &str,
    ) -> Self {
        ReadsContext {
            reads,
            at_ms,
            currency: currency.to_string(),
            failed: AtomicBool::new(false),
        }
    }

    /// Whether a read failed, so a decision made on these answers is void.
    pub(crate) fn failed(&self) -> bool {
        self.failed.load(Ordering::Relaxed)
    }

    fn or_fail<T>(&self, read: Result<T, StoreError>, otherwise: T) -> T {
        read.unwrap_or_else(|e| {
            tracing::warn!("cannot answer a policy's question before the write lock: {e}");
            self.failed.store(true, Ordering::Relaxed);
            otherwise
        })
    }
}

impl ContextSource for ReadsContext {
    fn agent_activity(&self, window_ms: u64, filter: &ActivityFilter) -> ActivityResult {
        check_window(window_ms)?;
        let since = self.at_ms.saturating_sub(window_ms);
        self.or_fail(
            self.reads
                .activity(since, self.at_ms, &self.currency, filter),
            Ok(Activity::default()),
        )
    }

    fn recipient(&self) -> RecipientHistory {
        self.or_fail(self.reads.recipient(), RecipientHistory::default())
    }
}

/// The agent-activity questions among `reads`, asked at `at_ms`, as
/// [`same_answers`] asks them again.
pub(crate) fn questions(reads: &[ContextRead], at_ms: u64) -> Vec<ActivityQuestion> {
    reads
        .iter()
        .filter_map(|read| match read {
            ContextRead::AgentActivity { window, filter, .. } => Some(ActivityQuestion {
                since_ms: at_ms.saturating_sub(window.as_millis()),
                until_ms: at_ms,
                filter: filter.clone(),
            }),
            ContextRead::Recipient { .. } => None,
        })
        .collect()
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
                history.activity(since, at_ms, currency, filter)? == Ok(*answer)
            }
            ContextRead::Recipient { answer } => history.recipient()? == *answer,
        };
        if !same {
            return Ok(false);
        }
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use rust_decimal::Decimal;
    use tiergate_policy::{Tier, Window};

    use super::*;
    use crate::store::PastPayment;

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
                answer: early
                    .agent_activity(Window::hours(1).as_millis(), &asked)
                    .unwrap(),
            },
            ContextRead::Recipient {
                answer: early.recipient(),
            },
        ];
        let holds =
            |h: &History, reads: &[ContextRead]| same_answers(h, at, "USDC", reads).unwrap();
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
