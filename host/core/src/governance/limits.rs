//! What an agent may still spend before each guardrail escalates its
//! payments, and what each of the tenant's tiers means, in words: for an
//! agent to plan with before it asks.

use rust_decimal::Decimal;
use serde::Serialize;
use tiergate_policy::Tier;
use tiergate_runtime::model::money;

use super::config::{ApprovalMode, Limit, TenantConfig, TierRule};
use crate::store::Holdings;

/// An agent's headroom under each of its tenant's limits.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SpendingLimits {
    /// The tenant.
    pub tenant: String,
    /// The agent.
    pub agent: String,
    /// The agent's team, when it has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub team: Option<String>,
    /// The currency of every amount.
    pub currency: String,
    /// One entry per limit that applies to the agent.
    pub limits: Vec<Headroom>,
    /// Each tier, in words.
    pub tiers: Vec<TierMeaning>,
}

impl SpendingLimits {
    /// As an agent (or a platform acting for one) may read it: the budgets
    /// it shares with its team or the tenant say what is left for it, not
    /// their limits or what the others committed.
    pub fn for_requester(mut self) -> Self {
        for headroom in &mut self.limits {
            if matches!(
                headroom.guardrail.as_str(),
                "team_daily_budget" | "tenant_daily_budget"
            ) {
                headroom.limit = None;
                headroom.spent = None;
            }
        }
        self
    }
}

/// One limit and how much of it is left.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Headroom {
    /// The configuration key: `max_per_transaction`, `agent_daily_budget`,
    /// `team_daily_budget`, `tenant_daily_budget` or `max_amount`.
    pub guardrail: String,
    /// The limit; left out of a budget shared with other agents when an
    /// agent asks (what the others spend is not its to learn).
    #[serde(
        serialize_with = "exact_option",
        skip_serializing_if = "Option::is_none"
    )]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, example = "500.00"))]
    pub limit: Option<Decimal>,
    /// Committed in the window so far; none for a per-payment limit, and
    /// for a shared budget when an agent asks.
    #[serde(
        serialize_with = "exact_option",
        skip_serializing_if = "Option::is_none"
    )]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>))]
    pub spent: Option<Decimal>,
    /// What one more payment may be without going over (never below 0).
    #[serde(with = "money::exact")]
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub remaining: Decimal,
    /// The window it counts over, in words.
    pub window: String,
    /// The tier a payment over it gets; none when it is refused outright.
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>))]
    pub escalates_to: Option<Tier>,
}

/// A tier and what it does to a payment.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TierMeaning {
    /// The tier.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub tier: Tier,
    /// What it means for the payment, in words.
    pub meaning: String,
}

fn exact_option<S: serde::Serializer>(value: &Option<Decimal>, s: S) -> Result<S::Ok, S::Error> {
    match value {
        Some(d) => money::exact::serialize(d, s),
        None => s.serialize_none(),
    }
}

const ROLLING_DAY: &str = "the 24 hours before now";

/// `agent`'s headroom under `config`, given what is `committed`.
pub(super) fn of(config: &TenantConfig, agent: &str, committed: &Holdings) -> SpendingLimits {
    let team = config.team_of(agent);
    let per_payment = |guardrail: &str, limit: Decimal, escalates_to| Headroom {
        guardrail: guardrail.into(),
        limit: Some(limit),
        spent: None,
        remaining: limit,
        window: "each payment".into(),
        escalates_to,
    };
    let budget = |guardrail: &str, limit: &Limit, spent: Decimal| Headroom {
        guardrail: guardrail.into(),
        limit: Some(limit.limit),
        spent: Some(spent),
        remaining: limit
            .limit
            .checked_sub(spent)
            .unwrap_or(Decimal::ZERO)
            .max(Decimal::ZERO),
        window: ROLLING_DAY.into(),
        escalates_to: Some(limit.escalate_to),
    };
    let g = &config.guardrails;
    let mut limits = Vec::new();
    if let Some(max) = config.max_amount {
        limits.push(per_payment("max_amount", max, None));
    }
    if let Some(l) = &g.max_per_transaction {
        limits.push(per_payment(
            "max_per_transaction",
            l.limit,
            Some(l.escalate_to),
        ));
    }
    if let Some(l) = &g.agent_daily_budget {
        limits.push(budget("agent_daily_budget", l, committed.agent));
    }
    if let Some(t) = team {
        limits.push(budget("team_daily_budget", &t.daily_budget, committed.team));
    }
    if let Some(l) = &g.tenant_daily_budget {
        limits.push(budget("tenant_daily_budget", l, committed.tenant));
    }
    SpendingLimits {
        tenant: config.tenant.clone(),
        agent: agent.into(),
        team: team.map(|t| t.name.clone()),
        currency: config.currency.clone(),
        limits,
        tiers: Tier::ALL
            .into_iter()
            .map(|tier| TierMeaning {
                tier,
                meaning: meaning(config.tiers.rule(tier)),
            })
            .collect(),
    }
}

/// What `rule` does to a payment, in words.
fn meaning(rule: &TierRule) -> String {
    let window =
        |w: Option<tiergate_policy::Window>| human_duration(w.map_or(0, |w| w.as_millis()));
    match rule.approval {
        ApprovalMode::None => "executes at once, without approval".into(),
        ApprovalMode::NotifyWithVeto => format!(
            "the owners are notified and may veto it within {}; it executes after",
            window(rule.veto_window)
        ),
        ApprovalMode::ExplicitHuman => {
            let who = match (rule.approvers.unwrap_or(1), rule.four_eyes_above) {
                (1, Some(above)) => {
                    format!("an owner's explicit approval (two owners' above {above})")
                }
                (1, None) => "an owner's explicit approval".to_string(),
                (n, _) => format!("{n} owners' explicit approval"),
            };
            format!(
                "waits for {who}; rejected automatically after {}",
                window(rule.timeout)
            )
        }
        ApprovalMode::Blocked => {
            let alert = if rule.alert_owner {
                " and the owners alerted at once"
            } else {
                ""
            };
            format!("blocked: it never executes; the attempt is recorded{alert}")
        }
    }
}

/// `ms` as the largest whole unit that fits it: `30s`, `4h`, `90m`.
pub(crate) fn human_duration(ms: u64) -> String {
    const UNITS: [(u64, &str); 4] = [
        (86_400_000, "d"),
        (3_600_000, "h"),
        (60_000, "m"),
        (1000, "s"),
    ];
    for (size, unit) in UNITS {
        if ms >= size && ms.is_multiple_of(size) {
            return format!("{}{unit}", ms / size);
        }
    }
    format!("{ms}ms")
}
