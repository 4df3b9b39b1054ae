//! Serving the tools: over stdin and stdout to a desktop agent, or as the
//! streamable HTTP service `tiergate serve` mounts at `/mcp`.

use std::sync::Arc;

use rmcp::ServiceExt;
use rmcp::transport::streamable_http_server::session::never::NeverSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};

use crate::api::Api;
use crate::tools::{Credentials, Tiergate};

/// Why serving over stdio stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServeError {
    /// The client never completed the protocol's start.
    #[error("the MCP client did not start a session: {0}")]
    Start(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The task serving the client failed.
    #[error("serving the MCP client failed: {0}")]
    Serve(#[source] tokio::task::JoinError),
}

/// Serves the tools over stdin and stdout, every call made with `key`,
/// until the client closes stdin. Nothing else may write to stdout.
pub async fn serve_stdio(api: Arc<dyn Api>, key: String) -> Result<(), ServeError> {
    let running = Tiergate::new(api, Credentials::Key(key))
        .serve(rmcp::transport::stdio())
        .await
        .map_err(|e| ServeError::Start(Box::new(e)))?;
    running.waiting().await.map_err(ServeError::Serve)?;
    Ok(())
}

/// The streamable HTTP service [`http_service`] makes: a tower service of
/// HTTP requests.
pub type HttpService = StreamableHttpService<Tiergate, NeverSessionManager>;

/// How the HTTP service takes requests.
#[derive(Debug, Clone)]
pub struct HttpSettings {
    /// The `Host` headers it answers (`name` or `name:port`); others get
    /// `403`, against DNS rebinding. Empty answers any.
    pub allowed_hosts: Vec<String>,
    /// The largest request body, in bytes.
    pub max_body_bytes: usize,
}

/// The tools as a streamable HTTP service, each call made with its own
/// request's `Authorization: Bearer` key. It keeps no sessions: each
/// request stands alone and answers JSON, so replicas behind one address
/// serve it alike and no stream stays open.
pub fn http_service(api: Arc<dyn Api>, settings: HttpSettings) -> HttpService {
    let config = StreamableHttpServerConfig::default()
        .with_legacy_session_mode(false)
        .with_json_response(true)
        .with_sse_keep_alive(None)
        .with_allowed_hosts(settings.allowed_hosts)
        .with_max_request_body_bytes(settings.max_body_bytes);
    StreamableHttpService::new(
        move || Ok(Tiergate::new(api.clone(), Credentials::Bearer)),
        Arc::new(NeverSessionManager::default()),
        config,
    )
}
