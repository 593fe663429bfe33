//! Input rules shared by the state machine and the API, so bad input is refused before it is
//! decided (and so never reaches the log).

use crate::{QTY_MAX, REASON_BYTES_MAX, RESERVATION_LINES_MAX, RESERVATION_TTL_MS_MAX};

/// Longest identifier, in bytes.
pub const IDENTIFIER_BYTES_MAX: usize = 128;

/// Checks an identifier (SKU, location, order id, ...): 1..=128 bytes of printable UTF-8.
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

/// Checks a positive quantity: `0 < qty <= 2^53`.
///
/// # Errors
/// A message naming the field.
pub fn positive_qty(field: &str, qty: i64) -> Result<(), String> {
    if qty <= 0 || qty > QTY_MAX {
        return Err(format!("{field} must be in 1..=2^53, got {qty}"));
    }
    Ok(())
}

/// Checks a stock level: `0 <= qty <= 2^53`.
///
/// # Errors
/// A message naming the field.
pub fn level(field: &str, qty: i64) -> Result<(), String> {
    if !(0..=QTY_MAX).contains(&qty) {
        return Err(format!("{field} must be in 0..=2^53, got {qty}"));
    }
    Ok(())
}

/// Checks an adjustment's delta: non-zero, `|delta| <= 2^53`.
///
/// # Errors
/// A message.
pub fn delta(delta: i64) -> Result<(), String> {
    if delta == 0 || delta.unsigned_abs() > QTY_MAX.unsigned_abs() {
        return Err(format!(
            "delta must be non-zero and at most 2^53 in size, got {delta}"
        ));
    }
    Ok(())
}

/// Checks an adjustment's reason.
///
/// # Errors
/// A message.
pub fn reason(reason: &str) -> Result<(), String> {
    if reason.trim().is_empty() || reason.len() > REASON_BYTES_MAX {
        return Err(format!("reason must be 1..={REASON_BYTES_MAX} bytes"));
    }
    if reason.chars().any(char::is_control) {
        return Err("reason must not contain control characters".into());
    }
    Ok(())
}

/// Checks a reservation's TTL.
///
/// # Errors
/// A message.
pub fn ttl_ms(ttl_ms: u64) -> Result<(), String> {
    if ttl_ms == 0 || ttl_ms > RESERVATION_TTL_MS_MAX {
        return Err(format!(
            "ttl_ms must be in 1..={RESERVATION_TTL_MS_MAX}, got {ttl_ms}"
        ));
    }
    Ok(())
}

/// Checks the number of lines of a reservation.
///
/// # Errors
/// A message.
pub fn line_count(count: usize) -> Result<(), String> {
    if count == 0 || count > RESERVATION_LINES_MAX {
        return Err(format!(
            "a reservation has 1..={RESERVATION_LINES_MAX} lines, got {count}"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_are_bounded_printable_strings() {
        assert!(identifier("sku", "SKU/1 blue").is_ok());
        assert!(identifier("sku", "").is_err());
        assert!(identifier("sku", &"x".repeat(129)).is_err());
        assert!(identifier("sku", &"x".repeat(128)).is_ok());
        assert!(identifier("sku", "a\nb").is_err());
        assert!(identifier("sku", "a\u{7f}").is_err());
    }

    #[test]
    fn quantities_are_bounded() {
        assert!(positive_qty("qty", 0).is_err());
        assert!(positive_qty("qty", -1).is_err());
        assert!(positive_qty("qty", 1 << 53).is_ok());
        assert!(positive_qty("qty", (1 << 53) + 1).is_err());
        assert!(delta(-(1 << 53)).is_ok());
        assert!(delta(0).is_err());
        assert!(level("on_hand", 0).is_ok());
    }
}
