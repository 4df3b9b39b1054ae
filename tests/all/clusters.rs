//! Tenants over two PostgreSQL clusters: each tenant lives wholly on one
//! database, every replica serves every tenant, and a cluster that is down
//! stops only the tenants that live on it.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::json;

use tiergate_core::store::{EventDraft, Store};
use tiergate_e2e::postgres::{
    ClusterOptions, fresh_database, new_database, query_texts, start_cluster,
    start_stoppable_cluster,
};
use tiergate_postgres::PostgresStore;

use crate::replicas::{
    BUDGETED, Replicas, ask_to_hire, authorize, chain_verifies, event_kinds, paid_by,
    spend_against_the_budgets, until_nothing_waits,
};
use crate::service::{get, post, verdict};

/// A second cluster beside the tests' server, shared by the tests that do
/// not stop it.
fn second_cluster() -> &'static str {
    static SECOND: OnceLock<String> = OnceLock::new();
    SECOND.get_or_init(|| start_cluster(ClusterOptions { durable: false }))
}

fn fresh_on_second() -> String {
    new_database(second_cluster())
}

/// The tenants with audit events on the database at `url`.
fn tenants_on(url: &str) -> Vec<String> {
    query_texts(
        url,
        "SELECT DISTINCT tenant FROM audit_events ORDER BY tenant",
    )
    .unwrap()
}

/// A tenant-level event, which places a tenant that has no home yet.
fn touch(store: &dyn Store, tenant: &str) {
    let event = EventDraft {
        kind: "policy_activated".into(),
        actor: Some("ops@example".into()),
        detail: json!({ "tenant": tenant }),
    };
    store.record_tenant_event(tenant, 1, 1, &event).unwrap();
}

fn refusal(url: &str) -> String {
    match PostgresStore::open(url) {
        Ok(_) => panic!("{url} opened"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn tenants_keep_their_database_as_databases_join_and_a_url_that_misnames_the_set_is_refused() {
    let (a, b, c) = (fresh_database(), fresh_on_second(), fresh_database());
    // One database, as before: its tenants are placed on it.
    touch(&PostgresStore::open(&a).unwrap(), "old");
    let two = format!("{a},{b}");
    let store = PostgresStore::open(&two).unwrap();
    touch(&store, "first");
    touch(&store, "second");
    touch(&store, "third");
    drop(store);
    // Each new tenant went where fewest lived: `old` was on `a` already.
    assert_eq!(tenants_on(&a), ["old", "second"]);
    assert_eq!(tenants_on(&b), ["first", "third"]);
    // Notices on `b` are numbered apart from `a`'s: from 1 << 40.
    let next = query_texts(&b, "SELECT last_value FROM outbox_id_seq").unwrap();
    assert!(next[0].parse::<i64>().unwrap() >= 1 << 40, "{next:?}");

    // A third database joins; nobody moves, and the set's tenants are read
    // where they live whatever the URL's order after the directory.
    let three = format!("{a},{c},{b}");
    let store = PostgresStore::open(&three).unwrap();
    touch(&store, "fourth");
    for tenant in ["old", "first", "second", "third", "fourth"] {
        assert!(!store.events(tenant, None).unwrap().is_empty(), "{tenant}");
    }
    assert_eq!(
        store.tenants().unwrap(),
        ["first", "fourth", "old", "second", "third"]
    );
    drop(store);
    assert_eq!(tenants_on(&c), ["fourth"]);
    assert_eq!(tenants_on(&b), ["first", "third"]);

    // A URL that leaves a database out, puts another first, names one
    // twice, or brings a stranger with tenants of its own, is refused and
    // says why.
    let missing = refusal(&format!("{a},{b}"));
    assert!(missing.contains("lists databases [2]"), "{missing}");
    let not_first = refusal(&format!("{b},{a},{c}"));
    assert!(not_first.contains("not its directory"), "{not_first}");
    let twice = refusal(&format!("{a},{b},{c},{b}"));
    assert!(twice.contains("the same database twice"), "{twice}");
    let stranger = fresh_database();
    touch(&PostgresStore::open(&stranger).unwrap(), "elsewhere");
    let with_stranger = refusal(&format!("{a},{b},{c},{stranger}"));
    assert!(
        with_stranger.contains("is database 0 of another set"),
        "{with_stranger}"
    );
    // A database from before sets were kept, with tenants, joins no set.
    tiergate_e2e::postgres::run_sql(&stranger, "UPDATE tiergate_identity SET number = NULL")
        .unwrap();
    let with_old = refusal(&format!("{a},{b},{c},{stranger}"));
    assert!(with_old.contains("holds tenant elsewhere"), "{with_old}");
    let alone = refusal(&b);
    assert!(alone.contains("not its directory"), "{alone}");
    // The refusals changed nothing: the whole set still opens.
    PostgresStore::open(&three).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn budgets_deadlines_approvals_and_chains_hold_per_tenant_over_two_clusters() {
    let url = format!("{},{}", fresh_database(), fresh_on_second());
    let quick: (&str, &[(&str, &str)]) = (
        "quick",
        &[(r#"veto_window = "30s""#, r#"veto_window = "2s""#)],
    );
    let r = Replicas::start_on(
        url.clone(),
        2,
        &[BUDGETED[0], BUDGETED[1], quick, ("acme", &[])],
    );
    let quick = r.key("quick", "agent", None);
    // Veto windows close on both replicas while budgets are spent.
    let vetoable: Vec<_> = (0..20)
        .map(|i| {
            let who = format!("agent-{i}");
            let body = paid_by("quick", &format!("v{i}"), &who, "data_access", "4.99");
            tokio::spawn(authorize(r.base(i), quick.clone(), body))
        })
        .collect();
    spend_against_the_budgets(&r, 200).await;
    for t in vetoable {
        let answer = t.await.unwrap();
        assert_eq!(answer.body["status"], "pending_veto", "{}", answer.text);
    }

    // An approval asked on one replica, given on the other.
    let acme = r.key("acme", "agent", None);
    let alice = r.key("acme", "approver", Some("alice@acme.example"));
    let hire = ask_to_hire(&r.served[0], &acme, "acme").await;
    let approved = verdict(&r.served[1], &alice, &hire.body, "approve", "checked").await;
    assert_eq!(approved.body["status"], "executed", "{}", approved.text);

    let auditor = r.key("quick", "auditor", Some("audit@quick.example"));
    until_nothing_waits(&r.served[1], &auditor).await;
    for i in 0..20 {
        let kinds = event_kinds(&r.served[i % 2], &format!("v{i}"), &auditor).await;
        let executed = kinds.iter().filter(|k| *k == "executed").count();
        assert_eq!(executed, 1, "v{i}: {kinds:?}");
    }

    // Each tenant's whole history is on one database, and both hold some.
    let databases: Vec<&str> = url.split(',').collect();
    let (on_a, on_b) = (tenants_on(databases[0]), tenants_on(databases[1]));
    assert_eq!(on_a.len() + on_b.len(), 4, "{on_a:?} {on_b:?}");
    assert!(!on_a.is_empty() && !on_b.is_empty(), "{on_a:?} {on_b:?}");
    for tenant in ["peragent", "whole", "quick", "acme"] {
        chain_verifies(&url, tenant);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_cluster_down_stops_only_its_own_tenants_and_loses_nothing_they_were_told() {
    let other = start_stoppable_cluster(ClusterOptions { durable: true });
    let url = format!("{},{}", fresh_database(), other.fresh_database());
    let veto = [(r#"veto_window = "30s""#, r#"veto_window = "2s""#)];
    // The first tenant placed goes to the directory, the second to the other.
    let r = Replicas::start_on(url.clone(), 1, &[("here", &veto), ("there", &veto)]);
    // Keys are made before the outage: the CLI opens every database.
    let auditor = r.key("here", "auditor", Some("audit@here.example"));
    let away_auditor = r.key("there", "auditor", Some("audit@there.example"));
    let databases: Vec<&str> = url.split(',').collect();
    assert_eq!(tenants_on(databases[0]), ["here"]);
    assert_eq!(tenants_on(databases[1]), ["there"]);
    let near = r.key("here", "agent", None);
    let away = r.key("there", "agent", None);
    let pay = |tenant: &'static str, key: &String, id: String, category: &str, amount: &str| {
        let body = paid_by(tenant, &id, "agent-1", category, amount);
        authorize(r.base(0), key.clone(), body)
    };
    for i in 0..5 {
        for (tenant, key) in [("here", &near), ("there", &away)] {
            let answer = pay(tenant, key, format!("before{i}"), "embeddings", "0.02").await;
            assert_eq!(answer.body["status"], "executed", "{}", answer.text);
        }
    }

    other.stop();
    // The other cluster's tenant is told to retry: nothing was done.
    let refused = post(
        &r.served[0],
        "/v1/authorizations",
        &away,
        &paid_by("there", "during", "agent-1", "embeddings", "0.02"),
    )
    .await;
    assert_eq!(refused.status, 503, "{}", refused.text);
    assert_eq!(
        refused.body["error"]["code"], "store_unavailable",
        "{}",
        refused.text
    );
    // The directory's tenant is served, deadlines included.
    for i in 0..5 {
        let answer = pay("here", &near, format!("during{i}"), "embeddings", "0.02").await;
        assert_eq!(answer.body["status"], "executed", "{}", answer.text);
    }
    let vetoable = pay("here", &near, "veto".into(), "data_access", "4.99").await;
    assert_eq!(vetoable.body["status"], "pending_veto", "{}", vetoable.text);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let seen = get(&r.served[0], "/v1/authorizations/veto", &auditor).await;
        if seen.body["status"] == "executed" {
            break;
        }
        assert!(Instant::now() < deadline, "{}", seen.text);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    other.start();
    // Back: everything the away tenant was told is there, and it pays on;
    // the payment refused during the outage is decided now, once.
    for i in 0..5 {
        let seen = get(
            &r.served[0],
            &format!("/v1/authorizations/before{i}"),
            &away_auditor,
        )
        .await;
        assert_eq!(seen.body["status"], "executed", "{}", seen.text);
    }
    let again = pay("there", &away, "during".into(), "embeddings", "0.02").await;
    assert_eq!(again.status, 201, "{}", again.text);
    assert_eq!(again.body["status"], "executed", "{}", again.text);
    chain_verifies(&url, "here");
    chain_verifies(&url, "there");
}

/// The tenants' rows left on the database at `url`, per table that has a
/// `tenant` column, for `tenant`: `table: n` for each with rows.
fn rows_left(url: &str, tenant: &str) -> Vec<String> {
    let tables = query_texts(
        url,
        "SELECT table_name FROM information_schema.columns
         WHERE table_schema = current_schema() AND column_name = 'tenant' ORDER BY table_name",
    )
    .unwrap();
    tables
        .into_iter()
        .filter_map(|t| {
            let n = query_texts(
                url,
                &format!("SELECT COUNT(*) FROM {t} WHERE tenant = '{tenant}'"),
            )
            .unwrap()
            .remove(0);
            (n != "0").then(|| format!("{t}: {n}"))
        })
        .collect()
}

#[test]
fn a_moved_tenant_keeps_its_deliveries_and_chain_and_leaves_only_its_marker_behind() {
    use tiergate_core::store::{DeliveryState, DeliveryStore};

    let w = crate::pipeline::World::on(crate::stores::Kind::PostgresSet, crate::pipeline::ACME);
    let url = w.store_arg();
    let databases: Vec<&str> = url.split(',').collect();
    assert_eq!(tenants_on(databases[1]), ["acme"]);
    for i in 0..6 {
        // Supervised: each notifies the owners.
        w.authorize(&format!("s{i}"), "47.00", "compute", "known");
    }
    let store = w.backend();
    let hook = "http://127.0.0.1:9/hook";
    let notices = store.queue_deliveries("acme", hook, 0).unwrap();
    assert!(notices >= 6);
    let now = 1_782_518_400_000 + 1;
    let claimed = store.claim_deliveries(now, 60_000, 2).unwrap();
    store
        .record_attempt(claimed[0].entry.id, hook, now, None, None)
        .unwrap();
    store
        .record_attempt(claimed[1].entry.id, hook, now, Some("HTTP 500"), Some(now))
        .unwrap();
    let states = |s: &dyn DeliveryStore| {
        let mut states: Vec<String> = s
            .deliveries("acme", None, None, 100)
            .unwrap()
            .iter()
            .map(|d| format!("{:?} {:?}", d.state, d.last_error))
            .collect();
        states.sort();
        states
    };
    let before = states(store.as_ref());
    let events_before = store.events("acme", None).unwrap().len();

    let set = PostgresStore::open(&url).unwrap();
    let mut steps = Vec::new();
    let moved = set
        .move_tenant("acme", 0, "ops@example", 5, &mut |s| {
            steps.push(s.to_string())
        })
        .unwrap();
    assert_eq!((moved.from, moved.to), (1, 0));
    assert!(moved.rows > 20, "{moved:?}");
    assert!(
        steps.iter().any(|s| s.contains("audit_events")),
        "{steps:?}"
    );
    // Run again, it finds the tenant there and does nothing.
    let again = set
        .move_tenant("acme", 0, "ops@example", 5, &mut |_| {})
        .unwrap();
    assert_eq!((again.from, again.rows), (0, 0));

    // Nothing of the tenant is left behind but the marker that turns a
    // stale writer away.
    assert_eq!(rows_left(databases[1], "acme"), ["tenant_moves: 1"]);
    assert_eq!(
        tenants_on(databases[0]),
        ["acme", crate::stores::DIRECTORY_TENANT]
    );

    // The deliveries kept their states under numbers of the new database,
    // and go on from there.
    let store = w.backend();
    assert_eq!(states(store.as_ref()), before);
    let records = store.deliveries("acme", None, None, 100).unwrap();
    assert!(
        records.iter().all(|d| d
            .event_id
            .trim_start_matches("acme:")
            .parse::<u64>()
            .unwrap()
            < 1 << 40),
        "{:?}",
        records.iter().map(|d| &d.event_id).collect::<Vec<_>>()
    );
    assert_eq!(store.queue_deliveries("acme", hook, 0).unwrap(), 0);
    let due = store.claim_deliveries(now + 1, 60_000, 100).unwrap();
    assert_eq!(due.len() as u64, notices - 1, "all but the delivered one");
    store
        .record_attempt(due[0].entry.id, hook, now + 1, None, None)
        .unwrap();
    assert_eq!(
        store
            .deliveries("acme", Some(DeliveryState::Delivered), None, 100)
            .unwrap()
            .len(),
        2
    );

    // The chain goes on, with the move on it, and so do payments, even
    // from the governor that knew the old home.
    let paid = w.authorize("after", "0.02", "embeddings", "verified");
    assert_eq!(paid.status, tiergate_core::record::Status::Executed);
    let events = store.events("acme", None).unwrap();
    tiergate_core::audit::verify_chain(&events).unwrap();
    let moves: Vec<_> = events
        .iter()
        .filter(|e| e.event.kind == "tenant_moved")
        .collect();
    assert_eq!(moves.len(), 1);
    assert_eq!(moves[0].event.actor.as_deref(), Some("ops@example"));
    assert_eq!(moves[0].event.detail["to_database"], 0);
    assert!(events.len() > events_before + 1);
    assert!(rows_left(databases[1], "acme") == ["tenant_moves: 1"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_tenant_moves_while_two_replicas_serve_it_and_keeps_its_budget_and_approvals() {
    let url = format!("{},{}", fresh_database(), fresh_on_second());
    let budget = [(
        r#"agent_daily_budget = { limit = "500.00" }"#,
        r#"agent_daily_budget = { limit = "6.00" }"#,
    )];
    let r = Replicas::start_on(url.clone(), 2, &[("anchor", &[]), ("mover", &budget)]);
    let databases: Vec<&str> = url.split(',').collect();
    assert_eq!(tenants_on(databases[1]), ["mover"]);
    let mover = r.key("mover", "agent", None);
    let anchor = r.key("anchor", "agent", None);
    let alice = r.key("mover", "approver", Some("alice@acme.example"));
    for i in 0..4 {
        let body = paid_by("mover", &format!("b{i}"), "agent-a", "embeddings", "1.00");
        let answer = authorize(r.base(i), mover.clone(), body).await;
        assert_eq!(answer.body["status"], "executed", "{}", answer.text);
    }
    let hire = ask_to_hire(&r.served[0], &mover, "mover").await;

    // The move runs while both replicas take the tenant's payments.
    let moving = {
        let url = url.clone();
        std::thread::spawn(move || {
            crate::tiergate_command()
                .args([
                    "tenants", "move", "--store", &url, "--tenant", "mover", "--to", "0",
                ])
                .args(["--actor", "ops@example"])
                .output()
                .unwrap()
        })
    };
    let mut during = Vec::new();
    for i in 0..4 {
        let body = paid_by("mover", &format!("d{i}"), "agent-a", "embeddings", "1.00");
        during.push(tokio::spawn(authorize(r.base(i), mover.clone(), body)));
        let body = paid_by("anchor", &format!("a{i}"), "agent-a", "embeddings", "1.00");
        during.push(tokio::spawn(authorize(r.base(i), anchor.clone(), body)));
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let out = tokio::task::spawn_blocking(move || moving.join().unwrap())
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("moved tenant mover from database 1 to database 0"),
        "{stderr}"
    );
    let mut executed = 0;
    for t in during {
        let answer = t.await.unwrap();
        assert_eq!(answer.status, 201, "{}", answer.text);
        if answer.body["transaction"]["tenant"] == "mover" {
            executed += u32::from(answer.body["status"] == "executed");
        }
    }
    // 6.00 a day for the agent, across the move: 4 before, 2 of these.
    assert_eq!(executed, 2);

    // The approval asked before the move is given after it, on the other
    // replica, and the budget still holds.
    let approved = verdict(&r.served[1], &alice, &hire.body, "approve", "checked").await;
    assert_eq!(approved.body["status"], "executed", "{}", approved.text);
    let over = authorize(
        r.base(1),
        mover.clone(),
        paid_by("mover", "over", "agent-a", "embeddings", "1.00"),
    )
    .await;
    assert_eq!(over.body["status"], "awaiting_approval", "{}", over.text);

    assert_eq!(tenants_on(databases[1]), Vec::<String>::new());
    assert_eq!(tenants_on(databases[0]), ["anchor", "mover"]);
    chain_verifies(&url, "mover");
    chain_verifies(&url, "anchor");
    let listed = crate::tiergate_command()
        .args(["tenants", "list", "--store", &url])
        .output()
        .unwrap();
    let listed = String::from_utf8_lossy(&listed.stdout);
    assert!(listed.contains("mover\t0"), "{listed}");
}

#[test]
fn a_move_stopped_part_way_is_finished_by_running_it_again() {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;

    let w = crate::pipeline::World::on(crate::stores::Kind::PostgresSet, crate::pipeline::ACME);
    for i in 0..3 {
        w.authorize(&format!("p{i}"), "0.02", "embeddings", "verified");
    }
    let url = w.store_arg();
    let databases: Vec<&str> = url.split(',').collect();
    let move_acme = || {
        let mut cmd = crate::tiergate_command();
        cmd.args([
            "tenants", "move", "--store", &url, "--tenant", "acme", "--to", "0",
        ]);
        cmd
    };
    // A replica that knows the old home.
    let stale = PostgresStore::open(&url).unwrap();
    touch(&stale, "acme");
    // Stopped after the directory names the new home, before the old
    // copy is deleted.
    let mut child = move_acme().stderr(Stdio::piped()).spawn().unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    loop {
        let line = lines.next().expect("the move's progress").unwrap();
        if line.contains("waiting for every replica") {
            break;
        }
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        rows_left(databases[1], "acme")
            .iter()
            .any(|r| r.starts_with("authorizations")),
        "the old copy is still there"
    );
    // The replica that still knew the old home is turned away there, asks
    // the directory again, and is told to retry: the new home takes no
    // write until every replica has asked again.
    let late = EventDraft {
        kind: "policy_activated".into(),
        actor: None,
        detail: json!({ "late": true }),
    };
    let refused = stale
        .record_tenant_event("acme", 2, 1, &late)
        .unwrap_err()
        .to_string();
    assert!(refused.contains("moving here from database 1"), "{refused}");
    // Every write of the tenant asks this under its lock.
    let refused =
        tiergate_e2e::postgres::run_sql(databases[1], "SELECT tiergate_tenant_here('acme')")
            .unwrap_err();
    assert!(refused.contains("has moved to database 0"), "{refused}");

    let out = move_acme().output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("deleting tenant acme's rows from database 1"),
        "{stderr}"
    );
    assert_eq!(rows_left(databases[1], "acme"), ["tenant_moves: 1"]);
    let paid = w.authorize("after", "0.02", "embeddings", "verified");
    assert_eq!(paid.status, tiergate_core::record::Status::Executed);
    let events = w.backend().events("acme", None).unwrap();
    tiergate_core::audit::verify_chain(&events).unwrap();
    assert_eq!(
        events
            .iter()
            .filter(|e| e.event.kind == "tenant_moved")
            .count(),
        1
    );
}
