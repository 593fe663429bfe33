//! Multi-shard reservations (two-phase commit) through the engine: outcomes, retries, a fault
//! at every step of the protocol followed by a restart (or not), hold timeouts, many random
//! transactions with random faults, and one hot SKU under concurrent multi-shard orders.
//!
//! After every scenario the same checks run: no hold is left once the resolver has run, every
//! committed transaction's parts are active on every shard and no aborted one left any,
//! `reserved` of every item equals what its active reservations hold (stock is conserved), and
//! the shards reopen to the same state hashes (replay gives the same state).

use cairn_engine::cairn::{Cairn, CairnCommand, CairnError};
use cairn_engine::txn::TxnState;
use cairn_engine::txn_run::FaultHook;
use cairn_engine::{Engine, EngineConfig, EngineError, ManualClock, RequestKey, ShardConfig};
use cairn_inventory::{Actor, InventoryCommand, InventoryError, LineRequest, ReservationState};
use cairn_types::{ShardId, TxnId, shard_for_key};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

const SHARDS: u16 = 3;
const START_MS: u64 = 1_700_000_000_000;
const TTL_MS: u64 = 600_000;

/// Every fault point of the orchestrator, in protocol order.
const POINTS: [&str; 8] = [
    "txn.before_begin",
    "txn.after_begin",
    "txn.before_prepare",
    "txn.after_prepare",
    "txn.before_decide",
    "txn.after_decide",
    "txn.before_phase_two",
    "txn.after_phase_two",
];

fn open(dir: &Path, clock: &ManualClock) -> Engine<Cairn> {
    let config = EngineConfig {
        data_dir: dir.to_path_buf(),
        shard_count: Some(SHARDS),
        shard: ShardConfig {
            clock: Arc::new(clock.clone()),
            ..ShardConfig::default()
        },
    };
    let (engine, _) = Engine::<Cairn>::open(config).expect("the engine opens");
    engine
}

/// `count` SKU names that live on `shard`.
fn skus_on(shard: u16, count: usize) -> Vec<String> {
    (0..)
        .map(|n| format!("sku-{n}"))
        .filter(|sku| shard_for_key(sku.as_bytes(), SHARDS) == ShardId(shard))
        .take(count)
        .collect()
}

fn actor() -> Actor {
    Actor {
        name: "test".into(),
        request_id: None,
    }
}

async fn stock(engine: &Engine<Cairn>, sku: &str, qty: i64) {
    let shard = shard_for_key(sku.as_bytes(), SHARDS);
    let command = CairnCommand::Inventory {
        actor: actor(),
        command: InventoryCommand::Adjust {
            sku: sku.into(),
            location: "dc".into(),
            delta: qty,
            reason: "stock".into(),
        },
    };
    engine
        .submit_to(shard, command, None)
        .await
        .expect("stocking is accepted");
}

fn line(sku: &str, qty: i64) -> LineRequest {
    LineRequest {
        sku: sku.into(),
        location: Some("dc".into()),
        qty,
    }
}

fn by_shard(lines: Vec<LineRequest>) -> Vec<(ShardId, Vec<LineRequest>)> {
    let mut grouped: BTreeMap<ShardId, Vec<LineRequest>> = BTreeMap::new();
    for line in lines {
        grouped
            .entry(shard_for_key(line.sku.as_bytes(), SHARDS))
            .or_default()
            .push(line);
    }
    grouped.into_iter().collect()
}

async fn reserve(
    engine: &Engine<Cairn>,
    request_id: &str,
    order_id: &str,
    lines: Vec<LineRequest>,
) -> Result<cairn_engine::txn_run::TxnOutcome, EngineError<CairnError>> {
    let coordinator = shard_for_key(order_id.as_bytes(), SHARDS);
    let key = RequestKey::new(request_id, format!("{order_id}:{lines:?}").as_bytes());
    engine
        .reserve_across(coordinator, key, "test", order_id, by_shard(lines), TTL_MS)
        .await
}

/// A hook that fails at `point` on its `nth` hit.
fn fail_at(point: &'static str, nth: u64) -> FaultHook {
    let hits = Arc::new(AtomicU64::new(0));
    Arc::new(move |at: &str| at == point && hits.fetch_add(1, Ordering::SeqCst) + 1 == nth)
}

/// What the checks found.
#[derive(Debug, Default)]
struct Census {
    committed: Vec<TxnId>,
    aborted: Vec<TxnId>,
}

/// Checks every invariant; returns the transactions by outcome.
async fn check(engine: &Engine<Cairn>) -> Census {
    let mut census = Census::default();
    let mut parts: BTreeMap<(ShardId, u64), TxnId> = BTreeMap::new();
    for shard in engine.shards() {
        let coordinator = shard.id();
        let txns = engine
            .read_from(coordinator, |state: &Cairn, _| {
                (1..=state.txns.len() as u64 + 1)
                    .filter_map(|n| state.txns.get(n).map(|r| (n, r.clone())))
                    .collect::<Vec<_>>()
            })
            .await
            .expect("read");
        for (number, record) in txns {
            let txn = TxnId {
                coordinator,
                number,
            };
            match record.state {
                TxnState::Committed => {
                    census.committed.push(txn);
                    assert_eq!(
                        record.pieces.len(),
                        record.participants.len(),
                        "a committed reservation has a part on every participant"
                    );
                    for piece in &record.pieces {
                        parts.insert((piece.shard, piece.reservation_id), txn);
                    }
                }
                TxnState::Aborted => census.aborted.push(txn),
                TxnState::Begun => panic!("{txn} is still undecided after the resolver ran"),
            }
        }
    }
    for shard in engine.shards() {
        let id = shard.id();
        let (holds, reservations, items) = engine
            .read_from(id, |state: &Cairn, _| {
                let holds = state.inventory.holds().count();
                let reservations: Vec<(u64, Option<TxnId>, ReservationState, Vec<_>)> = state
                    .inventory
                    .active_reservations()
                    .map(|(rid, r)| (rid, r.txn, r.state, r.lines.clone()))
                    .collect();
                let items: Vec<(String, String, i64)> = state
                    .inventory
                    .items()
                    .map(|(sku, location, item)| (sku.into(), location.into(), item.reserved))
                    .collect();
                (holds, reservations, items)
            })
            .await
            .expect("read");
        assert_eq!(
            holds, 0,
            "shard {id} still holds stock for an undecided transaction"
        );
        let mut held: BTreeMap<(String, String), i64> = BTreeMap::new();
        for (rid, txn, _, lines) in &reservations {
            if let Some(txn) = txn {
                assert_eq!(
                    parts.get(&(id, *rid)),
                    Some(txn),
                    "an active part on shard {id} belongs to a committed transaction"
                );
            }
            for line in lines {
                *held
                    .entry((line.sku.clone(), line.location.clone()))
                    .or_default() += line.qty;
            }
        }
        for (sku, location, reserved) in items {
            assert_eq!(
                reserved,
                held.get(&(sku.clone(), location.clone()))
                    .copied()
                    .unwrap_or(0),
                "reserved of {sku}@{location} on shard {id} is what its reservations hold"
            );
        }
    }
    // Every committed part is active (nothing expires within these tests).
    for ((shard, rid), txn) in &parts {
        let rid = *rid;
        let state = engine
            .read_from(*shard, move |state: &Cairn, _| {
                state.inventory.reservation(rid).map(|r| (r.state, r.txn))
            })
            .await
            .expect("read");
        assert_eq!(
            state,
            Some((ReservationState::Active, Some(*txn))),
            "part {shard}-{rid} of {txn} is active"
        );
    }
    census
}

fn hashes(engine: &Engine<Cairn>) -> Vec<[u8; 32]> {
    engine
        .shards()
        .iter()
        .map(|s| s.state_hash().expect("hash").1)
        .collect()
}

/// Shuts down, reopens, and checks that replay gives the same states.
fn restart(engine: Engine<Cairn>, dir: &Path, clock: &ManualClock) -> Engine<Cairn> {
    let before = hashes(&engine);
    engine.shutdown();
    clock.advance_ms(1);
    let engine = open(dir, clock);
    assert_eq!(hashes(&engine), before, "replay gives the same state");
    engine
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reservation_across_shards_takes_every_line_or_none() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = ManualClock::new(START_MS);
    let engine = open(dir.path(), &clock);
    let a = skus_on(0, 2);
    let b = skus_on(1, 2);
    for sku in a.iter().chain(&b) {
        stock(&engine, sku, 10).await;
    }
    let done = reserve(
        &engine,
        "r1",
        "o1",
        vec![line(&a[0], 3), line(&b[0], 4), line(&a[1], 1)],
    )
    .await
    .expect("the reservation commits");
    assert_eq!(done.record.state, TxnState::Committed);
    assert_eq!(done.record.participants, vec![ShardId(0), ShardId(1)]);
    // One shard short: nothing is taken anywhere, and the refusal names the short line.
    let short = reserve(&engine, "r2", "o2", vec![line(&a[0], 7), line(&b[1], 11)])
        .await
        .expect_err("b[1] has 10");
    match short {
        EngineError::Refused(CairnError::Inventory(InventoryError::InsufficientStock {
            lines,
        })) => {
            assert_eq!(lines.len(), 1);
            assert_eq!(lines[0].sku, b[1]);
            assert_eq!(lines[0].available, 10);
        }
        other => panic!("expected insufficient_stock, got {other:?}"),
    }
    let census = check(&engine).await;
    assert_eq!(census.committed.len(), 1);
    assert_eq!(census.aborted.len(), 1);
    // A part cannot be confirmed on its own.
    let piece = &done.record.pieces[0];
    let alone = engine
        .submit_to(
            piece.shard,
            CairnCommand::Inventory {
                actor: actor(),
                command: InventoryCommand::Confirm {
                    reservation_id: piece.reservation_id,
                },
            },
            None,
        )
        .await;
    assert!(matches!(
        alone,
        Err(EngineError::Refused(CairnError::Inventory(
            InventoryError::PartOfTransaction { .. }
        )))
    ));
    // Confirm across shards ships every part.
    let key = RequestKey::new("c1", b"confirm");
    engine
        .finish_across(done.txn, key, "test", true)
        .await
        .expect("confirm commits");
    for piece in &done.record.pieces {
        let rid = piece.reservation_id;
        let state = engine
            .read_from(piece.shard, move |s: &Cairn, _| {
                s.inventory.reservation(rid).map(|r| r.state)
            })
            .await
            .expect("read");
        assert_eq!(state, Some(ReservationState::Confirmed));
    }
    let on_hand = engine
        .read_from(ShardId(0), {
            let sku = a[0].clone();
            move |s: &Cairn, _| {
                s.inventory
                    .item(&sku, "dc")
                    .map(|i| (i.on_hand, i.reserved))
            }
        })
        .await
        .expect("read");
    assert_eq!(on_hand, Some((7, 0)), "confirm shipped 3 of a[0]");
    let engine = restart(engine, dir.path(), &clock);
    engine.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_returns_the_first_outcome_and_another_body_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = ManualClock::new(START_MS);
    let engine = open(dir.path(), &clock);
    let a = skus_on(0, 1);
    let b = skus_on(2, 1);
    stock(&engine, &a[0], 5).await;
    stock(&engine, &b[0], 5).await;
    let lines = vec![line(&a[0], 2), line(&b[0], 2)];
    let first = reserve(&engine, "same", "o1", lines.clone())
        .await
        .expect("commits");
    let again = reserve(&engine, "same", "o1", lines).await.expect("repeat");
    assert_eq!(again.txn, first.txn);
    assert!(again.repeated);
    let other = reserve(&engine, "same", "o1", vec![line(&a[0], 1), line(&b[0], 1)]).await;
    assert!(matches!(other, Err(EngineError::RequestIdReused)));
    let census = check(&engine).await;
    assert_eq!(census.committed.len(), 1, "the retry reserved nothing more");
    engine.shutdown();
}

/// A fault at `point` (its `nth` hit), then, with `restart`, a restart; then the resolver.
/// Returns whether the transaction ended committed.
async fn fault_then_recover(point: &'static str, nth: u64, restart_node: bool) -> bool {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = ManualClock::new(START_MS);
    let mut engine = open(dir.path(), &clock);
    let a = skus_on(0, 2);
    let b = skus_on(1, 1);
    let c = skus_on(2, 1);
    for sku in a.iter().chain(&b).chain(&c) {
        stock(&engine, sku, 20).await;
    }
    let lines = vec![
        line(&a[0], 2),
        line(&b[0], 3),
        line(&c[0], 4),
        line(&a[1], 1),
    ];
    engine.set_fault_hook(Some(fail_at(point, nth)));
    let failed = reserve(&engine, "faulty", "o-fault", lines.clone()).await;
    engine.set_fault_hook(None);
    let acknowledged = failed.is_ok();
    if restart_node {
        engine = restart(engine, dir.path(), &clock);
    } else {
        // The same process: the resolver waits for the deadline.
        clock.advance_ms(cairn_engine::txn::TXN_DECIDE_TIMEOUT_MS + 1);
    }
    engine.resolve_txns().await.expect("the resolver runs");
    let census = check(&engine).await;
    let committed = census.committed.len() == 1;
    if acknowledged {
        assert!(
            committed,
            "an acknowledged reservation is whole after {point}"
        );
    }
    if ["txn.before_begin"].contains(&point) {
        assert!(census.committed.is_empty() && census.aborted.is_empty());
    }
    // A retry of the same request finds the same outcome.
    let retry = reserve(&engine, "faulty", "o-fault", lines).await;
    match (&retry, committed) {
        (Ok(outcome), true) => assert_eq!(outcome.record.state, TxnState::Committed),
        (Err(_), false) if point != "txn.before_begin" => {}
        // Before the begin nothing was logged: the retry is a fresh, successful reservation.
        (Ok(_), false) if point == "txn.before_begin" => {}
        (retry, committed) => {
            panic!("after {point}#{nth}: retry {retry:?} but committed={committed}")
        }
    }
    let census_after = check(&engine).await;
    assert_eq!(
        census_after.committed.len(),
        usize::from(committed || point == "txn.before_begin"),
        "the retry did not reserve twice"
    );
    let engine = restart(engine, dir.path(), &clock);
    engine.shutdown();
    committed
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fault_at_every_step_then_a_restart_leaves_each_transaction_whole() {
    for point in POINTS {
        let hits: &[u64] = if point == "txn.before_phase_two" {
            &[1, 2, 3]
        } else {
            &[1]
        };
        for &nth in hits {
            let committed = fault_then_recover(point, nth, true).await;
            let decided = matches!(
                point,
                "txn.after_decide" | "txn.before_phase_two" | "txn.after_phase_two"
            );
            assert_eq!(
                committed, decided,
                "after a crash at {point}#{nth}, only a logged commit commits"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fault_at_every_step_without_restart_is_resolved_after_the_deadline() {
    for point in POINTS {
        let committed = fault_then_recover(point, 1, false).await;
        let decided = matches!(
            point,
            "txn.after_decide" | "txn.before_phase_two" | "txn.after_phase_two"
        );
        assert_eq!(committed, decided, "{point}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn holds_wait_for_the_deadline_then_are_released() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = ManualClock::new(START_MS);
    let engine = open(dir.path(), &clock);
    let a = skus_on(0, 1);
    let b = skus_on(1, 1);
    stock(&engine, &a[0], 5).await;
    stock(&engine, &b[0], 5).await;
    engine.set_fault_hook(Some(fail_at("txn.after_prepare", 1)));
    let _ = reserve(&engine, "h", "o-h", vec![line(&a[0], 5), line(&b[0], 5)]).await;
    engine.set_fault_hook(None);
    let reserved = |engine: &Engine<Cairn>, shard: u16, sku: &str| {
        let sku = sku.to_string();
        let shard = engine.shard(ShardId(shard)).expect("shard");
        shard
            .read_blocking(move |s: &Cairn, _| s.inventory.item(&sku, "dc").map(|i| i.reserved))
            .expect("read")
    };
    assert_eq!(reserved(&engine, 0, &a[0]), Some(5), "prepared: held");
    // Past the grace but before the deadline, the orchestrator might still decide: keep.
    clock.advance_ms(cairn_engine::txn_run::HOLD_GRACE_MS + 1);
    let report = engine.resolve_txns().await.expect("resolve");
    assert_eq!(report.holds_aborted, 0);
    assert_eq!(reserved(&engine, 1, &b[0]), Some(5), "still held");
    // Another order sees available minus the hold.
    let blocked = reserve(&engine, "h2", "o-h2", vec![line(&a[0], 1), line(&b[0], 1)]).await;
    assert!(matches!(
        blocked,
        Err(EngineError::Refused(CairnError::Inventory(
            InventoryError::InsufficientStock { .. }
        )))
    ));
    clock.advance_ms(cairn_engine::txn::TXN_DECIDE_TIMEOUT_MS);
    let report = engine.resolve_txns().await.expect("resolve");
    assert_eq!(report.aborted, 1);
    assert_eq!(report.holds_aborted, 2);
    assert_eq!(
        reserved(&engine, 0, &a[0]),
        Some(0),
        "released at the timeout"
    );
    assert_eq!(reserved(&engine, 1, &b[0]), Some(0));
    check(&engine).await;
    engine.shutdown();
}

/// A tiny deterministic generator (no dependency for a test's dice).
struct Dice(u64);

impl Dice {
    fn next(&mut self, below: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % below
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_random_transactions_with_random_faults_conserve_stock() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = ManualClock::new(START_MS);
    let mut engine = open(dir.path(), &clock);
    let skus: Vec<String> = (0..SHARDS).flat_map(|s| skus_on(s, 3)).collect();
    for sku in &skus {
        stock(&engine, sku, 30).await;
    }
    let mut dice = Dice(7);
    let mut acknowledged: Vec<TxnId> = Vec::new();
    for round in 0..60 {
        let count = 2 + dice.next(4) as usize;
        let mut lines = Vec::new();
        for _ in 0..count {
            let sku = &skus[dice.next(skus.len() as u64) as usize];
            if lines.iter().all(|l: &LineRequest| &l.sku != sku) {
                lines.push(line(sku, 1 + dice.next(6) as i64));
            }
        }
        if by_shard(lines.clone()).len() < 2 {
            continue;
        }
        let fault = dice.next(3) == 0;
        if fault {
            let point = POINTS[dice.next(POINTS.len() as u64) as usize];
            engine.set_fault_hook(Some(fail_at(point, 1)));
        }
        let result = reserve(&engine, &format!("q{round}"), &format!("o{round}"), lines).await;
        engine.set_fault_hook(None);
        if let Ok(outcome) = result {
            acknowledged.push(outcome.txn);
        }
        match dice.next(5) {
            0 => engine = restart(engine, dir.path(), &clock),
            1 => clock.advance_ms(cairn_engine::txn::TXN_DECIDE_TIMEOUT_MS + 1),
            _ => {}
        }
        if dice.next(4) == 0 {
            engine.resolve_txns().await.expect("resolve");
        }
    }
    clock.advance_ms(cairn_engine::txn::TXN_DECIDE_TIMEOUT_MS + 1);
    engine.resolve_txns().await.expect("resolve");
    let census = check(&engine).await;
    for txn in &acknowledged {
        assert!(
            census.committed.contains(txn),
            "acknowledged {txn} is committed"
        );
    }
    assert!(!census.committed.is_empty() && !census.aborted.is_empty());
    let engine = restart(engine, dir.path(), &clock);
    engine.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_hot_sku_under_concurrent_multi_shard_orders_never_oversells() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = ManualClock::new(START_MS);
    let engine = Arc::new(open(dir.path(), &clock));
    let hot = skus_on(0, 1).remove(0);
    let others: Vec<String> = skus_on(1, 4).into_iter().chain(skus_on(2, 4)).collect();
    stock(&engine, &hot, 100).await;
    for sku in &others {
        stock(&engine, sku, 1_000).await;
    }
    let orders = 400;
    let mut tasks = Vec::with_capacity(orders);
    for n in 0..orders {
        let engine = Arc::clone(&engine);
        let lines = vec![line(&hot, 1), line(&others[n % others.len()], 1)];
        tasks.push(tokio::spawn(async move {
            reserve(
                &engine,
                &format!("hot{n}"),
                &format!("hot-order-{n}"),
                lines,
            )
            .await
        }));
    }
    let mut won = 0;
    let mut short = 0;
    let all = async {
        for task in tasks {
            match task.await.expect("task") {
                Ok(_) => won += 1,
                Err(EngineError::Refused(CairnError::Inventory(
                    InventoryError::InsufficientStock { .. },
                ))) => short += 1,
                Err(other) => panic!("unexpected {other:?}"),
            }
        }
    };
    tokio::time::timeout(std::time::Duration::from_secs(60), all)
        .await
        .expect("every order finishes: no deadlock, no starvation");
    assert_eq!(won, 100, "exactly the stock of the hot SKU was sold");
    assert_eq!(short, orders - 100);
    check(&engine).await;
    let engine = Arc::into_inner(engine).expect("the only handle");
    engine.shutdown();
}
