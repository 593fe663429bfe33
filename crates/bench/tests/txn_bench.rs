//! Guards `cairn bench txn`: a tiny run against the in-process two-shard Cairn and the local
//! PostgreSQL yields every row the issue and `shared/BENCHMARKS.md` require (`cairn` and
//! `postgres`, `txn-5line-2shard`, each in-flight count), with positive figures, no errors, the
//! ratio and the target, as JSON and as a PNG, and drops its databases afterwards.
//!
//! PostgreSQL (127.0.0.1:5432, a superuser without a password) is needed: under `CI=true` a
//! missing one, or one whose prepared transactions the benchmark could not enable, fails the
//! test; elsewhere the test says so loudly and checks that its rows are reported as skipped with
//! the reason instead. The benchmark's setup may restart the local PostgreSQL once to raise
//! `max_prepared_transactions`.

use cairn_bench::txn::Workload;
use cairn_bench::{TxnBenchArgs, run_txn_bench};
use serde_json::Value;
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

const POSTGRES: &str = "127.0.0.1:5432";
/// The whole run, setup and teardown included, must end within this (a PostgreSQL restart by
/// the setup takes a few seconds; the points themselves about 4 × 0.6 s).
const RUN_TIME_MAX: Duration = Duration::from_secs(150);

fn under_ci() -> bool {
    std::env::var("CI").as_deref() == Ok("true")
}

fn reachable(address: &str) -> bool {
    let address: SocketAddr = address.parse().expect("an address");
    TcpStream::connect_timeout(&address, Duration::from_secs(2)).is_ok()
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

fn row<'a>(rows: &'a [Value], system: &str, in_flight: u64) -> &'a Value {
    rows.iter()
        .find(|r| {
            r["system"] == system
                && r["workload"] == "txn-5line-2shard"
                && r["in_flight"] == in_flight
        })
        .unwrap_or_else(|| panic!("no {system} row at {in_flight} in {rows:?}"))
}

fn check_measured(row: &Value) {
    assert!(row.get("skipped").is_none(), "skipped: {row}");
    positive(row, "ops_per_s");
    let p50 = positive(row, "p50_us");
    let p99 = positive(row, "p99_us");
    assert!(p50 <= p99, "p50 above p99 in {row}");
    assert_eq!(row["errors"], 0, "errors in {row}");
    assert_eq!(row["runs"], 1, "{row}");
    assert!(row["durability"].is_string(), "{row}");
    assert!(row["transport"].is_string(), "{row}");
}

#[test]
fn a_tiny_run_reports_cairn_and_postgres_at_every_in_flight_count() {
    let has_postgres = reachable(POSTGRES);
    if !has_postgres {
        let message = format!(
            "PostgreSQL is not reachable on {POSTGRES}: start it (bash .ci/services) to run this \
             test in full"
        );
        assert!(!under_ci(), "CI=true: {message}");
        eprintln!("\n!!! SKIPPING the PostgreSQL part of the txn benchmark test: {message} !!!\n");
    }
    // Cargo's scratch directory for tests is under `target/`, on the workspace's disk.
    let scratch = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("a scratch directory");
    let json = scratch.path().join("txn.json");
    let plot = scratch.path().join("txn.png");
    let args = TxnBenchArgs {
        duration_s: 0.3,
        in_flight: vec![1, 8],
        workloads: vec![Workload::Uniform],
        runs: 1,
        json: Some(json.clone()),
        plot: cfg!(feature = "plot").then(|| plot.clone()),
        dir: Some(scratch.path().join("files")),
        ..TxnBenchArgs::default()
    };
    let began = Instant::now();
    let report = run_txn_bench(&args).expect("the benchmark runs");
    assert!(
        began.elapsed() < RUN_TIME_MAX,
        "the tiny run took {:?}",
        began.elapsed()
    );
    assert_eq!(report.rows.len(), 2 * 2);

    let text = std::fs::read_to_string(&json).expect("the JSON was written");
    let value: Value = serde_json::from_str(&text).expect("the JSON parses");
    assert_eq!(value["bench"], "txn");
    let started_at = value["started_at"].as_str().expect("started_at");
    assert!(
        started_at.ends_with('Z') && started_at.contains('T'),
        "not RFC 3339 UTC: {started_at}"
    );
    assert!(value["machine"]["cores"].as_u64().expect("cores") >= 1);
    assert_eq!(value["settings"]["shards"], 2);
    assert_eq!(value["settings"]["lines"], 5);
    let rows = value["rows"].as_array().expect("rows");
    let mut postgres_usable = has_postgres;
    for in_flight in [1, 8] {
        let cairn = row(rows, "cairn", in_flight);
        check_measured(cairn);
        assert_eq!(cairn["transport"], "grpc", "{cairn}");
        // Six records per reservation over the two shards' logs (begin, two prepares, the
        // decision, two phase twos), read from their counters.
        positive(cairn, "fsyncs_per_s");
        let per_fsync = positive(cairn, "records_per_fsync");
        let per_txn = positive(cairn, "fsyncs_per_s") * per_fsync / positive(cairn, "ops_per_s");
        assert!(
            (4.0..=8.0).contains(&per_txn),
            "{per_txn} records per reservation in {cairn}"
        );
        let pg = row(rows, "postgres", in_flight);
        match pg["skipped"].as_str() {
            None => {
                check_measured(pg);
                assert_eq!(pg["connections"], in_flight, "{pg}");
                let ratio = positive(cairn, "ratio_to_postgres");
                assert_eq!(cairn["target_met"], ratio >= 10.0, "{cairn}");
            }
            Some(reason) => {
                let message = format!("the postgres rows were skipped: {reason}");
                assert!(!under_ci(), "CI=true: {message}");
                eprintln!("\n!!! {message} !!!\n");
                assert!(reason.contains("PostgreSQL"), "{pg}");
                assert!(cairn.get("ratio_to_postgres").is_none(), "{cairn}");
                postgres_usable = false;
            }
        }
    }
    let table = report.table();
    for needle in ["cairn/postgres", "target", "txn-5line-2shard"] {
        assert!(table.contains(needle), "{needle} not in\n{table}");
    }
    if cfg!(feature = "plot") {
        let bytes = std::fs::read(&plot).expect("the plot was written");
        assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
    }
    if postgres_usable {
        check_dropped(&report.settings.postgres_databases);
    }
    assert!(
        !scratch
            .path()
            .join("files")
            .read_dir()
            .expect("files")
            .any(|_| true),
        "the in-process server's data directory was not removed"
    );
}

/// Both databases are gone, and no transaction of theirs is left prepared.
fn check_dropped(databases: &[String]) {
    assert_eq!(databases.len(), 2, "{databases:?}");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let (client, connection) = tokio_postgres::connect(
            "host=127.0.0.1 user=postgres dbname=postgres",
            tokio_postgres::NoTls,
        )
        .await
        .expect("PostgreSQL again");
        tokio::spawn(connection);
        let left: i64 = client
            .query_one(
                "SELECT count(*) FROM pg_database WHERE datname = ANY($1)",
                &[&databases],
            )
            .await
            .expect("a lookup")
            .get(0);
        assert_eq!(left, 0, "databases {databases:?} were left behind");
        let prepared: i64 = client
            .query_one(
                "SELECT count(*) FROM pg_prepared_xacts WHERE database = ANY($1)",
                &[&databases],
            )
            .await
            .expect("a lookup")
            .get(0);
        assert_eq!(prepared, 0, "prepared transactions were left behind");
    });
}
