//! Cairn's durable, append-only log.
//!
//! The log stores opaque, typed, checksummed, hash-chained records in segment files, and knows
//! nothing of inventory or orders. Its pieces, from the bytes up:
//! - [`storage`]: every file operation, behind a trait with real, in-memory and faulty backends;
//! - [`record`] and [`segment`]: the bytes on disk (documented in `docs/FORMAT.md`);
//! - [`scan`]: the recovery scan that checks every record and finds a torn tail;
//! - [`LogWriter`]: one thread's appends and syncs, fail-stop on any I/O error;
//! - [`GroupCommit`]: many submitters, one write and one `fdatasync` per batch;
//! - [`LogReader`]: records in LSN order from any position, for replay and subscriptions;
//! - [`snapshot`]: state files at an LSN, compressed, checksummed and written atomically.

#![deny(missing_docs)]

mod cursor;
pub mod error;
mod group;
pub mod metrics;
mod reader;
pub mod record;
pub mod scan;
pub mod segment;
pub mod snapshot;
pub mod storage;
mod writer;

pub use error::{Corruption, CorruptionKind, LogError};
pub use group::{CommitOptions, Completion, Durability, GroupCommit, OwnedEntry};
pub use reader::LogReader;
pub use record::{ChainHash, Entry, GENESIS_CHAIN, Record, RecordView};
pub use scan::{ScanOutcome, ScanStart, TornTail};
pub use writer::{LogOptions, LogWriter, LsnRange};

use std::path::Path;
use std::sync::Arc;
use storage::Storage;

/// Opens (or creates) the log in `dir`: scans it from `start`, calling `replay` for every record
/// after it, cuts a torn tail durably, and returns a writer positioned at the end.
///
/// # Errors
/// `Corruption` for damage other than a torn tail (nothing is changed on disk then); I/O errors;
/// whatever `replay` returns.
pub fn open_log(
    storage: Arc<dyn Storage>,
    dir: &Path,
    options: LogOptions,
    start: ScanStart,
    replay: &mut dyn FnMut(&RecordView<'_>) -> Result<(), LogError>,
) -> Result<(LogWriter, ScanOutcome), LogError> {
    options.validate()?;
    storage
        .create_dir_all(dir)
        .map_err(|e| LogError::io("create dir", dir, e))?;
    let outcome = scan::scan(storage.as_ref(), dir, start, replay, &mut |_| {})?;
    if let Some(torn) = &outcome.torn_tail {
        tracing::warn!(
            path = %torn.path.display(),
            offset = torn.offset,
            bytes_dropped = torn.bytes_dropped,
            last_lsn = outcome.last_lsn.0,
            "torn tail of the newest segment cut at recovery (no later record proves these bytes were ever synced)"
        );
    }
    let writer = LogWriter::resume(storage, dir, options, &outcome)?;
    Ok((writer, outcome))
}
