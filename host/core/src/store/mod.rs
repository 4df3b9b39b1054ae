//! Durable state: authorizations, append-only hash-chained audit events, the
//! notification outbox and the ledger.
//!
//! Callers never read-then-write. Every change is one call that runs the
//! caller's pure decision inside a single atomic transaction: `record` checks
//! budgets and reserves in one step, `update` applies one transition only if
//! the state it was decided on is still current. That keeps the atomic parts
//! behind the trait, so another store (a PostgreSQL one shared by several
//! hosts) can implement it without any caller changing.

mod canonical;
pub mod deliveries;
pub mod keys;
pub mod rules;

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

pub use deliveries::{
    AddedWebhook, Delivery, DeliveryCursor, DeliveryRecord, DeliveryState, DeliveryStore,
    DeliveryTrouble, StoredWebhook, WebhookInfo,
};
pub use keys::{ApiKey, KeyStore, Role};
pub use rules::{DeletedPolicy, PutPolicy, RulesStore, StoredRules, UploadQuota, UploadedPolicy};

/// Everything the service keeps: the pipeline's state, keys, rules and
/// webhook deliveries.
pub trait Backend: Store + KeyStore + RulesStore + DeliveryStore {}

impl<T: Store + KeyStore + RulesStore + DeliveryStore> Backend for T {}

use crate::record::Authorization;
use tiergate_runtime::model::context::{
    ActivityFilter, ActivityResult, ActivitySum, RecipientHistory,
};

/// The `prev_hash` of a tenant's first audit event: the SHA-256 of nothing.
pub const GENESIS_HASH: &str =
    "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

pub use crate::utc::day as utc_day;
pub use canonical::event_hash;
pub use canonical::{Chained, chain, retain_until};

/// A failure of the store: what it could not do, and the error underneath.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The database failed or refused a read or write.
    #[error("store: {what}: {source}")]
    Database {
        /// What the store was doing.
        what: String,
        /// The database's own error.
        #[source]
        source: BoxError,
    },
    /// Something the store holds cannot be read back as what was written.
    #[error("store: {what} is unreadable: {source}")]
    Unreadable {
        /// What was being read.
        what: String,
        /// Why it does not read.
        #[source]
        source: BoxError,
    },
    /// The store cannot serve: a schema newer than this build, a write
    /// that may not have reached the disk, a resource it could not get.
    #[error("store: {0}")]
    Unusable(String),
    /// No such transaction.
    #[error("tenant {tenant} has no transaction {tx_id}")]
    NotFound {
        /// The tenant.
        tenant: String,
        /// The transaction id.
        tx_id: String,
    },
    /// The caller's decision inside [`Store::record`] or [`Store::update`]
    /// refused the change: nothing was written, and the caller knows why.
    #[error("the change was refused by its caller; nothing was written")]
    Refused,
}

/// Any error a backend's driver returns.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

impl StoreError {
    /// The database failed while doing `what`.
    pub fn database(what: impl Into<String>, source: impl Into<BoxError>) -> Self {
        StoreError::Database {
            what: what.into(),
            source: source.into(),
        }
    }

    /// `what`, as stored, does not read back.
    pub fn unreadable(what: impl Into<String>, source: impl Into<BoxError>) -> Self {
        StoreError::Unreadable {
            what: what.into(),
            source: source.into(),
        }
    }

    /// The store cannot serve, for the reason given.
    pub fn unusable(why: impl Into<String>) -> Self {
        StoreError::Unusable(why.into())
    }
}

/// Money already committed in the rolling window (held or spent), in the
/// tenant's currency, not counting the payment being authorized. A sum too
/// large for one decimal (amounts stored before the amount bound) is
/// `Decimal::MAX`: beyond any limit, so guardrails escalate.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Holdings {
    /// By this agent.
    pub agent: Decimal,
    /// By the agent's team, when it has one.
    pub team: Decimal,
    /// By the whole tenant.
    pub tenant: Decimal,
}

/// What `record` reads for the decision, inside its transaction.
pub struct Snapshot<'a> {
    /// Money committed in the budget window.
    pub holdings: Holdings,
    /// The agent's past and the recipient's history, for the policy's
    /// context, read on demand.
    pub history: &'a dyn HistoryReads,
}

/// The agent's past and the recipient's history inside `record`'s
/// transaction, read on demand: checking a decision made before the
/// transaction takes one bounded read per context question the policy
/// asked, and only a policy that must run again needs the whole history.
pub trait HistoryReads {
    /// The agent's payments requested from `since_ms` to `until_ms` (both
    /// included, and never before the entry's `history_since_ms`) that
    /// match `filter`: how many, and the exact sum of those in `currency`
    /// (or why that is no answer).
    fn activity(
        &self,
        since_ms: u64,
        until_ms: u64,
        currency: &str,
        filter: &ActivityFilter,
    ) -> Result<ActivityResult, StoreError>;

    /// When the tenant first paid the entry's recipient, and how often.
    fn recipient(&self) -> Result<RecipientHistory, StoreError>;

    /// Everything a policy may ask about: the agent's payments since the
    /// entry's `history_since_ms`, and the recipient's history.
    fn all(&self) -> Result<History, StoreError>;
}

/// What `record` needs to know before the decision is planned.
#[derive(Debug, Clone)]
pub struct NewEntry<'a> {
    /// The tenant.
    pub tenant: &'a str,
    /// The transaction id (idempotency key).
    pub tx_id: &'a str,
    /// The agent.
    pub agent: &'a str,
    /// The recipient, whose history the policy may ask about.
    pub recipient: &'a str,
    /// The policy's context sees the agent's payments requested since this time.
    pub history_since_ms: u64,
    /// The agent's team, if any.
    pub team: Option<&'a str>,
    /// The tenant's currency; holdings sum only this currency.
    pub currency: &'a str,
    /// Holdings count payments requested after this time.
    pub window_start_ms: u64,
    /// Now, for the audit id's day.
    pub now_ms: u64,
    /// The agent-activity questions the decision is expected to ask inside
    /// `record` (those its policy asked when it classified beforehand): a
    /// store may read their answers with the snapshot, in the same round
    /// trip. Empty when none are known; any other question is read when
    /// asked.
    pub asked: &'a [ActivityQuestion],
}

/// An agent-activity question, as [`HistoryReads::activity`] takes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActivityQuestion {
    /// From this time (ms since the epoch).
    pub since_ms: u64,
    /// Up to this time, included.
    pub until_ms: u64,
    /// Which payments count.
    pub filter: ActivityFilter,
}

/// An audit event to append, chained to the tenant's previous one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct EventDraft {
    /// What happened: `authorized`, `attempt_blocked`, `owner_notified`,
    /// `owner_alerted`, `agent_notified`, `vetoed`, `approved`, `rejected`,
    /// `veto_window_closed`, `expired`, `executing`, `executed`,
    /// `execution_failed`; and for the tenant itself, `policy_activated`,
    /// `key_created`, `key_revoked`, `webhook_created`,
    /// `webhook_secret_rotated`, `webhook_removed`, `tenant_moved`.
    pub kind: String,
    /// Who did it, when a person did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor: Option<String>,
    /// The record's content, as deep as the tier's audit level asks.
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub detail: serde_json::Value,
}

/// A notification to deliver, written to the outbox with the change that
/// caused it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notice {
    /// `owner_notified`, `owner_alerted` or `agent_notified`.
    pub kind: String,
    /// Who is to be told: the owners (`owners`) or the agent's id.
    pub to: String,
    /// What to tell them.
    pub message: String,
}

/// A change to store: the new state, and what it logs and announces.
#[derive(Debug, Clone)]
pub struct Change {
    /// The authorization's new state.
    pub authorization: Authorization,
    /// Audit events, in order.
    pub events: Vec<EventDraft>,
    /// Notifications.
    pub notices: Vec<Notice>,
    /// Records the payment in the store's ledger in the same transaction
    /// (the built-in executor), under [`ledger_reference`].
    pub ledger: bool,
}

/// The ledger reference of the payment with `audit_id`.
pub fn ledger_reference(audit_id: &str) -> String {
    format!("ldg-{}", audit_id.trim_start_matches("aud-"))
}

/// The outcome of `record`.
#[derive(Debug, Clone)]
pub enum Recorded {
    /// Stored now.
    New(Authorization),
    /// The id was already stored (a retry or a race); nothing was written.
    Existing(Authorization),
}

/// A stored audit event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AuditEvent {
    /// Position in the tenant's chain, from 1.
    pub seq: u64,
    /// The authorization's audit id.
    pub audit_id: String,
    /// The transaction.
    pub tx_id: String,
    /// When.
    pub at_ms: u64,
    /// The event.
    #[serde(flatten)]
    pub event: EventDraft,
    /// Kept at least until this time (ms since the epoch); never purged
    /// before. 0 for events stored before retention dates existed.
    pub retain_until_ms: u64,
    /// The previous event's hash (`sha256:` of nothing for the first).
    pub prev_hash: String,
    /// `sha256` over the previous hash and this event's content.
    pub hash: String,
}

/// A stored notification.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutboxEntry {
    /// Delivery order.
    pub id: u64,
    /// The transaction it is about.
    pub tx_id: String,
    /// The notice.
    #[serde(flatten)]
    pub notice: Notice,
    /// When it was written.
    pub created_ms: u64,
}

/// One earlier authorization, as the policy's context sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PastPayment {
    /// When it was requested.
    pub requested_at_ms: u64,
    /// Its amount.
    pub amount: Decimal,
    /// Its currency.
    pub currency: String,
    /// Its category.
    pub category: String,
    /// The tier it received.
    pub tier: tiergate_policy::Tier,
}

/// What the store knows of an agent's past and a recipient, read in one go.
#[derive(Debug, Clone, Default)]
pub struct History {
    /// The agent's authorizations since the requested time.
    pub payments: Vec<PastPayment>,
    /// When the tenant first paid the recipient.
    pub recipient_first_paid_ms: Option<u64>,
    /// How often the tenant paid the recipient.
    pub recipient_payments: u64,
}

/// Sums of money committed, by agent, team and tenant, exact however large,
/// while the stores read their budget buckets.
#[derive(Default)]
pub struct HoldingSums {
    /// By the agent.
    pub agent: tiergate_runtime::model::money::ExactSum,
    /// By the agent's team.
    pub team: tiergate_runtime::model::money::ExactSum,
    /// By the whole tenant.
    pub tenant: tiergate_runtime::model::money::ExactSum,
}

impl HoldingSums {
    /// The holdings, each `Decimal::MAX` when it does not fit one decimal.
    pub fn holdings(&self) -> Holdings {
        let fit = |sum: &tiergate_runtime::model::money::ExactSum| {
            sum.to_decimal().unwrap_or(Decimal::MAX)
        };
        Holdings {
            agent: fit(&self.agent),
            team: fit(&self.team),
            tenant: fit(&self.tenant),
        }
    }
}

/// The stored `category` or `tier` an activity filter selects on, for the
/// stores' queries: `None` matches any.
pub fn filter_columns(filter: &ActivityFilter) -> (Option<&str>, Option<&str>) {
    match filter {
        ActivityFilter::All => (None, None),
        ActivityFilter::Category(c) => (Some(c.as_str()), None),
        ActivityFilter::Tier(t) => (None, Some(t.as_str())),
    }
}

impl History {
    /// How many of the payments requested from `since_ms` to `until_ms`
    /// (both included) match `filter`, and the exact sum of those in
    /// `currency` (or why that is no answer).
    pub fn activity(
        &self,
        since_ms: u64,
        until_ms: u64,
        currency: &str,
        filter: &ActivityFilter,
    ) -> ActivityResult {
        let mut activity = ActivitySum::default();
        for p in &self.payments {
            let in_window = p.requested_at_ms >= since_ms && p.requested_at_ms <= until_ms;
            let matches = match filter {
                ActivityFilter::All => true,
                ActivityFilter::Category(c) => &p.category == c,
                ActivityFilter::Tier(t) => p.tier == *t,
            };
            if in_window && matches {
                activity.add((p.currency == currency).then_some(p.amount));
            }
        }
        activity.finish()
    }

    /// The recipient's history.
    pub fn recipient(&self) -> RecipientHistory {
        RecipientHistory {
            first_seen_ms: self.recipient_first_paid_ms,
            payment_count: self.recipient_payments,
        }
    }
}

/// A history read in full answers from memory.
impl HistoryReads for History {
    fn activity(
        &self,
        since_ms: u64,
        until_ms: u64,
        currency: &str,
        filter: &ActivityFilter,
    ) -> Result<ActivityResult, StoreError> {
        Ok(History::activity(
            self, since_ms, until_ms, currency, filter,
        ))
    }

    fn recipient(&self) -> Result<RecipientHistory, StoreError> {
        Ok(History::recipient(self))
    }

    fn all(&self) -> Result<History, StoreError> {
        Ok(self.clone())
    }
}

/// One page of a tenant's authorizations: which ones, in which order, from
/// where. Pages follow an index, so a page costs the same on the millionth
/// payment as on the first, and runs beside the writers.
#[derive(Debug, Clone, Default)]
pub struct Listing<'a> {
    /// Only these statuses; all when empty.
    pub statuses: &'a [crate::record::Status],
    /// Only those submitted with this credential (an agent key's id).
    pub caller: Option<&'a str>,
    /// Newest first (by request time, then id); oldest first otherwise.
    pub newest_first: bool,
    /// Resume after this one: the last of the previous page.
    pub after: Option<ListCursor>,
    /// At most this many.
    pub limit: usize,
}

/// Where a listing resumes: the request time and id of the last payment of
/// the previous page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListCursor {
    /// Its request time.
    pub requested_at_ms: u64,
    /// Its transaction id.
    pub tx_id: String,
}

impl ListCursor {
    /// The cursor after `a`.
    pub fn after(a: &Authorization) -> ListCursor {
        ListCursor {
            requested_at_ms: a.transaction.requested_at_ms,
            tx_id: a.transaction.id.clone(),
        }
    }
}

impl PageCursor for ListCursor {
    const MAX_TEXT_BYTES: usize = 256;

    fn parts(&self) -> (u64, &str) {
        (self.requested_at_ms, &self.tx_id)
    }

    fn from_parts(requested_at_ms: u64, tx_id: String) -> Self {
        ListCursor {
            requested_at_ms,
            tx_id,
        }
    }
}

/// A listing's place as callers see it: opaque text, the hex of
/// `<number>.<id>`, read back only when it is one this encoding made. Every
/// listing's cursor is one of these, so they are checked alike.
pub trait PageCursor: Sized {
    /// The longest `<number>.<id>` a cursor of this listing carries.
    const MAX_TEXT_BYTES: usize;

    /// The number and the id it is made of.
    fn parts(&self) -> (u64, &str);

    /// The cursor made of `number` and `id`.
    fn from_parts(number: u64, id: String) -> Self;

    /// Opaque text for a caller to send back.
    fn encode(&self) -> String {
        let (number, id) = self.parts();
        let text = format!("{number}.{id}");
        text.bytes().map(|b| format!("{b:02x}")).collect()
    }

    /// Reads [`encode`](Self::encode)'s text back; `None` when it is not one.
    fn decode(text: &str) -> Option<Self> {
        if !text.len().is_multiple_of(2) || text.len() > 2 * Self::MAX_TEXT_BYTES {
            return None;
        }
        let bytes: Option<Vec<u8>> = (0..text.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
            .collect();
        let text = String::from_utf8(bytes?).ok()?;
        let (number, id) = text.split_once('.')?;
        let number = number.parse().ok()?;
        (i64::try_from(number).is_ok() && !id.is_empty())
            .then(|| Self::from_parts(number, id.to_string()))
    }
}

/// Every status, for a listing of one caller's payments in any status.
pub const ALL_STATUSES: [crate::record::Status; 9] = {
    use crate::record::Status::*;
    [
        PendingVeto,
        AwaitingApproval,
        Executing,
        Executed,
        ExecutionFailed,
        Vetoed,
        Rejected,
        Expired,
        Blocked,
    ]
};

/// A page's keys, `(requested_at_ms, tx_id)`, from per-status reads of an
/// index: each read gives at most `limit` keys in the listing's order after
/// its cursor; merged, the first `limit` are the page's.
pub fn merge_keys(listing: &Listing<'_>, mut reads: Vec<Vec<(i64, String)>>) -> Vec<(i64, String)> {
    let mut keys: Vec<(i64, String)> = reads.drain(..).flatten().collect();
    keys.sort();
    if listing.newest_first {
        keys.reverse();
    }
    keys.truncate(listing.limit);
    keys
}

/// The bound a listing's index read seeks from: the cursor, or one that
/// sorts before (after, newest first) every payment.
pub fn listing_bound(listing: &Listing<'_>) -> (i64, String) {
    match &listing.after {
        Some(c) => (
            i64::try_from(c.requested_at_ms).unwrap_or(i64::MAX),
            c.tx_id.clone(),
        ),
        None if listing.newest_first => (i64::MAX, String::new()),
        None => (i64::MIN, String::new()),
    }
}

/// Pending payments by status, kept as the store changes: what `/metrics`
/// reads, without counting rows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Waiting {
    /// In their veto window.
    pub pending_veto: u64,
    /// Waiting for approval.
    pub awaiting_approval: u64,
}

/// How a payment moving from `before` to `now` changes the counts of
/// payments waiting on an owner, by status.
pub fn waiting_changes(
    before: Option<crate::record::Status>,
    now: crate::record::Status,
) -> impl Iterator<Item = (crate::record::Status, i64)> {
    let waits = |s: crate::record::Status| {
        matches!(
            s,
            crate::record::Status::PendingVeto | crate::record::Status::AwaitingApproval
        )
    };
    let moved = before != Some(now);
    let left = before.filter(|b| moved && waits(*b)).map(|b| (b, -1));
    let joined = (moved && waits(now)).then_some((now, 1));
    left.into_iter().chain(joined)
}

/// Durable state behind the governance pipeline.
pub trait Store: Send + Sync {
    /// The stored authorization of a transaction, if any.
    fn get(&self, tenant: &str, tx_id: &str) -> Result<Option<Authorization>, StoreError>;

    /// The transaction recorded under a payment's audit id, if any.
    fn tx_with_audit_id(&self, tenant: &str, audit_id: &str) -> Result<Option<String>, StoreError>;

    /// Atomically: if the id is already stored, returns it untouched;
    /// otherwise reads the snapshot (holdings and history), lets `plan`
    /// decide (given the snapshot and the new audit id), and stores the
    /// result with its events and notices. Concurrent calls are serialized,
    /// so budgets and velocity counts hold exactly.
    fn record(
        &self,
        entry: &NewEntry<'_>,
        plan: &mut (dyn FnMut(&Snapshot, &str) -> Result<Change, StoreError> + Send),
    ) -> Result<Recorded, StoreError>;

    /// The history `record` would read for `entry`, read on demand now,
    /// without waiting for writers: what was committed, which may be a
    /// little behind. The governor classifies on it outside the write
    /// transaction, and inside keeps that decision only if every context
    /// answer the policy used is the same on the exact snapshot. `None` when
    /// the store cannot read beside its writers, or (SQLite) when the entry's
    /// id is stored already: a retry, which `record` answers from the stored
    /// row without a decision.
    fn peek(
        &self,
        entry: &NewEntry<'_>,
    ) -> Result<Option<Box<dyn HistoryReads + Send + Sync>>, StoreError> {
        let _ = entry;
        Ok(None)
    }

    /// Atomically applies one transition decided on the current state. When
    /// `decide` refuses, nothing is written and its error is returned.
    fn update(
        &self,
        tenant: &str,
        tx_id: &str,
        now_ms: u64,
        decide: &mut (dyn FnMut(&Authorization) -> Result<Change, StoreError> + Send),
    ) -> Result<Authorization, StoreError>;

    /// Money committed in `entry`'s budget window (by its agent, team and
    /// tenant), as `record` would read it, without writing: what an agent
    /// may still spend. Only the entry's tenant, agent, team, currency and
    /// window start are read.
    fn committed(&self, entry: &NewEntry<'_>) -> Result<Holdings, StoreError>;

    /// Payments whose veto window or approval timeout has passed by `now_ms`
    /// and that still wait: `(tenant, tx_id)`.
    fn due(&self, now_ms: u64) -> Result<Vec<(String, String)>, StoreError>;

    /// One page of the tenant's authorizations (see [`Listing`]), read by
    /// an index beside the writers: never under the SQLite writer's lock
    /// or a PostgreSQL tenant lock.
    fn list(&self, tenant: &str, listing: &Listing<'_>) -> Result<Vec<Authorization>, StoreError>;

    /// Payments waiting on an owner, across every tenant, from counts the
    /// store keeps as payments start and stop waiting.
    fn waiting(&self) -> Result<Waiting, StoreError>;

    /// Every tenant with audit events, sorted: one index seek per tenant.
    fn tenants(&self) -> Result<Vec<String>, StoreError>;

    /// The tenant's audit events, optionally of one transaction, in order.
    fn events(&self, tenant: &str, tx_id: Option<&str>) -> Result<Vec<AuditEvent>, StoreError>;

    /// At most `limit` of the tenant's audit events after sequence number
    /// `after_seq`, in order: a page, so long chains are read in bounded memory.
    fn events_after(
        &self,
        tenant: &str,
        after_seq: u64,
        limit: usize,
    ) -> Result<Vec<AuditEvent>, StoreError>;

    /// At most `limit` of the tenant's authorizations (of one `agent`, if
    /// given) requested before `before_ms`, in request order
    /// (`requested_at_ms`, then `tx_id`), after the one at `after`: a page.
    fn authorizations_after(
        &self,
        tenant: &str,
        agent: Option<&str>,
        after: Option<(u64, &str)>,
        before_ms: u64,
        limit: usize,
    ) -> Result<Vec<Authorization>, StoreError>;

    /// The tenant's notifications, in order.
    fn outbox(&self, tenant: &str) -> Result<Vec<OutboxEntry>, StoreError>;

    /// Appends a tenant-level event (about no single payment, such as a
    /// policy activation) under a new audit id `cfg-YYYY-MM-DD-NNN`, unless
    /// the tenant's latest event of the same kind has the same detail.
    /// Returns the audit id written, if one was. `tx_id` of such events is
    /// empty.
    fn record_tenant_event(
        &self,
        tenant: &str,
        now_ms: u64,
        retention_years: u32,
        event: &EventDraft,
    ) -> Result<Option<String>, StoreError>;

    /// Records an executed payment in the ledger and returns its reference.
    /// Recording the same transaction twice returns the first reference.
    fn ledger_insert(&self, auth: &Authorization, now_ms: u64) -> Result<String, StoreError>;
}

#[cfg(test)]
mod tests {
    use super::{ListCursor, PageCursor};

    #[test]
    fn a_cursor_reads_back_and_anything_else_is_refused() {
        let cursor = ListCursor {
            requested_at_ms: 1_782_518_400_000,
            tx_id: "caf\u{e9}.1".into(),
        };
        assert_eq!(ListCursor::decode(&cursor.encode()), Some(cursor));
        // Not hex, odd, no separator, a negative time, a time past i64, no id.
        let long = "00".repeat(300);
        for bad in [
            "",
            "zz",
            "313",
            "3132",
            "2d312e61",
            "31383434363734343037333730393535313631352e61",
            "312e",
            long.as_str(),
        ] {
            assert_eq!(ListCursor::decode(bad), None, "{bad}");
        }
    }
}
