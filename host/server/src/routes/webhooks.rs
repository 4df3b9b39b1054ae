//! The tenant's webhooks, and what became of their deliveries. An admin
//! adds a webhook by URL and gets its signing secret once; the service
//! keeps it, signs with it, and rotates it with an overlap.

use std::time::Duration;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::authorizations::{NEXT_CURSOR, heavy_read, page_of};
use crate::admin::{self, WebhookError, WebhookSecret};
use crate::body::JsonText;
use crate::error::Body as Error;
use crate::{ApiError, AppState, Caller, now_ms};
use tiergate_core::store::{
    DeliveryCursor, DeliveryRecord, DeliveryState, PageCursor, Role, WebhookInfo,
};

impl From<WebhookError> for ApiError {
    fn from(e: WebhookError) -> Self {
        let message = e.to_string();
        match e {
            WebhookError::InvalidUrl(_) => {
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_webhook", message)
                    .field("url")
            }
            WebhookError::ForbiddenAddress { .. } => ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "forbidden_address",
                message,
            )
            .field("url"),
            WebhookError::Exists { .. } => {
                ApiError::new(StatusCode::CONFLICT, "webhook_exists", message).field("url")
            }
            WebhookError::OverLimit { .. } => {
                ApiError::new(StatusCode::CONFLICT, "quota_exceeded", message)
            }
            WebhookError::NotFound { .. } => ApiError::not_found(message),
            WebhookError::Overlap(_) => {
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_overlap", message)
                    .field("overlap_s")
            }
            WebhookError::Store(e) => e.into(),
            WebhookError::Entropy(e) => ApiError::internal(e),
        }
    }
}

/// Who made a change, as audit events name them.
fn actor(caller: &Caller) -> String {
    format!("{}:{}", caller.0.key_id, caller.0.subject)
}

/// A webhook to add.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct NewWebhook {
    /// Where to post the tenant's notices: `http://` or `https://`, a
    /// public address (unless the operator allows a network).
    url: String,
}

/// Add a webhook (admin keys): 201 with its id and its signing secret,
/// which is shown only in this answer. Refused for a URL the tenant has a
/// webhook to already, beyond the service's `webhooks_per_tenant`, and for
/// loopback, private, link-local, shared and reserved addresses.
#[utoipa::path(post, path = "/v1/webhooks", tag = "operations",
    request_body(content = NewWebhook, content_type = "application/json"),
    responses(
        (status = 201, body = WebhookSecret),
        (status = 403, body = Error),
        (status = 409, description = "A webhook to that URL already, or as many webhooks as allowed", body = Error),
        (status = 422, description = "Not a webhook URL, or an address webhooks may not reach", body = Error),
    ),
    security(("api_key" = [])))]
pub(super) async fn create(
    State(state): State<AppState>,
    caller: Caller,
    body: JsonText,
) -> Result<(StatusCode, Json<WebhookSecret>), ApiError> {
    caller.require(&[Role::Admin])?;
    let request: NewWebhook = body.parse()?;
    let url = admin::webhook_url(&request.url)?;
    let options = state.webhooks();
    options
        .egress
        .check_host(&url)
        .await
        .map_err(|_| WebhookError::ForbiddenAddress {
            host: url.host_str().unwrap_or_default().to_string(),
        })?;
    let (store, tenant, actor, limit) = (
        state.store().clone(),
        caller.tenant().to_string(),
        actor(&caller),
        options.per_tenant,
    );
    let made = tokio::task::spawn_blocking(move || {
        admin::add_webhook(store.as_ref(), &tenant, &url, None, limit, &actor, now_ms())
    })
    .await
    .map_err(ApiError::internal)??;
    tracing::info!(tenant = %caller.tenant(), webhook = %made.webhook.id, url = %made.webhook.url,
        key = %caller.0.key_id, "webhook added");
    Ok((StatusCode::CREATED, Json(made)))
}

/// The tenant's webhooks, oldest first, without their secrets (admin and
/// auditor keys).
#[utoipa::path(get, path = "/v1/webhooks", tag = "operations",
    responses((status = 200, body = Vec<WebhookInfo>), (status = 403, body = Error)),
    security(("api_key" = [])))]
pub(super) async fn list(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Vec<WebhookInfo>>, ApiError> {
    caller.require(&[Role::Admin, Role::Auditor])?;
    let (store, tenant) = (state.store().clone(), caller.tenant().to_string());
    let hooks = tokio::task::spawn_blocking(move || store.webhooks(Some(&tenant)))
        .await
        .map_err(ApiError::internal)??;
    Ok(Json(hooks.iter().map(|h| h.info()).collect()))
}

/// A rotation.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct Rotation {
    /// Seconds the current secret keeps signing beside the new one (default
    /// 86400, at most 604800; 0 stops it at once).
    #[serde(default, deserialize_with = "whole_seconds")]
    #[schema(maximum = 604800)]
    overlap_s: Option<u64>,
}

/// A whole number of seconds as JSON may write one: `1208` or `1208.0`, the
/// same number to JSON and to the document's `integer`.
fn whole_seconds<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    use serde::de::Error as _;
    let Some(number) = Option::<serde_json::Number>::deserialize(d)? else {
        return Ok(None);
    };
    let text = number.to_string();
    let whole = match text.split_once('.') {
        Some((whole, fraction)) if fraction.bytes().all(|b| b == b'0') => whole,
        Some(_) => text.as_str(),
        None => text.as_str(),
    };
    whole.parse().map(Some).map_err(|_| {
        D::Error::custom(format!(
            "{text} is not a whole number of seconds from 0 to 604800"
        ))
    })
}

/// Give a webhook a new signing secret (admin keys), shown only in this
/// answer. During the overlap every notice carries two signatures, by the
/// new secret and by the old one, so receivers can switch without losing one.
#[utoipa::path(post, path = "/v1/webhooks/{id}/rotate", tag = "operations",
    params(("id" = String, Path, description = "The webhook's id")),
    request_body(content = Rotation, content_type = "application/json"),
    responses(
        (status = 200, body = WebhookSecret),
        (status = 403, body = Error),
        (status = 404, body = Error),
        (status = 422, description = "An overlap over seven days", body = Error),
    ),
    security(("api_key" = [])))]
pub(super) async fn rotate(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    body: JsonText,
) -> Result<Json<WebhookSecret>, ApiError> {
    caller.require(&[Role::Admin])?;
    let request: Rotation = body.parse()?;
    let overlap = request
        .overlap_s
        .map_or(admin::DEFAULT_ROTATION_OVERLAP, Duration::from_secs);
    let (store, tenant, actor) = (
        state.store().clone(),
        caller.tenant().to_string(),
        actor(&caller),
    );
    let rotated = tokio::task::spawn_blocking(move || {
        admin::rotate_webhook(store.as_ref(), &tenant, &id, overlap, &actor, now_ms())
    })
    .await
    .map_err(ApiError::internal)??;
    tracing::info!(tenant = %caller.tenant(), webhook = %rotated.webhook.id,
        key = %caller.0.key_id, "webhook secret rotated");
    Ok(Json(rotated))
}

/// Remove a webhook (admin keys); what it still had to deliver is given up.
#[utoipa::path(delete, path = "/v1/webhooks/{id}", tag = "operations",
    params(("id" = String, Path, description = "The webhook's id")),
    responses((status = 200, body = WebhookInfo), (status = 403, body = Error), (status = 404, body = Error)),
    security(("api_key" = [])))]
pub(super) async fn remove(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<WebhookInfo>, ApiError> {
    caller.require(&[Role::Admin])?;
    let (store, tenant, actor) = (
        state.store().clone(),
        caller.tenant().to_string(),
        actor(&caller),
    );
    let removed = tokio::task::spawn_blocking(move || {
        admin::remove_webhook(store.as_ref(), &tenant, &id, &actor, now_ms())
    })
    .await
    .map_err(ApiError::internal)??;
    tracing::info!(tenant = %caller.tenant(), webhook = %removed.id, key = %caller.0.key_id,
        "webhook removed");
    Ok(Json(removed))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(super) struct DeliveriesQuery {
    /// `pending`, `failing`, `given_up` or `delivered`; all when absent.
    state: Option<String>,
    /// At most this many (1 to 1000; 100 when absent).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<usize>,
    /// Where to go on: the `Tiergate-Next-Cursor` header of the previous
    /// page, as it came (opaque).
    cursor: Option<String>,
}

/// The tenant's webhook deliveries, newest first, a page at a time (admin
/// and auditor keys). When the page is full, the `Tiergate-Next-Cursor`
/// header says where the next one starts: send it back as `cursor`.
#[utoipa::path(get, path = "/v1/webhooks/deliveries", tag = "operations",
    params(DeliveriesQuery),
    responses(
        (status = 200, body = Vec<DeliveryRecord>, headers(
            ("Tiergate-Next-Cursor" = String, description = "Where the next page starts, when this one is full: send it back as `cursor` (opaque)"),
        )),
        (status = 400, description = "An unknown state, a limit out of 1 to 1000, or a cursor this service did not give", body = Error),
        (status = 403, body = Error),
    ),
    security(("api_key" = [])))]
pub(super) async fn deliveries(
    State(state): State<AppState>,
    caller: Caller,
    Query(q): Query<DeliveriesQuery>,
) -> Result<Response, ApiError> {
    caller.require(&[Role::Admin, Role::Auditor])?;
    let wanted = q
        .state
        .as_deref()
        .map(str::parse::<DeliveryState>)
        .transpose()
        .map_err(|m| ApiError::bad_request("invalid_query", m).field("state"))?;
    let (limit, after) = page_of::<DeliveryCursor>(q.limit, q.cursor.as_deref())?;
    // Admitted as the other listings are: a core is left to payments.
    let (store, tenant) = (state.store().clone(), caller.tenant().to_string());
    let page =
        heavy_read(move || store.deliveries(&tenant, wanted, after.as_ref(), limit)).await??;
    let next = (page.len() == limit)
        .then(|| page.last().map(|last| DeliveryCursor::after(last).encode()))
        .flatten();
    let mut response = Json(page).into_response();
    if let Some(next) = next.and_then(|n| HeaderValue::from_str(&n).ok()) {
        response.headers_mut().insert(NEXT_CURSOR, next);
    }
    Ok(response)
}
