//! The shared store: PostgreSQL behind several `tiergate serve` replicas,
//! one database or several with each tenant wholly on one (see
//! [`PostgresStore`] and `directory`). What follows holds on each database.
//!
//! Every write that reads a tenant's state to decide (`record`, `update`,
//! tenant events, rule activations, webhook queueing) first takes the
//! tenant's transaction-scoped advisory lock (`pg_advisory_xact_lock`).
//! `record` and `update` do so in batches (see [`batch`]): the writes of a
//! tenant that arrive while its previous batch is in flight share one
//! transaction, one acquisition of the lock and one commit, each in a
//! savepoint of its own.
//! The lock serializes one tenant's decisions across all replicas, so budgets
//! (agent, team and tenant-wide), velocity counts, the daily audit-id
//! counter and the hash chain stay exact, while different tenants run in
//! parallel. Under the lock, READ COMMITTED statements see every earlier
//! holder's commit. A retried transaction id is found by its primary key
//! under the same lock; a deadline is applied by `update`, which decides
//! again on the current state, so when every replica runs deadlines each
//! payment moves once. A replica that dies mid-transaction holds nothing:
//! the server rolls back and releases the lock when the connection drops.
//!
//! Each connection sets `synchronous_commit = on`: a caller hears an answer
//! only after the commit holding its audit record is on the server's disk.
#![deny(missing_docs)]

mod batch;
mod deliveries;
mod directory;
mod keys;
mod moving;
pub(crate) mod pool;
mod rules;
mod schema;
mod totals;

pub use directory::PostgresStore;
pub use moving::Moved;

use crate::pool::pg;
use pool::{Conn, Pool, Sql};
use tokio_postgres::Row;

use tiergate_core::record::{Authorization, Status};
use tiergate_core::store::{
    ALL_STATUSES, ActivityQuestion, AuditEvent, Chained, Change, EventDraft, History, HistoryReads,
    Listing, NewEntry, OutboxEntry, PastPayment, Recorded, Snapshot, Store, StoreError, Waiting,
    chain, filter_columns, listing_bound, merge_keys, retain_until, utc_day,
};
use tiergate_runtime::model::context::{
    ActivityFilter, ActivityResult, ActivitySum, RecipientHistory,
};
use tiergate_runtime::model::money::parse_decimal;
use tiergate_runtime::model::transaction::Transaction;

/// One PostgreSQL database of the store, with its pool of connections:
/// everything of the tenants that live on it.
pub(crate) struct Database {
    pool: Pool,
    batches: batch::Batches,
}

impl Database {
    /// Connects with at most `size` connections and brings the schema up
    /// to date.
    pub(crate) fn open(url: &str, size: usize) -> Result<Self, StoreError> {
        let pool = Pool::open(url, size)?;
        schema::migrate(&mut *pool.get()?).map_err(|e| {
            StoreError::database(
                format!("cannot bring the store {} up to date", pool.describe()),
                e,
            )
        })?;
        Ok(Database {
            pool,
            batches: batch::Batches::default(),
        })
    }

    /// Where it is, without the password, for messages.
    pub(crate) fn describe(&self) -> String {
        self.pool.describe()
    }

    fn conn(&self) -> Result<pool::Pooled<'_>, StoreError> {
        self.pool.get()
    }

    /// Runs `work` as a unit of the tenant's next batch (see [`batch`]),
    /// inside a savepoint `work` opens with its first reads and releases
    /// with its writes; here it is rolled back to when `work` fails. Returns
    /// once the batch has ended: `work`'s outcome if the batch committed.
    fn in_batch<R: Send>(
        &self,
        tenant: &str,
        mut work: impl FnMut(&mut Conn) -> Result<R, StoreError> + Send,
    ) -> Result<R, StoreError> {
        let span = tracing::Span::current();
        let mut outcome = None;
        let mut unit = |step: batch::Step<'_>| {
            let _in_span = span.enter();
            match step {
                batch::Step::Run(c) => {
                    let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| work(c)));
                    let failed = !matches!(ran, Ok(Ok(_)));
                    outcome = Some(ran);
                    if failed {
                        if c.has_deferred() {
                            // Writes that were to go ahead of this unit's
                            // never did: undoing it would undo them too.
                            return Err(StoreError::unusable(
                                "a write failed while others waited to be sent",
                            ));
                        }
                        // Undo this unit alone, and end its savepoint so
                        // no later rollback can reach past it; if that
                        // fails, the batch.
                        c.execute_all(&[(batch::ROLLBACK_TO, vec![]), (batch::RELEASE, vec![])])?;
                    }
                }
                batch::Step::Failed(e) => outcome = Some(Ok(Err(e))),
                batch::Step::Ended(Err(lost)) => {
                    if !matches!(outcome, Some(Ok(Err(_)) | Err(_))) {
                        outcome = Some(Ok(Err(StoreError::database(
                            "PostgreSQL",
                            batch::BatchLost(lost.clone()),
                        ))));
                    }
                }
                batch::Step::Ended(Ok(())) => {}
            }
            Ok(())
        };
        self.batches.run(&self.pool, tenant, &mut unit);
        match outcome {
            Some(Ok(out)) => out,
            Some(Err(panic)) => std::panic::resume_unwind(panic),
            None => Err(StoreError::unusable(
                "a write's batch ended without running it",
            )),
        }
    }
}

fn ms(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn parse_body(body: &str) -> Result<Authorization, StoreError> {
    serde_json::from_str(body).map_err(|e| StoreError::unreadable("a stored authorization", e))
}

const GET_AUTHORIZATION: &str = "SELECT body FROM authorizations WHERE tenant = $1 AND tx_id = $2";

fn get_in(c: &mut Conn, tenant: &str, tx_id: &str) -> Result<Option<Authorization>, StoreError> {
    let row = c.query_opt(GET_AUTHORIZATION, &[&tenant, &tx_id])?;
    row.map(|r| parse_body(r.try_get(0).map_err(pg)?))
        .transpose()
}

/// The stored authorization among the rows of a [`GET_AUTHORIZATION`].
fn stored(rows: &[Row]) -> Result<Option<Authorization>, StoreError> {
    rows.first()
        .map(|r| parse_body(r.try_get(0).map_err(pg)?))
        .transpose()
}

/// The tenant's last audit event, which the next one chains to.
const LAST_EVENT: &str =
    "SELECT seq, hash FROM audit_events WHERE tenant = $1 ORDER BY seq DESC LIMIT 1";

/// The chain's head among the rows of a [`LAST_EVENT`]: `None` before the
/// tenant's first event.
fn chain_head(rows: &[Row]) -> Result<Option<(u64, String)>, StoreError> {
    rows.first()
        .map(|r| {
            Ok((
                r.try_get::<_, i64>(0).map_err(pg)? as u64,
                r.try_get(1).map_err(pg)?,
            ))
        })
        .transpose()
}

const INSERT_AUTHORIZATION: &str = "INSERT INTO authorizations (tenant, tx_id, content_hash, agent,
         team, recipient, category, currency, amount, tier, requested_at_ms, status, holds,
         deadline_ms, body, audit_id, caller)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)";

const UPDATE_AUTHORIZATION: &str =
    "UPDATE authorizations SET status = $3, holds = $4, deadline_ms = $5, body = $6
     WHERE tenant = $1 AND tx_id = $2";

const INSERT_EVENT: &str = "INSERT INTO audit_events (tenant, seq, audit_id, tx_id, kind, actor,
         at_ms, detail, prev_hash, hash, retain_until_ms)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)";

const INSERT_LEDGER: &str = "INSERT INTO ledger (tenant, tx_id, amount, currency, recipient,
         executed_ms, reference)
     VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (tenant, tx_id) DO NOTHING";

const INSERT_NOTICE: &str =
    "INSERT INTO outbox (tenant, tx_id, kind, recipient, message, created_ms)
     VALUES ($1, $2, $3, $4, $5, $6)";

/// Writes the change's state, events, ledger entry and notices. Every
/// value is computed first and the writes go to the server together: each
/// statement alone was a round trip with the tenant's lock held. `before`
/// is the stored status (none for a new authorization) and `head` the
/// tenant's last event, both read under the lock held since. The unit's
/// savepoint is released with the writes, which go to the server with the
/// next statements of the batch (see [`batch`]).
fn apply(
    c: &mut Conn,
    change: &Change,
    now_ms: u64,
    before: Option<Status>,
    head: Option<(u64, String)>,
) -> Result<(), StoreError> {
    let a = &change.authorization;
    let t = &a.transaction;
    let body = serde_json::to_string(a)
        .map_err(|e| StoreError::unreadable("an authorization to store", e))?;
    let totals = totals::track(a, before);
    let events = chained(
        head,
        &t.tenant,
        &a.audit_id,
        &t.id,
        now_ms,
        &change.events,
        retain_until(now_ms, a.retention_years),
    );
    let (amount, requested, deadline) = (
        t.amount.to_string(),
        ms(t.requested_at_ms),
        a.deadline_ms.map(ms),
    );
    let (tier, status, holds) = (a.tier.as_str(), a.status.as_str(), a.status.holds_budget());
    let now = ms(now_ms);
    let reference = tiergate_core::store::ledger_reference(&a.audit_id);

    let mut writes: Vec<Sql<'_>> = Vec::new();
    totals.writes(t, &mut writes);
    writes.push(if before.is_none() {
        (
            INSERT_AUTHORIZATION,
            vec![
                &t.tenant,
                &t.id,
                &a.content_hash,
                &t.agent,
                &a.team,
                &t.recipient,
                &t.category,
                &t.currency,
                &amount,
                &tier,
                &requested,
                &status,
                &holds,
                &deadline,
                &body,
                &a.audit_id,
                &a.caller,
            ],
        )
    } else {
        (
            UPDATE_AUTHORIZATION,
            vec![&t.tenant, &t.id, &status, &holds, &deadline, &body],
        )
    });
    writes.extend(events.iter().map(ChainedEvent::write));
    if change.ledger {
        writes.push(ledger_write(t, &amount, &now, &reference));
    }
    for notice in &change.notices {
        writes.push((
            INSERT_NOTICE,
            vec![
                &t.tenant,
                &t.id,
                &notice.kind,
                &notice.to,
                &notice.message,
                &now,
            ],
        ));
    }
    writes.push((batch::RELEASE, vec![]));
    c.defer(&writes)
}

/// A chained event with the values its insert binds.
struct ChainedEvent<'a> {
    tenant: &'a str,
    audit_id: &'a str,
    tx_id: &'a str,
    seq: i64,
    at_ms: i64,
    retain_until_ms: i64,
    chained: Chained<'a>,
}

impl ChainedEvent<'_> {
    fn write(&self) -> Sql<'_> {
        // The text stored is the text hashed.
        (
            INSERT_EVENT,
            vec![
                &self.tenant,
                &self.seq,
                &self.audit_id,
                &self.tx_id,
                &self.chained.event.kind,
                &self.chained.event.actor,
                &self.at_ms,
                &self.chained.hashed.detail,
                &self.chained.prev_hash,
                &self.chained.hashed.hash,
                &self.retain_until_ms,
            ],
        )
    }
}

/// `events` chained after `head`, the tenant's last event, read under the
/// tenant's lock the caller holds.
fn chained<'a>(
    head: Option<(u64, String)>,
    tenant: &'a str,
    audit_id: &'a str,
    tx_id: &'a str,
    at_ms: u64,
    events: &'a [EventDraft],
    retain_until_ms: u64,
) -> Vec<ChainedEvent<'a>> {
    chain(head, audit_id, tx_id, at_ms, events, retain_until_ms)
        .into_iter()
        .map(|chained| ChainedEvent {
            tenant,
            audit_id,
            tx_id,
            seq: chained.seq as i64,
            at_ms: ms(at_ms),
            retain_until_ms: ms(retain_until_ms),
            chained,
        })
        .collect()
}

/// The agent's payments requested since `$3`: `$1` the tenant, `$2` the
/// agent. Read before every decision.
///
/// The time bounds of this read and the next are written on `(agent,
/// requested_at_ms)`, which only `authorizations_by_agent` can seek: before
/// the table's first statistics, a plan made for any parameters ranked
/// `authorizations_in_order` (the tenant's payments in time) as good, and
/// went through every payment of the tenant to find the agent's.
const AGENT_HISTORY: &str = "SELECT requested_at_ms, amount, currency, category, tier
     FROM authorizations
     WHERE tenant = $1 AND agent = $2 AND (agent, requested_at_ms) >= ($2, $3)";

/// How many of the agent's payments requested from `$3` to `$4` match a
/// category (`$5`) and a tier (`$6`), and their amounts: a policy's context
/// question, asked again under the tenant's lock.
const AGENT_ACTIVITY: &str = "SELECT amount, currency FROM authorizations
     WHERE tenant = $1 AND agent = $2
       AND (agent, requested_at_ms) >= ($2, $3) AND (agent, requested_at_ms) <= ($2, $4)
       AND ($5::text IS NULL OR category = $5) AND ($6::text IS NULL OR tier = $6)";

/// `record`'s unit: everything its decision reads, in one round trip
/// under the tenant's lock, then the plan, then its writes.
fn record_in(
    c: &mut Conn,
    entry: &NewEntry<'_>,
    plan: &mut (dyn FnMut(&Snapshot, &str) -> Result<Change, StoreError> + Send),
) -> Result<Recorded, StoreError> {
    let window = totals::Window::of(entry);
    let [bucket_reads, cut_hour_reads] = window.reads(entry);
    let counter = DayCounter::new(entry.now_ms, "aud");
    let bounds: Vec<ActivityBounds<'_>> = entry
        .asked
        .iter()
        .map(|q| ActivityBounds::of(entry, q))
        .collect();
    let mut reads: Vec<Sql<'_>> = vec![
        (batch::SAVEPOINT, vec![]),
        (GET_AUTHORIZATION, vec![&entry.tenant, &entry.tx_id]),
        bucket_reads,
        cut_hour_reads,
        counter.take(&entry.tenant),
        (LAST_EVENT, vec![&entry.tenant]),
        (totals::RECIPIENT, vec![&entry.tenant, &entry.recipient]),
    ];
    for b in &bounds {
        reads.push((
            AGENT_ACTIVITY,
            vec![
                &entry.tenant,
                &entry.agent,
                &b.since,
                &b.until,
                &b.category,
                &b.tier,
            ],
        ));
    }
    let mut answers = c.query_list(&reads)?.into_iter();
    let mut next = || {
        answers
            .next()
            .ok_or_else(|| StoreError::unusable("PostgreSQL answered fewer reads than were sent"))
    };
    let (_, existing, buckets, cut_hour, number, head, recipient) = (
        next()?,
        next()?,
        next()?,
        next()?,
        next()?,
        next()?,
        next()?,
    );
    let answered = entry
        .asked
        .iter()
        .map(|q| Ok((q, activity_of(&next()?, entry.currency)?)))
        .collect::<Result<Vec<_>, StoreError>>()?;
    if let Some(existing) = stored(&existing)? {
        // A number was taken for nothing: give it back.
        c.execute(batch::ROLLBACK_TO, &[])?;
        return Ok(Recorded::Existing(existing));
    }
    let holdings = totals::holdings(entry, &buckets, &cut_hour)?;
    let audit_id = counter.id(&number)?;
    let head = chain_head(&head)?;
    let change = {
        let history = HistoryIn {
            conn: std::cell::RefCell::new(&mut *c),
            entry,
            recipient: totals::recipient_of(&recipient)?,
            answered,
        };
        plan(
            &Snapshot {
                holdings,
                history: &history,
            },
            &audit_id,
        )?
    };
    apply(c, &change, entry.now_ms, None, head)?;
    Ok(Recorded::New(change.authorization))
}

fn history_in(
    c: &mut Conn,
    tenant: &str,
    agent: &str,
    recipient: &str,
    since_ms: u64,
) -> Result<History, StoreError> {
    let since = ms(since_ms);
    let [rows, paid] = c.query_all([
        (AGENT_HISTORY, vec![&tenant, &agent, &since]),
        (totals::RECIPIENT, vec![&tenant, &recipient]),
    ])?;
    let mut payments = Vec::with_capacity(rows.len());
    for r in rows {
        payments.push(PastPayment {
            requested_at_ms: r.try_get::<_, i64>(0).map_err(pg)? as u64,
            amount: parse_decimal(r.try_get(1).map_err(pg)?)
                .map_err(|e| StoreError::unreadable("a stored amount", e))?,
            currency: r.try_get(2).map_err(pg)?,
            category: r.try_get(3).map_err(pg)?,
            tier: r
                .try_get::<_, &str>(4)
                .map_err(pg)?
                .parse()
                .map_err(|e: String| StoreError::unreadable("a stored tier", e))?,
        });
    }
    let paid = totals::recipient_of(&paid)?;
    Ok(History {
        payments,
        recipient_first_paid_ms: paid.first_seen_ms,
        recipient_payments: paid.payment_count,
    })
}

/// The history of `record`'s entry, read on demand inside its transaction.
struct HistoryIn<'a, 'e> {
    conn: std::cell::RefCell<&'a mut Conn>,
    entry: &'a NewEntry<'e>,
    /// Read with the snapshot: every decision asks it.
    recipient: RecipientHistory,
    /// The entry's expected questions, answered with the snapshot.
    answered: Vec<(&'a ActivityQuestion, ActivityResult)>,
}

/// The values an [`AGENT_ACTIVITY`] read binds for a question.
struct ActivityBounds<'q> {
    since: i64,
    until: i64,
    category: Option<&'q str>,
    tier: Option<&'q str>,
}

impl<'q> ActivityBounds<'q> {
    fn of(entry: &NewEntry<'_>, question: &'q ActivityQuestion) -> ActivityBounds<'q> {
        let (category, tier) = filter_columns(&question.filter);
        ActivityBounds {
            since: ms(question.since_ms.max(entry.history_since_ms)),
            until: ms(question.until_ms),
            category,
            tier,
        }
    }
}

/// The answer to an [`AGENT_ACTIVITY`] read: how many, and the exact sum
/// of those in `currency`.
fn activity_of(rows: &[Row], currency: &str) -> Result<ActivityResult, StoreError> {
    let mut activity = ActivitySum::default();
    for r in rows {
        let amount = if r.try_get::<_, &str>(1).map_err(pg)? == currency {
            Some(
                parse_decimal(r.try_get(0).map_err(pg)?)
                    .map_err(|e| StoreError::unreadable("a stored amount", e))?,
            )
        } else {
            None
        };
        activity.add(amount);
    }
    Ok(activity.finish())
}

impl HistoryReads for HistoryIn<'_, '_> {
    fn activity(
        &self,
        since_ms: u64,
        until_ms: u64,
        currency: &str,
        filter: &ActivityFilter,
    ) -> Result<ActivityResult, StoreError> {
        let question = ActivityQuestion {
            since_ms,
            until_ms,
            filter: filter.clone(),
        };
        if currency == self.entry.currency
            && let Some((_, answer)) = self.answered.iter().find(|(q, _)| **q == question)
        {
            return Ok(answer.clone());
        }
        let bound = ActivityBounds::of(self.entry, &question);
        let rows = self.conn.borrow_mut().query(
            AGENT_ACTIVITY,
            &[
                &self.entry.tenant,
                &self.entry.agent,
                &bound.since,
                &bound.until,
                &bound.category,
                &bound.tier,
            ],
        )?;
        activity_of(&rows, currency)
    }

    fn recipient(&self) -> Result<RecipientHistory, StoreError> {
        Ok(self.recipient)
    }

    fn all(&self) -> Result<History, StoreError> {
        history_in(
            &mut self.conn.borrow_mut(),
            self.entry.tenant,
            self.entry.agent,
            self.entry.recipient,
            self.entry.history_since_ms,
        )
    }
}

/// One of a tenant's daily counters, which number ids
/// `<prefix>-YYYY-MM-DD-NNN`. Taking a number needs the tenant's lock.
struct DayCounter {
    prefix: &'static str,
    day: String,
    key: String,
}

impl DayCounter {
    fn new(now_ms: u64, prefix: &'static str) -> DayCounter {
        let day = utc_day(now_ms);
        let key = match prefix {
            "aud" => day.clone(),
            other => format!("{other}:{day}"),
        };
        DayCounter { prefix, day, key }
    }

    /// Takes the tenant's next number; [`DayCounter::id`] reads the answer.
    fn take<'a>(&'a self, tenant: &'a &'a str) -> Sql<'a> {
        (
            "INSERT INTO audit_days (tenant, day, next) VALUES ($1, $2, 2)
             ON CONFLICT (tenant, day) DO UPDATE SET next = audit_days.next + 1
             RETURNING next - 1",
            vec![tenant, &self.key],
        )
    }

    fn id(&self, rows: &[Row]) -> Result<String, StoreError> {
        let row = rows
            .first()
            .ok_or_else(|| StoreError::unusable("the daily audit counter returned no number"))?;
        let next: i64 = row.try_get(0).map_err(pg)?;
        Ok(format!("{}-{}-{next:03}", self.prefix, self.day))
    }
}

const EVENT_COLUMNS: &str =
    "seq, audit_id, tx_id, at_ms, kind, actor, detail, prev_hash, hash, retain_until_ms";

fn event_row(r: &Row) -> Result<AuditEvent, StoreError> {
    let seq = r.try_get::<_, i64>(0).map_err(pg)? as u64;
    let tx_id: String = r.try_get(2).map_err(pg)?;
    let detail = serde_json::from_str(r.try_get(6).map_err(pg)?).map_err(|e| {
        StoreError::unreadable(format!("the detail of audit event {seq} of {tx_id}"), e)
    })?;
    Ok(AuditEvent {
        seq,
        audit_id: r.try_get(1).map_err(pg)?,
        tx_id,
        at_ms: r.try_get::<_, i64>(3).map_err(pg)? as u64,
        event: EventDraft {
            kind: r.try_get(4).map_err(pg)?,
            actor: r.try_get(5).map_err(pg)?,
            detail,
        },
        retain_until_ms: r.try_get::<_, i64>(9).map_err(pg)? as u64,
        prev_hash: r.try_get(7).map_err(pg)?,
        hash: r.try_get(8).map_err(pg)?,
    })
}

fn ledger_write<'a>(
    t: &'a Transaction,
    amount: &'a String,
    executed_ms: &'a i64,
    reference: &'a String,
) -> Sql<'a> {
    (
        INSERT_LEDGER,
        vec![
            &t.tenant,
            &t.id,
            amount,
            &t.currency,
            &t.recipient,
            executed_ms,
            reference,
        ],
    )
}

fn ledger_insert_in(c: &mut Conn, auth: &Authorization, now_ms: u64) -> Result<String, StoreError> {
    let t = &auth.transaction;
    let (amount, now) = (t.amount.to_string(), ms(now_ms));
    let reference = tiergate_core::store::ledger_reference(&auth.audit_id);
    c.execute_all(&[ledger_write(t, &amount, &now, &reference)])?;
    // Already in the ledger: its first reference stands.
    c.query_one(
        "SELECT reference FROM ledger WHERE tenant = $1 AND tx_id = $2",
        &[&t.tenant, &t.id],
    )?
    .try_get(0)
    .map_err(pg)
}

/// One page of a listing: its keys from an index (per status, merged),
/// then the payments by their primary key, in one round trip each.
fn list_in(
    c: &mut Conn,
    tenant: &str,
    listing: &Listing<'_>,
) -> Result<Vec<Authorization>, StoreError> {
    let (at, id) = listing_bound(listing);
    let limit = listing.limit.min(i64::MAX as usize) as i64;
    let (cmp, order) = if listing.newest_first {
        ("<", "DESC")
    } else {
        (">", "ASC")
    };
    let key = |r: &Row| -> Result<(i64, String), StoreError> {
        Ok((r.try_get(0).map_err(pg)?, r.try_get(1).map_err(pg)?))
    };
    let keys = if listing.statuses.is_empty() && listing.caller.is_none() {
        let sql = format!(
            "SELECT requested_at_ms, tx_id FROM authorizations
             WHERE tenant = $1 AND (requested_at_ms, tx_id) {cmp} ($2, $3)
             ORDER BY requested_at_ms {order}, tx_id {order} LIMIT $4"
        );
        c.query(&sql, &[&tenant, &at, &id, &limit])?
            .iter()
            .map(key)
            .collect::<Result<Vec<_>, _>>()?
    } else {
        let statuses: Vec<&str> = if listing.statuses.is_empty() {
            ALL_STATUSES.iter().map(|s| s.as_str()).collect()
        } else {
            listing.statuses.iter().map(|s| s.as_str()).collect()
        };
        let caller = listing.caller.map_or("", |_| "AND caller = $6");
        let sql = format!(
            "SELECT requested_at_ms, tx_id FROM authorizations
             WHERE tenant = $1 {caller} AND status = $2 AND (requested_at_ms, tx_id) {cmp} ($3, $4)
             ORDER BY requested_at_ms {order}, tx_id {order} LIMIT $5"
        );
        let mut pages = Vec::new();
        for status in &statuses {
            let mut params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> =
                vec![&tenant, status, &at, &id, &limit];
            if let Some(caller) = &listing.caller {
                params.push(caller);
            }
            pages.push(
                c.query(&sql, &params)?
                    .iter()
                    .map(key)
                    .collect::<Result<Vec<_>, _>>()?,
            );
        }
        merge_keys(listing, pages)
    };
    let ids: Vec<&str> = keys.iter().map(|(_, id)| id.as_str()).collect();
    let rows = c.query(
        "SELECT tx_id, body FROM authorizations WHERE tenant = $1 AND tx_id = ANY($2)",
        &[&tenant, &ids],
    )?;
    let mut bodies = std::collections::HashMap::new();
    for r in &rows {
        bodies.insert(
            r.try_get::<_, &str>(0).map_err(pg)?,
            r.try_get::<_, &str>(1).map_err(pg)?,
        );
    }
    ids.iter()
        .map(|id| {
            let body = bodies.get(id).ok_or_else(|| {
                StoreError::unusable(format!("payment {id} vanished from the listing"))
            })?;
            parse_body(body)
        })
        .collect()
}

impl Store for Database {
    fn get(&self, tenant: &str, tx_id: &str) -> Result<Option<Authorization>, StoreError> {
        get_in(&mut *self.conn()?, tenant, tx_id)
    }

    fn committed(
        &self,
        entry: &NewEntry<'_>,
    ) -> Result<tiergate_core::store::Holdings, StoreError> {
        let window = totals::Window::of(entry);
        let [bucket_reads, cut_hour_reads] = window.reads(entry);
        let [buckets, cut_hour] = self.conn()?.query_all([bucket_reads, cut_hour_reads])?;
        totals::holdings(entry, &buckets, &cut_hour)
    }

    fn tx_with_audit_id(&self, tenant: &str, audit_id: &str) -> Result<Option<String>, StoreError> {
        let rows = self.conn()?.query(
            "SELECT tx_id FROM authorizations WHERE tenant = $1 AND audit_id = $2",
            &[&tenant, &audit_id],
        )?;
        rows.first().map(|r| r.try_get(0)).transpose().map_err(pg)
    }

    fn record(
        &self,
        entry: &NewEntry<'_>,
        plan: &mut (dyn FnMut(&Snapshot, &str) -> Result<Change, StoreError> + Send),
    ) -> Result<Recorded, StoreError> {
        // A retry of a committed id needs no lock: a stored row is final here.
        if let Some(existing) = get_in(&mut *self.conn()?, entry.tenant, entry.tx_id)? {
            return Ok(Recorded::Existing(existing));
        }
        self.in_batch(entry.tenant, |c| record_in(c, entry, plan))
    }

    fn peek(
        &self,
        entry: &NewEntry<'_>,
    ) -> Result<Option<Box<dyn HistoryReads + Send + Sync>>, StoreError> {
        // Read whole: a pooled connection is not kept for the classification.
        let history = history_in(
            &mut *self.conn()?,
            entry.tenant,
            entry.agent,
            entry.recipient,
            entry.history_since_ms,
        )?;
        Ok(Some(Box::new(history)))
    }

    fn update(
        &self,
        tenant: &str,
        tx_id: &str,
        now_ms: u64,
        decide: &mut (dyn FnMut(&Authorization) -> Result<Change, StoreError> + Send),
    ) -> Result<Authorization, StoreError> {
        self.in_batch(tenant, |c| {
            let [_, current, head] = c.query_all([
                (batch::SAVEPOINT, vec![]),
                (GET_AUTHORIZATION, vec![&tenant, &tx_id]),
                (LAST_EVENT, vec![&tenant]),
            ])?;
            let current = stored(&current)?.ok_or_else(|| StoreError::NotFound {
                tenant: tenant.to_string(),
                tx_id: tx_id.to_string(),
            })?;
            let change = decide(&current)?;
            apply(c, &change, now_ms, Some(current.status), chain_head(&head)?)?;
            Ok(change.authorization)
        })
    }

    fn due(&self, now_ms: u64) -> Result<Vec<(String, String)>, StoreError> {
        let rows = self.conn()?.query(
            "SELECT tenant, tx_id FROM authorizations
             WHERE deadline_ms IS NOT NULL AND deadline_ms <= $1
               AND status IN ('pending_veto', 'awaiting_approval')
             ORDER BY deadline_ms",
            &[&ms(now_ms)],
        )?;
        rows.iter()
            .map(|r| Ok((r.try_get(0).map_err(pg)?, r.try_get(1).map_err(pg)?)))
            .collect()
    }

    fn list(&self, tenant: &str, listing: &Listing<'_>) -> Result<Vec<Authorization>, StoreError> {
        let mut c = self.conn()?;
        // One snapshot for the keys and the rows; no tenant lock.
        c.batch("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")?;
        let page = list_in(&mut c, tenant, listing);
        c.rollback()?;
        page
    }

    fn waiting(&self) -> Result<Waiting, StoreError> {
        let rows = self.conn()?.query(
            "SELECT status, SUM(n)::BIGINT FROM waiting GROUP BY status",
            &[],
        )?;
        let mut waiting = Waiting::default();
        for r in rows {
            let n = r.try_get::<_, i64>(1).map_err(pg)?.max(0) as u64;
            match r.try_get::<_, &str>(0).map_err(pg)? {
                "pending_veto" => waiting.pending_veto = n,
                "awaiting_approval" => waiting.awaiting_approval = n,
                _ => {}
            }
        }
        Ok(waiting)
    }

    fn tenants(&self) -> Result<Vec<String>, StoreError> {
        // One index seek per tenant: `SELECT DISTINCT` read every event.
        let rows = self.conn()?.query(
            "WITH RECURSIVE t(name) AS (
                 SELECT MIN(tenant) FROM audit_events
                 UNION ALL
                 SELECT (SELECT MIN(tenant) FROM audit_events WHERE tenant > t.name) FROM t
                 WHERE t.name IS NOT NULL
             )
             SELECT name FROM t WHERE name IS NOT NULL",
            &[],
        )?;
        rows.iter().map(|r| r.try_get(0).map_err(pg)).collect()
    }

    fn events(&self, tenant: &str, tx_id: Option<&str>) -> Result<Vec<AuditEvent>, StoreError> {
        // One statement per case, so each has a plan that uses its index.
        let rows = match tx_id {
            Some(tx_id) => self.conn()?.query(
                &format!(
                    "SELECT {EVENT_COLUMNS} FROM audit_events
                     WHERE tenant = $1 AND tx_id = $2 ORDER BY seq"
                ),
                &[&tenant, &tx_id],
            )?,
            None => self.conn()?.query(
                &format!("SELECT {EVENT_COLUMNS} FROM audit_events WHERE tenant = $1 ORDER BY seq"),
                &[&tenant],
            )?,
        };
        rows.iter().map(event_row).collect()
    }

    fn events_after(
        &self,
        tenant: &str,
        after_seq: u64,
        limit: usize,
    ) -> Result<Vec<AuditEvent>, StoreError> {
        let rows = self.conn()?.query(
            &format!(
                "SELECT {EVENT_COLUMNS} FROM audit_events
                 WHERE tenant = $1 AND seq > $2 ORDER BY seq LIMIT $3"
            ),
            &[
                &tenant,
                &ms(after_seq),
                &(limit.min(i64::MAX as usize) as i64),
            ],
        )?;
        rows.iter().map(event_row).collect()
    }

    fn authorizations_after(
        &self,
        tenant: &str,
        agent: Option<&str>,
        after: Option<(u64, &str)>,
        before_ms: u64,
        limit: usize,
    ) -> Result<Vec<Authorization>, StoreError> {
        // Where there is no cursor, one that sorts first, so every page
        // seeks to its cursor on the index.
        let (at, id) = after.map_or((i64::MIN, ""), |(at, id)| (ms(at), id));
        let limit = limit.min(i64::MAX as usize) as i64;
        let before = ms(before_ms);
        let rows = match agent {
            Some(agent) => self.conn()?.query(
                "SELECT body FROM authorizations
                 WHERE tenant = $1 AND agent = $2 AND (requested_at_ms, tx_id) > ($3, $4)
                   AND requested_at_ms < $5
                 ORDER BY requested_at_ms, tx_id LIMIT $6",
                &[&tenant, &agent, &at, &id, &before, &limit],
            )?,
            None => self.conn()?.query(
                "SELECT body FROM authorizations
                 WHERE tenant = $1 AND (requested_at_ms, tx_id) > ($2, $3)
                   AND requested_at_ms < $4
                 ORDER BY requested_at_ms, tx_id LIMIT $5",
                &[&tenant, &at, &id, &before, &limit],
            )?,
        };
        rows.iter()
            .map(|r| parse_body(r.try_get(0).map_err(pg)?))
            .collect()
    }

    fn outbox(&self, tenant: &str) -> Result<Vec<OutboxEntry>, StoreError> {
        let rows = self.conn()?.query(
            &format!(
                "SELECT {} FROM outbox o WHERE o.tenant = $1 ORDER BY o.id",
                tiergate_core::store::deliveries::OUTBOX_COLUMNS
            ),
            &[&tenant],
        )?;
        rows.iter()
            .map(deliveries::outbox_entry)
            .collect::<Result<_, _>>()
            .map_err(pg)
    }

    fn record_tenant_event(
        &self,
        tenant: &str,
        now_ms: u64,
        retention_years: u32,
        event: &EventDraft,
    ) -> Result<Option<String>, StoreError> {
        let mut c = self.conn()?;
        c.begin_locked(tenant)?;
        let counter = DayCounter::new(now_ms, "cfg");
        let [latest, number, head] = c.query_all([
            (
                "SELECT detail FROM audit_events WHERE tenant = $1 AND tx_id = '' AND kind = $2
                 ORDER BY seq DESC LIMIT 1",
                vec![&tenant, &event.kind],
            ),
            counter.take(&tenant),
            (LAST_EVENT, vec![&tenant]),
        ])?;
        let same = match latest.first() {
            Some(r) => serde_json::from_str::<serde_json::Value>(r.try_get(0).map_err(pg)?)
                .is_ok_and(|d| d == event.detail),
            None => false,
        };
        if same {
            // A number was taken for nothing: give it back.
            c.rollback()?;
            return Ok(None);
        }
        let audit_id = counter.id(&number)?;
        let chained = chained(
            chain_head(&head)?,
            tenant,
            &audit_id,
            "",
            now_ms,
            std::slice::from_ref(event),
            retain_until(now_ms, retention_years),
        );
        let writes: Vec<Sql<'_>> = chained.iter().map(ChainedEvent::write).collect();
        c.execute_all(&writes)?;
        c.commit()?;
        Ok(Some(audit_id))
    }

    fn ledger_insert(&self, auth: &Authorization, now_ms: u64) -> Result<String, StoreError> {
        // Under the tenant's lock, so a tenant moving away is not written
        // behind the move's back.
        let mut c = self.conn()?;
        c.begin_locked(&auth.transaction.tenant)?;
        let reference = ledger_insert_in(&mut c, auth, now_ms)?;
        c.commit()?;
        Ok(reference)
    }
}

#[cfg(test)]
mod tests {
    use super::{AGENT_ACTIVITY, AGENT_HISTORY};
    use crate::pool::Pool;
    use crate::schema::migrate;
    use crate::totals::BUDGET_BUCKETS;

    /// A tenant's first minutes: thousands of payments of 500 agents,
    /// and no statistics yet (autovacuum analyzes a table a minute or more
    /// later). Each read a decision makes is planned once per connection
    /// for any parameters, and must still seek the rows of its agent, not
    /// go through the whole tenant's.
    #[test]
    fn the_reads_before_a_decision_seek_the_agents_rows_before_any_statistics() {
        let url = tiergate_e2e::postgres::fresh_database();
        let pool = Pool::open(&url, 1).unwrap();
        let mut c = pool.get().unwrap();
        migrate(&mut c).unwrap();
        c.batch(
            "INSERT INTO authorizations (tenant, tx_id, content_hash, agent, recipient, category,
                 currency, amount, tier, requested_at_ms, status, holds, body, audit_id)
                 SELECT 'acme', 'tx-' || i, '', 'agent-' || (i % 500), 'vendor', 'embeddings',
                        'USDC', '0.02', 'autonomous', 1780000000000 + i * 20000, 'executed',
                        true, '{}', 'aud-' || i
                 FROM generate_series(1, 4400) i;
             INSERT INTO holdings (tenant, scope, name, currency, hour, amount)
                 SELECT 'acme', 'agent', 'agent-' || (i % 500), 'USDC', 494444 + i / 500, '0.02'
                 FROM generate_series(1, 12000) i
                 ON CONFLICT DO NOTHING;
             INSERT INTO holdings (tenant, scope, name, currency, hour, amount)
                 SELECT 'acme', 'tenant', '', 'USDC', 494444 + i, '9'
                 FROM generate_series(0, 24) i;
             SET plan_cache_mode = force_generic_plan;",
        )
        .unwrap();
        for (sql, params) in [
            (AGENT_HISTORY, "'acme', 'agent-7', 0"),
            (
                AGENT_ACTIVITY,
                "'acme', 'agent-7', 0, 9000000000000, NULL, NULL",
            ),
            (BUDGET_BUCKETS, "'acme', 'USDC', 494444, 'agent-7', NULL"),
        ] {
            c.batch(&format!("PREPARE read AS {sql}")).unwrap();
            let steps: Vec<String> = c
                .query(
                    &format!("EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF) EXECUTE read({params})"),
                    &[],
                )
                .unwrap()
                .iter()
                .map(|r| r.get(0))
                .collect();
            c.batch("DEALLOCATE read").unwrap();
            assert!(
                !steps
                    .iter()
                    .any(|s| s.contains("Rows Removed by Filter") || s.contains("Seq Scan")),
                "{sql}\nreads rows it does not need: {steps:#?}"
            );
        }
    }
}
