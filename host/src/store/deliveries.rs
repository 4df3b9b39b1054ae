//! Webhook deliveries of the outbox: one row per notice and URL, retried
//! from stored state so a restart resumes where it stopped.

use serde::Serialize;

use super::{OutboxEntry, StoreError};

/// An outbox row's columns in the order each store's row reader takes them,
/// first in a query's select list (the outbox aliased `o`).
pub(crate) const OUTBOX_COLUMNS: &str =
    "o.id, o.tx_id, o.kind, o.recipient, o.message, o.created_ms";

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
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct DeliveryRecord {
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

/// How many deliveries are in trouble, across tenants.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DeliveryTrouble {
    /// Tried and failed, to be retried.
    pub failing: u64,
    /// Failed too often; nothing retries them.
    pub given_up: u64,
}

/// Where delivery state is kept.
pub trait DeliveryStore: Send + Sync {
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
    /// again at `retry_at_ms` (given up when that is `None`).
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

    /// The tenant's deliveries in `state` (all when `None`), newest first.
    fn deliveries(
        &self,
        tenant: &str,
        state: Option<&str>,
        limit: usize,
    ) -> Result<Vec<DeliveryRecord>, StoreError>;

    /// Deliveries failing or given up, across tenants.
    fn delivery_trouble(&self) -> Result<DeliveryTrouble, StoreError>;
}
