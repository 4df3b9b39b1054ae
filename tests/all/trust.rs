//! The requester's word never loosens a tier, on both stores: recipient
//! trust and jurisdiction come from the tenant's registry and history,
//! the registry's categories and the tenant's list of agents escalate what
//! they do not cover, and the article's day keeps its tiers for the
//! registered recipients.

use serde_json::{Value, json};
use tiergate_core::governance::{Authorization, Clock, Source, Status};
use tiergate_runtime::{RecipientTrust, Tier, Transaction};

use crate::pipeline::{ACME, World};
use crate::stores::{Kind, on_both_stores};

/// A payment of acme's listed agent; `fields` override the defaults.
fn pay(w: &World, id: &str, fields: Value) -> Authorization {
    let mut body = json!({
        "id": id, "tenant": "acme", "agent": "procurement-agent-prod", "amount": "0.02",
        "currency": "USDC", "category": "embeddings", "recipient": "embeddings.vendor.example",
        "recipient_trust": "verified",
    });
    for (k, v) in fields.as_object().unwrap() {
        if v.is_null() {
            body.as_object_mut().unwrap().remove(k);
        } else {
            body[k] = v.clone();
        }
    }
    let tx = Transaction::from_json(&body.to_string(), w.clock.now_ms()).unwrap();
    w.governor().authorize_blocking(tx).unwrap()
}

fn guardrails(a: &Authorization) -> Vec<&str> {
    a.escalations.iter().map(|e| e.guardrail.as_str()).collect()
}

fn a_declared_verified_for_an_unregistered_recipient_is_the_hosts_call(kind: Kind) {
    let w = World::on(kind, ACME);
    let stranger = json!({"recipient": "stranger.example", "recipient_trust": "verified"});
    let first = pay(&w, "s-1", stranger.clone());
    // The policy saw an unknown recipient, and the claim is on record.
    assert_eq!(first.transaction.recipient_trust, RecipientTrust::Unknown);
    let p = first.provenance.clone().unwrap();
    assert_eq!(
        (p.trust_from, p.declared_trust, p.claimed_looser),
        (Source::None, RecipientTrust::Verified, true)
    );
    assert!(first.tier > Tier::Autonomous, "{first:?}");
    // The same payment to a registered verified recipient runs alone.
    let listed = pay(&w, "v-1", json!({}));
    assert_eq!(listed.tier, Tier::Autonomous);
    assert_eq!(listed.provenance.unwrap().trust_from, Source::Registry);

    // A tenant moving off caller-declared trust: three payments executed
    // under the old rules make the recipient known from the tenant's own
    // history once the host decides; a declaration still does not make it
    // verified.
    let w = World::on(
        kind,
        &ACME.replace("[trust]\n", "[trust]\nsource = \"caller\"\n"),
    );
    let known = json!({"recipient": "stranger.example", "recipient_trust": "known",
                       "category": "data_access", "amount": "4.99"});
    for id in ["s-1", "s-2", "s-3"] {
        let a = pay(&w, id, known.clone());
        assert_eq!(a.provenance.as_ref().unwrap().trust_from, Source::Caller);
        assert_eq!(a.status, Status::PendingVeto, "{a:?}");
    }
    w.clock.advance(60_000);
    w.governor().run_deadlines_blocking().unwrap();
    for id in ["s-1", "s-2", "s-3"] {
        assert_eq!(
            w.governor().get("acme", id).unwrap().status,
            Status::Executed
        );
    }
    let host_rules = tiergate_core::governance::TenantConfig::parse(
        &format!("{ACME}{}", crate::pipeline::TEST_VENDOR),
        std::path::Path::new("acme.toml"),
    )
    .unwrap();
    w.governor()
        .activate(
            host_rules,
            &crate::bundled("seed-tiers"),
            "alice@acme.example",
        )
        .unwrap();
    let fourth = pay(&w, "s-4", stranger);
    assert_eq!(fourth.transaction.recipient_trust, RecipientTrust::Known);
    let p = fourth.provenance.clone().unwrap();
    assert_eq!((p.trust_from, p.claimed_looser), (Source::History, true));
    assert_eq!(fourth.tier, Tier::Supervised, "{fourth:?}");

    // A declaration lower than the host's is honoured: the caller may be careful.
    let careful = pay(&w, "v-2", json!({"recipient_trust": "unknown"}));
    assert_eq!(careful.transaction.recipient_trust, RecipientTrust::Unknown);
    assert_eq!(careful.provenance.unwrap().trust_from, Source::Caller);
    assert!(careful.tier > Tier::Autonomous);
}

const SANCTIONED_VENDOR: &str = r#"
[[recipients]]
id = "0xAbC0000000000000000000000000000000000001"
trust = "verified"
jurisdiction = "KP"
"#;

fn an_omitted_jurisdiction_for_a_registered_recipient_is_the_registrys(kind: Kind) {
    let w = World::on(kind, &format!("{ACME}{SANCTIONED_VENDOR}"));
    // Written in other capitals than the registry: one address.
    let to_kp =
        json!({"recipient": "0xabc0000000000000000000000000000000000001", "jurisdiction": null});
    let omitted = pay(&w, "kp-1", to_kp.clone());
    assert_eq!(omitted.tier, Tier::Prohibited, "{omitted:?}");
    assert_eq!(omitted.status, Status::Blocked);
    assert_eq!(omitted.transaction.jurisdiction.as_deref(), Some("KP"));
    assert!(
        omitted
            .reasons
            .iter()
            .any(|r| r.code == "jurisdiction_sanctioned")
    );
    let p = omitted.provenance.unwrap();
    assert_eq!(
        (p.jurisdiction_from, p.declared_jurisdiction),
        (Source::Registry, None)
    );

    // Declaring another jurisdiction does not move it, and escalates.
    let mut claimed = to_kp;
    claimed["jurisdiction"] = json!("CH");
    let claimed = pay(&w, "kp-2", claimed);
    assert_eq!(claimed.transaction.jurisdiction.as_deref(), Some("KP"));
    assert_eq!(claimed.tier, Tier::Prohibited);
    assert!(guardrails(&claimed).contains(&"jurisdiction_mismatch"));

    // An unregistered recipient without a jurisdiction reaches the policy
    // without one; above 100.00 the tenant's floor applies, declared or not.
    for (id, declared) in [("nj-1", Value::Null), ("nj-2", json!("US"))] {
        let a = pay(
            &w,
            id,
            json!({"recipient": "nowhere.example", "amount": "150.00", "category": "compute",
                   "recipient_trust": "known", "jurisdiction": declared}),
        );
        assert!(guardrails(&a).contains(&"without_jurisdiction"), "{a:?}");
        assert!(a.tier >= Tier::Collaborative);
    }
    // A declared sanctioned jurisdiction still makes it stricter.
    let declared_kp = pay(
        &w,
        "nj-3",
        json!({"recipient": "nowhere.example", "jurisdiction": "KP"}),
    );
    assert_eq!(declared_kp.tier, Tier::Prohibited);
}

fn a_category_the_registry_does_not_allow_escalates(kind: Kind) {
    let w = World::on(kind, ACME);
    let allowed = pay(&w, "c-1", json!({}));
    assert_eq!(allowed.tier, Tier::Autonomous);
    // The same recipient, the same amount, another category.
    let other = pay(&w, "c-2", json!({"category": "search"}));
    assert_eq!(other.tier, Tier::Collaborative, "{other:?}");
    assert_eq!(other.policy_tier, Tier::Autonomous);
    assert_eq!(guardrails(&other), ["category_mismatch"]);
    assert!(
        other
            .reasons
            .iter()
            .any(|r| r.code == "guardrail_category_mismatch" && r.message.contains("embeddings"))
    );
    // The registry's limit per payment to one recipient.
    let big = pay(
        &w,
        "c-3",
        json!({"recipient": "cloud.vendor.example", "category": "compute",
               "recipient_trust": "known", "amount": "600.00"}),
    );
    assert!(
        guardrails(&big).contains(&"recipient_max_per_payment"),
        "{big:?}"
    );
    assert!(big.tier >= Tier::Collaborative);
}

fn an_unlisted_agent_is_refused_or_escalated_as_configured(kind: Kind) {
    let w = World::on(kind, ACME);
    let escalated = pay(&w, "a-1", json!({"agent": "someone-new"}));
    assert_eq!(escalated.tier, Tier::Collaborative);
    assert_eq!(escalated.status, Status::AwaitingApproval);
    assert_eq!(guardrails(&escalated), ["unlisted_agent"]);
    assert!(!escalated.provenance.unwrap().agent_listed);

    let refusing = ACME.replace(
        r#"unlisted_agents = "collaborative""#,
        r#"unlisted_agents = "prohibited""#,
    );
    assert_ne!(refusing, ACME);
    let w = World::on(kind, &refusing);
    let refused = pay(&w, "a-2", json!({"agent": "someone-new"}));
    assert_eq!(refused.status, Status::Blocked);
    assert_eq!(guardrails(&refused), ["unlisted_agent"]);
    // The attempt is on record, as every blocked one.
    let events = w
        .store()
        .events("acme", Some("a-2"))
        .unwrap()
        .into_iter()
        .map(|e| e.event.kind)
        .collect::<Vec<_>>();
    assert!(
        events.contains(&"attempt_blocked".to_string()),
        "{events:?}"
    );
    // A listed agent is served as before.
    assert_eq!(pay(&w, "a-3", json!({})).tier, Tier::Autonomous);
}

fn rotating_agent_names_no_longer_dodge_budgets(kind: Kind) {
    // Twelve payments of 49.00 to a known recipient: under one name the
    // agent's budget (500.00 a day) escalates the last two; under twelve
    // names no budget ever fills, so every unlisted name is escalated.
    let w = World::on(kind, ACME);
    let hire = |id: &str, agent: &str| {
        pay(
            &w,
            id,
            json!({"agent": agent, "amount": "49.00", "category": "compute",
                   "recipient": "cloud.vendor.example", "recipient_trust": "known"}),
        )
    };
    let one_name: Vec<Authorization> = (0..12)
        .map(|i| hire(&format!("one-{i}"), "procurement-agent-prod"))
        .collect();
    let escalated = |page: &[Authorization]| {
        page.iter()
            .filter(|a| a.tier >= Tier::Collaborative)
            .count()
    };
    assert!(escalated(&one_name) >= 2, "{one_name:?}");
    let w = World::on(kind, ACME);
    let rotating: Vec<Authorization> = (0..12)
        .map(|i| {
            pay(
                &w,
                &format!("rot-{i}"),
                json!({"agent": format!("fresh-agent-{i}"), "amount": "49.00", "category": "compute",
                       "recipient": "cloud.vendor.example", "recipient_trust": "known"}),
            )
        })
        .collect();
    assert_eq!(escalated(&rotating), 12, "{rotating:?}");
    assert!(
        rotating
            .iter()
            .all(|a| guardrails(a).contains(&"unlisted_agent"))
    );
}

/// The reference article's day, as `examples/article-day.jsonl` sends it,
/// under `examples/tenants/acme.toml`'s registry.
fn the_articles_day_keeps_its_tiers_for_registered_recipients(kind: Kind) {
    let w = World::on(kind, ACME);
    let day = include_str!("../../examples/article-day.jsonl");
    let mut statuses = std::collections::BTreeMap::new();
    for line in day.lines().filter(|l| !l.trim().is_empty()) {
        let tx = Transaction::from_json(line, w.clock.now_ms()).unwrap();
        let a = w.governor().authorize_blocking(tx).unwrap();
        assert!(a.escalations.is_empty(), "{a:?}");
        let from = a.provenance.unwrap().trust_from;
        if a.transaction.category == "gambling" {
            // casino.example is not registered: the host does not know it.
            assert_eq!(from, Source::None);
        } else {
            assert_eq!(from, Source::Registry);
        }
        *statuses.entry(a.status.as_str()).or_insert(0) += 1;
    }
    assert_eq!(
        statuses,
        [
            ("awaiting_approval", 1),
            ("blocked", 1),
            ("executed", 2),
            ("pending_veto", 2)
        ]
        .into_iter()
        .collect()
    );
}

fn a_retry_matches_the_request_as_sent_whatever_the_host_learnt_since(kind: Kind) {
    let w = World::on(kind, ACME);
    let stranger = json!({"recipient": "stranger.example", "recipient_trust": "verified"});
    let first = pay(&w, "r-1", stranger.clone());
    let again = pay(&w, "r-1", stranger);
    assert_eq!(first, again);
    assert_eq!(
        again.provenance.unwrap().declared_trust,
        RecipientTrust::Verified
    );
}

on_both_stores!(
    a_declared_verified_for_an_unregistered_recipient_is_the_hosts_call,
    an_omitted_jurisdiction_for_a_registered_recipient_is_the_registrys,
    a_category_the_registry_does_not_allow_escalates,
    an_unlisted_agent_is_refused_or_escalated_as_configured,
    rotating_agent_names_no_longer_dodge_budgets,
    the_articles_day_keeps_its_tiers_for_registered_recipients,
    a_retry_matches_the_request_as_sent_whatever_the_host_learnt_since,
);

/// acme, with a second listed agent and a tenant budget two payments fill.
fn two_agents(dir: &std::path::Path) -> std::path::PathBuf {
    crate::service::tenant_file(
        dir,
        "acme",
        &[
            (
                r#"tenant_daily_budget = { limit = "5000.00" }"#,
                r#"tenant_daily_budget = { limit = "100.00" }"#,
            ),
            (
                "[[agents]]\n",
                "[[agents]]\nname = \"research-agent\"\n\n[[agents]]\n",
            ),
        ],
    )
}

async fn agent_keys_pay_as_their_agent_and_learn_nothing_of_others(kind: Kind) {
    use crate::service::{get, payment, post};
    use crate::tenancy::{key_on, serve_on};
    let store = crate::stores::TestStore::new(kind);
    let dir = tempfile::tempdir().unwrap();
    let file = two_agents(dir.path());
    let s = serve_on(&store, &dir.path().join("data"), &[&file], &[]);
    let procurement = key_on(&store, "acme", "agent", Some("procurement-agent-prod"));
    let research = key_on(&store, "acme", "agent", Some("research-agent"));
    let platform = key_on(&store, "acme", "platform", Some("runner@acme.example"));
    let auditor = key_on(&store, "acme", "auditor", Some("audit@acme.example"));
    let key_id = |token: &str| token.split('_').nth(1).unwrap().to_string();

    // The hire: 89.00 of the tenant's 100.00, held for approval.
    let hire = post(
        &s,
        "/v1/authorizations",
        &procurement,
        &payment("acme", "p1", "89.00", "agent_hire", "known"),
    )
    .await;
    assert_eq!(hire.status, 201, "{}", hire.text);
    assert_eq!(hire.body["caller"], key_id(&procurement).as_str());

    // A bound key pays as its own agent only.
    let r = post(
        &s,
        "/v1/authorizations",
        &research,
        &payment("acme", "r0", "1.00", "embeddings", "verified"),
    )
    .await;
    assert_eq!(
        (r.status, r.body["error"]["code"].as_str()),
        (403, Some("agent_mismatch")),
        "{}",
        r.text
    );

    let mine = |id: &str, amount: &str| {
        let mut p = payment("acme", id, amount, "compute", "known");
        p["agent"] = json!("research-agent");
        p
    };
    // Another agent's id: refused, naming neither its holder nor its hash.
    let taken = post(&s, "/v1/authorizations", &research, &mine("p1", "1.00")).await;
    assert_eq!(taken.status, 409, "{}", taken.text);
    assert_eq!(taken.body["error"]["code"], "id_conflict");
    for secret in ["sha256:", "procurement-agent-prod", "89.00", "agent_hire"] {
        assert!(!taken.text.contains(secret), "{secret} in {}", taken.text);
    }
    // Nor can it read or list it.
    assert_eq!(
        get(&s, "/v1/authorizations/p1", &research).await.status,
        404
    );

    // Its own 20.00 takes the tenant past 100.00: escalated, without
    // learning what the others committed.
    let own = post(&s, "/v1/authorizations", &research, &mine("r1", "20.00")).await;
    assert_eq!(own.status, 201, "{}", own.text);
    let shown = |r: &crate::service::Response| {
        r.body["escalations"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["guardrail"] == "tenant_daily_budget")
            .unwrap_or_else(|| panic!("a tenant budget escalation: {}", r.text))["detail"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let told = shown(&own);
    assert!(told.contains("the tenant's agents together"), "{told}");
    let committed = "committed in the last 24h";
    assert!(!own.text.contains(committed), "{}", own.text);
    let listed = get(&s, "/v1/authorizations", &research).await;
    let ids: Vec<&str> = listed
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["transaction"]["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["r1"]);
    assert!(!listed.text.contains(committed), "{}", listed.text);
    let again = get(&s, "/v1/authorizations/r1", &research).await;
    assert!(!again.text.contains(committed), "{}", again.text);
    // The auditor sees it all.
    let audited = get(&s, "/v1/authorizations/r1", &auditor).await;
    assert!(
        shown(&audited).contains("89 committed in the last 24h plus 20.00"),
        "{}",
        audited.text
    );

    // A platform key pays as any agent; an unlisted one is escalated.
    let mut ghost = payment("acme", "g1", "0.02", "embeddings", "verified");
    ghost["agent"] = json!("ghost-agent");
    let r = post(&s, "/v1/authorizations", &platform, &ghost).await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.body["tier"], "collaborative");
    assert_eq!(r.body["escalations"][0]["guardrail"], "unlisted_agent");
    assert_eq!(r.body["caller"], key_id(&platform).as_str());
}

/// A key that could pay as any agent, from a store made before the
/// platform role: the store makes it a platform key when it opens.
fn an_agent_key_for_any_agent_becomes_a_platform_key(kind: Kind) {
    use tiergate_core::store::Role;
    let mut w = World::on(kind, ACME);
    let insert = "INSERT INTO api_keys (key_id, tenant, role, subject, secret_hash, created_ms)
                  VALUES ('kold', 'acme', 'agent', '*', 'sha256:00', 1),
                         ('kbound', 'acme', 'agent', 'procurement-agent-prod', 'sha256:00', 1)";
    let sqlite_version = if kind == Kind::Sqlite {
        rusqlite::Connection::open(&w.db)
            .unwrap()
            .pragma_query_value(None, "user_version", |r| r.get::<_, i64>(0))
            .unwrap()
    } else {
        0
    };
    // Back to before migration 7, which makes the platform keys; those
    // after it run again unchanged.
    w.sql(
        &format!("{insert}; PRAGMA user_version = {};", sqlite_version - 1),
        &format!("{insert}; DELETE FROM tiergate_schema WHERE version >= 7;"),
    );
    w.restart();
    let keys = w.backend();
    assert_eq!(keys.key("kold").unwrap().unwrap().role, Role::Platform);
    assert_eq!(keys.key("kbound").unwrap().unwrap().role, Role::Agent);
}

on_both_stores!(an_agent_key_for_any_agent_becomes_a_platform_key);

on_both_stores!(async 2: agent_keys_pay_as_their_agent_and_learn_nothing_of_others);

async fn an_admin_changes_the_registry_and_each_change_is_activated_rules(kind: Kind) {
    use crate::service::{call, get, payment, post};
    use crate::tenancy::{key_on, serve_on};
    let store = crate::stores::TestStore::new(kind);
    let dir = tempfile::tempdir().unwrap();
    let file = crate::service::tenant_file(dir.path(), "acme", &[]);
    let s = serve_on(&store, &dir.path().join("data"), &[&file], &[]);
    let admin = key_on(&store, "acme", "admin", Some("ops@acme.example"));
    let auditor = key_on(&store, "acme", "auditor", Some("audit@acme.example"));
    let platform = key_on(&store, "acme", "platform", Some("runner@acme.example"));
    let put = |path: &str, key: &str, body: Value| {
        let url = format!("{}{path}", s.base);
        let key = key.to_string();
        async move {
            call(
                "PUT",
                &url,
                Some(&key),
                Some("application/json"),
                body.to_string(),
            )
            .await
        }
    };
    let to_new = |id: &str| {
        let mut p = payment("acme", id, "0.02", "embeddings", "verified");
        p["recipient"] = json!("NEW.Vendor.Example");
        p
    };
    let before = post(&s, "/v1/authorizations", &platform, &to_new("n1")).await;
    assert_eq!(before.body["status"], "blocked", "{}", before.text);

    // Only an admin changes it; a change that would not load changes nothing.
    let entry = json!({"trust": "verified", "jurisdiction": "US", "categories": ["embeddings"]});
    let r = put(
        "/v1/registry/recipients/new.vendor.example",
        &auditor,
        entry.clone(),
    )
    .await;
    assert_eq!(r.status, 403, "{}", r.text);
    let r = put(
        "/v1/registry/recipients/new.vendor.example",
        &admin,
        json!({"trust": "verified", "jurisdiction": "us"}),
    )
    .await;
    assert_eq!(
        (r.status, r.body["error"]["code"].as_str()),
        (422, Some("invalid_config")),
        "{}",
        r.text
    );
    assert!(r.text.contains("jurisdiction"), "{}", r.text);
    let listed = get(&s, "/v1/registry", &auditor).await;
    assert_eq!(listed.status, 200, "{}", listed.text);
    assert!(
        !listed.text.contains("new.vendor.example"),
        "{}",
        listed.text
    );

    let r = put("/v1/registry/recipients/new.vendor.example", &admin, entry).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(
        r.body["audit_id"].as_str().unwrap().starts_with("cfg-"),
        "{}",
        r.text
    );
    assert!(
        r.body["rules"]["actor"]
            .as_str()
            .unwrap()
            .ends_with(":ops@acme.example")
    );
    let listed = get(&s, "/v1/registry", &auditor).await;
    let ids: Vec<&str> = listed.body["recipients"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert!(ids.contains(&"new.vendor.example"), "{}", listed.text);
    let after = post(&s, "/v1/authorizations", &platform, &to_new("n2")).await;
    assert_eq!(after.body["status"], "executed", "{}", after.text);
    assert_eq!(after.body["provenance"]["trust_from"], "registry");

    // An agent listed by the API is served as listed.
    let mut by_new = payment("acme", "a1", "0.02", "embeddings", "verified");
    by_new["agent"] = json!("research-agent");
    let r = post(&s, "/v1/authorizations", &platform, &by_new).await;
    assert_eq!(r.body["tier"], "collaborative", "{}", r.text);
    // An entry is an object: not fields read from an array.
    let r = put(
        "/v1/registry/agents/research-agent",
        &admin,
        json!([null, null]),
    )
    .await;
    assert_eq!(
        (r.status, r.body["error"]["code"].as_str()),
        (400, Some("invalid_json")),
        "{}",
        r.text
    );
    let r = put(
        "/v1/registry/agents/research-agent",
        &admin,
        json!({"owner": "alice@acme.example"}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    by_new["id"] = json!("a2");
    let r = post(&s, "/v1/authorizations", &platform, &by_new).await;
    assert_eq!(r.body["tier"], "autonomous", "{}", r.text);

    // Taken off again: unknown once more.
    let r = call(
        "DELETE",
        &format!("{}/v1/registry/recipients/New.Vendor.Example", s.base),
        Some(&admin),
        None,
        "",
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let gone = post(&s, "/v1/authorizations", &platform, &to_new("n3")).await;
    assert_eq!(gone.body["status"], "blocked", "{}", gone.text);
    let r = call(
        "DELETE",
        &format!("{}/v1/registry/recipients/new.vendor.example", s.base),
        Some(&admin),
        None,
        "",
    )
    .await;
    assert_eq!(r.status, 404, "{}", r.text);
}

on_both_stores!(async 2: an_admin_changes_the_registry_and_each_change_is_activated_rules);

async fn concurrent_registry_edits_keep_every_entry(kind: Kind) {
    use crate::service::{call, get};
    use crate::tenancy::{key_on, serve_on};
    let store = crate::stores::TestStore::new(kind);
    let dir = tempfile::tempdir().unwrap();
    let file = crate::service::tenant_file(dir.path(), "acme", &[]);
    let s = serve_on(&store, &dir.path().join("data"), &[&file], &[]);
    let admin = key_on(&store, "acme", "admin", Some("ops@acme.example"));
    let edits = (0..8).map(|i| {
        let url = format!("{}/v1/registry/recipients/vendor-{i}.example", s.base);
        let admin = admin.clone();
        tokio::spawn(async move {
            call(
                "PUT",
                &url,
                Some(&admin),
                Some("application/json"),
                json!({"trust": "known"}).to_string(),
            )
            .await
        })
    });
    let mut versions = Vec::new();
    for edit in edits.collect::<Vec<_>>() {
        let r = edit.await.unwrap();
        assert_eq!(r.status, 200, "{}", r.text);
        versions.push(r.body["rules"]["version"].as_u64().unwrap());
    }
    versions.sort();
    assert_eq!(
        versions,
        (2..10).collect::<Vec<u64>>(),
        "one version per edit"
    );
    let listed = get(&s, "/v1/registry", &admin).await;
    for i in 0..8 {
        assert!(
            listed.text.contains(&format!("vendor-{i}.example")),
            "vendor-{i} was kept: {}",
            listed.text
        );
    }
}

on_both_stores!(async 2: concurrent_registry_edits_keep_every_entry);

/// Registry and trust settings that cannot be used are refused at load,
/// naming the key and what to write instead.
#[test]
fn a_registry_that_cannot_be_used_is_refused_naming_the_key() {
    let path = std::path::Path::new("acme.toml");
    let refused = |extra: &str, from: &str, to: &str| {
        let text = format!("{}{extra}", ACME.replace(from, to));
        tiergate_core::governance::TenantConfig::parse(&text, path)
            .unwrap_err()
            .to_string()
    };
    let cases = [
        (
            "[[recipients]]\nid = \"Cloud.Vendor.Example.\"\ntrust = \"verified\"\n",
            "",
            "",
            "`recipients[",
            "listed twice",
        ),
        (
            "[[recipients]]\nid = \"x.example\"\ntrust = \"verified\"\njurisdiction = \"de\"\n",
            "",
            "",
            ".jurisdiction`",
            "capitals",
        ),
        (
            "[[recipients]]\nid = \"x.example\"\ntrust = \"verified\"\ncategories = []\n",
            "",
            "",
            ".categories`",
            "at least one",
        ),
        (
            "[[recipients]]\nid = \"x.example\"\ntrust = \"trusted\"\n",
            "",
            "",
            "trust",
            "trusted",
        ),
        (
            "",
            "known_after = 3",
            "known_after = 0",
            "`trust.known_after`",
            "at least 1",
        ),
        (
            "",
            r#"mismatch = "collaborative""#,
            r#"mismatch = "autonomous""#,
            "`trust.mismatch`",
            "stricter",
        ),
        (
            "",
            r#"unlisted_agents = "collaborative""#,
            r#"unlisted_agents = "maybe""#,
            "unlisted_agents",
            "allow",
        ),
        (
            "[[agents]]\nname = \"x-agent\"\nteam = \"nobody\"\n",
            "",
            "",
            "`agents[1].team`",
            "no `[[teams]]`",
        ),
        (
            "[[agents]]\nname = \"x-agent\"\nowner = \"mallory@acme.example\"\n",
            "",
            "",
            "`agents[1].owner`",
            "not one of `owners`",
        ),
        (
            "[[agents]]\nname = \"procurement-agent-prod\"\n",
            "",
            "",
            "`agents[1].name`",
            "listed twice",
        ),
    ];
    for (extra, from, to, key, says) in cases {
        assert!(ACME.contains(from), "{from}");
        let err = refused(extra, from, to);
        assert!(
            err.contains(key) && err.contains(says),
            "{extra}{to}: {err}"
        );
    }
}
