//! Guards `cairn bench log`'s report: a tiny run yields every row the issue and
//! `shared/BENCHMARKS.md` require, with positive figures, as JSON and as a PNG.

use cairn_bench::{Appenders, LogBenchArgs, run_log_bench};
use serde_json::Value;

fn scratch() -> tempfile::TempDir {
    // Cargo's scratch directory for tests is under `target/`, on the workspace's disk.
    tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("a scratch directory")
}

fn positive(row: &Value, field: &str) -> f64 {
    let value = row[field]
        .as_f64()
        .unwrap_or_else(|| panic!("{field} missing in {row}"));
    assert!(
        value > 0.0 && value.is_finite(),
        "{field} is {value} in {row}"
    );
    value
}

fn row<'a>(rows: &'a [Value], system: &str, workload: &str, in_flight: Option<u64>) -> &'a Value {
    rows.iter()
        .find(|r| {
            r["system"] == system
                && r["workload"] == workload
                && in_flight.is_none_or(|n| r["in_flight"] == n)
        })
        .unwrap_or_else(|| panic!("no {system} {workload} row at {in_flight:?} in {rows:?}"))
}

#[test]
fn a_tiny_run_reports_every_required_row_with_positive_figures() {
    let scratch = scratch();
    let json = scratch.path().join("log.json");
    let plot = scratch.path().join("log.png");
    let args = LogBenchArgs {
        dir: Some(scratch.path().join("files")),
        duration_s: 0.2,
        json: Some(json.clone()),
        plot: cfg!(feature = "plot").then(|| plot.clone()),
        recover_records: 20_000,
        in_flight: vec![1, 4],
        runs: 1,
        // Dropping the page cache would slow every other process on the machine for a smoke test.
        warm_cache: true,
        ..LogBenchArgs::default()
    };
    let report = run_log_bench(&args).expect("the benchmark runs");
    assert_eq!(report.rows.len(), 2 * 2 + 3);

    let text = std::fs::read_to_string(&json).expect("the JSON was written");
    let value: Value = serde_json::from_str(&text).expect("the JSON parses");
    assert_eq!(value["bench"], "log");
    assert_eq!(value["settings"]["appenders"], "tasks");
    let started_at = value["started_at"].as_str().expect("started_at");
    assert!(
        started_at.ends_with('Z') && started_at.contains('T'),
        "not RFC 3339 UTC: {started_at}"
    );
    assert!(value["machine"]["cores"].as_u64().is_some_and(|n| n >= 1));
    assert!(value["machine"]["kernel"].is_string() && value["machine"]["cpu"].is_string());
    let rows = value["rows"].as_array().expect("rows");

    for in_flight in [1, 4] {
        let cairn = row(rows, "cairn", "append", Some(in_flight));
        let floor = row(rows, "floor", "append", Some(in_flight));
        for field in [
            "ops_per_s",
            "p50_us",
            "p99_us",
            "batch_records",
            "fsyncs_per_s",
            "fsync_mean_us",
            "fsync_busy_share",
            "ratio_to_floor",
        ] {
            positive(cairn, field);
        }
        assert_eq!(cairn["appenders"], "tasks");
        for field in [
            "ops_per_s",
            "p50_us",
            "p99_us",
            "batch_records",
            "fsync_mean_us",
            "fsync_busy_share",
        ] {
            positive(floor, field);
        }
        assert!(positive(cairn, "batch_records") >= 1.0);
        assert!(positive(cairn, "p99_us") >= positive(cairn, "p50_us"));
    }
    for (system, workload) in [
        ("cairn", "recover-zero"),
        ("cairn", "recover-snapshot"),
        ("floor", "read-files"),
    ] {
        let timed = row(rows, system, workload, None);
        positive(timed, "seconds");
        assert_eq!(timed["cache"], "warm", "{timed}");
    }
    assert_eq!(row(rows, "cairn", "recover-zero", None)["records"], 20_000);
    assert_eq!(
        row(rows, "cairn", "recover-snapshot", None)["records"],
        10_000
    );
    positive(row(rows, "cairn", "recover-zero", None), "ops_per_s");
    positive(row(rows, "floor", "read-files", None), "bytes");

    if cfg!(feature = "plot") {
        let png = std::fs::read(&plot).expect("the plot was written");
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    }
    assert!(report.table().contains("cairn/floor"));
    let leftovers = std::fs::read_dir(scratch.path().join("files"))
        .expect("the base dir exists")
        .count();
    assert_eq!(leftovers, 0, "the benchmark's files were not removed");
}

#[test]
fn skipped_recovery_is_reported_with_its_reason_and_threads_can_drive_the_log() {
    let scratch = scratch();
    let args = LogBenchArgs {
        dir: Some(scratch.path().to_path_buf()),
        duration_s: 0.05,
        skip_recover: true,
        in_flight: vec![2],
        runs: 1,
        appenders: Appenders::Threads,
        ..LogBenchArgs::default()
    };
    let report = run_log_bench(&args).expect("the benchmark runs");
    let cairn = report
        .row("cairn", "append", Some(2))
        .expect("the log's append row");
    assert_eq!(cairn.appenders.as_deref(), Some("threads"));
    assert!(cairn.ops_per_s.is_some_and(|rate| rate > 0.0));
    assert_eq!(report.settings.appenders, "threads");
    for workload in ["recover-zero", "recover-snapshot", "read-files"] {
        let row = report
            .rows
            .iter()
            .find(|r| r.workload == workload)
            .expect("a row for each recovery workload");
        assert_eq!(row.skipped.as_deref(), Some("--skip-recover was given"));
        assert_eq!(row.seconds, None);
    }
}

#[test]
fn bad_arguments_are_refused_before_anything_runs() {
    let bad = [
        LogBenchArgs {
            in_flight: vec![0],
            ..LogBenchArgs::default()
        },
        LogBenchArgs {
            duration_s: 0.0,
            ..LogBenchArgs::default()
        },
        LogBenchArgs {
            runs: 0,
            ..LogBenchArgs::default()
        },
        LogBenchArgs {
            recover_records: 1,
            ..LogBenchArgs::default()
        },
    ];
    for args in bad {
        assert!(run_log_bench(&args).is_err(), "{args:?} was accepted");
    }
}

/// The full benchmark, as `cairn bench log --duration-s 3` runs it: 10 million records to
/// recover, page cache dropped when allowed. Run with
/// `cargo test --release -p cairn-bench --test log_bench -- --ignored --nocapture`.
#[test]
#[ignore = "takes minutes and a couple of GB of disk"]
fn full_log_benchmark() {
    let out = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"));
    let args = LogBenchArgs {
        dir: Some(out.join("bench-log")),
        duration_s: std::env::var("CAIRN_BENCH_DURATION_S")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(3.0),
        json: Some(out.join("bench-log.json")),
        plot: cfg!(feature = "plot").then(|| out.join("bench-log.png")),
        ..LogBenchArgs::default()
    };
    let report = run_log_bench(&args).expect("the benchmark runs");
    eprintln!(
        "JSON: {}, plot: {}",
        out.join("bench-log.json").display(),
        out.join("bench-log.png").display()
    );
    assert!(report.rows.iter().all(|r| r.skipped.is_none()));
}
