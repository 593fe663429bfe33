//! Cairn's inventory state machine.
//!
//! Stock is kept per (SKU, location) as `on_hand`, `reserved`, `safety_stock` and
//! `backorder_limit`; `available = on_hand - reserved - safety_stock`. A reservation takes all
//! its lines or none, holds stock until it is confirmed (the goods ship: `on_hand` and
//! `reserved` both fall), released, or expires at its log time. A reservation never takes stock
//! that would push `available` below `-backorder_limit`: that is the no-oversell invariant, and
//! it holds on one hot SKU because one sequencer decides every reservation of a SKU in order.
//!
//! The crate is pure: [`Inventory::decide`] turns a command into events or a refusal,
//! [`Inventory::apply`] applies events, and time arrives only as an argument. It depends on
//! nothing but `cairn-types` and `serde`, so the engine can run it and tests can drive it alone.

#![deny(missing_docs)]

mod command;
mod decide;
mod error;
mod state;
mod txn;
pub mod validate;

pub use command::{Actor, InventoryCommand, InventoryEvent, InventoryReply, Line, LineRequest};
pub use error::{InventoryError, ShortLine};
pub use state::{
    HistoryEntry, Inventory, Item, ItemView, Reservation, ReservationState, ReservationView,
};
pub use txn::{HeldOp, Hold, PieceState, PrepareOp, TXN_OUTCOMES_MAX, TxnPiece};

/// Default time a reservation holds stock: 15 minutes.
pub const RESERVATION_TTL_MS_DEFAULT: u64 = 15 * 60 * 1000;
/// Longest time a reservation may hold stock: 24 hours.
pub const RESERVATION_TTL_MS_MAX: u64 = 24 * 60 * 60 * 1000;
/// Most lines in one reservation.
pub const RESERVATION_LINES_MAX: usize = 100;
/// Largest quantity or stock level: 2^53, so that every amount is exact in JSON clients.
pub const QTY_MAX: i64 = 1 << 53;
/// How long a finished reservation (and a closed order id) stays queryable, in log time.
pub const FINISHED_RETENTION_MS: u64 = 7 * 24 * 60 * 60 * 1000;
/// Most finished reservations kept per shard, whatever their age.
pub const FINISHED_RESERVATIONS_MAX: usize = 2_000_000;
/// Most closed order ids remembered per shard (for `order_closed`), whatever their age.
pub const CLOSED_ORDERS_MAX: usize = 2_000_000;
/// History entries kept per SKU (the full history is in the log).
pub const HISTORY_PER_SKU_MAX: usize = 256;
/// Longest adjustment reason, in bytes.
pub const REASON_BYTES_MAX: usize = 512;
