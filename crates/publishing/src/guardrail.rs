//! Guardrails: rules a dataset's changes must pass when a release is created (and again at a
//! scheduled go-live). Every numeric check is on integers; a float in a value is data, never a
//! number a rule compares.

use crate::json::{JsonText, integer_at};
use crate::{VIOLATION_MESSAGE_BYTES_MAX, VIOLATIONS_LISTED_MAX};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;
use std::sync::Arc;

/// Integer bounds on the field at `pointer` (inclusive).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NumericBound {
    /// JSON Pointer to the field (`""` is the whole value).
    pub pointer: String,
    /// Smallest allowed value (`price > 0` is `min: 1`).
    #[serde(default)]
    pub min: Option<i64>,
    /// Largest allowed value.
    #[serde(default)]
    pub max: Option<i64>,
}

/// Largest relative change, in percent, of the field at `pointer` against the value live for
/// everyone. A key that is new, or whose live field is missing, not an integer or 0, is checked
/// only against bounds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MaxChangePct {
    /// JSON Pointer to the field (`""` is the whole value).
    pub pointer: String,
    /// Largest allowed change in percent of the live value (50: a price may halve, not less).
    pub pct: u32,
}

/// A compiled JSON Schema, kept (and encoded) as its JSON text and compiled again on restore.
#[derive(Clone)]
pub struct JsonSchema {
    text: JsonText,
    /// `None` when the text no longer compiles (only after a library change): then every value
    /// fails the `json_schema` rule, rather than the restore failing.
    compiled: Option<Arc<jsonschema::Validator>>,
}

impl JsonSchema {
    /// Compiles a schema.
    ///
    /// # Errors
    /// A message saying why the schema is refused.
    pub fn compile(schema: &Value) -> Result<JsonSchema, String> {
        let validator = jsonschema::validator_for(schema)
            .map_err(|e| format!("json_schema is not a valid JSON Schema: {e}"))?;
        Ok(JsonSchema {
            text: JsonText::from_value(schema)?,
            compiled: Some(Arc::new(validator)),
        })
    }

    fn from_text(text: JsonText) -> JsonSchema {
        let compiled = text
            .to_value()
            .ok()
            .and_then(|value| jsonschema::validator_for(&value).ok())
            .map(Arc::new);
        JsonSchema { text, compiled }
    }

    /// The schema's JSON text.
    #[must_use]
    pub fn text(&self) -> &JsonText {
        &self.text
    }

    /// `None` when `value` passes, else the first message in sorted order (deterministic,
    /// whatever order the validator finds errors in).
    fn check(&self, value: &Value) -> Option<String> {
        let Some(validator) = &self.compiled else {
            return Some("the dataset's JSON Schema no longer compiles".into());
        };
        if validator.is_valid(value) {
            return None;
        }
        let mut messages: Vec<String> = validator
            .iter_errors(value)
            .map(|error| {
                let path = error.instance_path().to_string();
                if path.is_empty() {
                    error.to_string()
                } else {
                    format!("{path}: {error}")
                }
            })
            .collect();
        messages.sort();
        Some(
            messages
                .into_iter()
                .next()
                .unwrap_or_else(|| "the value does not match the JSON Schema".into()),
        )
    }
}

impl PartialEq for JsonSchema {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text
    }
}

impl Eq for JsonSchema {}

impl std::fmt::Debug for JsonSchema {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JsonSchema")
            .field("text", &self.text)
            .field("compiled", &self.compiled.is_some())
            .finish()
    }
}

impl Serialize for JsonSchema {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.text.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for JsonSchema {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        JsonText::deserialize(deserializer).map(JsonSchema::from_text)
    }
}

/// A dataset's guardrails as stored (and logged): the schema as JSON text.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Guardrails {
    /// Every value set must match this schema.
    pub json_schema: Option<JsonSchema>,
    /// Integer bounds on fields.
    pub numeric_bounds: Vec<NumericBound>,
    /// Largest relative changes of fields.
    pub max_change_pct: Vec<MaxChangePct>,
    /// Most keys of this dataset one release may change.
    pub max_changed_keys: Option<u64>,
}

/// Which guardrail a violation broke.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Rule {
    /// The value does not match the dataset's JSON Schema.
    JsonSchema,
    /// A field is missing, not an integer, or out of its bounds.
    NumericBounds,
    /// A field changed more than allowed against the live value (or is missing / not an integer).
    MaxChangePct,
    /// The release changes more keys of the dataset than allowed.
    MaxChangedKeys,
}

impl Rule {
    /// The rule's name as in the guardrails JSON.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Rule::JsonSchema => "json_schema",
            Rule::NumericBounds => "numeric_bounds",
            Rule::MaxChangePct => "max_change_pct",
            Rule::MaxChangedKeys => "max_changed_keys",
        }
    }
}

/// One broken rule.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Violation {
    /// The dataset.
    pub dataset: String,
    /// The key, or `None` for a rule on the whole release (`max_changed_keys`).
    pub key: Option<String>,
    /// The rule.
    pub rule: Rule,
    /// What is wrong, at most [`VIOLATION_MESSAGE_BYTES_MAX`] bytes.
    pub message: String,
}

/// Violations found, the first [`VIOLATIONS_LISTED_MAX`] listed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Violations {
    pub(crate) listed: Vec<Violation>,
    pub(crate) total: u64,
}

impl Violations {
    fn push(
        &mut self,
        dataset: &str,
        key: Option<&str>,
        rule: Rule,
        message: impl FnOnce() -> String,
    ) {
        self.total += 1;
        if self.listed.len() < VIOLATIONS_LISTED_MAX {
            self.listed.push(Violation {
                dataset: dataset.to_string(),
                key: key.map(str::to_string),
                rule,
                message: truncate(message()),
            });
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.total == 0
    }
}

/// Cuts a message to [`VIOLATION_MESSAGE_BYTES_MAX`] bytes at a character boundary.
fn truncate(mut message: String) -> String {
    if message.len() > VIOLATION_MESSAGE_BYTES_MAX {
        let mut end = VIOLATION_MESSAGE_BYTES_MAX;
        while !message.is_char_boundary(end) {
            end -= 1;
        }
        message.truncate(end);
    }
    message
}

impl Guardrails {
    /// True when some rule looks at values (so changed values must be parsed).
    pub(crate) fn checks_values(&self) -> bool {
        self.json_schema.is_some()
            || !self.numeric_bounds.is_empty()
            || !self.max_change_pct.is_empty()
    }

    /// Checks the number of keys a release changes in the dataset.
    pub(crate) fn check_count(&self, dataset: &str, changed: u64, out: &mut Violations) {
        if let Some(max) = self.max_changed_keys.filter(|&max| changed > max) {
            out.push(dataset, None, Rule::MaxChangedKeys, || {
                format!(
                    "the release changes {changed} keys of {dataset}, more than the {max} allowed"
                )
            });
        }
    }

    /// Checks one new value against the value live for everyone (`old`, if the key exists).
    /// The old value is parsed only when a `max_change_pct` rule needs it.
    pub(crate) fn check_change(
        &self,
        dataset: &str,
        key: &str,
        new: &JsonText,
        old: Option<&JsonText>,
        out: &mut Violations,
    ) {
        if !self.checks_values() {
            return;
        }
        match new.to_value() {
            Ok(value) => self.check_value(dataset, key, &value, old, out),
            Err(message) => out.push(dataset, Some(key), Rule::JsonSchema, || message),
        }
    }

    fn check_value(
        &self,
        dataset: &str,
        key: &str,
        value: &Value,
        old: Option<&JsonText>,
        out: &mut Violations,
    ) {
        if let Some(message) = self.json_schema.as_ref().and_then(|s| s.check(value)) {
            out.push(dataset, Some(key), Rule::JsonSchema, || message);
        }
        for bound in &self.numeric_bounds {
            let pointer = &bound.pointer;
            match integer_at(value, pointer) {
                None => out.push(dataset, Some(key), Rule::NumericBounds, || {
                    format!("field '{pointer}' is missing or not an integer")
                }),
                Some(n) if bound.min.is_some_and(|min| n < min) => {
                    out.push(dataset, Some(key), Rule::NumericBounds, || {
                        format!(
                            "field '{pointer}' is {n}, below the minimum {}",
                            bound.min.unwrap_or_default()
                        )
                    });
                }
                Some(n) if bound.max.is_some_and(|max| n > max) => {
                    out.push(dataset, Some(key), Rule::NumericBounds, || {
                        format!(
                            "field '{pointer}' is {n}, above the maximum {}",
                            bound.max.unwrap_or_default()
                        )
                    });
                }
                Some(_) => {}
            }
        }
        if self.max_change_pct.is_empty() {
            return;
        }
        let before = old.and_then(|text| text.to_value().ok());
        for rule in &self.max_change_pct {
            let pointer = &rule.pointer;
            let Some(old) = before
                .as_ref()
                .and_then(|before| integer_at(before, pointer))
                .filter(|&old| old != 0)
            else {
                continue; // New key, or no integer baseline: bounds only.
            };
            let Some(new) = integer_at(value, pointer) else {
                out.push(dataset, Some(key), Rule::MaxChangePct, || {
                    format!("field '{pointer}' is missing or not an integer")
                });
                continue;
            };
            let change = (i128::from(new) - i128::from(old)).abs() * 100;
            let allowed = i128::from(rule.pct) * i128::from(old).abs();
            if change > allowed {
                out.push(dataset, Some(key), Rule::MaxChangePct, || {
                    format!(
                        "field '{pointer}' changes from {old} to {new}, more than {}% of the live value",
                        rule.pct
                    )
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn text(value: Value) -> JsonText {
        JsonText::from_value(&value).expect("serializes")
    }

    fn price_rules() -> Guardrails {
        Guardrails {
            json_schema: Some(
                JsonSchema::compile(&json!({"type": "object", "required": ["amount"]}))
                    .expect("compiles"),
            ),
            numeric_bounds: vec![NumericBound {
                pointer: "/amount".into(),
                min: Some(1),
                max: Some(100_000_000),
            }],
            max_change_pct: vec![MaxChangePct {
                pointer: "/amount".into(),
                pct: 50,
            }],
            max_changed_keys: Some(3),
        }
    }

    fn check(
        rules: &Guardrails,
        changes: &[(&str, Option<JsonText>)],
        live: &[(&str, JsonText)],
    ) -> Violations {
        let mut out = Violations::default();
        rules.check_count("prices", changes.len() as u64, &mut out);
        for (key, value) in changes {
            let old = live.iter().find(|(k, _)| k == key).map(|(_, v)| v);
            if let Some(value) = value {
                rules.check_change("prices", key, value, old, &mut out);
            }
        }
        out
    }

    #[test]
    fn a_price_drop_over_half_is_refused_and_a_new_key_is_checked_only_against_bounds() {
        let rules = price_rules();
        let live = [
            ("a", text(json!({"amount": 1000}))),
            ("z", text(json!({"amount": 0}))),
        ];
        let ok = check(&rules, &[("a", Some(text(json!({"amount": 500}))))], &live);
        assert!(ok.is_empty(), "{ok:?}");
        let drop = check(&rules, &[("a", Some(text(json!({"amount": 499}))))], &live);
        assert_eq!(drop.total, 1);
        assert_eq!(drop.listed[0].rule, Rule::MaxChangePct);
        let rise = check(&rules, &[("a", Some(text(json!({"amount": 1501}))))], &live);
        assert_eq!(rise.listed[0].rule, Rule::MaxChangePct);
        let new_key = check(
            &rules,
            &[("b", Some(text(json!({"amount": 99_999}))))],
            &live,
        );
        assert!(new_key.is_empty());
        let from_zero = check(
            &rules,
            &[("z", Some(text(json!({"amount": 99_999}))))],
            &live,
        );
        assert!(from_zero.is_empty());
    }

    #[test]
    fn missing_float_and_out_of_bounds_fields_are_violations() {
        let rules = price_rules();
        let zero = check(&rules, &[("a", Some(text(json!({"amount": 0}))))], &[]);
        assert_eq!(zero.listed[0].rule, Rule::NumericBounds);
        let float = check(&rules, &[("a", Some(text(json!({"amount": 5.5}))))], &[]);
        assert_eq!(float.listed[0].rule, Rule::NumericBounds);
        let missing = check(&rules, &[("a", Some(text(json!({"other": 5}))))], &[]);
        let found: Vec<Rule> = missing.listed.iter().map(|v| v.rule).collect();
        assert_eq!(found, vec![Rule::JsonSchema, Rule::NumericBounds]);
        let deletion = check(&rules, &[("a", None)], &[]);
        assert!(deletion.is_empty());
    }

    #[test]
    fn too_many_changed_keys_is_one_violation_on_the_dataset() {
        let rules = price_rules();
        let v = Some(text(json!({"amount": 5})));
        let changes = [
            ("a", v.clone()),
            ("b", v.clone()),
            ("c", v.clone()),
            ("d", v),
        ];
        let out = check(&rules, &changes, &[]);
        assert_eq!(out.total, 1);
        assert_eq!(out.listed[0].rule, Rule::MaxChangedKeys);
        assert_eq!(out.listed[0].key, None);
    }

    #[test]
    fn schemas_encode_as_text_and_compile_again() {
        let rules = price_rules();
        let bytes = postcard::to_stdvec(&rules).expect("encodes");
        let back: Guardrails = postcard::from_bytes(&bytes).expect("decodes");
        assert_eq!(back, rules);
        let bad = check(&back, &[("a", Some(text(json!([1]))))], &[]);
        assert!(bad.listed.iter().any(|v| v.rule == Rule::JsonSchema));
    }

    #[test]
    fn long_messages_are_cut_at_a_character_boundary() {
        let cut = truncate("é".repeat(VIOLATION_MESSAGE_BYTES_MAX));
        assert!(cut.len() <= VIOLATION_MESSAGE_BYTES_MAX);
        assert!(cut.chars().all(|c| c == 'é'));
    }
}
