//! Errors as the API answers them: JSON with a stable code, a message that
//! says what to do, and the offending field when one is to blame.

use axum::Json;
use std::time::Duration;

use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use tiergate_core::governance::GovernError;
use tiergate_core::store::StoreError;
use tiergate_runtime::model::transaction::InvalidTransaction;

/// An API error.
#[derive(Debug, Clone)]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// A stable, machine-readable code such as `invalid_transaction`.
    pub code: &'static str,
    /// What went wrong and what to do, for a person.
    pub message: String,
    /// The request field to blame, when one is.
    pub field: Option<String>,
    /// When to try again (`Retry-After`), for a refusal that is not the
    /// request's fault.
    pub retry_after: Option<Duration>,
}

/// Every error answer: `{"error": {"code", "message", "field"}}`.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = Error)]
pub(crate) struct Body<'a> {
    error: Inner<'a>,
}

/// What went wrong.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = ErrorDetail)]
struct Inner<'a> {
    /// Stable and machine-readable, such as `invalid_transaction`.
    code: &'a str,
    /// What went wrong and what to do.
    message: &'a str,
    /// The request field to blame, when one is.
    #[serde(skip_serializing_if = "Option::is_none")]
    field: Option<&'a str>,
}

impl ApiError {
    /// An error without a field.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            field: None,
            retry_after: None,
        }
    }

    /// 503: the service cannot take the request now; nothing was done;
    /// retry after `retry_after`.
    pub fn unavailable(
        code: &'static str,
        message: impl Into<String>,
        retry_after: Duration,
    ) -> Self {
        let mut err = Self::new(StatusCode::SERVICE_UNAVAILABLE, code, message);
        err.retry_after = Some(retry_after);
        err
    }

    /// 503 `sandbox_busy`: every policy sandbox stayed busy for the whole
    /// wait, so the policy did not run and nothing was done or recorded;
    /// the same request may be sent again shortly.
    pub fn sandbox_busy(message: impl Into<String>) -> Self {
        Self::unavailable("sandbox_busy", message, Duration::from_secs(1))
    }

    /// Names the field to blame.
    pub fn field(mut self, field: impl Into<String>) -> Self {
        self.field = Some(field.into());
        self
    }

    /// 401: no valid key.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }

    /// 403: the key may not do this.
    pub fn forbidden(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, code, message)
    }

    /// 404.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    /// 400: the request is malformed.
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    /// 500: our fault; the message is logged, the caller gets a generic one.
    pub fn internal(message: impl std::fmt::Display) -> Self {
        tracing::error!(error = %message, "request failed");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "the service failed to complete the request; it was logged; retry later",
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Body {
            error: Inner {
                code: self.code,
                message: &self.message,
                field: self.field.as_deref(),
            },
        };
        let mut response = (self.status, Json(body)).into_response();
        if self.status == StatusCode::REQUEST_TIMEOUT {
            // What is left of the request may still arrive: no next one
            // can be read from this connection.
            response.headers_mut().insert(
                header::CONNECTION,
                header::HeaderValue::from_static("close"),
            );
        }
        if let Some(after) = self.retry_after {
            // Whole seconds, at least one.
            let seconds = after.as_secs() + u64::from(after.subsec_nanos() > 0);
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, seconds.max(1).into());
        }
        response
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        tracing::error!(error = %e, "store failed");
        Self::unavailable(
            "store_unavailable",
            "the store could not be read or written; nothing was changed; retry later",
            Duration::from_secs(1),
        )
    }
}

impl From<InvalidTransaction> for ApiError {
    fn from(e: InvalidTransaction) -> Self {
        let field = e.field.clone();
        let (status, code) = if e.is_syntax() {
            (StatusCode::BAD_REQUEST, "invalid_json")
        } else {
            (StatusCode::UNPROCESSABLE_ENTITY, "invalid_transaction")
        };
        let mut err = Self::new(status, code, e.to_string());
        err.field = field;
        err
    }
}

impl From<GovernError> for ApiError {
    fn from(e: GovernError) -> Self {
        use GovernError as G;
        use StatusCode as S;
        let message = e.to_string();
        match e {
            G::InvalidTransaction(inner) => inner.into(),
            G::CurrencyMismatch { .. } => {
                Self::new(S::UNPROCESSABLE_ENTITY, "currency_mismatch", message).field("currency")
            }
            G::Conflict { .. } => Self::new(S::CONFLICT, "id_conflict", message).field("id"),
            G::NotFound { .. } | G::UnknownTenant(_) => Self::not_found(message),
            G::RulesUnavailable { .. } => {
                Self::new(S::SERVICE_UNAVAILABLE, "rules_unavailable", message)
            }
            G::NotAnOwner { .. } => Self::forbidden("not_an_owner", message),
            G::OwnPayment { .. } => Self::forbidden("own_payment", message),
            G::HashMismatch { .. } => {
                Self::new(S::CONFLICT, "hash_mismatch", message).field("content_hash")
            }
            G::WrongStatus { .. } => Self::new(S::CONFLICT, "wrong_status", message),
            G::AlreadyDecided { .. } => Self::new(S::CONFLICT, "already_decided", message),
            G::DeadlinePassed { .. } => Self::new(S::CONFLICT, "deadline_passed", message),
            G::NotDue(_) => Self::new(S::CONFLICT, "not_due", message),
            G::NoSuchRecord { .. } => Self::not_found(message).field("seq"),
            G::InvalidText { field, .. } => {
                Self::new(S::UNPROCESSABLE_ENTITY, "invalid_text", message).field(field)
            }
            G::EmptyCorrection => {
                Self::new(S::UNPROCESSABLE_ENTITY, "empty_note", message).field("note")
            }
            G::Config(_) | G::Setup { .. } => {
                Self::new(S::UNPROCESSABLE_ENTITY, "invalid_config", message).field("config")
            }
            G::Policy {
                source: tiergate_runtime::LoadError::SandboxBusy { .. },
                ..
            } => Self::sandbox_busy(message),
            G::Policy { .. } => {
                Self::new(S::UNPROCESSABLE_ENTITY, "invalid_policy", message).field("policy")
            }
            G::Store(inner) => inner.into(),
            // The sandboxes are busy: nothing was recorded, and the same
            // request, sent again, is decided once.
            G::SandboxBusy { .. } => Self::sandbox_busy(message),
            other => Self::internal(other),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn busy_sandboxes_are_a_503_with_retry_after() {
        let response = ApiError::from(GovernError::SandboxBusy {
            waited: std::time::Duration::from_secs(2),
        })
        .into_response();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers()[axum::http::header::RETRY_AFTER], "1");
    }
}
