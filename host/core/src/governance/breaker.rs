//! Per-tenant failure breakers: a policy that fails again and again is not
//! run for a while. Its failure tier applies at once, recorded as
//! `policy_suspended`, so a broken policy costs its tenant's payments a
//! human's look (as any failure does) but costs the host no sandbox, and
//! the owners hear of it once.
//!
//! Host logic on the governor's clock: each process counts on its own.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use tiergate_runtime::model::decision::{Decision, FailureKind};

/// When a tenant's policy is suspended, and for how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerSettings {
    /// Failures in a row that suspend the policy; 0 never suspends it.
    pub failures: u32,
    /// How long the first suspension lasts. After it the policy is tried
    /// again; failing that try doubles the suspension, up to `max_backoff`.
    pub backoff: Duration,
    /// The longest suspension.
    pub max_backoff: Duration,
}

impl Default for BreakerSettings {
    fn default() -> Self {
        BreakerSettings {
            failures: 5,
            backoff: Duration::from_secs(30),
            max_backoff: Duration::from_secs(15 * 60),
        }
    }
}

/// Whether a tenant's policy may run now.
pub(crate) enum Admission {
    Run,
    /// Suspended until `until_ms`, after `failures` failures in a row.
    Suspended {
        failures: u32,
        until_ms: u64,
    },
}

/// What the owners are to be told, once.
#[derive(Debug, Clone)]
pub(crate) struct Alert {
    pub(crate) message: String,
    /// The payment whose record carries it, while one is being recorded.
    carrier: Option<String>,
}

#[derive(Default)]
struct State {
    failures_in_a_row: u32,
    /// The last payment counted, so a decision recorded again (a retried
    /// write) is not counted twice.
    last_counted: Option<String>,
    suspended_until_ms: Option<u64>,
    /// Suspended since the policy last answered: a failed try after a
    /// suspension suspends it again, longer, without a new alert.
    tripped: bool,
    backoff_ms: u64,
    /// The CPU budget was found spent, and the owners told.
    budget_spent: bool,
    alert: Option<Alert>,
}

pub(crate) struct Breakers {
    settings: BreakerSettings,
    tenants: Mutex<HashMap<String, State>>,
}

impl Breakers {
    pub(crate) fn new(settings: BreakerSettings) -> Self {
        Breakers {
            settings,
            tenants: Mutex::new(HashMap::new()),
        }
    }

    fn with<T>(&self, tenant: &str, f: impl FnOnce(&mut State) -> T) -> T {
        let mut tenants = self.tenants.lock().unwrap_or_else(PoisonError::into_inner);
        f(tenants.entry(tenant.to_string()).or_default())
    }

    /// Forgets a tenant's failures: new rules start afresh.
    pub(crate) fn reset(&self, tenant: &str) {
        self.tenants
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(tenant);
    }

    pub(crate) fn admit(&self, tenant: &str, now_ms: u64) -> Admission {
        self.with(tenant, |s| match s.suspended_until_ms {
            Some(until_ms) if now_ms < until_ms => Admission::Suspended {
                failures: s.failures_in_a_row,
                until_ms,
            },
            _ => Admission::Run,
        })
    }

    /// Counts the decision for payment `tx_id` of `tenant`, made at `now_ms`
    /// (called under the tenant's write lock, so in the order recorded), and
    /// returns the alert its record is to carry, if the owners are owed one.
    /// `describe` says what the owners are told when this decision
    /// suspends the policy.
    pub(crate) fn count(
        &self,
        tenant: &str,
        tx_id: &str,
        decision: &Decision,
        now_ms: u64,
        describe: impl FnOnce(u32, u64) -> String,
        budget_spent: impl FnOnce() -> String,
    ) -> Option<String> {
        let settings = self.settings;
        self.with(tenant, |s| {
            if s.last_counted.as_deref() != Some(tx_id) {
                s.last_counted = Some(tx_id.to_string());
                match decision.failure.as_ref().map(|f| f.kind) {
                    // Decided by the host without running the policy.
                    Some(FailureKind::PolicySuspended | FailureKind::Host) => {}
                    Some(FailureKind::CpuBudgetExhausted) => {
                        if !s.budget_spent {
                            s.budget_spent = true;
                            s.alert = Some(Alert {
                                message: budget_spent(),
                                carrier: None,
                            });
                        }
                    }
                    None => {
                        s.failures_in_a_row = 0;
                        s.tripped = false;
                        s.suspended_until_ms = None;
                        s.budget_spent = false;
                    }
                    Some(_) => {
                        s.budget_spent = false;
                        s.failures_in_a_row = s.failures_in_a_row.saturating_add(1);
                        let base = settings.backoff.as_millis() as u64;
                        let max = settings.max_backoff.as_millis() as u64;
                        if s.tripped {
                            s.backoff_ms =
                                s.backoff_ms.saturating_mul(2).clamp(base, max.max(base));
                            s.suspended_until_ms = Some(now_ms.saturating_add(s.backoff_ms));
                        } else if settings.failures > 0 && s.failures_in_a_row >= settings.failures
                        {
                            s.tripped = true;
                            s.backoff_ms = base;
                            let until_ms = now_ms.saturating_add(base);
                            s.suspended_until_ms = Some(until_ms);
                            s.alert = Some(Alert {
                                message: describe(s.failures_in_a_row, until_ms),
                                carrier: None,
                            });
                        }
                    }
                }
            }
            // The alert owed rides on this record, unless another carries it.
            match &mut s.alert {
                Some(alert) if alert.carrier.as_deref().is_none_or(|c| c == tx_id) => {
                    alert.carrier = Some(tx_id.to_string());
                    Some(alert.message.clone())
                }
                _ => None,
            }
        })
    }

    /// Payment `tx_id` was recorded (`stored`) or not: an alert it carried
    /// is delivered, or waits for the next record.
    pub(crate) fn recorded(&self, tenant: &str, tx_id: &str, stored: bool) {
        self.with(tenant, |s| {
            if let Some(alert) = &mut s.alert
                && alert.carrier.as_deref() == Some(tx_id)
            {
                if stored {
                    s.alert = None;
                } else {
                    alert.carrier = None;
                }
            }
        });
    }
}
