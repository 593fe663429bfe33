//! The inventory's state and how events change it.

use crate::command::{Actor, InventoryEvent, Line};
use crate::txn::Hold;
use crate::{
    CLOSED_ORDERS_MAX, FINISHED_RESERVATIONS_MAX, FINISHED_RETENTION_MS, HISTORY_PER_SKU_MAX,
};
use cairn_types::TxnId;
use serde::{Deserialize, Serialize};
// Persistent (structurally shared) collections: cloning the whole state for a snapshot is O(1),
// so the sequencer's snapshot pause does not grow with the state; ordered, so encoding and the
// state hash depend on the contents alone.
use imbl::{OrdMap, OrdSet, Vector};
use std::collections::VecDeque;
use std::sync::Arc;

/// Stock of one SKU at one location.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Item {
    /// Units on the shelf.
    pub on_hand: i64,
    /// Units held by active reservations.
    pub reserved: i64,
    /// Units kept back from sale.
    pub safety_stock: i64,
    /// How far `available` may go below zero for reservations.
    pub backorder_limit: i64,
}

impl Item {
    /// `on_hand - reserved - safety_stock` (negative when oversold or backordered).
    #[must_use]
    pub fn available(&self) -> i64 {
        self.on_hand - self.reserved - self.safety_stock
    }

    /// What a reservation may still take: `available + backorder_limit`.
    #[must_use]
    pub fn reservable(&self) -> i64 {
        self.available() + self.backorder_limit
    }
}

/// An item as the API shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ItemView {
    /// The SKU.
    pub sku: String,
    /// The location.
    pub location: String,
    /// Units on the shelf.
    pub on_hand: i64,
    /// Units held.
    pub reserved: i64,
    /// Units kept back.
    pub safety_stock: i64,
    /// Backorder allowance.
    pub backorder_limit: i64,
    /// `on_hand - reserved - safety_stock`.
    pub available: i64,
    /// True while `on_hand < reserved` (a count landed below what is held).
    pub oversold: bool,
}

/// Where a reservation is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReservationState {
    /// Holding stock.
    Active,
    /// Shipped.
    Confirmed,
    /// Given back by a caller.
    Released,
    /// Given back at its expiry time.
    Expired,
}

impl ReservationState {
    /// The wire name.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            ReservationState::Active => "active",
            ReservationState::Confirmed => "confirmed",
            ReservationState::Released => "released",
            ReservationState::Expired => "expired",
        }
    }
}

/// A reservation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reservation {
    /// The caller's order.
    pub order_id: String,
    /// Where every unit comes from.
    pub lines: Vec<Line>,
    /// Its state.
    pub state: ReservationState,
    /// When it expires (log time).
    pub expires_at_ms: u64,
    /// When it was made (log time).
    pub created_at_ms: u64,
    /// The multi-shard transaction it is a part of: only that transaction may confirm or
    /// release it, so that every part ends the same way.
    pub txn: Option<TxnId>,
}

/// A reservation as the API shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReservationView {
    /// The id.
    pub reservation_id: u64,
    /// The caller's order.
    pub order_id: String,
    /// Its state.
    pub state: ReservationState,
    /// When it expires (log time).
    pub expires_at_ms: u64,
    /// Where every unit comes from.
    pub lines: Vec<Line>,
}

/// One entry of a SKU's recent history.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryEntry {
    /// The record.
    pub lsn: u64,
    /// Its log time.
    pub at_ms: u64,
    /// What happened.
    pub kind: String,
    /// Who, when a caller did it.
    pub actor: Option<Actor>,
    /// The location concerned.
    pub location: Option<String>,
    /// Units concerned (positive or negative).
    pub qty: Option<i64>,
    /// A reservation concerned.
    pub reservation_id: Option<u64>,
    /// The reason of an adjustment.
    pub reason: Option<String>,
}

/// The whole inventory of one shard. Ordered maps only, so that the encoding (and so the state
/// hash) depends on the contents alone.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Inventory {
    pub(crate) items: OrdMap<String, OrdMap<String, Item>>,
    pub(crate) reservations: OrdMap<u64, Arc<Reservation>>,
    /// Active reservations by expiry.
    pub(crate) expiry: OrdSet<(u64, u64)>,
    /// Finished reservations by finish time, for pruning.
    pub(crate) finished: Vector<(u64, u64)>,
    /// Orders released or expired, with the time: a later reservation for them is refused.
    pub(crate) closed_orders: OrdMap<String, u64>,
    pub(crate) closed_order_queue: Vector<(u64, String)>,
    pub(crate) history: OrdMap<String, Arc<VecDeque<HistoryEntry>>>,
    pub(crate) next_reservation_id: u64,
    /// Holds of prepared multi-shard transactions.
    pub(crate) holds: OrdMap<TxnId, Arc<Hold>>,
    /// Reservations a prepared transaction is confirming or releasing.
    pub(crate) busy: OrdMap<u64, TxnId>,
    /// Outcomes of transactions (`true`: committed), so that late messages do nothing.
    pub(crate) txn_outcomes: OrdMap<TxnId, bool>,
    pub(crate) txn_outcome_queue: Vector<(u64, TxnId)>,
}

impl Inventory {
    /// An item, if the SKU was ever seen at that location.
    #[must_use]
    pub fn item(&self, sku: &str, location: &str) -> Option<&Item> {
        self.items
            .get(sku)
            .and_then(|locations| locations.get(location))
    }

    /// Every location of a SKU, by location name; `None` for a SKU never seen.
    #[must_use]
    pub fn item_views(&self, sku: &str) -> Option<Vec<ItemView>> {
        let locations = self.items.get(sku)?;
        Some(
            locations
                .iter()
                .map(|(location, item)| view(sku, location, item))
                .collect(),
        )
    }

    /// Sum of `available` over a SKU's locations.
    #[must_use]
    pub fn total_available(&self, sku: &str) -> i64 {
        self.items.get(sku).map_or(0, |locations| {
            let sum: i128 = locations
                .values()
                .map(|item| i128::from(item.available()))
                .sum();
            // Clamped to the API's range; the exact figure is in the per-location items.
            i64::try_from(sum.clamp(-i128::from(crate::QTY_MAX), i128::from(crate::QTY_MAX)))
                .unwrap_or(0)
        })
    }

    /// A reservation as the API shows it.
    #[must_use]
    pub fn reservation_view(&self, reservation_id: u64) -> Option<ReservationView> {
        self.reservations
            .get(&reservation_id)
            .map(|r| reservation_view(reservation_id, r))
    }

    /// A reservation.
    #[must_use]
    pub fn reservation(&self, reservation_id: u64) -> Option<&Reservation> {
        self.reservations.get(&reservation_id).map(|r| &**r)
    }

    /// Active reservations, by id.
    pub fn active_reservations(&self) -> impl Iterator<Item = (u64, &Reservation)> {
        self.reservations
            .iter()
            .filter(|(_, r)| r.state == ReservationState::Active)
            .map(|(id, r)| (*id, &**r))
    }

    /// Every (SKU, location, item).
    pub fn items(&self) -> impl Iterator<Item = (&str, &str, &Item)> {
        self.items.iter().flat_map(|(sku, locations)| {
            locations
                .iter()
                .map(move |(location, item)| (sku.as_str(), location.as_str(), item))
        })
    }

    /// A SKU's recent history, oldest first.
    #[must_use]
    pub fn history(&self, sku: &str) -> Vec<HistoryEntry> {
        self.history
            .get(sku)
            .map(|entries| entries.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// A one-line summary.
    #[must_use]
    pub fn summary(&self) -> String {
        let items = self.items.values().map(OrdMap::len).sum::<usize>();
        let on_hand: i128 = self
            .items()
            .map(|(_, _, item)| i128::from(item.on_hand))
            .sum();
        let reserved: i128 = self
            .items()
            .map(|(_, _, item)| i128::from(item.reserved))
            .sum();
        format!(
            "{} SKU(s) at {items} item(s); on_hand {on_hand}, reserved {reserved}; {} active reservation(s), {} kept in all",
            self.items.len(),
            self.expiry.len(),
            self.reservations.len()
        )
    }

    /// Events for reservations whose expiry is at or before `now_ms`, at most `max`.
    #[must_use]
    pub fn due(&self, now_ms: u64, max: usize) -> Vec<InventoryEvent> {
        self.expiry
            .iter()
            .take_while(|(expires_at_ms, _)| *expires_at_ms <= now_ms)
            // A reservation a transaction is confirming or releasing waits for its outcome.
            .filter(|(_, reservation_id)| !self.busy.contains_key(reservation_id))
            .take(max)
            .map(|(_, reservation_id)| InventoryEvent::Expired {
                reservation_id: *reservation_id,
            })
            .collect()
    }

    /// Applies one event logged at `lsn` and log time `at_ms`.
    pub fn apply(&mut self, event: &InventoryEvent, lsn: u64, at_ms: u64) {
        match event {
            InventoryEvent::Adjusted {
                sku,
                location,
                delta,
                reason,
                actor,
            } => {
                let item = self.item_mut(sku, location);
                item.on_hand += delta;
                debug_assert!(
                    item.on_hand >= 0,
                    "an adjustment never makes on_hand negative"
                );
                let entry = entry(
                    lsn,
                    at_ms,
                    "adjusted",
                    Some(actor),
                    Some(location),
                    Some(*delta),
                    None,
                );
                self.record(
                    sku,
                    HistoryEntry {
                        reason: Some(reason.clone()),
                        ..entry
                    },
                );
            }
            InventoryEvent::Counted {
                sku,
                location,
                on_hand,
                previous_on_hand,
                actor,
            } => {
                self.item_mut(sku, location).on_hand = *on_hand;
                let entry = entry(
                    lsn,
                    at_ms,
                    "counted",
                    Some(actor),
                    Some(location),
                    Some(on_hand - previous_on_hand),
                    None,
                );
                self.record(sku, entry);
            }
            InventoryEvent::PolicySet {
                sku,
                location,
                safety_stock,
                backorder_limit,
                actor,
            } => {
                let item = self.item_mut(sku, location);
                item.safety_stock = *safety_stock;
                item.backorder_limit = *backorder_limit;
                self.record(
                    sku,
                    entry(
                        lsn,
                        at_ms,
                        "policy_set",
                        Some(actor),
                        Some(location),
                        None,
                        None,
                    ),
                );
            }
            InventoryEvent::Reserved {
                reservation_id,
                order_id,
                lines,
                expires_at_ms,
                actor,
            } => {
                self.reserved(
                    *reservation_id,
                    order_id,
                    lines,
                    *expires_at_ms,
                    actor,
                    lsn,
                    at_ms,
                );
            }
            InventoryEvent::Confirmed {
                reservation_id,
                actor,
            } => {
                self.finish(
                    *reservation_id,
                    ReservationState::Confirmed,
                    Some(actor),
                    lsn,
                    at_ms,
                );
            }
            InventoryEvent::Released {
                reservation_id,
                actor,
            } => {
                self.finish(
                    *reservation_id,
                    ReservationState::Released,
                    Some(actor),
                    lsn,
                    at_ms,
                );
            }
            InventoryEvent::Expired { reservation_id } => {
                self.finish(*reservation_id, ReservationState::Expired, None, lsn, at_ms);
            }
            InventoryEvent::TxnPrepared { txn, hold, actor } => {
                self.apply_prepared(*txn, hold, actor, lsn);
            }
            InventoryEvent::TxnCommitted { txn, actor } => {
                self.apply_phase_two(*txn, true, Some(actor), lsn, at_ms);
            }
            InventoryEvent::TxnAborted { txn } => {
                self.apply_phase_two(*txn, false, None, lsn, at_ms);
            }
        }
        self.prune(at_ms);
        self.prune_txn_outcomes(at_ms);
    }

    pub(crate) fn item_mut(&mut self, sku: &str, location: &str) -> &mut Item {
        self.items
            .entry(sku.to_string())
            .or_default()
            .entry(location.to_string())
            .or_default()
    }

    #[allow(clippy::too_many_arguments)]
    fn reserved(
        &mut self,
        id: u64,
        order_id: &str,
        lines: &[Line],
        expires_at_ms: u64,
        actor: &Actor,
        lsn: u64,
        at_ms: u64,
    ) {
        for line in lines {
            self.item_mut(&line.sku, &line.location).reserved += line.qty;
            let entry = entry(
                lsn,
                at_ms,
                "reserved",
                Some(actor),
                Some(&line.location),
                Some(line.qty),
                Some(id),
            );
            self.record(&line.sku, entry);
        }
        self.insert_reservation(id, order_id, lines, expires_at_ms, at_ms, None);
    }

    /// Adds an active reservation whose units are already counted in `reserved`.
    pub(crate) fn insert_reservation(
        &mut self,
        id: u64,
        order_id: &str,
        lines: &[Line],
        expires_at_ms: u64,
        at_ms: u64,
        txn: Option<TxnId>,
    ) {
        let reservation = Reservation {
            order_id: order_id.to_string(),
            lines: lines.to_vec(),
            state: ReservationState::Active,
            expires_at_ms,
            created_at_ms: at_ms,
            txn,
        };
        self.reservations.insert(id, Arc::new(reservation));
        self.expiry.insert((expires_at_ms, id));
        self.next_reservation_id = self.next_reservation_id.max(id + 1);
    }

    /// Ends an active reservation: confirm ships the goods, release and expiry give them back.
    pub(crate) fn finish(
        &mut self,
        id: u64,
        state: ReservationState,
        actor: Option<&Actor>,
        lsn: u64,
        at_ms: u64,
    ) {
        let Some(reservation) = self.reservations.get_mut(&id).map(Arc::make_mut) else {
            return;
        };
        if reservation.state != ReservationState::Active {
            return;
        }
        reservation.state = state;
        let lines = reservation.lines.clone();
        let order_id = reservation.order_id.clone();
        self.expiry.remove(&(reservation.expires_at_ms, id));
        self.finished.push_back((at_ms, id));
        for line in &lines {
            let item = self.item_mut(&line.sku, &line.location);
            item.reserved -= line.qty;
            if state == ReservationState::Confirmed {
                item.on_hand -= line.qty;
            }
            let kind = match state {
                ReservationState::Confirmed => "confirmed",
                ReservationState::Released => "released",
                _ => "expired",
            };
            self.record(
                &line.sku,
                entry(
                    lsn,
                    at_ms,
                    kind,
                    actor,
                    Some(&line.location),
                    Some(line.qty),
                    Some(id),
                ),
            );
        }
        if state != ReservationState::Confirmed && !self.closed_orders.contains_key(&order_id) {
            self.closed_orders.insert(order_id.clone(), at_ms);
            self.closed_order_queue.push_back((at_ms, order_id));
        }
    }

    pub(crate) fn record(&mut self, sku: &str, entry: HistoryEntry) {
        let entries = match self.history.get_mut(sku) {
            Some(entries) => Arc::make_mut(entries),
            None => Arc::make_mut(self.history.entry(sku.to_string()).or_default()),
        };
        if entries.len() == HISTORY_PER_SKU_MAX {
            entries.pop_front();
        }
        entries.push_back(entry);
    }

    /// Forgets finished reservations and closed orders past their retention (by log time, so
    /// replay forgets exactly the same ones).
    fn prune(&mut self, now_ms: u64) {
        while let Some(&(finished_at_ms, id)) = self.finished.front() {
            let old = finished_at_ms.saturating_add(FINISHED_RETENTION_MS) < now_ms;
            if !old && self.finished.len() <= FINISHED_RESERVATIONS_MAX {
                break;
            }
            self.finished.pop_front();
            self.reservations.remove(&id);
        }
        while let Some((closed_at_ms, _)) = self.closed_order_queue.front() {
            let old = closed_at_ms.saturating_add(FINISHED_RETENTION_MS) < now_ms;
            if !old && self.closed_order_queue.len() <= CLOSED_ORDERS_MAX {
                break;
            }
            if let Some((_, order_id)) = self.closed_order_queue.pop_front() {
                self.closed_orders.remove(&order_id);
            }
        }
    }
}

pub(crate) fn entry(
    lsn: u64,
    at_ms: u64,
    kind: &str,
    actor: Option<&Actor>,
    location: Option<&String>,
    qty: Option<i64>,
    reservation_id: Option<u64>,
) -> HistoryEntry {
    HistoryEntry {
        lsn,
        at_ms,
        kind: kind.to_string(),
        actor: actor.cloned(),
        location: location.cloned(),
        qty,
        reservation_id,
        reason: None,
    }
}

pub(crate) fn view(sku: &str, location: &str, item: &Item) -> ItemView {
    ItemView {
        sku: sku.to_string(),
        location: location.to_string(),
        on_hand: item.on_hand,
        reserved: item.reserved,
        safety_stock: item.safety_stock,
        backorder_limit: item.backorder_limit,
        available: item.available(),
        oversold: item.on_hand < item.reserved,
    }
}

pub(crate) fn reservation_view(id: u64, reservation: &Reservation) -> ReservationView {
    ReservationView {
        reservation_id: id,
        order_id: reservation.order_id.clone(),
        state: reservation.state,
        expires_at_ms: reservation.expires_at_ms,
        lines: reservation.lines.clone(),
    }
}
