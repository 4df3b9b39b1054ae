//! tiergate governs what AI agents may spend.
//!
//! Every payment an agent asks to make is classified into an autonomy tier
//! (autonomous, supervised, collaborative, prohibited) by the tenant's own
//! policy: a WebAssembly component run in a sandbox against the
//! `tiergate:policy` WIT contract. The policy only decides; the host owns
//! everything that follows, and a policy that fails lands on the tenant's
//! failure tier, never a looser one.
//!
//! ```no_run
//! use std::sync::Arc;
//! use tiergate::{Runtime, StaticContext, Tier, Transaction};
//!
//! # async fn demo() -> anyhow::Result<()> {
//! let runtime = Runtime::new()?;
//! let policy = runtime
//!     .compile_file("seed_tiers.wasm".as_ref())?
//!     .configure(r#"{"sanctioned_jurisdictions": ["KP"]}"#)?
//!     .with_failure_tier(Tier::Collaborative)?;
//! let tx = Transaction::from_json(
//!     r#"{"id": "tx-89", "tenant": "acme", "agent": "procurement-agent-prod",
//!         "amount": "89.00", "currency": "USDC", "category": "agent_hire",
//!         "recipient": "analysis-agent-beta.example", "recipient_trust": "known"}"#,
//!     1_782_518_400_000,
//! )?;
//! let decision = policy.classify(tx, Arc::new(StaticContext::default())).await?;
//! assert_eq!(decision.tier, Tier::Collaborative);
//! # Ok(()) }
//! ```
#![deny(missing_docs)]

pub mod audit;
#[cfg(feature = "bundled-policies")]
pub mod bundled;
pub mod compliance;
pub mod governance;
mod model;
mod runtime;
pub mod server;
pub mod store;

pub use model::context::{
    Activity, ActivityAnswer, ActivityFilter, ActivityResult, ContextError, ContextRead,
    ContextSource, MAX_WINDOW_MS, RecipientHistory, StaticContext,
};
pub use model::decision::{Decision, FailureKind, PolicyFailure, Reason};
pub use model::money::{DecimalError, ExactSum, MAX_AMOUNT, parse_decimal};
pub use model::text::{escaped, escaped_json};
pub use model::transaction::{InvalidTransaction, Transaction, limits as transaction_limits};
pub use runtime::{
    COMPILE_SUBCOMMAND, ClassifyError, CompileLimits, CompiledPolicy, LoadError, PolicyInfo,
    ReusedInstance, Runtime, RuntimeError, SandboxLimits, TenantPolicy, compile_child_main,
};
pub use tiergate_policy::{RecipientTrust, Tier, Window};

/// Money is `rust_decimal`'s exact decimal, re-exported for convenience.
pub use rust_decimal::Decimal;
