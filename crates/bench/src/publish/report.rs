//! The results of `cairn bench publish`: rows in the JSON shape of `shared/BENCHMARKS.md`, the
//! table, and the targets of the issue.

use super::{TARGET_PUBLISH_1M_S, TARGET_PUBLISH_10K_S, TARGET_READ_P99_RATIO, TARGET_ROLLBACK_S};
use crate::report::{Machine, human};
use anyhow::Context as _;
use serde::{Deserialize, Serialize};
use std::fmt::Write as _;
use std::path::Path;

/// The workload names of the rows.
pub const PUBLISH_10K: &str = "publish-10k";
/// A fresh dataset's first release.
pub const PUBLISH_1M: &str = "publish-1m";
/// Rolling back the 10k-key change.
pub const ROLLBACK: &str = "rollback";
/// Readers with nothing publishing.
pub const READ_IDLE: &str = "read-idle";
/// The same readers while 10k-key changes are released one after another.
pub const READ_PUBLISHING: &str = "read-publishing";
/// The system every row measures.
pub const SYSTEM: &str = "cairn";

/// The whole report of one `cairn bench publish` run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PublishReport {
    /// `publish`.
    pub bench: String,
    /// When the run started, RFC 3339 in UTC.
    pub started_at: String,
    /// The machine it ran on.
    pub machine: Machine,
    /// How it was run.
    pub settings: PublishSettings,
    /// One row per workload.
    pub rows: Vec<PublishRow>,
}

/// How `cairn bench publish` was run.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PublishSettings {
    /// Keys of each fresh dataset (and of the dataset the changes and the reads go to).
    pub keys: usize,
    /// Keys of each change released on it.
    pub change_keys: usize,
    /// Concurrent HTTP readers.
    pub readers: usize,
    /// Seconds measured per read point and run.
    pub duration_s: f64,
    /// Seconds of warm-up before each read point.
    pub warmup_s: f64,
    /// Repetitions; rows carry the median and the spread.
    pub runs: usize,
    /// Most changes per draft request (the rest go in appends).
    pub chunk_changes_max: usize,
    /// Most encoded bytes of changes per draft request.
    pub chunk_bytes_max: usize,
    /// Whether the counting allocator was installed (else `bytes_added` is not measured).
    pub allocator_counting: bool,
    /// Where the server's data directory was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dir: Option<String>,
    /// The type of the file system it was on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dir_fs: Option<String>,
}

/// One workload. Figures are medians over the runs; `*_min` and `*_max` give the spread.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PublishRow {
    /// `cairn`.
    pub system: String,
    /// One of [`PUBLISH_10K`], [`PUBLISH_1M`], [`ROLLBACK`], [`READ_IDLE`], [`READ_PUBLISHING`].
    pub workload: String,
    /// Time to live: from sending `POST /v1/releases` (or `/v1/rollbacks`) until a reader is
    /// served the new release, in seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seconds: Option<f64>,
    /// Lowest `seconds` over the runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seconds_min: Option<f64>,
    /// Highest `seconds` over the runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seconds_max: Option<f64>,
    /// The target of the issue for `seconds`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_s: Option<f64>,
    /// `seconds / target_s`: at most 1 meets the target.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ratio_to_target: Option<f64>,
    /// Of `seconds`, until the release (or rollback) request was answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_s: Option<f64>,
    /// Uploading the draft (`POST /v1/drafts` and its appends) before the release: not part of
    /// `seconds`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upload_s: Option<f64>,
    /// Draft requests of the upload.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upload_requests: Option<u64>,
    /// Bytes the process holds more once the release is live than before its draft was uploaded
    /// (for a rollback: before it was sent), counted by the allocator. Everything the process
    /// allocated meanwhile counts, the benchmark's client included.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes_added: Option<i64>,
    /// Lowest `bytes_added` over the runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes_added_min: Option<i64>,
    /// Highest `bytes_added` over the runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes_added_max: Option<i64>,
    /// Of `bytes_added`, what the release request alone added (the draft uploaded already).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub release_bytes_added: Option<i64>,
    /// `bytes_added` per changed key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes_per_key: Option<f64>,
    /// Keys the release changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keys: Option<u64>,
    /// Keys of the dataset after the release.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dataset_keys: Option<u64>,
    /// `fdatasync` calls of the server's log during `seconds`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fsyncs: Option<f64>,
    /// Seconds the log spent in `fdatasync` during `seconds`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fsync_s: Option<f64>,
    /// Concurrent readers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub readers: Option<usize>,
    /// Reads answered per second.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ops_per_s: Option<f64>,
    /// Lowest `ops_per_s` over the runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ops_per_s_min: Option<f64>,
    /// Highest `ops_per_s` over the runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ops_per_s_max: Option<f64>,
    /// Median latency of one read, in microseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p50_us: Option<f64>,
    /// 99th percentile of the same.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p99_us: Option<f64>,
    /// Lowest `p99_us` over the runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p99_us_min: Option<f64>,
    /// Highest `p99_us` over the runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p99_us_max: Option<f64>,
    /// `read-publishing`: its p99 over `read-idle`'s, within each run (median of the runs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p99_ratio_to_idle: Option<f64>,
    /// Lowest per-run p99 ratio.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p99_ratio_to_idle_min: Option<f64>,
    /// Highest per-run p99 ratio.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p99_ratio_to_idle_max: Option<f64>,
    /// `read-publishing`: its reads per second over `read-idle`'s, within each run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ops_ratio_to_idle: Option<f64>,
    /// Releases that went live during the measured window (`read-publishing`, per run).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub releases: Option<f64>,
    /// Median time to live of those releases, in seconds, under the readers' load.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub release_seconds: Option<f64>,
    /// Reads (or steps) that failed, over all runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub errors: Option<u64>,
    /// Runs the median was taken over.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runs: Option<usize>,
    /// Share of the machine's CPU time other processes took meanwhile (0 to 1; median over the
    /// runs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub others_cpu_share: Option<f64>,
    /// Share of the machine's CPU time this benchmark process used meanwhile.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub own_cpu_share: Option<f64>,
    /// What was measured, and what it leaves out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// Why the point was not measured (then no figures are given).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skipped: Option<String>,
}

impl PublishRow {
    /// A row with only its workload set.
    #[must_use]
    pub fn new(workload: &str) -> PublishRow {
        PublishRow {
            system: SYSTEM.to_string(),
            workload: workload.to_string(),
            ..PublishRow::default()
        }
    }
}

impl PublishReport {
    /// An empty report stamped with the current time.
    #[must_use]
    pub fn new(machine: Machine, settings: PublishSettings) -> PublishReport {
        let started_at =
            humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
        PublishReport {
            bench: "publish".to_string(),
            started_at,
            machine,
            settings,
            rows: Vec::new(),
        }
    }

    /// The row of `workload`.
    #[must_use]
    pub fn row(&self, workload: &str) -> Option<&PublishRow> {
        self.rows.iter().find(|r| r.workload == workload)
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

    /// The report as readable tables, with the ratios to the targets.
    #[must_use]
    pub fn table(&self) -> String {
        let mut out = String::new();
        let s = &self.settings;
        let _ = writeln!(
            out,
            "cairn bench publish at {} on {} cores, {} (kernel {}); data on {} ({})",
            self.started_at,
            self.machine.cores,
            self.machine.cpu,
            self.machine.kernel,
            s.dir_fs.as_deref().unwrap_or("-"),
            s.dir.as_deref().unwrap_or("-"),
        );
        self.publish_table(&mut out);
        self.read_table(&mut out);
        out.push_str(&self.targets());
        out
    }

    fn publish_table(&self, out: &mut String) {
        let s = &self.settings;
        let _ = writeln!(
            out,
            "\npublishing through HTTP to an in-process server (durable sync mode): {}-key \
             changes on a {}-key dataset, and a fresh {}-key dataset; median of {} run(s) \
             [min..max]; time to live = POST until a reader is served the new release",
            s.change_keys, s.keys, s.keys, s.runs
        );
        let _ = writeln!(
            out,
            "{:<12} {:>28} {:>8} {:>10} {:>9} {:>9} {:>24} {:>9} {:>7} {:>7}",
            "workload",
            "time to live s [min..max]",
            "target",
            "vs target",
            "request s",
            "upload s",
            "bytes added [min..max]",
            "bytes/key",
            "fsyncs",
            "others"
        );
        for workload in [PUBLISH_10K, PUBLISH_1M, ROLLBACK] {
            let Some(row) = self.row(workload) else {
                continue;
            };
            if let Some(reason) = &row.skipped {
                let _ = writeln!(out, "{workload:<12} skipped: {reason}");
                continue;
            }
            let _ = writeln!(
                out,
                "{workload:<12} {:>28} {:>8} {:>10} {:>9} {:>9} {:>24} {:>9} {:>7} {:>7}",
                seconds_with_spread(row),
                row.target_s.map_or_else(|| "-".into(), short_seconds),
                row.ratio_to_target
                    .map_or_else(|| "-".into(), |r| format!("{r:.2}x")),
                row.request_s
                    .map_or_else(|| "-".into(), |v| format!("{v:.4}")),
                row.upload_s
                    .map_or_else(|| "-".into(), |v| format!("{v:.3}")),
                bytes_with_spread(row),
                row.bytes_per_key
                    .map_or_else(|| "-".into(), |v| format!("{v:.0}")),
                row.fsyncs.map_or_else(|| "-".into(), |v| format!("{v:.0}")),
                share(row.others_cpu_share),
            );
        }
    }

    fn read_table(&self, out: &mut String) {
        let s = &self.settings;
        let _ = writeln!(
            out,
            "\nreads: {} concurrent readers, GET /v1/datasets/{{name}}/keys/{{key}} of random keys \
             of the {}-key dataset; median of {} run(s) of {} s after {} s of warm-up [min..max]",
            s.readers, s.keys, s.runs, s.duration_s, s.warmup_s
        );
        let _ = writeln!(
            out,
            "{:<16} {:>26} {:>9} {:>26} {:>12} {:>9} {:>10} {:>7} {:>7}",
            "workload",
            "reads/s [min..max]",
            "p50 us",
            "p99 us [min..max]",
            "p99 vs idle",
            "releases",
            "release s",
            "errors",
            "others"
        );
        for workload in [READ_IDLE, READ_PUBLISHING] {
            let Some(row) = self.row(workload) else {
                continue;
            };
            if let Some(reason) = &row.skipped {
                let _ = writeln!(out, "{workload:<16} skipped: {reason}");
                continue;
            }
            let _ = writeln!(
                out,
                "{workload:<16} {:>26} {:>9} {:>26} {:>12} {:>9} {:>10} {:>7} {:>7}",
                rate_with_spread(row),
                row.p50_us.map_or_else(|| "-".into(), |v| format!("{v:.0}")),
                p99_with_spread(row),
                ratio(
                    row.p99_ratio_to_idle,
                    row.p99_ratio_to_idle_min,
                    row.p99_ratio_to_idle_max
                ),
                row.releases
                    .map_or_else(|| "-".into(), |v| format!("{v:.0}")),
                row.release_seconds
                    .map_or_else(|| "-".into(), |v| format!("{v:.3}")),
                row.errors.map_or_else(|| "-".into(), |n| n.to_string()),
                share(row.others_cpu_share),
            );
        }
    }

    /// One line per target of the issue: the figure, its ratio to the target, and whether it is
    /// met.
    #[must_use]
    pub fn targets(&self) -> String {
        let mut out = String::from("\n");
        for (workload, target, what) in [
            (PUBLISH_10K, TARGET_PUBLISH_10K_S, "10k-key change live"),
            (PUBLISH_1M, TARGET_PUBLISH_1M_S, "1M-key release live"),
            (ROLLBACK, TARGET_ROLLBACK_S, "rollback live"),
        ] {
            let seconds = self.row(workload).and_then(|r| r.seconds);
            let _ = match seconds {
                Some(v) => writeln!(
                    out,
                    "target: {what} <= {} ({workload}): {}, {:.2}x the target, {}",
                    short_seconds(target),
                    short_seconds(v),
                    v / target,
                    if v <= target { "met" } else { "NOT MET" }
                ),
                None => writeln!(
                    out,
                    "target: {what} <= {} ({workload}): not measured",
                    short_seconds(target)
                ),
            };
        }
        let ratio = self.row(READ_PUBLISHING).and_then(|r| r.p99_ratio_to_idle);
        let _ = match ratio {
            Some(r) => writeln!(
                out,
                "target: read p99 while publishing <= {TARGET_READ_P99_RATIO}x idle: {r:.2}x, {}",
                if r <= TARGET_READ_P99_RATIO {
                    "met"
                } else {
                    "NOT MET"
                }
            ),
            None => writeln!(
                out,
                "target: read p99 while publishing <= {TARGET_READ_P99_RATIO}x idle: not measured"
            ),
        };
        out
    }
}

/// Seconds in the unit that reads best: `850 us`, `42.0 ms`, `1.23 s`.
fn short_seconds(seconds: f64) -> String {
    if seconds < 1e-3 {
        format!("{:.0} us", seconds * 1e6)
    } else if seconds < 1.0 {
        format!("{:.1} ms", seconds * 1e3)
    } else {
        format!("{seconds:.2} s")
    }
}

fn seconds_with_spread(row: &PublishRow) -> String {
    let Some(seconds) = row.seconds else {
        return "-".into();
    };
    match (row.seconds_min, row.seconds_max) {
        (Some(min), Some(max)) => format!("{seconds:.4} [{min:.4}..{max:.4}]"),
        _ => format!("{seconds:.4}"),
    }
}

/// Bytes with a binary suffix, signed.
fn bytes(value: i64) -> String {
    let magnitude = value.unsigned_abs() as f64;
    let sign = if value < 0 { "-" } else { "" };
    if magnitude >= 1024.0 * 1024.0 {
        format!("{sign}{:.1}M", magnitude / (1024.0 * 1024.0))
    } else if magnitude >= 1024.0 {
        format!("{sign}{:.1}k", magnitude / 1024.0)
    } else {
        format!("{sign}{magnitude:.0}")
    }
}

fn bytes_with_spread(row: &PublishRow) -> String {
    let Some(added) = row.bytes_added else {
        return "-".into();
    };
    match (row.bytes_added_min, row.bytes_added_max) {
        (Some(min), Some(max)) => format!("{} [{}..{}]", bytes(added), bytes(min), bytes(max)),
        _ => bytes(added),
    }
}

fn rate_with_spread(row: &PublishRow) -> String {
    let Some(rate) = row.ops_per_s else {
        return "-".into();
    };
    match (row.ops_per_s_min, row.ops_per_s_max) {
        (Some(min), Some(max)) => format!("{} [{}..{}]", human(rate), human(min), human(max)),
        _ => human(rate),
    }
}

fn p99_with_spread(row: &PublishRow) -> String {
    let Some(p99) = row.p99_us else {
        return "-".into();
    };
    match (row.p99_us_min, row.p99_us_max) {
        (Some(min), Some(max)) => format!("{p99:.0} [{min:.0}..{max:.0}]"),
        _ => format!("{p99:.0}"),
    }
}

fn ratio(median: Option<f64>, min: Option<f64>, max: Option<f64>) -> String {
    match (median, min, max) {
        (Some(r), Some(min), Some(max)) => format!("{r:.2} [{min:.2}..{max:.2}]"),
        (Some(r), _, _) => format!("{r:.2}"),
        _ => "-".into(),
    }
}

fn share(value: Option<f64>) -> String {
    value.map_or_else(|| "-".into(), |v| format!("{:.0}%", v * 100.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report() -> PublishReport {
        let machine = Machine {
            cores: 2,
            kernel: "k".into(),
            cpu: "c".into(),
        };
        let mut report = PublishReport::new(machine, PublishSettings::default());
        report.rows = vec![
            PublishRow {
                seconds: Some(0.030),
                target_s: Some(TARGET_PUBLISH_10K_S),
                bytes_added: Some(-2048),
                ..PublishRow::new(PUBLISH_10K)
            },
            PublishRow {
                seconds: Some(0.004),
                ..PublishRow::new(ROLLBACK)
            },
            PublishRow {
                skipped: Some("no disk".into()),
                ..PublishRow::new(PUBLISH_1M)
            },
            PublishRow {
                p99_ratio_to_idle: Some(1.5),
                ..PublishRow::new(READ_PUBLISHING)
            },
        ];
        report
    }

    #[test]
    fn the_targets_say_met_or_not_met_with_the_ratio() {
        let targets = report().targets();
        assert!(
            targets.contains(
                "10k-key change live <= 50.0 ms (publish-10k): 30.0 ms, 0.60x the target, met"
            ),
            "{targets}"
        );
        assert!(
            targets
                .contains("rollback live <= 1.0 ms (rollback): 4.0 ms, 4.00x the target, NOT MET"),
            "{targets}"
        );
        assert!(
            targets.contains("1M-key release live <= 2.00 s (publish-1m): not measured"),
            "{targets}"
        );
        assert!(targets.contains("<= 2x idle: 1.50x, met"), "{targets}");
    }

    #[test]
    fn skipped_rows_show_their_reason_and_absent_fields_stay_out_of_the_json() {
        let report = report();
        let table = report.table();
        assert!(table.contains("publish-1m   skipped: no disk"), "{table}");
        assert!(table.contains("-2.0k"), "{table}");
        let json = serde_json::to_string(&report.rows[1]).expect("encodes");
        assert_eq!(
            json,
            r#"{"system":"cairn","workload":"rollback","seconds":0.004}"#
        );
    }
}
