//! The matching state of one shard, how events change it, and the queries the API serves.

use crate::book::{NIL, Slot};
use crate::command::MatchingEvent;
use crate::market::Market;
use crate::types::{
    CancelReason, Limits, MarketSpec, OrderStatus, OrderType, RejectReason, Side, StpMode,
    TimeInForce, Trade,
};
use crate::{DEPTH_LEVELS_MAX, QUERY_ORDERS_MAX, QUERY_TRADES_MAX};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Every market of a shard. Markets are kept in symbol order, so the canonical encoding (and the
/// state hash) depends on the contents alone, never on slab layout or insertion history.
///
/// Equality, `Serialize` and `Deserialize` go through the canonical form ([`crate::MatchingImage`]).
/// The [`Limits`] are configuration: they are not part of the state and not compared.
#[derive(Clone, Default)]
pub struct Matching {
    pub(crate) markets: BTreeMap<String, Market>,
    pub(crate) limits: Limits,
}

/// An order as the API shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderView {
    /// The market.
    pub symbol: String,
    /// The id.
    pub order_id: u64,
    /// Its account.
    pub account: String,
    /// Buy or sell.
    pub side: Side,
    /// Limit or market.
    pub order_type: OrderType,
    /// Limit price (`None` for a market order).
    pub price: Option<i64>,
    /// Total quantity (after amends).
    pub qty: i64,
    /// Units filled.
    pub filled_qty: i64,
    /// Units resting on the book.
    pub remaining_qty: i64,
    /// Units cancelled or rejected: `qty - filled_qty - remaining_qty`.
    pub cancelled_qty: i64,
    /// Status.
    pub status: OrderStatus,
    /// Time in force.
    pub time_in_force: TimeInForce,
    /// Post-only.
    pub post_only: bool,
    /// Self-trade prevention mode.
    pub stp: StpMode,
    /// Set when `status` is `rejected`.
    pub reject_reason: Option<RejectReason>,
    /// Set when `status` is `cancelled`.
    pub cancel_reason: Option<CancelReason>,
    /// Trades the order took part in (as maker or taker).
    pub trade_count: u64,
    /// Log time it was placed.
    pub created_at_ms: u64,
    /// Log time of its last change.
    pub updated_at_ms: u64,
}

/// One price level of a depth view.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LevelView {
    /// The price.
    pub price: i64,
    /// Total resting quantity.
    pub qty: i64,
    /// Number of orders.
    pub orders: u64,
}

/// L2 depth, best first on each side.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Depth {
    /// Bids, highest first.
    pub bids: Vec<LevelView>,
    /// Asks, lowest first.
    pub asks: Vec<LevelView>,
}

/// A market's rules and counters.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MarketView {
    /// The symbol.
    pub symbol: String,
    /// Its rules.
    pub spec: MarketSpec,
    /// Log time it was created.
    pub created_at_ms: u64,
    /// The id the next order gets.
    pub next_order_id: u64,
    /// The id the next trade gets.
    pub next_trade_id: u64,
    /// The sequence number of the market's last event (the market's feed events carry
    /// consecutive `seq` from 1; a view reflects every event up to this one).
    pub seq: u64,
    /// Open orders.
    pub open_orders: u64,
    /// Bid levels.
    pub bid_levels: u64,
    /// Ask levels.
    pub ask_levels: u64,
    /// Best bid.
    pub best_bid: Option<i64>,
    /// Best ask.
    pub best_ask: Option<i64>,
}

impl std::fmt::Debug for Matching {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Matching({})", self.summary())
    }
}

impl Matching {
    /// An empty state that decides under `limits` (clamped to the hard ceilings).
    #[must_use]
    pub fn with_limits(limits: Limits) -> Matching {
        Matching {
            markets: BTreeMap::new(),
            limits: limits.clamped(),
        }
    }

    /// Decides under `limits` from now on (clamped to the hard ceilings).
    pub fn set_limits(&mut self, limits: Limits) {
        self.limits = limits.clamped();
    }

    /// The limits decisions use.
    #[must_use]
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Applies one event logged at `lsn` and log time `at_ms`. Never fails: the event is a fact
    /// that `decide` computed in full.
    pub fn apply(&mut self, event: &MatchingEvent, _lsn: u64, at_ms: u64) {
        match event {
            MatchingEvent::MarketCreated { symbol, spec, .. } => {
                debug_assert!(!self.markets.contains_key(symbol), "{symbol} created twice");
                self.markets
                    .entry(symbol.clone())
                    .or_insert_with(|| Market::new(*spec, at_ms));
            }
            _ => match self.markets.get_mut(event.symbol()) {
                Some(market) => market.apply(event, at_ms),
                None => debug_assert!(false, "an order event names a known market"),
            },
        }
    }

    /// The sequence number of a market's last event (what [`MarketView::seq`] says, without
    /// building the view).
    #[must_use]
    pub fn market_seq(&self, symbol: &str) -> Option<u64> {
        self.markets.get(symbol).map(|market| market.seq)
    }

    /// A market's rules and counters.
    #[must_use]
    pub fn market(&self, symbol: &str) -> Option<MarketView> {
        self.markets
            .get(symbol)
            .map(|market| market_view(symbol, market))
    }

    /// Every market, in symbol order (at most [`crate::MARKETS_MAX`]).
    #[must_use]
    pub fn markets(&self) -> Vec<MarketView> {
        self.markets
            .iter()
            .map(|(symbol, market)| market_view(symbol, market))
            .collect()
    }

    /// An order, open or closed (closed ones while their history is retained).
    #[must_use]
    pub fn order(&self, symbol: &str, order_id: u64) -> Option<OrderView> {
        let market = self.markets.get(symbol)?;
        let index = market.book.find(order_id)?;
        Some(order_view(symbol, market, market.book.slot(index)))
    }

    /// L2 depth: up to `levels` levels per side (at most [`DEPTH_LEVELS_MAX`]), best first.
    #[must_use]
    pub fn depth(&self, symbol: &str, levels: usize) -> Option<Depth> {
        let market = self.markets.get(symbol)?;
        let levels = levels.min(DEPTH_LEVELS_MAX);
        let side = |side: Side| {
            market
                .book
                .ladder(side)
                .best_first()
                .take(levels)
                .map(|level| LevelView {
                    price: level.price,
                    qty: level.qty,
                    orders: u64::from(level.count),
                })
                .collect()
        };
        Some(Depth {
            bids: side(Side::Buy),
            asks: side(Side::Sell),
        })
    }

    /// The orders resting at one level, in time (priority) order, at most `limit` (capped at
    /// [`QUERY_ORDERS_MAX`]). `None` for an unknown market; empty for an empty level.
    #[must_use]
    pub fn level_orders(
        &self,
        symbol: &str,
        side: Side,
        price: i64,
        limit: usize,
    ) -> Option<Vec<OrderView>> {
        let market = self.markets.get(symbol)?;
        let Some(level) = market.book.ladder(side).get(price) else {
            return Some(Vec::new());
        };
        Some(
            market
                .book
                .level_orders(level)
                .take(limit.min(QUERY_ORDERS_MAX))
                .map(|index| order_view(symbol, market, market.book.slot(index)))
                .collect(),
        )
    }

    /// Trades with an id above `after_trade_id`, in execution order, at most `limit` (capped at
    /// [`QUERY_TRADES_MAX`]). Only retained trades are returned.
    #[must_use]
    pub fn trades(&self, symbol: &str, after_trade_id: u64, limit: usize) -> Option<Vec<Trade>> {
        let market = self.markets.get(symbol)?;
        let first = market.trades.front().map_or(0, |trade| trade.trade_id);
        let skip = usize::try_from(after_trade_id.saturating_add(1).saturating_sub(first))
            .unwrap_or(usize::MAX);
        Some(
            market
                .trades
                .iter()
                .skip(skip)
                .take(limit.min(QUERY_TRADES_MAX))
                .copied()
                .collect(),
        )
    }

    /// An account's open orders in one market, oldest first, at most `limit` (capped at
    /// [`QUERY_ORDERS_MAX`]). `None` for an unknown market.
    #[must_use]
    pub fn open_orders(&self, symbol: &str, account: &str, limit: usize) -> Option<Vec<OrderView>> {
        let market = self.markets.get(symbol)?;
        let Some(id) = market.accounts.id(account) else {
            return Some(Vec::new());
        };
        let mut at = market.accounts.get(id).open_head;
        let mut orders = Vec::new();
        while at != NIL && orders.len() < limit.min(QUERY_ORDERS_MAX) {
            let slot = market.book.slot(at);
            orders.push(order_view(symbol, market, slot));
            at = slot.account_next;
        }
        Some(orders)
    }

    /// A one-line summary.
    #[must_use]
    pub fn summary(&self) -> String {
        let open: usize = self.markets.values().map(|m| m.book.open_count).sum();
        let closed: usize = self.markets.values().map(|m| m.closed.len()).sum();
        let trades: usize = self.markets.values().map(|m| m.trades.len()).sum();
        let issued: u64 = self.markets.values().map(|m| m.next_order_id - 1).sum();
        format!(
            "{} market(s); {open} open order(s), {closed} closed kept, {issued} issued; {trades} trade(s) kept",
            self.markets.len()
        )
    }

    /// Checks every structural invariant (levels sorted and uncrossed, level totals equal to
    /// their orders, lists and index consistent, history within bounds). O(state): for tests and
    /// offline verification.
    ///
    /// # Errors
    /// What is wrong, with the market's symbol.
    pub fn check_invariants(&self) -> Result<(), String> {
        for (symbol, market) in &self.markets {
            market
                .book
                .check()
                .map_err(|error| format!("{symbol}: {error}"))?;
            check_market(market).map_err(|error| format!("{symbol}: {error}"))?;
        }
        Ok(())
    }
}

fn check_market(market: &Market) -> Result<(), String> {
    if market.closed.len() as u64 > market.spec.closed_orders_max
        || market.trades.len() as u64 > market.spec.trades_max
    {
        return Err("history beyond its bound".into());
    }
    for &index in &market.closed {
        let slot = market.book.slot(index);
        if slot.status.is_open() || slot.remaining_qty != 0 {
            return Err(format!("closed order {} is open", slot.order_id));
        }
    }
    if market.book.index.len() != market.book.open_count + market.closed.len() {
        return Err("the order index and the retained orders differ".into());
    }
    let mut refs: BTreeMap<u32, u64> = BTreeMap::new();
    for slot in market.book.slots.iter().filter(|slot| slot.account != NIL) {
        if slot.filled_qty < 0 || slot.filled_qty + slot.remaining_qty > slot.qty {
            return Err(format!("order {} quantities are wrong", slot.order_id));
        }
        *refs.entry(slot.account).or_default() += 1;
    }
    let mut open = 0usize;
    for (id, account) in market.accounts.live() {
        if refs.remove(&id) != Some(account.refs) {
            return Err(format!("account {} reference count is wrong", account.name));
        }
        let (mut at, mut count, mut last_id) = (account.open_head, 0u32, 0u64);
        while at != NIL {
            let slot = market.book.slot(at);
            if slot.account != id || !slot.status.is_open() || slot.order_id <= last_id {
                return Err(format!("open list of account {} is wrong", account.name));
            }
            last_id = slot.order_id;
            count += 1;
            at = slot.account_next;
        }
        if count != account.open_count {
            return Err(format!("open count of account {} is wrong", account.name));
        }
        open += count as usize;
    }
    if !refs.is_empty() || open != market.book.open_count {
        return Err("orders name accounts that are not live".into());
    }
    for pair in market.trades.iter().zip(market.trades.iter().skip(1)) {
        if pair.0.trade_id + 1 != pair.1.trade_id {
            return Err("trade ids are not consecutive".into());
        }
    }
    if market
        .trades
        .back()
        .is_some_and(|t| t.trade_id >= market.next_trade_id)
    {
        return Err("a trade id is not below next_trade_id".into());
    }
    Ok(())
}

fn market_view(symbol: &str, market: &Market) -> MarketView {
    MarketView {
        symbol: symbol.to_string(),
        spec: market.spec,
        created_at_ms: market.created_at_ms,
        next_order_id: market.next_order_id,
        next_trade_id: market.next_trade_id,
        seq: market.seq,
        open_orders: market.book.open_count as u64,
        bid_levels: market.book.bids.len() as u64,
        ask_levels: market.book.asks.len() as u64,
        best_bid: market.book.bids.best().map(|level| level.price),
        best_ask: market.book.asks.best().map(|level| level.price),
    }
}

pub(crate) fn order_view(symbol: &str, market: &Market, slot: &Slot) -> OrderView {
    OrderView {
        symbol: symbol.to_string(),
        order_id: slot.order_id,
        account: market.accounts.name(slot.account).to_string(),
        side: slot.side,
        order_type: slot.order_type,
        price: (slot.order_type == OrderType::Limit).then_some(slot.price),
        qty: slot.qty,
        filled_qty: slot.filled_qty,
        remaining_qty: slot.remaining_qty,
        cancelled_qty: slot.qty - slot.filled_qty - slot.remaining_qty,
        status: slot.status,
        time_in_force: slot.time_in_force,
        post_only: slot.post_only,
        stp: slot.stp,
        reject_reason: slot.reject_reason,
        cancel_reason: slot.cancel_reason,
        trade_count: u64::from(slot.trade_count),
        created_at_ms: slot.created_at_ms,
        updated_at_ms: slot.updated_at_ms,
    }
}
