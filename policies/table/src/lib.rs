//! A tier table as configuration, for tenants without custom policy code.
//!
//! The table has the shape of the reference article's configuration: one row
//! per tier with a maximum amount, categories, recipient trust and a
//! frequency cap. Prohibited rows are block lists: a transaction matching
//! *any* of their conditions is prohibited. The other rows are checked from
//! least to most oversight and the first whose *every* condition holds wins;
//! with `categories_accumulate` (the default) a row also accepts the
//! categories of the rows before it. When no row matches, `fallback` applies
//! (`prohibited` by default).
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

#![cfg_attr(not(test), no_std)]

use tiergate_policy::prelude::*;

/// The tenant's configuration (JSON), over the defaults
/// `{"fallback": "prohibited", "categories_accumulate": true}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Table {
    tiers: Vec<Row>,
    fallback: Tier,
    categories_accumulate: bool,
}

/// One row of the table.
#[derive(Debug, Deserialize)]
#[serde(from = "RowDoc")]
pub struct Row {
    tier: Tier,
    /// Allowing rows: the conditions of the row's tier.
    rule: Rule,
    /// As written, so a non-positive amount is refused naming the row.
    max_amount: Option<Decimal>,
    /// Prohibited rows: trust at or below this level is blocked.
    recipient_trust: Option<RecipientTrust>,
    /// Prohibited rows only: blocked jurisdictions.
    jurisdictions: Vec<Jurisdiction>,
}

/// A row as written in the table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RowDoc {
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
    jurisdictions: Vec<Jurisdiction>,
}

/// At most `max` transactions of this row's tier per window.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Frequency {
    max: u64,
    per: Window,
}

impl From<RowDoc> for Row {
    fn from(doc: RowDoc) -> Row {
        Row {
            tier: doc.tier,
            rule: Rule {
                // A non-positive amount never reaches a classification:
                // `validate` refuses it.
                max_amount: doc
                    .max_amount
                    .and_then(|m| PositiveAmount::new(m).ok())
                    .unwrap_or(PositiveAmount::MAX),
                categories: doc.categories,
                min_trust: doc.recipient_trust.unwrap_or(RecipientTrust::Unknown),
                rate_cap: doc.frequency.map(|f| RateCap {
                    max_per_window: f.max,
                    window: f.per,
                }),
            },
            max_amount: doc.max_amount,
            recipient_trust: doc.recipient_trust,
            jurisdictions: doc.jurisdictions,
        }
    }
}

impl Policy for Table {
    const DEFAULTS: Defaults =
        defaults!(r#"{"fallback": "prohibited", "categories_accumulate": true}"#);

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
            if blocking && (row.max_amount.is_some() || row.rule.rate_cap.is_some()) {
                return Err("a prohibited row blocks by category, trust or jurisdiction; it takes no max_amount or frequency".into());
            }
            if !blocking && !row.jurisdictions.is_empty() {
                return Err(format!(
                    "jurisdictions belong in a prohibited row, not the {} row",
                    row.tier
                ));
            }
            if let Some(cap) = &row.rule.rate_cap {
                cap.window
                    .within_host_limit(&format!("frequency.per of the {} row", row.tier))?;
            }
            if let Some(m) = row.max_amount.filter(|m| PositiveAmount::new(*m).is_err()) {
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
        let allowing = self.tiers.iter().filter(|r| r.tier != Tier::Prohibited);
        let climb = Ladder::new(allowing.map(|r| (r.tier, &r.rule)))
            .accumulate_categories(self.categories_accumulate)
            .climb(tx, ctx);
        let d = match climb.tier {
            Some(tier) => {
                Decision::new(tier, "table_row_matched", format!("the {tier} row matches"))
            }
            None => Decision::new(
                self.fallback,
                "no_row_matched",
                "no row of the tier table matches",
            ),
        };
        // The table's own wording for the ceiling and the categories.
        climb.explain_with(d, |passed| match &passed.unmet {
            Unmet::Amount { amount, max } => format!("{amount} is over {max}"),
            Unmet::Category { category } => format!("category {category} is not listed"),
            Unmet::Trust { .. } | Unmet::Rate { .. } => passed.message(),
        })
    }
}

impl Row {
    fn blocks(&self, tx: &Transaction) -> Option<(&'static str, String)> {
        if self.rule.categories.contains(&tx.category) {
            return Some((
                "category_prohibited",
                format!("category {} is prohibited", tx.category),
            ));
        }
        let blocked = |j: &&String| self.jurisdictions.iter().any(|b| b == *j);
        if let Some(j) = tx.jurisdiction.as_ref().filter(blocked) {
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
}

export_policy!(Table);

#[cfg(test)]
mod tests {
    use super::*;
    use tiergate_policy::testing::{TestContext, classify, transaction};

    use RecipientTrust::{Known, Unknown, Verified};

    /// The reference article's tier table.
    const ARTICLE: &str = r#"{"tiers": [
        {"tier": "prohibited",
         "categories": ["gambling", "unverified_agents", "sanctioned_jurisdictions"],
         "recipient_trust": "unknown"},
        {"tier": "autonomous", "max_amount": "1.00",
         "categories": ["api_calls", "embeddings", "search"],
         "recipient_trust": "verified", "frequency": {"max": 1000, "per": "1h"}},
        {"tier": "supervised", "max_amount": "50.00",
         "categories": ["compute", "data_access", "saas_tools"],
         "recipient_trust": "known", "frequency": {"max": 20, "per": "1h"}},
        {"tier": "collaborative", "max_amount": "5000.00",
         "categories": ["agent_hire", "service_procurement", "subscription"],
         "frequency": {"max": 5, "per": "24h"}}
    ]}"#;

    /// `ARTICLE` with extra top-level keys, such as `"fallback": "collaborative"`.
    fn article_with(extra: &str) -> String {
        let body = ARTICLE.trim_end().strip_suffix('}').unwrap();
        format!("{body}, {extra}}}")
    }

    fn decide(config: &str, tx: &Transaction, ctx: &TestContext) -> Decision {
        classify::<Table>(config, tx, ctx).unwrap()
    }

    fn tier(config: &str, amount: &str, category: &str, trust: RecipientTrust) -> Tier {
        let tx = transaction(amount, category).trust(trust).build();
        decide(config, &tx, &TestContext::new()).tier
    }

    fn error(config: &str) -> String {
        let tx = transaction("0.02", "embeddings").trust(Verified).build();
        classify::<Table>(config, &tx, &TestContext::new()).unwrap_err()
    }

    fn codes(d: &Decision) -> Vec<&str> {
        d.reasons.iter().map(|r| r.code.as_str()).collect()
    }

    /// The expected tiers are seed-tiers' under its default (article)
    /// configuration, which its own tests assert case by case.
    #[test]
    fn the_articles_table_matches_seed_tiers_on_the_boundaries() {
        let none = TestContext::new();
        let hour = Window::hours(1);
        let day = Window::hours(24);
        let embeddings = |amount| transaction(amount, "embeddings").trust(Verified).build();
        let compute = |amount| transaction(amount, "compute").build();
        let hire = transaction("89.00", "agent_hire").build();
        let cases = [
            (embeddings("1.00"), none.clone(), Tier::Autonomous),
            (embeddings("1.01"), none.clone(), Tier::Supervised),
            (compute("50.00"), none.clone(), Tier::Supervised),
            (compute("50.01"), none.clone(), Tier::Collaborative),
            (compute("5000.00"), none.clone(), Tier::Collaborative),
            (compute("5000.01"), none.clone(), Tier::Prohibited),
            (
                embeddings("0.02"),
                TestContext::new().with_tier_count(hour, Tier::Autonomous, 999),
                Tier::Autonomous,
            ),
            (
                embeddings("0.02"),
                TestContext::new().with_tier_count(hour, Tier::Autonomous, 1000),
                Tier::Supervised,
            ),
            (
                compute("10.00"),
                TestContext::new().with_tier_count(hour, Tier::Supervised, 19),
                Tier::Supervised,
            ),
            (
                compute("10.00"),
                TestContext::new().with_tier_count(hour, Tier::Supervised, 20),
                Tier::Collaborative,
            ),
            (
                hire.clone(),
                TestContext::new().with_tier_count(day, Tier::Collaborative, 4),
                Tier::Collaborative,
            ),
            (
                hire.clone(),
                TestContext::new().with_tier_count(day, Tier::Collaborative, 5),
                Tier::Prohibited,
            ),
            (
                transaction("0.50", "embeddings").trust(Known).build(),
                none.clone(),
                Tier::Supervised,
            ),
            (
                transaction("10.00", "search").trust(Verified).build(),
                none.clone(),
                Tier::Supervised,
            ),
            (hire.clone(), none.clone(), Tier::Collaborative),
            (
                transaction("0.01", "gambling").trust(Verified).build(),
                none.clone(),
                Tier::Prohibited,
            ),
            (
                transaction("0.02", "embeddings").trust(Unknown).build(),
                none.clone(),
                Tier::Prohibited,
            ),
        ];
        for (tx, ctx, expected) in &cases {
            let d = decide(ARTICLE, tx, ctx);
            assert_eq!(d.tier, *expected, "{} {} {ctx:?}", tx.amount, tx.category);
        }
    }

    #[test]
    fn prohibited_rows_block_on_any_condition() {
        for category in ["gambling", "unverified_agents", "sanctioned_jurisdictions"] {
            let tx = transaction("0.01", category).trust(Verified).build();
            let d = decide(ARTICLE, &tx, &TestContext::new());
            assert_eq!(d.tier, Tier::Prohibited, "{category}");
            assert_eq!(codes(&d), ["category_prohibited"]);
        }
        let tx = transaction("0.02", "embeddings").trust(Unknown).build();
        let d = decide(ARTICLE, &tx, &TestContext::new());
        assert_eq!(d.tier, Tier::Prohibited);
        assert_eq!(codes(&d), ["recipient_trust_prohibited"]);
        // Trust above the blocked level passes the row.
        assert_eq!(
            tier(ARTICLE, "0.02", "embeddings", Verified),
            Tier::Autonomous
        );
    }

    #[test]
    fn a_prohibited_row_blocks_jurisdictions() {
        let config = r#"{"tiers": [
            {"tier": "prohibited", "jurisdictions": ["KP", "FR"]},
            {"tier": "autonomous", "max_amount": "1.00"}
        ]}"#;
        let to = |code: &str| {
            let tx = transaction("0.02", "embeddings").jurisdiction(code).build();
            decide(config, &tx, &TestContext::new())
        };
        for code in ["KP", "FR"] {
            let d = to(code);
            assert_eq!(d.tier, Tier::Prohibited, "{code}");
            assert_eq!(codes(&d), ["jurisdiction_prohibited"]);
            assert!(d.reasons[0].message.contains(code), "{d:?}");
        }
        assert_eq!(to("DE").tier, Tier::Autonomous);
        let no_jurisdiction = transaction("0.02", "embeddings").build();
        assert_eq!(
            decide(config, &no_jurisdiction, &TestContext::new()).tier,
            Tier::Autonomous
        );
    }

    #[test]
    fn reasons_explain_why_looser_rows_did_not_match() {
        let tx = transaction("89.00", "agent_hire").build();
        let d = decide(ARTICLE, &tx, &TestContext::new());
        assert_eq!(d.tier, Tier::Collaborative);
        assert_eq!(
            codes(&d),
            ["table_row_matched", "not_autonomous", "not_supervised"]
        );
        assert!(d.reasons[1].message.contains("1.00"), "{d:?}");
        assert!(d.reasons[2].message.contains("50.00"), "{d:?}");

        let d = decide(
            ARTICLE,
            &transaction("1.00", "embeddings").trust(Verified).build(),
            &TestContext::new(),
        );
        assert_eq!(codes(&d), ["table_row_matched"]);
    }

    #[test]
    fn the_fallback_is_prohibited_by_default() {
        let tx = transaction("5000.01", "compute").build();
        let d = decide(ARTICLE, &tx, &TestContext::new());
        assert_eq!(d.tier, Tier::Prohibited);
        assert_eq!(
            codes(&d),
            [
                "no_row_matched",
                "not_autonomous",
                "not_supervised",
                "not_collaborative"
            ]
        );
        // A category no row lists falls back too.
        assert_eq!(tier(ARTICLE, "3.00", "mystery", Known), Tier::Prohibited);
    }

    #[test]
    fn the_fallback_is_configurable() {
        let config = article_with(r#""fallback": "collaborative""#);
        let tx = transaction("5000.01", "compute").build();
        let d = decide(&config, &tx, &TestContext::new());
        assert_eq!(d.tier, Tier::Collaborative);
        assert_eq!(d.reasons[0].code, "no_row_matched");
        assert_eq!(tier(&config, "3.00", "mystery", Known), Tier::Collaborative);
        // Prohibited rows still win over the fallback.
        assert_eq!(tier(&config, "0.01", "gambling", Known), Tier::Prohibited);
        // And matching rows are unaffected.
        assert_eq!(tier(&config, "10.00", "compute", Known), Tier::Supervised);

        let config = article_with(r#""fallback": "supervisd""#);
        assert!(error(&config).contains("supervisd"));
    }

    #[test]
    fn categories_accumulate_unless_turned_off() {
        assert_eq!(tier(ARTICLE, "10.00", "search", Verified), Tier::Supervised);
        assert_eq!(
            tier(ARTICLE, "100.00", "compute", Known),
            Tier::Collaborative
        );

        let config = article_with(r#""categories_accumulate": false"#);
        let tx = transaction("10.00", "search").trust(Verified).build();
        let d = decide(&config, &tx, &TestContext::new());
        assert_eq!(d.tier, Tier::Prohibited);
        assert_eq!(d.reasons[0].code, "no_row_matched");
        assert!(d.reasons[2].message.contains("search"), "{d:?}");
        assert_eq!(tier(&config, "100.00", "compute", Known), Tier::Prohibited);
        // Each row's own categories still match.
        assert_eq!(tier(&config, "0.50", "search", Verified), Tier::Autonomous);
        assert_eq!(tier(&config, "10.00", "compute", Known), Tier::Supervised);
        assert_eq!(
            tier(&config, "89.00", "agent_hire", Known),
            Tier::Collaborative
        );
    }

    #[test]
    fn config_amounts_may_be_numbers_and_are_exact() {
        let config =
            |max: &str| format!(r#"{{"tiers": [{{"tier": "autonomous", "max_amount": {max}}}]}}"#);
        for max in ["1.0000000000000001", r#""1.0000000000000001""#] {
            let config = config(max);
            assert_eq!(
                tier(&config, "1.0000000000000001", "embeddings", Known),
                Tier::Autonomous,
                "{config}"
            );
            assert_eq!(
                tier(&config, "1.0000000000000002", "embeddings", Known),
                Tier::Prohibited,
                "{config}"
            );
        }
    }

    #[test]
    fn rows_out_of_order_are_refused() {
        let err = error(
            r#"{"tiers": [
                {"tier": "supervised", "max_amount": "50.00"},
                {"tier": "autonomous", "max_amount": "1.00"}
            ]}"#,
        );
        assert!(err.contains("least to most oversight"), "{err}");
        let err = error(
            r#"{"tiers": [
                {"tier": "autonomous", "max_amount": "1.00"},
                {"tier": "autonomous", "max_amount": "2.00"}
            ]}"#,
        );
        assert!(err.contains("one row per tier"), "{err}");
    }

    #[test]
    fn a_prohibited_row_takes_no_amount_or_frequency() {
        for row in [
            r#"{"tier": "prohibited", "categories": ["gambling"], "max_amount": "10.00"}"#,
            r#"{"tier": "prohibited", "categories": ["gambling"], "frequency": {"max": 1, "per": "1h"}}"#,
        ] {
            let err = error(&format!(
                r#"{{"tiers": [{row}, {{"tier": "autonomous", "max_amount": "1.00"}}]}}"#
            ));
            assert!(err.contains("prohibited row"), "{err}");
            assert!(err.contains("max_amount or frequency"), "{err}");
        }
    }

    #[test]
    fn jurisdictions_only_go_in_prohibited_rows() {
        let err = error(
            r#"{"tiers": [
                {"tier": "autonomous", "max_amount": "1.00"},
                {"tier": "supervised", "max_amount": "50.00", "jurisdictions": ["KP"]}
            ]}"#,
        );
        assert!(err.contains("jurisdictions"), "{err}");
        assert!(err.contains("supervised row"), "{err}");
    }

    #[test]
    fn max_amount_must_be_positive() {
        for max in ["0", "\"0.00\"", "-1", "\"-5.00\""] {
            let err = error(&format!(
                r#"{{"tiers": [{{"tier": "collaborative", "max_amount": {max}}}]}}"#
            ));
            assert!(err.contains("must be positive"), "{max}: {err}");
            assert!(err.contains("collaborative row"), "{max}: {err}");
        }
    }

    #[test]
    fn a_table_needs_a_row_that_allows() {
        for config in [
            r#"{"tiers": []}"#,
            r#"{"tiers": [{"tier": "prohibited", "categories": ["gambling"]}]}"#,
        ] {
            let err = error(config);
            assert!(
                err.contains("at least one row that is not prohibited"),
                "{err}"
            );
        }
        assert!(error("").contains("tiers"));
    }

    #[test]
    fn configuration_errors_name_the_problem() {
        let err = error(r#"{"tiers": [{"tier": "autonomous", "max_amout": "1.00"}]}"#);
        assert!(err.starts_with("invalid policy configuration"), "{err}");
        assert!(err.contains("`max_amout`"), "{err}");
        let err = error(&article_with(r#""categories_accumulates": false"#));
        assert!(err.contains("`categories_accumulates`"), "{err}");
        let err = error(
            r#"{"tiers": [{"tier": "autonomous", "frequency": {"max": 5, "per": "1 hour"}}]}"#,
        );
        assert!(err.contains("1 hour"), "{err}");
        let err = error(r#"{"tiers": [{"tier": "autonomous", "recipient_trust": "trusted"}]}"#);
        assert!(err.contains("trusted"), "{err}");
    }

    #[test]
    fn a_window_longer_than_the_host_answers_for_is_refused_at_configuration() {
        let err = error(
            r#"{"tiers": [{"tier": "autonomous", "max_amount": "1.00", "frequency": {"max": 5, "per": "90d"}}]}"#,
        );
        assert!(
            err.contains("frequency.per of the autonomous row is 90d, longer than the 31d the host answers for"),
            "{err}"
        );
    }
}
