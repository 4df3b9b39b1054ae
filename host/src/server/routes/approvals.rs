//! The approver's side: what waits, and the verdicts.

use axum::Json;
use axum::extract::{Path, State};
use serde::Deserialize;

use crate::governance::{Act, Authorization, Status};
use crate::server::body::JsonText;
use crate::server::{ApiError, AppState, Caller};
use crate::store::Role;

/// `GET /v1/approvals`: payments waiting on an owner (open veto windows and
/// pending approvals), oldest first.
pub(super) async fn pending(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Vec<Authorization>>, ApiError> {
    caller.require(&[Role::Approver, Role::Auditor, Role::Admin])?;
    Ok(Json(state.governor().list(
        caller.tenant(),
        &[Status::PendingVeto, Status::AwaitingApproval],
    )?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Verdict {
    /// Why, in the owner's words.
    reason: String,
    /// The request's content hash as listed: the verdict applies to exactly it.
    content_hash: String,
}

/// `POST /v1/approvals/{tx_id}/{approve|reject|veto}`: the approver key's
/// owner decides. The pipeline refuses a verdict on the owner's own
/// payment, a second verdict, one after the deadline or on another request.
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
        .decide(
            caller.tenant(),
            &tx_id,
            act,
            &caller.0.subject,
            &verdict.reason,
            &verdict.content_hash,
        )
        .await?;
    tracing::info!(%tx_id, audit_id = %auth.audit_id, actor = %caller.0.subject,
        status = auth.status.as_str(), "verdict recorded");
    Ok(Json(auth))
}
