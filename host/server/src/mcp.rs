//! `/mcp`: tiergate's tools for agents over the Model Context Protocol
//! (streamable HTTP, [`tiergate_mcp`]). A request needs a valid key before
//! any tool runs; each tool then calls this service's own routes in
//! process with that key, so the handlers, key checks, admission, metrics
//! and error codes are the API's own.

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::MethodRouter;
use serde_json::Value;
use tiergate_mcp::{Api, ApiCall, ApiFuture, ApiReply, ApiUnreachable, HttpSettings};
use tower::ServiceExt;

use super::AppState;

/// The largest answer a tool reads from a route: a page of a thousand
/// payments with room to spare.
const MAX_ANSWER_BYTES: usize = 32 * 1024 * 1024;

/// Where in-process calls go, as [`ApiUnreachable`] names it.
const IN_PROCESS: &str = "this service (in process)";

/// The `/mcp` route: checks the request's key, then hands it to the MCP
/// service whose tools call `routes`.
pub(super) fn endpoint(routes: Router, settings: HttpSettings) -> MethodRouter<AppState> {
    let service = tiergate_mcp::http_service(Arc::new(InProcess { routes }), settings);
    axum::routing::any(move |State(state): State<AppState>, request: Request| {
        let service = service.clone();
        async move {
            // No key, no protocol: a wrong key is the API's 401, before
            // anything is parsed. No turn is taken here: each tool's own
            // calls take theirs.
            if let Err(refused) = super::auth::bearer_key(request.headers(), &state).await {
                return refused.into_response();
            }
            // The API's bounds on a body: its size, and its time.
            let (parts, body) = request.into_parts();
            let limit = state.limits().body_bytes;
            let body = match super::body::read_limited(body, limit, &state).await {
                Ok(bytes) => bytes,
                Err(refused) => return refused.into_response(),
            };
            let request = Request::from_parts(parts, Body::from(body));
            match service.oneshot(request).await {
                Ok(response) => response.map(Body::new),
                Err(never) => match never {},
            }
        }
    })
}

/// The Host names `/mcp` answers: loopback's, the address the service
/// listens on (unless it listens on every address), and the `extra` ones
/// settings name; none checked when `extra` holds `*`.
pub(super) fn allowed_hosts(listen: SocketAddr, extra: &[String]) -> Vec<String> {
    if extra.iter().any(|h| h == "*") {
        return Vec::new();
    }
    let mut hosts: Vec<String> = ["localhost", "127.0.0.1", "::1"].map(String::from).to_vec();
    let ip = listen.ip();
    if !ip.is_unspecified() && !ip.is_loopback() {
        hosts.push(match ip {
            IpAddr::V4(v4) => v4.to_string(),
            IpAddr::V6(v6) => format!("[{v6}]"),
        });
    }
    hosts.extend(extra.iter().cloned());
    hosts
}

/// The service's own routes, called without a connection.
struct InProcess {
    routes: Router,
}

impl Api for InProcess {
    fn call(&self, call: ApiCall) -> ApiFuture<'_> {
        let routes = self.routes.clone();
        Box::pin(async move {
            let mut request = axum::http::Request::builder()
                .method(call.method.as_str())
                .uri(&call.path_and_query)
                .header(header::AUTHORIZATION, format!("Bearer {}", call.key));
            let body = match &call.body {
                Some(json) => {
                    request = request.header(header::CONTENT_TYPE, "application/json");
                    Body::from(json.to_string())
                }
                None => Body::empty(),
            };
            let request = request
                .body(body)
                .map_err(|e| ApiUnreachable::new(IN_PROCESS, e))?;
            let response = routes
                .oneshot(request)
                .await
                .unwrap_or_else(|never: Infallible| match never {});
            let status = response.status().as_u16();
            let next_cursor = response
                .headers()
                .get("tiergate-next-cursor")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            let bytes = axum::body::to_bytes(response.into_body(), MAX_ANSWER_BYTES)
                .await
                .map_err(|e| ApiUnreachable::new(IN_PROCESS, e))?;
            let body = if bytes.is_empty() {
                Value::Null
            } else {
                serde_json::from_slice(&bytes)
                    .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()))
            };
            Ok(ApiReply {
                status,
                body,
                next_cursor,
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hosts_are_loopback_the_listen_address_and_the_named_ones() {
        let loopback = ["localhost", "127.0.0.1", "::1"].map(String::from).to_vec();
        assert_eq!(
            allowed_hosts("127.0.0.1:8080".parse().unwrap(), &[]),
            loopback
        );
        assert_eq!(
            allowed_hosts("0.0.0.0:8080".parse().unwrap(), &[]),
            loopback
        );
        let mut with_ip = loopback.clone();
        with_ip.push("10.1.2.3".into());
        with_ip.push("tiergate.internal".into());
        assert_eq!(
            allowed_hosts(
                "10.1.2.3:8080".parse().unwrap(),
                &["tiergate.internal".into()]
            ),
            with_ip
        );
        assert_eq!(
            allowed_hosts("[fd00::1]:8080".parse().unwrap(), &[])[3],
            "[fd00::1]"
        );
        assert!(allowed_hosts("0.0.0.0:8080".parse().unwrap(), &["*".into()]).is_empty());
    }
}
