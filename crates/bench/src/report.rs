//! A benchmark's results: rows in the JSON shape of `shared/BENCHMARKS.md`, and the table.
//!
//! Every row names its `system` (`cairn`, or `floor` for what the bare disk does) and its
//! `workload`. Fields that do not apply to a row are left out of the JSON rather than zeroed.

use anyhow::Context as _;
use serde::{Deserialize, Serialize};
use std::fmt::Write as _;
use std::path::Path;

/// The whole report of one benchmark run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// Which benchmark (`log`).
    pub bench: String,
    /// When the run started, RFC 3339 in UTC.
    pub started_at: String,
    /// The machine it ran on.
    pub machine: Machine,
    /// How it was run.
    pub settings: Settings,
    /// One row per measured point.
    pub rows: Vec<Row>,
}

/// The machine a benchmark ran on.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Machine {
    /// Logical cores available to the process.
    pub cores: usize,
    /// Kernel release (`uname -r`).
    pub kernel: String,
    /// CPU model name.
    pub cpu: String,
}

/// How the log benchmark was run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Settings {
    /// Seconds measured per point.
    pub duration_s: f64,
    /// Seconds of warm-up before each point.
    pub warmup_s: f64,
    /// Repetitions of each point.
    pub runs: usize,
    /// Bytes of each record's payload.
    pub payload_bytes: usize,
    /// Records in the recovered log (0 when recovery was skipped).
    pub recover_records: u64,
    /// Where the files were.
    pub dir: String,
    /// The type of the file system they were on.
    pub dir_fs: String,
    /// What drove the log in the append points: `tasks` (async tasks on a tokio runtime) or
    /// `threads` (one OS thread per appender).
    #[serde(default)]
    pub appenders: String,
}

/// One measured point. Rates and times are medians over the runs; `*_min` and `*_max` give the
/// spread.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Row {
    /// What was measured: `cairn`, or `floor` for the bare disk.
    pub system: String,
    /// The load: `append`, `recover-zero`, `recover-snapshot`, `read-files`.
    pub workload: String,
    /// Concurrent appenders (1 for the single-threaded floor and recovery rows).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub in_flight: Option<usize>,
    /// For the log's append rows, what the appenders were: `tasks` or `threads`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub appenders: Option<String>,
    /// Records per second.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ops_per_s: Option<f64>,
    /// Median latency of one append (of one batch for the floor), in microseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p50_us: Option<f64>,
    /// 99th percentile of the same, in microseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p99_us: Option<f64>,
    /// Mean records per `write` + `fdatasync`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch_records: Option<f64>,
    /// `fdatasync` calls per second.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fsyncs_per_s: Option<f64>,
    /// Mean time inside one `fdatasync`, in microseconds: with `fsyncs_per_s`, how much of the
    /// writer's time the disk took.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fsync_mean_us: Option<f64>,
    /// Share of the measured time spent inside `fdatasync` (0 to 1): how busy the log kept the
    /// disk. The floor is near 1 by construction; the log's share is what its own CPU work, its
    /// thread hand-offs and its waits for submissions leave. Unlike the ratio of rates, it does
    /// not depend on how fast `fdatasync` was in each system's slices.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fsync_busy_share: Option<f64>,
    /// Share of the machine's CPU time that other processes took while this point was measured
    /// (0 to 1): a busy neighbour delays every woken thread on the I/O path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub others_cpu_share: Option<f64>,
    /// Share of the machine's CPU time this benchmark process used meanwhile (0 to 1; kernel
    /// threads working for it, such as the file system's journal, count as others).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub own_cpu_share: Option<f64>,
    /// Cairn's speed as a fraction of the floor's: records per second over the floor's at the
    /// same batch size, or the floor's seconds over Cairn's for recovery.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ratio_to_floor: Option<f64>,
    /// Lowest `ratio_to_floor` over the runs (each run pairs the log with the floor).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ratio_to_floor_min: Option<f64>,
    /// Highest `ratio_to_floor` over the runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ratio_to_floor_max: Option<f64>,
    /// Elapsed seconds (recovery and reading; measured seconds per run for append).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seconds: Option<f64>,
    /// Records involved (replayed by recovery, in the files read).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub records: Option<u64>,
    /// Bytes involved (read, or written as a snapshot).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes: Option<u64>,
    /// Runs the median was taken over.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runs: Option<usize>,
    /// Lowest `ops_per_s` over the runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ops_per_s_min: Option<f64>,
    /// Highest `ops_per_s` over the runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ops_per_s_max: Option<f64>,
    /// Lowest `seconds` over the runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seconds_min: Option<f64>,
    /// Highest `seconds` over the runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seconds_max: Option<f64>,
    /// `cold` when the page cache was dropped before the timing, `warm` when it could not be.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache: Option<String>,
    /// What else a reader needs to know about the row.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// Why the point was not measured (then no figures are given).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skipped: Option<String>,
}

impl Row {
    /// A row with only its system and workload set.
    #[must_use]
    pub fn new(system: &str, workload: &str) -> Row {
        Row {
            system: system.to_string(),
            workload: workload.to_string(),
            ..Row::default()
        }
    }
}

impl Report {
    /// An empty report stamped with the current time.
    #[must_use]
    pub fn new(bench: &str, machine: Machine, settings: Settings) -> Report {
        let started_at =
            humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
        Report {
            bench: bench.to_string(),
            started_at,
            machine,
            settings,
            rows: Vec::new(),
        }
    }

    /// The row of `system` and `workload` at `in_flight` (any, for `None`).
    #[must_use]
    pub fn row(&self, system: &str, workload: &str, in_flight: Option<usize>) -> Option<&Row> {
        self.rows.iter().find(|row| {
            row.system == system
                && row.workload == workload
                && (in_flight.is_none() || row.in_flight == in_flight)
        })
    }

    /// Writes the report as pretty JSON.
    ///
    /// # Errors
    /// I/O errors.
    pub fn write_json(&self, path: &Path) -> anyhow::Result<()> {
        let mut text = serde_json::to_string_pretty(self).context("encoding the report")?;
        text.push('\n');
        std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
    }

    /// The report as a readable table, with the ratios.
    #[must_use]
    pub fn table(&self) -> String {
        let mut out = String::new();
        let s = &self.settings;
        let _ = writeln!(
            out,
            "cairn bench {} at {} on {} cores, {} (kernel {}); files on {} ({})",
            self.bench,
            self.started_at,
            self.machine.cores,
            self.machine.cpu,
            self.machine.kernel,
            s.dir_fs,
            s.dir
        );
        self.append_table(&mut out);
        self.recovery_table(&mut out);
        out
    }

    fn append_table(&self, out: &mut String) {
        let s = &self.settings;
        let _ = writeln!(
            out,
            "\nappend: {}-byte records, each durable (fdatasync) before it is acknowledged; \
             appenders are {}; median of {} run(s) of {} s [min..max]",
            s.payload_bytes, s.appenders, s.runs, s.duration_s
        );
        let header = [
            "in_flight",
            "batch",
            "cairn rec/s",
            "floor rec/s",
            "cairn/floor",
            "cairn p50/p99 us",
            "floor p50/p99 us",
            "fsync us c/f",
            "in fsync c/f",
            "own cpu c/f",
            "others cpu c/f",
        ];
        let _ = writeln!(out, "{}", columns(&header.map(String::from)));
        let cairn_rows = self
            .rows
            .iter()
            .filter(|r| r.system == "cairn" && r.workload == "append");
        for cairn in cairn_rows {
            let floor = self.row("floor", "append", cairn.in_flight);
            let ratio = match (
                cairn.ratio_to_floor,
                cairn.ratio_to_floor_min,
                cairn.ratio_to_floor_max,
            ) {
                (Some(r), Some(min), Some(max)) => format!("{r:.2} [{min:.2}..{max:.2}]"),
                (Some(r), _, _) => format!("{r:.2}"),
                _ => "-".into(),
            };
            let cells = [
                cairn
                    .in_flight
                    .map_or_else(|| "-".into(), |n| n.to_string()),
                cairn
                    .batch_records
                    .map_or_else(|| "-".into(), |b| format!("{b:.1}")),
                rate_with_spread(cairn),
                floor.map_or_else(|| "-".into(), rate_with_spread),
                ratio,
                latencies(Some(cairn)),
                latencies(floor),
                match (cairn.fsync_mean_us, floor.and_then(|f| f.fsync_mean_us)) {
                    (Some(ours), Some(theirs)) => format!("{ours:.0}/{theirs:.0}"),
                    _ => "-".into(),
                },
                match (
                    cairn.fsync_busy_share,
                    floor.and_then(|f| f.fsync_busy_share),
                ) {
                    (Some(ours), Some(theirs)) => {
                        format!("{:.0}%/{:.0}%", ours * 100.0, theirs * 100.0)
                    }
                    _ => "-".into(),
                },
                match (cairn.own_cpu_share, floor.and_then(|f| f.own_cpu_share)) {
                    (Some(ours), Some(theirs)) => {
                        format!("{:.0}%/{:.0}%", ours * 100.0, theirs * 100.0)
                    }
                    _ => "-".into(),
                },
                match (
                    cairn.others_cpu_share,
                    floor.and_then(|f| f.others_cpu_share),
                ) {
                    (Some(ours), Some(theirs)) => {
                        format!("{:.0}%/{:.0}%", ours * 100.0, theirs * 100.0)
                    }
                    _ => "-".into(),
                },
            ];
            let _ = writeln!(out, "{}", columns(&cells));
        }
        let target = crate::TARGET_RATIO_TO_FLOOR;
        let at = crate::TARGET_IN_FLIGHT;
        match self
            .row("cairn", "append", Some(at))
            .and_then(|r| r.ratio_to_floor)
        {
            Some(ratio) => {
                let verdict = if ratio >= target { "met" } else { "NOT MET" };
                let _ = writeln!(
                    out,
                    "target: cairn/floor >= {target:.2} at {at} in flight: {ratio:.2}, {verdict}"
                );
            }
            None => {
                let _ = writeln!(
                    out,
                    "target: cairn/floor >= {target:.2} at {at} in flight: not measured"
                );
            }
        }
    }

    fn recovery_table(&self, out: &mut String) {
        let rows: Vec<&Row> = self
            .rows
            .iter()
            .filter(|r| r.workload != "append")
            .collect();
        if rows.is_empty() {
            return;
        }
        let _ = writeln!(
            out,
            "\nrecovery: {} records of {} bytes",
            self.settings.recover_records, self.settings.payload_bytes
        );
        let _ = writeln!(
            out,
            "{:<18} {:<6} {:>26} {:>12} {:>10} {:>6}  note",
            "workload", "system", "seconds [min..max]", "records/s", "vs floor", "cache"
        );
        for row in rows {
            if let Some(reason) = &row.skipped {
                let _ = writeln!(
                    out,
                    "{:<18} {:<6} skipped: {reason}",
                    row.workload, row.system
                );
                continue;
            }
            let _ = writeln!(
                out,
                "{:<18} {:<6} {:>26} {:>12} {:>10} {:>6}  {}",
                row.workload,
                row.system,
                seconds_with_spread(row),
                row.ops_per_s.map_or_else(|| "-".into(), human),
                row.ratio_to_floor
                    .map_or_else(|| "-".into(), |r| format!("{r:.2}")),
                row.cache.as_deref().unwrap_or("-"),
                row.note.as_deref().unwrap_or(""),
            );
        }
    }
}

/// The append table's cells, right-aligned to their columns' widths.
fn columns(cells: &[String; 11]) -> String {
    const WIDTHS: [usize; 11] = [9, 7, 24, 24, 18, 17, 17, 13, 13, 12, 14];
    let padded: Vec<String> = cells
        .iter()
        .zip(WIDTHS)
        .map(|(cell, width)| format!("{cell:>width$}"))
        .collect();
    padded.join(" ")
}

fn rate_with_spread(row: &Row) -> String {
    if let Some(reason) = &row.skipped {
        return format!("skipped: {reason}");
    }
    let Some(rate) = row.ops_per_s else {
        return "-".into();
    };
    match (row.ops_per_s_min, row.ops_per_s_max) {
        (Some(min), Some(max)) => format!("{} [{}..{}]", human(rate), human(min), human(max)),
        _ => human(rate),
    }
}

fn seconds_with_spread(row: &Row) -> String {
    let Some(seconds) = row.seconds else {
        return "-".into();
    };
    match (row.seconds_min, row.seconds_max) {
        (Some(min), Some(max)) => format!("{seconds:.3} [{min:.3}..{max:.3}]"),
        _ => format!("{seconds:.3}"),
    }
}

fn latencies(row: Option<&Row>) -> String {
    match row.map(|r| (r.p50_us, r.p99_us)) {
        Some((Some(p50), Some(p99))) => format!("{p50:.0}/{p99:.0}"),
        _ => "-".into(),
    }
}

/// A count or rate with three significant digits and a k/M suffix.
pub(crate) fn human(value: f64) -> String {
    let (scaled, suffix) = if value >= 1e6 {
        (value / 1e6, "M")
    } else if value >= 1e3 {
        (value / 1e3, "k")
    } else {
        (value, "")
    };
    let decimals = if scaled >= 100.0 {
        0
    } else if scaled >= 10.0 {
        1
    } else {
        2
    };
    format!("{scaled:.decimals$}{suffix}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_numbers_keep_three_significant_digits() {
        assert_eq!(human(1234.0), "1.23k");
        assert_eq!(human(123_456.0), "123k");
        assert_eq!(human(12_345_678.0), "12.3M");
        assert_eq!(human(5.0), "5.00");
    }

    #[test]
    fn absent_fields_are_left_out_of_the_json() {
        let row = Row {
            in_flight: Some(1),
            ops_per_s: Some(2.0),
            ..Row::new("cairn", "append")
        };
        let json = serde_json::to_string(&row).expect("encodes");
        assert_eq!(
            json,
            r#"{"system":"cairn","workload":"append","in_flight":1,"ops_per_s":2.0}"#
        );
    }
}
