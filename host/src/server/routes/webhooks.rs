//! What became of the tenant's webhook deliveries.

use axum::Json;
use axum::extract::{Query, State};
use serde::Deserialize;

use crate::server::error::Body as Error;
use crate::server::{ApiError, AppState, Caller};
use crate::store::{DeliveryRecord, Role};

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(super) struct DeliveriesQuery {
    /// `pending`, `failing`, `given_up` or `delivered`; all when absent.
    state: Option<String>,
    /// At most this many, newest first (default 100, at most 1000).
    limit: Option<usize>,
}

/// The tenant's webhook deliveries, newest first (admin and auditor keys).
#[utoipa::path(get, path = "/v1/webhooks/deliveries", tag = "operations",
    params(DeliveriesQuery),
    responses((status = 200, body = Vec<DeliveryRecord>), (status = 400, body = Error), (status = 403, body = Error)),
    security(("api_key" = [])))]
pub(super) async fn deliveries(
    State(state): State<AppState>,
    caller: Caller,
    Query(q): Query<DeliveriesQuery>,
) -> Result<Json<Vec<DeliveryRecord>>, ApiError> {
    caller.require(&[Role::Admin, Role::Auditor])?;
    if let Some(s) = &q.state
        && !["pending", "failing", "given_up", "delivered"].contains(&s.as_str())
    {
        return Err(ApiError::bad_request(
            "invalid_query",
            format!("state {s:?}: use pending, failing, given_up or delivered"),
        )
        .field("state"));
    }
    let (store, tenant) = (state.store().clone(), caller.tenant().to_string());
    let limit = q.limit.unwrap_or(100).min(1000);
    let records =
        tokio::task::spawn_blocking(move || store.deliveries(&tenant, q.state.as_deref(), limit))
            .await
            .map_err(ApiError::internal)??;
    Ok(Json(records))
}
