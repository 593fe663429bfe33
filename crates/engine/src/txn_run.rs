//! Running multi-shard transactions: the orchestrator, the resolver and the fault points.
//!
//! ```text
//!  client ── begin ──▶ coordinator C (logged: number, participants, deadline)
//!         ── prepare ─▶ every participant P (logged: hold)             in parallel
//!         ── decide ──▶ C (logged: commit iff every P prepared)         first decision wins
//!  reply  ◀─────────── once the decision is durable and phase two is logged on every P
//!         ── commit/abort ─▶ every P (logged: hold made final or dropped)
//! ```
//!
//! Only the messages are here; every decision is a logged state-machine step ([`crate::txn`] on
//! the coordinator, `cairn_inventory`'s `Txn*` commands on participants), so a crash between any
//! two steps leaves a state the [resolver](Engine::resolve_txns) finishes: a transaction still
//! undecided past its deadline, or begun before this process opened the data directory (its
//! orchestrator is gone), is aborted at its coordinator *first*, so no late commit can follow;
//! a participant's hold then gets the coordinator's decision (commit only if one is logged:
//! presumed abort). Every step is idempotent, so the resolver and an orchestrator racing on the
//! same transaction agree. A client's retry with the same `request_id` finds the transaction
//! through the coordinator's request table and drives it to the same outcome.
//!
//! Fault points (`txn.before_begin`, `txn.after_begin`, `txn.before_prepare`,
//! `txn.after_prepare`, `txn.before_decide`, `txn.after_decide`, `txn.before_phase_two`,
//! `txn.after_phase_two`) stop the orchestrator where tests ask: in-process through
//! [`Engine::set_fault_hook`], or by aborting the whole process when the environment variable
//! `CAIRN_FAULT` names the point (`point` or `point:N` for its N-th hit), for crash tests that
//! kill a real server.

use crate::cairn::{Cairn, CairnCommand, CairnError, CairnReply};
use crate::dedup::RequestKey;
use crate::engine::Engine;
use crate::error::EngineError;
use crate::shard::{Committed, Outcome};
use crate::txn::{PieceRef, TxnCommand, TxnKind, TxnRecord, TxnState};
use cairn_inventory::{
    Actor, InventoryCommand, InventoryError, InventoryReply, LineRequest, PrepareOp, ShortLine,
};
use cairn_types::{Lsn, ShardId, TxnId};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

/// A hook asked at every fault point; `true` stops the orchestrator there.
pub type FaultHook = Arc<dyn Fn(&str) -> bool + Send + Sync>;

/// How long after its prepare a hold may wait for phase two before the resolver looks at its
/// coordinator (an orchestrator normally sends phase two within milliseconds).
pub const HOLD_GRACE_MS: u64 = 1_000;

/// A decided transaction, as the orchestrator reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TxnOutcome {
    /// The transaction.
    pub txn: TxnId,
    /// Its record at the coordinator (committed).
    pub record: TxnRecord,
    /// The coordinator's record of the decision (or of the begin, for a repeat).
    pub lsn: Lsn,
    /// True when this answers a retry of an earlier request.
    pub repeated: bool,
}

/// What one pass of the resolver did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ResolveReport {
    /// Undecided transactions it aborted at their coordinator.
    pub aborted: u64,
    /// Holds it committed.
    pub holds_committed: u64,
    /// Holds it aborted.
    pub holds_aborted: u64,
}

/// The environment's fault point, read once: (`point`, hit number).
fn env_fault() -> Option<&'static (String, u64)> {
    static FAULT: OnceLock<Option<(String, u64)>> = OnceLock::new();
    FAULT
        .get_or_init(|| {
            let value = std::env::var("CAIRN_FAULT").ok()?;
            let value = value.trim();
            if value.is_empty() {
                return None;
            }
            match value.rsplit_once(':') {
                Some((point, n)) => n.parse().ok().map(|n| (point.to_string(), n)),
                None => Some((value.to_string(), 1)),
            }
        })
        .as_ref()
}

static ENV_FAULT_HITS: AtomicU64 = AtomicU64::new(0);

impl Engine<Cairn> {
    /// Installs (or removes) the hook asked at every fault point.
    pub fn set_fault_hook(&self, hook: Option<FaultHook>) {
        let mut slot = self
            .fault_hook
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *slot = hook;
    }

    fn fault(&self, point: &str) -> Result<(), EngineError<CairnError>> {
        if let Some((name, n)) = env_fault()
            && name == point
            && ENV_FAULT_HITS.fetch_add(1, Ordering::Relaxed) + 1 == *n
        {
            eprintln!("cairn: CAIRN_FAULT {point}: aborting the process");
            std::process::abort();
        }
        let hook = self
            .fault_hook
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        if hook.is_some_and(|hook| hook(point)) {
            return Err(EngineError::Unavailable(format!(
                "fault injected at {point}"
            )));
        }
        Ok(())
    }

    /// Submits a command to a shard and waits for its durable outcome.
    ///
    /// # Errors
    /// As the shard answers; `Unavailable` for an unknown shard.
    pub async fn submit_to(
        &self,
        shard: ShardId,
        command: CairnCommand,
        request: Option<RequestKey>,
    ) -> Outcome<Cairn> {
        let Some(target) = self.shard(shard) else {
            return Err(EngineError::Unavailable(format!("no shard {shard}")));
        };
        let (sender, receiver) = tokio::sync::oneshot::channel();
        target.submit(
            command,
            request,
            Box::new(move |outcome| drop(sender.send(outcome))),
        );
        receiver
            .await
            .unwrap_or_else(|_| Err(EngineError::Unavailable("shard stopped".into())))
    }

    /// Runs a read on a shard's state and waits for it (answered once that state is durable).
    ///
    /// # Errors
    /// As the shard answers; `Unavailable` for an unknown shard.
    pub async fn read_from<T: Send + 'static>(
        &self,
        shard: ShardId,
        read: impl FnOnce(&Cairn, Lsn) -> T + Send + 'static,
    ) -> Result<T, EngineError<CairnError>> {
        let Some(target) = self.shard(shard) else {
            return Err(EngineError::Unavailable(format!("no shard {shard}")));
        };
        let (sender, receiver) = tokio::sync::oneshot::channel();
        target.read(read, move |result| drop(sender.send(result)));
        receiver
            .await
            .unwrap_or_else(|_| Err(EngineError::Unavailable("shard stopped".into())))
    }

    /// Reserves lines on several shards, all or nothing, coordinated by `coordinator`.
    ///
    /// # Errors
    /// A participant's refusal (short lines of every shard merged), the coordinator's, a reused
    /// `request_id`, or `Unavailable` when the transaction could not finish (it is then aborted,
    /// now or by the resolver).
    pub async fn reserve_across(
        &self,
        coordinator: ShardId,
        request: RequestKey,
        actor: &str,
        order_id: &str,
        lines: Vec<(ShardId, Vec<LineRequest>)>,
        ttl_ms: u64,
    ) -> Result<TxnOutcome, EngineError<CairnError>> {
        let begin = TxnCommand::Begin {
            kind: TxnKind::Reserve {
                order_id: order_id.to_string(),
                lines,
                expires_at_ms: 0,
            },
            ttl_ms,
            actor: actor.to_string(),
        };
        self.run_txn(coordinator, request, actor, begin).await
    }

    /// Confirms or releases a multi-shard reservation on every shard at once.
    ///
    /// # Errors
    /// As [`Engine::reserve_across`]; `NotFound` for an unknown reservation.
    pub async fn finish_across(
        &self,
        reservation: TxnId,
        request: RequestKey,
        actor: &str,
        confirm: bool,
    ) -> Result<TxnOutcome, EngineError<CairnError>> {
        let begin = TxnCommand::Begin {
            kind: TxnKind::Finish {
                reservation: reservation.number,
                confirm,
            },
            ttl_ms: 0,
            actor: actor.to_string(),
        };
        self.run_txn(reservation.coordinator, request, actor, begin)
            .await
    }

    async fn run_txn(
        &self,
        coordinator: ShardId,
        request: RequestKey,
        actor: &str,
        begin: TxnCommand,
    ) -> Result<TxnOutcome, EngineError<CairnError>> {
        self.fault("txn.before_begin")?;
        let actor = Actor {
            name: actor.to_string(),
            request_id: Some(request.id.clone()),
        };
        let begun = self
            .submit_to(coordinator, CairnCommand::Txn(begin), Some(request))
            .await?;
        let CairnReply::Txn(view) = begun.reply else {
            return Err(EngineError::Unavailable(
                "the coordinator answered a begin with another reply".into(),
            ));
        };
        let txn = TxnId {
            coordinator,
            number: view.number,
        };
        self.fault("txn.after_begin")?;
        let mut record = view.record;
        let mut lsn = begun.lsn;
        if begun.repeated {
            // A retry: the transaction may have moved on since its begin.
            let number = txn.number;
            match self
                .read_from(coordinator, move |state: &Cairn, lsn| {
                    state.txns.get(number).cloned().map(|r| (r, lsn))
                })
                .await?
            {
                Some((now, at)) => {
                    record = now;
                    lsn = at;
                }
                None => return Err(EngineError::Refused(not_found(txn))),
            }
        }
        let mut failure = None;
        if record.state == TxnState::Begun {
            let (decided, decided_lsn, prepare_failure) =
                self.prepare_and_decide(txn, &record, &actor).await?;
            record = decided;
            lsn = decided_lsn;
            failure = prepare_failure;
        }
        self.phase_two(txn, &record, &actor).await?;
        match record.state {
            TxnState::Committed => Ok(TxnOutcome {
                txn,
                record,
                lsn,
                repeated: begun.repeated,
            }),
            TxnState::Aborted => Err(match (record.refusal, failure) {
                (Some(refusal), _) => EngineError::Refused(CairnError::Inventory(refusal)),
                (None, Some(failure)) => failure,
                (None, None) => EngineError::Unavailable(format!(
                    "transaction {txn} was aborted before every shard prepared (deadline or restart); retry"
                )),
            }),
            TxnState::Begun => Err(EngineError::Unavailable(format!(
                "transaction {txn} is still undecided"
            ))),
        }
    }

    /// Phase one and the decision: returns the decided record, its LSN, and the engine error
    /// that made it abort (if one did).
    async fn prepare_and_decide(
        &self,
        txn: TxnId,
        record: &TxnRecord,
        actor: &Actor,
    ) -> Result<(TxnRecord, Lsn, Option<EngineError<CairnError>>), EngineError<CairnError>> {
        self.fault("txn.before_prepare")?;
        let mut waiting = Vec::with_capacity(record.participants.len());
        for &shard in &record.participants {
            let op = prepare_op(record, shard)?;
            let command = CairnCommand::Inventory {
                actor: actor.clone(),
                command: InventoryCommand::TxnPrepare {
                    txn,
                    op,
                    timeout_at_ms: record.deadline_ms,
                },
            };
            waiting.push((shard, self.submit_to(shard, command, None)));
        }
        let mut pieces = Vec::with_capacity(waiting.len());
        let mut short: Vec<ShortLine> = Vec::new();
        let mut refusal: Option<InventoryError> = None;
        let mut failure: Option<EngineError<CairnError>> = None;
        for (shard, outcome) in waiting {
            match outcome.await {
                Ok(Committed {
                    reply: CairnReply::Inventory(InventoryReply::Txn(piece)),
                    ..
                }) => pieces.push(PieceRef {
                    shard,
                    reservation_id: piece.reservation_id.unwrap_or(0),
                    lines: piece.lines,
                }),
                Ok(_) => {
                    failure.get_or_insert(EngineError::Unavailable(
                        "a participant answered a prepare with another reply".into(),
                    ));
                }
                Err(EngineError::Refused(CairnError::Inventory(
                    InventoryError::InsufficientStock { lines },
                ))) => short.extend(lines),
                Err(EngineError::Refused(CairnError::Inventory(error))) => {
                    refusal.get_or_insert(error);
                }
                Err(error) => {
                    failure.get_or_insert(error);
                }
            }
        }
        if !short.is_empty() && refusal.is_none() {
            refusal = Some(InventoryError::InsufficientStock { lines: short });
        }
        self.fault("txn.after_prepare")?;
        let commit = refusal.is_none() && failure.is_none();
        self.fault("txn.before_decide")?;
        let decided = self
            .submit_to(
                txn.coordinator,
                CairnCommand::Txn(TxnCommand::Decide {
                    number: txn.number,
                    commit,
                    pieces: if commit { pieces } else { Vec::new() },
                    refusal,
                }),
                None,
            )
            .await?;
        let CairnReply::Txn(view) = decided.reply else {
            return Err(EngineError::Unavailable(
                "the coordinator answered a decision with another reply".into(),
            ));
        };
        self.fault("txn.after_decide")?;
        Ok((view.record, decided.lsn, failure))
    }

    /// Phase two: every participant learns the decision (idempotent).
    async fn phase_two(
        &self,
        txn: TxnId,
        record: &TxnRecord,
        actor: &Actor,
    ) -> Result<(), EngineError<CairnError>> {
        let commit = match record.state {
            TxnState::Committed => true,
            TxnState::Aborted => false,
            TxnState::Begun => return Ok(()),
        };
        let mut waiting = Vec::with_capacity(record.participants.len());
        for &shard in &record.participants {
            self.fault("txn.before_phase_two")?;
            waiting.push(self.submit_to(shard, phase_two_command(txn, commit, actor), None));
        }
        for outcome in waiting {
            match outcome.await {
                // Already told (by a retry or the resolver): nothing to do.
                Ok(_)
                | Err(EngineError::Refused(CairnError::Inventory(
                    InventoryError::TxnCommitted { .. }
                    | InventoryError::TxnAborted { .. }
                    | InventoryError::TxnNotFound { .. },
                ))) => {}
                // The decision is durable: the resolver finishes what could not be sent now.
                Err(error) => {
                    tracing::warn!(%txn, ?error, "phase two not delivered; the resolver will finish it");
                }
            }
        }
        self.fault("txn.after_phase_two")?;
        Ok(())
    }

    /// One pass of the resolver: aborts undecided transactions whose deadline passed or whose
    /// orchestrator died with an earlier process, then gives every hold that waits past its
    /// grace its coordinator's decision (presumed abort). Safe to run at any time, also
    /// concurrently with orchestrators.
    ///
    /// # Errors
    /// A shard could not be read or written (the next pass retries).
    pub async fn resolve_txns(&self) -> Result<ResolveReport, EngineError<CairnError>> {
        let mut report = ResolveReport::default();
        let now_ms = self.clock().now_ms();
        let opened_at_ms = self.opened_at_ms();
        let mut decided: BTreeMap<TxnId, TxnState> = BTreeMap::new();
        for shard in self.shards() {
            let coordinator = shard.id();
            let orphans = self
                .read_from(coordinator, move |state: &Cairn, _| {
                    state
                        .txns
                        .undecided()
                        .filter(|&(number, deadline_ms)| {
                            deadline_ms <= now_ms
                                || state
                                    .txns
                                    .get(number)
                                    .is_some_and(|r| r.begun_at_ms < opened_at_ms)
                        })
                        .map(|(number, _)| number)
                        .collect::<Vec<u64>>()
                })
                .await?;
            for number in orphans {
                let outcome = self
                    .submit_to(
                        coordinator,
                        CairnCommand::Txn(TxnCommand::Decide {
                            number,
                            commit: false,
                            pieces: Vec::new(),
                            refusal: None,
                        }),
                        None,
                    )
                    .await?;
                if let CairnReply::Txn(view) = outcome.reply {
                    if view.record.state == TxnState::Aborted {
                        report.aborted += 1;
                    }
                    decided.insert(
                        TxnId {
                            coordinator,
                            number,
                        },
                        view.record.state,
                    );
                }
            }
        }
        let resolver = Actor {
            name: "cairn-resolver".into(),
            request_id: None,
        };
        for shard in self.shards() {
            let participant = shard.id();
            let waiting = self
                .read_from(participant, move |state: &Cairn, _| {
                    state
                        .inventory
                        .holds()
                        .filter(|(_, hold)| {
                            hold.timeout_at_ms <= now_ms
                                || hold.prepared_at_ms < opened_at_ms
                                || hold.prepared_at_ms.saturating_add(HOLD_GRACE_MS) <= now_ms
                        })
                        .map(|(txn, _)| txn)
                        .collect::<Vec<TxnId>>()
                })
                .await?;
            for txn in waiting {
                let state = match decided.get(&txn) {
                    Some(state) => *state,
                    None => {
                        let number = txn.number;
                        let state = self
                            .read_from(txn.coordinator, move |state: &Cairn, _| {
                                state.txns.get(number).map(|r| r.state)
                            })
                            .await?
                            // Forgotten or never logged: presumed abort.
                            .unwrap_or(TxnState::Aborted);
                        decided.insert(txn, state);
                        state
                    }
                };
                let commit = match state {
                    TxnState::Committed => true,
                    TxnState::Aborted => false,
                    // Its orchestrator is still within its deadline.
                    TxnState::Begun => continue,
                };
                match self
                    .submit_to(participant, phase_two_command(txn, commit, &resolver), None)
                    .await
                {
                    Ok(_) if commit => report.holds_committed += 1,
                    Ok(_) => report.holds_aborted += 1,
                    Err(EngineError::Refused(_)) => {}
                    Err(error) => return Err(error),
                }
            }
        }
        Ok(report)
    }
}

fn phase_two_command(txn: TxnId, commit: bool, actor: &Actor) -> CairnCommand {
    CairnCommand::Inventory {
        actor: actor.clone(),
        command: if commit {
            InventoryCommand::TxnCommit { txn }
        } else {
            InventoryCommand::TxnAbort { txn }
        },
    }
}

fn prepare_op(record: &TxnRecord, shard: ShardId) -> Result<PrepareOp, EngineError<CairnError>> {
    match &record.kind {
        TxnKind::Reserve {
            order_id,
            lines,
            expires_at_ms,
        } => {
            let lines = lines
                .iter()
                .find(|(s, _)| *s == shard)
                .map(|(_, lines)| lines.clone())
                .unwrap_or_default();
            Ok(PrepareOp::Reserve {
                order_id: order_id.clone(),
                lines,
                expires_at_ms: *expires_at_ms,
            })
        }
        TxnKind::Finish { confirm, .. } => {
            let piece = record
                .pieces
                .iter()
                .find(|piece| piece.shard == shard)
                .ok_or_else(|| {
                    EngineError::Unavailable(format!(
                        "the reservation has no part on shard {shard}"
                    ))
                })?;
            Ok(PrepareOp::Finish {
                reservation_id: piece.reservation_id,
                confirm: *confirm,
            })
        }
    }
}

fn not_found(txn: TxnId) -> CairnError {
    CairnError::Txn(crate::txn::TxnError::NotFound { number: txn.number })
}
