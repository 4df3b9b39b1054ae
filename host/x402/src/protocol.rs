//! The x402 v2 messages tiergate reads and writes, as the protocol spells
//! them (camelCase). Amounts stay strings of the asset's atomic units.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The only protocol version tiergate speaks.
pub const VERSION: u32 = 2;

/// The header a client sends the signed payment in (x402 v2).
pub const PAYMENT_HEADER: &str = "PAYMENT-SIGNATURE";

/// What a resource server answers with `402 Payment Required`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct PaymentRequired {
    /// The protocol version: 2. Kept as written: a version tiergate does not
    /// speak is refused by name, whatever its spelling.
    #[cfg_attr(feature = "openapi", schema(value_type = u32))]
    pub x402_version: serde_json::Number,
    /// Why the server asks, when it says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// What is being paid for.
    pub resource: Resource,
    /// The ways the server accepts payment; the client picks one.
    pub accepts: Vec<Requirements>,
    /// Protocol extensions, passed through untouched.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>))]
    pub extensions: Option<Map<String, Value>>,
}

/// The resource a payment is for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct Resource {
    /// Where it is.
    pub url: String,
    /// What it is, in words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Its media type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mime_type: Option<String>,
}

/// One way of paying a resource.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct Requirements {
    /// The payment scheme: tiergate signs `exact`.
    pub scheme: String,
    /// CAIP-2 network: `eip155:8453` is Base.
    pub network: String,
    /// The amount in the asset's atomic units, as a decimal string.
    pub amount: String,
    /// The token contract.
    pub asset: String,
    /// Who is paid.
    pub pay_to: String,
    /// How long a signed payment stays valid, in seconds (kept as the
    /// server wrote it, which the payment must repeat).
    #[cfg_attr(feature = "openapi", schema(value_type = u64))]
    pub max_timeout_seconds: serde_json::Number,
    /// Scheme-specific data (for `exact` on EVM, the token's EIP-712
    /// domain `name` and `version`).
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub extra: Map<String, Value>,
}

/// A signed payment, as the client sends it back to the resource server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct PaymentPayload {
    /// The protocol version: 2.
    pub x402_version: u32,
    /// The resource paid for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource: Option<Resource>,
    /// The requirements this payment meets, as the server stated them.
    pub accepted: Requirements,
    /// The `exact` scheme's signed authorization.
    pub payload: ExactPayload,
}

/// The `exact` EVM scheme's payload: an EIP-3009 authorization and its
/// signature.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ExactPayload {
    /// The 65-byte signature, `0x` and hex.
    pub signature: String,
    /// What was signed.
    pub authorization: TransferAuthorization,
}

/// EIP-3009 `transferWithAuthorization`'s arguments, as strings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct TransferAuthorization {
    /// The paying address (the tenant's).
    pub from: String,
    /// The payee.
    pub to: String,
    /// Atomic units, decimal.
    pub value: String,
    /// Unix seconds after which it is valid.
    pub valid_after: String,
    /// Unix seconds before which it is valid.
    pub valid_before: String,
    /// 32 bytes, `0x` and hex, unique per payment.
    pub nonce: String,
}
