//! Times opening a log from a snapshot point in the middle of a segment (what a restart after a
//! snapshot does): `cargo run --release -p cairn-log --example scan_profile [DIR]`. Writes 1.2
//! million records of 110 bytes (about two 64 MiB segments) once into DIR (default
//! `target/scan-profile`), then opens the log from LSN 900,000 and from zero, dropping the page
//! cache first when it may (root).

use cairn_log::storage::{FileStorage, Storage};
use cairn_log::{Entry, LogOptions, ScanStart, open_log};
use cairn_types::Lsn;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

const RECORDS: u64 = 1_200_000;
const SNAPSHOT_LSN: u64 = 900_000;

fn drop_cache() -> &'static str {
    let _ = std::process::Command::new("sync").status();
    match std::fs::write("/proc/sys/vm/drop_caches", "1\n") {
        Ok(()) => "cold",
        Err(_) => "warm",
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::args()
        .nth(1)
        .map_or_else(|| PathBuf::from("target/scan-profile"), PathBuf::from);
    let storage: Arc<dyn Storage> = Arc::new(FileStorage);
    let (mut writer, outcome) = open_log(
        Arc::clone(&storage),
        &dir,
        LogOptions::default(),
        ScanStart::ZERO,
        &mut |_| Ok(()),
    )?;
    let mut chain_at_snapshot = None;
    if outcome.last_lsn.0 < RECORDS {
        let payload = [7u8; 110];
        let mut lsn = outcome.last_lsn.0;
        while lsn < RECORDS {
            let entries: Vec<Entry<'_>> = (0..1000)
                .map(|i| Entry {
                    timestamp_ms: 1_800_000_000_000 + i,
                    record_type: 1,
                    payload: &payload,
                })
                .collect();
            writer.append(&entries)?;
            lsn += 1000;
            if lsn == SNAPSHOT_LSN {
                chain_at_snapshot = Some(writer.last_chain());
            }
        }
        writer.sync()?;
    }
    drop(writer);
    let chain = match chain_at_snapshot {
        Some(chain) => chain,
        None => {
            let mut chain = None;
            open_log(
                Arc::clone(&storage),
                &dir,
                LogOptions::default(),
                ScanStart::ZERO,
                &mut |view| {
                    if view.lsn == Lsn(SNAPSHOT_LSN) {
                        chain = Some(view.chain);
                    }
                    Ok(())
                },
            )?;
            chain.ok_or("no record at the snapshot LSN")?
        }
    };
    for (name, start) in [
        (
            "from snapshot",
            ScanStart {
                after_lsn: Lsn(SNAPSHOT_LSN),
                chain,
            },
        ),
        ("from zero", ScanStart::ZERO),
    ] {
        for _ in 0..3 {
            let cache = drop_cache();
            let started = Instant::now();
            let mut visited = 0u64;
            let (_, outcome) = open_log(
                Arc::clone(&storage),
                &dir,
                LogOptions::default(),
                start,
                &mut |_| {
                    visited += 1;
                    Ok(())
                },
            )?;
            println!(
                "{name} ({cache}): {:?}, {visited} visited, {} checked, last {}",
                started.elapsed(),
                outcome.records_checked,
                outcome.last_lsn.0
            );
        }
    }
    Ok(())
}
