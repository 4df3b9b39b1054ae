//! What a tenant's admin (over the API) or the operator (with the CLI)
//! changes about a tenant besides its rules: API keys and webhooks. Each
//! change is a tenant-level audit event naming who made it, as a
//! `policy_activated` event names who activated rules.

use std::path::Path;
use std::time::Duration;

use super::{IssuedKey, issue_key};
use tiergate_core::governance::TenantConfig;
use tiergate_core::store::{
    AddedWebhook, Backend, EventDraft, Role, StoreError, StoredWebhook, WebhookInfo,
};

/// How long the secret before a rotation keeps signing, unless the rotation
/// says otherwise: a day, for receivers to take the new one.
pub const DEFAULT_ROTATION_OVERLAP: Duration = Duration::from_secs(86_400);

/// The longest a rotated-out secret may keep signing: a week.
pub const MAX_ROTATION_OVERLAP: Duration = Duration::from_secs(7 * 86_400);

/// The longest webhook URL.
pub const MAX_WEBHOOK_URL_BYTES: usize = 2048;

/// A webhook just made or rotated, with its secret: shown this once.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct WebhookSecret {
    /// The webhook.
    pub webhook: WebhookInfo,
    /// The signing secret: `whsec_` and 64 hex digits. It is not shown again.
    pub secret: String,
}

/// Why a webhook could not be added, rotated or removed.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    /// The URL is not one notices can be posted to.
    #[error("{0}")]
    InvalidUrl(String),
    /// The URL's host is an address webhooks may not reach.
    #[error(
        "webhooks may not reach {host}: it is a loopback, private, link-local, shared or reserved address (or resolves only to such); the service's operator may allow a network with `webhook_allow_networks`"
    )]
    ForbiddenAddress {
        /// The URL's host.
        host: String,
    },
    /// The tenant has a webhook to the URL already.
    #[error("this tenant has a webhook to {url} already")]
    Exists {
        /// The URL.
        url: String,
    },
    /// The tenant has as many webhooks as it may.
    #[error(
        "this tenant has {limit} webhooks, the most it may (the service's `webhooks_per_tenant`); remove one first"
    )]
    OverLimit {
        /// The limit.
        limit: usize,
    },
    /// No such webhook.
    #[error("this tenant has no webhook {id}")]
    NotFound {
        /// The id asked for.
        id: String,
    },
    /// A rotation's overlap is too long.
    #[error("`overlap_s` = {0}: a rotated-out secret signs for at most 604800 s (7 days)")]
    Overlap(u64),
    /// No secret could be made.
    #[error("cannot read entropy for a new secret: {0}")]
    Entropy(#[source] std::io::Error),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Reads a webhook URL: `http://` or `https://`, a host, no user name or
/// password (the URL is listed and logged; the signature authenticates the
/// service), at most [`MAX_WEBHOOK_URL_BYTES`].
pub fn webhook_url(text: &str) -> Result<reqwest::Url, WebhookError> {
    let bad = |why: &str| {
        // Not echoed when it may hold a password.
        let shown = if text.contains('@') {
            "the URL".to_string()
        } else {
            format!("{text:?}")
        };
        WebhookError::InvalidUrl(format!(
            "{shown} is not a webhook URL: {why}; give an http:// or https:// URL"
        ))
    };
    if text.len() > MAX_WEBHOOK_URL_BYTES {
        return Err(bad("it is longer than 2048 bytes"));
    }
    let url = reqwest::Url::parse(text).map_err(|e| bad(&e.to_string()))?;
    if !["http", "https"].contains(&url.scheme()) || url.host_str().is_none() {
        return Err(bad("it is not http:// or https:// with a host"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(bad("it holds a user name or password"));
    }
    Ok(url)
}

/// A new signing secret: `whsec_` and 32 random bytes in hex.
pub fn new_secret() -> Result<String, WebhookError> {
    Ok(format!(
        "whsec_{}",
        random_hex(32).map_err(WebhookError::Entropy)?
    ))
}

fn random_hex(bytes: usize) -> std::io::Result<String> {
    use std::io::Read;
    let mut buf = vec![0u8; bytes];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut buf)?;
    Ok(buf.iter().map(|b| format!("{b:02x}")).collect())
}

/// Adds a webhook to `url` (checked with [`webhook_url`], and by the caller
/// against the service's egress rules) signed with `secret`, or with a new
/// one when `None`; at most `limit` per tenant.
pub fn add_webhook(
    store: &dyn Backend,
    tenant: &str,
    url: &reqwest::Url,
    secret: Option<String>,
    limit: usize,
    actor: &str,
    now_ms: u64,
) -> Result<WebhookSecret, WebhookError> {
    let secret = match secret {
        Some(s) => s,
        None => new_secret()?,
    };
    let hook = StoredWebhook {
        tenant: tenant.to_string(),
        id: format!("wh_{}", random_hex(8).map_err(WebhookError::Entropy)?),
        url: url.to_string(),
        secret,
        previous_secret: None,
        previous_expires_ms: None,
        created_ms: now_ms,
        rotated_ms: None,
    };
    match store.add_webhook(&hook, limit)? {
        AddedWebhook::Added => {}
        AddedWebhook::UrlTaken => return Err(WebhookError::Exists { url: hook.url }),
        AddedWebhook::OverLimit { limit } => return Err(WebhookError::OverLimit { limit }),
    }
    record(
        store,
        tenant,
        "webhook_created",
        actor,
        serde_json::json!({ "webhook_id": hook.id, "url": hook.url }),
        now_ms,
    )?;
    Ok(WebhookSecret {
        webhook: hook.info(),
        secret: hook.secret,
    })
}

/// Gives a webhook a new secret; the current one keeps signing for
/// `overlap` (at most [`MAX_ROTATION_OVERLAP`]), beside the new one.
pub fn rotate_webhook(
    store: &dyn Backend,
    tenant: &str,
    id: &str,
    overlap: Duration,
    actor: &str,
    now_ms: u64,
) -> Result<WebhookSecret, WebhookError> {
    if overlap > MAX_ROTATION_OVERLAP {
        return Err(WebhookError::Overlap(overlap.as_secs()));
    }
    let secret = new_secret()?;
    let until = (!overlap.is_zero()).then(|| now_ms + overlap.as_millis() as u64);
    let hook = store
        .rotate_webhook(tenant, id, &secret, until, now_ms)?
        .ok_or_else(|| WebhookError::NotFound { id: id.to_string() })?;
    record(
        store,
        tenant,
        "webhook_secret_rotated",
        actor,
        serde_json::json!({
            "webhook_id": hook.id, "url": hook.url, "rotated_ms": now_ms,
            "previous_secret_expires_ms": until,
        }),
        now_ms,
    )?;
    Ok(WebhookSecret {
        webhook: hook.info(),
        secret,
    })
}

/// Removes a webhook; what it still had to deliver is given up.
pub fn remove_webhook(
    store: &dyn Backend,
    tenant: &str,
    id: &str,
    actor: &str,
    now_ms: u64,
) -> Result<WebhookInfo, WebhookError> {
    let hook = store
        .remove_webhook(tenant, id, now_ms)?
        .ok_or_else(|| WebhookError::NotFound { id: id.to_string() })?;
    record(
        store,
        tenant,
        "webhook_removed",
        actor,
        serde_json::json!({ "webhook_id": hook.id, "url": hook.url }),
        now_ms,
    )?;
    Ok(hook.info())
}

/// Creates an API key (see [`issue_key`]) and records it as a
/// `key_created` event of the tenant. When the event cannot be recorded
/// the key is revoked at once: no key works that the trail does not show.
pub fn create_key(
    store: &dyn Backend,
    tenant: &str,
    role: Role,
    subject: &str,
    actor: &str,
    now_ms: u64,
) -> Result<IssuedKey, anyhow::Error> {
    // The subject is matched against the owners and shown in the inbox
    // and the trail: no name that looks like another, kept in NFC.
    tiergate_runtime::model::text::check_name(subject).map_err(|refused| {
        anyhow::anyhow!(
            "the key's subject {subject:?} {refused}; give it as the owner or person is named"
        )
    })?;
    if role == Role::Agent && subject == "*" {
        anyhow::bail!(
            "an agent key pays as one agent: name it as the key's subject (a key that pays as any of the tenant's agents has the platform role)"
        );
    }
    let mut subject = subject.to_string();
    tiergate_runtime::model::text::nfc(&mut subject);
    let subject = subject.as_str();
    let issued = issue_key(store, tenant, role, subject, now_ms)?;
    let recorded = record(
        store,
        tenant,
        "key_created",
        actor,
        serde_json::json!({
            "key_id": issued.key.key_id, "role": role.as_str(), "subject": subject,
        }),
        now_ms,
    );
    if let Err(e) = recorded {
        let _ = store.revoke_key(tenant, &issued.key.key_id, now_ms);
        return Err(anyhow::Error::new(e).context(format!(
            "key {} was revoked at once: its creation could not be recorded",
            issued.key.key_id
        )));
    }
    Ok(issued)
}

/// Revokes a key of the tenant and records it as a `key_revoked` event
/// (once: revoking a revoked key records nothing). False when the tenant
/// has no such key.
pub fn revoke_key(
    store: &dyn Backend,
    tenant: &str,
    key_id: &str,
    actor: &str,
    now_ms: u64,
) -> Result<bool, StoreError> {
    let was_revoked = store
        .key(key_id)?
        .filter(|k| k.tenant == tenant)
        .map(|k| k.revoked_ms.is_some());
    if !store.revoke_key(tenant, key_id, now_ms)? {
        return Ok(false);
    }
    if was_revoked == Some(false) {
        record(
            store,
            tenant,
            "key_revoked",
            actor,
            serde_json::json!({ "key_id": key_id }),
            now_ms,
        )?;
    }
    Ok(true)
}

/// Appends a tenant-level event, kept as long as the tenant's stored rules
/// say (ten years, the longest, for a tenant without rules).
fn record(
    store: &dyn Backend,
    tenant: &str,
    kind: &str,
    actor: &str,
    detail: serde_json::Value,
    now_ms: u64,
) -> Result<(), StoreError> {
    let years = store
        .rules_of(tenant)?
        .and_then(|r| TenantConfig::parse_stored(&r.config, Path::new(&r.tenant)).ok())
        .map_or(10, |c| c.retention_years);
    let event = EventDraft {
        kind: kind.to_string(),
        actor: Some(actor.to_string()),
        detail,
    };
    store.record_tenant_event(tenant, now_ms, years, &event)?;
    Ok(())
}
