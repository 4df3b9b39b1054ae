//! What the route annotations leave out of the OpenAPI document, added in
//! one place so that every operation says what the service can answer: the
//! refusals every keyed request may get (`401`, `503` with `Retry-After`,
//! `500`), those of every body and query string, and the exact shape of
//! each value the service accepts, so that a value the document allows is
//! one the service takes, and one it does not allow is refused.

use serde_json::{Value, json};

/// The document with every operation's answers and values completed.
pub(super) fn completed(api: utoipa::openapi::OpenApi) -> utoipa::openapi::OpenApi {
    let mut doc = serde_json::to_value(&api).unwrap_or_default();
    complete(&mut doc);
    match serde_json::from_value(doc) {
        Ok(done) => done,
        Err(e) => {
            // Only a change to this file can cause it, and the tests see it.
            tracing::error!(error = %e, "the OpenAPI document could not be completed");
            api
        }
    }
}

fn complete(doc: &mut Value) {
    transaction_values(doc);
    let Some(paths) = doc["paths"].as_object_mut() else {
        return;
    };
    for (path, item) in paths.iter_mut() {
        let Some(item) = item.as_object_mut() else {
            continue;
        };
        for (method, operation) in item.iter_mut() {
            parameter_values(path, method, operation);
            answers(operation);
        }
    }
}

/// An error answer: the JSON error body, `code` saying which.
fn error(description: &str) -> Value {
    json!({
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
    })
}

/// Adds the answers an operation can get beyond its own: from the key
/// check and admission, from reading its body, from reading its query.
fn answers(operation: &mut Value) {
    let keyed = operation.get("security").is_some();
    let has_body = operation.get("requestBody").is_some();
    let has_query = operation["parameters"]
        .as_array()
        .is_some_and(|ps| ps.iter().any(|p| p["in"] == "query"));
    let has_path = operation["parameters"]
        .as_array()
        .is_some_and(|ps| ps.iter().any(|p| p["in"] == "path"));
    let Some(responses) = operation["responses"].as_object_mut() else {
        return;
    };
    let mut add = |status: &str, answer: Value| {
        responses.entry(status.to_string()).or_insert(answer);
    };
    if has_body {
        add(
            "400",
            error("`invalid_json`: the body is not JSON, or not of this request's shape"),
        );
        add(
            "408",
            error("`body_timeout`: the body did not arrive in time; the connection is closed"),
        );
        add("413", error("`body_too_large`: the body is over the limit"));
        add(
            "415",
            error("`unsupported_media_type`: the body is not of the content type required"),
        );
    }
    if has_query || has_path {
        add(
            "400",
            error(
                "`invalid_query` or `invalid_path`: a value is not one this operation takes; `field` names it",
            ),
        );
    }
    if keyed {
        add(
            "401",
            error("`unauthorized`: no API key, an unknown one, or a revoked one"),
        );
        add(
            "403",
            error("`wrong_role` and the like: the key may not do this"),
        );
        let mut busy = error(
            "`overloaded` (too many requests of the tenant, or in all, are running), `sandbox_busy` (every policy sandbox stayed busy for the whole wait) or `store_unavailable`: nothing was done; retry after `Retry-After` seconds",
        );
        busy["headers"] = json!({"Retry-After": {
            "description": "Seconds to wait before sending the request again.",
            "schema": {"type": "integer", "minimum": 1}
        }});
        responses.insert("503".to_string(), busy);
        responses
            .entry("500".to_string())
            .or_insert_with(|| error("`internal`: the service failed; it was logged"));
    }
}

/// A UTC day as the service reads one: `YYYY-MM-DD` from 1970 on. Days
/// after the 28th are left out, so that every day it matches exists.
const DAY: &str = "^(19[7-9][0-9]|[2-9][0-9]{3})-(0[1-9]|1[0-2])-(0[1-9]|1[0-9]|2[0-8])$";

/// Every status a payment can have.
const STATUSES: &[&str] = &[
    "pending_veto",
    "awaiting_approval",
    "executing",
    "executed",
    "execution_failed",
    "vetoed",
    "rejected",
    "expired",
    "blocked",
];

const TIERS: &[&str] = &["autonomous", "supervised", "collaborative", "prohibited"];

/// A listing's cursor as the service writes one (`PageCursor::encode`): the
/// hex of a number (a request time, a notice's id), a `.` and a text (a
/// transaction id, a webhook's URL). The document allows only printable
/// ASCII text in it, so every cursor it allows decodes.
const LIST_CURSOR: &str = "^(3[0-9]){1,18}2e([2-7][0-9a-e]){1,200}$";

/// An exact decimal, as amounts are written.
const DECIMAL: &str = "^[0-9]{1,12}(\\.[0-9]{1,8})?$";

fn parameter_values(path: &str, method: &str, operation: &mut Value) {
    let Some(parameters) = operation["parameters"].as_array_mut() else {
        return;
    };
    let statuses = STATUSES.join("|");
    for p in parameters.iter_mut() {
        let name = p["name"].as_str().unwrap_or_default().to_string();
        let schema = match (path, method, name.as_str()) {
            ("/v1/authorizations", "get", "status") => Some(json!({
                "type": "string",
                "pattern": format!("^({statuses})(,({statuses}))*$"),
            })),
            (_, _, "limit") => Some(json!({"type": "integer", "minimum": 1, "maximum": 1000})),
            (
                "/v1/authorizations" | "/v1/approvals" | "/v1/webhooks/deliveries",
                "get",
                "cursor",
            ) => Some(json!({"type": "string", "pattern": LIST_CURSOR})),
            ("/v1/audit/records", "get", "status") => {
                Some(json!({"type": "string", "enum": STATUSES}))
            }
            ("/v1/audit/records", "get", "tier") => Some(json!({"type": "string", "enum": TIERS})),
            ("/v1/audit/records", "get", "format") => {
                Some(json!({"type": "string", "enum": ["jsonl", "csv"]}))
            }
            ("/v1/audit/records", "get", "min_amount") => {
                Some(json!({"type": "string", "pattern": DECIMAL}))
            }
            (_, _, "from" | "to" | "day") => Some(json!({"type": "string", "pattern": DAY})),
            ("/v1/webhooks/deliveries", "get", "state") => Some(json!({
                "type": "string", "enum": ["pending", "failing", "given_up", "delivered"],
            })),
            ("/v1/approvals/{tx_id}/{act}", "post", "act") => Some(json!({
                "type": "string", "enum": ["approve", "reject", "veto"],
            })),
            (_, _, "tx_id") => Some(id_schema(128)),
            _ => None,
        };
        if let Some(schema) = schema {
            p["schema"] = schema;
        }
        if (path, name.as_str()) == ("/v1/reports/daily", "day") {
            p["required"] = json!(true);
        }
    }
}

/// Characters no identifier may hold: whitespace, control characters,
/// and the format and bidirectional controls that make look-alikes.
const NOT_IN_IDS: &str = "\\s\\x00-\\x1f\\x7f-\\x9f\\u00ad\\u0600-\\u0605\\u061c\\u06dd\\u070f\\u180e\\u200b-\\u200f\\u202a-\\u202e\\u2060-\\u2064\\u2066-\\u206f\\ufeff\\ufff9-\\ufffb";

/// A single-line identifier of at most `bytes` bytes. The document counts
/// characters, so it allows a quarter as many: any four-byte character
/// then still fits.
fn id_schema(bytes: usize) -> Value {
    json!({
        "type": "string",
        "minLength": 1,
        "maxLength": bytes / 4,
        "pattern": format!("^[^{NOT_IN_IDS}]+$"),
    })
}

/// Free text of at most `bytes` bytes: no control characters but newlines
/// and tabs.
fn text_schema(bytes: usize, nullable: bool) -> Value {
    let kind = if nullable {
        json!(["string", "null"])
    } else {
        json!("string")
    };
    json!({
        "type": kind,
        "maxLength": bytes / 4,
        "pattern": format!("^[^{REFUSED_IN_TEXT}]*$"),
    })
}

/// What free text may not hold (`model::text::check_free_text`): control
/// characters but newline and tab, and bidi controls.
const REFUSED_IN_TEXT: &str =
    "\\x00-\\x08\\x0b-\\x1f\\x7f-\\x9f\\u061c\\u200e\\u200f\\u202a-\\u202e\\u2066-\\u2069";

/// The transaction's fields as the service checks them
/// (`Transaction::validate`).
fn transaction_values(doc: &mut Value) {
    use tiergate_runtime::model::transaction::limits;
    let Some(properties) =
        doc["components"]["schemas"]["Transaction"]["properties"].as_object_mut()
    else {
        return;
    };
    let mut set = |name: &str, schema: Value| {
        if let Some(p) = properties.get_mut(name) {
            for (k, v) in schema.as_object().into_iter().flatten() {
                p[k] = v.clone();
            }
        }
    };
    set("id", id_schema(limits::ID));
    set("agent", id_schema(limits::ID));
    set("tenant", id_schema(limits::NAME));
    set("category", id_schema(limits::NAME));
    set("recipient", id_schema(limits::RECIPIENT));
    let mut network = id_schema(limits::NAME);
    network["type"] = json!(["string", "null"]);
    set("network", network);
    set(
        "currency",
        json!({"pattern": format!("^[A-Za-z0-9]{{1,{}}}$", limits::CURRENCY)}),
    );
    set("jurisdiction", json!({"pattern": "^[A-Z]{2}$"}));
    // Amounts above zero, in the grammar the service reads (a JSON number
    // is read as exactly too). The document asks for at most twelve digits
    // before the point and eight after, well inside the exact range.
    set(
        "amount",
        json!({"pattern": concat!(
            "^([1-9][0-9]{0,11}(\\.[0-9]{1,8})?",
            "|0\\.(0{0,7}[1-9][0-9]{0,7}))$"
        )}),
    );
    set("justification", text_schema(limits::JUSTIFICATION, true));
    // The host stamps it, whatever a request says.
    set("requested_at_ms", json!({"readOnly": true}));
    set(
        "metadata",
        json!({
            "maxProperties": limits::METADATA_ENTRIES,
            "propertyNames": id_schema(limits::METADATA_KEY),
            "additionalProperties": text_schema(limits::METADATA_VALUE, false),
        }),
    );
    // A verdict's reason says why, in free text: something other than
    // blanks.
    let reason = &mut doc["components"]["schemas"]["VerdictRequest"]["properties"]["reason"];
    if reason.is_object() {
        reason["pattern"] = json!(format!(
            "^[^{REFUSED_IN_TEXT}]*[^\\s{REFUSED_IN_TEXT}][^{REFUSED_IN_TEXT}]*$"
        ));
    }
    // A policy upload is the component's bytes.
    let upload =
        &mut doc["paths"]["/v1/policies"]["post"]["requestBody"]["content"]["application/wasm"];
    if upload.is_object() {
        upload["schema"] = json!({"type": "string", "format": "binary"});
    }
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    #[test]
    fn every_keyed_operation_documents_the_refusals_of_keys_and_admission() {
        let api = super::super::openapi();
        let doc: Value = serde_json::to_value(&api).unwrap();
        let mut checked = 0;
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, operation) in item.as_object().unwrap() {
                if operation.get("security").is_none() {
                    continue;
                }
                for status in ["401", "403", "500", "503"] {
                    assert!(
                        operation["responses"].get(status).is_some(),
                        "{method} {path} does not document {status}"
                    );
                }
                checked += 1;
            }
        }
        assert!(checked >= 14, "{checked}");
    }
}
