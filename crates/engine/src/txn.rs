//! The coordinator's side of a multi-shard transaction: a pure, logged table of transactions.
//!
//! Every shard can coordinate. A transaction is *begun* (logged, numbered) before any participant
//! hears of it, and *decided* once, first decision wins: a commit only after every participant
//! prepared, an abort otherwise, including by the resolver when a transaction outlives its
//! deadline or its orchestrator died in a crash (presumed abort: a participant that finds no
//! commit aborts). A decided transaction is never decided again, so an abort logged by the
//! resolver fences out a slow orchestrator's commit, and the reverse.
//!
//! Like the domains, this table never touches files, threads or the clock; the orchestrator
//! that sends the messages is in [`crate::txn_run`].

use cairn_inventory::{InventoryError, Line, LineRequest};
use cairn_types::ShardId;
use imbl::{OrdMap, Vector};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// How long a transaction may stay undecided before the resolver aborts it, in milliseconds
/// of log time. Participants' holds carry the same deadline.
pub const TXN_DECIDE_TIMEOUT_MS: u64 = 10_000;
/// How long a decided transaction stays queryable (and its reservation addressable), in log time.
pub const TXN_RETENTION_MS: u64 = cairn_inventory::FINISHED_RETENTION_MS;
/// Most decided transactions a coordinator keeps, whatever their age.
pub const TXNS_RETAINED_MAX: usize = 1_000_000;
/// Most participants of one transaction.
pub const TXN_PARTICIPANTS_MAX: usize = 64;

/// What a transaction does.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum TxnKind {
    /// Reserve lines on several shards, all or nothing.
    Reserve {
        /// The caller's order.
        order_id: String,
        /// Each participant's lines, by shard (ascending, no repeats).
        lines: Vec<(ShardId, Vec<LineRequest>)>,
        /// When the reservation expires (log time of the coordinator at begin plus the TTL).
        expires_at_ms: u64,
    },
    /// Confirm (`confirm: true`) or release a multi-shard reservation, on every shard at once.
    Finish {
        /// The transaction that made the reservation (its number on this coordinator).
        reservation: u64,
        /// Confirm, or release.
        confirm: bool,
    },
}

/// Where a transaction is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TxnState {
    /// Logged; participants may be preparing.
    Begun,
    /// Every participant prepared and the commit is logged.
    Committed,
    /// Aborted: a participant refused, a deadline passed, or a crash interrupted it.
    Aborted,
}

/// One participant's part of a reservation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PieceRef {
    /// The participant.
    pub shard: ShardId,
    /// The reservation's id on that shard.
    pub reservation_id: u64,
    /// Where its units come from.
    pub lines: Vec<Line>,
}

/// A transaction as the coordinator logs it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxnRecord {
    /// What it does.
    pub kind: TxnKind,
    /// Every participant, ascending.
    pub participants: Vec<ShardId>,
    /// Where it is.
    pub state: TxnState,
    /// When it began (coordinator log time).
    pub begun_at_ms: u64,
    /// When the resolver aborts it if it is still undecided.
    pub deadline_ms: u64,
    /// When it was decided.
    pub decided_at_ms: Option<u64>,
    /// A reservation's parts, once committed (for a finish: the reservation's parts).
    pub pieces: Vec<PieceRef>,
    /// Why it aborted, when a participant refused.
    pub refusal: Option<InventoryError>,
    /// Who asked.
    pub actor: String,
}

/// A transaction and its number on its coordinator, as replies show it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxnView {
    /// The transaction's number.
    pub number: u64,
    /// Its record.
    pub record: TxnRecord,
}

/// What callers ask a coordinator.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum TxnCommand {
    /// Log a new transaction.
    Begin {
        /// What it does.
        kind: TxnKind,
        /// How long a reservation lasts once made (for `Reserve`).
        ttl_ms: u64,
        /// Who asked.
        actor: String,
    },
    /// Log the decision, unless one is logged already (then the reply shows that one).
    Decide {
        /// The transaction's number.
        number: u64,
        /// Commit, or abort.
        commit: bool,
        /// The parts every participant prepared (for a commit of a reservation).
        pieces: Vec<PieceRef>,
        /// Why it aborts, when a participant refused.
        refusal: Option<InventoryError>,
    },
}

/// Facts in a coordinator's log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum TxnEvent {
    /// A transaction began.
    Begun {
        /// Its number.
        number: u64,
        /// Its record.
        record: TxnRecord,
    },
    /// A transaction was decided.
    Decided {
        /// Its number.
        number: u64,
        /// Commit, or abort.
        commit: bool,
        /// The reservation's parts (commit of a reservation).
        pieces: Vec<PieceRef>,
        /// Why it aborted.
        refusal: Option<InventoryError>,
    },
}

/// Why a coordinator refused.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum TxnError {
    /// Malformed (a bug of the caller: the server validates first).
    InvalidArgument(String),
    /// No such transaction (never begun here, or forgotten).
    NotFound {
        /// The number asked for.
        number: u64,
    },
    /// The reservation a finish names was never made (its transaction aborted).
    NotAReservation {
        /// The number asked for.
        number: u64,
    },
}

impl TxnError {
    /// The stable code.
    #[must_use]
    pub fn code(&self) -> &'static str {
        match self {
            TxnError::InvalidArgument(_) => "invalid_argument",
            TxnError::NotFound { .. } | TxnError::NotAReservation { .. } => "not_found",
        }
    }

    /// The HTTP status.
    #[must_use]
    pub fn http_status(&self) -> u16 {
        match self {
            TxnError::InvalidArgument(_) => 400,
            TxnError::NotFound { .. } | TxnError::NotAReservation { .. } => 404,
        }
    }

    /// A human message.
    #[must_use]
    pub fn message(&self) -> String {
        match self {
            TxnError::InvalidArgument(reason) => reason.clone(),
            TxnError::NotFound { number } | TxnError::NotAReservation { number } => {
                format!("transaction {number} not found")
            }
        }
    }
}

/// A shard's coordinator table.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Coordinator {
    txns: OrdMap<u64, Arc<TxnRecord>>,
    /// Decided transactions by decision time, for pruning.
    decided: Vector<(u64, u64)>,
    next_number: u64,
}

impl Coordinator {
    /// A transaction's record.
    #[must_use]
    pub fn get(&self, number: u64) -> Option<&TxnRecord> {
        self.txns.get(&number).map(|r| &**r)
    }

    /// Undecided transactions: (number, deadline).
    pub fn undecided(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.txns
            .iter()
            .filter(|(_, r)| r.state == TxnState::Begun)
            .map(|(number, r)| (*number, r.deadline_ms))
    }

    /// Transactions kept.
    #[must_use]
    pub fn len(&self) -> usize {
        self.txns.len()
    }

    /// Whether none are kept.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.txns.is_empty()
    }

    /// Decides a command at log time `now_ms`.
    ///
    /// # Errors
    /// The refusal.
    pub fn decide(
        &self,
        command: &TxnCommand,
        now_ms: u64,
    ) -> Result<(Vec<TxnEvent>, TxnView), TxnError> {
        match command {
            TxnCommand::Begin {
                kind,
                ttl_ms,
                actor,
            } => self.begin(kind, *ttl_ms, actor, now_ms),
            TxnCommand::Decide {
                number,
                commit,
                pieces,
                refusal,
            } => {
                let record = self
                    .get(*number)
                    .ok_or(TxnError::NotFound { number: *number })?;
                if record.state != TxnState::Begun {
                    // First decision wins; this one learns it.
                    let view = TxnView {
                        number: *number,
                        record: record.clone(),
                    };
                    return Ok((Vec::new(), view));
                }
                let mut after = record.clone();
                let pieces = if *commit && matches!(record.kind, TxnKind::Reserve { .. }) {
                    pieces.clone()
                } else {
                    // A finish keeps the reservation's parts; an abort adds none.
                    record.pieces.clone()
                };
                after.state = if *commit {
                    TxnState::Committed
                } else {
                    TxnState::Aborted
                };
                after.decided_at_ms = Some(now_ms);
                after.pieces.clone_from(&pieces);
                after.refusal.clone_from(refusal);
                let event = TxnEvent::Decided {
                    number: *number,
                    commit: *commit,
                    pieces,
                    refusal: refusal.clone(),
                };
                Ok((
                    vec![event],
                    TxnView {
                        number: *number,
                        record: after,
                    },
                ))
            }
        }
    }

    fn begin(
        &self,
        kind: &TxnKind,
        ttl_ms: u64,
        actor: &str,
        now_ms: u64,
    ) -> Result<(Vec<TxnEvent>, TxnView), TxnError> {
        let (kind, participants, pieces) = match kind {
            TxnKind::Reserve {
                order_id, lines, ..
            } => {
                let participants: Vec<ShardId> = lines.iter().map(|(shard, _)| *shard).collect();
                if participants.len() < 2 || participants.len() > TXN_PARTICIPANTS_MAX {
                    return Err(TxnError::InvalidArgument(format!(
                        "a transaction has 2..={TXN_PARTICIPANTS_MAX} participants, got {}",
                        participants.len()
                    )));
                }
                if participants.windows(2).any(|pair| pair[0] >= pair[1]) {
                    return Err(TxnError::InvalidArgument(
                        "participants must be ascending and distinct".into(),
                    ));
                }
                let kind = TxnKind::Reserve {
                    order_id: order_id.clone(),
                    lines: lines.clone(),
                    expires_at_ms: now_ms.saturating_add(ttl_ms),
                };
                (kind, participants, Vec::new())
            }
            TxnKind::Finish {
                reservation,
                confirm,
            } => {
                let made = self.get(*reservation).ok_or(TxnError::NotFound {
                    number: *reservation,
                })?;
                if !matches!(made.kind, TxnKind::Reserve { .. })
                    || made.state != TxnState::Committed
                {
                    return Err(TxnError::NotAReservation {
                        number: *reservation,
                    });
                }
                let kind = TxnKind::Finish {
                    reservation: *reservation,
                    confirm: *confirm,
                };
                (kind, made.participants.clone(), made.pieces.clone())
            }
        };
        let number = self.next_number.max(1);
        let record = TxnRecord {
            kind,
            participants,
            state: TxnState::Begun,
            begun_at_ms: now_ms,
            deadline_ms: now_ms.saturating_add(TXN_DECIDE_TIMEOUT_MS),
            decided_at_ms: None,
            pieces,
            refusal: None,
            actor: actor.to_string(),
        };
        let view = TxnView {
            number,
            record: record.clone(),
        };
        Ok((vec![TxnEvent::Begun { number, record }], view))
    }

    /// Applies one event logged at log time `at_ms`.
    pub fn apply(&mut self, event: &TxnEvent, at_ms: u64) {
        match event {
            TxnEvent::Begun { number, record } => {
                self.txns.insert(*number, Arc::new(record.clone()));
                self.next_number = self.next_number.max(number + 1);
            }
            TxnEvent::Decided {
                number,
                commit,
                pieces,
                refusal,
            } => {
                let Some(record) = self.txns.get_mut(number).map(Arc::make_mut) else {
                    return;
                };
                if record.state != TxnState::Begun {
                    return;
                }
                record.state = if *commit {
                    TxnState::Committed
                } else {
                    TxnState::Aborted
                };
                record.decided_at_ms = Some(at_ms);
                record.pieces.clone_from(pieces);
                record.refusal.clone_from(refusal);
                self.decided.push_back((at_ms, *number));
            }
        }
        self.prune(at_ms);
    }

    fn prune(&mut self, now_ms: u64) {
        while let Some(&(decided_at_ms, number)) = self.decided.front() {
            let old = decided_at_ms.saturating_add(TXN_RETENTION_MS) < now_ms;
            if !old && self.decided.len() <= TXNS_RETAINED_MAX {
                break;
            }
            self.decided.pop_front();
            self.txns.remove(&number);
        }
    }
}
