//! The vocabulary of the book: sides, order types, statuses, reasons, market specs and limits.

use serde::{Deserialize, Serialize};

/// Buy or sell.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Side {
    /// A bid.
    Buy,
    /// An ask.
    Sell,
}

impl Side {
    /// The other side.
    #[must_use]
    pub fn opposite(self) -> Side {
        match self {
            Side::Buy => Side::Sell,
            Side::Sell => Side::Buy,
        }
    }

    /// Whether an order on this side with limit `limit` trades with a resting order at `resting`.
    #[must_use]
    pub fn crosses(self, limit: i64, resting: i64) -> bool {
        match self {
            Side::Buy => resting <= limit,
            Side::Sell => resting >= limit,
        }
    }

    /// The wire name.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Side::Buy => "buy",
            Side::Sell => "sell",
        }
    }
}

/// Limit or market.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OrderType {
    /// Trades at its price or better; may rest.
    Limit,
    /// Trades at any price; never rests.
    Market,
}

impl OrderType {
    /// The wire name.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            OrderType::Limit => "limit",
            OrderType::Market => "market",
        }
    }
}

/// How long an order stays.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TimeInForce {
    /// Good till cancelled: the remainder rests.
    Gtc,
    /// Immediate or cancel: the remainder is cancelled.
    Ioc,
    /// Fill or kill: all at once or nothing.
    Fok,
}

impl TimeInForce {
    /// The wire name.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            TimeInForce::Gtc => "gtc",
            TimeInForce::Ioc => "ioc",
            TimeInForce::Fok => "fok",
        }
    }
}

/// What self-trade prevention does when an order meets a resting order of its own account.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StpMode {
    /// Cancel the incoming order's remainder (the default).
    #[default]
    CancelIncoming,
    /// Cancel the resting order and go on matching.
    CancelResting,
    /// Cancel the resting order and the incoming order's remainder.
    CancelBoth,
}

impl StpMode {
    /// The wire name.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            StpMode::CancelIncoming => "cancel_incoming",
            StpMode::CancelResting => "cancel_resting",
            StpMode::CancelBoth => "cancel_both",
        }
    }
}

/// Where an order is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OrderStatus {
    /// Resting, nothing filled.
    New,
    /// Resting, some filled.
    PartiallyFilled,
    /// All filled.
    Filled,
    /// Closed with an unfilled remainder (by a cancel, IOC, self-trade prevention or a limit).
    Cancelled,
    /// Closed on arrival with nothing filled, as a market outcome.
    Rejected,
}

impl OrderStatus {
    /// Whether the order rests on the book.
    #[must_use]
    pub fn is_open(self) -> bool {
        matches!(self, OrderStatus::New | OrderStatus::PartiallyFilled)
    }

    /// The wire name.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            OrderStatus::New => "new",
            OrderStatus::PartiallyFilled => "partially_filled",
            OrderStatus::Filled => "filled",
            OrderStatus::Cancelled => "cancelled",
            OrderStatus::Rejected => "rejected",
        }
    }
}

/// Why an order was rejected (it is still an accepted, logged command).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RejectReason {
    /// A fill-or-kill order could not fill completely.
    FokNotFillable,
    /// A post-only order would have traded on arrival.
    PostOnlyWouldCross,
    /// Nothing to trade with (an IOC or market order that found no crossing liquidity).
    NoLiquidity,
    /// Self-trade prevention stopped the order before anything filled.
    SelfTrade,
}

impl RejectReason {
    /// The wire name.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            RejectReason::FokNotFillable => "fok_not_fillable",
            RejectReason::PostOnlyWouldCross => "post_only_would_cross",
            RejectReason::NoLiquidity => "no_liquidity",
            RejectReason::SelfTrade => "self_trade",
        }
    }
}

/// Why an order's remainder was cancelled.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CancelReason {
    /// A cancel command.
    Requested,
    /// The unfilled remainder of an IOC or market order.
    ImmediateOrCancel,
    /// Self-trade prevention.
    SelfTrade,
    /// The order touched [`Limits::fills_per_order_max`] resting orders.
    FillsLimit,
}

impl CancelReason {
    /// The wire name.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            CancelReason::Requested => "requested",
            CancelReason::ImmediateOrCancel => "immediate_or_cancel",
            CancelReason::SelfTrade => "self_trade",
            CancelReason::FillsLimit => "fills_limit",
        }
    }
}

/// A market's rules, with every default resolved.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MarketSpec {
    /// Prices are multiples of this (minor units).
    pub tick_size: i64,
    /// Quantities are multiples of this (units).
    pub lot_size: i64,
    /// Lowest limit price.
    pub min_price: i64,
    /// Highest limit price.
    pub max_price: i64,
    /// Smallest order quantity.
    pub min_qty: i64,
    /// Largest order quantity.
    pub max_qty: i64,
    /// Closed orders kept queryable (fixed when the market is created, so replay keeps the same).
    pub closed_orders_max: u64,
    /// Trades kept queryable (fixed when the market is created).
    pub trades_max: u64,
}

/// Limits applied when deciding. They are configuration, not state: changing them never changes
/// how logged events apply (the retention bounds are copied into each market when it is created).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    /// Most markets.
    pub markets_max: usize,
    /// Most open orders per market.
    pub open_orders_per_market_max: usize,
    /// Most price levels per side of a market.
    pub price_levels_per_side_max: usize,
    /// Most resting orders one incoming order may touch (at most [`crate::FILLS_PER_ORDER_MAX`]).
    pub fills_per_order_max: usize,
    /// Closed orders kept per market created from now on.
    pub closed_orders_per_market_max: usize,
    /// Trades kept per market created from now on.
    pub trades_per_market_max: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            markets_max: crate::MARKETS_MAX,
            open_orders_per_market_max: crate::OPEN_ORDERS_PER_MARKET_MAX,
            price_levels_per_side_max: crate::PRICE_LEVELS_PER_SIDE_MAX,
            fills_per_order_max: crate::FILLS_PER_ORDER_MAX,
            closed_orders_per_market_max: crate::CLOSED_ORDERS_PER_MARKET_MAX,
            trades_per_market_max: crate::TRADES_PER_MARKET_MAX,
        }
    }
}

impl Limits {
    /// The limits clamped to the hard ceilings (and at least 1 where 0 would make no sense).
    #[must_use]
    pub fn clamped(self) -> Limits {
        Limits {
            markets_max: self.markets_max.min(crate::MARKETS_MAX),
            open_orders_per_market_max: self
                .open_orders_per_market_max
                .min(crate::OPEN_ORDERS_PER_MARKET_MAX),
            price_levels_per_side_max: self
                .price_levels_per_side_max
                .min(crate::PRICE_LEVELS_PER_SIDE_MAX),
            fills_per_order_max: self
                .fills_per_order_max
                .clamp(1, crate::FILLS_PER_ORDER_MAX),
            closed_orders_per_market_max: self
                .closed_orders_per_market_max
                .min(crate::CLOSED_ORDERS_PER_MARKET_MAX),
            trades_per_market_max: self.trades_per_market_max.min(crate::TRADES_PER_MARKET_MAX),
        }
    }
}

/// One execution, as kept in a market's trade history.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Trade {
    /// Increasing per market, from 1.
    pub trade_id: u64,
    /// The maker's price.
    pub price: i64,
    /// Units.
    pub qty: i64,
    /// The resting order.
    pub maker_order_id: u64,
    /// The incoming order.
    pub taker_order_id: u64,
    /// The incoming order's side.
    pub taker_side: Side,
    /// Log time of the execution.
    pub at_ms: u64,
}
