//! SageMaker-shaped errors: `{"__type": "...", "message": "..."}` with the HTTP status the
//! service uses. Every handler returns [`ApiError`]; nothing else decides what a client sees.
//! Internal failures are logged in full and shown to the client only as a short message.

use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// An error response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// `__type`, e.g. `ValidationException`.
    pub code: &'static str,
    /// Human-readable message.
    pub message: String,
}

impl ApiError {
    /// `ValidationException` (400).
    pub fn validation(message: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            code: "ValidationException",
            message: message.into(),
        }
    }
    /// `ResourceNotFound` (400).
    pub fn not_found(message: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            code: "ResourceNotFound",
            message: message.into(),
        }
    }
    /// `ResourceInUse` (400).
    pub fn in_use(message: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            code: "ResourceInUse",
            message: message.into(),
        }
    }
    /// `ResourceLimitExceeded` (400).
    pub fn limit(message: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            code: "ResourceLimitExceeded",
            message: message.into(),
        }
    }
    /// `AccessDeniedException` (400), as SageMaker answers an IAM denial.
    pub fn access_denied(message: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            code: "AccessDeniedException",
            message: message.into(),
        }
    }
    /// `SerializationException` (400): the body is not JSON of the expected shape.
    pub fn serialization(message: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            code: "SerializationException",
            message: message.into(),
        }
    }
    /// `UnknownOperationException` (400).
    pub fn unknown_operation(target: &str) -> Self {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            code: "UnknownOperationException",
            message: format!("The operation {target:?} is not supported by trainyard"),
        }
    }
    /// `ServiceUnavailable` (503): trainyard cannot take the request now, for the reason given
    /// (a full disk); the client may retry.
    pub fn unavailable(message: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::SERVICE_UNAVAILABLE,
            code: "ServiceUnavailable",
            message: message.into(),
        }
    }
    /// `InternalFailure` (500); the detail goes to the server log only.
    pub fn internal(detail: impl std::fmt::Display) -> Self {
        tracing::error!("internal failure: {detail}");
        ApiError {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            code: "InternalFailure",
            message: "An internal error occurred; see the trainyard server log".into(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({"__type": self.code, "message": self.message, "Message": self.message});
        let mut resp = (self.status, body.to_string()).into_response();
        let h = resp.headers_mut();
        h.insert(
            "content-type",
            HeaderValue::from_static("application/x-amz-json-1.1"),
        );
        h.insert("x-amzn-errortype", HeaderValue::from_static(self.code));
        resp
    }
}

impl From<crate::authz::sigv4::AuthError> for ApiError {
    /// The JSON-protocol error shape (`sagemaker`, `logs`).
    fn from(e: crate::authz::sigv4::AuthError) -> Self {
        use crate::authz::sigv4::Protocol;
        ApiError {
            status: e.status(Protocol::Json),
            code: e.code(Protocol::Json),
            message: e.message,
        }
    }
}
