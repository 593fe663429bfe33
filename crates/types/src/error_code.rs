//! Stable, machine-readable error codes. Clients match on these strings: never rename one.

use serde::{Deserialize, Serialize};

/// Every error code Cairn returns, with the HTTP status it maps to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// Malformed or out-of-range input (400).
    InvalidArgument,
    /// No token or an unknown token (401).
    Unauthenticated,
    /// The token's role may not do this (403).
    PermissionDenied,
    /// Unknown resource (404).
    NotFound,
    /// The name is taken (409).
    AlreadyExists,
    /// The same `request_id` came with a different body (409).
    RequestIdReused,
    /// Body larger than the configured limit (413).
    PayloadTooLarge,
    /// A queue is full: retry after a moment (429, with `Retry-After`).
    Overloaded,
    /// The shard stopped accepting work after a storage failure, or is shutting down (503).
    Unavailable,
}

impl ErrorCode {
    /// The code as it appears on the wire.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidArgument => "invalid_argument",
            ErrorCode::Unauthenticated => "unauthenticated",
            ErrorCode::PermissionDenied => "permission_denied",
            ErrorCode::NotFound => "not_found",
            ErrorCode::AlreadyExists => "already_exists",
            ErrorCode::RequestIdReused => "request_id_reused",
            ErrorCode::PayloadTooLarge => "payload_too_large",
            ErrorCode::Overloaded => "overloaded",
            ErrorCode::Unavailable => "unavailable",
        }
    }

    /// The HTTP status that carries this code.
    #[must_use]
    pub fn http_status(self) -> u16 {
        match self {
            ErrorCode::InvalidArgument => 400,
            ErrorCode::Unauthenticated => 401,
            ErrorCode::PermissionDenied => 403,
            ErrorCode::NotFound => 404,
            ErrorCode::AlreadyExists | ErrorCode::RequestIdReused => 409,
            ErrorCode::PayloadTooLarge => 413,
            ErrorCode::Overloaded => 429,
            ErrorCode::Unavailable => 503,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [ErrorCode; 9] = [
        ErrorCode::InvalidArgument,
        ErrorCode::Unauthenticated,
        ErrorCode::PermissionDenied,
        ErrorCode::NotFound,
        ErrorCode::AlreadyExists,
        ErrorCode::RequestIdReused,
        ErrorCode::PayloadTooLarge,
        ErrorCode::Overloaded,
        ErrorCode::Unavailable,
    ];

    #[test]
    fn wire_names_match_serde_names() {
        for code in ALL {
            let json = serde_json::to_string(&code).expect("a unit variant serializes");
            assert_eq!(json, format!("\"{}\"", code.as_str()));
            let parsed: ErrorCode = serde_json::from_str(&json).expect("round trip");
            assert_eq!(parsed, code);
        }
    }

    #[test]
    fn no_client_error_maps_to_a_server_error_status() {
        for code in ALL {
            let status = code.http_status();
            assert!(
                (400..500).contains(&status) || status == 503,
                "{code:?} -> {status}"
            );
        }
    }
}
