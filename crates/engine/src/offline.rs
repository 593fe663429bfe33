//! Work on a data directory without running it: replay to a past LSN (time travel for audits).

use crate::config::ShardConfig;
use crate::core::Core;
use crate::error::OpenError;
use crate::machine::StateMachine;
use crate::shard::{ShardPaths, recover_core};
use cairn_log::storage::Storage;
use cairn_log::{LogError, scan};
use cairn_types::Lsn;
use std::path::Path;
use std::sync::Arc;

/// A shard's state as of an LSN.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplayReport {
    /// The last record applied.
    pub lsn: Lsn,
    /// Its log time.
    pub at_ms: u64,
    /// The state hash there.
    pub state_hash: [u8; 32],
    /// The machine's summary there.
    pub summary: String,
    /// The snapshot replay started from, if any.
    pub snapshot_lsn: Option<Lsn>,
    /// Records applied after it.
    pub records_applied: u64,
}

/// Rebuilds the state of the shard in `shard_dir` as of `to_lsn` (the end of the log if `None`),
/// from the newest snapshot at or before it, checking every record it reads. With
/// `from_zero`, snapshots are ignored.
///
/// # Errors
/// Corruption, I/O errors, undecodable records, or a `to_lsn` past the end of the log.
pub fn replay_shard<M: StateMachine + Default>(
    storage: &Arc<dyn Storage>,
    shard_dir: &Path,
    to_lsn: Option<Lsn>,
    from_zero: bool,
) -> Result<ReplayReport, OpenError> {
    let paths = ShardPaths::new(shard_dir);
    let config = ShardConfig::default();
    let (mut core, start, snapshot_lsn) = if from_zero {
        (
            Core::<M>::empty(config.dedup),
            cairn_log::ScanStart::ZERO,
            None,
        )
    } else {
        recover_core::<M>(storage, &paths, &config, to_lsn)?
    };
    let mut applied = 0u64;
    let mut failure = None;
    let limit = to_lsn.unwrap_or(Lsn(u64::MAX));
    let scanned = scan::scan(
        storage.as_ref(),
        &paths.log_dir,
        start,
        &mut |record| {
            if record.lsn > limit {
                return Err(LogError::Closed);
            }
            applied += 1;
            core.apply_record(record).map_err(|reason| {
                failure = Some(reason.clone());
                LogError::Stopped(reason)
            })
        },
        &mut |_| {},
    );
    if let Some(reason) = failure {
        return Err(OpenError::Decode {
            what: shard_dir.display().to_string(),
            reason,
        });
    }
    match scanned {
        Ok(_) | Err(LogError::Closed) => {}
        Err(error) => return Err(error.into()),
    }
    if let Some(wanted) = to_lsn.filter(|&wanted| core.lsn < wanted) {
        return Err(OpenError::Config(format!(
            "the log ends at LSN {}, before the requested LSN {wanted}",
            core.lsn
        )));
    }
    let state_hash = core.state_hash().map_err(|reason| OpenError::Decode {
        what: "state".into(),
        reason,
    })?;
    Ok(ReplayReport {
        lsn: core.lsn,
        at_ms: core.at_ms,
        state_hash,
        summary: core.machine.summary(),
        snapshot_lsn,
        records_applied: applied,
    })
}
