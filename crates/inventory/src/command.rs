//! Commands (what callers ask), events (facts in the log) and replies.

use crate::txn::{Hold, PrepareOp};
use cairn_types::TxnId;
use serde::{Deserialize, Serialize};

/// Who asked, for the audit trail.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Actor {
    /// The token name that made the request.
    pub name: String,
    /// The caller's `request_id`, when it gave one.
    pub request_id: Option<String>,
}

/// A line of a reservation request; without a location the server allocates.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LineRequest {
    /// The SKU.
    pub sku: String,
    /// Where to take it from, or `None` to let the allocation strategy choose.
    pub location: Option<String>,
    /// How many units.
    pub qty: i64,
}

/// A line of a reservation as decided: where every unit comes from.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Line {
    /// The SKU.
    pub sku: String,
    /// The location.
    pub location: String,
    /// Units.
    pub qty: i64,
}

/// What callers ask the inventory to do.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum InventoryCommand {
    /// Add or remove stock (`delta` may be negative) with a reason.
    Adjust {
        /// The SKU.
        sku: String,
        /// The location.
        location: String,
        /// Units to add (negative: remove).
        delta: i64,
        /// Why.
        reason: String,
    },
    /// Set `on_hand` to a counted value, optionally only if it is still `expected_on_hand`.
    Count {
        /// The SKU.
        sku: String,
        /// The location.
        location: String,
        /// The counted quantity.
        on_hand: i64,
        /// Compare-and-set: refuse unless `on_hand` is currently this.
        expected_on_hand: Option<i64>,
    },
    /// Set the safety stock and/or backorder limit of an item.
    SetPolicy {
        /// The SKU.
        sku: String,
        /// The location.
        location: String,
        /// Units kept back from `available`.
        safety_stock: Option<i64>,
        /// How far `available` may go below zero for reservations.
        backorder_limit: Option<i64>,
    },
    /// Reserve every line, or nothing.
    Reserve {
        /// The caller's order.
        order_id: String,
        /// The lines.
        lines: Vec<LineRequest>,
        /// How long the reservation holds, in milliseconds.
        ttl_ms: u64,
    },
    /// Ship a reservation's goods.
    Confirm {
        /// The reservation.
        reservation_id: u64,
    },
    /// Give a reservation's stock back.
    Release {
        /// The reservation.
        reservation_id: u64,
    },
    /// Phase one of a multi-shard transaction: decide `op` and hold its effect.
    TxnPrepare {
        /// The transaction.
        txn: TxnId,
        /// What to prepare.
        op: PrepareOp,
        /// When the coordinator should have decided by (log time).
        timeout_at_ms: u64,
    },
    /// Phase two: make a prepared transaction's effect final (idempotent).
    TxnCommit {
        /// The transaction.
        txn: TxnId,
    },
    /// Phase two: drop a prepared transaction's effect (idempotent; before a prepare, it makes
    /// that prepare refused).
    TxnAbort {
        /// The transaction.
        txn: TxnId,
    },
}

/// Facts in the log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum InventoryEvent {
    /// Stock was adjusted.
    Adjusted {
        /// The SKU.
        sku: String,
        /// The location.
        location: String,
        /// Units added (negative: removed).
        delta: i64,
        /// Why.
        reason: String,
        /// Who.
        actor: Actor,
    },
    /// Stock was counted.
    Counted {
        /// The SKU.
        sku: String,
        /// The location.
        location: String,
        /// The new `on_hand`.
        on_hand: i64,
        /// The `on_hand` before.
        previous_on_hand: i64,
        /// Who.
        actor: Actor,
    },
    /// An item's policy changed.
    PolicySet {
        /// The SKU.
        sku: String,
        /// The location.
        location: String,
        /// The new safety stock.
        safety_stock: i64,
        /// The new backorder limit.
        backorder_limit: i64,
        /// Who.
        actor: Actor,
    },
    /// Stock was reserved.
    Reserved {
        /// The reservation.
        reservation_id: u64,
        /// The caller's order.
        order_id: String,
        /// Where every unit comes from.
        lines: Vec<Line>,
        /// When it expires (log time).
        expires_at_ms: u64,
        /// Who.
        actor: Actor,
    },
    /// A reservation shipped.
    Confirmed {
        /// The reservation.
        reservation_id: u64,
        /// Who.
        actor: Actor,
    },
    /// A reservation was released.
    Released {
        /// The reservation.
        reservation_id: u64,
        /// Who.
        actor: Actor,
    },
    /// A reservation expired.
    Expired {
        /// The reservation.
        reservation_id: u64,
    },
    /// A transaction prepared here: its effect is held.
    TxnPrepared {
        /// The transaction.
        txn: TxnId,
        /// What it holds.
        hold: Hold,
        /// Who.
        actor: Actor,
    },
    /// A prepared transaction committed here.
    TxnCommitted {
        /// The transaction.
        txn: TxnId,
        /// Who.
        actor: Actor,
    },
    /// A transaction aborted here (its hold, if any, is dropped).
    TxnAborted {
        /// The transaction.
        txn: TxnId,
    },
}

/// The answer to an accepted command.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum InventoryReply {
    /// The item after an adjustment, count or policy change.
    Item(crate::state::ItemView),
    /// The reservation after a reserve, confirm or release.
    Reservation(crate::state::ReservationView),
    /// A transaction's part on this shard after a prepare, commit or abort.
    Txn(crate::txn::TxnPiece),
}
