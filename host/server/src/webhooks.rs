//! Delivers the outbox to each tenant's webhooks: signed with the secrets
//! the service generated, retried with backoff from stored state, at least
//! once, with a stable event id, and only to addresses webhooks may reach.
//!
//! Signature: `Tiergate-Signature: v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`
//! where `<t>` is the `Tiergate-Timestamp` header (Unix seconds) and
//! `<body>` the exact request body; while a rotated-out secret still signs,
//! a second `,v1=...` follows, by that secret.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use hmac::{Hmac, Mac};
use sha2::Sha256;
use tokio::sync::watch;
use tokio::task::JoinSet;

use super::egress::{Egress, NotResolved, Refused};
use super::now_ms;
use tiergate_core::store::{Backend, Delivery, StoreError, StoredWebhook};

/// How deliveries are paced, and where they may go.
#[derive(Debug, Clone)]
pub struct WebhookOptions {
    /// How often due deliveries are looked for.
    pub interval: Duration,
    /// The first retry's delay; each later one doubles it, up to an hour.
    pub backoff: Duration,
    /// Attempts before a delivery is given up (by default 20: about eight
    /// hours of retries, at most an hour apart).
    pub max_attempts: u32,
    /// How long one attempt may take.
    pub timeout: Duration,
    /// The networks webhooks may reach besides public addresses (none by
    /// default).
    pub egress: Egress,
    /// The most webhooks one tenant may have (10 by default).
    pub per_tenant: usize,
}

impl Default for WebhookOptions {
    fn default() -> Self {
        WebhookOptions {
            interval: Duration::from_millis(500),
            backoff: Duration::from_secs(1),
            max_attempts: 20,
            timeout: Duration::from_secs(10),
            egress: Egress::default(),
            per_tenant: 10,
        }
    }
}

/// For a URL seen for the first time, notices of the last day are delivered.
const FIRST_SEEN_WINDOW_MS: u64 = 86_400_000;
const MAX_BACKOFF_MS: u64 = 3_600_000;

/// The signature header's value for a body sent at `timestamp`, signed by
/// one secret.
#[allow(clippy::expect_used, reason = "HMAC takes a key of any length")]
pub fn signature(secret: &[u8], timestamp: u64, body: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(format!("{timestamp}.{body}").as_bytes());
    let bytes = mac.finalize().into_bytes();
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("v1={hex}")
}

/// The signature header's value when several secrets sign: one `v1=` each,
/// separated by commas, the newest secret's first.
fn signatures(secrets: &[&str], timestamp: u64, body: &str) -> String {
    let each: Vec<String> = secrets
        .iter()
        .map(|s| signature(s.as_bytes(), timestamp, body))
        .collect();
    each.join(",")
}

/// At most this many deliveries are attempted at once.
const IN_FLIGHT: usize = 50;

type StoreResult<T> = Result<T, StoreError>;

/// Runs a blocking store call off the async threads.
async fn blocking<T: Send + 'static>(
    store: &Arc<dyn Backend>,
    f: impl FnOnce(&dyn Backend) -> StoreResult<T> + Send + 'static,
) -> StoreResult<T> {
    let s = store.clone();
    tokio::task::spawn_blocking(move || f(s.as_ref()))
        .await
        .map_err(|e| StoreError::database("the store task did not finish", e))?
}

/// Why an attempt failed: the class of failure, which the tenant sees as
/// the delivery's `last_error`, and the whole error, which only the log
/// gets (a receiver's answer or a network's detail could tell a tenant
/// about places it may not reach).
#[derive(Debug)]
struct Failure {
    class: String,
    detail: String,
}

impl Failure {
    fn new(class: impl Into<String>, detail: impl std::fmt::Display) -> Self {
        Failure {
            class: class.into(),
            detail: detail.to_string(),
        }
    }

    /// The class of a client error, found among its causes.
    fn of(e: &reqwest::Error) -> Self {
        let mut class = if e.is_timeout() {
            "timeout"
        } else if e.is_connect() {
            "connection failed"
        } else {
            "request failed"
        };
        let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(e);
        while let Some(c) = cause {
            if c.downcast_ref::<Refused>().is_some() {
                return Failure::new(Refused.to_string(), e);
            }
            if c.downcast_ref::<NotResolved>().is_some() {
                class = "name not resolved";
            }
            if let Some(io) = c.downcast_ref::<std::io::Error>() {
                match io.kind() {
                    std::io::ErrorKind::ConnectionRefused => class = "connection refused",
                    std::io::ErrorKind::ConnectionReset => class = "connection reset",
                    std::io::ErrorKind::TimedOut => class = "timeout",
                    _ => {}
                }
            }
            cause = c.source();
        }
        // Any error below its own message, including a receiver's TLS alert.
        Failure::new(class, format!("{e}: {}", causes(e)))
    }
}

fn causes(e: &dyn std::error::Error) -> String {
    let mut out = Vec::new();
    let mut cause = e.source();
    while let Some(c) = cause {
        out.push(c.to_string());
        cause = c.source();
    }
    out.join(": ")
}

/// Attempts under way: each delivery's outcome is recorded as it comes, so a
/// slow or silent receiver holds up no other.
type InFlight = JoinSet<(Delivery, Result<(), Failure>)>;

/// Runs until `stop` turns true.
pub(super) async fn run(
    store: Arc<dyn Backend>,
    options: WebhookOptions,
    mut stop: watch::Receiver<bool>,
) {
    let client = match reqwest::Client::builder()
        .timeout(options.timeout)
        .connect_timeout(options.timeout)
        // A redirect is not a delivery: the receiver answers 2xx itself.
        .redirect(reqwest::redirect::Policy::none())
        // Connections go where the checked addresses say, never by a proxy.
        .no_proxy()
        .dns_resolver(options.egress.resolver())
        .user_agent(concat!("tiergate/", env!("CARGO_PKG_VERSION")))
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "cannot build the webhook client; webhooks are not delivered");
            return;
        }
    };
    let mut inflight = InFlight::new();
    let mut open: HashSet<(u64, String)> = HashSet::new();
    let mut tick = tokio::time::Instant::now();
    loop {
        if tokio::time::Instant::now() >= tick {
            let room = IN_FLIGHT - inflight.len();
            let claimed = match start_due(&store, &client, &options, room).await {
                Ok(started) => started
                    .into_iter()
                    .map(|(key, task)| {
                        open.insert(key);
                        inflight.spawn(task);
                    })
                    .count(),
                Err(e) => {
                    tracing::error!(error = %e, "webhook pass failed");
                    0
                }
            };
            // A full claim may have left more due: look again at once.
            tick = tokio::time::Instant::now();
            if room == 0 || claimed < room {
                tick += options.interval;
            }
        }
        let stopped = async {
            let _ = stop.wait_for(|s| *s).await;
        };
        tokio::select! {
            _ = stopped => break,
            Some(joined) = inflight.join_next() => match joined {
                Ok((d, result)) => {
                    open.remove(&(d.entry.id, d.url.clone()));
                    if let Err(e) = record(&store, &options, d, result).await {
                        tracing::error!(error = %e, "cannot record a webhook attempt");
                    }
                }
                // The attempt panicked: its lease runs out and it is tried again.
                Err(e) => tracing::error!(error = %e, "a webhook attempt failed to run"),
            },
            _ = tokio::time::sleep_until(tick) => {}
        }
    }
    // Stopping: attempts still in flight are dropped and handed back, so the
    // next start makes them at once, as the same events.
    inflight.abort_all();
    let now = now_ms();
    for (id, url) in open {
        if let Err(e) = blocking(&store, move |s| s.release_delivery(id, &url, now)).await {
            tracing::error!(error = %e, "cannot hand back a webhook delivery");
        }
    }
}

/// Queues new notices, then claims up to `room` due deliveries and returns
/// their attempts, unstarted.
async fn start_due(
    store: &Arc<dyn Backend>,
    client: &reqwest::Client,
    options: &WebhookOptions,
    room: usize,
) -> StoreResult<
    Vec<(
        (u64, String),
        impl Future<Output = (Delivery, Result<(), Failure>)> + Send + 'static,
    )>,
> {
    let now = now_ms();
    let mut hooks = HashMap::new();
    for hook in blocking(store, |s| s.webhooks(None)).await? {
        let (t, url) = (hook.tenant.clone(), hook.url.clone());
        let since = now.saturating_sub(FIRST_SEEN_WINDOW_MS);
        // One tenant's store failing (its database is down) holds up no
        // other tenant's deliveries.
        if let Err(e) = blocking(store, move |s| s.queue_deliveries(&t, &url, since)).await {
            tracing::warn!(tenant = %hook.tenant, error = %e, "cannot queue a webhook's notices; trying again next round");
            continue;
        }
        hooks.insert((hook.tenant.clone(), hook.url.clone()), hook);
    }
    if room == 0 {
        return Ok(Vec::new());
    }
    // Held long enough for the attempt to finish or time out, and be recorded.
    let lease = options.timeout.as_millis() as u64 * 2 + 1000;
    let due = blocking(store, move |s| s.claim_deliveries(now, lease, room)).await?;
    Ok(due
        .into_iter()
        .map(|d| {
            let hook = hooks.get(&(d.tenant.clone(), d.url.clone())).cloned();
            let (client, egress) = (client.clone(), options.egress.clone());
            ((d.entry.id, d.url.clone()), async move {
                let result = attempt(&client, &egress, &d, hook.as_ref()).await;
                (d, result)
            })
        })
        .collect())
}

/// Stores an attempt's outcome: delivered, due again after the backoff, or
/// given up.
async fn record(
    store: &Arc<dyn Backend>,
    options: &WebhookOptions,
    d: Delivery,
    result: Result<(), Failure>,
) -> StoreResult<()> {
    let now = now_ms();
    let attempts = d.attempts + 1;
    let (error, retry_at) = match result {
        Ok(()) => (None, None),
        Err(e) if attempts >= options.max_attempts => {
            tracing::warn!(tenant = %d.tenant, url = %d.url, event = d.entry.id,
                error = %e.detail, attempts, "webhook delivery given up");
            (Some(e.class), None)
        }
        Err(e) => {
            let delay = backoff_ms(options, d.attempts);
            tracing::warn!(tenant = %d.tenant, url = %d.url, event = d.entry.id,
                error = %e.detail, attempts, retry_in_ms = delay, "webhook delivery failed; will retry");
            (Some(e.class), Some(now + delay))
        }
    };
    blocking(store, move |s| {
        s.record_attempt(d.entry.id, &d.url, now, error.as_deref(), retry_at)
    })
    .await
}

/// The delay after the attempt numbered `previous` (from 0) failed: the
/// base, doubled for each earlier failure, at most an hour.
fn backoff_ms(options: &WebhookOptions, previous: u32) -> u64 {
    (options.backoff.as_millis() as u64)
        .saturating_mul(1 << previous.min(30))
        .min(MAX_BACKOFF_MS)
}

async fn attempt(
    client: &reqwest::Client,
    egress: &Egress,
    d: &Delivery,
    hook: Option<&StoredWebhook>,
) -> Result<(), Failure> {
    let Some(hook) = hook else {
        return Err(Failure::new(
            "webhook removed",
            "the tenant no longer has this webhook",
        ));
    };
    let url = reqwest::Url::parse(&d.url).map_err(|e| Failure::new("invalid URL", e))?;
    // An address in the URL reaches no resolver: it is checked here.
    egress
        .check_literal(&url)
        .map_err(|e| Failure::new(e.to_string(), format!("{e}: {}", d.url)))?;
    let event_id = format!("{}:{}", d.tenant, d.entry.id);
    let body = serde_json::json!({
        "id": event_id,
        "kind": d.entry.notice.kind,
        "tenant": d.tenant,
        "tx_id": d.entry.tx_id,
        "to": d.entry.notice.to,
        "message": d.entry.notice.message,
        "created_ms": d.entry.created_ms,
    })
    .to_string();
    let now = now_ms();
    let timestamp = now / 1000;
    let response = client
        .post(url)
        .header("content-type", "application/json")
        .header("tiergate-event-id", &event_id)
        .header("tiergate-timestamp", timestamp.to_string())
        .header(
            "tiergate-signature",
            signatures(&hook.secrets_at(now), timestamp, &body),
        )
        .body(body)
        .send()
        .await
        .map_err(|e| Failure::of(&e))?;
    let status = response.status();
    if status.is_success() {
        Ok(())
    } else {
        Err(Failure::new(
            format!("status {}", status.as_u16()),
            format!("{} answered {status}", d.url),
        ))
    }
}
