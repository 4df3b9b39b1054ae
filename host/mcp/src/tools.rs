//! The tools an agent calls, each one or two calls to tiergate's API with
//! the agent's own key, answered as JSON (the structured content) and in
//! words.

use std::sync::Arc;

use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{
    CallToolResult, ContentBlock, Extensions, Implementation, ServerCapabilities, ServerConfig,
};
use rmcp::{ServerHandler, tool, tool_handler, tool_router};
use serde_json::{Map, Value, json};

use crate::api::{Api, ApiCall, ApiReply, ApiUnreachable, Method, segment};
use crate::args::{LimitsArgs, ListArgs, PaymentArgs, StatusArgs, X402Args};
use crate::words;

/// The names of the tools, in the order they are listed.
pub const TOOL_NAMES: [&str; 5] = [
    "request_payment",
    "pay_x402",
    "payment_status",
    "my_payments",
    "spending_limits",
];

/// Whose key the tools call the API with.
#[derive(Clone)]
pub enum Credentials {
    /// One key for every call: `tiergate mcp` over stdio, started with the
    /// agent's key.
    Key(String),
    /// Each call's own HTTP request's `Authorization: Bearer` key: the
    /// streamable HTTP service at `/mcp`.
    Bearer,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credentials::Key(_) => f.write_str("Key(<secret>)"),
            Credentials::Bearer => f.write_str("Bearer"),
        }
    }
}

/// The MCP server: tiergate's tools over an [`Api`].
#[derive(Clone)]
pub struct Tiergate {
    api: Arc<dyn Api>,
    credentials: Credentials,
    tool_router: ToolRouter<Tiergate>,
}

/// The page size of `my_payments` when none is asked for, and the largest.
const DEFAULT_PAGE: u32 = 20;
const MAX_PAGE: u32 = 100;

/// What the server tells an agent on connecting.
const INSTRUCTIONS: &str = "tiergate governs what this agent may spend. Every payment is classified into a tier: autonomous (executes at once), supervised (executes after a short veto window unless a budget owner vetoes), collaborative (waits for a budget owner's approval, rejected automatically after a timeout) or prohibited (blocked). Pay with request_payment, or pay_x402 for a resource that answered HTTP 402; give each payment a new id and reuse that id to retry or to follow it with payment_status. Check spending_limits before large payments.";

#[tool_router(router = tool_router)]
impl Tiergate {
    /// The tools over `api`, calling it with `credentials`.
    pub fn new(api: Arc<dyn Api>, credentials: Credentials) -> Self {
        Tiergate {
            api,
            credentials,
            tool_router: Self::tool_router(),
        }
    }

    /// Ask to make a payment. tiergate classifies it into a tier and answers
    /// at once: executed now (autonomous), executes after a veto window
    /// (supervised), waits for a budget owner's approval (collaborative) or
    /// blocked (prohibited), with the audit id and, when held or refused,
    /// the policy's suggestion. The same id with the same payment returns
    /// the same answer and never pays twice.
    #[tool(
        name = "request_payment",
        annotations(
            title = "Request a payment",
            read_only_hint = false,
            destructive_hint = false,
            idempotent_hint = true,
            open_world_hint = true
        )
    )]
    async fn request_payment(
        &self,
        Parameters(args): Parameters<PaymentArgs>,
        extensions: Extensions,
    ) -> CallToolResult {
        answer(self.pay(args, &extensions).await)
    }

    /// Pay for a resource that answered HTTP 402 (x402 v2): hand over the
    /// PaymentRequired exactly as received. tiergate picks an option it can
    /// govern, classifies the payment like any other, and signs it with the
    /// tenant's key only once it executes: at once when autonomous, after
    /// the veto window or an owner's approval otherwise. When signed, the
    /// answer carries the header to retry the resource's request with.
    #[tool(
        name = "pay_x402",
        annotations(
            title = "Pay an x402 payment request",
            read_only_hint = false,
            destructive_hint = false,
            idempotent_hint = true,
            open_world_hint = true
        )
    )]
    async fn pay_x402(
        &self,
        Parameters(args): Parameters<X402Args>,
        extensions: Extensions,
    ) -> CallToolResult {
        answer(self.pay_x402_request(args, &extensions).await)
    }

    /// Where a payment stands, by its id: its tier, status and what happens
    /// next; the signed x402 payload once it is signed.
    #[tool(
        name = "payment_status",
        annotations(
            title = "A payment's status",
            read_only_hint = true,
            destructive_hint = false,
            idempotent_hint = true,
            open_world_hint = false
        )
    )]
    async fn payment_status(
        &self,
        Parameters(args): Parameters<StatusArgs>,
        extensions: Extensions,
    ) -> CallToolResult {
        answer(self.status(args, &extensions).await)
    }

    /// The payments this key asked for, newest first, a page at a time;
    /// optionally only some statuses.
    #[tool(
        name = "my_payments",
        annotations(
            title = "My recent payments",
            read_only_hint = true,
            destructive_hint = false,
            idempotent_hint = true,
            open_world_hint = false
        )
    )]
    async fn my_payments(
        &self,
        Parameters(args): Parameters<ListArgs>,
        extensions: Extensions,
    ) -> CallToolResult {
        answer(self.list(args, &extensions).await)
    }

    /// What this agent may still spend before each guardrail escalates a
    /// payment to a stricter tier, with each guardrail's window, and what
    /// the tenant's tiers mean.
    #[tool(
        name = "spending_limits",
        annotations(
            title = "Spending limits",
            read_only_hint = true,
            destructive_hint = false,
            idempotent_hint = true,
            open_world_hint = false
        )
    )]
    async fn spending_limits(
        &self,
        Parameters(args): Parameters<LimitsArgs>,
        extensions: Extensions,
    ) -> CallToolResult {
        answer(self.limits(args, &extensions).await)
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for Tiergate {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(
                Implementation::new("tiergate", env!("CARGO_PKG_VERSION"))
                    .with_title("tiergate: governed payments for agents"),
            )
            .with_instructions(INSTRUCTIONS)
    }
}

/// A tool's answer: JSON and words, or a failure.
struct Answer {
    words: String,
    json: Value,
}

/// Why a tool gives no answer.
enum Failure {
    /// The API refused: its status and error body.
    Api { status: u16, body: Value },
    /// The API did not answer.
    Unreachable(ApiUnreachable),
    /// The call carries no key.
    NoKey,
    /// A value the tool needs and could not find.
    Missing(String),
}

impl From<ApiUnreachable> for Failure {
    fn from(e: ApiUnreachable) -> Self {
        Failure::Unreachable(e)
    }
}

/// The tool result of `outcome`: the words, then the JSON as text too for
/// clients that show no structured content; or a tool error (`isError`)
/// whose text starts with the API's error code.
fn answer(outcome: Result<Answer, Failure>) -> CallToolResult {
    match outcome {
        Ok(Answer { words, json }) => {
            let mut result = CallToolResult::success(vec![
                ContentBlock::text(words),
                ContentBlock::text(json.to_string()),
            ]);
            result.structured_content = Some(json);
            result
        }
        Err(failure) => {
            let (text, json) = refusal(failure);
            let mut result = CallToolResult::error(vec![ContentBlock::text(text)]);
            result.structured_content = Some(json);
            result
        }
    }
}

/// A failure in words and as JSON: `{"error": {"code", "message", "field"}, "status"}`.
fn refusal(failure: Failure) -> (String, Value) {
    match failure {
        Failure::Api { status, body } => {
            let error = &body["error"];
            let code = error["code"]
                .as_str()
                .map(str::to_string)
                .unwrap_or_else(|| format!("http_{status}"));
            let message = match (error["message"].as_str(), &body) {
                (Some(m), _) => m.to_string(),
                (None, Value::String(s)) if !s.is_empty() => s.clone(),
                _ => format!("tiergate answered HTTP {status}"),
            };
            let mut text = format!("{code}: {message}");
            if let Some(field) = error["field"].as_str() {
                text.push_str(&format!(" (field `{field}`)"));
            }
            let json = json!({"error": {"code": code, "message": message,
                "field": error.get("field").cloned().unwrap_or(Value::Null)}, "status": status});
            (text, json)
        }
        Failure::Unreachable(e) => {
            let cause = std::error::Error::source(&e)
                .map(|s| s.to_string())
                .unwrap_or_default();
            let message = format!(
                "tiergate did not answer at {}: {cause}. Check that the service is running there and retry with the same id: a payment it already recorded is answered again, never paid twice",
                e.at
            );
            (
                format!("unreachable: {message}"),
                json!({"error": {"code": "unreachable", "message": message, "field": null}}),
            )
        }
        Failure::NoKey => {
            let message = "send your API key as `Authorization: Bearer tg_...`";
            (
                format!("unauthorized: {message}"),
                json!({"error": {"code": "unauthorized", "message": message, "field": null}, "status": 401}),
            )
        }
        Failure::Missing(message) => (
            format!("missing_argument: {message}"),
            json!({"error": {"code": "missing_argument", "message": message, "field": null}}),
        ),
    }
}

/// Who pays: the tenant and agent a payment is sent for.
struct Payer {
    tenant: String,
    agent: String,
}

impl Tiergate {
    /// The key a call is made with.
    fn key(&self, extensions: &Extensions) -> Result<String, Failure> {
        match &self.credentials {
            Credentials::Key(key) => Ok(key.clone()),
            Credentials::Bearer => extensions
                .get::<http::request::Parts>()
                .and_then(|parts| parts.headers.get(http::header::AUTHORIZATION))
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "))
                .map(|k| k.trim().to_string())
                .ok_or(Failure::NoKey),
        }
    }

    /// Calls the API; a refusal is a [`Failure`].
    async fn send(
        &self,
        key: &str,
        method: Method,
        path_and_query: String,
        body: Option<Value>,
    ) -> Result<ApiReply, Failure> {
        let reply = self
            .api
            .call(ApiCall {
                method,
                path_and_query,
                key: key.to_string(),
                body,
            })
            .await?;
        if reply.is_success() {
            Ok(reply)
        } else {
            Err(Failure::Api {
                status: reply.status,
                body: reply.body,
            })
        }
    }

    /// The tenant and agent to pay as: what the caller named, the rest from
    /// the key (`GET /v1/limits` names the key's tenant and, for an agent's
    /// key, its agent).
    async fn payer(
        &self,
        key: &str,
        tenant: Option<String>,
        agent: Option<String>,
    ) -> Result<Payer, Failure> {
        if let (Some(tenant), Some(agent)) = (&tenant, &agent) {
            return Ok(Payer {
                tenant: tenant.clone(),
                agent: agent.clone(),
            });
        }
        let path = match &agent {
            Some(a) => format!("/v1/limits?agent={}", segment(a)),
            None => "/v1/limits".to_string(),
        };
        let who = match self.send(key, Method::Get, path, None).await {
            Ok(reply) => reply.body,
            Err(Failure::Api { status: 404, .. }) => {
                return Err(Failure::Missing(
                    "this service does not say which tenant and agent the key pays for: give `tenant` and `agent`".into(),
                ));
            }
            Err(e) => return Err(e),
        };
        let named = |field: &str| who[field].as_str().map(str::to_string);
        Ok(Payer {
            tenant: tenant.or_else(|| named("tenant")).ok_or_else(|| {
                Failure::Missing("the key's tenant is not known: give `tenant`".into())
            })?,
            agent: agent.or_else(|| named("agent")).ok_or_else(|| {
                Failure::Missing("this key pays for any agent: give `agent`".into())
            })?,
        })
    }

    async fn pay(&self, args: PaymentArgs, extensions: &Extensions) -> Result<Answer, Failure> {
        let key = self.key(extensions)?;
        let payer = self.payer(&key, args.tenant, args.agent).await?;
        let mut body = json!({
            "id": args.id, "tenant": payer.tenant, "agent": payer.agent,
            "amount": args.amount, "currency": args.currency, "category": args.category,
            "recipient": args.recipient, "recipient_trust": args.recipient_trust,
        });
        let optional = [
            ("jurisdiction", args.jurisdiction.map(Value::String)),
            ("justification", args.justification.map(Value::String)),
            ("network", args.network.map(Value::String)),
            ("metadata", args.metadata.map(Value::Object)),
        ];
        for (field, value) in optional {
            if let Some(value) = value {
                body[field] = value;
            }
        }
        let reply = self
            .send(&key, Method::Post, "/v1/authorizations".into(), Some(body))
            .await?;
        let mut words = words::authorization(&reply.body, None);
        if reply.status == 200 {
            words.push_str(" (This id was sent before: this is that payment's current state.)");
        }
        Ok(Answer {
            words,
            json: reply.body,
        })
    }

    async fn pay_x402_request(
        &self,
        args: X402Args,
        extensions: &Extensions,
    ) -> Result<Answer, Failure> {
        let key = self.key(extensions)?;
        let agent = match args.agent {
            Some(agent) => agent,
            None => self.payer(&key, args.tenant.clone(), None).await?.agent,
        };
        let mut body = json!({
            "id": args.id, "agent": agent, "category": args.category,
            "payment_required": Value::Object(args.payment_required),
        });
        if let Some(j) = args.justification {
            body["justification"] = Value::String(j);
        }
        if let Some(t) = args.tenant {
            body["tenant"] = Value::String(t);
        }
        let reply = self
            .send(&key, Method::Post, "/v1/x402/payments".into(), Some(body))
            .await?;
        let mut words = words::authorization(&reply.body["authorization"], Some(&reply.body));
        if reply.status == 200 {
            words.push_str(" (This id was sent before: this is that payment's current state.)");
        }
        Ok(Answer {
            words,
            json: reply.body,
        })
    }

    async fn status(&self, args: StatusArgs, extensions: &Extensions) -> Result<Answer, Failure> {
        let key = self.key(extensions)?;
        let id = segment(&args.id);
        let auth = self
            .send(&key, Method::Get, format!("/v1/authorizations/{id}"), None)
            .await?
            .body;
        if is_x402(&auth) {
            match self
                .send(&key, Method::Get, format!("/v1/x402/payments/{id}"), None)
                .await
            {
                Ok(reply) => {
                    let x402 = reply.body;
                    return Ok(Answer {
                        words: words::authorization(&x402["authorization"], Some(&x402)),
                        json: x402,
                    });
                }
                // Not one this service signs: the payment as it stands.
                Err(Failure::Api { status: 404, .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(Answer {
            words: words::authorization(&auth, None),
            json: auth,
        })
    }

    async fn list(&self, args: ListArgs, extensions: &Extensions) -> Result<Answer, Failure> {
        let key = self.key(extensions)?;
        let limit = args.limit.unwrap_or(DEFAULT_PAGE).clamp(1, MAX_PAGE);
        let mut path = format!("/v1/authorizations?limit={limit}");
        if let Some(statuses) = args.status.filter(|s| !s.is_empty()) {
            path.push_str(&format!("&status={}", segment(&statuses.join(","))));
        }
        if let Some(cursor) = args.cursor {
            path.push_str(&format!("&cursor={}", segment(&cursor)));
        }
        let reply = self.send(&key, Method::Get, path, None).await?;
        let payments: Vec<Value> = reply
            .body
            .as_array()
            .into_iter()
            .flatten()
            .map(summary)
            .collect();
        let words = words::page(&payments, reply.next_cursor.as_deref());
        Ok(Answer {
            words,
            json: json!({"payments": payments, "next_cursor": reply.next_cursor}),
        })
    }

    async fn limits(&self, args: LimitsArgs, extensions: &Extensions) -> Result<Answer, Failure> {
        let key = self.key(extensions)?;
        let path = match &args.agent {
            Some(a) => format!("/v1/limits?agent={}", segment(a)),
            None => "/v1/limits".to_string(),
        };
        let limits = self.send(&key, Method::Get, path, None).await?.body;
        Ok(Answer {
            words: words::limits(&limits),
            json: limits,
        })
    }
}

/// Whether tiergate took the payment as an x402 payment (its metadata
/// carries the option it chose).
fn is_x402(auth: &Value) -> bool {
    auth["transaction"]["metadata"]
        .as_object()
        .is_some_and(|m| m.keys().any(|k| k.starts_with("x402")))
}

/// A payment of a listing, as an agent needs it.
fn summary(auth: &Value) -> Value {
    let tx = &auth["transaction"];
    let mut out = Map::new();
    for (field, value) in [
        ("id", &tx["id"]),
        ("amount", &tx["amount"]),
        ("currency", &tx["currency"]),
        ("category", &tx["category"]),
        ("recipient", &tx["recipient"]),
        ("tier", &auth["tier"]),
        ("status", &auth["status"]),
        ("audit_id", &auth["audit_id"]),
        ("deadline_ms", &auth["deadline_ms"]),
        ("suggestion", &auth["suggestion"]),
    ] {
        if !value.is_null() {
            out.insert(field.to_string(), value.clone());
        }
    }
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// An API that answers from a script and records what it was asked.
    struct Scripted {
        replies: Mutex<Vec<Result<ApiReply, ApiUnreachable>>>,
        calls: Mutex<Vec<ApiCall>>,
    }

    impl Api for Scripted {
        fn call(&self, call: ApiCall) -> crate::ApiFuture<'_> {
            self.calls.lock().unwrap().push(call);
            let next = self.replies.lock().unwrap().remove(0);
            Box::pin(async move { next })
        }
    }

    fn reply(status: u16, body: Value) -> Result<ApiReply, ApiUnreachable> {
        Ok(ApiReply {
            status,
            body,
            next_cursor: None,
        })
    }

    fn tools(replies: Vec<Result<ApiReply, ApiUnreachable>>) -> (Tiergate, Arc<Scripted>) {
        let api = Arc::new(Scripted {
            replies: Mutex::new(replies),
            calls: Mutex::new(Vec::new()),
        });
        (
            Tiergate::new(api.clone(), Credentials::Key("tg_kagent_secret".into())),
            api,
        )
    }

    fn payment(extra: Value) -> PaymentArgs {
        let mut v = json!({"id": "tx-1", "amount": "0.02", "currency": "USDC",
            "category": "embeddings", "recipient": "embeddings.vendor.example",
            "recipient_trust": "verified"});
        for (k, val) in extra.as_object().unwrap() {
            v[k] = val.clone();
        }
        serde_json::from_value(v).unwrap()
    }

    fn executed() -> Value {
        json!({"transaction": {"id": "tx-1", "amount": "0.02", "currency": "USDC",
            "category": "embeddings", "recipient": "embeddings.vendor.example",
            "metadata": {}},
            "audit_id": "aud-2026-12-06-001", "tier": "autonomous", "status": "executed"})
    }

    fn text(result: &CallToolResult) -> String {
        result
            .content
            .iter()
            .filter_map(|c| c.as_text().map(|t| t.text.clone()))
            .collect::<Vec<_>>()
            .join("\n")
    }

    #[tokio::test]
    async fn a_payment_without_tenant_or_agent_takes_them_from_the_key() {
        let (tools, api) = tools(vec![
            reply(
                200,
                json!({"tenant": "demo", "agent": "procurement-agent-prod"}),
            ),
            reply(201, executed()),
        ]);
        let result = answer(tools.pay(payment(json!({})), &Extensions::new()).await);
        assert_eq!(result.is_error, Some(false), "{}", text(&result));
        assert_eq!(result.structured_content, Some(executed()));
        assert!(text(&result).contains("Executed now."), "{}", text(&result));
        let calls = api.calls.lock().unwrap();
        assert_eq!(calls[0].path_and_query, "/v1/limits");
        assert_eq!(calls[1].method, Method::Post);
        assert_eq!(calls[1].path_and_query, "/v1/authorizations");
        assert_eq!(calls[1].key, "tg_kagent_secret");
        let body = calls[1].body.as_ref().unwrap();
        assert_eq!(body["tenant"], "demo");
        assert_eq!(body["agent"], "procurement-agent-prod");
        assert_eq!(body["amount"], "0.02");
        assert!(body.get("jurisdiction").is_none(), "{body}");
    }

    #[tokio::test]
    async fn a_payment_naming_its_tenant_and_agent_is_sent_as_named() {
        let (tools, api) = tools(vec![reply(201, executed())]);
        // As a client sends it: JSON text, the number written with its scale.
        let extra: Value = serde_json::from_str(
            r#"{"tenant": "demo", "agent": "a", "amount": 89.00, "metadata": {"order": "7"}}"#,
        )
        .unwrap();
        let args = payment(extra);
        answer(tools.pay(args, &Extensions::new()).await);
        let calls = api.calls.lock().unwrap();
        assert_eq!(calls.len(), 1);
        let body = calls[0].body.as_ref().unwrap();
        // A JSON number stays the number it was written as.
        assert_eq!(body["amount"].to_string(), "89.00");
        assert_eq!(body["metadata"], json!({"order": "7"}));
    }

    #[tokio::test]
    async fn a_service_that_cannot_name_the_tenant_asks_for_it() {
        let (tools, _) = tools(vec![reply(
            404,
            json!({"error": {"code": "not_found", "message": "no such route"}}),
        )]);
        let result = answer(tools.pay(payment(json!({})), &Extensions::new()).await);
        assert_eq!(result.is_error, Some(true));
        assert!(
            text(&result).starts_with("missing_argument: ") && text(&result).contains("`tenant`"),
            "{}",
            text(&result)
        );
    }

    #[tokio::test]
    async fn an_api_refusal_is_a_tool_error_with_its_code_message_and_field() {
        let refusal = json!({"error": {"code": "agent_mismatch",
            "message": "this key speaks for agent a, not b", "field": "agent"}});
        let (tools, _) = tools(vec![reply(403, refusal)]);
        let args = payment(json!({"tenant": "demo", "agent": "b"}));
        let result = answer(tools.pay(args, &Extensions::new()).await);
        assert_eq!(result.is_error, Some(true));
        assert_eq!(
            text(&result),
            "agent_mismatch: this key speaks for agent a, not b (field `agent`)"
        );
        let json = result.structured_content.unwrap();
        assert_eq!(json["status"], 403);
        assert_eq!(json["error"]["code"], "agent_mismatch");
    }

    #[tokio::test]
    async fn an_unreachable_service_is_a_tool_error_saying_what_to_do() {
        let gone = Err(ApiUnreachable::new(
            "http://127.0.0.1:9",
            std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "connection refused"),
        ));
        let (tools, _) = tools(vec![gone]);
        let result = answer(tools.list(ListArgs::default(), &Extensions::new()).await);
        assert_eq!(result.is_error, Some(true));
        let said = text(&result);
        assert!(
            said.starts_with(
                "unreachable: tiergate did not answer at http://127.0.0.1:9: connection refused"
            ),
            "{said}"
        );
        assert!(said.contains("retry with the same id"), "{said}");
    }

    #[tokio::test]
    async fn over_http_each_call_uses_its_own_requests_bearer_key() {
        let api = Arc::new(Scripted {
            replies: Mutex::new(vec![reply(200, json!([]))]),
            calls: Mutex::new(Vec::new()),
        });
        let tools = Tiergate::new(api.clone(), Credentials::Bearer);
        let (parts, ()) = http::Request::builder()
            .header("authorization", "Bearer tg_kfrom_request")
            .body(())
            .unwrap()
            .into_parts();
        let mut extensions = Extensions::new();
        extensions.insert(parts);
        answer(tools.list(ListArgs::default(), &extensions).await);
        assert_eq!(api.calls.lock().unwrap()[0].key, "tg_kfrom_request");
        // Without one, no call is made.
        let result = answer(tools.list(ListArgs::default(), &Extensions::new()).await);
        assert!(
            text(&result).starts_with("unauthorized: "),
            "{}",
            text(&result)
        );
        assert_eq!(api.calls.lock().unwrap().len(), 1);
    }

    #[tokio::test]
    async fn the_status_of_an_x402_payment_carries_its_signed_payload() {
        let mut auth = executed();
        auth["transaction"]["metadata"] = json!({"x402.accepted": "{}"});
        let signed = json!({"authorization": auth, "accepted": {}, "signer": "0xabc",
            "payment": {"header": "PAYMENT-SIGNATURE", "value": "eyJ4NDAy"}});
        let (tools, api) = tools(vec![reply(200, auth.clone()), reply(200, signed.clone())]);
        let args = StatusArgs { id: "x/1".into() };
        let result = answer(tools.status(args, &Extensions::new()).await);
        assert_eq!(result.structured_content, Some(signed));
        let said = text(&result);
        assert!(said.contains("Signed now."), "{said}");
        assert!(
            said.contains("header PAYMENT-SIGNATURE: eyJ4NDAy"),
            "{said}"
        );
        let calls = api.calls.lock().unwrap();
        assert_eq!(calls[0].path_and_query, "/v1/authorizations/x%2F1");
        assert_eq!(calls[1].path_and_query, "/v1/x402/payments/x%2F1");
    }

    #[tokio::test]
    async fn a_page_asks_for_its_statuses_and_cursor_and_gives_the_next_one() {
        let (tools, api) = tools(vec![Ok(ApiReply {
            status: 200,
            body: json!([executed()]),
            next_cursor: Some("c2".into()),
        })]);
        let args = ListArgs {
            limit: Some(500),
            cursor: Some("a+b=".into()),
            status: Some(vec!["executed".into(), "blocked".into()]),
        };
        let result = answer(tools.list(args, &Extensions::new()).await);
        assert_eq!(
            api.calls.lock().unwrap()[0].path_and_query,
            "/v1/authorizations?limit=100&status=executed%2Cblocked&cursor=a%2Bb%3D"
        );
        let json = result.structured_content.clone().unwrap();
        assert_eq!(json["next_cursor"], "c2");
        assert_eq!(json["payments"][0]["id"], "tx-1");
        assert_eq!(json["payments"][0]["status"], "executed");
        assert!(text(&result).contains("cursor \"c2\""), "{}", text(&result));
    }
}
