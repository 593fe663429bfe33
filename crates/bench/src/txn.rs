//! `cairn bench txn`: five-line reservations whose SKUs live on two shards, as Cairn's two-phase
//! commit against PostgreSQL's (`PREPARE TRANSACTION` / `COMMIT PREPARED` over two databases)
//! doing the same conditional decrement, driven by one load generator in one run.
//!
//! - `cairn`: an in-process server with two shards on a fresh data directory in durable `sync`
//!   mode, reached over gRPC (the inventory benchmark's fastest front): a `Reserve` of five lines
//!   on the `Pipeline` stream, three SKUs on one shard and two on the other. The server runs it
//!   as a transaction (`Engine::reserve_across`): begin at the coordinator, a hold prepared on
//!   each shard, the decision, phase two, every step logged with `fdatasync` (group commit)
//!   before the reply.
//! - `postgres`: the same five decrements as a two-phase commit over two databases of the
//!   benchmark's own on the local server, one per shard ([`postgres`] says how).
//!
//! Workloads: `txn-5line-2shard` draws each reservation uniformly from a few thousand baskets
//! over 1,000 SKUs per shard; `txn-5line-2shard-hot` reserves the same five SKUs every time (the
//! issue's "hot rows stay fast": Cairn's holds take quantities, PostgreSQL's rows stay locked
//! from the update to `COMMIT PREPARED`). Points, warm-up, runs, medians and spread, the rotation
//! of the systems from run to run and the ratios taken within each run are the inventory
//! benchmark's (`crate::inventory`), whose load generator, gRPC client and in-process server
//! this reuses.

mod basket;
mod cairn;
pub mod postgres;
pub mod report;

pub use basket::{LINES, LINES_ON_FIRST, SHARDS};
pub use report::{TARGET_RATIO_TO_POSTGRES, TxnReport, TxnRow, TxnSettings};

use crate::inventory::driver::{Measured, drive};
use crate::inventory::{Figures, System, Workload as InventoryWorkload, aggregate, ratios, seed};
use crate::machine;
use anyhow::{Context as _, anyhow, bail};
use basket::Baskets;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// SKUs on each shard.
pub const SKUS_PER_SHARD: usize = 1_000;
/// Distinct baskets of the uniform workload.
pub const BASKETS: usize = 16_384;
/// Units every SKU starts with (2^50: no reservation ever runs short).
pub const INITIAL_STOCK: i64 = 1 << 50;
/// Units each line takes.
pub const QTY_PER_LINE: i64 = 1;
/// `ttl_ms` of Cairn's reservations: the longest allowed, so none expires during the run.
pub const RESERVATION_TTL_MS: u64 = 86_400_000;
/// Most requests in flight one point may have.
pub const IN_FLIGHT_MAX: usize = 4096;

const DURATION_S_DEFAULT: f64 = 5.0;
const DURATION_S_MAX: f64 = 3600.0;
const WARMUP_S_MAX: f64 = 1.0;
const RUNS_DEFAULT: usize = 3;
const RUNS_MAX: usize = 100;
const IN_FLIGHT_DEFAULT: [usize; 3] = [1, 64, 256];
const POSTGRES_URL_DEFAULT: &str = "host=127.0.0.1 user=postgres dbname=postgres";
/// Seeds the baskets: the same baskets in every run and on every machine.
const BASKET_SEED: u64 = 0x7478_6e62_6173_6b74;

/// A load: which baskets the reservations take.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Workload {
    /// Each reservation one of [`BASKETS`] baskets, chosen uniformly (`txn-5line-2shard`).
    Uniform,
    /// Every reservation the same five SKUs (`txn-5line-2shard-hot`).
    Hot,
}

impl Workload {
    /// Its name in the report.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Workload::Uniform => "txn-5line-2shard",
            Workload::Hot => "txn-5line-2shard-hot",
        }
    }

    /// The inventory benchmark's workload of the same shape (one basket, or one chosen
    /// uniformly), whose figures and seeds this reuses.
    fn inventory(self) -> InventoryWorkload {
        match self {
            Workload::Uniform => InventoryWorkload::Uniform,
            Workload::Hot => InventoryWorkload::Hot,
        }
    }

    fn pick(self) -> crate::inventory::driver::Pick {
        match self {
            Workload::Uniform => crate::inventory::driver::Pick::Uniform { skus: BASKETS },
            Workload::Hot => crate::inventory::driver::Pick::Hot,
        }
    }

    fn of(workload: InventoryWorkload) -> Workload {
        match workload {
            InventoryWorkload::Uniform => Workload::Uniform,
            InventoryWorkload::Hot => Workload::Hot,
        }
    }
}

/// Arguments of `cairn bench txn`.
#[derive(clap::Args, Clone, Debug, PartialEq)]
pub struct TxnBenchArgs {
    /// Seconds measured per point and run, after a warm-up of up to a second.
    #[arg(long, default_value_t = DURATION_S_DEFAULT)]
    pub duration_s: f64,
    /// Reservations in flight to measure, comma-separated.
    #[arg(long, value_delimiter = ',', default_values_t = IN_FLIGHT_DEFAULT)]
    pub in_flight: Vec<usize>,
    /// Workloads to measure, comma-separated: `uniform` (txn-5line-2shard), `hot` (the same five
    /// SKUs every time).
    #[arg(long, value_enum, value_delimiter = ',', default_values = ["uniform", "hot"])]
    pub workloads: Vec<Workload>,
    /// Repetitions of every point; rows carry the median and the spread (min, max).
    #[arg(long, default_value_t = RUNS_DEFAULT)]
    pub runs: usize,
    /// Write the results as JSON (the shape of `shared/BENCHMARKS.md`) to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Draw the results as a PNG to this file.
    #[arg(long)]
    pub plot: Option<PathBuf>,
    /// Directory for the in-process server's data, on the disk to measure (not a tmpfs). A fresh
    /// sub-directory is made there and removed afterwards. Default: `./target/bench-tmp` when
    /// `./target` exists, else the system's temporary directory.
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// PostgreSQL connection string (libpq key=value or a postgresql:// URL) of a superuser: the
    /// benchmark creates two databases and may raise `max_prepared_transactions`.
    #[arg(long, default_value = POSTGRES_URL_DEFAULT)]
    pub postgres_url: String,
}

impl Default for TxnBenchArgs {
    fn default() -> Self {
        TxnBenchArgs {
            duration_s: DURATION_S_DEFAULT,
            in_flight: IN_FLIGHT_DEFAULT.to_vec(),
            workloads: vec![Workload::Uniform, Workload::Hot],
            runs: RUNS_DEFAULT,
            json: None,
            plot: None,
            dir: None,
            postgres_url: POSTGRES_URL_DEFAULT.to_string(),
        }
    }
}

impl TxnBenchArgs {
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
        if self.workloads.is_empty() {
            bail!("--workloads needs at least one of uniform, hot");
        }
        if !(1..=RUNS_MAX).contains(&self.runs) {
            bail!("--runs must be in 1..={RUNS_MAX}, got {}", self.runs);
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

    /// The points in the order they are measured and reported, without repeats.
    fn points(&self) -> Vec<(Workload, usize)> {
        let mut points = Vec::new();
        for &workload in &self.workloads {
            for &in_flight in &self.in_flight {
                if !points.contains(&(workload, in_flight)) {
                    points.push((workload, in_flight));
                }
            }
        }
        points
    }
}

/// The two systems, Cairn ready and PostgreSQL ready or skipped with the reason.
struct Systems {
    cairn: Arc<crate::inventory::grpc::CairnGrpc>,
    cairn_logs: Vec<Arc<cairn_log::metrics::LogMetrics>>,
    cairn_durability: String,
    postgres: Result<postgres::TwoPhase, String>,
    baskets: Arc<Baskets>,
}

/// Runs the transaction benchmark: every workload at every in-flight count against Cairn and
/// PostgreSQL, `--runs` times. Prints the tables (with progress on a terminal while it runs),
/// writes `--json` and draws `--plot` when asked, and returns the report. PostgreSQL's databases
/// and the in-process server's data are removed at the end.
///
/// # Errors
/// Bad arguments; Cairn cannot be started, reached or stocked; writing the JSON or the plot
/// failed. An unusable PostgreSQL is not an error: its rows say why they are skipped.
pub fn run_txn_bench(args: &TxnBenchArgs) -> anyhow::Result<TxnReport> {
    args.validate()?;
    let threads = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    let tag = crate::inventory::run_tag();
    let baskets =
        Arc::new(Baskets::new(&tag, SKUS_PER_SHARD, BASKETS, BASKET_SEED).map_err(|e| anyhow!(e))?);
    let base = args
        .dir
        .clone()
        .unwrap_or_else(crate::inventory::default_base_dir);
    std::fs::create_dir_all(&base).with_context(|| format!("creating {}", base.display()))?;
    let fs = machine::file_system_of(&base);
    if matches!(fs.as_str(), "tmpfs" | "ramfs") {
        eprintln!(
            "warning: {} is on {fs}: fdatasync costs nothing there; pass --dir on a real disk",
            base.display()
        );
    }
    let mut settings = TxnSettings {
        duration_s: args.duration_s,
        warmup_s: args.warmup().as_secs_f64(),
        runs: args.runs,
        shards: usize::from(SHARDS),
        skus_per_shard: SKUS_PER_SHARD,
        lines: LINES,
        lines_split: format!("{LINES_ON_FIRST}+{}", LINES - LINES_ON_FIRST),
        baskets: BASKETS,
        initial_stock: INITIAL_STOCK,
        qty_per_line: QTY_PER_LINE,
        reservation_ttl_ms: RESERVATION_TTL_MS,
        cairn: "in-process".into(),
        cairn_transport: "grpc".into(),
        cairn_durability: "sync (each reply after the fdatasync of every step's group commit)"
            .into(),
        dir: Some(base.display().to_string()),
        dir_fs: Some(fs),
        load_threads: threads,
        server_threads: threads,
        postgres_pairs_max: postgres::PAIRS_MAX,
        ..TxnSettings::default()
    };
    let server = crate::inventory::cairn::InProcess::start_with_shards(
        &base,
        "cairn-bench-txn-",
        threads,
        SHARDS,
    )?;

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .thread_name("cairn-bench-load")
        .enable_all()
        .build()
        .context("starting the load generator's runtime")?;
    let progress = crate::progress::Progress::new();
    let setup = progress.points("txn setup", 2);
    setup.set_message("stocking Cairn");
    let skus: Arc<[String]> = baskets.skus.iter().cloned().collect();
    let http = Arc::new(crate::inventory::cairn::CairnHttp::new(
        &server.base_url,
        &server.token,
        Arc::clone(&skus),
        &tag,
        QTY_PER_LINE,
        RESERVATION_TTL_MS,
    )?);
    runtime.block_on(http.stock(INITIAL_STOCK))?;
    // Its keep-alive connections must not outlive the server.
    drop(http);
    let grpc = runtime
        .block_on(crate::inventory::grpc::CairnGrpc::connect(
            &server.grpc_url,
            &server.token,
            threads,
            skus,
            &tag,
            QTY_PER_LINE,
            RESERVATION_TTL_MS,
        ))
        .context("Cairn's gRPC service")?;
    settings.cairn_grpc_streams = grpc.stream_count();
    setup.inc(1);
    setup.set_message("setting up PostgreSQL (two databases, prepared transactions)");
    let pairs = args.in_flight.iter().copied().max().unwrap_or(1);
    let postgres = postgres::TwoPhase::setup(
        &runtime,
        &args.postgres_url,
        &tag,
        &baskets,
        INITIAL_STOCK,
        pairs,
    )
    .map_err(|e| format!("PostgreSQL not reachable or not usable: {e}"));
    setup.inc(1);
    setup.finish_and_clear();
    match &postgres {
        Ok(pg) => {
            settings.postgres_version = Some(pg.version.clone());
            settings.postgres_databases = pg.databases.to_vec();
            settings.postgres_prepared_transactions = Some(pg.prepared_transactions.clone());
        }
        Err(reason) => eprintln!("warning: {reason}; its rows are reported as skipped"),
    }
    let systems = Systems {
        cairn: Arc::new(grpc),
        cairn_logs: server.shard_log_metrics(),
        cairn_durability: settings.cairn_durability.clone(),
        postgres,
        baskets,
    };

    let figures = measure_all(args, &runtime, &systems, &progress);
    progress.finish();

    let mut report = TxnReport::new(machine::describe(), settings);
    report.rows = rows(args, &systems, &figures);
    let Systems {
        cairn, postgres, ..
    } = systems;
    drop(cairn);
    if let Ok(pg) = postgres {
        runtime.block_on(pg.cleanup());
    }
    drop(runtime);
    server.stop()?;

    println!("{}", report.table());
    if let Some(path) = &args.json {
        report.write_json(path)?;
    }
    if let Some(path) = &args.plot {
        draw_plot(&report, path)?;
    }
    Ok(report)
}

/// Every point of every run, the systems taking turns (in an order that alternates by run).
fn measure_all(
    args: &TxnBenchArgs,
    runtime: &tokio::runtime::Runtime,
    systems: &Systems,
    progress: &crate::progress::Progress,
) -> Vec<Figures> {
    let mut live = vec![System::CairnGrpc];
    if systems.postgres.is_ok() {
        live.push(System::Postgres);
    }
    let points = args.points();
    let total = (args.runs * points.len() * live.len()) as u64;
    let bar = progress.points("txn", total);
    let mut figures = Vec::new();
    for run in 0..args.runs {
        let mut order = live.clone();
        order.rotate_left(run % live.len());
        for &(workload, in_flight) in &points {
            for &system in &order {
                bar.set_message(format!(
                    "run {}/{}: {} {} at {in_flight} in flight",
                    run + 1,
                    args.runs,
                    system_name(system),
                    workload.name()
                ));
                let seed = seed(run, workload.inventory(), in_flight);
                let measured =
                    runtime.block_on(measure(args, systems, system, workload, in_flight, seed));
                if let Some(measured) = measured {
                    figures.push(Figures::new(
                        system,
                        workload.inventory(),
                        in_flight,
                        &measured,
                    ));
                }
                bar.inc(1);
            }
        }
    }
    bar.finish_and_clear();
    figures
}

async fn measure(
    args: &TxnBenchArgs,
    systems: &Systems,
    system: System,
    workload: Workload,
    in_flight: usize,
    seed: u64,
) -> Option<Measured> {
    let (pick, warmup, duration) = (workload.pick(), args.warmup(), args.duration());
    match system {
        System::CairnGrpc => {
            let target = Arc::new(cairn::CairnTxn {
                grpc: Arc::clone(&systems.cairn),
                baskets: Arc::clone(&systems.baskets),
                qty: QTY_PER_LINE,
            });
            let logs = systems.cairn_logs.as_slice();
            Some(drive(target, in_flight, pick, warmup, duration, seed, logs).await)
        }
        System::Postgres => {
            let pg = systems.postgres.as_ref().ok()?;
            let target = Arc::new(pg.load(Arc::clone(&systems.baskets), in_flight, QTY_PER_LINE));
            Some(drive(target, in_flight, pick, warmup, duration, seed, &[]).await)
        }
        System::CairnHttp | System::Redis => None,
    }
}

fn system_name(system: System) -> &'static str {
    match system {
        System::Postgres => "postgres",
        _ => "cairn",
    }
}

/// The report's rows: for every point, `cairn` then `postgres`.
fn rows(args: &TxnBenchArgs, systems: &Systems, figures: &[Figures]) -> Vec<TxnRow> {
    let mut rows = Vec::new();
    for (workload, in_flight) in args.points() {
        let name = workload.name();
        let of = |system: System| -> Vec<&Figures> {
            figures
                .iter()
                .filter(|f| {
                    f.system == system
                        && Workload::of(f.workload) == workload
                        && f.in_flight == in_flight
                })
                .collect()
        };
        let mut cairn = TxnRow {
            row: aggregate("cairn", name, in_flight, &of(System::CairnGrpc)),
            transport: Some("grpc".into()),
            target_met: None,
        };
        cairn.row.connections = Some(systems.cairn.stream_count());
        cairn.row.pipelined = Some(true);
        cairn.row.durability = Some(systems.cairn_durability.clone());
        cairn.row.operation = Some(
            "Reserve of 5 lines (1 unit each, 3 SKUs on one shard and 2 on the other) on the gRPC \
             Pipeline stream, fresh request_id and order_id, answered once the transaction's \
             decision and phase two are durable; one stream per HTTP/2 connection"
                .into(),
        );
        let mut pg = TxnRow {
            transport: Some("postgres".into()),
            ..TxnRow::new("postgres", name, in_flight)
        };
        match &systems.postgres {
            Ok(two_phase) => {
                let runs = of(System::Postgres);
                (
                    cairn.row.ratio_to_postgres,
                    cairn.row.ratio_to_postgres_min,
                    cairn.row.ratio_to_postgres_max,
                ) = ratios(&of(System::CairnGrpc), &runs);
                cairn.target_met = cairn
                    .row
                    .ratio_to_postgres
                    .map(|r| r >= TARGET_RATIO_TO_POSTGRES);
                pg.row = aggregate("postgres", name, in_flight, &runs);
                let pairs = two_phase.pairs_for(in_flight);
                pg.row.connections = Some(pairs);
                pg.row.pipelined = Some(false);
                pg.row.operation = Some(postgres::OPERATION.into());
                pg.row.durability = Some(two_phase.durability.clone());
            }
            Err(reason) => pg.row.skipped = Some(reason.clone()),
        }
        rows.push(cairn);
        rows.push(pg);
    }
    rows
}

#[cfg(feature = "plot")]
fn draw_plot(report: &TxnReport, path: &Path) -> anyhow::Result<()> {
    use plotters::style::RGBColor;
    // The inventory's plot, over the same rows.
    let mut shaped = crate::inventory::InventoryReport::new(
        report.machine.clone(),
        crate::inventory::InventorySettings::default(),
    );
    shaped.rows = report.rows.iter().map(|r| r.row.clone()).collect();
    crate::inventory::plot::draw_with(
        &shaped,
        path,
        "5-line reservations over 2 shards, two-phase commit: per second (log scale); \
         ratio cairn over postgres",
        &[
            ("cairn", RGBColor(44, 160, 44)),
            ("postgres", RGBColor(255, 127, 14)),
        ],
    )
}

#[cfg(not(feature = "plot"))]
fn draw_plot(_report: &TxnReport, _path: &Path) -> anyhow::Result<()> {
    bail!("--plot needs cairn-bench built with its `plot` feature")
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser as _;

    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        args: TxnBenchArgs,
    }

    #[test]
    fn the_defaults_are_the_issues() {
        let cli = Cli::try_parse_from(["bench"]).expect("parses");
        assert_eq!(cli.args, TxnBenchArgs::default());
        assert_eq!(cli.args.in_flight, vec![1, 64, 256]);
        assert_eq!(cli.args.workloads, vec![Workload::Uniform, Workload::Hot]);
        assert_eq!(Workload::Uniform.name(), "txn-5line-2shard");
        let cli = Cli::try_parse_from([
            "bench",
            "--in-flight",
            "1,8",
            "--workloads",
            "uniform",
            "--duration-s",
            "0.5",
        ])
        .expect("parses");
        assert_eq!(cli.args.in_flight, vec![1, 8]);
        assert_eq!(cli.args.workloads, vec![Workload::Uniform]);
        assert!((cli.args.warmup().as_secs_f64() - 0.5).abs() < 1e-9);
    }

    #[test]
    fn bad_arguments_are_refused() {
        let bad = [
            TxnBenchArgs {
                duration_s: 0.0,
                ..TxnBenchArgs::default()
            },
            TxnBenchArgs {
                in_flight: vec![0],
                ..TxnBenchArgs::default()
            },
            TxnBenchArgs {
                in_flight: vec![],
                ..TxnBenchArgs::default()
            },
            TxnBenchArgs {
                workloads: vec![],
                ..TxnBenchArgs::default()
            },
            TxnBenchArgs {
                runs: 0,
                ..TxnBenchArgs::default()
            },
        ];
        for args in bad {
            assert!(args.validate().is_err(), "{args:?}");
        }
    }

    #[test]
    fn workloads_map_both_ways() {
        for workload in [Workload::Uniform, Workload::Hot] {
            assert_eq!(Workload::of(workload.inventory()), workload);
        }
    }
}
