//! `cairn log verify` and `cairn log dump`.

use anyhow::{Context, bail};
use cairn_engine::cairn::Cairn;
use cairn_engine::core::EnvelopeOf;
use cairn_engine::{ShardPaths, read_meta, shard_dir};
use cairn_log::snapshot::{list_snapshots, read_snapshot};
use cairn_log::storage::{FileStorage, Storage};
use cairn_log::{ChainHash, LogError, LogReader, ScanStart, scan};
use cairn_types::{Lsn, ShardId};
use clap::{Args, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

/// `cairn log ...`
#[derive(Subcommand)]
pub enum LogCommand {
    /// Check every record's checksum, the LSN sequence and the whole hash chain, and every
    /// snapshot. Exits 0 when sound (a torn tail of the newest segment is a warning: recovery cuts
    /// it), 1 on any other fault, naming the file, byte offset and LSN.
    Verify(VerifyArgs),
    /// Print records.
    Dump(DumpArgs),
}

/// `cairn log verify`
#[derive(Args)]
pub struct VerifyArgs {
    /// The data directory.
    #[arg(long, env = "CAIRN_DATA_DIR")]
    data_dir: PathBuf,
    /// No progress bar.
    #[arg(long)]
    quiet: bool,
}

/// `cairn log dump`
#[derive(Args)]
pub struct DumpArgs {
    /// The data directory.
    #[arg(long, env = "CAIRN_DATA_DIR")]
    data_dir: PathBuf,
    /// Which shard.
    #[arg(long, default_value_t = 0)]
    shard: u16,
    /// First LSN to print (0 or 1: the first record).
    #[arg(long, default_value_t = 0)]
    from_lsn: u64,
    /// Most records to print.
    #[arg(long, default_value_t = 100)]
    limit: u64,
    /// One JSON object per line.
    #[arg(long)]
    json: bool,
}

pub fn run(command: LogCommand) -> anyhow::Result<ExitCode> {
    match command {
        LogCommand::Verify(args) => verify(&args),
        LogCommand::Dump(args) => dump(&args),
    }
}

fn shard_count(storage: &dyn Storage, data_dir: &Path) -> anyhow::Result<u16> {
    match read_meta(storage, data_dir)? {
        Some(meta) => Ok(meta.shard_count),
        None => bail!(
            "{} is not a Cairn data directory (no cairn.json)",
            data_dir.display()
        ),
    }
}

fn segment_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter_map(|e| e.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

fn verify(args: &VerifyArgs) -> anyhow::Result<ExitCode> {
    let storage = FileStorage;
    let shards = shard_count(&storage, &args.data_dir)?;
    let dirs: Vec<ShardPaths> = (0..shards)
        .map(|s| ShardPaths::new(&shard_dir(&args.data_dir, ShardId(s))))
        .collect();
    let total: u64 = dirs.iter().map(|d| segment_bytes(&d.log_dir)).sum();
    let bar = if args.quiet {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(total)
    };
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} verifying [{bar:40}] {bytes}/{total_bytes} ({bytes_per_sec}, {eta})",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let mut faults = 0;
    let mut done = 0;
    for (index, paths) in dirs.iter().enumerate() {
        let result = verify_shard(&storage, paths, &mut |bytes| bar.set_position(done + bytes));
        done += segment_bytes(&paths.log_dir);
        bar.set_position(done);
        bar.suspend(|| match result {
            Ok(report) => println!("shard {index}: {report}"),
            Err(error) => {
                faults += 1;
                println!("shard {index}: FAULT: {error}");
            }
        });
    }
    bar.finish_and_clear();
    if faults > 0 {
        eprintln!("error: {faults} shard(s) failed verification");
        return Ok(ExitCode::FAILURE);
    }
    println!("ok: {shards} shard(s) verified");
    Ok(ExitCode::SUCCESS)
}

/// Scans one shard's log end to end, then checks every snapshot against the chain.
fn verify_shard(
    storage: &dyn Storage,
    paths: &ShardPaths,
    progress: &mut dyn FnMut(u64),
) -> anyhow::Result<String> {
    let snapshots = list_snapshots(storage, &paths.snapshot_dir)?;
    let wanted: Vec<Lsn> = snapshots.iter().map(|(lsn, _)| *lsn).collect();
    let mut chains: BTreeMap<Lsn, ChainHash> = BTreeMap::new();
    let outcome = scan::scan(
        storage,
        &paths.log_dir,
        ScanStart::ZERO,
        &mut |record| {
            if wanted.contains(&record.lsn) {
                chains.insert(record.lsn, record.chain);
            }
            Ok::<(), LogError>(())
        },
        progress,
    )?;
    let mut lines = vec![format!(
        "{} segment(s), {} record(s), last LSN {}, checksums and hash chain ok",
        outcome.segments.len(),
        outcome.records_checked,
        outcome.last_lsn
    )];
    if let Some(torn) = &outcome.torn_tail {
        lines.push(format!(
            "warning: torn tail in {} at byte offset {} ({} bytes after LSN {}); recovery will cut it",
            torn.path.display(),
            torn.offset,
            torn.bytes_dropped,
            outcome.last_lsn
        ));
    }
    for (lsn, path) in &snapshots {
        let loaded = read_snapshot(storage, path)
            .map_err(|reason| anyhow::anyhow!("snapshot {}: {reason}", path.display()))?;
        let expected = if *lsn == Lsn::ZERO {
            Some(cairn_log::GENESIS_CHAIN)
        } else {
            chains.get(lsn).copied()
        };
        if expected != Some(loaded.meta.chain) {
            bail!(
                "snapshot {} (LSN {lsn}) does not match the log's hash chain at that LSN",
                path.display()
            );
        }
        lines.push(format!("snapshot at LSN {lsn} ok ({})", path.display()));
    }
    Ok(lines.join("\n  "))
}

fn dump(args: &DumpArgs) -> anyhow::Result<ExitCode> {
    let storage: Arc<dyn Storage> = Arc::new(FileStorage);
    let shards = shard_count(storage.as_ref(), &args.data_dir)?;
    if args.shard >= shards {
        bail!(
            "shard {} does not exist; the data directory has {shards}",
            args.shard
        );
    }
    let paths = ShardPaths::new(&shard_dir(&args.data_dir, ShardId(args.shard)));
    let mut reader = LogReader::new(storage, &paths.log_dir, Lsn(args.from_lsn));
    for _ in 0..args.limit {
        let Some(record) = reader.next(Lsn(u64::MAX)).context("reading the log")? else {
            break;
        };
        let payload = match cairn_engine::envelope::decode::<EnvelopeOf<Cairn>>(&record.payload) {
            Ok(envelope) => serde_json::to_value(&envelope).unwrap_or(serde_json::Value::Null),
            Err(reason) => {
                serde_json::json!({"undecodable": reason, "bytes": record.payload.len()})
            }
        };
        let kind = record_type_name(record.record_type);
        if args.json {
            let line = serde_json::json!({
                "shard": args.shard, "lsn": record.lsn.0, "at_ms": record.timestamp_ms,
                "type": kind, "payload": payload,
            });
            println!("{line}");
        } else {
            let at = std::time::UNIX_EPOCH + std::time::Duration::from_millis(record.timestamp_ms);
            println!(
                "{:>10}  {}  {kind:<8}  {payload}",
                record.lsn.0,
                humantime::format_rfc3339_millis(at)
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn record_type_name(record_type: u16) -> &'static str {
    match record_type {
        cairn_engine::envelope::RECORD_TYPE_COMMAND => "command",
        cairn_engine::envelope::RECORD_TYPE_REFUSAL => "refusal",
        cairn_engine::envelope::RECORD_TYPE_TIMERS => "timers",
        _ => "unknown",
    }
}
