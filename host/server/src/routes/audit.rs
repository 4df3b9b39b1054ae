//! The auditor's side: records, one transaction's chain, verification and
//! the daily report. Exports stream: rows are read a page at a time and
//! sent as they are read.

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use crate::error::Body as Error;
use crate::{ApiError, AppState, Caller};
use tiergate_core::audit::{DailyReport, ExportRow, Query as RecordQuery, daily_report, parse_day};
use tiergate_core::governance::Authorization;
use tiergate_core::store::{AuditEvent, Role};

const READERS: &[Role] = &[Role::Auditor, Role::Admin];

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(super) struct RecordsQuery {
    agent: Option<String>,
    /// First UTC day, YYYY-MM-DD.
    from: Option<String>,
    /// UTC day after the last, YYYY-MM-DD.
    to: Option<String>,
    tier: Option<String>,
    status: Option<String>,
    audit_id: Option<String>,
    recipient: Option<String>,
    min_amount: Option<String>,
    /// `jsonl` (default) or `csv`.
    format: Option<String>,
}

fn day(field: &'static str, text: &Option<String>) -> Result<Option<u64>, ApiError> {
    text.as_ref()
        .map(|t| {
            parse_day(t).ok_or_else(|| {
                ApiError::bad_request(
                    "invalid_query",
                    format!("{field} {t:?} is not a UTC day written YYYY-MM-DD"),
                )
                .field(field)
            })
        })
        .transpose()
}

fn parsed<T: std::str::FromStr<Err = String>>(
    field: &'static str,
    text: &Option<String>,
) -> Result<Option<T>, ApiError> {
    text.as_ref()
        .map(|t| {
            t.parse()
                .map_err(|m: String| ApiError::bad_request("invalid_query", m).field(field))
        })
        .transpose()
}

/// The tenant's authorizations matching every filter, in request order, as
/// JSON Lines of export rows or CSV, streamed (auditor and admin keys).
#[utoipa::path(get, path = "/v1/audit/records", tag = "audit",
    params(RecordsQuery),
    responses(
        (status = 200, description = "One export row per line", content(
            (ExportRow = "application/x-ndjson"),
            (String = "text/csv"),
        )),
        (status = 400, body = Error),
        (status = 403, body = Error),
    ),
    security(("api_key" = [])))]
pub(super) async fn records(
    State(state): State<AppState>,
    caller: Caller,
    Query(q): Query<RecordsQuery>,
) -> Result<Response, ApiError> {
    caller.require(READERS)?;
    let csv = match q.format.as_deref() {
        None | Some("jsonl") => false,
        Some("csv") => true,
        Some(other) => {
            return Err(ApiError::bad_request(
                "invalid_query",
                format!("format {other:?}: use jsonl or csv"),
            )
            .field("format"));
        }
    };
    let query = RecordQuery {
        agent: q.agent,
        from_ms: day("from", &q.from)?,
        to_ms: day("to", &q.to)?,
        tier: q
            .tier
            .as_ref()
            .map(|t| {
                t.parse::<tiergate_runtime::Tier>().map_err(|e| {
                    ApiError::bad_request("invalid_query", e.to_string()).field("tier")
                })
            })
            .transpose()?,
        status: parsed("status", &q.status)?,
        audit_id: q.audit_id,
        recipient: q.recipient,
        min_amount: q
            .min_amount
            .as_ref()
            .map(|m| {
                tiergate_runtime::parse_decimal(m).map_err(|e| {
                    ApiError::bad_request("invalid_query", e.to_string()).field("min_amount")
                })
            })
            .transpose()?,
    };
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<String, std::io::Error>>(EXPORT_CHUNKS);
    tokio::spawn(export(state, caller.tenant().to_string(), query, csv, tx));
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    let content_type = if csv {
        "text/csv; charset=utf-8"
    } else {
        "application/x-ndjson"
    };
    Ok((
        [(header::CONTENT_TYPE, content_type)],
        Body::from_stream(stream),
    )
        .into_response())
}

/// Rows an export reads from the store at a time, each page in a short
/// blocking task of its own.
const EXPORT_PAGE: usize = 500;

/// Pages an export keeps ready for a slow client.
const EXPORT_CHUNKS: usize = 2;

/// Sends the export's rows to `tx`, a page at a time. No thread is held
/// while the client is slow: a page is read in a short blocking task (on a
/// turn of the tenant's, like any request), then sent while nothing runs;
/// a client that takes nothing for the idle timeout is cut off.
async fn export(
    state: AppState,
    tenant: String,
    query: RecordQuery,
    csv: bool,
    tx: tokio::sync::mpsc::Sender<Result<String, std::io::Error>>,
) {
    let idle = state.limits().idle_timeout;
    let send = |chunk| send_within(&tx, chunk, idle);
    if csv && !send(Ok(format!("{}\n", ExportRow::CSV_HEADER))).await {
        return;
    }
    let query = std::sync::Arc::new(query);
    // Where the next page starts: just before `from` (after every id
    // requested a millisecond earlier; no UTF-8 text sorts after U+10FFFF's).
    let from = query.from_ms.unwrap_or(0);
    let mut after: Option<(u64, String)> = (from > 0).then(|| (from - 1, char::MAX.to_string()));
    loop {
        let page = match state.admission().admit(&tenant).await {
            Err(e) => Err(std::io::Error::other(e.message)),
            Ok(_turn) => {
                let (store, tenant, query, start) = (
                    state.store().clone(),
                    tenant.clone(),
                    query.clone(),
                    after.clone(),
                );
                tokio::task::spawn_blocking(move || {
                    export_page(store.as_ref(), &tenant, &query, start)
                })
                .await
                .map_err(std::io::Error::other)
                .and_then(|page| page.map_err(|e| std::io::Error::other(e.to_string())))
            }
        };
        let (rows, next) = match page {
            Ok(page) => page,
            Err(e) => {
                send(Err(e)).await;
                return;
            }
        };
        let mut chunk = String::new();
        for auth in rows.iter().filter(|a| query.matches(a)) {
            let row = ExportRow::from(auth);
            if csv {
                chunk.push_str(&row.csv());
            } else {
                chunk.push_str(&serde_json::to_string(&row).unwrap_or_default());
            }
            chunk.push('\n');
        }
        if !chunk.is_empty() && !send(Ok(chunk)).await {
            return;
        }
        match next {
            Some(cursor) => after = Some(cursor),
            None => return,
        }
    }
}

/// Hands `chunk` to the response, unless the client is gone or took
/// nothing for `idle`: then false, and the export ends.
async fn send_within(
    tx: &tokio::sync::mpsc::Sender<Result<String, std::io::Error>>,
    chunk: Result<String, std::io::Error>,
    idle: std::time::Duration,
) -> bool {
    match tx.send_timeout(chunk, idle).await {
        Ok(()) => true,
        Err(tokio::sync::mpsc::error::SendTimeoutError::Timeout(_)) => {
            tracing::info!("ending an export its client stopped reading");
            false
        }
        Err(tokio::sync::mpsc::error::SendTimeoutError::Closed(_)) => false,
    }
}

/// One page of the export from `after` on, and where the next one starts
/// (none when this was the last).
#[allow(clippy::type_complexity)]
fn export_page(
    store: &dyn tiergate_core::store::Backend,
    tenant: &str,
    query: &RecordQuery,
    after: Option<(u64, String)>,
) -> Result<(Vec<Authorization>, Option<(u64, String)>), tiergate_core::store::StoreError> {
    if let Some(audit_id) = &query.audit_id {
        // At most one payment has it.
        let found = match store.tx_with_audit_id(tenant, audit_id)? {
            Some(tx) => store.get(tenant, &tx)?,
            None => None,
        };
        return Ok((found.into_iter().collect(), None));
    }
    let rows = store.authorizations_after(
        tenant,
        query.agent.as_deref(),
        after.as_ref().map(|(at, id)| (*at, id.as_str())),
        query.to_ms.unwrap_or(u64::MAX),
        EXPORT_PAGE,
    )?;
    let next = (rows.len() == EXPORT_PAGE)
        .then(|| rows.last())
        .flatten()
        .map(|a| (a.transaction.requested_at_ms, a.transaction.id.clone()));
    Ok((rows, next))
}

/// A payment and its audit events.
#[derive(Serialize, utoipa::ToSchema)]
pub(super) struct TransactionRecord {
    authorization: Authorization,
    events: Vec<AuditEvent>,
}

/// One payment and every audit event of it, in chain order.
#[utoipa::path(get, path = "/v1/audit/transactions/{tx_id}", tag = "audit",
    params(("tx_id" = String, Path, description = "The transaction id")),
    responses((status = 200, body = TransactionRecord), (status = 403, body = Error), (status = 404, body = Error)),
    security(("api_key" = [])))]
pub(super) async fn transaction(
    State(state): State<AppState>,
    caller: Caller,
    Path(tx_id): Path<String>,
) -> Result<Json<TransactionRecord>, ApiError> {
    caller.require(&[Role::Auditor, Role::Admin, Role::Approver])?;
    let authorization = state.governor().get(caller.tenant(), &tx_id)?;
    let events = state.store().events(caller.tenant(), Some(&tx_id))?;
    Ok(Json(TransactionRecord {
        authorization,
        events,
    }))
}

/// The result of recomputing a tenant's hash chain.
#[derive(Serialize, utoipa::ToSchema)]
pub(super) struct Verified {
    tenant: String,
    ok: bool,
    events: u64,
    head: Option<String>,
    broken: Option<String>,
    /// The service's signed checkpoints of this chain, checked: absent when
    /// the service signs none.
    #[serde(skip_serializing_if = "Option::is_none")]
    checkpoints: Option<tiergate_core::audit::CheckpointsChecked>,
}

/// Recompute the tenant's audit hash chain and report the first broken link.
#[utoipa::path(get, path = "/v1/audit/verify", tag = "audit",
    responses((status = 200, body = Verified), (status = 403, body = Error)),
    security(("api_key" = [])))]
pub(super) async fn verify(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Verified>, ApiError> {
    caller.require(READERS)?;
    let store = state.store().clone();
    let tenant = caller.tenant().to_string();
    let trusted = state.checkpoints().cloned();
    let (chain, checkpoints) = tokio::task::spawn_blocking(move || {
        crate::checkpoints::verify_tenant(store.as_ref(), &tenant, trusted.as_ref())
    })
    .await
    .map_err(ApiError::internal)??;
    let tenant = caller.tenant().to_string();
    Ok(Json(match chain {
        Ok(chain) => Verified {
            tenant,
            ok: checkpoints.as_ref().is_none_or(|c| c.broken.is_none()),
            events: chain.report.events,
            head: Some(chain.report.head),
            broken: checkpoints.as_ref().and_then(|c| c.broken.clone()),
            checkpoints,
        },
        Err(e) => Verified {
            tenant,
            ok: false,
            events: 0,
            head: None,
            broken: Some(e.to_string()),
            checkpoints,
        },
    }))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(super) struct DayQuery {
    /// The UTC day, YYYY-MM-DD.
    day: Option<String>,
}

/// The tenant's daily report: counts and sums per tier, agent, category and
/// status, approvals and their latency, vetoes, expiries, blocked attempts,
/// alerts, escalations.
#[utoipa::path(get, path = "/v1/reports/daily", tag = "audit",
    params(DayQuery),
    responses((status = 200, body = DailyReport), (status = 400, body = Error), (status = 403, body = Error)),
    security(("api_key" = [])))]
pub(super) async fn daily(
    State(state): State<AppState>,
    caller: Caller,
    Query(q): Query<DayQuery>,
) -> Result<Json<DailyReport>, ApiError> {
    caller.require(READERS)?;
    let start = day("day", &q.day)?.ok_or_else(|| {
        ApiError::bad_request("invalid_query", "give the day as ?day=YYYY-MM-DD").field("day")
    })?;
    let store = state.store().clone();
    let tenant = caller.tenant().to_string();
    let report = tokio::task::spawn_blocking(move || daily_report(store.as_ref(), &tenant, start))
        .await
        .map_err(ApiError::internal)??;
    Ok(Json(report))
}
