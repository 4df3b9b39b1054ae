//! Authorizing payments and reading them back.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use crate::body::JsonText;
use crate::error::Body as Error;
use crate::{ApiError, AppState, Caller, now_ms};
use tiergate_core::governance::{Authorization, GovernError, Status};
use tiergate_core::store::{ListCursor, Listing, PageCursor, Role};
use tiergate_runtime::model::transaction::Transaction;

/// Authorize a payment (agent keys).
///
/// Classifies it with the tenant's policy, applies the guardrails, records
/// it durably and starts its workflow; an autonomous payment is executed
/// before the answer. The transaction id is the idempotency key. Amounts
/// may be JSON strings or numbers and are read exactly; `requested_at_ms`
/// may be left out (the host stamps it either way).
#[utoipa::path(post, path = "/v1/authorizations", tag = "authorizations",
    request_body(content = Transaction, content_type = "application/json"),
    responses(
        (status = 201, description = "Recorded now", body = Authorization),
        (status = 200, description = "The same request was recorded before: its current state", body = Authorization),
        (status = 400, description = "Not JSON", body = Error),
        (status = 403, description = "Wrong role, or another tenant or agent than the key's", body = Error),
        (status = 409, description = "The id was used for a different request", body = Error),
        (status = 413, description = "Body over the limit", body = Error),
        (status = 415, description = "Not application/json", body = Error),
        (status = 422, description = "An invalid transaction; `field` names the culprit", body = Error),
    ),
    security(("api_key" = [])))]
pub(super) async fn create(
    State(state): State<AppState>,
    caller: Caller,
    body: JsonText,
) -> Result<(StatusCode, Json<Authorization>), ApiError> {
    caller.require(&[Role::Agent, Role::Platform])?;
    let tx = Transaction::from_json(&body.0, now_ms())?;
    if let Some(key) = tx.metadata.keys().find(|k| k.starts_with("x402.")) {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_transaction",
            format!("metadata key {key:?} is tiergate's own for x402 payments: pay an x402 resource with POST /v1/x402/payments, or rename the key"),
        )
        .field(format!("metadata.{key}")));
    }
    let (status, auth) = authorize(&state, &caller, tx).await?;
    Ok((status, Json(auth)))
}

/// Governs `tx` for `caller` (an agent or platform key): its tenant and
/// agent checked against the key's, recorded once per id. `201` when this
/// request recorded it, `200` when the same request was recorded before;
/// the payment as its requester may see it.
pub(super) async fn authorize(
    state: &AppState,
    caller: &Caller,
    tx: Transaction,
) -> Result<(StatusCode, Authorization), ApiError> {
    if tx.tenant != caller.tenant() {
        return Err(ApiError::forbidden(
            "tenant_mismatch",
            format!(
                "this key belongs to tenant {}; it cannot authorize for {}",
                caller.tenant(),
                tx.tenant
            ),
        )
        .field("tenant"));
    }
    // An agent key pays as its own agent only; a platform key as any.
    if caller.0.role == Role::Agent && tx.agent != caller.0.subject {
        return Err(ApiError::forbidden(
            "agent_mismatch",
            format!(
                "this key speaks for agent {}, not {}",
                caller.0.subject, tx.agent
            ),
        )
        .field("agent"));
    }
    // The store says whether this request recorded the payment, so of
    // concurrent first requests with one id exactly one gets 201.
    let answered = match state
        .governor()
        .authorize_from(tx, caller.0.key_id.clone())
        .await
    {
        // Whose payment holds the id, and its hash, are not the asking
        // agent's to learn: the answer is the same whoever holds it.
        Err(GovernError::Conflict { tx_id, .. }) => {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "id_conflict",
                format!("transaction id {tx_id} is already used in this tenant for a different request; send a new payment with a new id"),
            )
            .field("id"));
        }
        answered => answered?,
    };
    let auth = answered.authorization.for_requester();
    tracing::info!(tx_id = %auth.transaction.id, audit_id = %auth.audit_id, tier = %auth.tier,
        status = auth.status.as_str(), new = answered.new, "authorized");
    let status = if answered.new {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, auth))
}

/// One payment's current state. An agent key sees only what it submitted.
#[utoipa::path(get, path = "/v1/authorizations/{tx_id}", tag = "authorizations",
    params(("tx_id" = String, Path, description = "The transaction id")),
    responses(
        (status = 200, body = Authorization),
        (status = 404, description = "No such payment visible to this key", body = Error),
    ),
    security(("api_key" = [])))]
pub(super) async fn get_one(
    State(state): State<AppState>,
    caller: Caller,
    Path(tx_id): Path<String>,
) -> Result<Json<Authorization>, ApiError> {
    Ok(Json(visible(&state, &caller, &tx_id)?))
}

/// Payment `tx_id` as `caller` may see it: an agent or platform key only
/// what it submitted, and without what only owners read.
pub(super) fn visible(
    state: &AppState,
    caller: &Caller,
    tx_id: &str,
) -> Result<Authorization, ApiError> {
    let auth = state.governor().get(caller.tenant(), tx_id)?;
    if !visible_to(caller, &auth) {
        return Err(ApiError::not_found(format!(
            "tenant {} has no transaction {tx_id}",
            caller.tenant()
        )));
    }
    if caller.0.role.requests_payments() {
        return Ok(auth.for_requester());
    }
    Ok(auth)
}

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(super) struct ListQuery {
    /// Comma-separated statuses; all when absent.
    status: Option<String>,
    /// At most this many (1 to 1000; 100 when absent).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<usize>,
    /// Where to go on: the `Tiergate-Next-Cursor` header of the previous
    /// page, as it came (opaque).
    cursor: Option<String>,
}

/// A page of a listing without filters of its own.
#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(super) struct PageQuery {
    /// At most this many (1 to 1000; 100 when absent).
    #[param(minimum = 1, maximum = 1000)]
    pub(super) limit: Option<usize>,
    /// Where to go on: the `Tiergate-Next-Cursor` header of the previous
    /// page, as it came (opaque).
    pub(super) cursor: Option<String>,
}

/// The page size when none is asked for.
const DEFAULT_PAGE: usize = 100;
/// The largest page.
const MAX_PAGE: usize = 1000;
/// The response header naming where the next page starts.
pub(super) const NEXT_CURSOR: &str = "tiergate-next-cursor";

/// A listing's page size and cursor, checked.
pub(super) fn page_of<C: PageCursor>(
    limit: Option<usize>,
    cursor: Option<&str>,
) -> Result<(usize, Option<C>), ApiError> {
    let limit = limit.unwrap_or(DEFAULT_PAGE);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(ApiError::bad_request(
            "invalid_query",
            format!(
                "`limit` is {limit}: ask for 1 to {MAX_PAGE} at a time, and page on with `cursor`"
            ),
        )
        .field("limit"));
    }
    let cursor = match cursor {
        None => None,
        Some(text) => Some(C::decode(text).ok_or_else(|| {
            ApiError::bad_request(
                "invalid_query",
                "`cursor` is not one this service gave: send the `Tiergate-Next-Cursor` header of the previous page as it came",
            )
            .field("cursor")
        })?),
    };
    Ok((limit, cursor))
}

/// Listings and scrapes at once, at most: one fewer than the cores (at
/// least one). However many clients page or scrape in a loop, a core is
/// left to payments; the others wait their turn without holding a thread.
pub(crate) fn heavy_reads() -> &'static tokio::sync::Semaphore {
    static READS: std::sync::OnceLock<tokio::sync::Semaphore> = std::sync::OnceLock::new();
    READS.get_or_init(|| tokio::sync::Semaphore::new(heavy_read_threads()))
}

fn heavy_read_threads() -> usize {
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    cores.saturating_sub(1).max(1)
}

/// Runs a listing's or a scrape's work under a [`heavy_reads`] permit, on
/// a thread that yields the cores ([`lowest`](crate::priority::lowest)):
/// when the cores are busy, payments get them first, and a payment does not
/// wait for a listing to give its core back.
pub(crate) async fn heavy_read<R: Send + 'static>(
    work: impl FnOnce() -> R + Send + 'static,
) -> Result<R, ApiError> {
    let _permit = heavy_reads().acquire().await.map_err(ApiError::internal)?;
    let (done, answer) = tokio::sync::oneshot::channel();
    background()
        .send(Box::new(move || {
            let _ = done.send(work());
        }))
        .map_err(ApiError::internal)?;
    // A job that panicked drops `done`: the request fails, the thread lives.
    answer.await.map_err(ApiError::internal)
}

type Job = Box<dyn FnOnce() + Send>;

/// The threads heavy reads run on, as many as [`heavy_reads`] admits at
/// once (so a job never waits for one), started on first use.
fn background() -> &'static std::sync::mpsc::Sender<Job> {
    static JOBS: std::sync::OnceLock<std::sync::mpsc::Sender<Job>> = std::sync::OnceLock::new();
    JOBS.get_or_init(|| {
        let (jobs, queue) = std::sync::mpsc::channel::<Job>();
        let queue = std::sync::Arc::new(std::sync::Mutex::new(queue));
        for _ in 0..heavy_read_threads() {
            let queue = queue.clone();
            let started = std::thread::Builder::new()
                .name("tiergate-heavy-read".into())
                .spawn(move || {
                    crate::priority::lowest();
                    loop {
                        let next = queue
                            .lock()
                            .unwrap_or_else(std::sync::PoisonError::into_inner)
                            .recv();
                        let Ok(job) = next else { return };
                        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
                    }
                });
            if let Err(e) = started {
                tracing::error!(error = %e, "cannot start a thread for listings and scrapes");
            }
        }
        jobs
    })
}

/// One page of a listing as the response, read and written by
/// [`heavy_read`].
pub(super) async fn listed(
    state: &AppState,
    tenant: &str,
    statuses: Vec<Status>,
    caller: Option<String>,
    newest_first: bool,
    after: Option<ListCursor>,
    limit: usize,
) -> Result<Response, ApiError> {
    let (governor, tenant) = (state.governor().clone(), tenant.to_string());
    let page = heavy_read(move || {
        let listing = Listing {
            statuses: &statuses,
            caller: caller.as_deref(),
            newest_first,
            after,
            limit,
        };
        let requester = listing.caller.is_some();
        governor.list(&tenant, &listing).map(|page| {
            // A key that asks to pay lists only its own payments, and
            // without what other agents committed.
            let page = if requester {
                page.into_iter().map(Authorization::for_requester).collect()
            } else {
                page
            };
            paged(page, limit)
        })
    })
    .await??;
    Ok(page)
}

/// A page as JSON, with the cursor of the next one when the page is full.
pub(super) fn paged(page: Vec<Authorization>, limit: usize) -> Response {
    let next = (page.len() == limit)
        .then(|| page.last().map(|last| ListCursor::after(last).encode()))
        .flatten();
    let mut response = Json(page).into_response();
    if let Some(next) = next.and_then(|n| HeaderValue::from_str(&n).ok()) {
        response.headers_mut().insert(NEXT_CURSOR, next);
    }
    response
}

/// The tenant's payments, newest first, a page at a time (an agent key:
/// only the ones it submitted). When the page is full, the
/// `Tiergate-Next-Cursor` header says where the next one starts: send it
/// back as `cursor`.
#[utoipa::path(get, path = "/v1/authorizations", tag = "authorizations",
    params(ListQuery),
    responses(
        (status = 200, body = Vec<Authorization>, headers(
            ("Tiergate-Next-Cursor" = String, description = "Where the next page starts, when this one is full: send it back as `cursor` (opaque)"),
        )),
        (status = 400, description = "An unknown status, a limit out of 1 to 1000, or a cursor this service did not give", body = Error),
    ),
    security(("api_key" = [])))]
pub(super) async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Query(q): Query<ListQuery>,
) -> Result<Response, ApiError> {
    let statuses: Vec<Status> = match &q.status {
        None => Vec::new(),
        Some(text) => text
            .split(',')
            .map(|s| {
                s.trim()
                    .parse::<Status>()
                    .map_err(|m| ApiError::bad_request("invalid_query", m).field("status"))
            })
            .collect::<Result<_, _>>()?,
    };
    let (limit, after) = page_of(q.limit, q.cursor.as_deref())?;
    // An agent key lists what it submitted, by the index of its own.
    let own = caller
        .0
        .role
        .requests_payments()
        .then(|| caller.0.key_id.clone());
    listed(&state, caller.tenant(), statuses, own, true, after, limit).await
}

fn visible_to(caller: &Caller, auth: &Authorization) -> bool {
    !caller.0.role.requests_payments() || auth.caller.as_deref() == Some(caller.0.key_id.as_str())
}

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(super) struct LimitsQuery {
    /// The agent (an agent key's own when left out; required otherwise).
    agent: Option<String>,
}

/// What an agent may still spend before each guardrail escalates.
///
/// Each of the tenant's limits that applies to the agent (its own, its
/// team's and the tenant's daily budgets over the 24 hours before now, and
/// the per-payment limits), how much is committed and what is left; and
/// each tier in words. An agent key reads its own agent's only, and of the
/// budgets it shares with its team or tenant only what is left for it.
#[utoipa::path(get, path = "/v1/limits", tag = "authorizations",
    params(LimitsQuery),
    responses(
        (status = 200, body = tiergate_core::governance::SpendingLimits),
        (status = 400, description = "`agent` missing for a key not bound to one", body = Error),
        (status = 403, description = "An agent key asking about another agent", body = Error),
    ),
    security(("api_key" = [])))]
pub(super) async fn limits(
    State(state): State<AppState>,
    caller: Caller,
    Query(query): Query<LimitsQuery>,
) -> Result<Json<tiergate_core::governance::SpendingLimits>, ApiError> {
    let agent = match (caller.0.role, query.agent) {
        (Role::Agent, Some(agent)) if agent != caller.0.subject => {
            return Err(ApiError::forbidden(
                "agent_mismatch",
                format!(
                    "this key speaks for agent {}, not {agent}",
                    caller.0.subject
                ),
            )
            .field("agent"));
        }
        (Role::Agent, _) => caller.0.subject.clone(),
        (_, Some(agent)) => agent,
        (_, None) => {
            return Err(ApiError::bad_request(
                "invalid_query",
                "name the agent: `?agent=<name>` (only an agent key may leave it out)",
            )
            .field("agent"));
        }
    };
    let governor = state.governor().clone();
    let tenant = caller.tenant().to_string();
    let limits = tokio::task::spawn_blocking(move || governor.spending_limits(&tenant, &agent))
        .await
        .map_err(ApiError::internal)??;
    if caller.0.role.requests_payments() {
        return Ok(Json(limits.for_requester()));
    }
    Ok(Json(limits))
}
