//! Authorizing payments and reading them back.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde::Deserialize;

use crate::governance::{Authorization, Status};
use crate::model::transaction::Transaction;
use crate::server::body::JsonText;
use crate::server::error::Body as Error;
use crate::server::{ApiError, AppState, Caller, now_ms};
use crate::store::Role;

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
    caller.require(&[Role::Agent])?;
    let tx = Transaction::from_json(&body.0, now_ms())?;
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
    if caller.0.subject != "*" && tx.agent != caller.0.subject {
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
    let answered = state
        .governor()
        .authorize_from(tx, caller.0.key_id.clone())
        .await?;
    let auth = answered.authorization;
    tracing::info!(tx_id = %auth.transaction.id, audit_id = %auth.audit_id, tier = %auth.tier,
        status = auth.status.as_str(), new = answered.new, "authorized");
    let status = if answered.new {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(auth)))
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
    let auth = state.governor().get(caller.tenant(), &tx_id)?;
    if !visible_to(&caller, &auth) {
        return Err(ApiError::not_found(format!(
            "tenant {} has no transaction {tx_id}",
            caller.tenant()
        )));
    }
    Ok(Json(auth))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(super) struct ListQuery {
    /// Comma-separated statuses; all when absent.
    status: Option<String>,
    /// At most this many, newest first (default 100, at most 1000).
    limit: Option<usize>,
}

/// The tenant's payments, newest first (an agent key: the ones it submitted).
#[utoipa::path(get, path = "/v1/authorizations", tag = "authorizations",
    params(ListQuery),
    responses(
        (status = 200, body = Vec<Authorization>),
        (status = 400, description = "An unknown status", body = Error),
    ),
    security(("api_key" = [])))]
pub(super) async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Query(q): Query<ListQuery>,
) -> Result<Json<Vec<Authorization>>, ApiError> {
    let statuses = match &q.status {
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
    let limit = q.limit.unwrap_or(100).min(1000);
    let mut all = state.governor().list(caller.tenant(), &statuses)?;
    all.retain(|a| visible_to(&caller, a));
    all.reverse();
    all.truncate(limit);
    Ok(Json(all))
}

fn visible_to(caller: &Caller, auth: &Authorization) -> bool {
    caller.0.role != Role::Agent || auth.caller.as_deref() == Some(caller.0.key_id.as_str())
}
