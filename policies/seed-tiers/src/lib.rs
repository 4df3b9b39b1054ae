//! The four autonomy tiers of the reference article, as a tiergate policy.
//!
//! Prohibited first (a prohibited category, a sanctioned jurisdiction, an
//! unknown recipient); then the first of autonomous, supervised and
//! collaborative whose every condition holds. Categories accumulate upward
//! (an autonomous category may also be supervised), a frequency cap that is
//! reached escalates to the next tier, and a category nobody listed lands
//! with a human. Over the collaborative ceiling, or past its frequency cap,
//! the payment is prohibited. Every threshold, list and window comes from the
//! tenant's configuration, merged over the article's values in
//! `defaults.json`; a tier's rule is given whole or not at all.

#![cfg_attr(not(test), no_std)]

use tiergate_policy::prelude::*;

/// The tenant's configuration (JSON); every key is optional.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeedTiers {
    prohibited_categories: Vec<String>,
    sanctioned_jurisdictions: Vec<Jurisdiction>,
    autonomous: Rule,
    supervised: Rule,
    collaborative: Rule,
}

impl Policy for SeedTiers {
    const DEFAULTS: Defaults = defaults!(include_str!("../defaults.json")).replace_whole(&[
        "autonomous",
        "supervised",
        "collaborative",
    ]);

    fn validate(&self) -> Result<(), String> {
        self.autonomous.validate("autonomous")?;
        self.supervised.validate("supervised")?;
        self.collaborative.validate("collaborative")
    }

    fn classify(&self, tx: &Transaction, ctx: &dyn Context) -> Decision {
        let (category, recipient) = (&tx.category, &tx.recipient);
        if self.prohibited_categories.contains(category) {
            let why = format!("category {category} is prohibited");
            return Decision::new(Tier::Prohibited, "category_prohibited", why);
        }
        let sanctioned = |j: &&String| self.sanctioned_jurisdictions.iter().any(|s| s == *j);
        if let Some(j) = tx.jurisdiction.as_ref().filter(sanctioned) {
            let why = format!("jurisdiction {j} is on the sanctions list");
            return Decision::new(Tier::Prohibited, "jurisdiction_sanctioned", why);
        }
        if tx.recipient_trust == RecipientTrust::Unknown {
            let why = format!("recipient {recipient} is unknown");
            return Decision::new(Tier::Prohibited, "recipient_unknown", why)
                .suggest("pay a known or verified recipient, or ask the owner to verify this one");
        }
        let d = Ladder::new([
            (Tier::Autonomous, &self.autonomous),
            (Tier::Supervised, &self.supervised),
            (Tier::Collaborative, &self.collaborative),
        ])
        .decide(tx, ctx, Tier::Prohibited);
        if d.tier != Tier::Collaborative {
            return d;
        }
        let mut listed = self.autonomous.categories.clone();
        listed.extend_from_slice(&self.supervised.categories);
        d.suggest(format!(
            "a budget owner must approve; {} at most {} to a known recipient only needs a veto window",
            listed.join(", "),
            self.supervised.max_amount
        ))
    }
}

export_policy!(SeedTiers);

#[cfg(test)]
mod tests {
    use super::*;
    use tiergate_policy::testing::{TestContext, classify, transaction};

    use RecipientTrust::{Known, Unknown, Verified};

    /// Classifies with `config` and no past activity.
    fn decide(config: &str, amount: &str, category: &str, trust: RecipientTrust) -> Decision {
        let tx = transaction(amount, category).trust(trust).build();
        classify::<SeedTiers>(config, &tx, &TestContext::new()).unwrap()
    }

    /// The tier under the default (article) configuration, no past activity.
    fn tier(amount: &str, category: &str, trust: RecipientTrust) -> Tier {
        decide("{}", amount, category, trust).tier
    }

    fn codes(d: &Decision) -> Vec<&str> {
        d.reasons.iter().map(|r| r.code.as_str()).collect()
    }

    /// The tier of `tx` when the context reports `count` earlier payments of
    /// `counted` tier in `window`.
    fn tier_after(tx: &Transaction, window: Window, counted: Tier, count: u64) -> Decision {
        let ctx = TestContext::new().with_tier_count(window, counted, count);
        classify::<SeedTiers>("{}", tx, &ctx).unwrap()
    }

    #[test]
    fn prohibited_categories_are_refused_whatever_the_amount_and_trust() {
        for category in ["gambling", "unverified_agents", "sanctioned_jurisdictions"] {
            let d = decide("{}", "0.01", category, Verified);
            assert_eq!(d.tier, Tier::Prohibited, "{category}");
            assert_eq!(d.reasons[0].code, "category_prohibited", "{category}");
            assert!(d.reasons[0].message.contains(category), "{d:?}");
        }
        // The same payment in an allowed category would have gone through.
        assert_eq!(tier("0.01", "embeddings", Verified), Tier::Autonomous);
    }

    #[test]
    fn unknown_recipients_are_prohibited_with_a_way_forward() {
        let d = decide("{}", "0.02", "embeddings", Unknown);
        assert_eq!(d.tier, Tier::Prohibited);
        assert_eq!(d.reasons[0].code, "recipient_unknown");
        assert!(d.suggestion.as_deref().unwrap().contains("verify"), "{d:?}");
        // The article's $89 agent hire is collaborative to a known recipient
        // but prohibited to an unknown one.
        assert_eq!(tier("89.00", "agent_hire", Known), Tier::Collaborative);
        assert_eq!(tier("89.00", "agent_hire", Unknown), Tier::Prohibited);
    }

    #[test]
    fn a_sanctions_list_in_lower_case_is_refused() {
        let tx = transaction("0.02", "embeddings").build();
        let err = classify::<SeedTiers>(
            r#"{"sanctioned_jurisdictions": ["fr"]}"#,
            &tx,
            &TestContext::new(),
        )
        .unwrap_err();
        assert!(err.contains("\"fr\""), "{err}");
    }

    #[test]
    fn sanctioned_jurisdictions_are_prohibited_by_default() {
        let to = |code: &str| {
            let tx = transaction("0.02", "embeddings")
                .trust(Verified)
                .jurisdiction(code)
                .build();
            classify::<SeedTiers>("{}", &tx, &TestContext::new()).unwrap()
        };
        for code in ["KP", "IR", "SY"] {
            let d = to(code);
            assert_eq!(d.tier, Tier::Prohibited, "{code}");
            assert_eq!(d.reasons[0].code, "jurisdiction_sanctioned");
            assert!(d.reasons[0].message.contains(code), "{d:?}");
        }
        assert_eq!(to("DE").tier, Tier::Autonomous);
        assert_eq!(to("FR").tier, Tier::Autonomous);
    }

    #[test]
    fn a_configured_sanctions_list_replaces_the_default() {
        let config = r#"{"sanctioned_jurisdictions": ["FR"]}"#;
        let to = |code: &str| {
            let tx = transaction("0.02", "embeddings")
                .trust(Verified)
                .jurisdiction(code)
                .build();
            classify::<SeedTiers>(config, &tx, &TestContext::new()).unwrap()
        };
        let d = to("FR");
        assert_eq!(d.tier, Tier::Prohibited);
        assert_eq!(d.reasons[0].code, "jurisdiction_sanctioned");
        assert_eq!(to("DE").tier, Tier::Autonomous);
        // The tenant's list is the whole list: it does not add to the default.
        assert_eq!(to("KP").tier, Tier::Autonomous);
        // Other defaults still apply.
        assert_eq!(
            decide(config, "0.02", "gambling", Verified).tier,
            Tier::Prohibited
        );
    }

    #[test]
    fn autonomous_ends_at_one_dollar() {
        let d = decide("{}", "1.00", "embeddings", Verified);
        assert_eq!(d.tier, Tier::Autonomous);
        assert_eq!(codes(&d), ["autonomous_conditions_met"]);
        assert_eq!(d.suggestion, None);

        let d = decide("{}", "1.01", "embeddings", Verified);
        assert_eq!(d.tier, Tier::Supervised);
        assert_eq!(codes(&d), ["supervised_conditions_met", "not_autonomous"]);
        assert!(d.reasons[1].message.contains("1.01"), "{d:?}");
        assert!(d.reasons[1].message.contains("1.00"), "{d:?}");
    }

    #[test]
    fn supervised_ends_at_fifty_dollars() {
        assert_eq!(tier("50.00", "compute", Known), Tier::Supervised);
        let d = decide("{}", "50.01", "compute", Known);
        assert_eq!(d.tier, Tier::Collaborative);
        assert!(d.has_reason("not_supervised"), "{d:?}");
        assert!(d.suggestion.is_some());
    }

    #[test]
    fn collaborative_ends_at_five_thousand_dollars() {
        assert_eq!(tier("5000.00", "compute", Known), Tier::Collaborative);
        let d = decide("{}", "5000.01", "compute", Known);
        assert_eq!(d.tier, Tier::Prohibited);
        assert_eq!(d.reasons[0].code, "amount_over_ceiling");
        assert!(d.reasons[0].message.contains("5000.00"), "{d:?}");
        assert!(
            d.suggestion.as_deref().unwrap().contains("5000.00"),
            "{d:?}"
        );
    }

    #[test]
    fn the_autonomous_frequency_cap_escalates_to_supervised() {
        let tx = transaction("0.02", "embeddings").trust(Verified).build();
        let hour = Window::hours(1);
        assert_eq!(
            tier_after(&tx, hour, Tier::Autonomous, 999).tier,
            Tier::Autonomous
        );
        let d = tier_after(&tx, hour, Tier::Autonomous, 1000);
        assert_eq!(d.tier, Tier::Supervised);
        assert!(d.has_reason("not_autonomous"), "{d:?}");
        assert!(d.reasons[1].message.contains("1000"), "{d:?}");
        // Only the last hour counts.
        assert_eq!(
            tier_after(&tx, Window::hours(24), Tier::Autonomous, 1000).tier,
            Tier::Autonomous
        );
        // Only autonomous payments count against the autonomous cap.
        assert_eq!(
            tier_after(&tx, hour, Tier::Supervised, 1000).tier,
            Tier::Autonomous
        );
    }

    #[test]
    fn the_supervised_frequency_cap_escalates_to_collaborative() {
        let tx = transaction("10.00", "compute").build();
        let hour = Window::hours(1);
        assert_eq!(
            tier_after(&tx, hour, Tier::Supervised, 19).tier,
            Tier::Supervised
        );
        let d = tier_after(&tx, hour, Tier::Supervised, 20);
        assert_eq!(d.tier, Tier::Collaborative);
        assert!(d.has_reason("not_supervised"), "{d:?}");
    }

    #[test]
    fn the_collaborative_frequency_cap_prohibits() {
        let tx = transaction("89.00", "agent_hire").build();
        let day = Window::hours(24);
        assert_eq!(
            tier_after(&tx, day, Tier::Collaborative, 4).tier,
            Tier::Collaborative
        );
        let d = tier_after(&tx, day, Tier::Collaborative, 5);
        assert_eq!(d.tier, Tier::Prohibited);
        assert_eq!(d.reasons[0].code, "collaborative_rate_exceeded");
        assert!(d.suggestion.as_deref().unwrap().contains("wait"), "{d:?}");
        // The collaborative window is a day, not an hour.
        assert_eq!(
            tier_after(&tx, Window::hours(1), Tier::Collaborative, 5).tier,
            Tier::Collaborative
        );
    }

    #[test]
    fn autonomous_needs_a_verified_recipient() {
        let d = decide("{}", "0.50", "embeddings", Known);
        assert_eq!(d.tier, Tier::Supervised);
        let why = &d.reasons[1];
        assert_eq!(why.code, "not_autonomous");
        assert!(why.message.contains("trust"), "{d:?}");
        assert_eq!(tier("0.50", "embeddings", Verified), Tier::Autonomous);
    }

    #[test]
    fn categories_accumulate_upward_and_unlisted_ones_need_a_human() {
        // An autonomous category over the autonomous limit is supervised.
        assert_eq!(tier("10.00", "search", Verified), Tier::Supervised);
        assert_eq!(tier("10.00", "search", Known), Tier::Supervised);
        // A category no tier lists is never autonomous or supervised.
        let d = decide("{}", "3.00", "mystery", Known);
        assert_eq!(d.tier, Tier::Collaborative);
        assert!(d.reasons[2].message.contains("mystery"), "{d:?}");
        assert_eq!(tier("0.50", "mystery", Verified), Tier::Collaborative);
        // A supervised category is never autonomous, however small.
        assert_eq!(tier("0.50", "compute", Verified), Tier::Supervised);
    }

    #[test]
    fn the_articles_agent_hire_needs_approval_and_explains_why() {
        let tx = transaction("89.00", "agent_hire")
            .trust(Known)
            .justification("EURC liquidity analysis for MiCA compliance report")
            .build();
        let d = classify::<SeedTiers>("{}", &tx, &TestContext::new()).unwrap();
        assert_eq!(d.tier, Tier::Collaborative);
        assert_eq!(
            codes(&d),
            [
                "collaborative_conditions_met",
                "not_autonomous",
                "not_supervised"
            ]
        );
        assert!(d.reasons[1].message.contains("1.00"), "{d:?}");
        assert!(d.reasons[2].message.contains("50.00"), "{d:?}");
        let suggestion = d.suggestion.unwrap();
        assert!(suggestion.contains("50.00"), "{suggestion}");
    }

    #[test]
    fn a_threshold_can_be_overridden() {
        let config = r#"{"autonomous": {"max_amount": "5.00", "categories": ["embeddings"],
            "min_trust": "verified", "max_per_window": 10, "window": "1h"}}"#;
        assert_eq!(
            decide(config, "5.00", "embeddings", Verified).tier,
            Tier::Autonomous
        );
        assert_eq!(
            decide(config, "5.01", "embeddings", Verified).tier,
            Tier::Supervised
        );
        assert_eq!(tier("5.00", "embeddings", Verified), Tier::Supervised);
        // The rule replaced the default whole: search is no longer autonomous...
        assert_eq!(
            decide(config, "0.50", "search", Verified).tier,
            Tier::Collaborative
        );
        // ...and its own cap applies.
        let tx = transaction("0.02", "embeddings").trust(Verified).build();
        let ctx = TestContext::new().with_tier_count(Window::hours(1), Tier::Autonomous, 10);
        assert_eq!(
            classify::<SeedTiers>(config, &tx, &ctx).unwrap().tier,
            Tier::Supervised
        );
        // The other tiers keep the article's values.
        assert_eq!(
            decide(config, "50.01", "compute", Known).tier,
            Tier::Collaborative
        );
    }

    #[test]
    fn a_rule_must_be_given_whole() {
        let tx = transaction("0.02", "embeddings").trust(Verified).build();
        let err = classify::<SeedTiers>(
            r#"{"autonomous": {"max_amount": "5.00"}}"#,
            &tx,
            &TestContext::new(),
        )
        .unwrap_err();
        assert!(err.contains("missing field"), "{err}");
    }

    #[test]
    fn a_misspelt_key_is_an_error_naming_it() {
        let tx = transaction("0.02", "embeddings").trust(Verified).build();
        let ctx = TestContext::new();
        let err =
            classify::<SeedTiers>(r#"{"sanctioned_jurisdiction": ["FR"]}"#, &tx, &ctx).unwrap_err();
        assert!(err.contains("`sanctioned_jurisdiction`"), "{err}");
        let err = classify::<SeedTiers>(
            r#"{"autonomous": {"max_amout": "5.00", "categories": [],
                "min_trust": "verified", "max_per_window": 10, "window": "1h"}}"#,
            &tx,
            &ctx,
        )
        .unwrap_err();
        assert!(err.contains("`max_amout`"), "{err}");
        let err = classify::<SeedTiers>(
            r#"{"autonomous": {"max_amount": "5.00", "categories": [],
                "min_trust": "trusted", "max_per_window": 10, "window": "1h"}}"#,
            &tx,
            &ctx,
        )
        .unwrap_err();
        assert!(err.contains("trusted"), "{err}");
    }

    #[test]
    fn an_empty_config_means_the_defaults() {
        for config in ["", "  \n", "{}"] {
            assert_eq!(
                decide(config, "1.00", "embeddings", Verified).tier,
                Tier::Autonomous
            );
            assert_eq!(
                decide(config, "1.01", "embeddings", Verified).tier,
                Tier::Supervised
            );
            assert_eq!(
                decide(config, "5000.01", "compute", Known).tier,
                Tier::Prohibited
            );
            assert_eq!(
                decide(config, "0.02", "gambling", Verified).tier,
                Tier::Prohibited
            );
        }
    }

    #[test]
    fn config_amounts_may_be_numbers_or_strings_and_are_exact() {
        let rule = |max: &str| {
            format!(
                r#"{{"autonomous": {{"max_amount": {max}, "categories": ["embeddings"],
                    "min_trust": "verified", "max_per_window": 1000, "window": "1h"}}}}"#
            )
        };
        for config in [rule("2.50"), rule(r#""2.50""#)] {
            assert_eq!(
                decide(&config, "2.50", "embeddings", Verified).tier,
                Tier::Autonomous,
                "{config}"
            );
            assert_eq!(
                decide(&config, "2.51", "embeddings", Verified).tier,
                Tier::Supervised,
                "{config}"
            );
        }
        // Past what a binary float can hold: 1.0000000000000001 as an f64 is 1.
        for config in [rule("1.0000000000000001"), rule(r#""1.0000000000000001""#)] {
            assert_eq!(
                decide(&config, "1.0000000000000001", "embeddings", Verified).tier,
                Tier::Autonomous,
                "{config}"
            );
            assert_eq!(
                decide(&config, "1.0000000000000002", "embeddings", Verified).tier,
                Tier::Supervised,
                "{config}"
            );
        }
    }

    /// The article's collaborative row lists categories; a tenant may do the
    /// same here.
    const LISTED_COLLABORATIVE: &str = r#"{"collaborative": {"max_amount": "5000.00",
        "categories": ["agent_hire", "service_procurement", "subscription"],
        "min_trust": "known", "max_per_window": 5, "window": "24h"}}"#;

    #[test]
    fn prohibited_says_which_collaborative_condition_failed() {
        let ctx = TestContext::new();
        let why = |amount: &str, category: &str, ctx: &TestContext| {
            let tx = transaction(amount, category).build();
            classify::<SeedTiers>(LISTED_COLLABORATIVE, &tx, ctx).unwrap()
        };
        // Listed categories (and those below) still land collaborative.
        assert_eq!(why("89.00", "agent_hire", &ctx).tier, Tier::Collaborative);
        assert_eq!(why("89.00", "compute", &ctx).tier, Tier::Collaborative);
        // An unlisted category is prohibited for its category, not for a
        // rate that was never reached.
        let d = why("3.00", "mystery", &ctx);
        assert_eq!(d.tier, Tier::Prohibited);
        assert_eq!(d.reasons[0].code, "category_not_allowed", "{d:?}");
        assert!(!d.suggestion.as_deref().unwrap().contains("wait"), "{d:?}");
        // Over the ceiling and past the cap keep their codes.
        let d = why("5000.01", "agent_hire", &ctx);
        assert_eq!(d.reasons[0].code, "amount_over_ceiling", "{d:?}");
        let busy = TestContext::new().with_tier_count(Window::hours(24), Tier::Collaborative, 5);
        let d = why("89.00", "agent_hire", &busy);
        assert_eq!(d.reasons[0].code, "collaborative_rate_exceeded", "{d:?}");
    }

    #[test]
    fn prohibited_for_trust_when_collaborative_needs_verified() {
        let config = r#"{"collaborative": {"max_amount": "5000.00", "categories": [],
            "min_trust": "verified", "max_per_window": 5, "window": "24h"}}"#;
        let d = decide(config, "89.00", "agent_hire", Known);
        assert_eq!(d.tier, Tier::Prohibited);
        assert_eq!(d.reasons[0].code, "recipient_trust_too_low", "{d:?}");
        assert_eq!(
            decide(config, "89.00", "agent_hire", Verified).tier,
            Tier::Collaborative
        );
    }

    #[test]
    fn every_decision_is_well_formed() {
        let txs = [
            transaction("0.02", "embeddings").trust(Verified).build(),
            transaction("47.00", "compute").build(),
            transaction("89.00", "agent_hire").build(),
            transaction("25.00", "gambling").build(),
            transaction("9999.00", "compute").build(),
            transaction("1.00", "search").trust(Unknown).build(),
        ];
        for tx in &txs {
            let d = classify::<SeedTiers>("{}", tx, &TestContext::new()).unwrap();
            assert!(SeedTiers::TIERS.contains(&d.tier));
            assert!(!d.reasons.is_empty() && d.reasons.len() <= 16, "{d:?}");
            for r in &d.reasons {
                assert!(!r.code.is_empty() && r.code.len() <= 64, "{d:?}");
                assert!(
                    r.code.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
                    "{d:?}"
                );
                assert!(!r.message.is_empty() && r.message.len() <= 1024, "{d:?}");
            }
            if d.tier == Tier::Collaborative {
                assert!(d.suggestion.is_some(), "{d:?}");
            }
        }
    }

    #[test]
    fn a_window_longer_than_the_host_answers_for_is_refused_at_configuration() {
        let tx = transaction("1.00", "api_calls").build();
        let err = classify::<SeedTiers>(
            r#"{"collaborative": {"max_amount": "5000.00", "min_trust": "unknown", "max_per_window": 5, "window": "60d"}}"#,
            &tx,
            &TestContext::new(),
        )
        .unwrap_err();
        assert!(
            err.contains("collaborative.window is 60d, longer than the 31d the host answers for"),
            "{err}"
        );
    }
}
