//! Replaying recorded decisions: policies are deterministic, so the recorded
//! policy version on the recorded input and context must give the recorded
//! answer, tier and fuel. A difference means tampering or non-determinism.
//! The one exception is the wall-clock deadline: where it stopped a policy,
//! the failure kind and the tier are compared, not the fuel.

use std::sync::Arc;

use serde::Serialize;
use tiergate_policy::Tier;

use crate::store::AuditEvent;
use tiergate_runtime::TenantPolicy;
use tiergate_runtime::model::context::{ContextRead, StaticContext};
use tiergate_runtime::model::decision::FailureKind;
use tiergate_runtime::model::transaction::Transaction;

/// What replaying one enhanced record found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Replayed {
    /// Same tier and same fuel: the decision is reproduced.
    Matches {
        /// The audit id.
        audit_id: String,
    },
    /// The replay decided differently.
    Differs {
        /// The audit id.
        audit_id: String,
        /// What differs.
        detail: String,
    },
    /// The record is of a failure that depends on the clock (a deadline),
    /// and the replay failed the same way: the failure kind and the tier
    /// applied are what is compared, since fuel at a deadline is not
    /// deterministic.
    SameFailure {
        /// The audit id.
        audit_id: String,
        /// The failure, recorded and replayed.
        kind: FailureKind,
    },
    /// The host decided without running the policy (it was suspended, or
    /// its tenant's CPU budget was spent): nothing of the policy's to replay.
    NotRun {
        /// The audit id.
        audit_id: String,
        /// Why the policy did not run.
        kind: FailureKind,
    },
    /// The record was made by another policy or configuration: not comparable.
    OtherPolicy {
        /// The audit id.
        audit_id: String,
    },
    /// The record cannot be read back as a decision.
    Unreadable {
        /// The audit id.
        audit_id: String,
        /// Why.
        detail: String,
    },
}

impl Replayed {
    /// Whether this outcome is a problem (a difference or an unreadable record).
    pub fn is_problem(&self) -> bool {
        matches!(self, Replayed::Differs { .. } | Replayed::Unreadable { .. })
    }
}

/// Replays every enhanced `authorized` record in `events` with `policy`.
pub fn replay(events: &[AuditEvent], policy: &TenantPolicy) -> Vec<Replayed> {
    events
        .iter()
        .filter_map(|e| replay_event(e, policy))
        .collect()
}

/// Replays one event with `policy`, when it is an enhanced `authorized`
/// record (the only kind that holds the input and context needed).
pub fn replay_event(e: &AuditEvent, policy: &TenantPolicy) -> Option<Replayed> {
    let enhanced = e.event.kind == "authorized" && e.event.detail.get("context_reads").is_some();
    enhanced.then(|| replay_one(e, policy))
}

fn replay_one(e: &AuditEvent, policy: &TenantPolicy) -> Replayed {
    let audit_id = e.audit_id.clone();
    let d = &e.event.detail;
    let same_code = d["policy_digest"].as_str() == Some(policy.info().digest.as_str())
        && d["config_digest"].as_str() == Some(policy.config_digest());
    if !same_code {
        return Replayed::OtherPolicy { audit_id };
    }
    let unreadable = |detail: String| Replayed::Unreadable {
        audit_id: audit_id.clone(),
        detail,
    };
    let tx: Transaction = match serde_json::from_value(d["transaction"].clone()) {
        Ok(tx) => tx,
        Err(err) => return unreadable(format!("transaction: {err}")),
    };
    let reads: Vec<ContextRead> = match serde_json::from_value(d["context_reads"].clone()) {
        Ok(r) => r,
        Err(err) => return unreadable(format!("context_reads: {err}")),
    };
    let (Ok(tier), Some(fuel)) = (
        serde_json::from_value::<Tier>(d["policy_tier"].clone()),
        d["fuel_used"].as_u64(),
    ) else {
        return unreadable("policy_tier or fuel_used missing".into());
    };
    let failed: Option<FailureKind> = d
        .get("policy_failure")
        .and_then(|f| serde_json::from_value(f["kind"].clone()).ok());
    if let Some(kind) = failed.filter(|k| k.decided_by_host()) {
        return Replayed::NotRun { audit_id, kind };
    }
    match policy.classify_blocking(&tx, Arc::new(StaticContext::replaying(&reads))) {
        Err(err) => unreadable(format!("the recorded transaction is invalid: {err}")),
        // Where a deadline stopped the policy, how far it got depends on the
        // machine: the failure and the tier are what replays.
        Ok(now) if failed == Some(FailureKind::Timeout) => {
            let again = now.failure.as_ref().map(|f| f.kind);
            if again == Some(FailureKind::Timeout) && now.tier == tier {
                Replayed::SameFailure {
                    audit_id,
                    kind: FailureKind::Timeout,
                }
            } else {
                Replayed::Differs {
                    audit_id,
                    detail: format!(
                        "recorded {tier} after policy_timeout; replay gives {} ({}); a deadline depends on the machine's load, so replay with the recorded limits on a quiet machine",
                        now.tier,
                        again.map_or("no failure", FailureKind::code)
                    ),
                }
            }
        }
        Ok(now) if now.tier != tier || now.fuel_used != fuel => Replayed::Differs {
            audit_id,
            detail: format!(
                "recorded {tier} using {fuel} fuel; replay gives {} using {} fuel",
                now.tier, now.fuel_used
            ),
        },
        Ok(_) => Replayed::Matches { audit_id },
    }
}
