//! Commands (what callers ask), events (facts in the log) and replies.

use crate::types::{
    CancelReason, MarketSpec, OrderStatus, OrderType, RejectReason, Side, StpMode, TimeInForce,
};
use serde::{Deserialize, Serialize};

/// Who asked, for the audit trail. Orders are recorded under their `account`; the actor is
/// logged only on market creation (order events stay compact).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Actor {
    /// The token name that made the request.
    pub name: String,
    /// The caller's `request_id`, when it gave one.
    pub request_id: Option<String>,
}

/// What callers ask the matching engine to do.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum MatchingCommand {
    /// Open a market. Omitted bounds default to the widest the tick and lot allow.
    CreateMarket {
        /// The market's symbol.
        symbol: String,
        /// Prices are multiples of this.
        tick_size: i64,
        /// Quantities are multiples of this.
        lot_size: i64,
        /// Lowest limit price (default: `tick_size`).
        min_price: Option<i64>,
        /// Highest limit price (default: the largest multiple of `tick_size` up to 2^53).
        max_price: Option<i64>,
        /// Smallest order quantity (default: `lot_size`).
        min_qty: Option<i64>,
        /// Largest order quantity (default: the largest multiple of `lot_size` up to 2^53).
        max_qty: Option<i64>,
    },
    /// Place an order.
    PlaceOrder {
        /// The market.
        symbol: String,
        /// The account the order belongs to (self-trade prevention works per account).
        account: String,
        /// Buy or sell.
        side: Side,
        /// Limit or market.
        order_type: OrderType,
        /// The limit price: required for a limit order, refused for a market order.
        price: Option<i64>,
        /// Units.
        qty: i64,
        /// GTC, IOC or FOK (a market order is IOC or FOK).
        time_in_force: TimeInForce,
        /// Refuse to trade on arrival (GTC limit orders only).
        post_only: bool,
        /// Self-trade prevention mode (default: cancel the incoming order).
        stp: Option<StpMode>,
    },
    /// Cancel an open order.
    CancelOrder {
        /// The market.
        symbol: String,
        /// The exchange's order id.
        order_id: u64,
    },
    /// Change an open order's limit price and/or total quantity.
    AmendOrder {
        /// The market.
        symbol: String,
        /// The exchange's order id.
        order_id: u64,
        /// The new limit price.
        price: Option<i64>,
        /// The new total quantity (including what already filled).
        qty: Option<i64>,
    },
}

/// One execution against a resting order, inside an event.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fill {
    /// The trade id (consecutive within one event).
    pub trade_id: u64,
    /// The resting order.
    pub maker_order_id: u64,
    /// The resting order's account.
    pub maker_account: String,
    /// The maker's price (the trade price).
    pub price: i64,
    /// Units.
    pub qty: i64,
}

/// A resting order cancelled by self-trade prevention, inside an event. It rests on the side
/// opposite to the incoming order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StpCancel {
    /// The resting order.
    pub order_id: u64,
    /// Its price.
    pub price: i64,
    /// What it had left (leaves the level at `price`).
    pub remaining_qty: i64,
}

/// Facts in the log. Each carries a command's complete outcome.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum MatchingEvent {
    /// A market was opened.
    MarketCreated {
        /// The symbol.
        symbol: String,
        /// The market's sequence number of this event: 1 for `MarketCreated`, then one more for
        /// each event of the market, with no gap (a feed consumer detects a gap by it).
        seq: u64,
        /// Its rules, defaults resolved.
        spec: MarketSpec,
        /// Who.
        actor: Actor,
    },
    /// An order arrived and was matched. Its fills come first (in execution order), then
    /// `resting_qty` rests at `price` on `side` (when positive).
    OrderPlaced {
        /// The market.
        symbol: String,
        /// The market's sequence number of this event: 1 for `MarketCreated`, then one more for
        /// each event of the market, with no gap (a feed consumer detects a gap by it).
        seq: u64,
        /// The new order's id.
        order_id: u64,
        /// Its account.
        account: String,
        /// Its side.
        side: Side,
        /// Limit or market.
        order_type: OrderType,
        /// Limit price (`None` for a market order).
        price: Option<i64>,
        /// Units asked.
        qty: i64,
        /// Time in force.
        time_in_force: TimeInForce,
        /// Post-only.
        post_only: bool,
        /// Self-trade prevention mode.
        stp: StpMode,
        /// Executions, in order.
        fills: Vec<Fill>,
        /// Resting orders of the same account cancelled by self-trade prevention.
        stp_cancelled: Vec<StpCancel>,
        /// What rests on the book.
        resting_qty: i64,
        /// The order's status after the event.
        status: OrderStatus,
        /// Set when `status` is `rejected`.
        reject_reason: Option<RejectReason>,
        /// Set when `status` is `cancelled`.
        cancel_reason: Option<CancelReason>,
    },
    /// An open order's price and/or quantity changed. Its old resting quantity leaves
    /// `(side, old_price)` (unless `priority_kept`, when only the difference does), the fills
    /// execute, and `resting_qty` rests at `price`.
    OrderAmended {
        /// The market.
        symbol: String,
        /// The market's sequence number of this event: 1 for `MarketCreated`, then one more for
        /// each event of the market, with no gap (a feed consumer detects a gap by it).
        seq: u64,
        /// The order.
        order_id: u64,
        /// Its side.
        side: Side,
        /// Its price before.
        old_price: i64,
        /// What rested before.
        old_remaining_qty: i64,
        /// The new limit price.
        price: i64,
        /// The new total quantity.
        qty: i64,
        /// Quantity down at the same price: the order keeps its place in the queue.
        priority_kept: bool,
        /// Executions of the amended order against the book, in order.
        fills: Vec<Fill>,
        /// Resting orders cancelled by self-trade prevention.
        stp_cancelled: Vec<StpCancel>,
        /// What rests on the book.
        resting_qty: i64,
        /// The order's status after the event.
        status: OrderStatus,
        /// Set when `status` is `cancelled`.
        cancel_reason: Option<CancelReason>,
    },
    /// An open order was cancelled on request.
    OrderCancelled {
        /// The market.
        symbol: String,
        /// The market's sequence number of this event: 1 for `MarketCreated`, then one more for
        /// each event of the market, with no gap (a feed consumer detects a gap by it).
        seq: u64,
        /// The order.
        order_id: u64,
        /// Its side.
        side: Side,
        /// Its price.
        price: i64,
        /// What it had left (leaves the level).
        remaining_qty: i64,
        /// Why.
        reason: CancelReason,
    },
}

impl MatchingEvent {
    /// The market the event concerns (the feed filters on it).
    #[must_use]
    pub fn symbol(&self) -> &str {
        match self {
            MatchingEvent::MarketCreated { symbol, .. }
            | MatchingEvent::OrderPlaced { symbol, .. }
            | MatchingEvent::OrderAmended { symbol, .. }
            | MatchingEvent::OrderCancelled { symbol, .. } => symbol,
        }
    }

    /// The market's sequence number of the event (consecutive per market from 1).
    #[must_use]
    pub fn seq(&self) -> u64 {
        match self {
            MatchingEvent::MarketCreated { seq, .. }
            | MatchingEvent::OrderPlaced { seq, .. }
            | MatchingEvent::OrderAmended { seq, .. }
            | MatchingEvent::OrderCancelled { seq, .. } => *seq,
        }
    }

    /// The event's type name, for the feed.
    #[must_use]
    pub fn kind(&self) -> &'static str {
        match self {
            MatchingEvent::MarketCreated { .. } => "market_created",
            MatchingEvent::OrderPlaced { .. } => "order_placed",
            MatchingEvent::OrderAmended { .. } => "order_amended",
            MatchingEvent::OrderCancelled { .. } => "order_cancelled",
        }
    }
}

/// A trade in a reply, from the incoming order's point of view.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TradeView {
    /// Increasing per market.
    pub trade_id: u64,
    /// The maker's price.
    pub price: i64,
    /// Units.
    pub qty: i64,
    /// The resting order.
    pub maker_order_id: u64,
    /// The incoming (or amended) order.
    pub taker_order_id: u64,
}

/// The outcome of an order command, as the API returns it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderReply {
    /// The order.
    pub order_id: u64,
    /// Its status after the command.
    pub status: OrderStatus,
    /// Units filled in all.
    pub filled_qty: i64,
    /// Units resting on the book.
    pub remaining_qty: i64,
    /// Set when `status` is `rejected`.
    pub reject_reason: Option<RejectReason>,
    /// Set when `status` is `cancelled`.
    pub cancel_reason: Option<CancelReason>,
    /// Trades this command made.
    pub trades: Vec<TradeView>,
}

/// The answer to an accepted command.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum MatchingReply {
    /// A market was created.
    Market {
        /// The symbol.
        symbol: String,
        /// Its rules.
        spec: MarketSpec,
    },
    /// An order was placed, amended or cancelled.
    Order(OrderReply),
}
