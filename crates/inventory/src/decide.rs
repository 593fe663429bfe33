//! Decisions: a command and the current state in, events or a refusal out. Nothing here changes
//! the state.
//!
//! Allocation of a line without a location (the documented strategy): take from the SKU's
//! locations in order of most reservable stock first (ties by location name), as much as each can
//! give, so an order is split across as few locations as possible. Lines are decided in order,
//! and each sees what the lines before it took.

use crate::command::{Actor, InventoryCommand, InventoryEvent, InventoryReply, Line, LineRequest};
use crate::error::{InventoryError, ShortLine};
use crate::state::{Inventory, ReservationState, reservation_view, view};
use crate::{QTY_MAX, validate};
use std::collections::BTreeMap;

/// Events and the reply of an accepted command.
pub type Decided = (Vec<InventoryEvent>, InventoryReply);

fn invalid(message: String) -> InventoryError {
    InventoryError::InvalidArgument(message)
}

impl Inventory {
    /// Decides `command` at log time `now_ms`.
    ///
    /// # Errors
    /// The refusal.
    pub fn decide(
        &self,
        command: &InventoryCommand,
        actor: &Actor,
        now_ms: u64,
    ) -> Result<Decided, InventoryError> {
        match command {
            InventoryCommand::Adjust {
                sku,
                location,
                delta,
                reason,
            } => self.adjust(sku, location, *delta, reason, actor),
            InventoryCommand::Count {
                sku,
                location,
                on_hand,
                expected_on_hand,
            } => self.count(sku, location, *on_hand, *expected_on_hand, actor),
            InventoryCommand::SetPolicy {
                sku,
                location,
                safety_stock,
                backorder_limit,
            } => self.set_policy(sku, location, *safety_stock, *backorder_limit, actor),
            InventoryCommand::Reserve {
                order_id,
                lines,
                ttl_ms,
            } => self.reserve(order_id, lines, *ttl_ms, actor, now_ms),
            InventoryCommand::Confirm { reservation_id } => {
                self.decide_finish(*reservation_id, ReservationState::Confirmed, actor, now_ms)
            }
            InventoryCommand::Release { reservation_id } => {
                self.decide_finish(*reservation_id, ReservationState::Released, actor, now_ms)
            }
            InventoryCommand::TxnPrepare {
                txn,
                op,
                timeout_at_ms,
            } => self.decide_prepare(*txn, op, *timeout_at_ms, actor, now_ms),
            InventoryCommand::TxnCommit { txn } => self.decide_phase_two(*txn, true, actor),
            InventoryCommand::TxnAbort { txn } => self.decide_phase_two(*txn, false, actor),
        }
    }

    fn adjust(
        &self,
        sku: &str,
        location: &str,
        delta: i64,
        reason: &str,
        actor: &Actor,
    ) -> Result<Decided, InventoryError> {
        validate::identifier("sku", sku).map_err(invalid)?;
        validate::identifier("location", location).map_err(invalid)?;
        validate::delta(delta).map_err(invalid)?;
        validate::reason(reason).map_err(invalid)?;
        let mut item = self.item(sku, location).copied().unwrap_or_default();
        let on_hand = item.on_hand + delta;
        if on_hand > QTY_MAX {
            return Err(InventoryError::QuantityLimit {
                message: format!("on_hand would be {on_hand}, over 2^53"),
            });
        }
        // A removal may not take the shelf below zero or below what reservations hold; an
        // addition is always accepted (it helps an oversold item catch up).
        if delta < 0 && (on_hand < 0 || on_hand < item.reserved) {
            let available = (item.on_hand - item.reserved).max(0);
            let line = ShortLine {
                sku: sku.into(),
                location: Some(location.into()),
                requested: -delta,
                available,
            };
            return Err(InventoryError::InsufficientStock { lines: vec![line] });
        }
        item.on_hand = on_hand;
        let event = InventoryEvent::Adjusted {
            sku: sku.into(),
            location: location.into(),
            delta,
            reason: reason.into(),
            actor: actor.clone(),
        };
        Ok((
            vec![event],
            InventoryReply::Item(view(sku, location, &item)),
        ))
    }

    fn count(
        &self,
        sku: &str,
        location: &str,
        on_hand: i64,
        expected: Option<i64>,
        actor: &Actor,
    ) -> Result<Decided, InventoryError> {
        validate::identifier("sku", sku).map_err(invalid)?;
        validate::identifier("location", location).map_err(invalid)?;
        validate::level("on_hand", on_hand).map_err(invalid)?;
        if let Some(expected) = expected {
            validate::level("expected_on_hand", expected).map_err(invalid)?;
        }
        if let Some(reservation_id) = self.confirming_at(sku, location) {
            return Err(InventoryError::ReservationBusy { reservation_id });
        }
        let mut item = self.item(sku, location).copied().unwrap_or_default();
        if let Some(expected_on_hand) = expected.filter(|&e| e != item.on_hand) {
            return Err(InventoryError::CountConflict {
                expected_on_hand,
                on_hand: item.on_hand,
            });
        }
        let previous_on_hand = item.on_hand;
        item.on_hand = on_hand;
        let event = InventoryEvent::Counted {
            sku: sku.into(),
            location: location.into(),
            on_hand,
            previous_on_hand,
            actor: actor.clone(),
        };
        Ok((
            vec![event],
            InventoryReply::Item(view(sku, location, &item)),
        ))
    }

    fn set_policy(
        &self,
        sku: &str,
        location: &str,
        safety_stock: Option<i64>,
        backorder_limit: Option<i64>,
        actor: &Actor,
    ) -> Result<Decided, InventoryError> {
        validate::identifier("sku", sku).map_err(invalid)?;
        validate::identifier("location", location).map_err(invalid)?;
        let mut item = self.item(sku, location).copied().unwrap_or_default();
        if let Some(safety_stock) = safety_stock {
            validate::level("safety_stock", safety_stock).map_err(invalid)?;
            item.safety_stock = safety_stock;
        }
        if let Some(backorder_limit) = backorder_limit {
            validate::level("backorder_limit", backorder_limit).map_err(invalid)?;
            item.backorder_limit = backorder_limit;
        }
        let event = InventoryEvent::PolicySet {
            sku: sku.into(),
            location: location.into(),
            safety_stock: item.safety_stock,
            backorder_limit: item.backorder_limit,
            actor: actor.clone(),
        };
        Ok((
            vec![event],
            InventoryReply::Item(view(sku, location, &item)),
        ))
    }

    fn reserve(
        &self,
        order_id: &str,
        requests: &[LineRequest],
        ttl_ms: u64,
        actor: &Actor,
        now_ms: u64,
    ) -> Result<Decided, InventoryError> {
        validate::identifier("order_id", order_id).map_err(invalid)?;
        validate::line_count(requests.len()).map_err(invalid)?;
        validate::ttl_ms(ttl_ms).map_err(invalid)?;
        for request in requests {
            validate::identifier("sku", &request.sku).map_err(invalid)?;
            if let Some(location) = &request.location {
                validate::identifier("location", location).map_err(invalid)?;
            }
            validate::positive_qty("qty", request.qty).map_err(invalid)?;
        }
        if self.closed_orders.contains_key(order_id) {
            return Err(InventoryError::OrderClosed {
                order_id: order_id.into(),
            });
        }
        let lines = self.allocate(requests)?;
        let reservation_id = self.next_reservation_id;
        let expires_at_ms = now_ms.saturating_add(ttl_ms);
        let event = InventoryEvent::Reserved {
            reservation_id,
            order_id: order_id.into(),
            lines: lines.clone(),
            expires_at_ms,
            actor: actor.clone(),
        };
        let reply = crate::state::ReservationView {
            reservation_id,
            order_id: order_id.into(),
            state: ReservationState::Active,
            expires_at_ms,
            lines,
        };
        Ok((vec![event], InventoryReply::Reservation(reply)))
    }

    /// Decides where every unit of every line comes from, or lists the short lines.
    pub(crate) fn allocate(&self, requests: &[LineRequest]) -> Result<Vec<Line>, InventoryError> {
        let mut taken: BTreeMap<(&str, &str), i64> = BTreeMap::new();
        let mut lines: Vec<Line> = Vec::new();
        let mut short = Vec::new();
        for request in requests {
            let sku = request.sku.as_str();
            let reservable = |location: &str, taken: &BTreeMap<(&str, &str), i64>| {
                let item = self.item(sku, location).copied().unwrap_or_default();
                item.reservable() - taken.get(&(sku, location)).copied().unwrap_or(0)
            };
            match &request.location {
                Some(location) => {
                    let can = reservable(location, &taken);
                    if can < request.qty {
                        short.push(ShortLine {
                            sku: sku.into(),
                            location: Some(location.clone()),
                            requested: request.qty,
                            available: can.max(0),
                        });
                        continue;
                    }
                    *taken.entry((sku, location.as_str())).or_default() += request.qty;
                    push_line(&mut lines, sku, location, request.qty);
                }
                None => {
                    let mut candidates: Vec<(&str, i64)> = self
                        .items
                        .get(sku)
                        .map(|locations| {
                            locations
                                .keys()
                                .map(|l| (l.as_str(), reservable(l, &taken)))
                                .collect()
                        })
                        .unwrap_or_default();
                    // Saturating: thousands of locations at 2^53 must not overflow the sum.
                    let total: i64 = candidates
                        .iter()
                        .fold(0i64, |sum, (_, can)| sum.saturating_add((*can).max(0)))
                        .min(crate::QTY_MAX);
                    if total < request.qty {
                        short.push(ShortLine {
                            sku: sku.into(),
                            location: None,
                            requested: request.qty,
                            available: total,
                        });
                        continue;
                    }
                    candidates.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
                    let mut left = request.qty;
                    for (location, can) in candidates {
                        if left == 0 || can <= 0 {
                            break;
                        }
                        let take = can.min(left);
                        left -= take;
                        let location = self.location_key(sku, location);
                        *taken.entry((sku, location)).or_default() += take;
                        push_line(&mut lines, sku, location, take);
                    }
                    debug_assert_eq!(left, 0, "the total covered the request");
                }
            }
        }
        if short.is_empty() {
            Ok(lines)
        } else {
            Err(InventoryError::InsufficientStock { lines: short })
        }
    }

    /// The stored location name, borrowed from the state (so it outlives the candidate list).
    fn location_key<'a>(&'a self, sku: &str, location: &str) -> &'a str {
        self.items
            .get(sku)
            .and_then(|locations| locations.get_key_value(location))
            .map_or("", |(key, _)| key.as_str())
    }

    /// The checks of a confirm or release, shared with a transaction's prepare.
    pub(crate) fn check_finish(
        &self,
        reservation_id: u64,
        to: ReservationState,
        now_ms: u64,
    ) -> Result<&crate::state::Reservation, InventoryError> {
        let Some(reservation) = self.reservation(reservation_id) else {
            return Err(InventoryError::ReservationNotFound { reservation_id });
        };
        if reservation.state == ReservationState::Active && reservation.expires_at_ms <= now_ms {
            // Past its time, its expiry event is on the way (timers drain in bounded steps).
            return Err(InventoryError::ReservationNotActive {
                reservation_id,
                state: ReservationState::Expired,
            });
        }
        if reservation.state != ReservationState::Active {
            return Err(InventoryError::ReservationNotActive {
                reservation_id,
                state: reservation.state,
            });
        }
        if self.busy.contains_key(&reservation_id) {
            return Err(InventoryError::ReservationBusy { reservation_id });
        }
        if to == ReservationState::Confirmed {
            // Goods that are not on the shelf cannot ship (a backordered or oversold line waits
            // for stock); the reservation stays active.
            let short: Vec<ShortLine> = reservation
                .lines
                .iter()
                .filter_map(|line| {
                    let on_hand = self
                        .item(&line.sku, &line.location)
                        .map_or(0, |item| item.on_hand);
                    (on_hand < line.qty).then(|| ShortLine {
                        sku: line.sku.clone(),
                        location: Some(line.location.clone()),
                        requested: line.qty,
                        available: on_hand.max(0),
                    })
                })
                .collect();
            if !short.is_empty() {
                return Err(InventoryError::InsufficientStock { lines: short });
            }
        }
        Ok(reservation)
    }

    pub(crate) fn decide_finish(
        &self,
        reservation_id: u64,
        to: ReservationState,
        actor: &Actor,
        now_ms: u64,
    ) -> Result<Decided, InventoryError> {
        let reservation = self.check_finish(reservation_id, to, now_ms)?;
        if let Some(txn) = reservation.txn {
            // One part of a multi-shard reservation ends only with the others.
            return Err(InventoryError::PartOfTransaction {
                reservation_id,
                txn,
            });
        }
        let event = match to {
            ReservationState::Confirmed => InventoryEvent::Confirmed {
                reservation_id,
                actor: actor.clone(),
            },
            _ => InventoryEvent::Released {
                reservation_id,
                actor: actor.clone(),
            },
        };
        let mut after = reservation.clone();
        after.state = to;
        Ok((
            vec![event],
            InventoryReply::Reservation(reservation_view(reservation_id, &after)),
        ))
    }
}

/// Adds units to the line for (sku, location), merging repeated lines.
fn push_line(lines: &mut Vec<Line>, sku: &str, location: &str, qty: i64) {
    match lines
        .iter_mut()
        .find(|line| line.sku == sku && line.location == location)
    {
        Some(line) => line.qty += qty,
        None => lines.push(Line {
            sku: sku.into(),
            location: location.into(),
            qty,
        }),
    }
}
