//! Moving the money: called exactly once per executed payment.

use std::sync::Arc;

use super::{Authorization, TenantConfig};
use crate::store::Store;

/// Executes an approved payment and returns a reference to it, or an error
/// saying why it did not move. Called once per transaction, after the host
/// has durably recorded that it is executing; the transaction id is the
/// idempotency key to pass on to a payment rail.
pub trait PaymentExecutor: Send + Sync {
    /// Executes `auth`'s payment under the tenant's rules in force now
    /// (none when they cannot be loaded).
    fn execute(&self, auth: &Authorization, rules: Option<&TenantConfig>)
    -> Result<String, String>;

    /// Whether `auth` is executed by writing it to the store's ledger and
    /// nothing else: the governor then records it executed in the same
    /// commit that makes it executing, and does not call [`execute`](Self::execute).
    fn in_ledger(&self, auth: &Authorization) -> bool {
        let _ = auth;
        false
    }
}

/// The built-in executor: records the payment in the store's ledger.
pub struct LedgerExecutor {
    store: Arc<dyn Store>,
    clock: Arc<dyn super::Clock>,
}

impl LedgerExecutor {
    /// A ledger in `store`, stamped by `clock`.
    pub fn new(store: Arc<dyn Store>, clock: Arc<dyn super::Clock>) -> Self {
        LedgerExecutor { store, clock }
    }
}

impl PaymentExecutor for LedgerExecutor {
    fn execute(&self, auth: &Authorization, _: Option<&TenantConfig>) -> Result<String, String> {
        self.store
            .ledger_insert(auth, self.clock.now_ms())
            .map_err(|e| e.to_string())
    }

    fn in_ledger(&self, _: &Authorization) -> bool {
        true
    }
}
