//! Notifications delivered to a tenant's webhook, against a real local HTTP
//! receiver: signed, retried with backoff, at least once with a stable event
//! id, visible when they keep failing, and resumed after a restart.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, StatusCode};
use serde_json::Value;
use tiergate::governance::TenantConfig;

use crate::pipeline::ACME;
use crate::service::{Served, create_key, get, payment, post, tenant_file};

const SECRET: &str = "whsec-test-0123456789";

/// One request the receiver got.
#[derive(Clone, Debug)]
struct Received {
    event_id: String,
    content_type: String,
    timestamp: u64,
    signature: String,
    body: String,
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
                    StatusCode::SERVICE_UNAVAILABLE
                } else {
                    StatusCode::NO_CONTENT
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    Receiver { addr, got, hang }
}

/// A tenant `hooked` with a webhook to `url` signed with the secret in
/// `secret_env`, and fast retries (200 ms, 400 ms; three attempts).
fn setup(dir: &Path, url: &str, secret_env: &str) -> (PathBuf, PathBuf) {
    setup_hooks(dir, &[url], secret_env)
}

/// [`setup`] with a webhook to each of `urls` (none: no `[[webhooks]]`).
fn setup_hooks(dir: &Path, urls: &[&str], secret_env: &str) -> (PathBuf, PathBuf) {
    let hooks: String = urls
        .iter()
        .map(|url| format!("[[webhooks]]\nurl = \"{url}\"\nsecret_env = \"{secret_env}\"\n\n"))
        .collect();
    let config = tenant_file(
        dir,
        "hooked",
        &[("[tiers.autonomous]", &format!("{hooks}[tiers.autonomous]"))],
    );
    let settings = dir.join("serve.toml");
    std::fs::write(
        &settings,
        "webhook_backoff_ms = 200\nwebhook_max_attempts = 3\n",
    )
    .unwrap();
    (config, settings)
}

fn start(data: &Path, config: &Path, settings: &Path) -> Served {
    Served::start_with_env(
        data,
        &[
            "--no-demo-tenant",
            "--tenant",
            config.to_str().unwrap(),
            "--config",
            settings.to_str().unwrap(),
        ],
        &[("HOOKED_WEBHOOK_SECRET", SECRET)],
    )
}

async fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Polls the deliveries endpoint until it lists something in `state`.
async fn wait_for_state(s: &Served, key: &str, state: &str) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let r = get(s, &format!("/v1/webhooks/deliveries?state={state}"), key).await;
        assert_eq!(r.status, 200, "{}", r.text);
        if let Some(rows) = r.body.as_array().filter(|a| !a.is_empty()) {
            return rows.clone();
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for a delivery {state}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn owners_are_notified_by_a_signed_webhook_retried_until_it_lands() {
    // Fails twice, then accepts: the third attempt lands.
    let r = receiver(Some(2)).await;
    let dir = tempfile::tempdir().unwrap();
    let (config, settings) = setup(dir.path(), &r.url(), "HOOKED_WEBHOOK_SECRET");
    let s = start(&dir.path().join("data"), &config, &settings);
    let agent = create_key(&s.data, "hooked", "agent", None);
    let a = post(
        &s,
        "/v1/authorizations",
        &agent,
        &payment("hooked", "h1", "47.00", "compute", "known"),
    )
    .await;
    assert_eq!(a.body["status"], "pending_veto", "{}", a.text);

    let admin = create_key(&s.data, "hooked", "admin", Some("ops@hooked.example"));
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
    // The signature verifies with the shared secret over "<timestamp>.<body>"
    // (computed here independently of the service's code)...
    use hmac::Mac;
    for g in &got {
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
        mac.update(format!("{}.{}", g.timestamp, g.body).as_bytes());
        let hex: String = mac
            .finalize()
            .into_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(g.signature, format!("v1={hex}"));
        assert_eq!(
            g.signature,
            tiergate::server::webhook_signature(SECRET.as_bytes(), g.timestamp, &g.body)
        );
    }
    // ...and not with another secret, nor over another body.
    assert_ne!(
        first.signature,
        tiergate::server::webhook_signature(b"another secret", first.timestamp, &first.body)
    );
    assert_ne!(
        first.signature,
        tiergate::server::webhook_signature(
            SECRET.as_bytes(),
            first.timestamp,
            &first.body.replace("47.00", "4.70")
        )
    );

    assert_eq!(delivered.len(), 1, "{delivered:?}");
    assert_eq!(delivered[0]["attempts"], 3);
    assert_eq!(delivered[0]["event_id"], first.event_id.as_str());
    assert_eq!(delivered[0]["url"], r.url().as_str());
    assert!(delivered[0]["delivered_ms"].as_u64().is_some());
    assert!(delivered[0]["last_error"].is_null());
    let metrics = crate::service::call(
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_that_keeps_failing_is_given_up_visibly_and_deliveries_survive_a_restart() {
    let r = receiver(None).await;
    let dir = tempfile::tempdir().unwrap();
    let (config, settings) = setup(dir.path(), &r.url(), "HOOKED_WEBHOOK_SECRET");
    let data = dir.path().join("data");
    let s = start(&data, &config, &settings);
    let agent = create_key(&s.data, "hooked", "agent", None);
    let auditor = create_key(&s.data, "hooked", "auditor", Some("audit@hooked.example"));
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
    let metrics = crate::service::call(
        "GET",
        &format!("{}/metrics", s.base),
        Some(crate::service::METRICS_TOKEN),
        None,
        "",
    )
    .await;
    assert!(
        metrics
            .text
            .contains(r#"tiergate_webhook_deliveries{state="failing"} 1"#),
        "{}",
        metrics.text
    );

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
    assert!(
        rows[0]["last_error"].as_str().unwrap().contains("503"),
        "{rows:?}"
    );
    let got = r.got();
    assert_eq!(got.len(), 3, "three attempts across the restart, no more");
    assert!(got.iter().all(|g| g.event_id == got[0].event_id));
    let metrics = crate::service::call(
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
    // Nothing is retried after it was given up.
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(r.got().len(), 3);

    let all = get(&s, "/v1/webhooks/deliveries", &auditor).await;
    assert_eq!(all.body.as_array().map(Vec::len), Some(1), "{}", all.text);
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
    let (config, settings) = setup(dir.path(), &r.url(), "HOOKED_WEBHOOK_SECRET");
    let data = dir.path().join("data");
    let s = start(&data, &config, &settings);
    let agent = create_key(&s.data, "hooked", "agent", None);
    let auditor = create_key(&s.data, "hooked", "auditor", Some("audit@hooked.example"));
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
    let delivered = wait_for_state(&s, &auditor, "delivered").await;
    assert_eq!(delivered[0]["attempts"], 1, "{delivered:?}");
    let got = r.got();
    assert_eq!(got.len(), 2, "{got:?}");
    assert_eq!(got[0].event_id, got[1].event_id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_secret_is_reported_on_the_delivery_and_nothing_unsigned_is_sent() {
    let r = receiver(Some(0)).await;
    let dir = tempfile::tempdir().unwrap();
    let (config, settings) = setup(dir.path(), &r.url(), "HOOKED_UNSET_SECRET");
    let s = start(&dir.path().join("data"), &config, &settings);
    let agent = create_key(&s.data, "hooked", "agent", None);
    let admin = create_key(&s.data, "hooked", "admin", Some("ops@hooked.example"));
    post(
        &s,
        "/v1/authorizations",
        &agent,
        &payment("hooked", "m1", "47.00", "compute", "known"),
    )
    .await;
    let rows = wait_for_state(&s, &admin, "given_up").await;
    let error = rows[0]["last_error"].as_str().unwrap();
    assert!(error.contains("HOOKED_UNSET_SECRET"), "{error}");
    assert!(r.got().is_empty(), "nothing is sent without a secret");
}

#[test]
fn webhook_settings_are_checked_by_name() {
    let with = |hook: &str| {
        ACME.replace(
            "[tiers.autonomous]",
            &format!("[[webhooks]]\n{hook}\n\n[tiers.autonomous]"),
        )
    };
    let path = Path::new("acme.toml");
    // Configurations without webhooks stay valid; a good one is read.
    assert!(TenantConfig::parse(ACME, path).unwrap().webhooks.is_empty());
    let good = TenantConfig::parse(
        &with("url = \"https://ops.acme.example/hook\"\nsecret_env = \"ACME_HOOK\""),
        path,
    )
    .unwrap();
    assert_eq!(good.webhooks[0].url, "https://ops.acme.example/hook");
    assert_eq!(good.webhooks[0].secret_env, "ACME_HOOK");
    for (hook, needle) in [
        (
            "url = \"ftp://ops.acme.example/hook\"\nsecret_env = \"ACME_HOOK\"",
            "`webhooks[0].url`",
        ),
        (
            "url = \"https://\"\nsecret_env = \"ACME_HOOK\"",
            "`webhooks[0].url`",
        ),
        (
            "url = \"http://[::1/hook\"\nsecret_env = \"ACME_HOOK\"",
            "`webhooks[0].url`",
        ),
        (
            "url = \"https://ops:hunter2@ops.acme.example/hook\"\nsecret_env = \"ACME_HOOK\"",
            "must not hold a user name or password",
        ),
        (
            "url = \"https://ops.acme.example/hook\"\nsecret_env = \"not a name\"",
            "`webhooks[0].secret_env`",
        ),
        (
            "url = \"https://ops.acme.example/hook\"",
            "missing field `secret_env`",
        ),
        (
            "url = \"https://ops.acme.example/hook\"\nsecret_env = \"ACME_HOOK\"\nsecret = \"x\"",
            "unknown field `secret`",
        ),
    ] {
        let err = TenantConfig::parse(&with(hook), path)
            .unwrap_err()
            .to_string();
        assert!(err.contains(needle), "{needle}: {err}");
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
    let (config, settings) = setup_hooks(
        dir.path(),
        &[&silent.url(), &prompt.url()],
        "HOOKED_WEBHOOK_SECRET",
    );
    let s = start(&dir.path().join("data"), &config, &settings);
    let agent = create_key(&s.data, "hooked", "agent", None);
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
    let data = dir.path().join("data");
    // Notices written while the tenant has no webhook...
    let (config, settings) = setup_hooks(dir.path(), &[], "HOOKED_WEBHOOK_SECRET");
    let s = start(&data, &config, &settings);
    let agent = create_key(&s.data, "hooked", "agent", None);
    let admin = create_key(&s.data, "hooked", "admin", Some("ops@hooked.example"));
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
    s.terminate();

    // ...are delivered once one is configured (they are less than a day old),
    let (config, settings) = setup(dir.path(), &r.url(), "HOOKED_WEBHOOK_SECRET");
    let s = start(&data, &config, &settings);
    wait_until("the earlier notice", || !r.got().is_empty()).await;
    // and so is every new one, each once.
    post(
        &s,
        "/v1/authorizations",
        &agent,
        &payment("hooked", "e2", "48.00", "compute", "known"),
    )
    .await;
    wait_until("the new notice", || r.got().len() >= 2).await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    let tx_ids: Vec<String> = r
        .got()
        .iter()
        .map(|g| {
            let body: Value = serde_json::from_str(&g.body).unwrap();
            body["tx_id"].as_str().unwrap().to_string()
        })
        .collect();
    assert_eq!(tx_ids, ["e1", "e2"]);
    let delivered = wait_for_state(&s, &admin, "delivered").await;
    assert_eq!(delivered.len(), 2, "{delivered:?}");
}
