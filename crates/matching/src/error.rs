//! Refusals, each with a stable code. A refused command changes nothing and logs no event.

use crate::types::OrderStatus;
use cairn_types::ErrorCode;
use serde::{Deserialize, Serialize};

/// Why the matching engine refused a command.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum MatchingError {
    /// Malformed input: a bad identifier, amount, tick, lot, bound or order-type combination.
    InvalidArgument(String),
    /// The symbol is taken.
    MarketExists {
        /// The symbol.
        symbol: String,
    },
    /// Unknown market.
    MarketNotFound {
        /// The symbol.
        symbol: String,
    },
    /// The market never issued this order id.
    OrderNotFound {
        /// The market.
        symbol: String,
        /// The id.
        order_id: u64,
    },
    /// The order is filled, cancelled or rejected.
    OrderNotOpen {
        /// The market.
        symbol: String,
        /// The id.
        order_id: u64,
        /// Its status, when its history is still kept.
        status: Option<OrderStatus>,
    },
    /// An amend of a post-only order to a price that would trade.
    PostOnlyWouldCross {
        /// The market.
        symbol: String,
        /// The order.
        order_id: u64,
    },
    /// A bound was reached; `limit` names it.
    LimitExceeded {
        /// The limit's name (as in [`crate::Limits`]).
        limit: String,
        /// What would happen.
        message: String,
    },
}

impl MatchingError {
    /// The stable machine-readable code.
    #[must_use]
    pub fn code(&self) -> &'static str {
        match self {
            MatchingError::InvalidArgument(_) => ErrorCode::InvalidArgument.as_str(),
            MatchingError::MarketExists { .. } => ErrorCode::AlreadyExists.as_str(),
            MatchingError::MarketNotFound { .. } | MatchingError::OrderNotFound { .. } => {
                ErrorCode::NotFound.as_str()
            }
            MatchingError::OrderNotOpen { .. } => "order_not_open",
            MatchingError::PostOnlyWouldCross { .. } => "post_only_would_cross",
            MatchingError::LimitExceeded { .. } => "limit_exceeded",
        }
    }

    /// The HTTP status for the code.
    #[must_use]
    pub fn http_status(&self) -> u16 {
        match self {
            MatchingError::InvalidArgument(_) => 400,
            MatchingError::MarketNotFound { .. } | MatchingError::OrderNotFound { .. } => 404,
            _ => 409,
        }
    }

    /// A human message.
    #[must_use]
    pub fn message(&self) -> String {
        match self {
            MatchingError::InvalidArgument(reason) => reason.clone(),
            MatchingError::MarketExists { symbol } => format!("market {symbol} already exists"),
            MatchingError::MarketNotFound { symbol } => format!("market {symbol} not found"),
            MatchingError::OrderNotFound { symbol, order_id } => {
                format!("order {order_id} not found in market {symbol}")
            }
            MatchingError::OrderNotOpen {
                symbol,
                order_id,
                status,
            } => match status {
                Some(status) => format!(
                    "order {order_id} in market {symbol} is {} and no longer open",
                    status.as_str()
                ),
                None => format!("order {order_id} in market {symbol} is no longer open"),
            },
            MatchingError::PostOnlyWouldCross { symbol, order_id } => format!(
                "order {order_id} in market {symbol} is post-only and the new price would trade"
            ),
            MatchingError::LimitExceeded { message, .. } => message.clone(),
        }
    }
}

impl std::fmt::Display for MatchingError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code(), self.message())
    }
}

impl std::error::Error for MatchingError {}
