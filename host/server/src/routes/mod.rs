//! The routes, one module per resource. Every handler takes the tenant from
//! the caller's key, never from the request, so no key reaches another
//! tenant's data. Routes are registered together with their OpenAPI
//! description, so the document served at `/openapi.json` is generated from
//! the code it describes.

mod approvals;
mod audit;
mod authorizations;
mod document;
mod ops;
mod registry;
mod rules;
mod webhooks;
mod x402;

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
    let router = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(authorizations::create, authorizations::list))
        .routes(routes!(authorizations::get_one))
        .routes(routes!(x402::pay))
        .routes(routes!(x402::get_one))
        .routes(routes!(authorizations::limits))
        .routes(routes!(approvals::pending))
        .routes(routes!(approvals::decide))
        .routes(routes!(audit::records))
        .routes(routes!(audit::transaction))
        .routes(routes!(audit::verify))
        .routes(routes!(audit::daily))
        .routes(routes!(rules::upload))
        .routes(routes!(rules::current, rules::activate))
        .routes(routes!(rules::check))
        .routes(routes!(registry::show))
        .routes(routes!(registry::put_recipient, registry::remove_recipient))
        .routes(routes!(registry::put_agent, registry::remove_agent))
        .routes(routes!(ops::health))
        .routes(routes!(ops::ready))
        .routes(routes!(ops::metrics))
        .routes(routes!(webhooks::deliveries))
        .routes(routes!(webhooks::create, webhooks::list))
        .routes(routes!(webhooks::rotate))
        .routes(routes!(webhooks::remove))
        .routes(routes!(rules::policies))
        .routes(routes!(rules::delete_policy));
    let (router, api) = router.split_for_parts();
    (router, document::completed(api))
}

pub(super) use ops::metrics_address;

/// The OpenAPI document of the service, as served at `/openapi.json`.
pub fn openapi() -> utoipa::openapi::OpenApi {
    documented().1
}

pub(super) fn router() -> Router<AppState> {
    let (router, api) = documented();
    let api = Arc::new(api);
    router
        .route("/inbox", get(super::inbox::page))
        .route("/inbox.js", get(super::inbox::script))
        .route("/inbox.css", get(super::inbox::style))
        .route(
            "/openapi.json",
            get(move || {
                let api = api.clone();
                async move { axum::Json(api.as_ref().clone()) }
            }),
        )
        .fallback(ops::not_found)
        .layer(axum::middleware::map_response(json_refusals))
}

/// Refusals that axum words itself (a query string or path it cannot read,
/// a method a path does not take) as the JSON error body every other
/// refusal has, with a code; the status and headers (`Allow`) are kept.
async fn json_refusals(response: axum::response::Response) -> axum::response::Response {
    use axum::http::{StatusCode, header};
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let (parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, 64 * 1024)
        .await
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default();
    let (code, message): (&'static str, String) = if let Some(rest) =
        text.strip_prefix("Failed to deserialize query string: ")
    {
        ("invalid_query", format!("invalid query string: {rest}"))
    } else if text.starts_with("Failed to deserialize query string") {
        ("invalid_query", format!("invalid query string: {text}"))
    } else if status == StatusCode::METHOD_NOT_ALLOWED {
        (
            "method_not_allowed",
            "this path does not take that method; see the Allow header and /openapi.json".into(),
        )
    } else if status == StatusCode::BAD_REQUEST {
        ("invalid_path", format!("the path cannot be read: {text}"))
    } else if status.is_server_error() {
        (
            "internal",
            "the service failed to complete the request; retry later".into(),
        )
    } else {
        ("invalid_request", text.clone())
    };
    let mut error = super::ApiError::new(status, code, message);
    if let Some(field) = text
        .split("unknown field `")
        .nth(1)
        .and_then(|rest| rest.split('`').next())
    {
        error = error.field(field);
    }
    let mut answer = axum::response::IntoResponse::into_response(error);
    for (name, value) in parts.headers.iter() {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            answer.headers_mut().insert(name.clone(), value.clone());
        }
    }
    answer
}
