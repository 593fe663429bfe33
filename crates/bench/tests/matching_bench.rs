//! Guards `cairn bench matching` end to end at tiny sizes: every row the issue asks for is there,
//! with positive figures or the reason it was skipped, and the JSON and the plot are written.

use cairn_bench::MatchingReport;
use cairn_bench::matching::{MatchingBenchArgs, PEERS_SKIPPED, run_matching_bench};

#[test]
fn every_required_row_is_measured_or_says_why_not() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let json = dir.path().join("matching.json");
    let plot = dir.path().join("matching.png");
    let args = MatchingBenchArgs {
        orders: 3_000,
        warmup_orders: 300,
        resting: 500,
        runs: 2,
        in_flight: vec![1, 64, 256],
        duration_s: 0.3,
        recover_orders: 2_000,
        recover_events: 12_000,
        recover_tail_events: 1_000,
        dir: Some(dir.path().to_path_buf()),
        json: Some(json.clone()),
        plot: cfg!(feature = "plot").then(|| plot.clone()),
        ..MatchingBenchArgs::default()
    };
    let report = run_matching_bench(&args).expect("the benchmark runs");

    for system in ["cairn", "orderbook-rs", "lobster"] {
        let row = report
            .row(system, "core-mixed", None)
            .unwrap_or_else(|| panic!("no core-mixed row for {system}"));
        match &row.skipped {
            Some(reason) => {
                assert_ne!(system, "cairn", "Cairn's own book is always measured");
                if cfg!(feature = "peers") {
                    panic!("{system} skipped in a build with its peers: {reason}");
                }
                assert_eq!(reason, PEERS_SKIPPED);
            }
            None => {
                assert!(row.ops_per_s.is_some_and(|r| r > 0.0), "{row:?}");
                assert_eq!(row.orders, Some(3_000));
                assert_eq!(row.runs, Some(2));
            }
        }
    }
    let cairn = report
        .row("cairn", "core-mixed", None)
        .expect("cairn's row");
    assert_eq!(
        cairn.ratio_to_lobster.is_some(),
        cfg!(feature = "peers"),
        "{cairn:?}"
    );
    for in_flight in [1, 64, 256] {
        let http = report
            .row("cairn-http", "e2e", Some(in_flight))
            .unwrap_or_else(|| panic!("no HTTP e2e row at {in_flight} in flight"));
        assert!(http.skipped.is_none(), "{http:?}");
        assert!(http.ops_per_s.is_some_and(|r| r > 0.0), "{http:?}");
        assert!(http.p99_us.is_some_and(|p| p > 0.0), "{http:?}");
        assert_eq!(http.errors, Some(0), "{http:?}");
        let grpc = report
            .row("cairn-grpc", "e2e", Some(in_flight))
            .unwrap_or_else(|| panic!("no gRPC e2e row at {in_flight} in flight"));
        assert!(grpc.skipped.is_none(), "{grpc:?}");
        assert!(grpc.ops_per_s.is_some_and(|r| r > 0.0), "{grpc:?}");
        assert!(grpc.p99_us.is_some_and(|p| p > 0.0), "{grpc:?}");
        assert_eq!(grpc.errors, Some(0), "{grpc:?}");
    }
    for workload in ["recover-snapshot", "recover-zero"] {
        let row = report
            .row("cairn", workload, None)
            .unwrap_or_else(|| panic!("no {workload} row"));
        assert!(row.skipped.is_none(), "{row:?}");
        assert!(row.seconds.is_some_and(|s| s > 0.0), "{row:?}");
        assert_eq!(row.log_records, Some(12_000));
        assert!(row.resting_orders.is_some_and(|n| n > 1_000), "{row:?}");
    }
    let snapshot = report.row("cairn", "recover-snapshot", None).expect("row");
    assert_eq!(snapshot.records, Some(1_000), "the tail is replayed");
    let zero = report.row("cairn", "recover-zero", None).expect("row");
    assert_eq!(zero.records, Some(12_000), "every record is replayed");

    let written: MatchingReport =
        serde_json::from_slice(&std::fs::read(&json).expect("the JSON is written"))
            .expect("the JSON parses");
    assert_eq!(written, report);
    assert_eq!(written.bench, "matching");
    if cfg!(feature = "plot") {
        let png = std::fs::read(&plot).expect("the plot is written");
        assert!(png.starts_with(b"\x89PNG"), "a PNG");
    }
}

#[test]
fn skipped_parts_are_reported_as_skipped() {
    let args = MatchingBenchArgs {
        orders: 500,
        warmup_orders: 0,
        resting: 100,
        runs: 1,
        in_flight: vec![1],
        skip_e2e: true,
        skip_recover: true,
        ..MatchingBenchArgs::default()
    };
    let report = run_matching_bench(&args).expect("the benchmark runs");
    for workload in ["recover-snapshot", "recover-zero"] {
        let row = report
            .row("cairn", workload, None)
            .expect("the row is there");
        assert_eq!(row.skipped.as_deref(), Some("--skip-recover was given"));
    }
}
