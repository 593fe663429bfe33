//! Cairn's benchmarks, as a library the `cairn bench ...` commands call.
//!
//! `../shared/BENCHMARKS.md` is the contract: a figure counts only beside its peer, measured in
//! the same run on the same machine and quoted as a ratio, with medians of several runs and their
//! spread. So every benchmark here measures its peer itself and reports both rows.
//!
//! The log benchmark ([`run_log_bench`], `cairn bench log`) answers two questions:
//! - **append**: how close does group commit come to the disk's floor? The floor is one thread
//!   doing one `write` + `fdatasync` per batch on a plain file, at the *same* mean batch size that
//!   the log reached with N appenders, so the ratio compares like with like. The log is driven by
//!   N appenders, each appending one 100-byte record at a time and waiting until it is durable:
//!   by default N async tasks on a tokio runtime (as the server's request handlers use the log:
//!   `submit` with a completion that sends on a oneshot channel), or with `--appenders threads`
//!   N OS threads blocking in `GroupCommit::append`.
//!   The two alternate in slices of half a second, so that both see the same disk and the same
//!   neighbours: on a shared virtual machine `fdatasync` is mostly scheduling delay, and that
//!   changes with the other tenants' CPU load (each row says how busy they were).
//! - **recovery**: how long does opening a large log take from zero, and from a snapshot near its
//!   end, beside reading the same segment files sequentially (`cat > /dev/null`)? The page cache
//!   is dropped before each timing when the process may do so (root); otherwise the rows say
//!   `"cache": "warm"`.
//!
//! The pieces: [`report`] (rows, JSON, the table), `append` (the log's side), `floor` (the
//! disk's side), `recover`, `machine` (what the machine is) and, behind the `plot` feature, the
//! PNG drawing. [`matching`] (`cairn bench matching`) compares the order book with the
//! `orderbook-rs` and `lobster` crates and times the recovery of a large book.

#![deny(missing_docs)]

mod append;
mod floor;
pub mod inventory;
mod machine;
pub mod matching;
#[cfg(feature = "plot")]
mod plot;
mod progress;
pub mod publish;
mod recover;
pub mod report;
mod stats;
pub mod txn;

pub use inventory::{InventoryBenchArgs, run_inventory_bench};
pub use matching::{MatchingBenchArgs, MatchingReport, run_matching_bench};
pub use publish::{CountingAlloc, PublishBenchArgs, PublishReport, run_publish_bench};
pub use report::{Machine, Report, Row, Settings};
pub use txn::{TxnBenchArgs, TxnReport, run_txn_bench};

use anyhow::{Context as _, bail};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Size of every record's payload, in bytes (as the issue asks).
pub const PAYLOAD_BYTES: usize = 100;
/// At 256 appenders the log must reach this fraction of the floor's records per second.
pub const TARGET_RATIO_TO_FLOOR: f64 = 0.70;
/// The in-flight count the target applies to.
pub const TARGET_IN_FLIGHT: usize = 256;
/// Most appender threads one point may start.
pub const IN_FLIGHT_MAX: usize = 4096;
/// Longest measured point, in seconds.
pub const DURATION_S_MAX: f64 = 3600.0;
/// Most repetitions of each point.
pub const RUNS_MAX: usize = 100;
/// Longest warm-up before each point, in seconds (shorter when the point itself is shorter).
pub const WARMUP_S_MAX: f64 = 1.0;

const DURATION_S_DEFAULT: f64 = 5.0;
const RECOVER_RECORDS_DEFAULT: u64 = 10_000_000;
const RUNS_DEFAULT: usize = 3;
const IN_FLIGHT_DEFAULT: [usize; 3] = [1, 16, 256];

/// Arguments of `cairn bench log`.
#[derive(clap::Args, Clone, Debug, PartialEq)]
pub struct LogBenchArgs {
    /// Directory to put the benchmark's files in, on the disk to measure (not a tmpfs). A fresh
    /// sub-directory is made there and removed afterwards. Default: `./target/bench-tmp` when
    /// `./target` exists, else the system's temporary directory.
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Seconds measured per point, after a warm-up of up to a second.
    #[arg(long, default_value_t = DURATION_S_DEFAULT)]
    pub duration_s: f64,
    /// Write the results as JSON (the shape of `shared/BENCHMARKS.md`) to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Draw the results as a PNG to this file.
    #[arg(long)]
    pub plot: Option<PathBuf>,
    /// Records in the log whose recovery is timed.
    #[arg(long, default_value_t = RECOVER_RECORDS_DEFAULT)]
    pub recover_records: u64,
    /// Skip the recovery timings (their rows are reported as skipped).
    #[arg(long)]
    pub skip_recover: bool,
    /// Concurrent appenders to measure, comma-separated.
    #[arg(long, value_delimiter = ',', default_values_t = IN_FLIGHT_DEFAULT)]
    pub in_flight: Vec<usize>,
    /// Repetitions of each point; rows carry the median and the spread (min, max).
    #[arg(long, default_value_t = RUNS_DEFAULT)]
    pub runs: usize,
    /// Do not drop the page cache before the recovery timings (rows then say `"cache": "warm"`).
    #[arg(long)]
    pub warm_cache: bool,
    /// What the appenders are: async tasks on a tokio runtime with one worker per core (each
    /// `submit`s with a completion that sends on a oneshot channel, and awaits it), or OS threads
    /// each blocking in `GroupCommit::append`.
    #[arg(long, value_enum, default_value_t = Appenders::Tasks)]
    pub appenders: Appenders,
}

/// What drives the log in the append points.
#[derive(clap::ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Appenders {
    /// Async tasks on a multi-threaded tokio runtime, one worker thread per core.
    #[default]
    Tasks,
    /// One OS thread per appender, blocking in `GroupCommit::append`.
    Threads,
}

impl Appenders {
    /// Its name in the report (`tasks`, `threads`).
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Appenders::Tasks => "tasks",
            Appenders::Threads => "threads",
        }
    }
}

impl Default for LogBenchArgs {
    fn default() -> Self {
        LogBenchArgs {
            dir: None,
            duration_s: DURATION_S_DEFAULT,
            json: None,
            plot: None,
            recover_records: RECOVER_RECORDS_DEFAULT,
            skip_recover: false,
            in_flight: IN_FLIGHT_DEFAULT.to_vec(),
            runs: RUNS_DEFAULT,
            warm_cache: false,
            appenders: Appenders::Tasks,
        }
    }
}

impl LogBenchArgs {
    fn validate(&self) -> anyhow::Result<()> {
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
        if !(1..=RUNS_MAX).contains(&self.runs) {
            bail!("--runs must be in 1..={RUNS_MAX}, got {}", self.runs);
        }
        if !self.skip_recover && self.recover_records < 2 {
            bail!("--recover-records must be at least 2 (or pass --skip-recover)");
        }
        if self.plot.is_some() && !cfg!(feature = "plot") {
            bail!("--plot needs cairn-bench built with its `plot` feature");
        }
        Ok(())
    }

    fn duration(&self) -> Duration {
        Duration::from_secs_f64(self.duration_s)
    }

    fn warmup(&self) -> Duration {
        Duration::from_secs_f64(self.duration_s.min(WARMUP_S_MAX))
    }
}

/// Runs the log benchmark: append throughput of the log against the disk's floor at each
/// in-flight count, then recovery timings. Prints a table (with progress on a terminal while it
/// runs), writes `--json` and draws `--plot` when asked, and returns the report.
///
/// # Errors
/// Bad arguments, any I/O or log error (the benchmark's files are removed all the same), or a
/// failure to write the JSON or the plot.
pub fn run_log_bench(args: &LogBenchArgs) -> anyhow::Result<Report> {
    args.validate()?;
    let base = args.dir.clone().unwrap_or_else(default_base_dir);
    std::fs::create_dir_all(&base).with_context(|| format!("creating {}", base.display()))?;
    let work = tempfile::Builder::new()
        .prefix("cairn-bench-log-")
        .tempdir_in(&base)
        .with_context(|| format!("creating a directory in {}", base.display()))?;
    let mut report = Report::new("log", machine::describe(), settings(args, work.path()));
    if matches!(report.settings.dir_fs.as_str(), "tmpfs" | "ramfs") {
        eprintln!(
            "warning: {} is on {}: fdatasync costs nothing there; pass --dir on a real disk",
            base.display(),
            report.settings.dir_fs
        );
    }
    let progress = progress::Progress::new();
    report
        .rows
        .extend(append::run_points(args, work.path(), &progress)?);
    if args.skip_recover {
        report
            .rows
            .extend(recover::skipped_rows("--skip-recover was given"));
    } else {
        report
            .rows
            .extend(recover::run(args, work.path(), &progress)?);
    }
    progress.finish();
    work.close().context("removing the benchmark's files")?;
    println!("{}", report.table());
    if let Some(path) = &args.json {
        report.write_json(path)?;
    }
    if let Some(path) = &args.plot {
        draw_plot(&report, path)?;
    }
    Ok(report)
}

#[cfg(feature = "plot")]
fn draw_plot(report: &Report, path: &Path) -> anyhow::Result<()> {
    plot::draw(report, path)
}

#[cfg(not(feature = "plot"))]
fn draw_plot(_report: &Report, _path: &Path) -> anyhow::Result<()> {
    bail!("--plot needs cairn-bench built with its `plot` feature")
}

/// `./target/bench-tmp` when `./target` exists (the disk the workspace is on), else the system's
/// temporary directory.
fn default_base_dir() -> PathBuf {
    let target = Path::new("target");
    if target.is_dir() {
        target.join("bench-tmp")
    } else {
        std::env::temp_dir()
    }
}

fn settings(args: &LogBenchArgs, work: &Path) -> Settings {
    Settings {
        duration_s: args.duration_s,
        warmup_s: args.warmup().as_secs_f64(),
        runs: args.runs,
        payload_bytes: PAYLOAD_BYTES,
        recover_records: if args.skip_recover {
            0
        } else {
            args.recover_records
        },
        dir: work.display().to_string(),
        dir_fs: machine::file_system_of(work),
        appenders: args.appenders.name().to_string(),
    }
}
