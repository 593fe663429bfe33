//! The recovery scan: walk the segments, check every record, find the end of the log.
//!
//! One routine serves startup (which then truncates a torn tail) and `cairn log verify` (which
//! only reports). The rules, argued case by case in `docs/FORMAT.md`:
//! - in any segment but the newest, every byte up to the end must be an intact record;
//! - in the newest segment, the first fault ends the log unless an intact record after it says
//!   (by its `synced_lsn`) that the damaged record had been synced: a torn write of a batch that
//!   was never made durable is cut, damage to synced history is corruption. (Damage to the last
//!   synced batch itself cannot be told from a torn write; see `docs/FORMAT.md`.)
//! - LSNs are dense, each segment starts where the previous one ended, and the chain is unbroken.
//!
//! From a snapshot, the records up to the snapshot's LSN are not needed: the scan starts at the
//! segment holding the snapshot's LSN and skips the records before it by their length and LSN
//! fields alone, then checks the snapshot's own record in full (CRC, and its chain against the
//! one the snapshot recorded) and everything after it as above. Whatever does not fit on the way
//! (an impossible length, an unexpected LSN, a bad CRC or chain at the snapshot's record) sends
//! the scan back to the start of that segment to check it record by record, so damage is
//! reported exactly as a full scan reports it. Damage inside the payload of a skipped record is
//! not looked for: the state at the snapshot does not depend on those records, and
//! `cairn log verify` (a scan from zero) and every reader of those records still check them.

use crate::cursor::{SegmentCursor, Step};
use crate::error::{Corruption, CorruptionKind, LogError};
use crate::record::{ChainHash, DecodeFault, GENESIS_CHAIN, RECORD_OVERHEAD_BYTES, RecordView};
use crate::segment::{SEGMENT_HEADER_BYTES, SegmentFile, list_segments, read_header};
use crate::storage::{OpenMode, Storage};
use cairn_types::Lsn;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Where a scan starts: the position and chain hash a snapshot was taken at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ScanStart {
    /// Records up to and including this LSN are checked but not visited.
    pub after_lsn: Lsn,
    /// The chain hash of the record at `after_lsn` (zeros for LSN 0).
    pub chain: ChainHash,
}

impl ScanStart {
    /// Start at the beginning of the log.
    pub const ZERO: ScanStart = ScanStart {
        after_lsn: Lsn::ZERO,
        chain: GENESIS_CHAIN,
    };
}

/// A torn tail found at the end of the newest segment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TornTail {
    /// The segment.
    pub path: PathBuf,
    /// Where the intact records end.
    pub offset: u64,
    /// Bytes after that offset.
    pub bytes_dropped: u64,
    /// Whether the whole segment file was unusable (a header that never became durable).
    pub whole_segment: bool,
}

/// What a scan found.
#[derive(Clone, Debug, Default)]
pub struct ScanOutcome {
    /// The segments, oldest first.
    pub segments: Vec<SegmentFile>,
    /// The last intact LSN.
    pub last_lsn: Lsn,
    /// Its chain hash.
    pub last_chain: ChainHash,
    /// Where the newest segment's intact bytes end.
    pub tail_offset: u64,
    /// Records decoded and checked.
    pub records_checked: u64,
    /// Records before a snapshot's LSN skipped without a check (see the module's notes).
    pub records_skipped: u64,
    /// Bytes of records decoded and checked.
    pub bytes_checked: u64,
    /// The torn tail, if any.
    pub torn_tail: Option<TornTail>,
}

struct Walk<'a> {
    start: ScanStart,
    expected_lsn: Lsn,
    chain: ChainHash,
    visit: &'a mut dyn FnMut(&RecordView<'_>) -> Result<(), LogError>,
    progress: &'a mut dyn FnMut(u64),
    outcome: ScanOutcome,
}

fn corruption(path: &Path, offset: u64, lsn: Lsn, kind: CorruptionKind) -> LogError {
    LogError::Corruption(Corruption {
        path: path.to_path_buf(),
        offset,
        lsn,
        kind,
    })
}

/// Scans the log in `dir`, calling `visit` for every record after `start` in LSN order and
/// `progress` with the bytes checked so far.
///
/// # Errors
/// `Corruption` for damage other than a torn tail of the newest segment; I/O errors.
pub fn scan(
    storage: &dyn Storage,
    dir: &Path,
    start: ScanStart,
    visit: &mut dyn FnMut(&RecordView<'_>) -> Result<(), LogError>,
    progress: &mut dyn FnMut(u64),
) -> Result<ScanOutcome, LogError> {
    let segments = list_segments(storage, dir)?;
    let first_needed = start.after_lsn.next();
    // The segment holding `after_lsn + 1`, or the newest one when the log ends at `after_lsn`.
    let mut start_index = segments
        .iter()
        .rposition(|s| s.first_lsn <= first_needed)
        .unwrap_or(0);
    // When `after_lsn + 1` starts a segment, start one segment earlier, at the record `after_lsn`
    // itself: the segment after it may be empty (a roll with nothing written yet) or have no
    // durable header (a crash during the roll), and both are handled as at any segment boundary.
    if start_index > 0 && segments[start_index].first_lsn == first_needed {
        start_index -= 1;
    }
    let mut walk = Walk {
        start,
        expected_lsn: Lsn(1),
        chain: GENESIS_CHAIN,
        visit,
        progress,
        outcome: ScanOutcome {
            segments: segments.clone(),
            ..ScanOutcome::default()
        },
    };
    if segments.is_empty() {
        if start.after_lsn != Lsn::ZERO {
            return Err(corruption(
                dir,
                0,
                start.after_lsn,
                CorruptionKind::SnapshotMismatch,
            ));
        }
        return Ok(walk.outcome);
    }
    if start_index == 0 && segments[0].first_lsn != Lsn(1) {
        return Err(corruption(
            &segments[0].path,
            0,
            segments[0].first_lsn,
            CorruptionKind::SegmentGap { expected: Lsn(1) },
        ));
    }
    for (index, segment) in segments.iter().enumerate().skip(start_index) {
        let newest = index + 1 == segments.len();
        walk.segment(storage, segment, index == start_index, newest)?;
    }
    if walk.outcome.last_lsn < start.after_lsn {
        let path = &segments[segments.len() - 1].path;
        return Err(corruption(
            path,
            walk.outcome.tail_offset,
            start.after_lsn,
            CorruptionKind::SnapshotMismatch,
        ));
    }
    Ok(walk.outcome)
}

impl Walk<'_> {
    fn segment(
        &mut self,
        storage: &dyn Storage,
        segment: &SegmentFile,
        first: bool,
        newest: bool,
    ) -> Result<(), LogError> {
        let path = &segment.path;
        let file = storage
            .open(path, OpenMode::Read)
            .map_err(|e| LogError::io("open", path, e))?;
        let file_len = file.len().map_err(|e| LogError::io("stat", path, e))?;
        let header = match read_header(file.as_ref(), segment) {
            Ok(header) => header,
            Err(_) if newest && file_len <= SEGMENT_HEADER_BYTES => {
                // Created but its header never became durable: a crash while creating the first
                // segment or during a segment roll. Nothing in it was ever acknowledged.
                self.outcome.torn_tail = Some(TornTail {
                    path: path.clone(),
                    offset: 0,
                    bytes_dropped: file_len,
                    whole_segment: true,
                });
                return Ok(());
            }
            Err(error) => return Err(error),
        };
        if first {
            self.expected_lsn = header.first_lsn;
            self.chain = header.prev_chain;
            if header.first_lsn == Lsn(1) && header.prev_chain != GENESIS_CHAIN {
                return Err(corruption(
                    path,
                    0,
                    Lsn(1),
                    CorruptionKind::SegmentChainMismatch,
                ));
            }
        } else {
            if header.first_lsn != self.expected_lsn {
                return Err(corruption(
                    path,
                    0,
                    header.first_lsn,
                    CorruptionKind::SegmentGap {
                        expected: self.expected_lsn,
                    },
                ));
            }
            if header.prev_chain != self.chain {
                return Err(corruption(
                    path,
                    0,
                    header.first_lsn,
                    CorruptionKind::SegmentChainMismatch,
                ));
            }
        }
        self.check_snapshot_point(path, 0)?;
        let mut cursor =
            SegmentCursor::new(Arc::clone(&file)).map_err(|e| LogError::io("read", path, e))?;
        if first && header.first_lsn <= self.start.after_lsn {
            let skipped = self
                .skip_to_snapshot(&mut cursor)
                .map_err(|e| LogError::io("read", path, e))?;
            if !skipped {
                cursor = SegmentCursor::new(file).map_err(|e| LogError::io("read", path, e))?;
            }
        }
        loop {
            let step = cursor.peek().map_err(|e| LogError::io("read", path, e))?;
            match step {
                Step::End { offset } => {
                    self.outcome.tail_offset = offset;
                    return Ok(());
                }
                Step::Record { view, offset, len } => {
                    self.record(path, &view, offset, len)?;
                    cursor.advance(len);
                }
                Step::Fault { offset, fault } => {
                    return self.fault(&cursor, path, offset, fault, newest);
                }
            }
        }
    }

    fn record(
        &mut self,
        path: &Path,
        view: &RecordView<'_>,
        offset: u64,
        len: usize,
    ) -> Result<(), LogError> {
        if view.lsn != self.expected_lsn {
            return Err(corruption(
                path,
                offset,
                self.expected_lsn,
                CorruptionKind::LsnGap { found: view.lsn },
            ));
        }
        if view.expected_chain(&self.chain) != view.chain {
            return Err(corruption(
                path,
                offset,
                view.lsn,
                CorruptionKind::ChainMismatch,
            ));
        }
        self.chain = view.chain;
        self.outcome.last_lsn = view.lsn;
        self.outcome.last_chain = view.chain;
        self.outcome.records_checked += 1;
        self.outcome.bytes_checked += len as u64;
        self.expected_lsn = view.lsn.next();
        self.check_snapshot_point(path, offset)?;
        if view.lsn > self.start.after_lsn {
            (self.visit)(view)?;
        }
        if self.outcome.records_checked.is_multiple_of(65_536) {
            (self.progress)(self.outcome.bytes_checked);
        }
        Ok(())
    }

    /// Moves `cursor` from the start of the segment holding the snapshot's LSN past the
    /// snapshot's record, checking that record in full but the ones before it only for their
    /// length and LSN. Returns false when anything does not fit; the walk's state is then
    /// unchanged and the caller checks the segment from its start instead.
    fn skip_to_snapshot(&mut self, cursor: &mut SegmentCursor) -> std::io::Result<bool> {
        let target = self.start.after_lsn;
        let mut expected = self.expected_lsn;
        let mut skipped = 0u64;
        while expected < target {
            match cursor.peek_frame()? {
                Some((lsn, len)) if lsn == expected.0 => {
                    cursor.advance(len);
                    expected = expected.next();
                    skipped += 1;
                }
                _ => return Ok(false),
            }
        }
        let Step::Record { view, len, .. } = cursor.peek()? else {
            return Ok(false);
        };
        if view.lsn != target || view.chain != self.start.chain {
            return Ok(false);
        }
        self.chain = view.chain;
        self.outcome.last_lsn = view.lsn;
        self.outcome.last_chain = view.chain;
        self.outcome.records_checked += 1;
        self.outcome.bytes_checked += len as u64;
        self.outcome.records_skipped += skipped;
        self.expected_lsn = view.lsn.next();
        cursor.advance(len);
        Ok(true)
    }

    /// The chain at the snapshot's LSN must be the one the snapshot recorded.
    fn check_snapshot_point(&self, path: &Path, offset: u64) -> Result<(), LogError> {
        let at_snapshot = self.expected_lsn == self.start.after_lsn.next();
        if at_snapshot && self.chain != self.start.chain {
            return Err(corruption(
                path,
                offset,
                self.start.after_lsn,
                CorruptionKind::SnapshotMismatch,
            ));
        }
        Ok(())
    }

    fn fault(
        &mut self,
        cursor: &SegmentCursor,
        path: &Path,
        offset: u64,
        fault: DecodeFault,
        newest: bool,
    ) -> Result<(), LogError> {
        let kind = match fault {
            DecodeFault::Incomplete { .. } => CorruptionKind::TruncatedSegment,
            DecodeFault::BadLength => CorruptionKind::BadLength,
            DecodeFault::BadCrc => CorruptionKind::BadChecksum,
        };
        if !newest {
            return Err(corruption(path, offset, self.expected_lsn, kind));
        }
        let rest = cursor
            .read_rest(offset)
            .map_err(|e| LogError::io("read", path, e))?;
        if durable_damage(&rest, self.expected_lsn) {
            return Err(corruption(path, offset, self.expected_lsn, kind));
        }
        self.outcome.tail_offset = offset;
        self.outcome.torn_tail = Some(TornTail {
            path: path.to_path_buf(),
            offset,
            bytes_dropped: cursor.file_len() - offset,
            whole_segment: false,
        });
        Ok(())
    }
}

/// Whether an intact record anywhere in `rest` (past its first byte) says that `damaged_lsn` had
/// been durable before it was written. A crash can leave any sectors of an unsynced write, so good
/// records after damage alone prove nothing; a record written after a sync that covered the
/// damaged LSN does.
fn durable_damage(rest: &[u8], damaged_lsn: Lsn) -> bool {
    (1..rest.len().saturating_sub(RECORD_OVERHEAD_BYTES - 1))
        .any(|at| crate::record::proves_durable(&rest[at..], damaged_lsn))
}
