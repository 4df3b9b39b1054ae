//! Admission: how many requests run at once, per tenant and in all. Each
//! authenticated request holds a turn while its handler runs (an export, a
//! turn per page it reads), so the blocking work behind the handlers
//! (classifications, store reads and writes, compiling uploads) stays far
//! below the blocking pool's size, and one tenant's burst takes at most its
//! own share of it. A request waits for its turn at most `wait`, without
//! holding a thread, then gets `503 overloaded` with `Retry-After`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::ApiError;

/// Requests at once (`ServeOptions::admission`).
#[derive(Debug, Clone, Copy)]
pub struct AdmissionLimits {
    /// Requests of one tenant running at once.
    pub per_tenant: usize,
    /// Requests of all tenants running at once.
    pub total: usize,
    /// How long a request waits for its turn before `503`.
    pub wait: Duration,
}

impl Default for AdmissionLimits {
    fn default() -> Self {
        AdmissionLimits {
            per_tenant: 16,
            total: 128,
            wait: Duration::from_secs(2),
        }
    }
}

/// The turns, per tenant and in all.
pub(super) struct Admission {
    limits: AdmissionLimits,
    total: Arc<Semaphore>,
    tenants: Mutex<HashMap<String, Arc<Semaphore>>>,
}

/// A request's turn; the next waiting request gets it when this is dropped.
#[derive(Debug)]
pub(crate) struct Turn {
    _tenant: OwnedSemaphorePermit,
    _total: OwnedSemaphorePermit,
}

impl Admission {
    pub(super) fn new(limits: AdmissionLimits) -> Self {
        Admission {
            limits,
            total: Arc::new(Semaphore::new(limits.total.max(1))),
            tenants: Mutex::new(HashMap::new()),
        }
    }

    /// Waits for a turn of `tenant`'s, at most the admission wait.
    pub(super) async fn admit(&self, tenant: &str) -> Result<Turn, ApiError> {
        let own = {
            let mut tenants = self.tenants.lock().unwrap_or_else(PoisonError::into_inner);
            tenants
                .entry(tenant.to_string())
                .or_insert_with(|| Arc::new(Semaphore::new(self.limits.per_tenant.max(1))))
                .clone()
        };
        // The tenant's own turn first, so a tenant waiting behind itself
        // holds none of the shared ones.
        let turn = async {
            let tenant = own.acquire_owned().await.ok()?;
            let total = self.total.clone().acquire_owned().await.ok()?;
            Some(Turn {
                _tenant: tenant,
                _total: total,
            })
        };
        match tokio::time::timeout(self.limits.wait, turn).await {
            Ok(Some(turn)) => Ok(turn),
            _ => Err(overloaded(format!(
                "too many requests are running (at most {} of tenant {tenant}'s, {} in all); \
                 nothing was done; retry after a second",
                self.limits.per_tenant, self.limits.total
            ))),
        }
    }
}

/// `503 overloaded`, to retry after a second.
pub(super) fn overloaded(message: String) -> ApiError {
    ApiError::unavailable("overloaded", message, Duration::from_secs(1))
}
