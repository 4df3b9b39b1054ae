//! From a `PaymentRequired` to a payment tiergate can govern: pick the
//! option the tenant pays with and convert its atomic amount exactly.

use std::collections::BTreeMap;

use rust_decimal::Decimal;
use serde::Deserialize;
use tiergate_core::governance::TenantConfig;
use tiergate_policy::RecipientTrust;
use tiergate_runtime::model::transaction::{Transaction, limits};

use crate::assets::{self, Asset};
use crate::error::X402Error;
use crate::protocol::{PaymentRequired, Requirements, Resource, VERSION};

/// The metadata key holding the chosen requirements as JSON.
pub const ACCEPTED: &str = "x402.accepted";
/// The metadata key holding the resource paid for as JSON.
pub const RESOURCE: &str = "x402.resource";

/// The longest `maxTimeoutSeconds` signed: a day. Longer would leave a
/// signed payment spendable long after the owners looked at it.
pub const MAX_TIMEOUT_SECONDS: u64 = 24 * 60 * 60;

/// An agent's request to pay an x402 resource through tiergate.
#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct PayRequest {
    /// The transaction id: the idempotency key.
    pub id: String,
    /// The agent paying.
    pub agent: String,
    /// What the payment is for; the policy classifies by it.
    pub category: String,
    /// Why the agent pays; the resource's description when left out.
    #[serde(default)]
    pub justification: Option<String>,
    /// The tenant; the key's when left out.
    #[serde(default)]
    pub tenant: Option<String>,
    /// The `PaymentRequired` as the resource server sent it.
    pub payment_required: PaymentRequired,
}

/// The option chosen, with its asset and exact amount.
#[derive(Debug, Clone)]
pub struct Choice {
    /// The requirements as offered.
    pub requirements: Requirements,
    /// The token paid in.
    pub asset: Asset,
    /// The amount in tokens: the atomic amount over 10^decimals.
    pub amount: Decimal,
}

/// The first option in `required` that `config`'s tenant can pay: the
/// `exact` scheme, on a network it pays on, in a known asset in its
/// currency. The refusal lists every option and why it was passed over.
pub fn choose(required: &PaymentRequired, config: &TenantConfig) -> Result<Choice, X402Error> {
    if required.x402_version.as_u64() != Some(u64::from(VERSION)) {
        return Err(X402Error::UnsupportedVersion(
            required.x402_version.to_string(),
        ));
    }
    let Some(section) = &config.x402 else {
        return Err(X402Error::NotEnabled(config.tenant.clone()));
    };
    if required.accepts.is_empty() {
        return Err(X402Error::invalid(
            "payment_required.accepts",
            "offers no way to pay",
        ));
    }
    let mut passed_over = Vec::new();
    for (i, offer) in required.accepts.iter().enumerate() {
        let why = if offer.scheme != "exact" {
            format!("scheme {:?} (tiergate signs \"exact\")", offer.scheme)
        } else if !section.networks.contains(&offer.network) {
            format!(
                "network {} (tenant {} pays on {})",
                offer.network,
                config.tenant,
                section.networks.join(", ")
            )
        } else {
            match assets::find(config, &offer.network, &offer.asset) {
                None => format!(
                    "asset {} on {}, which is neither built in nor in the tenant's `x402.assets`",
                    offer.asset, offer.network
                ),
                Some(asset) if asset.symbol != config.currency => format!(
                    "asset {} is {}, and the tenant's currency is {}",
                    offer.asset, asset.symbol, config.currency
                ),
                Some(asset) => match check(offer, &asset) {
                    Ok(amount) => {
                        return Ok(Choice {
                            requirements: offer.clone(),
                            asset,
                            amount,
                        });
                    }
                    Err(why) => why,
                },
            }
        };
        passed_over.push(format!("accepts[{i}]: {why}"));
    }
    Err(X402Error::Unpayable(passed_over))
}

/// The option's amount in tokens, or why it cannot be paid.
fn check(offer: &Requirements, asset: &Asset) -> Result<Decimal, String> {
    if !tiergate_core::governance::is_evm_address(&offer.pay_to) {
        return Err(format!(
            "payTo {:?} is not an address (0x and 40 hex digits)",
            offer.pay_to
        ));
    }
    timeout_seconds(offer)?;
    tokens(&offer.amount, asset.decimals)
}

/// The option's `maxTimeoutSeconds`, when it is a whole number of seconds
/// tiergate signs for.
pub(crate) fn timeout_seconds(offer: &Requirements) -> Result<u64, String> {
    offer
        .max_timeout_seconds
        .as_u64()
        .filter(|s| (1..=MAX_TIMEOUT_SECONDS).contains(s))
        .ok_or_else(|| {
            format!(
                "maxTimeoutSeconds {} (tiergate signs 1 to {MAX_TIMEOUT_SECONDS} whole seconds)",
                offer.max_timeout_seconds
            )
        })
}

/// `atomic` units of a token with `decimals` places, in tokens, exactly.
pub fn tokens(atomic: &str, decimals: u32) -> Result<Decimal, String> {
    let digits_only = !atomic.is_empty() && atomic.bytes().all(|b| b.is_ascii_digit());
    // Decimal holds 96 bits: 28 digits always fit.
    if !digits_only || atomic.len() > 28 {
        return Err(format!(
            "amount {atomic:?} is not a whole number of atomic units below 10^28"
        ));
    }
    let units: i128 = atomic
        .parse()
        .map_err(|e| format!("amount {atomic:?}: {e}"))?;
    if units == 0 {
        return Err("amount 0: a payment moves something".into());
    }
    Decimal::try_from_i128_with_scale(units, decimals)
        .map(|d| d.normalize())
        .map_err(|e| format!("amount {atomic:?} with {decimals} decimals: {e}"))
}

/// `amount` tokens in atomic units, when it is a whole number of them.
pub fn atomic(amount: Decimal, decimals: u32) -> Option<String> {
    let unit = Decimal::try_from_i128_with_scale(10i128.checked_pow(decimals)?, 0).ok()?;
    let scaled = amount.checked_mul(unit)?;
    (scaled.fract().is_zero() && scaled > Decimal::ZERO).then(|| scaled.trunc().to_string())
}

/// The payment `choice` is, as a transaction for `tenant`. The recipient's
/// trust is what the tenant's registry lists, else unknown: an x402 payee
/// is not vouched for by the agent.
pub fn transaction(
    request: &PayRequest,
    choice: &Choice,
    config: &TenantConfig,
    now_ms: u64,
) -> Result<Transaction, X402Error> {
    let required = &request.payment_required;
    let trust = config
        .recipient(&choice.requirements.pay_to)
        .map_or(RecipientTrust::Unknown, |r| r.trust);
    let mut metadata = BTreeMap::new();
    let accepted = serde_json::to_string(&choice.requirements)
        .map_err(|e| X402Error::invalid("payment_required.accepts", e.to_string()))?;
    if accepted.len() > limits::METADATA_VALUE {
        return Err(X402Error::invalid(
            "payment_required.accepts",
            format!(
                "the chosen option is {} bytes of JSON; tiergate records at most {}",
                accepted.len(),
                limits::METADATA_VALUE
            ),
        ));
    }
    metadata.insert(ACCEPTED.to_string(), accepted);
    metadata.insert(RESOURCE.to_string(), resource_json(&required.resource)?);
    let justification = request
        .justification
        .clone()
        .or_else(|| required.resource.description.clone())
        .filter(|j| !j.is_empty());
    let mut tx = Transaction {
        id: request.id.clone(),
        tenant: config.tenant.clone(),
        agent: request.agent.clone(),
        amount: choice.amount,
        currency: choice.asset.symbol.clone(),
        category: request.category.clone(),
        recipient: choice.requirements.pay_to.to_ascii_lowercase(),
        recipient_trust: trust,
        jurisdiction: None,
        justification,
        network: Some(choice.requirements.network.clone()),
        self_hosted_wallet: None,
        metadata,
        requested_at_ms: now_ms,
    };
    tx.normalize().and_then(|()| tx.validate()).map_err(|e| {
        X402Error::invalid(
            e.field.as_deref().unwrap_or("payment_required"),
            e.to_string(),
        )
    })?;
    Ok(tx)
}

/// The resource as recorded: whole when it fits a metadata value, else its
/// URL alone.
fn resource_json(resource: &Resource) -> Result<String, X402Error> {
    let whole = serde_json::to_string(resource)
        .map_err(|e| X402Error::invalid("payment_required.resource", e.to_string()))?;
    if whole.len() <= limits::METADATA_VALUE {
        return Ok(whole);
    }
    let url_only = Resource {
        url: resource.url.clone(),
        description: None,
        mime_type: None,
    };
    let short = serde_json::to_string(&url_only)
        .map_err(|e| X402Error::invalid("payment_required.resource", e.to_string()))?;
    if short.len() > limits::METADATA_VALUE {
        return Err(X402Error::invalid(
            "payment_required.resource.url",
            format!("is over {} bytes", limits::METADATA_VALUE),
        ));
    }
    Ok(short)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_amounts_convert_exactly_both_ways() {
        assert_eq!(tokens("20000", 6).unwrap().to_string(), "0.02");
        assert_eq!(tokens("89000000", 6).unwrap().to_string(), "89");
        assert_eq!(tokens("1", 18).unwrap().to_string(), "0.000000000000000001");
        assert_eq!(atomic("0.02".parse().unwrap(), 6).unwrap(), "20000");
        assert_eq!(atomic("89".parse().unwrap(), 6).unwrap(), "89000000");
        // A fraction of an atomic unit cannot be paid.
        assert_eq!(atomic("0.0000001".parse().unwrap(), 6), None);
        for bad in [
            "",
            "0",
            "-5",
            "1.5",
            "1e6",
            " 5",
            "99999999999999999999999999999",
        ] {
            assert!(tokens(bad, 6).is_err(), "{bad:?} was accepted");
        }
    }
}
