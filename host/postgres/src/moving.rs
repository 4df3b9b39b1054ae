//! Moving a tenant to another database of the set: explicit, audited, and
//! safe while replicas serve.
//!
//! 1. A `tenant_moved` event goes on the tenant's chain, naming both
//!    databases and who asked.
//! 2. Under the tenant's lock on the old database, a `leaving` marker is
//!    written; every write of the tenant there checks for it under the same
//!    lock (`tiergate_tenant_here`), so from its commit none lands behind
//!    the move. Within that transaction every row of the tenant is streamed
//!    to the new database, where it arrives behind an `arriving` marker
//!    that refuses writes; notices are numbered again in the new
//!    database's range, and deliveries and cursors follow them. The copy is
//!    checked (rows per table and the chain's head) and committed there,
//!    then the old transaction commits.
//! 3. The directory names the new home. Writers that still knew the old
//!    one are refused there and ask again; readers ask again within
//!    [`HOME_TTL`], and the new database takes writes only once that has
//!    passed, so no one reads the old copy after anything new is written.
//! 4. The tenant's rows are deleted from the old database.
//!
//! A move stopped at any step is finished by running it again. Until then
//! the tenant's writes are refused (`503`, retry later), never split.

use std::time::Duration;

use tiergate_core::store::{EventDraft, Store, StoreError};

use crate::Database;
use crate::directory::{HOME_TTL, PLACE_LOCK, PostgresStore, now_ms};
use crate::pool::{Conn, pg, quoted};

/// Tables whose rows of a tenant are copied as they are.
const PLAIN: &[&str] = &[
    "authorizations",
    "audit_events",
    "audit_days",
    "ledger",
    "holdings",
    "recipients",
    "waiting",
    "tenant_rules",
    "tenant_policies",
    "webhooks",
];

/// Tables whose rows name notices, which are numbered again; in the order
/// they are deleted from the old database.
const NUMBERED: &[&str] = &["deliveries", "delivery_cursors", "outbox"];

/// What a move did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Moved {
    /// The database it was on.
    pub from: i32,
    /// The database it is on now.
    pub to: i32,
    /// Rows copied (none when the tenant was there already).
    pub rows: u64,
}

impl PostgresStore {
    /// The databases of the store, by number, with where each is.
    pub fn databases(&self) -> Vec<(i32, String)> {
        self.members
            .iter()
            .map(|m| (m.number, m.database.describe()))
            .collect()
    }

    /// Every placed tenant and its database's number, by tenant.
    pub fn homes(&self) -> Result<Vec<(String, i32)>, StoreError> {
        self.directory()
            .conn()?
            .query(
                "SELECT tenant, number FROM tenant_homes ORDER BY tenant",
                &[],
            )?
            .iter()
            .map(|r| Ok((r.try_get(0).map_err(pg)?, r.try_get(1).map_err(pg)?)))
            .collect()
    }

    /// Moves `tenant`, with everything stored of it, to database `to`,
    /// recording who asked (`actor`) on its chain; see the module's steps.
    /// Finishes a move that stopped part-way. `progress` hears each step.
    pub fn move_tenant(
        &self,
        tenant: &str,
        to: i32,
        actor: &str,
        retention_years: u32,
        progress: &mut dyn FnMut(&str),
    ) -> Result<Moved, StoreError> {
        let destination = self.member(to)?;
        let Some(from) = self
            .directory()
            .conn()?
            .query_opt(
                "SELECT number FROM tenant_homes WHERE tenant = $1",
                &[&tenant],
            )?
            .map(|r| r.try_get::<_, i32>(0))
            .transpose()
            .map_err(pg)?
        else {
            return Err(StoreError::unusable(format!(
                "tenant {tenant} has nothing stored: there is nothing to move"
            )));
        };
        let mut rows = 0;
        if from != to {
            let source = self.member(from)?;
            match marker(source, tenant)? {
                Some((direction, other)) if direction == "leaving" && other != to => {
                    return Err(StoreError::unusable(format!(
                        "a move of tenant {tenant} to database {other} stopped part-way: \
                         finish it first (--to {other})"
                    )));
                }
                // Copied and committed on both sides: the directory is next.
                Some((direction, _)) if direction == "leaving" => {}
                _ => {
                    discard_unopened_copy(destination, tenant, from)?;
                    let now = now_ms();
                    // The time in the detail: a later move between the
                    // same databases is recorded too.
                    let event = EventDraft {
                        kind: "tenant_moved".into(),
                        actor: Some(actor.to_string()),
                        detail: serde_json::json!({
                            "from_database": from,
                            "to_database": to,
                            "started_ms": now,
                        }),
                    };
                    source.record_tenant_event(tenant, now as u64, retention_years, &event)?;
                    progress(&format!(
                        "copying tenant {tenant} from database {from} to database {to}"
                    ));
                    rows = copy(source, destination, tenant, from, progress)?;
                }
            }
            let mut c = self.directory().conn()?;
            c.begin()?;
            c.execute(PLACE_LOCK, &[])?;
            c.execute(
                "UPDATE tenant_homes SET number = $2 WHERE tenant = $1",
                &[&tenant, &to],
            )?;
            c.execute(
                "UPDATE tiergate_databases SET tenants = tenants + CASE number WHEN $2 THEN 1 ELSE -1 END
                 WHERE number IN ($1, $2)",
                &[&from, &to],
            )?;
            c.commit()?;
            self.forget(tenant);
            tracing::info!(tenant, from, to, actor, "moved a tenant");
        }
        // The new home opens for writes once every replica asks again.
        let wait = HOME_TTL + Duration::from_secs(1);
        let opened = destination.conn()?.execute(
            "UPDATE tenant_moves SET until_ms = $2
             WHERE tenant = $1 AND direction = 'arriving' AND until_ms IS NULL",
            &[&tenant, &(now_ms() + wait.as_millis() as i64)],
        )?;
        // Whatever an earlier home still holds of the tenant goes.
        let mut left = Vec::new();
        for m in &self.members {
            if m.number != to
                && marker(&m.database, tenant)?.is_some_and(|(d, _)| d == "leaving")
                && holds(&m.database, tenant)?
            {
                left.push(m);
            }
        }
        if opened > 0 || !left.is_empty() {
            progress("waiting for every replica to ask the directory again");
            std::thread::sleep(wait);
        }
        for m in left {
            progress(&format!(
                "deleting tenant {tenant}'s rows from database {}",
                m.number
            ));
            delete_rows(&m.database, tenant)?;
        }
        destination.conn()?.execute(
            "DELETE FROM tenant_moves WHERE tenant = $1 AND direction = 'arriving'",
            &[&tenant],
        )?;
        Ok(Moved { from, to, rows })
    }

    fn member(&self, number: i32) -> Result<&Database, StoreError> {
        self.members
            .iter()
            .find(|m| m.number == number)
            .map(|m| &m.database)
            .ok_or_else(|| {
                let known: Vec<i32> = self.members.iter().map(|m| m.number).collect();
                StoreError::unusable(format!(
                    "database {number} is not one the store URL names (it names {known:?})"
                ))
            })
    }
}

/// The tenant's move marker on the database: direction and other database.
fn marker(database: &Database, tenant: &str) -> Result<Option<(String, i32)>, StoreError> {
    database
        .conn()?
        .query_opt(
            "SELECT direction, other FROM tenant_moves WHERE tenant = $1",
            &[&tenant],
        )?
        .map(|r| Ok((r.try_get(0).map_err(pg)?, r.try_get(1).map_err(pg)?)))
        .transpose()
}

/// Removes a copy an earlier move left on `destination` without finishing
/// (it never took a write); refuses when the database holds the tenant
/// otherwise.
fn discard_unopened_copy(
    destination: &Database,
    tenant: &str,
    from: i32,
) -> Result<(), StoreError> {
    let unopened = destination
        .conn()?
        .query_opt(
            "SELECT 1 FROM tenant_moves
             WHERE tenant = $1 AND direction = 'arriving' AND other = $2 AND until_ms IS NULL",
            &[&tenant, &from],
        )?
        .is_some();
    if unopened {
        return delete_rows(destination, tenant);
    }
    if holds(destination, tenant)? {
        return Err(StoreError::unusable(format!(
            "the destination already holds rows of tenant {tenant} that no move left there: \
             nothing was moved"
        )));
    }
    Ok(())
}

/// Whether the database holds anything of the tenant (its rows go in one
/// transaction, so these tables tell).
fn holds(database: &Database, tenant: &str) -> Result<bool, StoreError> {
    Ok(database
        .conn()?
        .query_opt(
            "SELECT 1 FROM audit_events WHERE tenant = $1 UNION ALL
             SELECT 1 FROM authorizations WHERE tenant = $1 UNION ALL
             SELECT 1 FROM tenant_rules WHERE tenant = $1 LIMIT 1",
            &[&tenant],
        )?
        .is_some())
}

/// Every column of `table` a row is written with (not the computed ones).
fn columns(c: &mut Conn, table: &str) -> Result<Vec<String>, StoreError> {
    c.query(
        "SELECT column_name::text FROM information_schema.columns
             WHERE table_schema = current_schema() AND table_name = $1 AND is_generated = 'NEVER'
             ORDER BY ordinal_position",
        &[&table],
    )?
    .iter()
    .map(|r| r.try_get(0).map_err(pg))
    .collect()
}

/// The tenant's rows in each table, and its chain's head.
fn fingerprint(c: &mut Conn, tenant: &str) -> Result<Vec<String>, StoreError> {
    let mut out = Vec::new();
    for table in PLAIN.iter().chain(NUMBERED) {
        let n: i64 = c
            .query_one(
                &format!("SELECT COUNT(*) FROM {table} WHERE tenant = $1"),
                &[&tenant],
            )?
            .try_get(0)
            .map_err(pg)?;
        out.push(format!("{table}: {n}"));
    }
    let head = c.query_opt(
        "SELECT seq, hash FROM audit_events WHERE tenant = $1 ORDER BY seq DESC LIMIT 1",
        &[&tenant],
    )?;
    if let Some(r) = head {
        let (seq, hash): (i64, String) = (r.try_get(0).map_err(pg)?, r.try_get(1).map_err(pg)?);
        out.push(format!("chain head: {seq} {hash}"));
    }
    Ok(out)
}

/// Step 2: marks the tenant leaving `source` and copies it to
/// `destination` behind an `arriving` marker; returns the rows copied.
fn copy(
    source: &Database,
    destination: &Database,
    tenant: &str,
    from: i32,
    progress: &mut dyn FnMut(&str),
) -> Result<u64, StoreError> {
    let mut s = source.conn()?;
    let mut d = destination.conn()?;
    // Once the lock is ours no write of the tenant is running there, and
    // after the marker's commit none will.
    s.begin_locked(tenant)?;
    let to: i32 = d
        .query_one("SELECT number FROM tiergate_identity", &[])?
        .try_get(0)
        .map_err(pg)?;
    s.execute(
        "INSERT INTO tenant_moves (tenant, direction, other) VALUES ($1, 'leaving', $2)
         ON CONFLICT (tenant) DO UPDATE SET direction = 'leaving', other = $2, until_ms = NULL",
        &[&tenant, &to],
    )?;
    d.begin_locked_for_move(tenant)?;
    d.execute(
        "INSERT INTO tenant_moves (tenant, direction, other) VALUES ($1, 'arriving', $2)
         ON CONFLICT (tenant) DO UPDATE SET direction = 'arriving', other = $2, until_ms = NULL",
        &[&tenant, &from],
    )?;
    let literal = quoted(tenant);
    let mut rows = 0;
    for table in PLAIN {
        let cols = columns(&mut s, table)?.join(", ");
        let n = s.copy_to(
            &format!(
                "COPY (SELECT {cols} FROM {table} WHERE tenant = {literal}) TO STDOUT (FORMAT binary)"
            ),
            &mut d,
            &format!("COPY {table} ({cols}) FROM STDIN (FORMAT binary)"),
        )?;
        progress(&format!("  {table}: {n} rows"));
        rows += n;
    }
    // Notices get numbers in the destination's range, in the same order;
    // deliveries and cursors follow them.
    d.batch(
        "CREATE TEMP TABLE moving_outbox (LIKE outbox) ON COMMIT DROP;
         CREATE TEMP TABLE moving_deliveries (LIKE deliveries) ON COMMIT DROP;
         CREATE TEMP TABLE moving_delivery_cursors (LIKE delivery_cursors) ON COMMIT DROP;",
    )?;
    for table in NUMBERED {
        let cols = columns(&mut s, table)?.join(", ");
        let n = s.copy_to(
            &format!(
                "COPY (SELECT {cols} FROM {table} WHERE tenant = {literal}) TO STDOUT (FORMAT binary)"
            ),
            &mut d,
            &format!("COPY moving_{table} ({cols}) FROM STDIN (FORMAT binary)"),
        )?;
        progress(&format!("  {table}: {n} rows"));
        rows += n;
    }
    let but = |mut cols: Vec<String>, numbered: &str| {
        cols.retain(|c| c != numbered);
        cols.join(", ")
    };
    let outbox = but(columns(&mut s, "outbox")?, "id");
    let deliveries = but(columns(&mut s, "deliveries")?, "outbox_id");
    d.batch(&format!(
        "CREATE TEMP TABLE notice_numbers ON COMMIT DROP AS
             SELECT o.id AS old, n.new FROM
                 (SELECT id, row_number() OVER (ORDER BY id) AS r FROM moving_outbox) o
                 JOIN (SELECT new, row_number() OVER (ORDER BY new) AS r FROM
                         (SELECT nextval('outbox_id_seq') AS new FROM moving_outbox) fresh) n
                 USING (r);
         INSERT INTO outbox (id, {outbox})
             SELECT n.new, {outbox} FROM moving_outbox m JOIN notice_numbers n ON n.old = m.id;
         INSERT INTO deliveries (outbox_id, {deliveries})
             SELECT n.new, {deliveries} FROM moving_deliveries m
             JOIN notice_numbers n ON n.old = m.outbox_id;
         INSERT INTO delivery_cursors (tenant, url, after_id)
             SELECT tenant, url,
                    COALESCE((SELECT MAX(new) FROM notice_numbers WHERE old <= c.after_id), 0)
             FROM moving_delivery_cursors c;"
    ))?;
    let (here, there) = (fingerprint(&mut s, tenant)?, fingerprint(&mut d, tenant)?);
    if here != there {
        return Err(StoreError::unusable(format!(
            "the copy of tenant {tenant} differs from what it copies ({there:?} against \
             {here:?}); nothing was moved"
        )));
    }
    d.commit()?;
    s.commit()?;
    Ok(rows)
}

/// Step 4: deletes the tenant's rows from a database it left (or a copy
/// that never opened), under its lock there.
fn delete_rows(database: &Database, tenant: &str) -> Result<(), StoreError> {
    let mut c = database.conn()?;
    c.begin_locked_for_move(tenant)?;
    for table in NUMBERED.iter().chain(PLAIN) {
        c.execute(
            &format!("DELETE FROM {table} WHERE tenant = $1"),
            &[&tenant],
        )?;
    }
    // The counts the deliveries' trigger kept, now at zero.
    c.execute(
        "DELETE FROM delivery_trouble WHERE tenant = $1 AND n = 0",
        &[&tenant],
    )?;
    c.commit()
}
