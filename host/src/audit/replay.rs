//! Replaying recorded decisions: policies are deterministic, so the recorded
//! policy version on the recorded input and context must give the recorded
//! answer. A difference means tampering or non-determinism.

use std::sync::Arc;

use serde::Serialize;
use tiergate_policy::Tier;

use crate::model::context::{ContextRead, StaticContext};
use crate::model::transaction::Transaction;
use crate::runtime::TenantPolicy;
use crate::store::AuditEvent;

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
    match policy.classify_blocking(&tx, Arc::new(StaticContext::replaying(&reads))) {
        Err(err) => unreadable(format!("the recorded transaction is invalid: {err}")),
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
