//! Tenants' webhooks and the deliveries of the outbox to them: one row per
//! notice and URL, retried from stored state so a restart resumes where it
//! stopped.

use serde::Serialize;

use super::{OutboxEntry, PageCursor, StoreError};

/// A webhook row's columns, in the order both stores' row readers take them.
pub const WEBHOOK_COLUMNS: &str =
    "tenant, id, url, secret, previous_secret, previous_expires_ms, created_ms, rotated_ms";

/// An outbox row's columns in the order each store's row reader takes them,
/// first in a query's select list (the outbox aliased `o`).
pub const OUTBOX_COLUMNS: &str = "o.id, o.tx_id, o.kind, o.recipient, o.message, o.created_ms";

/// A delivery claimed for an attempt.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// The tenant.
    pub tenant: String,
    /// Where to.
    pub url: String,
    /// What.
    pub entry: OutboxEntry,
    /// Attempts made before this one.
    pub attempts: u32,
}

/// A delivery's state, as the tenant's admin sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DeliveryRecord {
    /// The notice's place in the outbox (the event id's number).
    #[serde(skip)]
    pub outbox_id: u64,
    /// The event id receivers deduplicate on: `<tenant>:<outbox id>`.
    pub event_id: String,
    /// The notice's kind.
    pub kind: String,
    /// The transaction it is about.
    pub tx_id: String,
    /// Where to.
    pub url: String,
    /// Attempts made.
    pub attempts: u32,
    /// `pending` (not tried yet), `failing` (tried, will retry), `given_up`,
    /// or `delivered`.
    pub state: String,
    /// The last attempt's error, if it failed.
    pub last_error: Option<String>,
    /// When the next attempt is due.
    pub next_attempt_ms: Option<u64>,
    /// When it was delivered.
    pub delivered_ms: Option<u64>,
    /// When it was given up.
    pub gave_up_ms: Option<u64>,
    /// When the notice was written.
    pub created_ms: u64,
}

/// What became of a delivery so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeliveryState {
    /// Not tried yet.
    Pending,
    /// Tried and failed; it will be tried again.
    Failing,
    /// Failed too often, or its webhook was removed; nothing retries it.
    GivenUp,
    /// Delivered.
    Delivered,
}

impl DeliveryState {
    /// Every state.
    pub const ALL: [DeliveryState; 4] = [
        DeliveryState::Pending,
        DeliveryState::Failing,
        DeliveryState::GivenUp,
        DeliveryState::Delivered,
    ];

    /// As the API and the stores spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryState::Pending => "pending",
            DeliveryState::Failing => "failing",
            DeliveryState::GivenUp => "given_up",
            DeliveryState::Delivered => "delivered",
        }
    }
}

impl std::str::FromStr for DeliveryState {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        DeliveryState::ALL
            .into_iter()
            .find(|state| state.as_str() == s)
            .ok_or_else(|| format!("state {s:?}: use pending, failing, given_up or delivered"))
    }
}

/// Where a listing of deliveries resumes: the notice and URL of the last
/// delivery of the previous page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryCursor {
    /// Its notice's place in the outbox.
    pub outbox_id: u64,
    /// Where it goes.
    pub url: String,
}

impl DeliveryCursor {
    /// The cursor after `d`.
    pub fn after(d: &DeliveryRecord) -> DeliveryCursor {
        DeliveryCursor {
            outbox_id: d.outbox_id,
            url: d.url.clone(),
        }
    }
}

impl PageCursor for DeliveryCursor {
    /// Room for any URL a webhook may have had, four times the longest
    /// one accepted today.
    const MAX_TEXT_BYTES: usize = 8_192 + 21;

    fn parts(&self) -> (u64, &str) {
        (self.outbox_id, &self.url)
    }

    fn from_parts(outbox_id: u64, url: String) -> Self {
        DeliveryCursor { outbox_id, url }
    }
}

/// How many deliveries are in trouble, across tenants.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DeliveryTrouble {
    /// Tried and failed, to be retried.
    pub failing: u64,
    /// Failed too often; nothing retries them.
    pub given_up: u64,
}

/// A tenant's webhook: where its notices go, and the secrets that sign them.
/// The secrets are kept as they are (a signature needs them), so the store
/// is protected like the data directory.
#[derive(Clone, PartialEq, Eq)]
pub struct StoredWebhook {
    /// The tenant.
    pub tenant: String,
    /// `wh_` and 16 hex digits.
    pub id: String,
    /// The `http://` or `https://` URL notices are posted to.
    pub url: String,
    /// The signing secret.
    pub secret: String,
    /// The secret before the last rotation, which also signs until
    /// `previous_expires_ms`.
    pub previous_secret: Option<String>,
    /// When the previous secret stops signing.
    pub previous_expires_ms: Option<u64>,
    /// When the webhook was added.
    pub created_ms: u64,
    /// When its secret was last rotated.
    pub rotated_ms: Option<u64>,
}

impl std::fmt::Debug for StoredWebhook {
    /// Without the secrets: this is printed in logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredWebhook")
            .field("tenant", &self.tenant)
            .field("id", &self.id)
            .field("url", &self.url)
            .field("previous_expires_ms", &self.previous_expires_ms)
            .finish_non_exhaustive()
    }
}

impl StoredWebhook {
    /// The secrets that sign a notice sent at `now_ms`: the current one,
    /// then the previous one while it has not expired.
    pub fn secrets_at(&self, now_ms: u64) -> Vec<&str> {
        let mut secrets = vec![self.secret.as_str()];
        if let (Some(previous), Some(until)) = (&self.previous_secret, self.previous_expires_ms)
            && now_ms < until
        {
            secrets.push(previous);
        }
        secrets
    }

    /// The webhook as its tenant's keys see it: never its secrets.
    pub fn info(&self) -> WebhookInfo {
        WebhookInfo {
            id: self.id.clone(),
            url: self.url.clone(),
            created_ms: self.created_ms,
            rotated_ms: self.rotated_ms,
            previous_secret_expires_ms: self.previous_expires_ms,
        }
    }
}

/// A webhook as listed: where, since when, and whether a previous secret
/// still signs. Its secrets are shown once, when made, and never again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WebhookInfo {
    /// `wh_` and 16 hex digits.
    pub id: String,
    /// Where notices are posted.
    pub url: String,
    /// When it was added.
    pub created_ms: u64,
    /// When its secret was last rotated.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rotated_ms: Option<u64>,
    /// Until when the secret before the last rotation also signs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub previous_secret_expires_ms: Option<u64>,
}

/// What became of adding a webhook.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddedWebhook {
    /// Stored.
    Added,
    /// The tenant has a webhook to that URL already.
    UrlTaken,
    /// The tenant has `limit` webhooks already.
    OverLimit {
        /// The most a tenant may have.
        limit: usize,
    },
}

/// Where delivery state is kept.
pub trait DeliveryStore: Send + Sync {
    /// Adds a webhook, unless its tenant has one to the same URL or
    /// `limit` webhooks already.
    fn add_webhook(&self, hook: &StoredWebhook, limit: usize) -> Result<AddedWebhook, StoreError>;

    /// Gives the tenant's webhook `id` a new secret; the current one keeps
    /// signing until `previous_expires_ms` (not at all when that is `None`).
    /// `None` when the tenant has no such webhook.
    fn rotate_webhook(
        &self,
        tenant: &str,
        id: &str,
        secret: &str,
        previous_expires_ms: Option<u64>,
        now_ms: u64,
    ) -> Result<Option<StoredWebhook>, StoreError>;

    /// Removes the tenant's webhook `id`; what it still had to deliver is
    /// given up. `None` when the tenant has no such webhook.
    fn remove_webhook(
        &self,
        tenant: &str,
        id: &str,
        now_ms: u64,
    ) -> Result<Option<StoredWebhook>, StoreError>;

    /// The webhooks of `tenant`, or of every tenant, oldest first.
    fn webhooks(&self, tenant: Option<&str>) -> Result<Vec<StoredWebhook>, StoreError>;

    /// Queues the tenant's notices for `url` that it has not queued yet:
    /// for a URL seen for the first time, those written since `since_ms`.
    fn queue_deliveries(&self, tenant: &str, url: &str, since_ms: u64) -> Result<u64, StoreError>;

    /// Claims up to `limit` deliveries due by `now_ms`, holding each for
    /// `lease_ms` so another worker does not take it meanwhile.
    fn claim_deliveries(
        &self,
        now_ms: u64,
        lease_ms: u64,
        limit: usize,
    ) -> Result<Vec<Delivery>, StoreError>;

    /// Records an attempt: delivered (`error` is `None`), or failed and due
    /// again at `retry_at_ms` (given up when that is `None`). A delivery
    /// given up meanwhile (its webhook was removed) stays given up.
    fn record_attempt(
        &self,
        outbox_id: u64,
        url: &str,
        now_ms: u64,
        error: Option<&str>,
        retry_at_ms: Option<u64>,
    ) -> Result<(), StoreError>;

    /// Hands back a claimed delivery that was not attempted after all (the
    /// service is stopping): due again at `now_ms`, its attempts unchanged.
    fn release_delivery(&self, outbox_id: u64, url: &str, now_ms: u64) -> Result<(), StoreError>;

    /// One page of the tenant's deliveries in `state` (all when `None`),
    /// newest first (by notice, then URL, both descending), after `after`:
    /// at most `limit`, read by an index beside the writers, never under
    /// the SQLite writer's lock or a PostgreSQL tenant lock.
    fn deliveries(
        &self,
        tenant: &str,
        state: Option<DeliveryState>,
        after: Option<&DeliveryCursor>,
        limit: usize,
    ) -> Result<Vec<DeliveryRecord>, StoreError>;

    /// Deliveries failing or given up, across tenants, from counts the
    /// store keeps as deliveries change state: one row per tenant and
    /// state is read, never the deliveries.
    fn delivery_trouble(&self) -> Result<DeliveryTrouble, StoreError>;
}
