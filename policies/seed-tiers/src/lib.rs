//! The four autonomy tiers of the reference article, as a tiergate policy.
//!
//! Prohibited first (a prohibited category, a sanctioned jurisdiction, an
//! unknown recipient); then the first of autonomous, supervised and
//! collaborative whose every condition holds. Categories accumulate upward
//! (an autonomous category may also be supervised), a frequency cap that is
//! reached escalates to the next tier, and a category nobody listed lands
//! with a human. Over the collaborative ceiling, or past its frequency cap,
//! the payment is prohibited. Every threshold, list and window comes from the
//! tenant's configuration, with the article's values as defaults.

use serde::Deserialize;
use tiergate_policy::{
    ActivityFilter, Context, Decimal, Decision, Policy, RecipientTrust, Tier, Transaction, Window,
    export_policy,
};

/// The tenant's configuration (JSON); every key is optional.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SeedTiers {
    prohibited_categories: Vec<String>,
    sanctioned_jurisdictions: Vec<String>,
    autonomous: Rule,
    supervised: Rule,
    collaborative: Rule,
}

/// The conditions of one tier. An empty category list means any category.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    max_amount: Decimal,
    #[serde(default)]
    categories: Vec<String>,
    min_trust: RecipientTrust,
    max_per_window: u64,
    window: Window,
}

impl Rule {
    /// The first condition `tx` fails, or `None` when every one holds.
    /// `inherited` are the categories of the tiers below, which carry upward.
    fn unmet(
        &self,
        tier: Tier,
        inherited: &[String],
        tx: &Transaction,
        ctx: &dyn Context,
    ) -> Option<String> {
        let listed = |c: &Vec<String>| c.contains(&tx.category);
        if tx.amount > self.max_amount {
            return Some(format!(
                "{} is over the {tier} limit of {}",
                tx.amount, self.max_amount
            ));
        }
        if !self.categories.is_empty()
            && !listed(&self.categories)
            && !inherited.contains(&tx.category)
        {
            return Some(format!("category {} is not a {tier} category", tx.category));
        }
        if tx.recipient_trust < self.min_trust {
            return Some(format!(
                "recipient trust {} is below {}",
                tx.recipient_trust, self.min_trust
            ));
        }
        let recent = ctx.activity(self.window, ActivityFilter::Tier(tier)).count;
        if recent >= self.max_per_window {
            return Some(format!(
                "{recent} {tier} payments in the last {} reach the cap of {}",
                self.window, self.max_per_window
            ));
        }
        None
    }
}

impl Policy for SeedTiers {
    fn classify(&self, tx: &Transaction, ctx: &dyn Context) -> Decision {
        if self.prohibited_categories.contains(&tx.category) {
            return Decision::new(
                Tier::Prohibited,
                "category_prohibited",
                format!("category {} is prohibited", tx.category),
            );
        }
        if let Some(j) = tx
            .jurisdiction
            .as_ref()
            .filter(|j| self.sanctioned_jurisdictions.contains(j))
        {
            return Decision::new(
                Tier::Prohibited,
                "jurisdiction_sanctioned",
                format!("jurisdiction {j} is on the sanctions list"),
            );
        }
        if tx.recipient_trust == RecipientTrust::Unknown {
            return Decision::new(
                Tier::Prohibited,
                "recipient_unknown",
                format!("recipient {} is unknown", tx.recipient),
            )
            .suggest("pay a known or verified recipient, or ask the owner to verify this one");
        }
        let mut not_looser = Vec::new();
        let mut inherited: Vec<String> = Vec::new();
        for (tier, rule) in [
            (Tier::Autonomous, &self.autonomous),
            (Tier::Supervised, &self.supervised),
            (Tier::Collaborative, &self.collaborative),
        ] {
            match rule.unmet(tier, &inherited, tx, ctx) {
                None => {
                    let mut d = Decision::new(
                        tier,
                        format!("{tier}_conditions_met"),
                        format!(
                            "{} {} {} meets every {tier} condition",
                            tx.amount, tx.currency, tx.category
                        ),
                    );
                    for (code, why) in not_looser {
                        d = d.because(code, why);
                    }
                    if tier == Tier::Collaborative {
                        d = d.suggest(format!("a budget owner must approve; {} at most {} to a known recipient only needs a veto window", self.supervised_categories(), self.supervised.max_amount));
                    }
                    return d;
                }
                Some(why) => not_looser.push((format!("not_{tier}"), why)),
            }
            inherited.extend(rule.categories.iter().cloned());
        }
        let over_ceiling = tx.amount > self.collaborative.max_amount;
        let (code, why) = not_looser.pop().expect("three tiers were checked");
        Decision::new(Tier::Prohibited, if over_ceiling { "amount_over_ceiling" } else { "collaborative_rate_exceeded" }, why)
            .suggest(if over_ceiling {
                format!("agents may ask for at most {}; a larger payment must be made by a human", self.collaborative.max_amount)
            } else {
                format!("wait until fewer than {} collaborative payments fall in the last {}, or ask a human", self.collaborative.max_per_window, self.collaborative.window)
            })
            .because(code, "no tier's conditions hold")
    }
}

impl SeedTiers {
    fn supervised_categories(&self) -> String {
        let mut all = self.autonomous.categories.clone();
        all.extend(self.supervised.categories.iter().cloned());
        all.join(", ")
    }
}

impl Default for SeedTiers {
    fn default() -> Self {
        let strings = |xs: &[&str]| xs.iter().map(|s| s.to_string()).collect();
        SeedTiers {
            prohibited_categories: strings(&[
                "gambling",
                "unverified_agents",
                "sanctioned_jurisdictions",
            ]),
            sanctioned_jurisdictions: strings(&["KP", "IR", "SY"]),
            autonomous: Rule {
                max_amount: Decimal::new(100, 2),
                categories: strings(&["api_calls", "embeddings", "search"]),
                min_trust: RecipientTrust::Verified,
                max_per_window: 1000,
                window: Window::hours(1),
            },
            supervised: Rule {
                max_amount: Decimal::new(5000, 2),
                categories: strings(&["compute", "data_access", "saas_tools"]),
                min_trust: RecipientTrust::Known,
                max_per_window: 20,
                window: Window::hours(1),
            },
            collaborative: Rule {
                max_amount: Decimal::new(500000, 2),
                categories: Vec::new(),
                min_trust: RecipientTrust::Unknown,
                max_per_window: 5,
                window: Window::hours(24),
            },
        }
    }
}

export_policy!(SeedTiers);
