//! The participant's side of a multi-shard transaction (two-phase commit).
//!
//! Phase one, [`InventoryCommand::TxnPrepare`], decides an operation exactly as its one-shard
//! form would and *holds* its effect: a reservation's units are counted in `reserved` at once
//! (so every other decision on the SKU sees `available` minus holds, and no lock is taken), and
//! a reservation being confirmed or released is marked busy (it cannot expire or change under
//! the transaction). Phase two makes the held effect final ([`InventoryCommand::TxnCommit`]) or
//! drops it ([`InventoryCommand::TxnAbort`]).
//!
//! Both phase-two commands are idempotent, and every transaction's outcome is remembered for a
//! while (bounded), so a late or repeated message cannot apply twice: an abort that arrives
//! before its prepare is remembered, and the prepare is then refused. Who decides and when a
//! hold times out is the coordinator's business (the engine): a participant never decides alone,
//! because a hold released by its own clock could contradict a commit already acknowledged.
//!
//! [`InventoryCommand::TxnPrepare`]: crate::InventoryCommand::TxnPrepare
//! [`InventoryCommand::TxnCommit`]: crate::InventoryCommand::TxnCommit
//! [`InventoryCommand::TxnAbort`]: crate::InventoryCommand::TxnAbort

use crate::command::{Actor, InventoryEvent, InventoryReply, Line, LineRequest};
use crate::decide::Decided;
use crate::error::InventoryError;
use crate::state::{Inventory, ReservationState};
use crate::{FINISHED_RETENTION_MS, validate};
use cairn_types::TxnId;
use serde::{Deserialize, Serialize};

/// Most transaction outcomes a shard remembers, whatever their age.
pub const TXN_OUTCOMES_MAX: usize = 2_000_000;

/// What a participant is asked to prepare.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum PrepareOp {
    /// Reserve these lines (this shard's part of a multi-shard order).
    Reserve {
        /// The caller's order.
        order_id: String,
        /// This shard's lines.
        lines: Vec<LineRequest>,
        /// When the reservation expires once committed (the same on every shard).
        expires_at_ms: u64,
    },
    /// Confirm (`confirm: true`) or release an active reservation of this shard.
    Finish {
        /// The reservation on this shard.
        reservation_id: u64,
        /// Confirm, or release.
        confirm: bool,
    },
}

/// What a prepared transaction holds on this shard.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum HeldOp {
    /// Units held for a reservation that exists once committed.
    Reserve {
        /// The id the reservation gets on commit.
        reservation_id: u64,
        /// The caller's order.
        order_id: String,
        /// Where every unit comes from.
        lines: Vec<Line>,
        /// When it expires once committed.
        expires_at_ms: u64,
    },
    /// A reservation that the transaction confirms or releases.
    Finish {
        /// The reservation.
        reservation_id: u64,
        /// Confirm, or release.
        confirm: bool,
    },
}

/// A prepared transaction's hold.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hold {
    /// What is held.
    pub op: HeldOp,
    /// When it was prepared (log time).
    pub prepared_at_ms: u64,
    /// When the coordinator should have decided by; past it, the engine resolves the hold
    /// (presumed abort unless the coordinator logged a commit).
    pub timeout_at_ms: u64,
}

impl Hold {
    /// The reservation the hold concerns.
    #[must_use]
    pub fn reservation_id(&self) -> u64 {
        match &self.op {
            HeldOp::Reserve { reservation_id, .. } | HeldOp::Finish { reservation_id, .. } => {
                *reservation_id
            }
        }
    }
}

/// Where a transaction is on this shard.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PieceState {
    /// Prepared: its effect is held.
    Held,
    /// Committed.
    Committed,
    /// Aborted (or refused before it was prepared).
    Aborted,
}

/// A transaction's part on this shard, as replies show it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxnPiece {
    /// The transaction.
    pub txn: TxnId,
    /// Where it is.
    pub state: PieceState,
    /// The reservation concerned, when known.
    pub reservation_id: Option<u64>,
    /// The lines held or reserved here (empty for a finish).
    pub lines: Vec<Line>,
}

impl Inventory {
    /// Holds of prepared transactions, by transaction.
    pub fn holds(&self) -> impl Iterator<Item = (TxnId, &Hold)> {
        self.holds.iter().map(|(txn, hold)| (*txn, &**hold))
    }

    /// A prepared transaction's hold.
    #[must_use]
    pub fn hold(&self, txn: TxnId) -> Option<&Hold> {
        self.holds.get(&txn).map(|hold| &**hold)
    }

    /// The remembered outcome of a transaction on this shard (`true`: committed).
    #[must_use]
    pub fn txn_outcome(&self, txn: TxnId) -> Option<bool> {
        self.txn_outcomes.get(&txn).copied()
    }

    /// The transaction that is finishing a reservation, if one is.
    #[must_use]
    pub fn busy_with(&self, reservation_id: u64) -> Option<TxnId> {
        self.busy.get(&reservation_id).copied()
    }

    /// A reservation with a line at (sku, location) that a prepared transaction is confirming:
    /// its goods leave the shelf at commit, so the shelf may not be counted under it.
    pub(crate) fn confirming_at(&self, sku: &str, location: &str) -> Option<u64> {
        self.busy.iter().find_map(|(reservation_id, txn)| {
            let confirming = self
                .holds
                .get(txn)
                .is_some_and(|hold| matches!(hold.op, HeldOp::Finish { confirm: true, .. }));
            let here = self.reservation(*reservation_id).is_some_and(|r| {
                r.lines
                    .iter()
                    .any(|line| line.sku == sku && line.location == location)
            });
            (confirming && here).then_some(*reservation_id)
        })
    }

    fn piece(&self, txn: TxnId, state: PieceState, hold: Option<&Hold>) -> TxnPiece {
        let (reservation_id, lines) = match hold.map(|h| &h.op) {
            Some(HeldOp::Reserve {
                reservation_id,
                lines,
                ..
            }) => (Some(*reservation_id), lines.clone()),
            Some(HeldOp::Finish { reservation_id, .. }) => (Some(*reservation_id), Vec::new()),
            None => (None, Vec::new()),
        };
        TxnPiece {
            txn,
            state,
            reservation_id,
            lines,
        }
    }

    pub(crate) fn decide_prepare(
        &self,
        txn: TxnId,
        op: &PrepareOp,
        timeout_at_ms: u64,
        actor: &Actor,
        now_ms: u64,
    ) -> Result<Decided, InventoryError> {
        if let Some(hold) = self.hold(txn) {
            // A repeated prepare: the same hold, nothing new to log.
            let piece = self.piece(txn, PieceState::Held, Some(hold));
            return Ok((Vec::new(), InventoryReply::Txn(piece)));
        }
        match self.txn_outcome(txn) {
            Some(false) => return Err(InventoryError::TxnAborted { txn }),
            Some(true) => return Err(InventoryError::TxnCommitted { txn }),
            None => {}
        }
        let op = match op {
            PrepareOp::Reserve {
                order_id,
                lines,
                expires_at_ms,
            } => {
                validate::identifier("order_id", order_id)
                    .map_err(InventoryError::InvalidArgument)?;
                validate::line_count(lines.len()).map_err(InventoryError::InvalidArgument)?;
                for request in lines {
                    validate::identifier("sku", &request.sku)
                        .map_err(InventoryError::InvalidArgument)?;
                    if let Some(location) = &request.location {
                        validate::identifier("location", location)
                            .map_err(InventoryError::InvalidArgument)?;
                    }
                    validate::positive_qty("qty", request.qty)
                        .map_err(InventoryError::InvalidArgument)?;
                }
                if self.closed_orders.contains_key(order_id.as_str()) {
                    return Err(InventoryError::OrderClosed {
                        order_id: order_id.clone(),
                    });
                }
                HeldOp::Reserve {
                    reservation_id: self.next_reservation_id,
                    order_id: order_id.clone(),
                    lines: self.allocate(lines)?,
                    expires_at_ms: *expires_at_ms,
                }
            }
            PrepareOp::Finish {
                reservation_id,
                confirm,
            } => {
                let to = if *confirm {
                    ReservationState::Confirmed
                } else {
                    ReservationState::Released
                };
                // The same checks as the one-shard confirm or release.
                self.check_finish(*reservation_id, to, now_ms)?;
                HeldOp::Finish {
                    reservation_id: *reservation_id,
                    confirm: *confirm,
                }
            }
        };
        let hold = Hold {
            op,
            prepared_at_ms: now_ms,
            timeout_at_ms,
        };
        let piece = self.piece(txn, PieceState::Held, Some(&hold));
        let event = InventoryEvent::TxnPrepared {
            txn,
            hold,
            actor: actor.clone(),
        };
        Ok((vec![event], InventoryReply::Txn(piece)))
    }

    pub(crate) fn decide_phase_two(
        &self,
        txn: TxnId,
        commit: bool,
        actor: &Actor,
    ) -> Result<Decided, InventoryError> {
        let state = if commit {
            PieceState::Committed
        } else {
            PieceState::Aborted
        };
        if let Some(hold) = self.hold(txn) {
            let piece = self.piece(txn, state, Some(hold));
            let event = if commit {
                InventoryEvent::TxnCommitted {
                    txn,
                    actor: actor.clone(),
                }
            } else {
                InventoryEvent::TxnAborted { txn }
            };
            return Ok((vec![event], InventoryReply::Txn(piece)));
        }
        match (self.txn_outcome(txn), commit) {
            // Repeated: nothing new.
            (Some(true), true) | (Some(false), false) => Ok((
                Vec::new(),
                InventoryReply::Txn(self.piece(txn, state, None)),
            )),
            (Some(false), true) => Err(InventoryError::TxnAborted { txn }),
            (Some(true), false) => Err(InventoryError::TxnCommitted { txn }),
            (None, true) => Err(InventoryError::TxnNotFound { txn }),
            // An abort before any prepare is remembered, so that a late prepare is refused.
            (None, false) => Ok((
                vec![InventoryEvent::TxnAborted { txn }],
                InventoryReply::Txn(self.piece(txn, state, None)),
            )),
        }
    }

    pub(crate) fn apply_prepared(&mut self, txn: TxnId, hold: &Hold, actor: &Actor, lsn: u64) {
        match &hold.op {
            HeldOp::Reserve {
                reservation_id,
                lines,
                ..
            } => {
                for line in lines {
                    self.item_mut(&line.sku, &line.location).reserved += line.qty;
                    let entry = crate::state::entry(
                        lsn,
                        hold.prepared_at_ms,
                        "held",
                        Some(actor),
                        Some(&line.location),
                        Some(line.qty),
                        Some(*reservation_id),
                    );
                    self.record(&line.sku, entry);
                }
                self.next_reservation_id = self.next_reservation_id.max(reservation_id + 1);
            }
            HeldOp::Finish { reservation_id, .. } => {
                self.busy.insert(*reservation_id, txn);
            }
        }
        self.holds.insert(txn, std::sync::Arc::new(hold.clone()));
    }

    pub(crate) fn apply_phase_two(
        &mut self,
        txn: TxnId,
        commit: bool,
        actor: Option<&Actor>,
        lsn: u64,
        at_ms: u64,
    ) {
        if let Some(hold) = self.holds.remove(&txn) {
            match &hold.op {
                HeldOp::Reserve {
                    reservation_id,
                    order_id,
                    lines,
                    expires_at_ms,
                } => {
                    if commit {
                        // The units are in `reserved` since the prepare.
                        for line in lines {
                            let entry = crate::state::entry(
                                lsn,
                                at_ms,
                                "reserved",
                                actor,
                                Some(&line.location),
                                Some(line.qty),
                                Some(*reservation_id),
                            );
                            self.record(&line.sku, entry);
                        }
                        self.insert_reservation(
                            *reservation_id,
                            order_id,
                            lines,
                            *expires_at_ms,
                            at_ms,
                            Some(txn),
                        );
                    } else {
                        for line in lines {
                            self.item_mut(&line.sku, &line.location).reserved -= line.qty;
                            let entry = crate::state::entry(
                                lsn,
                                at_ms,
                                "hold_released",
                                actor,
                                Some(&line.location),
                                Some(line.qty),
                                Some(*reservation_id),
                            );
                            self.record(&line.sku, entry);
                        }
                    }
                }
                HeldOp::Finish {
                    reservation_id,
                    confirm,
                } => {
                    self.busy.remove(reservation_id);
                    if commit {
                        let to = if *confirm {
                            ReservationState::Confirmed
                        } else {
                            ReservationState::Released
                        };
                        self.finish(*reservation_id, to, actor, lsn, at_ms);
                    }
                }
            }
        }
        if !self.txn_outcomes.contains_key(&txn) {
            self.txn_outcomes.insert(txn, commit);
            self.txn_outcome_queue.push_back((at_ms, txn));
        }
    }

    /// Forgets transaction outcomes past their retention (by log time, as replay does).
    pub(crate) fn prune_txn_outcomes(&mut self, now_ms: u64) {
        while let Some(&(at_ms, txn)) = self.txn_outcome_queue.front() {
            let old = at_ms.saturating_add(FINISHED_RETENTION_MS) < now_ms;
            if !old && self.txn_outcome_queue.len() <= TXN_OUTCOMES_MAX {
                break;
            }
            self.txn_outcome_queue.pop_front();
            self.txn_outcomes.remove(&txn);
        }
    }
}
