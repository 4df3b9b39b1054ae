//! tiergate's MCP server driven by `rmcp`'s client, over streamable HTTP
//! (`/mcp` of `tiergate serve`) and over stdio (`tiergate mcp` as a child
//! process): the tools are listed with their schemas and annotations, the
//! article's day through `request_payment` gets the statuses the HTTP API
//! gives, and a wrong key, another tenant's key, an approver's key and an
//! agent paying as another agent are refused as the API refuses them.

use std::process::Stdio;

use rmcp::model::{CallToolRequestParams, CallToolResult, ContentBlock};
use rmcp::service::RunningService;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::transport::{StreamableHttpClientTransport, TokioChildProcess};
use rmcp::{RoleClient, ServiceExt};
use serde_json::{Value, json};

use crate::service::{Served, call, create_key, get, post, tenant_file};

type Client = RunningService<RoleClient, ()>;

const DAY: &str = include_str!("../../examples/article-day.jsonl");

/// An MCP client of the service's `/mcp`, with `key` as its bearer.
async fn over_http(s: &Served, key: &str) -> Client {
    try_over_http(s, key)
        .await
        .expect("the MCP client connects")
}

async fn try_over_http(
    s: &Served,
    key: &str,
) -> Result<Client, rmcp::service::ClientInitializeError> {
    let config =
        StreamableHttpClientTransportConfig::with_uri(format!("{}/mcp", s.base)).auth_header(key);
    ().serve(StreamableHttpClientTransport::from_config(config))
        .await
}

/// An MCP client of `tiergate mcp`, started with `key` in `TIERGATE_KEY`.
async fn over_stdio(s: &Served, key: &str) -> Client {
    let mut command = tokio::process::Command::from(crate::tiergate_command());
    command
        .args(["mcp", "--url", &s.base])
        .env("TIERGATE_KEY", key);
    let (transport, _) = TokioChildProcess::builder(command)
        .stderr(Stdio::inherit())
        .spawn()
        .expect("tiergate mcp starts");
    ().serve(transport).await.expect("the MCP client connects")
}

async fn tool(client: &Client, name: &str, args: Value) -> CallToolResult {
    let args = args.as_object().expect("arguments are an object").clone();
    client
        .call_tool(CallToolRequestParams::new(name.to_string()).with_arguments(args))
        .await
        .unwrap_or_else(|e| panic!("{name} answers: {e}"))
}

/// A result's text blocks, joined.
fn words(r: &CallToolResult) -> String {
    r.content
        .iter()
        .filter_map(|c| match c {
            ContentBlock::Text(t) => Some(t.text.as_str()),
            _ => None,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The answer of a tool that succeeded: its structured content.
fn answered(r: &CallToolResult) -> &Value {
    assert_eq!(r.is_error, Some(false), "{}", words(r));
    r.structured_content.as_ref().expect("structured content")
}

/// The text of a tool error, checked to be one.
fn refused(r: &CallToolResult) -> String {
    assert_eq!(
        r.is_error,
        Some(true),
        "expected a tool error: {}",
        words(r)
    );
    words(r)
}

/// How the API words a refusal: `code: message (field `f`)`.
fn as_the_api_says(body: &Value) -> String {
    let e = &body["error"];
    let mut text = format!(
        "{}: {}",
        e["code"].as_str().unwrap(),
        e["message"].as_str().unwrap()
    );
    if let Some(field) = e["field"].as_str() {
        text.push_str(&format!(" (field `{field}`)"));
    }
    text
}

/// The article's day as the demo tenant's payments, ids prefixed.
fn day(prefix: &str) -> Vec<Value> {
    DAY.lines()
        .map(|line| {
            let mut tx: Value = serde_json::from_str(line).unwrap();
            tx["tenant"] = json!("demo");
            tx["id"] = json!(format!("{prefix}{}", tx["id"].as_str().unwrap()));
            tx
        })
        .collect()
}

const ARTICLE: [(&str, &str); 6] = [
    ("autonomous", "executed"),
    ("autonomous", "executed"),
    ("supervised", "pending_veto"),
    ("supervised", "pending_veto"),
    ("collaborative", "awaiting_approval"),
    ("prohibited", "blocked"),
];

async fn check_tools_listed(client: &Client) {
    let tools = client.list_all_tools().await.expect("tools are listed");
    let mut names: Vec<&str> = tools.iter().map(|t| t.name.as_ref()).collect();
    names.sort();
    let mut expected = tiergate_mcp::TOOL_NAMES.to_vec();
    expected.sort();
    assert_eq!(names, expected);
    for t in &tools {
        let schema = Value::Object((*t.input_schema).clone());
        assert_eq!(schema["type"], "object", "{}: {schema}", t.name);
        assert!(schema["properties"].is_object(), "{}: {schema}", t.name);
        assert!(
            t.description.as_deref().is_some_and(|d| d.len() > 40),
            "{} is described",
            t.name
        );
        let a = t.annotations.as_ref().expect("annotations");
        let pays = matches!(t.name.as_ref(), "request_payment" | "pay_x402");
        assert_eq!(a.read_only_hint, Some(!pays), "{}", t.name);
        assert_eq!(a.destructive_hint, Some(false), "{}", t.name);
        assert_eq!(a.idempotent_hint, Some(true), "{}", t.name);
    }
    let pay = tools.iter().find(|t| t.name == "request_payment").unwrap();
    let schema = Value::Object((*pay.input_schema).clone());
    let required: Vec<&str> = schema["required"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    for field in [
        "id",
        "amount",
        "currency",
        "category",
        "recipient",
        "recipient_trust",
    ] {
        assert!(required.contains(&field), "{field} in {schema}");
    }
    assert!(!required.contains(&"tenant"), "{schema}");
    let x402 = tools.iter().find(|t| t.name == "pay_x402").unwrap();
    let schema = Value::Object((*x402.input_schema).clone()).to_string();
    assert!(schema.contains("payment_required"), "{schema}");
    assert!(schema.contains("maxTimeoutSeconds"), "{schema}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tools_are_listed_with_schemas_and_annotations_over_http_and_stdio() {
    let dir = tempfile::tempdir().unwrap();
    let s = Served::start(dir.path(), &[]);
    let http = over_http(&s, &s.key("agent")).await;
    let info = http.peer_info().expect("the server introduced itself");
    assert_eq!(info.server_info.as_ref().unwrap().name, "tiergate");
    check_tools_listed(&http).await;
    http.cancel().await.unwrap();
    let stdio = over_stdio(&s, &s.key("agent")).await;
    check_tools_listed(&stdio).await;
    stdio.cancel().await.unwrap();
}

/// The article's day through `request_payment`, then through the API:
/// the same tiers and statuses, and the tools' answers are the API's.
async fn the_day_through(client: &Client, s: &Served, prefix: &str) {
    let agent = s.key("agent");
    let mut through_mcp = Vec::new();
    let mut through_api = Vec::new();
    for (tx, (tier, status)) in day(prefix).into_iter().zip(ARTICLE) {
        let r = tool(client, "request_payment", tx.clone()).await;
        let auth = answered(&r).clone();
        through_mcp.push((auth["tier"].clone(), auth["status"].clone()));
        let said = words(&r);
        let audit = auth["audit_id"].as_str().unwrap();
        assert!(said.contains(&format!("Audit id {audit}.")), "{said}");
        assert!(
            said.contains(&format!("tier {tier}, status {status}")),
            "{said}"
        );
        let next = match status {
            "executed" => "Executed now.",
            "pending_veto" => "executes after a 30 s veto window unless a budget owner vetoes it",
            "awaiting_approval" => "waits for a budget owner's approval until",
            _ => "Blocked: it cannot execute; the attempt is recorded and the owners alerted.",
        };
        assert!(said.contains(next), "{said}");
        if status != "executed"
            && let Some(suggestion) = auth["suggestion"].as_str()
        {
            assert!(said.contains(suggestion), "{said}");
        }
        // What the API holds now is what the tool answered.
        let id = tx["id"].as_str().unwrap();
        let stored = get(s, &format!("/v1/authorizations/{id}"), &agent).await;
        assert_eq!(stored.body["audit_id"], auth["audit_id"]);
        let status_now = tool(client, "payment_status", json!({"id": id})).await;
        assert_eq!(answered(&status_now), &stored.body);

        let mut direct = tx.clone();
        direct["id"] = json!(format!("api-{id}"));
        let r = post(s, "/v1/authorizations", &agent, &direct).await;
        assert_eq!(r.status, 201, "{}", r.text);
        through_api.push((r.body["tier"].clone(), r.body["status"].clone()));
    }
    assert_eq!(through_mcp, through_api);
    let expected: Vec<(Value, Value)> = ARTICLE
        .iter()
        .map(|(t, st)| (json!(t), json!(st)))
        .collect();
    assert_eq!(through_mcp, expected);

    // The same id again is the same payment, not a second one.
    let first = day(prefix).remove(0);
    let again = tool(client, "request_payment", first).await;
    assert!(
        words(&again).contains("This id was sent before"),
        "{}",
        words(&again)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_articles_day_through_request_payment_gets_the_apis_statuses() {
    let dir = tempfile::tempdir().unwrap();
    let s = Served::start(dir.path(), &[]);
    let http = over_http(&s, &s.key("agent")).await;
    the_day_through(&http, &s, "http-").await;

    // The payments page by page, newest first, as the API lists them.
    let page = tool(&http, "my_payments", json!({"limit": 3})).await;
    let page = answered(&page).clone();
    let listed = get(&s, "/v1/authorizations?limit=3", &s.key("agent")).await;
    let ids = |payments: &Value| -> Vec<Value> {
        payments
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["id"].clone())
            .collect()
    };
    let api_ids: Vec<Value> = listed
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["transaction"]["id"].clone())
        .collect();
    assert_eq!(ids(&page["payments"]), api_ids);
    let cursor = page["next_cursor"]
        .as_str()
        .expect("a next page")
        .to_string();
    let next = tool(&http, "my_payments", json!({"limit": 3, "cursor": cursor})).await;
    let next = answered(&next).clone();
    assert_eq!(next["payments"].as_array().unwrap().len(), 3);
    assert!(
        ids(&next["payments"])
            .iter()
            .all(|id| !ids(&page["payments"]).contains(id))
    );
    let blocked = tool(&http, "my_payments", json!({"status": ["blocked"]})).await;
    let blocked = answered(&blocked).clone();
    let blocked_ids = ids(&blocked["payments"]);
    assert_eq!(
        blocked_ids,
        vec![json!("api-http-tx-006"), json!("http-tx-006")],
        "{blocked}"
    );
    http.cancel().await.unwrap();

    drop(s);

    // Over stdio, through `tiergate mcp`, the same (on a service of its
    // own: two more days would pass the agent's daily budget).
    let dir = tempfile::tempdir().unwrap();
    let s = Served::start(dir.path(), &[]);
    let stdio = over_stdio(&s, &s.key("agent")).await;
    the_day_through(&stdio, &s, "stdio-").await;
    let held = tool(&stdio, "payment_status", json!({"id": "stdio-tx-005"})).await;
    assert_eq!(answered(&held)["status"], "awaiting_approval");
    stdio.cancel().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_roles_tenants_and_agents_are_refused_as_the_api_refuses_them() {
    let dir = tempfile::tempdir().unwrap();
    let other = tenant_file(dir.path(), "acme2", &[]);
    let data = dir.path().join("data");
    let s = Served::start(&data, &["--tenant", other.to_str().unwrap()]);
    let agent = s.key("agent");
    let pay = json!({
        "id": "r-1", "tenant": "demo", "agent": "procurement-agent-prod", "amount": "0.02",
        "currency": "USDC", "category": "embeddings", "recipient": "embeddings.vendor.example",
        "recipient_trust": "verified"
    });

    // No key, or a wrong one: `/mcp` answers 401 before any tool runs.
    let url = format!("{}/mcp", s.base);
    let initialize = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {},
        "clientInfo": {"name": "test", "version": "1"}}})
    .to_string();
    for key in [None, Some("tg_knotakey_0123456789abcdef")] {
        let r = call(
            "POST",
            &url,
            key,
            Some("application/json"),
            initialize.clone(),
        )
        .await;
        assert_eq!(r.status, 401, "{}", r.text);
        assert_eq!(r.body["error"]["code"], "unauthorized", "{}", r.text);
    }
    assert!(
        try_over_http(&s, "tg_knotakey_0123456789abcdef")
            .await
            .is_err()
    );
    // Over stdio the key is only used by the tools: each call fails as
    // the API fails it.
    let wrong = over_stdio(&s, "tg_knotakey_0123456789abcdef").await;
    let api = post(
        &s,
        "/v1/authorizations",
        "tg_knotakey_0123456789abcdef",
        &pay,
    )
    .await;
    assert_eq!(api.status, 401);
    let r = tool(&wrong, "request_payment", pay.clone()).await;
    assert_eq!(refused(&r), as_the_api_says(&api.body));
    let r = tool(&wrong, "my_payments", json!({})).await;
    assert!(refused(&r).starts_with("unauthorized: "), "{}", words(&r));
    wrong.cancel().await.unwrap();

    let http = over_http(&s, &agent).await;
    let paid = tool(&http, "request_payment", pay.clone()).await;
    assert_eq!(answered(&paid)["status"], "executed");

    // An agent paying as another agent.
    let mut as_other = pay.clone();
    as_other["id"] = json!("r-2");
    as_other["agent"] = json!("research-agent");
    let api = post(&s, "/v1/authorizations", &agent, &as_other).await;
    assert_eq!(api.body["error"]["code"], "agent_mismatch", "{}", api.text);
    let r = tool(&http, "request_payment", as_other).await;
    let said = refused(&r);
    assert_eq!(said, as_the_api_says(&api.body));
    assert!(
        said.starts_with(
            "agent_mismatch: this key speaks for agent procurement-agent-prod, not research-agent"
        ),
        "{said}"
    );
    assert_eq!(r.structured_content.as_ref().unwrap()["status"], 403);
    http.cancel().await.unwrap();

    // An approver's key may not pay.
    let approver = over_http(&s, &s.key("approver")).await;
    let mut by_approver = pay.clone();
    by_approver["id"] = json!("r-3");
    let api = post(&s, "/v1/authorizations", &s.key("approver"), &by_approver).await;
    assert_eq!(api.status, 403, "{}", api.text);
    let r = tool(&approver, "request_payment", by_approver).await;
    assert_eq!(refused(&r), as_the_api_says(&api.body));
    assert!(refused(&r).starts_with("wrong_role: "), "{}", words(&r));
    approver.cancel().await.unwrap();

    // Another tenant's key: it cannot pay for the demo tenant, and sees
    // none of its payments.
    let stranger_key = create_key(&data, "acme2", "agent", Some("procurement-agent-prod"));
    let stranger = over_http(&s, &stranger_key).await;
    let mut cross = pay.clone();
    cross["id"] = json!("r-4");
    let api = post(&s, "/v1/authorizations", &stranger_key, &cross).await;
    assert_eq!(api.body["error"]["code"], "tenant_mismatch", "{}", api.text);
    let r = tool(&stranger, "request_payment", cross).await;
    assert_eq!(refused(&r), as_the_api_says(&api.body));
    let api = get(&s, "/v1/authorizations/r-1", &stranger_key).await;
    assert_eq!(api.status, 404, "{}", api.text);
    let r = tool(&stranger, "payment_status", json!({"id": "r-1"})).await;
    assert_eq!(refused(&r), as_the_api_says(&api.body));
    let r = tool(&stranger, "my_payments", json!({})).await;
    assert_eq!(answered(&r)["payments"], json!([]));
    stranger.cancel().await.unwrap();
}

/// x402, the spending limits, and a payment that leaves its tenant and
/// agent to the key: these call `POST /v1/x402/payments`,
/// `GET /v1/x402/payments/{id}` and `GET /v1/limits`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn x402_payments_and_spending_limits_through_the_tools() {
    let dir = tempfile::tempdir().unwrap();
    let s = Served::start(dir.path(), &[]);
    let agent = s.key("agent");
    let http = over_http(&s, &agent).await;

    // The tenant and agent come from the key.
    let r = tool(
        &http,
        "request_payment",
        json!({"id": "k-1", "amount": "0.02", "currency": "USDC", "category": "embeddings",
               "recipient": "embeddings.vendor.example", "recipient_trust": "verified"}),
    )
    .await;
    let auth = answered(&r);
    assert_eq!(auth["transaction"]["tenant"], "demo");
    assert_eq!(auth["transaction"]["agent"], "procurement-agent-prod");
    assert_eq!(auth["status"], "executed");

    let limits = tool(&http, "spending_limits", json!({})).await;
    let api = get(&s, "/v1/limits", &agent).await;
    assert_eq!(api.status, 200, "{}", api.text);
    assert_eq!(answered(&limits), &api.body);
    let said = words(&limits);
    assert!(said.contains("agent_daily_budget"), "{said}");
    assert!(said.contains("The tiers:"), "{said}");

    let required = |amount: &str| {
        json!({
            "x402Version": 2,
            "resource": {"url": "https://api.example/embed", "description": "Embeddings",
                         "mimeType": "application/json"},
            "accepts": [{"scheme": "exact", "network": "eip155:8453", "amount": amount,
                         "asset": "0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913",
                         "payTo": "0x209693Bc6afc0C5328bA36FaF03C514EF312287C",
                         "maxTimeoutSeconds": 60,
                         "extra": {"name": "USD Coin", "version": "2"}}]
        })
    };
    // A 0.02 embeddings call is signed now.
    let r = tool(
        &http,
        "pay_x402",
        json!({"id": "x-emb-1", "category": "embeddings", "payment_required": required("20000")}),
    )
    .await;
    let paid = answered(&r).clone();
    assert_eq!(paid["authorization"]["status"], "executed");
    let header = paid["payment"]["header"].as_str().expect("signed now");
    let value = paid["payment"]["value"].as_str().unwrap();
    let said = words(&r);
    assert!(said.contains("Signed now."), "{said}");
    assert!(said.contains(&format!("{header}: {value}")), "{said}");
    // Its status carries the same signature.
    let status = tool(&http, "payment_status", json!({"id": "x-emb-1"})).await;
    assert_eq!(answered(&status)["payment"], paid["payment"]);
    let api = get(&s, "/v1/x402/payments/x-emb-1", &agent).await;
    assert_eq!(answered(&status), &api.body);

    // An $89 hire waits for an owner and carries no signature.
    let r = tool(
        &http,
        "pay_x402",
        json!({"id": "x-hire-1", "category": "agent_hire", "justification": "EURC analysis",
               "payment_required": required("89000000")}),
    )
    .await;
    let held = answered(&r).clone();
    assert_eq!(held["authorization"]["status"], "awaiting_approval");
    assert!(held["payment"].is_null(), "{held}");
    assert!(
        words(&r).contains("waits for a budget owner's approval"),
        "{}",
        words(&r)
    );
    // Another agent's x402 payment is refused as the API refuses it.
    let r = tool(
        &http,
        "pay_x402",
        json!({"id": "x-3", "category": "embeddings", "agent": "research-agent",
               "payment_required": required("20000")}),
    )
    .await;
    assert!(refused(&r).starts_with("agent_mismatch: "), "{}", words(&r));
    http.cancel().await.unwrap();
}

/// `/mcp` answers only the Host names it serves, against DNS rebinding:
/// loopback's, the listen address's, and those `mcp_allowed_hosts` names.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_host_names_the_service_serves_reach_mcp() {
    let dir = tempfile::tempdir().unwrap();
    let s = Served::start_with_settings(
        dir.path(),
        &[],
        r#"mcp_allowed_hosts = ["tiergate.internal"]"#,
    );
    let port = s.addr().rsplit(':').next().unwrap().to_string();
    let initialize = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {},
        "clientInfo": {"name": "test", "version": "1"}}})
    .to_string();
    let client = reqwest::Client::new();
    let mut seen = Vec::new();
    for host in [
        format!("127.0.0.1:{port}"),
        format!("localhost:{port}"),
        "tiergate.internal".to_string(),
        format!("tiergate.internal:{port}"),
        "attacker.example".to_string(),
        format!("attacker.example:{port}"),
    ] {
        let r = client
            .post(format!("{}/mcp", s.base))
            .bearer_auth(s.key("agent"))
            .header("host", &host)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .body(initialize.clone())
            .send()
            .await
            .unwrap();
        seen.push((host, r.status().as_u16()));
    }
    let expected: Vec<(String, u16)> = [200, 200, 200, 200, 403, 403]
        .into_iter()
        .zip(seen.iter().map(|(h, _)| h.clone()))
        .map(|(status, host)| (host, status))
        .collect();
    assert_eq!(seen, expected);
}
