//! Request bodies: the right content type, a size limit, and JSON read
//! exactly into types that refuse unknown fields, with the field to blame.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::{StatusCode, header};
use serde::de::DeserializeOwned;

use super::{ApiError, AppState};

/// A JSON body as text, checked for content type, size and UTF-8. Parse it
/// with [`JsonText::parse`] (or, for transactions, `Transaction::from_json`),
/// never through `f64`.
pub struct JsonText(pub String);

impl FromRequest<AppState> for JsonText {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, ApiError> {
        require_content_type(&req, "application/json")?;
        let bytes = read_limited(req.into_body(), state.limits().body_bytes, state).await?;
        let text = String::from_utf8(bytes.to_vec())
            .map_err(|_| ApiError::bad_request("invalid_json", "the body is not UTF-8 text"))?;
        Ok(JsonText(text))
    }
}

impl JsonText {
    /// Parses the text into `T`, naming the field at fault.
    pub fn parse<T: DeserializeOwned>(&self) -> Result<T, ApiError> {
        // Every body this API reads is an object: serde would read a
        // struct from an array too (`[null, null]` as two absent fields).
        if !self.0.trim_start().starts_with('{') {
            return Err(ApiError::bad_request(
                "invalid_json",
                "invalid request body: expected a JSON object",
            ));
        }
        let de = &mut serde_json::Deserializer::from_str(&self.0);
        serde_path_to_error::deserialize(de).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner();
            let mut err =
                ApiError::bad_request("invalid_json", format!("invalid request body: {inner}"));
            if let Some(field) = unknown_field(&inner.to_string()) {
                err.field = Some(field);
            } else if path != "." {
                err.field = Some(path);
            }
            err
        })
    }
}

fn unknown_field(message: &str) -> Option<String> {
    let rest = message.strip_prefix("unknown field `")?;
    Some(rest.split('`').next()?.to_string())
}

/// A raw upload (a policy component), size-limited.
pub struct Upload(pub Bytes);

impl FromRequest<AppState> for Upload {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, ApiError> {
        require_content_type(&req, "application/wasm")?;
        Ok(Upload(
            read_limited(req.into_body(), state.limits().upload_bytes, state).await?,
        ))
    }
}

fn require_content_type(req: &Request, expected: &str) -> Result<(), ApiError> {
    let got = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let essence = got.split(';').next().unwrap_or("").trim();
    if essence.eq_ignore_ascii_case(expected) {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            format!(
                "send the body as Content-Type: {expected} (got {})",
                if got.is_empty() { "none" } else { got }
            ),
        ))
    }
}

/// Reads the whole body, at most `limit` bytes and within the body timeout:
/// a client that sends slowly holds a connection, never the service.
pub(crate) async fn read_limited(
    body: axum::body::Body,
    limit: usize,
    state: &AppState,
) -> Result<Bytes, ApiError> {
    let timeout = state.limits().body_timeout;
    match tokio::time::timeout(timeout, axum::body::to_bytes(body, limit)).await {
        Ok(Ok(bytes)) => Ok(bytes),
        Ok(Err(_)) => Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            format!("the body is over the limit of {limit} bytes"),
        )),
        Err(_) => Err(ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            "body_timeout",
            format!(
                "the body did not arrive within {} ms; send it at once",
                timeout.as_millis()
            ),
        )),
    }
}
