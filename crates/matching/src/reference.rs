//! A simple, obviously-correct order book, for differential tests only (never used by the
//! engine). Every order ever placed sits in one `Vec`; matching filters the open orders of the
//! other side, sorts them by (best price, priority) and walks them. It shares only the input
//! rules ([`crate::validate`]) and the public types with the fast book, and is deliberately slow.
//!
//! It models the retention of closed orders too (which orders are still queryable), by the same
//! documented rule: the last `closed_orders_max` orders to close, where one command closes the
//! orders cancelled by self-trade prevention first, then the makers it filled completely (in fill
//! order), then the incoming order.

use crate::command::{MatchingCommand, MatchingReply, OrderReply, TradeView};
use crate::error::MatchingError;
use crate::state::{Depth, LevelView, OrderView};
use crate::types::{
    CancelReason, Limits, MarketSpec, OrderStatus, OrderType, RejectReason, Side, StpMode,
    TimeInForce, Trade,
};
use crate::{AMOUNT_MAX, validate};
use std::collections::BTreeMap;

/// One order of the reference book.
#[derive(Clone, Debug)]
struct Order {
    id: u64,
    account: String,
    side: Side,
    order_type: OrderType,
    price: Option<i64>,
    qty: i64,
    filled: i64,
    resting: i64,
    status: OrderStatus,
    time_in_force: TimeInForce,
    post_only: bool,
    stp: StpMode,
    reject_reason: Option<RejectReason>,
    cancel_reason: Option<CancelReason>,
    trade_count: u64,
    /// Lower goes first within a price (reset when an amend loses priority).
    priority: u64,
    /// Position in the sequence of closings, once closed.
    closed_seq: Option<u64>,
    created_at_ms: u64,
    updated_at_ms: u64,
}

#[derive(Clone, Debug)]
struct Market {
    spec: MarketSpec,
    orders: Vec<Order>,
    trades: Vec<Trade>,
    next_priority: u64,
    closings: u64,
}

/// What walking the other side would do (computed without changing anything).
#[derive(Debug, Default)]
struct Plan {
    /// (index of the maker in `orders`, quantity).
    fills: Vec<(usize, i64)>,
    /// Indices of own-account makers to cancel.
    stp: Vec<usize>,
    left: i64,
    stopped_by_self_trade: bool,
    stopped_by_limit: bool,
}

/// The reference book: all markets.
#[derive(Clone, Debug, Default)]
pub struct ReferenceBook {
    markets: BTreeMap<String, Market>,
    limits: Limits,
}

fn invalid(message: String) -> MatchingError {
    MatchingError::InvalidArgument(message)
}

fn limit_error(name: &str) -> MatchingError {
    MatchingError::LimitExceeded {
        limit: name.to_string(),
        message: name.to_string(),
    }
}

impl ReferenceBook {
    /// An empty book deciding under `limits` (clamped like the fast book's).
    #[must_use]
    pub fn new(limits: Limits) -> ReferenceBook {
        ReferenceBook {
            markets: BTreeMap::new(),
            limits: limits.clamped(),
        }
    }

    /// Decides and applies a command at time `now_ms`.
    ///
    /// # Errors
    /// The refusal (nothing changed).
    pub fn execute(
        &mut self,
        command: &MatchingCommand,
        now_ms: u64,
    ) -> Result<MatchingReply, MatchingError> {
        match command {
            MatchingCommand::CreateMarket {
                symbol,
                tick_size,
                lot_size,
                min_price,
                max_price,
                min_qty,
                max_qty,
            } => {
                validate::identifier("symbol", symbol).map_err(invalid)?;
                let mut spec = validate::market_spec(
                    *tick_size, *lot_size, *min_price, *max_price, *min_qty, *max_qty,
                )
                .map_err(invalid)?;
                if self.markets.contains_key(symbol) {
                    return Err(MatchingError::MarketExists {
                        symbol: symbol.clone(),
                    });
                }
                if self.markets.len() >= self.limits.markets_max {
                    return Err(limit_error("markets_max"));
                }
                spec.closed_orders_max = self.limits.closed_orders_per_market_max as u64;
                spec.trades_max = self.limits.trades_per_market_max as u64;
                let market = Market {
                    spec,
                    orders: Vec::new(),
                    trades: Vec::new(),
                    next_priority: 0,
                    closings: 0,
                };
                self.markets.insert(symbol.clone(), market);
                Ok(MatchingReply::Market {
                    symbol: symbol.clone(),
                    spec,
                })
            }
            MatchingCommand::PlaceOrder {
                symbol,
                account,
                side,
                order_type,
                price,
                qty,
                time_in_force,
                post_only,
                stp,
            } => {
                let limits = self.limits;
                let market = self.market_mut(symbol)?;
                validate::identifier("account", account).map_err(invalid)?;
                validate::order_shape(*order_type, *price, *time_in_force, *post_only)
                    .map_err(invalid)?;
                if let Some(price) = price {
                    validate::price(&market.spec, *price).map_err(invalid)?;
                }
                validate::qty(&market.spec, *qty).map_err(invalid)?;
                let order = Order {
                    id: market.orders.len() as u64 + 1,
                    account: account.clone(),
                    side: *side,
                    order_type: *order_type,
                    price: *price,
                    qty: *qty,
                    filled: 0,
                    resting: 0,
                    status: OrderStatus::New,
                    time_in_force: *time_in_force,
                    post_only: *post_only,
                    stp: stp.unwrap_or_default(),
                    reject_reason: None,
                    cancel_reason: None,
                    trade_count: 0,
                    priority: 0,
                    closed_seq: None,
                    created_at_ms: now_ms,
                    updated_at_ms: now_ms,
                };
                market.place(order, &limits, now_ms)
            }
            MatchingCommand::CancelOrder { symbol, order_id } => {
                let market = self.market_mut(symbol)?;
                let index = market.open_index(symbol, *order_id)?;
                market.close(
                    index,
                    OrderStatus::Cancelled,
                    Some(CancelReason::Requested),
                    now_ms,
                );
                let order = &market.orders[index];
                Ok(MatchingReply::Order(OrderReply {
                    order_id: *order_id,
                    status: OrderStatus::Cancelled,
                    filled_qty: order.filled,
                    remaining_qty: 0,
                    reject_reason: None,
                    cancel_reason: Some(CancelReason::Requested),
                    trades: Vec::new(),
                }))
            }
            MatchingCommand::AmendOrder {
                symbol,
                order_id,
                price,
                qty,
            } => {
                let limits = self.limits;
                let market = self.market_mut(symbol)?;
                market.amend(symbol, *order_id, *price, *qty, &limits, now_ms)
            }
        }
    }

    fn market_mut(&mut self, symbol: &str) -> Result<&mut Market, MatchingError> {
        validate::identifier("symbol", symbol).map_err(invalid)?;
        self.markets
            .get_mut(symbol)
            .ok_or_else(|| MatchingError::MarketNotFound {
                symbol: symbol.to_string(),
            })
    }

    /// L2 depth, best first.
    #[must_use]
    pub fn depth(&self, symbol: &str, levels: usize) -> Option<Depth> {
        let market = self.markets.get(symbol)?;
        let side = |side: Side| -> Vec<LevelView> {
            let mut by_price: BTreeMap<i64, LevelView> = BTreeMap::new();
            for order in market
                .orders
                .iter()
                .filter(|o| o.is_open() && o.side == side)
            {
                let price = order.price.unwrap_or(0);
                let level = by_price.entry(price).or_insert(LevelView {
                    price,
                    qty: 0,
                    orders: 0,
                });
                level.qty += order.resting;
                level.orders += 1;
            }
            let levels_iter: Box<dyn Iterator<Item = LevelView>> = match side {
                Side::Buy => Box::new(by_price.into_values().rev()),
                Side::Sell => Box::new(by_price.into_values()),
            };
            levels_iter.take(levels).collect()
        };
        Some(Depth {
            bids: side(Side::Buy),
            asks: side(Side::Sell),
        })
    }

    /// An order, while it is retained (open, or among the last closed).
    #[must_use]
    pub fn order(&self, symbol: &str, order_id: u64) -> Option<OrderView> {
        let market = self.markets.get(symbol)?;
        let index = usize::try_from(order_id.checked_sub(1)?).ok()?;
        let order = market.orders.get(index)?;
        market.retained(order).then(|| view(symbol, order))
    }

    /// How many order ids a market issued.
    #[must_use]
    pub fn issued(&self, symbol: &str) -> u64 {
        self.markets
            .get(symbol)
            .map_or(0, |market| market.orders.len() as u64)
    }

    /// The retained trades (the last `trades_max`), in execution order.
    #[must_use]
    pub fn trades(&self, symbol: &str) -> Option<Vec<Trade>> {
        let market = self.markets.get(symbol)?;
        let keep = usize::try_from(market.spec.trades_max).unwrap_or(usize::MAX);
        let skip = market.trades.len().saturating_sub(keep);
        Some(market.trades[skip..].to_vec())
    }

    /// An account's open orders in one market, by order id.
    #[must_use]
    pub fn open_orders(&self, symbol: &str, account: &str) -> Vec<OrderView> {
        self.markets.get(symbol).map_or_else(Vec::new, |market| {
            market
                .orders
                .iter()
                .filter(|o| o.is_open() && o.account == account)
                .map(|o| view(symbol, o))
                .collect()
        })
    }
}

impl Order {
    fn is_open(&self) -> bool {
        self.status == OrderStatus::New || self.status == OrderStatus::PartiallyFilled
    }
}

/// Whether a resting price `a` is better than `b` for orders resting on `side`.
fn better(side: Side, a: i64, b: i64) -> bool {
    match side {
        Side::Buy => a > b,
        Side::Sell => a < b,
    }
}

impl Market {
    fn retained(&self, order: &Order) -> bool {
        match order.closed_seq {
            None => true,
            Some(seq) => self.closings - seq < self.spec.closed_orders_max,
        }
    }

    fn open_index(&self, symbol: &str, order_id: u64) -> Result<usize, MatchingError> {
        let index = usize::try_from(order_id.wrapping_sub(1)).unwrap_or(usize::MAX);
        let Some(order) = self.orders.get(index) else {
            return Err(MatchingError::OrderNotFound {
                symbol: symbol.to_string(),
                order_id,
            });
        };
        if order.is_open() {
            return Ok(index);
        }
        Err(MatchingError::OrderNotOpen {
            symbol: symbol.to_string(),
            order_id,
            status: self.retained(order).then_some(order.status),
        })
    }

    fn close(&mut self, index: usize, status: OrderStatus, reason: Option<CancelReason>, at: u64) {
        self.closings += 1;
        let order = &mut self.orders[index];
        order.status = status;
        order.cancel_reason = reason;
        order.resting = 0;
        order.closed_seq = Some(self.closings);
        order.updated_at_ms = at;
    }

    /// Open orders of `side` that a limit of `limit` on the other side reaches, in priority
    /// order.
    fn reachable(&self, side: Side, limit: Option<i64>) -> Vec<usize> {
        let taker = side.opposite();
        let mut found: Vec<usize> = (0..self.orders.len())
            .filter(|&i| {
                let o = &self.orders[i];
                let price = o.price.unwrap_or(0);
                o.is_open() && o.side == side && limit.is_none_or(|l| taker.crosses(l, price))
            })
            .collect();
        found.sort_by(|&a, &b| {
            let (pa, pb) = (self.orders[a].price, self.orders[b].price);
            if pa == pb {
                self.orders[a].priority.cmp(&self.orders[b].priority)
            } else if better(side, pa.unwrap_or(0), pb.unwrap_or(0)) {
                std::cmp::Ordering::Less
            } else {
                std::cmp::Ordering::Greater
            }
        });
        found
    }

    /// What an order of `side` for `qty` up to `limit` would do.
    fn plan(
        &self,
        side: Side,
        limit: Option<i64>,
        qty: i64,
        account: &str,
        stp: StpMode,
        fills_max: usize,
    ) -> Plan {
        let mut plan = Plan {
            left: qty,
            ..Plan::default()
        };
        for index in self.reachable(side.opposite(), limit) {
            if plan.left == 0 {
                break;
            }
            let maker = &self.orders[index];
            let own = maker.account == account;
            if own && stp == StpMode::CancelIncoming {
                plan.stopped_by_self_trade = true;
                break;
            }
            if plan.fills.len() + plan.stp.len() == fills_max {
                plan.stopped_by_limit = true;
                break;
            }
            if own {
                plan.stp.push(index);
                if stp == StpMode::CancelBoth {
                    plan.stopped_by_self_trade = true;
                    break;
                }
                continue;
            }
            let take = plan.left.min(maker.resting);
            plan.fills.push((index, take));
            plan.left -= take;
        }
        plan
    }

    /// (levels, quantity at `price`) of `side` if `order` left the book.
    fn side_after(&self, side: Side, price: i64, without: Option<usize>) -> (usize, i64) {
        let mut levels: BTreeMap<i64, i64> = BTreeMap::new();
        for (i, o) in self.orders.iter().enumerate() {
            if o.is_open() && o.side == side && Some(i) != without {
                *levels.entry(o.price.unwrap_or(0)).or_default() += o.resting;
            }
        }
        let at_price = levels.get(&price).copied().unwrap_or(0);
        let count = levels.len() + usize::from(!levels.contains_key(&price));
        (count, at_price)
    }

    /// Checks the bounds for resting `qty` at `(side, price)`.
    fn check_rest(
        &self,
        side: Side,
        price: i64,
        qty: i64,
        without: Option<usize>,
        limits: &Limits,
    ) -> Result<(), MatchingError> {
        let (levels, at_price) = self.side_after(side, price, without);
        if levels > limits.price_levels_per_side_max {
            return Err(limit_error("price_levels_per_side_max"));
        }
        if at_price + qty > AMOUNT_MAX {
            return Err(limit_error("level_qty_max"));
        }
        Ok(())
    }

    /// Executes a plan for the order at `taker`: self-trade cancels, then fills.
    fn execute(&mut self, plan: &Plan, taker: usize, at: u64) -> Vec<TradeView> {
        for &index in &plan.stp {
            self.close(
                index,
                OrderStatus::Cancelled,
                Some(CancelReason::SelfTrade),
                at,
            );
        }
        let mut trades = Vec::new();
        for &(index, qty) in &plan.fills {
            let trade_id = self.trades.len() as u64 + 1;
            let maker = &mut self.orders[index];
            maker.filled += qty;
            maker.resting -= qty;
            maker.trade_count += 1;
            maker.updated_at_ms = at;
            let price = maker.price.unwrap_or(0);
            let maker_id = maker.id;
            if maker.resting == 0 {
                self.close(index, OrderStatus::Filled, None, at);
            } else {
                self.orders[index].status = OrderStatus::PartiallyFilled;
            }
            let taker_order = &mut self.orders[taker];
            taker_order.filled += qty;
            taker_order.trade_count += 1;
            self.trades.push(Trade {
                trade_id,
                price,
                qty,
                maker_order_id: maker_id,
                taker_order_id: taker_order.id,
                taker_side: taker_order.side,
                at_ms: at,
            });
            trades.push(TradeView {
                trade_id,
                price,
                qty,
                maker_order_id: maker_id,
                taker_order_id: taker_order.id,
            });
        }
        trades
    }

    fn place(
        &mut self,
        mut order: Order,
        limits: &Limits,
        at: u64,
    ) -> Result<MatchingReply, MatchingError> {
        let best_other = self.reachable(order.side.opposite(), order.price);
        let would_trade = !best_other.is_empty();
        let mut plan = Plan::default();
        let mut reject = None;
        if order.post_only && would_trade {
            reject = Some(RejectReason::PostOnlyWouldCross);
        } else {
            plan = self.plan(
                order.side,
                order.price,
                order.qty,
                &order.account,
                order.stp,
                limits.fills_per_order_max,
            );
            if order.time_in_force == TimeInForce::Fok && plan.left > 0 {
                reject = Some(RejectReason::FokNotFillable);
                plan = Plan::default();
            }
        }
        let filled: i64 = plan.fills.iter().map(|f| f.1).sum();
        let stopped = plan.stopped_by_self_trade || plan.stopped_by_limit;
        let rests = reject.is_none()
            && plan.left > 0
            && !stopped
            && order.time_in_force == TimeInForce::Gtc;
        if rests {
            let closing = plan
                .fills
                .iter()
                .filter(|(i, qty)| self.orders[*i].resting == *qty)
                .count();
            let open = self.orders.iter().filter(|o| o.is_open()).count();
            if open + 1 - closing - plan.stp.len() > limits.open_orders_per_market_max {
                return Err(limit_error("open_orders_per_market_max"));
            }
            self.check_rest(
                order.side,
                order.price.unwrap_or(0),
                plan.left,
                None,
                limits,
            )?;
        }
        if reject.is_none() && filled == 0 && plan.left > 0 && !rests {
            reject = Some(if stopped {
                RejectReason::SelfTrade
            } else {
                RejectReason::NoLiquidity
            });
        }
        order.priority = self.next_priority;
        self.next_priority += 1;
        let taker = self.orders.len();
        let order_id = order.id;
        self.orders.push(order);
        let trades = self.execute(&plan, taker, at);
        let cancel_reason = if reject.is_some() || plan.left == 0 || rests {
            None
        } else if plan.stopped_by_self_trade {
            Some(CancelReason::SelfTrade)
        } else if plan.stopped_by_limit {
            Some(CancelReason::FillsLimit)
        } else {
            Some(CancelReason::ImmediateOrCancel)
        };
        let taker_order = &mut self.orders[taker];
        taker_order.reject_reason = reject;
        if rests {
            taker_order.resting = plan.left;
            taker_order.status = if filled == 0 {
                OrderStatus::New
            } else {
                OrderStatus::PartiallyFilled
            };
        } else if reject.is_some() {
            self.close(taker, OrderStatus::Rejected, None, at);
        } else if plan.left == 0 {
            self.close(taker, OrderStatus::Filled, None, at);
        } else {
            self.close(taker, OrderStatus::Cancelled, cancel_reason, at);
        }
        let o = &self.orders[taker];
        Ok(MatchingReply::Order(OrderReply {
            order_id,
            status: o.status,
            filled_qty: o.filled,
            remaining_qty: o.resting,
            reject_reason: o.reject_reason,
            cancel_reason: o.cancel_reason,
            trades,
        }))
    }

    fn amend(
        &mut self,
        symbol: &str,
        order_id: u64,
        price: Option<i64>,
        qty: Option<i64>,
        limits: &Limits,
        at: u64,
    ) -> Result<MatchingReply, MatchingError> {
        if price.is_none() && qty.is_none() {
            return Err(invalid("nothing to amend".into()));
        }
        if let Some(price) = price {
            validate::price(&self.spec, price).map_err(invalid)?;
        }
        if let Some(qty) = qty {
            validate::qty(&self.spec, qty).map_err(invalid)?;
        }
        let index = self.open_index(symbol, order_id)?;
        let order = self.orders[index].clone();
        let old_price = order.price.unwrap_or(0);
        let new_price = price.unwrap_or(old_price);
        let new_qty = qty.unwrap_or(order.qty);
        if new_qty <= order.filled || (new_price == old_price && new_qty == order.qty) {
            return Err(invalid("bad amend".into()));
        }
        let wanted = new_qty - order.filled;
        if new_price == old_price && new_qty < order.qty {
            let o = &mut self.orders[index];
            o.qty = new_qty;
            o.resting = wanted;
            o.updated_at_ms = at;
            return Ok(MatchingReply::Order(OrderReply {
                order_id,
                status: o.status,
                filled_qty: o.filled,
                remaining_qty: o.resting,
                reject_reason: None,
                cancel_reason: None,
                trades: Vec::new(),
            }));
        }
        let crosses = !self
            .reachable(order.side.opposite(), Some(new_price))
            .is_empty();
        if order.post_only && crosses {
            return Err(MatchingError::PostOnlyWouldCross {
                symbol: symbol.to_string(),
                order_id,
            });
        }
        // The order leaves the book while it matches (it never meets itself: other side).
        let plan = self.plan(
            order.side,
            Some(new_price),
            wanted,
            &order.account,
            order.stp,
            limits.fills_per_order_max,
        );
        let stopped = plan.stopped_by_self_trade || plan.stopped_by_limit;
        let rests = plan.left > 0 && !stopped;
        if rests {
            self.check_rest(order.side, new_price, plan.left, Some(index), limits)?;
        }
        {
            let o = &mut self.orders[index];
            o.price = Some(new_price);
            o.qty = new_qty;
            o.priority = self.next_priority;
            o.updated_at_ms = at;
        }
        self.next_priority += 1;
        let trades = self.execute(&plan, index, at);
        if rests {
            let o = &mut self.orders[index];
            o.resting = plan.left;
            o.status = if o.filled == 0 {
                OrderStatus::New
            } else {
                OrderStatus::PartiallyFilled
            };
        } else if plan.left == 0 {
            self.close(index, OrderStatus::Filled, None, at);
        } else if plan.stopped_by_self_trade {
            self.close(
                index,
                OrderStatus::Cancelled,
                Some(CancelReason::SelfTrade),
                at,
            );
        } else {
            self.close(
                index,
                OrderStatus::Cancelled,
                Some(CancelReason::FillsLimit),
                at,
            );
        }
        let o = &self.orders[index];
        Ok(MatchingReply::Order(OrderReply {
            order_id,
            status: o.status,
            filled_qty: o.filled,
            remaining_qty: o.resting,
            reject_reason: None,
            cancel_reason: o.cancel_reason,
            trades,
        }))
    }
}

fn view(symbol: &str, order: &Order) -> OrderView {
    OrderView {
        symbol: symbol.to_string(),
        order_id: order.id,
        account: order.account.clone(),
        side: order.side,
        order_type: order.order_type,
        price: order.price,
        qty: order.qty,
        filled_qty: order.filled,
        remaining_qty: order.resting,
        cancelled_qty: order.qty - order.filled - order.resting,
        status: order.status,
        time_in_force: order.time_in_force,
        post_only: order.post_only,
        stp: order.stp,
        reject_reason: order.reject_reason,
        cancel_reason: order.cancel_reason,
        trade_count: order.trade_count,
        created_at_ms: order.created_at_ms,
        updated_at_ms: order.updated_at_ms,
    }
}
