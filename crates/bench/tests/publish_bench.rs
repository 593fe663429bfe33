//! Guards `cairn bench publish` end to end at a tiny size: every row the issue asks for is there
//! with sane figures (memory counted, since this binary installs the counting allocator), and
//! the JSON and the plot are written.

use cairn_bench::publish::report::{PUBLISH_1M, PUBLISH_10K, READ_IDLE, READ_PUBLISHING, ROLLBACK};
use cairn_bench::publish::{PublishBenchArgs, run_publish_bench};
use cairn_bench::{CountingAlloc, PublishReport};
use std::time::{Duration, Instant};

#[global_allocator]
static ALLOCATOR: CountingAlloc = CountingAlloc;

/// Longest the tiny run may take, in a debug build on a busy machine.
const RUN_TIME_MAX: Duration = Duration::from_secs(120);

#[test]
fn every_row_is_measured_with_sane_figures() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let json = dir.path().join("publish.json");
    let plot = dir.path().join("publish.png");
    let args = PublishBenchArgs {
        keys: 20_000,
        change_keys: 200,
        readers: 4,
        duration_s: 0.3,
        runs: 2,
        dir: Some(dir.path().to_path_buf()),
        json: Some(json.clone()),
        plot: cfg!(feature = "plot").then(|| plot.clone()),
    };
    let started = Instant::now();
    let report = run_publish_bench(&args).expect("the benchmark runs");
    assert!(
        started.elapsed() < RUN_TIME_MAX,
        "took {:?}",
        started.elapsed()
    );
    assert!(report.settings.allocator_counting);

    for (workload, keys) in [(PUBLISH_10K, 200), (PUBLISH_1M, 20_000), (ROLLBACK, 200)] {
        let row = report
            .row(workload)
            .unwrap_or_else(|| panic!("no {workload} row"));
        assert_eq!(row.system, "cairn");
        assert!(row.skipped.is_none(), "{row:?}");
        let seconds = row.seconds.expect("seconds");
        assert!(seconds > 0.0 && seconds < 60.0, "{row:?}");
        let request_s = row.request_s.expect("request_s");
        assert!(request_s > 0.0 && request_s <= seconds, "{row:?}");
        assert!(row.bytes_added.is_some(), "{row:?}");
        assert!(row.ratio_to_target.is_some_and(|r| r > 0.0), "{row:?}");
        assert_eq!(row.keys, Some(keys), "{row:?}");
        assert_eq!(row.runs, Some(2), "{row:?}");
        assert!(row.fsyncs.is_some_and(|n| n >= 1.0), "durable: {row:?}");
    }
    let fresh = report.row(PUBLISH_1M).expect("publish-1m");
    // 20,000 keys of a few dozen bytes each cannot be held in less than a megabyte.
    assert!(
        fresh.bytes_added.is_some_and(|b| b > 1_000_000),
        "{fresh:?}"
    );
    assert!(fresh.upload_s.is_some_and(|s| s > 0.0), "{fresh:?}");
    assert!(
        fresh.upload_requests.is_some_and(|n| n >= 2),
        "chunked: {fresh:?}"
    );
    assert!(report.row(ROLLBACK).is_some_and(|r| r.upload_s.is_none()));

    for workload in [READ_IDLE, READ_PUBLISHING] {
        let row = report
            .row(workload)
            .unwrap_or_else(|| panic!("no {workload} row"));
        assert!(row.skipped.is_none(), "{row:?}");
        assert!(row.ops_per_s.is_some_and(|r| r > 0.0), "{row:?}");
        let p50 = row.p50_us.expect("p50");
        let p99 = row.p99_us.expect("p99");
        assert!(p50 > 0.0 && p50 <= p99, "{row:?}");
        assert_eq!(row.errors, Some(0), "{row:?}");
        assert_eq!(row.readers, Some(4));
    }
    let publishing = report.row(READ_PUBLISHING).expect("read-publishing");
    assert!(
        publishing.releases.is_some_and(|n| n >= 1.0),
        "{publishing:?}"
    );
    assert!(publishing.p99_ratio_to_idle.is_some_and(|r| r > 0.0));

    let text = std::fs::read_to_string(&json).expect("the JSON was written");
    let back: PublishReport = serde_json::from_str(&text).expect("the JSON reads back");
    assert_eq!(back, report);
    assert!(text.contains("\"bench\": \"publish\""), "{text}");
    if cfg!(feature = "plot") {
        let png = std::fs::read(&plot).expect("the plot was written");
        assert!(png.starts_with(b"\x89PNG"), "a PNG");
    }
    let table = report.table();
    assert!(table.contains("target: 10k-key change live"), "{table}");
}

#[test]
fn bad_arguments_are_refused_before_anything_runs() {
    let args = PublishBenchArgs {
        keys: 100,
        change_keys: 200,
        ..PublishBenchArgs::default()
    };
    let error = run_publish_bench(&args).expect_err("refused");
    assert!(error.to_string().contains("--change-keys"), "{error}");
}
