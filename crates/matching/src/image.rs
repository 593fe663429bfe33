//! The canonical form of the state, for snapshots and the state hash.
//!
//! Equal states give equal images whatever their history: markets in symbol order; per market the
//! resting orders per side best price first and in time order within a level, then the retained
//! closed orders in the order they closed, then the retained trades in execution order, then the
//! counters. Accounts are listed once, in order of first appearance in that walk, and orders name
//! them by position. Slot numbers, free lists and interning ids never appear.
//!
//! [`Matching`]'s `Serialize` writes its image and `Deserialize` rebuilds from one (checking it,
//! so damaged bytes give an error, never a panic or a broken book).

use crate::book::{NIL, OrderIndex, Slot};
use crate::market::Market;
use crate::state::Matching;
use crate::types::{
    CancelReason, MarketSpec, OrderStatus, OrderType, RejectReason, Side, StpMode, TimeInForce,
    Trade,
};
use crate::{CLOSED_ORDERS_PER_MARKET_MAX, MARKETS_MAX, TRADES_PER_MARKET_MAX, validate};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Version of the image layout.
pub const IMAGE_FORMAT: u32 = 2;

/// The whole state in canonical form.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MatchingImage {
    /// [`IMAGE_FORMAT`].
    pub format: u32,
    /// Markets in symbol order.
    pub markets: Vec<MarketImage>,
}

/// One market in canonical form.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MarketImage {
    /// The symbol.
    pub symbol: String,
    /// Its rules.
    pub spec: MarketSpec,
    /// Log time it was created.
    pub created_at_ms: u64,
    /// Account names, in order of first appearance in `bids`, `asks`, `closed`.
    pub accounts: Vec<String>,
    /// Resting bids, best price first, time order within a level.
    pub bids: Vec<OrderImage>,
    /// Resting asks, best price first, time order within a level.
    pub asks: Vec<OrderImage>,
    /// Retained closed orders, oldest closed first.
    pub closed: Vec<OrderImage>,
    /// Retained trades, in execution order.
    pub trades: Vec<Trade>,
    /// The id the next order gets.
    pub next_order_id: u64,
    /// The id the next trade gets.
    pub next_trade_id: u64,
    /// The sequence number of the market's last event.
    pub seq: u64,
}

/// One order in canonical form.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderImage {
    /// The id.
    pub order_id: u64,
    /// Position of its account in [`MarketImage::accounts`].
    pub account: u32,
    /// Side.
    pub side: Side,
    /// Limit or market.
    pub order_type: OrderType,
    /// Limit price (0 for a market order).
    pub price: i64,
    /// Total quantity.
    pub qty: i64,
    /// Filled.
    pub filled_qty: i64,
    /// Resting (0 when closed).
    pub remaining_qty: i64,
    /// Time in force.
    pub time_in_force: TimeInForce,
    /// Post-only.
    pub post_only: bool,
    /// Self-trade prevention mode.
    pub stp: StpMode,
    /// Status.
    pub status: OrderStatus,
    /// Reject reason.
    pub reject_reason: Option<RejectReason>,
    /// Cancel reason.
    pub cancel_reason: Option<CancelReason>,
    /// Trades it took part in.
    pub trade_count: u32,
    /// Log time placed.
    pub created_at_ms: u64,
    /// Log time of its last change.
    pub updated_at_ms: u64,
}

impl Matching {
    /// The canonical form of the state.
    #[must_use]
    pub fn image(&self) -> MatchingImage {
        MatchingImage {
            format: IMAGE_FORMAT,
            markets: self
                .markets
                .iter()
                .map(|(symbol, market)| market_image(symbol, market))
                .collect(),
        }
    }

    /// Rebuilds a state from its canonical form (with default limits), checking it.
    ///
    /// # Errors
    /// What is inconsistent in the image.
    pub fn from_image(image: &MatchingImage) -> Result<Matching, String> {
        if image.format != IMAGE_FORMAT {
            return Err(format!("unknown matching image format {}", image.format));
        }
        if image.markets.len() > MARKETS_MAX {
            return Err(format!(
                "{} markets, over {MARKETS_MAX}",
                image.markets.len()
            ));
        }
        let mut matching = Matching::default();
        let mut previous: Option<&str> = None;
        for market in &image.markets {
            if previous.is_some_and(|previous| previous >= market.symbol.as_str()) {
                return Err(format!("market {} is out of order", market.symbol));
            }
            previous = Some(&market.symbol);
            let restored = restore_market(market)
                .map_err(|error| format!("market {}: {error}", market.symbol))?;
            matching.markets.insert(market.symbol.clone(), restored);
        }
        Ok(matching)
    }
}

impl PartialEq for Matching {
    fn eq(&self, other: &Matching) -> bool {
        self.image() == other.image()
    }
}

impl Eq for Matching {}

impl Serialize for Matching {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.image().serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Matching {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Matching, D::Error> {
        let image = MatchingImage::deserialize(deserializer)?;
        Matching::from_image(&image).map_err(serde::de::Error::custom)
    }
}

fn market_image(symbol: &str, market: &Market) -> MarketImage {
    let mut canonical = vec![NIL; market.accounts.id_bound()];
    let mut accounts: Vec<String> = Vec::new();
    let mut image_of = |slot: &Slot| {
        let position = &mut canonical[slot.account as usize];
        if *position == NIL {
            *position = u32::try_from(accounts.len()).unwrap_or(NIL);
            accounts.push(market.accounts.name(slot.account).to_string());
        }
        order_image(slot, *position)
    };
    let mut side = |side: Side| -> Vec<OrderImage> {
        let book = &market.book;
        let ladder = book.ladder(side);
        let count = ladder.best_first().map(|level| level.count as usize).sum();
        let mut orders = Vec::with_capacity(count);
        for level in ladder.best_first() {
            orders.extend(book.level_orders(level).map(|i| image_of(book.slot(i))));
        }
        orders
    };
    let bids = side(Side::Buy);
    let asks = side(Side::Sell);
    let closed = market
        .closed
        .iter()
        .map(|&i| image_of(market.book.slot(i)))
        .collect();
    MarketImage {
        symbol: symbol.to_string(),
        spec: market.spec,
        created_at_ms: market.created_at_ms,
        accounts,
        bids,
        asks,
        closed,
        trades: market.trades.iter().copied().collect(),
        next_order_id: market.next_order_id,
        next_trade_id: market.next_trade_id,
        seq: market.seq,
    }
}

fn order_image(slot: &Slot, account: u32) -> OrderImage {
    OrderImage {
        order_id: slot.order_id,
        account,
        side: slot.side,
        order_type: slot.order_type,
        price: slot.price,
        qty: slot.qty,
        filled_qty: slot.filled_qty,
        remaining_qty: slot.remaining_qty,
        time_in_force: slot.time_in_force,
        post_only: slot.post_only,
        stp: slot.stp,
        status: slot.status,
        reject_reason: slot.reject_reason,
        cancel_reason: slot.cancel_reason,
        trade_count: slot.trade_count,
        created_at_ms: slot.created_at_ms,
        updated_at_ms: slot.updated_at_ms,
    }
}

fn check_spec(spec: &MarketSpec) -> Result<(), String> {
    let resolved = validate::market_spec(
        spec.tick_size,
        spec.lot_size,
        Some(spec.min_price),
        Some(spec.max_price),
        Some(spec.min_qty),
        Some(spec.max_qty),
    )?;
    let same = MarketSpec {
        closed_orders_max: spec.closed_orders_max,
        trades_max: spec.trades_max,
        ..resolved
    };
    if same != *spec {
        return Err("spec is inconsistent".into());
    }
    if spec.closed_orders_max > CLOSED_ORDERS_PER_MARKET_MAX as u64
        || spec.trades_max > TRADES_PER_MARKET_MAX as u64
    {
        return Err("retention bounds over the hard ceilings".into());
    }
    Ok(())
}

/// Checks one order of the image against its market.
fn check_order(image: &MarketImage, order: &OrderImage, open: Option<Side>) -> Result<(), String> {
    let id = order.order_id;
    if id == 0 || id >= image.next_order_id {
        return Err(format!("order id {id} was never issued"));
    }
    if order.account as usize >= image.accounts.len() {
        return Err(format!("order {id} names no account"));
    }
    let quantities_ok = validate::positive("qty", order.qty).is_ok()
        && order.filled_qty >= 0
        && order.remaining_qty >= 0
        && order.filled_qty.saturating_add(order.remaining_qty) <= order.qty;
    if !quantities_ok {
        return Err(format!("order {id} quantities are inconsistent"));
    }
    match order.order_type {
        OrderType::Limit => validate::price(&image.spec, order.price)?,
        OrderType::Market if order.price == 0 => {}
        OrderType::Market => return Err(format!("market order {id} has a price")),
    }
    let open_ok = match open {
        Some(side) => {
            order.side == side
                && order.status.is_open()
                && order.remaining_qty > 0
                && order.order_type == OrderType::Limit
                && order.time_in_force == TimeInForce::Gtc
        }
        None => !order.status.is_open() && order.remaining_qty == 0,
    };
    if !open_ok {
        return Err(format!("order {id} is in the wrong list for its state"));
    }
    Ok(())
}

fn slot_of(order: &OrderImage, account: u32) -> Slot {
    Slot {
        order_id: order.order_id,
        price: order.price,
        qty: order.qty,
        filled_qty: order.filled_qty,
        remaining_qty: order.remaining_qty,
        created_at_ms: order.created_at_ms,
        updated_at_ms: order.updated_at_ms,
        account,
        trade_count: order.trade_count,
        side: order.side,
        order_type: order.order_type,
        time_in_force: order.time_in_force,
        post_only: order.post_only,
        stp: order.stp,
        status: order.status,
        reject_reason: order.reject_reason,
        cancel_reason: order.cancel_reason,
        ..Slot::blank()
    }
}

fn restore_market(image: &MarketImage) -> Result<Market, String> {
    validate::identifier("symbol", &image.symbol)?;
    check_spec(&image.spec)?;
    if image.next_order_id == 0 || image.next_trade_id == 0 || image.seq == 0 {
        return Err("counters start at 1".into());
    }
    let mut seen = std::collections::BTreeSet::new();
    for name in &image.accounts {
        validate::identifier("account", name)?;
        if !seen.insert(name.as_str()) {
            return Err(format!("account {name} is listed twice"));
        }
    }
    let mut market = Market::new(image.spec, image.created_at_ms);
    market.next_order_id = image.next_order_id;
    market.next_trade_id = image.next_trade_id;
    market.seq = image.seq;
    let mut interned: Vec<u32> = vec![NIL; image.accounts.len()];
    let retained = image.bids.len() + image.asks.len() + image.closed.len();
    market.book.slots.reserve_exact(retained);
    let mut ids: Vec<(u64, u32)> = Vec::with_capacity(retained);
    for (side, orders) in [(Side::Buy, &image.bids), (Side::Sell, &image.asks)] {
        check_side_order(side, orders)?;
        // Levels worst first (each new level goes at the best end of the ladder: no shifting),
        // time order within a level.
        for level in orders.chunk_by(|a, b| a.price == b.price).rev() {
            for order in level {
                check_order(image, order, Some(side))?;
                let account = intern(&mut market, &mut interned, image, order.account);
                let index = market.book.alloc_unindexed(slot_of(order, account));
                market.book.link(index);
                ids.push((order.order_id, index));
            }
        }
    }
    if let (Some(bid), Some(ask)) = (market.book.bids.best(), market.book.asks.best())
        && bid.price >= ask.price
    {
        return Err("the book is crossed".into());
    }
    if image.closed.len() as u64 > image.spec.closed_orders_max {
        return Err("more closed orders than the market keeps".into());
    }
    for order in &image.closed {
        check_order(image, order, None)?;
        let account = intern(&mut market, &mut interned, image, order.account);
        let index = market.book.alloc_unindexed(slot_of(order, account));
        ids.push((order.order_id, index));
        market.close(index);
    }
    if interned.contains(&NIL) {
        return Err("an account is named by no order".into());
    }
    market.book.index = OrderIndex::build(ids)?;
    // Account lists are in order id order, as when they were built live.
    let open: Vec<u32> = market
        .book
        .index
        .ascending()
        .map(|(_, index)| index)
        .filter(|&index| market.book.slot(index).status.is_open())
        .collect();
    for index in open {
        market.link_account(index);
    }
    restore_trades(&mut market, image)?;
    Ok(market)
}

/// Best first: bids by falling price, asks by rising price.
fn check_side_order(side: Side, orders: &[OrderImage]) -> Result<(), String> {
    let sorted = orders.windows(2).all(|pair| match side {
        Side::Buy => pair[0].price >= pair[1].price,
        Side::Sell => pair[0].price <= pair[1].price,
    });
    if sorted {
        Ok(())
    } else {
        Err(format!("{side:?} orders are not best price first"))
    }
}

fn intern(market: &mut Market, interned: &mut [u32], image: &MarketImage, position: u32) -> u32 {
    let id = &mut interned[position as usize];
    if *id == NIL {
        *id = market.accounts.acquire(&image.accounts[position as usize]);
    } else {
        market.accounts.add_ref(*id);
    }
    *id
}

fn restore_trades(market: &mut Market, image: &MarketImage) -> Result<(), String> {
    if image.trades.len() as u64 > image.spec.trades_max {
        return Err("more trades than the market keeps".into());
    }
    if image
        .trades
        .first()
        .is_some_and(|trade| trade.trade_id == 0)
    {
        return Err("trade ids start at 1".into());
    }
    for pair in image.trades.windows(2) {
        if pair[0].trade_id + 1 != pair[1].trade_id {
            return Err("trade ids are not consecutive".into());
        }
    }
    if let Some(last) = image.trades.last()
        && last.trade_id >= image.next_trade_id
    {
        return Err("a trade id is not below next_trade_id".into());
    }
    market.trades.extend(image.trades.iter().copied());
    Ok(())
}
