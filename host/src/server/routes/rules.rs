//! The admin's side: uploading a policy component, checking and activating
//! rules. A rejected upload or activation changes nothing; an activation is
//! swapped in atomically, and requests in flight finish on the old rules.

use std::path::Path;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};

use crate::governance::TenantConfig;
use crate::runtime::{CompiledPolicy, PolicyInfo};
use crate::server::body::{JsonText, Upload};
use crate::server::error::Body as Error;
use crate::server::setup::compile_named;
use crate::server::{ApiError, AppState, Caller, now_ms};
use crate::store::{Role, StoredRules};

/// Upload a policy component (admin keys): checked (a component of the
/// tiergate policy world, allowed imports only, it answers `info`) and kept
/// under its digest. Activating it is a separate step; a refused upload
/// changes nothing.
#[utoipa::path(post, path = "/v1/policies", tag = "rules",
    request_body(content = Vec<u8>, content_type = "application/wasm"),
    responses(
        (status = 201, body = PolicyInfo),
        (status = 403, body = Error),
        (status = 413, body = Error),
        (status = 415, body = Error),
        (status = 422, description = "Not a usable policy component", body = Error),
    ),
    security(("api_key" = [])))]
pub(super) async fn upload(
    State(state): State<AppState>,
    caller: Caller,
    Upload(bytes): Upload,
) -> Result<(StatusCode, Json<PolicyInfo>), ApiError> {
    caller.require(&[Role::Admin])?;
    let runtime = state.runtime().clone();
    let store = state.store().clone();
    let info = tokio::task::spawn_blocking(move || {
        let compiled = runtime.compile(&bytes).map_err(|e| {
            ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_policy",
                format!("the upload is not a usable policy: {e}"),
            )
        })?;
        let info = compiled.info().clone();
        store.put_policy(&info.digest, &bytes, now_ms())?;
        Ok::<_, ApiError>(info)
    })
    .await
    .map_err(ApiError::internal)??;
    tracing::info!(tenant = %caller.tenant(), digest = %info.digest, name = %info.name, "policy uploaded");
    Ok((StatusCode::CREATED, Json(info)))
}

/// Rules to check or activate.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct RulesRequest {
    /// An uploaded policy's digest, or a bundled policy's name.
    policy: String,
    /// The tenant configuration, as TOML text. Its `policy.path` is
    /// replaced by `policy`.
    config: String,
}

/// Rules that would load.
#[derive(Serialize, utoipa::ToSchema)]
pub(super) struct Checked {
    policy: PolicyInfo,
    tenant_config_digest: String,
}

/// Parses and binds the requested rules without activating them.
async fn prepare(
    state: &AppState,
    caller: &Caller,
    body: &JsonText,
) -> Result<(RulesRequest, TenantConfig, CompiledPolicy), ApiError> {
    let request: RulesRequest = body.parse()?;
    let mut config = TenantConfig::parse(&request.config, Path::new("config")).map_err(|e| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_config",
            e.to_string(),
        )
        .field("config")
    })?;
    if config.tenant != caller.tenant() {
        return Err(ApiError::forbidden(
            "tenant_mismatch",
            format!(
                "this key belongs to tenant {}; the configuration is for {}",
                caller.tenant(),
                config.tenant
            ),
        )
        .field("config"));
    }
    // Never a path on this machine: only uploaded or bundled policies.
    config.policy.path = request.policy.clone();
    let (runtime, store, policy) = (
        state.runtime().clone(),
        state.store().clone(),
        request.policy.clone(),
    );
    let compiled =
        tokio::task::spawn_blocking(move || compile_named(store.as_ref(), &runtime, &policy))
            .await
            .map_err(ApiError::internal)?
            .map_err(|e| {
                ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "invalid_policy",
                    format!("{e:#}"),
                )
                .field("policy")
            })?;
    let document = config.policy_config_json().map_err(|m| {
        ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_config", m).field("config")
    })?;
    compiled.configure(&document).map_err(|e| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_config",
            format!("the policy refuses its configuration: {e}"),
        )
        .field("config")
    })?;
    Ok((request, config, compiled))
}

/// Check rules without activating them: would they load?
#[utoipa::path(post, path = "/v1/rules/check", tag = "rules",
    request_body(content = RulesRequest, content_type = "application/json"),
    responses((status = 200, body = Checked), (status = 403, body = Error), (status = 422, body = Error)),
    security(("api_key" = [])))]
pub(super) async fn check(
    State(state): State<AppState>,
    caller: Caller,
    body: JsonText,
) -> Result<Json<Checked>, ApiError> {
    caller.require(&[Role::Admin])?;
    let (_, config, compiled) = prepare(&state, &caller, &body).await?;
    Ok(Json(Checked {
        policy: compiled.info().clone(),
        tenant_config_digest: config.digest,
    }))
}

/// Activated rules.
#[derive(Serialize, utoipa::ToSchema)]
pub(super) struct Activated {
    rules: StoredRules,
    policy: PolicyInfo,
    /// The `policy_activated` audit record, when the rules changed.
    audit_id: Option<String>,
}

/// Activate rules for the key's tenant (admin keys): recorded as a
/// `policy_activated` audit event naming the key, swapped in atomically;
/// requests in flight finish on the old rules.
#[utoipa::path(post, path = "/v1/rules", tag = "rules",
    request_body(content = RulesRequest, content_type = "application/json"),
    responses((status = 200, body = Activated), (status = 403, body = Error), (status = 422, body = Error)),
    security(("api_key" = [])))]
pub(super) async fn activate(
    State(state): State<AppState>,
    caller: Caller,
    body: JsonText,
) -> Result<Json<Activated>, ApiError> {
    caller.require(&[Role::Admin])?;
    let (request, config, compiled) = prepare(&state, &caller, &body).await?;
    let actor = format!("{}:{}", caller.0.key_id, caller.0.subject);
    let (governor, store) = (state.governor().clone(), state.store().clone());
    let info = compiled.info().clone();
    let (rules, audit_id) = tokio::task::spawn_blocking(move || {
        // Kept first, so a restart serves what is about to be in force.
        let rules = store.put_rules(
            &config.tenant,
            &request.policy,
            &request.config,
            &actor,
            now_ms(),
        )?;
        let audit_id = governor.activate(config, &compiled, &actor)?;
        Ok::<_, ApiError>((rules, audit_id))
    })
    .await
    .map_err(ApiError::internal)??;
    tracing::info!(tenant = %caller.tenant(), version = rules.version, policy = %info.digest, "rules activated");
    Ok(Json(Activated {
        rules,
        policy: info,
        audit_id,
    }))
}

/// The rules in force.
#[derive(Serialize, utoipa::ToSchema)]
pub(super) struct Current {
    rules: Option<StoredRules>,
    policy: PolicyInfo,
}

/// The rules in force for the key's tenant.
#[utoipa::path(get, path = "/v1/rules", tag = "rules",
    responses((status = 200, body = Current), (status = 403, body = Error)),
    security(("api_key" = [])))]
pub(super) async fn current(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Current>, ApiError> {
    caller.require(&[Role::Admin, Role::Auditor])?;
    let policy = state
        .governor()
        .tenant_policy(caller.tenant())?
        .info()
        .clone();
    let rules = state
        .store()
        .active_rules()?
        .into_iter()
        .find(|r| r.tenant == caller.tenant());
    Ok(Json(Current { rules, policy }))
}
