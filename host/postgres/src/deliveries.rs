use crate::pool::pg;
use tokio_postgres::Row;

use crate::{Database, ms};
use tiergate_core::store::deliveries::{
    AddedWebhook, Delivery, DeliveryCursor, DeliveryRecord, DeliveryState, DeliveryStore,
    DeliveryTrouble, OUTBOX_COLUMNS, StoredWebhook, WEBHOOK_COLUMNS,
};
use tiergate_core::store::{Notice, OutboxEntry, StoreError};

/// An outbox row whose select list starts with [`OUTBOX_COLUMNS`].
pub(super) fn outbox_entry(r: &Row) -> Result<OutboxEntry, tokio_postgres::Error> {
    Ok(OutboxEntry {
        id: r.try_get::<_, i64>(0)? as u64,
        tx_id: r.try_get(1)?,
        notice: Notice {
            kind: r.try_get(2)?,
            to: r.try_get(3)?,
            message: r.try_get(4)?,
        },
        created_ms: r.try_get::<_, i64>(5)? as u64,
    })
}

/// A webhook row whose select list is [`WEBHOOK_COLUMNS`].
fn webhook_row(r: &Row) -> Result<StoredWebhook, StoreError> {
    Ok(StoredWebhook {
        tenant: r.try_get(0).map_err(pg)?,
        id: r.try_get(1).map_err(pg)?,
        url: r.try_get(2).map_err(pg)?,
        secret: r.try_get(3).map_err(pg)?,
        previous_secret: r.try_get(4).map_err(pg)?,
        previous_expires_ms: r
            .try_get::<_, Option<i64>>(5)
            .map_err(pg)?
            .map(|v| v as u64),
        created_ms: r.try_get::<_, i64>(6).map_err(pg)? as u64,
        rotated_ms: r
            .try_get::<_, Option<i64>>(7)
            .map_err(pg)?
            .map(|v| v as u64),
    })
}

impl DeliveryStore for Database {
    fn add_webhook(&self, hook: &StoredWebhook, limit: usize) -> Result<AddedWebhook, StoreError> {
        let mut c = self.conn()?;
        // Under the tenant's lock two additions at once cannot both fit.
        c.begin_locked(&hook.tenant)?;
        let row = c.query_one(
            "SELECT COUNT(*), COALESCE(BOOL_OR(url = $2), false) FROM webhooks WHERE tenant = $1",
            &[&hook.tenant, &hook.url],
        )?;
        let (count, taken): (i64, bool) =
            (row.try_get(0).map_err(pg)?, row.try_get(1).map_err(pg)?);
        let refused = if taken {
            Some(AddedWebhook::UrlTaken)
        } else if count as usize >= limit {
            Some(AddedWebhook::OverLimit { limit })
        } else {
            None
        };
        if let Some(refused) = refused {
            c.rollback()?;
            return Ok(refused);
        }
        c.execute(
            &format!(
                "INSERT INTO webhooks ({WEBHOOK_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
            ),
            &[
                &hook.tenant,
                &hook.id,
                &hook.url,
                &hook.secret,
                &hook.previous_secret,
                &hook.previous_expires_ms.map(ms),
                &ms(hook.created_ms),
                &hook.rotated_ms.map(ms),
            ],
        )?;
        c.commit()?;
        Ok(AddedWebhook::Added)
    }

    fn rotate_webhook(
        &self,
        tenant: &str,
        id: &str,
        secret: &str,
        previous_expires_ms: Option<u64>,
        now_ms: u64,
    ) -> Result<Option<StoredWebhook>, StoreError> {
        let mut c = self.conn()?;
        c.begin_locked(tenant)?;
        let rotated = c
            .query_opt(
                &format!(
                    "UPDATE webhooks SET
                         previous_secret = CASE WHEN $4::bigint IS NULL THEN NULL ELSE secret END,
                         previous_expires_ms = $4, secret = $3, rotated_ms = $5
                     WHERE tenant = $1 AND id = $2
                     RETURNING {WEBHOOK_COLUMNS}"
                ),
                &[
                    &tenant,
                    &id,
                    &secret,
                    &previous_expires_ms.map(ms),
                    &ms(now_ms),
                ],
            )?
            .as_ref()
            .map(webhook_row)
            .transpose()?;
        c.commit()?;
        Ok(rotated)
    }

    fn remove_webhook(
        &self,
        tenant: &str,
        id: &str,
        now_ms: u64,
    ) -> Result<Option<StoredWebhook>, StoreError> {
        let mut c = self.conn()?;
        c.begin_locked(tenant)?;
        let Some(row) = c.query_opt(
            &format!(
                "DELETE FROM webhooks WHERE tenant = $1 AND id = $2 RETURNING {WEBHOOK_COLUMNS}"
            ),
            &[&tenant, &id],
        )?
        else {
            c.rollback()?;
            return Ok(None);
        };
        let hook = webhook_row(&row)?;
        c.execute(
            "UPDATE deliveries SET gave_up_ms = $3, last_error = 'webhook removed'
             WHERE tenant = $1 AND url = $2 AND delivered_ms IS NULL AND gave_up_ms IS NULL",
            &[&tenant, &hook.url, &ms(now_ms)],
        )?;
        c.execute(
            "DELETE FROM delivery_cursors WHERE tenant = $1 AND url = $2",
            &[&tenant, &hook.url],
        )?;
        c.commit()?;
        Ok(Some(hook))
    }

    fn webhooks(&self, tenant: Option<&str>) -> Result<Vec<StoredWebhook>, StoreError> {
        self.conn()?
            .query(
                &format!(
                    "SELECT {WEBHOOK_COLUMNS} FROM webhooks WHERE $1::text IS NULL OR tenant = $1
                     ORDER BY tenant, created_ms, id"
                ),
                &[&tenant],
            )?
            .iter()
            .map(webhook_row)
            .collect()
    }

    fn queue_deliveries(&self, tenant: &str, url: &str, since_ms: u64) -> Result<u64, StoreError> {
        let mut c = self.conn()?;
        // Nothing new since the URL's cursor: no write, no lock.
        let row = c.query_one(
            "SELECT (SELECT after_id FROM delivery_cursors WHERE tenant = $1 AND url = $2),
                    (SELECT MAX(id) FROM outbox WHERE tenant = $1)",
            &[&tenant, &url],
        )?;
        let (after, last): (Option<i64>, Option<i64>) =
            (row.try_get(0).map_err(pg)?, row.try_get(1).map_err(pg)?);
        if after.is_some() && after >= last.or(Some(0)) {
            return Ok(0);
        }
        // Under the tenant's lock no notice of the tenant is being written,
        // so no smaller outbox id can commit after the cursor moves past it.
        c.begin_locked(tenant)?;
        c.execute(
            "INSERT INTO delivery_cursors (tenant, url, after_id)
             SELECT $1::text, $2::text, COALESCE(
                 (SELECT MIN(id) - 1 FROM outbox WHERE tenant = $1 AND created_ms >= $3),
                 (SELECT MAX(id) FROM outbox WHERE tenant = $1),
                 0)
             ON CONFLICT (tenant, url) DO NOTHING",
            &[&tenant, &url, &ms(since_ms)],
        )?;
        let queued = c.execute(
            "INSERT INTO deliveries (outbox_id, url, tenant, attempts, next_attempt_ms)
             SELECT o.id, $2::text, o.tenant, 0, o.created_ms FROM outbox o
             WHERE o.tenant = $1
               AND o.id > (SELECT after_id FROM delivery_cursors WHERE tenant = $1 AND url = $2)
             ON CONFLICT (outbox_id, url) DO NOTHING",
            &[&tenant, &url],
        )?;
        c.execute(
            "UPDATE delivery_cursors
             SET after_id = GREATEST(after_id, COALESCE((SELECT MAX(id) FROM outbox WHERE tenant = $1), 0))
             WHERE tenant = $1 AND url = $2",
            &[&tenant, &url],
        )?;
        c.commit()?;
        Ok(queued)
    }

    fn claim_deliveries(
        &self,
        now_ms: u64,
        lease_ms: u64,
        limit: usize,
    ) -> Result<Vec<Delivery>, StoreError> {
        let mut c = self.conn()?;
        c.begin()?;
        // Rows another replica is claiming right now are skipped, not waited for.
        let rows = c.query(
            &format!(
                "SELECT {OUTBOX_COLUMNS}, d.url, d.tenant, d.attempts
                 FROM deliveries d JOIN outbox o ON o.id = d.outbox_id
                 WHERE d.delivered_ms IS NULL AND d.gave_up_ms IS NULL AND d.next_attempt_ms <= $1
                 ORDER BY d.next_attempt_ms, d.outbox_id LIMIT $2
                 FOR UPDATE OF d SKIP LOCKED"
            ),
            &[&ms(now_ms), &(limit.min(i64::MAX as usize) as i64)],
        )?;
        let mut claimed = Vec::with_capacity(rows.len());
        for r in &rows {
            claimed.push(Delivery {
                entry: outbox_entry(r).map_err(pg)?,
                url: r.try_get(6).map_err(pg)?,
                tenant: r.try_get(7).map_err(pg)?,
                attempts: r.try_get::<_, i64>(8).map_err(pg)? as u32,
            });
        }
        for d in &claimed {
            c.execute(
                "UPDATE deliveries SET next_attempt_ms = $3 WHERE outbox_id = $1 AND url = $2",
                &[&ms(d.entry.id), &d.url, &ms(now_ms + lease_ms)],
            )?;
        }
        c.commit()?;
        Ok(claimed)
    }

    fn record_attempt(
        &self,
        outbox_id: u64,
        url: &str,
        now_ms: u64,
        error: Option<&str>,
        retry_at_ms: Option<u64>,
    ) -> Result<(), StoreError> {
        let mut c = self.conn()?;
        match error {
            None => c.execute(
                "UPDATE deliveries SET attempts = attempts + 1, delivered_ms = $3, last_error = NULL
                 WHERE outbox_id = $1 AND url = $2 AND gave_up_ms IS NULL",
                &[&ms(outbox_id), &url, &ms(now_ms)],
            )?,
            Some(error) => c.execute(
                "UPDATE deliveries SET attempts = attempts + 1, last_error = $3,
                        next_attempt_ms = COALESCE($4, next_attempt_ms),
                        gave_up_ms = CASE WHEN $4::bigint IS NULL THEN $5::bigint ELSE NULL END
                 WHERE outbox_id = $1 AND url = $2 AND gave_up_ms IS NULL",
                &[
                    &ms(outbox_id),
                    &url,
                    &error,
                    &retry_at_ms.map(ms),
                    &ms(now_ms),
                ],
            )?,
        };
        Ok(())
    }

    fn release_delivery(&self, outbox_id: u64, url: &str, now_ms: u64) -> Result<(), StoreError> {
        self.conn()?.execute(
            "UPDATE deliveries SET next_attempt_ms = $3
             WHERE outbox_id = $1 AND url = $2 AND delivered_ms IS NULL AND gave_up_ms IS NULL",
            &[&ms(outbox_id), &url, &ms(now_ms)],
        )?;
        Ok(())
    }

    fn deliveries(
        &self,
        tenant: &str,
        state: Option<DeliveryState>,
        after: Option<&DeliveryCursor>,
        limit: usize,
    ) -> Result<Vec<DeliveryRecord>, StoreError> {
        let (outbox_id, url) = after.map_or((i64::MAX, ""), |c| (ms(c.outbox_id), &c.url));
        let limit = limit.min(i64::MAX as usize) as i64;
        // One statement on its own snapshot; no tenant lock.
        let rows = match state {
            Some(state) => self.conn()?.query(
                DELIVERY_PAGE_SQL,
                &[&tenant, &outbox_id, &url, &limit, &state.as_str()],
            )?,
            None => self
                .conn()?
                .query(DELIVERY_PAGE_ANY_SQL, &[&tenant, &outbox_id, &url, &limit])?,
        };
        rows.iter()
            .map(|r| {
                let outbox_id = r.try_get::<_, i64>(0).map_err(pg)? as u64;
                let state: String = r.try_get(5).map_err(pg)?;
                let waiting = state == "pending" || state == "failing";
                Ok(DeliveryRecord {
                    outbox_id,
                    event_id: format!("{tenant}:{outbox_id}"),
                    kind: r.try_get(1).map_err(pg)?,
                    tx_id: r.try_get(2).map_err(pg)?,
                    url: r.try_get(3).map_err(pg)?,
                    attempts: r.try_get::<_, i64>(4).map_err(pg)? as u32,
                    last_error: r.try_get(6).map_err(pg)?,
                    next_attempt_ms: if waiting {
                        Some(r.try_get::<_, i64>(7).map_err(pg)? as u64)
                    } else {
                        None
                    },
                    delivered_ms: r
                        .try_get::<_, Option<i64>>(8)
                        .map_err(pg)?
                        .map(|v| v as u64),
                    gave_up_ms: r
                        .try_get::<_, Option<i64>>(9)
                        .map_err(pg)?
                        .map(|v| v as u64),
                    created_ms: r.try_get::<_, i64>(10).map_err(pg)? as u64,
                    state,
                })
            })
            .collect()
    }

    fn delivery_trouble(&self) -> Result<DeliveryTrouble, StoreError> {
        let row = self.conn()?.query_one(
            "SELECT COALESCE(SUM(n) FILTER (WHERE state = 'failing'), 0)::BIGINT,
                    COALESCE(SUM(n) FILTER (WHERE state = 'given_up'), 0)::BIGINT
             FROM delivery_trouble",
            &[],
        )?;
        Ok(DeliveryTrouble {
            failing: row.try_get::<_, i64>(0).map_err(pg)?.max(0) as u64,
            given_up: row.try_get::<_, i64>(1).map_err(pg)?.max(0) as u64,
        })
    }
}

/// A page of one state's deliveries, newest first after the cursor, by
/// `deliveries_by_state`.
pub(super) const DELIVERY_PAGE_SQL: &str =
    "SELECT d.outbox_id, o.kind, o.tx_id, d.url, d.attempts, d.state, d.last_error,
            d.next_attempt_ms, d.delivered_ms, d.gave_up_ms, o.created_ms
     FROM deliveries d JOIN outbox o ON o.id = d.outbox_id
     WHERE d.tenant = $1 AND d.state = $5 AND (d.outbox_id, d.url) < ($2, $3)
     ORDER BY d.outbox_id DESC, d.url DESC LIMIT $4";

/// A page of every delivery, newest first after the cursor, by
/// `deliveries_in_order`.
pub(super) const DELIVERY_PAGE_ANY_SQL: &str =
    "SELECT d.outbox_id, o.kind, o.tx_id, d.url, d.attempts, d.state, d.last_error,
            d.next_attempt_ms, d.delivered_ms, d.gave_up_ms, o.created_ms
     FROM deliveries d JOIN outbox o ON o.id = d.outbox_id
     WHERE d.tenant = $1 AND (d.outbox_id, d.url) < ($2, $3)
     ORDER BY d.outbox_id DESC, d.url DESC LIMIT $4";

#[cfg(test)]
mod tests {
    use super::{DELIVERY_PAGE_ANY_SQL, DELIVERY_PAGE_SQL};
    use crate::pool::Pool;
    use crate::schema::migrate;

    #[test]
    fn a_page_of_deliveries_seeks_an_index_and_never_sorts() {
        let url = tiergate_e2e::postgres::fresh_database();
        let pool = Pool::open(&url, 1).unwrap();
        let mut c = pool.get().unwrap();
        migrate(&mut c).unwrap();
        // A small tenant beside a large one, their deliveries nearly all
        // delivered, as the planner's statistics see them.
        c.batch(
            "INSERT INTO outbox (id, tenant, tx_id, kind, recipient, message, created_ms)
                 SELECT i, CASE WHEN i % 50 = 0 THEN 'acme' ELSE 'globex' END,
                        'tx', 'notice', 'ops', '', i
                 FROM generate_series(1, 40000) i;
             INSERT INTO deliveries (outbox_id, url, tenant, attempts, next_attempt_ms, delivered_ms)
                 SELECT id, 'u', tenant, 1, id, CASE WHEN id % 1000 = 0 THEN NULL ELSE id END
                 FROM outbox;
             ANALYZE outbox; ANALYZE deliveries;",
        )
        .unwrap();
        for (sql, index, params) in [
            (
                DELIVERY_PAGE_SQL,
                "deliveries_by_state",
                "'acme', 50000, 'u', 10, 'failing'",
            ),
            (
                DELIVERY_PAGE_ANY_SQL,
                "deliveries_in_order",
                "'acme', 50000, 'u', 10",
            ),
        ] {
            c.batch(&format!("PREPARE page AS {sql}")).unwrap();
            let steps: Vec<String> = c
                .query(&format!("EXPLAIN EXECUTE page({params})"), &[])
                .unwrap()
                .iter()
                .map(|r| r.get(0))
                .collect();
            c.batch("DEALLOCATE page").unwrap();
            assert!(
                steps.iter().any(
                    |s| s.contains(&format!("Index Scan Backward using {index} on deliveries"))
                ),
                "{sql}\nis planned as {steps:#?}"
            );
            assert!(
                !steps.iter().any(|s| s.contains("Sort")),
                "{sql}\nis planned as {steps:#?}"
            );
        }
    }
}
