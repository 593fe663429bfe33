//! Guards `cairn bench inventory`: a tiny run against the in-process Cairn and the local
//! PostgreSQL and Redis yields every row the issue and `shared/BENCHMARKS.md` require, with
//! positive figures and the ratios, as JSON and as a PNG, and cleans up after itself.
//!
//! PostgreSQL (127.0.0.1:5432) and Redis (127.0.0.1:6379) are needed: under `CI=true` a missing
//! one fails the test; elsewhere the test says so loudly and checks that its rows are reported
//! as skipped with the reason instead.

use cairn_bench::inventory::Workload;
use cairn_bench::{InventoryBenchArgs, run_inventory_bench};
use serde_json::Value;
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

const POSTGRES: &str = "127.0.0.1:5432";
const REDIS: &str = "127.0.0.1:6379";

fn reachable(address: &str) -> bool {
    let address: SocketAddr = address.parse().expect("an address");
    TcpStream::connect_timeout(&address, Duration::from_secs(2)).is_ok()
}

/// Whether `name` at `address` is there; under CI a missing service fails the test.
fn service(name: &str, address: &str) -> bool {
    if reachable(address) {
        return true;
    }
    let message = format!(
        "{name} is not reachable on {address}: start it (bash .ci/services) to run this test in full"
    );
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "CI=true: {message}"
    );
    eprintln!("\n!!! SKIPPING the {name} part of the inventory benchmark test: {message} !!!\n");
    false
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

fn row<'a>(rows: &'a [Value], system: &str, workload: &str, in_flight: u64) -> &'a Value {
    rows.iter()
        .find(|r| r["system"] == system && r["workload"] == workload && r["in_flight"] == in_flight)
        .unwrap_or_else(|| panic!("no {system} {workload} row at {in_flight} in {rows:?}"))
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
}

#[test]
fn a_tiny_run_reports_every_system_workload_and_in_flight_count() {
    let has_postgres = service("PostgreSQL", POSTGRES);
    let has_redis = service("Redis", REDIS);
    // Cargo's scratch directory for tests is under `target/`, on the workspace's disk.
    let scratch = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("a scratch directory");
    let json = scratch.path().join("inventory.json");
    let plot = scratch.path().join("inventory.png");
    let args = InventoryBenchArgs {
        duration_s: 0.3,
        in_flight: vec![1, 4],
        workloads: vec![Workload::Hot, Workload::Uniform],
        runs: 1,
        json: Some(json.clone()),
        plot: cfg!(feature = "plot").then(|| plot.clone()),
        dir: Some(scratch.path().join("files")),
        ..InventoryBenchArgs::default()
    };
    let report = run_inventory_bench(&args).expect("the benchmark runs");
    assert_eq!(report.rows.len(), 2 * 2 * 4);

    let text = std::fs::read_to_string(&json).expect("the JSON was written");
    let value: Value = serde_json::from_str(&text).expect("the JSON parses");
    assert_eq!(value["bench"], "inventory");
    let started_at = value["started_at"].as_str().expect("started_at");
    assert!(
        started_at.ends_with('Z') && started_at.contains('T'),
        "not RFC 3339 UTC: {started_at}"
    );
    assert!(value["machine"]["cores"].as_u64().expect("cores") >= 1);
    assert_eq!(value["settings"]["cairn"], "in-process");
    let rows = value["rows"].as_array().expect("rows");
    for workload in ["hot", "uniform"] {
        for in_flight in [1, 4] {
            let grpc = row(rows, "cairn-grpc", workload, in_flight);
            check_measured(grpc);
            assert_eq!(grpc["pipelined"], true, "{grpc}");
            let http = row(rows, "cairn-http", workload, in_flight);
            check_measured(http);
            assert_eq!(http["connections"], in_flight, "{http}");
            for cairn in [grpc, http] {
                // The in-process server's group commit, read from its log's counters.
                positive(cairn, "fsyncs_per_s");
                positive(cairn, "records_per_fsync");
                for (system, present, ratio) in [
                    ("postgres", has_postgres, "ratio_to_postgres"),
                    ("redis", has_redis, "ratio_to_redis"),
                ] {
                    let peer = row(rows, system, workload, in_flight);
                    if present {
                        check_measured(peer);
                        positive(cairn, ratio);
                    } else {
                        let reason = peer["skipped"].as_str().expect("a reason");
                        assert!(reason.contains("not reachable"), "{peer}");
                        assert!(cairn.get(ratio).is_none(), "{cairn}");
                    }
                }
            }
            if has_postgres {
                let pg = row(rows, "postgres", workload, in_flight);
                assert_eq!(pg["connections"], in_flight, "{pg}");
                assert_eq!(pg["pipelined"], false, "{pg}");
            }
        }
    }
    let table = report.table();
    for needle in [
        "grpc/postgres",
        "http/redis",
        "cairn-grpc: Reserve on the gRPC Pipeline",
    ] {
        assert!(table.contains(needle), "{needle} not in\n{table}");
    }
    if cfg!(feature = "plot") {
        let bytes = std::fs::read(&plot).expect("the plot was written");
        assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
    }
    if has_postgres || has_redis {
        check_cleaned_up(&report.settings);
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

/// The PostgreSQL table is dropped and the Redis keys deleted.
fn check_cleaned_up(settings: &cairn_bench::inventory::InventorySettings) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        if let Some(table) = &settings.postgres_table {
            let (client, connection) = tokio_postgres::connect(
                "host=127.0.0.1 user=postgres dbname=postgres",
                tokio_postgres::NoTls,
            )
            .await
            .expect("PostgreSQL again");
            tokio::spawn(connection);
            let found: Option<String> = client
                .query_one("SELECT to_regclass($1)::text", &[table])
                .await
                .expect("a lookup")
                .get(0);
            assert_eq!(found, None, "table {table} was left behind");
        }
        if let Some(pattern) = &settings.redis_keys {
            let client = redis::Client::open("redis://127.0.0.1:6379").expect("a Redis URL");
            let mut connection = client
                .get_multiplexed_async_connection()
                .await
                .expect("Redis again");
            let left: Vec<String> = redis::cmd("KEYS")
                .arg(pattern)
                .query_async(&mut connection)
                .await
                .expect("KEYS");
            assert!(left.is_empty(), "{} Redis keys left behind", left.len());
        }
    });
}
