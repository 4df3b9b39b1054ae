//! The storage interface itself, on both backends: keys, rules, tenant
//! events, the ledger, paging and webhook deliveries, including two
//! handles on one store claiming work as two hosts would.

use std::collections::HashSet;

use tiergate_core::governance::Status;
use tiergate_core::store::{ApiKey, DeliveryState, EventDraft, Role};

use crate::pipeline::{ACME, World};
use crate::stores::{Kind, TestStore, on_every_store};

fn key(id: &str, tenant: &str, created_ms: u64) -> ApiKey {
    ApiKey {
        key_id: id.into(),
        tenant: tenant.into(),
        role: Role::Approver,
        subject: "alice@acme.example".into(),
        secret_hash: format!("sha256:{id}"),
        created_ms,
        revoked_ms: None,
    }
}

fn keys_are_kept_per_tenant_and_revoked_once(kind: Kind) {
    let held = TestStore::new(kind);
    let store = held.open();
    store.insert_key(&key("kb", "acme", 20)).unwrap();
    store.insert_key(&key("ka", "acme", 20)).unwrap();
    store.insert_key(&key("kc", "acme", 10)).unwrap();
    store.insert_key(&key("kz", "globex", 5)).unwrap();
    let again = store.insert_key(&key("ka", "acme", 30)).unwrap_err();
    assert!(again.to_string().starts_with("store:"), "{again}");
    assert_eq!(store.key("ka").unwrap(), Some(key("ka", "acme", 20)));
    assert_eq!(store.key("nope").unwrap(), None);
    let order: Vec<String> = store
        .keys("acme")
        .unwrap()
        .into_iter()
        .map(|k| k.key_id)
        .collect();
    assert_eq!(order, ["kc", "ka", "kb"], "oldest first, then by id");
    assert!(
        !store.revoke_key("globex", "ka", 50).unwrap(),
        "not its key"
    );
    assert!(store.revoke_key("acme", "ka", 50).unwrap());
    assert!(store.revoke_key("acme", "ka", 60).unwrap());
    assert_eq!(store.key("ka").unwrap().unwrap().revoked_ms, Some(50));
}

fn rules_are_versioned_per_tenant(kind: Kind) {
    let held = TestStore::new(kind);
    let store = held.open();
    let component = vec![0u8, 97, 115, 109, 255, 1];
    let upload = |at: u64| tiergate_core::store::UploadedPolicy {
        digest: "sha256:aa".into(),
        name: None,
        version: None,
        bytes: 6,
        uploaded_ms: at,
    };
    store
        .put_policy("acme", &upload(1), &component, None)
        .unwrap();
    store
        .put_policy("acme", &upload(2), b"other", None)
        .unwrap();
    assert_eq!(
        store.policy_component("acme", "sha256:aa").unwrap(),
        Some(component)
    );
    assert_eq!(store.policy_component("acme", "sha256:bb").unwrap(), None);
    assert_eq!(
        store
            .put_rules("acme", "seed-tiers", "a", "admin", 10)
            .unwrap()
            .version,
        1
    );
    store
        .put_rules("globex", "table", "g", "admin", 11)
        .unwrap();
    let second = store
        .put_rules("acme", "sha256:aa", "b", "admin", 12)
        .unwrap();
    assert_eq!(second.version, 2);
    let active = store.active_rules().unwrap();
    assert_eq!(active, vec![second.clone(), active[1].clone()]);
    assert_eq!(active[1].tenant, "globex");
    // An edit of version 1 is not kept over version 2; one of version 2 is.
    assert_eq!(
        store
            .put_rules_after("acme", Some(1), "sha256:aa", "edited 1", "admin", 13)
            .unwrap(),
        None
    );
    assert_eq!(store.active_rules().unwrap()[0], second);
    let third = store
        .put_rules_after("acme", Some(2), "sha256:aa", "edited 2", "admin", 14)
        .unwrap()
        .unwrap();
    assert_eq!((third.version, third.config.as_str()), (3, "edited 2"));
}

fn tenant_events_chain_and_skip_repeats(kind: Kind) {
    let held = TestStore::new(kind);
    let store = held.open();
    let event = |detail: &str| EventDraft {
        kind: "policy_activated".into(),
        actor: Some("admin".into()),
        detail: serde_json::json!({ "policy": detail }),
    };
    const DAY: u64 = 1_782_518_400_000;
    assert_eq!(
        store
            .record_tenant_event("acme", DAY, 5, &event("a"))
            .unwrap()
            .as_deref(),
        Some("cfg-2026-06-27-001")
    );
    assert_eq!(
        store
            .record_tenant_event("acme", DAY + 1, 5, &event("a"))
            .unwrap(),
        None,
        "the same rules again are no new record"
    );
    assert_eq!(
        store
            .record_tenant_event("acme", DAY + 2, 5, &event("b"))
            .unwrap()
            .as_deref(),
        Some("cfg-2026-06-27-002")
    );
    store
        .record_tenant_event("beta", DAY, 5, &event("a"))
        .unwrap();
    let events = store.events("acme", None).unwrap();
    assert_eq!(events.len(), 2);
    assert_eq!(events[0].tx_id, "");
    tiergate_core::audit::verify_chain(&events).unwrap();
    // Over a set, `beta` lives on the directory and `acme` on the other.
    let mut tenants = store.tenants().unwrap();
    tenants.retain(|t| t != crate::stores::DIRECTORY_TENANT);
    assert_eq!(tenants, ["acme", "beta"]);
}

fn pages_and_the_ledger_follow_the_stored_order(kind: Kind) {
    let w = World::on(kind, ACME);
    for i in 0..7 {
        w.authorize(&format!("p{i}"), "0.02", "embeddings", "verified");
        if i % 3 == 0 {
            let mut other = w.tx(&format!("o{i}"), "0.02", "embeddings", "verified");
            other.agent = "other-agent".into();
            w.governor().authorize_blocking(other).unwrap();
        }
        // Request order is by time, then by id within a millisecond.
        w.clock.advance(1_000);
    }
    let store = w.backend();
    // Everyone's pages, or one agent's (read through its own index).
    let of = |agent: Option<&str>, limit: usize| {
        let mut seen = Vec::new();
        let mut after: Option<(u64, String)> = None;
        loop {
            let page = store
                .authorizations_after(
                    "acme",
                    agent,
                    after.as_ref().map(|(t, id)| (*t, id.as_str())),
                    u64::MAX,
                    limit,
                )
                .unwrap();
            let Some(last) = page.last() else { break };
            after = Some((
                last.transaction.requested_at_ms,
                last.transaction.id.clone(),
            ));
            seen.extend(page.into_iter().map(|a| a.transaction.id));
        }
        seen
    };
    assert_eq!(of(Some("other-agent"), 2), ["o0", "o3", "o6"]);
    assert_eq!(of(Some("nobody"), 2), Vec::<String>::new());
    let o3_at = store
        .get("acme", "o3")
        .unwrap()
        .unwrap()
        .transaction
        .requested_at_ms;
    let before: Vec<String> = store
        .authorizations_after("acme", Some("other-agent"), None, o3_at, 10)
        .unwrap()
        .into_iter()
        .map(|a| a.transaction.id)
        .collect();
    assert_eq!(before, ["o0"], "only those requested before the bound");
    let query = tiergate_core::audit::Query {
        agent: Some("other-agent".into()),
        ..Default::default()
    };
    let matched: Vec<String> = tiergate_core::audit::matching(store.as_ref(), "acme", &query)
        .map(|a| a.unwrap().transaction.id)
        .collect();
    assert_eq!(matched, ["o0", "o3", "o6"]);
    assert_eq!(
        of(None, 3),
        ["o0", "p0", "p1", "p2", "o3", "p3", "p4", "p5", "o6", "p6"]
    );
    let all = store.events("acme", None).unwrap();
    let mut paged: Vec<tiergate_core::store::AuditEvent> = Vec::new();
    loop {
        let last = paged.last().map_or(0, |e| e.seq);
        let page = store.events_after("acme", last, 4).unwrap();
        if page.is_empty() {
            break;
        }
        paged.extend(page);
    }
    assert_eq!(paged, all);
    let executed = store.get("acme", "p3").unwrap().unwrap();
    assert_eq!(executed.status, Status::Executed);
    assert_eq!(
        store.tx_with_audit_id("acme", &executed.audit_id).unwrap(),
        Some("p3".to_string())
    );
    assert_eq!(
        store.tx_with_audit_id("beta", &executed.audit_id).unwrap(),
        None
    );
    assert_eq!(
        store
            .tx_with_audit_id("acme", "aud-1999-01-01-001")
            .unwrap(),
        None
    );
    let reference = store.ledger_insert(&executed, 99).unwrap();
    assert_eq!(
        reference,
        tiergate_core::store::ledger_reference(&executed.audit_id)
    );
    assert_eq!(store.ledger_insert(&executed, 100).unwrap(), reference);
}

fn deliveries_are_claimed_once_across_hosts_and_retried_from_state(kind: Kind) {
    let w = World::on(kind, ACME);
    for i in 0..6 {
        // Supervised: each notifies the owners.
        w.authorize(&format!("s{i}"), "47.00", "compute", "known");
    }
    let (one, two) = (w.backend(), w.backend());
    let notices = one.outbox("acme").unwrap().len() as u64;
    assert!(notices >= 6);
    let url = "http://127.0.0.1:9/hook";
    assert_eq!(one.queue_deliveries("acme", url, 0).unwrap(), notices);
    assert_eq!(two.queue_deliveries("acme", url, 0).unwrap(), 0);
    let now = 1_782_518_400_000 + 1;
    let a = one.claim_deliveries(now, 60_000, 4).unwrap();
    let b = two.claim_deliveries(now, 60_000, 100).unwrap();
    assert_eq!(a.len(), 4);
    assert_eq!((a.len() + b.len()) as u64, notices);
    let ids: HashSet<u64> = a.iter().chain(&b).map(|d| d.entry.id).collect();
    assert_eq!(ids.len() as u64, notices, "no delivery is claimed twice");
    assert!(one.claim_deliveries(now, 60_000, 100).unwrap().is_empty());

    let (first, second) = (&a[0], &a[1]);
    one.record_attempt(first.entry.id, url, now, Some("HTTP 500"), Some(now + 10))
        .unwrap();
    two.record_attempt(second.entry.id, url, now, None, None)
        .unwrap();
    one.record_attempt(a[2].entry.id, url, now, Some("HTTP 410"), None)
        .unwrap();
    one.release_delivery(a[3].entry.id, url, now).unwrap();
    let trouble = two.delivery_trouble().unwrap();
    assert_eq!((trouble.failing, trouble.given_up), (1, 1));
    let failing = two
        .deliveries("acme", Some(DeliveryState::Failing), None, 10)
        .unwrap();
    assert_eq!(failing.len(), 1);
    assert_eq!(failing[0].last_error.as_deref(), Some("HTTP 500"));
    assert_eq!(failing[0].next_attempt_ms, Some(now + 10));
    assert_eq!(
        two.deliveries("acme", Some(DeliveryState::Delivered), None, 10)
            .unwrap()[0]
            .event_id,
        format!("acme:{}", second.entry.id)
    );
    let again: Vec<u64> = one
        .claim_deliveries(now + 10, 60_000, 100)
        .unwrap()
        .into_iter()
        .map(|d| d.entry.id)
        .collect();
    assert!(again.contains(&first.entry.id) && again.contains(&a[3].entry.id));
    assert_eq!(again.len(), 2, "the released one and the one due again");
    assert_eq!(
        one.deliveries("acme", None, None, 100).unwrap().len() as u64,
        notices
    );
}

on_every_store!(
    keys_are_kept_per_tenant_and_revoked_once,
    rules_are_versioned_per_tenant,
    tenant_events_chain_and_skip_repeats,
    pages_and_the_ledger_follow_the_stored_order,
    deliveries_are_claimed_once_across_hosts_and_retried_from_state,
);

#[test]
fn hosts_opening_a_new_postgres_database_at_once_migrate_it_once() {
    let url = tiergate_e2e::postgres::fresh_database();
    let opened: Vec<_> = (0..4)
        .map(|_| {
            let location = tiergate_cli::Location::Postgres(url.clone());
            std::thread::spawn(move || location.open().map(|_| ()))
        })
        .collect();
    for host in opened {
        host.join().unwrap().expect("every host opens the store");
    }
    // A schema from a later tiergate is refused, by name.
    tiergate_e2e::postgres::run_sql(&url, "INSERT INTO tiergate_schema (version) VALUES (99)")
        .unwrap();
    let refused = tiergate_postgres::PostgresStore::open(&url)
        .err()
        .expect("a newer schema is refused")
        .to_string();
    assert!(
        refused.contains("schema version 99 is newer than this tiergate understands ("),
        "{refused}"
    );
}

/// Two processes on one SQLite file (the service, and `tiergate keys`
/// beside it) record tenant events at once: each waits its turn for the
/// write lock, and none is refused as "database is locked" (seen once in
/// CI, when `keys create` recorded its key while the service wrote).
#[test]
fn tenant_events_from_two_processes_on_one_file_wait_their_turn() {
    let held = TestStore::new(Kind::Sqlite);
    let (one, two) = (held.open(), held.open());
    let record = |store: std::sync::Arc<dyn tiergate_core::store::Backend>, who: &'static str| {
        std::thread::spawn(move || {
            for i in 0..200 {
                let event = EventDraft {
                    kind: "key_created".into(),
                    actor: Some(who.into()),
                    detail: serde_json::json!({ "n": i, "by": who }),
                };
                store
                    .record_tenant_event("acme", 1_000 + i, 5, &event)
                    .unwrap_or_else(|e| panic!("{who}'s event {i}: {e}"));
            }
        })
    };
    let (a, b) = (record(one, "one"), record(two, "two"));
    a.join().unwrap();
    b.join().unwrap();
    let events = held.open().events("acme", None).unwrap();
    assert_eq!(events.len(), 400);
    tiergate_core::audit::verify_chain(&events).unwrap();
}
