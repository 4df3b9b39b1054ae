//! How types from the policy SDK appear in the service's OpenAPI document
//! (they are defined in a crate that knows nothing of OpenAPI).

/// An autonomy tier, least to most restrictive.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(as = Tier))]
#[allow(dead_code)]
#[serde(rename_all = "snake_case")]
pub enum TierName {
    /// No approval; executes at once.
    Autonomous,
    /// Owner notified, may veto within a window; executes after.
    Supervised,
    /// Needs explicit human approval; expires after a timeout.
    Collaborative,
    /// Blocked; never executes.
    Prohibited,
}

/// How much the tenant trusts a recipient.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(as = RecipientTrust))]
#[allow(dead_code)]
#[serde(rename_all = "snake_case")]
pub enum TrustName {
    /// Verified identity.
    Verified,
    /// Seen before.
    Known,
    /// Never seen.
    Unknown,
}
