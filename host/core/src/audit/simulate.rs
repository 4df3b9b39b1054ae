//! What a candidate policy would have decided over the recorded history, so
//! a tenant sees the effect of a change before activating it.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;

use serde::Serialize;
use tiergate_policy::Tier;

use crate::governance::history::HistoryContext;
use crate::record::{Authorization, Status};
use crate::store::{History, PastPayment, Store, StoreError};
use tiergate_runtime::TenantPolicy;

/// How far back the candidate's context sees an agent's payments (as live).
const CONTEXT_HORIZON_MS: u64 = tiergate_runtime::model::context::MAX_WINDOW_MS;

/// A payment whose tier would change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TierChange {
    /// Its audit id.
    pub audit_id: String,
    /// Its transaction id.
    pub tx_id: String,
    /// The agent.
    pub agent: String,
    /// Amount and currency, as text.
    pub amount: String,
    /// Currency.
    pub currency: String,
    /// Category.
    pub category: String,
    /// The tier it got.
    pub recorded: Tier,
    /// The tier it would get.
    pub simulated: Tier,
    /// The candidate's reason codes.
    pub reasons: Vec<String>,
}

/// The effect of a candidate policy on a stretch of history.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Simulation {
    /// Payments simulated.
    pub payments: u64,
    /// How many went from each recorded tier to each simulated tier
    /// (`"supervised->collaborative"`), unchanged ones included.
    pub transitions: BTreeMap<String, u64>,
    /// Payments that would get a looser tier: the ones to look at.
    pub looser: Vec<TierChange>,
    /// How many would get a stricter tier.
    pub stricter: u64,
    /// How many the candidate failed on (and so gave its failure tier).
    pub policy_failures: u64,
}

/// Runs `candidate` over the tenant's payments requested in
/// `[from_ms, to_ms)`, in request order.
///
/// Each payment is classified on its recorded transaction, with a context
/// rebuilt from the recorded history before it (the agent's payments of the
/// last 31 days with their recorded tiers; the recipient's earlier
/// executed payments). The host's guardrails are applied as they were
/// recorded: a guardrail that escalated the payment escalates it again.
pub fn simulate(
    store: &dyn Store,
    tenant: &str,
    candidate: &TenantPolicy,
    from_ms: u64,
    to_ms: u64,
) -> Result<Simulation, StoreError> {
    let mut sim = Simulation::default();
    let mut by_agent: HashMap<String, VecDeque<PastPayment>> = HashMap::new();
    let mut recipients: HashMap<String, (u64, u64)> = HashMap::new();
    let horizon_start = from_ms.saturating_sub(CONTEXT_HORIZON_MS);
    // From the start: a recipient's history reaches back to its first payment.
    for a in super::authorizations_between(store, tenant, 0, to_ms) {
        let a = a?;
        let t = &a.transaction;
        if t.requested_at_ms >= from_ms {
            let past = by_agent.entry(t.agent.clone()).or_default();
            while past
                .front()
                .is_some_and(|p| p.requested_at_ms + CONTEXT_HORIZON_MS < t.requested_at_ms)
            {
                past.pop_front();
            }
            let (first, count) = recipients.get(&t.recipient).copied().unzip();
            let context = Arc::new(HistoryContext {
                history: History {
                    payments: past.iter().cloned().collect(),
                    recipient_first_paid_ms: first,
                    recipient_payments: count.unwrap_or(0),
                },
                at_ms: t.requested_at_ms,
                currency: t.currency.clone(),
            });
            simulate_one(&mut sim, &a, candidate, context);
        }
        if t.requested_at_ms >= horizon_start {
            by_agent
                .entry(t.agent.clone())
                .or_default()
                .push_back(PastPayment {
                    requested_at_ms: t.requested_at_ms,
                    amount: t.amount,
                    currency: t.currency.clone(),
                    category: t.category.clone(),
                    tier: a.tier,
                });
        }
        if a.status == Status::Executed {
            let seen = recipients
                .entry(t.recipient.clone())
                .or_insert((t.requested_at_ms, 0));
            seen.1 += 1;
        }
    }
    Ok(sim)
}

fn simulate_one(
    sim: &mut Simulation,
    a: &Authorization,
    candidate: &TenantPolicy,
    context: Arc<HistoryContext>,
) {
    sim.payments += 1;
    let decision = match candidate.classify_blocking(&a.transaction, context) {
        Ok(d) => d,
        // A recorded transaction the host once accepted no longer validates;
        // count it as a failure at the strictest tier rather than skip it.
        Err(_) => {
            sim.policy_failures += 1;
            record(sim, a, Tier::Prohibited, vec!["invalid_transaction".into()]);
            return;
        }
    };
    if decision.failure.is_some() {
        sim.policy_failures += 1;
    }
    // Guardrails only escalate: the recorded escalations apply again.
    let tier = a
        .escalations
        .iter()
        .map(|e| e.tier)
        .fold(decision.tier, Tier::max);
    let reasons = decision.reasons.iter().map(|r| r.code.clone()).collect();
    record(sim, a, tier, reasons);
}

fn record(sim: &mut Simulation, a: &Authorization, tier: Tier, reasons: Vec<String>) {
    *sim.transitions
        .entry(format!("{}->{}", a.tier, tier))
        .or_default() += 1;
    if tier > a.tier {
        sim.stricter += 1;
    } else if tier < a.tier {
        let t = &a.transaction;
        sim.looser.push(TierChange {
            audit_id: a.audit_id.clone(),
            tx_id: t.id.clone(),
            agent: t.agent.clone(),
            amount: t.amount.to_string(),
            currency: t.currency.clone(),
            category: t.category.clone(),
            recorded: a.tier,
            simulated: tier,
            reasons,
        });
    }
}
