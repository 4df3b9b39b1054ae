//! Delivers the outbox to each tenant's webhook URLs: signed, retried with
//! backoff from stored state, at least once, with a stable event id.
//!
//! Signature: `Tiergate-Signature: v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`
//! where `<t>` is the `Tiergate-Timestamp` header (Unix seconds) and
//! `<body>` the exact request body.

use std::sync::Arc;
use std::time::Duration;

use hmac::{Hmac, Mac};
use sha2::Sha256;
use tokio::sync::watch;

use super::now_ms;
use crate::governance::Governor;
use crate::store::{Backend, Delivery};

/// How deliveries are paced.
#[derive(Debug, Clone, Copy)]
pub struct WebhookOptions {
    /// How often due deliveries are looked for.
    pub interval: Duration,
    /// The first retry's delay; each later one doubles it, up to an hour.
    pub backoff: Duration,
    /// Attempts before a delivery is given up.
    pub max_attempts: u32,
    /// How long one attempt may take.
    pub timeout: Duration,
}

impl Default for WebhookOptions {
    fn default() -> Self {
        WebhookOptions {
            interval: Duration::from_millis(500),
            backoff: Duration::from_secs(1),
            max_attempts: 10,
            timeout: Duration::from_secs(10),
        }
    }
}

/// For a URL seen for the first time, notices of the last day are delivered.
const FIRST_SEEN_WINDOW_MS: u64 = 86_400_000;
const MAX_BACKOFF_MS: u64 = 3_600_000;

/// The signature header's value for a body sent at `timestamp`.
pub fn signature(secret: &[u8], timestamp: u64, body: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(format!("{timestamp}.{body}").as_bytes());
    let bytes = mac.finalize().into_bytes();
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("v1={hex}")
}

/// Runs until `stop` turns true.
pub(super) async fn run(
    governor: Governor,
    store: Arc<dyn Backend>,
    options: WebhookOptions,
    mut stop: watch::Receiver<bool>,
) {
    let client = match reqwest::Client::builder().timeout(options.timeout).build() {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "cannot build the webhook client; webhooks are not delivered");
            return;
        }
    };
    loop {
        if let Err(e) = pass(&governor, &store, &client, &options).await {
            tracing::error!(error = %e, "webhook pass failed");
        }
        tokio::select! {
            _ = tokio::time::sleep(options.interval) => {}
            _ = stop.wait_for(|s| *s) => break,
        }
    }
}

async fn pass(
    governor: &Governor,
    store: &Arc<dyn Backend>,
    client: &reqwest::Client,
    options: &WebhookOptions,
) -> Result<(), crate::store::StoreError> {
    let now = now_ms();
    let mut secrets = std::collections::HashMap::new();
    for tenant in governor.tenant_ids() {
        let Ok(config) = governor.tenant_config(&tenant) else {
            continue;
        };
        for hook in &config.webhooks {
            let (s, t, url) = (store.clone(), tenant.clone(), hook.url.clone());
            tokio::task::spawn_blocking(move || {
                s.queue_deliveries(&t, &url, now.saturating_sub(FIRST_SEEN_WINDOW_MS))
            })
            .await
            .map_err(|e| crate::store::StoreError(e.to_string()))??;
            secrets.insert((tenant.clone(), hook.url.clone()), hook.secret_env.clone());
        }
    }
    let lease = options.timeout.as_millis() as u64 * 2;
    let s = store.clone();
    let due = tokio::task::spawn_blocking(move || s.claim_deliveries(now, lease, 100))
        .await
        .map_err(|e| crate::store::StoreError(e.to_string()))??;
    for d in due {
        let secret_env = secrets.get(&(d.tenant.clone(), d.url.clone())).cloned();
        let result = attempt(client, &d, secret_env.as_deref()).await;
        let now = now_ms();
        let (error, retry_at) = match &result {
            Ok(()) => (None, None),
            Err(e) if d.attempts + 1 >= options.max_attempts => {
                tracing::warn!(tenant = %d.tenant, url = %d.url, event = d.entry.id, error = %e,
                    attempts = d.attempts + 1, "webhook delivery given up");
                (Some(e.clone()), None)
            }
            Err(e) => {
                let delay = (options.backoff.as_millis() as u64)
                    .saturating_mul(1 << d.attempts.min(20))
                    .min(MAX_BACKOFF_MS);
                tracing::info!(tenant = %d.tenant, url = %d.url, event = d.entry.id, error = %e,
                    retry_in_ms = delay, "webhook delivery failed; will retry");
                (Some(e.clone()), Some(now + delay))
            }
        };
        let s = store.clone();
        tokio::task::spawn_blocking(move || {
            s.record_attempt(d.entry.id, &d.url, now, error.as_deref(), retry_at)
        })
        .await
        .map_err(|e| crate::store::StoreError(e.to_string()))??;
    }
    Ok(())
}

async fn attempt(
    client: &reqwest::Client,
    d: &Delivery,
    secret_env: Option<&str>,
) -> Result<(), String> {
    let Some(name) = secret_env else {
        return Err("the tenant no longer has this webhook".into());
    };
    let secret = std::env::var(name).map_err(|_| {
        format!("the signing secret's environment variable {name} is not set on the service")
    })?;
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
    let timestamp = now_ms() / 1000;
    let response = client
        .post(&d.url)
        .header("content-type", "application/json")
        .header("tiergate-event-id", &event_id)
        .header("tiergate-timestamp", timestamp.to_string())
        .header(
            "tiergate-signature",
            signature(secret.as_bytes(), timestamp, &body),
        )
        .body(body)
        .send()
        .await
        .map_err(|e| format!("cannot reach {}: {e}", d.url))?;
    if response.status().is_success() {
        Ok(())
    } else {
        Err(format!("{} answered {}", d.url, response.status()))
    }
}
