//! JSON values as stored: compact JSON text, fixed when a change is decided.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::sync::Arc;

/// A JSON value kept as compact JSON text.
///
/// The text is produced once, when a change is decided, and travels in the event; apply and
/// replay never re-serialize, so the bytes (and the state hash) cannot drift with a library.
/// Cloning is a reference-count increment.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct JsonText(Arc<str>);

impl JsonText {
    /// The compact text of `value`.
    ///
    /// # Errors
    /// The value does not serialize (it always does for a `serde_json::Value`).
    pub fn from_value(value: &Value) -> Result<JsonText, String> {
        serde_json::to_string(value)
            .map(|text| JsonText(Arc::from(text)))
            .map_err(|e| format!("the value does not serialize as JSON: {e}"))
    }

    /// Parses JSON text (for example read from a client) into its compact form.
    ///
    /// # Errors
    /// The text is not JSON.
    pub fn parse_text(text: &str) -> Result<JsonText, String> {
        let value: Value =
            serde_json::from_str(text).map_err(|e| format!("not valid JSON: {e}"))?;
        JsonText::from_value(&value)
    }

    /// The JSON text.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The length of the text in bytes.
    #[must_use]
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True for an empty text (never produced by this crate).
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The value.
    ///
    /// # Errors
    /// The text is not JSON (only possible for text built by hand around this crate).
    pub fn to_value(&self) -> Result<Value, String> {
        serde_json::from_str(&self.0).map_err(|e| format!("stored value is not JSON: {e}"))
    }
}

impl std::fmt::Debug for JsonText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::fmt::Display for JsonText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The integer at a JSON Pointer (`""` is the whole value), if there is one.
pub(crate) fn integer_at(value: &Value, pointer: &str) -> Option<i64> {
    value.pointer(pointer).and_then(Value::as_i64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn text_is_compact_and_round_trips() {
        let text = JsonText::from_value(&json!({"a": 1, "b": [1, 2]})).expect("serializes");
        assert_eq!(text.as_str(), r#"{"a":1,"b":[1,2]}"#);
        assert_eq!(
            text.to_value().expect("parses"),
            json!({"a": 1, "b": [1, 2]})
        );
        let parsed = JsonText::parse_text(" { \"a\" : 1 , \"b\": [1,2] } ").expect("parses");
        assert_eq!(parsed, text);
    }

    #[test]
    fn integers_are_found_by_pointer_and_floats_are_not_integers() {
        let value = json!({"amount": 5, "price": 5.5, "n": {"x": -3}});
        assert_eq!(integer_at(&value, "/amount"), Some(5));
        assert_eq!(integer_at(&value, "/price"), None);
        assert_eq!(integer_at(&value, "/n/x"), Some(-3));
        assert_eq!(integer_at(&value, "/missing"), None);
        assert_eq!(integer_at(&json!(7), ""), Some(7));
    }
}
