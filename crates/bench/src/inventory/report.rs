//! The inventory benchmark's results: rows in the JSON shape of `shared/BENCHMARKS.md`, and the
//! tables with the ratios.
//!
//! Every row names its `system` (`cairn-grpc`, `cairn-http`, `postgres`, `redis`), its
//! `workload` (`hot`, `uniform`) and its `in_flight`. Fields that do not apply to a row are left
//! out of the JSON rather than zeroed; a row that was not measured says why in `skipped`.

use crate::report::{Machine, human};
use anyhow::Context as _;
use serde::{Deserialize, Serialize};
use std::fmt::Write as _;
use std::path::Path;

/// The whole report of one `cairn bench inventory` run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct InventoryReport {
    /// Which benchmark: `inventory`.
    pub bench: String,
    /// When the run started, RFC 3339 in UTC.
    pub started_at: String,
    /// The machine it ran on.
    pub machine: Machine,
    /// How it was run.
    pub settings: InventorySettings,
    /// One row per system, workload and in-flight count.
    pub rows: Vec<InventoryRow>,
}

/// How the inventory benchmark was run.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct InventorySettings {
    /// Seconds measured per point and run.
    pub duration_s: f64,
    /// Seconds of warm-up before each measured point (same load, not counted).
    pub warmup_s: f64,
    /// Repetitions of every point; rows carry the median and the spread.
    pub runs: usize,
    /// SKUs of the `uniform` workload (the `hot` one uses the first of them).
    pub skus: usize,
    /// Units every SKU starts with, so that no reservation ever runs short.
    pub initial_stock: i64,
    /// Units each operation takes.
    pub qty_per_op: i64,
    /// `ttl_ms` of Cairn's reservations (they stay active for the whole run).
    pub reservation_ttl_ms: u64,
    /// `in-process` (a server started by the benchmark on a fresh data directory) or the URL of
    /// the server given with `--cairn-url`.
    pub cairn: String,
    /// Cairn's durability: `sync` (acknowledged after `fdatasync`) for the in-process server.
    pub cairn_durability: String,
    /// Where the in-process server's data directory was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dir: Option<String>,
    /// The type of the file system it was on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dir_fs: Option<String>,
    /// Worker threads of the load generator's tokio runtime.
    pub load_threads: usize,
    /// Worker threads of the in-process server's tokio runtime (0 for an external server).
    pub server_threads: usize,
    /// Most PostgreSQL connections; beyond that, requests are pipelined on them.
    pub postgres_connections_max: usize,
    /// PostgreSQL's `server_version`, when it was reached.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub postgres_version: Option<String>,
    /// The benchmark's own PostgreSQL table (dropped at the end).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub postgres_table: Option<String>,
    /// The pattern of the benchmark's own Redis keys (deleted at the end).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redis_keys: Option<String>,
    /// Redis's `redis_version`, when it was reached.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redis_version: Option<String>,
}

/// One system under one workload at one in-flight count. Rates and latencies are medians over
/// the runs; `*_min` and `*_max` give the spread.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct InventoryRow {
    /// `cairn-grpc`, `cairn-http`, `postgres` or `redis`.
    pub system: String,
    /// `hot` (one SKU) or `uniform` (a SKU chosen uniformly among `settings.skus`).
    pub workload: String,
    /// Requests in flight at once (one per load-generator task).
    pub in_flight: usize,
    /// Successful operations per second.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ops_per_s: Option<f64>,
    /// Median latency of one successful operation, in microseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p50_us: Option<f64>,
    /// 99th percentile of the same, in microseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p99_us: Option<f64>,
    /// Failed operations in the measured windows, over all runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub errors: Option<u64>,
    /// The first error seen, when there was one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_error: Option<String>,
    /// Runs the median was taken over.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runs: Option<usize>,
    /// Lowest `ops_per_s` over the runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ops_per_s_min: Option<f64>,
    /// Highest `ops_per_s` over the runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ops_per_s_max: Option<f64>,
    /// For Cairn's rows: its `ops_per_s` over PostgreSQL's at the same point, the median of the
    /// per-run ratios (each run measures both).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ratio_to_postgres: Option<f64>,
    /// Lowest per-run ratio to PostgreSQL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ratio_to_postgres_min: Option<f64>,
    /// Highest per-run ratio to PostgreSQL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ratio_to_postgres_max: Option<f64>,
    /// For Cairn's rows: its `ops_per_s` over Redis's at the same point (median of the runs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ratio_to_redis: Option<f64>,
    /// Lowest per-run ratio to Redis.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ratio_to_redis_min: Option<f64>,
    /// Highest per-run ratio to Redis.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ratio_to_redis_max: Option<f64>,
    /// Connections the load generator used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connections: Option<usize>,
    /// Whether several requests shared a connection at once (pipelined), rather than one
    /// request per connection at a time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pipelined: Option<bool>,
    /// What one operation is on the wire.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operation: Option<String>,
    /// When the system acknowledges a write, as configured during the run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub durability: Option<String>,
    /// Share of the machine's CPU time used by everything but the benchmark's own process while
    /// the point was measured (0 to 1; the median over the runs). For PostgreSQL and Redis that
    /// includes the peer itself; for the in-process Cairn it does not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub others_cpu_share: Option<f64>,
    /// Share of the machine's CPU time used by the benchmark's process (load generator and, for
    /// the in-process Cairn, the server), median over the runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub own_cpu_share: Option<f64>,
    /// For the in-process Cairn: group commits (`fdatasync` calls) per second in the window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fsyncs_per_s: Option<f64>,
    /// For the in-process Cairn: records (reservations) per group commit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub records_per_fsync: Option<f64>,
    /// For the in-process Cairn: mean time of one `fdatasync`, in microseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fsync_mean_us: Option<f64>,
    /// For the in-process Cairn: share of the window its log writer spent inside `fdatasync`
    /// (near 1: the disk is the limit; well below: the CPU in front of it is).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fsync_busy_share: Option<f64>,
    /// Why the point was not measured (then no figures are given).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skipped: Option<String>,
}

impl InventoryRow {
    /// A row with only its system, workload and in-flight count set.
    #[must_use]
    pub fn new(system: &str, workload: &str, in_flight: usize) -> InventoryRow {
        InventoryRow {
            system: system.to_string(),
            workload: workload.to_string(),
            in_flight,
            ..InventoryRow::default()
        }
    }

    /// A row that was not measured, and why.
    #[must_use]
    pub fn skipped(system: &str, workload: &str, in_flight: usize, reason: &str) -> InventoryRow {
        InventoryRow {
            skipped: Some(reason.to_string()),
            ..InventoryRow::new(system, workload, in_flight)
        }
    }
}

impl InventoryReport {
    /// An empty report stamped with the current time.
    #[must_use]
    pub fn new(machine: Machine, settings: InventorySettings) -> InventoryReport {
        let started_at =
            humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
        InventoryReport {
            bench: "inventory".to_string(),
            started_at,
            machine,
            settings,
            rows: Vec::new(),
        }
    }

    /// The row of `system` and `workload` at `in_flight`.
    #[must_use]
    pub fn row(&self, system: &str, workload: &str, in_flight: usize) -> Option<&InventoryRow> {
        self.rows
            .iter()
            .find(|r| r.system == system && r.workload == workload && r.in_flight == in_flight)
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
        for row in &self.rows {
            let point = (row.workload.clone(), row.in_flight);
            if !points.contains(&point) {
                points.push(point);
            }
        }
        points
    }

    /// The report as readable tables: throughput with the ratios, then latencies and errors.
    #[must_use]
    pub fn table(&self) -> String {
        let mut out = String::new();
        let s = &self.settings;
        let _ = writeln!(
            out,
            "cairn bench inventory at {} on {} cores, {} (kernel {})",
            self.started_at, self.machine.cores, self.machine.cpu, self.machine.kernel
        );
        let place = match (&s.dir_fs, &s.dir) {
            (Some(fs), Some(dir)) => format!(", data on {fs} ({dir})"),
            _ => String::new(),
        };
        let _ = writeln!(
            out,
            "cairn: {} server, durability {}{place}",
            s.cairn, s.cairn_durability
        );
        for system in ["postgres", "redis"] {
            let version = match system {
                "postgres" => s.postgres_version.as_deref(),
                _ => s.redis_version.as_deref(),
            };
            let measured = self
                .rows
                .iter()
                .find(|r| r.system == system && r.skipped.is_none());
            match (measured, version) {
                (Some(row), version) => {
                    let _ = writeln!(
                        out,
                        "{system}: {} {}; {}",
                        version.unwrap_or("version unknown"),
                        row.durability.as_deref().unwrap_or("durability unknown"),
                        row.operation.as_deref().unwrap_or("")
                    );
                }
                (None, _) => {
                    let reason = self
                        .rows
                        .iter()
                        .find(|r| r.system == system)
                        .and_then(|r| r.skipped.as_deref())
                        .unwrap_or("not run");
                    let _ = writeln!(out, "{system}: skipped: {reason}");
                }
            }
        }
        for system in ["cairn-grpc", "cairn-http"] {
            let rows: Vec<&InventoryRow> =
                self.rows.iter().filter(|r| r.system == system).collect();
            if let Some(measured) = rows.iter().find(|r| r.skipped.is_none()) {
                let _ = writeln!(
                    out,
                    "{system}: {}",
                    measured.operation.as_deref().unwrap_or("")
                );
            } else if let Some(row) = rows.first() {
                let _ = writeln!(
                    out,
                    "{system}: skipped: {}",
                    row.skipped.as_deref().unwrap_or("not run")
                );
            }
        }
        let _ = writeln!(
            out,
            "each operation reserves {} unit of one SKU: hot = always the same SKU, uniform = one of \
             {} chosen uniformly; median of {} run(s) of {} s, each after {} s of warm-up [min..max]",
            s.qty_per_op, s.skus, s.runs, s.duration_s, s.warmup_s
        );
        self.throughput_table(&mut out);
        self.latency_table(&mut out);
        self.log_table(&mut out);
        out
    }

    fn throughput_table(&self, out: &mut String) {
        const WIDTHS: [usize; 7] = [8, 9, 24, 24, 24, 24, 20];
        let header = [
            "workload",
            "in_flight",
            "cairn-grpc ops/s",
            "cairn-http ops/s",
            "postgres ops/s",
            "redis ops/s",
            "",
        ];
        let _ = writeln!(out, "\nthroughput, successful operations per second");
        let _ = writeln!(out, "{}", columns(&header.map(String::from), &WIDTHS));
        for (workload, in_flight) in self.points() {
            let get = |system: &str| self.row(system, &workload, in_flight);
            let cells = [
                workload.clone(),
                in_flight.to_string(),
                rate_with_spread(get("cairn-grpc")),
                rate_with_spread(get("cairn-http")),
                rate_with_spread(get("postgres")),
                rate_with_spread(get("redis")),
                String::new(),
            ];
            let _ = writeln!(out, "{}", columns(&cells, &WIDTHS));
        }
        const RATIO_WIDTHS: [usize; 6] = [8, 9, 20, 20, 20, 20];
        let header = [
            "workload",
            "in_flight",
            "grpc/postgres",
            "grpc/redis",
            "http/postgres",
            "http/redis",
        ];
        let _ = writeln!(
            out,
            "\nratios of Cairn's rate to each peer's, taken within each run (median [min..max])"
        );
        let _ = writeln!(out, "{}", columns(&header.map(String::from), &RATIO_WIDTHS));
        for (workload, in_flight) in self.points() {
            let get = |system: &str| self.row(system, &workload, in_flight);
            let (grpc, http) = (get("cairn-grpc"), get("cairn-http"));
            let to_pg = |c: &InventoryRow| {
                (
                    c.ratio_to_postgres,
                    c.ratio_to_postgres_min,
                    c.ratio_to_postgres_max,
                )
            };
            let to_redis =
                |c: &InventoryRow| (c.ratio_to_redis, c.ratio_to_redis_min, c.ratio_to_redis_max);
            let cells = [
                workload.clone(),
                in_flight.to_string(),
                ratio_with_spread(grpc.map(to_pg)),
                ratio_with_spread(grpc.map(to_redis)),
                ratio_with_spread(http.map(to_pg)),
                ratio_with_spread(http.map(to_redis)),
            ];
            let _ = writeln!(out, "{}", columns(&cells, &RATIO_WIDTHS));
        }
    }

    fn latency_table(&self, out: &mut String) {
        const WIDTHS: [usize; 9] = [8, 9, 17, 17, 17, 17, 14, 24, 24];
        let header = [
            "workload",
            "in_flight",
            "grpc p50/p99 us",
            "http p50/p99 us",
            "pg p50/p99 us",
            "redis p50/p99 us",
            "errors g/h/p/r",
            "other procs cpu g/h/p/r",
            "bench proc cpu g/h/p/r",
        ];
        let _ = writeln!(
            out,
            "\nlatency of one successful operation, errors, and CPU shares of the machine"
        );
        let _ = writeln!(out, "{}", columns(&header.map(String::from), &WIDTHS));
        let systems = ["cairn-grpc", "cairn-http", "postgres", "redis"];
        for (workload, in_flight) in self.points() {
            let get = |system: &str| self.row(system, &workload, in_flight);
            let joined = |cell: &dyn Fn(&InventoryRow) -> Option<String>| {
                systems
                    .iter()
                    .map(|system| get(system).and_then(cell).unwrap_or_else(|| "-".into()))
                    .collect::<Vec<_>>()
                    .join("/")
            };
            let percent = |share: Option<f64>| share.map(|s| format!("{:.0}%", s * 100.0));
            let cells = [
                workload.clone(),
                in_flight.to_string(),
                latencies(get("cairn-grpc")),
                latencies(get("cairn-http")),
                latencies(get("postgres")),
                latencies(get("redis")),
                joined(&|r| r.errors.map(|e| e.to_string())),
                joined(&|r| percent(r.others_cpu_share)),
                joined(&|r| percent(r.own_cpu_share)),
            ];
            let _ = writeln!(out, "{}", columns(&cells, &WIDTHS));
        }
        let errors: Vec<String> = self
            .rows
            .iter()
            .filter_map(|r| {
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
}

impl InventoryReport {
    /// Cairn's group commit at each point (in-process server only).
    fn log_table(&self, out: &mut String) {
        const WIDTHS: [usize; 7] = [10, 8, 9, 10, 12, 14, 12];
        let rows: Vec<&InventoryRow> = self
            .rows
            .iter()
            .filter(|r| r.system.starts_with("cairn-") && r.fsyncs_per_s.is_some())
            .collect();
        if rows.is_empty() {
            return;
        }
        let _ = writeln!(
            out,
            "\ncairn's log during the measured windows: group commits, reservations per commit, \
             fdatasync time"
        );
        let header = [
            "system",
            "workload",
            "in_flight",
            "fsyncs/s",
            "recs/fsync",
            "fsync mean us",
            "in fsync",
        ];
        let _ = writeln!(out, "{}", columns(&header.map(String::from), &WIDTHS));
        for row in rows {
            let cells = [
                row.system.clone(),
                row.workload.clone(),
                row.in_flight.to_string(),
                row.fsyncs_per_s.map_or_else(|| "-".into(), human),
                row.records_per_fsync
                    .map_or_else(|| "-".into(), |r| format!("{r:.1}")),
                row.fsync_mean_us
                    .map_or_else(|| "-".into(), |us| format!("{us:.0}")),
                row.fsync_busy_share
                    .map_or_else(|| "-".into(), |s| format!("{:.0}%", s * 100.0)),
            ];
            let _ = writeln!(out, "{}", columns(&cells, &WIDTHS));
        }
    }
}

/// Cells right-aligned to their columns' widths.
pub(crate) fn columns(cells: &[String], widths: &[usize]) -> String {
    let padded: Vec<String> = cells
        .iter()
        .zip(widths)
        .map(|(cell, &width)| format!("{cell:>width$}"))
        .collect();
    padded.join(" ")
}

pub(crate) fn rate_with_spread(row: Option<&InventoryRow>) -> String {
    let Some(row) = row else {
        return "-".into();
    };
    if row.skipped.is_some() {
        return "skipped".into();
    }
    let Some(rate) = row.ops_per_s else {
        return "-".into();
    };
    match (row.ops_per_s_min, row.ops_per_s_max) {
        (Some(min), Some(max)) if row.runs.unwrap_or(1) > 1 => {
            format!("{} [{}..{}]", human(rate), human(min), human(max))
        }
        _ => human(rate),
    }
}

pub(crate) fn ratio_with_spread(ratio: Option<(Option<f64>, Option<f64>, Option<f64>)>) -> String {
    match ratio {
        Some((Some(r), Some(min), Some(max))) if (max - min).abs() > f64::EPSILON => {
            format!(
                "{} [{}..{}]",
                ratio_text(r),
                ratio_text(min),
                ratio_text(max)
            )
        }
        Some((Some(r), _, _)) => ratio_text(r),
        _ => "-".into(),
    }
}

/// A ratio with two significant digits at least (`0.0041`, `0.52`, `3.1`, `12`).
pub(crate) fn ratio_text(ratio: f64) -> String {
    if ratio >= 10.0 {
        format!("{ratio:.0}")
    } else if ratio >= 1.0 {
        format!("{ratio:.1}")
    } else if ratio >= 0.1 {
        format!("{ratio:.2}")
    } else if ratio >= 0.01 {
        format!("{ratio:.3}")
    } else {
        format!("{ratio:.4}")
    }
}

pub(crate) fn latencies(row: Option<&InventoryRow>) -> String {
    match row.map(|r| (r.p50_us, r.p99_us)) {
        Some((Some(p50), Some(p99))) => format!("{p50:.0}/{p99:.0}"),
        _ => "-".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report() -> InventoryReport {
        let machine = Machine {
            cores: 2,
            kernel: "k".into(),
            cpu: "c".into(),
        };
        let mut report = InventoryReport::new(machine, InventorySettings::default());
        report.rows.push(InventoryRow::skipped(
            "cairn-grpc",
            "hot",
            1,
            "--cairn-url was given without --cairn-grpc-url",
        ));
        report.rows.push(InventoryRow {
            ops_per_s: Some(1000.0),
            p50_us: Some(900.0),
            p99_us: Some(2000.0),
            errors: Some(0),
            ratio_to_postgres: Some(2.0),
            ratio_to_redis: Some(0.05),
            ..InventoryRow::new("cairn-http", "hot", 1)
        });
        report.rows.push(InventoryRow {
            ops_per_s: Some(500.0),
            errors: Some(0),
            ..InventoryRow::new("postgres", "hot", 1)
        });
        report.rows.push(InventoryRow::skipped(
            "redis",
            "hot",
            1,
            "not reachable: refused",
        ));
        report
    }

    #[test]
    fn the_table_names_skipped_systems_and_shows_the_ratios() {
        let table = report().table();
        assert!(
            table.contains("cairn-grpc: skipped: --cairn-url was given without --cairn-grpc-url")
        );
        assert!(table.contains("redis: skipped: not reachable: refused"));
        assert!(table.contains("1.00k"), "{table}");
        assert!(table.contains("2.0"), "{table}");
        assert!(table.contains("0.050"), "{table}");
        assert!(table.contains("900/2000"), "{table}");
    }

    #[test]
    fn skipped_rows_carry_only_their_reason() {
        let row = InventoryRow::skipped("redis", "uniform", 64, "down");
        let json = serde_json::to_string(&row).expect("encodes");
        assert_eq!(
            json,
            r#"{"system":"redis","workload":"uniform","in_flight":64,"skipped":"down"}"#
        );
    }

    #[test]
    fn ratios_keep_two_significant_digits() {
        assert_eq!(ratio_text(12.34), "12");
        assert_eq!(ratio_text(3.17), "3.2");
        assert_eq!(ratio_text(0.523), "0.52");
        assert_eq!(ratio_text(0.0523), "0.052");
        assert_eq!(ratio_text(0.00523), "0.0052");
    }
}
