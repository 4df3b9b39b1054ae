//! A tier table as configuration, for tenants without custom policy code.
//!
//! The table has the shape of the reference article's configuration: one row
//! per tier with a maximum amount, categories, recipient trust and a
//! frequency cap. Prohibited rows are block lists: a transaction matching
//! *any* of their conditions is prohibited. The other rows are checked from
//! least to most oversight and the first whose *every* condition holds wins;
//! with `categories_accumulate` (the default) a row also accepts the
//! categories of the rows before it. When no row matches, `fallback` applies.
//!
//! ```json
//! {
//!   "tiers": [
//!     {"tier": "prohibited", "categories": ["gambling"], "recipient_trust": "unknown"},
//!     {"tier": "autonomous", "max_amount": "1.00", "categories": ["api_calls"],
//!      "recipient_trust": "verified", "frequency": {"max": 1000, "per": "1h"}},
//!     {"tier": "collaborative", "max_amount": "5000.00"}
//!   ]
//! }
//! ```

use serde::Deserialize;
use tiergate_policy::{
    ActivityFilter, Context, Decimal, Decision, Policy, RecipientTrust, Tier, Transaction, Window,
    export_policy,
};

/// The tenant's configuration (JSON).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Table {
    tiers: Vec<Row>,
    #[serde(default = "prohibited")]
    fallback: Tier,
    #[serde(default = "yes")]
    categories_accumulate: bool,
}

fn prohibited() -> Tier {
    Tier::Prohibited
}
fn yes() -> bool {
    true
}

/// One row of the table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Row {
    tier: Tier,
    max_amount: Option<Decimal>,
    #[serde(default)]
    categories: Vec<String>,
    /// Allowing rows: the least trust required. Prohibited rows: trust at or
    /// below this level is blocked.
    recipient_trust: Option<RecipientTrust>,
    frequency: Option<Frequency>,
    /// Prohibited rows only: blocked jurisdictions (ISO country codes).
    #[serde(default)]
    jurisdictions: Vec<String>,
}

/// At most `max` transactions of this row's tier per window.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Frequency {
    max: u64,
    per: Window,
}

impl Policy for Table {
    fn validate(&self) -> Result<(), String> {
        let allowing: Vec<&Row> = self
            .tiers
            .iter()
            .filter(|r| r.tier != Tier::Prohibited)
            .collect();
        if allowing.is_empty() {
            return Err("the table needs at least one row that is not prohibited".into());
        }
        if allowing.windows(2).any(|w| w[0].tier >= w[1].tier) {
            return Err("rows must go from least to most oversight, one row per tier".into());
        }
        for row in &self.tiers {
            let blocking = row.tier == Tier::Prohibited;
            if blocking && (row.max_amount.is_some() || row.frequency.is_some()) {
                return Err("a prohibited row blocks by category, trust or jurisdiction; it takes no max_amount or frequency".into());
            }
            if !blocking && !row.jurisdictions.is_empty() {
                return Err(format!(
                    "jurisdictions belong in a prohibited row, not the {} row",
                    row.tier
                ));
            }
            if let Some(m) = row.max_amount.filter(|m| *m <= Decimal::ZERO) {
                return Err(format!(
                    "max_amount of the {} row must be positive, not {m}",
                    row.tier
                ));
            }
        }
        Ok(())
    }

    fn classify(&self, tx: &Transaction, ctx: &dyn Context) -> Decision {
        for row in self.tiers.iter().filter(|r| r.tier == Tier::Prohibited) {
            if let Some((code, why)) = row.blocks(tx) {
                return Decision::new(Tier::Prohibited, code, why);
            }
        }
        let mut categories: Vec<&String> = Vec::new();
        let mut misses = Vec::new();
        for row in self.tiers.iter().filter(|r| r.tier != Tier::Prohibited) {
            categories = if self.categories_accumulate {
                categories
            } else {
                Vec::new()
            };
            categories.extend(&row.categories);
            let any_category = row.categories.is_empty();
            match row.unmet(tx, ctx, any_category || categories.contains(&&tx.category)) {
                None => {
                    let d = Decision::new(
                        row.tier,
                        "table_row_matched",
                        format!("the {} row matches", row.tier),
                    );
                    return misses
                        .into_iter()
                        .fold(d, |d, (code, why)| d.because(code, why));
                }
                Some(why) => misses.push((format!("not_{}", row.tier), why)),
            }
        }
        let d = Decision::new(
            self.fallback,
            "no_row_matched",
            "no row of the tier table matches",
        );
        misses
            .into_iter()
            .fold(d, |d, (code, why)| d.because(code, why))
    }
}

impl Row {
    fn blocks(&self, tx: &Transaction) -> Option<(&'static str, String)> {
        if self.categories.contains(&tx.category) {
            return Some((
                "category_prohibited",
                format!("category {} is prohibited", tx.category),
            ));
        }
        if let Some(j) = tx
            .jurisdiction
            .as_ref()
            .filter(|j| self.jurisdictions.contains(j))
        {
            return Some((
                "jurisdiction_prohibited",
                format!("jurisdiction {j} is prohibited"),
            ));
        }
        match self.recipient_trust {
            Some(t) if tx.recipient_trust <= t => Some((
                "recipient_trust_prohibited",
                format!("recipient trust {} is prohibited", tx.recipient_trust),
            )),
            _ => None,
        }
    }

    fn unmet(&self, tx: &Transaction, ctx: &dyn Context, category_ok: bool) -> Option<String> {
        if let Some(max) = self.max_amount.filter(|m| tx.amount > *m) {
            return Some(format!("{} is over {max}", tx.amount));
        }
        if !category_ok {
            return Some(format!("category {} is not listed", tx.category));
        }
        if let Some(min) = self.recipient_trust.filter(|min| tx.recipient_trust < *min) {
            return Some(format!(
                "recipient trust {} is below {min}",
                tx.recipient_trust
            ));
        }
        if let Some(f) = &self.frequency {
            let n = ctx.activity(f.per, ActivityFilter::Tier(self.tier)).count;
            if n >= f.max {
                return Some(format!(
                    "{n} {} payments in the last {} reach the cap of {}",
                    self.tier, f.per, f.max
                ));
            }
        }
        None
    }
}

export_policy!(Table);
