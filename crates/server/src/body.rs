//! The JSON body extractor: size-bounded, and every parse failure a 400 `invalid_argument` (a
//! float where an integer belongs, a missing field, bad JSON) or 413 `payload_too_large`.

use crate::error::ApiError;
use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use cairn_types::ErrorCode;
use serde::de::DeserializeOwned;

/// Largest request body, in bytes.
pub const BODY_BYTES_MAX: usize = 1024 * 1024;

/// A parsed JSON body.
pub struct JsonBody<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = Bytes::from_request(request, state)
            .await
            .map_err(|rejection| {
                if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    ApiError::new(
                        ErrorCode::PayloadTooLarge,
                        format!("request body is over {BODY_BYTES_MAX} bytes"),
                    )
                } else {
                    ApiError::new(
                        ErrorCode::InvalidArgument,
                        format!("cannot read the request body: {rejection}"),
                    )
                }
            })?;
        serde_json::from_slice(&bytes).map(JsonBody).map_err(|e| {
            ApiError::new(
                ErrorCode::InvalidArgument,
                format!("invalid JSON body: {e}"),
            )
        })
    }
}

/// A parsed query string: any parse failure (a non-integer where an integer belongs, an unknown
/// value) is a 400 `invalid_argument` in the API's error shape.
pub struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> axum::extract::FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, Self::Rejection> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Query(value)| ApiQuery(value))
            .map_err(|rejection| {
                ApiError::new(
                    ErrorCode::InvalidArgument,
                    format!("invalid query string: {}", rejection.body_text()),
                )
            })
    }
}
