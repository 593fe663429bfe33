//! `cairn snapshot` and `cairn replay`: work on a data directory without serving it.

use anyhow::bail;
use cairn_engine::cairn::Cairn;
use cairn_engine::offline::replay_shard;
use cairn_engine::{Engine, EngineConfig, ShardConfig, read_meta, shard_dir};
use cairn_log::storage::{FileStorage, Storage};
use cairn_types::{Lsn, ShardId};
use clap::Args;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

/// `cairn snapshot`
#[derive(Args)]
pub struct SnapshotArgs {
    /// The data directory.
    #[arg(long, env = "CAIRN_DATA_DIR")]
    data_dir: PathBuf,
}

/// `cairn replay`
#[derive(Args)]
pub struct ReplayArgs {
    /// The data directory.
    #[arg(long, env = "CAIRN_DATA_DIR")]
    data_dir: PathBuf,
    /// Rebuild the state as of this LSN (default: the end of the log).
    #[arg(long)]
    to_lsn: Option<u64>,
    /// Which shard (default: every shard).
    #[arg(long)]
    shard: Option<u16>,
    /// Ignore snapshots and replay every record from the first.
    #[arg(long)]
    from_zero: bool,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

pub fn snapshot(args: &SnapshotArgs) -> anyhow::Result<ExitCode> {
    if read_meta(&FileStorage, &args.data_dir)?.is_none() {
        bail!(
            "{} is not a Cairn data directory (no cairn.json)",
            args.data_dir.display()
        );
    }
    let config = EngineConfig {
        data_dir: args.data_dir.clone(),
        shard_count: None,
        shard: ShardConfig::default(),
    };
    let (engine, _) = Engine::<Cairn>::open(config)?;
    for shard in engine.shards() {
        let info = shard.snapshot_now().map_err(anyhow::Error::msg)?;
        println!(
            "shard {}: snapshot at LSN {} ({} bytes, state hash {}, sequencer paused {} us): {}",
            shard.id(),
            info.lsn,
            info.bytes,
            hex(&info.state_hash),
            info.pause_us,
            info.path.display()
        );
    }
    engine.shutdown();
    Ok(ExitCode::SUCCESS)
}

pub fn replay(args: &ReplayArgs) -> anyhow::Result<ExitCode> {
    let storage: Arc<dyn Storage> = Arc::new(FileStorage);
    let Some(meta) = read_meta(storage.as_ref(), &args.data_dir)? else {
        bail!(
            "{} is not a Cairn data directory (no cairn.json)",
            args.data_dir.display()
        );
    };
    let shards: Vec<u16> = match args.shard {
        Some(shard) if shard >= meta.shard_count => bail!(
            "shard {shard} does not exist; there are {}",
            meta.shard_count
        ),
        Some(shard) => vec![shard],
        None => (0..meta.shard_count).collect(),
    };
    for shard in shards {
        let dir = shard_dir(&args.data_dir, ShardId(shard));
        let report = replay_shard::<Cairn>(&storage, &dir, args.to_lsn.map(Lsn), args.from_zero)?;
        if args.json {
            let line = serde_json::json!({
                "shard": shard, "lsn": report.lsn.0, "at_ms": report.at_ms,
                "state_hash": hex(&report.state_hash), "summary": report.summary,
                "snapshot_lsn": report.snapshot_lsn.map(|l| l.0), "records_applied": report.records_applied,
            });
            println!("{line}");
        } else {
            let at = std::time::UNIX_EPOCH + std::time::Duration::from_millis(report.at_ms);
            let start = report.snapshot_lsn.map_or_else(
                || "from LSN 0".to_string(),
                |l| format!("from the snapshot at LSN {l}"),
            );
            println!(
                "shard {shard}: LSN {} ({}), state hash {}\n  {}\n  rebuilt {start} + {} record(s)",
                report.lsn,
                humantime::format_rfc3339_millis(at),
                hex(&report.state_hash),
                report.summary,
                report.records_applied
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
