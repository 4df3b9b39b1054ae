//! The example policies, compiled and sandboxed, give the article's tiers at
//! every boundary.

use tiergate_runtime::{StaticContext, Tier};

use crate::{bundled, classify, classify_in, seed_tiers, tx, tx_with, with_tier_count};

#[test]
fn the_articles_transactions_get_their_tiers() {
    let p = seed_tiers();
    let embedding = classify(&p, &tx("0.02", "embeddings", "verified"));
    assert_eq!(embedding.tier, Tier::Autonomous);
    assert!(embedding.failure.is_none());

    let hire = classify(
        &p,
        &tx_with(
            "89.00",
            "agent_hire",
            "known",
            serde_json::json!({
                "justification": "EURC liquidity analysis for MiCA compliance report"
            }),
        ),
    );
    assert_eq!(hire.tier, Tier::Collaborative);
    assert!(hire.has_reason("not_supervised"), "{hire:?}");
    assert!(hire.suggestion.is_some());

    let gamble = classify(&p, &tx("5.00", "gambling", "verified"));
    assert_eq!(gamble.tier, Tier::Prohibited);
    assert!(gamble.has_reason("category_prohibited"));
}

#[test]
fn amount_boundaries() {
    let p = seed_tiers();
    let cases = [
        ("1.00", "embeddings", "verified", Tier::Autonomous),
        ("1.01", "embeddings", "verified", Tier::Supervised),
        ("50.00", "compute", "known", Tier::Supervised),
        ("50.01", "compute", "known", Tier::Collaborative),
        ("5000.00", "agent_hire", "known", Tier::Collaborative),
        ("5000.01", "agent_hire", "known", Tier::Prohibited),
    ];
    for (amount, category, trust, want) in cases {
        let d = classify(&p, &tx(amount, category, trust));
        assert_eq!(d.tier, want, "{amount} {category} {trust}: {:?}", d.reasons);
    }
    let over = classify(&p, &tx("5000.01", "agent_hire", "known"));
    assert!(over.has_reason("amount_over_ceiling"), "{over:?}");
}

#[test]
fn frequency_caps_escalate() {
    let p = seed_tiers();
    let small = tx("0.02", "embeddings", "verified");
    let mid = tx("10.00", "compute", "known");
    let big = tx("89.00", "agent_hire", "known");
    let cases = [
        (&small, "1h", Tier::Autonomous, 999, Tier::Autonomous),
        (&small, "1h", Tier::Autonomous, 1000, Tier::Supervised),
        (&mid, "1h", Tier::Supervised, 19, Tier::Supervised),
        (&mid, "1h", Tier::Supervised, 20, Tier::Collaborative),
        (&big, "24h", Tier::Collaborative, 4, Tier::Collaborative),
        (&big, "24h", Tier::Collaborative, 5, Tier::Prohibited),
    ];
    for (t, window, counted, count, want) in cases {
        let d = classify_in(&p, t, with_tier_count(window, counted, count));
        assert_eq!(
            d.tier, want,
            "{count} {counted} in {window}: {:?}",
            d.reasons
        );
        // The policy asked the host, and the decision kept the answer.
        assert!(!d.context_reads.is_empty());
    }
    let capped = classify_in(&p, &big, with_tier_count("24h", Tier::Collaborative, 5));
    assert!(
        capped.has_reason("collaborative_rate_exceeded"),
        "{capped:?}"
    );
}

#[test]
fn trust_and_jurisdiction() {
    let p = seed_tiers();
    assert_eq!(
        classify(&p, &tx("0.50", "embeddings", "verified")).tier,
        Tier::Autonomous
    );
    assert_eq!(
        classify(&p, &tx("0.50", "embeddings", "known")).tier,
        Tier::Supervised
    );
    let unknown = classify(&p, &tx("0.50", "embeddings", "unknown"));
    assert_eq!(unknown.tier, Tier::Prohibited);
    assert!(unknown.has_reason("recipient_unknown"));

    let sanctioned = classify(
        &p,
        &tx_with(
            "0.50",
            "embeddings",
            "verified",
            serde_json::json!({"jurisdiction": "KP"}),
        ),
    );
    assert_eq!(sanctioned.tier, Tier::Prohibited);
    assert!(sanctioned.has_reason("jurisdiction_sanctioned"));
    let fine = classify(
        &p,
        &tx_with(
            "0.50",
            "embeddings",
            "verified",
            serde_json::json!({"jurisdiction": "DE"}),
        ),
    );
    assert_eq!(fine.tier, Tier::Autonomous);
}

#[test]
fn one_compiled_policy_serves_tenants_with_different_thresholds() {
    let compiled = bundled("seed-tiers");
    let strict = compiled
        .configure(r#"{"sanctioned_jurisdictions": ["DE"],
            "autonomous": {"max_amount": 0.10, "categories": ["embeddings"], "min_trust": "verified",
                           "max_per_window": 10, "window": "1h"}}"#)
        .unwrap();
    let default = compiled.configure("{}").unwrap();
    let t = tx("0.50", "embeddings", "verified");
    assert_eq!(classify(&default, &t).tier, Tier::Autonomous);
    assert_eq!(classify(&strict, &t).tier, Tier::Supervised);
    let german = tx_with(
        "0.05",
        "embeddings",
        "verified",
        serde_json::json!({"jurisdiction": "DE"}),
    );
    assert_eq!(classify(&default, &german).tier, Tier::Autonomous);
    assert_eq!(classify(&strict, &german).tier, Tier::Prohibited);
    assert_ne!(strict.config_digest(), default.config_digest());
}

#[test]
fn the_table_policy_reproduces_the_articles_table() {
    let table = bundled("table")
        .configure(include_str!("../../examples/article-table.json"))
        .expect("the example table is valid");
    let seed = seed_tiers();
    let probes = [
        tx("0.02", "embeddings", "verified"),
        tx("1.01", "embeddings", "verified"),
        tx("4.99", "data_access", "known"),
        tx("50.01", "compute", "known"),
        tx("89.00", "agent_hire", "known"),
        tx("5000.01", "service_procurement", "known"),
        tx("3.00", "gambling", "verified"),
        tx("3.00", "api_calls", "unknown"),
    ];
    for t in &probes {
        assert_eq!(
            classify(&table, t).tier,
            classify(&seed, t).tier,
            "{} {}",
            t.amount,
            t.category
        );
    }
}

#[test]
fn the_flat_limit_treats_everything_alike() {
    let flat = bundled("flat-limit")
        .configure(r#"{"limit": "100.00", "window": "24h"}"#)
        .unwrap();
    // The contrast: an $89 hire of an unknown agent goes through untouched.
    let hire = classify(&flat, &tx("89.00", "agent_hire", "unknown"));
    assert_eq!(hire.tier, Tier::Autonomous);
    let spent: StaticContext = serde_json::from_value(serde_json::json!({
        "activity": [{"window": "24h", "filter": "all", "count": 4, "total": "52.51"}]
    }))
    .unwrap();
    assert_eq!(
        classify_in(&flat, &tx("47.49", "compute", "known"), spent.clone()).tier,
        Tier::Autonomous
    );
    assert_eq!(
        classify_in(&flat, &tx("47.50", "compute", "known"), spent).tier,
        Tier::Prohibited
    );
}

#[test]
fn a_decision_replays_from_its_record() {
    let p = seed_tiers();
    let t = tx("10.00", "compute", "known");
    let first = classify_in(&p, &t, with_tier_count("1h", Tier::Supervised, 20));
    let replayed = classify_in(&p, &t, StaticContext::replaying(&first.context_reads));
    assert_eq!(
        replayed, first,
        "same inputs, same policy: same decision, reads and fuel"
    );
    assert_eq!(first.tier, Tier::Collaborative);
}
