//! The embedded default store: one SQLite file in WAL mode, every
//! acknowledged write synchronous, schema migrations applied on open.
#![deny(missing_docs)]

use std::path::Path;
use std::sync::{Mutex, MutexGuard, PoisonError};

use checkpoints::Checkpointer;
use combine::Combiner;
use durability::GroupSync;
use gate::{Gate, Turn};

use rusqlite::{Connection, OptionalExtension, params};

use tiergate_core::record::{Authorization, Status};
use tiergate_core::store::{
    ALL_STATUSES, AuditEvent, Change, EventDraft, History, HistoryReads, Listing, NewEntry,
    OutboxEntry, PastPayment, Recorded, Snapshot, Store, StoreError, Waiting, chain,
    filter_columns, listing_bound, merge_keys, retain_until,
};
use tiergate_runtime::model::context::{
    ActivityFilter, ActivityResult, ActivitySum, RecipientHistory,
};
use tiergate_runtime::model::money::parse_decimal;

/// Schema versions, applied in order; `PRAGMA user_version` says how many ran.
const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE authorizations (
    tenant          TEXT    NOT NULL,
    tx_id           TEXT    NOT NULL,
    content_hash    TEXT    NOT NULL,
    agent           TEXT    NOT NULL,
    team            TEXT,
    recipient       TEXT    NOT NULL,
    category        TEXT    NOT NULL,
    currency        TEXT    NOT NULL,
    amount          TEXT    NOT NULL,
    tier            TEXT    NOT NULL,
    requested_at_ms INTEGER NOT NULL,
    status          TEXT    NOT NULL,
    holds           INTEGER NOT NULL,
    deadline_ms     INTEGER,
    body            TEXT    NOT NULL,
    PRIMARY KEY (tenant, tx_id)
);
CREATE INDEX authorizations_by_agent ON authorizations (tenant, agent, requested_at_ms);
CREATE INDEX authorizations_holding ON authorizations (tenant, holds, requested_at_ms);
CREATE INDEX authorizations_due ON authorizations (deadline_ms) WHERE deadline_ms IS NOT NULL;

CREATE TABLE audit_events (
    tenant    TEXT    NOT NULL,
    seq       INTEGER NOT NULL,
    audit_id  TEXT    NOT NULL,
    tx_id     TEXT    NOT NULL,
    kind      TEXT    NOT NULL,
    actor     TEXT,
    at_ms     INTEGER NOT NULL,
    detail    TEXT    NOT NULL,
    prev_hash TEXT    NOT NULL,
    hash      TEXT    NOT NULL,
    PRIMARY KEY (tenant, seq)
);
CREATE INDEX audit_events_by_tx ON audit_events (tenant, tx_id);
CREATE TRIGGER audit_events_append_only_update BEFORE UPDATE ON audit_events
    BEGIN SELECT RAISE(ABORT, 'audit events are append-only'); END;
CREATE TRIGGER audit_events_append_only_delete BEFORE DELETE ON audit_events
    BEGIN SELECT RAISE(ABORT, 'audit events are append-only'); END;

CREATE TABLE audit_days (
    tenant TEXT    NOT NULL,
    day    TEXT    NOT NULL,
    next   INTEGER NOT NULL,
    PRIMARY KEY (tenant, day)
);

CREATE TABLE outbox (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant       TEXT    NOT NULL,
    tx_id        TEXT    NOT NULL,
    kind         TEXT    NOT NULL,
    recipient    TEXT    NOT NULL,
    message      TEXT    NOT NULL,
    created_ms   INTEGER NOT NULL,
    delivered_ms INTEGER
);

CREATE TABLE ledger (
    tenant      TEXT    NOT NULL,
    tx_id       TEXT    NOT NULL,
    amount      TEXT    NOT NULL,
    currency    TEXT    NOT NULL,
    recipient   TEXT    NOT NULL,
    executed_ms INTEGER NOT NULL,
    reference   TEXT    NOT NULL,
    PRIMARY KEY (tenant, tx_id)
);
CREATE INDEX ledger_by_recipient ON ledger (tenant, recipient);
"#,
    // Every record carries the date before which it may not be purged.
    "ALTER TABLE audit_events ADD COLUMN retain_until_ms INTEGER NOT NULL DEFAULT 0",
    // Exports page through a tenant's authorizations in request order.
    r#"
CREATE INDEX authorizations_in_order ON authorizations (tenant, requested_at_ms, tx_id);
CREATE INDEX audit_events_by_kind ON audit_events (tenant, kind, seq);
"#,
    // The service: API keys, uploaded policies, each tenant's rules in force.
    r#"
CREATE TABLE api_keys (
    key_id      TEXT    PRIMARY KEY,
    tenant      TEXT    NOT NULL,
    role        TEXT    NOT NULL,
    subject     TEXT    NOT NULL,
    secret_hash TEXT    NOT NULL,
    created_ms  INTEGER NOT NULL,
    revoked_ms  INTEGER
);
CREATE INDEX api_keys_by_tenant ON api_keys (tenant);

CREATE TABLE policies (
    digest      TEXT    PRIMARY KEY,
    component   BLOB    NOT NULL,
    uploaded_ms INTEGER NOT NULL
);

CREATE TABLE tenant_rules (
    tenant       TEXT    NOT NULL,
    version      INTEGER NOT NULL,
    policy       TEXT    NOT NULL,
    config       TEXT    NOT NULL,
    activated_ms INTEGER NOT NULL,
    actor        TEXT    NOT NULL,
    PRIMARY KEY (tenant, version)
);
"#,
    // Webhook deliveries of the outbox, one per notice and URL.
    r#"
CREATE TABLE deliveries (
    outbox_id       INTEGER NOT NULL,
    url             TEXT    NOT NULL,
    tenant          TEXT    NOT NULL,
    attempts        INTEGER NOT NULL,
    next_attempt_ms INTEGER NOT NULL,
    delivered_ms    INTEGER,
    gave_up_ms      INTEGER,
    last_error      TEXT,
    PRIMARY KEY (outbox_id, url)
);
CREATE INDEX deliveries_due ON deliveries (next_attempt_ms)
    WHERE delivered_ms IS NULL AND gave_up_ms IS NULL;
CREATE INDEX deliveries_by_tenant ON deliveries (tenant, url, outbox_id);
"#,
    // Each webhook URL's place in its tenant's outbox: the last notice
    // queued for it, so queueing reads only newer ones.
    r#"
CREATE INDEX outbox_by_tenant ON outbox (tenant, id);
CREATE TABLE delivery_cursors (
    tenant   TEXT    NOT NULL,
    url      TEXT    NOT NULL,
    after_id INTEGER NOT NULL,
    PRIMARY KEY (tenant, url)
);
INSERT INTO delivery_cursors (tenant, url, after_id)
    SELECT tenant, url, MAX(outbox_id) FROM deliveries GROUP BY tenant, url;
"#,
    // Running totals for budgets and recipients (see `totals`).
    totals::SCHEMA,
    // The agent's history for a policy's context read from the index alone,
    // without visiting each payment's row.
    r#"
DROP INDEX IF EXISTS authorizations_by_agent;
CREATE INDEX IF NOT EXISTS authorizations_history ON authorizations
    (tenant, agent, requested_at_ms, amount, currency, category, tier);
"#,
    // A payment's events in order from the index alone. Without `seq` in it,
    // SQLite read them in chain order from the primary key instead: the whole
    // trail, 0.2 s at a million events, for one `audit show`.
    // And a payment found by its audit id (`audit show`) without reading
    // every record.
    r#"
DROP INDEX IF EXISTS audit_events_by_tx;
CREATE INDEX audit_events_by_tx ON audit_events (tenant, tx_id, seq);
ALTER TABLE authorizations ADD COLUMN audit_id TEXT;
UPDATE authorizations SET audit_id = json_extract(body, '$.audit_id');
CREATE INDEX authorizations_by_audit_id ON authorizations (tenant, audit_id);
"#,
    // Small rows found by their whole key live in the key's b-tree alone:
    // every payment updates these, and a rowid table is a second b-tree to
    // write and to look each row up in.
    r#"
CREATE TABLE holdings_by_key (
    tenant   TEXT    NOT NULL,
    scope    TEXT    NOT NULL,
    name     TEXT    NOT NULL,
    currency TEXT    NOT NULL,
    hour     INTEGER NOT NULL,
    amount   TEXT    NOT NULL,
    PRIMARY KEY (tenant, scope, name, currency, hour)
) WITHOUT ROWID;
INSERT INTO holdings_by_key SELECT tenant, scope, name, currency, hour, amount FROM holdings;
DROP TABLE holdings;
ALTER TABLE holdings_by_key RENAME TO holdings;

CREATE TABLE recipients_by_key (
    tenant        TEXT    NOT NULL,
    recipient     TEXT    NOT NULL,
    first_paid_ms INTEGER NOT NULL,
    payments      INTEGER NOT NULL,
    PRIMARY KEY (tenant, recipient)
) WITHOUT ROWID;
INSERT INTO recipients_by_key SELECT tenant, recipient, first_paid_ms, payments FROM recipients;
DROP TABLE recipients;
ALTER TABLE recipients_by_key RENAME TO recipients;

CREATE TABLE audit_days_by_key (
    tenant TEXT    NOT NULL,
    day    TEXT    NOT NULL,
    next   INTEGER NOT NULL,
    PRIMARY KEY (tenant, day)
) WITHOUT ROWID;
INSERT INTO audit_days_by_key SELECT tenant, day, next FROM audit_days;
DROP TABLE audit_days;
ALTER TABLE audit_days_by_key RENAME TO audit_days;

-- Only tenant-level events (no payment) are looked up by kind.
DROP INDEX IF EXISTS audit_events_by_kind;
CREATE INDEX IF NOT EXISTS audit_events_of_tenant ON audit_events (tenant, kind, seq) WHERE tx_id = '';
-- The hour a budget window cuts is read through `authorizations_in_order`.
DROP INDEX IF EXISTS authorizations_holding;
-- Nothing looks the ledger up by recipient (`recipients` has the totals).
DROP INDEX IF EXISTS ledger_by_recipient;
"#,
    // Each tenant's webhooks with the secrets the service generated for
    // them; uploads owned by the tenant that made them. Uploads named by a
    // tenant's rules become that tenant's; the others, which no tenant can
    // be shown to own, stay in `policies`, used by none. Running it again
    // changes nothing.
    r#"
CREATE TABLE IF NOT EXISTS webhooks (
    tenant              TEXT    NOT NULL,
    id                  TEXT    NOT NULL,
    url                 TEXT    NOT NULL,
    secret              TEXT    NOT NULL,
    previous_secret     TEXT,
    previous_expires_ms INTEGER,
    created_ms          INTEGER NOT NULL,
    rotated_ms          INTEGER,
    PRIMARY KEY (tenant, id),
    UNIQUE (tenant, url)
);

CREATE TABLE IF NOT EXISTS tenant_policies (
    tenant      TEXT    NOT NULL,
    digest      TEXT    NOT NULL,
    name        TEXT,
    version     TEXT,
    bytes       INTEGER NOT NULL,
    uploaded_ms INTEGER NOT NULL,
    component   BLOB    NOT NULL,
    PRIMARY KEY (tenant, digest)
);
INSERT OR IGNORE INTO tenant_policies (tenant, digest, bytes, uploaded_ms, component)
    SELECT r.tenant, p.digest, length(p.component), p.uploaded_ms, p.component
    FROM policies p JOIN (SELECT DISTINCT tenant, policy FROM tenant_rules) r
      ON r.policy = p.digest;
DELETE FROM policies WHERE digest IN (SELECT policy FROM tenant_rules);
"#,
    // A replace (`INSERT OR REPLACE`, `REPLACE INTO`) deletes the event it
    // conflicts with, and SQLite fires no delete trigger for that unless the
    // connection turned `recursive_triggers` on: refuse any insert whose
    // place in the chain is taken, whatever the connection.
    r#"
CREATE TRIGGER audit_events_append_only_insert BEFORE INSERT ON audit_events
    WHEN EXISTS (SELECT 1 FROM audit_events WHERE tenant = NEW.tenant AND seq = NEW.seq)
    BEGIN SELECT RAISE(ABORT, 'audit events are append-only'); END;
"#,
    // Listings page through an index: by status, and an agent key's own
    // payments by the key that submitted them. Payments waiting on an owner
    // are counted as they start and stop waiting, for `/metrics`.
    r#"
ALTER TABLE authorizations ADD COLUMN caller TEXT;
UPDATE authorizations SET caller = json_extract(body, '$.caller');
CREATE INDEX authorizations_by_status ON authorizations (tenant, status, requested_at_ms, tx_id);
CREATE INDEX authorizations_by_caller ON authorizations (tenant, caller, status, requested_at_ms, tx_id)
    WHERE caller IS NOT NULL;
CREATE TABLE waiting (
    tenant TEXT    NOT NULL,
    status TEXT    NOT NULL,
    n      INTEGER NOT NULL,
    PRIMARY KEY (tenant, status)
) WITHOUT ROWID;
INSERT INTO waiting (tenant, status, n)
    SELECT tenant, status, COUNT(*) FROM authorizations
    WHERE status IN ('pending_veto', 'awaiting_approval') GROUP BY tenant, status;
"#,
    // Deliveries page through an index, in order or by state (a column
    // SQLite computes from the row, so every write keeps it). Those in
    // trouble are counted per tenant as they change state, in the write
    // that changes it, for `/metrics`; existing ones are counted here.
    r#"
ALTER TABLE deliveries ADD COLUMN state TEXT GENERATED ALWAYS AS (
    CASE WHEN delivered_ms IS NOT NULL THEN 'delivered'
         WHEN gave_up_ms IS NOT NULL THEN 'given_up'
         WHEN attempts > 0 THEN 'failing'
         ELSE 'pending' END) VIRTUAL;
CREATE INDEX deliveries_by_state ON deliveries (tenant, state, outbox_id, url);
CREATE INDEX deliveries_in_order ON deliveries (tenant, outbox_id, url);
CREATE TABLE delivery_trouble (
    tenant TEXT    NOT NULL,
    state  TEXT    NOT NULL,
    n      INTEGER NOT NULL,
    PRIMARY KEY (tenant, state)
) WITHOUT ROWID;
INSERT INTO delivery_trouble (tenant, state, n)
    SELECT tenant, state, COUNT(*) FROM deliveries
    WHERE state IN ('failing', 'given_up') GROUP BY tenant, state;
CREATE TRIGGER deliveries_trouble_insert AFTER INSERT ON deliveries
    WHEN NEW.state IN ('failing', 'given_up')
    BEGIN
        INSERT INTO delivery_trouble (tenant, state, n) VALUES (NEW.tenant, NEW.state, 1)
            ON CONFLICT (tenant, state) DO UPDATE SET n = n + 1;
    END;
CREATE TRIGGER deliveries_trouble_update AFTER UPDATE ON deliveries
    WHEN OLD.state IS NOT NEW.state OR OLD.tenant IS NOT NEW.tenant
    BEGIN
        UPDATE delivery_trouble SET n = n - 1 WHERE tenant = OLD.tenant AND state = OLD.state;
        INSERT INTO delivery_trouble (tenant, state, n)
            SELECT NEW.tenant, NEW.state, 1 WHERE NEW.state IN ('failing', 'given_up')
            ON CONFLICT (tenant, state) DO UPDATE SET n = n + 1;
    END;
CREATE TRIGGER deliveries_trouble_delete AFTER DELETE ON deliveries
    WHEN OLD.state IN ('failing', 'given_up')
    BEGIN
        UPDATE delivery_trouble SET n = n - 1 WHERE tenant = OLD.tenant AND state = OLD.state;
    END;
"#,
    // An agent key that could pay as any agent (`*`) is a platform key:
    // agent keys are bound to one agent.
    "UPDATE api_keys SET role = 'platform' WHERE role = 'agent' AND subject = '*'",
];

/// The SQLite store. One process may share it across threads; several
/// processes may open the same file (writes are serialized by SQLite).
pub struct SqliteStore {
    /// Dropped first: its connection closes before the writer's.
    checkpointer: Checkpointer,
    conn: Mutex<Connection>,
    /// Runs queued hot-path writes on whichever thread holds `conn`.
    combiner: Combiner,
    sync: GroupSync,
    /// Read-only connections beside the writer, for reads that may see only
    /// committed state (see [`Store::peek`]); opened as needed.
    readers: std::sync::Arc<Readers>,
    /// Lets callers from `peek` to `record` a few at a time.
    gate: std::sync::Arc<Gate>,
}

/// A small pool of read-only connections. In WAL mode they read the last
/// commit while the writer's batch is open, and never take its lock.
struct Readers {
    path: std::path::PathBuf,
    idle: Mutex<Vec<Connection>>,
}

/// Up to this many payments in an agent's context horizon are read whole
/// before the write lock; a longer history is read question by question.
const SHORT_HISTORY: usize = 256;

/// Readers kept open for the next caller. Opening one reads the schema and
/// maps the file, which costs more than the read, so keep one per concurrent
/// caller, up to this; beyond it, readers are opened and closed as needed.
const IDLE_READERS: usize = 64;

impl Readers {
    /// An idle reader, or a new one.
    fn take(&self) -> Result<Connection, StoreError> {
        let idle = self
            .idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop();
        if let Some(conn) = idle {
            return Ok(conn);
        }
        let conn = Connection::open_with_flags(
            &self.path,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| {
            StoreError::database(
                format!("cannot open a reader on the store {}", self.path.display()),
                e,
            )
        })?;
        conn.busy_timeout(std::time::Duration::from_secs(10))
            .map_err(db)?;
        conn.pragma_update(None, "mmap_size", 1i64 << 30)
            .map_err(db)?;
        plans_ignore_bound_values(&conn)?;
        totals::register_functions(&conn)?;
        Ok(conn)
    }

    fn give_back(&self, conn: Connection) {
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        if idle.len() < IDLE_READERS {
            idle.push(conn);
        }
    }
}

/// The connection, held for one unit of writes. [`finish`](Self::finish)
/// releases it and gives the unit's number to wait for; dropped without
/// that (an early return), the unit is still counted.
pub(crate) struct Writing<'a> {
    conn: Option<MutexGuard<'a, Connection>>,
    sync: &'a GroupSync,
}

impl Writing<'_> {
    /// Releases the connection; returns the unit's number for
    /// [`GroupSync::wait_for`].
    fn finish(mut self) -> u64 {
        let unit = self.sync.note_write();
        self.conn = None;
        unit
    }
}

impl std::ops::Deref for Writing<'_> {
    type Target = Connection;
    #[allow(
        clippy::expect_used,
        reason = "the connection is taken only by `finish`, which consumes the guard"
    )]
    fn deref(&self) -> &Connection {
        self.conn.as_ref().expect("held until finished")
    }
}

impl std::ops::DerefMut for Writing<'_> {
    #[allow(
        clippy::expect_used,
        reason = "the connection is taken only by `finish`, which consumes the guard"
    )]
    fn deref_mut(&mut self) -> &mut Connection {
        self.conn.as_mut().expect("held until finished")
    }
}

impl Drop for Writing<'_> {
    fn drop(&mut self) {
        if self.conn.is_some() {
            self.sync.note_write();
        }
    }
}

/// A SQLite error as the store's: the database failed, its error kept.
pub(crate) fn db(e: rusqlite::Error) -> StoreError {
    StoreError::database("SQLite", e)
}

mod checkpoints;
mod combine;
mod deliveries;
mod durability;
mod gate;
mod keys;
mod log_writes;
mod rules;
mod totals;

impl SqliteStore {
    /// Opens (creating if needed) the database at `path` and brings its
    /// schema up to date.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| {
                StoreError::database(
                    format!("cannot create the data directory {}", dir.display()),
                    e,
                )
            })?;
        }
        create_private(path)?;
        log_writes::register().map_err(StoreError::unusable)?;
        let conn = Connection::open_with_flags_and_vfs(
            path,
            rusqlite::OpenFlags::default(),
            log_writes::VFS,
        )
        .map_err(|e| {
            StoreError::database(format!("cannot open the store {}", path.display()), e)
        })?;
        conn.busy_timeout(std::time::Duration::from_secs(10))
            .map_err(db)?;
        // WAL for concurrent readers. NORMAL commits without waiting for the
        // disk; every write then waits for a group fsync before it returns
        // (see `durability`), so an acknowledged commit survives power loss.
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(db)?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(db)?;
        // Hot pages stay in memory: reading them through the kernel on every
        // authorization was a third of its cost.
        conn.pragma_update(None, "cache_size", -65_536)
            .map_err(db)?;
        conn.pragma_update(None, "mmap_size", 1i64 << 30)
            .map_err(db)?;
        // Each writer's savepoint journals the pages it changes; in a temp
        // file that was a write syscall per page, a fifth of the run.
        conn.pragma_update(None, "temp_store", "MEMORY")
            .map_err(db)?;
        plans_ignore_bound_values(&conn)?;
        totals::register_functions(&conn)?;
        conn.pragma_update(None, "wal_autocheckpoint", checkpoints::WRITER_THRESHOLD)
            .map_err(db)?;
        migrate(&conn).map_err(|e| {
            StoreError::database(
                format!("cannot bring the store {} up to date", path.display()),
                e,
            )
        })?;
        Ok(SqliteStore {
            checkpointer: Checkpointer::start(path)?,
            conn: Mutex::new(conn),
            combiner: Combiner::default(),
            sync: GroupSync::new(path.to_path_buf()),
            readers: std::sync::Arc::new(Readers {
                path: path.to_path_buf(),
                idle: Mutex::new(Vec::new()),
            }),
            gate: Gate::for_this_machine(),
        })
    }

    /// The connection, for reading.
    pub(crate) fn lock(&self) -> MutexGuard<'_, Connection> {
        // A panic mid-transaction rolled it back; the connection is usable.
        self.conn.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The connection, for one write transaction. Finish it, then wait for
    /// its unit before telling anyone about the write.
    fn lock_write(&self) -> Writing<'_> {
        Writing {
            conn: Some(self.lock()),
            sync: &self.sync,
        }
    }

    /// The connection inside the open batch transaction (opening one when
    /// none is open).
    fn lock_batch(&self) -> Result<Writing<'_>, StoreError> {
        let conn = self.lock_write();
        join_batch(&conn)?;
        Ok(conn)
    }

    /// Runs one unit of work inside the batch transaction, then waits until
    /// the batch holding it is committed and durable. Units that write more
    /// than one statement run as a savepoint, so a failed unit rolls back
    /// alone.
    pub(crate) fn write<R, E: From<StoreError>>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<R, E>,
    ) -> Result<R, E> {
        let mut conn = self.lock_batch()?;
        let out = f(&mut conn);
        let unit = conn.finish();
        let out = out?;
        self.sync.wait_for(unit, &self.conn)?;
        self.checkpointer.nudge();
        Ok(out)
    }

    /// [`write`](Self::write) for the hot path, without a savepoint: `f`
    /// reads and decides first, then sets its flag and writes. Journaling
    /// every page a unit changes for its own rollback cost a tenth of an
    /// authorization. If `f` fails after it began writing, the whole batch
    /// is rolled back and every unit in it fails; none was acknowledged.
    /// `f` may run on another writer's thread (see `combine`).
    #[allow(
        clippy::expect_used,
        reason = "`Combiner::run` runs every queued unit, this one included, before it returns"
    )]
    fn write_whole<R: Send, E: From<StoreError> + std::fmt::Display + Send>(
        &self,
        f: impl FnOnce(&Connection, &mut bool) -> Result<R, E> + Send,
    ) -> Result<R, E> {
        let span = tracing::Span::current();
        let mut f = Some(f);
        let mut outcome = None;
        let mut unit = |conn: &Connection| {
            let _in_span = span.enter();
            let Some(f) = f.take() else { return };
            let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                self.unit_of_writes(conn, f)
            }));
            if ran.is_err() {
                // Whatever it wrote is in the batch: nothing of it may commit.
                self.sync
                    .abandon_batch(conn, "a write in the same batch panicked".into());
                self.sync.note_write();
            }
            outcome = Some(ran);
        };
        self.combiner.run(&self.conn, &mut unit);
        let (out, number) = match outcome.expect("a unit has run when `run` returns") {
            Ok(done) => done,
            Err(panic) => std::panic::resume_unwind(panic),
        };
        let out = out?;
        self.sync.wait_for(number, &self.conn)?;
        self.checkpointer.nudge();
        Ok(out)
    }

    /// One writer's unit on the held connection, inside the open batch
    /// transaction (opened here when none is): its outcome and its number
    /// for [`GroupSync::wait_for`].
    fn unit_of_writes<R, E: From<StoreError> + std::fmt::Display>(
        &self,
        conn: &Connection,
        f: impl FnOnce(&Connection, &mut bool) -> Result<R, E>,
    ) -> (Result<R, E>, u64) {
        if let Err(e) = join_batch(conn) {
            return (Err(e.into()), self.sync.note_write());
        }
        let mut writing = false;
        let out = f(conn, &mut writing);
        if let Err(e) = &out
            && writing
        {
            self.sync.abandon_batch(conn, e.to_string());
        }
        (out, self.sync.note_write())
    }

    /// Runs a read on a reader of its own, in one read transaction, beside
    /// the writer: it never waits for the writer's lock, nor the writer for it.
    fn read_beside<R>(
        &self,
        f: impl FnOnce(&Connection) -> Result<R, StoreError>,
    ) -> Result<R, StoreError> {
        let conn = self.readers.take()?;
        conn.prepare_cached("BEGIN")
            .map_err(db)?
            .execute([])
            .map_err(db)?;
        let out = f(&conn);
        // A reader that cannot end its transaction is closed, not reused.
        if conn
            .prepare_cached("COMMIT")
            .and_then(|mut c| c.execute([]))
            .is_ok()
        {
            self.readers.give_back(conn);
        }
        out
    }

    /// Runs a read beside the writer; before its rows are returned, waits
    /// until they are durable. A long read (an export's page, a chain being
    /// verified) never holds up a payment.
    fn read<R>(
        &self,
        f: impl FnOnce(&Connection) -> Result<R, StoreError>,
    ) -> Result<R, StoreError> {
        let out = self.read_beside(f)?;
        self.durable()?;
        Ok(out)
    }

    /// Waits until everything committed so far is on disk. Reads that
    /// return rows call it, since a row may be another writer's commit that
    /// is not durable yet.
    pub(crate) fn durable(&self) -> Result<(), StoreError> {
        self.sync.wait_all(&self.conn)
    }
}

/// Without this, SQLite lets a bound value it can read when planning (a
/// `LIMIT ?`) shape the plan, and then compiles the statement again every
/// time that parameter is bound, even to the same value: the history read
/// before every authorization was compiled again each time.
fn plans_ignore_bound_values(conn: &Connection) -> Result<(), StoreError> {
    conn.set_db_config(
        rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG,
        true,
    )
    .map_err(db)?;
    Ok(())
}

/// Creates a new database file readable by its owner only: it holds every
/// tenant's payments and key hashes. SQLite gives its `-wal` and `-shm` the
/// database's mode.
fn create_private(path: &Path) -> Result<(), StoreError> {
    use std::os::unix::fs::OpenOptionsExt;
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(StoreError::database(
            format!("cannot create the store {}", path.display()),
            e,
        )),
    }
}

/// Opens the batch transaction unless one is open already. IMMEDIATE takes
/// the write lock now: a batch never has to upgrade a read lock another
/// process could be holding.
fn join_batch(conn: &Connection) -> Result<(), StoreError> {
    if conn.is_autocommit() {
        conn.execute_batch("BEGIN IMMEDIATE").map_err(db)?;
    }
    Ok(())
}

fn migrate(conn: &Connection) -> Result<(), StoreError> {
    // Read and upgrade under one write lock, so two processes opening a new
    // store at once cannot both run the same migration.
    conn.execute_batch("BEGIN IMMEDIATE").map_err(db)?;
    let result = migrate_locked(conn);
    conn.execute_batch(if result.is_ok() { "COMMIT" } else { "ROLLBACK" })
        .map_err(db)?;
    result
}

fn migrate_locked(conn: &Connection) -> Result<(), StoreError> {
    let version: usize = conn
        .pragma_query_value(None, "user_version", |r| r.get::<_, i64>(0))
        .map_err(db)? as usize;
    if version > MIGRATIONS.len() {
        return Err(StoreError::unusable(format!(
            "its schema version {version} is newer than this tiergate understands ({}); upgrade tiergate",
            MIGRATIONS.len()
        )));
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(version) {
        conn.execute_batch(&format!("{sql}; PRAGMA user_version = {};", i + 1))
            .map_err(db)?;
        if i + 1 == totals::SINCE_VERSION {
            totals::backfill(conn)?;
        }
    }
    Ok(())
}

fn parse_body(body: &str) -> Result<Authorization, StoreError> {
    serde_json::from_str(body).map_err(|e| StoreError::unreadable("a stored authorization", e))
}

fn body_of(auth: &Authorization) -> Result<String, StoreError> {
    serde_json::to_string(auth).map_err(|e| StoreError::unreadable("an authorization to store", e))
}

fn get_in(tx: &Connection, tenant: &str, tx_id: &str) -> Result<Option<Authorization>, StoreError> {
    let body: Option<String> = tx
        .prepare_cached("SELECT body FROM authorizations WHERE tenant = ?1 AND tx_id = ?2")
        .map_err(db)?
        .query_row(params![tenant, tx_id], |r| r.get(0))
        .optional()
        .map_err(db)?;
    body.as_deref().map(parse_body).transpose()
}

/// Writes the change's state, events and notices.
fn apply(tx: &Connection, change: &Change, now_ms: u64, insert: bool) -> Result<(), StoreError> {
    let a = &change.authorization;
    let t = &a.transaction;
    let body = body_of(a)?;
    let before = if insert {
        None
    } else {
        let status: String = tx
            .prepare_cached("SELECT status FROM authorizations WHERE tenant = ?1 AND tx_id = ?2")
            .map_err(db)?
            .query_row(params![t.tenant, t.id], |r| r.get(0))
            .map_err(db)?;
        Some(
            status
                .parse::<Status>()
                .map_err(|e| StoreError::unreadable("a stored status", e))?,
        )
    };
    totals::track(tx, a, before)?;
    if insert {
        tx.prepare_cached("INSERT INTO authorizations (tenant, tx_id, content_hash, agent, team, recipient, category, currency,
                 amount, tier, requested_at_ms, status, holds, deadline_ms, body, audit_id, caller)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17)").map_err(db)?.execute(
            params![
                t.tenant,
                t.id,
                a.content_hash,
                t.agent,
                a.team,
                t.recipient,
                t.category,
                t.currency,
                t.amount.to_string(),
                a.tier.as_str(),
                t.requested_at_ms as i64,
                a.status.as_str(),
                a.status.holds_budget(),
                a.deadline_ms.map(|d| d as i64),
                body,
                a.audit_id,
                a.caller
            ],
        ).map_err(db)?;
    } else {
        tx.prepare_cached(
            "UPDATE authorizations SET status = ?3, holds = ?4, deadline_ms = ?5, body = ?6
             WHERE tenant = ?1 AND tx_id = ?2",
        )
        .map_err(db)?
        .execute(params![
            t.tenant,
            t.id,
            a.status.as_str(),
            a.status.holds_budget(),
            a.deadline_ms.map(|d| d as i64),
            body
        ])
        .map_err(db)?;
    }
    append_events(
        tx,
        &t.tenant,
        &a.audit_id,
        &t.id,
        now_ms,
        &change.events,
        retain_until(now_ms, a.retention_years),
    )?;
    if change.ledger {
        ledger_insert_in(tx, a, now_ms)?;
    }
    for notice in &change.notices {
        tx.prepare_cached("INSERT INTO outbox (tenant, tx_id, kind, recipient, message, created_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6)").map_err(db)?.execute(
            params![t.tenant, t.id, notice.kind, notice.to, notice.message, now_ms as i64],
        ).map_err(db)?;
    }
    Ok(())
}

/// Appends `events` to the tenant's chain, whose head is read once (not at
/// all for no events).
fn append_events(
    tx: &Connection,
    tenant: &str,
    audit_id: &str,
    tx_id: &str,
    at_ms: u64,
    events: &[EventDraft],
    retain_until_ms: u64,
) -> Result<(), StoreError> {
    if events.is_empty() {
        return Ok(());
    }
    let last: Option<(i64, String)> = tx
        .prepare_cached(
            "SELECT seq, hash FROM audit_events WHERE tenant = ?1 ORDER BY seq DESC LIMIT 1",
        )
        .map_err(db)?
        .query_row(params![tenant], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()
        .map_err(db)?;
    let last = last.map(|(seq, hash)| (seq as u64, hash));
    let mut insert = tx
        .prepare_cached(
            "INSERT INTO audit_events (tenant, seq, audit_id, tx_id, kind, actor, at_ms, detail,
             prev_hash, hash, retain_until_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
        )
        .map_err(db)?;
    for c in chain(last, audit_id, tx_id, at_ms, events, retain_until_ms) {
        // The text stored is the text hashed.
        insert
            .execute(params![
                tenant,
                c.seq as i64,
                audit_id,
                tx_id,
                c.event.kind,
                c.event.actor,
                at_ms as i64,
                c.hashed.detail,
                c.prev_hash,
                c.hashed.hash,
                retain_until_ms as i64
            ])
            .map_err(db)?;
    }
    Ok(())
}

fn history_in(
    conn: &Connection,
    tenant: &str,
    agent: &str,
    recipient: &str,
    since_ms: u64,
) -> Result<History, StoreError> {
    let history = history_at_most(conn, tenant, agent, recipient, since_ms, None)?;
    history.ok_or_else(|| StoreError::unusable("an unbounded history read stopped early"))
}

/// The history, or `None` when the agent has more than `at_most` payments
/// in it (`None` reads them all).
const HISTORY_SQL: &str =
    "SELECT requested_at_ms, amount, currency, category, tier FROM authorizations
     WHERE tenant = ?1 AND agent = ?2 AND requested_at_ms >= ?3 LIMIT ?4";

fn history_at_most(
    conn: &Connection,
    tenant: &str,
    agent: &str,
    recipient: &str,
    since_ms: u64,
    at_most: Option<usize>,
) -> Result<Option<History>, StoreError> {
    let mut stmt = conn.prepare_cached(HISTORY_SQL).map_err(db)?;
    // SQLite reads a negative limit as none.
    let limit = at_most.map_or(-1, |n| n as i64 + 1);
    let rows = stmt
        .query_map(params![tenant, agent, since_ms as i64, limit], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get::<_, String>(4)?,
            ))
        })
        .map_err(db)?;
    let mut payments = Vec::new();
    for row in rows {
        let (at, amount, currency, category, tier) = row.map_err(db)?;
        payments.push(PastPayment {
            requested_at_ms: at as u64,
            amount: parse_decimal(&amount)
                .map_err(|e| StoreError::unreadable("a stored amount", e))?,
            currency,
            category,
            tier: tier
                .parse()
                .map_err(|e: String| StoreError::unreadable("a stored tier", e))?,
        });
    }
    if at_most.is_some_and(|n| payments.len() > n) {
        return Ok(None);
    }
    let (first, count) = totals::recipient(conn, tenant, recipient)?;
    Ok(Some(History {
        payments,
        recipient_first_paid_ms: first,
        recipient_payments: count,
    }))
}

/// An agent's history and a recipient's, read on demand on `conn`: inside
/// `record`'s transaction, or on a reader before it.
struct HistoryIn<'a> {
    conn: &'a Connection,
    tenant: &'a str,
    agent: &'a str,
    recipient: &'a str,
    /// Payments requested before this are beyond the context's horizon.
    since_ms: u64,
}

impl<'a> HistoryIn<'a> {
    fn of(conn: &'a Connection, entry: &'a NewEntry<'a>) -> Self {
        HistoryIn {
            conn,
            tenant: entry.tenant,
            agent: entry.agent,
            recipient: entry.recipient,
            since_ms: entry.history_since_ms,
        }
    }
}

impl HistoryReads for HistoryIn<'_> {
    fn activity(
        &self,
        since_ms: u64,
        until_ms: u64,
        currency: &str,
        filter: &ActivityFilter,
    ) -> Result<ActivityResult, StoreError> {
        let (category, tier) = filter_columns(filter);
        let since = since_ms.max(self.since_ms);
        // From the covering index alone; amounts summed exactly here.
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT amount, currency FROM authorizations
             WHERE tenant = ?1 AND agent = ?2 AND requested_at_ms >= ?3 AND requested_at_ms <= ?4
               AND (?5 IS NULL OR category = ?5) AND (?6 IS NULL OR tier = ?6)",
            )
            .map_err(db)?;
        let mut rows = stmt
            .query(params![
                self.tenant,
                self.agent,
                since as i64,
                until_ms as i64,
                category,
                tier
            ])
            .map_err(db)?;
        let mut activity = ActivitySum::default();
        while let Some(row) = rows.next().map_err(db)? {
            let amount = if row
                .get_ref(1)
                .map_err(db)?
                .as_str()
                .map_err(rusqlite::Error::from)
                .map_err(db)?
                == currency
            {
                let amount = row
                    .get_ref(0)
                    .map_err(db)?
                    .as_str()
                    .map_err(rusqlite::Error::from)
                    .map_err(db)?;
                Some(
                    parse_decimal(amount)
                        .map_err(|e| StoreError::unreadable("a stored amount", e))?,
                )
            } else {
                None
            };
            activity.add(amount);
        }
        Ok(activity.finish())
    }

    fn recipient(&self) -> Result<RecipientHistory, StoreError> {
        let (first, count) = totals::recipient(self.conn, self.tenant, self.recipient)?;
        Ok(RecipientHistory {
            first_seen_ms: first,
            payment_count: count,
        })
    }

    fn all(&self) -> Result<History, StoreError> {
        history_in(
            self.conn,
            self.tenant,
            self.agent,
            self.recipient,
            self.since_ms,
        )
    }
}

/// [`HistoryIn`] on a reader of its own, for a classification before the
/// write lock; the reader goes back to the pool when this is dropped.
struct Peeked {
    conn: Mutex<Option<Connection>>,
    readers: std::sync::Arc<Readers>,
    tenant: String,
    agent: String,
    recipient: String,
    since_ms: u64,
}

impl Peeked {
    fn read<R>(
        &self,
        f: impl FnOnce(&HistoryIn<'_>) -> Result<R, StoreError>,
    ) -> Result<R, StoreError> {
        let conn = self.conn.lock().unwrap_or_else(PoisonError::into_inner);
        let conn = conn
            .as_ref()
            .ok_or_else(|| StoreError::unusable("the reader was already returned"))?;
        f(&HistoryIn {
            conn,
            tenant: &self.tenant,
            agent: &self.agent,
            recipient: &self.recipient,
            since_ms: self.since_ms,
        })
    }
}

impl HistoryReads for Peeked {
    fn activity(
        &self,
        since_ms: u64,
        until_ms: u64,
        currency: &str,
        filter: &ActivityFilter,
    ) -> Result<ActivityResult, StoreError> {
        self.read(|h| h.activity(since_ms, until_ms, currency, filter))
    }

    fn recipient(&self) -> Result<RecipientHistory, StoreError> {
        self.read(|h| h.recipient())
    }

    fn all(&self) -> Result<History, StoreError> {
        self.read(|h| h.all())
    }
}

impl Drop for Peeked {
    fn drop(&mut self) {
        let conn = self
            .conn
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        // A reader that cannot end its transaction is closed, not reused.
        if let Some(conn) = conn
            && conn.execute_batch("COMMIT").is_ok()
        {
            self.readers.give_back(conn);
        }
    }
}

/// What `peek` hands out: the history, with the caller's turn at the
/// [`Gate`], which ends when the caller is done with it.
struct Admitted<R> {
    reads: R,
    _turn: Turn,
}

impl<R: HistoryReads> HistoryReads for Admitted<R> {
    fn activity(
        &self,
        since_ms: u64,
        until_ms: u64,
        currency: &str,
        filter: &ActivityFilter,
    ) -> Result<ActivityResult, StoreError> {
        self.reads.activity(since_ms, until_ms, currency, filter)
    }

    fn recipient(&self) -> Result<RecipientHistory, StoreError> {
        self.reads.recipient()
    }

    fn all(&self) -> Result<History, StoreError> {
        self.reads.all()
    }
}

/// `aud-YYYY-MM-DD-NNN`: the day of `now_ms` (UTC) and the tenant's next
/// number that day, never reused; the number widens past 999.
/// The tenant's next payment audit number on `day`, read but not taken.
fn audit_number(conn: &Connection, tenant: &str, day: &str) -> Result<i64, StoreError> {
    Ok(conn
        .prepare_cached("SELECT next FROM audit_days WHERE tenant = ?1 AND day = ?2")
        .map_err(db)?
        .query_row(params![tenant, day], |r| r.get(0))
        .optional()
        .map_err(db)?
        .unwrap_or(1))
}

/// Takes `number` (from [`audit_number`], in the same transaction).
fn take_audit_number(
    conn: &Connection,
    tenant: &str,
    day: &str,
    number: i64,
) -> Result<(), StoreError> {
    conn.prepare_cached(
        "INSERT INTO audit_days (tenant, day, next) VALUES (?1, ?2, ?3)
         ON CONFLICT (tenant, day) DO UPDATE SET next = excluded.next",
    )
    .map_err(db)?
    .execute(params![tenant, day, number + 1])
    .map_err(db)?;
    Ok(())
}

/// `<prefix>-YYYY-MM-DD-NNN` from the tenant's own daily sequence for that
/// prefix (tenant-level records such as activations count apart from
/// payments, so the day's first payment is still `aud-…-001`).
fn next_id(tx: &Connection, tenant: &str, now_ms: u64, prefix: &str) -> Result<String, StoreError> {
    let day = tiergate_core::utc::day(now_ms);
    let counter = match prefix {
        "aud" => day.clone(),
        other => format!("{other}:{day}"),
    };
    let next: i64 = tx
        .prepare_cached(
            "INSERT INTO audit_days (tenant, day, next) VALUES (?1, ?2, 2)
             ON CONFLICT (tenant, day) DO UPDATE SET next = next + 1
             RETURNING next - 1",
        )
        .map_err(db)?
        .query_row(params![tenant, counter], |r| r.get(0))
        .map_err(db)?;
    Ok(format!("{prefix}-{day}-{next:03}"))
}

const EVENT_COLUMNS: &str =
    "seq, audit_id, tx_id, at_ms, kind, actor, detail, prev_hash, hash, retain_until_ms";

/// An audit event row, its detail still JSON text.
fn event_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<(AuditEvent, String)> {
    Ok((
        AuditEvent {
            seq: r.get::<_, i64>(0)? as u64,
            audit_id: r.get(1)?,
            tx_id: r.get(2)?,
            at_ms: r.get::<_, i64>(3)? as u64,
            event: EventDraft {
                kind: r.get(4)?,
                actor: r.get(5)?,
                detail: serde_json::Value::Null,
            },
            retain_until_ms: r.get::<_, i64>(9)? as u64,
            prev_hash: r.get(7)?,
            hash: r.get(8)?,
        },
        r.get(6)?,
    ))
}

fn parse_event((mut event, detail): (AuditEvent, String)) -> Result<AuditEvent, StoreError> {
    event.event.detail = serde_json::from_str(&detail).map_err(|e| {
        StoreError::unreadable(
            format!("the detail of audit event {} of {}", event.seq, event.tx_id),
            e,
        )
    })?;
    Ok(event)
}

fn record_in(
    conn: &Connection,
    entry: &NewEntry<'_>,
    plan: &mut dyn FnMut(&Snapshot, &str) -> Result<Change, StoreError>,
    writing: &mut bool,
) -> Result<Recorded, StoreError> {
    if let Some(existing) = get_in(conn, entry.tenant, entry.tx_id)? {
        return Ok(Recorded::Existing(existing));
    }
    let holdings = totals::holdings(conn, entry)?;
    let history = HistoryIn::of(conn, entry);
    // Read, not yet taken: nothing is written before the plan is made, so a
    // refused plan leaves the batch as it was.
    let day = tiergate_core::utc::day(entry.now_ms);
    let number = audit_number(conn, entry.tenant, &day)?;
    let audit_id = format!("aud-{day}-{number:03}");
    let change = plan(
        &Snapshot {
            holdings,
            history: &history,
        },
        &audit_id,
    )?;
    *writing = true;
    take_audit_number(conn, entry.tenant, &day, number)?;
    apply(conn, &change, entry.now_ms, true)?;
    Ok(Recorded::New(change.authorization))
}

fn update_in(
    conn: &mut Connection,
    tenant: &str,
    tx_id: &str,
    now_ms: u64,
    decide: &mut (dyn FnMut(&Authorization) -> Result<Change, StoreError> + Send),
) -> Result<Authorization, StoreError> {
    let tx = conn.savepoint().map_err(db)?;
    let current = get_in(&tx, tenant, tx_id)?.ok_or_else(|| StoreError::NotFound {
        tenant: tenant.to_string(),
        tx_id: tx_id.to_string(),
    })?;
    let change = decide(&current)?;
    apply(&tx, &change, now_ms, false)?;
    tx.commit().map_err(db)?;
    Ok(change.authorization)
}

impl Store for SqliteStore {
    fn get(&self, tenant: &str, tx_id: &str) -> Result<Option<Authorization>, StoreError> {
        let found = self.read_beside(|conn| get_in(conn, tenant, tx_id))?;
        if found.is_some() {
            self.durable()?;
        }
        Ok(found)
    }

    fn committed(
        &self,
        entry: &NewEntry<'_>,
    ) -> Result<tiergate_core::store::Holdings, StoreError> {
        self.read_beside(|conn| totals::holdings(conn, entry))
    }

    fn tx_with_audit_id(&self, tenant: &str, audit_id: &str) -> Result<Option<String>, StoreError> {
        self.read_beside(|conn| {
            conn.prepare_cached(
                "SELECT tx_id FROM authorizations WHERE tenant = ?1 AND audit_id = ?2",
            )
            .map_err(db)?
            .query_row(params![tenant, audit_id], |r| r.get(0))
            .optional()
            .map_err(db)
        })
    }

    fn record(
        &self,
        entry: &NewEntry<'_>,
        plan: &mut (dyn FnMut(&Snapshot, &str) -> Result<Change, StoreError> + Send),
    ) -> Result<Recorded, StoreError> {
        // Also waits for an existing row: it may be another writer's commit.
        self.write_whole(|conn, writing| record_in(conn, entry, plan, writing))
    }

    fn peek(
        &self,
        entry: &NewEntry<'_>,
    ) -> Result<Option<Box<dyn HistoryReads + Send + Sync>>, StoreError> {
        // Most agents' recent history is short: read it whole, and the
        // policy's questions are answered from memory. A long one is read
        // question by question, in the same read transaction. One
        // transaction for every read: after a commit, each new one makes
        // the reader drop its cache and map the database again.
        let turn = self.gate.enter();
        let conn = self.readers.take()?;
        conn.prepare_cached("BEGIN")
            .map_err(db)?
            .execute([])
            .map_err(db)?;
        let end = |conn: Connection| {
            // A reader that cannot end its transaction is closed, not reused.
            if conn
                .prepare_cached("COMMIT")
                .and_then(|mut c| c.execute([]))
                .is_ok()
            {
                self.readers.give_back(conn);
            }
        };
        // A retry is answered by `record` from the stored row: no decision
        // to make, so no sandbox. An index look-up.
        let stored = conn
            .prepare_cached("SELECT 1 FROM authorizations WHERE tenant = ?1 AND tx_id = ?2")
            .map_err(db)?
            .exists(params![entry.tenant, entry.tx_id])
            .map_err(db)?;
        if stored {
            end(conn);
            return Ok(None);
        }
        let short = history_at_most(
            &conn,
            entry.tenant,
            entry.agent,
            entry.recipient,
            entry.history_since_ms,
            Some(SHORT_HISTORY),
        )?;
        if let Some(history) = short {
            end(conn);
            return Ok(Some(Box::new(Admitted {
                reads: history,
                _turn: turn,
            })));
        }
        Ok(Some(Box::new(Admitted {
            reads: Peeked {
                conn: Mutex::new(Some(conn)),
                readers: self.readers.clone(),
                tenant: entry.tenant.to_string(),
                agent: entry.agent.to_string(),
                recipient: entry.recipient.to_string(),
                since_ms: entry.history_since_ms,
            },
            _turn: turn,
        })))
    }

    fn update(
        &self,
        tenant: &str,
        tx_id: &str,
        now_ms: u64,
        decide: &mut (dyn FnMut(&Authorization) -> Result<Change, StoreError> + Send),
    ) -> Result<Authorization, StoreError> {
        self.write(|conn| update_in(conn, tenant, tx_id, now_ms, decide))
    }

    fn due(&self, now_ms: u64) -> Result<Vec<(String, String)>, StoreError> {
        // Beside the writer: `update` decides again on the current state.
        self.read_beside(|conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT tenant, tx_id FROM authorizations
                 WHERE deadline_ms IS NOT NULL AND deadline_ms <= ?1 AND status IN ('pending_veto', 'awaiting_approval')
                 ORDER BY deadline_ms",
            ).map_err(db)?;
            let rows = stmt.query_map(params![now_ms as i64], |r| Ok((r.get(0)?, r.get(1)?))).map_err(db)?;
            rows.collect::<Result<_, _>>().map_err(db)
        })
    }

    fn list(&self, tenant: &str, listing: &Listing<'_>) -> Result<Vec<Authorization>, StoreError> {
        let page = self.read_beside(|conn| list_in(conn, tenant, listing))?;
        // A row read may be another writer's commit not yet on disk.
        if !page.is_empty() {
            self.durable()?;
        }
        Ok(page)
    }

    fn waiting(&self) -> Result<Waiting, StoreError> {
        self.read_beside(|conn| {
            let mut stmt = conn
                .prepare_cached("SELECT status, SUM(n) FROM waiting GROUP BY status")
                .map_err(db)?;
            let rows = stmt
                .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))
                .map_err(db)?;
            let mut waiting = Waiting::default();
            for row in rows {
                let (status, n) = row.map_err(db)?;
                match status.as_str() {
                    "pending_veto" => waiting.pending_veto = n.max(0) as u64,
                    "awaiting_approval" => waiting.awaiting_approval = n.max(0) as u64,
                    _ => {}
                }
            }
            Ok(waiting)
        })
    }

    fn tenants(&self) -> Result<Vec<String>, StoreError> {
        self.read_beside(|conn| {
            let mut stmt = conn.prepare_cached(TENANTS_SQL).map_err(db)?;
            let rows = stmt.query_map([], |r| r.get(0)).map_err(db)?;
            rows.collect::<Result<_, _>>().map_err(db)
        })
    }

    fn events(&self, tenant: &str, tx_id: Option<&str>) -> Result<Vec<AuditEvent>, StoreError> {
        // One statement per case: with `?2 IS NULL OR tx_id = ?2` SQLite
        // cannot use the transaction's index and reads the whole trail.
        self.read(|conn| {
            let rows: Vec<_> = match tx_id {
                Some(tx_id) => conn
                    .prepare_cached(&format!(
                        "SELECT {EVENT_COLUMNS} FROM audit_events
                         WHERE tenant = ?1 AND tx_id = ?2 ORDER BY seq"
                    ))
                    .map_err(db)?
                    .query_map(params![tenant, tx_id], event_row)
                    .map_err(db)?
                    .collect::<Result<_, _>>()
                    .map_err(db)?,
                None => conn
                    .prepare_cached(&format!(
                        "SELECT {EVENT_COLUMNS} FROM audit_events WHERE tenant = ?1 ORDER BY seq"
                    ))
                    .map_err(db)?
                    .query_map(params![tenant], event_row)
                    .map_err(db)?
                    .collect::<Result<_, _>>()
                    .map_err(db)?,
            };
            rows.into_iter().map(parse_event).collect()
        })
    }

    fn events_after(
        &self,
        tenant: &str,
        after_seq: u64,
        limit: usize,
    ) -> Result<Vec<AuditEvent>, StoreError> {
        self.read(|conn| {
            let mut stmt = conn
                .prepare_cached(&format!(
                    "SELECT {EVENT_COLUMNS} FROM audit_events
             WHERE tenant = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3"
                ))
                .map_err(db)?;
            let rows = stmt
                .query_map(
                    params![
                        tenant,
                        after_seq as i64,
                        limit.min(i64::MAX as usize) as i64
                    ],
                    event_row,
                )
                .map_err(db)?;
            rows.map(|row| parse_event(row.map_err(db)?)).collect()
        })
    }

    fn authorizations_after(
        &self,
        tenant: &str,
        agent: Option<&str>,
        after: Option<(u64, &str)>,
        before_ms: u64,
        limit: usize,
    ) -> Result<Vec<Authorization>, StoreError> {
        // Where there is no cursor, one that sorts first: with
        // `?2 IS NULL OR ...` SQLite could not seek to the cursor, and every
        // page read the tenant's rows from the first.
        let (at, id) = after.map_or((i64::MIN, ""), |(at, id)| (at as i64, id));
        let limit = limit.min(i64::MAX as usize) as i64;
        let before = i64::try_from(before_ms).unwrap_or(i64::MAX);
        self.read(|conn| {
            // One agent's through the history index, not by reading everyone's.
            let bodies: Vec<String> = match agent {
                Some(agent) => conn
                    .prepare_cached(
                        "SELECT body FROM authorizations
                         WHERE tenant = ?1 AND agent = ?2 AND (requested_at_ms, tx_id) > (?3, ?4)
                           AND requested_at_ms < ?5
                         ORDER BY requested_at_ms, tx_id LIMIT ?6",
                    )
                    .map_err(db)?
                    .query_map(params![tenant, agent, at, id, before, limit], |r| r.get(0))
                    .map_err(db)?
                    .collect::<Result<_, _>>()
                    .map_err(db)?,
                None => conn
                    .prepare_cached(
                        "SELECT body FROM authorizations
                         WHERE tenant = ?1 AND (requested_at_ms, tx_id) > (?2, ?3)
                           AND requested_at_ms < ?4
                         ORDER BY requested_at_ms, tx_id LIMIT ?5",
                    )
                    .map_err(db)?
                    .query_map(params![tenant, at, id, before, limit], |r| r.get(0))
                    .map_err(db)?
                    .collect::<Result<_, _>>()
                    .map_err(db)?,
            };
            bodies.iter().map(|body| parse_body(body)).collect()
        })
    }

    fn outbox(&self, tenant: &str) -> Result<Vec<OutboxEntry>, StoreError> {
        self.read(|conn| {
            let mut stmt = conn
                .prepare_cached(&format!(
                    "SELECT {} FROM outbox o WHERE o.tenant = ?1 ORDER BY o.id",
                    tiergate_core::store::deliveries::OUTBOX_COLUMNS
                ))
                .map_err(db)?;
            let rows = stmt
                .query_map(params![tenant], deliveries::outbox_entry)
                .map_err(db)?;
            rows.collect::<Result<_, _>>().map_err(db)
        })
    }

    fn record_tenant_event(
        &self,
        tenant: &str,
        now_ms: u64,
        retention_years: u32,
        event: &EventDraft,
    ) -> Result<Option<String>, StoreError> {
        // In the batch, which holds the write lock from its start: a
        // transaction that reads the chain's head before it writes could
        // not take the lock once another process wrote meanwhile, and
        // SQLite refuses that at once ("database is locked"), without
        // waiting.
        let mut conn = self.lock_batch()?;
        let recorded = tenant_event_in(&mut conn, tenant, now_ms, retention_years, event);
        let unit = conn.finish();
        let recorded = recorded?;
        self.sync.wait_for(unit, &self.conn)?;
        Ok(recorded)
    }

    fn ledger_insert(&self, auth: &Authorization, now_ms: u64) -> Result<String, StoreError> {
        self.write(|conn| ledger_insert_in(conn, auth, now_ms))
    }
}

/// Every tenant with audit events, one seek per tenant on the chain's
/// primary key: `SELECT DISTINCT` read every event.
const TENANTS_SQL: &str = "WITH RECURSIVE t(name) AS (
         SELECT MIN(tenant) FROM audit_events
         UNION ALL
         SELECT (SELECT MIN(tenant) FROM audit_events WHERE tenant > t.name) FROM t
         WHERE t.name IS NOT NULL
     )
     SELECT name FROM t WHERE name IS NOT NULL";

/// The keys of one status's page (an agent key's own with `?6`), newest
/// first or oldest first after the cursor.
const PAGE_KEYS_SQL: [[&str; 2]; 2] = [
    [
        "SELECT requested_at_ms, tx_id FROM authorizations
         WHERE tenant = ?1 AND status = ?2 AND (requested_at_ms, tx_id) > (?3, ?4)
         ORDER BY requested_at_ms, tx_id LIMIT ?5",
        "SELECT requested_at_ms, tx_id FROM authorizations
         WHERE tenant = ?1 AND status = ?2 AND (requested_at_ms, tx_id) < (?3, ?4)
         ORDER BY requested_at_ms DESC, tx_id DESC LIMIT ?5",
    ],
    [
        "SELECT requested_at_ms, tx_id FROM authorizations
         WHERE tenant = ?1 AND caller = ?6 AND status = ?2 AND (requested_at_ms, tx_id) > (?3, ?4)
         ORDER BY requested_at_ms, tx_id LIMIT ?5",
        "SELECT requested_at_ms, tx_id FROM authorizations
         WHERE tenant = ?1 AND caller = ?6 AND status = ?2 AND (requested_at_ms, tx_id) < (?3, ?4)
         ORDER BY requested_at_ms DESC, tx_id DESC LIMIT ?5",
    ],
];

/// The keys of a page of every status, on the request-order index.
const PAGE_KEYS_ANY_SQL: [&str; 2] = [
    "SELECT requested_at_ms, tx_id FROM authorizations
     WHERE tenant = ?1 AND (requested_at_ms, tx_id) > (?2, ?3)
     ORDER BY requested_at_ms, tx_id LIMIT ?4",
    "SELECT requested_at_ms, tx_id FROM authorizations
     WHERE tenant = ?1 AND (requested_at_ms, tx_id) < (?2, ?3)
     ORDER BY requested_at_ms DESC, tx_id DESC LIMIT ?4",
];

/// One page of a listing, in one read transaction: its keys from an index
/// (per status, merged), then each payment by its primary key.
fn list_in(
    conn: &Connection,
    tenant: &str,
    listing: &Listing<'_>,
) -> Result<Vec<Authorization>, StoreError> {
    let (at, id) = listing_bound(listing);
    let limit = listing.limit.min(i64::MAX as usize) as i64;
    let order = usize::from(listing.newest_first);
    let key = |r: &rusqlite::Row<'_>| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?));
    let keys = if listing.statuses.is_empty() && listing.caller.is_none() {
        conn.prepare_cached(PAGE_KEYS_ANY_SQL[order])
            .map_err(db)?
            .query_map(params![tenant, at, id, limit], key)
            .map_err(db)?
            .collect::<Result<Vec<_>, _>>()
            .map_err(db)?
    } else {
        let statuses = if listing.statuses.is_empty() {
            &ALL_STATUSES[..]
        } else {
            listing.statuses
        };
        let sql = PAGE_KEYS_SQL[usize::from(listing.caller.is_some())][order];
        let mut stmt = conn.prepare_cached(sql).map_err(db)?;
        let mut reads = Vec::new();
        for status in statuses {
            let rows = match listing.caller {
                Some(caller) => stmt
                    .query_map(params![tenant, status.as_str(), at, id, limit, caller], key)
                    .map_err(db)?,
                None => stmt
                    .query_map(params![tenant, status.as_str(), at, id, limit], key)
                    .map_err(db)?,
            };
            reads.push(rows.collect::<Result<Vec<_>, _>>().map_err(db)?);
        }
        merge_keys(listing, reads)
    };
    let mut body = conn
        .prepare_cached("SELECT body FROM authorizations WHERE tenant = ?1 AND tx_id = ?2")
        .map_err(db)?;
    keys.iter()
        .map(|(_, tx_id)| {
            parse_body(
                &body
                    .query_row(params![tenant, tx_id], |r| r.get::<_, String>(0))
                    .map_err(db)?,
            )
        })
        .collect()
}

/// The latest tenant-level event (one of no payment) of a kind.
const LATEST_TENANT_EVENT_SQL: &str = "SELECT detail FROM audit_events
     WHERE tenant = ?1 AND tx_id = '' AND kind = ?2 ORDER BY seq DESC LIMIT 1";

fn tenant_event_in(
    conn: &mut Connection,
    tenant: &str,
    now_ms: u64,
    retention_years: u32,
    event: &EventDraft,
) -> Result<Option<String>, StoreError> {
    let tx = conn.savepoint().map_err(db)?;
    let latest: Option<String> = tx
        .prepare_cached(LATEST_TENANT_EVENT_SQL)
        .map_err(db)?
        .query_row(params![tenant, event.kind], |r| r.get(0))
        .optional()
        .map_err(db)?;
    let same = latest
        .and_then(|d| serde_json::from_str::<serde_json::Value>(&d).ok())
        .is_some_and(|d| d == event.detail);
    if same {
        return Ok(None);
    }
    let audit_id = next_id(&tx, tenant, now_ms, "cfg")?;
    append_events(
        &tx,
        tenant,
        &audit_id,
        "",
        now_ms,
        std::slice::from_ref(event),
        retain_until(now_ms, retention_years),
    )?;
    tx.commit().map_err(db)?;
    Ok(Some(audit_id))
}

fn ledger_insert_in(
    conn: &Connection,
    auth: &Authorization,
    now_ms: u64,
) -> Result<String, StoreError> {
    let t = &auth.transaction;
    let reference = tiergate_core::store::ledger_reference(&auth.audit_id);
    conn.prepare_cached("INSERT OR IGNORE INTO ledger (tenant, tx_id, amount, currency, recipient, executed_ms, reference)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)").map_err(db)?.execute(
            params![t.tenant, t.id, t.amount.to_string(), t.currency, t.recipient, now_ms as i64, reference],
        ).map_err(db)?;
    conn.prepare_cached("SELECT reference FROM ledger WHERE tenant = ?1 AND tx_id = ?2")
        .map_err(db)?
        .query_row(params![t.tenant, t.id], |r| r.get(0))
        .map_err(db)
}

#[cfg(test)]
mod tests {
    use rusqlite::StatementStatus;

    use crate::{
        HISTORY_SQL, LATEST_TENANT_EVENT_SQL, PAGE_KEYS_ANY_SQL, PAGE_KEYS_SQL, SqliteStore,
        TENANTS_SQL, history_at_most, totals,
    };

    #[test]
    fn the_log_is_copied_into_the_database_beside_the_writer() {
        // Far fewer pages than the writer's own checkpoint threshold: only
        // the checkpoint thread can have copied them.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store.db");
        let store = SqliteStore::open(&path).unwrap();
        store
            .write(|c| {
                c.execute_batch("CREATE TABLE scratch (v BLOB NOT NULL)")
                    .map_err(crate::db)
            })
            .unwrap();
        let before = std::fs::metadata(&path).unwrap().len();
        for _ in 0..200 {
            store
                .write(|c| {
                    c.execute("INSERT INTO scratch (v) VALUES (zeroblob(3000))", [])
                        .map_err(crate::db)
                })
                .unwrap();
        }
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while std::fs::metadata(&path).unwrap().len() < before + 200 * 3000 {
            assert!(
                std::time::Instant::now() < deadline,
                "the database file stayed at {} bytes",
                std::fs::metadata(&path).unwrap().len()
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    #[test]
    fn the_history_read_is_compiled_once_per_connection() {
        // Its `LIMIT ?` would otherwise make SQLite compile it again on
        // every authorization.
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("store.db")).unwrap();
        let reader = store.readers.take().unwrap();
        for conn in [&*store.lock(), &reader] {
            for _ in 0..3 {
                let history = history_at_most(conn, "acme", "agent-1", "vendor", 0, Some(256));
                assert!(history.unwrap().unwrap().payments.is_empty());
            }
            let stmt = conn.prepare_cached(HISTORY_SQL).unwrap();
            assert_eq!(stmt.get_status(StatementStatus::RePrepare), 0);
        }
    }

    /// The steps SQLite plans for `sql` (unbound parameters are NULL to the
    /// planner).
    fn query_plan(conn: &rusqlite::Connection, sql: &str) -> Vec<String> {
        let mut stmt = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
        let mut rows = stmt.raw_query();
        let mut steps = Vec::new();
        while let Some(row) = rows.next().unwrap() {
            steps.push(row.get::<_, String>(3).unwrap());
        }
        steps
    }

    #[test]
    fn budget_and_tenant_event_reads_search_an_index_instead_of_scanning() {
        // Each runs on every authorization or activation; a scan would grow
        // with the store.
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("store.db")).unwrap();
        let conn = store.lock();
        let plan = |sql: &str| query_plan(&conn, sql);
        for (sql, expected) in [
            (totals::BUCKETS_SQL, "SEARCH holdings USING PRIMARY KEY"),
            (
                totals::CUT_HOUR_SQL,
                "SEARCH authorizations USING INDEX authorizations_in_order (tenant=? AND requested_at_ms>? AND requested_at_ms<?)",
            ),
            (
                LATEST_TENANT_EVENT_SQL,
                "SEARCH audit_events USING INDEX audit_events_of_tenant (tenant=? AND kind=?)",
            ),
        ] {
            let steps = plan(sql);
            assert!(
                steps.iter().any(|s| s.starts_with(expected)),
                "{sql}\nis planned as {steps:?}"
            );
            assert!(!steps.iter().any(|s| s.starts_with("SCAN")), "{steps:?}");
        }
    }

    #[test]
    fn listings_and_scrapes_seek_an_index_and_never_sort_or_scan_payments() {
        // A page costs its own rows, whatever the tenant holds.
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("store.db")).unwrap();
        let conn = store.lock();
        let plan = |sql: &str| query_plan(&conn, sql);
        for (sql, index) in [
            (PAGE_KEYS_SQL[0][0], "authorizations_by_status"),
            (PAGE_KEYS_SQL[0][1], "authorizations_by_status"),
            (PAGE_KEYS_SQL[1][0], "authorizations_by_caller"),
            (PAGE_KEYS_SQL[1][1], "authorizations_by_caller"),
            (PAGE_KEYS_ANY_SQL[0], "authorizations_in_order"),
            (PAGE_KEYS_ANY_SQL[1], "authorizations_in_order"),
        ] {
            let steps = plan(sql);
            let expected = format!("SEARCH authorizations USING COVERING INDEX {index}");
            assert!(
                steps.iter().any(|s| s.starts_with(&expected)),
                "{sql}\nis planned as {steps:?}"
            );
            assert!(
                !steps
                    .iter()
                    .any(|s| s.starts_with("SCAN") || s.contains("TEMP B-TREE")),
                "{sql}\nis planned as {steps:?}"
            );
        }
        let steps = plan(TENANTS_SQL);
        assert!(
            !steps.iter().any(|s| s.starts_with("SCAN audit_events")),
            "{steps:?}"
        );
        // A page of deliveries seeks its own rows; the counts of those in
        // trouble read one row per tenant and state, never the deliveries.
        for (sql, index) in [
            (crate::deliveries::DELIVERY_PAGE_SQL, "deliveries_by_state"),
            (
                crate::deliveries::DELIVERY_PAGE_ANY_SQL,
                "deliveries_in_order",
            ),
        ] {
            let steps = plan(sql);
            let expected = format!("SEARCH d USING INDEX {index} (tenant=? AND ");
            assert!(
                steps.iter().any(|s| s.starts_with(&expected)),
                "{sql}\nis planned as {steps:?}"
            );
            assert!(
                !steps
                    .iter()
                    .any(|s| s.starts_with("SCAN") || s.contains("TEMP B-TREE")),
                "{sql}\nis planned as {steps:?}"
            );
        }
        let steps = plan(crate::deliveries::TROUBLE_SQL);
        assert_eq!(steps, ["SCAN delivery_trouble"]);
    }
}
