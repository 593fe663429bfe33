//! Counters the log keeps for `/metrics`: plain atomics, read without locks.

use std::sync::atomic::{AtomicU64, Ordering};

/// Upper bounds of the latency histogram buckets, in microseconds (the last bucket is +Inf).
pub const LATENCY_BUCKETS_US: [u64; 14] = [
    50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 1_000_000,
    5_000_000,
];

/// A fixed-bucket histogram of durations, in the Prometheus shape (cumulative on export).
#[derive(Debug, Default)]
pub struct Histogram {
    buckets: [AtomicU64; LATENCY_BUCKETS_US.len() + 1],
    sum_us: AtomicU64,
    count: AtomicU64,
    max_us: AtomicU64,
}

impl Histogram {
    /// Records one observation.
    pub fn observe_us(&self, value_us: u64) {
        let index = LATENCY_BUCKETS_US
            .iter()
            .position(|&bound| value_us <= bound)
            .unwrap_or(LATENCY_BUCKETS_US.len());
        self.buckets[index].fetch_add(1, Ordering::Relaxed);
        self.sum_us.fetch_add(value_us, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
        self.max_us.fetch_max(value_us, Ordering::Relaxed);
    }

    /// Observations so far.
    #[must_use]
    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    /// Sum of all observations, in microseconds.
    #[must_use]
    pub fn sum_us(&self) -> u64 {
        self.sum_us.load(Ordering::Relaxed)
    }

    /// Largest observation, in microseconds.
    #[must_use]
    pub fn max_us(&self) -> u64 {
        self.max_us.load(Ordering::Relaxed)
    }

    /// Cumulative counts per bucket bound (`None` is +Inf).
    #[must_use]
    pub fn cumulative(&self) -> Vec<(Option<u64>, u64)> {
        let mut total = 0;
        let mut rows = Vec::with_capacity(self.buckets.len());
        for (index, bucket) in self.buckets.iter().enumerate() {
            total += bucket.load(Ordering::Relaxed);
            rows.push((LATENCY_BUCKETS_US.get(index).copied(), total));
        }
        rows
    }

    /// Writes the histogram in Prometheus text format, durations in seconds.
    pub fn write_prometheus(&self, out: &mut String, name: &str, labels: &str) {
        use std::fmt::Write as _;
        let sep = if labels.is_empty() { "" } else { "," };
        for (bound, count) in self.cumulative() {
            let le = bound.map_or_else(|| "+Inf".to_string(), |us| format!("{}", us as f64 / 1e6));
            let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"{le}\"}} {count}");
        }
        let _ = writeln!(out, "{name}_sum{{{labels}}} {}", self.sum_us() as f64 / 1e6);
        let _ = writeln!(out, "{name}_count{{{labels}}} {}", self.count());
    }
}

/// What the group-commit writer has done.
#[derive(Debug, Default)]
pub struct LogMetrics {
    /// Records written.
    pub records_written: AtomicU64,
    /// Bytes written, record framing included.
    pub bytes_written: AtomicU64,
    /// Group commits (one write, and in `sync` mode one fdatasync, each).
    pub batches: AtomicU64,
    /// Records per group commit.
    pub batch_records: Histogram,
    /// fdatasync latency.
    pub fsync_latency: Histogram,
    /// Last LSN written.
    pub written_lsn: AtomicU64,
    /// Last LSN durable.
    pub durable_lsn: AtomicU64,
    /// Submissions waiting for the writer.
    pub queue_depth: AtomicU64,
    /// Submissions refused because the queue was full.
    pub queue_full_total: AtomicU64,
    /// 1 once the writer has stopped after a failure.
    pub stopped: AtomicU64,
}

impl LogMetrics {
    /// Records acknowledged but not yet durable (non-zero only in `async` mode): the loss window.
    #[must_use]
    pub fn unsynced_records(&self) -> u64 {
        self.written_lsn
            .load(Ordering::Relaxed)
            .saturating_sub(self.durable_lsn.load(Ordering::Relaxed))
    }
}
