//! Guards `cairn log verify`, `log dump`, `replay` and startup against damaged logs, on data
//! written by a real server: a flipped byte in an old segment is named (file, offset, LSN) and
//! refuses startup; a torn tail is a warning that startup cuts.

mod support;

use serde_json::{Value, json};
use support::{TOKEN, run, segments, serve};

fn fill(base: &str, count: usize) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let client = reqwest::Client::new();
        for i in 0..count {
            let body = json!({"request_id": format!("fill-{i}"), "sku": format!("SKU-{}", i % 50), "location": "W1",
                "delta": 5, "reason": "receipt of a pallet of goods from the supplier"});
            let response = client
                .post(format!("{base}/v1/inventory/adjustments"))
                .bearer_auth(TOKEN)
                .json(&body)
                .send()
                .await
                .expect("sent");
            assert!(response.status().is_success(), "{}", response.status());
        }
    });
}

fn written_dir(records: usize) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    // One shard, so that every record of the test lands in the segments it inspects.
    let server = serve(&data, &["--shards", "1", "--segment-bytes", "65536"]).expect("serves");
    fill(&server.base, records);
    assert!(server.terminate().success(), "clean shutdown");
    dir
}

#[test]
fn verify_names_a_flipped_byte_in_an_old_segment_and_startup_refuses() {
    let dir = written_dir(1200);
    let data = dir.path().join("data");
    let data_arg = data.to_str().expect("utf-8 path");
    let sound = run(&["log", "verify", "--quiet", "--data-dir", data_arg]);
    assert!(
        sound.status.success(),
        "{}",
        String::from_utf8_lossy(&sound.stdout)
    );
    let files = segments(&data);
    assert!(
        files.len() >= 3,
        "expected several segments, got {}",
        files.len()
    );
    let victim = &files[1];
    let mut bytes = std::fs::read(victim).expect("read");
    let offset = bytes.len() / 2;
    bytes[offset] ^= 0x40;
    std::fs::write(victim, &bytes).expect("write");

    let damaged = run(&["log", "verify", "--quiet", "--data-dir", data_arg]);
    let stdout = String::from_utf8_lossy(&damaged.stdout);
    assert_eq!(damaged.status.code(), Some(1), "{stdout}");
    let name = victim.file_name().and_then(|n| n.to_str()).expect("name");
    assert!(stdout.contains(name), "the file is named: {stdout}");
    assert!(
        stdout.contains("byte offset"),
        "the offset is named: {stdout}"
    );
    assert!(stdout.contains("LSN"), "the LSN is named: {stdout}");

    let refused = support::serve(&data, &[]);
    let message = refused.err().expect("startup refuses a damaged log");
    assert!(
        message.contains(name) && message.contains("byte offset"),
        "{message}"
    );
}

#[test]
fn a_torn_tail_is_a_warning_and_startup_cuts_it() {
    let dir = written_dir(100);
    let data = dir.path().join("data");
    let data_arg = data.to_str().expect("utf-8 path");
    let newest = segments(&data).pop().expect("a segment");
    let length = std::fs::metadata(&newest).expect("stat").len();
    let mut bytes = std::fs::read(&newest).expect("read");
    // Half a record of garbage, as a crash in the middle of a write would leave.
    bytes.extend_from_slice(&[0xAB; 77]);
    std::fs::write(&newest, &bytes).expect("write");

    let torn = run(&["log", "verify", "--quiet", "--data-dir", data_arg]);
    let stdout = String::from_utf8_lossy(&torn.stdout);
    assert!(
        torn.status.success(),
        "a torn tail alone is not a failure: {stdout}"
    );
    assert!(
        stdout.contains("warning: torn tail") && stdout.contains(&length.to_string()),
        "{stdout}"
    );

    let server = serve(&data, &[]).expect("starts, cutting the tail");
    assert!(server.terminate().success());
    assert_eq!(
        std::fs::metadata(&newest).expect("stat").len(),
        length,
        "cut back to the last intact record"
    );
    let clean = run(&["log", "verify", "--quiet", "--data-dir", data_arg]);
    assert!(!String::from_utf8_lossy(&clean.stdout).contains("warning"));
}

#[test]
fn dump_and_replay_show_the_log_and_the_past() {
    let dir = written_dir(20);
    let data = dir.path().join("data");
    let data_arg = data.to_str().expect("utf-8 path");
    let dump = run(&[
        "log",
        "dump",
        "--data-dir",
        data_arg,
        "--from-lsn",
        "5",
        "--limit",
        "3",
        "--json",
    ]);
    assert!(dump.status.success());
    let lines: Vec<Value> = String::from_utf8_lossy(&dump.stdout)
        .lines()
        .map(|line| serde_json::from_str(line).expect("json line"))
        .collect();
    let lsns: Vec<u64> = lines.iter().filter_map(|l| l["lsn"].as_u64()).collect();
    assert_eq!(lsns, [5, 6, 7]);
    assert_eq!(lines[0]["type"], "command");

    let past = run(&["replay", "--data-dir", data_arg, "--to-lsn", "10", "--json"]);
    assert!(
        past.status.success(),
        "{}",
        String::from_utf8_lossy(&past.stderr)
    );
    let report: Value = serde_json::from_slice(&past.stdout).expect("json");
    assert_eq!(report["lsn"], 10);
    let from_zero = run(&[
        "replay",
        "--data-dir",
        data_arg,
        "--to-lsn",
        "10",
        "--from-zero",
        "--json",
    ]);
    let zero: Value = serde_json::from_slice(&from_zero.stdout).expect("json");
    assert_eq!(report["state_hash"], zero["state_hash"]);

    let snapshot = run(&["snapshot", "--data-dir", data_arg]);
    assert!(
        snapshot.status.success(),
        "{}",
        String::from_utf8_lossy(&snapshot.stderr)
    );
    let end = run(&["replay", "--data-dir", data_arg, "--json"]);
    let end_zero = run(&["replay", "--data-dir", data_arg, "--from-zero", "--json"]);
    let end: Value = serde_json::from_slice(&end.stdout).expect("json");
    let end_zero: Value = serde_json::from_slice(&end_zero.stdout).expect("json");
    assert_eq!(end["lsn"], 20);
    assert_eq!(end["snapshot_lsn"], 20, "the snapshot was used");
    assert_eq!(
        end["state_hash"], end_zero["state_hash"],
        "snapshot and zero replay agree"
    );
    let verify = run(&["log", "verify", "--quiet", "--data-dir", data_arg]);
    assert!(String::from_utf8_lossy(&verify.stdout).contains("snapshot at LSN 20 ok"));
}

#[test]
fn a_restart_with_another_shard_count_is_refused() {
    let dir = written_dir(1);
    let data = dir.path().join("data");
    let refused = serve(&data, &["--shards", "4"]).err().expect("refused");
    assert!(
        refused.contains("1 shards") && refused.contains('4'),
        "{refused}"
    );
}
