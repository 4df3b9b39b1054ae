//! The rules in force and what a change of rules would do: activation
//! records, travel-rule fields, simulation of a candidate policy, automatic
//! checkpoints, and reading long histories page by page.

use std::path::{Path, PathBuf};

use tiergate_core::audit::verify_chain;
use tiergate_core::governance::TenantConfig;
use tiergate_core::store::AuditEvent;
use tiergate_runtime::Tier;

use crate::bundled;
use crate::pipeline::{ACME, World};
use crate::stores::{Kind, on_both_stores};

/// ACME with a looser seed-tiers configuration: agent hires up to 100.00
/// only need supervision.
fn loose() -> String {
    ACME.replace(
        r#"config = { sanctioned_jurisdictions = ["KP", "IR", "SY"] }"#,
        r#"config = { sanctioned_jurisdictions = ["KP", "IR", "SY"], supervised = { max_amount = "100.00", categories = ["compute", "data_access", "saas_tools", "agent_hire"], min_trust = "known", max_per_window = 20, window = "1h" } }"#,
    )
}

/// Rules as [`World`] activates them: with its registered test vendor.
fn config(text: &str) -> TenantConfig {
    let text = format!("{text}{}", crate::pipeline::TEST_VENDOR);
    TenantConfig::parse(&text, Path::new("acme.toml")).unwrap()
}

fn activations(w: &World) -> Vec<AuditEvent> {
    w.store()
        .events("acme", None)
        .unwrap()
        .into_iter()
        .filter(|e| e.event.kind == "policy_activated")
        .collect()
}

fn enhanced_record(w: &World, tx_id: &str) -> serde_json::Value {
    w.store()
        .events("acme", Some(tx_id))
        .unwrap()
        .into_iter()
        .find(|e| e.event.kind == "authorized")
        .expect("an authorized record")
        .event
        .detail
}

fn each_activation_of_new_rules_is_recorded_once_with_who_and_what(kind: Kind) {
    let mut w = World::on(kind, ACME);
    let first = activations(&w);
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].audit_id, "cfg-2026-06-27-001");
    assert_eq!(
        first[0].seq, 1,
        "the rules are on record before any payment"
    );
    let d = &first[0].event.detail;
    assert_eq!(d["policy"]["name"], "seed-tiers");
    assert_eq!(d["tenant_config_digest"], config(ACME).digest.as_str());
    assert!(
        d["policy"]["digest"]
            .as_str()
            .unwrap()
            .starts_with("sha256:")
    );

    // A restart with the same rules is no change.
    w.restart();
    assert_eq!(activations(&w).len(), 1);

    let before = w.authorize("h1", "89.00", "agent_hire", "known");
    assert_eq!(before.tier, Tier::Collaborative);
    assert_eq!(before.audit_id, "aud-2026-06-27-001");

    let id = w
        .governor()
        .activate(
            config(&loose()),
            &bundled("seed-tiers"),
            "carol@acme.example",
        )
        .unwrap();
    assert_eq!(id.as_deref(), Some("cfg-2026-06-27-002"));
    let now = activations(&w);
    assert_eq!(now.len(), 2);
    assert_eq!(now[1].event.actor.as_deref(), Some("carol@acme.example"));
    assert_ne!(
        now[1].event.detail["policy_config_digest"],
        now[0].event.detail["policy_config_digest"]
    );
    let after = w.authorize("h2", "89.00", "agent_hire", "known");
    assert_eq!(after.tier, Tier::Supervised, "the new rules are in force");

    // Each decision names the rules it was made under.
    assert_eq!(
        enhanced_record(&w, "h1")["config_digest"],
        now[0].event.detail["policy_config_digest"]
    );
    assert_eq!(
        enhanced_record(&w, "h1")["tenant_config_digest"],
        now[0].event.detail["tenant_config_digest"]
    );

    // The same rules activated again change nothing.
    let again = w
        .governor()
        .activate(
            config(&loose()),
            &bundled("seed-tiers"),
            "dave@acme.example",
        )
        .unwrap();
    assert_eq!(again, None);
    assert_eq!(activations(&w).len(), 2);
    verify_chain(&w.store().events("acme", None).unwrap()).unwrap();
}

fn a_rejected_activation_changes_nothing(kind: Kind) {
    let w = World::on(kind, ACME);
    let broken = ACME.replace(
        r#"config = { sanctioned_jurisdictions = ["KP", "IR", "SY"] }"#,
        r#"config = { no_such_setting = true }"#,
    );
    let err = w
        .governor()
        .activate(
            config(&broken),
            &bundled("seed-tiers"),
            "carol@acme.example",
        )
        .unwrap_err();
    assert!(err.to_string().contains("no_such_setting"), "{err}");
    assert_eq!(activations(&w).len(), 1);
    let a = w.authorize("h1", "89.00", "agent_hire", "known");
    assert_eq!(a.tier, Tier::Collaborative, "the old rules still apply");

    let other_tenant = ACME.replace(r#"tenant = "acme""#, r#"tenant = "globex""#);
    let err = w
        .governor()
        .activate(
            config(&other_tenant),
            &bundled("seed-tiers"),
            "carol@acme.example",
        )
        .unwrap_err();
    assert!(err.to_string().contains("globex"), "{err}");
}

fn records_carry_originator_and_beneficiary_for_a_travel_rule_review(kind: Kind) {
    let w = World::on(kind, ACME);
    let mut tx = w.tx("h1", "89.00", "agent_hire", "known");
    tx.self_hosted_wallet = Some(true);
    tx.jurisdiction = Some("DE".into());
    tx.network = Some("base-mainnet".into());
    let a = w
        .governor()
        .authorize_blocking_from(tx, Some("key-7f3a"))
        .unwrap();
    assert_eq!(a.caller.as_deref(), Some("key-7f3a"));
    let d = enhanced_record(&w, "h1");
    assert_eq!(d["originator"]["tenant"], "acme");
    assert_eq!(d["originator"]["agent"], "procurement-agent-prod");
    assert_eq!(d["originator"]["team"], "procurement");
    assert_eq!(d["originator"]["caller"], "key-7f3a");
    assert_eq!(d["beneficiary"]["recipient"], "vendor.example");
    assert_eq!(d["beneficiary"]["self_hosted_wallet"], true);
    // The registry's jurisdiction, with what the request declared beside it.
    assert_eq!(d["beneficiary"]["jurisdiction"], "US");
    assert_eq!(d["provenance"]["jurisdiction_from"], "registry");
    assert_eq!(d["provenance"]["declared_jurisdiction"], "DE");
    assert_eq!(d["beneficiary"]["trust"], "known");
    // The registry verifies vendor.example; the request declared less,
    // which the host honours.
    assert_eq!(d["provenance"]["trust_from"], "caller");
    assert_eq!(d["transaction"]["network"], "base-mainnet");
    assert_eq!(d["policy"]["name"], "seed-tiers");
    assert!(
        d["policy"]["version"]
            .as_str()
            .is_some_and(|v| !v.is_empty())
    );
    assert_eq!(d["retention_years"], 5);

    // The supervised tier's per-transaction record carries them too.
    let mut tx = w.tx("h2", "47.00", "compute", "known");
    tx.self_hosted_wallet = Some(false);
    let s = w
        .governor()
        .authorize_blocking_from(tx, Some("key-7f3a"))
        .unwrap();
    assert_eq!(s.tier, Tier::Supervised);
    let d = enhanced_record(&w, "h2");
    assert_eq!(d["originator"]["caller"], "key-7f3a");
    assert_eq!(d["beneficiary"]["self_hosted_wallet"], false);
    assert!(d.get("transaction").is_none(), "not the enhanced depth");

    let out = crate::tiergate_command()
        .args(["audit", "export", "--format", "csv", "--tenant", "acme"])
        .args(["--store", &w.store_arg()])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let row: Vec<&str> = lines.next().unwrap().split(',').collect();
    let field = |name: &str| row[header.iter().position(|h| *h == name).unwrap()];
    assert_eq!(field("caller"), "key-7f3a");
    assert_eq!(field("self_hosted_wallet"), "true");
    assert_eq!(field("retention_years"), "5");
}

fn acme_file(dir: &Path, text: &str) -> PathBuf {
    let path = dir.join("acme.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn simulate_shows_what_a_candidate_would_change_before_it_is_activated(kind: Kind) {
    let w = World::on(kind, ACME);
    w.authorize("s1", "0.02", "embeddings", "verified");
    w.authorize("s2", "47.00", "compute", "known");
    let hire = w.authorize("s3", "89.00", "agent_hire", "known");
    w.authorize("s4", "25.00", "gambling", "known");
    let dir = tempfile::tempdir().unwrap();
    let db = w.store_arg();
    let db = db.as_str();

    let same = acme_file(dir.path(), ACME);
    let out = crate::tiergate_command()
        .args([
            "simulate",
            "--store",
            db,
            "--policy",
            "seed-tiers",
            "--json",
        ])
        .arg("--tenant")
        .arg(&same)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let sim: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(sim["payments"], 4);
    assert_eq!(sim["looser"].as_array().unwrap().len(), 0);
    assert_eq!(sim["stricter"], 0);
    assert_eq!(sim["transitions"]["collaborative->collaborative"], 1);
    assert_eq!(sim["transitions"]["prohibited->prohibited"], 1);

    let candidate = acme_file(dir.path(), &loose());
    let out = crate::tiergate_command()
        .args(["simulate", "--store", db, "--policy", "seed-tiers"])
        .args(["--from", "2026-06-27", "--to", "2026-06-27", "--tenant"])
        .arg(&candidate)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("collaborative -> supervised"), "{text}");
    assert!(text.contains("0 stricter, 1 looser"), "{text}");
    assert!(
        text.contains(&hire.audit_id) && text.contains("89.00 USDC agent_hire"),
        "{text}"
    );

    // A window without payments simulates nothing; simulating writes nothing.
    let events_before = w.store().events("acme", None).unwrap().len();
    let out = crate::tiergate_command()
        .args([
            "simulate",
            "--store",
            db,
            "--policy",
            "seed-tiers",
            "--json",
        ])
        .args(["--from", "2026-06-28", "--tenant"])
        .arg(&candidate)
        .output()
        .unwrap();
    let sim: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(sim["payments"], 0);
    assert_eq!(w.store().events("acme", None).unwrap().len(), events_before);

    let out = crate::tiergate_command()
        .args([
            "simulate",
            "--store",
            db,
            "--policy",
            "no-such-policy",
            "--tenant",
        ])
        .arg(&candidate)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no-such-policy"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn the_deadline_runner_signs_checkpoints_when_they_are_due(kind: Kind) {
    let w = World::on(kind, ACME);
    w.authorize("c1", "0.02", "embeddings", "verified");
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("checkpoint.key");
    let log = dir.path().join("checkpoints.jsonl");
    let tenant = acme_file(dir.path(), ACME);
    let keygen = crate::tiergate_command()
        .args(["audit", "keygen", "--key"])
        .arg(&key)
        .output()
        .unwrap();
    assert!(keygen.status.success());
    let public = String::from_utf8_lossy(&keygen.stdout).trim().to_string();
    let run = || {
        crate::tiergate_command()
            .args(["run-deadlines", "--store", &w.store_arg()])
            .args(["--checkpoint-every", "5", "--tenant"])
            .arg(&tenant)
            .arg("--checkpoint-key")
            .arg(&key)
            .arg("--checkpoints")
            .arg(&log)
            .output()
            .unwrap()
    };
    let lines = || {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .collect::<Vec<_>>()
    };
    let out = run();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let events = w.store().events("acme", None).unwrap().len() as u64;
    assert_eq!(lines().len(), 1);
    assert_eq!(lines()[0]["events"], events);

    // Nothing new: nothing due.
    assert!(run().status.success());
    assert_eq!(lines().len(), 1);
    // Fewer new events than the schedule asks for: not yet.
    w.authorize("c2", "0.02", "embeddings", "verified");
    assert!(run().status.success());
    assert_eq!(lines().len(), 1);
    // Enough: signed again, covering the whole chain.
    w.authorize("c3", "0.02", "embeddings", "verified");
    assert!(run().status.success());
    let signed = lines();
    assert_eq!(signed.len(), 2);
    assert_eq!(
        signed[1]["events"],
        w.store().events("acme", None).unwrap().len() as u64
    );

    let verify = crate::tiergate_command()
        .args(["audit", "verify", "--store", &w.store_arg()])
        .arg("--checkpoints")
        .arg(&log)
        .args(["--public-key", &public])
        .output()
        .unwrap();
    assert!(
        verify.status.success(),
        "{}",
        String::from_utf8_lossy(&verify.stdout)
    );

    // A chain cut back behind its last checkpoint is refused, not re-signed.
    match kind {
        Kind::Sqlite => rusqlite::Connection::open(&w.db)
            .unwrap()
            .execute_batch(
                "DROP TRIGGER audit_events_append_only_delete;
                 DELETE FROM audit_events WHERE seq > 3;",
            )
            .unwrap(),
        Kind::Postgres | Kind::PostgresSet => tiergate_e2e::postgres::run_sql(
            crate::stores::tenants_database(&w.store_arg()),
            "ALTER TABLE audit_events DISABLE TRIGGER audit_events_append_only;
             DELETE FROM audit_events WHERE seq > 3;",
        )
        .unwrap(),
    }
    let out = run();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not signing"), "{err}");
    assert_eq!(lines().len(), 2);
}

fn long_histories_are_read_page_by_page_in_order(kind: Kind) {
    let w = World::on(kind, ACME);
    for i in 0..7 {
        w.authorize(&format!("p{i}"), "0.02", "embeddings", "verified");
    }
    let store = w.store().as_ref();
    let all = store.events("acme", None).unwrap();
    let mut paged = Vec::new();
    let mut after = 0;
    loop {
        let page = store.events_after("acme", after, 4).unwrap();
        if page.is_empty() {
            break;
        }
        assert!(page.len() <= 4);
        after = page.last().unwrap().seq;
        paged.extend(page);
    }
    assert_eq!(paged, all);
    let streamed: Vec<_> = tiergate_core::audit::events(store, "acme")
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(streamed, all);

    let listed = store
        .list(
            "acme",
            &tiergate_core::store::Listing {
                limit: 100_000,
                ..Default::default()
            },
        )
        .unwrap();
    let mut paged = Vec::new();
    let mut cursor: Option<(u64, String)> = None;
    loop {
        let page = store
            .authorizations_after(
                "acme",
                None,
                cursor.as_ref().map(|(t, id)| (*t, id.as_str())),
                u64::MAX,
                3,
            )
            .unwrap();
        if page.is_empty() {
            break;
        }
        let last = &page.last().unwrap().transaction;
        cursor = Some((last.requested_at_ms, last.id.clone()));
        paged.extend(page);
    }
    assert_eq!(paged, listed);
    assert_eq!(paged.len(), 7);
}

fn a_correction_is_a_new_record_pointing_at_what_it_corrects(kind: Kind) {
    let w = World::on(kind, ACME);
    let hire = w.authorize("k1", "89.00", "agent_hire", "known");
    let original = w.store().events("acme", Some("k1")).unwrap();
    let authorized = original
        .iter()
        .find(|e| e.event.kind == "authorized")
        .unwrap()
        .clone();
    let corrected = w
        .governor()
        .correct(
            "acme",
            "k1",
            authorized.seq,
            "alice@acme.example",
            "justification was for the Q3 report, not Q2",
        )
        .unwrap();
    assert_eq!(corrected, hire, "the payment itself is unchanged");
    let after = w.store().events("acme", Some("k1")).unwrap();
    assert_eq!(&after[..original.len()], &original[..], "nothing altered");
    let correction = after.last().unwrap();
    assert_eq!(correction.event.kind, "correction");
    assert_eq!(
        correction.event.actor.as_deref(),
        Some("alice@acme.example")
    );
    assert_eq!(correction.audit_id, hire.audit_id);
    assert_eq!(correction.event.detail["corrects"]["seq"], authorized.seq);
    assert_eq!(
        correction.event.detail["corrects"]["hash"],
        authorized.hash.as_str()
    );
    verify_chain(&w.store().events("acme", None).unwrap()).unwrap();

    let refused = |seq: u64, actor: &str, note: &str| {
        w.governor()
            .correct("acme", "k1", seq, actor, note)
            .unwrap_err()
            .to_string()
    };
    assert!(refused(authorized.seq, "mallory@acme.example", "x").contains("not a budget owner"));
    assert!(refused(999, "alice@acme.example", "x").contains("no audit event 999"));
    assert!(refused(authorized.seq, "alice@acme.example", " ").contains("note is empty"));
    assert_eq!(
        w.store().events("acme", Some("k1")).unwrap().len(),
        after.len()
    );

    let show = crate::tiergate_command()
        .args([
            "audit",
            "show",
            "--store",
            &w.store_arg(),
            "--tenant",
            "acme",
        ])
        .arg(&hire.audit_id)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&show.stdout);
    assert!(
        text.contains(&format!(
            "correction by alice@acme.example of #{}",
            authorized.seq
        )) && text.contains("Q3 report"),
        "{text}"
    );
}

/// The keys of a JSON object, sorted.
fn keys(v: &serde_json::Value) -> Vec<&str> {
    let mut k: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    k.sort_unstable();
    k
}

fn each_audit_depth_stores_what_it_must_and_no_more(kind: Kind) {
    let w = World::on(kind, ACME);
    w.authorize("d1", "0.02", "embeddings", "verified");
    w.authorize("d2", "47.00", "compute", "known");
    w.authorize("d3", "89.00", "agent_hire", "known");
    w.authorize("d4", "25.00", "gambling", "known");
    let first = |tx: &str| {
        w.store().events("acme", Some(tx)).unwrap()[0]
            .event
            .detail
            .clone()
    };
    // batch_daily: the minimum an aggregate needs, and nothing that names
    // the recipient or why.
    assert_eq!(
        keys(&first("d1")),
        [
            "agent",
            "amount",
            "category",
            "currency",
            "requested_at_ms",
            "tier"
        ]
    );
    // per_transaction: the full lifecycle's record, not the raw input.
    let supervised = first("d2");
    for key in [
        "summary",
        "recipient",
        "status",
        "policy_tier",
        "reason_codes",
        "escalations",
        "deadline_ms",
        "policy_digest",
        "originator",
        "beneficiary",
        "content_hash",
    ] {
        assert!(supervised.get(key).is_some(), "per_transaction lacks {key}");
    }
    for key in ["transaction", "context_reads"] {
        assert!(supervised.get(key).is_none(), "per_transaction has {key}");
    }
    // per_transaction_enhanced: justification, the full input, the context
    // the policy saw, which policy and configuration decided.
    let enhanced = first("d3");
    assert_eq!(
        enhanced["transaction"]["justification"],
        "needed for the report"
    );
    for key in [
        "context_reads",
        "fuel_used",
        "policy",
        "policy_digest",
        "config_digest",
        "tenant_config_digest",
        "reasons",
        "originator",
        "beneficiary",
        "content_hash",
    ] {
        assert!(enhanced.get(key).is_some(), "enhanced lacks {key}");
    }
    // attempt_logged: the blocked attempt with its reasons.
    let blocked = w.store().events("acme", Some("d4")).unwrap();
    assert_eq!(blocked[0].event.kind, "attempt_blocked");
    assert!(
        !blocked[0].event.detail["reasons"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    assert!(blocked.iter().any(|e| e.event.kind == "owner_alerted"));
}

on_both_stores!(
    each_activation_of_new_rules_is_recorded_once_with_who_and_what,
    a_rejected_activation_changes_nothing,
    records_carry_originator_and_beneficiary_for_a_travel_rule_review,
    simulate_shows_what_a_candidate_would_change_before_it_is_activated,
    the_deadline_runner_signs_checkpoints_when_they_are_due,
    long_histories_are_read_page_by_page_in_order,
    a_correction_is_a_new_record_pointing_at_what_it_corrects,
    each_audit_depth_stores_what_it_must_and_no_more,
);
