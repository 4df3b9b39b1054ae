use crate::db;
use rusqlite::{OptionalExtension, params};

use crate::SqliteStore;
use tiergate_core::store::StoreError;
use tiergate_core::store::keys::{ApiKey, KeyStore};

const COLUMNS: &str = "key_id, tenant, role, subject, secret_hash, created_ms, revoked_ms";

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<(ApiKey, String)> {
    Ok((
        ApiKey {
            key_id: r.get(0)?,
            tenant: r.get(1)?,
            role: tiergate_core::store::keys::Role::Agent,
            subject: r.get(3)?,
            secret_hash: r.get(4)?,
            created_ms: r.get::<_, i64>(5)? as u64,
            revoked_ms: r.get::<_, Option<i64>>(6)?.map(|v| v as u64),
        },
        r.get(2)?,
    ))
}

fn with_role((mut key, role): (ApiKey, String)) -> Result<ApiKey, StoreError> {
    key.role = role
        .parse()
        .map_err(|e: String| StoreError::unreadable("a stored key's role", e))?;
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
            .map_err(db)
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
            .optional()
            .map_err(db)?;
        found.map(with_role).transpose()
    }

    fn revoke_key(&self, tenant: &str, key_id: &str, now_ms: u64) -> Result<bool, StoreError> {
        let changed = self.write(|conn| conn.execute(
            "UPDATE api_keys SET revoked_ms = COALESCE(revoked_ms, ?3) WHERE tenant = ?1 AND key_id = ?2",
            params![tenant, key_id, now_ms as i64],
        ).map_err(db))?;
        Ok(changed == 1)
    }

    fn keys(&self, tenant: &str) -> Result<Vec<ApiKey>, StoreError> {
        let conn = self.lock();
        let mut stmt = conn
            .prepare_cached(&format!(
                "SELECT {COLUMNS} FROM api_keys WHERE tenant = ?1 ORDER BY created_ms, key_id"
            ))
            .map_err(db)?;
        let rows = stmt.query_map(params![tenant], row).map_err(db)?;
        rows.map(|r| with_role(r.map_err(db)?)).collect()
    }
}
