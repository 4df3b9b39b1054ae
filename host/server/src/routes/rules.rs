//! The admin's side: uploading a policy component, checking and activating
//! rules. Uploads belong to the tenant that made them, within its quota. A
//! rejected upload or activation changes nothing: rules are kept only once
//! every check of the activation passed. An activation is swapped in
//! atomically, and requests in flight finish on the old rules.

use std::path::Path;

use axum::Json;
use axum::extract::{Path as UrlPath, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};

use crate::body::{JsonText, Upload};
use crate::error::Body as Error;
use crate::setup::compile_named;
use crate::{ApiError, AppState, Caller, now_ms};
use tiergate_core::governance::TenantConfig;
use tiergate_core::store::{DeletedPolicy, PutPolicy, Role, StoredRules, UploadedPolicy};
use tiergate_runtime::{CompiledPolicy, LoadError, PolicyInfo};

/// An upload refused by the tenant's quota, naming the setting.
fn over_quota(refused: PutPolicy) -> Option<ApiError> {
    let message = match refused {
        PutPolicy::OverCount { limit } => format!(
            "this tenant keeps {limit} uploaded policies, the most it may (the service's `policy_uploads_per_tenant`); delete one it no longer uses (DELETE /v1/policies/{{digest}}) first"
        ),
        PutPolicy::OverBytes { limit, used } => format!(
            "this tenant's uploads take {used} of the {limit} bytes it may keep (the service's `policy_upload_bytes_per_tenant`); delete one it no longer uses (DELETE /v1/policies/{{digest}}) first"
        ),
        PutPolicy::Stored | PutPolicy::AlreadyStored => return None,
    };
    Some(ApiError::new(
        StatusCode::CONFLICT,
        "quota_exceeded",
        message,
    ))
}

/// Upload a policy component (admin keys): checked (a component of the
/// tiergate policy world, allowed imports only, it answers `info`) and kept
/// under its digest as the key's tenant's, within the tenant's quota
/// (`policy_uploads_per_tenant`, `policy_upload_bytes_per_tenant`): 201 when
/// kept now, 200 when the tenant had uploaded it already. Activating it is
/// a separate step; a refused upload changes nothing.
#[utoipa::path(post, path = "/v1/policies", tag = "rules",
    request_body(content = Vec<u8>, content_type = "application/wasm"),
    responses(
        (status = 201, body = PolicyInfo),
        (status = 200, description = "Uploaded by this tenant before", body = PolicyInfo),
        (status = 403, body = Error),
        (status = 409, description = "Over the tenant's upload quota", body = Error),
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
    let quota = state.upload_quota();
    let tenant = caller.tenant().to_string();
    let (info, outcome) = tokio::task::spawn_blocking(move || {
        // A tenant over its quota gets no compile either.
        let digest = tiergate_runtime::model::digest::sha256(&bytes);
        let kept = store.policies(&tenant)?;
        let known = kept.iter().any(|p| p.digest == digest);
        if !known {
            let used = kept.iter().map(|p| p.bytes).sum();
            if let Some(refused) =
                tiergate_core::store::rules::quota_outcome(quota, kept.len(), used, bytes.len())
                    .and_then(over_quota)
            {
                return Err(refused);
            }
        }
        let compiled = runtime.compile(&bytes).map_err(|e| match e {
            // Nothing is wrong with the upload: no sandbox was free to check it.
            LoadError::SandboxBusy { .. } => ApiError::sandbox_busy(e.to_string()),
            e => ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_policy",
                format!("the upload is not a usable policy: {e}"),
            ),
        })?;
        let info = compiled.info().clone();
        let policy = UploadedPolicy {
            digest: info.digest.clone(),
            name: Some(info.name.clone()),
            version: Some(info.version.clone()),
            bytes: bytes.len() as u64,
            uploaded_ms: now_ms(),
        };
        let outcome = store.put_policy(&tenant, &policy, &bytes, Some(quota))?;
        if let Some(refused) = over_quota(outcome) {
            return Err(refused);
        }
        Ok::<_, ApiError>((info, outcome))
    })
    .await
    .map_err(ApiError::internal)??;
    tracing::info!(tenant = %caller.tenant(), digest = %info.digest, name = %info.name,
        key = %caller.0.key_id, "policy uploaded");
    let status = match outcome {
        PutPolicy::AlreadyStored => StatusCode::OK,
        _ => StatusCode::CREATED,
    };
    Ok((status, Json(info)))
}

/// The policies the key's tenant uploaded, oldest first (admin and auditor
/// keys).
#[utoipa::path(get, path = "/v1/policies", tag = "rules",
    responses((status = 200, body = Vec<UploadedPolicy>), (status = 403, body = Error)),
    security(("api_key" = [])))]
pub(super) async fn policies(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Vec<UploadedPolicy>>, ApiError> {
    caller.require(&[Role::Admin, Role::Auditor])?;
    let (store, tenant) = (state.store().clone(), caller.tenant().to_string());
    let kept = tokio::task::spawn_blocking(move || store.policies(&tenant))
        .await
        .map_err(ApiError::internal)??;
    Ok(Json(kept))
}

/// Delete an upload of the key's tenant (admin keys), unless the rules in
/// force name it.
#[utoipa::path(delete, path = "/v1/policies/{digest}", tag = "rules",
    params(("digest" = String, Path, description = "The upload's `sha256:` digest")),
    responses(
        (status = 200, description = "Deleted"),
        (status = 403, body = Error),
        (status = 404, body = Error),
        (status = 409, description = "The rules in force name it", body = Error),
    ),
    security(("api_key" = [])))]
pub(super) async fn delete_policy(
    State(state): State<AppState>,
    caller: Caller,
    UrlPath(digest): UrlPath<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    caller.require(&[Role::Admin])?;
    let (store, tenant, d) = (
        state.store().clone(),
        caller.tenant().to_string(),
        digest.clone(),
    );
    let outcome = tokio::task::spawn_blocking(move || store.delete_policy(&tenant, &d))
        .await
        .map_err(ApiError::internal)??;
    match outcome {
        DeletedPolicy::Deleted => {
            tracing::info!(tenant = %caller.tenant(), %digest, key = %caller.0.key_id, "policy deleted");
            Ok(Json(serde_json::json!({ "deleted": digest })))
        }
        DeletedPolicy::InUse => Err(ApiError::new(
            StatusCode::CONFLICT,
            "policy_in_use",
            format!("the rules in force name {digest}: activate other rules first"),
        )),
        DeletedPolicy::NotFound => Err(ApiError::not_found(format!(
            "tenant {} uploaded no policy {digest}",
            caller.tenant()
        ))),
    }
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
    prepare_rules(state, caller, body.parse()?).await
}

/// [`prepare`] for rules already read.
async fn prepare_rules(
    state: &AppState,
    caller: &Caller,
    request: RulesRequest,
) -> Result<(RulesRequest, TenantConfig, CompiledPolicy), ApiError> {
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
    let (runtime, named, store, policy, tenant) = (
        state.runtime().clone(),
        state.governor().named_policies(),
        state.store().clone(),
        request.policy.clone(),
        caller.tenant().to_string(),
    );
    let compiled = tokio::task::spawn_blocking(move || {
        compile_named(store.as_ref(), &runtime, &named, &tenant, &policy)
    })
    .await
    .map_err(ApiError::internal)?
    .map_err(|e| match e.downcast_ref::<LoadError>() {
        Some(busy @ LoadError::SandboxBusy { .. }) => ApiError::sandbox_busy(busy.to_string()),
        _ => ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_policy",
            format!("{e:#}"),
        )
        .field("policy"),
    })?;
    let document = config.policy_config_json().map_err(|m| {
        ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_config", m).field("config")
    })?;
    compiled.configure(&document).map_err(|e| match e {
        LoadError::SandboxBusy { .. } => ApiError::sandbox_busy(e.to_string()),
        e => ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_config",
            format!("the policy refuses its configuration: {e}"),
        )
        .field("config"),
    })?;
    // Everything activating checks, so what is checked here is what would
    // be kept.
    state.governor().check_activation(&config, &compiled)?;
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
pub(crate) struct Activated {
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
    let prepared = prepare(&state, &caller, &body).await?;
    let activated = put_in_force(&state, &caller, prepared, None).await?;
    activated
        .map(Json)
        .ok_or_else(|| ApiError::internal("rules were kept without a version to follow"))
}

/// How many times an edit of the rules is made again when another
/// activation (from another replica) came between reading the rules and
/// keeping the edited ones.
const EDIT_TRIES: usize = 3;

/// Activates the tenant's rules with `edit` applied to their
/// configuration and the policy unchanged: how a change to the registry
/// takes effect, as audited as any activation. Edits run one at a time in
/// this process, and are kept only on the version they were made to, so
/// two admins' edits never undo each other.
pub(super) async fn activate_edited(
    state: &AppState,
    caller: &Caller,
    edit: impl Fn(&str) -> Result<String, ApiError>,
) -> Result<Activated, ApiError> {
    static EDITS: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    let _one_at_a_time = EDITS.lock().await;
    for _ in 0..EDIT_TRIES {
        let current = in_force(state, caller.tenant()).await?;
        let request = RulesRequest {
            policy: current.policy.clone(),
            config: edit(&current.config)?,
        };
        let prepared = prepare_rules(state, caller, request).await?;
        if let Some(done) = put_in_force(state, caller, prepared, Some(current.version)).await? {
            return Ok(done);
        }
    }
    Err(ApiError::new(
        StatusCode::CONFLICT,
        "rules_changed",
        format!(
            "the tenant's rules changed {EDIT_TRIES} times while this edit was made; nothing of it was kept: send it again"
        ),
    ))
}

/// The rules kept for `tenant`, which an edit starts from.
pub(super) async fn in_force(state: &AppState, tenant: &str) -> Result<StoredRules, ApiError> {
    let (store, wanted) = (state.store().clone(), tenant.to_string());
    tokio::task::spawn_blocking(move || store.rules_of(&wanted))
        .await
        .map_err(ApiError::internal)??
        .ok_or_else(|| {
            ApiError::not_found(format!(
                "tenant {tenant} has no rules kept by the service to change; activate rules with POST /v1/rules first"
            ))
        })
}

/// Keeps checked rules and puts them in force, recorded as a
/// `policy_activated` event naming the key.
/// With `after`, only while that is still the latest version: `None`, and
/// nothing kept, when another activation came first.
async fn put_in_force(
    state: &AppState,
    caller: &Caller,
    (request, config, compiled): (RulesRequest, TenantConfig, CompiledPolicy),
    after: Option<u64>,
) -> Result<Option<Activated>, ApiError> {
    let actor = format!("{}:{}", caller.0.key_id, caller.0.subject);
    let (governor, store) = (state.governor().clone(), state.store().clone());
    let info = compiled.info().clone();
    let kept = tokio::task::spawn_blocking(move || {
        // Kept once every check passed (in `prepare`), and before it is in
        // force, so a restart serves what is about to be.
        let (tenant, policy, text, now) =
            (&config.tenant, &request.policy, &request.config, now_ms());
        let Some(rules) = store.put_rules_after(tenant, after, policy, text, &actor, now)? else {
            return Ok(None);
        };
        let audit_id = governor.activate(config, &compiled, &actor)?;
        Ok::<_, ApiError>(Some((rules, audit_id)))
    })
    .await
    .map_err(ApiError::internal)??;
    Ok(kept.map(|(rules, audit_id)| {
        tracing::info!(tenant = %caller.tenant(), version = rules.version, policy = %info.digest, "rules activated");
        Activated {
            rules,
            policy: info,
            audit_id,
        }
    }))
}

/// The rules in force.
#[derive(Serialize, utoipa::ToSchema)]
pub(super) struct Current {
    /// The latest rules kept for the tenant.
    rules: Option<StoredRules>,
    /// The policy classifying its payments (absent while its rules cannot
    /// be loaded).
    policy: Option<PolicyInfo>,
    /// Why the kept rules cannot be loaded, when they cannot: the tenant's
    /// payments are refused until rules that load are activated.
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

/// The rules in force for the key's tenant.
#[utoipa::path(get, path = "/v1/rules", tag = "rules",
    responses((status = 200, body = Current), (status = 403, body = Error), (status = 404, body = Error)),
    security(("api_key" = [])))]
pub(super) async fn current(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Current>, ApiError> {
    caller.require(&[Role::Admin, Role::Auditor])?;
    let governor = state.governor();
    let error = governor.unavailable_reason(caller.tenant());
    let policy = match &error {
        Some(_) => None,
        None => Some(governor.tenant_policy(caller.tenant())?.info().clone()),
    };
    let (store, tenant) = (state.store().clone(), caller.tenant().to_string());
    let rules = tokio::task::spawn_blocking(move || store.rules_of(&tenant))
        .await
        .map_err(ApiError::internal)??;
    Ok(Json(Current {
        rules,
        policy,
        error,
    }))
}
