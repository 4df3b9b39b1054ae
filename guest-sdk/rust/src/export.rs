//! The bridge between the generated WIT bindings and the [`Policy`] trait.
//!
//! Nothing here is part of the public API: authors call
//! [`export_policy!`](crate::export_policy) and never see the bindings.

use alloc::boxed::Box;
use alloc::format;
use alloc::string::{String, ToString};
use core::any::Any;
use core::cell::RefCell;
use core::marker::PhantomData;
use core::str::FromStr;

use rust_decimal::Decimal;

use crate::{
    Activity, ActivityFilter, Context, Decision, Policy, RecipientHistory, Tier, Transaction,
    Window,
};

pub mod bindings {
    wit_bindgen::generate!({
        // A copy of the workspace's `wit/v0.2.0`, so the published crate carries
        // its contract; a test fails if the two differ.
        path: "wit/v0.2.0",
        world: "tier-policy",
        pub_export_macro: true,
        export_macro_name: "__tiergate_export_tier_policy",
        default_bindings_module: "tiergate_policy::__private::bindings",
    });
}

pub use bindings::__tiergate_export_tier_policy as export;

pub use crate::json::{Token, count_tokens, tokenize};

use bindings::exports::tiergate::policy::policy as wit_policy;
use bindings::tiergate::policy::{context as wit_context, types as wit};

/// The contract this SDK builds against, written into every compiled policy
/// as the `tiergate:contract` custom section so the host can name the version
/// of a policy it cannot serve.
#[used]
#[cfg_attr(target_family = "wasm", unsafe(link_section = "tiergate:contract"))]
static CONTRACT: [u8; 21] = *b"tiergate:policy@0.2.0";

#[cfg(test)]
#[test]
fn the_contract_section_names_this_sdks_contract() {
    assert_eq!(
        CONTRACT[..].strip_suffix(crate::CONTRACT_VERSION.as_bytes()),
        Some(&b"tiergate:policy@"[..])
    );
}

/// Name and version of the crate that exported the policy, filled in by
/// [`export_policy!`](crate::export_policy) from Cargo's environment.
pub trait PackageInfo {
    /// The crate's name.
    const NAME: &'static str;
    /// The crate's version.
    const VERSION: &'static str;
}

/// Implements the generated `Guest` trait for any [`Policy`].
pub struct Export<P>(PhantomData<P>);

/// The configuration `configure` read, kept for this instance's `classify`.
/// The host gives every instance one `configure` and one `classify`.
struct Configured(RefCell<Option<Box<dyn Any>>>);

// SAFETY: a policy instance has one thread: wasm components have no threads,
// and natively nothing but the export's own calls touch it.
unsafe impl Sync for Configured {}

static CONFIGURED: Configured = Configured(RefCell::new(None));

impl<P: Policy + PackageInfo + 'static> wit_policy::Guest for Export<P> {
    fn info() -> wit::PolicyInfo {
        wit::PolicyInfo {
            name: P::NAME.to_string(),
            version: P::VERSION.to_string(),
            tiers: P::TIERS.iter().map(|t| tier_to_wit(*t)).collect(),
        }
    }

    fn configure(config: String) -> Result<(), String> {
        let policy = crate::parse_config::<P>(&config)?;
        let mut kept = CONFIGURED.0.borrow_mut();
        if kept.is_some() {
            return Err("`configure` was called twice on one instance".into());
        }
        *kept = Some(Box::new(policy));
        Ok(())
    }

    fn classify(tx: wit::Transaction) -> Result<wit::Decision, String> {
        let kept = CONFIGURED.0.borrow();
        let policy = kept
            .as_ref()
            .and_then(|p| p.downcast_ref::<P>())
            .ok_or("`classify` was called before `configure`")?;
        let tx = transaction_from_wit(tx)?;
        let decision = policy.classify(&tx, &HostContext);
        Ok(decision_to_wit(decision))
    }
}

/// Answers [`Context`] questions by calling the host.
struct HostContext;

impl Context for HostContext {
    #[allow(
        clippy::expect_used,
        reason = "a malformed answer is a host bug; trapping makes the host apply the failure tier"
    )]
    fn activity(&self, window: Window, filter: ActivityFilter) -> Activity {
        let filter = match filter {
            ActivityFilter::All => wit_context::ActivityFilter::All,
            ActivityFilter::Category(c) => wit_context::ActivityFilter::Category(c),
            ActivityFilter::Tier(t) => wit_context::ActivityFilter::Tier(tier_to_wit(t)),
        };
        let answer = wit_context::agent_activity(window.as_millis(), &filter);
        Activity {
            count: answer.count,
            // The host only sends well-formed decimals; an unreadable one is a
            // host bug, and trapping makes the host apply the failure tier.
            total: Decimal::from_str(&answer.total).expect("host sent a malformed decimal"),
        }
    }

    fn recipient_history(&self) -> RecipientHistory {
        let h = wit_context::recipient();
        RecipientHistory {
            first_seen_ms: h.first_seen_ms,
            payment_count: h.payment_count,
        }
    }
}

fn transaction_from_wit(tx: wit::Transaction) -> Result<Transaction, String> {
    let amount = Decimal::from_str(&tx.amount)
        .map_err(|e| format!("the host sent an unreadable amount `{}`: {e}", tx.amount))?;
    Ok(Transaction {
        id: tx.id,
        tenant: tx.tenant,
        agent: tx.agent,
        amount,
        currency: tx.currency,
        category: tx.category,
        recipient: tx.recipient,
        recipient_trust: match tx.recipient_trust {
            wit::RecipientTrust::Verified => crate::RecipientTrust::Verified,
            wit::RecipientTrust::Known => crate::RecipientTrust::Known,
            wit::RecipientTrust::Unknown => crate::RecipientTrust::Unknown,
        },
        jurisdiction: tx.jurisdiction,
        justification: tx.justification,
        network: tx.network,
        metadata: tx.metadata,
        requested_at_ms: tx.requested_at_ms,
    })
}

fn decision_to_wit(d: Decision) -> wit::Decision {
    wit::Decision {
        tier: tier_to_wit(d.tier),
        reasons: d
            .reasons
            .into_iter()
            .map(|r| wit::Reason {
                code: r.code,
                message: r.message,
            })
            .collect(),
        suggestion: d.suggestion,
    }
}

fn tier_to_wit(t: Tier) -> wit::Tier {
    match t {
        Tier::Autonomous => wit::Tier::Autonomous,
        Tier::Supervised => wit::Tier::Supervised,
        Tier::Collaborative => wit::Tier::Collaborative,
        Tier::Prohibited => wit::Tier::Prohibited,
    }
}
