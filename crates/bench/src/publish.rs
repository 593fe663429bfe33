//! `cairn bench publish`: versioned publishing end to end through the HTTP API of an in-process
//! server (durable `sync` mode: every answer after its group commit's `fdatasync`).
//!
//! Each run, on one server:
//! - **publish-1m**: a fresh dataset (guardrails on: `amount` bounds and at most 50% change) gets
//!   a draft of `--keys` keys, uploaded as `POST /v1/drafts` and `POST /v1/drafts/{id}/changes`
//!   appends within the request limits (`upload_s`, not part of the release), then is released.
//!   The first run's dataset is the one the changes and the readers use afterwards.
//! - **publish-10k**: a change of `--change-keys` keys spread evenly over that dataset, uploaded
//!   then released.
//! - **rollback**: `POST /v1/rollbacks` to the release that was live before that change.
//! - **read-idle** and **read-publishing**: `--readers` tasks each `GET
//!   /v1/datasets/{name}/keys/{key}` of random keys one after another, first with nothing else
//!   running, then (or in the other order, alternating from run to run) while one task uploads
//!   and releases `--change-keys`-key changes on the same dataset one after another.
//!
//! Time to live (`seconds`) runs from sending `POST /v1/releases` (or `/v1/rollbacks`) until a
//! reader is served the new release (checked by `release_id` and by the value's revision). The
//! server refreshes its view before it answers, so this is the request plus one read.
//!
//! `bytes_added` comes from [`CountingAlloc`], which the binary must install: the change in bytes
//! the whole process holds, from before the draft's upload (before the rollback's request) to
//! once the release is served and a short pause has let the server drop the previous view. It
//! counts everything the process allocated meanwhile, the benchmark's own client buffers and the
//! server's idempotency records included; nothing else runs during these steps.

mod alloc;
mod driver;
mod hist;
#[cfg(feature = "plot")]
mod plot;
pub mod report;

pub use alloc::CountingAlloc;
pub use report::{PublishReport, PublishRow, PublishSettings};

use crate::inventory::cairn::InProcess;
use crate::machine::{self, CpuTimes};
use crate::stats::spread;
use anyhow::{Context as _, bail};
use driver::{PublishLoop, Publisher, ReadMeasured, Served, Uploaded, change_indices, key_name};
use report::{PUBLISH_1M, PUBLISH_10K, READ_IDLE, READ_PUBLISHING, ROLLBACK};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// A change of 10,000 keys must be live within this many seconds.
pub const TARGET_PUBLISH_10K_S: f64 = 0.050;
/// A fresh 1,000,000-key release must be live within this many seconds.
pub const TARGET_PUBLISH_1M_S: f64 = 2.0;
/// A rollback must be live within this many seconds.
pub const TARGET_ROLLBACK_S: f64 = 0.001;
/// Read p99 while publishing must be at most this many times the idle p99.
pub const TARGET_READ_P99_RATIO: f64 = 2.0;
/// Most concurrent readers.
pub const READERS_MAX: usize = 1024;
/// Longest read point, in seconds.
pub const DURATION_S_MAX: f64 = 3600.0;
/// Most repetitions.
pub const RUNS_MAX: usize = 100;
/// Most changes per draft request: the state machine's chunk limit, and few enough that a
/// request stays well under the server's body limit.
pub const CHUNK_CHANGES_MAX: usize = if cairn_publishing::DRAFT_CHUNK_CHANGES_MAX < 10_000 {
    cairn_publishing::DRAFT_CHUNK_CHANGES_MAX
} else {
    10_000
};
/// Most encoded bytes of changes per draft request (the server takes bodies up to 1 MiB; the
/// CLI sends the same).
pub const CHUNK_BYTES_MAX: usize = 768 * 1024;

const KEYS_DEFAULT: usize = 1_000_000;
const CHANGE_KEYS_DEFAULT: usize = 10_000;
const READERS_DEFAULT: usize = 8;
const DURATION_S_DEFAULT: f64 = 5.0;
const WARMUP_S_MAX: f64 = 1.0;
const RUNS_DEFAULT: usize = 3;
/// Pause after a release is served before the memory is counted: the server drops the previous
/// view when its follower and the last reader let go of it.
const SETTLE: Duration = Duration::from_millis(100);
/// The dataset the warm-up publishes to (it exercises every request once before the timings).
const WARMUP_DATASET: &str = "bench-warmup";

const _: () = assert!(CHUNK_BYTES_MAX <= cairn_publishing::DRAFT_CHUNK_BYTES_MAX);
const _: () = assert!(CHUNK_CHANGES_MAX <= cairn_publishing::DRAFT_CHUNK_CHANGES_MAX);

/// Arguments of `cairn bench publish`.
#[derive(clap::Args, Clone, Debug, PartialEq)]
pub struct PublishBenchArgs {
    /// Keys of each fresh dataset (one per run), and of the dataset the changes and reads use.
    #[arg(long, default_value_t = KEYS_DEFAULT)]
    pub keys: usize,
    /// Keys of each change released on it.
    #[arg(long, default_value_t = CHANGE_KEYS_DEFAULT)]
    pub change_keys: usize,
    /// Concurrent HTTP readers.
    #[arg(long, default_value_t = READERS_DEFAULT)]
    pub readers: usize,
    /// Seconds measured per read point and run, after a warm-up of up to a second.
    #[arg(long, default_value_t = DURATION_S_DEFAULT)]
    pub duration_s: f64,
    /// Repetitions; rows carry the median and the spread (min, max).
    #[arg(long, default_value_t = RUNS_DEFAULT)]
    pub runs: usize,
    /// Directory for the server's data, on the disk to measure (not a tmpfs). A fresh
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

impl Default for PublishBenchArgs {
    fn default() -> Self {
        PublishBenchArgs {
            keys: KEYS_DEFAULT,
            change_keys: CHANGE_KEYS_DEFAULT,
            readers: READERS_DEFAULT,
            duration_s: DURATION_S_DEFAULT,
            runs: RUNS_DEFAULT,
            dir: None,
            json: None,
            plot: None,
        }
    }
}

impl PublishBenchArgs {
    fn validate(&self) -> anyhow::Result<()> {
        let draft_max = cairn_publishing::DRAFT_CHANGES_MAX;
        if !(1..=draft_max).contains(&self.keys) {
            bail!(
                "--keys must be in 1..={draft_max} (a fresh dataset is one draft), got {}",
                self.keys
            );
        }
        if !(1..=self.keys).contains(&self.change_keys) {
            bail!(
                "--change-keys must be in 1..=--keys ({}), got {}",
                self.keys,
                self.change_keys
            );
        }
        if !(1..=READERS_MAX).contains(&self.readers) {
            bail!(
                "--readers must be in 1..={READERS_MAX}, got {}",
                self.readers
            );
        }
        if !(self.duration_s > 0.0 && self.duration_s <= DURATION_S_MAX) {
            bail!(
                "--duration-s must be in (0, {DURATION_S_MAX}], got {}",
                self.duration_s
            );
        }
        if !(1..=RUNS_MAX).contains(&self.runs) {
            bail!("--runs must be in 1..={RUNS_MAX}, got {}", self.runs);
        }
        let total = self.keys.saturating_mul(self.runs) + self.change_keys;
        let total_max = cairn_publishing::KEYS_TOTAL_MAX;
        if total > total_max {
            bail!(
                "--keys x --runs + --change-keys ({total}) is over the server's {total_max} keys: \
                 each run publishes a fresh dataset"
            );
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

/// Runs the publishing benchmark (see the module's header). Prints the table (with progress on
/// a terminal while it runs), writes `--json` and draws `--plot` when asked, and returns the
/// report. The server's data is removed at the end.
///
/// # Errors
/// Bad arguments; the server cannot be started; a publishing request fails or a release is not
/// served; writing the JSON or the plot failed.
pub fn run_publish_bench(args: &PublishBenchArgs) -> anyhow::Result<PublishReport> {
    args.validate()?;
    let base = args.dir.clone().unwrap_or_else(crate::default_base_dir);
    std::fs::create_dir_all(&base).with_context(|| format!("creating {}", base.display()))?;
    let fs = machine::file_system_of(&base);
    if matches!(fs.as_str(), "tmpfs" | "ramfs") {
        eprintln!(
            "warning: {} is on {fs}: fdatasync costs nothing there; pass --dir on a real disk",
            base.display()
        );
    }
    let counting = alloc::installed();
    if !counting {
        eprintln!(
            "warning: the counting allocator is not installed in this binary: bytes_added is not \
             measured"
        );
    }
    let settings = PublishSettings {
        keys: args.keys,
        change_keys: args.change_keys,
        readers: args.readers,
        duration_s: args.duration_s,
        warmup_s: args.warmup().as_secs_f64(),
        runs: args.runs,
        chunk_changes_max: CHUNK_CHANGES_MAX,
        chunk_bytes_max: CHUNK_BYTES_MAX,
        allocator_counting: counting,
        dir: Some(base.display().to_string()),
        dir_fs: Some(fs),
    };
    let mut report = PublishReport::new(machine::describe(), settings);
    let progress = crate::progress::Progress::new();
    let session = Session::start(&base, counting)?;
    let measured = session.run_all(args, &progress);
    progress.finish();
    let stopped = session.stop();
    let runs = measured?;
    stopped?;
    report.rows = rows(args, &runs);
    println!("{}", report.table());
    if let Some(path) = &args.json {
        report.write_json(path)?;
    }
    if let Some(path) = &args.plot {
        draw_plot(&report, path)?;
    }
    Ok(report)
}

/// Draws `report` as a PNG to `path` (what `--plot` does).
///
/// # Errors
/// Drawing or writing the file failed, or cairn-bench was built without its `plot` feature.
#[cfg(feature = "plot")]
pub fn draw_plot(report: &PublishReport, path: &Path) -> anyhow::Result<()> {
    plot::draw(report, path)
}

/// Refuses: cairn-bench was built without its `plot` feature.
///
/// # Errors
/// Always.
#[cfg(not(feature = "plot"))]
pub fn draw_plot(_report: &PublishReport, _path: &Path) -> anyhow::Result<()> {
    bail!("--plot needs cairn-bench built with its `plot` feature")
}

/// One release or rollback step.
#[derive(Clone, Debug, Default)]
struct Step {
    seconds: f64,
    request_s: f64,
    upload_s: Option<f64>,
    upload_requests: Option<u64>,
    bytes_added: Option<i64>,
    release_bytes_added: Option<i64>,
    fsyncs: f64,
    fsync_s: f64,
    others_cpu_share: Option<f64>,
    own_cpu_share: Option<f64>,
}

/// What one run gave.
struct RunMeasured {
    fresh: Step,
    change: Step,
    rollback: Step,
    idle: ReadMeasured,
    publishing: ReadMeasured,
}

/// The server, the load generator's runtime and the clients, for all runs.
struct Session {
    server: InProcess,
    load: tokio::runtime::Runtime,
    publisher: Arc<Publisher>,
    readers: cairn_client::Client,
    log: Option<Arc<cairn_log::metrics::LogMetrics>>,
    counting: bool,
    /// The next change number of the base dataset (its values' revision).
    next_change: Arc<AtomicU64>,
    /// The release live on the base dataset.
    live_release: Arc<AtomicU64>,
}

/// Where a step started: CPU counters and the bytes counted.
struct Mark {
    cpu: CpuTimes,
    bytes: i64,
}

impl Session {
    fn start(base: &Path, counting: bool) -> anyhow::Result<Session> {
        let threads = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
        let server = InProcess::start(base, "cairn-bench-publish-", threads)?;
        let load = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .thread_name("cairn-bench-load")
            .enable_all()
            .build()
            .context("starting the load generator's runtime")?;
        let publisher = Arc::new(Publisher::new(
            &server.base_url,
            &server.token,
            CHUNK_CHANGES_MAX,
            CHUNK_BYTES_MAX,
        )?);
        let readers = driver::readers_client(&server.base_url, &server.token)?;
        Ok(Session {
            log: server.log_metrics(),
            server,
            load,
            publisher,
            readers,
            counting,
            next_change: Arc::new(AtomicU64::new(1)),
            live_release: Arc::new(AtomicU64::new(0)),
        })
    }

    fn stop(self) -> anyhow::Result<()> {
        drop(self.publisher);
        drop(self.readers);
        drop(self.load);
        self.server.stop()
    }

    fn run_all(
        &self,
        args: &PublishBenchArgs,
        progress: &crate::progress::Progress,
    ) -> anyhow::Result<Vec<RunMeasured>> {
        let setup = progress.points("publish warm-up", 1);
        setup.set_message("every request once, on a small dataset");
        self.load.block_on(self.warm_up(args))?;
        setup.finish_and_clear();
        let bar = progress.points("publish", (args.runs * 5) as u64);
        let mut runs = Vec::with_capacity(args.runs);
        for run in 0..args.runs {
            let say = |what: &str| {
                bar.set_message(format!("run {}/{}: {what}", run + 1, args.runs));
            };
            say(PUBLISH_1M);
            let uploading = progress.records("upload", args.keys as u64);
            let fresh = self.load.block_on(self.fresh_step(args, run, &uploading));
            uploading.finish_and_clear();
            let fresh = fresh?;
            bar.inc(1);
            say(&format!("{PUBLISH_10K} and {ROLLBACK}"));
            let (change, rollback) = self.load.block_on(self.change_and_rollback(args))?;
            bar.inc(2);
            let mut idle = None;
            let mut publishing = None;
            // Alternate which read point goes first, so neither always follows the releases.
            for publish in [run % 2 == 1, run % 2 == 0] {
                say(if publish { READ_PUBLISHING } else { READ_IDLE });
                let point = self.load.block_on(self.read_point(args, publish))?;
                if publish {
                    publishing = Some(point);
                } else {
                    idle = Some(point);
                }
                bar.inc(1);
            }
            runs.push(RunMeasured {
                fresh,
                change,
                rollback,
                idle: idle.unwrap_or_default(),
                publishing: publishing.unwrap_or_default(),
            });
        }
        bar.finish_and_clear();
        Ok(runs)
    }

    /// One small dataset: created, released twice and rolled back, so that connections, buffers
    /// and code paths are warm before anything is timed.
    async fn warm_up(&self, args: &PublishBenchArgs) -> anyhow::Result<()> {
        let publisher = &self.publisher;
        publisher.ready().await?;
        publisher.create_dataset(WARMUP_DATASET).await?;
        let key = key_name(0);
        let mut releases = Vec::new();
        for rev in [0, 1] {
            let draft = publisher
                .upload(WARMUP_DATASET, 0..args.change_keys, rev, None)
                .await?;
            let served = publisher
                .release(draft.draft_id, WARMUP_DATASET, &key, rev)
                .await?;
            releases.push(served.release_id);
        }
        publisher
            .rollback(releases[0], WARMUP_DATASET, &key, 0)
            .await?;
        Ok(())
    }

    fn mark(&self) -> Mark {
        if self.counting {
            alloc::start_counting();
        }
        Mark {
            cpu: CpuTimes::now(),
            bytes: alloc::counted_bytes(),
        }
    }

    fn fsyncs(&self) -> (u64, u64) {
        self.log.as_ref().map_or((0, 0), |log| {
            (log.fsync_latency.count(), log.fsync_latency.sum_us())
        })
    }

    /// Completes a step once its release is served: waits for the previous view to be dropped,
    /// then reads the bytes counted and the CPU counters.
    async fn finish(
        &self,
        mark: &Mark,
        uploaded: Option<&Uploaded>,
        release_bytes: i64,
        served: &Served,
        fsyncs_before: (u64, u64),
    ) -> Step {
        let fsyncs_after = self.fsyncs();
        tokio::time::sleep(SETTLE).await;
        let bytes = alloc::counted_bytes();
        alloc::stop_counting();
        let now = CpuTimes::now();
        let (others, all) = now.others_since(&mark.cpu);
        Step {
            seconds: served.seconds,
            request_s: served.request_s,
            upload_s: uploaded.map(|u| u.seconds),
            upload_requests: uploaded.map(|u| u.requests),
            bytes_added: self.counting.then(|| bytes - mark.bytes),
            release_bytes_added: self.counting.then(|| bytes - release_bytes),
            fsyncs: fsyncs_after.0.saturating_sub(fsyncs_before.0) as f64,
            fsync_s: fsyncs_after.1.saturating_sub(fsyncs_before.1) as f64 / 1e6,
            others_cpu_share: (all > 0.0).then(|| others / all),
            own_cpu_share: (all > 0.0).then(|| (now.own_s - mark.cpu.own_s) / all),
        }
    }

    /// A fresh dataset of `--keys` keys: created, uploaded, released. The first run's becomes
    /// the base dataset.
    async fn fresh_step(
        &self,
        args: &PublishBenchArgs,
        run: usize,
        bar: &indicatif::ProgressBar,
    ) -> anyhow::Result<Step> {
        let dataset = dataset_name(run);
        let mark = self.mark();
        self.publisher.create_dataset(&dataset).await?;
        let uploaded = self
            .publisher
            .upload(&dataset, 0..args.keys, 0, Some(bar))
            .await?;
        let release_bytes = alloc::counted_bytes();
        let fsyncs = self.fsyncs();
        let served = self
            .publisher
            .release(uploaded.draft_id, &dataset, &key_name(0), 0)
            .await?;
        if run == 0 {
            self.live_release
                .store(served.release_id, Ordering::Relaxed);
        }
        Ok(self
            .finish(&mark, Some(&uploaded), release_bytes, &served, fsyncs)
            .await)
    }

    /// A `--change-keys` change of the base dataset, released, then rolled back.
    async fn change_and_rollback(&self, args: &PublishBenchArgs) -> anyhow::Result<(Step, Step)> {
        let dataset = dataset_name(0);
        let rev = self.next_change.fetch_add(1, Ordering::Relaxed);
        let key = key_name(
            change_indices(args.keys, args.change_keys, rev)
                .next()
                .unwrap_or(0),
        );
        let before = self.live_release.load(Ordering::Relaxed);
        // What the rollback must bring back (untimed).
        let rev_before = self.served_rev(&dataset, &key).await?;

        let mark = self.mark();
        let uploaded = self
            .publisher
            .upload(
                &dataset,
                change_indices(args.keys, args.change_keys, rev),
                rev,
                None,
            )
            .await?;
        let release_bytes = alloc::counted_bytes();
        let fsyncs = self.fsyncs();
        let served = self
            .publisher
            .release(uploaded.draft_id, &dataset, &key, rev)
            .await?;
        self.live_release
            .store(served.release_id, Ordering::Relaxed);
        let change = self
            .finish(&mark, Some(&uploaded), release_bytes, &served, fsyncs)
            .await;

        let mark = self.mark();
        let fsyncs = self.fsyncs();
        let served = self
            .publisher
            .rollback(before, &dataset, &key, rev_before)
            .await?;
        self.live_release
            .store(served.release_id, Ordering::Relaxed);
        let rollback = self.finish(&mark, None, mark.bytes, &served, fsyncs).await;
        Ok((change, rollback))
    }

    /// The revision `key` of `dataset` is served at now.
    async fn served_rev(&self, dataset: &str, key: &str) -> anyhow::Result<u64> {
        let answer = self
            .readers
            .published_value(dataset, key, &cairn_client::ReadContext::default())
            .await
            .with_context(|| format!("reading {dataset}/{key}"))?;
        answer["value"]["rev"]
            .as_u64()
            .with_context(|| format!("{dataset}/{key} has no revision: {answer}"))
    }

    async fn read_point(
        &self,
        args: &PublishBenchArgs,
        publish: bool,
    ) -> anyhow::Result<ReadMeasured> {
        let dataset = dataset_name(0);
        let publishing = publish.then(|| PublishLoop {
            publisher: Arc::clone(&self.publisher),
            dataset: dataset.clone(),
            keys: args.keys,
            change_keys: args.change_keys,
            next_change: Arc::clone(&self.next_change),
            live_release: Arc::clone(&self.live_release),
        });
        driver::read_point(
            self.readers.clone(),
            Arc::from(dataset.as_str()),
            args.keys,
            args.readers,
            args.warmup(),
            args.duration(),
            publishing,
        )
        .await
    }
}

/// The fresh dataset of run `run`; run 0's is the base of the changes and the reads.
fn dataset_name(run: usize) -> String {
    format!("bench-{run}")
}

fn median(values: impl Iterator<Item = f64>) -> Option<f64> {
    let values: Vec<f64> = values.collect();
    (!values.is_empty()).then(|| spread(&values).median)
}

fn step_row(
    workload: &str,
    steps: &[&Step],
    target_s: f64,
    keys: usize,
    dataset_keys: usize,
    note: &str,
) -> PublishRow {
    let seconds = spread(&steps.iter().map(|s| s.seconds).collect::<Vec<_>>());
    let added: Vec<f64> = steps
        .iter()
        .filter_map(|s| s.bytes_added.map(|b| b as f64))
        .collect();
    let added = (!added.is_empty()).then(|| spread(&added));
    PublishRow {
        seconds: Some(seconds.median),
        seconds_min: Some(seconds.min),
        seconds_max: Some(seconds.max),
        target_s: Some(target_s),
        ratio_to_target: Some(seconds.median / target_s),
        request_s: median(steps.iter().map(|s| s.request_s)),
        upload_s: median(steps.iter().filter_map(|s| s.upload_s)),
        upload_requests: median(
            steps
                .iter()
                .filter_map(|s| s.upload_requests.map(|n| n as f64)),
        )
        .map(|n| n as u64),
        bytes_added: added.map(|a| a.median as i64),
        bytes_added_min: added.map(|a| a.min as i64),
        bytes_added_max: added.map(|a| a.max as i64),
        release_bytes_added: median(
            steps
                .iter()
                .filter_map(|s| s.release_bytes_added.map(|b| b as f64)),
        )
        .map(|b| b as i64),
        bytes_per_key: added.map(|a| a.median / keys.max(1) as f64),
        keys: Some(keys as u64),
        dataset_keys: Some(dataset_keys as u64),
        fsyncs: median(steps.iter().map(|s| s.fsyncs)),
        fsync_s: median(steps.iter().map(|s| s.fsync_s)),
        errors: Some(0),
        runs: Some(steps.len()),
        others_cpu_share: median(steps.iter().filter_map(|s| s.others_cpu_share)),
        own_cpu_share: median(steps.iter().filter_map(|s| s.own_cpu_share)),
        note: Some(note.to_string()),
        ..PublishRow::new(workload)
    }
}

fn read_row(workload: &str, args: &PublishBenchArgs, points: &[&ReadMeasured]) -> PublishRow {
    let rates = spread(&points.iter().map(|m| m.ops_per_s()).collect::<Vec<_>>());
    let p99s: Vec<f64> = points.iter().filter_map(|m| m.quantile_us(0.99)).collect();
    let p99 = (!p99s.is_empty()).then(|| spread(&p99s));
    let first_error = points.iter().find_map(|m| m.first_error.clone());
    PublishRow {
        readers: Some(args.readers),
        ops_per_s: Some(rates.median),
        ops_per_s_min: Some(rates.min),
        ops_per_s_max: Some(rates.max),
        p50_us: median(points.iter().filter_map(|m| m.quantile_us(0.50))),
        p99_us: p99.map(|p| p.median),
        p99_us_min: p99.map(|p| p.min),
        p99_us_max: p99.map(|p| p.max),
        errors: Some(points.iter().map(|m| m.errors).sum()),
        runs: Some(points.len()),
        others_cpu_share: median(points.iter().filter_map(|m| m.others_cpu_share)),
        own_cpu_share: median(points.iter().filter_map(|m| m.own_cpu_share)),
        note: first_error.map(|e| format!("first error: {e}")),
        ..PublishRow::new(workload)
    }
}

fn rows(args: &PublishBenchArgs, runs: &[RunMeasured]) -> Vec<PublishRow> {
    let steps = |pick: fn(&RunMeasured) -> &Step| runs.iter().map(pick).collect::<Vec<_>>();
    let change_note = format!(
        "{} keys spread evenly over the {}-key dataset; draft uploaded first (upload_s)",
        args.change_keys, args.keys
    );
    let mut out = vec![
        step_row(
            PUBLISH_10K,
            &steps(|r| &r.change),
            TARGET_PUBLISH_10K_S,
            args.change_keys,
            args.keys,
            &change_note,
        ),
        step_row(
            PUBLISH_1M,
            &steps(|r| &r.fresh),
            TARGET_PUBLISH_1M_S,
            args.keys,
            args.keys,
            "a fresh dataset's first release; draft uploaded first in chunks (upload_s)",
        ),
        step_row(
            ROLLBACK,
            &steps(|r| &r.rollback),
            TARGET_ROLLBACK_S,
            args.change_keys,
            args.keys,
            "POST /v1/rollbacks to the release live before the change, until a reader is served \
             the restoring release",
        ),
    ];
    let idle: Vec<&ReadMeasured> = runs.iter().map(|r| &r.idle).collect();
    let publishing: Vec<&ReadMeasured> = runs.iter().map(|r| &r.publishing).collect();
    out.push(read_row(READ_IDLE, args, &idle));
    let mut row = read_row(READ_PUBLISHING, args, &publishing);
    let p99_ratios: Vec<f64> = runs
        .iter()
        .filter_map(|r| Some(r.publishing.quantile_us(0.99)? / r.idle.quantile_us(0.99)?))
        .collect();
    if !p99_ratios.is_empty() {
        let ratios = spread(&p99_ratios);
        row.p99_ratio_to_idle = Some(ratios.median);
        row.p99_ratio_to_idle_min = Some(ratios.min);
        row.p99_ratio_to_idle_max = Some(ratios.max);
    }
    row.ops_ratio_to_idle = median(
        runs.iter()
            .filter(|r| r.idle.ops_per_s() > 0.0)
            .map(|r| r.publishing.ops_per_s() / r.idle.ops_per_s()),
    );
    row.releases = median(runs.iter().map(|r| r.publishing.releases as f64));
    row.release_seconds = median(
        runs.iter()
            .filter(|r| !r.publishing.release_seconds.is_empty())
            .map(|r| spread(&r.publishing.release_seconds).median),
    );

    let publishing_note = format!(
        "while one task uploads and releases {}-key changes of the same dataset one after \
         another (releases: per run; release s: their time to live under this load)",
        args.change_keys
    );
    row.note = Some(match row.note.take() {
        Some(error) => format!("{publishing_note}; {error}"),
        None => publishing_note,
    });
    out.push(row);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser as _;

    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        args: PublishBenchArgs,
    }

    #[test]
    fn the_defaults_are_the_issues() {
        let cli = Cli::try_parse_from(["bench"]).expect("parses");
        assert_eq!(cli.args, PublishBenchArgs::default());
        assert_eq!(cli.args.keys, 1_000_000);
        assert_eq!(cli.args.change_keys, 10_000);
        cli.args.validate().expect("the defaults are valid");
        let cli = Cli::try_parse_from(["bench", "--keys", "20000", "--change-keys", "200"])
            .expect("parses");
        assert_eq!((cli.args.keys, cli.args.change_keys), (20_000, 200));
    }

    #[test]
    fn bad_arguments_are_refused() {
        let bad = [
            PublishBenchArgs {
                keys: 0,
                ..PublishBenchArgs::default()
            },
            PublishBenchArgs {
                keys: cairn_publishing::DRAFT_CHANGES_MAX + 1,
                ..PublishBenchArgs::default()
            },
            PublishBenchArgs {
                change_keys: 2_000_000,
                ..PublishBenchArgs::default()
            },
            PublishBenchArgs {
                readers: 0,
                ..PublishBenchArgs::default()
            },
            PublishBenchArgs {
                duration_s: 0.0,
                ..PublishBenchArgs::default()
            },
            PublishBenchArgs {
                runs: 20,
                ..PublishBenchArgs::default()
            },
        ];
        for args in bad {
            assert!(args.validate().is_err(), "{args:?}");
        }
    }

    #[test]
    fn a_change_is_spread_over_the_dataset_without_repeats() {
        let keys: Vec<usize> = change_indices(1000, 10, 3).collect();
        assert_eq!(keys, vec![3, 103, 203, 303, 403, 503, 603, 703, 803, 903]);
        let all: Vec<usize> = change_indices(7, 7, 5).collect();
        assert_eq!(all, (0..7).collect::<Vec<_>>());
    }
}
