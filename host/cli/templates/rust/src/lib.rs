//! {{name}}: a tiergate policy. It returns a tier for each payment; the host
//! applies that tier's approval and audit, which no policy can skip.
//!
//! Build: `tiergate build`. Test natively: `cargo test`. Test in the
//! sandbox: `tiergate test --policy target/{{name}}.wasm cases.toml`.

use serde::Deserialize;
use tiergate_policy::{Context, Decimal, Decision, Policy, Tier, Transaction, export_policy};

/// The tenant's configuration (JSON), such as `{"autonomous_up_to": "25.00"}`.
/// A key left out keeps its default; an unknown key is refused.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// The largest payment that needs nobody's attention.
    autonomous_up_to: Decimal,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            autonomous_up_to: Decimal::new(1000, 2),
        }
    }
}

impl Policy for Config {
    /// Any other tier returned would be a malformed answer.
    const TIERS: &'static [Tier] = &[Tier::Autonomous, Tier::Supervised];

    fn validate(&self) -> Result<(), String> {
        if self.autonomous_up_to <= Decimal::ZERO {
            return Err(format!(
                "autonomous_up_to must be above 0, not {}",
                self.autonomous_up_to
            ));
        }
        Ok(())
    }

    fn classify(&self, tx: &Transaction, _ctx: &dyn Context) -> Decision {
        let limit = self.autonomous_up_to;
        if tx.amount <= limit {
            Decision::new(
                Tier::Autonomous,
                "within_autonomous_limit",
                format!("{} is within the autonomous limit of {limit}", tx.amount),
            )
        } else {
            Decision::new(
                Tier::Supervised,
                "over_autonomous_limit",
                format!("{} is over the autonomous limit of {limit}", tx.amount),
            )
        }
    }
}

export_policy!(Config);

#[cfg(test)]
mod tests {
    use super::*;
    use tiergate_policy::testing::{TestContext, classify, transaction};

    fn tier(config: &str, amount: &str) -> Tier {
        let tx = transaction(amount, "compute").build();
        classify::<Config>(config, &tx, &TestContext::new())
            .expect("the configuration is valid")
            .tier
    }

    #[test]
    fn up_to_the_limit_is_autonomous_and_above_it_supervised() {
        assert_eq!(tier("{}", "10.00"), Tier::Autonomous);
        assert_eq!(tier("{}", "10.01"), Tier::Supervised);
        assert_eq!(
            tier(r#"{"autonomous_up_to": "25.00"}"#, "10.01"),
            Tier::Autonomous
        );
    }

    #[test]
    fn a_limit_of_zero_is_refused() {
        let tx = transaction("1.00", "compute").build();
        let refused = classify::<Config>(r#"{"autonomous_up_to": "0"}"#, &tx, &TestContext::new())
            .expect_err("a limit of zero is refused");
        assert!(refused.contains("autonomous_up_to"), "{refused}");
    }
}
