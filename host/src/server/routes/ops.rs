//! Health, readiness and the answer for unknown paths.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::server::{ApiError, AppState};

/// Liveness: the process answers.
#[utoipa::path(get, path = "/healthz", tag = "operations", responses((status = 200, description = "`{\"status\":\"ok\"}`")))]
pub(super) async fn health() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

/// Readiness: the store answers too.
#[utoipa::path(get, path = "/readyz", tag = "operations", responses((status = 200, description = "`{\"status\":\"ready\"}`"), (status = 503, body = crate::server::error::Body)))]
pub(super) async fn ready(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let store = state.store().clone();
    tokio::task::spawn_blocking(move || store.tenants())
        .await
        .map_err(ApiError::internal)??;
    Ok(Json(json!({ "status": "ready" })))
}

/// Prometheus metrics (OpenMetrics text).
#[utoipa::path(get, path = "/metrics", tag = "operations", responses((status = 200, content_type = "application/openmetrics-text", body = String)))]
pub(super) async fn metrics(State(state): State<AppState>) -> Result<Response, ApiError> {
    let store = state.store().clone();
    let metrics = state.metrics().clone();
    let text = tokio::task::spawn_blocking(move || metrics.render(store.as_ref()))
        .await
        .map_err(ApiError::internal)??;
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
