//! The fast book's mechanics: a slab of order slots, price levels as intrusive FIFOs, sorted
//! level ladders with the best price last, and the dense order-id index. Nothing here decides
//! anything: callers say what to link, unlink and reduce.

use crate::ORDER_ID_WINDOW_MAX;
use crate::types::{
    CancelReason, OrderStatus, OrderType, RejectReason, Side, StpMode, TimeInForce,
};
use std::collections::{BTreeMap, VecDeque};

/// "No slot": the end of a list.
pub(crate) const NIL: u32 = u32::MAX;

/// One order, open or closed (closed ones stay while their history is retained).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Slot {
    pub order_id: u64,
    /// Limit price; 0 for a market order.
    pub price: i64,
    /// Total quantity (after amends).
    pub qty: i64,
    pub filled_qty: i64,
    /// What rests on the book; 0 once closed.
    pub remaining_qty: i64,
    pub created_at_ms: u64,
    pub updated_at_ms: u64,
    /// Index into the market's account table.
    pub account: u32,
    /// Level FIFO links (free-list link for a vacant slot).
    pub prev: u32,
    pub next: u32,
    /// The account's open-order list links.
    pub account_prev: u32,
    pub account_next: u32,
    pub trade_count: u32,
    pub side: Side,
    pub order_type: OrderType,
    pub time_in_force: TimeInForce,
    pub post_only: bool,
    pub stp: StpMode,
    pub status: OrderStatus,
    pub reject_reason: Option<RejectReason>,
    pub cancel_reason: Option<CancelReason>,
}

impl Slot {
    /// A slot with every field zero and no links.
    pub(crate) fn blank() -> Slot {
        Slot {
            order_id: 0,
            price: 0,
            qty: 0,
            filled_qty: 0,
            remaining_qty: 0,
            created_at_ms: 0,
            updated_at_ms: 0,
            account: NIL,
            prev: NIL,
            next: NIL,
            account_prev: NIL,
            account_next: NIL,
            trade_count: 0,
            side: Side::Buy,
            order_type: OrderType::Limit,
            time_in_force: TimeInForce::Gtc,
            post_only: false,
            stp: StpMode::CancelIncoming,
            status: OrderStatus::Rejected,
            reject_reason: None,
            cancel_reason: None,
        }
    }
}

/// A price level: total resting quantity, order count, and its FIFO's ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Level {
    pub price: i64,
    pub qty: i64,
    pub count: u32,
    pub head: u32,
    pub tail: u32,
}

/// One side's levels, sorted so that the best price is last.
#[derive(Clone, Debug)]
pub(crate) struct Ladder {
    side: Side,
    levels: Vec<Level>,
}

impl Ladder {
    fn new(side: Side) -> Ladder {
        Ladder {
            side,
            levels: Vec::new(),
        }
    }

    /// Sort key: larger is better. Prices are positive and at most 2^53, so negation is exact.
    fn key(&self, price: i64) -> i64 {
        match self.side {
            Side::Buy => price,
            Side::Sell => -price,
        }
    }

    /// The best level.
    pub(crate) fn best(&self) -> Option<&Level> {
        self.levels.last()
    }

    /// Number of levels.
    pub(crate) fn len(&self) -> usize {
        self.levels.len()
    }

    /// Levels, best first.
    pub(crate) fn best_first(&self) -> impl Iterator<Item = &Level> {
        self.levels.iter().rev()
    }

    /// Where the level at `price` is (`Ok`) or would go (`Err`). Checks the best end first:
    /// most activity is near the spread.
    fn position(&self, price: i64) -> Result<usize, usize> {
        let key = self.key(price);
        let len = self.levels.len();
        if let Some(last) = self.levels.last() {
            let last_key = self.key(last.price);
            if key > last_key {
                return Err(len);
            }
            if key == last_key {
                return Ok(len - 1);
            }
        }
        self.levels
            .binary_search_by(|level| self.key(level.price).cmp(&key))
    }

    /// The level at `price`.
    pub(crate) fn get(&self, price: i64) -> Option<&Level> {
        self.position(price).ok().map(|i| &self.levels[i])
    }
}

/// Order id -> slot: a dense window of recent ids plus a map for older ids still retained.
#[derive(Clone, Debug, Default)]
pub(crate) struct OrderIndex {
    /// The id of `window[0]`.
    base: u64,
    window: VecDeque<u32>,
    old: BTreeMap<u64, u32>,
}

impl OrderIndex {
    pub(crate) fn get(&self, order_id: u64) -> Option<u32> {
        if let Some(&slot) = self.window_entry(order_id) {
            return (slot != NIL).then_some(slot);
        }
        self.old.get(&order_id).copied()
    }

    fn window_entry(&self, order_id: u64) -> Option<&u32> {
        let offset = usize::try_from(order_id.checked_sub(self.base)?).ok()?;
        self.window.get(offset)
    }

    /// Adds an id. Live ids arrive in increasing order with no gaps; a restore adds them in
    /// increasing order too, with gaps.
    pub(crate) fn insert(&mut self, order_id: u64, slot: u32) {
        debug_assert!(slot != NIL);
        debug_assert!(
            self.get(order_id).is_none(),
            "order id {order_id} indexed twice"
        );
        if self.window.is_empty() && order_id >= self.base {
            self.base = order_id;
        }
        let Some(mut offset) = order_id
            .checked_sub(self.base)
            .and_then(|offset| usize::try_from(offset).ok())
        else {
            self.old.insert(order_id, slot);
            return;
        };
        if offset > self.window.len() && offset >= ORDER_ID_WINDOW_MAX {
            // A gap wider than the window (only a restore makes one): start a new window.
            for (at, &entry) in self.window.iter().enumerate() {
                if entry != NIL {
                    self.old.insert(self.base + at as u64, entry);
                }
            }
            self.window.clear();
            self.base = order_id;
            offset = 0;
        }
        while self.window.len() <= offset {
            self.window.push_back(NIL);
        }
        self.window[offset] = slot;
        self.trim();
    }

    pub(crate) fn remove(&mut self, order_id: u64) {
        let offset = order_id
            .checked_sub(self.base)
            .and_then(|offset| usize::try_from(offset).ok());
        match offset.and_then(|offset| self.window.get_mut(offset)) {
            Some(entry) => *entry = NIL,
            None => {
                self.old.remove(&order_id);
            }
        }
        self.trim();
    }

    /// Drops forgotten ids from the front, and moves retained ones to the map when the window is
    /// too wide (an old order still open pins the front).
    fn trim(&mut self) {
        while let Some(&front) = self.window.front() {
            if front != NIL && self.window.len() <= ORDER_ID_WINDOW_MAX {
                break;
            }
            if front != NIL {
                self.old.insert(self.base, front);
            }
            self.window.pop_front();
            self.base += 1;
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.window.iter().filter(|&&slot| slot != NIL).count() + self.old.len()
    }

    /// Builds an index from (order id, slot) pairs in any order, in O(pairs + id span) when the
    /// ids span at most the window (else by sorting).
    ///
    /// # Errors
    /// An id appears twice.
    pub(crate) fn build(mut pairs: Vec<(u64, u32)>) -> Result<OrderIndex, String> {
        let mut index = OrderIndex::default();
        let (Some(low), Some(high)) = (
            pairs.iter().map(|p| p.0).min(),
            pairs.iter().map(|p| p.0).max(),
        ) else {
            return Ok(index);
        };
        let duplicate = |order_id: u64| format!("order id {order_id} appears twice");
        match usize::try_from(high - low) {
            Ok(span) if span < ORDER_ID_WINDOW_MAX => {
                index.base = low;
                index.window = VecDeque::from(vec![NIL; span + 1]);
                for (order_id, slot) in pairs {
                    let entry = &mut index.window[(order_id - low) as usize];
                    if *entry != NIL {
                        return Err(duplicate(order_id));
                    }
                    *entry = slot;
                }
                index.trim();
            }
            _ => {
                pairs.sort_unstable();
                if let Some(pair) = pairs.windows(2).find(|pair| pair[0].0 == pair[1].0) {
                    return Err(duplicate(pair[0].0));
                }
                for (order_id, slot) in pairs {
                    index.insert(order_id, slot);
                }
            }
        }
        Ok(index)
    }

    /// Every (order id, slot), by increasing id.
    pub(crate) fn ascending(&self) -> impl Iterator<Item = (u64, u32)> + '_ {
        let old = self.old.iter().map(|(&id, &slot)| (id, slot));
        let window = self
            .window
            .iter()
            .enumerate()
            .filter(|(_, slot)| **slot != NIL)
            .map(|(at, &slot)| (self.base + at as u64, slot));
        old.chain(window)
    }
}

/// Both sides of one market's book, over a slab of slots.
#[derive(Clone, Debug)]
pub(crate) struct Book {
    pub slots: Vec<Slot>,
    /// Head of the vacant-slot list (linked through `next`).
    free_head: u32,
    pub bids: Ladder,
    pub asks: Ladder,
    pub index: OrderIndex,
    pub open_count: usize,
}

impl Default for Book {
    fn default() -> Book {
        Book {
            slots: Vec::new(),
            free_head: NIL,
            bids: Ladder::new(Side::Buy),
            asks: Ladder::new(Side::Sell),
            index: OrderIndex::default(),
            open_count: 0,
        }
    }
}

impl Book {
    pub(crate) fn ladder(&self, side: Side) -> &Ladder {
        match side {
            Side::Buy => &self.bids,
            Side::Sell => &self.asks,
        }
    }

    fn ladder_mut(&mut self, side: Side) -> &mut Ladder {
        match side {
            Side::Buy => &mut self.bids,
            Side::Sell => &mut self.asks,
        }
    }

    pub(crate) fn slot(&self, index: u32) -> &Slot {
        &self.slots[index as usize]
    }

    pub(crate) fn slot_mut(&mut self, index: u32) -> &mut Slot {
        &mut self.slots[index as usize]
    }

    /// The slot of an order id.
    pub(crate) fn find(&self, order_id: u64) -> Option<u32> {
        self.index.get(order_id)
    }

    /// Takes a vacant slot (reusing a freed one) and indexes the order.
    pub(crate) fn alloc(&mut self, slot: Slot) -> u32 {
        let order_id = slot.order_id;
        let index = self.alloc_unindexed(slot);
        self.index.insert(order_id, index);
        index
    }

    /// Takes a vacant slot without indexing it (a restore indexes all ids at once, sorted).
    pub(crate) fn alloc_unindexed(&mut self, slot: Slot) -> u32 {
        if self.free_head == NIL {
            let index = u32::try_from(self.slots.len()).unwrap_or(NIL);
            assert!(
                index != NIL,
                "the slab is bounded well below u32::MAX slots"
            );
            self.slots.push(slot);
            index
        } else {
            let index = self.free_head;
            self.free_head = self.slots[index as usize].next;
            self.slots[index as usize] = slot;
            index
        }
    }

    /// Forgets a closed order and makes its slot vacant.
    pub(crate) fn release(&mut self, index: u32) {
        let slot = self.slots[index as usize];
        debug_assert!(!slot.status.is_open(), "only closed orders are released");
        self.index.remove(slot.order_id);
        let mut blank = Slot::blank();
        blank.next = self.free_head;
        self.slots[index as usize] = blank;
        self.free_head = index;
    }

    /// Appends an open order at the back of its level, creating the level if needed.
    pub(crate) fn link(&mut self, index: u32) {
        let Slot {
            side,
            price,
            remaining_qty,
            ..
        } = self.slots[index as usize];
        debug_assert!(remaining_qty > 0);
        let ladder = self.ladder_mut(side);
        let tail = match ladder.position(price) {
            Ok(at) => {
                let level = &mut ladder.levels[at];
                level.qty += remaining_qty;
                level.count += 1;
                let tail = level.tail;
                level.tail = index;
                tail
            }
            Err(at) => {
                ladder.levels.insert(
                    at,
                    Level {
                        price,
                        qty: remaining_qty,
                        count: 1,
                        head: index,
                        tail: index,
                    },
                );
                NIL
            }
        };
        let slot = &mut self.slots[index as usize];
        slot.prev = tail;
        slot.next = NIL;
        if tail != NIL {
            self.slots[tail as usize].next = index;
        }
        self.open_count += 1;
    }

    /// Removes an open order from its level (dropping the level when it empties).
    pub(crate) fn unlink(&mut self, index: u32) {
        let Slot {
            side,
            price,
            remaining_qty,
            prev,
            next,
            ..
        } = self.slots[index as usize];
        if prev != NIL {
            self.slots[prev as usize].next = next;
        }
        if next != NIL {
            self.slots[next as usize].prev = prev;
        }
        let ladder = self.ladder_mut(side);
        let Ok(at) = ladder.position(price) else {
            debug_assert!(false, "an open order's level exists");
            return;
        };
        let level = &mut ladder.levels[at];
        level.qty -= remaining_qty;
        level.count -= 1;
        if level.head == index {
            level.head = next;
        }
        if level.tail == index {
            level.tail = prev;
        }
        if level.count == 0 {
            debug_assert!(level.qty == 0 && level.head == NIL && level.tail == NIL);
            ladder.levels.remove(at);
        }
        let slot = &mut self.slots[index as usize];
        slot.prev = NIL;
        slot.next = NIL;
        self.open_count -= 1;
    }

    /// Takes `qty` off an open order that stays linked (a partial fill or a quantity-down
    /// amend).
    pub(crate) fn reduce(&mut self, index: u32, qty: i64) {
        let slot = &mut self.slots[index as usize];
        debug_assert!(qty > 0 && qty < slot.remaining_qty);
        slot.remaining_qty -= qty;
        let (side, price) = (slot.side, slot.price);
        let ladder = self.ladder_mut(side);
        if let Ok(at) = ladder.position(price) {
            ladder.levels[at].qty -= qty;
        } else {
            debug_assert!(false, "an open order's level exists");
        }
    }

    /// Slot indices of a level's orders, in time order.
    pub(crate) fn level_orders(&self, level: &Level) -> impl Iterator<Item = u32> + '_ {
        let mut at = level.head;
        std::iter::from_fn(move || {
            if at == NIL {
                return None;
            }
            let here = at;
            at = self.slots[here as usize].next;
            Some(here)
        })
    }

    /// Checks the book's structure; returns what is wrong. O(orders).
    pub(crate) fn check(&self) -> Result<(), String> {
        let mut open = 0usize;
        for ladder in [&self.bids, &self.asks] {
            let mut previous: Option<i64> = None;
            for level in ladder.best_first() {
                if let Some(previous) = previous
                    && ladder.key(level.price) >= ladder.key(previous)
                {
                    return Err(format!("{:?} levels out of order", ladder.side));
                }
                previous = Some(level.price);
                let (mut qty, mut count, mut prev) = (0i64, 0u32, NIL);
                for index in self.level_orders(level) {
                    let slot = self.slot(index);
                    if slot.prev != prev
                        || slot.price != level.price
                        || slot.side != ladder.side
                        || !slot.status.is_open()
                        || slot.remaining_qty <= 0
                        || self.find(slot.order_id) != Some(index)
                    {
                        return Err(format!("order {} is misplaced", slot.order_id));
                    }
                    qty += slot.remaining_qty;
                    count += 1;
                    prev = index;
                }
                if qty != level.qty || count != level.count || prev != level.tail || count == 0 {
                    return Err(format!("level {} totals are wrong", level.price));
                }
                open += count as usize;
            }
        }
        if let (Some(bid), Some(ask)) = (self.bids.best(), self.asks.best())
            && bid.price >= ask.price
        {
            return Err(format!(
                "the book is crossed: {} >= {}",
                bid.price, ask.price
            ));
        }
        if open != self.open_count {
            return Err(format!("open count {} != {open}", self.open_count));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_index_window_moves_old_open_ids_to_the_map() {
        let mut index = OrderIndex::default();
        index.insert(1, 10);
        let last = ORDER_ID_WINDOW_MAX as u64 + 5;
        for id in 2..=last {
            index.insert(id, 20);
            index.remove(id);
        }
        assert_eq!(index.get(1), Some(10));
        assert!(index.window.len() <= ORDER_ID_WINDOW_MAX);
        index.insert(last + 1, 30);
        assert_eq!(index.get(last + 1), Some(30));
        assert_eq!(index.len(), 2);
        index.remove(1);
        assert_eq!(index.get(1), None);
        assert_eq!(index.len(), 1);
    }

    #[test]
    fn an_index_built_at_once_equals_one_built_by_inserts() {
        let far = ORDER_ID_WINDOW_MAX as u64 * 3;
        for ids in [vec![5u64, 3, 9, 4], vec![1, far, 2, far + 7]] {
            let pairs: Vec<(u64, u32)> = ids.iter().map(|&id| (id, id as u32 % 1000)).collect();
            let built = OrderIndex::build(pairs.clone()).expect("no duplicates");
            let mut sorted = pairs.clone();
            sorted.sort_unstable();
            assert_eq!(built.ascending().collect::<Vec<_>>(), sorted);
            for (id, slot) in &pairs {
                assert_eq!(built.get(*id), Some(*slot));
            }
            assert_eq!(built.get(6), None);
            let mut twice = pairs.clone();
            twice.push(pairs[0]);
            assert!(OrderIndex::build(twice).is_err());
        }
    }

    #[test]
    fn levels_keep_the_best_price_last() {
        let mut book = Book::default();
        for (i, price) in [100, 102, 101, 99, 102].into_iter().enumerate() {
            let mut slot = Slot::blank();
            slot.order_id = i as u64 + 1;
            slot.price = price;
            slot.remaining_qty = 1;
            slot.status = OrderStatus::New;
            let index = book.alloc(slot);
            book.link(index);
        }
        let prices: Vec<i64> = book.bids.best_first().map(|l| l.price).collect();
        assert_eq!(prices, vec![102, 101, 100, 99]);
        assert_eq!(book.bids.get(102).map(|l| l.count), Some(2));
        book.check().expect("consistent");
        let first = book.find(2).expect("indexed");
        book.unlink(first);
        assert_eq!(book.bids.get(102).map(|l| (l.count, l.qty)), Some((1, 1)));
        book.check().expect("consistent");
    }
}
