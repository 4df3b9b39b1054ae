//! The routes, one module per resource. Every handler takes the tenant from
//! the caller's key, never from the request, so no key reaches another
//! tenant's data.

mod approvals;
mod audit;
mod authorizations;
mod ops;
mod rules;

use axum::Router;
use axum::routing::{get, post};

use super::AppState;

pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/v1/authorizations",
            post(authorizations::create).get(authorizations::list),
        )
        .route("/v1/authorizations/{tx_id}", get(authorizations::get_one))
        .route("/v1/approvals", get(approvals::pending))
        .route("/v1/approvals/{tx_id}/{act}", post(approvals::decide))
        .route("/v1/audit/records", get(audit::records))
        .route("/v1/audit/transactions/{tx_id}", get(audit::transaction))
        .route("/v1/audit/verify", get(audit::verify))
        .route("/v1/reports/daily", get(audit::daily))
        .route("/v1/policies", post(rules::upload))
        .route("/v1/rules", get(rules::current).post(rules::activate))
        .route("/v1/rules/check", post(rules::check))
        .route("/healthz", get(ops::health))
        .route("/readyz", get(ops::ready))
        .route("/metrics", get(ops::metrics))
        .fallback(ops::not_found)
}
