//! tiergate's governance: what happens to a payment once its tenant's policy
//! has classified it.
//!
//! The policy (run by [`tiergate_runtime`]) only decides. This crate owns
//! everything that follows and that a policy must not be able to skip: the
//! tenant's rules and guardrails that only make a tier stricter, the
//! approval pipeline (veto windows, human approval with a timeout), the
//! hash-chained audit trail, proportionality checks, and the store contract
//! ([`store`]) every backend implements. Backends (`tiergate-sqlite`,
//! `tiergate-postgres`) depend on this crate; it depends on none of them.
#![deny(missing_docs)]

pub mod audit;
pub mod compliance;
pub mod governance;
pub mod record;
pub mod store;
pub mod utc;

pub use tiergate_runtime as runtime;
