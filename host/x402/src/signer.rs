//! Signing an executed payment's EIP-3009 authorization, and handing the
//! same signature out again on every later read.
//!
//! The signature is never stored: the record keeps the nonce, the validity
//! window and the payload's hash (`execution_ref`), and the payload is
//! signed again from them when asked for. ECDSA signing here is
//! deterministic (RFC 6979), so a retry gets the very same bytes, and the
//! hash proves it.

use std::sync::Arc;

use alloy::primitives::{Address, B256, U256};
use alloy::signers::SignerSync;
use alloy::sol_types::{Eip712Domain, SolStruct, sol};
use base64::Engine;
use serde::Serialize;
use tiergate_core::governance::{Authorization, Clock, PaymentExecutor, Status, TenantConfig};
use tiergate_runtime::model::transaction::Transaction;

use crate::assets::{self, Asset};
use crate::error::X402Error;
use crate::keys::{PaymentKeys, random_32};
use crate::offer::{ACCEPTED, RESOURCE, atomic};
use crate::protocol::{
    ExactPayload, PAYMENT_HEADER, PaymentPayload, Requirements, Resource, TransferAuthorization,
    VERSION,
};

sol! {
    #![sol(alloy_sol_types = alloy::sol_types)]
    /// EIP-3009's typed message.
    struct TransferWithAuthorization {
        address from;
        address to;
        uint256 value;
        uint256 validAfter;
        uint256 validBefore;
        bytes32 nonce;
    }
}

/// How far before the signing second a signature is valid: a chain whose
/// clock is behind the service's still accepts it.
const CLOCK_SKEW_SECONDS: u64 = 600;

/// A signed payment, ready for the resource server.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SignedPayment {
    /// The request header to send it in: `PAYMENT-SIGNATURE`.
    pub header: &'static str,
    /// The header's value: the payload's JSON in base64.
    pub value: String,
    /// The payload itself.
    pub payload: PaymentPayload,
    /// The authorization's nonce.
    pub nonce: String,
}

/// Whether `tx` is an x402 payment (made by [`crate::offer::transaction`]).
pub fn is_x402(tx: &Transaction) -> bool {
    tx.metadata.contains_key(ACCEPTED)
}

/// The executor that signs executed x402 payments with the tenant's key
/// and hands every other payment to `other`.
pub struct X402Signer {
    keys: Arc<PaymentKeys>,
    other: Arc<dyn PaymentExecutor>,
    clock: Arc<dyn Clock>,
}

impl X402Signer {
    /// Signs with `keys` at `clock`'s time; other payments go to `other`
    /// (the store's ledger, usually), and x402 ones are written there too.
    pub fn new(
        keys: Arc<PaymentKeys>,
        other: Arc<dyn PaymentExecutor>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        X402Signer { keys, other, clock }
    }

    fn sign_new(
        &self,
        auth: &Authorization,
        rules: Option<&TenantConfig>,
    ) -> Result<String, X402Error> {
        let tx = &auth.transaction;
        let rules = rules
            .ok_or_else(|| X402Error::unsignable(&tx.id, "the tenant's rules cannot be loaded"))?;
        let governed = Governed::of(tx, rules)?;
        let now = self.clock.now_ms() / 1000;
        let window = Window {
            nonce: B256::from(random_32().map_err(|e| {
                X402Error::unsignable(&tx.id, format!("no randomness for a nonce: {e}"))
            })?),
            valid_after: now.saturating_sub(CLOCK_SKEW_SECONDS),
            valid_before: now.saturating_add(governed.timeout_seconds),
        };
        let signed = governed.sign(&self.keys, &window)?;
        Ok(window.reference(&signed))
    }
}

impl PaymentExecutor for X402Signer {
    fn execute(
        &self,
        auth: &Authorization,
        rules: Option<&TenantConfig>,
    ) -> Result<String, String> {
        if !is_x402(&auth.transaction) {
            return self.other.execute(auth, rules);
        }
        let reference = self.sign_new(auth, rules).map_err(|e| e.to_string())?;
        self.other.execute(auth, rules)?;
        Ok(reference)
    }

    // Every other payment is the ledger's alone, in one commit, as with no
    // signer at all.
    fn in_ledger(&self, auth: &Authorization) -> bool {
        !is_x402(&auth.transaction) && self.other.in_ledger(auth)
    }
}

/// `auth`'s signed payment: `None` until it is executed; the same bytes on
/// every call after.
pub fn signed_payment(
    auth: &Authorization,
    keys: &PaymentKeys,
    rules: &TenantConfig,
) -> Result<Option<SignedPayment>, X402Error> {
    if auth.status != Status::Executed {
        return Ok(None);
    }
    let tx = &auth.transaction;
    let reference = auth.execution_ref.as_deref().unwrap_or_default();
    let (window, recorded_hash) = Window::parse(reference).ok_or_else(|| {
        X402Error::unsignable(
            &tx.id,
            format!("its execution reference {reference:?} is not an x402 signature's"),
        )
    })?;
    let signed = Governed::of(tx, rules)?.sign(keys, &window)?;
    if signed.payload_hash() != recorded_hash {
        return Err(X402Error::unsignable(
            &tx.id,
            "signing it again does not give the payload recorded (the tenant's key or its asset settings changed since); the recorded hash stands in the audit trail",
        ));
    }
    Ok(Some(signed))
}

/// What an executed x402 payment signs, each part checked against what
/// was governed.
struct Governed {
    timeout_seconds: u64,
    tenant: String,
    tx_id: String,
    requirements: Requirements,
    resource: Option<Resource>,
    asset: Asset,
    value: String,
}

impl Governed {
    /// Rebuilt from the record: the amount, payee, network and currency
    /// are the governed transaction's, and the requirements must agree
    /// with them, so nothing signed differs from what was approved.
    fn of(tx: &Transaction, rules: &TenantConfig) -> Result<Governed, X402Error> {
        let refuse = |message: String| X402Error::unsignable(&tx.id, message);
        let accepted = tx
            .metadata
            .get(ACCEPTED)
            .ok_or_else(|| refuse("it is not an x402 payment".into()))?;
        let requirements: Requirements = serde_json::from_str(accepted)
            .map_err(|e| refuse(format!("its recorded requirements do not read: {e}")))?;
        let resource = match tx.metadata.get(RESOURCE) {
            Some(json) => Some(
                serde_json::from_str(json)
                    .map_err(|e| refuse(format!("its recorded resource does not read: {e}")))?,
            ),
            None => None,
        };
        if requirements.scheme != "exact" {
            return Err(refuse(format!(
                "scheme {:?} is not signed",
                requirements.scheme
            )));
        }
        if tx.network.as_deref() != Some(requirements.network.as_str()) {
            return Err(refuse(format!(
                "it was governed on network {:?}, and the requirements name {}",
                tx.network, requirements.network
            )));
        }
        if !requirements.pay_to.eq_ignore_ascii_case(&tx.recipient) {
            return Err(refuse(format!(
                "it was governed as a payment to {}, and the requirements pay {}",
                tx.recipient, requirements.pay_to
            )));
        }
        let asset =
            assets::find(rules, &requirements.network, &requirements.asset).ok_or_else(|| {
                refuse(format!(
                    "asset {} on {} is no longer among the tenant's",
                    requirements.asset, requirements.network
                ))
            })?;
        if asset.symbol != tx.currency {
            return Err(refuse(format!(
                "it was governed in {}, and asset {} is {}",
                tx.currency, requirements.asset, asset.symbol
            )));
        }
        let value = atomic(tx.amount, asset.decimals).ok_or_else(|| {
            refuse(format!(
                "{} {} is not a whole number of atomic units",
                tx.amount, tx.currency
            ))
        })?;
        if value != requirements.amount {
            return Err(refuse(format!(
                "it was governed for {} atomic units, and the requirements ask {}",
                value, requirements.amount
            )));
        }
        let timeout_seconds = crate::offer::timeout_seconds(&requirements).map_err(refuse)?;
        Ok(Governed {
            timeout_seconds,
            tenant: tx.tenant.clone(),
            tx_id: tx.id.clone(),
            requirements,
            resource,
            asset,
            value,
        })
    }

    fn sign(&self, keys: &PaymentKeys, window: &Window) -> Result<SignedPayment, X402Error> {
        let key = keys.key(&self.tenant)?;
        let refuse = |message: String| X402Error::unsignable(&self.tx_id, message);
        let to: Address = self
            .requirements
            .pay_to
            .parse()
            .map_err(|e| refuse(format!("payTo {}: {e}", self.requirements.pay_to)))?;
        let verifying_contract: Address = self
            .asset
            .address
            .parse()
            .map_err(|e| refuse(format!("asset {}: {e}", self.asset.address)))?;
        let value: U256 = self
            .value
            .parse()
            .map_err(|e| refuse(format!("value {}: {e}", self.value)))?;
        let message = TransferWithAuthorization {
            from: key.address(),
            to,
            value,
            validAfter: U256::from(window.valid_after),
            validBefore: U256::from(window.valid_before),
            nonce: window.nonce,
        };
        let domain = Eip712Domain::new(
            Some(self.asset.eip712_name.clone().into()),
            Some(self.asset.eip712_version.clone().into()),
            Some(U256::from(self.asset.chain_id)),
            Some(verifying_contract),
            None,
        );
        let signature = key
            .sign_typed_data_sync(&message, &domain)
            .map_err(|source| X402Error::Signing {
                tx_id: self.tx_id.clone(),
                source,
            })?;
        debug_assert_eq!(
            signature
                .recover_address_from_prehash(&message.eip712_signing_hash(&domain))
                .ok(),
            Some(key.address())
        );
        let payload = PaymentPayload {
            x402_version: VERSION,
            resource: self.resource.clone(),
            accepted: self.requirements.clone(),
            payload: ExactPayload {
                signature: alloy::primitives::hex::encode_prefixed(signature.as_bytes()),
                authorization: TransferAuthorization {
                    from: key.address().to_checksum(None),
                    to: to.to_checksum(None),
                    value: self.value.clone(),
                    valid_after: window.valid_after.to_string(),
                    valid_before: window.valid_before.to_string(),
                    nonce: window.nonce.to_string(),
                },
            },
        };
        let json = serde_json::to_string(&payload)
            .map_err(|e| refuse(format!("the payload does not serialize: {e}")))?;
        Ok(SignedPayment {
            header: PAYMENT_HEADER,
            value: base64::engine::general_purpose::STANDARD.encode(json.as_bytes()),
            payload,
            nonce: window.nonce.to_string(),
        })
    }
}

impl SignedPayment {
    /// `sha256:` of the header value: what the audit record keeps.
    pub fn payload_hash(&self) -> String {
        tiergate_runtime::model::digest::sha256(self.value.as_bytes())
    }
}

/// The parts of a signature that vary per payment, as recorded.
struct Window {
    nonce: B256,
    valid_after: u64,
    valid_before: u64,
}

impl Window {
    /// The execution reference recorded for `signed`: everything needed to
    /// sign it again, and the hash that proves it is the same.
    fn reference(&self, signed: &SignedPayment) -> String {
        format!(
            "x402 {} from={} nonce={} valid_after={} valid_before={} payload={}",
            signed.payload.accepted.network,
            signed.payload.payload.authorization.from,
            self.nonce,
            self.valid_after,
            self.valid_before,
            signed.payload_hash()
        )
    }

    /// The window and payload hash in a reference, if it is an x402 one.
    fn parse(reference: &str) -> Option<(Window, String)> {
        let mut words = reference.split(' ');
        if words.next()? != "x402" {
            return None;
        }
        let mut field = |name: &str| -> Option<String> {
            words.find_map(|w| w.strip_prefix(name)?.strip_prefix('=').map(str::to_string))
        };
        let nonce = field("nonce")?.parse().ok()?;
        let valid_after = field("valid_after")?.parse().ok()?;
        let valid_before = field("valid_before")?.parse().ok()?;
        let hash = field("payload")?;
        Some((
            Window {
                nonce,
                valid_after,
                valid_before,
            },
            hash,
        ))
    }
}
