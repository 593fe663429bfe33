//! A shard's counters, exported by the server as Prometheus text.

use cairn_log::metrics::{Histogram, LogMetrics};
use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// What a shard has done.
#[derive(Debug)]
pub struct ShardMetrics {
    /// Its log writer's counters.
    pub log: Arc<LogMetrics>,
    /// Commands decided.
    pub commands_total: AtomicU64,
    /// Commands refused by the state machine.
    pub refusals_total: AtomicU64,
    /// Commands refused because the queue was full.
    pub overloaded_total: AtomicU64,
    /// Messages waiting in the command queue.
    pub queue_depth: AtomicU64,
    /// Sequencer batches.
    pub batches: AtomicU64,
    /// Records per sequencer batch.
    pub batch_records: Histogram,
    /// Last LSN applied in memory (may be ahead of durable by the batches in flight).
    pub applied_lsn: AtomicU64,
    /// How long the sequencer paused to freeze state for a snapshot.
    pub snapshot_pause: Histogram,
    /// Snapshots written.
    pub snapshots_written: AtomicU64,
    /// LSN of the newest snapshot.
    pub snapshot_lsn: AtomicU64,
}

impl ShardMetrics {
    pub(crate) fn new(log: Arc<LogMetrics>) -> ShardMetrics {
        ShardMetrics {
            log,
            commands_total: AtomicU64::new(0),
            refusals_total: AtomicU64::new(0),
            overloaded_total: AtomicU64::new(0),
            queue_depth: AtomicU64::new(0),
            batches: AtomicU64::new(0),
            batch_records: Histogram::default(),
            applied_lsn: AtomicU64::new(0),
            snapshot_pause: Histogram::default(),
            snapshots_written: AtomicU64::new(0),
            snapshot_lsn: AtomicU64::new(0),
        }
    }
}

type Gauge = fn(&ShardMetrics) -> u64;

const SCALARS: [(&str, &str, &str, Gauge); 16] = [
    (
        "cairn_commands_total",
        "counter",
        "Commands decided by the sequencer.",
        |m| m.commands_total.load(Ordering::Relaxed),
    ),
    (
        "cairn_refusals_total",
        "counter",
        "Commands refused by the state machine.",
        |m| m.refusals_total.load(Ordering::Relaxed),
    ),
    (
        "cairn_overloaded_total",
        "counter",
        "Commands refused because the command queue was full.",
        |m| m.overloaded_total.load(Ordering::Relaxed),
    ),
    (
        "cairn_command_queue_depth",
        "gauge",
        "Messages waiting in the command queue.",
        |m| m.queue_depth.load(Ordering::Relaxed),
    ),
    (
        "cairn_sequencer_batches_total",
        "counter",
        "Sequencer batches.",
        |m| m.batches.load(Ordering::Relaxed),
    ),
    (
        "cairn_applied_lsn",
        "gauge",
        "Last LSN applied in memory.",
        |m| m.applied_lsn.load(Ordering::Relaxed),
    ),
    (
        "cairn_snapshots_written_total",
        "counter",
        "Snapshots written.",
        |m| m.snapshots_written.load(Ordering::Relaxed),
    ),
    (
        "cairn_snapshot_lsn",
        "gauge",
        "LSN of the newest snapshot.",
        |m| m.snapshot_lsn.load(Ordering::Relaxed),
    ),
    (
        "cairn_log_records_written_total",
        "counter",
        "Log records written.",
        |m| m.log.records_written.load(Ordering::Relaxed),
    ),
    (
        "cairn_log_bytes_written_total",
        "counter",
        "Log bytes written, framing included.",
        |m| m.log.bytes_written.load(Ordering::Relaxed),
    ),
    (
        "cairn_log_commits_total",
        "counter",
        "Group commits (one write each).",
        |m| m.log.batches.load(Ordering::Relaxed),
    ),
    ("cairn_log_written_lsn", "gauge", "Last LSN written.", |m| {
        m.log.written_lsn.load(Ordering::Relaxed)
    }),
    ("cairn_log_durable_lsn", "gauge", "Last LSN durable.", |m| {
        m.log.durable_lsn.load(Ordering::Relaxed)
    }),
    (
        "cairn_log_unsynced_records",
        "gauge",
        "Records acknowledged but not yet durable (async mode loss window).",
        |m| m.log.unsynced_records(),
    ),
    (
        "cairn_log_commit_queue_depth",
        "gauge",
        "Submissions waiting for the log writer.",
        |m| m.log.queue_depth.load(Ordering::Relaxed),
    ),
    (
        "cairn_log_stopped",
        "gauge",
        "1 when the log stopped after a storage failure.",
        |m| m.log.stopped.load(Ordering::Relaxed),
    ),
];

type HistogramOf = fn(&ShardMetrics) -> &Histogram;

/// Histograms: name, help, accessor, and whether observations are microseconds (exported as
/// seconds) or plain counts.
const HISTOGRAMS: [(&str, &str, HistogramOf, bool); 4] = [
    (
        "cairn_log_fsync_seconds",
        "fdatasync latency.",
        |m| &m.log.fsync_latency,
        true,
    ),
    (
        "cairn_snapshot_pause_seconds",
        "Sequencer pause to freeze state for a snapshot.",
        |m| &m.snapshot_pause,
        true,
    ),
    (
        "cairn_sequencer_batch_records",
        "Records per sequencer batch.",
        |m| &m.batch_records,
        false,
    ),
    (
        "cairn_log_commit_records",
        "Records per group commit.",
        |m| &m.log.batch_records,
        false,
    ),
];

/// Writes every shard's metrics in Prometheus text format, one group per metric.
pub fn write_prometheus(out: &mut String, shards: &[(u16, &ShardMetrics)]) {
    for (name, kind, help, value) in SCALARS {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for (shard, metrics) in shards {
            let _ = writeln!(out, "{name}{{shard=\"{shard}\"}} {}", value(metrics));
        }
    }
    for (name, help, histogram, micros) in HISTOGRAMS {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        for (shard, metrics) in shards {
            let labels = format!("shard=\"{shard}\"");
            let histogram = histogram(metrics);
            if micros {
                histogram.write_prometheus(out, name, &labels);
            } else {
                write_count_histogram(out, name, &labels, histogram);
            }
        }
    }
}

/// Histograms of counts reuse the microsecond buckets as plain numbers.
fn write_count_histogram(out: &mut String, name: &str, labels: &str, histogram: &Histogram) {
    for (bound, count) in histogram.cumulative() {
        let le = bound.map_or_else(|| "+Inf".to_string(), |b| b.to_string());
        let _ = writeln!(out, "{name}_bucket{{{labels},le=\"{le}\"}} {count}");
    }
    let _ = writeln!(out, "{name}_sum{{{labels}}} {}", histogram.sum_us());
    let _ = writeln!(out, "{name}_count{{{labels}}} {}", histogram.count());
}
