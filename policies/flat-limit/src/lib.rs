//! The single spending cap that tiering replaces, kept as the contrast.
//!
//! Every payment that fits under the agent's rolling limit is autonomous,
//! whatever it is for and whoever receives it: the $0.02 embedding call and
//! the $89 agent hire get the same (no) scrutiny. Everything over the limit
//! is prohibited. This is what "session spending limits" amount to, and what
//! tiergate's proportionality check flags.

#![cfg_attr(not(test), no_std)]

extern crate alloc;

use alloc::format;
use alloc::string::String;

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
        self.window.within_host_limit("window")
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

#[cfg(test)]
mod tests {
    use super::*;
    use tiergate_policy::RecipientTrust::{Known, Unknown, Verified};
    use tiergate_policy::testing::{TestContext, classify, transaction};

    fn dollars(text: &str) -> Decimal {
        text.parse().unwrap()
    }

    /// A context in which the agent already spent `total` in the last 24 hours.
    fn spent(total: &str) -> TestContext {
        TestContext::new().with_activity(Window::hours(24), ActivityFilter::All, 3, dollars(total))
    }

    fn decide(config: &str, tx: &Transaction, ctx: &TestContext) -> Decision {
        let d = classify::<FlatLimit>(config, tx, ctx).unwrap();
        assert!(FlatLimit::TIERS.contains(&d.tier), "{d:?}");
        d
    }

    #[test]
    fn under_the_limit_everything_is_autonomous() {
        let ctx = TestContext::new();
        // The article's $89 agent hire, to a recipient nobody knows: no scrutiny.
        let hire = transaction("89.00", "agent_hire").trust(Unknown).build();
        let d = decide("", &hire, &ctx);
        assert_eq!(d.tier, Tier::Autonomous);
        assert_eq!(d.reasons[0].code, "under_flat_limit");
        assert_eq!(d.suggestion, None);
        for (amount, category, trust) in [
            ("0.02", "embeddings", Verified),
            ("47.00", "compute", Known),
            ("25.00", "gambling", Unknown),
            ("100.00", "mystery", Unknown),
        ] {
            let tx = transaction(amount, category).trust(trust).build();
            assert_eq!(
                decide("{}", &tx, &ctx).tier,
                Tier::Autonomous,
                "{amount} {category}"
            );
        }
        let tx = transaction("100.01", "embeddings").trust(Verified).build();
        assert_eq!(decide("{}", &tx, &ctx).tier, Tier::Prohibited);
    }

    #[test]
    fn the_payment_that_would_exceed_the_limit_is_prohibited() {
        let tx = transaction("40.01", "embeddings").trust(Verified).build();
        let d = decide("{}", &tx, &spent("60.00"));
        assert_eq!(d.tier, Tier::Prohibited);
        assert_eq!(d.reasons[0].code, "over_flat_limit");
        assert!(d.reasons[0].message.contains("100.01"), "{d:?}");
        assert!(d.reasons[0].message.contains("100.00"), "{d:?}");
        assert_eq!(
            d.suggestion.as_deref(),
            Some("40.00 is left in this window")
        );
    }

    #[test]
    fn exactly_reaching_the_limit_is_allowed() {
        let tx = transaction("40.00", "agent_hire").trust(Unknown).build();
        let d = decide("{}", &tx, &spent("60.00"));
        assert_eq!(d.tier, Tier::Autonomous);
        assert!(d.reasons[0].message.contains("100.00"), "{d:?}");
    }

    #[test]
    fn nothing_is_left_once_the_limit_is_spent() {
        let tx = transaction("0.01", "embeddings").trust(Verified).build();
        for total in ["100.00", "120.00"] {
            let d = decide("{}", &tx, &spent(total));
            assert_eq!(d.tier, Tier::Prohibited, "{total}");
            let suggestion = d.suggestion.unwrap();
            let left = suggestion.strip_suffix(" is left in this window").unwrap();
            assert_eq!(dollars(left), Decimal::ZERO, "{suggestion}");
        }
    }

    #[test]
    fn only_spending_in_the_window_counts() {
        let tx = transaction("50.00", "compute").build();
        // Spending outside the configured window (default 24h) is ignored.
        let last_week = TestContext::new().with_activity(
            Window::days(7),
            ActivityFilter::All,
            9,
            dollars("500"),
        );
        assert_eq!(decide("{}", &tx, &last_week).tier, Tier::Autonomous);
        // Spending in one category is not what the limit counts.
        let compute = TestContext::new().with_activity(
            Window::hours(24),
            ActivityFilter::Category("compute".into()),
            9,
            dollars("500"),
        );
        assert_eq!(decide("{}", &tx, &compute).tier, Tier::Autonomous);
        // A configured window is the one asked about.
        let config = r#"{"limit": "100.00", "window": "7d"}"#;
        assert_eq!(decide(config, &tx, &last_week).tier, Tier::Prohibited);
        assert_eq!(decide(config, &tx, &spent("60.00")).tier, Tier::Autonomous);
    }

    #[test]
    fn the_limit_is_configurable_and_exact() {
        let tx = |amount| transaction(amount, "compute").build();
        let none = TestContext::new();
        for config in [r#"{"limit": 10}"#, r#"{"limit": "10.00"}"#] {
            assert_eq!(decide(config, &tx("10.00"), &none).tier, Tier::Autonomous);
            assert_eq!(decide(config, &tx("10.01"), &none).tier, Tier::Prohibited);
        }
        let config = r#"{"limit": 0.30000000000000001}"#;
        assert_eq!(
            decide(config, &tx("0.30000000000000001"), &none).tier,
            Tier::Autonomous
        );
        assert_eq!(
            decide(config, &tx("0.30000000000000002"), &none).tier,
            Tier::Prohibited
        );
    }

    #[test]
    fn a_non_positive_limit_is_an_error() {
        let tx = transaction("1.00", "compute").build();
        for limit in ["0", "\"0.00\"", "-5", "\"-100.00\""] {
            let config = format!(r#"{{"limit": {limit}}}"#);
            let err = classify::<FlatLimit>(&config, &tx, &TestContext::new()).unwrap_err();
            assert!(err.contains("limit must be positive"), "{limit}: {err}");
        }
    }

    #[test]
    fn a_misspelt_key_is_an_error_naming_it() {
        let tx = transaction("1.00", "compute").build();
        let err = classify::<FlatLimit>(r#"{"limt": "5"}"#, &tx, &TestContext::new()).unwrap_err();
        assert!(err.contains("`limt`"), "{err}");
    }

    #[test]
    fn a_window_longer_than_the_host_answers_for_is_refused_at_configuration() {
        let tx = transaction("1.00", "api_calls").build();
        let err =
            classify::<FlatLimit>(r#"{"window": "32d"}"#, &tx, &TestContext::new()).unwrap_err();
        assert!(
            err.contains("window is 32d, longer than the 31d the host answers for"),
            "{err}"
        );
        let longest = decide(r#"{"window": "31d"}"#, &tx, &TestContext::new());
        assert_eq!(longest.tier, Tier::Autonomous);
    }
}
