//! tiergate as the signer of x402 payments, so governance cannot be
//! skipped: the tenant's payment key lives with tiergate, an agent hands
//! over the `PaymentRequired` it received, tiergate governs it as a payment,
//! and only when that payment is executed (at once if autonomous, after the
//! veto window, after the owners' approval) signs its EIP-3009
//! `transferWithAuthorization`. A held, vetoed, rejected, expired or blocked
//! payment never gets a signature.
//!
//! - [`offer`]: choose the option the tenant can pay and make it a
//!   transaction;
//! - [`X402Signer`]: the [`PaymentExecutor`](tiergate_core::governance::PaymentExecutor)
//!   that signs;
//! - [`signed_payment`]: the signed payload of an executed payment, the same
//!   on every read;
//! - [`PaymentKeys`]: where the keys come from.

#![deny(missing_docs)]

pub mod assets;
mod error;
mod keys;
pub mod offer;
pub mod protocol;
mod signer;

pub use error::X402Error;
pub use keys::{KeySource, PaymentKeys};
pub use signer::{SignedPayment, X402Signer, is_x402, signed_payment};
