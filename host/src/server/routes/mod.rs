//! The routes, one module per resource. Every handler takes the tenant from
//! the caller's key, never from the request, so no key reaches another
//! tenant's data. Routes are registered together with their OpenAPI
//! description, so the document served at `/openapi.json` is generated from
//! the code it describes.

mod approvals;
mod audit;
mod authorizations;
mod ops;
mod rules;
mod webhooks;

use std::sync::Arc;

use axum::Router;
use axum::routing::get;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "tiergate",
        description = "Autonomy-tier governance for AI agent payments. Every request carries a tenant's API key: `Authorization: Bearer tg_<key id>_<secret>`. Errors are `{\"error\": {\"code\", \"message\", \"field\"}}`."
    ),
    modifiers(&BearerKey),
    tags(
        (name = "authorizations", description = "Agents ask to pay"),
        (name = "approvals", description = "Owners decide held payments"),
        (name = "audit", description = "Records, verification and reports"),
        (name = "rules", description = "Policies and configuration"),
        (name = "operations", description = "Health and metrics"),
    )
)]
struct ApiDoc;

struct BearerKey;

impl utoipa::Modify for BearerKey {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "api_key",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("tg_<key id>_<secret>")
                    .build(),
            ),
        );
    }
}

/// The API routes and their OpenAPI document.
fn documented() -> (Router<AppState>, utoipa::openapi::OpenApi) {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(authorizations::create, authorizations::list))
        .routes(routes!(authorizations::get_one))
        .routes(routes!(approvals::pending))
        .routes(routes!(approvals::decide))
        .routes(routes!(audit::records))
        .routes(routes!(audit::transaction))
        .routes(routes!(audit::verify))
        .routes(routes!(audit::daily))
        .routes(routes!(rules::upload))
        .routes(routes!(rules::current, rules::activate))
        .routes(routes!(rules::check))
        .routes(routes!(ops::health))
        .routes(routes!(ops::ready))
        .routes(routes!(ops::metrics))
        .routes(routes!(webhooks::deliveries))
        .routes(routes!(webhooks::create, webhooks::list))
        .routes(routes!(webhooks::rotate))
        .routes(routes!(webhooks::remove))
        .routes(routes!(rules::policies))
        .routes(routes!(rules::delete_policy))
        .split_for_parts()
}

/// The OpenAPI document of the service, as served at `/openapi.json`.
pub fn openapi() -> utoipa::openapi::OpenApi {
    documented().1
}

pub(super) fn router() -> Router<AppState> {
    let (router, api) = documented();
    let api = Arc::new(api);
    router
        .route("/inbox", get(super::inbox::page))
        .route(
            "/openapi.json",
            get(move || {
                let api = api.clone();
                async move { axum::Json(api.as_ref().clone()) }
            }),
        )
        .fallback(ops::not_found)
}
