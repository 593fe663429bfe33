//! The append points: the log's durable append throughput with N appenders, side by side with
//! the floor measured at the batch size the log reached.
//!
//! Each appender loops on appending one 100-byte record and waiting until it is durable: an async
//! task on a tokio runtime (`--appenders tasks`, the default, as the server's handlers use the
//! log) `submit`s with a completion that sends on a oneshot channel and awaits it; an OS thread
//! (`--appenders threads`) blocks in [`GroupCommit::append`]. On a shared machine the disk's
//! speed changes from one second to the next (here `fdatasync` flips between about 0.2 ms and
//! 4 ms with the other tenants' load: a woken thread in the I/O path waits for the next 250 Hz
//! tick when the CPUs are busy), so the two are not measured one after the other: each run
//! alternates slices of at most [`SLICE_S_MAX`] seconds, the log's appenders running while the
//! floor waits and then parked while the floor writes, at the mean batch size the log reached in
//! the slice just before.

use crate::floor::Floor;
use crate::machine::CpuTimes;
use crate::report::Row;
use crate::stats::{quantile, spread};
use crate::{Appenders, LogBenchArgs, PAYLOAD_BYTES};
use anyhow::{Context as _, bail};
use cairn_log::storage::FileStorage;
use cairn_log::{
    CommitOptions, GroupCommit, LogError, LogOptions, OwnedEntry, ScanStart, open_log,
};
use std::path::Path;
use std::sync::atomic::{AtomicU8, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::sync::{oneshot, watch};

/// Longest slice of one system before the other takes over, in seconds.
pub const SLICE_S_MAX: f64 = 0.5;
/// Longest wait for the appenders to park between slices.
const PARK_TIMEOUT: Duration = Duration::from_secs(30);
/// The record type the benchmark's records carry (the log does not look at it).
const RECORD_TYPE: u16 = 1;

const WARMING: u8 = 0;
const MEASURING: u8 = 1;
const PAUSED: u8 = 2;
const STOPPING: u8 = 3;

/// What one system did over one run (the sum of its slices).
#[derive(Clone, Debug, Default)]
pub(crate) struct Tally {
    /// Records made durable and acknowledged inside the measured time.
    pub(crate) records: u64,
    /// Measured time.
    pub(crate) seconds: f64,
    /// `fdatasync` calls.
    pub(crate) fsyncs: u64,
    /// Records those calls made durable (for the mean batch size).
    pub(crate) fsynced_records: u64,
    /// Time spent inside those calls, in microseconds.
    pub(crate) fsync_us: u64,
    /// CPU time other processes on the machine used meanwhile, in seconds.
    pub(crate) others_cpu_s: f64,
    /// All CPU time there was meanwhile (every core), in seconds.
    pub(crate) total_cpu_s: f64,
    /// CPU time this process used meanwhile, in seconds.
    pub(crate) own_cpu_s: f64,
    /// Latency of one append (the log) or of one batch (the floor), in microseconds.
    pub(crate) latencies_us: Vec<u64>,
}

impl Tally {
    pub(crate) fn add(&mut self, other: Tally) {
        self.records += other.records;
        self.seconds += other.seconds;
        self.fsyncs += other.fsyncs;
        self.fsynced_records += other.fsynced_records;
        self.fsync_us += other.fsync_us;
        self.others_cpu_s += other.others_cpu_s;
        self.total_cpu_s += other.total_cpu_s;
        self.own_cpu_s += other.own_cpu_s;
        self.latencies_us.extend(other.latencies_us);
    }

    pub(crate) fn ops_per_s(&self) -> f64 {
        self.records as f64 / self.seconds.max(f64::MIN_POSITIVE)
    }

    pub(crate) fn batch_records(&self) -> f64 {
        self.fsynced_records as f64 / self.fsyncs.max(1) as f64
    }
}

/// One run of one system, summarised.
#[derive(Clone, Debug)]
struct Measured {
    ops_per_s: f64,
    seconds: f64,
    records: u64,
    batch_records: f64,
    fsyncs_per_s: f64,
    fsync_mean_us: f64,
    fsync_busy_share: f64,
    others_cpu_share: f64,
    own_cpu_share: f64,
    p50_us: f64,
    p99_us: f64,
}

impl From<Tally> for Measured {
    fn from(mut tally: Tally) -> Measured {
        tally.latencies_us.sort_unstable();
        Measured {
            ops_per_s: tally.ops_per_s(),
            seconds: tally.seconds,
            records: tally.records,
            batch_records: tally.batch_records(),
            fsyncs_per_s: tally.fsyncs as f64 / tally.seconds.max(f64::MIN_POSITIVE),
            fsync_mean_us: tally.fsync_us as f64 / tally.fsyncs.max(1) as f64,
            fsync_busy_share: tally.fsync_us as f64 / 1e6 / tally.seconds.max(f64::MIN_POSITIVE),
            others_cpu_share: tally.others_cpu_s / tally.total_cpu_s.max(f64::MIN_POSITIVE),
            own_cpu_share: tally.own_cpu_s / tally.total_cpu_s.max(f64::MIN_POSITIVE),
            p50_us: quantile(&tally.latencies_us, 0.50) as f64,
            p99_us: quantile(&tally.latencies_us, 0.99) as f64,
        }
    }
}

/// Measures every in-flight count, `args.runs` runs each; two rows per count.
pub(crate) fn run_points(
    args: &LogBenchArgs,
    dir: &Path,
    progress: &crate::progress::Progress,
) -> anyhow::Result<Vec<Row>> {
    let bar = progress.points("append", (args.in_flight.len() * args.runs) as u64);
    let mut rows = Vec::new();
    for &in_flight in &args.in_flight {
        rows.extend(
            run_point(args, dir, in_flight, &bar)
                .with_context(|| format!("append with {in_flight} in flight"))?,
        );
    }
    bar.finish_and_clear();
    Ok(rows)
}

/// The runs of one in-flight count, with a log and its appenders, and a floor file, both removed
/// afterwards; its rows.
fn run_point(
    args: &LogBenchArgs,
    dir: &Path,
    in_flight: usize,
    bar: &indicatif::ProgressBar,
) -> anyhow::Result<Vec<Row>> {
    let log_dir = dir.join(format!("log-{in_flight}"));
    let (writer, _) = open_log(
        Arc::new(FileStorage),
        &log_dir,
        LogOptions::default(),
        ScanStart::ZERO,
        &mut |_| Ok(()),
    )
    .with_context(|| format!("opening a log in {}", log_dir.display()))?;
    let commit = Arc::new(GroupCommit::start(writer, CommitOptions::default())?);
    let mut floor = Floor::create(&dir.join(format!("floor-{in_flight}.dat")))?;
    let gate = Arc::new(Gate::new(in_flight, args.runs));
    let drive = |floor: &mut Floor| drive(args, in_flight, &commit, &gate, floor, bar);
    let (driven, samples) = match args.appenders {
        Appenders::Threads => with_threads(&commit, &gate, &mut floor, drive),
        Appenders::Tasks => with_tasks(&commit, &gate, &mut floor, drive)?,
    };
    let commit = Arc::into_inner(commit).context("the appenders still hold the log")?;
    commit.shutdown()?;
    floor.remove()?;
    std::fs::remove_dir_all(&log_dir).with_context(|| format!("removing {}", log_dir.display()))?;
    let mut runs = driven?;
    for outcome in samples {
        for (tally, latencies) in runs.cairn.iter_mut().zip(outcome?) {
            tally.latencies_us.extend(latencies);
        }
    }
    let measured = |tallies: Vec<Tally>| -> Vec<Measured> {
        tallies.into_iter().map(Measured::from).collect()
    };
    Ok(rows_of(
        args.appenders,
        in_flight,
        &measured(runs.cairn),
        &measured(runs.floor),
    ))
}

/// One appender's latencies, per run, in microseconds.
type Samples = Vec<Vec<u64>>;

/// Runs `drive` with one OS thread per appender; what it measured and each appender's samples.
fn with_threads(
    commit: &Arc<GroupCommit>,
    gate: &Arc<Gate>,
    floor: &mut Floor,
    drive: impl FnOnce(&mut Floor) -> anyhow::Result<Runs>,
) -> (anyhow::Result<Runs>, Vec<anyhow::Result<Samples>>) {
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..gate.appenders)
            .map(|index| scope.spawn(move || appender(commit, gate, index)))
            .collect();
        let driven = drive(floor);
        gate.set(STOPPING);
        let samples = handles
            .into_iter()
            .map(|handle| match handle.join() {
                Ok(result) => result.map_err(anyhow::Error::from),
                Err(_) => Err(anyhow::anyhow!("an appender thread panicked")),
            })
            .collect();
        (driven, samples)
    })
}

/// Runs `drive` with one async task per appender on a tokio runtime with one worker thread per
/// core; what it measured and each appender's samples.
fn with_tasks(
    commit: &Arc<GroupCommit>,
    gate: &Arc<Gate>,
    floor: &mut Floor,
    drive: impl FnOnce(&mut Floor) -> anyhow::Result<Runs>,
) -> anyhow::Result<(anyhow::Result<Runs>, Vec<anyhow::Result<Samples>>)> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .thread_name("cairn-bench-appender")
        .build()
        .context("starting a tokio runtime")?;
    let handles: Vec<_> = (0..gate.appenders)
        .map(|index| runtime.spawn(task_appender(Arc::clone(commit), Arc::clone(gate), index)))
        .collect();
    let driven = drive(floor);
    gate.set(STOPPING);
    let samples = handles
        .into_iter()
        .map(|handle| match runtime.block_on(handle) {
            Ok(result) => result.map_err(anyhow::Error::from),
            Err(_) => Err(anyhow::anyhow!("an appender task panicked")),
        })
        .collect();
    runtime.shutdown_timeout(PARK_TIMEOUT);
    Ok((driven, samples))
}

/// What one in-flight count measured, run by run.
#[derive(Default)]
struct Runs {
    cairn: Vec<Tally>,
    floor: Vec<Tally>,
}

/// Warms both up, then alternates slices of the log and of the floor for each run. The log's
/// latencies are still with the appenders.
fn drive(
    args: &LogBenchArgs,
    in_flight: usize,
    commit: &GroupCommit,
    gate: &Gate,
    floor: &mut Floor,
    bar: &indicatif::ProgressBar,
) -> anyhow::Result<Runs> {
    bar.set_message(format!("{in_flight} in flight: warming up"));
    let warm = cairn_slice(commit, gate, WARMING, args.warmup())?;
    floor.slice(warm.batch_records(), args.warmup())?;
    let slices = (args.duration_s / SLICE_S_MAX).ceil().max(1.0);
    let slice = args.duration().div_f64(slices);
    let mut runs = Runs::default();
    for run in 0..args.runs {
        bar.set_message(format!(
            "{in_flight} in flight: run {}/{}",
            run + 1,
            args.runs
        ));
        gate.run.store(run, Ordering::Release);
        let (mut cairn, mut floor_tally) = (Tally::default(), Tally::default());
        for _ in 0..slices as usize {
            let ours = with_neighbours(|| cairn_slice(commit, gate, MEASURING, slice))?;
            let batch = ours.batch_records();
            cairn.add(ours);
            floor_tally.add(with_neighbours(|| floor.slice(batch, slice))?);
        }
        runs.cairn.push(cairn);
        runs.floor.push(floor_tally);
        bar.inc(1);
    }
    Ok(runs)
}

/// Runs a slice and notes how much CPU the other processes on the machine took meanwhile, and
/// this one.
fn with_neighbours(slice: impl FnOnce() -> anyhow::Result<Tally>) -> anyhow::Result<Tally> {
    let before = CpuTimes::now();
    let mut tally = slice()?;
    let after = CpuTimes::now();
    (tally.others_cpu_s, tally.total_cpu_s) = after.others_since(&before);
    tally.own_cpu_s = (after.own_s - before.own_s).max(0.0);
    Ok(tally)
}

/// Lets the appenders run for `duration` in `phase`, then parks them; what the log did.
fn cairn_slice(
    commit: &GroupCommit,
    gate: &Gate,
    phase: u8,
    duration: Duration,
) -> anyhow::Result<Tally> {
    let before = Counters::read(commit);
    gate.completed.store(0, Ordering::Release);
    let started = Instant::now();
    gate.set(phase);
    std::thread::sleep(duration);
    gate.set(PAUSED);
    let seconds = started.elapsed().as_secs_f64();
    gate.wait_parked()?;
    if let Some(reason) = commit.stopped() {
        bail!("the log stopped: {reason}");
    }
    let after = Counters::read(commit);
    Ok(Tally {
        records: gate.completed.load(Ordering::Acquire),
        seconds,
        fsyncs: after.batches - before.batches,
        fsynced_records: after.records - before.records,
        fsync_us: after.fsync_us - before.fsync_us,
        ..Tally::default()
    })
}

/// The writer's counters at one moment.
struct Counters {
    records: u64,
    batches: u64,
    fsync_us: u64,
}

impl Counters {
    fn read(commit: &GroupCommit) -> Counters {
        let metrics = commit.metrics();
        Counters {
            records: metrics.records_written.load(Ordering::Acquire),
            batches: metrics.batches.load(Ordering::Acquire),
            fsync_us: metrics.fsync_latency.sum_us(),
        }
    }
}

/// Where the appenders learn what to do, and park while the floor runs.
struct Gate {
    phase: AtomicU8,
    /// The phase again, for the async tasks to await a change of.
    phase_watch: watch::Sender<u8>,
    /// Index of the run being measured (latencies are kept per run).
    run: AtomicUsize,
    runs: usize,
    /// Appends completed while `MEASURING` (each appender counts its own and adds them here
    /// when it parks, so that the count costs no shared cache line per append).
    completed: AtomicU64,
    appenders: usize,
    state: Mutex<GateState>,
    /// Wakes the appenders when the phase changes.
    changed: Condvar,
    /// Wakes the driver when an appender parks or exits.
    parked_changed: Condvar,
}

struct GateState {
    phase: u8,
    parked: usize,
    exited: usize,
}

impl Gate {
    fn new(appenders: usize, runs: usize) -> Gate {
        Gate {
            phase: AtomicU8::new(PAUSED),
            phase_watch: watch::Sender::new(PAUSED),
            run: AtomicUsize::new(0),
            runs,
            completed: AtomicU64::new(0),
            appenders,
            state: Mutex::new(GateState {
                phase: PAUSED,
                parked: 0,
                exited: 0,
            }),
            changed: Condvar::new(),
            parked_changed: Condvar::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, GateState> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn set(&self, phase: u8) {
        let mut state = self.lock();
        state.phase = phase;
        self.phase.store(phase, Ordering::Release);
        self.phase_watch.send_replace(phase);
        drop(state);
        self.changed.notify_all();
    }

    /// Blocks an appender while the phase is `PAUSED`.
    fn park(&self) {
        let mut state = self.lock();
        state.parked += 1;
        self.parked_changed.notify_one();
        while state.phase == PAUSED {
            state = self
                .changed
                .wait(state)
                .unwrap_or_else(std::sync::PoisonError::into_inner);
        }
        state.parked -= 1;
    }

    /// Suspends an appender task while the phase is `PAUSED`.
    async fn park_task(&self, phase: &mut watch::Receiver<u8>) {
        self.lock().parked += 1;
        self.parked_changed.notify_one();
        // The sender lives as long as the gate, which the task holds.
        let _ = phase.wait_for(|&phase| phase != PAUSED).await;
        self.lock().parked -= 1;
    }

    fn exit(&self) {
        self.lock().exited += 1;
        self.parked_changed.notify_one();
    }

    /// Waits until every appender is parked (or gone): the log is idle.
    fn wait_parked(&self) -> anyhow::Result<()> {
        let deadline = Instant::now() + PARK_TIMEOUT;
        let mut state = self.lock();
        while state.parked + state.exited < self.appenders {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                bail!(
                    "{} of {} appenders still busy after {PARK_TIMEOUT:?}",
                    self.appenders - state.parked - state.exited,
                    self.appenders
                );
            }
            state = self
                .parked_changed
                .wait_timeout(state, left)
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .0;
        }
        Ok(())
    }
}

/// One appender: its latencies per run.
fn appender(commit: &GroupCommit, gate: &Gate, index: usize) -> Result<Samples, LogError> {
    let result = append_loop(commit, gate, index);
    gate.exit();
    result
}

fn append_loop(commit: &GroupCommit, gate: &Gate, index: usize) -> Result<Samples, LogError> {
    let payload = payload_of(index);
    let timestamp_ms = now_ms();
    let mut tracker = Tracker::new(gate.runs);
    loop {
        let at_start = gate.phase.load(Ordering::Acquire);
        match at_start {
            STOPPING => return Ok(tracker.latencies_us),
            PAUSED => {
                tracker.flush(gate);
                gate.park();
                continue;
            }
            _ => {}
        }
        let run = gate.run.load(Ordering::Acquire);
        let started = Instant::now();
        let entry = OwnedEntry {
            timestamp_ms,
            record_type: RECORD_TYPE,
            payload: payload.clone(),
        };
        commit.append(vec![entry])?;
        tracker.appended(gate, at_start, run, started);
    }
}

/// One appender task: its latencies per run.
async fn task_appender(
    commit: Arc<GroupCommit>,
    gate: Arc<Gate>,
    index: usize,
) -> Result<Samples, LogError> {
    let result = task_loop(&commit, &gate, index).await;
    gate.exit();
    result
}

/// As [`append_loop`], the way an async caller uses the log: `submit` with a completion that
/// sends on a oneshot channel, then await it (the runtime's worker is free meanwhile).
async fn task_loop(commit: &GroupCommit, gate: &Gate, index: usize) -> Result<Samples, LogError> {
    let payload = payload_of(index);
    let timestamp_ms = now_ms();
    let mut tracker = Tracker::new(gate.runs);
    let mut phase = gate.phase_watch.subscribe();
    loop {
        let at_start = gate.phase.load(Ordering::Acquire);
        match at_start {
            STOPPING => return Ok(tracker.latencies_us),
            PAUSED => {
                tracker.flush(gate);
                gate.park_task(&mut phase).await;
                continue;
            }
            _ => {}
        }
        let run = gate.run.load(Ordering::Acquire);
        let started = Instant::now();
        let entry = OwnedEntry {
            timestamp_ms,
            record_type: RECORD_TYPE,
            payload: payload.clone(),
        };
        let (done, durable) = oneshot::channel();
        commit.submit(
            vec![entry],
            Box::new(move |result| {
                let _ = done.send(result);
            }),
        )?;
        match durable.await {
            Ok(result) => {
                result?;
            }
            Err(_) => return Err(LogError::Closed),
        }
        tracker.appended(gate, at_start, run, started);
    }
}

/// What one appender measured: its latencies per run, and its appends not yet added to the
/// gate's count.
struct Tracker {
    latencies_us: Samples,
    completed: u64,
}

impl Tracker {
    fn new(runs: usize) -> Tracker {
        Tracker {
            latencies_us: vec![Vec::new(); runs],
            completed: 0,
        }
    }

    /// Counts an append that completed while measuring, and keeps its latency when it ran wholly
    /// while measuring.
    fn appended(&mut self, gate: &Gate, at_start: u8, run: usize, started: Instant) {
        if gate.phase.load(Ordering::Acquire) == MEASURING {
            self.completed += 1;
            if at_start == MEASURING {
                let elapsed = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
                self.latencies_us[run].push(elapsed);
            }
        }
    }

    /// Adds the appends counted so far to the gate's count (before parking: the driver reads the
    /// count once every appender is parked).
    fn flush(&mut self, gate: &Gate) {
        gate.completed
            .fetch_add(std::mem::take(&mut self.completed), Ordering::Relaxed);
    }
}

/// The rows of one in-flight count: the log's (with its ratio to the floor) and the floor's.
fn rows_of(
    appenders: Appenders,
    in_flight: usize,
    cairn_runs: &[Measured],
    floor_runs: &[Measured],
) -> Vec<Row> {
    let mut cairn = row_of("cairn", in_flight, cairn_runs);
    cairn.appenders = Some(appenders.name().to_string());
    let ratios: Vec<f64> = cairn_runs
        .iter()
        .zip(floor_runs)
        .map(|(ours, theirs)| ours.ops_per_s / theirs.ops_per_s.max(f64::MIN_POSITIVE))
        .collect();
    let ratio = spread(&ratios);
    cairn.ratio_to_floor = Some(ratio.median);
    cairn.ratio_to_floor_min = Some(ratio.min);
    cairn.ratio_to_floor_max = Some(ratio.max);
    cairn.note = Some(
        match appenders {
            Appenders::Tasks => CAIRN_TASKS_NOTE,
            Appenders::Threads => CAIRN_THREADS_NOTE,
        }
        .to_string(),
    );
    let floor = Row {
        note: Some(FLOOR_NOTE.to_string()),
        ..row_of("floor", in_flight, floor_runs)
    };
    vec![cairn, floor]
}

const CAIRN_THREADS_NOTE: &str = "one OS thread per appender, GroupCommit::append of one record \
    per call, Durability::Sync; latency per append";
const CAIRN_TASKS_NOTE: &str = "one tokio task per appender (a worker thread per core), \
    GroupCommit::submit of one record with a oneshot completion, awaited, Durability::Sync; \
    latency per append";
const FLOOR_NOTE: &str = "one thread, write_all + sync_data per batch on a growing file, \
    at the log's mean batch of the slice before (interleaved); latency per batch";

fn row_of(system: &str, in_flight: usize, runs: &[Measured]) -> Row {
    let ops = spread(&runs.iter().map(|m| m.ops_per_s).collect::<Vec<_>>());
    let median = |f: fn(&Measured) -> f64| spread(&runs.iter().map(f).collect::<Vec<_>>()).median;
    Row {
        in_flight: Some(in_flight),
        ops_per_s: Some(ops.median),
        ops_per_s_min: Some(ops.min),
        ops_per_s_max: Some(ops.max),
        p50_us: Some(median(|m| m.p50_us)),
        p99_us: Some(median(|m| m.p99_us)),
        batch_records: Some(median(|m| m.batch_records)),
        fsyncs_per_s: Some(median(|m| m.fsyncs_per_s)),
        fsync_mean_us: Some(median(|m| m.fsync_mean_us)),
        fsync_busy_share: Some(median(|m| m.fsync_busy_share)),
        others_cpu_share: Some(median(|m| m.others_cpu_share)),
        own_cpu_share: Some(median(|m| m.own_cpu_share)),
        seconds: Some(median(|m| m.seconds)),
        records: Some(runs.iter().map(|m| m.records).sum()),
        runs: Some(runs.len()),
        ..Row::new(system, "append")
    }
}

/// A payload that differs between threads and does not compress to nothing.
pub(crate) fn payload_of(seed: usize) -> Vec<u8> {
    let mut state = (seed as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..PAYLOAD_BYTES)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state.to_le_bytes()[0]
        })
        .collect()
}

pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| {
            u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
        })
}
