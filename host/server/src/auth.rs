//! API keys on the wire: `Authorization: Bearer tg_<key id>_<secret>`. Only
//! the secret's hash is stored; the key id is public and names the caller
//! in records and logs.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;

use super::{ApiError, AppState};
use tiergate_core::store::{ApiKey, KeyStore, Role};

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
        secret_hash: tiergate_runtime::model::digest::sha256(secret.as_bytes()),
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
    let invalid = invalid_key;
    let rest = token.strip_prefix("tg_").ok_or_else(invalid)?;
    let (key_id, secret) = rest.split_once('_').ok_or_else(invalid)?;
    let key = store.key(key_id)?.ok_or_else(invalid)?;
    let hash = tiergate_runtime::model::digest::sha256(secret.as_bytes());
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

/// The authenticated caller of a request, and its turn to run
/// ([`super::admission`]), held while the handler runs.
#[derive(Debug)]
pub struct Caller(pub ApiKey, #[allow(dead_code)] super::admission::Turn);

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
        let key = bearer_key(&parts.headers, state).await?;
        let turn = state.admission().admit(&key.tenant).await?;
        Ok(Caller(key, turn))
    }
}

/// The key a request's `Authorization: Bearer` header names, checked.
pub(crate) async fn bearer_key(
    headers: &axum::http::HeaderMap,
    state: &AppState,
) -> Result<ApiKey, ApiError> {
    let header = headers
        .get(axum::http::header::AUTHORIZATION)
        .ok_or_else(|| {
            ApiError::unauthorized("send your API key as `Authorization: Bearer tg_...`")
        })?;
    let token = header
        .to_str()
        .ok()
        .and_then(|h| h.strip_prefix("Bearer "))
        .ok_or_else(|| ApiError::unauthorized("the Authorization header must be `Bearer tg_...`"))?
        .trim()
        .to_string();
    let wait = state.limits().admission.wait;
    let key = state.keys().check(token, wait).await?;
    tracing::Span::current().record("key", key.key_id.as_str());
    Ok(key)
}

/// Checks API keys on threads of its own. A key is read from the store on
/// every request, so a revocation (by `tiergate keys revoke`, from any
/// process or replica) stops the key at its next request; the threads are
/// apart from the blocking pool, so however busy classifications, exports
/// or slow clients keep that pool, keys are still checked.
pub(super) struct KeyChecker {
    jobs: tokio::sync::mpsc::Sender<Check>,
}

struct Check {
    token: String,
    answer: tokio::sync::oneshot::Sender<Result<ApiKey, ApiError>>,
}

/// Checks waiting for a thread; past this, a request waits to queue.
const QUEUED_CHECKS: usize = 1024;

impl KeyChecker {
    /// Starts `threads` checking threads over `store`; they end when the
    /// checker is dropped.
    pub(super) fn start(
        store: std::sync::Arc<dyn tiergate_core::store::Backend>,
        threads: usize,
    ) -> Self {
        let (jobs, queue) = tokio::sync::mpsc::channel::<Check>(QUEUED_CHECKS);
        let queue = std::sync::Arc::new(std::sync::Mutex::new(queue));
        for n in 0..threads.max(1) {
            let (queue, store) = (queue.clone(), store.clone());
            let spawned = std::thread::Builder::new()
                .name(format!("tiergate-keys-{n}"))
                .spawn(move || {
                    loop {
                        let next = queue
                            .lock()
                            .unwrap_or_else(std::sync::PoisonError::into_inner)
                            .blocking_recv();
                        let Some(check) = next else { return };
                        // The caller may have stopped waiting.
                        let _ = check
                            .answer
                            .send(authenticate(store.as_ref(), &check.token));
                    }
                });
            if let Err(e) = spawned {
                tracing::error!(error = %e, "cannot start a key-checking thread");
            }
        }
        KeyChecker { jobs }
    }

    /// The key `token` names, checked; waits at most `wait` for a thread.
    pub(super) async fn check(
        &self,
        token: String,
        wait: std::time::Duration,
    ) -> Result<ApiKey, ApiError> {
        // What cannot be a token never reaches the store.
        if !well_formed(&token) {
            return Err(invalid_key());
        }
        let (answer, answered) = tokio::sync::oneshot::channel();
        let checked = tokio::time::timeout(wait, async {
            self.jobs.send(Check { token, answer }).await.ok()?;
            answered.await.ok()
        })
        .await;
        match checked {
            Ok(Some(result)) => result,
            _ => Err(super::admission::overloaded(
                "API keys could not be checked in time; nothing was done; retry after a second"
                    .to_string(),
            )),
        }
    }
}

/// `tg_<key id>_<secret>` as [`issue_key`] makes them: ASCII letters and
/// digits, of a bounded length.
fn well_formed(token: &str) -> bool {
    token.len() <= 200
        && token.strip_prefix("tg_").is_some_and(|rest| {
            rest.split_once('_').is_some_and(|(id, secret)| {
                !id.is_empty()
                    && !secret.is_empty()
                    && id
                        .bytes()
                        .chain(secret.bytes())
                        .all(|b| b.is_ascii_alphanumeric())
            })
        })
}

fn invalid_key() -> ApiError {
    ApiError::unauthorized("the API key is not valid; ask your tenant's admin for one")
}
