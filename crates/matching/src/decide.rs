//! Decisions: a command and the current state in, one event (the complete outcome) or a refusal
//! out. Nothing here changes the state: the walk over the book is read-only.

use crate::command::{
    Actor, Fill, MatchingCommand, MatchingEvent, MatchingReply, OrderReply, StpCancel, TradeView,
};
use crate::error::MatchingError;
use crate::market::Market;
use crate::state::Matching;
use crate::types::{
    CancelReason, OrderStatus, OrderType, RejectReason, Side, StpMode, TimeInForce,
};
use crate::{AMOUNT_MAX, validate};

/// Events and the reply of an accepted command.
pub type Decided = (Vec<MatchingEvent>, MatchingReply);

fn invalid(message: String) -> MatchingError {
    MatchingError::InvalidArgument(message)
}

/// Why a walk stopped before it ran out of crossing liquidity or filled completely.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stop {
    SelfTrade,
    FillsLimit,
}

/// What an incoming order would do against the opposite side, as computed by a read-only walk.
#[derive(Debug, Default)]
struct Walk {
    fills: Vec<Fill>,
    stp_cancelled: Vec<StpCancel>,
    /// Unfilled quantity.
    left: i64,
    stop: Option<Stop>,
    /// Makers the fills take completely.
    makers_closed: usize,
}

/// The incoming side of a walk.
struct Taker<'a> {
    side: Side,
    /// `None`: a market order (any price).
    limit: Option<i64>,
    qty: i64,
    /// The account's index in the market's table (`None`: no resting order can be its own).
    account: Option<u32>,
    stp: StpMode,
    fills_max: usize,
    market: &'a Market,
}

impl Taker<'_> {
    /// Walks the opposite side best first, in time order within a level.
    fn walk(&self) -> Walk {
        let market = self.market;
        let mut walk = Walk {
            left: self.qty,
            ..Walk::default()
        };
        let mut trade_id = market.next_trade_id;
        let opposite = market.book.ladder(self.side.opposite());
        'levels: for level in opposite.best_first() {
            if self
                .limit
                .is_some_and(|limit| !self.side.crosses(limit, level.price))
            {
                break;
            }
            for index in market.book.level_orders(level) {
                let maker = market.book.slot(index);
                let own = Some(maker.account) == self.account;
                if own && self.stp == StpMode::CancelIncoming {
                    walk.stop = Some(Stop::SelfTrade);
                    break 'levels;
                }
                if walk.fills.len() + walk.stp_cancelled.len() >= self.fills_max {
                    walk.stop = Some(Stop::FillsLimit);
                    break 'levels;
                }
                if own {
                    walk.stp_cancelled.push(StpCancel {
                        order_id: maker.order_id,
                        price: maker.price,
                        remaining_qty: maker.remaining_qty,
                    });
                    if self.stp == StpMode::CancelBoth {
                        walk.stop = Some(Stop::SelfTrade);
                        break 'levels;
                    }
                    continue;
                }
                let qty = walk.left.min(maker.remaining_qty);
                walk.fills.push(Fill {
                    trade_id,
                    maker_order_id: maker.order_id,
                    maker_account: market.accounts.name(maker.account).to_string(),
                    price: level.price,
                    qty,
                });
                trade_id += 1;
                walk.left -= qty;
                if qty == maker.remaining_qty {
                    walk.makers_closed += 1;
                }
                if walk.left == 0 {
                    break 'levels;
                }
            }
        }
        walk
    }
}

/// The decided end state of an incoming order.
struct Outcome {
    walk: Walk,
    resting_qty: i64,
    status: OrderStatus,
    reject_reason: Option<RejectReason>,
    cancel_reason: Option<CancelReason>,
}

impl Outcome {
    fn rejected(reason: RejectReason) -> Outcome {
        Outcome {
            walk: Walk::default(),
            resting_qty: 0,
            status: OrderStatus::Rejected,
            reject_reason: Some(reason),
            cancel_reason: None,
        }
    }

    fn cancelled(walk: Walk, reason: CancelReason) -> Outcome {
        Outcome {
            walk,
            resting_qty: 0,
            status: OrderStatus::Cancelled,
            reject_reason: None,
            cancel_reason: Some(reason),
        }
    }

    /// The end state of a new order after its walk.
    fn of_new_order(walk: Walk, qty: i64, time_in_force: TimeInForce) -> Outcome {
        if time_in_force == TimeInForce::Fok && walk.left > 0 {
            return Outcome::rejected(RejectReason::FokNotFillable);
        }
        let filled = qty - walk.left;
        let ended = |walk: Walk, status, reject_reason, cancel_reason| Outcome {
            walk,
            resting_qty: 0,
            status,
            reject_reason,
            cancel_reason,
        };
        if walk.left == 0 {
            return ended(walk, OrderStatus::Filled, None, None);
        }
        if filled == 0 && (walk.stop.is_some() || time_in_force != TimeInForce::Gtc) {
            // Stopped with nothing filled: every touch was a self-trade cancel.
            let reason = match walk.stop {
                Some(_) => RejectReason::SelfTrade,
                None => RejectReason::NoLiquidity,
            };
            return ended(walk, OrderStatus::Rejected, Some(reason), None);
        }
        match (walk.stop, time_in_force) {
            (Some(Stop::SelfTrade), _) => Outcome::cancelled(walk, CancelReason::SelfTrade),
            (Some(Stop::FillsLimit), _) => Outcome::cancelled(walk, CancelReason::FillsLimit),
            (None, TimeInForce::Gtc) => {
                let resting_qty = walk.left;
                let status = if filled == 0 {
                    OrderStatus::New
                } else {
                    OrderStatus::PartiallyFilled
                };
                Outcome {
                    walk,
                    resting_qty,
                    status,
                    reject_reason: None,
                    cancel_reason: None,
                }
            }
            (None, _) => Outcome::cancelled(walk, CancelReason::ImmediateOrCancel),
        }
    }

    /// The end state of an amended (previously resting) order after its walk.
    fn of_amend(walk: Walk, filled_before: i64) -> Outcome {
        match walk.stop {
            _ if walk.left == 0 => Outcome {
                walk,
                resting_qty: 0,
                status: OrderStatus::Filled,
                reject_reason: None,
                cancel_reason: None,
            },
            Some(Stop::SelfTrade) => Outcome::cancelled(walk, CancelReason::SelfTrade),
            Some(Stop::FillsLimit) => Outcome::cancelled(walk, CancelReason::FillsLimit),
            None => {
                let filled: i64 = filled_before + walk.fills.iter().map(|f| f.qty).sum::<i64>();
                let resting_qty = walk.left;
                Outcome {
                    walk,
                    resting_qty,
                    status: if filled == 0 {
                        OrderStatus::New
                    } else {
                        OrderStatus::PartiallyFilled
                    },
                    reject_reason: None,
                    cancel_reason: None,
                }
            }
        }
    }

    fn trades(&self, taker_order_id: u64) -> Vec<TradeView> {
        self.walk
            .fills
            .iter()
            .map(|fill| TradeView {
                trade_id: fill.trade_id,
                price: fill.price,
                qty: fill.qty,
                maker_order_id: fill.maker_order_id,
                taker_order_id,
            })
            .collect()
    }

    fn filled(&self) -> i64 {
        self.walk.fills.iter().map(|fill| fill.qty).sum()
    }
}

/// A new order's fields, validated.
struct NewOrder<'a> {
    symbol: &'a str,
    account: &'a str,
    side: Side,
    order_type: OrderType,
    price: Option<i64>,
    qty: i64,
    time_in_force: TimeInForce,
    post_only: bool,
    stp: StpMode,
}

impl Matching {
    /// Decides `command` at log time `now_ms`. Never changes the state.
    ///
    /// # Errors
    /// The refusal; nothing is logged for it.
    pub fn decide(
        &self,
        command: &MatchingCommand,
        actor: &Actor,
        _now_ms: u64,
    ) -> Result<Decided, MatchingError> {
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
                if self.markets.contains_key(symbol.as_str()) {
                    return Err(MatchingError::MarketExists {
                        symbol: symbol.clone(),
                    });
                }
                if self.markets.len() >= self.limits.markets_max {
                    return Err(limit(
                        "markets_max",
                        format!("at most {} markets", self.limits.markets_max),
                    ));
                }
                spec.closed_orders_max = self.limits.closed_orders_per_market_max as u64;
                spec.trades_max = self.limits.trades_per_market_max as u64;
                let event = MatchingEvent::MarketCreated {
                    symbol: symbol.clone(),
                    seq: 1,
                    spec,
                    actor: actor.clone(),
                };
                let reply = MatchingReply::Market {
                    symbol: symbol.clone(),
                    spec,
                };
                Ok((vec![event], reply))
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
            } => self.place(&NewOrder {
                symbol,
                account,
                side: *side,
                order_type: *order_type,
                price: *price,
                qty: *qty,
                time_in_force: *time_in_force,
                post_only: *post_only,
                stp: stp.unwrap_or_default(),
            }),
            MatchingCommand::CancelOrder { symbol, order_id } => self.cancel(symbol, *order_id),
            MatchingCommand::AmendOrder {
                symbol,
                order_id,
                price,
                qty,
            } => self.amend(symbol, *order_id, *price, *qty),
        }
    }

    fn market_for(&self, symbol: &str) -> Result<&Market, MatchingError> {
        validate::identifier("symbol", symbol).map_err(invalid)?;
        self.markets
            .get(symbol)
            .ok_or_else(|| MatchingError::MarketNotFound {
                symbol: symbol.to_string(),
            })
    }

    fn place(&self, order: &NewOrder<'_>) -> Result<Decided, MatchingError> {
        let market = self.market_for(order.symbol)?;
        validate::identifier("account", order.account).map_err(invalid)?;
        validate::order_shape(
            order.order_type,
            order.price,
            order.time_in_force,
            order.post_only,
        )
        .map_err(invalid)?;
        if let Some(price) = order.price {
            validate::price(&market.spec, price).map_err(invalid)?;
        }
        validate::qty(&market.spec, order.qty).map_err(invalid)?;
        let order_id = market.next_order_id;
        let taker = Taker {
            side: order.side,
            limit: order.price,
            qty: order.qty,
            account: market.accounts.id(order.account),
            stp: order.stp,
            fills_max: self.limits.fills_per_order_max,
            market,
        };
        let best = market.book.ladder(order.side.opposite()).best();
        let crosses = best.is_some_and(|level| {
            order
                .price
                .is_none_or(|limit| order.side.crosses(limit, level.price))
        });
        let outcome = if order.post_only && crosses {
            Outcome::rejected(RejectReason::PostOnlyWouldCross)
        } else {
            Outcome::of_new_order(taker.walk(), order.qty, order.time_in_force)
        };
        if outcome.resting_qty > 0 {
            let open_after = market.book.open_count + 1
                - outcome.walk.makers_closed
                - outcome.walk.stp_cancelled.len();
            if open_after > self.limits.open_orders_per_market_max {
                return Err(limit(
                    "open_orders_per_market_max",
                    format!(
                        "market {} holds at most {} open orders",
                        order.symbol, self.limits.open_orders_per_market_max
                    ),
                ));
            }
            let price = order.price.unwrap_or(0);
            self.check_level(market, order.side, price, outcome.resting_qty, None)?;
        }
        let reply = OrderReply {
            order_id,
            status: outcome.status,
            filled_qty: outcome.filled(),
            remaining_qty: outcome.resting_qty,
            reject_reason: outcome.reject_reason,
            cancel_reason: outcome.cancel_reason,
            trades: outcome.trades(order_id),
        };
        let event = MatchingEvent::OrderPlaced {
            symbol: order.symbol.to_string(),
            seq: market.seq + 1,
            order_id,
            account: order.account.to_string(),
            side: order.side,
            order_type: order.order_type,
            price: order.price,
            qty: order.qty,
            time_in_force: order.time_in_force,
            post_only: order.post_only,
            stp: order.stp,
            fills: outcome.walk.fills,
            stp_cancelled: outcome.walk.stp_cancelled,
            resting_qty: outcome.resting_qty,
            status: outcome.status,
            reject_reason: outcome.reject_reason,
            cancel_reason: outcome.cancel_reason,
        };
        Ok((vec![event], MatchingReply::Order(reply)))
    }

    /// Refuses to rest `qty` at `(side, price)` when that would need a level past the level
    /// bound or take the level's total past 2^53. `moving_from` is an amended order's current
    /// (price, remaining), which leaves its level first.
    fn check_level(
        &self,
        market: &Market,
        side: Side,
        price: i64,
        qty: i64,
        moving_from: Option<(i64, i64)>,
    ) -> Result<(), MatchingError> {
        let ladder = market.book.ladder(side);
        let at_price = ladder.get(price);
        let mut level_qty = at_price.map_or(0, |level| level.qty);
        let mut levels = ladder.len();
        if at_price.is_none() {
            levels += 1;
        }
        if let Some((old_price, old_qty)) = moving_from {
            if old_price == price {
                level_qty -= old_qty;
            } else if ladder.get(old_price).is_some_and(|level| level.count == 1) {
                levels -= 1;
            }
        }
        if levels > self.limits.price_levels_per_side_max {
            return Err(limit(
                "price_levels_per_side_max",
                format!(
                    "a side of market holds at most {} price levels",
                    self.limits.price_levels_per_side_max
                ),
            ));
        }
        if level_qty + qty > AMOUNT_MAX {
            return Err(limit(
                "level_qty_max",
                format!("the level at {price} would hold more than 2^53 units"),
            ));
        }
        Ok(())
    }

    fn cancel(&self, symbol: &str, order_id: u64) -> Result<Decided, MatchingError> {
        let market = self.market_for(symbol)?;
        let index = open_order(market, symbol, order_id)?;
        let slot = market.book.slot(index);
        let event = MatchingEvent::OrderCancelled {
            symbol: symbol.to_string(),
            seq: market.seq + 1,
            order_id,
            side: slot.side,
            price: slot.price,
            remaining_qty: slot.remaining_qty,
            reason: CancelReason::Requested,
        };
        let reply = OrderReply {
            order_id,
            status: OrderStatus::Cancelled,
            filled_qty: slot.filled_qty,
            remaining_qty: 0,
            reject_reason: None,
            cancel_reason: Some(CancelReason::Requested),
            trades: Vec::new(),
        };
        Ok((vec![event], MatchingReply::Order(reply)))
    }

    fn amend(
        &self,
        symbol: &str,
        order_id: u64,
        price: Option<i64>,
        qty: Option<i64>,
    ) -> Result<Decided, MatchingError> {
        let market = self.market_for(symbol)?;
        if price.is_none() && qty.is_none() {
            return Err(invalid("an amend sets a price, a qty or both".into()));
        }
        if let Some(price) = price {
            validate::price(&market.spec, price).map_err(invalid)?;
        }
        if let Some(qty) = qty {
            validate::qty(&market.spec, qty).map_err(invalid)?;
        }
        let index = open_order(market, symbol, order_id)?;
        let slot = *market.book.slot(index);
        let new_price = price.unwrap_or(slot.price);
        let new_qty = qty.unwrap_or(slot.qty);
        if new_qty <= slot.filled_qty {
            return Err(invalid(format!(
                "qty {new_qty} is not above the filled quantity {}; cancel the order instead",
                slot.filled_qty
            )));
        }
        if new_price == slot.price && new_qty == slot.qty {
            return Err(invalid("the amend changes nothing".into()));
        }
        let wanted = new_qty - slot.filled_qty;
        let priority_kept = new_price == slot.price && new_qty < slot.qty;
        let outcome = if priority_kept {
            Outcome {
                walk: Walk::default(),
                resting_qty: wanted,
                status: slot.status,
                reject_reason: None,
                cancel_reason: None,
            }
        } else {
            let best = market.book.ladder(slot.side.opposite()).best();
            if slot.post_only && best.is_some_and(|level| slot.side.crosses(new_price, level.price))
            {
                return Err(MatchingError::PostOnlyWouldCross {
                    symbol: symbol.to_string(),
                    order_id,
                });
            }
            let taker = Taker {
                side: slot.side,
                limit: Some(new_price),
                qty: wanted,
                account: Some(slot.account),
                stp: slot.stp,
                fills_max: self.limits.fills_per_order_max,
                market,
            };
            Outcome::of_amend(taker.walk(), slot.filled_qty)
        };
        if outcome.resting_qty > 0 && !priority_kept {
            let from = Some((slot.price, slot.remaining_qty));
            self.check_level(market, slot.side, new_price, outcome.resting_qty, from)?;
        }
        let reply = OrderReply {
            order_id,
            status: outcome.status,
            filled_qty: slot.filled_qty + outcome.filled(),
            remaining_qty: outcome.resting_qty,
            reject_reason: None,
            cancel_reason: outcome.cancel_reason,
            trades: outcome.trades(order_id),
        };
        let event = MatchingEvent::OrderAmended {
            symbol: symbol.to_string(),
            seq: market.seq + 1,
            order_id,
            side: slot.side,
            old_price: slot.price,
            old_remaining_qty: slot.remaining_qty,
            price: new_price,
            qty: new_qty,
            priority_kept,
            fills: outcome.walk.fills,
            stp_cancelled: outcome.walk.stp_cancelled,
            resting_qty: outcome.resting_qty,
            status: outcome.status,
            cancel_reason: outcome.cancel_reason,
        };
        Ok((vec![event], MatchingReply::Order(reply)))
    }
}

/// The slot of an open order, or why there is none.
fn open_order(market: &Market, symbol: &str, order_id: u64) -> Result<u32, MatchingError> {
    match market.book.find(order_id) {
        Some(index) if market.book.slot(index).status.is_open() => Ok(index),
        Some(index) => Err(MatchingError::OrderNotOpen {
            symbol: symbol.to_string(),
            order_id,
            status: Some(market.book.slot(index).status),
        }),
        // Issued but forgotten: only closed orders are ever forgotten.
        None if order_id >= 1 && order_id < market.next_order_id => {
            Err(MatchingError::OrderNotOpen {
                symbol: symbol.to_string(),
                order_id,
                status: None,
            })
        }
        None => Err(MatchingError::OrderNotFound {
            symbol: symbol.to_string(),
            order_id,
        }),
    }
}

fn limit(name: &str, message: String) -> MatchingError {
    MatchingError::LimitExceeded {
        limit: name.to_string(),
        message,
    }
}
