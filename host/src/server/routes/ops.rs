//! Health, readiness and the answer for unknown paths.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde_json::{Value, json};

use crate::server::{ApiError, AppState};

/// `GET /healthz`: the process answers.
pub(super) async fn health() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

/// `GET /readyz`: the store answers too.
pub(super) async fn ready(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let store = state.store().clone();
    tokio::task::spawn_blocking(move || store.tenants())
        .await
        .map_err(ApiError::internal)??;
    Ok(Json(json!({ "status": "ready" })))
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
