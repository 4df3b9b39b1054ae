use rusqlite::{OptionalExtension, params};

use super::SqliteStore;
use crate::store::StoreError;
use crate::store::rules::{RulesStore, StoredRules};

impl RulesStore for SqliteStore {
    fn put_policy(&self, digest: &str, component: &[u8], now_ms: u64) -> Result<(), StoreError> {
        self.write(|conn| {
            conn.execute(
            "INSERT OR IGNORE INTO policies (digest, component, uploaded_ms) VALUES (?1, ?2, ?3)",
            params![digest, component, now_ms as i64],
        ).map_err(StoreError::from)
        })?;
        Ok(())
    }

    fn policy_component(&self, digest: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self
            .lock()
            .query_row(
                "SELECT component FROM policies WHERE digest = ?1",
                params![digest],
                |r| r.get(0),
            )
            .optional()?)
    }

    fn put_rules(
        &self,
        tenant: &str,
        policy: &str,
        config: &str,
        actor: &str,
        now_ms: u64,
    ) -> Result<StoredRules, StoreError> {
        self.write(|conn| {
            let tx = conn.savepoint()?;
            let version: i64 = tx.query_row(
                "SELECT COALESCE(MAX(version), 0) + 1 FROM tenant_rules WHERE tenant = ?1",
                params![tenant],
                |r| r.get(0),
            )?;
            tx.execute(
                "INSERT INTO tenant_rules (tenant, version, policy, config, activated_ms, actor)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![tenant, version, policy, config, now_ms as i64, actor],
            )?;
            tx.commit()?;
            Ok(StoredRules {
                tenant: tenant.to_string(),
                version: version as u64,
                policy: policy.to_string(),
                config: config.to_string(),
                activated_ms: now_ms,
                actor: actor.to_string(),
            })
        })
    }

    fn active_rules(&self) -> Result<Vec<StoredRules>, StoreError> {
        let conn = self.lock();
        let mut stmt = conn.prepare_cached(
            "SELECT r.tenant, r.version, r.policy, r.config, r.activated_ms, r.actor
             FROM tenant_rules r
             JOIN (SELECT tenant, MAX(version) AS version FROM tenant_rules GROUP BY tenant) latest
               ON latest.tenant = r.tenant AND latest.version = r.version
             ORDER BY r.tenant",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok(StoredRules {
                tenant: r.get(0)?,
                version: r.get::<_, i64>(1)? as u64,
                policy: r.get(2)?,
                config: r.get(3)?,
                activated_ms: r.get::<_, i64>(4)? as u64,
                actor: r.get(5)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}
