//! `tiergate serve` over real HTTP on loopback: the article's scenario, every
//! role's permissions and refusals, tenant isolation, bad requests, policy
//! upload and activation, concurrency against a budget, metrics, and a
//! restart with payments still waiting.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// A running `tiergate serve`, killed on drop.
pub(crate) struct Served {
    child: Child,
    pub(crate) base: String,
    pub(crate) data: PathBuf,
    pub(crate) keys: Value,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The metrics token every service in the tests is started with.
pub(crate) const METRICS_TOKEN: &str = "metrics-token-of-the-tests";

impl Served {
    /// Starts the binary on a free port over `data`, with extra arguments,
    /// and the demo tenant unless they say `--no-demo-tenant`.
    pub(crate) fn start(data: &Path, extra: &[&str]) -> Served {
        Self::start_with_env(data, extra, &[])
    }

    /// [`start`](Self::start) with a settings file of `settings` (TOML).
    pub(crate) fn start_with_settings(data: &Path, extra: &[&str], settings: &str) -> Served {
        std::fs::create_dir_all(data).unwrap();
        let file = data.join("serve-settings.toml");
        std::fs::write(&file, settings).unwrap();
        let mut args = vec!["--config", file.to_str().unwrap()];
        args.extend_from_slice(extra);
        Self::start_with_env(data, &args, &[])
    }

    /// The address it listens on, for raw sockets.
    pub(crate) fn addr(&self) -> String {
        self.base.trim_start_matches("http://").to_string()
    }

    /// [`start`](Self::start) with extra environment variables.
    pub(crate) fn start_with_env(data: &Path, extra: &[&str], env: &[(&str, &str)]) -> Served {
        // The demo tenant, unless the test says it wants none.
        let demo: &[&str] = if extra.contains(&"--no-demo-tenant") {
            &[]
        } else {
            &["--demo-tenant"]
        };
        let mut child = crate::tiergate_command()
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data)
            .args(demo)
            .args(extra)
            .env("TIERGATE_METRICS_TOKEN", METRICS_TOKEN)
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("tiergate serve starts");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let first = lines
            .next()
            .expect("a first line")
            .expect("readable stdout");
        let base = first
            .strip_prefix("tiergate serving on ")
            .unwrap_or_else(|| panic!("unexpected first line: {first}"))
            .to_string();
        // Keep draining stdout so the service never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        let keys = std::fs::read_to_string(data.join("demo-keys.json"))
            .ok()
            .map(|t| serde_json::from_str(&t).unwrap())
            .unwrap_or(Value::Null);
        Served {
            child,
            base,
            data: data.to_path_buf(),
            keys,
        }
    }

    /// The process id, to signal it.
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    pub(crate) fn key(&self, role: &str) -> String {
        self.keys[role].as_str().expect("a demo key").to_string()
    }

    /// Stops the service with SIGTERM and waits for it: a graceful shutdown.
    pub(crate) fn terminate(mut self) -> std::process::ExitStatus {
        // SAFETY: sending a signal to our own child process.
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
        self.child.wait().unwrap()
    }

    /// Kills the service outright, as a crash would.
    pub(crate) fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Creates a key with the CLI against the service's store.
pub(crate) fn create_key(data: &Path, tenant: &str, role: &str, subject: Option<&str>) -> String {
    // An agent key is bound to one agent; one for any agent is a platform key.
    let role = match (role, subject) {
        ("agent", None) => "platform",
        _ => role,
    };
    let platform = format!("platform@{tenant}.example");
    let subject = subject.or((role == "platform").then_some(platform.as_str()));
    let mut cmd = crate::tiergate_command();
    cmd.args([
        "keys", "create", "--tenant", tenant, "--role", role, "--store",
    ])
    .arg(data.join("tiergate.db"));
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

/// A tenant configuration file: acme's rules under another id, with changes.
pub(crate) fn tenant_file(dir: &Path, tenant: &str, edits: &[(&str, &str)]) -> PathBuf {
    let mut text = include_str!("../../examples/tenants/acme.toml")
        .replace(r#"tenant = "acme""#, &format!(r#"tenant = "{tenant}""#));
    for (from, to) in edits {
        assert!(text.contains(from), "{from}");
        text = text.replace(from, to);
    }
    let path = dir.join(format!("{tenant}.toml"));
    std::fs::write(&path, text).unwrap();
    path
}

pub(crate) struct Response {
    pub(crate) status: u16,
    pub(crate) body: Value,
    pub(crate) text: String,
}

pub(crate) async fn call(
    method: &str,
    url: &str,
    key: Option<&str>,
    content_type: Option<&str>,
    body: impl Into<reqwest::Body>,
) -> Response {
    try_call(method, url, key, content_type, body)
        .await
        .expect("the service answers")
}

/// [`call`], giving back a failure to send: a service may answer before it
/// has read a large body and close the connection while it is still sent.
pub(crate) async fn try_call(
    method: &str,
    url: &str,
    key: Option<&str>,
    content_type: Option<&str>,
    body: impl Into<reqwest::Body>,
) -> Result<Response, reqwest::Error> {
    let client = reqwest::Client::new();
    let mut request = client.request(method.parse().unwrap(), url).body(body);
    if let Some(k) = key {
        request = request.bearer_auth(k);
    }
    if let Some(ct) = content_type {
        request = request.header("content-type", ct);
    }
    let response = request.send().await?;
    let status = response.status().as_u16();
    let text = response.text().await?;
    let body = serde_json::from_str(&text).unwrap_or(Value::Null);
    Ok(Response { status, body, text })
}

pub(crate) async fn get(s: &Served, path: &str, key: &str) -> Response {
    call("GET", &format!("{}{path}", s.base), Some(key), None, "").await
}

pub(crate) async fn post(s: &Served, path: &str, key: &str, body: &Value) -> Response {
    call(
        "POST",
        &format!("{}{path}", s.base),
        Some(key),
        Some("application/json"),
        body.to_string(),
    )
    .await
}

pub(crate) fn payment(tenant: &str, id: &str, amount: &str, category: &str, trust: &str) -> Value {
    json!({
        "id": id, "tenant": tenant, "agent": "procurement-agent-prod", "amount": amount,
        "currency": "USDC", "category": category, "recipient": vendor_of(category),
        "recipient_trust": trust, "justification": "EURC liquidity analysis for MiCA compliance report",
    })
}

/// The recipient acme's and the demo tenant's registry lists for a
/// category (the article's vendors), or an unregistered one.
pub(crate) fn vendor_of(category: &str) -> String {
    match category {
        "embeddings" => "embeddings.vendor.example".into(),
        "search" => "search.vendor.example".into(),
        "data_access" => "data.vendor.example".into(),
        "compute" => "cloud.vendor.example".into(),
        "agent_hire" => "analysis-agent-beta.example".into(),
        other => format!("{other}.vendor.example"),
    }
}

/// An owner's `act` on the payment `auth` (as the API showed it).
pub(crate) async fn verdict(
    s: &Served,
    key: &str,
    auth: &Value,
    act: &str,
    reason: &str,
) -> Response {
    let tx = auth["transaction"]["id"].as_str().unwrap();
    post(
        s,
        &format!("/v1/approvals/{tx}/{act}"),
        key,
        &json!({"reason": reason, "content_hash": auth["content_hash"]}),
    )
    .await
}

fn error_code(r: &Response) -> &str {
    r.body["error"]["code"].as_str().unwrap_or("")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_articles_day_over_http() {
    let dir = tempfile::tempdir().unwrap();
    let s = Served::start(dir.path(), &[]);
    let agent = s.key("agent");
    let mut tiers = Vec::new();
    for line in include_str!("../../examples/article-day.jsonl").lines() {
        let mut tx: Value = serde_json::from_str(line).unwrap();
        tx["tenant"] = json!("demo");
        let r = post(&s, "/v1/authorizations", &agent, &tx).await;
        assert_eq!(r.status, 201, "{}", r.text);
        tiers.push((
            r.body["tier"].as_str().unwrap().to_string(),
            r.body["status"].as_str().unwrap().to_string(),
        ));
    }
    let expected = [
        ("autonomous", "executed"),
        ("autonomous", "executed"),
        ("supervised", "pending_veto"),
        ("supervised", "pending_veto"),
        ("collaborative", "awaiting_approval"),
        ("prohibited", "blocked"),
    ];
    let got: Vec<(&str, &str)> = tiers
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    assert_eq!(got, expected);

    // The same request again is the same answer, not a second payment.
    let mut again: Value = serde_json::from_str(
        include_str!("../../examples/article-day.jsonl")
            .lines()
            .next()
            .unwrap(),
    )
    .unwrap();
    again["tenant"] = json!("demo");
    let r = post(&s, "/v1/authorizations", &agent, &again).await;
    assert_eq!(r.status, 200, "{}", r.text);

    // The owner sees the $89 hire waiting, approves it, and it executes.
    let waiting = get(&s, "/v1/approvals", &s.key("approver")).await;
    let hire = waiting
        .body
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["transaction"]["id"] == "tx-005")
        .unwrap()
        .clone();
    assert_eq!(hire["transaction"]["amount"], "89.00");
    let approved = verdict(
        &s,
        &s.key("approver"),
        &hire,
        "approve",
        "analysis is in budget",
    )
    .await;
    assert_eq!(approved.status, 200, "{}", approved.text);
    assert_eq!(approved.body["status"], "executed");
    assert!(approved.body["execution_ref"].as_str().is_some());
    // A second verdict on it is refused.
    let twice = verdict(&s, &s.key("second_approver"), &hire, "approve", "me too").await;
    assert_eq!(twice.status, 409, "{}", twice.text);

    // The auditor sees the whole chain of it, and the chain verifies.
    let chain = get(&s, "/v1/audit/transactions/tx-005", &s.key("auditor")).await;
    let kinds: Vec<&str> = chain.body["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert!(
        kinds.starts_with(&[
            "authorized",
            "owner_notified",
            "approved",
            "executing",
            "executed"
        ]),
        "{kinds:?}"
    );
    let verified = get(&s, "/v1/audit/verify", &s.key("auditor")).await;
    assert_eq!(verified.body["ok"], true, "{}", verified.text);
    let csv = get(
        &s,
        "/v1/audit/records?format=csv&tier=collaborative",
        &s.key("auditor"),
    )
    .await;
    assert_eq!(csv.status, 200);
    assert!(csv.text.starts_with("audit_id,tenant,"), "{}", csv.text);
    assert_eq!(csv.text.lines().count(), 2, "{}", csv.text);
    assert!(
        csv.text.contains(&agent[3..19]),
        "the calling key is recorded: {}",
        csv.text
    );
    let today = tiergate_core::store::utc_day(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64,
    );
    let report = get(
        &s,
        &format!("/v1/reports/daily?day={today}"),
        &s.key("auditor"),
    )
    .await;
    assert_eq!(
        report.body["by_tier"]["collaborative"]["total"], "89.00",
        "{}",
        report.text
    );

    let metrics = call(
        "GET",
        &format!("{}/metrics", s.base),
        Some(METRICS_TOKEN),
        None,
        "",
    )
    .await;
    assert_eq!(metrics.status, 200);
    assert!(
        metrics
            .text
            .contains(r#"tiergate_decisions_total{tier="prohibited",status="blocked"} 1"#),
        "{}",
        metrics.text
    );
    assert!(
        metrics
            .text
            .contains(r#"tiergate_pending_approvals{status="pending_veto"} 2"#),
        "{}",
        metrics.text
    );
    assert!(
        metrics.text.contains("tiergate_policy_seconds_count 6"),
        "{}",
        metrics.text
    );
    // Each payment was classified before the write lock; the decision was
    // kept, or made again inside if an answer had changed meanwhile.
    let early: u64 = metrics
        .text
        .lines()
        .filter(|l| l.starts_with("tiergate_early_decisions_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum();
    assert_eq!(early, 6, "{}", metrics.text);
    assert!(
        metrics
            .text
            .contains(r#"tiergate_early_decisions_total{kept="true"}"#),
        "{}",
        metrics.text
    );
    assert!(
        metrics
            .text
            .contains("tiergate_http_requests_total{route=\"/v1/authorizations\",code=\"201\"} 6"),
        "{}",
        metrics.text
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_role_may_do_its_part_and_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let s = Served::start(dir.path(), &[]);
    let (agent, approver, auditor, admin) = (
        s.key("agent"),
        s.key("approver"),
        s.key("auditor"),
        s.key("admin"),
    );
    let hire = post(
        &s,
        "/v1/authorizations",
        &agent,
        &payment("demo", "r1", "89.00", "agent_hire", "known"),
    )
    .await;
    assert_eq!(hire.status, 201);
    let hire = hire.body;

    // Authorizing is the agent's alone.
    for key in [&approver, &auditor, &admin] {
        let r = post(
            &s,
            "/v1/authorizations",
            key,
            &payment("demo", "r2", "1.00", "embeddings", "verified"),
        )
        .await;
        assert_eq!(
            (r.status, error_code(&r)),
            (403, "wrong_role"),
            "{}",
            r.text
        );
    }
    // Deciding is the approver's alone.
    for key in [&agent, &auditor, &admin] {
        let r = verdict(&s, key, &hire, "approve", "ok").await;
        assert_eq!(
            (r.status, error_code(&r)),
            (403, "wrong_role"),
            "{}",
            r.text
        );
    }
    // Reading the audit trail is the auditor's and admin's.
    for key in [&agent, &approver] {
        let r = get(&s, "/v1/audit/records", key).await;
        assert_eq!(r.status, 403, "{}", r.text);
        let r = get(&s, "/v1/audit/verify", key).await;
        assert_eq!(r.status, 403, "{}", r.text);
    }
    for key in [&auditor, &admin] {
        assert_eq!(get(&s, "/v1/audit/records", key).await.status, 200);
    }
    // Policy changes are the admin's.
    for key in [&agent, &approver, &auditor] {
        let r = call(
            "POST",
            &format!("{}/v1/policies", s.base),
            Some(key),
            Some("application/wasm"),
            b"\0asm".to_vec(),
        )
        .await;
        assert_eq!(r.status, 403, "{}", r.text);
    }
    // An agent reads what it submitted, not what another key submitted.
    let other_agent = create_key(&s.data, "demo", "agent", None);
    assert_eq!(get(&s, "/v1/authorizations/r1", &agent).await.status, 200);
    assert_eq!(
        get(&s, "/v1/authorizations/r1", &other_agent).await.status,
        404
    );
    let listed = get(&s, "/v1/authorizations", &other_agent).await;
    assert_eq!(listed.body.as_array().unwrap().len(), 0);
    // An agent key bound to one agent speaks only for it.
    let bound = create_key(&s.data, "demo", "agent", Some("research-agent"));
    let r = post(
        &s,
        "/v1/authorizations",
        &bound,
        &payment("demo", "r3", "1.00", "embeddings", "verified"),
    )
    .await;
    assert_eq!(
        (r.status, r.body["error"]["field"].as_str()),
        (403, Some("agent")),
        "{}",
        r.text
    );

    // An owner never decides a payment they requested.
    let mut own = payment("demo", "r4", "89.00", "agent_hire", "known");
    own["agent"] = json!("alice@demo.example");
    let own = post(&s, "/v1/authorizations", &s.key("platform"), &own)
        .await
        .body;
    let r = verdict(&s, &approver, &own, "approve", "mine").await;
    assert_eq!(
        (r.status, error_code(&r)),
        (403, "own_payment"),
        "{}",
        r.text
    );

    // No key, a made-up key, a revoked key.
    let r = call("GET", &format!("{}/v1/approvals", s.base), None, None, "").await;
    assert_eq!(r.status, 401);
    let r = get(&s, "/v1/approvals", "tg_k0000000000000000_00").await;
    assert_eq!(r.status, 401);
    let key_id = other_agent.split('_').nth(1).unwrap().to_string();
    let revoke = crate::tiergate_command()
        .args(["keys", "revoke", "--tenant", "demo", &key_id, "--store"])
        .arg(s.data.join("tiergate.db"))
        .output()
        .unwrap();
    assert!(revoke.status.success());
    let r = get(&s, "/v1/authorizations", &other_agent).await;
    assert_eq!(r.status, 401);
    assert!(
        r.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("revoked"),
        "{}",
        r.text
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_of_one_tenant_sees_nothing_of_another() {
    let dir = tempfile::tempdir().unwrap();
    let globex = tenant_file(dir.path(), "globex", &[]);
    let s = Served::start(
        &dir.path().join("data"),
        &["--tenant", globex.to_str().unwrap()],
    );
    let g_agent = create_key(&s.data, "globex", "agent", None);
    let g_admin = create_key(&s.data, "globex", "admin", Some("ops@globex.example"));
    let theirs = post(
        &s,
        "/v1/authorizations",
        &g_agent,
        &payment("globex", "g1", "89.00", "agent_hire", "known"),
    )
    .await;
    assert_eq!(theirs.status, 201, "{}", theirs.text);
    let theirs = theirs.body;

    // The demo tenant's own payment, dated today like globex's.
    let ours = post(
        &s,
        "/v1/authorizations",
        &s.key("agent"),
        &payment("demo", "d1", "77.00", "agent_hire", "known"),
    )
    .await;
    assert_eq!(ours.body["status"], "awaiting_approval", "{}", ours.text);
    let today = tiergate_core::store::utc_day(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64,
    );
    let ids = |r: &Response| -> Vec<String> {
        r.body
            .as_array()
            .unwrap_or_else(|| panic!("a list: {}", r.text))
            .iter()
            .map(|a| a["transaction"]["id"].as_str().unwrap().to_string())
            .collect()
    };

    // Every endpoint, with every demo key: globex's payment does not exist,
    // and each list is exactly the demo tenant's.
    for role in ["agent", "approver", "auditor", "admin"] {
        let key = s.key(role);
        let reader = role == "auditor" || role == "admin";
        let r = get(&s, "/v1/authorizations/g1", &key).await;
        assert_eq!(
            (r.status, error_code(&r)),
            (404, "not_found"),
            "{role}: {}",
            r.text
        );
        let r = get(&s, "/v1/audit/transactions/g1", &key).await;
        let expected = if role == "agent" {
            (403, "wrong_role")
        } else {
            (404, "not_found")
        };
        assert_eq!((r.status, error_code(&r)), expected, "{role}: {}", r.text);

        let r = get(&s, "/v1/authorizations", &key).await;
        assert_eq!(r.status, 200, "{role}: {}", r.text);
        assert_eq!(ids(&r), ["d1"], "{role}");
        let r = get(&s, "/v1/approvals", &key).await;
        if role == "agent" {
            assert_eq!(
                (r.status, error_code(&r)),
                (403, "wrong_role"),
                "{}",
                r.text
            );
        } else {
            assert_eq!(r.status, 200, "{role}: {}", r.text);
            assert_eq!(ids(&r), ["d1"], "{role}");
        }
        let r = get(&s, "/v1/audit/records", &key).await;
        let report = get(&s, &format!("/v1/reports/daily?day={today}"), &key).await;
        if reader {
            assert_eq!(r.status, 200, "{role}: {}", r.text);
            let rows: Vec<Value> = r
                .text
                .lines()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect();
            assert_eq!(rows.len(), 1, "{role}: {}", r.text);
            assert_eq!(rows[0]["transaction_id"], "d1", "{role}");
            assert_eq!(report.status, 200, "{role}: {}", report.text);
            assert_eq!(report.body["tenant"], "demo", "{role}");
            let tally = &report.body["by_tier"]["collaborative"];
            assert_eq!(
                (tally["count"].as_u64(), tally["total"].as_str()),
                (Some(1), Some("77.00")),
                "only the demo tenant's payment of today: {}",
                report.text
            );
        } else {
            assert_eq!(
                (r.status, error_code(&r)),
                (403, "wrong_role"),
                "{role}: {}",
                r.text
            );
            assert_eq!(
                (report.status, error_code(&report)),
                (403, "wrong_role"),
                "{role}: {}",
                report.text
            );
        }
        let r = verdict(&s, &key, &theirs, "approve", "not mine").await;
        let expected = if role == "approver" {
            (404, "not_found")
        } else {
            (403, "wrong_role")
        };
        assert_eq!((r.status, error_code(&r)), expected, "{role}: {}", r.text);
    }
    // The demo agent cannot pay in globex's name; the demo admin cannot set its rules.
    let r = post(
        &s,
        "/v1/authorizations",
        &s.key("agent"),
        &payment("globex", "g2", "1.00", "embeddings", "verified"),
    )
    .await;
    assert_eq!(
        (r.status, error_code(&r)),
        (403, "tenant_mismatch"),
        "{}",
        r.text
    );
    let config = std::fs::read_to_string(&globex).unwrap();
    let r = post(
        &s,
        "/v1/rules",
        &s.key("admin"),
        &json!({"policy": "seed-tiers", "config": config}),
    )
    .await;
    assert_eq!(
        (r.status, error_code(&r)),
        (403, "tenant_mismatch"),
        "{}",
        r.text
    );
    // And globex's admin sees only globex's rules.
    let rules = get(&s, "/v1/rules", &g_admin).await;
    assert_eq!(rules.body["rules"]["tenant"], "globex", "{}", rules.text);
    let verify = get(&s, "/v1/audit/verify", &g_admin).await;
    assert_eq!(verify.body["tenant"], "globex");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_clear_errors_and_amounts_stay_exact() {
    let dir = tempfile::tempdir().unwrap();
    let s = Served::start(dir.path(), &[]);
    let agent = s.key("platform");
    let url = format!("{}/v1/authorizations", s.base);
    let check = |r: &Response, status: u16, code: &str| {
        assert_eq!(r.status, status, "{}", r.text);
        assert_eq!(error_code(r), code, "{}", r.text);
        assert!(!r.body["error"]["message"].as_str().unwrap().is_empty());
    };
    let r = call(
        "POST",
        &url,
        Some(&agent),
        Some("application/json"),
        "{\"id\": ",
    )
    .await;
    check(&r, 400, "invalid_json");
    let r = call(
        "POST",
        &url,
        Some(&agent),
        Some("text/plain"),
        payment("demo", "b1", "1.00", "embeddings", "verified").to_string(),
    )
    .await;
    check(&r, 415, "unsupported_media_type");
    let huge = json!({"id": "b2", "justification": "x".repeat(200_000)});
    let r = call(
        "POST",
        &url,
        Some(&agent),
        Some("application/json"),
        huge.to_string(),
    )
    .await;
    check(&r, 413, "body_too_large");
    let mut unknown = payment("demo", "b3", "1.00", "embeddings", "verified");
    unknown["discount"] = json!("100%");
    let r = post(&s, "/v1/authorizations", &agent, &unknown).await;
    check(&r, 422, "invalid_transaction");
    assert_eq!(r.body["error"]["field"], "discount", "{}", r.text);
    let mut missing = payment("demo", "b4", "1.00", "embeddings", "verified");
    missing.as_object_mut().unwrap().remove("amount");
    let r = post(&s, "/v1/authorizations", &agent, &missing).await;
    check(&r, 422, "invalid_transaction");
    assert_eq!(r.body["error"]["field"], "amount", "{}", r.text);
    let r = call("POST", &url, Some(&agent), Some("application/json"),
        r#"{"id":"b5","tenant":"demo","agent":"a","amount":1e2,"currency":"USDC","category":"embeddings","recipient":"r","recipient_trust":"verified"}"#).await;
    check(&r, 422, "invalid_transaction");
    let mut euros = payment("demo", "b6", "1.00", "embeddings", "verified");
    euros["currency"] = json!("EURC");
    let r = post(&s, "/v1/authorizations", &agent, &euros).await;
    check(&r, 422, "currency_mismatch");
    assert_eq!(r.body["error"]["field"], "currency");
    // The same id with other content is a conflict, not a silent overwrite.
    post(
        &s,
        "/v1/authorizations",
        &agent,
        &payment("demo", "b7", "1.00", "embeddings", "verified"),
    )
    .await;
    let r = post(
        &s,
        "/v1/authorizations",
        &agent,
        &payment("demo", "b7", "2.00", "embeddings", "verified"),
    )
    .await;
    check(&r, 409, "id_conflict");
    // Unknown fields in a verdict, and an unknown verdict.
    let r = post(
        &s,
        "/v1/approvals/b7/approve",
        &s.key("approver"),
        &json!({"reason": "x", "content_hash": "y", "force": true}),
    )
    .await;
    check(&r, 400, "invalid_json");
    assert_eq!(r.body["error"]["field"], "force");
    let r = post(
        &s,
        "/v1/approvals/b7/overrule",
        &s.key("approver"),
        &json!({"reason": "x", "content_hash": "y"}),
    )
    .await;
    check(&r, 404, "not_found");
    let r = get(&s, "/v1/nowhere", &agent).await;
    check(&r, 404, "not_found");

    // Float-looking numbers are read exactly, never through f64.
    let r = call("POST", &url, Some(&agent), Some("application/json"),
        r#"{"id":"f1","tenant":"demo","agent":"a","amount":0.30000000000000004441,"currency":"USDC","category":"embeddings","recipient":"r","recipient_trust":"verified"}"#).await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.body["transaction"]["amount"], "0.30000000000000004441");
    let r = call("POST", &url, Some(&agent), Some("application/json"),
        r#"{"id":"f2","tenant":"demo","agent":"a","amount":47.10,"currency":"USDC","category":"compute","recipient":"r","recipient_trust":"known"}"#).await;
    assert_eq!(r.body["transaction"]["amount"], "47.10", "{}", r.text);
    assert!(r.text.contains(r#""amount":"47.10""#), "{}", r.text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policies_are_uploaded_checked_and_activated_and_a_bad_upload_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let s = Served::start(dir.path(), &[]);
    let admin = s.key("admin");
    let before = get(&s, "/v1/rules", &admin).await;
    assert_eq!(before.status, 200, "{}", before.text);
    let upload = |bytes: Vec<u8>| {
        let url = format!("{}/v1/policies", s.base);
        let admin = admin.clone();
        async move { call("POST", &url, Some(&admin), Some("application/wasm"), bytes).await }
    };
    for junk in [
        b"not wasm at all".to_vec(),
        b"\0asm\x01\0\0\0".to_vec(),
        vec![0u8; 100],
    ] {
        let r = upload(junk).await;
        assert_eq!(
            (r.status, error_code(&r)),
            (422, "invalid_policy"),
            "{}",
            r.text
        );
    }
    let r = call(
        "POST",
        &format!("{}/v1/policies", s.base),
        Some(&admin),
        Some("application/json"),
        "{}",
    )
    .await;
    assert_eq!(r.status, 415);
    assert_eq!(
        get(&s, "/v1/rules", &admin).await.body,
        before.body,
        "nothing changed"
    );

    let wasm = tiergate_cli::bundled::get("seed-tiers").unwrap().to_vec();
    let r = upload(wasm).await;
    assert_eq!(r.status, 201, "{}", r.text);
    let digest = r.body["digest"].as_str().unwrap().to_string();

    let demo = include_str!("../../host/server/src/demo-tenant.toml");
    let loose = demo.replace(
        r#"config = { sanctioned_jurisdictions = ["KP", "IR", "SY"] }"#,
        r#"config = { supervised = { max_amount = "100.00", categories = ["agent_hire"], min_trust = "known", max_per_window = 20, window = "1h" } }"#,
    );
    let broken = demo.replace(
        r#"config = { sanctioned_jurisdictions = ["KP", "IR", "SY"] }"#,
        r#"config = { no_such_setting = 1 }"#,
    );
    let r = post(
        &s,
        "/v1/rules/check",
        &admin,
        &json!({"policy": digest, "config": broken}),
    )
    .await;
    assert_eq!(
        (r.status, error_code(&r)),
        (422, "invalid_config"),
        "{}",
        r.text
    );
    let r = post(
        &s,
        "/v1/rules",
        &admin,
        &json!({"policy": digest, "config": broken}),
    )
    .await;
    assert_eq!(r.status, 422, "{}", r.text);
    let r = post(
        &s,
        "/v1/rules",
        &admin,
        &json!({"policy": "sha256:0000", "config": loose}),
    )
    .await;
    assert_eq!(
        (r.status, error_code(&r)),
        (422, "invalid_policy"),
        "{}",
        r.text
    );
    assert_eq!(
        get(&s, "/v1/rules", &admin).await.body,
        before.body,
        "nothing changed"
    );
    let r = post(
        &s,
        "/v1/rules/check",
        &admin,
        &json!({"policy": digest, "config": loose}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);

    let hire = |id: &'static str| payment("demo", id, "89.00", "agent_hire", "known");
    let r = post(&s, "/v1/authorizations", &s.key("agent"), &hire("p1")).await;
    assert_eq!(r.body["tier"], "collaborative");
    let r = post(
        &s,
        "/v1/rules",
        &admin,
        &json!({"policy": digest, "config": loose}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(
        r.body["audit_id"].as_str().unwrap().starts_with("cfg-"),
        "{}",
        r.text
    );
    assert_eq!(r.body["rules"]["version"], 2);
    let r = post(&s, "/v1/authorizations", &s.key("agent"), &hire("p2")).await;
    assert_eq!(
        r.body["tier"], "supervised",
        "the new rules are in force: {}",
        r.text
    );

    // The activation is on the record, with who made it.
    let records = get(&s, "/v1/audit/verify", &s.key("auditor")).await;
    assert_eq!(records.body["ok"], true);
    drop(s);
    // A restart serves the activated rules.
    let s = Served::start(dir.path(), &[]);
    let r = post(&s, "/v1/authorizations", &s.key("agent"), &hire("p3")).await;
    assert_eq!(r.body["tier"], "supervised", "{}", r.text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_authorizations_against_a_budget_let_exactly_the_allowed_number_through() {
    let dir = tempfile::tempdir().unwrap();
    let tight = tenant_file(
        dir.path(),
        "tight",
        &[(
            r#"tenant_daily_budget = { limit = "5000.00" }"#,
            r#"tenant_daily_budget = { limit = "8.00" }"#,
        )],
    );
    let s = Served::start(
        &dir.path().join("data"),
        &["--tenant", tight.to_str().unwrap(), "--no-demo-tenant"],
    );
    let agent = create_key(&s.data, "tight", "agent", None);
    let mut tasks = Vec::new();
    for i in 0..80 {
        let (base, agent) = (s.base.clone(), agent.clone());
        tasks.push(tokio::spawn(async move {
            let body = payment("tight", &format!("c{i}"), "1.00", "embeddings", "verified");
            call(
                "POST",
                &format!("{base}/v1/authorizations"),
                Some(&agent),
                Some("application/json"),
                body.to_string(),
            )
            .await
        }));
    }
    let mut executed = 0;
    for t in tasks {
        let r = t.await.unwrap();
        assert_eq!(r.status, 201, "{}", r.text);
        match r.body["status"].as_str().unwrap() {
            "executed" => executed += 1,
            "awaiting_approval" => {
                assert_eq!(r.body["escalations"][0]["guardrail"], "tenant_daily_budget")
            }
            other => panic!("unexpected status {other}"),
        }
    }
    assert_eq!(executed, 8, "8.00 allows exactly eight payments of 1.00");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_crash_waiting_payments_execute_or_expire_on_time() {
    let dir = tempfile::tempdir().unwrap();
    let quick = tenant_file(
        dir.path(),
        "quick",
        &[
            (r#"veto_window = "30s""#, r#"veto_window = "2s""#),
            (r#"timeout = "4h""#, r#"timeout = "3s""#),
        ],
    );
    let args = ["--tenant", quick.to_str().unwrap(), "--no-demo-tenant"];
    let data = dir.path().join("data");
    let s = Served::start(&data, &args);
    let agent = create_key(&s.data, "quick", "agent", None);
    let auditor = create_key(&s.data, "quick", "auditor", Some("audit@quick.example"));
    let veto = post(
        &s,
        "/v1/authorizations",
        &agent,
        &payment("quick", "w1", "47.00", "compute", "known"),
    )
    .await;
    assert_eq!(veto.body["status"], "pending_veto", "{}", veto.text);
    let approval = post(
        &s,
        "/v1/authorizations",
        &agent,
        &payment("quick", "w2", "89.00", "agent_hire", "known"),
    )
    .await;
    assert_eq!(approval.body["status"], "awaiting_approval");
    s.kill();

    std::thread::sleep(Duration::from_secs(4));
    let s = Served::start(&data, &args);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let w1 = get(&s, "/v1/authorizations/w1", &auditor).await.body;
        let w2 = get(&s, "/v1/authorizations/w2", &auditor).await.body;
        if w1["status"] == "executed" && w2["status"] == "expired" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "still {} and {}",
            w1["status"],
            w2["status"]
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Each deadline was processed once: one executed event, one expiry.
    let events = get(&s, "/v1/audit/transactions/w1", &auditor).await.body;
    let executed = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "executed")
        .count();
    assert_eq!(executed, 1);
    // A graceful stop exits cleanly.
    let status = s.terminate();
    assert!(status.success(), "{status:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_document_is_served_and_matches_the_one_in_docs() {
    let dir = tempfile::tempdir().unwrap();
    let s = Served::start(dir.path(), &[]);
    let served = call("GET", &format!("{}/openapi.json", s.base), None, None, "").await;
    assert_eq!(served.status, 200);
    let doc = &served.body;
    for path in [
        "/v1/authorizations",
        "/v1/authorizations/{tx_id}",
        "/v1/approvals",
        "/v1/approvals/{tx_id}/{act}",
        "/v1/audit/records",
        "/v1/audit/verify",
        "/v1/rules",
        "/v1/policies",
        "/metrics",
    ] {
        assert!(doc["paths"].get(path).is_some(), "{path} is not documented");
    }
    let amount = &doc["components"]["schemas"]["Transaction"]["properties"]["amount"];
    assert_eq!(
        amount["type"], "string",
        "amounts are exact decimal text: {amount}"
    );
    assert!(doc["components"]["securitySchemes"]["api_key"].is_object());
    // The copy in docs/ is the generated one: regenerate it with
    // `cargo run -q -- openapi > docs/openapi.json` when the API changes.
    let committed: Value = serde_json::from_str(include_str!("../../docs/openapi.json")).unwrap();
    assert_eq!(
        doc, &committed,
        "docs/openapi.json is stale: run `cargo run -q -- openapi > docs/openapi.json`"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_graceful_stop_answers_what_it_accepted_and_loses_nothing_it_answered() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    let dir = tempfile::tempdir().unwrap();
    let s = Served::start(dir.path(), &[]);
    let (base, agent) = (s.base.clone(), s.key("agent"));
    // Clients pay one after another on keep-alive connections until the
    // service stops answering.
    let answered_so_far = Arc::new(AtomicUsize::new(0));
    let mut clients = Vec::new();
    for c in 0..8 {
        let (base, agent, counter) = (base.clone(), agent.clone(), answered_so_far.clone());
        clients.push(tokio::spawn(async move {
            let client = reqwest::Client::new();
            let mut outcomes = Vec::new();
            for i in 0..500 {
                let id = format!("g{c}-{i}");
                let body = payment("demo", &id, "0.02", "embeddings", "verified");
                let sent = client
                    .post(format!("{base}/v1/authorizations"))
                    .bearer_auth(&agent)
                    .header("content-type", "application/json")
                    .body(body.to_string())
                    .send()
                    .await;
                let stop = sent.is_err();
                outcomes.push((id, sent.map(|r| r.status().as_u16())));
                if stop {
                    break;
                }
                counter.fetch_add(1, Ordering::Relaxed);
            }
            outcomes
        }));
    }
    // Stop while payments are being answered.
    let deadline = Instant::now() + Duration::from_secs(60);
    while answered_so_far.load(Ordering::Relaxed) < 40 {
        assert!(Instant::now() < deadline, "the clients got no answers");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let status = s.terminate();
    assert!(status.success(), "a graceful stop exits 0: {status:?}");
    let (mut answered, mut refused) = (Vec::new(), Vec::new());
    for client in clients {
        for (id, outcome) in client.await.unwrap() {
            match outcome {
                Ok(code) => {
                    assert_eq!(code, 201, "{id}: an accepted request is answered in full");
                    answered.push(id);
                }
                Err(e) => refused.push((id, e.to_string())),
            }
        }
    }
    assert!(answered.len() >= 40, "{} answered", answered.len());
    assert_eq!(
        refused.len(),
        8,
        "each client's last request found the service gone: {refused:?}"
    );

    let s = Served::start(dir.path(), &[]);
    let auditor = s.key("auditor");
    for id in &answered {
        let r = get(&s, &format!("/v1/authorizations/{id}"), &auditor).await;
        assert_eq!(
            r.body["status"], "executed",
            "{id} was answered, so it is kept: {}",
            r.text
        );
    }
    // A request that got no answer was not taken: nothing of it was
    // recorded, so the agent's retry is the first of it.
    for (id, error) in &refused {
        let r = get(&s, &format!("/v1/authorizations/{id}"), &auditor).await;
        assert_eq!(
            r.status, 404,
            "{id} got no answer ({error}) yet was recorded: {}",
            r.text
        );
    }
    let verified = get(&s, "/v1/audit/verify", &auditor).await;
    assert_eq!(verified.body["ok"], true, "{}", verified.text);
}

#[test]
fn settings_come_from_the_file_unless_a_flag_or_the_environment_says_otherwise() {
    let dir = tempfile::tempdir().unwrap();
    let from_file = dir.path().join("from-file");
    let settings = dir.path().join("serve.toml");
    std::fs::write(
        &settings,
        format!(
            "listen = \"127.0.0.1:0\"\ndata_dir = \"{}\"\n",
            from_file.display()
        ),
    )
    .unwrap();
    // The file alone: its data directory is used.
    let mut child = crate::tiergate_command()
        .args(["serve", "--config"])
        .arg(&settings)
        .env_remove("TIERGATE_DATA_DIR")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let first = BufReader::new(child.stdout.take().unwrap())
        .lines()
        .next()
        .unwrap()
        .unwrap();
    assert!(
        first.starts_with("tiergate serving on http://127.0.0.1:"),
        "{first}"
    );
    let _ = child.kill();
    let _ = child.wait();
    assert!(from_file.join("tiergate.db").exists());
    // The environment wins over the file, and the flag over both.
    let from_env = dir.path().join("from-env");
    let from_flag = dir.path().join("from-flag");
    for (env, flag, expected) in [
        (Some(&from_env), None, &from_env),
        (Some(&from_env), Some(&from_flag), &from_flag),
    ] {
        let mut cmd = crate::tiergate_command();
        cmd.args(["serve", "--config"])
            .arg(&settings)
            .stdout(Stdio::piped());
        if let Some(e) = env {
            cmd.env("TIERGATE_DATA_DIR", e);
        }
        if let Some(f) = flag {
            cmd.arg("--data-dir").arg(f);
        }
        let mut child = cmd.spawn().unwrap();
        let first = BufReader::new(child.stdout.take().unwrap())
            .lines()
            .next()
            .unwrap()
            .unwrap();
        assert!(first.starts_with("tiergate serving on"), "{first}");
        let _ = child.kill();
        let _ = child.wait();
        assert!(
            expected.join("tiergate.db").exists(),
            "{}",
            expected.display()
        );
    }
    // A settings file with an unknown key is refused by name.
    std::fs::write(&settings, "listen = \"127.0.0.1:0\"\nport = 9\n").unwrap();
    let out = crate::tiergate_command()
        .args(["serve", "--config"])
        .arg(&settings)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("port"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The cells of one CSV line (RFC 4180; no line breaks inside cells here).
fn csv_cells(line: &str) -> Vec<String> {
    let mut cells = vec![String::new()];
    let (mut quoted, mut chars) = (false, line.chars().peekable());
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                chars.next();
                cells.last_mut().unwrap().push('"');
            }
            ('"', _) => quoted = !quoted,
            (',', false) => cells.push(String::new()),
            (c, _) => cells.last_mut().unwrap().push(c),
        }
    }
    cells
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn csv_exports_neutralise_cells_a_spreadsheet_would_run_as_formulas() {
    let dir = tempfile::tempdir().unwrap();
    let s = Served::start(dir.path(), &[]);
    let mut tx = payment("demo", "+tx-1", "89.00", "agent_hire", "known");
    tx["agent"] = json!("=HYPERLINK(\"http://evil.example\",\"open\")");
    tx["recipient"] = json!("@SUM(1+1)");
    tx["network"] = json!("-2+3");
    let r = post(&s, "/v1/authorizations", &s.key("platform"), &tx).await;
    assert_eq!(r.status, 201, "{}", r.text);

    let api = get(&s, "/v1/audit/records?format=csv", &s.key("auditor")).await;
    assert_eq!(api.status, 200, "{}", api.text);
    let cli = crate::tiergate_command()
        .args([
            "audit", "export", "--format", "csv", "--tenant", "demo", "--store",
        ])
        .arg(s.data.join("tiergate.db"))
        .output()
        .unwrap();
    assert!(
        cli.status.success(),
        "{}",
        String::from_utf8_lossy(&cli.stderr)
    );
    for (source, text) in [
        ("API", api.text),
        ("CLI", String::from_utf8(cli.stdout).unwrap()),
    ] {
        let mut lines = text.lines();
        let header = csv_cells(lines.next().unwrap());
        let row = csv_cells(lines.next().unwrap());
        assert_eq!(header.len(), row.len(), "{source}: {text}");
        let cell = |name: &str| row[header.iter().position(|h| h == name).unwrap()].as_str();
        // Each formula is text with a leading quote; the amount is untouched.
        assert_eq!(
            cell("agent"),
            "'=HYPERLINK(\"http://evil.example\",\"open\")",
            "{source}"
        );
        assert_eq!(cell("recipient"), "'@SUM(1+1)", "{source}");
        assert_eq!(cell("network"), "'-2+3", "{source}");
        assert_eq!(cell("transaction_id"), "'+tx-1", "{source}");
        assert_eq!(cell("amount"), "89.00", "{source}");
        // And no cell of the line starts with a formula character unquoted.
        let line = text.lines().nth(1).unwrap();
        for start in ["=", "+", "-", "@"] {
            assert!(
                !line.starts_with(start) && !line.contains(&format!(",{start}")),
                "{source}: {line}"
            );
        }
    }
}

/// Reads from `stream` until the service closes it, or fails the test when
/// `guard` passes first (a hang, not a measurement: the bounds under test
/// are a second, the guard half a minute). What was read, and whether the
/// service closed it.
fn read_until_closed(stream: &mut std::net::TcpStream, guard: Duration) -> (String, bool) {
    use std::io::Read;
    stream.set_read_timeout(Some(guard)).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return (String::from_utf8_lossy(&got).into_owned(), true),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {
                return (String::from_utf8_lossy(&got).into_owned(), true);
            }
            Err(_) => return (String::from_utf8_lossy(&got).into_owned(), false),
        }
    }
}

/// Reads one whole response (head and a `Content-Length` body) off a
/// keep-alive connection.
fn read_response(stream: &mut std::net::TcpStream, guard: Duration) -> String {
    use std::io::Read;
    stream.set_read_timeout(Some(guard)).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let text = String::from_utf8_lossy(&got).into_owned();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let length = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().parse::<usize>().unwrap())
                })
                .unwrap_or(0);
            if body.len() >= length {
                return text;
            }
        }
        let n = stream
            .read(&mut buf)
            .unwrap_or_else(|e| panic!("no whole answer ({e}); got {text:?}"));
        assert!(n > 0, "closed mid-answer: {text:?}");
        got.extend_from_slice(&buf[..n]);
    }
}

const GUARD: Duration = Duration::from_secs(30);

/// Bounds of a second, and everything else far out of the way.
const QUICK_BOUNDS: &str =
    "header_timeout_ms = 1000\nbody_timeout_ms = 1000\nidle_timeout_ms = 600000\n";

#[test]
fn a_client_that_never_finishes_its_request_head_is_disconnected() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let s = Served::start_with_settings(dir.path(), &[], QUICK_BOUNDS);
    // Half a header line, then nothing.
    let mut slow = std::net::TcpStream::connect(s.addr()).unwrap();
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: a")
        .unwrap();
    let (got, closed) = read_until_closed(&mut slow, GUARD);
    assert!(
        closed,
        "still open after {GUARD:?} without a whole head: {got:?}"
    );
    // A connection that says nothing at all is closed by the same bound.
    let mut silent = std::net::TcpStream::connect(s.addr()).unwrap();
    let (_, closed) = read_until_closed(&mut silent, GUARD);
    assert!(closed, "a silent connection is still open after {GUARD:?}");
    // Meanwhile a whole request is answered as ever.
    let mut quick = std::net::TcpStream::connect(s.addr()).unwrap();
    quick
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let answer = read_response(&mut quick, GUARD);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

#[test]
fn a_request_body_that_does_not_arrive_in_time_is_refused_and_its_connection_closed() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let s = Served::start_with_settings(dir.path(), &[], QUICK_BOUNDS);
    let mut slow = std::net::TcpStream::connect(s.addr()).unwrap();
    write!(
        slow,
        "POST /v1/authorizations HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\n\
         Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{{\"id\": ",
        s.key("agent")
    )
    .unwrap();
    let (got, closed) = read_until_closed(&mut slow, GUARD);
    assert!(got.starts_with("HTTP/1.1 408"), "{got:?}");
    assert!(got.contains(r#""code":"body_timeout""#), "{got:?}");
    assert!(closed, "the connection stays open: {got:?}");
}

#[test]
fn connections_beyond_the_limit_wait_for_a_free_one_while_the_others_are_served() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let s = Served::start_with_settings(
        dir.path(),
        &[],
        "max_connections = 2\nheader_timeout_ms = 600000\nidle_timeout_ms = 600000\n",
    );
    let request = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n";
    let mut open: Vec<std::net::TcpStream> = (0..2)
        .map(|_| {
            let mut c = std::net::TcpStream::connect(s.addr()).unwrap();
            c.write_all(request).unwrap();
            assert!(read_response(&mut c, GUARD).starts_with("HTTP/1.1 200"));
            c
        })
        .collect();
    // A third connection is taken by the kernel, not by the service.
    let mut third = std::net::TcpStream::connect(s.addr()).unwrap();
    third.write_all(request).unwrap();
    // The two open ones are served meanwhile...
    for _ in 0..3 {
        for c in &mut open {
            c.write_all(request).unwrap();
            assert!(read_response(c, GUARD).starts_with("HTTP/1.1 200"));
        }
    }
    // ...and the third has no answer while they are open.
    third.set_nonblocking(true).unwrap();
    let mut byte = [0u8; 1];
    let early = std::io::Read::read(&mut third, &mut byte);
    assert!(
        matches!(&early, Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
        "a connection beyond the limit was served: {early:?}"
    );
    third.set_nonblocking(false).unwrap();
    // One closes; the third is served.
    drop(open.pop());
    let answer = read_response(&mut third, GUARD);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

#[test]
fn a_stop_ends_within_its_timeout_even_with_a_client_stuck_mid_request() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let s = Served::start_with_settings(
        dir.path(),
        &[],
        "shutdown_timeout_ms = 1000\nheader_timeout_ms = 600000\nbody_timeout_ms = 600000\nidle_timeout_ms = 600000\n",
    );
    // One client stuck in its request's head, one in its body.
    let mut head = std::net::TcpStream::connect(s.addr()).unwrap();
    head.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    let mut body = std::net::TcpStream::connect(s.addr()).unwrap();
    write!(
        body,
        "POST /v1/authorizations HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\n\
         Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{{",
        s.key("agent")
    )
    .unwrap();
    // A request on a third connection shows the other two were taken in.
    let mut probe = std::net::TcpStream::connect(s.addr()).unwrap();
    probe
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    assert!(read_response(&mut probe, GUARD).starts_with("HTTP/1.1 200"));

    let pid = s.child.id() as i32;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(s.terminate());
    });
    let status = rx.recv_timeout(GUARD).unwrap_or_else(|_| {
        // SAFETY: killing our own child, which the test gave up on.
        unsafe { libc::kill(pid, libc::SIGKILL) };
        panic!("still stopping after {GUARD:?}, against a 1 s shutdown timeout")
    });
    assert!(status.success(), "{status:?}");
    for stuck in [&mut head, &mut body] {
        let (_, closed) = read_until_closed(stuck, GUARD);
        assert!(closed, "a stuck client's connection outlived the service");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_over_its_share_of_running_requests_is_told_to_retry_and_others_are_served() {
    use std::io::Write;

    let dir = tempfile::tempdir().unwrap();
    let globex_rules = tenant_file(dir.path(), "globex", &[]);
    let s = Served::start_with_settings(
        &dir.path().join("data"),
        &["--tenant", globex_rules.to_str().unwrap()],
        "admission_per_tenant = 1\nadmission_wait_ms = 200\nbody_timeout_ms = 600000\n",
    );
    let globex = create_key(&s.data, "globex", "agent", None);
    // A demo request holds the demo tenant's one turn while its body is late.
    let body = payment("demo", "t1", "0.02", "embeddings", "verified").to_string();
    let (first, rest) = body.split_at(10);
    let mut holding = std::net::TcpStream::connect(s.addr()).unwrap();
    write!(
        holding,
        "POST /v1/authorizations HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{first}",
        s.key("agent"),
        body.len()
    )
    .unwrap();
    // Its next request waits its turn briefly, then is told to retry.
    let deadline = Instant::now() + GUARD;
    let mut attempt = 0;
    let refused = loop {
        attempt += 1;
        let tx = payment(
            "demo",
            &format!("t2-{attempt}"),
            "0.02",
            "embeddings",
            "verified",
        );
        let r = post(&s, "/v1/authorizations", &s.key("agent"), &tx).await;
        // Until the late request is taken in, these may run.
        if r.status != 201 {
            break r;
        }
        assert!(Instant::now() < deadline, "never refused: {}", r.text);
    };
    assert_eq!(
        (refused.status, error_code(&refused)),
        (503, "overloaded"),
        "{}",
        refused.text
    );
    assert!(
        refused.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("retry"),
        "{}",
        refused.text
    );
    let retry_after = reqwest::Client::new()
        .get(format!("{}/v1/authorizations/t1", s.base))
        .bearer_auth(s.key("agent"))
        .send()
        .await
        .unwrap();
    assert_eq!(retry_after.status(), 503);
    assert_eq!(retry_after.headers()["retry-after"], "1");
    // Another tenant's request runs meanwhile (refused only for its tenant).
    let r = post(
        &s,
        "/v1/authorizations",
        &globex,
        &payment("globex", "o1", "0.02", "embeddings", "verified"),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.text);
    // The late body arrives: that request is answered, and the turn is free.
    holding.write_all(rest.as_bytes()).unwrap();
    let answer = read_response(&mut holding, GUARD);
    assert!(answer.starts_with("HTTP/1.1 201"), "{answer}");
    let r = post(
        &s,
        "/v1/authorizations",
        &s.key("agent"),
        &payment("demo", "t3", "0.02", "embeddings", "verified"),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_refusal_is_the_json_error_body_and_the_document_states_what_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let s = Served::start(dir.path(), &[]);
    let auditor = s.key("auditor");
    for (path, code, field) in [
        (
            "/v1/audit/records?nonsense=1",
            "invalid_query",
            Some("nonsense"),
        ),
        ("/v1/audit/records?format=", "invalid_query", Some("format")),
        (
            "/v1/authorizations?status=ready",
            "invalid_query",
            Some("status"),
        ),
        ("/v1/authorizations?limit=-1", "invalid_query", None),
        (
            "/v1/reports/daily?day=2026-02-30",
            "invalid_query",
            Some("day"),
        ),
    ] {
        let r = get(&s, path, &auditor).await;
        assert_eq!(
            (r.status, error_code(&r)),
            (400, code),
            "{path}: {}",
            r.text
        );
        assert_eq!(
            r.body["error"]["field"].as_str(),
            field,
            "{path}: {}",
            r.text
        );
    }
    // A method a path does not take: JSON too, saying which it takes.
    let r = reqwest::Client::new()
        .delete(format!("{}/v1/audit/verify", s.base))
        .bearer_auth(&auditor)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 405);
    assert_eq!(r.headers()["allow"], "GET,HEAD");
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/json")
    );
    let body: Value = serde_json::from_str(&r.text().await.unwrap()).unwrap();
    assert_eq!(body["error"]["code"], "method_not_allowed", "{body}");

    // The document says so: what is refused is outside what it allows,
    // and every keyed operation states 401 and 503.
    let doc = call("GET", &format!("{}/openapi.json", s.base), None, None, "")
        .await
        .body;
    let param = |path: &str, name: &str| -> Value {
        doc["paths"][path]["get"]["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == name)
            .unwrap_or_else(|| panic!("{path} {name}"))
            .clone()
    };
    assert_eq!(
        param("/v1/audit/records", "format")["schema"]["enum"],
        json!(["jsonl", "csv"])
    );
    let status = param("/v1/authorizations", "status");
    let pattern = status["schema"]["pattern"].as_str().unwrap();
    assert!(
        pattern.contains("pending_veto") && !pattern.contains("ready"),
        "{pattern}"
    );
    assert_eq!(param("/v1/reports/daily", "day")["required"], true);
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            if operation.get("security").is_some() {
                for code in ["401", "503"] {
                    assert!(
                        operation["responses"].get(code).is_some(),
                        "{method} {path}: {code}"
                    );
                }
            }
        }
    }
}
