//! What can go wrong with a call: the server said no ([`ClientError::Api`]), the request never got
//! an answer ([`ClientError::Transport`]), or the answer was not what the API promises
//! ([`ClientError::Decode`]).

use serde::Deserialize;
use serde_json::Value;

/// The longest piece of an unexpected body quoted in an error message, in bytes.
pub const BODY_EXCERPT_BYTES_MAX: usize = 512;

/// An error of a call.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server refused the request: its status and its `{"error": {...}}` body.
    #[error("{code}: {message} (HTTP {status})")]
    Api {
        /// The HTTP status.
        status: u16,
        /// The stable error code, such as `insufficient_stock`.
        code: String,
        /// A human message.
        message: String,
        /// Machine-readable details (an empty object when the server gave none).
        details: Value,
    },
    /// No answer: the connection failed, timed out or broke.
    #[error("transport: {0}")]
    Transport(#[from] reqwest::Error),
    /// An answer that is not the JSON the API describes.
    #[error("cannot decode the response: {0}")]
    Decode(String),
    /// An argument this client cannot send (such as a SKU of `..` in a URL path).
    #[error("invalid input: {0}")]
    InvalidInput(String),
}

impl ClientError {
    /// The API error code, if the server answered with one.
    #[must_use]
    pub fn code(&self) -> Option<&str> {
        match self {
            ClientError::Api { code, .. } => Some(code),
            _ => None,
        }
    }

    /// The HTTP status, if the server answered.
    #[must_use]
    pub fn status(&self) -> Option<u16> {
        match self {
            ClientError::Api { status, .. } => Some(*status),
            ClientError::Transport(error) => error.status().map(|s| s.as_u16()),
            _ => None,
        }
    }
}

#[derive(Deserialize)]
struct ErrorEnvelope {
    error: ErrorBody,
}

#[derive(Deserialize)]
struct ErrorBody {
    code: String,
    #[serde(default)]
    message: String,
    #[serde(default)]
    details: Option<Value>,
}

/// The error a non-success answer stands for. A body in the API's error shape gives its code,
/// message and details; any other body (a proxy's HTML page, say) gives the code
/// `http_{status}`, an excerpt of the body as the message, and the body as details when it is JSON.
#[must_use]
pub fn api_error(status: u16, body: &[u8]) -> ClientError {
    if let Ok(envelope) = serde_json::from_slice::<ErrorEnvelope>(body) {
        return ClientError::Api {
            status,
            code: envelope.error.code,
            message: envelope.error.message,
            details: envelope
                .error
                .details
                .unwrap_or_else(|| Value::Object(Default::default())),
        };
    }
    let details =
        serde_json::from_slice::<Value>(body).unwrap_or_else(|_| Value::Object(Default::default()));
    let message = if body.is_empty() {
        format!("HTTP {status} with an empty body")
    } else {
        format!("HTTP {status}: {}", excerpt(body))
    };
    ClientError::Api {
        status,
        code: format!("http_{status}"),
        message,
        details,
    }
}

/// The start of a body as text, cut at a character boundary.
pub(crate) fn excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    if text.len() <= BODY_EXCERPT_BYTES_MAX {
        return text.trim().to_string();
    }
    let mut end = BODY_EXCERPT_BYTES_MAX;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", text[..end].trim())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parts(error: ClientError) -> (u16, String, String, Value) {
        match error {
            ClientError::Api {
                status,
                code,
                message,
                details,
            } => (status, code, message, details),
            other => panic!("not an API error: {other}"),
        }
    }

    #[test]
    fn the_servers_error_body_gives_code_message_and_details() {
        let body = json!({"error": {"code": "insufficient_stock", "message": "short",
            "details": {"lines": [{"sku": "A", "requested": 5, "available": 2}]}}});
        let (status, code, message, details) = parts(api_error(409, body.to_string().as_bytes()));
        assert_eq!(status, 409);
        assert_eq!(code, "insufficient_stock");
        assert_eq!(message, "short");
        assert_eq!(details["lines"][0]["available"], 2);
    }

    #[test]
    fn missing_details_and_message_become_empty() {
        let body = br#"{"error": {"code": "unauthenticated"}}"#;
        let (status, code, message, details) = parts(api_error(401, body));
        assert_eq!(
            (status, code.as_str(), message.as_str()),
            (401, "unauthenticated", "")
        );
        assert_eq!(details, json!({}));
    }

    #[test]
    fn a_body_not_in_the_error_shape_is_named_by_its_status() {
        let (status, code, message, details) = parts(api_error(502, b"<html>bad gateway</html>"));
        assert_eq!((status, code.as_str()), (502, "http_502"));
        assert!(message.contains("bad gateway"), "{message}");
        assert_eq!(details, json!({}));
    }

    #[test]
    fn other_json_is_kept_as_details() {
        let body = br#"{"status": "unavailable", "stopped_shards": [{"shard": 0}]}"#;
        let (_, code, _, details) = parts(api_error(503, body));
        assert_eq!(code, "http_503");
        assert_eq!(details["status"], "unavailable");
    }

    #[test]
    fn an_empty_body_says_so() {
        let (_, _, message, _) = parts(api_error(500, b""));
        assert!(message.contains("empty body"), "{message}");
    }

    #[test]
    fn a_long_body_is_cut_at_a_character_boundary() {
        let body = "é".repeat(BODY_EXCERPT_BYTES_MAX);
        let cut = excerpt(body.as_bytes());
        assert!(cut.len() <= BODY_EXCERPT_BYTES_MAX + 3);
        assert!(cut.ends_with("..."));
    }

    #[test]
    fn code_and_status_accessors() {
        let error = api_error(404, br#"{"error": {"code": "not_found", "message": "no"}}"#);
        assert_eq!(error.code(), Some("not_found"));
        assert_eq!(error.status(), Some(404));
        assert_eq!(ClientError::Decode("x".into()).code(), None);
    }
}
