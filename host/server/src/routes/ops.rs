//! Health, readiness and the answer for unknown paths.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::{ApiError, AppState};

/// Liveness: the process answers.
#[utoipa::path(get, path = "/healthz", tag = "operations", responses((status = 200, description = "`{\"status\":\"ok\"}`")))]
pub(super) async fn health() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

/// Readiness: the store answers too.
#[utoipa::path(get, path = "/readyz", tag = "operations", responses((status = 200, description = "`{\"status\":\"ready\"}`"), (status = 503, body = crate::error::Body)))]
pub(super) async fn ready(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let store = state.store().clone();
    tokio::task::spawn_blocking(move || store.tenants())
        .await
        .map_err(ApiError::internal)??;
    Ok(Json(json!({ "status": "ready" })))
}

/// Prometheus metrics (OpenMetrics text), for a scraper with the metrics
/// token (`Authorization: Bearer <metrics token>`); not served here when
/// the operator set a separate metrics address, or no token.
#[utoipa::path(get, path = "/metrics", tag = "operations", responses(
    (status = 200, content_type = "application/openmetrics-text", body = String),
    (status = 401, description = "No metrics token, or a wrong one", body = crate::error::Body),
    (status = 404, description = "Metrics are not served on this address", body = crate::error::Body),
))]
pub(super) async fn metrics(
    State(state): State<AppState>,
    headers: axum::http::HeaderMap,
) -> Result<Response, ApiError> {
    scrape(state, &headers, false).await
}

/// `/metrics` on the separate metrics address.
pub(crate) async fn metrics_address(
    State(state): State<AppState>,
    headers: axum::http::HeaderMap,
) -> Result<Response, ApiError> {
    scrape(state, &headers, true).await
}

async fn scrape(
    state: AppState,
    headers: &axum::http::HeaderMap,
    on_metrics_address: bool,
) -> Result<Response, ApiError> {
    use crate::metrics::Refusal;
    let authorization = headers
        .get(axum::http::header::AUTHORIZATION)
        .map(|v| v.as_bytes());
    match state
        .metrics()
        .access()
        .allows(authorization, on_metrics_address)
    {
        Ok(()) => {}
        Err(Refusal::NotHere) => {
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                "not_found",
                "metrics are not served on this address: the operator sets a metrics token (`metrics_token`) or a metrics address (`metrics_listen`)",
            ));
        }
        Err(Refusal::BadToken) => {
            return Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "send the metrics token: `Authorization: Bearer <metrics token>`",
            ));
        }
    }
    let store = state.store().clone();
    let metrics = state.metrics().clone();
    let text = super::authorizations::heavy_read(move || metrics.render(store.as_ref())).await??;
    Ok((
        [(
            axum::http::header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        text,
    )
        .into_response())
}

/// Any other path.
pub(super) async fn not_found(uri: axum::http::Uri) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        format!(
            "no such endpoint: {}; the API is described at /openapi.json",
            uri.path()
        ),
    )
}
