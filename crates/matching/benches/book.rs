//! Criterion benchmarks of the matching state machine (decide + apply, as the sequencer runs it):
//!
//! - `mixed/10k_resting`: the shared workload stream ([`cairn_matching::workload`]): ~60% GTC
//!   limit orders near the spread, 30% cancels, 10% crossing IOC/market orders, on a book of about
//!   10,000 resting orders. Throughput is commands per second.
//! - `worst_level/insert_cancel_far`: a bid placed and cancelled at the far end of a side holding
//!   the maximum number of levels (the sorted level `Vec` shifts every level).
//! - `snapshot_1m/{freeze,encode,restore}`: clone, postcard encoding of the canonical image, and
//!   rebuild from bytes, for a book of 1,000,000 resting orders.
//!
//! `cargo bench -p cairn-matching -- --quick` runs them all in about a minute.

use cairn_matching::workload::{Driver, Workload, WorkloadConfig, create_market};
use cairn_matching::{
    Actor, Matching, MatchingCommand, MatchingReply, OrderType, PRICE_LEVELS_PER_SIDE_MAX, Side,
    TimeInForce,
};
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use std::hint::black_box;
use std::time::Duration;

const NOW_MS: u64 = 1_800_000_000_000;
const CHUNK_OPS: usize = 20_000;

/// Runs one command like the sequencer does; returns the new order's id (0 if none).
fn step(matching: &mut Matching, command: &MatchingCommand, lsn: &mut u64) -> u64 {
    match matching.decide(command, &Actor::default(), NOW_MS) {
        Ok((events, reply)) => {
            for event in &events {
                *lsn += 1;
                matching.apply(event, *lsn, NOW_MS);
            }
            match reply {
                MatchingReply::Order(order) => order.order_id,
                MatchingReply::Market { .. } => 0,
            }
        }
        Err(_) => 0,
    }
}

/// A state after the workload's starting book, and the next `ops` commands with their order
/// ids resolved (by running them once: the stream is deterministic).
fn prepare(config: WorkloadConfig, ops: usize) -> (Matching, Vec<MatchingCommand>) {
    let mut matching = Matching::default();
    let mut lsn = 0;
    step(&mut matching, &create_market(&config), &mut lsn);
    let mut workload = Workload::new(config);
    let mut driver = Driver::new(config.accounts);
    for op in workload.by_ref().take(config.resting) {
        let command = driver.command(&op);
        driver.placed(step(&mut matching, &command, &mut lsn));
    }
    let start = matching.clone();
    let mut commands = Vec::with_capacity(ops);
    for op in workload.take(ops) {
        let command = driver.command(&op);
        driver.placed(step(&mut matching, &command, &mut lsn));
        commands.push(command);
    }
    (start, commands)
}

fn mixed(c: &mut Criterion) {
    let config = WorkloadConfig::default();
    let (start, commands) = prepare(config, CHUNK_OPS);
    let open_before = start.market("BENCH").map_or(0, |m| m.open_orders);
    let mut group = c.benchmark_group("mixed");
    group.throughput(Throughput::Elements(CHUNK_OPS as u64));
    group.bench_function("10k_resting", |b| {
        b.iter_batched(
            || start.clone(),
            |mut matching| {
                let mut lsn = 0;
                for command in &commands {
                    black_box(step(&mut matching, command, &mut lsn));
                }
                matching
            },
            BatchSize::PerIteration,
        );
    });
    group.finish();
    let mut end = start.clone();
    let mut lsn = 0;
    let cancels_refused = commands
        .iter()
        .filter(|command| {
            let cancel = matches!(command, MatchingCommand::CancelOrder { .. });
            let placed = step(&mut end, command, &mut lsn);
            cancel && placed == 0
        })
        .count();
    eprintln!(
        "mixed: {open_before} resting before, {} after; {cancels_refused} of the cancels hit closed orders",
        end.market("BENCH").map_or(0, |m| m.open_orders),
    );
}

fn limit(price: i64) -> MatchingCommand {
    MatchingCommand::PlaceOrder {
        symbol: "BENCH".into(),
        account: "far".into(),
        side: Side::Buy,
        order_type: OrderType::Limit,
        price: Some(price),
        qty: 1,
        time_in_force: TimeInForce::Gtc,
        post_only: false,
        stp: None,
    }
}

fn worst_level(c: &mut Criterion) {
    let config = WorkloadConfig {
        resting: 0,
        ..WorkloadConfig::default()
    };
    let mut matching = Matching::default();
    let mut lsn = 0;
    step(&mut matching, &create_market(&config), &mut lsn);
    let levels = PRICE_LEVELS_PER_SIDE_MAX as i64 - 1;
    for price in 0..levels {
        step(&mut matching, &limit(1_000 + price), &mut lsn);
    }
    let mut group = c.benchmark_group("worst_level");
    group.throughput(Throughput::Elements(2));
    group.bench_function("insert_cancel_far", |b| {
        b.iter(|| {
            let order_id = step(&mut matching, &limit(999), &mut lsn);
            let cancel = MatchingCommand::CancelOrder {
                symbol: "BENCH".into(),
                order_id,
            };
            step(&mut matching, &cancel, &mut lsn)
        });
    });
    group.finish();
}

fn snapshot(c: &mut Criterion) {
    let config = WorkloadConfig {
        resting: 1_000_000,
        band_ticks: 500,
        ..WorkloadConfig::default()
    };
    let (matching, _) = prepare(config, 0);
    let open = matching.market("BENCH").map_or(0, |m| m.open_orders);
    assert_eq!(open, 1_000_000, "every starting order rests");
    let bytes = postcard::to_stdvec(&matching).expect("encodes");
    eprintln!(
        "snapshot_1m: {open} resting orders, {} bytes encoded",
        bytes.len()
    );
    let mut group = c.benchmark_group("snapshot_1m");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(5));
    group.bench_function("freeze", |b| b.iter(|| black_box(matching.clone())));
    group.bench_function("encode", |b| {
        b.iter(|| postcard::to_stdvec(black_box(&matching)).expect("encodes"));
    });
    group.bench_function("restore", |b| {
        b.iter(|| postcard::from_bytes::<Matching>(black_box(&bytes)).expect("restores"));
    });
    group.finish();
    let restored: Matching = postcard::from_bytes(&bytes).expect("restores");
    assert!(restored == matching, "restore gives the same state");
}

criterion_group!(benches, mixed, worst_level, snapshot);
criterion_main!(benches);
