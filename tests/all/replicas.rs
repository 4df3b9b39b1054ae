//! Several `tiergate serve` replicas on one PostgreSQL database, as behind
//! a load balancer: requests spread across them must add up as if one
//! host served them all.

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::service::{Response, Served, call, get, payment, post, tenant_file, verdict};

/// Replicas sharing a store, each with its own data directory.
pub(crate) struct Replicas {
    _dir: tempfile::TempDir,
    pub(crate) url: String,
    pub(crate) served: Vec<Served>,
}

impl Replicas {
    /// `n` replicas on a fresh database.
    fn start(n: usize, tenants: &[(&str, &[(&str, &str)])]) -> Replicas {
        Replicas::start_on(tiergate_e2e::postgres::fresh_database(), n, tenants)
    }

    /// `n` replicas on the store at `url`, serving `tenants` (each a name
    /// and edits to the example tenant file).
    pub(crate) fn start_on(url: String, n: usize, tenants: &[(&str, &[(&str, &str)])]) -> Replicas {
        let dir = tempfile::tempdir().unwrap();
        let mut args = vec![
            "--store".to_string(),
            url.clone(),
            "--no-demo-tenant".into(),
        ];
        for (tenant, edits) in tenants {
            // These tests pay as many agents, which the tenants do not
            // list: they are served like listed ones.
            let mut edits = edits.to_vec();
            edits.push((
                r#"unlisted_agents = "collaborative""#,
                r#"unlisted_agents = "allow""#,
            ));
            args.push("--tenant".into());
            args.push(
                tenant_file(dir.path(), tenant, &edits)
                    .display()
                    .to_string(),
            );
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        // One after the other: the first applies the schema and the rules.
        let served = (0..n)
            .map(|i| Served::start(&dir.path().join(format!("replica-{i}")), &args))
            .collect();
        Replicas {
            _dir: dir,
            url,
            served,
        }
    }

    pub(crate) fn key(&self, tenant: &str, role: &str, subject: Option<&str>) -> String {
        // An agent key is bound to one agent; one for any agent is a platform key.
        let role = match (role, subject) {
            ("agent", None) => "platform",
            _ => role,
        };
        let platform = format!("platform@{tenant}.example");
        let subject = subject.or((role == "platform").then_some(platform.as_str()));
        let mut cmd = crate::tiergate_command();
        cmd.args(["keys", "create", "--tenant", tenant, "--role", role])
            .args(["--store", &self.url]);
        if let Some(s) = subject {
            cmd.args(["--subject", s]);
        }
        let out = cmd.output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    }

    pub(crate) fn base(&self, i: usize) -> String {
        self.served[i % self.served.len()].base.clone()
    }
}

/// A payment, sent again (the same id: idempotent) while a replica answers
/// `503` (overloaded: nothing was done), as a client told to retry would.
pub(crate) async fn authorize(base: String, key: String, body: Value) -> Response {
    let mut tries = 0;
    loop {
        let answer = call(
            "POST",
            &format!("{base}/v1/authorizations"),
            Some(&key),
            Some("application/json"),
            body.to_string(),
        )
        .await;
        tries += 1;
        if answer.status != 503 || tries == 60 {
            return answer;
        }
        // The answer's Retry-After: a second.
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

pub(crate) fn paid_by(tenant: &str, id: &str, agent: &str, category: &str, amount: &str) -> Value {
    let mut body = payment(tenant, id, amount, category, "verified");
    body["agent"] = agent.into();
    body
}

/// The tenant's chain, checked by the CLI straight from the database.
pub(crate) fn chain_verifies(url: &str, tenant: &str) {
    let out = crate::tiergate_command()
        .args(["audit", "verify", "--store", url, "--tenant", tenant])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Two tenants with small budgets: `peragent` 6.00 a day per agent,
/// `whole` 10.00 a day for the whole tenant.
pub(crate) const BUDGETED: [(&str, &[(&str, &str)]); 2] = [
    (
        "peragent",
        &[(
            r#"agent_daily_budget = { limit = "500.00" }"#,
            r#"agent_daily_budget = { limit = "6.00" }"#,
        )],
    ),
    (
        "whole",
        &[(
            r#"tenant_daily_budget = { limit = "5000.00" }"#,
            r#"tenant_daily_budget = { limit = "10.00" }"#,
        )],
    ),
];

/// `n` payments of 1.00, interleaved over the [`BUDGETED`] tenants, five
/// agents and every replica, all at once; checks that each was executed
/// or held by the budget it ran into, and asserts the budgets held exactly.
pub(crate) async fn spend_against_the_budgets(r: &Replicas, n: usize) {
    let peragent = r.key("peragent", "agent", None);
    let whole = r.key("whole", "agent", None);
    let mut tasks = Vec::new();
    for i in 0..n {
        let (tenant, key, agent) = if i % 2 == 0 {
            ("peragent", &peragent, ["agent-a", "agent-b"][i / 2 % 2])
        } else {
            ("whole", &whole, ["w1", "w2", "w3"][i / 2 % 3])
        };
        let body = paid_by(tenant, &format!("p{i}"), agent, "embeddings", "1.00");
        tasks.push((
            tenant,
            agent,
            tokio::spawn(authorize(r.base(i), key.clone(), body)),
        ));
    }
    let mut executed: HashMap<(&str, &str), u32> = HashMap::new();
    for (tenant, agent, task) in tasks {
        let answer = task.await.unwrap();
        assert_eq!(answer.status, 201, "{}", answer.text);
        match answer.body["status"].as_str().unwrap() {
            "executed" => *executed.entry((tenant, agent)).or_default() += 1,
            "awaiting_approval" => {
                let guardrail = &answer.body["escalations"][0]["guardrail"];
                let want = if tenant == "whole" {
                    "tenant_daily_budget"
                } else {
                    "agent_daily_budget"
                };
                assert_eq!(guardrail, want, "{}", answer.text);
            }
            other => panic!("unexpected status {other}: {}", answer.text),
        }
    }
    assert_eq!(executed[&("peragent", "agent-a")], 6, "6.00 per agent");
    assert_eq!(executed[&("peragent", "agent-b")], 6, "6.00 per agent");
    let whole_total: u32 = ["w1", "w2", "w3"]
        .iter()
        .map(|a| executed.get(&("whole", *a)).copied().unwrap_or(0))
        .sum();
    assert_eq!(whole_total, 10, "10.00 for the whole tenant");
}

/// Waits up to 30 s until `s` lists no payment waiting on an owner.
pub(crate) async fn until_nothing_waits(s: &Served, key: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let waiting = get(s, "/v1/approvals", key).await.body;
        if waiting.as_array().is_some_and(Vec::is_empty) {
            return;
        }
        assert!(Instant::now() < deadline, "still waiting: {waiting}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The kinds of a payment's audit events, in order, as `s` shows them.
pub(crate) async fn event_kinds(s: &Served, tx_id: &str, key: &str) -> Vec<String> {
    let events = get(s, &format!("/v1/audit/transactions/{tx_id}"), key)
        .await
        .body;
    events["events"]
        .as_array()
        .unwrap_or_else(|| panic!("{events}"))
        .iter()
        .map(|e| e["kind"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn budgets_hold_exactly_across_replicas_per_agent_and_tenant_wide() {
    let r = Replicas::start(3, &BUDGETED);
    // 300 payments of 1.00, interleaved over both tenants, five agents and
    // three replicas.
    spend_against_the_budgets(&r, 300).await;
    // Every replica wrote into one chain per tenant, and it holds.
    chain_verifies(&r.url, "peragent");
    chain_verifies(&r.url, "whole");
    let auditor = r.key("whole", "auditor", Some("audit@whole.example"));
    for i in 0..3 {
        let v = call(
            "GET",
            &format!("{}/v1/audit/verify", r.base(i)),
            Some(&auditor),
            None,
            "",
        )
        .await;
        assert_eq!(v.body["ok"], true, "{}", v.text);
        // 150 authorized events and 10 executed ones, at least.
        assert!(v.body["events"].as_u64().unwrap() >= 160, "{}", v.text);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn retries_of_one_id_on_different_replicas_have_one_effect() {
    let r = Replicas::start(3, &[("acme", &[])]);
    let agent = r.key("acme", "agent", None);
    let auditor = r.key("acme", "auditor", Some("audit@acme.example"));
    let body = payment("acme", "once", "0.02", "embeddings", "verified");
    let tasks: Vec<_> = (0..60)
        .map(|i| tokio::spawn(authorize(r.base(i), agent.clone(), body.clone())))
        .collect();
    let mut ids = BTreeSet::new();
    let mut created = 0;
    for t in tasks {
        let answer = t.await.unwrap();
        assert!(
            answer.status == 201 || answer.status == 200,
            "{}",
            answer.text
        );
        created += u32::from(answer.status == 201);
        ids.insert(answer.body["audit_id"].as_str().unwrap().to_string());
    }
    // The store decides which request recorded it: exactly one says 201.
    assert_eq!(
        created, 1,
        "one request records the payment, the rest are retries"
    );
    assert_eq!(ids.len(), 1, "{ids:?}");
    let events = get(&r.served[2], "/v1/audit/transactions/once", &auditor)
        .await
        .body;
    let kinds: Vec<&str> = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds.iter().filter(|k| **k == "authorized").count(), 1);
    assert_eq!(kinds.iter().filter(|k| **k == "executed").count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_replica_runs_deadlines_and_each_payment_moves_once_even_when_one_dies() {
    let mut r = Replicas::start(
        3,
        &[(
            "quick",
            &[(r#"veto_window = "30s""#, r#"veto_window = "2s""#)],
        )],
    );
    let agent = r.key("quick", "agent", None);
    let auditor = r.key("quick", "auditor", Some("audit@quick.example"));
    let tasks: Vec<_> = (0..60)
        .map(|i| {
            // Many agents: no velocity cap interferes.
            let who = format!("agent-{}", i % 20);
            let body = paid_by("quick", &format!("v{i}"), &who, "data_access", "4.99");
            tokio::spawn(authorize(r.base(i), agent.clone(), body))
        })
        .collect();
    for t in tasks {
        let answer = t.await.unwrap();
        assert_eq!(answer.body["status"], "pending_veto", "{}", answer.text);
    }
    // One replica dies while the veto windows close; the others carry on.
    tokio::time::sleep(Duration::from_millis(1900)).await;
    r.served.remove(0).kill();
    until_nothing_waits(&r.served[0], &auditor).await;
    for i in 0..60 {
        let kinds = event_kinds(&r.served[i % 2], &format!("v{i}"), &auditor).await;
        for once in ["veto_window_closed", "executed"] {
            assert_eq!(
                kinds.iter().filter(|k| **k == once).count(),
                1,
                "v{i}: {kinds:?}"
            );
        }
    }
    chain_verifies(&r.url, "quick");
}

/// Every replica runs deadlines, not only one: with the other paused
/// (SIGSTOP), each replica in turn closes a batch of veto windows, and its
/// own metrics count exactly its batch.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn each_replica_runs_deadlines_itself() {
    let r = Replicas::start(
        2,
        &[(
            "quick",
            &[(r#"veto_window = "30s""#, r#"veto_window = "1s""#)],
        )],
    );
    let agent = r.key("quick", "agent", None);
    let auditor = r.key("quick", "auditor", Some("audit@quick.example"));
    let signal = |s: &Served, signal: i32| {
        // SAFETY: signalling a child process this test started.
        assert_eq!(unsafe { libc::kill(s.pid() as i32, signal) }, 0);
    };
    for (runner, paused) in [(0, 1), (1, 0)] {
        signal(&r.served[paused], libc::SIGSTOP);
        for i in 0..5 {
            let body = paid_by(
                "quick",
                &format!("r{runner}-{i}"),
                &format!("agent-{runner}-{i}"),
                "data_access",
                "4.99",
            );
            let answer = authorize(r.base(runner), agent.clone(), body).await;
            assert_eq!(answer.body["status"], "pending_veto", "{}", answer.text);
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let waiting = get(&r.served[runner], "/v1/approvals", &auditor).await.body;
            if waiting.as_array().is_some_and(Vec::is_empty) {
                break;
            }
            assert!(Instant::now() < deadline, "still waiting: {waiting}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        signal(&r.served[paused], libc::SIGCONT);
    }
    for served in &r.served {
        let scraped = call(
            "GET",
            &format!("{}/metrics", served.base),
            Some(crate::service::METRICS_TOKEN),
            None,
            "",
        )
        .await;
        let line = "tiergate_deadlines_processed_total{status=\"executed\"} 5";
        assert!(scraped.text.contains(line), "{line}: {}", scraped.text);
    }
    chain_verifies(&r.url, "quick");
}

/// The $89 hire of another agent, asked of `s` for `tenant`: it waits for
/// an owner's approval.
pub(crate) async fn ask_to_hire(s: &Served, key: &str, tenant: &str) -> Response {
    let hire = post(
        s,
        "/v1/authorizations",
        key,
        &payment(tenant, "hire", "89.00", "agent_hire", "known"),
    )
    .await;
    assert_eq!(hire.body["status"], "awaiting_approval", "{}", hire.text);
    hire
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_approval_on_one_replica_is_seen_by_all() {
    let r = Replicas::start(3, &[("acme", &[])]);
    let agent = r.key("acme", "agent", None);
    let alice = r.key("acme", "approver", Some("alice@acme.example"));
    let hire = ask_to_hire(&r.served[0], &agent, "acme").await;
    let inboxes = |state: &'static str| {
        let r = &r;
        let alice = alice.clone();
        async move {
            for s in &r.served {
                let listed = get(s, "/v1/approvals", &alice).await.body;
                let ids: Vec<&str> = listed
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|a| a["transaction"]["id"].as_str().unwrap())
                    .collect();
                let want: &[&str] = if state == "waiting" { &["hire"] } else { &[] };
                assert_eq!(ids, want, "{} shows {listed}", s.base);
            }
        }
    };
    inboxes("waiting").await;
    let approved = verdict(&r.served[1], &alice, &hire.body, "approve", "checked").await;
    assert_eq!(approved.body["status"], "executed", "{}", approved.text);
    inboxes("decided").await;
    for s in &r.served {
        let seen = get(s, "/v1/authorizations/hire", &alice).await;
        assert_eq!(seen.body["status"], "executed", "{}", seen.text);
    }
    // A second verdict on another replica is refused: it was decided.
    let again = verdict(&r.served[2], &alice, &hire.body, "reject", "late").await;
    assert_eq!(again.status, 409, "{}", again.text);
}

#[test]
fn a_bad_or_unreachable_store_url_is_named_and_fails_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let unreachable = format!("postgres://tg:s3cret@127.0.0.1:{port}/tg");
    for (store, says) in [
        (
            unreachable.as_str(),
            "cannot connect to PostgreSQL at 127.0.0.1",
        ),
        (
            "postgres://tg@127.0.0.1:notaport/tg",
            "the PostgreSQL URL is not valid",
        ),
    ] {
        let out = crate::tiergate_command()
            .args(["serve", "--listen", "127.0.0.1:0", "--no-demo-tenant"])
            .args(["--store", store, "--data-dir"])
            .arg(dir.path())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success());
        assert!(stderr.contains(says), "{stderr}");
        assert!(
            stderr.contains("cannot open the store postgres://"),
            "{stderr}"
        );
        assert!(!stderr.contains("s3cret"), "{stderr}");
        let out = crate::tiergate_command()
            .args(["keys", "list", "--tenant", "acme", "--store", store])
            .output()
            .unwrap();
        assert!(!out.status.success());
        assert!(String::from_utf8_lossy(&out.stderr).contains(says));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rules_activated_on_one_replica_are_served_by_all() {
    let r = Replicas::start(3, &[("acme", &[])]);
    let agent = r.key("acme", "agent", None);
    let admin = r.key("acme", "admin", Some("ops@acme.example"));
    let before = authorize(
        r.base(1),
        agent.clone(),
        payment("acme", "before", "0.02", "embeddings", "verified"),
    )
    .await;
    assert_eq!(before.body["status"], "executed", "{}", before.text);

    // New rules on replica 0: nothing above one cent may move.
    let dir = tempfile::tempdir().unwrap();
    let strict = tenant_file(
        dir.path(),
        "acme",
        &[(
            r#"limit = "5000.00", escalate_to"#,
            r#"limit = "0.01", escalate_to"#,
        )],
    );
    let config = std::fs::read_to_string(strict).unwrap();
    let activated = post(
        &r.served[0],
        "/v1/rules",
        &admin,
        &json!({"policy": "seed-tiers", "config": config}),
    )
    .await;
    assert_eq!(activated.status, 200, "{}", activated.text);

    // Every other replica serves them within a few polls.
    for i in [1, 2] {
        let deadline = Instant::now() + Duration::from_secs(15);
        let mut n = 0;
        loop {
            n += 1;
            let id = format!("after-{i}-{n}");
            let a = authorize(
                r.base(i),
                agent.clone(),
                payment("acme", &id, "0.02", "embeddings", "verified"),
            )
            .await;
            if a.body["status"] == "blocked" {
                assert_eq!(
                    a.body["escalations"][0]["guardrail"], "max_per_transaction",
                    "{}",
                    a.text
                );
                break;
            }
            assert_eq!(a.body["status"], "executed", "{}", a.text);
            assert!(
                Instant::now() < deadline,
                "replica {i} still serves the old rules"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    // The activation is recorded once, however many replicas took it up.
    let store = tiergate_cli::Location::Postgres(r.url.clone())
        .open()
        .unwrap();
    let activations: Vec<_> = store
        .events("acme", None)
        .unwrap()
        .into_iter()
        .filter(|e| e.event.kind == "policy_activated")
        .collect();
    assert_eq!(
        activations.len(),
        2,
        "the start's and the new rules': {activations:?}"
    );
    assert_eq!(
        activations[1]
            .event
            .actor
            .as_deref()
            .map(|a| a.ends_with("ops@acme.example")),
        Some(true)
    );
    chain_verifies(&r.url, "acme");
}
