//! The approver's side: what waits, and the verdicts.

use axum::Json;
use axum::extract::{Path, State};
use serde::Deserialize;

use crate::body::JsonText;
use crate::error::Body as Error;
use crate::{ApiError, AppState, Caller};
use tiergate_core::governance::{Act, Authorization, Status};
use tiergate_core::store::Role;

/// Payments waiting on an owner: open veto windows and pending approvals,
/// oldest first, a page at a time (as `GET /v1/authorizations` pages).
#[utoipa::path(get, path = "/v1/approvals", tag = "approvals",
    params(super::authorizations::PageQuery),
    responses(
        (status = 200, body = Vec<Authorization>, headers(
            ("Tiergate-Next-Cursor" = String, description = "Where the next page starts, when this one is full: send it back as `cursor` (opaque)"),
        )),
        (status = 400, description = "A limit out of 1 to 1000, or a cursor this service did not give", body = Error),
        (status = 403, body = Error),
    ),
    security(("api_key" = [])))]
pub(super) async fn pending(
    State(state): State<AppState>,
    caller: Caller,
    axum::extract::Query(q): axum::extract::Query<super::authorizations::PageQuery>,
) -> Result<axum::response::Response, ApiError> {
    caller.require(&[Role::Approver, Role::Auditor, Role::Admin])?;
    let (limit, after) = super::authorizations::page_of(q.limit, q.cursor.as_deref())?;
    let waiting = vec![Status::PendingVeto, Status::AwaitingApproval];
    super::authorizations::listed(&state, caller.tenant(), waiting, None, false, after, limit).await
}

/// An owner's verdict on one request.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = VerdictRequest)]
pub(super) struct Verdict {
    /// Why, in the owner's words.
    reason: String,
    /// The request's content hash as listed: the verdict applies to exactly it.
    content_hash: String,
}

/// An owner's verdict (approver keys): approve or reject a payment awaiting
/// approval, veto one inside its veto window. Refused on the owner's own
/// payment, a second time, after the deadline, or when `content_hash` is
/// not the payment's. When the last approval arrives the payment executes
/// before the answer.
#[utoipa::path(post, path = "/v1/approvals/{tx_id}/{act}", tag = "approvals",
    params(
        ("tx_id" = String, Path, description = "The transaction id"),
        ("act" = String, Path, description = "`approve`, `reject` or `veto`"),
    ),
    request_body(content = Verdict, content_type = "application/json"),
    responses(
        (status = 200, body = Authorization),
        (status = 403, description = "Not an approver, not an owner, or the owner's own payment", body = Error),
        (status = 404, body = Error),
        (status = 409, description = "Wrong status, decided already, deadline passed, or another request's hash", body = Error),
        (status = 422, description = "The reason holds a control or bidi character (`invalid_text`)", body = Error),
    ),
    security(("api_key" = [])))]
pub(super) async fn decide(
    State(state): State<AppState>,
    caller: Caller,
    Path((tx_id, act)): Path<(String, String)>,
    body: JsonText,
) -> Result<Json<Authorization>, ApiError> {
    caller.require(&[Role::Approver])?;
    let act = match act.as_str() {
        "approve" => Act::Approve,
        "reject" => Act::Reject,
        "veto" => Act::Veto,
        other => {
            return Err(ApiError::not_found(format!(
                "no verdict `{other}`: use approve, reject or veto"
            )));
        }
    };
    let verdict: Verdict = body.parse()?;
    if verdict.reason.trim().is_empty() {
        return Err(
            ApiError::bad_request("missing_reason", "say why: the reason is empty").field("reason"),
        );
    }
    let auth = state
        .governor()
        .decide_with_key(
            caller.tenant(),
            &tx_id,
            act,
            &caller.0.subject,
            &caller.0.key_id,
            &verdict.reason,
            &verdict.content_hash,
        )
        .await?;
    tracing::info!(%tx_id, audit_id = %auth.audit_id, actor = %caller.0.subject,
        key = %caller.0.key_id, status = auth.status.as_str(), "verdict recorded");
    Ok(Json(auth))
}
