//! API keys on the wire: `Authorization: Bearer tg_<key id>_<secret>`. Only
//! the secret's hash is stored; the key id is public and names the caller
//! in records and logs.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;

use super::{ApiError, AppState};
use crate::store::{ApiKey, KeyStore, Role};

/// A new key: what is stored, and the token handed out once.
#[derive(Debug, Clone)]
pub struct IssuedKey {
    /// The stored record.
    pub key: ApiKey,
    /// The bearer token: `tg_<key id>_<secret>`. Shown once, never stored.
    pub token: String,
}

/// Creates a key for `tenant` with `role`, speaking for `subject`, and stores it.
pub fn issue_key(
    store: &dyn KeyStore,
    tenant: &str,
    role: Role,
    subject: &str,
    now_ms: u64,
) -> Result<IssuedKey, anyhow::Error> {
    let key_id = format!("k{}", random_hex(8)?);
    let secret = random_hex(32)?;
    let key = ApiKey {
        key_id: key_id.clone(),
        tenant: tenant.to_string(),
        role,
        subject: subject.to_string(),
        secret_hash: crate::model::digest::sha256(secret.as_bytes()),
        created_ms: now_ms,
        revoked_ms: None,
    };
    store.insert_key(&key)?;
    Ok(IssuedKey {
        key,
        token: format!("tg_{key_id}_{secret}"),
    })
}

fn random_hex(bytes: usize) -> std::io::Result<String> {
    use std::io::Read;
    let mut buf = vec![0u8; bytes];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut buf)?;
    Ok(buf.iter().map(|b| format!("{b:02x}")).collect())
}

/// Checks a bearer token against the store: the key, if the token is
/// well-formed, known, unrevoked and its secret matches.
pub fn authenticate(store: &dyn KeyStore, token: &str) -> Result<ApiKey, ApiError> {
    let invalid =
        || ApiError::unauthorized("the API key is not valid; ask your tenant's admin for one");
    let rest = token.strip_prefix("tg_").ok_or_else(invalid)?;
    let (key_id, secret) = rest.split_once('_').ok_or_else(invalid)?;
    let key = store.key(key_id)?.ok_or_else(invalid)?;
    let hash = crate::model::digest::sha256(secret.as_bytes());
    if !constant_time_eq(hash.as_bytes(), key.secret_hash.as_bytes()) {
        return Err(invalid());
    }
    if key.revoked_ms.is_some() {
        return Err(ApiError::unauthorized(format!(
            "API key {key_id} was revoked; ask your tenant's admin for a new one"
        )));
    }
    Ok(key)
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The authenticated caller of a request.
#[derive(Debug, Clone)]
pub struct Caller(pub ApiKey);

impl Caller {
    /// Refuses the request unless the key has one of `roles`.
    pub fn require(&self, roles: &[Role]) -> Result<(), ApiError> {
        if roles.contains(&self.0.role) {
            Ok(())
        } else {
            let names: Vec<&str> = roles.iter().map(|r| r.as_str()).collect();
            Err(ApiError::forbidden(
                "wrong_role",
                format!(
                    "this needs a key with role {}; key {} has role {}",
                    names.join(" or "),
                    self.0.key_id,
                    self.0.role
                ),
            ))
        }
    }

    /// The caller's tenant: the only one it may see.
    pub fn tenant(&self) -> &str {
        &self.0.tenant
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let header = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .ok_or_else(|| {
                ApiError::unauthorized("send your API key as `Authorization: Bearer tg_...`")
            })?;
        let token = header
            .to_str()
            .ok()
            .and_then(|h| h.strip_prefix("Bearer "))
            .ok_or_else(|| {
                ApiError::unauthorized("the Authorization header must be `Bearer tg_...`")
            })?
            .trim()
            .to_string();
        let store = state.store().clone();
        let key = tokio::task::spawn_blocking(move || authenticate(store.as_ref(), &token))
            .await
            .map_err(ApiError::internal)??;
        tracing::Span::current().record("key", key.key_id.as_str());
        Ok(Caller(key))
    }
}
