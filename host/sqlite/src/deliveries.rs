use crate::db;
use rusqlite::{OptionalExtension, params};

use crate::SqliteStore;
use tiergate_core::store::deliveries::{
    AddedWebhook, Delivery, DeliveryCursor, DeliveryRecord, DeliveryState, DeliveryStore,
    DeliveryTrouble, OUTBOX_COLUMNS, StoredWebhook, WEBHOOK_COLUMNS,
};
use tiergate_core::store::{Notice, OutboxEntry, StoreError};

/// An outbox row whose select list starts with [`OUTBOX_COLUMNS`].
pub(super) fn outbox_entry(r: &rusqlite::Row) -> rusqlite::Result<OutboxEntry> {
    Ok(OutboxEntry {
        id: r.get::<_, i64>(0)? as u64,
        tx_id: r.get(1)?,
        notice: Notice {
            kind: r.get(2)?,
            to: r.get(3)?,
            message: r.get(4)?,
        },
        created_ms: r.get::<_, i64>(5)? as u64,
    })
}

/// A webhook row whose select list is [`WEBHOOK_COLUMNS`].
fn webhook_row(r: &rusqlite::Row) -> rusqlite::Result<StoredWebhook> {
    Ok(StoredWebhook {
        tenant: r.get(0)?,
        id: r.get(1)?,
        url: r.get(2)?,
        secret: r.get(3)?,
        previous_secret: r.get(4)?,
        previous_expires_ms: r.get::<_, Option<i64>>(5)?.map(|v| v as u64),
        created_ms: r.get::<_, i64>(6)? as u64,
        rotated_ms: r.get::<_, Option<i64>>(7)?.map(|v| v as u64),
    })
}

fn webhook_in(
    conn: &rusqlite::Connection,
    tenant: &str,
    id: &str,
) -> Result<Option<StoredWebhook>, StoreError> {
    conn.query_row(
        &format!("SELECT {WEBHOOK_COLUMNS} FROM webhooks WHERE tenant = ?1 AND id = ?2"),
        params![tenant, id],
        webhook_row,
    )
    .optional()
    .map_err(db)
}

impl DeliveryStore for SqliteStore {
    fn add_webhook(&self, hook: &StoredWebhook, limit: usize) -> Result<AddedWebhook, StoreError> {
        self.write(|conn| {
            let tx = conn.savepoint().map_err(db)?;
            let (count, taken): (i64, bool) = tx.query_row(
                "SELECT COUNT(*), COALESCE(SUM(url = ?2), 0) > 0 FROM webhooks WHERE tenant = ?1",
                params![hook.tenant, hook.url],
                |r| Ok((r.get(0)?, r.get(1)?)),
            ).map_err(db)?;
            if taken {
                return Ok(AddedWebhook::UrlTaken);
            }
            if count as usize >= limit {
                return Ok(AddedWebhook::OverLimit { limit });
            }
            tx.execute(
                &format!(
                    "INSERT INTO webhooks ({WEBHOOK_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"
                ),
                params![
                    hook.tenant,
                    hook.id,
                    hook.url,
                    hook.secret,
                    hook.previous_secret,
                    hook.previous_expires_ms.map(|v| v as i64),
                    hook.created_ms as i64,
                    hook.rotated_ms.map(|v| v as i64)
                ],
            ).map_err(db)?;
            tx.commit().map_err(db)?;
            Ok(AddedWebhook::Added)
        })
    }

    fn rotate_webhook(
        &self,
        tenant: &str,
        id: &str,
        secret: &str,
        previous_expires_ms: Option<u64>,
        now_ms: u64,
    ) -> Result<Option<StoredWebhook>, StoreError> {
        self.write(|conn| {
            let tx = conn.savepoint().map_err(db)?;
            let changed = tx
                .execute(
                    "UPDATE webhooks SET
                     previous_secret = CASE WHEN ?4 IS NULL THEN NULL ELSE secret END,
                     previous_expires_ms = ?4, secret = ?3, rotated_ms = ?5
                 WHERE tenant = ?1 AND id = ?2",
                    params![
                        tenant,
                        id,
                        secret,
                        previous_expires_ms.map(|v| v as i64),
                        now_ms as i64
                    ],
                )
                .map_err(db)?;
            let hook = if changed == 1 {
                webhook_in(&tx, tenant, id)?
            } else {
                None
            };
            tx.commit().map_err(db)?;
            Ok(hook)
        })
    }

    fn remove_webhook(
        &self,
        tenant: &str,
        id: &str,
        now_ms: u64,
    ) -> Result<Option<StoredWebhook>, StoreError> {
        self.write(|conn| {
            let tx = conn.savepoint().map_err(db)?;
            let Some(hook) = webhook_in(&tx, tenant, id)? else {
                return Ok(None);
            };
            tx.execute(
                "DELETE FROM webhooks WHERE tenant = ?1 AND id = ?2",
                params![tenant, id],
            )
            .map_err(db)?;
            tx.execute(
                "UPDATE deliveries SET gave_up_ms = ?3, last_error = 'webhook removed'
                 WHERE tenant = ?1 AND url = ?2 AND delivered_ms IS NULL AND gave_up_ms IS NULL",
                params![tenant, hook.url, now_ms as i64],
            )
            .map_err(db)?;
            tx.execute(
                "DELETE FROM delivery_cursors WHERE tenant = ?1 AND url = ?2",
                params![tenant, hook.url],
            )
            .map_err(db)?;
            tx.commit().map_err(db)?;
            Ok(Some(hook))
        })
    }

    fn webhooks(&self, tenant: Option<&str>) -> Result<Vec<StoredWebhook>, StoreError> {
        let conn = self.lock();
        let mut stmt = conn
            .prepare_cached(&format!(
                "SELECT {WEBHOOK_COLUMNS} FROM webhooks WHERE ?1 IS NULL OR tenant = ?1
             ORDER BY tenant, created_ms, id"
            ))
            .map_err(db)?;
        let rows = stmt.query_map(params![tenant], webhook_row).map_err(db)?;
        rows.collect::<Result<_, _>>().map_err(db)
    }

    fn queue_deliveries(&self, tenant: &str, url: &str, since_ms: u64) -> Result<u64, StoreError> {
        self.write(|conn| {
            // Nothing new since the URL's cursor: no write, no lock.
            let (after, last): (Option<i64>, Option<i64>) = conn.query_row(
                "SELECT (SELECT after_id FROM delivery_cursors WHERE tenant = ?1 AND url = ?2),
                        (SELECT MAX(id) FROM outbox WHERE tenant = ?1)",
                params![tenant, url],
                |r| Ok((r.get(0)?, r.get(1)?)),
            ).map_err(db)?;
            if after.is_some() && after >= last.or(Some(0)) {
                return Ok(0);
            }
            let tx = conn.savepoint().map_err(db)?;
            // A URL seen for the first time starts with the notices written
            // since `since_ms`.
            tx.execute(
                "INSERT OR IGNORE INTO delivery_cursors (tenant, url, after_id)
                 SELECT ?1, ?2, COALESCE(
                     (SELECT MIN(id) - 1 FROM outbox WHERE tenant = ?1 AND created_ms >= ?3),
                     (SELECT MAX(id) FROM outbox WHERE tenant = ?1),
                     0)",
                params![tenant, url, since_ms as i64],
            ).map_err(db)?;
            let queued = tx.execute(
                "INSERT OR IGNORE INTO deliveries
                     (outbox_id, url, tenant, attempts, next_attempt_ms)
                 SELECT o.id, ?2, o.tenant, 0, o.created_ms FROM outbox o
                 WHERE o.tenant = ?1
                   AND o.id > (SELECT after_id FROM delivery_cursors WHERE tenant = ?1 AND url = ?2)",
                params![tenant, url],
            ).map_err(db)?;
            tx.execute(
                "UPDATE delivery_cursors
                 SET after_id = MAX(after_id,
                                    COALESCE((SELECT MAX(id) FROM outbox WHERE tenant = ?1), 0))
                 WHERE tenant = ?1 AND url = ?2",
                params![tenant, url],
            ).map_err(db)?;
            tx.commit().map_err(db)?;
            Ok(queued as u64)
        })
    }

    fn claim_deliveries(
        &self,
        now_ms: u64,
        lease_ms: u64,
        limit: usize,
    ) -> Result<Vec<Delivery>, StoreError> {
        self.write(|conn| {
            let tx = conn.savepoint().map_err(db)?;
            let claimed = {
                let mut stmt = tx
                    .prepare_cached(&format!(
                        "SELECT {OUTBOX_COLUMNS}, d.url, d.tenant, d.attempts
                     FROM deliveries d JOIN outbox o ON o.id = d.outbox_id
                     WHERE d.delivered_ms IS NULL AND d.gave_up_ms IS NULL
                       AND d.next_attempt_ms <= ?1
                     ORDER BY d.next_attempt_ms, d.outbox_id LIMIT ?2"
                    ))
                    .map_err(db)?;
                let rows = stmt
                    .query_map(params![now_ms as i64, limit as i64], |r| {
                        Ok(Delivery {
                            entry: outbox_entry(r)?,
                            url: r.get(6)?,
                            tenant: r.get(7)?,
                            attempts: r.get::<_, i64>(8)? as u32,
                        })
                    })
                    .map_err(db)?;
                rows.collect::<Result<Vec<_>, _>>().map_err(db)?
            };
            for d in &claimed {
                tx.execute(
                    "UPDATE deliveries SET next_attempt_ms = ?3 WHERE outbox_id = ?1 AND url = ?2",
                    params![d.entry.id as i64, d.url, (now_ms + lease_ms) as i64],
                )
                .map_err(db)?;
            }
            tx.commit().map_err(db)?;
            Ok(claimed)
        })
    }

    fn record_attempt(
        &self,
        outbox_id: u64,
        url: &str,
        now_ms: u64,
        error: Option<&str>,
        retry_at_ms: Option<u64>,
    ) -> Result<(), StoreError> {
        self.write(|conn| {
            match error {
                None => conn
                    .execute(
                        "UPDATE deliveries SET attempts = attempts + 1, delivered_ms = ?3,
                            last_error = NULL
                     WHERE outbox_id = ?1 AND url = ?2 AND gave_up_ms IS NULL",
                        params![outbox_id as i64, url, now_ms as i64],
                    )
                    .map_err(db)?,
                Some(error) => conn
                    .execute(
                        "UPDATE deliveries SET attempts = attempts + 1, last_error = ?3,
                            next_attempt_ms = COALESCE(?4, next_attempt_ms),
                            gave_up_ms = CASE WHEN ?4 IS NULL THEN ?5 ELSE NULL END
                     WHERE outbox_id = ?1 AND url = ?2 AND gave_up_ms IS NULL",
                        params![
                            outbox_id as i64,
                            url,
                            error,
                            retry_at_ms.map(|t| t as i64),
                            now_ms as i64
                        ],
                    )
                    .map_err(db)?,
            };
            Ok(())
        })
    }

    fn release_delivery(&self, outbox_id: u64, url: &str, now_ms: u64) -> Result<(), StoreError> {
        self.write(|conn| {
            conn.execute(
                "UPDATE deliveries SET next_attempt_ms = ?3
             WHERE outbox_id = ?1 AND url = ?2 AND delivered_ms IS NULL AND gave_up_ms IS NULL",
                params![outbox_id as i64, url, now_ms as i64],
            )
            .map_err(db)
        })?;
        Ok(())
    }

    fn deliveries(
        &self,
        tenant: &str,
        state: Option<DeliveryState>,
        after: Option<&DeliveryCursor>,
        limit: usize,
    ) -> Result<Vec<DeliveryRecord>, StoreError> {
        let (outbox_id, url) = after.map_or((i64::MAX, ""), |c| {
            (i64::try_from(c.outbox_id).unwrap_or(i64::MAX), &c.url)
        });
        let limit = limit.min(i64::MAX as usize) as i64;
        let page = self.read_beside(|conn| {
            let record = |r: &rusqlite::Row<'_>| delivery_record(tenant, r);
            Ok(match state {
                Some(state) => conn
                    .prepare_cached(DELIVERY_PAGE_SQL)
                    .map_err(db)?
                    .query_map(
                        params![tenant, outbox_id, url, limit, state.as_str()],
                        record,
                    )
                    .map_err(db)?
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(db)?,
                None => conn
                    .prepare_cached(DELIVERY_PAGE_ANY_SQL)
                    .map_err(db)?
                    .query_map(params![tenant, outbox_id, url, limit], record)
                    .map_err(db)?
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(db)?,
            })
        })?;
        // A row read may be another writer's commit not yet on disk.
        if !page.is_empty() {
            self.durable()?;
        }
        Ok(page)
    }

    fn delivery_trouble(&self) -> Result<DeliveryTrouble, StoreError> {
        self.read_beside(|conn| {
            let (failing, given_up): (i64, i64) = conn
                .prepare_cached(TROUBLE_SQL)
                .map_err(db)?
                .query_row([], |r| Ok((r.get(0)?, r.get(1)?)))
                .map_err(db)?;
            Ok(DeliveryTrouble {
                failing: failing.max(0) as u64,
                given_up: given_up.max(0) as u64,
            })
        })
    }
}

/// A page of one state's deliveries, newest first after the cursor, by
/// `deliveries_by_state`.
pub(super) const DELIVERY_PAGE_SQL: &str =
    "SELECT d.outbox_id, o.kind, o.tx_id, d.url, d.attempts, d.state, d.last_error,
            d.next_attempt_ms, d.delivered_ms, d.gave_up_ms, o.created_ms
     FROM deliveries d JOIN outbox o ON o.id = d.outbox_id
     WHERE d.tenant = ?1 AND d.state = ?5 AND (d.outbox_id, d.url) < (?2, ?3)
     ORDER BY d.outbox_id DESC, d.url DESC LIMIT ?4";

/// A page of every delivery, newest first after the cursor, by
/// `deliveries_in_order`.
pub(super) const DELIVERY_PAGE_ANY_SQL: &str =
    "SELECT d.outbox_id, o.kind, o.tx_id, d.url, d.attempts, d.state, d.last_error,
            d.next_attempt_ms, d.delivered_ms, d.gave_up_ms, o.created_ms
     FROM deliveries d JOIN outbox o ON o.id = d.outbox_id
     WHERE d.tenant = ?1 AND (d.outbox_id, d.url) < (?2, ?3)
     ORDER BY d.outbox_id DESC, d.url DESC LIMIT ?4";

/// The deliveries in trouble, from one count per tenant and state.
pub(super) const TROUBLE_SQL: &str =
    "SELECT COALESCE(SUM(CASE WHEN state = 'failing' THEN n END), 0),
            COALESCE(SUM(CASE WHEN state = 'given_up' THEN n END), 0)
     FROM delivery_trouble";

/// A row of [`DELIVERY_PAGE_SQL`] or [`DELIVERY_PAGE_ANY_SQL`].
fn delivery_record(tenant: &str, r: &rusqlite::Row) -> rusqlite::Result<DeliveryRecord> {
    let outbox_id = r.get::<_, i64>(0)? as u64;
    let state: String = r.get(5)?;
    let waiting = state == "pending" || state == "failing";
    Ok(DeliveryRecord {
        outbox_id,
        event_id: format!("{tenant}:{outbox_id}"),
        kind: r.get(1)?,
        tx_id: r.get(2)?,
        url: r.get(3)?,
        attempts: r.get::<_, i64>(4)? as u32,
        state,
        last_error: r.get(6)?,
        next_attempt_ms: waiting
            .then(|| r.get::<_, i64>(7).map(|v| v as u64))
            .transpose()?,
        delivered_ms: r.get::<_, Option<i64>>(8)?.map(|v| v as u64),
        gave_up_ms: r.get::<_, Option<i64>>(9)?.map(|v| v as u64),
        created_ms: r.get::<_, i64>(10)? as u64,
    })
}
