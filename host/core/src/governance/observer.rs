//! Hooks for whoever watches the pipeline (the service's metrics): told of
//! each classification and each new authorization, never able to change them.

use std::time::Duration;

use super::Authorization;
use tiergate_runtime::model::decision::Decision;

/// Watches the pipeline. Calls happen on the authorizing thread, so keep
/// them quick; the default methods do nothing.
pub trait Observer: Send + Sync {
    /// A tenant's policy classified a payment in `elapsed` (the sandbox
    /// included).
    fn classified(&self, _tenant: &str, _decision: &Decision, _elapsed: Duration) {}

    /// A classification made before the store's write lock was `kept`, or
    /// run again inside because one of its context answers had changed.
    fn early_decision(&self, _tenant: &str, _kept: bool) {}

    /// The tenant's policy ran in a sandbox for a payment: before the
    /// store's write lock, or `under_write_lock` (every other writer waiting).
    fn policy_ran(&self, _tenant: &str, _under_write_lock: bool) {}

    /// A new authorization was recorded (and, when autonomous, executed).
    fn recorded(&self, _authorization: &Authorization) {}

    /// A payment's passed deadline was processed here: its veto window
    /// closed (and it executed) or its approval expired.
    fn deadline_processed(&self, _authorization: &Authorization) {}

    /// Processing a payment's passed deadline failed; it stays due and is
    /// tried again on the next pass.
    fn deadline_failed(&self, _tenant: &str, _tx_id: &str) {}
}

/// Watches nothing.
pub(crate) struct Nobody;

impl Observer for Nobody {}
