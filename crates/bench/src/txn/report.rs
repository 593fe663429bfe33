//! The transaction benchmark's results: rows in the JSON shape of `shared/BENCHMARKS.md` (the
//! inventory benchmark's row, plus how Cairn was reached and the target), and the tables.

use crate::inventory::report::{
    InventoryRow, columns, latencies, rate_with_spread, ratio_text, ratio_with_spread,
};
use crate::report::{Machine, human};
use anyhow::Context as _;
use serde::{Deserialize, Serialize};
use std::fmt::Write as _;
use std::path::Path;

/// Cairn must reach at least this many times PostgreSQL's transactions per second (the issue's
/// target).
pub const TARGET_RATIO_TO_POSTGRES: f64 = 10.0;

/// The whole report of one `cairn bench txn` run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TxnReport {
    /// Which benchmark: `txn`.
    pub bench: String,
    /// When the run started, RFC 3339 in UTC.
    pub started_at: String,
    /// The machine it ran on.
    pub machine: Machine,
    /// How it was run.
    pub settings: TxnSettings,
    /// One row per system, workload and in-flight count.
    pub rows: Vec<TxnRow>,
}

/// How the transaction benchmark was run.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TxnSettings {
    /// Seconds measured per point and run.
    pub duration_s: f64,
    /// Seconds of warm-up before each measured point (same load, not counted).
    pub warmup_s: f64,
    /// Repetitions of every point; rows carry the median and the spread.
    pub runs: usize,
    /// Cairn's shards, and PostgreSQL's databases.
    pub shards: usize,
    /// SKUs on each shard (in each database).
    pub skus_per_shard: usize,
    /// Lines of every reservation.
    pub lines: usize,
    /// How the lines are spread: `3+2` (three on one shard, two on the other, alternating).
    pub lines_split: String,
    /// Distinct baskets the `uniform` workload draws from (the `hot` one always takes the first).
    pub baskets: usize,
    /// Units every SKU starts with, so that no reservation ever runs short.
    pub initial_stock: i64,
    /// Units each line takes.
    pub qty_per_line: i64,
    /// `ttl_ms` of Cairn's reservations (they stay active for the whole run).
    pub reservation_ttl_ms: u64,
    /// `in-process`: a server started by the benchmark on a fresh data directory.
    pub cairn: String,
    /// How Cairn is reached: `grpc` (the `Pipeline` stream).
    pub cairn_transport: String,
    /// Cairn's durability.
    pub cairn_durability: String,
    /// `Pipeline` streams (one HTTP/2 connection each).
    pub cairn_grpc_streams: usize,
    /// Where the in-process server's data directory was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dir: Option<String>,
    /// The type of the file system it was on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dir_fs: Option<String>,
    /// Worker threads of the load generator's tokio runtime.
    pub load_threads: usize,
    /// Worker threads of the in-process server's tokio runtime.
    pub server_threads: usize,
    /// Most PostgreSQL transactions at once (one connection to each database each).
    pub postgres_pairs_max: usize,
    /// PostgreSQL's `server_version`, when it was reached.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub postgres_version: Option<String>,
    /// The benchmark's own two databases (dropped at the end).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub postgres_databases: Vec<String>,
    /// What the setup found or did about `max_prepared_transactions`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub postgres_prepared_transactions: Option<String>,
}

/// One system under one workload at one in-flight count: the inventory benchmark's row (medians
/// over the runs, the spread, `ratio_to_postgres` on Cairn's rows) and what is particular here.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TxnRow {
    /// The figures.
    #[serde(flatten)]
    pub row: InventoryRow,
    /// How the system was reached: `grpc` for Cairn, `postgres` (its wire protocol) for
    /// PostgreSQL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transport: Option<String>,
    /// For Cairn's rows: whether `ratio_to_postgres` reaches [`TARGET_RATIO_TO_POSTGRES`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_met: Option<bool>,
}

impl TxnRow {
    /// A row with only its system, workload and in-flight count set.
    #[must_use]
    pub fn new(system: &str, workload: &str, in_flight: usize) -> TxnRow {
        TxnRow {
            row: InventoryRow::new(system, workload, in_flight),
            ..TxnRow::default()
        }
    }
}

impl TxnReport {
    /// An empty report stamped with the current time.
    #[must_use]
    pub fn new(machine: Machine, settings: TxnSettings) -> TxnReport {
        let started_at =
            humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
        TxnReport {
            bench: "txn".to_string(),
            started_at,
            machine,
            settings,
            rows: Vec::new(),
        }
    }

    /// The row of `system` and `workload` at `in_flight`.
    #[must_use]
    pub fn row(&self, system: &str, workload: &str, in_flight: usize) -> Option<&TxnRow> {
        self.rows.iter().find(|r| {
            r.row.system == system && r.row.workload == workload && r.row.in_flight == in_flight
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

    /// The `(workload, in_flight)` points in the order they were reported.
    fn points(&self) -> Vec<(String, usize)> {
        let mut points: Vec<(String, usize)> = Vec::new();
        for r in &self.rows {
            let point = (r.row.workload.clone(), r.row.in_flight);
            if !points.contains(&point) {
                points.push(point);
            }
        }
        points
    }

    /// The report as readable tables: throughput with the ratios and the target, latencies,
    /// errors and CPU shares, and Cairn's group commit.
    #[must_use]
    pub fn table(&self) -> String {
        let mut out = String::new();
        let s = &self.settings;
        let _ = writeln!(
            out,
            "cairn bench txn at {} on {} cores, {} (kernel {})",
            self.started_at, self.machine.cores, self.machine.cpu, self.machine.kernel
        );
        let place = match (&s.dir_fs, &s.dir) {
            (Some(fs), Some(dir)) => format!(", data on {fs} ({dir})"),
            _ => String::new(),
        };
        let cairn_operation = self
            .rows
            .iter()
            .find(|r| r.row.system == "cairn")
            .and_then(|r| r.row.operation.clone())
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "cairn: {} server, {} shards, durability {}{place}; over {}: {cairn_operation}",
            s.cairn, s.shards, s.cairn_durability, s.cairn_transport
        );
        match self
            .rows
            .iter()
            .find(|r| r.row.system == "postgres" && r.row.skipped.is_none())
        {
            Some(pg) => {
                let _ = writeln!(
                    out,
                    "postgres: {} {}; {}; databases {}; {}",
                    s.postgres_version.as_deref().unwrap_or("version unknown"),
                    pg.row.durability.as_deref().unwrap_or("durability unknown"),
                    s.postgres_prepared_transactions.as_deref().unwrap_or(""),
                    s.postgres_databases.join(", "),
                    pg.row.operation.as_deref().unwrap_or("")
                );
            }
            None => {
                let reason = self
                    .rows
                    .iter()
                    .find(|r| r.row.system == "postgres")
                    .and_then(|r| r.row.skipped.as_deref())
                    .unwrap_or("not run");
                let _ = writeln!(out, "postgres: skipped: {reason}");
            }
        }
        let _ = writeln!(
            out,
            "each operation reserves {} unit on each of {} lines, {} over {} shards (one database \
             per shard for PostgreSQL), among {} SKUs per shard: txn-5line-2shard = one of {} \
             baskets chosen uniformly, -hot = always the same basket; median of {} run(s) of {} s, \
             each after {} s of warm-up [min..max]",
            s.qty_per_line,
            s.lines,
            s.lines_split,
            s.shards,
            s.skus_per_shard,
            s.baskets,
            s.runs,
            s.duration_s,
            s.warmup_s
        );
        self.throughput_table(&mut out);
        self.latency_table(&mut out);
        self.log_table(&mut out);
        out
    }

    fn throughput_table(&self, out: &mut String) {
        const WIDTHS: [usize; 6] = [20, 9, 24, 24, 18, 16];
        let header = [
            "workload",
            "in_flight",
            "cairn txn/s",
            "postgres txn/s",
            "cairn/postgres",
            "target",
        ];
        let _ = writeln!(
            out,
            "\nthroughput, successful reservations per second; ratio taken within each run \
             (median [min..max]); target: cairn >= {}x postgres",
            ratio_text(TARGET_RATIO_TO_POSTGRES)
        );
        let _ = writeln!(out, "{}", columns(&header.map(String::from), &WIDTHS));
        for (workload, in_flight) in self.points() {
            let get = |system: &str| self.row(system, &workload, in_flight).map(|r| &r.row);
            let cairn = self.row("cairn", &workload, in_flight);
            let ratio = get("cairn").map(|c| {
                (
                    c.ratio_to_postgres,
                    c.ratio_to_postgres_min,
                    c.ratio_to_postgres_max,
                )
            });
            let target = match cairn.and_then(|c| c.target_met) {
                Some(true) => "met",
                Some(false) => "NOT met",
                None => "-",
            };
            let cells = [
                workload.clone(),
                in_flight.to_string(),
                rate_with_spread(get("cairn")),
                rate_with_spread(get("postgres")),
                ratio_with_spread(ratio),
                target.to_string(),
            ];
            let _ = writeln!(out, "{}", columns(&cells, &WIDTHS));
        }
    }

    fn latency_table(&self, out: &mut String) {
        const WIDTHS: [usize; 8] = [20, 9, 17, 17, 12, 12, 18, 18];
        let header = [
            "workload",
            "in_flight",
            "cairn p50/p99 us",
            "pg p50/p99 us",
            "errors c/p",
            "pg conns",
            "other procs cpu c/p",
            "bench proc cpu c/p",
        ];
        let _ = writeln!(
            out,
            "\nlatency of one successful reservation, errors, PostgreSQL connections per database, \
             and CPU shares of the machine"
        );
        let _ = writeln!(out, "{}", columns(&header.map(String::from), &WIDTHS));
        for (workload, in_flight) in self.points() {
            let get = |system: &str| self.row(system, &workload, in_flight).map(|r| &r.row);
            let joined = |cell: &dyn Fn(&InventoryRow) -> Option<String>| {
                ["cairn", "postgres"]
                    .iter()
                    .map(|system| get(system).and_then(cell).unwrap_or_else(|| "-".into()))
                    .collect::<Vec<_>>()
                    .join("/")
            };
            let percent = |share: Option<f64>| share.map(|s| format!("{:.0}%", s * 100.0));
            let cells = [
                workload.clone(),
                in_flight.to_string(),
                latencies(get("cairn")),
                latencies(get("postgres")),
                joined(&|r| r.errors.map(|e| e.to_string())),
                get("postgres")
                    .and_then(|r| r.connections)
                    .map_or_else(|| "-".into(), |c| c.to_string()),
                joined(&|r| percent(r.others_cpu_share)),
                joined(&|r| percent(r.own_cpu_share)),
            ];
            let _ = writeln!(out, "{}", columns(&cells, &WIDTHS));
        }
        let errors: Vec<String> = self
            .rows
            .iter()
            .filter_map(|r| {
                let r = &r.row;
                r.first_error.as_ref().map(|e| {
                    format!(
                        "  {} {} {}: {} error(s), first: {e}",
                        r.system,
                        r.workload,
                        r.in_flight,
                        r.errors.unwrap_or(0)
                    )
                })
            })
            .collect();
        if !errors.is_empty() {
            let _ = writeln!(out, "errors:\n{}", errors.join("\n"));
        }
    }

    fn log_table(&self, out: &mut String) {
        const WIDTHS: [usize; 7] = [20, 9, 10, 12, 12, 14, 10];
        let rows: Vec<&InventoryRow> = self
            .rows
            .iter()
            .map(|r| &r.row)
            .filter(|r| r.system == "cairn" && r.fsyncs_per_s.is_some())
            .collect();
        if rows.is_empty() {
            return;
        }
        let _ = writeln!(
            out,
            "\ncairn's logs during the measured windows, summed over the shards: group commits \
             (fdatasync) per second, records per commit, records per reservation, fdatasync time"
        );
        let header = [
            "workload",
            "in_flight",
            "fsyncs/s",
            "recs/fsync",
            "recs/txn",
            "fsync mean us",
            "in fsync",
        ];
        let _ = writeln!(out, "{}", columns(&header.map(String::from), &WIDTHS));
        for row in rows {
            let records_per_txn = match (row.fsyncs_per_s, row.records_per_fsync, row.ops_per_s) {
                (Some(f), Some(r), Some(o)) if o > 0.0 => format!("{:.1}", f * r / o),
                _ => "-".into(),
            };
            let cells = [
                row.workload.clone(),
                row.in_flight.to_string(),
                row.fsyncs_per_s.map_or_else(|| "-".into(), human),
                row.records_per_fsync
                    .map_or_else(|| "-".into(), |r| format!("{r:.1}")),
                records_per_txn,
                row.fsync_mean_us
                    .map_or_else(|| "-".into(), |us| format!("{us:.0}")),
                row.fsync_busy_share
                    .map_or_else(|| "-".into(), |s| format!("{:.0}%", s * 100.0)),
            ];
            let _ = writeln!(out, "{}", columns(&cells, &WIDTHS));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report() -> TxnReport {
        let machine = Machine {
            cores: 2,
            kernel: "k".into(),
            cpu: "c".into(),
        };
        let mut report = TxnReport::new(machine, TxnSettings::default());
        let mut cairn = TxnRow::new("cairn", "txn-5line-2shard", 256);
        cairn.row.ops_per_s = Some(12_000.0);
        cairn.row.p50_us = Some(9000.0);
        cairn.row.p99_us = Some(20_000.0);
        cairn.row.ratio_to_postgres = Some(12.0);
        cairn.row.errors = Some(0);
        cairn.transport = Some("grpc".into());
        cairn.target_met = Some(true);
        report.rows.push(cairn);
        let mut pg = TxnRow::new("postgres", "txn-5line-2shard", 256);
        pg.row.skipped = Some("not reachable: refused".into());
        report.rows.push(pg);
        report
    }

    #[test]
    fn the_table_shows_the_ratio_the_target_and_why_a_peer_was_skipped() {
        let table = report().table();
        assert!(
            table.contains("postgres: skipped: not reachable: refused"),
            "{table}"
        );
        assert!(table.contains("12.0k"), "{table}");
        assert!(table.contains(" 12 "), "{table}");
        assert!(table.contains("met"), "{table}");
        assert!(table.contains("9000/20000"), "{table}");
        assert!(table.contains("cairn >= 10x postgres"), "{table}");
    }

    #[test]
    fn rows_flatten_to_the_shared_shape() {
        let report = report();
        let json = serde_json::to_value(&report.rows[0]).expect("encodes");
        assert_eq!(json["system"], "cairn");
        assert_eq!(json["workload"], "txn-5line-2shard");
        assert_eq!(json["in_flight"], 256);
        assert_eq!(json["ops_per_s"], 12_000.0);
        assert_eq!(json["transport"], "grpc");
        assert_eq!(json["target_met"], true);
        let back: TxnRow = serde_json::from_value(json).expect("decodes");
        assert_eq!(back, report.rows[0]);
        let skipped = serde_json::to_string(&report.rows[1]).expect("encodes");
        assert_eq!(
            skipped,
            r#"{"system":"postgres","workload":"txn-5line-2shard","in_flight":256,"skipped":"not reachable: refused"}"#
        );
    }
}
