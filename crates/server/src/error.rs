//! The error body of every failed request: `{"error": {"code", "message", "details"}}`, with the
//! status that belongs to the code. Never a 5xx for anything a client sent.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use cairn_types::ErrorCode;
use serde_json::{Value, json};

/// An error response.
#[derive(Debug)]
pub struct ApiError {
    /// The stable code (as on the wire).
    pub code: &'static str,
    /// The HTTP status.
    pub status: StatusCode,
    /// A human message.
    pub message: String,
    /// Machine-readable details.
    pub details: Value,
}

impl ApiError {
    /// An error with one of the shared codes.
    #[must_use]
    pub fn new(code: ErrorCode, message: impl Into<String>) -> ApiError {
        ApiError {
            code: code.as_str(),
            status: StatusCode::from_u16(code.http_status()).unwrap_or(StatusCode::BAD_REQUEST),
            message: message.into(),
            details: json!({}),
        }
    }

    /// Replaces the code (for domain codes such as `insufficient_stock`).
    #[must_use]
    pub fn with_code(mut self, code: &'static str) -> ApiError {
        self.code = code;
        self
    }

    /// Replaces the status.
    #[must_use]
    pub fn with_status(mut self, status: u16) -> ApiError {
        self.status = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST);
        self
    }

    /// A bug on the server's side (500): never for anything a client sent.
    #[must_use]
    pub fn internal(message: impl Into<String>) -> ApiError {
        let message = message.into();
        tracing::error!(%message, "internal error");
        ApiError {
            code: "internal",
            status: StatusCode::INTERNAL_SERVER_ERROR,
            message,
            details: json!({}),
        }
    }

    /// Adds details.
    #[must_use]
    pub fn with_details(mut self, details: Value) -> ApiError {
        self.details = details;
        self
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let overloaded = self.code == ErrorCode::Overloaded.as_str()
            || self.code == ErrorCode::Unavailable.as_str();
        let body =
            json!({"error": {"code": self.code, "message": self.message, "details": self.details}});
        let mut response = (self.status, Json(body)).into_response();
        if overloaded {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}

/// A 400 `invalid_argument` with `message`: bad input, refused before the engine.
pub(crate) fn bad(message: impl Into<String>) -> ApiError {
    ApiError::new(ErrorCode::InvalidArgument, message)
}
