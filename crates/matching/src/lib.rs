//! Cairn's matching state machine: one limit order book per market (symbol), price-time
//! priority, trades at the resting (maker) order's price.
//!
//! The crate is pure: [`Matching::decide`] turns a command into one event (or a refusal) without
//! changing the state, [`Matching::apply`] applies an event and never fails, and time arrives only
//! as an argument. It depends on nothing but `cairn-types` and `serde`.
//!
//! # Events are complete outcomes
//!
//! `decide` walks the book read-only and computes the whole outcome of a command: every fill
//! (maker, price, quantity, trade id), every resting order cancelled by self-trade prevention, the
//! quantity that rests and the final status. One event per accepted command carries it
//! ([`MatchingEvent::OrderPlaced`], [`MatchingEvent::OrderAmended`],
//! [`MatchingEvent::OrderCancelled`], [`MatchingEvent::MarketCreated`]). `apply` only performs the
//! bookkeeping the event describes, so replay never re-runs a matching decision. The events are
//! self-describing: trades and L2 changes (level `(side, price)` up or down by a quantity) can be
//! derived from the event stream alone, without the state.
//!
//! # Orders
//!
//! - `limit` orders need a price; `market` orders must not have one and are `ioc` or `fok`.
//! - `gtc` rests what it does not fill; `ioc` cancels its unfilled remainder; `fok` fills
//!   completely at once or not at all (then nothing at all changes: no fill, no self-trade
//!   cancellation).
//! - `post_only` is allowed only on a `gtc` limit order; it is rejected (`post_only_would_cross`)
//!   when it would trade on arrival.
//! - A rejection that is a market outcome (`fok_not_fillable`, `post_only_would_cross`,
//!   `no_liquidity`, `self_trade`) is not an error: the command is accepted and logged, the order
//!   id is consumed and the order is queryable with status `rejected`.
//! - An `ioc` or market order that fills partly ends `cancelled` (reason `immediate_or_cancel`);
//!   one that fills nothing is `rejected` (`no_liquidity`, or `self_trade` when self-trade
//!   prevention stopped it).
//!
//! # Self-trade prevention
//!
//! An order never trades with a resting order of the same account. The per-order `stp` field
//! ([`StpMode`]) says what happens when the walk meets one:
//! - `cancel_incoming` (the default): the incoming order stops; its remainder is cancelled. It
//!   ends `rejected` with reason `self_trade` when nothing filled, else `cancelled` (reason
//!   `self_trade`). This holds for `gtc` orders too: the remainder does not rest.
//! - `cancel_resting`: the resting order is cancelled (reason `self_trade`) and the walk goes on.
//! - `cancel_both`: the resting order is cancelled and the incoming order stops as in
//!   `cancel_incoming`.
//!
//! A `fok` order counts what it could fill under its mode (up to the first same-account order for
//! `cancel_incoming`/`cancel_both`, skipping them for `cancel_resting`).
//!
//! # Cancel and amend
//!
//! Cancel takes an order id: `not_found` for an unknown market or an id never issued,
//! `order_not_open` for an order that is filled, cancelled or rejected (also once its history
//! was forgotten). Amend sets a new limit price and/or a new total quantity (`qty` counts what
//! already filled, as in FIX):
//! - quantity down at the same price keeps time priority;
//! - a price change or a quantity increase loses it: the order moves to the back of its (new)
//!   level;
//! - an amend to a price that crosses the book matches like an incoming `gtc` order (same order
//!   id, same self-trade mode); a `post_only` order's amend that would cross is refused
//!   (`post_only_would_cross`, 409) and the order stays as it was; when self-trade prevention or
//!   the fills limit stops that walk, the order ends `cancelled` (it does not rest);
//! - an amend to a total quantity at or below the filled quantity is `invalid_argument` (cancel
//!   the order instead), and so is an amend that changes nothing.
//!
//! # Refusals
//!
//! A refused command logs nothing ([`MatchingError::code`]): `invalid_argument` (400: identifiers,
//! amounts, tick, lot, bounds, order shape, senseless amends), `not_found` (404: unknown market,
//! order id never issued), `already_exists` (409: symbol taken), `order_not_open` (409),
//! `post_only_would_cross` (409: amends only; a new post-only order is rejected, not refused),
//! `limit_exceeded` (409: `limit` names the bound). Checks run in this order: symbol, market,
//! account, order shape, price, quantity, then state.
//!
//! # Bounds
//!
//! Every collection is bounded (see the constants below and [`Limits`]). When one incoming order
//! would touch (fill, or cancel by self-trade prevention) more than
//! [`Limits::fills_per_order_max`] resting orders, it stops there and its remainder is cancelled
//! (reason `fills_limit`) whatever its time in force: resting it would cross the book. A `fok`
//! order that would need more is rejected (`fok_not_fillable`). This keeps one event below 1 MiB.
//! Closed orders and trades are retained per market in bounded queues (oldest forgotten first);
//! the full history is in the log. Within one event, orders close in this order: those cancelled
//! by self-trade prevention, then the makers filled completely (in fill order), then the incoming
//! (or amended) order. A cancel or amend of a forgotten order is `order_not_open` without a
//! status; a query for it finds nothing.
//!
//! The decision limits ([`Limits`]) are configuration, not state: a state rebuilt from a snapshot
//! decides under the defaults until [`Matching::set_limits`] is called. The retention bounds are
//! copied into each market's [`MarketSpec`] when it is created, so replay forgets exactly what the
//! live state forgot.
//!
//! # Data structures
//!
//! Orders live in a slab (`Vec` of fixed-size slots with a free list): no allocation per order in
//! the book. Each price level is an intrusive doubly-linked FIFO through slot indices, so a cancel
//! is O(1) once the level is found. Levels of one side are a `Vec` sorted so that the best price is
//! last: the best level is O(1), and inserting or removing near the spread moves few bytes (in a
//! micro-benchmark with activity over 50 levels it took 33-43 ns per level operation against
//! 69-79 ns for a `BTreeMap`; with activity spread uniformly over 20,000 levels it is 5 times
//! slower, about 0.5-1 µs, and placing at the far end of a side holding
//! [`PRICE_LEVELS_PER_SIDE_MAX`] levels costs about 25 µs). Order
//! ids are dense per market, so order id -> slot is a `VecDeque` indexed by `order_id - base`
//! (with an ordered map for the rare old ids pushed out of the window). The state's canonical
//! encoding ([`MatchingImage`]) does not depend on slab layout.

#![deny(missing_docs)]

mod book;
mod command;
mod decide;
mod error;
mod image;
mod market;
pub mod reference;
mod state;
mod types;
pub mod validate;
pub mod workload;

pub use command::{
    Actor, Fill, MatchingCommand, MatchingEvent, MatchingReply, OrderReply, StpCancel, TradeView,
};
pub use error::MatchingError;
pub use image::{IMAGE_FORMAT, MarketImage, MatchingImage, OrderImage};
pub use state::{Depth, LevelView, MarketView, Matching, OrderView};
pub use types::{
    CancelReason, Limits, MarketSpec, OrderStatus, OrderType, RejectReason, Side, StpMode,
    TimeInForce, Trade,
};

/// Largest price or quantity: 2^53, so that every amount is exact in JSON clients.
pub const AMOUNT_MAX: i64 = 1 << 53;
/// Longest identifier (symbol, account), in bytes.
pub const IDENTIFIER_BYTES_MAX: usize = 128;
/// Most markets per shard.
pub const MARKETS_MAX: usize = 10_000;
/// Most open (resting) orders per market.
pub const OPEN_ORDERS_PER_MARKET_MAX: usize = 10_000_000;
/// Most price levels per side of one market.
pub const PRICE_LEVELS_PER_SIDE_MAX: usize = 50_000;
/// Most resting orders one incoming order (or amend) may touch: fill, or cancel by self-trade
/// prevention. A hard ceiling: [`Limits::fills_per_order_max`] may only lower it.
pub const FILLS_PER_ORDER_MAX: usize = 5_000;
/// Closed (filled, cancelled, rejected) orders kept queryable per market, the oldest closed
/// forgotten first.
pub const CLOSED_ORDERS_PER_MARKET_MAX: usize = 1_000_000;
/// Trades kept queryable per market, the oldest forgotten first.
pub const TRADES_PER_MARKET_MAX: usize = 1_000_000;
/// Most levels per side one depth query returns.
pub const DEPTH_LEVELS_MAX: usize = 1_000;
/// Most orders one query (orders at a level, open orders of an account) returns.
pub const QUERY_ORDERS_MAX: usize = 1_000;
/// Most trades one trades query returns.
pub const QUERY_TRADES_MAX: usize = 1_000;
/// Width of the dense order-id window per market (ids older than it are kept in a map).
pub const ORDER_ID_WINDOW_MAX: usize = 1 << 22;

/// Largest encoding of one [`Fill`] with postcard, in bytes: trade id and maker order id (varints
/// of up to 10 bytes), the maker's account (2-byte length and 128 bytes), price and quantity
/// (zigzag varints of up to 8 bytes for values up to 2^53).
pub const FILL_BYTES_MAX: usize = 10 + 10 + 2 + IDENTIFIER_BYTES_MAX + 8 + 8;
/// Largest encoding of one event, in bytes (fills dominate; self-trade cancellations are smaller
/// and count towards the same limit; 1 KiB covers the fixed fields).
pub const EVENT_BYTES_MAX: usize = FILLS_PER_ORDER_MAX * FILL_BYTES_MAX + 1024;

const _: () = assert!(EVENT_BYTES_MAX <= 1024 * 1024);
const _: () =
    assert!(EVENT_BYTES_MAX * 3 <= cairn_types::limits::RECORD_PAYLOAD_BYTES_MAX as usize);
const _: () =
    assert!(OPEN_ORDERS_PER_MARKET_MAX + CLOSED_ORDERS_PER_MARKET_MAX < u32::MAX as usize);
const _: () = assert!(PRICE_LEVELS_PER_SIDE_MAX <= OPEN_ORDERS_PER_MARKET_MAX);
const _: () = assert!(FILLS_PER_ORDER_MAX < u32::MAX as usize);
