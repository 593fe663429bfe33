//! Recovery of a large book: an engine whose one shard's log holds `--recover-events` matching
//! records and whose book about `--recover-orders` resting orders, reopened from its newest
//! snapshot and from zero.
//!
//! The log is built through the engine itself (`Shard::submit` of the workload's commands, up to
//! [`WINDOW`] in flight, in `async` durability: each batch is written but not synced, which is what
//! a bulk load would use), with the stream of [`cairn_matching::workload`] over a starting book of
//! `--recover-orders` limit orders. Cancels name order ids worked out in advance (ids are dense
//! per market) and every reply is checked against them. The snapshot is taken
//! `--recover-tail-events` records before the end, as a periodic snapshot would leave it.
//!
//! Each timing is a whole `Engine::open` (snapshot load and decode, replay of the log after it,
//! the log's checks) with the page cache dropped first when the process may (root). From zero
//! means with the snapshot files moved aside. After each open the book is checked to hold the
//! orders the built one held.

use super::MatchingBenchArgs;
use super::report::MatchingRow;
use anyhow::{Context as _, anyhow, bail, ensure};
use cairn_engine::cairn::{Cairn, CairnCommand, CairnReply};
use cairn_engine::{Engine, EngineConfig, EngineError, Outcome, Shard, ShardConfig, ShardPaths};
use cairn_log::{CommitOptions, Durability};
use cairn_matching::workload::{Driver, Op, SYMBOL, Workload, WorkloadConfig, create_market};
use cairn_matching::{Actor, MatchingCommand, MatchingReply};
use cairn_types::ShardId;
use std::path::Path;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::time::Instant;

/// Most commands submitted and not yet answered while the log is built.
const WINDOW: u64 = 16_384;
/// Limit orders rest 1..=this many ticks from the mid in the recovered book (wider than the core
/// comparison's, as a book of a million orders would be). With 200 the stream keeps a starting
/// book of 1,000,000 orders at about that size after 10,000,000 records (it wanders between
/// 0.8 and 1.5 million on the way); with 500 it grows to about 1.7 million.
const BAND_TICKS: i64 = 200;
/// Longest interval between syncs while the log is built, in milliseconds.
const BUILD_SYNC_INTERVAL_MS: u64 = 200;
const DROP_CACHES: &str = "/proc/sys/vm/drop_caches";
const WORKLOADS: [&str; 2] = ["recover-snapshot", "recover-zero"];

/// The recovery rows, reported as skipped.
pub(crate) fn skipped_rows(reason: &str) -> Vec<MatchingRow> {
    WORKLOADS
        .iter()
        .map(|workload| MatchingRow::skipped("cairn", workload, reason))
        .collect()
}

/// How the log was built.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Build {
    /// Seconds it took, snapshot included.
    pub(crate) seconds: f64,
    /// Records written.
    pub(crate) events: u64,
}

/// What the built engine holds.
#[derive(Clone, Copy, Debug)]
struct Built {
    records: u64,
    snapshot_lsn: u64,
    snapshot_bytes: u64,
    resting: u64,
    build: Build,
}

/// Builds the engine's log, then times each recovery `args.runs` times.
pub(crate) fn run(
    args: &MatchingBenchArgs,
    base: &Path,
    progress: &crate::progress::Progress,
) -> anyhow::Result<(Vec<MatchingRow>, Build)> {
    let work = tempfile::Builder::new()
        .prefix("cairn-bench-matching-")
        .tempdir_in(base)
        .with_context(|| format!("creating a directory in {}", base.display()))?;
    let data_dir = work.path().join("data");
    let built = build(args, &data_dir, progress)?;
    let paths = ShardPaths::new(&cairn_engine::shard_dir(&data_dir, ShardId(0)));
    let log_bytes = dir_bytes(&paths.log_dir)?;
    let bar = progress.points("recovery", (args.runs * WORKLOADS.len()) as u64);
    let mut snapshot = Vec::new();
    let mut zero = Vec::new();
    let mut cache = Vec::new();
    for run in 1..=args.runs {
        bar.set_message(format!("recover-snapshot, run {run}/{}", args.runs));
        cache.push(prepare_cache(args.warm_cache));
        snapshot.push(reopen(&data_dir, &built, true)?);
        bar.inc(1);
        bar.set_message(format!("recover-zero, run {run}/{}", args.runs));
        let aside = paths.snapshot_dir.with_extension("aside");
        std::fs::rename(&paths.snapshot_dir, &aside)
            .with_context(|| format!("moving {} aside", paths.snapshot_dir.display()))?;
        cache.push(prepare_cache(args.warm_cache));
        let timed = reopen(&data_dir, &built, false);
        restore_dir(&aside, &paths.snapshot_dir)?;
        zero.push(timed?);
        bar.inc(1);
    }
    bar.finish_and_clear();
    work.close()
        .context("removing the recovered engine's files")?;
    let cache = match cache.iter().find_map(|c| c.as_ref().err()) {
        None => ("cold".to_string(), String::new()),
        Some(reason) => (
            "warm".to_string(),
            format!("; page cache not dropped: {reason}"),
        ),
    };
    let rows = vec![
        row(
            "recover-snapshot",
            &snapshot,
            &built,
            &cache,
            built.snapshot_bytes,
        ),
        row("recover-zero", &zero, &built, &cache, log_bytes),
    ];
    Ok((rows, built.build))
}

fn row(
    workload: &str,
    seconds: &[f64],
    built: &Built,
    (cache, cache_note): &(String, String),
    bytes: u64,
) -> MatchingRow {
    let s = crate::stats::spread(seconds);
    let tail = built.records - built.snapshot_lsn;
    let (replayed, note) = if workload == "recover-snapshot" {
        (
            tail,
            format!(
                "Engine::open: loads the snapshot at LSN {} ({bytes} bytes), then replays the last \
                 {tail} records{cache_note}",
                built.snapshot_lsn
            ),
        )
    } else {
        (
            built.records,
            format!(
                "Engine::open with the snapshots moved aside: checks and replays every record of the \
                 log ({bytes} bytes){cache_note}"
            ),
        )
    };
    MatchingRow {
        seconds: Some(s.median),
        seconds_min: Some(s.min),
        seconds_max: Some(s.max),
        ops_per_s: Some(replayed as f64 / s.median),
        records: Some(replayed),
        log_records: Some(built.records),
        resting_orders: Some(built.resting),
        bytes: Some(bytes),
        cache: Some(cache.clone()),
        runs: Some(seconds.len()),
        note: Some(note),
        ..MatchingRow::new("cairn", workload)
    }
}

/// The engine's configuration: one shard, snapshots only on demand, `async` durability.
fn engine_config(data_dir: &Path) -> EngineConfig {
    EngineConfig {
        data_dir: data_dir.to_path_buf(),
        shard_count: Some(1),
        shard: ShardConfig {
            commit: CommitOptions {
                durability: Durability::Async {
                    sync_interval_ms: BUILD_SYNC_INTERVAL_MS,
                },
                ..CommitOptions::default()
            },
            snapshot_every_records: 0,
            ..ShardConfig::default()
        },
    }
}

/// The stream of the recovered book.
fn workload(args: &MatchingBenchArgs) -> WorkloadConfig {
    WorkloadConfig {
        seed: args.seed,
        resting: args.recover_orders,
        band_ticks: BAND_TICKS,
        ..WorkloadConfig::default()
    }
}

fn build(
    args: &MatchingBenchArgs,
    data_dir: &Path,
    progress: &crate::progress::Progress,
) -> anyhow::Result<Built> {
    let (engine, _) = Engine::<Cairn>::open(engine_config(data_dir))
        .map_err(|e| anyhow!("opening an engine in {}: {e}", data_dir.display()))?;
    let shard = engine.shards().first().context("the engine has no shard")?;
    let config = workload(args);
    let bar = progress.records("building the matching log", args.recover_events);
    let started = Instant::now();
    let created = shard.execute(matching(create_market(&config)), None);
    let mut feeder = Feeder::new(shard, config, outcome_lsn(created)?);
    let snapshot_at = args.recover_events - args.recover_tail_events;
    feeder.feed_until(snapshot_at, &bar)?;
    bar.set_message("writing the snapshot");
    let snapshot = shard
        .snapshot_now()
        .map_err(|e| anyhow!("taking the snapshot: {e}"))?;
    ensure!(
        snapshot.lsn.0 == snapshot_at,
        "the snapshot is at LSN {}, not {snapshot_at}",
        snapshot.lsn.0
    );
    bar.set_message("");
    feeder.feed_until(args.recover_events, &bar)?;
    let seconds = started.elapsed().as_secs_f64();
    bar.finish_and_clear();
    let resting = open_orders(shard)?;
    engine.shutdown();
    Ok(Built {
        records: args.recover_events,
        snapshot_lsn: snapshot_at,
        snapshot_bytes: snapshot.bytes,
        resting,
        build: Build {
            seconds,
            events: args.recover_events,
        },
    })
}

fn matching(command: MatchingCommand) -> CairnCommand {
    CairnCommand::Matching {
        actor: Actor::default(),
        command,
    }
}

fn outcome_lsn(outcome: Outcome<Cairn>) -> anyhow::Result<u64> {
    outcome
        .map(|committed| committed.lsn.0)
        .map_err(|e| anyhow!("creating the benchmark's market: {e}"))
}

fn open_orders(shard: &Shard<Cairn>) -> anyhow::Result<u64> {
    shard
        .read_blocking(|state, _| state.matching.market(SYMBOL).map_or(0, |m| m.open_orders))
        .map_err(|e| anyhow!("reading the book: {e}"))
}

/// What became of one submitted command.
enum Done {
    Accepted,
    Refused,
    WrongOrderId { expected: u64, got: u64 },
    Failed(String),
}

/// Submits the stream's commands with a bounded window and counts what the log holds.
struct Feeder<'a> {
    shard: &'a Shard<Cairn>,
    workload: Workload,
    driver: Driver,
    next_order_id: u64,
    sender: SyncSender<Done>,
    receiver: Receiver<Done>,
    in_flight: u64,
    /// Records in the log once everything answered so far is counted.
    records: u64,
}

impl<'a> Feeder<'a> {
    fn new(shard: &'a Shard<Cairn>, config: WorkloadConfig, records: u64) -> Feeder<'a> {
        let (sender, receiver) = sync_channel(WINDOW as usize);
        Feeder {
            shard,
            workload: Workload::new(config),
            driver: Driver::new(config.accounts),
            next_order_id: 1,
            sender,
            receiver,
            in_flight: 0,
            records,
        }
    }

    /// Submits until the log holds exactly `target` records and every command is answered.
    fn feed_until(&mut self, target: u64, bar: &indicatif::ProgressBar) -> anyhow::Result<()> {
        loop {
            // Each command adds at most one record, so this never overshoots.
            while self.in_flight < WINDOW && self.records + self.in_flight < target {
                self.submit_next();
            }
            if self.in_flight == 0 {
                ensure!(self.records == target, "the log passed {target} records");
                return Ok(());
            }
            let done = self
                .receiver
                .recv()
                .map_err(|_| anyhow!("the shard stopped answering"))?;
            self.in_flight -= 1;
            match done {
                Done::Accepted => {
                    self.records += 1;
                    bar.inc(1);
                }
                Done::Refused => {}
                Done::WrongOrderId { expected, got } => {
                    bail!("an order got id {got}, not the {expected} its cancels will name")
                }
                Done::Failed(error) => bail!("building the log: {error}"),
            }
        }
    }

    fn submit_next(&mut self) {
        let op = self.workload.next().unwrap_or(Op::Cancel { target: 0 });
        let command = self.driver.command(&op);
        let expected = match op {
            Op::Cancel { .. } => None,
            Op::Limit { .. } | Op::Take { .. } => {
                self.next_order_id += 1;
                Some(self.next_order_id - 1)
            }
        };
        self.driver.placed(expected.unwrap_or(0));
        let sender = self.sender.clone();
        self.in_flight += 1;
        self.shard.submit(
            matching(command),
            None,
            Box::new(move |outcome| drop(sender.send(done(outcome, expected)))),
        );
    }
}

fn done(outcome: Outcome<Cairn>, expected: Option<u64>) -> Done {
    match (outcome, expected) {
        (Ok(committed), Some(expected)) => match committed.reply {
            CairnReply::Matching(MatchingReply::Order(order)) if order.order_id == expected => {
                Done::Accepted
            }
            CairnReply::Matching(MatchingReply::Order(order)) => Done::WrongOrderId {
                expected,
                got: order.order_id,
            },
            other => Done::Failed(format!("an order was answered {other:?}")),
        },
        (Ok(_), None) => Done::Accepted,
        (Err(EngineError::Refused(_)), None) => Done::Refused,
        (Err(error), _) => Done::Failed(error.to_string()),
    }
}

/// Opens the engine, checks what it recovered, and returns the seconds `Engine::open` took.
fn reopen(data_dir: &Path, built: &Built, from_snapshot: bool) -> anyhow::Result<f64> {
    let started = Instant::now();
    let (engine, recoveries) = Engine::<Cairn>::open(engine_config(data_dir))
        .map_err(|e| anyhow!("reopening the engine: {e}"))?;
    let seconds = started.elapsed().as_secs_f64();
    let recovery = recoveries.first().context("no shard recovered")?;
    let (expected_snapshot, expected_replayed) = if from_snapshot {
        (Some(built.snapshot_lsn), built.records - built.snapshot_lsn)
    } else {
        (None, built.records)
    };
    ensure!(
        recovery.snapshot_lsn.map(|lsn| lsn.0) == expected_snapshot
            && recovery.records_replayed == expected_replayed
            && recovery.last_lsn.0 == built.records,
        "recovered {recovery:?}; expected the snapshot at {expected_snapshot:?}, \
         {expected_replayed} records replayed, the log ending at {}",
        built.records
    );
    let shard = engine.shards().first().context("the engine has no shard")?;
    let resting = open_orders(shard)?;
    engine.shutdown();
    ensure!(
        resting == built.resting,
        "the recovered book holds {resting} orders, the built one {}",
        built.resting
    );
    Ok(seconds)
}

fn restore_dir(aside: &Path, dir: &Path) -> anyhow::Result<()> {
    if dir.exists() {
        // Opening the engine made an empty snapshot directory in its place.
        std::fs::remove_dir(dir).with_context(|| format!("removing {}", dir.display()))?;
    }
    std::fs::rename(aside, dir).with_context(|| format!("moving {} back", dir.display()))
}

/// Total size of the files in `dir`.
fn dir_bytes(dir: &Path) -> anyhow::Result<u64> {
    let mut bytes = 0;
    for entry in std::fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))? {
        let entry = entry.with_context(|| format!("listing {}", dir.display()))?;
        bytes += entry.metadata().map_or(0, |m| m.len());
    }
    Ok(bytes)
}

/// Drops the page cache (after `sync`), or says why it could not.
fn prepare_cache(warm_requested: bool) -> Result<(), String> {
    if warm_requested {
        return Err("--warm-cache was given".into());
    }
    let _ = std::process::Command::new("sync").status();
    std::fs::write(DROP_CACHES, "1\n").map_err(|e| format!("writing {DROP_CACHES}: {e}"))
}
