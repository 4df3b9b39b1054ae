//! Notifications delivered to a tenant's webhook, against a real local HTTP
//! receiver: signed, retried with backoff, at least once with a stable event
//! id, visible when they keep failing, and resumed after a restart.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, StatusCode};
use serde_json::Value;

use crate::service::{Served, create_key, get, payment, post, tenant_file};

const SECRET: &str = "whsec-test-0123456789";

/// One request the receiver got.
#[derive(Clone, Debug)]
struct Received {
    event_id: String,
    timestamp: u64,
    signature: String,
    body: String,
}

/// A local HTTP receiver that fails its first `fail_first` requests (all of
/// them when `None`).
struct Receiver {
    addr: SocketAddr,
    got: Arc<Mutex<Vec<Received>>>,
}

async fn receiver(fail_first: Option<usize>) -> Receiver {
    let got: Arc<Mutex<Vec<Received>>> = Arc::default();
    let seen = got.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: HeaderMap, body: String| {
            let seen = seen.clone();
            async move {
                let header = |name: &str| {
                    headers
                        .get(name)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or_default()
                        .to_string()
                };
                let mut seen = seen.lock().unwrap();
                seen.push(Received {
                    event_id: header("tiergate-event-id"),
                    timestamp: header("tiergate-timestamp").parse().unwrap_or(0),
                    signature: header("tiergate-signature"),
                    body,
                });
                if fail_first.is_none_or(|n| seen.len() <= n) {
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
    Receiver { addr, got }
}

/// A tenant `hooked` with a webhook to `url`, and fast retries.
fn setup(dir: &Path, url: &str) -> (PathBuf, PathBuf) {
    let config = tenant_file(
        dir,
        "hooked",
        &[(
            "[tiers.autonomous]",
            &format!(
                "[[webhooks]]\nurl = \"{url}\"\nsecret_env = \"HOOKED_WEBHOOK_SECRET\"\n\n[tiers.autonomous]"
            ),
        )],
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
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn owners_are_notified_by_a_signed_webhook_retried_until_it_lands() {
    // Fails twice, then accepts: the third attempt lands.
    let r = receiver(Some(2)).await;
    let dir = tempfile::tempdir().unwrap();
    let (config, settings) = setup(dir.path(), &format!("http://{}/hook", r.addr));
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

    let got = r.got.clone();
    wait_until("three attempts", || got.lock().unwrap().len() >= 3).await;
    let got = r.got.lock().unwrap().clone();
    let first = &got[0];
    // The same event each time: receivers deduplicate on its id.
    assert!(
        got.iter()
            .all(|g| g.event_id == first.event_id && g.body == first.body)
    );
    assert!(first.event_id.starts_with("hooked:"), "{}", first.event_id);
    let body: Value = serde_json::from_str(&first.body).unwrap();
    assert_eq!(body["kind"], "owner_notified");
    assert_eq!(body["tx_id"], "h1");
    assert_eq!(body["id"], first.event_id.as_str());
    assert!(
        body["message"].as_str().unwrap().contains("47.00 USDC"),
        "{body}"
    );
    // The signature verifies with the shared secret over "<timestamp>.<body>"...
    for g in &got {
        assert_eq!(
            g.signature,
            tiergate::server::webhook_signature(SECRET.as_bytes(), g.timestamp, &g.body)
        );
    }
    // ...and not with another secret.
    assert_ne!(
        first.signature,
        tiergate::server::webhook_signature(b"another secret", first.timestamp, &first.body)
    );
    // Retries back off: the gaps are not immediate.
    assert!(got[2].timestamp >= got[0].timestamp);

    let admin = create_key(&s.data, "hooked", "admin", Some("ops@hooked.example"));
    let delivered = get(&s, "/v1/webhooks/deliveries?state=delivered", &admin).await;
    let rows = delivered.body.as_array().unwrap();
    assert_eq!(rows.len(), 1, "{}", delivered.text);
    assert_eq!(rows[0]["attempts"], 3);
    assert_eq!(rows[0]["event_id"], first.event_id.as_str());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_that_keeps_failing_is_given_up_visibly_and_deliveries_survive_a_restart() {
    let r = receiver(None).await;
    let dir = tempfile::tempdir().unwrap();
    let (config, settings) = setup(dir.path(), &format!("http://{}/hook", r.addr));
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
    let got = r.got.clone();
    wait_until("the first attempt", || !got.lock().unwrap().is_empty()).await;

    // Killed after one attempt: the restarted service carries on from the store.
    s.kill();
    let s = start(&data, &config, &settings);
    let mut given_up = Value::Null;
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        given_up = get(&s, "/v1/webhooks/deliveries?state=given_up", &auditor)
            .await
            .body;
        if given_up.as_array().is_some_and(|a| !a.is_empty()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    let rows = given_up.as_array().expect("a list");
    assert_eq!(
        rows.len(),
        1,
        "the blocked attempt's owner alert is given up: {given_up}"
    );
    assert_eq!(rows[0]["kind"], "owner_alerted");
    assert_eq!(rows[0]["attempts"], 3);
    assert!(
        rows[0]["last_error"].as_str().unwrap().contains("503"),
        "{given_up}"
    );
    assert_eq!(
        r.got.lock().unwrap().len(),
        3,
        "three attempts across the restart, no more"
    );
    let metrics = crate::service::call("GET", &format!("{}/metrics", s.base), None, None, "").await;
    assert!(
        metrics
            .text
            .contains(r#"tiergate_webhook_deliveries{state="given_up"} 1"#),
        "{}",
        metrics.text
    );
    let bad = get(&s, "/v1/webhooks/deliveries?state=lost", &auditor).await;
    assert_eq!(bad.status, 400);
    let agent_view = get(&s, "/v1/webhooks/deliveries", &agent).await;
    assert_eq!(agent_view.status, 403);
}
