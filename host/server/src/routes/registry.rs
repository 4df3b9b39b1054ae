//! The tenant's registry of recipients and agents, as its admin reads and
//! changes it. A change is new rules: the configuration in force with one
//! entry put or removed and the policy unchanged, checked and activated as
//! any rules are, and recorded as a `policy_activated` event naming the
//! key. So the registry has one home, the tenant's configuration, and
//! every version of it is kept.

use axum::Json;
use axum::extract::{Path as UrlPath, State};
use serde::{Deserialize, Serialize};
use tiergate_policy::{RecipientTrust, Tier};

use super::rules::{Activated, activate_edited};
use crate::body::JsonText;
use crate::error::Body as Error;
use crate::{ApiError, AppState, Caller};
use tiergate_core::governance::{Agent, Recipient, TrustSettings, normalize_recipient};
use tiergate_core::store::Role;

/// The registry in force.
#[derive(Serialize, utoipa::ToSchema)]
pub(super) struct Registry {
    /// Where recipient trust, jurisdiction and agents come from (`[trust]`).
    #[schema(value_type = Object)]
    trust: TrustSettings,
    /// The recipients the tenant knows, by normalised id.
    #[schema(value_type = Vec<Object>)]
    recipients: Vec<Recipient>,
    /// The agents the tenant lists (agents named only by a team are in the
    /// team's list in the rules).
    #[schema(value_type = Vec<Object>)]
    agents: Vec<Agent>,
}

/// The key's tenant's registry (admin and auditor keys).
#[utoipa::path(get, path = "/v1/registry", tag = "rules",
    responses((status = 200, body = Registry), (status = 403, body = Error)),
    security(("api_key" = [])))]
pub(super) async fn show(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Registry>, ApiError> {
    caller.require(&[Role::Admin, Role::Auditor])?;
    let config = state.governor().tenant_config(caller.tenant())?;
    Ok(Json(Registry {
        trust: config.trust,
        recipients: config.recipients,
        agents: config.agents,
    }))
}

/// A recipient's entry.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct RecipientEntry {
    /// `verified`, `known` or `unknown`: `verified` is granted only here.
    #[schema(value_type = tiergate_runtime::model::schema::TrustName)]
    trust: RecipientTrust,
    /// Its ISO 3166-1 alpha-2 code, in capitals.
    jurisdiction: Option<String>,
    /// The categories it may be paid for; any when absent.
    categories: Option<Vec<String>>,
    /// The most one payment to it may be.
    max_per_payment: Option<LimitEntry>,
}

/// A limit on one payment.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct LimitEntry {
    /// An amount in the tenant's currency, as a decimal string.
    #[schema(example = "500.00")]
    limit: String,
    /// The tier of a payment over it: supervised, collaborative (when
    /// absent) or prohibited.
    #[schema(value_type = Option<tiergate_runtime::model::schema::TierName>)]
    escalate_to: Option<Tier>,
}

/// An agent's entry.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct AgentEntry {
    /// A `[[teams]]` name: the agent joins that team's budget.
    team: Option<String>,
    /// One of the tenant's owners, who answers for the agent.
    owner: Option<String>,
}

/// Lists a recipient, or changes its entry (admin keys): new rules, in
/// force at once and recorded like any activation.
#[utoipa::path(put, path = "/v1/registry/recipients/{id}", tag = "rules",
    params(("id" = String, Path, description = "The recipient's identifier, as payments name it")),
    request_body(content = RecipientEntry, content_type = "application/json"),
    responses(
        (status = 200, body = Activated),
        (status = 400, description = "Not JSON, or a field an entry does not have", body = Error),
        (status = 403, body = Error),
        (status = 409, description = "Other activations kept coming while the edit was made; nothing of it was kept", body = Error),
        (status = 404, description = "The tenant has no rules kept by the service", body = Error),
        (status = 413, description = "Body over the limit", body = Error),
        (status = 415, description = "Not application/json", body = Error),
        (status = 422, description = "The entry makes rules that do not load; `field` names it", body = Error),
        (status = 503, description = "No sandbox came free to check the rules; nothing changed", body = Error),
    ),
    security(("api_key" = [])))]
pub(super) async fn put_recipient(
    State(state): State<AppState>,
    caller: Caller,
    UrlPath(id): UrlPath<String>,
    body: JsonText,
) -> Result<Json<Activated>, ApiError> {
    caller.require(&[Role::Admin])?;
    let entry: RecipientEntry = body.parse()?;
    let mut table = toml_edit::Table::new();
    table["id"] = toml_edit::value(id.as_str());
    table["trust"] = toml_edit::value(entry.trust.as_str());
    if let Some(j) = entry.jurisdiction {
        table["jurisdiction"] = toml_edit::value(j);
    }
    if let Some(categories) = entry.categories {
        table["categories"] =
            toml_edit::value(categories.into_iter().collect::<toml_edit::Array>());
    }
    if let Some(limit) = entry.max_per_payment {
        let mut inline = toml_edit::InlineTable::new();
        inline.insert("limit", limit.limit.into());
        if let Some(tier) = limit.escalate_to {
            inline.insert("escalate_to", tier.as_str().into());
        }
        table["max_per_payment"] = toml_edit::value(inline);
    }
    let edited = edit(&state, &caller, "recipients", recipient(&id), Some(table)).await?;
    Ok(Json(edited))
}

/// Takes a recipient off the registry (admin keys).
#[utoipa::path(delete, path = "/v1/registry/recipients/{id}", tag = "rules",
    params(("id" = String, Path, description = "The recipient's identifier")),
    responses(
        (status = 200, body = Activated),
        (status = 403, body = Error),
        (status = 409, description = "Other activations kept coming while the edit was made; nothing of it was kept", body = Error),
        (status = 404, description = "Not listed", body = Error),
    ),
    security(("api_key" = [])))]
pub(super) async fn remove_recipient(
    State(state): State<AppState>,
    caller: Caller,
    UrlPath(id): UrlPath<String>,
) -> Result<Json<Activated>, ApiError> {
    caller.require(&[Role::Admin])?;
    let edited = edit(&state, &caller, "recipients", recipient(&id), None).await?;
    Ok(Json(edited))
}

/// Lists an agent, or changes its entry (admin keys).
#[utoipa::path(put, path = "/v1/registry/agents/{name}", tag = "rules",
    params(("name" = String, Path, description = "The agent's name")),
    request_body(content = AgentEntry, content_type = "application/json"),
    responses(
        (status = 200, body = Activated),
        (status = 400, description = "Not JSON, or a field an entry does not have", body = Error),
        (status = 403, body = Error),
        (status = 409, description = "Other activations kept coming while the edit was made; nothing of it was kept", body = Error),
        (status = 404, description = "The tenant has no rules kept by the service", body = Error),
        (status = 413, description = "Body over the limit", body = Error),
        (status = 415, description = "Not application/json", body = Error),
        (status = 422, description = "The entry makes rules that do not load; `field` names it", body = Error),
        (status = 503, description = "No sandbox came free to check the rules; nothing changed", body = Error),
    ),
    security(("api_key" = [])))]
pub(super) async fn put_agent(
    State(state): State<AppState>,
    caller: Caller,
    UrlPath(name): UrlPath<String>,
    body: JsonText,
) -> Result<Json<Activated>, ApiError> {
    caller.require(&[Role::Admin])?;
    let entry: AgentEntry = body.parse()?;
    let mut table = toml_edit::Table::new();
    table["name"] = toml_edit::value(name.as_str());
    if let Some(team) = entry.team {
        table["team"] = toml_edit::value(team);
    }
    if let Some(owner) = entry.owner {
        table["owner"] = toml_edit::value(owner);
    }
    let edited = edit(
        &state,
        &caller,
        "agents",
        |entry| entry.get("name").and_then(|v| v.as_str()) == Some(name.as_str()),
        Some(table),
    )
    .await?;
    Ok(Json(edited))
}

/// Takes an agent off the list (admin keys). One its team lists stays
/// known: take it off the team too.
#[utoipa::path(delete, path = "/v1/registry/agents/{name}", tag = "rules",
    params(("name" = String, Path, description = "The agent's name")),
    responses(
        (status = 200, body = Activated),
        (status = 403, body = Error),
        (status = 409, description = "Other activations kept coming while the edit was made; nothing of it was kept", body = Error),
        (status = 404, description = "Not listed", body = Error),
    ),
    security(("api_key" = [])))]
pub(super) async fn remove_agent(
    State(state): State<AppState>,
    caller: Caller,
    UrlPath(name): UrlPath<String>,
) -> Result<Json<Activated>, ApiError> {
    caller.require(&[Role::Admin])?;
    let edited = edit(
        &state,
        &caller,
        "agents",
        |entry| entry.get("name").and_then(|v| v.as_str()) == Some(name.as_str()),
        None,
    )
    .await?;
    Ok(Json(edited))
}

/// Picks the registry's entry for the recipient `id`, as payments are
/// matched to it: on the normalised identifier.
fn recipient(id: &str) -> impl Fn(&toml_edit::Table) -> bool {
    let wanted = normalize_recipient(id);
    move |entry| {
        entry
            .get("id")
            .and_then(|v| v.as_str())
            .is_some_and(|other| normalize_recipient(other) == wanted)
    }
}

/// Puts `entry` in place of the first of the `key` array's tables that
/// `same` picks (or after the last), or removes that table when `entry`
/// is `None`, in the rules in force; then activates the result.
async fn edit(
    state: &AppState,
    caller: &Caller,
    key: &str,
    same: impl Fn(&toml_edit::Table) -> bool,
    entry: Option<toml_edit::Table>,
) -> Result<Activated, ApiError> {
    let tenant = caller.tenant().to_string();
    activate_edited(state, caller, |config| {
        let mut doc: toml_edit::DocumentMut = config.parse().map_err(|e| {
            ApiError::internal(format!("the rules in force do not read back as TOML: {e}"))
        })?;
        let item = doc
            .entry(key)
            .or_insert(toml_edit::Item::ArrayOfTables(toml_edit::ArrayOfTables::new()));
        let Some(list) = item.as_array_of_tables_mut() else {
            return Err(ApiError::new(
                axum::http::StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_config",
                format!("`{key}` in the rules in force is not a list of tables ([[{key}]]): change it with POST /v1/rules"),
            ));
        };
        let found = list.iter().position(&same);
        match (entry.clone(), found) {
            (Some(entry), Some(i)) => {
                if let Some(slot) = list.get_mut(i) {
                    *slot = entry;
                }
            }
            (Some(entry), None) => list.push(entry),
            (None, Some(i)) => {
                list.remove(i);
            }
            (None, None) => {
                return Err(ApiError::not_found(format!(
                    "tenant {tenant}'s registry lists no such entry in `{key}`"
                )));
            }
        }
        if list.is_empty() {
            doc.remove(key);
        }
        Ok(doc.to_string())
    })
    .await
}
