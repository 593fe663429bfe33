//! One market: its book, account table, retained closed orders and trades, and how each event
//! changes them. Applying is bookkeeping only: every decision is already in the event.

use crate::book::{Book, NIL, Slot};
use crate::command::{Fill, MatchingEvent, StpCancel};
use crate::types::{CancelReason, MarketSpec, OrderStatus, Side, Trade};
use std::collections::{HashMap, VecDeque};

/// An account known to a market: its name, how many retained orders name it, and its open
/// orders as an intrusive list (in order id order).
#[derive(Clone, Debug)]
pub(crate) struct Account {
    pub name: String,
    /// Retained orders (open or closed) that refer to this entry.
    pub refs: u64,
    pub open_head: u32,
    open_tail: u32,
    pub open_count: u32,
}

/// Account names interned to small dense indices, so slots stay fixed-size and the hot path
/// looks a name up once per command.
///
/// The name index is a hash map (two lookups per order: one when deciding, one when applying;
/// an ordered map of 1,000 names cost a quarter of the book's time in memcmp). Its keys are
/// hashed with the standard library's randomly keyed SipHash, because names come from clients and
/// a fixed hash would let one craft colliding names. Nothing iterates it where order matters: the
/// canonical image lists accounts by first appearance in the book walk, never in map order.
#[derive(Clone, Debug, Default)]
pub(crate) struct Accounts {
    entries: Vec<Account>,
    by_name: HashMap<Box<str>, u32>,
    vacant: Vec<u32>,
}

impl Accounts {
    pub(crate) fn id(&self, name: &str) -> Option<u32> {
        self.by_name.get(name).copied()
    }

    pub(crate) fn get(&self, id: u32) -> &Account {
        &self.entries[id as usize]
    }

    pub(crate) fn name(&self, id: u32) -> &str {
        &self.entries[id as usize].name
    }

    /// The entry for `name` with one more reference, created if needed.
    pub(crate) fn acquire(&mut self, name: &str) -> u32 {
        let id = match self.by_name.get(name) {
            Some(&id) => id,
            None => {
                let entry = Account {
                    name: name.to_string(),
                    refs: 0,
                    open_head: NIL,
                    open_tail: NIL,
                    open_count: 0,
                };
                let id = match self.vacant.pop() {
                    Some(id) => {
                        self.entries[id as usize] = entry;
                        id
                    }
                    None => {
                        self.entries.push(entry);
                        u32::try_from(self.entries.len() - 1).unwrap_or(NIL)
                    }
                };
                self.by_name.insert(name.into(), id);
                id
            }
        };
        self.entries[id as usize].refs += 1;
        id
    }

    /// One more reference to a live entry.
    pub(crate) fn add_ref(&mut self, id: u32) {
        self.entries[id as usize].refs += 1;
    }

    /// Upper bound of the ids in use.
    pub(crate) fn id_bound(&self) -> usize {
        self.entries.len()
    }

    /// Drops one reference; the entry is forgotten at zero.
    fn release(&mut self, id: u32) {
        let entry = &mut self.entries[id as usize];
        debug_assert!(entry.refs > 0);
        entry.refs = entry.refs.saturating_sub(1);
        if entry.refs == 0 {
            debug_assert!(entry.open_count == 0);
            let name = std::mem::take(&mut entry.name);
            self.by_name.remove(name.as_str());
            self.vacant.push(id);
        }
    }

    /// Live entries (with at least one retained order), in no particular order.
    pub(crate) fn live(&self) -> impl Iterator<Item = (u32, &Account)> {
        self.by_name
            .values()
            .map(|&id| (id, &self.entries[id as usize]))
    }
}

/// A market's whole state.
#[derive(Clone, Debug)]
pub(crate) struct Market {
    pub spec: MarketSpec,
    pub created_at_ms: u64,
    pub next_order_id: u64,
    pub next_trade_id: u64,
    /// The sequence number of the market's last event (`MarketCreated` is 1).
    pub seq: u64,
    pub book: Book,
    pub accounts: Accounts,
    /// Closed orders' slots, oldest closed first.
    pub closed: VecDeque<u32>,
    /// Trades, in execution order.
    pub trades: VecDeque<Trade>,
}

impl Market {
    pub(crate) fn new(spec: MarketSpec, created_at_ms: u64) -> Market {
        Market {
            spec,
            created_at_ms,
            next_order_id: 1,
            next_trade_id: 1,
            seq: 1,
            book: Book::default(),
            accounts: Accounts::default(),
            closed: VecDeque::new(),
            trades: VecDeque::new(),
        }
    }

    /// Puts an open order on the book and on its account's list.
    pub(crate) fn rest(&mut self, index: u32) {
        self.book.link(index);
        self.link_account(index);
    }

    /// Appends an open order to its account's list.
    pub(crate) fn link_account(&mut self, index: u32) {
        let account = self.book.slot(index).account;
        let tail = self.accounts.entries[account as usize].open_tail;
        {
            let slot = self.book.slot_mut(index);
            slot.account_prev = tail;
            slot.account_next = NIL;
        }
        if tail == NIL {
            self.accounts.entries[account as usize].open_head = index;
        } else {
            self.book.slot_mut(tail).account_next = index;
        }
        let entry = &mut self.accounts.entries[account as usize];
        entry.open_tail = index;
        entry.open_count += 1;
    }

    /// Takes an open order off the book and its account's list.
    fn take_off(&mut self, index: u32) {
        self.book.unlink(index);
        self.unlink_account(index);
    }

    /// Takes an order off its account's open list.
    fn unlink_account(&mut self, index: u32) {
        let Slot {
            account,
            account_prev,
            account_next,
            ..
        } = *self.book.slot(index);
        if account_prev == NIL {
            self.accounts.entries[account as usize].open_head = account_next;
        } else {
            self.book.slot_mut(account_prev).account_next = account_next;
        }
        if account_next == NIL {
            self.accounts.entries[account as usize].open_tail = account_prev;
        } else {
            self.book.slot_mut(account_next).account_prev = account_prev;
        }
        let entry = &mut self.accounts.entries[account as usize];
        entry.open_count -= 1;
        let slot = self.book.slot_mut(index);
        slot.account_prev = NIL;
        slot.account_next = NIL;
    }

    /// Adds a closed order to the retained history, forgetting the oldest beyond the bound.
    pub(crate) fn close(&mut self, index: u32) {
        debug_assert!(!self.book.slot(index).status.is_open());
        self.closed.push_back(index);
        while self.closed.len() as u64 > self.spec.closed_orders_max {
            let Some(oldest) = self.closed.pop_front() else {
                break;
            };
            let account = self.book.slot(oldest).account;
            self.book.release(oldest);
            self.accounts.release(account);
        }
    }

    pub(crate) fn record_trade(&mut self, trade: Trade) {
        debug_assert!(trade.trade_id >= self.next_trade_id);
        self.next_trade_id = self.next_trade_id.max(trade.trade_id + 1);
        self.trades.push_back(trade);
        while self.trades.len() as u64 > self.spec.trades_max {
            self.trades.pop_front();
        }
    }

    /// Applies an order event of this market.
    pub(crate) fn apply(&mut self, event: &MatchingEvent, at_ms: u64) {
        debug_assert_eq!(event.seq(), self.seq + 1, "market events are sequenced");
        self.seq = self.seq.max(event.seq());
        match event {
            MatchingEvent::MarketCreated { .. } => {}
            MatchingEvent::OrderPlaced { .. } => self.placed(event, at_ms),
            MatchingEvent::OrderAmended { .. } => self.amended(event, at_ms),
            MatchingEvent::OrderCancelled {
                order_id, reason, ..
            } => {
                let Some(index) = self.open_slot(*order_id) else {
                    return;
                };
                self.finish(index, OrderStatus::Cancelled, Some(*reason), at_ms);
            }
        }
    }

    /// The slot of an open order (events only name open orders).
    fn open_slot(&self, order_id: u64) -> Option<u32> {
        let index = self.book.find(order_id);
        debug_assert!(
            index.is_some_and(|i| self.book.slot(i).status.is_open()),
            "order {order_id} named by an event is open"
        );
        index.filter(|&i| self.book.slot(i).status.is_open())
    }

    /// Closes an open order with its remainder: off the book, into the history.
    fn finish(
        &mut self,
        index: u32,
        status: OrderStatus,
        reason: Option<CancelReason>,
        at_ms: u64,
    ) {
        self.take_off(index);
        let slot = self.book.slot_mut(index);
        slot.remaining_qty = 0;
        slot.status = status;
        slot.cancel_reason = reason;
        slot.updated_at_ms = at_ms;
        self.close(index);
    }

    fn stp_cancels(&mut self, cancels: &[StpCancel], at_ms: u64) {
        for cancel in cancels {
            if let Some(index) = self.open_slot(cancel.order_id) {
                debug_assert_eq!(self.book.slot(index).remaining_qty, cancel.remaining_qty);
                self.finish(
                    index,
                    OrderStatus::Cancelled,
                    Some(CancelReason::SelfTrade),
                    at_ms,
                );
            }
        }
    }

    /// Executes fills against resting orders; returns the quantity filled.
    fn fills(&mut self, fills: &[Fill], taker_order_id: u64, taker_side: Side, at_ms: u64) -> i64 {
        let mut filled = 0;
        for fill in fills {
            let Some(index) = self.open_slot(fill.maker_order_id) else {
                continue;
            };
            let slot = *self.book.slot(index);
            debug_assert!(fill.qty > 0 && fill.qty <= slot.remaining_qty);
            debug_assert!(slot.price == fill.price && slot.side != taker_side);
            let qty = fill.qty.clamp(0, slot.remaining_qty);
            let maker = self.book.slot_mut(index);
            maker.filled_qty += qty;
            maker.trade_count = maker.trade_count.saturating_add(1);
            maker.updated_at_ms = at_ms;
            if qty == slot.remaining_qty {
                // Last: closing may forget the slot at once (a market that keeps no history).
                self.finish(index, OrderStatus::Filled, None, at_ms);
            } else {
                self.book.reduce(index, qty);
                self.book.slot_mut(index).status = OrderStatus::PartiallyFilled;
            }
            filled += qty;
            self.record_trade(Trade {
                trade_id: fill.trade_id,
                price: slot.price,
                qty,
                maker_order_id: fill.maker_order_id,
                taker_order_id,
                taker_side,
                at_ms,
            });
        }
        filled
    }

    fn placed(&mut self, event: &MatchingEvent, at_ms: u64) {
        let MatchingEvent::OrderPlaced {
            order_id,
            account,
            side,
            order_type,
            price,
            qty,
            time_in_force,
            post_only,
            stp,
            fills,
            stp_cancelled,
            resting_qty,
            status,
            reject_reason,
            cancel_reason,
            ..
        } = event
        else {
            return;
        };
        debug_assert_eq!(*order_id, self.next_order_id, "order ids are dense");
        self.next_order_id = self.next_order_id.max(order_id + 1);
        self.stp_cancels(stp_cancelled, at_ms);
        let filled_qty = self.fills(fills, *order_id, *side, at_ms);
        debug_assert!(filled_qty + resting_qty <= *qty);
        debug_assert_eq!(status.is_open(), *resting_qty > 0);
        let account = self.accounts.acquire(account);
        let slot = Slot {
            order_id: *order_id,
            price: price.unwrap_or(0),
            qty: *qty,
            filled_qty,
            remaining_qty: *resting_qty,
            created_at_ms: at_ms,
            updated_at_ms: at_ms,
            account,
            trade_count: u32::try_from(fills.len()).unwrap_or(u32::MAX),
            side: *side,
            order_type: *order_type,
            time_in_force: *time_in_force,
            post_only: *post_only,
            stp: *stp,
            status: *status,
            reject_reason: *reject_reason,
            cancel_reason: *cancel_reason,
            ..Slot::blank()
        };
        let index = self.book.alloc(slot);
        if *resting_qty > 0 {
            self.rest(index);
        } else {
            self.close(index);
        }
    }

    fn amended(&mut self, event: &MatchingEvent, at_ms: u64) {
        let MatchingEvent::OrderAmended {
            order_id,
            side,
            old_remaining_qty,
            price,
            qty,
            priority_kept,
            fills,
            stp_cancelled,
            resting_qty,
            status,
            cancel_reason,
            ..
        } = event
        else {
            return;
        };
        let Some(index) = self.open_slot(*order_id) else {
            return;
        };
        debug_assert_eq!(self.book.slot(index).remaining_qty, *old_remaining_qty);
        if *priority_kept {
            let less = self.book.slot(index).remaining_qty - resting_qty;
            if less > 0 && *resting_qty > 0 {
                self.book.reduce(index, less);
            }
            let slot = self.book.slot_mut(index);
            slot.qty = *qty;
            slot.updated_at_ms = at_ms;
            return;
        }
        self.book.unlink(index);
        self.stp_cancels(stp_cancelled, at_ms);
        let filled = self.fills(fills, *order_id, *side, at_ms);
        let slot = self.book.slot_mut(index);
        slot.price = *price;
        slot.qty = *qty;
        slot.filled_qty += filled;
        slot.trade_count = slot
            .trade_count
            .saturating_add(u32::try_from(fills.len()).unwrap_or(u32::MAX));
        slot.remaining_qty = *resting_qty;
        slot.status = *status;
        slot.cancel_reason = *cancel_reason;
        slot.updated_at_ms = at_ms;
        debug_assert!(slot.filled_qty + slot.remaining_qty <= slot.qty);
        if *resting_qty > 0 {
            self.book.link(index);
        } else {
            self.unlink_account(index);
            self.close(index);
        }
    }
}
