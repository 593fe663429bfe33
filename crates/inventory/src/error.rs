//! Refusals, each with a stable code.

use cairn_types::TxnId;
use serde::{Deserialize, Serialize};

/// A line that could not be reserved in full.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShortLine {
    /// The SKU.
    pub sku: String,
    /// The location the line named, if any.
    pub location: Option<String>,
    /// Units asked for.
    pub requested: i64,
    /// Units that could be taken (for a line without location: the SKU's total).
    pub available: i64,
}

/// Why the inventory refused a command.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum InventoryError {
    /// Malformed input (normally refused before it reaches the state machine).
    InvalidArgument(String),
    /// Not enough stock: only the short lines are listed.
    InsufficientStock {
        /// The short lines.
        lines: Vec<ShortLine>,
    },
    /// A count's `expected_on_hand` differs from the current `on_hand`.
    CountConflict {
        /// What the count expected.
        expected_on_hand: i64,
        /// What it is.
        on_hand: i64,
    },
    /// Unknown reservation.
    ReservationNotFound {
        /// The id asked for.
        reservation_id: u64,
    },
    /// The reservation is confirmed, released or expired.
    ReservationNotActive {
        /// The reservation.
        reservation_id: u64,
        /// Its state.
        state: crate::state::ReservationState,
    },
    /// The change would take a stock level past 2^53.
    QuantityLimit {
        /// What would happen.
        message: String,
    },
    /// The order was already released or expired: a late reservation cannot hang stock.
    OrderClosed {
        /// The order.
        order_id: String,
    },
    /// A multi-shard transaction is confirming or releasing the reservation right now.
    ReservationBusy {
        /// The reservation.
        reservation_id: u64,
    },
    /// The reservation is one part of a multi-shard reservation: confirm or release that one.
    PartOfTransaction {
        /// The part.
        reservation_id: u64,
        /// The multi-shard reservation's transaction (its public id).
        txn: TxnId,
    },
    /// The transaction was aborted here: it cannot prepare or commit.
    TxnAborted {
        /// The transaction.
        txn: TxnId,
    },
    /// The transaction was committed here: it cannot prepare again or abort.
    TxnCommitted {
        /// The transaction.
        txn: TxnId,
    },
    /// The transaction never prepared here (or its outcome was forgotten).
    TxnNotFound {
        /// The transaction.
        txn: TxnId,
    },
}

impl InventoryError {
    /// The stable machine-readable code.
    #[must_use]
    pub fn code(&self) -> &'static str {
        match self {
            InventoryError::InvalidArgument(_) => "invalid_argument",
            InventoryError::InsufficientStock { .. } => "insufficient_stock",
            InventoryError::CountConflict { .. } => "count_conflict",
            InventoryError::ReservationNotFound { .. } => "not_found",
            InventoryError::ReservationNotActive { .. } => "reservation_not_active",
            InventoryError::OrderClosed { .. } => "order_closed",
            InventoryError::QuantityLimit { .. } => "quantity_limit_exceeded",
            InventoryError::ReservationBusy { .. } => "transaction_in_progress",
            InventoryError::PartOfTransaction { .. } => "part_of_transaction",
            InventoryError::TxnAborted { .. } => "transaction_aborted",
            InventoryError::TxnCommitted { .. } => "transaction_committed",
            InventoryError::TxnNotFound { .. } => "transaction_not_found",
        }
    }

    /// The HTTP status for the code.
    #[must_use]
    pub fn http_status(&self) -> u16 {
        match self {
            InventoryError::InvalidArgument(_) => 400,
            InventoryError::ReservationNotFound { .. } | InventoryError::TxnNotFound { .. } => 404,
            _ => 409,
        }
    }

    /// A human message.
    #[must_use]
    pub fn message(&self) -> String {
        match self {
            InventoryError::InvalidArgument(reason) => reason.clone(),
            InventoryError::InsufficientStock { lines } => {
                format!(
                    "insufficient stock for {} line(s); nothing was reserved",
                    lines.len()
                )
            }
            InventoryError::CountConflict {
                expected_on_hand,
                on_hand,
            } => {
                format!("count expected on_hand {expected_on_hand} but it is {on_hand}")
            }
            InventoryError::ReservationNotFound { reservation_id } => {
                format!("reservation {reservation_id} not found")
            }
            InventoryError::ReservationNotActive { state, .. } => {
                format!(
                    "the reservation is {} and can no longer change",
                    state.as_str()
                )
            }
            InventoryError::OrderClosed { order_id } => {
                format!("order {order_id} was already released or expired")
            }
            InventoryError::QuantityLimit { message } => message.clone(),
            InventoryError::ReservationBusy { reservation_id } => format!(
                "reservation {reservation_id} is being confirmed or released by a transaction; retry shortly"
            ),
            InventoryError::PartOfTransaction { txn, .. } => format!(
                "this reservation is one part of the multi-shard reservation {txn}; confirm or release that one"
            ),
            InventoryError::TxnAborted { txn } => format!("transaction {txn} was aborted"),
            InventoryError::TxnCommitted { txn } => format!("transaction {txn} was committed"),
            InventoryError::TxnNotFound { txn } => format!("transaction {txn} is not known here"),
        }
    }
}
