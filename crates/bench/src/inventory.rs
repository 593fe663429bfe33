//! `cairn bench inventory`: Cairn's reservations against PostgreSQL and Redis doing the same
//! check-and-decrement, driven by one load generator in one run.
//!
//! One tokio load generator keeps exactly N requests in flight (N tasks, each issuing its next
//! operation when the previous one answers) against each system in turn, for each workload and
//! each N:
//! - `cairn-http`: `POST /v1/inventory/reservations` of 1 unit with a fresh `request_id` and
//!   `order_id` (through `cairn-client`, one keep-alive HTTP/1.1 connection per request in
//!   flight). By default the server runs in this process, on its own tokio runtime, over an engine
//!   on a fresh data directory in durable `sync` mode: every reply waits for the `fdatasync` of its
//!   group commit. `--cairn-url` measures a running server instead.
//! - `cairn-grpc`: the same reservation as a `Reserve` on the gRPC `Pipeline` stream (tagged
//!   requests, each answered once durable), a few streams each on its own HTTP/2 connection, for
//!   the same server. `--cairn-grpc-url` names the gRPC address of a `--cairn-url` server.
//! - `postgres`: `UPDATE stock SET qty = qty - $1 WHERE sku = $2 AND qty >= $1` on a table of the
//!   benchmark's own, autocommitted, under the server's default durable settings; at most 64
//!   connections, pipelined beyond that.
//! - `redis`: `EVALSHA` of a Lua check-and-decrement over one multiplexed connection, with Redis's
//!   own persistence settings (each row says what they are: often none at all).
//!
//! Workloads: `hot` reserves the same SKU every time; `uniform` picks one of 10,000 SKUs
//! uniformly. Every SKU starts with 2^50 units, so no reservation runs short. Each point warms up
//! (the same load, not counted) before it is measured; the systems take turns point by point, in
//! an order that rotates from run to run, so that all see the same neighbours. Rows carry medians
//! over `--runs` and the spread, and Cairn's rows the ratios to PostgreSQL and to Redis, each
//! taken within one run. A peer that cannot be reached is reported as skipped with the reason.

pub(crate) mod cairn;
pub(crate) mod driver;
pub(crate) mod grpc;
#[cfg(feature = "plot")]
pub(crate) mod plot;
pub(crate) mod postgres;
mod redisdb;
pub mod report;

pub use report::{InventoryReport, InventoryRow, InventorySettings};

use crate::machine;
use crate::stats::spread;
use anyhow::{Context as _, bail};
use driver::{LogActivity, Measured, Pick, drive};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// SKUs of the `uniform` workload.
pub const SKUS: usize = 10_000;
/// Units every SKU starts with (2^50: no reservation ever runs short).
pub const INITIAL_STOCK: i64 = 1 << 50;
/// Units one operation takes.
pub const QTY_PER_OP: i64 = 1;
/// `ttl_ms` of Cairn's reservations: the longest allowed, so none expires during the run.
pub const RESERVATION_TTL_MS: u64 = 86_400_000;
/// Why the `cairn-grpc` rows are not measured against a `--cairn-url` server without a gRPC URL.
pub const GRPC_SKIPPED: &str = "--cairn-url was given without --cairn-grpc-url";
/// Most requests in flight one point may have.
pub const IN_FLIGHT_MAX: usize = 4096;

const DURATION_S_DEFAULT: f64 = 5.0;
const DURATION_S_MAX: f64 = 3600.0;
const WARMUP_S_MAX: f64 = 1.0;
const RUNS_DEFAULT: usize = 3;
const RUNS_MAX: usize = 100;
const IN_FLIGHT_DEFAULT: [usize; 3] = [1, 64, 256];
const POSTGRES_URL_DEFAULT: &str = "host=127.0.0.1 user=postgres dbname=postgres";
const REDIS_URL_DEFAULT: &str = "redis://127.0.0.1:6379";

/// A load: which SKUs the operations go to.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Workload {
    /// Every operation on the same SKU.
    Hot,
    /// Each operation on one of [`SKUS`] SKUs, chosen uniformly.
    Uniform,
}

impl Workload {
    /// Its name in the report.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Workload::Hot => "hot",
            Workload::Uniform => "uniform",
        }
    }

    pub(crate) fn pick(self) -> Pick {
        match self {
            Workload::Hot => Pick::Hot,
            Workload::Uniform => Pick::Uniform { skus: SKUS },
        }
    }
}

/// Arguments of `cairn bench inventory`.
#[derive(clap::Args, Clone, Debug, PartialEq)]
pub struct InventoryBenchArgs {
    /// Seconds measured per point and run, after a warm-up of up to a second.
    #[arg(long, default_value_t = DURATION_S_DEFAULT)]
    pub duration_s: f64,
    /// Requests in flight to measure, comma-separated.
    #[arg(long, value_delimiter = ',', default_values_t = IN_FLIGHT_DEFAULT)]
    pub in_flight: Vec<usize>,
    /// Workloads to measure, comma-separated: `hot` (one SKU), `uniform` (10,000 SKUs).
    #[arg(long, value_enum, value_delimiter = ',', default_values = ["hot", "uniform"])]
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
    /// PostgreSQL connection string (libpq key=value or a postgresql:// URL).
    #[arg(long, default_value = POSTGRES_URL_DEFAULT)]
    pub postgres_url: String,
    /// Redis URL.
    #[arg(long, default_value = REDIS_URL_DEFAULT)]
    pub redis_url: String,
    /// A running Cairn server to measure instead of the in-process one (its durability is its
    /// own). Needs --cairn-token.
    #[arg(long)]
    pub cairn_url: Option<String>,
    /// The gRPC address (`http://HOST:PORT`) of the --cairn-url server, for the `cairn-grpc`
    /// rows; without it they are reported as skipped.
    #[arg(long)]
    pub cairn_grpc_url: Option<String>,
    /// Operator (or admin) token for --cairn-url.
    #[arg(long, env = "CAIRN_TOKEN", hide_env_values = true)]
    pub cairn_token: Option<String>,
}

impl Default for InventoryBenchArgs {
    fn default() -> Self {
        InventoryBenchArgs {
            duration_s: DURATION_S_DEFAULT,
            in_flight: IN_FLIGHT_DEFAULT.to_vec(),
            workloads: vec![Workload::Hot, Workload::Uniform],
            runs: RUNS_DEFAULT,
            json: None,
            plot: None,
            dir: None,
            postgres_url: POSTGRES_URL_DEFAULT.to_string(),
            redis_url: REDIS_URL_DEFAULT.to_string(),
            cairn_url: None,
            cairn_grpc_url: None,
            cairn_token: None,
        }
    }
}

impl InventoryBenchArgs {
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
            bail!("--workloads needs at least one of hot, uniform");
        }
        if !(1..=RUNS_MAX).contains(&self.runs) {
            bail!("--runs must be in 1..={RUNS_MAX}, got {}", self.runs);
        }
        if let Some(url) = &self.cairn_url {
            cairn::check_external(url, self.cairn_token.as_deref())?;
        }
        if let Some(url) = &self.cairn_grpc_url {
            if self.cairn_url.is_none() {
                bail!("--cairn-grpc-url goes with --cairn-url (the in-process server has its own)");
            }
            if !url.starts_with("http://") {
                bail!("--cairn-grpc-url must start with http://, got {url}");
            }
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

/// The systems that are measured.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum System {
    CairnGrpc,
    CairnHttp,
    Postgres,
    Redis,
}

const SYSTEMS: [System; 4] = [
    System::CairnGrpc,
    System::CairnHttp,
    System::Postgres,
    System::Redis,
];

impl System {
    fn name(self) -> &'static str {
        match self {
            System::CairnGrpc => "cairn-grpc",
            System::CairnHttp => "cairn-http",
            System::Postgres => "postgres",
            System::Redis => "redis",
        }
    }
}

/// The figures of one system at one point in one run.
#[derive(Clone, Debug)]
pub(crate) struct Figures {
    pub(crate) system: System,
    pub(crate) workload: Workload,
    pub(crate) in_flight: usize,
    ops_per_s: f64,
    p50_us: Option<f64>,
    p99_us: Option<f64>,
    errors: u64,
    first_error: Option<String>,
    others_cpu_share: Option<f64>,
    own_cpu_share: Option<f64>,
    seconds: f64,
    log: Option<LogActivity>,
}

impl Figures {
    pub(crate) fn new(
        system: System,
        workload: Workload,
        in_flight: usize,
        m: &Measured,
    ) -> Figures {
        Figures {
            system,
            workload,
            in_flight,
            ops_per_s: m.ops_per_s(),
            p50_us: m.quantile_us(0.50),
            p99_us: m.quantile_us(0.99),
            errors: m.errors,
            first_error: m.first_error.clone(),
            others_cpu_share: m.others_cpu_share,
            own_cpu_share: m.own_cpu_share,
            seconds: m.seconds,
            log: m.log,
        }
    }
}

/// The systems under test, each ready or skipped with the reason.
struct Systems {
    cairn: Arc<cairn::CairnHttp>,
    /// The gRPC pipelines, or why there are none.
    cairn_grpc: Result<Arc<grpc::CairnGrpc>, String>,
    /// Cairn's durability, as the settings say it.
    cairn_durability: String,
    /// The in-process server's log counters (none for `--cairn-url`).
    cairn_log: Option<Arc<cairn_log::metrics::LogMetrics>>,
    postgres: Result<postgres::Postgres, String>,
    redis: Result<redisdb::Redis, String>,
}

/// Runs the inventory benchmark: every workload at every in-flight count against Cairn,
/// PostgreSQL and Redis, `--runs` times. Prints the tables (with progress on a terminal while it
/// runs), writes `--json` and draws `--plot` when asked, and returns the report. PostgreSQL's
/// table and Redis's keys are removed at the end, and so is the in-process server's data.
///
/// # Errors
/// Bad arguments; Cairn cannot be started, reached or stocked; writing the JSON or the plot
/// failed. An unreachable PostgreSQL or Redis is not an error: its rows say why they are skipped.
pub fn run_inventory_bench(args: &InventoryBenchArgs) -> anyhow::Result<InventoryReport> {
    args.validate()?;
    let threads = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    let tag = run_tag();
    let skus: Arc<[String]> = (0..SKUS).map(|i| format!("cb-{tag}-{i:05}")).collect();
    let mut settings = InventorySettings {
        duration_s: args.duration_s,
        warmup_s: args.warmup().as_secs_f64(),
        runs: args.runs,
        skus: SKUS,
        initial_stock: INITIAL_STOCK,
        qty_per_op: QTY_PER_OP,
        reservation_ttl_ms: RESERVATION_TTL_MS,
        load_threads: threads,
        postgres_connections_max: postgres::CONNECTIONS_MAX,
        ..InventorySettings::default()
    };

    let server = match &args.cairn_url {
        Some(url) => {
            settings.cairn = url.clone();
            settings.cairn_durability = "as configured on that server".into();
            None
        }
        None => {
            let base = args.dir.clone().unwrap_or_else(default_base_dir);
            std::fs::create_dir_all(&base)
                .with_context(|| format!("creating {}", base.display()))?;
            let fs = machine::file_system_of(&base);
            if matches!(fs.as_str(), "tmpfs" | "ramfs") {
                eprintln!(
                    "warning: {} is on {fs}: fdatasync costs nothing there; pass --dir on a real disk",
                    base.display()
                );
            }
            settings.cairn = "in-process".into();
            settings.cairn_durability =
                "sync (each reply after its group commit's fdatasync)".into();
            settings.dir = Some(base.display().to_string());
            settings.dir_fs = Some(fs);
            settings.server_threads = threads;
            Some(cairn::InProcess::start(
                &base,
                "cairn-bench-inventory-",
                threads,
            )?)
        }
    };
    let (base_url, token) = match (&server, &args.cairn_url) {
        (Some(server), _) => (server.base_url.clone(), server.token.clone()),
        (None, Some(url)) => (url.clone(), args.cairn_token.clone().unwrap_or_default()),
        (None, None) => unreachable!("either a URL or an in-process server"),
    };

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .thread_name("cairn-bench-load")
        .enable_all()
        .build()
        .context("starting the load generator's runtime")?;
    let progress = crate::progress::Progress::new();
    let setup = progress.points("inventory setup", 3);
    setup.set_message("stocking Cairn");
    let cairn = Arc::new(cairn::CairnHttp::new(
        &base_url,
        &token,
        Arc::clone(&skus),
        &tag,
        QTY_PER_OP,
        RESERVATION_TTL_MS,
    )?);
    runtime.block_on(cairn.stock(INITIAL_STOCK))?;
    let grpc_url = match (&server, &args.cairn_grpc_url) {
        (Some(server), _) => Some(server.grpc_url.clone()),
        (None, url) => url.clone(),
    };
    let cairn_grpc = match grpc_url {
        Some(url) => runtime
            .block_on(grpc::CairnGrpc::connect(
                &url,
                &token,
                threads,
                Arc::clone(&skus),
                &tag,
                QTY_PER_OP,
                RESERVATION_TTL_MS,
            ))
            .map(Arc::new)
            .map_err(|e| format!("Cairn's gRPC service not usable: {e:#}")),
        None => Err(GRPC_SKIPPED.to_string()),
    };
    if let Err(reason) = &cairn_grpc {
        eprintln!("warning: {reason}; the cairn-grpc rows are reported as skipped");
    }
    setup.inc(1);
    setup.set_message("setting up PostgreSQL");
    let connections = args
        .in_flight
        .iter()
        .copied()
        .max()
        .unwrap_or(1)
        .min(postgres::CONNECTIONS_MAX);
    let table = format!("cairn_bench_stock_{tag}");
    let postgres = runtime
        .block_on(postgres::Postgres::connect(
            &args.postgres_url,
            connections,
            &table,
            &skus,
            INITIAL_STOCK,
        ))
        .map_err(|e| format!("PostgreSQL not reachable or not usable: {e:#}"));
    setup.inc(1);
    setup.set_message("setting up Redis");
    let redis = runtime
        .block_on(redisdb::Redis::connect(
            &args.redis_url,
            &skus,
            INITIAL_STOCK,
        ))
        .map_err(|e| format!("Redis not reachable or not usable: {e:#}"));
    setup.inc(1);
    setup.finish_and_clear();
    let reasons = [postgres.as_ref().err(), redis.as_ref().err()];
    for reason in reasons.into_iter().flatten() {
        eprintln!("warning: {reason}; its rows are reported as skipped");
    }
    if let Ok(pg) = &postgres {
        settings.postgres_version = Some(pg.version.clone());
        settings.postgres_table = Some(table);
    }
    if let Ok(r) = &redis {
        settings.redis_version = Some(r.version.clone());
        settings.redis_keys = Some(format!("{}*", redisdb::key(&format!("cb-{tag}-"))));
    }
    let systems = Systems {
        cairn,
        cairn_grpc,
        cairn_durability: settings.cairn_durability.clone(),
        cairn_log: server.as_ref().and_then(cairn::InProcess::log_metrics),
        postgres,
        redis,
    };

    let figures = measure_all(args, &runtime, &systems, &skus, &progress);
    progress.finish();

    runtime.block_on(async {
        if let Ok(pg) = &systems.postgres {
            pg.drop_table().await;
        }
        if let Ok(redis) = &systems.redis {
            redis.delete_keys().await;
        }
    });
    let mut report = InventoryReport::new(machine::describe(), settings);
    report.rows = rows(args, &systems, &figures);
    drop(systems);
    drop(runtime);
    if let Some(server) = server {
        server.stop()?;
    }

    println!("{}", report.table());
    if let Some(path) = &args.json {
        report.write_json(path)?;
    }
    if let Some(path) = &args.plot {
        draw_plot(&report, path)?;
    }
    Ok(report)
}

/// Every point of every run, the systems taking turns.
fn measure_all(
    args: &InventoryBenchArgs,
    runtime: &tokio::runtime::Runtime,
    systems: &Systems,
    skus: &Arc<[String]>,
    progress: &crate::progress::Progress,
) -> Vec<Figures> {
    let live: Vec<System> = SYSTEMS
        .into_iter()
        .filter(|s| match s {
            System::CairnHttp => true,
            System::CairnGrpc => systems.cairn_grpc.is_ok(),
            System::Postgres => systems.postgres.is_ok(),
            System::Redis => systems.redis.is_ok(),
        })
        .collect();
    let points = args.points();
    let total = (args.runs * points.len() * live.len()) as u64;
    let bar = progress.points("inventory", total);
    let mut figures = Vec::new();
    for run in 0..args.runs {
        let mut order = live.clone();
        order.rotate_left(run % live.len().max(1));
        for &(workload, in_flight) in &points {
            for &system in &order {
                bar.set_message(format!(
                    "run {}/{}: {} {} at {in_flight} in flight",
                    run + 1,
                    args.runs,
                    system.name(),
                    workload.name()
                ));
                let seed = seed(run, workload, in_flight);
                let measured = runtime.block_on(measure(
                    args, systems, skus, system, workload, in_flight, seed,
                ));
                if let Some(measured) = measured {
                    figures.push(Figures::new(system, workload, in_flight, &measured));
                }
                bar.inc(1);
            }
        }
    }
    bar.finish_and_clear();
    figures
}

async fn measure(
    args: &InventoryBenchArgs,
    systems: &Systems,
    skus: &Arc<[String]>,
    system: System,
    workload: Workload,
    in_flight: usize,
    seed: u64,
) -> Option<Measured> {
    let (pick, warmup, duration) = (workload.pick(), args.warmup(), args.duration());
    Some(match system {
        System::CairnGrpc => {
            let target = Arc::clone(systems.cairn_grpc.as_ref().ok()?);
            let logs = systems.cairn_log.as_slice();
            drive(target, in_flight, pick, warmup, duration, seed, logs).await
        }
        System::CairnHttp => {
            let target = Arc::clone(&systems.cairn);
            let logs = systems.cairn_log.as_slice();
            drive(target, in_flight, pick, warmup, duration, seed, logs).await
        }
        System::Postgres => {
            let pg = systems.postgres.as_ref().ok()?;
            let target = Arc::new(pg.load(Arc::clone(skus), in_flight, QTY_PER_OP));
            drive(target, in_flight, pick, warmup, duration, seed, &[]).await
        }
        System::Redis => {
            let redis = systems.redis.as_ref().ok()?;
            let target = Arc::new(redis.load(QTY_PER_OP));
            drive(target, in_flight, pick, warmup, duration, seed, &[]).await
        }
    })
}

/// The report's rows: for every point, `cairn-grpc`, `cairn-http`, `postgres`, `redis`.
fn rows(args: &InventoryBenchArgs, systems: &Systems, figures: &[Figures]) -> Vec<InventoryRow> {
    let mut rows = Vec::new();
    for (workload, in_flight) in args.points() {
        let name = workload.name();
        let of = |system: System| -> Vec<&Figures> {
            figures
                .iter()
                .filter(|f| {
                    f.system == system && f.workload == workload && f.in_flight == in_flight
                })
                .collect()
        };
        for system in SYSTEMS {
            let skipped = match system {
                System::CairnHttp => None,
                System::CairnGrpc => systems.cairn_grpc.as_ref().err(),
                System::Postgres => systems.postgres.as_ref().err(),
                System::Redis => systems.redis.as_ref().err(),
            };
            if let Some(reason) = skipped {
                rows.push(InventoryRow::skipped(
                    system.name(),
                    name,
                    in_flight,
                    reason,
                ));
                continue;
            }
            let runs = of(system);
            let mut row = aggregate(system.name(), name, in_flight, &runs);
            describe(&mut row, system, systems, in_flight);
            if matches!(system, System::CairnHttp | System::CairnGrpc) {
                let pg = ratios(&runs, &of(System::Postgres));
                (
                    row.ratio_to_postgres,
                    row.ratio_to_postgres_min,
                    row.ratio_to_postgres_max,
                ) = pg;
                let redis = ratios(&runs, &of(System::Redis));
                (
                    row.ratio_to_redis,
                    row.ratio_to_redis_min,
                    row.ratio_to_redis_max,
                ) = redis;
            }
            rows.push(row);
        }
    }
    rows
}

/// Medians and spread of one system's runs at one point.
pub(crate) fn aggregate(
    system: &str,
    workload: &str,
    in_flight: usize,
    runs: &[&Figures],
) -> InventoryRow {
    let mut row = InventoryRow::new(system, workload, in_flight);
    if runs.is_empty() {
        row.skipped = Some("not measured".into());
        return row;
    }
    let median = |values: Vec<f64>| (!values.is_empty()).then(|| spread(&values).median);
    let rates = spread(&runs.iter().map(|f| f.ops_per_s).collect::<Vec<_>>());
    row.ops_per_s = Some(rates.median);
    row.ops_per_s_min = Some(rates.min);
    row.ops_per_s_max = Some(rates.max);
    row.runs = Some(runs.len());
    row.p50_us = median(runs.iter().filter_map(|f| f.p50_us).collect());
    row.p99_us = median(runs.iter().filter_map(|f| f.p99_us).collect());
    row.errors = Some(runs.iter().map(|f| f.errors).sum());
    row.first_error = runs.iter().find_map(|f| f.first_error.clone());
    row.others_cpu_share = median(runs.iter().filter_map(|f| f.others_cpu_share).collect());
    row.own_cpu_share = median(runs.iter().filter_map(|f| f.own_cpu_share).collect());
    let logs: Vec<(LogActivity, f64)> = runs
        .iter()
        .filter_map(|f| f.log.map(|log| (log, f.seconds)))
        .filter(|(log, seconds)| log.fsyncs > 0 && *seconds > 0.0)
        .collect();
    row.fsyncs_per_s = median(logs.iter().map(|(l, s)| l.fsyncs as f64 / s).collect());
    row.records_per_fsync = median(
        logs.iter()
            .map(|(l, _)| l.records as f64 / l.fsyncs as f64)
            .collect(),
    );
    row.fsync_mean_us = median(
        logs.iter()
            .map(|(l, _)| l.fsync_us as f64 / l.fsyncs as f64)
            .collect(),
    );
    row.fsync_busy_share = median(
        logs.iter()
            .map(|(l, s)| l.fsync_us as f64 / 1e6 / s)
            .collect(),
    );
    row
}

/// The median, min and max of the per-run ratios of `ours` to `theirs` (runs are paired by
/// their order: both lists hold one entry per run, in run order).
pub(crate) fn ratios(
    ours: &[&Figures],
    theirs: &[&Figures],
) -> (Option<f64>, Option<f64>, Option<f64>) {
    let per_run: Vec<f64> = ours
        .iter()
        .zip(theirs)
        .filter(|(_, t)| t.ops_per_s > 0.0)
        .map(|(o, t)| o.ops_per_s / t.ops_per_s)
        .collect();
    if per_run.is_empty() {
        return (None, None, None);
    }
    let s = spread(&per_run);
    (Some(s.median), Some(s.min), Some(s.max))
}

/// How the system was driven: connections, pipelining, the operation, durability.
fn describe(row: &mut InventoryRow, system: System, systems: &Systems, in_flight: usize) {
    match system {
        System::CairnGrpc => {
            if let Ok(grpc) = &systems.cairn_grpc {
                row.connections = Some(grpc.stream_count());
                row.pipelined = Some(true);
            }
            row.durability = Some(systems.cairn_durability.clone());
            row.operation = Some(
                "Reserve on the gRPC Pipeline stream (one line of 1 unit at one location, fresh \
                 request_id and order_id, tagged, answered once durable); one stream per \
                 HTTP/2 connection"
                    .into(),
            );
        }
        System::CairnHttp => {
            row.connections = Some(in_flight);
            row.pipelined = Some(false);
            row.durability = Some(systems.cairn_durability.clone());
            row.operation = Some(
                "POST /v1/inventory/reservations, one line of 1 unit at one location, fresh \
                 request_id and order_id (cairn-client, HTTP/1.1 keep-alive, JSON)"
                    .into(),
            );
        }
        System::Postgres => {
            if let Ok(pg) = &systems.postgres {
                let connections = pg.connections_for(in_flight);
                row.connections = Some(connections);
                row.pipelined = Some(in_flight > connections);
                row.operation = Some(postgres::OPERATION.into());
                row.durability = Some(pg.durability.clone());
            }
        }
        System::Redis => {
            if let Ok(redis) = &systems.redis {
                row.connections = Some(1);
                row.pipelined = Some(in_flight > 1);
                row.operation = Some(redisdb::OPERATION.into());
                row.durability = Some(redis.durability.clone());
            }
        }
    }
}

pub(crate) fn seed(run: usize, workload: Workload, in_flight: usize) -> u64 {
    let text = format!("{run}/{}/{in_flight}", workload.name());
    let hash = blake3::hash(text.as_bytes());
    u64::from_le_bytes(hash.as_bytes()[..8].try_into().unwrap_or([0; 8]))
}

/// Eight hex digits that differ from run to run, so that SKUs, request ids, the PostgreSQL table
/// and the Redis keys never meet those of another run (against a server or database used before,
/// or a benchmark running beside this one).
pub(crate) fn run_tag() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let text = format!("{}/{now}", std::process::id());
    blake3::hash(text.as_bytes()).to_hex()[..8].to_string()
}

/// `./target/bench-tmp` when `./target` exists (the disk the workspace is on), else the system's
/// temporary directory.
pub(crate) fn default_base_dir() -> PathBuf {
    let target = Path::new("target");
    if target.is_dir() {
        target.join("bench-tmp")
    } else {
        std::env::temp_dir()
    }
}

#[cfg(feature = "plot")]
fn draw_plot(report: &InventoryReport, path: &Path) -> anyhow::Result<()> {
    plot::draw(report, path)
}

#[cfg(not(feature = "plot"))]
fn draw_plot(_report: &InventoryReport, _path: &Path) -> anyhow::Result<()> {
    bail!("--plot needs cairn-bench built with its `plot` feature")
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser as _;

    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        args: InventoryBenchArgs,
    }

    #[test]
    fn the_defaults_are_the_issues() {
        let cli = Cli::try_parse_from(["bench"]).expect("parses");
        assert_eq!(cli.args, InventoryBenchArgs::default());
        assert_eq!(cli.args.in_flight, vec![1, 64, 256]);
        assert_eq!(cli.args.workloads, vec![Workload::Hot, Workload::Uniform]);
        let cli = Cli::try_parse_from([
            "bench",
            "--in-flight",
            "4,8",
            "--workloads",
            "uniform",
            "--duration-s",
            "0.5",
        ])
        .expect("parses");
        assert_eq!(cli.args.in_flight, vec![4, 8]);
        assert_eq!(cli.args.workloads, vec![Workload::Uniform]);
        assert!((cli.args.warmup().as_secs_f64() - 0.5).abs() < 1e-9);
    }

    #[test]
    fn bad_arguments_are_refused() {
        let bad = [
            InventoryBenchArgs {
                duration_s: 0.0,
                ..InventoryBenchArgs::default()
            },
            InventoryBenchArgs {
                in_flight: vec![0],
                ..InventoryBenchArgs::default()
            },
            InventoryBenchArgs {
                workloads: vec![],
                ..InventoryBenchArgs::default()
            },
            InventoryBenchArgs {
                runs: 0,
                ..InventoryBenchArgs::default()
            },
            InventoryBenchArgs {
                cairn_url: Some("http://127.0.0.1:1".into()),
                ..InventoryBenchArgs::default()
            },
        ];
        for args in bad {
            assert!(args.validate().is_err(), "{args:?}");
        }
    }

    fn figures(system: System, ops_per_s: f64) -> Figures {
        Figures {
            system,
            workload: Workload::Hot,
            in_flight: 1,
            ops_per_s,
            p50_us: Some(1.0),
            p99_us: Some(2.0),
            errors: 0,
            first_error: None,
            others_cpu_share: None,
            own_cpu_share: None,
            seconds: 1.0,
            log: Some(LogActivity {
                records: 100,
                fsyncs: 10,
                fsync_us: 5000,
            }),
        }
    }

    #[test]
    fn ratios_are_taken_within_each_run() {
        let cairn = [
            figures(System::CairnHttp, 100.0),
            figures(System::CairnHttp, 300.0),
            figures(System::CairnHttp, 200.0),
        ];
        let pg = [
            figures(System::Postgres, 50.0),
            figures(System::Postgres, 100.0),
            figures(System::Postgres, 200.0),
        ];
        let ours: Vec<&Figures> = cairn.iter().collect();
        let theirs: Vec<&Figures> = pg.iter().collect();
        assert_eq!(ratios(&ours, &theirs), (Some(2.0), Some(1.0), Some(3.0)));
        let row = aggregate("cairn-http", "hot", 1, &ours);
        assert_eq!(row.ops_per_s, Some(200.0));
        assert_eq!(row.ops_per_s_min, Some(100.0));
        assert_eq!(row.ops_per_s_max, Some(300.0));
        assert_eq!(row.runs, Some(3));
        assert_eq!(row.records_per_fsync, Some(10.0));
        assert_eq!(row.fsyncs_per_s, Some(10.0));
        assert_eq!(row.fsync_mean_us, Some(500.0));
        assert_eq!(row.fsync_busy_share, Some(0.005));
    }

    #[test]
    fn run_tags_are_short_lowercase_hex() {
        let tag = run_tag();
        assert_eq!(tag.len(), 8);
        assert!(
            tag.chars()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
        );
    }
}
