//! Write [tiergate](https://github.com/tiergate/tiergate) autonomy-tier
//! policies in Rust, test them natively, and compile them to WebAssembly
//! components that the tiergate host runs in a sandbox.
//!
//! A policy is a configuration type that implements [`Policy`]: the host
//! hands it the tenant's configuration document (JSON) and a
//! [`Transaction`], and it answers with a [`Decision`]: a [`Tier`] and the
//! reasons for it. It may ask the [`Context`] about the agent's recent
//! activity and the recipient's history. It cannot approve, execute or skip
//! an audit record: the host does all of that, and may only make the tier
//! stricter.
//!
//! # A complete policy
//!
//! ```
//! use serde::Deserialize;
//! use tiergate_policy::{export_policy, ActivityFilter, Context, Decimal, Decision, Policy,
//!     RecipientTrust, Tier, Transaction, Window};
//!
//! /// Small payments to trusted recipients go through; the rest need a human.
//! #[derive(Deserialize)]
//! #[serde(deny_unknown_fields, default)]
//! pub struct SmallSpend {
//!     max_autonomous: Decimal,
//!     max_per_hour: u64,
//! }
//!
//! impl Default for SmallSpend {
//!     fn default() -> Self {
//!         SmallSpend { max_autonomous: Decimal::new(100, 2), max_per_hour: 100 }
//!     }
//! }
//!
//! impl Policy for SmallSpend {
//!     fn classify(&self, tx: &Transaction, ctx: &dyn Context) -> Decision {
//!         if tx.recipient_trust == RecipientTrust::Unknown {
//!             return Decision::new(Tier::Prohibited, "recipient_unknown", "never pay unknown recipients");
//!         }
//!         let recent = ctx.activity(Window::hours(1), ActivityFilter::Tier(Tier::Autonomous));
//!         if tx.amount <= self.max_autonomous && recent.count < self.max_per_hour {
//!             Decision::new(Tier::Autonomous, "small_payment", "within the autonomous limit")
//!         } else {
//!             Decision::new(Tier::Collaborative, "needs_human", "over the autonomous limit or rate")
//!                 .suggest(format!("stay at or under {} per payment", self.max_autonomous))
//!         }
//!     }
//! }
//!
//! export_policy!(SmallSpend);
//!
//! // Native test, with plain `cargo test`:
//! use tiergate_policy::testing::{classify, transaction, TestContext};
//!
//! let ctx = TestContext::new();
//! let tx = transaction("0.02", "embeddings").trust(RecipientTrust::Verified).build();
//! assert_eq!(classify::<SmallSpend>("{}", &tx, &ctx).unwrap().tier, Tier::Autonomous);
//!
//! let busy = TestContext::new().with_tier_count(Window::hours(1), Tier::Autonomous, 100);
//! assert_eq!(classify::<SmallSpend>("{}", &tx, &busy).unwrap().tier, Tier::Collaborative);
//!
//! // Configuration errors are caught when the host loads the policy:
//! let err = classify::<SmallSpend>(r#"{"max_autonomus": "5"}"#, &tx, &ctx).unwrap_err();
//! assert!(err.contains("max_autonomus"));
//! ```
//!
//! Build it as a component with
//! `cargo build --release --target wasm32-wasip2` from a crate whose
//! `[lib]` has `crate-type = ["cdylib", "rlib"]`, then try it with
//! `tiergate eval --policy target/wasm32-wasip2/release/small_spend.wasm tx.json`.
//!
//! # Configuration
//!
//! The host passes the tenant's configuration document as JSON text; an empty
//! document means `{}`. Numbers in it are read exactly (never through a
//! binary float), so `"max_autonomous": 1.00` and `"max_autonomous": "1.00"`
//! are the same. Use `#[serde(deny_unknown_fields)]` so a misspelt key is an
//! error the tenant sees when the policy is loaded, not a silent default.
//!
//! # Building blocks
//!
//! What most policies repeat is here, and
//! [`policies/seed-tiers`](https://github.com/tiergate/tiergate/tree/main/policies/seed-tiers)
//! is written on all of it:
//!
//! - [`prelude`]: `use tiergate_policy::prelude::*;` imports the SDK's types,
//!   its macros, serde's `Deserialize` and the `alloc` items a `no_std`
//!   policy needs.
//! - [`PositiveAmount`] and [`Jurisdiction`]: configuration fields that
//!   refuse a zero or negative amount, or a code that is not two capital
//!   letters, when the document is read.
//! - [`Defaults`] and [`defaults!`]: the policy's defaults as a JSON
//!   document, checked at compile time, with the tenant's document merged
//!   over it ([`Policy::DEFAULTS`]).
//! - [`Rule`] and [`Ladder`]: tiers tried in order, each with a ceiling,
//!   categories, a least trust and a rate cap; the first whose rule holds
//!   wins, and the reasons say which condition each looser tier failed.
//!
//! # Determinism
//!
//! Inside the sandbox there is no clock, randomness, file system, network or
//! environment: use [`Transaction::requested_at_ms`] for time. A policy that
//! panics, loops, or exhausts its memory is stopped and the host applies the
//! tenant's failure tier.
#![deny(missing_docs)]
// Without `std` a policy links no WASI start-up code: its component is one
// small core module importing only the contract and stderr.
#![cfg_attr(all(target_family = "wasm", not(feature = "std")), no_std)]

extern crate alloc;

mod amount;
#[cfg(all(target_arch = "wasm32", feature = "bump-allocator"))]
mod bump;
mod context;
mod decision;
mod defaults;
mod json;
mod jurisdiction;
mod ladder;
pub mod prelude;
mod tier;
mod transaction;
mod window;

#[cfg(all(target_family = "wasm", not(feature = "std")))]
mod nostd;

#[cfg(not(all(target_family = "wasm", not(feature = "std"))))]
pub mod testing;

/// Inside the sandbox every call gets a fresh instance, so a bump allocator
/// is all a policy needs (see the `bump-allocator` feature).
#[cfg(all(target_arch = "wasm32", feature = "bump-allocator"))]
#[global_allocator]
static ALLOCATOR: bump::Bump = bump::Bump;

#[doc(hidden)]
#[path = "export.rs"]
pub mod __private;

pub use amount::PositiveAmount;
pub use context::{Activity, ActivityFilter, Context, RecipientHistory};
pub use decision::{Decision, Reason};
pub use defaults::Defaults;
pub use jurisdiction::Jurisdiction;
pub use ladder::{Climb, Ladder, Passed, RateCap, Rule, Unmet};
pub use rust_decimal::Decimal;
pub use tier::{RecipientTrust, Tier};
pub use transaction::Transaction;
pub use window::Window;

mod config;

use alloc::format;
use alloc::string::String;

/// The version of the WIT contract (`tiergate:policy`) this SDK builds against.
pub const CONTRACT_VERSION: &str = "0.2.0";

/// A tier policy. The implementing type is the policy's configuration, read
/// from the tenant's JSON document.
pub trait Policy: serde::de::DeserializeOwned {
    /// The tiers this policy can return. The host treats any other tier as a
    /// malformed answer and applies the failure tier.
    const TIERS: &'static [Tier] = &Tier::ALL;

    /// The policy's defaults: a JSON document merged under the tenant's
    /// configuration before it is read into this type, such as
    /// `defaults!(include_str!("../defaults.json"))` (see [`Defaults`] and
    /// [`defaults!`]). None unless set: the tenant's document is read as it is.
    const DEFAULTS: Defaults = Defaults::NONE;

    /// Checks what deserialization cannot, such as rules that contradict
    /// each other. Runs when the host loads the policy for a tenant, and
    /// again in each sandbox before its payment arrives; the error text is
    /// shown to whoever wrote the configuration.
    fn validate(&self) -> Result<(), String> {
        Ok(())
    }

    /// Classifies one transaction.
    fn classify(&self, tx: &Transaction, ctx: &dyn Context) -> Decision;
}

/// Reads a configuration document the way the host's sandbox does.
pub(crate) fn parse_config<P: Policy>(text: &str) -> Result<P, String> {
    let policy: P = P::DEFAULTS
        .parse(text)
        .map_err(|e| format!("invalid policy configuration: {e}"))?;
    policy
        .validate()
        .map_err(|e| format!("invalid policy configuration: {e}"))?;
    Ok(policy)
}

/// Exports a [`Policy`] as the component's `tiergate:policy/policy`
/// implementation. Call it once, at the crate root, with the policy type.
///
/// The policy's name and version in [`PolicyInfo`](https://docs.rs/tiergate)
/// records are the crate's `CARGO_PKG_NAME` and `CARGO_PKG_VERSION`. On
/// non-wasm targets the macro exports nothing (it only records the name and
/// version), so the same crate builds natively for tests.
#[macro_export]
macro_rules! export_policy {
    ($policy:ty) => {
        impl $crate::__private::PackageInfo for $policy {
            const NAME: &'static str = env!("CARGO_PKG_NAME");
            const VERSION: &'static str = env!("CARGO_PKG_VERSION");
        }

        #[cfg(target_family = "wasm")]
        const _: () = {
            type TiergateExport = $crate::__private::Export<$policy>;
    $crate::__private::export!(TiergateExport with_types_in $crate::__private::bindings);
        };
    };
}
