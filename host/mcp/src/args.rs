//! The tools' arguments: each a struct whose JSON schema (derived with
//! schemars) is the tool's `inputSchema`, its doc comments the
//! descriptions an agent reads.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// An amount as the API takes it: a decimal string such as `"89.00"`, or a
/// JSON number, read exactly either way.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum Amount {
    /// `"89.00"`: the scale is kept.
    Text(String),
    /// `89.00` as a JSON number, never read through a binary float.
    Number(serde_json::Number),
}

/// How much the agent trusts the recipient.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Trust {
    /// Never paid before, or not identifiable.
    Unknown,
    /// Paid before; not pre-approved.
    Known,
    /// Pre-approved by the tenant.
    Verified,
}

/// `request_payment`: a plain payment, as `POST /v1/authorizations` takes it.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PaymentArgs {
    /// A new id for this payment, unique in the tenant: the idempotency
    /// key. Sending the same id with the same payment again returns the
    /// same answer and never pays twice; reuse it to retry.
    pub id: String,
    /// The amount: a decimal string such as "89.00" (exact; the scale is kept).
    pub amount: Amount,
    /// The currency or token: USDC, EURC, USD.
    pub currency: String,
    /// What the payment is for, such as embeddings, search, data_access,
    /// compute, agent_hire. The tenant's policy classifies by it.
    pub category: String,
    /// Who is paid: the vendor's or agent's identifier, such as
    /// `analysis-agent-beta.example`.
    pub recipient: String,
    /// What you know of the recipient. The tenant's registry and payment
    /// history decide; a claim never makes the tier looser.
    pub recipient_trust: Trust,
    /// The recipient's country, ISO 3166-1 alpha-2 (`DE`), when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jurisdiction: Option<String>,
    /// Why you want to pay; the budget owner reads it when the payment
    /// needs their approval.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub justification: Option<String>,
    /// The settlement network, such as `base-mainnet`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<String>,
    /// Free string key/value pairs recorded with the payment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Map<String, Value>>,
    /// The agent paying. Leave it out with an agent's key: the key pays as
    /// its own agent. A platform key must name one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
    /// The tenant. Leave it out: it is the key's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
}

/// `pay_x402`: pay for a resource that answered HTTP 402.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct X402Args {
    /// A new id for this payment, unique in the tenant: the idempotency
    /// key. The same id returns the same payment, and the same signature
    /// once signed; reuse it to retry or to fetch the signature later.
    pub id: String,
    /// What the payment is for, such as embeddings or agent_hire: the
    /// tenant's policy classifies by it.
    pub category: String,
    /// Why you want to pay; defaults to the resource's description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub justification: Option<String>,
    /// The x402 `PaymentRequired` object exactly as received: the body of
    /// the 402 answer, or the decoded `PAYMENT-REQUIRED` header.
    #[schemars(with = "PaymentRequired")]
    pub payment_required: Map<String, Value>,
    /// The agent paying. Leave it out with an agent's key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
    /// The tenant. Leave it out: it is the key's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
}

/// An x402 v2 `PaymentRequired`, for the schema: the object is passed on
/// as received, with any field not named here.
#[derive(JsonSchema)]
#[allow(dead_code, reason = "only its schema is used")]
struct PaymentRequired {
    /// 2.
    #[serde(rename = "x402Version")]
    x402_version: u32,
    /// The resource being paid for: `url`, `description`, `mimeType`.
    resource: Option<Map<String, Value>>,
    /// The payment options offered; tiergate picks one it can govern.
    accepts: Vec<PaymentRequirements>,
}

/// One payment option of a `PaymentRequired`.
#[derive(JsonSchema)]
#[allow(dead_code, reason = "only its schema is used")]
struct PaymentRequirements {
    /// `exact`.
    scheme: String,
    /// A CAIP-2 network, such as `eip155:8453` (Base).
    network: String,
    /// The amount in the asset's atomic units, as a decimal string.
    amount: String,
    /// The asset's contract address.
    asset: String,
    /// Who is paid.
    #[serde(rename = "payTo")]
    pay_to: String,
    /// How long a signed payment stays valid.
    #[serde(rename = "maxTimeoutSeconds")]
    max_timeout_seconds: u64,
    /// Scheme-specific data, such as the token's EIP-712 `name` and `version`.
    extra: Option<Map<String, Value>>,
}

/// `payment_status`: one payment by its id.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StatusArgs {
    /// The payment's id, as sent to request_payment or pay_x402.
    pub id: String,
}

/// `my_payments`: the payments this key asked for, newest first.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ListArgs {
    /// At most this many (1 to 100; 20 when left out).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 100))]
    pub limit: Option<u32>,
    /// Where to go on: the `next_cursor` of the previous page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
    /// Only these statuses: executed, pending_veto, awaiting_approval,
    /// executing, execution_failed, vetoed, rejected, expired, blocked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<Vec<String>>,
}

/// `spending_limits`: what an agent may still spend.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LimitsArgs {
    /// The agent. Leave it out with an agent's key; other keys must name one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
}
