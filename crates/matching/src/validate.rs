//! Input rules shared by the state machine and the API, so bad input is refused before it is
//! decided (and so never reaches the log). Every function returns a message naming the field.

use crate::types::{MarketSpec, OrderType, TimeInForce};
use crate::{AMOUNT_MAX, IDENTIFIER_BYTES_MAX};

/// Checks an identifier (symbol, account): 1..=128 bytes of printable UTF-8.
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

/// Checks a positive amount: `0 < n <= 2^53`.
///
/// # Errors
/// A message naming the field.
pub fn positive(field: &str, value: i64) -> Result<(), String> {
    if value <= 0 || value > AMOUNT_MAX {
        return Err(format!("{field} must be in 1..=2^53, got {value}"));
    }
    Ok(())
}

/// Resolves a market's spec from a create command's fields, defaults filled in.
///
/// # Errors
/// A message naming the first bad field.
pub fn market_spec(
    tick_size: i64,
    lot_size: i64,
    min_price: Option<i64>,
    max_price: Option<i64>,
    min_qty: Option<i64>,
    max_qty: Option<i64>,
) -> Result<MarketSpec, String> {
    positive("tick_size", tick_size)?;
    positive("lot_size", lot_size)?;
    let (min_price, max_price) = bounds("price", tick_size, min_price, max_price)?;
    let (min_qty, max_qty) = bounds("qty", lot_size, min_qty, max_qty)?;
    Ok(MarketSpec {
        tick_size,
        lot_size,
        min_price,
        max_price,
        min_qty,
        max_qty,
        closed_orders_max: 0,
        trades_max: 0,
    })
}

/// A `min_*`/`max_*` pair: positive multiples of `step`, `min <= max`.
fn bounds(what: &str, step: i64, min: Option<i64>, max: Option<i64>) -> Result<(i64, i64), String> {
    let min = min.unwrap_or(step);
    let max = max.unwrap_or(AMOUNT_MAX - AMOUNT_MAX % step);
    multiple(&format!("min_{what}"), min, step)?;
    multiple(&format!("max_{what}"), max, step)?;
    if min > max {
        return Err(format!("min_{what} {min} is above max_{what} {max}"));
    }
    Ok((min, max))
}

/// A positive amount that is a multiple of `step`.
fn multiple(field: &str, value: i64, step: i64) -> Result<(), String> {
    positive(field, value)?;
    if value % step != 0 {
        return Err(format!("{field} {value} is not a multiple of {step}"));
    }
    Ok(())
}

/// Checks a limit price against a market's tick and bounds.
///
/// # Errors
/// A message.
pub fn price(spec: &MarketSpec, price: i64) -> Result<(), String> {
    positive("price", price)?;
    if price % spec.tick_size != 0 {
        return Err(format!(
            "price {price} is not a multiple of tick_size {}",
            spec.tick_size
        ));
    }
    if price < spec.min_price || price > spec.max_price {
        return Err(format!(
            "price {price} is outside {}..={}",
            spec.min_price, spec.max_price
        ));
    }
    Ok(())
}

/// Checks an order quantity against a market's lot and bounds.
///
/// # Errors
/// A message.
pub fn qty(spec: &MarketSpec, qty: i64) -> Result<(), String> {
    positive("qty", qty)?;
    if qty % spec.lot_size != 0 {
        return Err(format!(
            "qty {qty} is not a multiple of lot_size {}",
            spec.lot_size
        ));
    }
    if qty < spec.min_qty || qty > spec.max_qty {
        return Err(format!(
            "qty {qty} is outside {}..={}",
            spec.min_qty, spec.max_qty
        ));
    }
    Ok(())
}

/// Checks the combination of order type, price, time in force and post-only.
///
/// # Errors
/// A message.
pub fn order_shape(
    order_type: OrderType,
    price: Option<i64>,
    time_in_force: TimeInForce,
    post_only: bool,
) -> Result<(), String> {
    match (order_type, price) {
        (OrderType::Limit, None) => return Err("a limit order needs a price".into()),
        (OrderType::Market, Some(_)) => return Err("a market order takes no price".into()),
        _ => {}
    }
    if order_type == OrderType::Market && time_in_force == TimeInForce::Gtc {
        return Err("a market order is ioc or fok, never gtc".into());
    }
    if post_only && time_in_force != TimeInForce::Gtc {
        return Err("post_only is allowed only with gtc".into());
    }
    if post_only && order_type == OrderType::Market {
        return Err("post_only is allowed only on limit orders".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_are_bounded_printable_strings() {
        assert!(identifier("symbol", "BTC/USD").is_ok());
        assert!(identifier("symbol", "").is_err());
        assert!(identifier("symbol", &"x".repeat(129)).is_err());
        assert!(identifier("symbol", &"x".repeat(128)).is_ok());
        assert!(identifier("symbol", "a\tb").is_err());
        assert!(identifier("symbol", "a\u{7f}").is_err());
    }

    #[test]
    fn amounts_are_positive_and_at_most_two_to_the_53() {
        assert!(positive("qty", 0).is_err());
        assert!(positive("qty", -5).is_err());
        assert!(positive("qty", 1 << 53).is_ok());
        assert!(positive("qty", (1 << 53) + 1).is_err());
    }

    #[test]
    fn spec_defaults_are_the_widest_multiples() {
        let spec = market_spec(7, 3, None, None, None, None).expect("valid");
        assert_eq!(spec.min_price, 7);
        assert_eq!(spec.max_price % 7, 0);
        assert!(spec.max_price <= AMOUNT_MAX && spec.max_price > AMOUNT_MAX - 7);
        assert_eq!((spec.min_qty, spec.max_qty % 3), (3, 0));
        assert!(market_spec(5, 1, Some(7), None, None, None).is_err());
        assert!(market_spec(5, 1, Some(10), Some(5), None, None).is_err());
        assert!(market_spec(0, 1, None, None, None, None).is_err());
    }

    #[test]
    fn order_shapes_follow_the_api_rules() {
        use OrderType::{Limit, Market};
        use TimeInForce::{Fok, Gtc, Ioc};
        assert!(order_shape(Limit, Some(1), Gtc, true).is_ok());
        assert!(order_shape(Limit, None, Gtc, false).is_err());
        assert!(order_shape(Market, Some(1), Ioc, false).is_err());
        assert!(order_shape(Market, None, Gtc, false).is_err());
        assert!(order_shape(Market, None, Fok, false).is_ok());
        assert!(order_shape(Limit, Some(1), Ioc, true).is_err());
        assert!(order_shape(Limit, Some(1), Fok, true).is_err());
    }
}
