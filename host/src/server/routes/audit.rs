//! The auditor's side: records, one transaction's chain, verification and
//! the daily report. Exports stream: rows are read a page at a time and
//! sent as they are read.

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use crate::audit::{DailyReport, ExportRow, Query as RecordQuery, daily_report, parse_day};
use crate::governance::Authorization;
use crate::server::error::Body as Error;
use crate::server::{ApiError, AppState, Caller};
use crate::store::{AuditEvent, Role};

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
                t.parse::<crate::Tier>().map_err(|e| {
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
                crate::parse_decimal(m).map_err(|e| {
                    ApiError::bad_request("invalid_query", e.to_string()).field("min_amount")
                })
            })
            .transpose()?,
    };
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<String, std::io::Error>>(16);
    let store = state.store().clone();
    let tenant = caller.tenant().to_string();
    tokio::task::spawn_blocking(move || {
        if csv {
            let _ = tx.blocking_send(Ok(format!("{}\n", ExportRow::CSV_HEADER)));
        }
        let mut chunk = String::new();
        for auth in crate::audit::matching(store.as_ref(), &tenant, &query) {
            let auth = match auth {
                Ok(a) => a,
                Err(e) => {
                    let _ = tx.blocking_send(Err(std::io::Error::other(e.to_string())));
                    return;
                }
            };
            let row = ExportRow::from(&auth);
            if csv {
                chunk.push_str(&row.csv());
            } else {
                chunk.push_str(&serde_json::to_string(&row).unwrap_or_default());
            }
            chunk.push('\n');
            if chunk.len() > 64 * 1024 && tx.blocking_send(Ok(std::mem::take(&mut chunk))).is_err()
            {
                return; // the client went away
            }
        }
        if !chunk.is_empty() {
            let _ = tx.blocking_send(Ok(chunk));
        }
    });
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
    checkpoints: Option<crate::audit::CheckpointsChecked>,
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
        crate::server::checkpoints::verify_tenant(store.as_ref(), &tenant, trusted.as_ref())
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
