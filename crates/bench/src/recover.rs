//! The recovery timings: open a large log from zero and from a snapshot near its end, beside
//! reading its segment files sequentially (the floor: what `cat > /dev/null` costs).
//!
//! The page cache is dropped (`/proc/sys/vm/drop_caches`, which needs root) before each timing;
//! when that fails the rows say `"cache": "warm"` and why.

use crate::append::{now_ms, payload_of};
use crate::report::Row;
use crate::stats::spread;
use crate::{LogBenchArgs, PAYLOAD_BYTES};
use anyhow::{Context as _, ensure};
use cairn_log::record::Entry;
use cairn_log::segment::list_segments;
use cairn_log::snapshot::{SnapshotMeta, load_newest_snapshot, write_snapshot};
use cairn_log::storage::FileStorage;
use cairn_log::{ChainHash, LogOptions, ScanStart, open_log};
use cairn_types::Lsn;
use std::io::Read as _;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

/// Records per `LogWriter::append` while the log is built.
const BUILD_BATCH_RECORDS: u64 = 4096;
/// The snapshot is taken this many records before the end (at most half the log).
const SNAPSHOT_TAIL_RECORDS: u64 = 100_000;
/// Size of the synthetic state in the snapshot.
const SNAPSHOT_STATE_BYTES: usize = 8 * 1024 * 1024;
/// Read size of the sequential read, as `cat` uses.
const READ_CHUNK_BYTES: usize = 128 * 1024;
const DROP_CACHES: &str = "/proc/sys/vm/drop_caches";
const RECORD_TYPE: u16 = 1;

const WORKLOADS: [(&str, &str); 3] = [
    ("cairn", "recover-zero"),
    ("cairn", "recover-snapshot"),
    ("floor", "read-files"),
];

/// The recovery rows, reported as skipped.
pub(crate) fn skipped_rows(reason: &str) -> Vec<Row> {
    WORKLOADS
        .iter()
        .map(|(system, workload)| Row {
            skipped: Some(reason.to_string()),
            ..Row::new(system, workload)
        })
        .collect()
}

/// What the built log looks like.
struct Built {
    records: u64,
    snapshot_lsn: Lsn,
    snapshot_chain: ChainHash,
    snapshot_timestamp_ms: u64,
}

/// Builds the log, writes the snapshot, and times each recovery `args.runs` times.
pub(crate) fn run(
    args: &LogBenchArgs,
    dir: &Path,
    progress: &crate::progress::Progress,
) -> anyhow::Result<Vec<Row>> {
    let log_dir = dir.join("recover");
    let built = build(&log_dir, args.recover_records, progress)?;
    let state = synthetic_state(SNAPSHOT_STATE_BYTES);
    let meta = SnapshotMeta {
        lsn: built.snapshot_lsn,
        timestamp_ms: built.snapshot_timestamp_ms,
        chain: built.snapshot_chain,
        state_hash: *blake3::hash(&state).as_bytes(),
    };
    let (_, snapshot_bytes) =
        write_snapshot(&FileStorage, &log_dir, &meta, &state).context("writing the snapshot")?;
    let bar = progress.points("recovery", (args.runs * WORKLOADS.len()) as u64);
    let mut timings = Timings::default();
    for run in 1..=args.runs {
        bar.set_message(format!("recover-zero, run {run}/{}", args.runs));
        timings.cache.push(prepare_cache(args.warm_cache));
        timings.zero.push(recover_zero(&log_dir, built.records)?);
        bar.inc(1);
        bar.set_message(format!("recover-snapshot, run {run}/{}", args.runs));
        timings.cache.push(prepare_cache(args.warm_cache));
        timings.snapshot.push(recover_snapshot(&log_dir, &built)?);
        bar.inc(1);
        bar.set_message(format!("read-files, run {run}/{}", args.runs));
        timings.cache.push(prepare_cache(args.warm_cache));
        let (seconds, bytes) = read_files(&log_dir)?;
        timings.read.push(seconds);
        timings.read_bytes = bytes;
        bar.inc(1);
    }
    bar.finish_and_clear();
    std::fs::remove_dir_all(&log_dir).with_context(|| format!("removing {}", log_dir.display()))?;
    Ok(timings.rows(&built, snapshot_bytes, state.len()))
}

#[derive(Default)]
struct Timings {
    zero: Vec<f64>,
    snapshot: Vec<f64>,
    read: Vec<f64>,
    read_bytes: u64,
    cache: Vec<Result<(), String>>,
}

impl Timings {
    fn rows(&self, built: &Built, snapshot_bytes: u64, state_bytes: usize) -> Vec<Row> {
        let (cache, cache_note) = match self.cache.iter().find_map(|c| c.as_ref().err()) {
            None => ("cold", String::new()),
            Some(reason) => ("warm", format!("; page cache not dropped: {reason}")),
        };
        let read = spread(&self.read).median;
        let timed = |system: &str, workload: &str, seconds: &[f64], records: u64| {
            let s = spread(seconds);
            Row {
                in_flight: Some(1),
                seconds: Some(s.median),
                seconds_min: Some(s.min),
                seconds_max: Some(s.max),
                records: Some(records),
                runs: Some(seconds.len()),
                cache: Some(cache.to_string()),
                ratio_to_floor: Some(read / s.median),
                ..Row::new(system, workload)
            }
        };
        let replayed = built.records - built.snapshot_lsn.0;
        let zero = timed("cairn", "recover-zero", &self.zero, built.records);
        let snapshot = timed("cairn", "recover-snapshot", &self.snapshot, replayed);
        let files = timed("floor", "read-files", &self.read, built.records);
        vec![
            Row {
                ops_per_s: zero.seconds.map(|s| built.records as f64 / s),
                note: Some(format!(
                    "open_log from LSN 0: checks and replays every record{cache_note}"
                )),
                ..zero
            },
            Row {
                bytes: Some(snapshot_bytes),
                note: Some(format!(
                    "load_newest_snapshot ({} MiB state, {snapshot_bytes} bytes on disk) + open_log after LSN {}: \
                     replays the last {replayed} records{cache_note}",
                    state_bytes / (1024 * 1024),
                    built.snapshot_lsn.0
                )),
                ..snapshot
            },
            Row {
                ops_per_s: files.seconds.map(|s| built.records as f64 / s),
                bytes: Some(self.read_bytes),
                ratio_to_floor: None,
                note: Some(format!(
                    "read() of every segment file in {} KiB chunks, like cat > /dev/null{cache_note}",
                    READ_CHUNK_BYTES / 1024
                )),
                ..files
            },
        ]
    }
}

/// Writes `records` records of `PAYLOAD_BYTES` bytes with a `LogWriter`, and remembers the chain
/// at the snapshot point.
fn build(dir: &Path, records: u64, progress: &crate::progress::Progress) -> anyhow::Result<Built> {
    let (mut writer, _) = open_log(
        Arc::new(FileStorage),
        dir,
        LogOptions::default(),
        ScanStart::ZERO,
        &mut |_| Ok(()),
    )
    .with_context(|| format!("opening a log in {}", dir.display()))?;
    ensure!(
        writer.last_lsn() == Lsn::ZERO,
        "{} already holds a log",
        dir.display()
    );
    let snapshot_lsn = records - SNAPSHOT_TAIL_RECORDS.min(records / 2);
    let base_ms = now_ms();
    let mut payloads: Vec<u8> = (0..BUILD_BATCH_RECORDS as usize)
        .flat_map(payload_of)
        .collect();
    let mut built = Built {
        records,
        snapshot_lsn: Lsn(snapshot_lsn),
        snapshot_chain: [0; 16],
        snapshot_timestamp_ms: 0,
    };
    let bar = progress.records("building the log", records);
    let mut written = 0u64;
    while written < records {
        let until = if written < snapshot_lsn {
            snapshot_lsn
        } else {
            records
        };
        let count = (until - written).min(BUILD_BATCH_RECORDS);
        for (index, payload) in payloads
            .chunks_exact_mut(PAYLOAD_BYTES)
            .take(count as usize)
            .enumerate()
        {
            payload[..8].copy_from_slice(&(written + index as u64 + 1).to_le_bytes());
        }
        let entries: Vec<Entry<'_>> = payloads
            .chunks_exact(PAYLOAD_BYTES)
            .take(count as usize)
            .enumerate()
            .map(|(index, payload)| Entry {
                timestamp_ms: base_ms + written + index as u64 + 1,
                record_type: RECORD_TYPE,
                payload,
            })
            .collect();
        writer.append(&entries)?;
        written += count;
        if written == snapshot_lsn {
            built.snapshot_chain = writer.last_chain();
            built.snapshot_timestamp_ms = base_ms + snapshot_lsn;
        }
        bar.inc(count);
    }
    writer.sync()?;
    ensure!(
        writer.last_lsn() == Lsn(records),
        "the built log ends at {:?}, not {records}",
        writer.last_lsn()
    );
    bar.finish_and_clear();
    Ok(built)
}

/// A state blob that compresses about as well as a real one (half noise, half structure).
fn synthetic_state(len: usize) -> Vec<u8> {
    let mut state = 0x2545_F491_4F6C_DD1D_u64;
    let mut bytes = Vec::with_capacity(len + 16);
    let mut counter = 0u64;
    while bytes.len() < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        bytes.extend_from_slice(&state.to_le_bytes());
        bytes.extend_from_slice(&counter.to_le_bytes());
        counter += 1;
    }
    bytes.truncate(len);
    bytes
}

/// Drops the page cache (after `sync`), or says why it could not.
fn prepare_cache(warm_requested: bool) -> Result<(), String> {
    if warm_requested {
        return Err("--warm-cache was given".into());
    }
    let _ = std::process::Command::new("sync").status();
    std::fs::write(DROP_CACHES, "1\n").map_err(|e| format!("writing {DROP_CACHES}: {e}"))
}

fn recover_zero(dir: &Path, records: u64) -> anyhow::Result<f64> {
    let mut replayed = 0u64;
    let started = Instant::now();
    let (writer, outcome) = open_log(
        Arc::new(FileStorage),
        dir,
        LogOptions::default(),
        ScanStart::ZERO,
        &mut |_| {
            replayed += 1;
            Ok(())
        },
    )?;
    let seconds = started.elapsed().as_secs_f64();
    drop(writer);
    ensure!(
        replayed == records,
        "recovery from zero replayed {replayed} records, not {records}"
    );
    ensure!(
        outcome.torn_tail.is_none(),
        "recovery found a torn tail in a cleanly written log"
    );
    Ok(seconds)
}

fn recover_snapshot(dir: &Path, built: &Built) -> anyhow::Result<f64> {
    let mut replayed = 0u64;
    let started = Instant::now();
    let snapshot =
        load_newest_snapshot(&FileStorage, dir, None)?.context("the snapshot was not found")?;
    let start = ScanStart {
        after_lsn: snapshot.meta.lsn,
        chain: snapshot.meta.chain,
    };
    let (writer, _) = open_log(
        Arc::new(FileStorage),
        dir,
        LogOptions::default(),
        start,
        &mut |_| {
            replayed += 1;
            Ok(())
        },
    )?;
    let seconds = started.elapsed().as_secs_f64();
    drop(writer);
    ensure!(
        snapshot.meta.lsn == built.snapshot_lsn,
        "loaded the snapshot at {:?}",
        snapshot.meta.lsn
    );
    let expected = built.records - built.snapshot_lsn.0;
    ensure!(
        replayed == expected,
        "recovery from the snapshot replayed {replayed} records, not {expected}"
    );
    Ok(seconds)
}

/// Reads every segment file sequentially and drops the bytes; returns the seconds and bytes.
fn read_files(dir: &Path) -> anyhow::Result<(f64, u64)> {
    let segments = list_segments(&FileStorage, dir)?;
    let mut buf = vec![0u8; READ_CHUNK_BYTES];
    let mut bytes = 0u64;
    let started = Instant::now();
    for segment in &segments {
        let path = &segment.path;
        let mut file =
            std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
        loop {
            let read = file
                .read(&mut buf)
                .with_context(|| format!("reading {}", path.display()))?;
            if read == 0 {
                break;
            }
            bytes += read as u64;
        }
    }
    Ok((started.elapsed().as_secs_f64(), bytes))
}
