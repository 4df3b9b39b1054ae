//! The payment a policy classifies.

use alloc::string::String;
use alloc::vec::Vec;

use rust_decimal::Decimal;

use crate::RecipientTrust;

/// A payment an agent asks to make, as the host hands it to the policy.
///
/// Build one in tests with [`testing::transaction`](crate::testing::transaction).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Transaction {
    /// Unique per tenant; the idempotency key of the request.
    pub id: String,
    /// The tenant whose agent asks.
    pub tenant: String,
    /// The agent asking to pay.
    pub agent: String,
    /// The amount, strictly positive, in [`currency`](Self::currency).
    pub amount: Decimal,
    /// Currency or token code, such as `USD` or `EURC`.
    pub currency: String,
    /// What the payment is for, such as `embeddings` or `agent_hire`.
    pub category: String,
    /// Who receives the payment.
    pub recipient: String,
    /// How much the host trusts the recipient.
    pub recipient_trust: RecipientTrust,
    /// ISO 3166-1 alpha-2 country code of the recipient, when known.
    pub jurisdiction: Option<String>,
    /// Why the agent wants to pay.
    pub justification: Option<String>,
    /// Settlement network, when relevant.
    pub network: Option<String>,
    /// Free key/value pairs from the platform.
    pub metadata: Vec<(String, String)>,
    /// When the agent asked, in milliseconds since the Unix epoch. The
    /// policy's only notion of time.
    pub requested_at_ms: u64,
}

impl Transaction {
    /// The value of a metadata key, if present.
    pub fn metadata(&self, key: &str) -> Option<&str> {
        self.metadata
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}
