//! The matching benchmark's results: rows in the JSON shape of `shared/BENCHMARKS.md`, and the
//! tables with the ratios and the targets.
//!
//! Rows: `cairn`, `orderbook-rs`, `lobster` under `workload: "core-mixed"` (orders per second in
//! `ops_per_s`); `cairn-grpc` under `e2e` with `in_flight`; `cairn` under `recover-snapshot` and
//! `recover-zero` with `seconds` and `records`. Fields that do not apply to a row are left out of
//! the JSON; a row that was not measured says why in `skipped`.

use super::{TARGET_RATIO_TO_LOBSTER, TARGET_RATIO_TO_ORDERBOOK_RS, TARGET_RECOVER_SNAPSHOT_S};
use crate::report::{Machine, human};
use anyhow::Context as _;
use serde::{Deserialize, Serialize};
use std::fmt::Write as _;
use std::path::Path;

/// The whole report of one `cairn bench matching` run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MatchingReport {
    /// Which benchmark: `matching`.
    pub bench: String,
    /// When the run started, RFC 3339 in UTC.
    pub started_at: String,
    /// The machine it ran on.
    pub machine: Machine,
    /// How it was run.
    pub settings: MatchingSettings,
    /// One row per system and workload (and in-flight count for `e2e`).
    pub rows: Vec<MatchingRow>,
}

/// How the matching benchmark was run.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct MatchingSettings {
    /// Operations timed per book and run.
    pub orders: usize,
    /// Operations run untimed before them, after the starting book.
    pub warmup_orders: usize,
    /// Limit orders of the starting book.
    pub resting: usize,
    /// Seed of the stream.
    pub seed: u64,
    /// Repetitions of every point.
    pub runs: usize,
    /// In-flight counts of the `e2e` points.
    pub in_flight: Vec<usize>,
    /// Seconds measured per `e2e` point and run.
    pub duration_s: f64,
    /// Seconds of warm-up before each `e2e` point (same load, not counted).
    pub warmup_s: f64,
    /// Whether the peer books were built in (the `peers` feature).
    pub peers_built: bool,
    /// Resting orders the recovered book was built with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recover_orders: Option<usize>,
    /// Records in the recovered log.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recover_events: Option<u64>,
    /// Records after the snapshot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recover_tail_events: Option<u64>,
    /// Seconds it took to build the recovered log through the engine.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recover_build_s: Option<f64>,
    /// Records per second while building it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recover_build_events_per_s: Option<f64>,
    /// Where the recovered engine's data directory was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dir: Option<String>,
    /// The type of the file system it was on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dir_fs: Option<String>,
}

/// One measured point. Rates and times are medians over the runs; `*_min` and `*_max` give the
/// spread.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct MatchingRow {
    /// `cairn`, `orderbook-rs`, `lobster` or `cairn-grpc`.
    pub system: String,
    /// `core-mixed`, `e2e`, `recover-snapshot` or `recover-zero`.
    pub workload: String,
    /// Orders in flight (`e2e` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub in_flight: Option<usize>,
    /// Orders (operations of the stream) per second.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ops_per_s: Option<f64>,
    /// Lowest `ops_per_s` over the runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ops_per_s_min: Option<f64>,
    /// Highest `ops_per_s` over the runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ops_per_s_max: Option<f64>,
    /// Median latency of one order, in microseconds (`e2e`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p50_us: Option<f64>,
    /// 99th percentile of the same, in microseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p99_us: Option<f64>,
    /// For Cairn's core row: its `ops_per_s` over orderbook-rs's, the median of the per-run
    /// ratios (each run measures both).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ratio_to_orderbook_rs: Option<f64>,
    /// Lowest per-run ratio to orderbook-rs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ratio_to_orderbook_rs_min: Option<f64>,
    /// Highest per-run ratio to orderbook-rs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ratio_to_orderbook_rs_max: Option<f64>,
    /// For Cairn's core row: its `ops_per_s` over lobster's (median of the per-run ratios).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ratio_to_lobster: Option<f64>,
    /// Lowest per-run ratio to lobster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ratio_to_lobster_min: Option<f64>,
    /// Highest per-run ratio to lobster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ratio_to_lobster_max: Option<f64>,
    /// Operations timed per run (`core-mixed`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub orders: Option<u64>,
    /// Of them, answered with an error or refusal (per run; for `e2e`, over all runs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refused: Option<u64>,
    /// Requests that failed (no answer, or not the API's), over all runs (`e2e`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub errors: Option<u64>,
    /// Units traded in the timed operations (per run), where the book's answer says so.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filled_qty: Option<u64>,
    /// Elapsed seconds (recovery; timed seconds per run for `core-mixed`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seconds: Option<f64>,
    /// Lowest `seconds` over the runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seconds_min: Option<f64>,
    /// Highest `seconds` over the runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seconds_max: Option<f64>,
    /// Records replayed by recovery.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub records: Option<u64>,
    /// Records in the whole log (recovery rows).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_records: Option<u64>,
    /// Orders resting on the recovered book.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resting_orders: Option<u64>,
    /// Bytes of the snapshot file, or of the log's segments (recovery rows).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes: Option<u64>,
    /// `cold` when the page cache was dropped before the timing, `warm` when it could not be.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache: Option<String>,
    /// Runs the median was taken over.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runs: Option<usize>,
    /// Share of the machine's CPU time other processes took while this point was measured (0 to
    /// 1; median over the runs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub others_cpu_share: Option<f64>,
    /// Share of the machine's CPU time this benchmark process used meanwhile.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub own_cpu_share: Option<f64>,
    /// What the system does per operation, and what it leaves out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// Why the point was not measured (then no figures are given).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skipped: Option<String>,
}

impl MatchingRow {
    /// A row with only its system and workload set.
    #[must_use]
    pub fn new(system: &str, workload: &str) -> MatchingRow {
        MatchingRow {
            system: system.to_string(),
            workload: workload.to_string(),
            ..MatchingRow::default()
        }
    }

    /// A row that was not measured, and why.
    #[must_use]
    pub fn skipped(system: &str, workload: &str, reason: &str) -> MatchingRow {
        MatchingRow {
            skipped: Some(reason.to_string()),
            ..MatchingRow::new(system, workload)
        }
    }
}

impl MatchingReport {
    /// An empty report stamped with the current time.
    #[must_use]
    pub fn new(machine: Machine, settings: MatchingSettings) -> MatchingReport {
        let started_at =
            humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
        MatchingReport {
            bench: "matching".to_string(),
            started_at,
            machine,
            settings,
            rows: Vec::new(),
        }
    }

    /// The row of `system` and `workload` at `in_flight` (any, for `None`).
    #[must_use]
    pub fn row(
        &self,
        system: &str,
        workload: &str,
        in_flight: Option<usize>,
    ) -> Option<&MatchingRow> {
        self.rows.iter().find(|r| {
            r.system == system
                && r.workload == workload
                && (in_flight.is_none() || r.in_flight == in_flight)
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

    /// The report as readable tables, with the ratios and the targets.
    #[must_use]
    pub fn table(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "cairn bench matching at {} on {} cores, {} (kernel {})",
            self.started_at, self.machine.cores, self.machine.cpu, self.machine.kernel
        );
        self.core_table(&mut out);
        self.e2e_table(&mut out);
        self.recovery_table(&mut out);
        out.push_str(&self.targets());
        out
    }

    fn core_table(&self, out: &mut String) {
        let s = &self.settings;
        let _ = writeln!(
            out,
            "\ncore-mixed: {} orders timed per book after a starting book of {} limit orders and \
             {} warm-up orders (seed {}); one thread; median of {} run(s) [min..max]",
            s.orders, s.resting, s.warmup_orders, s.seed, s.runs
        );
        let _ = writeln!(
            out,
            "{:<13} {:>26} {:>22} {:>22} {:>9} {:>11} {:>7}",
            "system",
            "orders/s",
            "cairn/orderbook-rs",
            "cairn/lobster",
            "refused",
            "filled qty",
            "others"
        );
        for row in self.rows.iter().filter(|r| r.workload == "core-mixed") {
            if let Some(reason) = &row.skipped {
                let _ = writeln!(out, "{:<13} skipped: {reason}", row.system);
                continue;
            }
            let _ = writeln!(
                out,
                "{:<13} {:>26} {:>22} {:>22} {:>9} {:>11} {:>7}",
                row.system,
                rate_with_spread(row),
                ratio(
                    row.ratio_to_orderbook_rs,
                    row.ratio_to_orderbook_rs_min,
                    row.ratio_to_orderbook_rs_max
                ),
                ratio(
                    row.ratio_to_lobster,
                    row.ratio_to_lobster_min,
                    row.ratio_to_lobster_max
                ),
                row.refused.map_or_else(|| "-".into(), |n| n.to_string()),
                row.filled_qty.map_or_else(|| "-".into(), |n| n.to_string()),
                share(row.others_cpu_share),
            );
        }
    }

    fn e2e_table(&self, out: &mut String) {
        let rows: Vec<&MatchingRow> = self.rows.iter().filter(|r| r.workload == "e2e").collect();
        if rows.is_empty() {
            return;
        }
        let s = &self.settings;
        let _ = writeln!(
            out,
            "\ne2e: durable (fdatasync) orders and cancels through an in-process server; median of \
             {} run(s) of {} s after {} s of warm-up [min..max]",
            s.runs, s.duration_s, s.warmup_s
        );
        let _ = writeln!(
            out,
            "{:<11} {:>9} {:>26} {:>10} {:>10} {:>8} {:>7} {:>7}",
            "system", "in_flight", "orders/s", "p50 us", "p99 us", "refused", "errors", "others"
        );
        for row in rows {
            let in_flight = row.in_flight.map_or_else(|| "-".into(), |n| n.to_string());
            if let Some(reason) = &row.skipped {
                let _ = writeln!(out, "{:<11} {in_flight:>9} skipped: {reason}", row.system);
                continue;
            }
            let _ = writeln!(
                out,
                "{:<11} {in_flight:>9} {:>26} {:>10} {:>10} {:>8} {:>7} {:>7}",
                row.system,
                rate_with_spread(row),
                row.p50_us.map_or_else(|| "-".into(), |v| format!("{v:.0}")),
                row.p99_us.map_or_else(|| "-".into(), |v| format!("{v:.0}")),
                row.refused.map_or_else(|| "-".into(), |n| n.to_string()),
                row.errors.map_or_else(|| "-".into(), |n| n.to_string()),
                share(row.others_cpu_share),
            );
        }
    }

    fn recovery_table(&self, out: &mut String) {
        let rows: Vec<&MatchingRow> = self
            .rows
            .iter()
            .filter(|r| r.workload.starts_with("recover-"))
            .collect();
        if rows.is_empty() {
            return;
        }
        let s = &self.settings;
        let built = match (s.recover_build_s, s.recover_build_events_per_s) {
            (Some(seconds), Some(rate)) => {
                format!("; built in {seconds:.1} s ({}/s)", human(rate))
            }
            _ => String::new(),
        };
        let _ = writeln!(
            out,
            "\nrecovery: reopening an engine whose log holds {} records, built from a starting book \
             of {} orders{built}",
            s.recover_events
                .map_or_else(|| "-".into(), |n| n.to_string()),
            s.recover_orders
                .map_or_else(|| "-".into(), |n| n.to_string()),
        );
        let _ = writeln!(
            out,
            "{:<17} {:>26} {:>11} {:>10} {:>6}  note",
            "workload", "seconds [min..max]", "replayed", "resting", "cache"
        );
        for row in rows {
            if let Some(reason) = &row.skipped {
                let _ = writeln!(out, "{:<17} skipped: {reason}", row.workload);
                continue;
            }
            let _ = writeln!(
                out,
                "{:<17} {:>26} {:>11} {:>10} {:>6}  {}",
                row.workload,
                seconds_with_spread(row),
                row.records.map_or_else(|| "-".into(), |n| n.to_string()),
                row.resting_orders
                    .map_or_else(|| "-".into(), |n| n.to_string()),
                row.cache.as_deref().unwrap_or("-"),
                row.note.as_deref().unwrap_or(""),
            );
        }
    }

    /// One line per target of the issue: the figure and whether it is met.
    #[must_use]
    pub fn targets(&self) -> String {
        let cairn = self.row("cairn", "core-mixed", None);
        let verdict = |value: Option<f64>, met: &dyn Fn(f64) -> bool, text: &str| match value {
            Some(v) => format!(
                "target: {text}: {v:.2}, {}\n",
                if met(v) { "met" } else { "NOT MET" }
            ),
            None => format!("target: {text}: not measured\n"),
        };
        let mut out = String::from("\n");
        out.push_str(&verdict(
            cairn.and_then(|r| r.ratio_to_orderbook_rs),
            &|v| v >= TARGET_RATIO_TO_ORDERBOOK_RS,
            &format!("cairn/orderbook-rs >= {TARGET_RATIO_TO_ORDERBOOK_RS}"),
        ));
        out.push_str(&verdict(
            cairn.and_then(|r| r.ratio_to_lobster),
            &|v| v >= TARGET_RATIO_TO_LOBSTER,
            &format!("cairn/lobster >= {TARGET_RATIO_TO_LOBSTER}"),
        ));
        out.push_str(&verdict(
            self.row("cairn", "recover-snapshot", None)
                .and_then(|r| r.seconds),
            &|v| v < TARGET_RECOVER_SNAPSHOT_S,
            &format!("recover-snapshot < {TARGET_RECOVER_SNAPSHOT_S} s (seconds)"),
        ));
        out
    }
}

fn rate_with_spread(row: &MatchingRow) -> String {
    let Some(rate) = row.ops_per_s else {
        return "-".into();
    };
    match (row.ops_per_s_min, row.ops_per_s_max) {
        (Some(min), Some(max)) => format!("{} [{}..{}]", human(rate), human(min), human(max)),
        _ => human(rate),
    }
}

fn seconds_with_spread(row: &MatchingRow) -> String {
    let Some(seconds) = row.seconds else {
        return "-".into();
    };
    match (row.seconds_min, row.seconds_max) {
        (Some(min), Some(max)) => format!("{seconds:.3} [{min:.3}..{max:.3}]"),
        _ => format!("{seconds:.3}"),
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

    fn report() -> MatchingReport {
        let machine = Machine {
            cores: 2,
            kernel: "k".into(),
            cpu: "c".into(),
        };
        let mut report = MatchingReport::new(machine, MatchingSettings::default());
        report.rows = vec![
            MatchingRow {
                ops_per_s: Some(3e6),
                ratio_to_orderbook_rs: Some(6.0),
                ratio_to_lobster: Some(0.9),
                ..MatchingRow::new("cairn", "core-mixed")
            },
            MatchingRow::skipped("lobster", "core-mixed", "no"),
            MatchingRow {
                in_flight: Some(64),
                ..MatchingRow::skipped("cairn-grpc", "e2e", "not in this build")
            },
            MatchingRow {
                seconds: Some(0.5),
                ..MatchingRow::new("cairn", "recover-snapshot")
            },
        ];
        report
    }

    #[test]
    fn the_targets_say_met_or_not_met() {
        let targets = report().targets();
        assert!(
            targets.contains("cairn/orderbook-rs >= 5: 6.00, met"),
            "{targets}"
        );
        assert!(
            targets.contains("cairn/lobster >= 1: 0.90, NOT MET"),
            "{targets}"
        );
        assert!(
            targets.contains("recover-snapshot < 1 s (seconds): 0.50, met"),
            "{targets}"
        );
    }

    #[test]
    fn skipped_rows_show_their_reason_and_absent_fields_stay_out_of_the_json() {
        let report = report();
        let table = report.table();
        assert!(table.contains("lobster       skipped: no"), "{table}");
        assert!(table.contains("skipped: not in this build"), "{table}");
        let json = serde_json::to_string(&report.rows[2]).expect("encodes");
        assert_eq!(
            json,
            r#"{"system":"cairn-grpc","workload":"e2e","in_flight":64,"skipped":"not in this build"}"#
        );
    }
}
