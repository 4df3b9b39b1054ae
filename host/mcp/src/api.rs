//! What the tools need of tiergate: its HTTP API, called with the agent's
//! own key. The service calls its own routes in process; `tiergate mcp`
//! calls a running service over HTTP. Either way the roles, the tenant
//! isolation and the error codes are the API's.

use std::future::Future;
use std::pin::Pin;

use serde_json::Value;

/// A future an [`Api`] answers with.
pub type ApiFuture<'a> =
    Pin<Box<dyn Future<Output = Result<ApiReply, ApiUnreachable>> + Send + 'a>>;

/// tiergate's HTTP API, as the tools call it.
pub trait Api: Send + Sync + 'static {
    /// Sends one request and gives back the answer, whatever its status;
    /// [`ApiUnreachable`] only when there is no answer.
    fn call(&self, call: ApiCall) -> ApiFuture<'_>;
}

/// The two methods the tools use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// Reads.
    Get,
    /// Payments.
    Post,
}

impl Method {
    /// The method's name on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Post => "POST",
        }
    }
}

/// One request to the API.
#[derive(Clone)]
pub struct ApiCall {
    /// GET or POST.
    pub method: Method,
    /// The path and query, such as `/v1/authorizations?limit=20`.
    pub path_and_query: String,
    /// The caller's bearer token, sent as `Authorization: Bearer <key>`.
    pub key: String,
    /// A JSON body (sent as `application/json`).
    pub body: Option<Value>,
}

impl std::fmt::Debug for ApiCall {
    // The key is a secret: it never reaches a log.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiCall")
            .field("method", &self.method)
            .field("path_and_query", &self.path_and_query)
            .field("key", &"<secret>")
            .field("body", &self.body)
            .finish()
    }
}

/// The API's answer.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiReply {
    /// The HTTP status.
    pub status: u16,
    /// The JSON body; `Value::Null` when there was none, a string when it
    /// was not JSON.
    pub body: Value,
    /// The `Tiergate-Next-Cursor` header of a full page: where the next one
    /// starts.
    pub next_cursor: Option<String>,
}

impl ApiReply {
    /// Whether the status is 2xx.
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

/// No answer came: the service is down, unreachable, or the connection
/// broke before its answer was read.
#[derive(Debug, thiserror::Error)]
#[error("tiergate at {at} did not answer: {source}")]
pub struct ApiUnreachable {
    /// Where the service was called (a URL, or `in process`).
    pub at: String,
    /// Why.
    #[source]
    pub source: Box<dyn std::error::Error + Send + Sync>,
}

impl ApiUnreachable {
    /// No answer from `at`, because of `source`.
    pub fn new(
        at: impl Into<String>,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        ApiUnreachable {
            at: at.into(),
            source: source.into(),
        }
    }
}

/// `text` as one path segment: everything but RFC 3986's unreserved
/// characters percent-encoded, so an id cannot reach another route.
pub(crate) fn segment(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_segment_keeps_unreserved_characters_and_encodes_the_rest() {
        assert_eq!(segment("tx-001_a.b~c"), "tx-001_a.b~c");
        assert_eq!(segment("../x?y=1&z#"), "..%2Fx%3Fy%3D1%26z%23");
        assert_eq!(segment("é"), "%C3%A9");
    }

    #[test]
    fn a_call_never_shows_its_key() {
        let call = ApiCall {
            method: Method::Get,
            path_and_query: "/v1/limits".into(),
            key: "tg_kabc_secret".into(),
            body: None,
        };
        assert!(!format!("{call:?}").contains("secret\""));
        assert!(!format!("{call:?}").contains("tg_kabc"));
    }
}
