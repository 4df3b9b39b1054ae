use super::{PostgresStore, ms};
use crate::store::StoreError;
use crate::store::rules::{RulesStore, StoredRules};

impl RulesStore for PostgresStore {
    fn put_policy(&self, digest: &str, component: &[u8], now_ms: u64) -> Result<(), StoreError> {
        self.conn()?.execute(
            "INSERT INTO policies (digest, component, uploaded_ms) VALUES ($1, $2, $3)
             ON CONFLICT (digest) DO NOTHING",
            &[&digest, &component, &ms(now_ms)],
        )?;
        Ok(())
    }

    fn policy_component(&self, digest: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.conn()?
            .query_opt(
                "SELECT component FROM policies WHERE digest = $1",
                &[&digest],
            )?
            .map(|r| Ok(r.try_get(0)?))
            .transpose()
    }

    fn put_rules(
        &self,
        tenant: &str,
        policy: &str,
        config: &str,
        actor: &str,
        now_ms: u64,
    ) -> Result<StoredRules, StoreError> {
        let mut c = self.conn()?;
        // Two replicas activating at once get consecutive versions.
        c.begin_locked(tenant)?;
        let version: i64 = c
            .query_one(
                "SELECT COALESCE(MAX(version), 0) + 1 FROM tenant_rules WHERE tenant = $1",
                &[&tenant],
            )?
            .try_get(0)?;
        c.execute(
            "INSERT INTO tenant_rules (tenant, version, policy, config, activated_ms, actor)
             VALUES ($1, $2, $3, $4, $5, $6)",
            &[&tenant, &version, &policy, &config, &ms(now_ms), &actor],
        )?;
        c.commit()?;
        Ok(StoredRules {
            tenant: tenant.to_string(),
            version: version as u64,
            policy: policy.to_string(),
            config: config.to_string(),
            activated_ms: now_ms,
            actor: actor.to_string(),
        })
    }

    fn active_rules(&self) -> Result<Vec<StoredRules>, StoreError> {
        let rows = self.conn()?.query(
            "SELECT DISTINCT ON (tenant) tenant, version, policy, config, activated_ms, actor
             FROM tenant_rules ORDER BY tenant, version DESC",
            &[],
        )?;
        rows.iter()
            .map(|r| {
                Ok(StoredRules {
                    tenant: r.try_get(0)?,
                    version: r.try_get::<_, i64>(1)? as u64,
                    policy: r.try_get(2)?,
                    config: r.try_get(3)?,
                    activated_ms: r.try_get::<_, i64>(4)? as u64,
                    actor: r.try_get(5)?,
                })
            })
            .collect()
    }
}
