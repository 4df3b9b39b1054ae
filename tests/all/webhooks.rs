//! Notifications delivered to a tenant's webhook, against a real local HTTP
//! receiver: signed with a secret the service generated, retried with
//! backoff, at least once with a stable event id, visible when they keep
//! failing, resumed after a restart; never to loopback, private or metadata
//! addresses unless the operator allows them.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, StatusCode};
use serde_json::{Value, json};
use tiergate_core::governance::TenantConfig;

use crate::pipeline::{ACME, World};
use crate::service::{Served, call, create_key, get, payment, post, tenant_file};
use crate::stores::{Kind, on_every_store};

/// What the receiver answers a failed attempt with: never shown to the tenant.
const RECEIVER_ANSWER: &str = "backend db-7.internal:5432 is down";

/// One request the receiver got.
#[derive(Clone, Debug)]
struct Received {
    event_id: String,
    content_type: String,
    timestamp: u64,
    signature: String,
    body: String,
}

impl Received {
    /// Whether one of the signatures verifies with `secret`, computed here
    /// independently of the service's code.
    fn signed_with(&self, secret: &str) -> bool {
        use hmac::Mac;
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
        mac.update(format!("{}.{}", self.timestamp, self.body).as_bytes());
        let hex: String = mac
            .finalize()
            .into_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        self.signatures().contains(&format!("v1={hex}"))
    }

    /// The `v1=` values of the signature header.
    fn signatures(&self) -> Vec<String> {
        self.signature.split(',').map(str::to_string).collect()
    }
}

/// A local HTTP receiver that fails its first `fail_first` requests (all of
/// them when `None`), and holds requests unanswered while `hang` is set.
struct Receiver {
    addr: SocketAddr,
    got: Arc<Mutex<Vec<Received>>>,
    hang: Arc<AtomicBool>,
}

impl Receiver {
    fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }

    fn got(&self) -> Vec<Received> {
        self.got.lock().unwrap().clone()
    }
}

async fn receiver(fail_first: Option<usize>) -> Receiver {
    let got: Arc<Mutex<Vec<Received>>> = Arc::default();
    let hang: Arc<AtomicBool> = Arc::default();
    let (seen, hanging) = (got.clone(), hang.clone());
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: HeaderMap, body: String| {
            let (seen, hanging) = (seen.clone(), hanging.clone());
            async move {
                let header = |name: &str| {
                    headers
                        .get(name)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or_default()
                        .to_string()
                };
                let count = {
                    let mut seen = seen.lock().unwrap();
                    seen.push(Received {
                        event_id: header("tiergate-event-id"),
                        content_type: header("content-type"),
                        timestamp: header("tiergate-timestamp").parse().unwrap_or(0),
                        signature: header("tiergate-signature"),
                        body,
                    });
                    seen.len()
                };
                if hanging.load(Ordering::SeqCst) {
                    tokio::time::sleep(Duration::from_secs(60)).await;
                }
                if fail_first.is_none_or(|n| count <= n) {
                    (StatusCode::SERVICE_UNAVAILABLE, RECEIVER_ANSWER)
                } else {
                    (StatusCode::NO_CONTENT, "")
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    Receiver { addr, got, hang }
}

/// Fast retries (200 ms, 400 ms; three attempts), and the test receivers'
/// loopback addresses allowed.
const SETTINGS: &str = "webhook_backoff_ms = 200\nwebhook_max_attempts = 3\nwebhook_allow_networks = [\"127.0.0.0/8\"]\n";

/// The tenant `hooked` and service settings (`settings`, written to
/// serve.toml).
fn setup(dir: &Path, settings: &str) -> (PathBuf, PathBuf) {
    let config = tenant_file(dir, "hooked", &[]);
    let path = dir.join("serve.toml");
    std::fs::write(&path, settings).unwrap();
    (config, path)
}

fn start(data: &Path, config: &Path, settings: &Path) -> Served {
    start_with(data, config, settings, &[])
}

fn start_with(data: &Path, config: &Path, settings: &Path, extra: &[&str]) -> Served {
    let mut args = vec![
        "--no-demo-tenant",
        "--tenant",
        config.to_str().unwrap(),
        "--config",
        settings.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    Served::start(data, &args)
}

/// Adds a webhook over the API: its id and the secret, shown only now.
async fn add_webhook(s: &Served, admin: &str, url: &str) -> (String, String) {
    let r = post(s, "/v1/webhooks", admin, &json!({ "url": url })).await;
    assert_eq!(r.status, 201, "{}", r.text);
    let id = r.body["webhook"]["id"].as_str().unwrap().to_string();
    let secret = r.body["secret"].as_str().unwrap().to_string();
    (id, secret)
}

async fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Polls the deliveries endpoint until it lists at least `n` in `state`.
async fn wait_for_n(s: &Served, key: &str, state: &str, n: usize) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let r = get(s, &format!("/v1/webhooks/deliveries?state={state}"), key).await;
        assert_eq!(r.status, 200, "{}", r.text);
        if let Some(rows) = r.body.as_array().filter(|a| a.len() >= n) {
            return rows.clone();
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {n} deliveries {state}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn wait_for_state(s: &Served, key: &str, state: &str) -> Vec<Value> {
    wait_for_n(s, key, state, 1).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn owners_are_notified_by_a_signed_webhook_retried_until_it_lands() {
    // Fails twice, then accepts: the third attempt lands.
    let r = receiver(Some(2)).await;
    let dir = tempfile::tempdir().unwrap();
    let (config, settings) = setup(dir.path(), SETTINGS);
    let s = start(&dir.path().join("data"), &config, &settings);
    let agent = create_key(&s.data, "hooked", "agent", None);
    let admin = create_key(&s.data, "hooked", "admin", Some("ops@hooked.example"));
    let (id, secret) = add_webhook(&s, &admin, &r.url()).await;
    // The service made the secret: long, random, and shown only once.
    let hex = secret.strip_prefix("whsec_").expect("a whsec_ secret");
    assert_eq!(hex.len(), 64, "{secret}");
    assert!(hex.bytes().all(|b| b.is_ascii_hexdigit()), "{secret}");
    let listed = get(&s, "/v1/webhooks", &admin).await;
    assert_eq!(listed.status, 200, "{}", listed.text);
    assert_eq!(listed.body[0]["id"], id.as_str());
    assert_eq!(listed.body[0]["url"], r.url().as_str());
    assert!(!listed.text.contains(hex), "{}", listed.text);
    let (elsewhere, other) = add_webhook_elsewhere(&s, &admin).await;
    assert_ne!(secret, other, "each webhook has a secret of its own");
    let removed = call(
        "DELETE",
        &format!("{}/v1/webhooks/{elsewhere}", s.base),
        Some(&admin),
        None,
        "",
    )
    .await;
    assert_eq!(removed.status, 200, "{}", removed.text);

    let a = post(
        &s,
        "/v1/authorizations",
        &agent,
        &payment("hooked", "h1", "47.00", "compute", "known"),
    )
    .await;
    assert_eq!(a.body["status"], "pending_veto", "{}", a.text);

    let delivered = wait_for_state(&s, &admin, "delivered").await;
    let got = r.got();
    assert_eq!(got.len(), 3, "two failures, then the delivery: {got:?}");
    let first = &got[0];
    // The same event each time: receivers deduplicate on its id.
    assert!(
        got.iter()
            .all(|g| g.event_id == first.event_id && g.body == first.body)
    );
    assert!(first.event_id.starts_with("hooked:"), "{}", first.event_id);
    assert_eq!(first.content_type, "application/json");
    let body: Value = serde_json::from_str(&first.body).unwrap();
    assert_eq!(body["id"], first.event_id.as_str());
    assert_eq!(body["kind"], "owner_notified");
    assert_eq!(body["tenant"], "hooked");
    assert_eq!(body["tx_id"], "h1");
    assert_eq!(body["to"], "owners");
    assert!(body["created_ms"].as_u64().unwrap() > 0, "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("47.00 USDC"),
        "{body}"
    );
    // The timestamp is the sending time in Unix seconds.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!(now.abs_diff(first.timestamp) < 60, "{}", first.timestamp);
    // One signature, by the webhook's own secret over "<timestamp>.<body>"...
    for g in &got {
        assert_eq!(g.signatures().len(), 1, "{}", g.signature);
        assert!(g.signed_with(&secret), "{}", g.signature);
        assert_eq!(
            g.signature,
            tiergate_server::webhook_signature(secret.as_bytes(), g.timestamp, &g.body)
        );
    }
    // ...and not by another webhook's secret, nor over another body.
    assert!(!first.signed_with(&other));
    let mut forged = first.clone();
    forged.body = first.body.replace("47.00", "4.70");
    assert!(!forged.signed_with(&secret));

    assert_eq!(delivered.len(), 1, "{delivered:?}");
    assert_eq!(delivered[0]["attempts"], 3);
    assert_eq!(delivered[0]["event_id"], first.event_id.as_str());
    assert_eq!(delivered[0]["url"], r.url().as_str());
    assert!(delivered[0]["delivered_ms"].as_u64().is_some());
    assert!(delivered[0]["last_error"].is_null());
    let metrics = call(
        "GET",
        &format!("{}/metrics", s.base),
        Some(crate::service::METRICS_TOKEN),
        None,
        "",
    )
    .await;
    for state in ["failing", "given_up"] {
        let line = format!(r#"tiergate_webhook_deliveries{{state="{state}"}} 0"#);
        assert!(metrics.text.contains(&line), "{line}: {}", metrics.text);
    }
}

/// A second webhook of the tenant, to a URL that never resolves.
async fn add_webhook_elsewhere(s: &Served, admin: &str) -> (String, String) {
    add_webhook(s, admin, "https://receiver.invalid/hook").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_that_keeps_failing_is_given_up_visibly_and_deliveries_survive_a_restart() {
    let r = receiver(None).await;
    let dir = tempfile::tempdir().unwrap();
    let (config, settings) = setup(dir.path(), SETTINGS);
    let data = dir.path().join("data");
    let s = start(&data, &config, &settings);
    let agent = create_key(&s.data, "hooked", "agent", None);
    let admin = create_key(&s.data, "hooked", "admin", Some("ops@hooked.example"));
    let auditor = create_key(&s.data, "hooked", "auditor", Some("audit@hooked.example"));
    add_webhook(&s, &admin, &r.url()).await;
    post(
        &s,
        "/v1/authorizations",
        &agent,
        &payment("hooked", "f1", "25.00", "gambling", "known"),
    )
    .await;
    let failing = wait_for_state(&s, &auditor, "failing").await;
    assert_eq!(failing[0]["attempts"], 1, "{failing:?}");
    assert!(failing[0]["next_attempt_ms"].as_u64().is_some());

    // Killed after one attempt: the restarted service carries on from the store.
    s.kill();
    let s = start(&data, &config, &settings);
    let rows = wait_for_state(&s, &auditor, "given_up").await;
    assert_eq!(
        rows.len(),
        1,
        "the blocked attempt's owner alert is given up: {rows:?}"
    );
    assert_eq!(rows[0]["kind"], "owner_alerted");
    assert_eq!(rows[0]["attempts"], 3);
    assert!(rows[0]["gave_up_ms"].as_u64().is_some(), "{rows:?}");
    assert!(rows[0]["next_attempt_ms"].is_null(), "{rows:?}");
    // The class of failure, not what the receiver answered.
    assert_eq!(rows[0]["last_error"], "status 503", "{rows:?}");
    let got = r.got();
    assert_eq!(got.len(), 3, "three attempts across the restart, no more");
    assert!(got.iter().all(|g| g.event_id == got[0].event_id));
    let metrics = call(
        "GET",
        &format!("{}/metrics", s.base),
        Some(crate::service::METRICS_TOKEN),
        None,
        "",
    )
    .await;
    for line in [
        r#"tiergate_webhook_deliveries{state="given_up"} 1"#,
        r#"tiergate_webhook_deliveries{state="failing"} 0"#,
    ] {
        assert!(metrics.text.contains(line), "{line}: {}", metrics.text);
    }
    // Nothing is retried after it was given up: by the time a second notice
    // has been tried three times and given up in turn, the first one still
    // has its three attempts.
    post(
        &s,
        "/v1/authorizations",
        &agent,
        &payment("hooked", "f2", "26.00", "gambling", "known"),
    )
    .await;
    let rows = wait_for_n(&s, &auditor, "given_up", 2).await;
    assert!(rows.iter().all(|r| r["attempts"] == 3), "{rows:?}");
    let got = r.got();
    assert_eq!(got.len(), 6, "three attempts of each notice: {got:?}");
    let first = got.iter().filter(|g| g.event_id == got[0].event_id).count();
    assert_eq!(first, 3, "{got:?}");

    let all = get(&s, "/v1/webhooks/deliveries", &auditor).await;
    assert_eq!(all.body.as_array().map(Vec::len), Some(2), "{}", all.text);
    assert!(!all.text.contains("db-7"), "{}", all.text);
    let bad = get(&s, "/v1/webhooks/deliveries?state=lost", &auditor).await;
    assert_eq!(bad.status, 400);
    let agent_view = get(&s, "/v1/webhooks/deliveries", &agent).await;
    assert_eq!(agent_view.status, 403);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_graceful_stop_does_not_wait_on_a_slow_receiver_and_the_next_start_delivers() {
    let r = receiver(Some(1)).await;
    r.hang.store(true, Ordering::SeqCst);
    let dir = tempfile::tempdir().unwrap();
    let (config, settings) = setup(dir.path(), SETTINGS);
    let data = dir.path().join("data");
    let s = start(&data, &config, &settings);
    let agent = create_key(&s.data, "hooked", "agent", None);
    let admin = create_key(&s.data, "hooked", "admin", Some("ops@hooked.example"));
    add_webhook(&s, &admin, &r.url()).await;
    post(
        &s,
        "/v1/authorizations",
        &agent,
        &payment("hooked", "g1", "47.00", "compute", "known"),
    )
    .await;
    wait_until("an attempt in flight", || !r.got().is_empty()).await;

    // The receiver holds the request; stopping does not wait for its answer.
    let stopping = Instant::now();
    let status = s.terminate();
    assert!(status.success(), "a graceful stop exits 0: {status:?}");
    assert!(
        stopping.elapsed() < Duration::from_secs(5),
        "stopped in {:?}",
        stopping.elapsed()
    );

    // The unanswered attempt is tried again as soon as the service is back,
    // under the same event id, and was not counted as a failure.
    r.hang.store(false, Ordering::SeqCst);
    let s = start(&data, &config, &settings);
    let delivered = wait_for_state(&s, &admin, "delivered").await;
    assert_eq!(delivered[0]["attempts"], 1, "{delivered:?}");
    let got = r.got();
    assert_eq!(got.len(), 2, "{got:?}");
    assert_eq!(got[0].event_id, got[1].event_id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_admin_cannot_have_notices_signed_with_a_variable_of_the_service() {
    let r = receiver(Some(0)).await;
    let witness = receiver(Some(0)).await;
    let dir = tempfile::tempdir().unwrap();
    let (config, settings) = setup(dir.path(), SETTINGS);
    let s = start(&dir.path().join("data"), &config, &settings);
    let agent = create_key(&s.data, "hooked", "agent", None);
    let admin = create_key(&s.data, "hooked", "admin", Some("ops@hooked.example"));
    // Rules naming a webhook whose secret is a variable of the service (here
    // one holding another secret of the operator's) are refused, with what
    // to do instead.
    let text = std::fs::read_to_string(&config).unwrap().replace(
        "[tiers.autonomous]",
        &format!(
            "[[webhooks]]\nurl = \"{}\"\nsecret_env = \"TIERGATE_STORE\"\n\n[tiers.autonomous]",
            r.url()
        ),
    );
    for path in ["/v1/rules/check", "/v1/rules"] {
        let a = post(
            &s,
            path,
            &admin,
            &json!({"policy": "seed-tiers", "config": text}),
        )
        .await;
        assert_eq!(
            (a.status, a.body["error"]["code"].as_str()),
            (422, Some("invalid_config")),
            "{path}: {}",
            a.text
        );
        let message = a.body["error"]["message"].as_str().unwrap();
        assert!(
            message.contains("`webhooks`") && message.contains("POST /v1/webhooks"),
            "{message}"
        );
    }
    // Nothing was sent there: by the time a notice reached a webhook the
    // admin did add, none had gone to the refused one.
    add_webhook(&s, &admin, &witness.url()).await;
    post(
        &s,
        "/v1/authorizations",
        &agent,
        &payment("hooked", "v1", "47.00", "compute", "known"),
    )
    .await;
    wait_for_state(&s, &admin, "delivered").await;
    assert_eq!(witness.got().len(), 1);
    assert!(r.got().is_empty(), "{:?}", r.got());

    // A configuration file naming webhooks does not start the service.
    let file = tenant_file(
        dir.path(),
        "legacy",
        &[(
            "[tiers.autonomous]",
            "[[webhooks]]\nurl = \"https://ops.legacy.example/hook\"\nsecret_env = \"LEGACY_SECRET\"\n\n[tiers.autonomous]",
        )],
    );
    let out = crate::tiergate_command()
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path().join("other"))
        .arg("--tenant")
        .arg(&file)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("`webhooks`") && stderr.contains("tiergate webhooks create"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_secret_signs_beside_the_old_one_until_the_overlap_ends() {
    let r = receiver(Some(0)).await;
    let dir = tempfile::tempdir().unwrap();
    let (config, settings) = setup(dir.path(), &format!("{SETTINGS}webhooks_per_tenant = 2\n"));
    let s = start(&dir.path().join("data"), &config, &settings);
    let agent = create_key(&s.data, "hooked", "agent", None);
    let admin = create_key(&s.data, "hooked", "admin", Some("ops@hooked.example"));
    let auditor = create_key(&s.data, "hooked", "auditor", Some("audit@hooked.example"));
    let (id, old) = add_webhook(&s, &admin, &r.url()).await;
    let pay = |n: usize| {
        let (s, agent) = (&s, &agent);
        async move {
            post(
                s,
                "/v1/authorizations",
                agent,
                &payment("hooked", &format!("r{n}"), "47.00", "compute", "known"),
            )
            .await
        }
    };
    pay(1).await;
    wait_until("the first notice", || r.got().len() == 1).await;
    assert!(r.got()[0].signed_with(&old));

    // Rotated with an hour's overlap: both secrets sign, the new one first.
    let rotate = |overlap: u64| {
        let (s, admin, id) = (&s, &admin, &id);
        async move {
            post(
                s,
                &format!("/v1/webhooks/{id}/rotate"),
                admin,
                &json!({ "overlap_s": overlap }),
            )
            .await
        }
    };
    let rotated = rotate(3600).await;
    assert_eq!(rotated.status, 200, "{}", rotated.text);
    let new = rotated.body["secret"].as_str().unwrap().to_string();
    assert_ne!(new, old);
    assert!(
        rotated.body["webhook"]["previous_secret_expires_ms"]
            .as_u64()
            .is_some(),
        "{}",
        rotated.text
    );
    pay(2).await;
    wait_until("the second notice", || r.got().len() == 2).await;
    let second = &r.got()[1];
    assert_eq!(second.signatures().len(), 2, "{}", second.signature);
    assert!(second.signed_with(&new) && second.signed_with(&old));
    let mut only_new = second.clone();
    only_new.signature = second.signatures()[0].clone();
    assert!(only_new.signed_with(&new), "the new secret's comes first");

    // Rotated again with no overlap: only the newest secret signs.
    let rotated = rotate(0).await;
    assert_eq!(rotated.status, 200, "{}", rotated.text);
    let newest = rotated.body["secret"].as_str().unwrap().to_string();
    pay(3).await;
    wait_until("the third notice", || r.got().len() == 3).await;
    let third = &r.got()[2];
    assert_eq!(third.signatures().len(), 1, "{}", third.signature);
    assert!(third.signed_with(&newest));
    assert!(!third.signed_with(&new) && !third.signed_with(&old));

    // Overlaps are bounded; unknown webhooks, other roles and a third
    // webhook over the tenant's limit are refused.
    let r2 = rotate(365 * 86_400).await;
    assert_eq!(r2.status, 422, "{}", r2.text);
    assert_eq!(r2.body["error"]["field"], "overlap_s", "{}", r2.text);
    let r2 = post(&s, "/v1/webhooks/wh_nope/rotate", &admin, &json!({})).await;
    assert_eq!(r2.status, 404, "{}", r2.text);
    let r2 = post(&s, "/v1/webhooks", &auditor, &json!({"url": r.url()})).await;
    assert_eq!(r2.status, 403, "{}", r2.text);
    let r2 = post(&s, "/v1/webhooks", &admin, &json!({"url": r.url()})).await;
    assert_eq!(
        (r2.status, r2.body["error"]["code"].as_str()),
        (409, Some("webhook_exists")),
        "{}",
        r2.text
    );
    add_webhook_elsewhere(&s, &admin).await;
    let r2 = post(
        &s,
        "/v1/webhooks",
        &admin,
        &json!({"url": "https://third.invalid/hook"}),
    )
    .await;
    assert_eq!(
        (r2.status, r2.body["error"]["code"].as_str()),
        (409, Some("quota_exceeded")),
        "{}",
        r2.text
    );
    assert!(r2.text.contains("webhooks_per_tenant"), "{}", r2.text);

    // Removed: what was still to be delivered is given up, and nothing new
    // is sent there.
    r.hang.store(true, Ordering::SeqCst);
    pay(4).await;
    wait_until("the fourth notice in flight", || r.got().len() == 4).await;
    let removed = call(
        "DELETE",
        &format!("{}/v1/webhooks/{id}", s.base),
        Some(&admin),
        None,
        "",
    )
    .await;
    assert_eq!(removed.status, 200, "{}", removed.text);
    let listed = get(&s, "/v1/webhooks", &admin).await;
    assert_eq!(
        listed.body.as_array().map(Vec::len),
        Some(1),
        "{}",
        listed.text
    );
    let gone = call(
        "DELETE",
        &format!("{}/v1/webhooks/{id}", s.base),
        Some(&admin),
        None,
        "",
    )
    .await;
    assert_eq!(gone.status, 404, "{}", gone.text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_to_loopback_private_link_local_and_metadata_addresses_are_refused() {
    let r = receiver(Some(0)).await;
    let dir = tempfile::tempdir().unwrap();
    // The default settings: no network is allowed beyond the public ones.
    let (config, settings) = setup(dir.path(), "");
    let s = start(&dir.path().join("data"), &config, &settings);
    let admin = create_key(&s.data, "hooked", "admin", Some("ops@hooked.example"));
    let port = r.addr.port();
    for url in [
        r.url(),
        format!("http://localhost:{port}/hook"),
        format!("http://[::1]:{port}/hook"),
        format!("http://[::ffff:127.0.0.1]:{port}/hook"),
        format!("http://0.0.0.0:{port}/hook"),
        "http://10.1.2.3/hook".to_string(),
        "http://172.16.0.1/hook".to_string(),
        "http://192.168.1.1/hook".to_string(),
        "http://100.64.0.1/hook".to_string(),
        "http://169.254.169.254/latest/meta-data/".to_string(),
        "http://[fe80::1]/hook".to_string(),
        "http://[fd00:ec2::254]/hook".to_string(),
        "http://[::ffff:169.254.169.254]/hook".to_string(),
        "http://224.0.0.1/hook".to_string(),
        "http://[ff02::1]/hook".to_string(),
        "http://2130706433/hook".to_string(),
    ] {
        let a = post(&s, "/v1/webhooks", &admin, &json!({ "url": url })).await;
        assert_eq!(
            (a.status, a.body["error"]["code"].as_str()),
            (422, Some("forbidden_address")),
            "{url}: {}",
            a.text
        );
        assert_eq!(a.body["error"]["field"], "url", "{}", a.text);
    }
    for url in [
        "ftp://ops.example/hook",
        "not a url",
        "https://u:p@ops.example/",
    ] {
        let a = post(&s, "/v1/webhooks", &admin, &json!({ "url": url })).await;
        assert_eq!(
            (a.status, a.body["error"]["code"].as_str()),
            (422, Some("invalid_webhook")),
            "{url}: {}",
            a.text
        );
        assert!(
            !a.text.contains(":p@"),
            "a password is not echoed: {}",
            a.text
        );
    }
    let listed = get(&s, "/v1/webhooks", &admin).await;
    assert_eq!(listed.body, json!([]), "{}", listed.text);
    assert!(r.got().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_name_resolving_to_loopback_is_refused_when_connecting() {
    let r = receiver(Some(0)).await;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    // Added while the operator allowed loopback...
    let (config, allowed) = setup(dir.path(), SETTINGS);
    let s = start(&data, &config, &allowed);
    let agent = create_key(&s.data, "hooked", "agent", None);
    let admin = create_key(&s.data, "hooked", "admin", Some("ops@hooked.example"));
    let port = r.addr.port();
    add_webhook(&s, &admin, &format!("http://localhost:{port}/hook")).await;
    add_webhook(&s, &admin, &r.url()).await;
    s.terminate();
    // ...then delivered after it no longer does: every address the name
    // resolves to is checked where the connection is made.
    let strict = dir.path().join("strict.toml");
    std::fs::write(
        &strict,
        "webhook_backoff_ms = 200\nwebhook_max_attempts = 2\n",
    )
    .unwrap();
    let s = start(&data, &config, &strict);
    post(
        &s,
        "/v1/authorizations",
        &agent,
        &payment("hooked", "n1", "47.00", "compute", "known"),
    )
    .await;
    let rows = wait_for_n(&s, &admin, "given_up", 2).await;
    for row in &rows {
        assert_eq!(
            row["last_error"],
            "refused address: the receiver resolves only to addresses webhooks may not reach (loopback, private, link-local, shared or reserved)",
            "{rows:?}"
        );
    }
    assert!(r.got().is_empty(), "{:?}", r.got());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn last_error_names_the_class_of_failure() {
    // A port nothing listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closed_url = format!("http://{}/hook", closed.local_addr().unwrap());
    drop(closed);
    let dir = tempfile::tempdir().unwrap();
    let (config, settings) = setup(dir.path(), SETTINGS);
    let s = start(&dir.path().join("data"), &config, &settings);
    let agent = create_key(&s.data, "hooked", "agent", None);
    let admin = create_key(&s.data, "hooked", "admin", Some("ops@hooked.example"));
    add_webhook(&s, &admin, &closed_url).await;
    add_webhook_elsewhere(&s, &admin).await;
    post(
        &s,
        "/v1/authorizations",
        &agent,
        &payment("hooked", "c1", "47.00", "compute", "known"),
    )
    .await;
    let rows = wait_for_n(&s, &admin, "given_up", 2).await;
    let error_of = |url: &str| {
        rows.iter()
            .find(|r| r["url"] == url)
            .map(|r| r["last_error"].clone())
    };
    assert_eq!(
        error_of(&closed_url),
        Some(json!("connection refused")),
        "{rows:?}"
    );
    assert_eq!(
        error_of("https://receiver.invalid/hook"),
        Some(json!("name not resolved")),
        "{rows:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_that_never_answers_is_cut_off_at_the_attempt_timeout_and_shown_as_one() {
    // The receiver takes every request and never answers; each attempt
    // ends at `webhook_timeout_ms`, not at the default 10 s.
    let silent = receiver(Some(0)).await;
    silent.hang.store(true, Ordering::SeqCst);
    let dir = tempfile::tempdir().unwrap();
    let (config, settings) = setup(dir.path(), &format!("{SETTINGS}webhook_timeout_ms = 300\n"));
    let s = start(&dir.path().join("data"), &config, &settings);
    let agent = create_key(&s.data, "hooked", "agent", None);
    let admin = create_key(&s.data, "hooked", "admin", Some("ops@hooked.example"));
    add_webhook(&s, &admin, &silent.url()).await;
    post(
        &s,
        "/v1/authorizations",
        &agent,
        &payment("hooked", "t1", "47.00", "compute", "known"),
    )
    .await;
    let rows = wait_for_state(&s, &admin, "given_up").await;
    assert_eq!(rows[0]["last_error"], json!("timeout"), "{rows:?}");
    // Each of the three attempts reached the receiver, and was cut off.
    assert_eq!(silent.got().len(), 3, "{:?}", silent.got());
}

#[test]
fn a_webhook_in_a_tenant_configuration_is_refused_with_what_to_do() {
    let with = |hook: &str| {
        ACME.replace(
            "[tiers.autonomous]",
            &format!("[[webhooks]]\n{hook}\n\n[tiers.autonomous]"),
        )
    };
    let path = Path::new("acme.toml");
    // Configurations without webhooks stay valid.
    TenantConfig::parse(ACME, path).unwrap();
    for hook in [
        "url = \"https://ops.acme.example/hook\"\nsecret_env = \"ACME_HOOK\"",
        "url = \"https://ops.acme.example/hook\"\nsecret_env = \"TIERGATE_STORE\"",
        "url = \"https://ops:hunter2@ops.acme.example/hook\"\nsecret_env = \"ACME_HOOK\"",
    ] {
        let err = TenantConfig::parse(&with(hook), path)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("`webhooks`")
                && err.contains("POST /v1/webhooks")
                && err.contains("tiergate webhooks create"),
            "{err}"
        );
        assert!(!err.contains("hunter2"), "a password is not echoed: {err}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_receiver_holds_up_no_other() {
    // One receiver never answers (the attempt times out after 10 s); the
    // other answers at once and must not wait for it.
    let silent = receiver(Some(0)).await;
    silent.hang.store(true, Ordering::SeqCst);
    let prompt = receiver(Some(0)).await;
    let dir = tempfile::tempdir().unwrap();
    let (config, settings) = setup(dir.path(), SETTINGS);
    let s = start(&dir.path().join("data"), &config, &settings);
    let agent = create_key(&s.data, "hooked", "agent", None);
    let admin = create_key(&s.data, "hooked", "admin", Some("ops@hooked.example"));
    add_webhook(&s, &admin, &silent.url()).await;
    add_webhook(&s, &admin, &prompt.url()).await;
    post(
        &s,
        "/v1/authorizations",
        &agent,
        &payment("hooked", "s1", "47.00", "compute", "known"),
    )
    .await;
    wait_until("the first notice at both receivers", || {
        !silent.got().is_empty() && !prompt.got().is_empty()
    })
    .await;

    // While the silent receiver still holds the first notice, the next one
    // reaches the prompt receiver well before that attempt times out.
    let sent = Instant::now();
    post(
        &s,
        "/v1/authorizations",
        &agent,
        &payment("hooked", "s2", "48.00", "compute", "known"),
    )
    .await;
    wait_until("the second notice at the prompt receiver", || {
        prompt.got().len() >= 2
    })
    .await;
    assert!(
        sent.elapsed() < Duration::from_secs(5),
        "delivered in {:?}",
        sent.elapsed()
    );
    let got = prompt.got();
    let body: Value = serde_json::from_str(&got[1].body).unwrap();
    assert_eq!(body["tx_id"], "s2");
    assert_ne!(got[0].event_id, got[1].event_id);
    // The silent receiver holds its attempts; none has timed out yet.
    let held: Vec<String> = silent.got().into_iter().map(|g| g.event_id).collect();
    assert!(
        held.len() <= 2 && !held[1..].contains(&held[0]),
        "no attempt retried yet: {held:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_added_later_gets_the_recent_notices_then_every_new_one() {
    let r = receiver(Some(0)).await;
    let dir = tempfile::tempdir().unwrap();
    let (config, settings) = setup(dir.path(), SETTINGS);
    let s = start(&dir.path().join("data"), &config, &settings);
    let agent = create_key(&s.data, "hooked", "agent", None);
    let admin = create_key(&s.data, "hooked", "admin", Some("ops@hooked.example"));
    // A notice written while the tenant has no webhook...
    post(
        &s,
        "/v1/authorizations",
        &agent,
        &payment("hooked", "e1", "47.00", "compute", "known"),
    )
    .await;
    assert_eq!(
        get(&s, "/v1/webhooks/deliveries", &admin).await.body,
        serde_json::json!([])
    );
    // ...is delivered once one is added (it is less than a day old),
    add_webhook(&s, &admin, &r.url()).await;
    wait_for_n(&s, &admin, "delivered", 1).await;
    // and so is every new one, each once.
    post(
        &s,
        "/v1/authorizations",
        &agent,
        &payment("hooked", "e2", "48.00", "compute", "known"),
    )
    .await;
    let delivered = wait_for_n(&s, &admin, "delivered", 2).await;
    assert_eq!(delivered.len(), 2, "{delivered:?}");
    let tx_ids: Vec<String> = r
        .got()
        .iter()
        .map(|g| {
            let body: Value = serde_json::from_str(&g.body).unwrap();
            body["tx_id"].as_str().unwrap().to_string()
        })
        .collect();
    assert_eq!(tx_ids, ["e1", "e2"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_keeps_a_receivers_secret_when_moving_it_off_the_configuration() {
    let r = receiver(Some(0)).await;
    let dir = tempfile::tempdir().unwrap();
    let (config, settings) = setup(dir.path(), SETTINGS);
    let s = start(&dir.path().join("data"), &config, &settings);
    let agent = create_key(&s.data, "hooked", "agent", None);
    let admin = create_key(&s.data, "hooked", "admin", Some("ops@hooked.example"));
    let db = s.data.join("tiergate.db");
    let webhooks = |args: &[&str], env: &[(&str, &str)]| {
        let out = crate::tiergate_command()
            .arg("webhooks")
            .args(args)
            .arg("--store")
            .arg(&db)
            .envs(env.iter().copied())
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    // The secret the receiver already checks, from the operator's environment.
    let kept = "whsec-kept-0123456789abcdef";
    let (ok, out, err) = webhooks(
        &[
            "create",
            "--tenant",
            "hooked",
            "--url",
            &r.url(),
            "--secret-env",
            "KEPT_SECRET",
        ],
        &[("KEPT_SECRET", kept)],
    );
    assert!(ok, "{err}");
    assert!(
        !out.contains(kept),
        "a secret the operator gave is not printed: {out}"
    );
    let (ok, listed, err) = webhooks(&["list", "--tenant", "hooked"], &[]);
    assert!(ok, "{err}");
    assert!(
        listed.contains(&r.url()) && !listed.contains(kept),
        "{listed}"
    );
    // A variable that is not set is refused by name.
    let (ok, _, err) = webhooks(
        &[
            "create",
            "--tenant",
            "hooked",
            "--url",
            "https://other.invalid/hook",
            "--secret-env",
            "UNSET_SECRET",
        ],
        &[],
    );
    assert!(!ok && err.contains("UNSET_SECRET"), "{err}");

    post(
        &s,
        "/v1/authorizations",
        &agent,
        &payment("hooked", "k1", "47.00", "compute", "known"),
    )
    .await;
    wait_for_state(&s, &admin, "delivered").await;
    assert!(r.got()[0].signed_with(kept));

    // Created by the CLI without a secret given: one is generated and printed once.
    let (ok, out, err) = webhooks(
        &[
            "create",
            "--tenant",
            "hooked",
            "--url",
            "https://new.invalid/hook",
        ],
        &[],
    );
    assert!(ok, "{err}");
    assert!(out.trim().starts_with("whsec_"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_on_one_store_send_each_notice_once() {
    let r = receiver(Some(0)).await;
    let dir = tempfile::tempdir().unwrap();
    let url = tiergate_e2e::postgres::fresh_database();
    let (config, settings) = setup(dir.path(), SETTINGS);
    let replicas: Vec<Served> = ["one", "two"]
        .iter()
        .map(|name| {
            start_with(
                &dir.path().join(name),
                &config,
                &settings,
                &["--store", &url],
            )
        })
        .collect();
    let key = |role: &str, subject: Option<&str>| {
        let mut cmd = crate::tiergate_command();
        cmd.args([
            "keys", "create", "--tenant", "hooked", "--role", role, "--store", &url,
        ]);
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
    };
    let agent = key("agent", Some("procurement-agent-prod"));
    let admin = key("admin", Some("ops@hooked.example"));
    let (_, secret) = add_webhook(&replicas[0], &admin, &r.url()).await;
    for i in 0..10 {
        let a = post(
            &replicas[i % 2],
            "/v1/authorizations",
            &agent,
            &payment("hooked", &format!("p{i}"), "47.00", "compute", "known"),
        )
        .await;
        assert_eq!(a.status, 201, "{}", a.text);
    }
    let delivered = wait_for_n(&replicas[1], &admin, "delivered", 10).await;
    assert!(
        delivered.iter().all(|d| d["attempts"] == 1),
        "{delivered:?}"
    );
    let got = r.got();
    let ids: HashSet<&str> = got.iter().map(|g| g.event_id.as_str()).collect();
    assert_eq!(
        (ids.len(), got.len()),
        (10, 10),
        "each notice sent once, by one replica: {got:?}"
    );
    assert!(got.iter().all(|g| g.signed_with(&secret)));
}

/// Two hosts claiming due deliveries at the same moment, over and over:
/// each delivery goes to exactly one of them.
fn two_hosts_claiming_at_once_take_each_delivery_once(kind: Kind) {
    let w = World::on(kind, ACME);
    let (one, two) = (w.backend(), w.backend());
    let url = "http://127.0.0.1:9/hook";
    let mut claimed_by = [0usize; 2];
    for round in 0..20 {
        for i in 0..3 {
            // Supervised: each notifies the owners.
            w.authorize(&format!("s{round}-{i}"), "47.00", "compute", "known");
        }
        one.queue_deliveries("acme", url, 0).unwrap();
        let now = 1_782_518_400_000 + 10_000;
        let start = Arc::new(Barrier::new(2));
        let hosts: Vec<_> = [one.clone(), two.clone()]
            .into_iter()
            .map(|host| {
                let start = start.clone();
                std::thread::spawn(move || {
                    start.wait();
                    host.claim_deliveries(now, 60_000, 100).unwrap()
                })
            })
            .collect();
        let got: Vec<Vec<u64>> = hosts
            .into_iter()
            .map(|h| h.join().unwrap().into_iter().map(|d| d.entry.id).collect())
            .collect();
        let ids: HashSet<u64> = got.iter().flatten().copied().collect();
        assert_eq!(
            ids.len(),
            got[0].len() + got[1].len(),
            "round {round}: a delivery claimed by both hosts: {got:?}"
        );
        assert_eq!(
            ids.len(),
            3,
            "round {round}: every due delivery is claimed: {got:?}"
        );
        for (host, g) in got.iter().enumerate() {
            claimed_by[host] += g.len();
            for id in g {
                one.record_attempt(*id, url, now, None, None).unwrap();
            }
        }
        assert!(one.claim_deliveries(now, 60_000, 100).unwrap().is_empty());
    }
    assert_eq!(claimed_by[0] + claimed_by[1], 60);
}

on_every_store!(two_hosts_claiming_at_once_take_each_delivery_once);

/// Every page of the deliveries at `query` for `key`, following the
/// `Tiergate-Next-Cursor` header: each page's `(event_id, url, state)`.
async fn delivery_pages(s: &Served, query: &str, key: &str) -> Vec<Vec<(String, String, String)>> {
    let mut pages = Vec::new();
    let mut url = format!("{}/v1/webhooks/deliveries?{query}", s.base);
    while pages.len() < 100 {
        let (status, headers, body) = crate::listings::get_with_headers(&url, key).await;
        assert_eq!(status, 200, "{url}: {body}");
        pages.push(
            body.as_array()
                .unwrap()
                .iter()
                .map(|d| {
                    let text = |f: &str| d[f].as_str().unwrap().to_string();
                    (text("event_id"), text("url"), text("state"))
                })
                .collect(),
        );
        match headers.get("tiergate-next-cursor") {
            Some(next) => {
                url = format!(
                    "{}/v1/webhooks/deliveries?{query}&cursor={}",
                    s.base,
                    next.to_str().unwrap()
                )
            }
            None => return pages,
        }
    }
    panic!("the cursor never ran out: {pages:?}")
}

/// The deliveries come a page at a time, newest first, with a cursor to the
/// next page, whole or of one state; a limit outside 1 to 1000 or a cursor
/// the service did not give is refused by name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliveries_come_a_page_at_a_time_with_a_cursor_and_a_state() {
    // Accepts everything; the second webhook's name never resolves.
    let r = receiver(Some(0)).await;
    let dir = tempfile::tempdir().unwrap();
    let (config, settings) = setup(dir.path(), SETTINGS);
    let s = start(&dir.path().join("data"), &config, &settings);
    let agent = create_key(&s.data, "hooked", "agent", None);
    let admin = create_key(&s.data, "hooked", "admin", Some("ops@hooked.example"));
    let auditor = create_key(&s.data, "hooked", "auditor", Some("audit@hooked.example"));
    add_webhook(&s, &admin, &r.url()).await;
    add_webhook_elsewhere(&s, &admin).await;
    for i in 0..5 {
        // Supervised: each notifies the owners once.
        let a = post(
            &s,
            "/v1/authorizations",
            &agent,
            &payment("hooked", &format!("d{i}"), "47.00", "compute", "known"),
        )
        .await;
        assert_eq!(a.status, 201, "{}", a.text);
    }
    wait_for_n(&s, &auditor, "delivered", 5).await;
    wait_for_n(&s, &auditor, "given_up", 5).await;

    let whole = delivery_pages(&s, "limit=1000", &auditor).await;
    assert_eq!(whole.len(), 1, "{whole:?}");
    let whole = whole.concat();
    assert_eq!(whole.len(), 10, "{whole:?}");
    let paged = delivery_pages(&s, "limit=3", &auditor).await;
    assert_eq!(
        paged.iter().map(Vec::len).collect::<Vec<_>>(),
        [3, 3, 3, 1],
        "{paged:?}"
    );
    assert_eq!(paged.concat(), whole, "the pages are the listing, in order");
    for state in ["delivered", "given_up"] {
        let paged = delivery_pages(&s, &format!("state={state}&limit=2"), &auditor).await;
        assert_eq!(
            paged.iter().map(Vec::len).collect::<Vec<_>>(),
            [2, 2, 1],
            "{state}: {paged:?}"
        );
        let expected: Vec<_> = whole.iter().filter(|d| d.2 == state).cloned().collect();
        assert_eq!(paged.concat(), expected, "{state}");
    }
    // A full last page has a cursor to an empty one.
    let exact = delivery_pages(&s, "state=delivered&limit=5", &auditor).await;
    assert_eq!(exact.iter().map(Vec::len).collect::<Vec<_>>(), [5, 0]);

    for (query, field) in [
        ("limit=0", "limit"),
        ("limit=1001", "limit"),
        ("cursor=zz", "cursor"),
        ("cursor=3132", "cursor"),
        ("state=lost", "state"),
    ] {
        let refused = get(&s, &format!("/v1/webhooks/deliveries?{query}"), &auditor).await;
        assert_eq!(refused.status, 400, "{query}: {}", refused.text);
        assert_eq!(
            refused.body["error"]["code"], "invalid_query",
            "{}",
            refused.text
        );
        assert_eq!(refused.body["error"]["field"], field, "{}", refused.text);
    }
}
