//! What a policy usually imports, in one line.
//!
//! It brings the SDK's types and traits ([`Policy`], [`Transaction`],
//! [`Context`], [`Decision`], [`Tier`], [`Ladder`], [`Rule`], [`Defaults`],
//! [`PositiveAmount`], [`Jurisdiction`] and the rest), the [`defaults!`] and
//! [`export_policy!`] macros, serde's [`Deserialize`] (trait and derive), and
//! the `alloc` items a `#![no_std]` policy would otherwise import one by one:
//! [`String`], [`ToString`], [`Vec`], [`Box`], [`ToOwned`], [`format!`] and
//! [`vec!`]. The test helpers stay in [`testing`](crate::testing).
//!
//! A whole policy on the prelude alone:
//!
//! ```
//! #![cfg_attr(not(test), no_std)]
//! use tiergate_policy::prelude::*;
//!
//! /// Blocked jurisdictions, then two tiers.
//! #[derive(Debug, Deserialize)]
//! #[serde(deny_unknown_fields)]
//! pub struct Small {
//!     blocked: Vec<Jurisdiction>,
//!     autonomous: Rule,
//!     supervised: Rule,
//! }
//!
//! impl Policy for Small {
//!     const DEFAULTS: Defaults = defaults!(r#"{
//!         "blocked": ["KP"],
//!         "autonomous": {"max_amount": "1.00", "min_trust": "verified",
//!                        "max_per_window": 100, "window": "1h"},
//!         "supervised": {"max_amount": "50.00", "min_trust": "known",
//!                        "max_per_window": 20, "window": "1h"}
//!     }"#);
//!
//!     fn classify(&self, tx: &Transaction, ctx: &dyn Context) -> Decision {
//!         if self.blocked.iter().any(|j| j.is(tx.jurisdiction.as_deref())) {
//!             let why = format!("{} is blocked", tx.jurisdiction.as_deref().unwrap_or("?"));
//!             return Decision::new(Tier::Prohibited, "jurisdiction_blocked", why);
//!         }
//!         Ladder::new([(Tier::Autonomous, &self.autonomous), (Tier::Supervised, &self.supervised)])
//!             .decide(tx, ctx, Tier::Collaborative)
//!     }
//! }
//!
//! export_policy!(Small);
//!
//! # use tiergate_policy::testing::{TestContext, classify, transaction};
//! let tx = transaction("2.00", "search").trust(RecipientTrust::Verified).build();
//! let d = classify::<Small>("", &tx, &TestContext::new()).unwrap();
//! assert_eq!(d.tier, Tier::Supervised);
//! let tx = transaction("2.00", "search").jurisdiction("KP").build();
//! let d = classify::<Small>(r#"{"blocked": ["KP", "IR"]}"#, &tx, &TestContext::new()).unwrap();
//! assert_eq!(d.tier, Tier::Prohibited);
//! ```

pub use crate::{
    Activity, ActivityFilter, Climb, Context, Decimal, Decision, Defaults, Jurisdiction, Ladder,
    Passed, Policy, PositiveAmount, RateCap, Reason, RecipientHistory, RecipientTrust, Rule, Tier,
    Transaction, Unmet, Window, defaults, export_policy,
};
pub use alloc::borrow::ToOwned;
pub use alloc::boxed::Box;
pub use alloc::string::{String, ToString};
pub use alloc::vec::Vec;
pub use alloc::{format, vec};
pub use serde::Deserialize;
