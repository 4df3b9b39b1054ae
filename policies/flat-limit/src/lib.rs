//! The single spending cap that tiering replaces, kept as the contrast.
//!
//! Every payment that fits under the agent's rolling limit is autonomous,
//! whatever it is for and whoever receives it: the $0.02 embedding call and
//! the $89 agent hire get the same (no) scrutiny. Everything over the limit
//! is prohibited. This is what "session spending limits" amount to, and what
//! tiergate's proportionality check flags.

use serde::Deserialize;
use tiergate_policy::{
    ActivityFilter, Context, Decimal, Decision, Policy, Tier, Transaction, Window, export_policy,
};

/// The tenant's configuration (JSON): `{"limit": "100.00", "window": "24h"}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FlatLimit {
    limit: Decimal,
    window: Window,
}

impl Default for FlatLimit {
    fn default() -> Self {
        FlatLimit {
            limit: Decimal::new(10000, 2),
            window: Window::hours(24),
        }
    }
}

impl Policy for FlatLimit {
    const TIERS: &'static [Tier] = &[Tier::Autonomous, Tier::Prohibited];

    fn validate(&self) -> Result<(), String> {
        if self.limit <= Decimal::ZERO {
            return Err(format!("limit must be positive, not {}", self.limit));
        }
        Ok(())
    }

    fn classify(&self, tx: &Transaction, ctx: &dyn Context) -> Decision {
        let spent = ctx.activity(self.window, ActivityFilter::All).total;
        let after = spent + tx.amount;
        if after <= self.limit {
            Decision::new(
                Tier::Autonomous,
                "under_flat_limit",
                format!(
                    "{after} of {} spent in the last {}",
                    self.limit, self.window
                ),
            )
        } else {
            Decision::new(
                Tier::Prohibited,
                "over_flat_limit",
                format!(
                    "{after} would exceed the limit of {} per {}",
                    self.limit, self.window
                ),
            )
            .suggest(format!(
                "{} is left in this window",
                (self.limit - spent).max(Decimal::ZERO)
            ))
        }
    }
}

export_policy!(FlatLimit);
