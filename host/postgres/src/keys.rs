use crate::pool::pg;
use tokio_postgres::Row;

use crate::{Database, ms};
use tiergate_core::store::StoreError;
use tiergate_core::store::keys::{ApiKey, KeyStore};

const COLUMNS: &str = "key_id, tenant, role, subject, secret_hash, created_ms, revoked_ms";

fn key_row(r: &Row) -> Result<ApiKey, StoreError> {
    Ok(ApiKey {
        key_id: r.try_get(0).map_err(pg)?,
        tenant: r.try_get(1).map_err(pg)?,
        role: r
            .try_get::<_, &str>(2)
            .map_err(pg)?
            .parse()
            .map_err(|e: String| StoreError::unreadable("a stored key's role", e))?,
        subject: r.try_get(3).map_err(pg)?,
        secret_hash: r.try_get(4).map_err(pg)?,
        created_ms: r.try_get::<_, i64>(5).map_err(pg)? as u64,
        revoked_ms: r
            .try_get::<_, Option<i64>>(6)
            .map_err(pg)?
            .map(|v| v as u64),
    })
}

impl KeyStore for Database {
    fn insert_key(&self, key: &ApiKey) -> Result<(), StoreError> {
        self.conn()?.execute(
            &format!("INSERT INTO api_keys ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7)"),
            &[
                &key.key_id,
                &key.tenant,
                &key.role.as_str(),
                &key.subject,
                &key.secret_hash,
                &ms(key.created_ms),
                &key.revoked_ms.map(ms),
            ],
        )?;
        Ok(())
    }

    fn key(&self, key_id: &str) -> Result<Option<ApiKey>, StoreError> {
        self.conn()?
            .query_opt(
                &format!("SELECT {COLUMNS} FROM api_keys WHERE key_id = $1"),
                &[&key_id],
            )?
            .as_ref()
            .map(key_row)
            .transpose()
    }

    fn revoke_key(&self, tenant: &str, key_id: &str, now_ms: u64) -> Result<bool, StoreError> {
        let changed = self.conn()?.execute(
            "UPDATE api_keys SET revoked_ms = COALESCE(revoked_ms, $3) WHERE tenant = $1 AND key_id = $2",
            &[&tenant, &key_id, &ms(now_ms)],
        )?;
        Ok(changed == 1)
    }

    fn keys(&self, tenant: &str) -> Result<Vec<ApiKey>, StoreError> {
        self.conn()?
            .query(
                &format!(
                    "SELECT {COLUMNS} FROM api_keys WHERE tenant = $1 ORDER BY created_ms, key_id"
                ),
                &[&tenant],
            )?
            .iter()
            .map(key_row)
            .collect()
    }
}
