//! Paying x402 resources through tiergate: the agent hands over the
//! `PaymentRequired` it received, tiergate governs it as a payment and
//! signs it, with the tenant's key, only once it is executed.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::Serialize;
use tiergate_core::governance::{Authorization, TenantConfig};
use tiergate_core::store::Role;
use tiergate_x402::offer::{self, PayRequest};
use tiergate_x402::protocol::Requirements;
use tiergate_x402::{SignedPayment, X402Error};

use super::authorizations::{authorize, visible};
use crate::body::JsonText;
use crate::error::Body as Error;
use crate::{ApiError, AppState, Caller, now_ms};

/// An x402 payment: the payment as governed, the option paid, and once it
/// is executed the signed payment to send the resource server.
#[derive(Serialize, utoipa::ToSchema)]
pub(super) struct X402Payment {
    /// The payment as governed: tier, status, audit id, what happens next.
    authorization: Authorization,
    /// The option of the `PaymentRequired` tiergate pays (x402
    /// `PaymentRequirements`).
    accepted: Requirements,
    /// The tenant's paying address.
    #[serde(skip_serializing_if = "Option::is_none")]
    signer: Option<String>,
    /// Once executed: `header` (`PAYMENT-SIGNATURE`), its `value` (the
    /// payload in base64), the `payload` itself and its `nonce`. Null while
    /// held, and forever when it is not executed.
    #[schema(value_type = Option<Object>)]
    payment: Option<SignedPayment>,
}

/// Pay an x402 resource (agent keys).
///
/// Send the `PaymentRequired` a resource server answered with `402`.
/// tiergate picks the option the tenant pays with (the `exact` scheme on one
/// of its networks, in a known asset in its currency), converts the atomic
/// amount exactly and governs it as a payment to `payTo`. When the payment
/// is executed (at once if autonomous; after the veto window; after the
/// owners' approval) tiergate signs its EIP-3009 authorization with the
/// tenant's key: `payment` then holds the header to send. A held payment's
/// signature comes from `GET /v1/x402/payments/{tx_id}` once it is
/// executed. The id is the idempotency key: a retry gets the same answer,
/// and the same signature.
#[utoipa::path(post, path = "/v1/x402/payments", tag = "authorizations",
    request_body(content = PayRequest, content_type = "application/json"),
    responses(
        (status = 201, description = "Recorded now", body = X402Payment),
        (status = 200, description = "The same request was recorded before: its current state", body = X402Payment),
        (status = 400, description = "Not JSON, or not the request's shape", body = Error),
        (status = 403, description = "Wrong role, or another tenant or agent than the key's", body = Error),
        (status = 409, description = "The id was used for a different request", body = Error),
        (status = 422, description = "No option can be governed (`x402_unpayable`, naming each and why), another protocol version, or an invalid payment", body = Error),
    ),
    security(("api_key" = [])))]
pub(super) async fn pay(
    State(state): State<AppState>,
    caller: Caller,
    body: JsonText,
) -> Result<(StatusCode, Json<X402Payment>), ApiError> {
    caller.require(&[Role::Agent, Role::Platform])?;
    let request: PayRequest = body.parse()?;
    if let Some(tenant) = request.tenant.as_deref().filter(|t| *t != caller.tenant()) {
        return Err(ApiError::forbidden(
            "tenant_mismatch",
            format!(
                "this key belongs to tenant {}; it cannot pay for {tenant}",
                caller.tenant()
            ),
        )
        .field("tenant"));
    }
    let rules = state.governor().tenant_config(caller.tenant())?;
    let choice = offer::choose(&request.payment_required, &rules).map_err(refused)?;
    let tx = offer::transaction(&request, &choice, &rules, now_ms()).map_err(refused)?;
    let (status, auth) = authorize(&state, &caller, tx).await?;
    Ok((status, Json(answer(&state, auth, &rules)?)))
}

/// An x402 payment's state, and its signed payment once executed.
#[utoipa::path(get, path = "/v1/x402/payments/{tx_id}", tag = "authorizations",
    params(("tx_id" = String, Path, description = "The transaction id")),
    responses(
        (status = 200, body = X402Payment),
        (status = 404, description = "No such x402 payment visible to this key", body = Error),
    ),
    security(("api_key" = [])))]
pub(super) async fn get_one(
    State(state): State<AppState>,
    caller: Caller,
    Path(tx_id): Path<String>,
) -> Result<Json<X402Payment>, ApiError> {
    let auth = visible(&state, &caller, &tx_id)?;
    if !tiergate_x402::is_x402(&auth.transaction) {
        return Err(ApiError::not_found(format!(
            "payment {tx_id} is not an x402 payment: read it at /v1/authorizations/{tx_id}"
        )));
    }
    let rules = state.governor().tenant_config(caller.tenant())?;
    Ok(Json(answer(&state, auth, &rules)?))
}

fn answer(
    state: &AppState,
    auth: Authorization,
    rules: &TenantConfig,
) -> Result<X402Payment, ApiError> {
    let keys = state.payment_keys();
    let accepted = auth
        .transaction
        .metadata
        .get(offer::ACCEPTED)
        .and_then(|json| serde_json::from_str(json).ok())
        .ok_or_else(|| ApiError::internal("an x402 payment's recorded requirements do not read"))?;
    let payment = tiergate_x402::signed_payment(&auth, keys, rules).map_err(|e| {
        ApiError::new(
            StatusCode::CONFLICT,
            "x402_signature_unavailable",
            e.to_string(),
        )
    })?;
    Ok(X402Payment {
        signer: keys.address(&auth.transaction.tenant),
        authorization: auth,
        accepted,
        payment,
    })
}

/// A request tiergate cannot govern, as the API refuses it.
fn refused(error: X402Error) -> ApiError {
    let (code, field) = match &error {
        X402Error::UnsupportedVersion(_) => {
            ("x402_unsupported_version", "payment_required.x402Version")
        }
        X402Error::NotEnabled(_) => ("x402_not_enabled", "payment_required"),
        X402Error::Unpayable(_) => ("x402_unpayable", "payment_required.accepts"),
        X402Error::Invalid { field, .. } => ("invalid_transaction", field.as_str()),
        _ => return ApiError::internal(error),
    };
    let field = field.to_string();
    ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, code, error.to_string()).field(field)
}
