//! Tenants over several PostgreSQL databases.
//!
//! A store URL may name several databases, joined by `,postgres://`:
//! `postgres://a.example/tg,postgres://b.example/tg`. Each tenant lives
//! wholly on one of them, its *home*: its payments, audit chain, rules,
//! uploads, webhooks and deliveries. So every per-tenant guarantee (the
//! tenant's lock, budgets, the chain) is one database's, as with a single
//! one, and a database that is down stops only the tenants that live there.
//!
//! The first database named is the *directory*. Besides its own tenants it
//! keeps what is not any one tenant's: API keys, which are looked up by id
//! alone, the databases of the set (`tiergate_databases`) and each tenant's
//! home (`tenant_homes`). Each database knows its own number in the set
//! (`tiergate_identity`), given when it joins, so the order of the URL
//! after the directory, or a host's new name, moves no tenant.
//!
//! A tenant is placed the first time something of it is written: on the
//! database, among those this replica names, with the fewest tenants.
//! Every replica reads the placement from the directory and keeps it: a
//! placement never changes by itself, and adding a database moves nobody.
//! A database joins empty; when the directory is first opened by this
//! version, the tenants it already holds are placed on it.
//!
//! Notices (and so deliveries) are numbered by database: database `n`
//! numbers from `n << 40`, so a delivery is found from its id alone.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{PoisonError, RwLock};
use std::time::{Duration, Instant};

use tiergate_core::record::Authorization;
use tiergate_core::store::{
    AddedWebhook, ApiKey, AuditEvent, Change, DeletedPolicy, Delivery, DeliveryCursor,
    DeliveryRecord, DeliveryState, DeliveryStore, DeliveryTrouble, EventDraft, HistoryReads,
    Holdings, KeyStore, Listing, NewEntry, OutboxEntry, PutPolicy, Recorded, RulesStore, Snapshot,
    Store, StoreError, StoredRules, StoredWebhook, UploadQuota, UploadedPolicy, Waiting,
};

use crate::pool::{Conn, pg};
use crate::{Database, pool};

/// The bits of a notice id below its database's number.
const NOTICE_BITS: u32 = 40;

/// Taken on the directory while databases join: one replica at a time.
const JOIN_LOCK: &str = "SELECT pg_advisory_xact_lock(7467, 2)";

/// Taken on the directory while a tenant is placed or moved: two replicas
/// placing the same new tenant agree, and the counts stay exact.
pub(crate) const PLACE_LOCK: &str = "SELECT pg_advisory_xact_lock(7467, 3)";

/// How long a replica keeps a tenant's home before asking the directory
/// again: after a move, a replica reads the old copy for at most this long,
/// and the new one takes no write until it has passed.
pub(crate) const HOME_TTL: Duration = Duration::from_secs(5);

/// The store: one PostgreSQL database, or several with each tenant on one
/// of them. Several `tiergate serve` replicas may share it.
pub struct PostgresStore {
    /// In the URL's order: the directory first.
    pub(crate) members: Vec<Member>,
    /// Tenants' homes read lately, as indexes into `members`, with when.
    homes: RwLock<HashMap<String, (usize, Instant)>>,
    /// The database whose deliveries are claimed first next time, so a busy
    /// one does not starve the others.
    next_claim: AtomicUsize,
}

pub(crate) struct Member {
    pub(crate) number: i32,
    pub(crate) database: Database,
}

impl PostgresStore {
    /// Connects to the database at `url` (`postgres://user:password@host:port/database`),
    /// or to each of several joined by `,postgres://`, and brings their
    /// schemas and the set up to date.
    pub fn open(url: &str) -> Result<Self, StoreError> {
        Self::with_pool_size(url, pool::DEFAULT_SIZE)
    }

    /// [`open`](Self::open) with at most `size` connections per database.
    pub fn with_pool_size(url: &str, size: usize) -> Result<Self, StoreError> {
        let databases = split_urls(url)?
            .into_iter()
            .map(|url| Database::open(url, size))
            .collect::<Result<Vec<_>, _>>()?;
        let numbers = join(&databases)?;
        Ok(PostgresStore {
            members: numbers
                .into_iter()
                .zip(databases)
                .map(|(number, database)| Member { number, database })
                .collect(),
            homes: RwLock::new(HashMap::new()),
            next_claim: AtomicUsize::new(0),
        })
    }

    pub(crate) fn directory(&self) -> &Database {
        &self.members[0].database
    }

    fn cached(&self, tenant: &str) -> Option<&Database> {
        let homes = self.homes.read().unwrap_or_else(PoisonError::into_inner);
        // With one database no move can have changed it.
        homes
            .get(tenant)
            .filter(|(_, at)| self.members.len() == 1 || at.elapsed() < HOME_TTL)
            .map(|&(i, _)| &self.members[i].database)
    }

    /// Drops what this replica knew of `tenant`'s home.
    pub(crate) fn forget(&self, tenant: &str) {
        self.homes
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(tenant);
    }

    /// Runs a write on `tenant`'s database (placing the tenant first when
    /// `place`); when the database refuses it because the tenant moved,
    /// asks the directory again and runs it once more where it is now.
    fn on_home<R>(
        &self,
        tenant: &str,
        place: bool,
        mut work: impl FnMut(&Database) -> Result<R, StoreError>,
    ) -> Result<R, StoreError> {
        let find = || {
            if place {
                self.place(tenant)
            } else {
                self.home(tenant)
            }
        };
        let first = find()?;
        match work(first) {
            Err(e) if crate::pool::is_moved(&e) => {
                self.forget(tenant);
                let now = find()?;
                if std::ptr::eq(now, first) {
                    return Err(e);
                }
                work(now)
            }
            done => done,
        }
    }

    /// Keeps `tenant`'s home, database `number`.
    fn remember(&self, tenant: &str, number: i32) -> Result<&Database, StoreError> {
        let Some(i) = self.members.iter().position(|m| m.number == number) else {
            return Err(StoreError::unusable(format!(
                "tenant {tenant} lives on database {number} of the set, which this store's URL \
                 does not name: name every database in the URL, the directory first"
            )));
        };
        self.homes
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(tenant.to_string(), (i, Instant::now()));
        Ok(&self.members[i].database)
    }

    /// Where `tenant`'s data is read: its home, or the directory for a
    /// tenant not placed yet, which has nothing anywhere.
    fn home(&self, tenant: &str) -> Result<&Database, StoreError> {
        if self.members.len() == 1 {
            return Ok(self.directory());
        }
        if let Some(home) = self.cached(tenant) {
            return Ok(home);
        }
        match self.lookup(tenant)? {
            Some(number) => self.remember(tenant, number),
            None => Ok(self.directory()),
        }
    }

    /// The number of `tenant`'s database, as the directory has it now.
    fn lookup(&self, tenant: &str) -> Result<Option<i32>, StoreError> {
        self.directory()
            .conn()?
            .query_opt(
                "SELECT number FROM tenant_homes WHERE tenant = $1",
                &[&tenant],
            )?
            .map(|r| r.try_get(0))
            .transpose()
            .map_err(pg)
    }

    /// Where `tenant`'s data is written: its home, placing it first if it
    /// has none.
    fn place(&self, tenant: &str) -> Result<&Database, StoreError> {
        if let Some(home) = self.cached(tenant) {
            return Ok(home);
        }
        // Placed already, as nearly every tenant is: no lock.
        if let Some(number) = self.lookup(tenant)? {
            return self.remember(tenant, number);
        }
        let ours: Vec<i32> = self.members.iter().map(|m| m.number).collect();
        let mut c = self.directory().conn()?;
        c.begin()?;
        c.execute(PLACE_LOCK, &[])?;
        let number: i32 = match c.query_opt(
            "SELECT number FROM tenant_homes WHERE tenant = $1",
            &[&tenant],
        )? {
            Some(r) => r.try_get(0).map_err(pg)?,
            None => {
                let number: i32 = c
                    .query_one(
                        "SELECT number FROM tiergate_databases WHERE number = ANY($1)
                         ORDER BY tenants, number LIMIT 1",
                        &[&ours],
                    )?
                    .try_get(0)
                    .map_err(pg)?;
                c.execute(
                    "INSERT INTO tenant_homes (tenant, number, placed_ms) VALUES ($1, $2, $3)",
                    &[&tenant, &number, &now_ms()],
                )?;
                c.execute(
                    "UPDATE tiergate_databases SET tenants = tenants + 1 WHERE number = $1",
                    &[&number],
                )?;
                tracing::info!(tenant, database = number, "placed a new tenant");
                number
            }
        };
        c.commit()?;
        drop(c);
        self.remember(tenant, number)
    }

    /// Runs `read` on every database; one that fails is logged and skipped.
    /// For background work (deadlines, deliveries) that must go on for the
    /// tenants of the databases that answer.
    fn each_reachable<T>(
        &self,
        what: &str,
        mut read: impl FnMut(&Database) -> Result<Vec<T>, StoreError>,
    ) -> Result<Vec<T>, StoreError> {
        let mut out = Vec::new();
        let mut failed = None;
        for m in &self.members {
            match read(&m.database) {
                Ok(found) => out.extend(found),
                Err(e) => {
                    tracing::warn!(
                        database = m.number,
                        at = %m.database.describe(),
                        error = %e,
                        "cannot read {what} from a database of the store; its tenants wait until it answers"
                    );
                    failed = Some(e);
                }
            }
        }
        match failed {
            Some(e) if self.members.len() == 1 => Err(e),
            _ => Ok(out),
        }
    }

    /// Runs `read` on every database; any failure fails the whole, for
    /// answers that must not leave a tenant out silently.
    fn each<T>(
        &self,
        mut read: impl FnMut(&Database) -> Result<T, StoreError>,
    ) -> Result<Vec<T>, StoreError> {
        self.members.iter().map(|m| read(&m.database)).collect()
    }

    /// The database of a notice id.
    fn of_notice(&self, outbox_id: u64) -> Result<&Database, StoreError> {
        let number = i32::try_from(outbox_id >> NOTICE_BITS).unwrap_or(i32::MAX);
        self.members
            .iter()
            .find(|m| m.number == number)
            .map(|m| &m.database)
            .ok_or_else(|| {
                StoreError::unusable(format!(
                    "notice {outbox_id} is database {number}'s, which this store's URL does not name"
                ))
            })
    }
}

pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// The databases a store URL names: one URL, or several joined by
/// `,postgres://` (or `,postgresql://`). A comma inside one URL (libpq's
/// list of hosts to try) keeps its meaning.
fn split_urls(url: &str) -> Result<Vec<&str>, StoreError> {
    let mut starts: Vec<usize> = [",postgres://", ",postgresql://"]
        .iter()
        .flat_map(|sep| url.match_indices(sep).map(|(i, _)| i))
        .collect();
    starts.sort_unstable();
    let mut out = Vec::new();
    let mut from = 0;
    for at in starts {
        out.push(&url[from..at]);
        from = at + 1;
    }
    out.push(&url[from..]);
    if out.iter().any(|u| u.trim().is_empty()) {
        return Err(StoreError::unusable(
            "the store URL names an empty database between its commas",
        ));
    }
    Ok(out)
}

/// The database's identity and its number in a set, if it joined one.
fn identity(c: &mut Conn) -> Result<(String, Option<i32>), StoreError> {
    let r = c.query_one("SELECT identity, number FROM tiergate_identity", &[])?;
    Ok((r.try_get(0).map_err(pg)?, r.try_get(1).map_err(pg)?))
}

/// Every tenant with something stored on the database.
const TENANTS_HELD: &str = "SELECT tenant FROM audit_events UNION SELECT tenant FROM authorizations
     UNION SELECT tenant FROM tenant_rules UNION SELECT tenant FROM tenant_policies
     UNION SELECT tenant FROM webhooks UNION SELECT tenant FROM outbox";

/// Brings the set up to date on the directory (`databases[0]`): numbers the
/// databases that join, checks that the URL names every database of the
/// set and no stranger, and returns each database's number.
fn join(databases: &[Database]) -> Result<Vec<i32>, StoreError> {
    let name = |i: usize| databases[i].describe();
    let mut dir = databases[0].conn()?;
    dir.begin()?;
    dir.execute(JOIN_LOCK, &[])?;
    let mut identities = vec![identity(&mut dir)?];
    for d in &databases[1..] {
        identities.push(identity(&mut *d.conn()?)?);
    }
    let mut seen = HashMap::new();
    for (i, (id, _)) in identities.iter().enumerate() {
        if let Some(first) = seen.insert(id.clone(), i) {
            return Err(StoreError::unusable(format!(
                "the store URL names the same database twice ({} and {}): name each once",
                name(first),
                name(i)
            )));
        }
    }
    let mut known: HashMap<String, i32> = dir
        .query("SELECT identity, number FROM tiergate_databases", &[])?
        .iter()
        .map(|r| Ok((r.try_get(0).map_err(pg)?, r.try_get(1).map_err(pg)?)))
        .collect::<Result<_, StoreError>>()?;
    match identities[0].1 {
        Some(0) => {}
        Some(n) => {
            return Err(StoreError::unusable(format!(
                "{} is database {n} of a set, not its directory: name the directory (database 0) \
                 first in the store URL",
                name(0)
            )));
        }
        None => {
            // This database becomes the directory of a set of one, with
            // the tenants it already holds.
            let now = now_ms();
            dir.execute(
                "INSERT INTO tiergate_databases (number, identity, joined_ms) VALUES (0, $1, $2)",
                &[&identities[0].0, &now],
            )?;
            dir.execute(
                &format!(
                    "INSERT INTO tenant_homes (tenant, number, placed_ms)
                     SELECT tenant, 0, $1 FROM ({TENANTS_HELD}) held ON CONFLICT DO NOTHING"
                ),
                &[&now],
            )?;
            dir.execute(
                "UPDATE tiergate_databases
                 SET tenants = (SELECT COUNT(*) FROM tenant_homes WHERE number = 0)
                 WHERE number = 0",
                &[],
            )?;
            dir.execute("UPDATE tiergate_identity SET number = 0", &[])?;
            known.insert(identities[0].0.clone(), 0);
        }
    }
    let mut numbers = vec![0];
    for (i, (id, number)) in identities.iter().enumerate().skip(1) {
        let number = match (*number, known.get(id).copied()) {
            (Some(n), Some(k)) if n == k => n,
            (Some(n), _) => {
                return Err(StoreError::unusable(format!(
                    "{} is database {n} of another set: the directory {} does not list it",
                    name(i),
                    name(0)
                )));
            }
            // Listed, but its own number was not written yet: a join that
            // stopped half-way. It is finished below.
            (None, Some(k)) => k,
            (None, None) => {
                let held = databases[i].conn()?.query(
                    &format!("{TENANTS_HELD} UNION SELECT tenant FROM api_keys LIMIT 1"),
                    &[],
                )?;
                if let Some(r) = held.first() {
                    let tenant: String = r.try_get(0).map_err(pg)?;
                    return Err(StoreError::unusable(format!(
                        "{} holds tenant {tenant} but belongs to no set: a database joins a set \
                         empty (the first one named may hold tenants)",
                        name(i)
                    )));
                }
                let k: i32 = dir
                    .query_one(
                        "INSERT INTO tiergate_databases (number, identity, joined_ms)
                         SELECT COALESCE(MAX(number), 0) + 1, $1, $2 FROM tiergate_databases
                         RETURNING number",
                        &[id, &now_ms()],
                    )?
                    .try_get(0)
                    .map_err(pg)?;
                known.insert(id.clone(), k);
                tracing::info!(database = k, at = %name(i), "a database joined the store");
                k
            }
        };
        if identities[i].1.is_none() {
            let mut c = databases[i].conn()?;
            c.begin()?;
            // Its notices are numbered from `number << 40`.
            c.execute(
                "SELECT setval('outbox_id_seq', GREATEST($1, (SELECT last_value FROM outbox_id_seq)))",
                &[&(i64::from(number) << NOTICE_BITS)],
            )?;
            c.execute("UPDATE tiergate_identity SET number = $1", &[&number])?;
            c.commit()?;
        }
        numbers.push(number);
    }
    let named: HashSet<&String> = identities.iter().map(|(id, _)| id).collect();
    let mut missing: Vec<i32> = known
        .iter()
        .filter(|(id, _)| !named.contains(id))
        .map(|(_, &n)| n)
        .collect();
    missing.sort_unstable();
    if !missing.is_empty() {
        return Err(StoreError::unusable(format!(
            "the directory {} lists databases {missing:?} of its set, which the store URL does \
             not name: name every database of the set, the directory first, joined by ','",
            name(0)
        )));
    }
    dir.commit()?;
    Ok(numbers)
}

impl Store for PostgresStore {
    fn get(&self, tenant: &str, tx_id: &str) -> Result<Option<Authorization>, StoreError> {
        self.home(tenant)?.get(tenant, tx_id)
    }

    fn tx_with_audit_id(&self, tenant: &str, audit_id: &str) -> Result<Option<String>, StoreError> {
        self.home(tenant)?.tx_with_audit_id(tenant, audit_id)
    }

    fn record(
        &self,
        entry: &NewEntry<'_>,
        plan: &mut (dyn FnMut(&Snapshot, &str) -> Result<Change, StoreError> + Send),
    ) -> Result<Recorded, StoreError> {
        self.on_home(entry.tenant, true, |d| d.record(entry, &mut *plan))
    }

    fn peek(
        &self,
        entry: &NewEntry<'_>,
    ) -> Result<Option<Box<dyn HistoryReads + Send + Sync>>, StoreError> {
        self.home(entry.tenant)?.peek(entry)
    }

    fn update(
        &self,
        tenant: &str,
        tx_id: &str,
        now_ms: u64,
        decide: &mut (dyn FnMut(&Authorization) -> Result<Change, StoreError> + Send),
    ) -> Result<Authorization, StoreError> {
        self.on_home(tenant, false, |d| {
            d.update(tenant, tx_id, now_ms, &mut *decide)
        })
    }

    fn committed(&self, entry: &NewEntry<'_>) -> Result<Holdings, StoreError> {
        self.home(entry.tenant)?.committed(entry)
    }

    fn due(&self, now_ms: u64) -> Result<Vec<(String, String)>, StoreError> {
        self.each_reachable("due payments", |d| d.due(now_ms))
    }

    fn list(&self, tenant: &str, listing: &Listing<'_>) -> Result<Vec<Authorization>, StoreError> {
        self.home(tenant)?.list(tenant, listing)
    }

    fn waiting(&self) -> Result<Waiting, StoreError> {
        let mut all = Waiting::default();
        for w in self.each(Store::waiting)? {
            all.pending_veto += w.pending_veto;
            all.awaiting_approval += w.awaiting_approval;
        }
        Ok(all)
    }

    fn tenants(&self) -> Result<Vec<String>, StoreError> {
        let mut all: Vec<String> = self.each(Store::tenants)?.into_iter().flatten().collect();
        all.sort_unstable();
        all.dedup();
        Ok(all)
    }

    fn events(&self, tenant: &str, tx_id: Option<&str>) -> Result<Vec<AuditEvent>, StoreError> {
        self.home(tenant)?.events(tenant, tx_id)
    }

    fn events_after(
        &self,
        tenant: &str,
        after_seq: u64,
        limit: usize,
    ) -> Result<Vec<AuditEvent>, StoreError> {
        self.home(tenant)?.events_after(tenant, after_seq, limit)
    }

    fn authorizations_after(
        &self,
        tenant: &str,
        agent: Option<&str>,
        after: Option<(u64, &str)>,
        before_ms: u64,
        limit: usize,
    ) -> Result<Vec<Authorization>, StoreError> {
        self.home(tenant)?
            .authorizations_after(tenant, agent, after, before_ms, limit)
    }

    fn outbox(&self, tenant: &str) -> Result<Vec<OutboxEntry>, StoreError> {
        self.home(tenant)?.outbox(tenant)
    }

    fn record_tenant_event(
        &self,
        tenant: &str,
        now_ms: u64,
        retention_years: u32,
        event: &EventDraft,
    ) -> Result<Option<String>, StoreError> {
        self.on_home(tenant, true, |d| {
            d.record_tenant_event(tenant, now_ms, retention_years, event)
        })
    }

    fn ledger_insert(&self, auth: &Authorization, now_ms: u64) -> Result<String, StoreError> {
        self.on_home(&auth.transaction.tenant, false, |d| {
            d.ledger_insert(auth, now_ms)
        })
    }
}

/// Keys are looked up by id alone, so they are kept in the directory.
impl KeyStore for PostgresStore {
    fn insert_key(&self, key: &ApiKey) -> Result<(), StoreError> {
        self.directory().insert_key(key)
    }

    fn key(&self, key_id: &str) -> Result<Option<ApiKey>, StoreError> {
        self.directory().key(key_id)
    }

    fn revoke_key(&self, tenant: &str, key_id: &str, now_ms: u64) -> Result<bool, StoreError> {
        self.directory().revoke_key(tenant, key_id, now_ms)
    }

    fn keys(&self, tenant: &str) -> Result<Vec<ApiKey>, StoreError> {
        self.directory().keys(tenant)
    }
}

impl RulesStore for PostgresStore {
    fn put_policy(
        &self,
        tenant: &str,
        policy: &UploadedPolicy,
        component: &[u8],
        quota: Option<UploadQuota>,
    ) -> Result<PutPolicy, StoreError> {
        self.on_home(tenant, true, |d| {
            d.put_policy(tenant, policy, component, quota)
        })
    }

    fn policy_component(&self, tenant: &str, digest: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.home(tenant)?.policy_component(tenant, digest)
    }

    fn policies(&self, tenant: &str) -> Result<Vec<UploadedPolicy>, StoreError> {
        self.home(tenant)?.policies(tenant)
    }

    fn delete_policy(&self, tenant: &str, digest: &str) -> Result<DeletedPolicy, StoreError> {
        self.on_home(tenant, false, |d| d.delete_policy(tenant, digest))
    }

    fn put_rules_after(
        &self,
        tenant: &str,
        after: Option<u64>,
        policy: &str,
        config: &str,
        actor: &str,
        now_ms: u64,
    ) -> Result<Option<StoredRules>, StoreError> {
        self.on_home(tenant, true, |d| {
            d.put_rules_after(tenant, after, policy, config, actor, now_ms)
        })
    }

    fn active_rules(&self) -> Result<Vec<StoredRules>, StoreError> {
        let mut all: Vec<StoredRules> = self
            .each(RulesStore::active_rules)?
            .into_iter()
            .flatten()
            .collect();
        // A tenant seen on two databases is one moving: its latest rules.
        all.sort_by(|a, b| a.tenant.cmp(&b.tenant).then(b.version.cmp(&a.version)));
        all.dedup_by(|later, kept| later.tenant == kept.tenant);
        Ok(all)
    }

    fn readable_rules(&self) -> Result<Vec<StoredRules>, StoreError> {
        self.each_reachable("rules", RulesStore::active_rules)
    }

    fn rules_of(&self, tenant: &str) -> Result<Option<StoredRules>, StoreError> {
        self.home(tenant)?.rules_of(tenant)
    }
}

impl DeliveryStore for PostgresStore {
    fn add_webhook(&self, hook: &StoredWebhook, limit: usize) -> Result<AddedWebhook, StoreError> {
        self.on_home(&hook.tenant, true, |d| d.add_webhook(hook, limit))
    }

    fn rotate_webhook(
        &self,
        tenant: &str,
        id: &str,
        secret: &str,
        previous_expires_ms: Option<u64>,
        now_ms: u64,
    ) -> Result<Option<StoredWebhook>, StoreError> {
        self.on_home(tenant, false, |d| {
            d.rotate_webhook(tenant, id, secret, previous_expires_ms, now_ms)
        })
    }

    fn remove_webhook(
        &self,
        tenant: &str,
        id: &str,
        now_ms: u64,
    ) -> Result<Option<StoredWebhook>, StoreError> {
        self.on_home(tenant, false, |d| d.remove_webhook(tenant, id, now_ms))
    }

    fn webhooks(&self, tenant: Option<&str>) -> Result<Vec<StoredWebhook>, StoreError> {
        match tenant {
            Some(t) => self.home(t)?.webhooks(Some(t)),
            None => self.each_reachable("webhooks", |d| d.webhooks(None)),
        }
    }

    fn queue_deliveries(&self, tenant: &str, url: &str, since_ms: u64) -> Result<u64, StoreError> {
        self.on_home(tenant, false, |d| d.queue_deliveries(tenant, url, since_ms))
    }

    fn claim_deliveries(
        &self,
        now_ms: u64,
        lease_ms: u64,
        limit: usize,
    ) -> Result<Vec<Delivery>, StoreError> {
        // Each database in turn is asked for what room is left, starting
        // with a different one each time.
        let start = self.next_claim.fetch_add(1, Ordering::Relaxed);
        let n = self.members.len();
        let mut claimed = Vec::new();
        let mut failed = None;
        for k in 0..n {
            let m = &self.members[(start + k) % n];
            let room = limit.saturating_sub(claimed.len());
            if room == 0 {
                break;
            }
            match m.database.claim_deliveries(now_ms, lease_ms, room) {
                Ok(found) => claimed.extend(found),
                Err(e) => {
                    tracing::warn!(
                        database = m.number,
                        at = %m.database.describe(),
                        error = %e,
                        "cannot claim deliveries from a database of the store; its tenants' deliveries wait until it answers"
                    );
                    failed = Some(e);
                }
            }
        }
        match failed {
            Some(e) if n == 1 => Err(e),
            _ => Ok(claimed),
        }
    }

    fn record_attempt(
        &self,
        outbox_id: u64,
        url: &str,
        now_ms: u64,
        error: Option<&str>,
        retry_at_ms: Option<u64>,
    ) -> Result<(), StoreError> {
        self.of_notice(outbox_id)?
            .record_attempt(outbox_id, url, now_ms, error, retry_at_ms)
    }

    fn release_delivery(&self, outbox_id: u64, url: &str, now_ms: u64) -> Result<(), StoreError> {
        self.of_notice(outbox_id)?
            .release_delivery(outbox_id, url, now_ms)
    }

    fn deliveries(
        &self,
        tenant: &str,
        state: Option<DeliveryState>,
        after: Option<&DeliveryCursor>,
        limit: usize,
    ) -> Result<Vec<DeliveryRecord>, StoreError> {
        self.home(tenant)?.deliveries(tenant, state, after, limit)
    }

    fn delivery_trouble(&self) -> Result<DeliveryTrouble, StoreError> {
        let mut all = DeliveryTrouble::default();
        for t in self.each(DeliveryStore::delivery_trouble)? {
            all.failing += t.failing;
            all.given_up += t.given_up;
        }
        Ok(all)
    }
}

#[cfg(test)]
mod tests {
    use super::split_urls;

    #[test]
    fn a_store_url_names_each_database_once_and_keeps_libpqs_host_lists() {
        assert_eq!(split_urls("postgres://a/tg").unwrap(), ["postgres://a/tg"]);
        assert_eq!(
            split_urls("postgres://a:1,b:2/tg,postgresql://c/tg,postgres://d/tg?x=1").unwrap(),
            [
                "postgres://a:1,b:2/tg",
                "postgresql://c/tg",
                "postgres://d/tg?x=1"
            ]
        );
        assert!(split_urls(",postgres://a/tg").is_err());
    }
}
