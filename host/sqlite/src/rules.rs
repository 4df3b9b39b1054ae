use crate::db;
use rusqlite::{OptionalExtension, params};

use crate::SqliteStore;
use tiergate_core::store::StoreError;
use tiergate_core::store::rules::{
    DeletedPolicy, PutPolicy, RulesStore, StoredRules, UploadQuota, UploadedPolicy, quota_outcome,
};

const POLICY_COLUMNS: &str = "digest, name, version, bytes, uploaded_ms";

fn policy_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<UploadedPolicy> {
    Ok(UploadedPolicy {
        digest: r.get(0)?,
        name: r.get(1)?,
        version: r.get(2)?,
        bytes: r.get::<_, i64>(3)? as u64,
        uploaded_ms: r.get::<_, i64>(4)? as u64,
    })
}

impl RulesStore for SqliteStore {
    fn put_policy(
        &self,
        tenant: &str,
        policy: &UploadedPolicy,
        component: &[u8],
        quota: Option<UploadQuota>,
    ) -> Result<PutPolicy, StoreError> {
        self.write(|conn| {
            let tx = conn.savepoint().map_err(db)?;
            let known: bool = tx.query_row(
                "SELECT EXISTS (SELECT 1 FROM tenant_policies WHERE tenant = ?1 AND digest = ?2)",
                params![tenant, policy.digest],
                |r| r.get(0),
            ).map_err(db)?;
            if known {
                return Ok(PutPolicy::AlreadyStored);
            }
            if let Some(quota) = quota {
                let (count, used): (i64, i64) = tx.query_row(
                    "SELECT COUNT(*), COALESCE(SUM(bytes), 0) FROM tenant_policies WHERE tenant = ?1",
                    params![tenant],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                ).map_err(db)?;
                let outcome = quota_outcome(quota, count as usize, used as u64, component.len());
                if let Some(refused) = outcome {
                    return Ok(refused);
                }
            }
            tx.execute(
                &format!(
                    "INSERT INTO tenant_policies (tenant, {POLICY_COLUMNS}, component)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)"
                ),
                params![
                    tenant,
                    policy.digest,
                    policy.name,
                    policy.version,
                    component.len() as i64,
                    policy.uploaded_ms as i64,
                    component
                ],
            ).map_err(db)?;
            tx.commit().map_err(db)?;
            Ok(PutPolicy::Stored)
        })
    }

    fn policy_component(&self, tenant: &str, digest: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.lock()
            .query_row(
                "SELECT component FROM tenant_policies WHERE tenant = ?1 AND digest = ?2",
                params![tenant, digest],
                |r| r.get(0),
            )
            .optional()
            .map_err(db)
    }

    fn policies(&self, tenant: &str) -> Result<Vec<UploadedPolicy>, StoreError> {
        let conn = self.lock();
        let mut stmt = conn
            .prepare_cached(&format!(
                "SELECT {POLICY_COLUMNS} FROM tenant_policies WHERE tenant = ?1
             ORDER BY uploaded_ms, digest"
            ))
            .map_err(db)?;
        let rows = stmt.query_map(params![tenant], policy_row).map_err(db)?;
        rows.collect::<Result<_, _>>().map_err(db)
    }

    fn delete_policy(&self, tenant: &str, digest: &str) -> Result<DeletedPolicy, StoreError> {
        self.write(|conn| {
            let tx = conn.savepoint().map_err(db)?;
            let in_use: bool = tx
                .query_row(
                    "SELECT EXISTS (SELECT 1 FROM tenant_rules WHERE tenant = ?1 AND policy = ?2
                   AND version = (SELECT MAX(version) FROM tenant_rules WHERE tenant = ?1))",
                    params![tenant, digest],
                    |r| r.get(0),
                )
                .map_err(db)?;
            if in_use {
                return Ok(DeletedPolicy::InUse);
            }
            let deleted = tx
                .execute(
                    "DELETE FROM tenant_policies WHERE tenant = ?1 AND digest = ?2",
                    params![tenant, digest],
                )
                .map_err(db)?;
            tx.commit().map_err(db)?;
            Ok(if deleted == 1 {
                DeletedPolicy::Deleted
            } else {
                DeletedPolicy::NotFound
            })
        })
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
        self.write(|conn| {
            let tx = conn.savepoint().map_err(db)?;
            let latest: i64 = tx
                .query_row(
                    "SELECT COALESCE(MAX(version), 0) FROM tenant_rules WHERE tenant = ?1",
                    params![tenant],
                    |r| r.get(0),
                )
                .map_err(db)?;
            if after.is_some_and(|after| after != latest as u64) {
                return Ok(None);
            }
            let version = latest + 1;
            tx.execute(
                "INSERT INTO tenant_rules (tenant, version, policy, config, activated_ms, actor)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![tenant, version, policy, config, now_ms as i64, actor],
            )
            .map_err(db)?;
            tx.commit().map_err(db)?;
            Ok(Some(StoredRules {
                tenant: tenant.to_string(),
                version: version as u64,
                policy: policy.to_string(),
                config: config.to_string(),
                activated_ms: now_ms,
                actor: actor.to_string(),
            }))
        })
    }

    fn active_rules(&self) -> Result<Vec<StoredRules>, StoreError> {
        let conn = self.lock();
        let mut stmt = conn
            .prepare_cached(
                "SELECT r.tenant, r.version, r.policy, r.config, r.activated_ms, r.actor
             FROM tenant_rules r
             JOIN (SELECT tenant, MAX(version) AS version FROM tenant_rules GROUP BY tenant) latest
               ON latest.tenant = r.tenant AND latest.version = r.version
             ORDER BY r.tenant",
            )
            .map_err(db)?;
        let rows = stmt
            .query_map([], |r| {
                Ok(StoredRules {
                    tenant: r.get(0)?,
                    version: r.get::<_, i64>(1)? as u64,
                    policy: r.get(2)?,
                    config: r.get(3)?,
                    activated_ms: r.get::<_, i64>(4)? as u64,
                    actor: r.get(5)?,
                })
            })
            .map_err(db)?;
        rows.collect::<Result<_, _>>().map_err(db)
    }
}

#[cfg(test)]
mod tests {
    use rusqlite::Connection;

    use crate::{MIGRATIONS, migrate};

    /// The store as it was before uploads belonged to tenants: its
    /// migrations up to that one.
    fn before_tenant_uploads() -> Connection {
        let conn = Connection::open_in_memory().unwrap();
        let owned = MIGRATIONS
            .iter()
            .position(|m| m.contains("CREATE TABLE IF NOT EXISTS tenant_policies"))
            .expect("the migration that gives uploads to tenants");
        for sql in &MIGRATIONS[..owned] {
            conn.execute_batch(sql).unwrap();
        }
        conn.pragma_update(None, "user_version", owned as i64)
            .unwrap();
        conn
    }

    #[test]
    fn uploads_from_before_become_those_of_the_tenants_whose_rules_name_them() {
        let conn = before_tenant_uploads();
        conn.execute_batch(
            "INSERT INTO policies (digest, component, uploaded_ms) VALUES
                 ('sha256:a', x'0a', 1), ('sha256:b', x'0b0b', 2), ('sha256:c', x'0c', 3);
             INSERT INTO tenant_rules (tenant, version, policy, config, activated_ms, actor) VALUES
                 ('acme', 1, 'sha256:a', '', 1, 'x'), ('acme', 2, 'sha256:a', '', 2, 'x'),
                 ('globex', 1, 'sha256:a', '', 1, 'x'), ('globex', 2, 'sha256:b', '', 3, 'x'),
                 ('initech', 1, 'seed-tiers', '', 1, 'x');",
        )
        .unwrap();
        migrate(&conn).unwrap();
        let owned: Vec<(String, String, i64, Vec<u8>)> = conn
            .prepare(
                "SELECT tenant, digest, bytes, component FROM tenant_policies ORDER BY tenant, digest",
            )
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        let owned: Vec<(&str, &str, i64, &[u8])> = owned
            .iter()
            .map(|(t, d, b, c)| (t.as_str(), d.as_str(), *b, c.as_slice()))
            .collect();
        assert_eq!(
            owned,
            [
                ("acme", "sha256:a", 1, &[0x0a][..]),
                ("globex", "sha256:a", 1, &[0x0a][..]),
                ("globex", "sha256:b", 2, &[0x0b, 0x0b][..]),
            ]
        );
        // The one no rules named is kept where it was, read by nothing.
        let left: Vec<String> = conn
            .prepare("SELECT digest FROM policies")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        assert_eq!(left, ["sha256:c"]);
    }
}
