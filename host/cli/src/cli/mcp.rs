//! `tiergate mcp`: tiergate's tools for agents over the Model Context
//! Protocol on stdin and stdout, for desktop agents that start their MCP
//! servers as processes. Every tool calls a running service over HTTP with
//! the agent's key, read from an environment variable so it never shows in
//! the process list. Logs go to stderr: stdout is the protocol's.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde_json::Value;
use tiergate_mcp::{Api, ApiCall, ApiFuture, ApiReply, ApiUnreachable, Method};

use super::McpArgs;

/// How long a call to the service may take, and its connection.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

pub fn run(args: McpArgs) -> Result<ExitCode> {
    let key = match std::env::var(&args.key_env) {
        Ok(key) if !key.trim().is_empty() => key.trim().to_string(),
        _ => bail!(
            "set {} to the agent's API key (tg_...): the tools pay with it; it is read from the environment so it stays out of the process list",
            args.key_env
        ),
    };
    let api = Http::new(&args.url)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(tiergate_mcp::serve_stdio(Arc::new(api), key))?;
    Ok(ExitCode::SUCCESS)
}

/// A running service's API, over HTTP.
struct Http {
    base: String,
    client: reqwest::Client,
}

impl Http {
    fn new(url: &str) -> Result<Self> {
        let base = url.trim_end_matches('/').to_string();
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            bail!("--url {url}: give the service's address, such as http://127.0.0.1:8080");
        }
        let client = reqwest::Client::builder()
            .timeout(CALL_TIMEOUT)
            .connect_timeout(CONNECT_TIMEOUT)
            .build()
            .context("cannot make an HTTP client")?;
        Ok(Http { base, client })
    }
}

impl Api for Http {
    fn call(&self, call: ApiCall) -> ApiFuture<'_> {
        Box::pin(async move {
            let url = format!("{}{}", self.base, call.path_and_query);
            let method = match call.method {
                Method::Get => reqwest::Method::GET,
                Method::Post => reqwest::Method::POST,
            };
            let mut request = self.client.request(method, &url).bearer_auth(&call.key);
            if let Some(body) = &call.body {
                request = request
                    .header(reqwest::header::CONTENT_TYPE, "application/json")
                    .body(body.to_string());
            }
            let unreachable = |e: reqwest::Error| ApiUnreachable::new(self.base.clone(), e);
            let response = request.send().await.map_err(unreachable)?;
            let status = response.status().as_u16();
            let next_cursor = response
                .headers()
                .get("tiergate-next-cursor")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            let text = response.text().await.map_err(unreachable)?;
            let body = if text.is_empty() {
                Value::Null
            } else {
                serde_json::from_str(&text).unwrap_or(Value::String(text))
            };
            Ok(ApiReply {
                status,
                body,
                next_cursor,
            })
        })
    }
}
