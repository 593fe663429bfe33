//! Input rules shared by the state machine and the API, so bad input is refused before it is
//! decided (and so never reaches the log).

use crate::command::{Change, GuardrailsSpec};
use crate::gray::{GrayRule, ReadContext};
use crate::{
    CHANGE_OVERHEAD_BYTES, CHANGE_PCT_MAX, DRAFT_CHUNK_BYTES_MAX, DRAFT_CHUNK_CHANGES_MAX,
    GRAY_LIST_MAX, GUARDRAIL_RULES_MAX, INTEGER_MAX, NOTE_BYTES_MAX, PERCENT_BASIS_POINTS_MAX,
    POINTER_BYTES_MAX, READ_SEGMENTS_MAX, REASON_BYTES_MAX, RELEASES_RETAINED_MAX, VALUE_BYTES_MAX,
};

/// Longest identifier (dataset, key, user, channel, region, segment), in bytes.
pub const IDENTIFIER_BYTES_MAX: usize = 128;

/// Checks an identifier: 1..=128 bytes of UTF-8 without control characters.
///
/// # Errors
/// A message naming the field.
pub fn identifier(field: &str, value: &str) -> Result<(), String> {
    if value.is_empty() || value.len() > IDENTIFIER_BYTES_MAX {
        return Err(format!(
            "{field} must be 1..={IDENTIFIER_BYTES_MAX} bytes, got {}",
            value.len()
        ));
    }
    if value.chars().any(char::is_control) {
        return Err(format!("{field} must not contain control characters"));
    }
    Ok(())
}

fn text(field: &str, value: &str, bytes_max: usize, required: bool) -> Result<(), String> {
    if required && value.trim().is_empty() {
        return Err(format!("{field} must not be empty"));
    }
    if value.len() > bytes_max {
        return Err(format!("{field} must be at most {bytes_max} bytes"));
    }
    if value
        .chars()
        .any(|c| c.is_control() && c != '\n' && c != '\t')
    {
        return Err(format!("{field} must not contain control characters"));
    }
    Ok(())
}

/// Checks a draft note: at most [`NOTE_BYTES_MAX`] bytes (may be empty; newlines allowed).
///
/// # Errors
/// A message.
pub fn note(note: &str) -> Result<(), String> {
    text("note", note, NOTE_BYTES_MAX, false)
}

/// Checks a reason (rollback reason, force reason): 1..=[`REASON_BYTES_MAX`] bytes.
///
/// # Errors
/// A message naming the field.
pub fn reason(field: &str, reason: &str) -> Result<(), String> {
    text(field, reason, REASON_BYTES_MAX, true)
}

/// Checks the size of a value's compact JSON text.
///
/// # Errors
/// A message.
pub fn value_bytes(bytes: usize) -> Result<(), String> {
    if bytes > VALUE_BYTES_MAX {
        return Err(format!(
            "a value must be at most {VALUE_BYTES_MAX} bytes of compact JSON, got {bytes}"
        ));
    }
    Ok(())
}

/// The estimated encoded size of one change, as counted against [`DRAFT_CHUNK_BYTES_MAX`].
#[must_use]
pub fn change_bytes(dataset: &str, key: &str, value_bytes: usize) -> usize {
    dataset.len() + key.len() + value_bytes + CHANGE_OVERHEAD_BYTES
}

/// Checks the shape of a draft chunk: count, identifiers, value sizes and total size. Returns
/// the compact JSON text of each value, in order.
///
/// # Errors
/// `Err((message, too_large))`: `too_large` is true when the chunk is too big for one log record
/// (HTTP 413) rather than malformed (400).
pub fn changes(changes: &[Change]) -> Result<Vec<Option<crate::JsonText>>, (String, bool)> {
    if changes.len() > DRAFT_CHUNK_CHANGES_MAX {
        return Err((
            format!(
                "at most {DRAFT_CHUNK_CHANGES_MAX} changes per request, got {}; add the rest with appends",
                changes.len()
            ),
            true,
        ));
    }
    let mut total = 0usize;
    let mut texts = Vec::with_capacity(changes.len());
    for change in changes {
        identifier("dataset", &change.dataset).map_err(|m| (m, false))?;
        identifier("key", &change.key).map_err(|m| (m, false))?;
        let value = match &change.value {
            None | Some(serde_json::Value::Null) => None,
            Some(value) => Some(crate::JsonText::from_value(value).map_err(|m| (m, false))?),
        };
        let bytes = value.as_ref().map_or(0, crate::JsonText::len);
        value_bytes(bytes).map_err(|m| (m, false))?;
        total = total.saturating_add(change_bytes(&change.dataset, &change.key, bytes));
        texts.push(value);
    }
    if total > DRAFT_CHUNK_BYTES_MAX {
        return Err((
            format!(
                "the changes take about {total} bytes, more than the {DRAFT_CHUNK_BYTES_MAX} one request may carry; split them with appends"
            ),
            true,
        ));
    }
    Ok(texts)
}

/// Checks a JSON Pointer: `""` or starting with `/`, at most [`POINTER_BYTES_MAX`] bytes.
///
/// # Errors
/// A message.
pub fn pointer(pointer: &str) -> Result<(), String> {
    if pointer.len() > POINTER_BYTES_MAX {
        return Err(format!(
            "a pointer must be at most {POINTER_BYTES_MAX} bytes"
        ));
    }
    if !pointer.is_empty() && !pointer.starts_with('/') {
        return Err(format!(
            "pointer '{pointer}' must be empty (the whole value) or start with '/'"
        ));
    }
    Ok(())
}

/// Checks guardrails (not the schema itself, which is compiled by the state machine).
///
/// # Errors
/// A message.
pub fn guardrails(spec: &GuardrailsSpec) -> Result<(), String> {
    let rules = spec.numeric_bounds.len() + spec.max_change_pct.len();
    if rules > GUARDRAIL_RULES_MAX {
        return Err(format!(
            "at most {GUARDRAIL_RULES_MAX} numeric_bounds and max_change_pct rules, got {rules}"
        ));
    }
    let in_range = |n: i64| (-INTEGER_MAX..=INTEGER_MAX).contains(&n);
    for bound in &spec.numeric_bounds {
        pointer(&bound.pointer)?;
        if bound.min.is_none() && bound.max.is_none() {
            return Err(format!(
                "numeric bound on '{}' needs min or max",
                bound.pointer
            ));
        }
        if !bound.min.is_none_or(in_range) || !bound.max.is_none_or(in_range) {
            return Err("numeric bounds must be within -2^53..=2^53".into());
        }
        if let (Some(min), Some(max)) = (bound.min, bound.max)
            && min > max
        {
            return Err(format!(
                "numeric bound on '{}' has min {min} above max {max}",
                bound.pointer
            ));
        }
    }
    for rule in &spec.max_change_pct {
        pointer(&rule.pointer)?;
        if rule.pct > CHANGE_PCT_MAX {
            return Err(format!(
                "max_change_pct pct must be at most {CHANGE_PCT_MAX}"
            ));
        }
    }
    if spec.max_changed_keys == Some(0) {
        return Err("max_changed_keys must be at least 1".into());
    }
    Ok(())
}

/// Checks a gray rule: at least one rule, a percent in `1..=10_000` basis points, bounded lists
/// of identifiers.
///
/// # Errors
/// A message.
pub fn gray(rule: &GrayRule) -> Result<(), String> {
    if rule.is_empty() {
        return Err(
            "gray needs at least one of percent, users, channels, regions, segments".into(),
        );
    }
    if let Some(bp) = rule.percent_bp
        && (bp == 0 || bp > PERCENT_BASIS_POINTS_MAX)
    {
        return Err("gray percent must be in (0, 100]".into());
    }
    for (field, list) in [
        ("users", &rule.users),
        ("channels", &rule.channels),
        ("regions", &rule.regions),
        ("segments", &rule.segments),
    ] {
        if list.len() > GRAY_LIST_MAX {
            return Err(format!(
                "gray {field} may list at most {GRAY_LIST_MAX} entries"
            ));
        }
        for item in list {
            identifier(field, item)?;
        }
    }
    Ok(())
}

/// Checks a read context.
///
/// # Errors
/// A message.
pub fn read_context(context: &ReadContext) -> Result<(), String> {
    for (field, value) in [
        ("user_id", &context.user_id),
        ("channel", &context.channel),
        ("region", &context.region),
    ] {
        if let Some(value) = value {
            identifier(field, value)?;
        }
    }
    if context.segments.len() > READ_SEGMENTS_MAX {
        return Err(format!("at most {READ_SEGMENTS_MAX} segments"));
    }
    for segment in &context.segments {
        identifier("segment", segment)?;
    }
    Ok(())
}

/// Converts a gray percentage, given as the text of a JSON number (for example `"10"`,
/// `"12.5"`, `"0.01"`), to basis points, exactly (no float arithmetic): `(0, 100]` with at
/// most two decimals.
///
/// # Errors
/// A message.
pub fn percent_basis_points(number: &str) -> Result<u16, String> {
    let refuse =
        || format!("percent must be a number in (0, 100] with at most 2 decimals, got {number}");
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    let fraction = fraction.trim_end_matches('0');
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(whole) || (!fraction.is_empty() && !digits(fraction)) || fraction.len() > 2 {
        return Err(refuse());
    }
    let whole: u32 = whole.parse().map_err(|_| refuse())?;
    let mut hundredths: u32 = fraction.parse().unwrap_or(0);
    if fraction.len() == 1 {
        hundredths *= 10;
    }
    let bp = whole
        .checked_mul(100)
        .and_then(|w| w.checked_add(hundredths))
        .ok_or_else(refuse)?;
    if bp == 0 || bp > u32::from(PERCENT_BASIS_POINTS_MAX) {
        return Err(refuse());
    }
    u16::try_from(bp).map_err(|_| refuse())
}

/// Checks a retention setting.
///
/// # Errors
/// A message.
pub fn retention(releases_retained_max: u64) -> Result<(), String> {
    if releases_retained_max == 0 || releases_retained_max > RELEASES_RETAINED_MAX as u64 {
        return Err(format!(
            "releases_retained_max must be in 1..={RELEASES_RETAINED_MAX}, got {releases_retained_max}"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_text_converts_exactly() {
        assert_eq!(percent_basis_points("10"), Ok(1000));
        assert_eq!(percent_basis_points("10.01"), Ok(1001));
        assert_eq!(percent_basis_points("0.01"), Ok(1));
        assert_eq!(percent_basis_points("12.5"), Ok(1250));
        assert_eq!(percent_basis_points("100"), Ok(10_000));
        assert_eq!(percent_basis_points("100.0"), Ok(10_000));
        assert!(percent_basis_points("0").is_err());
        assert!(percent_basis_points("100.01").is_err());
        assert!(percent_basis_points("0.001").is_err());
        assert!(percent_basis_points("-5").is_err());
        assert!(percent_basis_points("1e1").is_err());
        assert!(percent_basis_points("").is_err());
    }

    #[test]
    fn pointers_and_identifiers() {
        assert!(pointer("").is_ok());
        assert!(pointer("/amount").is_ok());
        assert!(pointer("amount").is_err());
        assert!(identifier("key", "SKU/1 blue").is_ok());
        assert!(identifier("key", "").is_err());
        assert!(identifier("key", &"x".repeat(129)).is_err());
        assert!(identifier("key", "a\nb").is_err());
    }

    #[test]
    fn chunks_are_bounded_by_count_and_bytes() {
        let change = |value: serde_json::Value| Change {
            dataset: "d".into(),
            key: "k".into(),
            value: Some(value),
        };
        assert!(changes(&[change(serde_json::json!(1))]).is_ok());
        let big = "x".repeat(VALUE_BYTES_MAX);
        let refused = changes(&[change(serde_json::json!(big))]).expect_err("too big");
        assert!(!refused.1);
        let nearly = "x".repeat(VALUE_BYTES_MAX - 10);
        let many: Vec<Change> = (0..60).map(|_| change(serde_json::json!(nearly))).collect();
        let refused = changes(&many).expect_err("too many bytes");
        assert!(refused.1);
        let null = changes(&[change(serde_json::Value::Null)]).expect("null deletes");
        assert_eq!(null, vec![None]);
    }
}
