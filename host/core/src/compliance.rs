//! The proportionality check: is a tenant's governance proportionate to the
//! nature, scale and complexity of its payments?
//!
//! A tenant's policy is opaque code, so the check does not only read the
//! configuration: it classifies a grid of probe transactions in the sandbox
//! and judges what the policy actually does. It is an engineering check of
//! the configuration against the governance and record-keeping expectations
//! of MiCA Article 68, not legal advice.

use std::collections::BTreeSet;
use std::sync::Arc;

use serde::Serialize;
use tiergate_policy::{RecipientTrust, Tier};

use crate::governance::{ApprovalMode, AuditDepth, TenantConfig};
use tiergate_runtime::model::context::StaticContext;
use tiergate_runtime::model::transaction::Transaction;
use tiergate_runtime::{ClassifyError, TenantPolicy};

/// Amounts the probe grid tries: around the usual ceilings, and far above.
pub const PROBE_AMOUNTS: [&str; 10] = [
    "0.02",
    "1.00",
    "1.01",
    "50.00",
    "50.01",
    "89.00",
    "999.99",
    "5000.00",
    "5000.01",
    "100000.00",
];

/// Categories the probe grid tries: routine, operational, procurement,
/// prohibited and one nobody lists.
pub const PROBE_CATEGORIES: [&str; 11] = [
    "api_calls",
    "embeddings",
    "search",
    "compute",
    "data_access",
    "saas_tools",
    "agent_hire",
    "service_procurement",
    "subscription",
    "gambling",
    "uncategorised_service",
];

const TRUSTS: [RecipientTrust; 3] = [
    RecipientTrust::Verified,
    RecipientTrust::Known,
    RecipientTrust::Unknown,
];

/// One probe and the tier the policy gave it.
#[derive(Debug, Clone, Serialize)]
pub struct Probe {
    /// Amount probed.
    pub amount: String,
    /// Category probed.
    pub category: String,
    /// Recipient trust probed.
    pub trust: RecipientTrust,
    /// The tier the policy returned.
    pub tier: Tier,
}

/// One check, passed or not, and why.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    /// Short name.
    pub name: &'static str,
    /// What it asks.
    pub question: &'static str,
    /// Whether it passed.
    pub passed: bool,
    /// What the check saw.
    pub evidence: String,
}

/// The result of the proportionality check.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The tenant.
    pub tenant: String,
    /// Each check.
    pub checks: Vec<Check>,
    /// The probe grid.
    pub grid: Vec<Probe>,
    /// What the check is and is not.
    pub disclaimer: &'static str,
}

impl Report {
    /// Whether every check passed.
    pub fn passed(&self) -> bool {
        self.checks.iter().all(|c| c.passed)
    }
}

const DISCLAIMER: &str = "An engineering check of this configuration and the behaviour of its policy against the \
proportionality expectations of MiCA Article 68 (governance, record-keeping); not legal advice.";

/// Probes `policy` and judges `config`.
#[allow(
    clippy::expect_used,
    reason = "every probe of the grid is classified before it is looked up"
)]
pub fn check(config: &TenantConfig, policy: &TenantPolicy) -> Result<Report, ClassifyError> {
    let mut grid = Vec::new();
    let context = Arc::new(StaticContext::default());
    for (i, (amount, category, trust)) in PROBE_AMOUNTS
        .iter()
        .flat_map(|a| {
            PROBE_CATEGORIES
                .iter()
                .flat_map(move |c| TRUSTS.iter().map(move |t| (a, c, t)))
        })
        .enumerate()
    {
        let tx = probe_tx(config, i, amount, category, *trust);
        let decision = policy.classify_blocking(&tx, context.clone())?;
        grid.push(Probe {
            amount: amount.to_string(),
            category: category.to_string(),
            trust: *trust,
            tier: decision.tier,
        });
    }
    let tier_of = |amount: &str, category: &str, trust: RecipientTrust| {
        grid.iter()
            .find(|p| p.amount == amount && p.category == category && p.trust == trust)
            .map(|p| p.tier)
            .expect("the grid holds every probe")
    };
    let rule = |t: Tier| config.tiers.rule(t);
    let human_tiers: Vec<Tier> = Tier::ALL
        .into_iter()
        .filter(|t| rule(*t).approval == ApprovalMode::ExplicitHuman)
        .collect();

    let mut checks = Vec::new();
    let by_category: BTreeSet<Tier> = PROBE_CATEGORIES
        .iter()
        .map(|c| tier_of("0.02", c, RecipientTrust::Verified))
        .collect();
    checks.push(Check {
        name: "nature",
        question: "Do payments of the same amount get different tiers for different categories?",
        passed: by_category.len() > 1,
        evidence: format!(
            "0.02 to a verified recipient, across {} categories: {}",
            PROBE_CATEGORIES.len(),
            names(&by_category)
        ),
    });
    let by_amount: BTreeSet<Tier> = PROBE_AMOUNTS
        .iter()
        .map(|a| tier_of(a, "compute", RecipientTrust::Known))
        .collect();
    checks.push(Check {
        name: "scale",
        question: "Do larger amounts of the same kind get more oversight?",
        passed: by_amount.len() > 1,
        evidence: format!(
            "compute to a known recipient, 0.02 to 100000.00: {}",
            names(&by_amount)
        ),
    });
    let human_hits = grid
        .iter()
        .filter(|p| human_tiers.contains(&p.tier))
        .count();
    checks.push(Check {
        name: "complexity",
        question: "Does some payment need an explicit human approval?",
        passed: human_hits > 0,
        evidence: if human_tiers.is_empty() {
            "no tier is configured with approval \"explicit_human\"".into()
        } else {
            format!(
                "{human_hits} of {} probes land on an explicit-approval tier",
                grid.len()
            )
        },
    });
    let shallow: Vec<Tier> = human_tiers
        .iter()
        .copied()
        .filter(|t| rule(*t).audit != AuditDepth::PerTransactionEnhanced)
        .collect();
    checks.push(Check {
        name: "audit_proportionate",
        question: "Is every human-approved tier audited with enhanced per-transaction records?",
        passed: !human_tiers.is_empty() && shallow.is_empty(),
        evidence: if human_tiers.is_empty() {
            "there is no human-approved tier".into()
        } else if shallow.is_empty() {
            "every explicit-approval tier has audit \"per_transaction_enhanced\"".into()
        } else {
            format!(
                "{} lack \"per_transaction_enhanced\"",
                names(&shallow.into_iter().collect())
            )
        },
    });
    let gambling = tier_of("1.00", "gambling", RecipientTrust::Verified);
    checks.push(Check {
        name: "prohibited_defined",
        question: "Are prohibited categories blocked?",
        passed: gambling == Tier::Prohibited,
        evidence: format!("1.00 gambling to a verified recipient: {gambling}"),
    });
    let routine = tier_of("0.02", "embeddings", RecipientTrust::Verified);
    checks.push(Check {
        name: "routine_autonomous",
        question: "Do small routine calls go through without a human?",
        passed: routine == Tier::Autonomous,
        evidence: format!("0.02 embeddings to a verified recipient: {routine}"),
    });
    let procurement = tier_of("999.99", "service_procurement", RecipientTrust::Known);
    checks.push(Check {
        name: "procurement_human",
        question: "Do large procurements need a human?",
        passed: human_tiers.contains(&procurement) || procurement == Tier::Prohibited,
        evidence: format!("999.99 service_procurement to a known recipient: {procurement}"),
    });
    checks.extend(declarations(config, policy)?);
    Ok(Report {
        tenant: config.tenant.clone(),
        checks,
        grid,
        disclaimer: DISCLAIMER,
    })
}

/// The recipients the declaration probes pay: up to this many of the
/// registry's, and one it does not list.
const PROBED_RECIPIENTS: usize = 16;

/// Whether what a request declares can lower its tier: where trust comes
/// from, whether agents are known, and, probed in the sandbox, whether
/// declaring a trust or a jurisdiction ever gets a payment a looser tier
/// than declaring nothing.
fn declarations(config: &TenantConfig, policy: &TenantPolicy) -> Result<Vec<Check>, ClassifyError> {
    use crate::governance::{TrustSource, UnlistedAgents};
    let mut checks = Vec::new();
    let from_host = config.trust.source == TrustSource::Host;
    checks.push(Check {
        name: "attributes_from_host",
        question: "Do recipient trust and jurisdiction come from the tenant's registry and history, not the request?",
        passed: from_host,
        evidence: if from_host {
            format!(
                "`[trust] source = \"host\"`: {} registered recipients; others are known after {} executed payments",
                config.recipients.len(),
                config.trust.known_after
            )
        } else {
            "`[trust] source = \"caller\"`: a request that declares its recipient verified is treated as verified".into()
        },
    });
    checks.push(Check {
        name: "agents_known",
        question: "Is a payment by an agent the tenant does not list refused or escalated?",
        passed: config.trust.unlisted_agents != UnlistedAgents::Allow,
        evidence: match config.trust.unlisted_agents {
            UnlistedAgents::Allow => "`unlisted_agents = \"allow\"`: a new agent name starts with fresh per-agent budgets and caps".into(),
            UnlistedAgents::AtLeast(tier) => format!(
                "unlisted agents get at least {tier}; {} agents listed",
                config.agents.len()
                    + config.teams.iter().map(|t| t.agents.len()).sum::<usize>()
            ),
        },
    });
    let context = Arc::new(StaticContext::default());
    let agent = config
        .agents
        .first()
        .map(|a| a.name.clone())
        .unwrap_or_else(|| "proportionality-probe".into());
    let mut recipients: Vec<String> = config
        .recipients
        .iter()
        .take(PROBED_RECIPIENTS)
        .map(|r| r.id.clone())
        .collect();
    recipients.push("unlisted.probe.example".into());
    // The tier the host's own knowledge gives is the baseline: the
    // registry's trust and jurisdiction, or none for a recipient never paid.
    let mut host_view = config.clone();
    host_view.trust.source = TrustSource::Host;
    let tier_of = |config: &TenantConfig, tx: &Transaction| -> Result<Tier, ClassifyError> {
        let resolved = crate::governance::resolve_for_probe(config, tx);
        let decided = policy.classify_blocking(&resolved.0, context.clone())?.tier;
        Ok(resolved.1.into_iter().fold(decided, Tier::max))
    };
    let mut looser = Vec::new();
    let mut probes = 0;
    'probing: for recipient in &recipients {
        for amount in PROBE_AMOUNTS {
            for category in PROBE_CATEGORIES {
                let mut tx = probe_tx(config, probes, amount, category, RecipientTrust::Verified);
                tx.agent = agent.clone();
                tx.recipient = recipient.clone();
                let baseline = tier_of(&host_view, &tx)?;
                for (trust, jurisdiction) in TRUSTS
                    .iter()
                    .flat_map(|t| [None, Some("US")].map(move |j| (*t, j)))
                {
                    probes += 1;
                    tx.recipient_trust = trust;
                    tx.jurisdiction = jurisdiction.map(str::to_string);
                    let got = tier_of(config, &tx)?;
                    if got < baseline {
                        looser.push(format!(
                            "{amount} {category} to {recipient} declared {trust}{}: {got}, not {baseline}",
                            jurisdiction.map(|j| format!(" in {j}")).unwrap_or_default()
                        ));
                        if looser.len() >= 3 {
                            break 'probing;
                        }
                    }
                }
            }
        }
    }
    checks.push(Check {
        name: "no_looser_by_declaration",
        question: "Is no payment's tier lowered by the trust or jurisdiction its request declares?",
        passed: looser.is_empty(),
        evidence: if looser.is_empty() {
            format!(
                "{probes} declarations over {} recipients: none got a looser tier than the host's own trust and jurisdiction give",
                recipients.len()
            )
        } else {
            format!("looser by declaration: {}", looser.join("; "))
        },
    });
    Ok(checks)
}

fn names(tiers: &BTreeSet<Tier>) -> String {
    tiers
        .iter()
        .map(|t| t.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

#[allow(clippy::expect_used, reason = "probe amounts are decimal literals")]
fn probe_tx(
    config: &TenantConfig,
    i: usize,
    amount: &str,
    category: &str,
    trust: RecipientTrust,
) -> Transaction {
    Transaction {
        id: format!("probe-{i}"),
        tenant: config.tenant.clone(),
        agent: "proportionality-probe".into(),
        amount: tiergate_runtime::model::money::parse_decimal(amount)
            .expect("probe amounts are decimals"),
        currency: config.currency.clone(),
        category: category.into(),
        recipient: "probe.recipient.example".into(),
        recipient_trust: trust,
        jurisdiction: None,
        justification: None,
        network: None,
        self_hosted_wallet: None,
        metadata: Default::default(),
        requested_at_ms: 1_782_518_400_000,
    }
}
