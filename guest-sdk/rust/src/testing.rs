//! Test policies natively with plain `cargo test`: build transactions, set
//! what the context answers, and classify through the same configuration
//! parsing the sandbox uses.
//!
//! ```
//! use tiergate_policy::testing::{transaction, TestContext};
//! use tiergate_policy::{ActivityFilter, Context, RecipientTrust, Tier, Window};
//!
//! let tx = transaction("89.00", "agent_hire")
//!     .trust(RecipientTrust::Known)
//!     .justification("EURC liquidity analysis")
//!     .build();
//! assert_eq!(tx.amount.to_string(), "89.00");
//!
//! let ctx = TestContext::new().with_tier_count(Window::hours(24), Tier::Collaborative, 4);
//! assert_eq!(ctx.activity(Window::hours(24), ActivityFilter::Tier(Tier::Collaborative)).count, 4);
//! // Questions the test did not set are answered with no activity.
//! assert_eq!(ctx.activity(Window::hours(1), ActivityFilter::All).count, 0);
//! ```

use std::str::FromStr;

use rust_decimal::Decimal;

use crate::{
    Activity, ActivityFilter, Context, Decision, Policy, RecipientHistory, RecipientTrust, Tier,
    Transaction, Window,
};

/// Parses `config` as the sandbox does, then classifies `tx`.
///
/// Returns the configuration error text the host would show when the
/// document is invalid.
pub fn classify<P: Policy>(
    config: &str,
    tx: &Transaction,
    ctx: &dyn Context,
) -> Result<Decision, String> {
    let policy = crate::parse_config::<P>(config)?;
    Ok(policy.classify(tx, ctx))
}

/// Starts a transaction of `amount` (exact decimal text, such as `"0.02"`)
/// in `category`. The other fields have neutral defaults: currency `USD`,
/// recipient `recipient.example` with trust `known`, no jurisdiction.
///
/// # Panics
/// When `amount` is not a decimal number: this is a test helper.
#[allow(
    clippy::panic,
    reason = "a test helper: a bad amount fails the test that wrote it"
)]
pub fn transaction(amount: &str, category: &str) -> TransactionBuilder {
    let amount = Decimal::from_str(amount)
        .unwrap_or_else(|e| panic!("test transaction amount `{amount}` is not a decimal: {e}"));
    TransactionBuilder(Transaction {
        id: "tx-test".into(),
        tenant: "test-tenant".into(),
        agent: "test-agent".into(),
        amount,
        currency: "USD".into(),
        category: category.into(),
        recipient: "recipient.example".into(),
        recipient_trust: RecipientTrust::Known,
        jurisdiction: None,
        justification: None,
        network: None,
        metadata: Vec::new(),
        requested_at_ms: 1_782_518_400_000,
    })
}

/// Builds a [`Transaction`] for a test; start with [`transaction`].
#[derive(Debug, Clone)]
#[must_use]
pub struct TransactionBuilder(Transaction);

impl TransactionBuilder {
    /// Sets the transaction id.
    pub fn id(mut self, id: &str) -> Self {
        self.0.id = id.into();
        self
    }
    /// Sets the tenant.
    pub fn tenant(mut self, tenant: &str) -> Self {
        self.0.tenant = tenant.into();
        self
    }
    /// Sets the agent.
    pub fn agent(mut self, agent: &str) -> Self {
        self.0.agent = agent.into();
        self
    }
    /// Sets the currency or token code.
    pub fn currency(mut self, currency: &str) -> Self {
        self.0.currency = currency.into();
        self
    }
    /// Sets the recipient.
    pub fn recipient(mut self, recipient: &str) -> Self {
        self.0.recipient = recipient.into();
        self
    }
    /// Sets the recipient's trust level.
    pub fn trust(mut self, trust: RecipientTrust) -> Self {
        self.0.recipient_trust = trust;
        self
    }
    /// Sets the recipient's jurisdiction (ISO country code).
    pub fn jurisdiction(mut self, code: &str) -> Self {
        self.0.jurisdiction = Some(code.into());
        self
    }
    /// Sets the agent's justification.
    pub fn justification(mut self, text: &str) -> Self {
        self.0.justification = Some(text.into());
        self
    }
    /// Sets the settlement network.
    pub fn network(mut self, network: &str) -> Self {
        self.0.network = Some(network.into());
        self
    }
    /// Adds a metadata pair.
    pub fn meta(mut self, key: &str, value: &str) -> Self {
        self.0.metadata.push((key.into(), value.into()));
        self
    }
    /// Sets when the agent asked (milliseconds since the Unix epoch).
    pub fn requested_at_ms(mut self, ms: u64) -> Self {
        self.0.requested_at_ms = ms;
        self
    }
    /// The finished transaction.
    pub fn build(self) -> Transaction {
        self.0
    }
}

/// A [`Context`] whose answers the test sets. A question that was not set is
/// answered with no activity and no recipient history, as the host answers
/// for an agent with no past.
#[derive(Debug, Clone, Default)]
pub struct TestContext {
    activity: Vec<(Window, ActivityFilter, Activity)>,
    recipient: RecipientHistory,
}

impl TestContext {
    /// A context with no past activity.
    pub fn new() -> Self {
        Self::default()
    }

    /// Answers `activity(window, filter)` with `count` transactions totalling `total`.
    pub fn with_activity(
        mut self,
        window: Window,
        filter: ActivityFilter,
        count: u64,
        total: Decimal,
    ) -> Self {
        self.activity
            .retain(|(w, f, _)| !(*w == window && *f == filter));
        self.activity
            .push((window, filter, Activity { count, total }));
        self
    }

    /// Answers `activity(window, Tier(tier))` with `count` transactions (total zero).
    pub fn with_tier_count(self, window: Window, tier: Tier, count: u64) -> Self {
        self.with_activity(window, ActivityFilter::Tier(tier), count, Decimal::ZERO)
    }

    /// Sets the recipient's history.
    pub fn with_recipient(mut self, first_seen_ms: Option<u64>, payment_count: u64) -> Self {
        self.recipient = RecipientHistory {
            first_seen_ms,
            payment_count,
        };
        self
    }
}

impl Context for TestContext {
    fn activity(&self, window: Window, filter: ActivityFilter) -> Activity {
        // The host fails such a classification closed; a test must see it.
        assert!(
            window <= Window::LONGEST,
            "the policy asked about the last {window} of activity; the host answers at most \
             {} and fails the classification closed beyond it",
            Window::LONGEST
        );
        self.activity
            .iter()
            .find(|(w, f, _)| *w == window && *f == filter)
            .map(|(_, _, a)| *a)
            .unwrap_or_default()
    }

    fn recipient_history(&self) -> RecipientHistory {
        self.recipient
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_window_the_host_answers_for_is_answered() {
        let ctx =
            TestContext::new().with_activity(Window::LONGEST, ActivityFilter::All, 3, Decimal::ONE);
        assert_eq!(ctx.activity(Window::LONGEST, ActivityFilter::All).count, 3);
    }

    #[test]
    #[should_panic(expected = "fails the classification closed beyond it")]
    fn a_longer_window_panics_as_the_host_fails_it_closed() {
        TestContext::new().activity(Window::days(32), ActivityFilter::All);
    }
}
