use rusqlite::{OptionalExtension, params};

use super::SqliteStore;
use crate::store::StoreError;
use crate::store::keys::{ApiKey, KeyStore};

const COLUMNS: &str = "key_id, tenant, role, subject, secret_hash, created_ms, revoked_ms";

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<(ApiKey, String)> {
    Ok((
        ApiKey {
            key_id: r.get(0)?,
            tenant: r.get(1)?,
            role: crate::store::keys::Role::Agent,
            subject: r.get(3)?,
            secret_hash: r.get(4)?,
            created_ms: r.get::<_, i64>(5)? as u64,
            revoked_ms: r.get::<_, Option<i64>>(6)?.map(|v| v as u64),
        },
        r.get(2)?,
    ))
}

fn with_role((mut key, role): (ApiKey, String)) -> Result<ApiKey, StoreError> {
    key.role = role.parse().map_err(StoreError)?;
    Ok(key)
}

impl KeyStore for SqliteStore {
    fn insert_key(&self, key: &ApiKey) -> Result<(), StoreError> {
        self.write(|conn| {
            conn.execute(
                &format!("INSERT INTO api_keys ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)"),
                params![
                    key.key_id,
                    key.tenant,
                    key.role.as_str(),
                    key.subject,
                    key.secret_hash,
                    key.created_ms as i64,
                    key.revoked_ms.map(|v| v as i64)
                ],
            )
            .map_err(StoreError::from)
        })?;
        Ok(())
    }

    fn key(&self, key_id: &str) -> Result<Option<ApiKey>, StoreError> {
        let conn = self.lock();
        let found = conn
            .query_row(
                &format!("SELECT {COLUMNS} FROM api_keys WHERE key_id = ?1"),
                params![key_id],
                row,
            )
            .optional()?;
        found.map(with_role).transpose()
    }

    fn revoke_key(&self, tenant: &str, key_id: &str, now_ms: u64) -> Result<bool, StoreError> {
        let changed = self.write(|conn| conn.execute(
            "UPDATE api_keys SET revoked_ms = COALESCE(revoked_ms, ?3) WHERE tenant = ?1 AND key_id = ?2",
            params![tenant, key_id, now_ms as i64],
        ).map_err(StoreError::from))?;
        Ok(changed == 1)
    }

    fn keys(&self, tenant: &str) -> Result<Vec<ApiKey>, StoreError> {
        let conn = self.lock();
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {COLUMNS} FROM api_keys WHERE tenant = ?1 ORDER BY created_ms, key_id"
        ))?;
        let rows = stmt.query_map(params![tenant], row)?;
        rows.map(|r| with_role(r?)).collect()
    }
}
