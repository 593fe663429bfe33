//! `cairn bench matching`: Cairn's order book against the `orderbook-rs` and `lobster` crates on
//! the same generated stream, the durable end-to-end path, and recovery of a large book.
//!
//! Three parts, each reported as rows of the JSON shape of `shared/BENCHMARKS.md`:
//! - **core-mixed** (`system` `cairn`, `orderbook-rs`, `lobster`; `ops_per_s` = orders per second):
//!   the stream of [`cairn_matching::workload`] (about 60% GTC limit orders near the spread, 30%
//!   cancels, 10% crossing IOC limit and market orders, on a book of about 10,000 resting orders)
//!   is generated once and converted once into each book's own input (outside the timing). Each
//!   book is then built from scratch, fed the starting book and a warm-up untimed, and timed on the
//!   next `--orders` operations, all on this thread. The books take turns, in an order that rotates
//!   from run to run; Cairn's ratios to each peer are taken within each run. [`books`] says what
//!   each book does with each operation and what it leaves out.
//! - **e2e** (`system` `cairn-http` and `cairn-grpc`, `in_flight` 1, 64, 256): durable orders per
//!   second and latency through an in-process server in durable `sync` mode, over HTTP and over
//!   the gRPC `OrderStream`, `--duration-s` per point after a warm-up (`e2e`).
//! - **recover-snapshot / recover-zero** (`system: "cairn"`, `seconds`, `records`): an engine on a
//!   fresh data directory is fed matching commands until its log holds `--recover-events` records
//!   and its book about `--recover-orders` resting orders, with a snapshot `--recover-tail-events`
//!   records before the end; then the time to reopen it from the snapshot and, with the snapshots
//!   moved aside, from zero ([`recover`]).

pub mod books;
mod e2e;
mod mixed;
#[cfg(feature = "plot")]
mod plot;
mod recover;
pub mod report;

pub use report::{MatchingReport, MatchingRow, MatchingSettings};

use crate::machine;
use anyhow::{Context as _, bail};
use std::path::{Path, PathBuf};

/// Cairn's core throughput must be at least this many times `orderbook-rs`'s.
pub const TARGET_RATIO_TO_ORDERBOOK_RS: f64 = 5.0;
/// Cairn's core throughput must be at least this many times `lobster`'s.
pub const TARGET_RATIO_TO_LOBSTER: f64 = 1.0;
/// Recovery from the snapshot must take less than this many seconds.
pub const TARGET_RECOVER_SNAPSHOT_S: f64 = 1.0;
/// Why the peers' rows are empty in a build without them.
pub const PEERS_SKIPPED: &str = "built without the peers feature (cargo run --release -p cairn --features peers -- bench matching)";
/// Most measured operations per run.
pub const ORDERS_MAX: usize = 100_000_000;
/// Most requests in flight one e2e point may have.
pub const IN_FLIGHT_MAX: usize = 4096;
/// Most records in the recovered log.
pub const RECOVER_EVENTS_MAX: u64 = 1_000_000_000;
/// Most repetitions of each point.
pub const RUNS_MAX: usize = 100;

/// Longest end-to-end point, in seconds.
pub const DURATION_S_MAX: f64 = 3600.0;

const ORDERS_DEFAULT: usize = 1_000_000;
const DURATION_S_DEFAULT: f64 = 5.0;
const WARMUP_S_MAX: f64 = 1.0;
const WARMUP_ORDERS_DEFAULT: usize = 100_000;
const RESTING_DEFAULT: usize = 10_000;
const RUNS_DEFAULT: usize = 3;
const SEED_DEFAULT: u64 = 42;
const IN_FLIGHT_DEFAULT: [usize; 3] = [1, 64, 256];
const RECOVER_ORDERS_DEFAULT: usize = 1_000_000;
const RECOVER_EVENTS_DEFAULT: u64 = 10_000_000;
const RECOVER_TAIL_EVENTS_DEFAULT: u64 = 100_000;

/// Arguments of `cairn bench matching`.
#[derive(clap::Args, Clone, Debug, PartialEq)]
pub struct MatchingBenchArgs {
    /// Operations timed per book and run (after the starting book and the warm-up).
    #[arg(long, default_value_t = ORDERS_DEFAULT)]
    pub orders: usize,
    /// Operations run untimed after the starting book, before the timed ones.
    #[arg(long, default_value_t = WARMUP_ORDERS_DEFAULT)]
    pub warmup_orders: usize,
    /// Limit orders placed first: the starting book of the core comparison.
    #[arg(long, default_value_t = RESTING_DEFAULT)]
    pub resting: usize,
    /// Seed of the stream (the same stream for every book and run).
    #[arg(long, default_value_t = SEED_DEFAULT)]
    pub seed: u64,
    /// Repetitions of every point; rows carry the median and the spread (min, max).
    #[arg(long, default_value_t = RUNS_DEFAULT)]
    pub runs: usize,
    /// Orders in flight for the end-to-end points, comma-separated.
    #[arg(long, value_delimiter = ',', default_values_t = IN_FLIGHT_DEFAULT)]
    pub in_flight: Vec<usize>,
    /// Seconds measured per end-to-end point and run, after a warm-up of up to a second.
    #[arg(long, default_value_t = DURATION_S_DEFAULT)]
    pub duration_s: f64,
    /// Skip the end-to-end points (their rows are reported as skipped).
    #[arg(long)]
    pub skip_e2e: bool,
    /// Limit orders of the recovered book's starting book (after `--recover-events` records it
    /// holds about as many, give or take a third).
    #[arg(long, default_value_t = RECOVER_ORDERS_DEFAULT)]
    pub recover_orders: usize,
    /// Records (accepted matching commands) in the recovered log.
    #[arg(long, default_value_t = RECOVER_EVENTS_DEFAULT)]
    pub recover_events: u64,
    /// The snapshot is taken this many records before the end of the log (they are replayed
    /// after it).
    #[arg(long, default_value_t = RECOVER_TAIL_EVENTS_DEFAULT)]
    pub recover_tail_events: u64,
    /// Skip the recovery timings (their rows are reported as skipped).
    #[arg(long)]
    pub skip_recover: bool,
    /// Do not drop the page cache before the recovery timings (rows then say `"cache": "warm"`).
    #[arg(long)]
    pub warm_cache: bool,
    /// Directory for the data of the end-to-end server and of the recovered engine, on the disk
    /// to measure (not a tmpfs). A fresh
    /// sub-directory is made there and removed afterwards. Default: `./target/bench-tmp` when
    /// `./target` exists, else the system's temporary directory.
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Write the results as JSON (the shape of `shared/BENCHMARKS.md`) to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Draw the results as a PNG to this file.
    #[arg(long)]
    pub plot: Option<PathBuf>,
}

impl Default for MatchingBenchArgs {
    fn default() -> Self {
        MatchingBenchArgs {
            orders: ORDERS_DEFAULT,
            warmup_orders: WARMUP_ORDERS_DEFAULT,
            resting: RESTING_DEFAULT,
            seed: SEED_DEFAULT,
            runs: RUNS_DEFAULT,
            in_flight: IN_FLIGHT_DEFAULT.to_vec(),
            duration_s: DURATION_S_DEFAULT,
            skip_e2e: false,
            recover_orders: RECOVER_ORDERS_DEFAULT,
            recover_events: RECOVER_EVENTS_DEFAULT,
            recover_tail_events: RECOVER_TAIL_EVENTS_DEFAULT,
            skip_recover: false,
            warm_cache: false,
            dir: None,
            json: None,
            plot: None,
        }
    }
}

impl MatchingBenchArgs {
    fn validate(&self) -> anyhow::Result<()> {
        if !(1..=ORDERS_MAX).contains(&self.orders) {
            bail!("--orders must be in 1..={ORDERS_MAX}, got {}", self.orders);
        }
        if self.warmup_orders > ORDERS_MAX || self.resting > ORDERS_MAX {
            bail!("--warmup-orders and --resting must be at most {ORDERS_MAX}");
        }
        if !(1..=RUNS_MAX).contains(&self.runs) {
            bail!("--runs must be in 1..={RUNS_MAX}, got {}", self.runs);
        }
        if !(self.duration_s > 0.0 && self.duration_s <= DURATION_S_MAX) {
            bail!(
                "--duration-s must be in (0, {DURATION_S_MAX}], got {}",
                self.duration_s
            );
        }
        if self.in_flight.is_empty() {
            bail!("--in-flight needs at least one value");
        }
        if let Some(bad) = self
            .in_flight
            .iter()
            .find(|&&n| n == 0 || n > IN_FLIGHT_MAX)
        {
            bail!("--in-flight values must be in 1..={IN_FLIGHT_MAX}, got {bad}");
        }
        if !self.skip_recover {
            self.validate_recover()?;
        }
        if self.plot.is_some() && !cfg!(feature = "plot") {
            bail!("--plot needs cairn-bench built with its `plot` feature");
        }
        Ok(())
    }

    fn validate_recover(&self) -> anyhow::Result<()> {
        let orders = self.recover_orders as u64;
        if self.recover_events > RECOVER_EVENTS_MAX {
            bail!("--recover-events must be at most {RECOVER_EVENTS_MAX}");
        }
        if orders == 0 || orders > cairn_matching::OPEN_ORDERS_PER_MARKET_MAX as u64 {
            bail!(
                "--recover-orders must be in 1..={}, got {orders}",
                cairn_matching::OPEN_ORDERS_PER_MARKET_MAX
            );
        }
        // The market's creation, the starting book, then the tail after the snapshot.
        if self.recover_events < 1 + orders + self.recover_tail_events {
            bail!(
                "--recover-events ({}) must exceed 1 + --recover-orders ({orders}) + \
                 --recover-tail-events ({}) (or pass --skip-recover)",
                self.recover_events,
                self.recover_tail_events
            );
        }
        Ok(())
    }

    fn duration(&self) -> std::time::Duration {
        std::time::Duration::from_secs_f64(self.duration_s)
    }

    fn warmup(&self) -> std::time::Duration {
        std::time::Duration::from_secs_f64(self.duration_s.min(WARMUP_S_MAX))
    }

    /// The stream's shape for the core comparison and the end-to-end points.
    fn workload(&self) -> cairn_matching::workload::WorkloadConfig {
        cairn_matching::workload::WorkloadConfig {
            seed: self.seed,
            resting: self.resting,
            ..cairn_matching::workload::WorkloadConfig::default()
        }
    }
}

/// Runs the matching benchmark: the three books on the same stream, the end-to-end points, and
/// the recovery timings. Prints the tables (with progress on a terminal while it runs), writes
/// `--json` and draws `--plot` when asked, and returns the report. The recovered engine's data is
/// removed at the end.
///
/// # Errors
/// Bad arguments; the engine cannot be built, recovered or checked; writing the JSON or the plot
/// failed.
pub fn run_matching_bench(args: &MatchingBenchArgs) -> anyhow::Result<MatchingReport> {
    args.validate()?;
    let base = args.dir.clone().unwrap_or_else(crate::default_base_dir);
    let mut settings = MatchingSettings {
        orders: args.orders,
        warmup_orders: args.warmup_orders,
        resting: args.resting,
        seed: args.seed,
        runs: args.runs,
        in_flight: args.in_flight.clone(),
        duration_s: args.duration_s,
        warmup_s: args.warmup().as_secs_f64(),
        peers_built: cfg!(feature = "peers"),
        ..MatchingSettings::default()
    };
    // Stamped now: `started_at` is when the run started.
    let mut report = MatchingReport::new(machine::describe(), MatchingSettings::default());
    let progress = crate::progress::Progress::new();
    let mut rows = mixed::run(args, &progress)?;
    if !(args.skip_e2e && args.skip_recover) {
        std::fs::create_dir_all(&base).with_context(|| format!("creating {}", base.display()))?;
        let fs = machine::file_system_of(&base);
        if matches!(fs.as_str(), "tmpfs" | "ramfs") {
            eprintln!(
                "warning: {} is on {fs}: fdatasync and reading back cost nothing there; pass \
                 --dir on a real disk",
                base.display()
            );
        }
        settings.dir = Some(base.display().to_string());
        settings.dir_fs = Some(fs);
    }
    if args.skip_e2e {
        rows.extend(e2e::skipped_rows(args, "--skip-e2e was given"));
    } else {
        rows.extend(e2e::run(args, &base, &progress)?);
    }
    if args.skip_recover {
        rows.extend(recover::skipped_rows("--skip-recover was given"));
    } else {
        settings.recover_orders = Some(args.recover_orders);
        settings.recover_events = Some(args.recover_events);
        settings.recover_tail_events = Some(args.recover_tail_events);
        let (recovered, build) = recover::run(args, &base, &progress)?;
        settings.recover_build_s = Some(build.seconds);
        settings.recover_build_events_per_s = Some(build.events as f64 / build.seconds);
        rows.extend(recovered);
    }
    progress.finish();
    report.settings = settings;
    report.rows = rows;
    println!("{}", report.table());
    if let Some(path) = &args.json {
        report.write_json(path)?;
    }
    if let Some(path) = &args.plot {
        draw_plot(&report, path)?;
    }
    Ok(report)
}

/// Draws `report` as a PNG to `path` (what `--plot` does; also for a report read back from
/// `--json`).
///
/// # Errors
/// Drawing or writing the file failed, or cairn-bench was built without its `plot` feature.
#[cfg(feature = "plot")]
pub fn draw_plot(report: &MatchingReport, path: &Path) -> anyhow::Result<()> {
    plot::draw(report, path)
}

/// Refuses: cairn-bench was built without its `plot` feature.
///
/// # Errors
/// Always.
#[cfg(not(feature = "plot"))]
pub fn draw_plot(_report: &MatchingReport, _path: &Path) -> anyhow::Result<()> {
    bail!("--plot needs cairn-bench built with its `plot` feature")
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser as _;

    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        args: MatchingBenchArgs,
    }

    #[test]
    fn the_defaults_are_the_issues() {
        let cli = Cli::try_parse_from(["bench"]).expect("parses");
        assert_eq!(cli.args, MatchingBenchArgs::default());
        assert_eq!(cli.args.in_flight, vec![1, 64, 256]);
        assert_eq!(cli.args.recover_orders, 1_000_000);
        assert_eq!(cli.args.recover_events, 10_000_000);
        assert_eq!(cli.args.resting, 10_000);
        cli.args.validate().expect("the defaults are valid");
        let cli = Cli::try_parse_from([
            "bench",
            "--orders",
            "5000",
            "--in-flight",
            "4,8",
            "--skip-recover",
        ])
        .expect("parses");
        assert_eq!(cli.args.orders, 5000);
        assert_eq!(cli.args.in_flight, vec![4, 8]);
        assert!(cli.args.skip_recover);
    }

    #[test]
    fn bad_arguments_are_refused() {
        let bad = [
            MatchingBenchArgs {
                orders: 0,
                ..MatchingBenchArgs::default()
            },
            MatchingBenchArgs {
                runs: 0,
                ..MatchingBenchArgs::default()
            },
            MatchingBenchArgs {
                in_flight: vec![0],
                ..MatchingBenchArgs::default()
            },
            MatchingBenchArgs {
                recover_orders: 1_000,
                recover_events: 1_000,
                ..MatchingBenchArgs::default()
            },
            MatchingBenchArgs {
                recover_orders: 0,
                ..MatchingBenchArgs::default()
            },
            MatchingBenchArgs {
                duration_s: 0.0,
                ..MatchingBenchArgs::default()
            },
        ];
        for args in bad {
            assert!(args.validate().is_err(), "{args:?}");
        }
    }
}
