//! Reading records in LSN order from any position, for replay, subscriptions and `log dump`.
//!
//! A reader checks each record's CRC (recovery already checked the chain). It reads only up to a
//! bound its caller gives, normally the durable LSN, so a live log can be followed safely.

use crate::cursor::{SegmentCursor, Step};
use crate::error::{Corruption, CorruptionKind, LogError};
use crate::record::{DecodeFault, Record};
use crate::segment::{SegmentFile, list_segments};
use crate::storage::{OpenMode, Storage};
use cairn_types::Lsn;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Reads records from a log directory in LSN order.
pub struct LogReader {
    storage: Arc<dyn Storage>,
    dir: PathBuf,
    next_lsn: Lsn,
    open: Option<(SegmentFile, SegmentCursor)>,
}

impl LogReader {
    /// A reader whose first record will be `from_lsn` (`Lsn(0)` means the first record).
    #[must_use]
    pub fn new(storage: Arc<dyn Storage>, dir: &Path, from_lsn: Lsn) -> LogReader {
        LogReader {
            storage,
            dir: dir.to_path_buf(),
            next_lsn: from_lsn.max(Lsn(1)),
            open: None,
        }
    }

    /// The LSN the next record will have.
    #[must_use]
    pub fn next_lsn(&self) -> Lsn {
        self.next_lsn
    }

    /// The next record if its LSN is at most `up_to`; `None` when there is none yet.
    ///
    /// # Errors
    /// `Corruption` for a damaged record at or below `up_to`; I/O errors.
    pub fn next(&mut self, up_to: Lsn) -> Result<Option<Record>, LogError> {
        if self.next_lsn > up_to {
            return Ok(None);
        }
        loop {
            if self.open.is_none() && !self.open_segment()? {
                return Ok(None);
            }
            let Some((segment, cursor)) = self.open.as_mut() else {
                return Ok(None);
            };
            let step = cursor
                .peek()
                .map_err(|e| LogError::io("read", &segment.path, e))?;
            match step {
                Step::Record { view, len, offset } => {
                    if view.lsn < self.next_lsn {
                        cursor.advance(len);
                        continue;
                    }
                    if view.lsn != self.next_lsn {
                        let kind = CorruptionKind::LsnGap { found: view.lsn };
                        return Err(corrupt(&segment.path, offset, self.next_lsn, kind));
                    }
                    let record = view.to_record();
                    cursor.advance(len);
                    self.next_lsn = record.lsn.next();
                    return Ok(Some(record));
                }
                Step::End { .. }
                | Step::Fault {
                    fault: DecodeFault::Incomplete { .. },
                    ..
                } => {
                    let before = cursor.file_len();
                    cursor
                        .refresh_len()
                        .map_err(|e| LogError::io("stat", &segment.path, e))?;
                    if cursor.file_len() > before {
                        continue;
                    }
                    // An open segment that starts at `next_lsn` is the one that will hold it (it
                    // is empty so far): moving to "the next segment" would reopen it forever.
                    let in_older_segment = segment.first_lsn < self.next_lsn;
                    if in_older_segment && self.next_segment_exists()? {
                        self.open = None;
                        continue;
                    }
                    // The log ends before `up_to` for now: a live tail, bounded by the caller.
                    return Ok(None);
                }
                Step::Fault { offset, fault } => {
                    let kind = match fault {
                        DecodeFault::BadLength => CorruptionKind::BadLength,
                        _ => CorruptionKind::BadChecksum,
                    };
                    return Err(corrupt(&segment.path, offset, self.next_lsn, kind));
                }
            }
        }
    }

    fn next_segment_exists(&self) -> Result<bool, LogError> {
        let segments = list_segments(self.storage.as_ref(), &self.dir)?;
        Ok(segments.iter().any(|s| s.first_lsn == self.next_lsn))
    }

    /// Opens the segment that holds `next_lsn`; false when there is none.
    fn open_segment(&mut self) -> Result<bool, LogError> {
        let segments = list_segments(self.storage.as_ref(), &self.dir)?;
        let Some(segment) = segments
            .iter()
            .rev()
            .find(|s| s.first_lsn <= self.next_lsn)
            .cloned()
        else {
            return Ok(false);
        };
        let file = self
            .storage
            .open(&segment.path, OpenMode::Read)
            .map_err(|e| LogError::io("open", &segment.path, e))?;
        crate::segment::read_header(file.as_ref(), &segment)?;
        let cursor =
            SegmentCursor::new(file).map_err(|e| LogError::io("read", &segment.path, e))?;
        self.open = Some((segment, cursor));
        Ok(true)
    }
}

fn corrupt(path: &Path, offset: u64, lsn: Lsn, kind: CorruptionKind) -> LogError {
    LogError::Corruption(Corruption {
        path: path.to_path_buf(),
        offset,
        lsn,
        kind,
    })
}
