use crate::pool::pg;
use crate::{Database, ms};
use tiergate_core::store::StoreError;
use tiergate_core::store::rules::{
    DeletedPolicy, PutPolicy, RulesStore, StoredRules, UploadQuota, UploadedPolicy, quota_outcome,
};

const POLICY_COLUMNS: &str = "digest, name, version, bytes, uploaded_ms";

fn policy_row(r: &tokio_postgres::Row) -> Result<UploadedPolicy, StoreError> {
    Ok(UploadedPolicy {
        digest: r.try_get(0).map_err(pg)?,
        name: r.try_get(1).map_err(pg)?,
        version: r.try_get(2).map_err(pg)?,
        bytes: r.try_get::<_, i64>(3).map_err(pg)? as u64,
        uploaded_ms: r.try_get::<_, i64>(4).map_err(pg)? as u64,
    })
}

impl RulesStore for Database {
    fn put_policy(
        &self,
        tenant: &str,
        policy: &UploadedPolicy,
        component: &[u8],
        quota: Option<UploadQuota>,
    ) -> Result<PutPolicy, StoreError> {
        let mut c = self.conn()?;
        // Under the tenant's lock, two uploads at once cannot both fit the
        // room left for one.
        c.begin_locked(tenant)?;
        let row = c.query_one(
            "SELECT EXISTS (SELECT 1 FROM tenant_policies WHERE tenant = $1 AND digest = $2),
                    COUNT(*), COALESCE(SUM(bytes), 0)::BIGINT
             FROM tenant_policies WHERE tenant = $1",
            &[&tenant, &policy.digest],
        )?;
        let (known, count, used): (bool, i64, i64) = (
            row.try_get(0).map_err(pg)?,
            row.try_get(1).map_err(pg)?,
            row.try_get(2).map_err(pg)?,
        );
        if known {
            c.rollback()?;
            return Ok(PutPolicy::AlreadyStored);
        }
        if let Some(refused) =
            quota.and_then(|q| quota_outcome(q, count as usize, used as u64, component.len()))
        {
            c.rollback()?;
            return Ok(refused);
        }
        c.execute(
            &format!(
                "INSERT INTO tenant_policies (tenant, {POLICY_COLUMNS}, component)
                 VALUES ($1, $2, $3, $4, $5, $6, $7)"
            ),
            &[
                &tenant,
                &policy.digest,
                &policy.name,
                &policy.version,
                &(component.len() as i64),
                &ms(policy.uploaded_ms),
                &component,
            ],
        )?;
        c.commit()?;
        Ok(PutPolicy::Stored)
    }

    fn policy_component(&self, tenant: &str, digest: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.conn()?
            .query_opt(
                "SELECT component FROM tenant_policies WHERE tenant = $1 AND digest = $2",
                &[&tenant, &digest],
            )?
            .map(|r| r.try_get(0).map_err(pg))
            .transpose()
    }

    fn policies(&self, tenant: &str) -> Result<Vec<UploadedPolicy>, StoreError> {
        self.conn()?
            .query(
                &format!(
                    "SELECT {POLICY_COLUMNS} FROM tenant_policies WHERE tenant = $1
                     ORDER BY uploaded_ms, digest"
                ),
                &[&tenant],
            )?
            .iter()
            .map(policy_row)
            .collect()
    }

    fn delete_policy(&self, tenant: &str, digest: &str) -> Result<DeletedPolicy, StoreError> {
        let mut c = self.conn()?;
        // Under the tenant's lock no activation naming it commits meanwhile.
        c.begin_locked(tenant)?;
        let in_use: bool = c
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM tenant_rules WHERE tenant = $1 AND policy = $2
                   AND version = (SELECT MAX(version) FROM tenant_rules WHERE tenant = $1))",
                &[&tenant, &digest],
            )?
            .try_get(0)
            .map_err(pg)?;
        if in_use {
            c.rollback()?;
            return Ok(DeletedPolicy::InUse);
        }
        let deleted = c.execute(
            "DELETE FROM tenant_policies WHERE tenant = $1 AND digest = $2",
            &[&tenant, &digest],
        )?;
        c.commit()?;
        Ok(if deleted == 1 {
            DeletedPolicy::Deleted
        } else {
            DeletedPolicy::NotFound
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
        let mut c = self.conn()?;
        // Two replicas activating at once get consecutive versions.
        c.begin_locked(tenant)?;
        let latest: i64 = c
            .query_one(
                "SELECT COALESCE(MAX(version), 0) FROM tenant_rules WHERE tenant = $1",
                &[&tenant],
            )?
            .try_get(0)
            .map_err(pg)?;
        if after.is_some_and(|after| after != latest as u64) {
            c.commit()?;
            return Ok(None);
        }
        let version = latest + 1;
        c.execute(
            "INSERT INTO tenant_rules (tenant, version, policy, config, activated_ms, actor)
             VALUES ($1, $2, $3, $4, $5, $6)",
            &[&tenant, &version, &policy, &config, &ms(now_ms), &actor],
        )?;
        c.commit()?;
        Ok(Some(StoredRules {
            tenant: tenant.to_string(),
            version: version as u64,
            policy: policy.to_string(),
            config: config.to_string(),
            activated_ms: now_ms,
            actor: actor.to_string(),
        }))
    }

    fn active_rules(&self) -> Result<Vec<StoredRules>, StoreError> {
        let rows = self.conn()?.query(
            "SELECT DISTINCT ON (tenant) tenant, version, policy, config, activated_ms, actor
             FROM tenant_rules ORDER BY tenant, version DESC",
            &[],
        )?;
        rows.iter().map(rules_row).collect()
    }

    fn rules_of(&self, tenant: &str) -> Result<Option<StoredRules>, StoreError> {
        let row = self.conn()?.query_opt(
            "SELECT tenant, version, policy, config, activated_ms, actor
             FROM tenant_rules WHERE tenant = $1 ORDER BY version DESC LIMIT 1",
            &[&tenant],
        )?;
        row.as_ref().map(rules_row).transpose()
    }
}

fn rules_row(r: &tokio_postgres::Row) -> Result<StoredRules, StoreError> {
    Ok(StoredRules {
        tenant: r.try_get(0).map_err(pg)?,
        version: r.try_get::<_, i64>(1).map_err(pg)? as u64,
        policy: r.try_get(2).map_err(pg)?,
        config: r.try_get(3).map_err(pg)?,
        activated_ms: r.try_get::<_, i64>(4).map_err(pg)? as u64,
        actor: r.try_get(5).map_err(pg)?,
    })
}

#[cfg(test)]
mod tests {
    use crate::pool::Pool;
    use crate::schema::{MIGRATIONS, migrate};

    #[test]
    fn uploads_from_before_become_those_of_the_tenants_whose_rules_name_them() {
        let url = tiergate_e2e::postgres::fresh_database();
        let pool = Pool::open(&url, 1).unwrap();
        let mut c = pool.get().unwrap();
        // The store as it was before uploads belonged to tenants.
        let owned = MIGRATIONS
            .iter()
            .position(|m| m.contains("CREATE TABLE IF NOT EXISTS tenant_policies"))
            .expect("the migration that gives uploads to tenants");
        c.batch(
            "CREATE TABLE tiergate_schema (
                 version    INTEGER PRIMARY KEY,
                 applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
             )",
        )
        .unwrap();
        for (i, sql) in MIGRATIONS[..owned].iter().enumerate() {
            c.batch(sql).unwrap();
            c.execute(
                "INSERT INTO tiergate_schema (version) VALUES ($1)",
                &[&((i + 1) as i32)],
            )
            .unwrap();
        }
        c.batch(
            "INSERT INTO policies (digest, component, uploaded_ms) VALUES
                 ('sha256:a', '\\x0a', 1), ('sha256:b', '\\x0b0b', 2), ('sha256:c', '\\x0c', 3);
             INSERT INTO tenant_rules (tenant, version, policy, config, activated_ms, actor) VALUES
                 ('acme', 1, 'sha256:a', '', 1, 'x'), ('acme', 2, 'sha256:a', '', 2, 'x'),
                 ('globex', 1, 'sha256:a', '', 1, 'x'), ('globex', 2, 'sha256:b', '', 3, 'x'),
                 ('initech', 1, 'seed-tiers', '', 1, 'x');",
        )
        .unwrap();
        migrate(&mut c).unwrap();
        let owned: Vec<(String, String, i64, Vec<u8>)> = c
            .query(
                "SELECT tenant, digest, bytes, component FROM tenant_policies ORDER BY tenant, digest",
                &[],
            )
            .unwrap()
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
            .collect();
        assert_eq!(
            owned,
            [
                ("acme".into(), "sha256:a".into(), 1, vec![0x0a]),
                ("globex".into(), "sha256:a".into(), 1, vec![0x0a]),
                ("globex".into(), "sha256:b".into(), 2, vec![0x0b, 0x0b]),
            ]
        );
        let left: Vec<String> = c
            .query("SELECT digest FROM policies", &[])
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        assert_eq!(left, ["sha256:c"]);
    }
}
