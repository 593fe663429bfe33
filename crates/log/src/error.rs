//! Errors of the log. Corruption names the file, the byte offset, the LSN and what failed.

use cairn_types::Lsn;
use std::path::{Path, PathBuf};

/// What is wrong at a place in the log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CorruptionKind {
    /// The segment header is missing, damaged or of an unknown version.
    BadSegmentHeader,
    /// The header's first LSN differs from the one in the file name.
    SegmentNameMismatch {
        /// What the header says.
        header_lsn: Lsn,
    },
    /// A record's length field is impossible.
    BadLength,
    /// A record's CRC32C does not match its bytes.
    BadChecksum,
    /// A record's LSN is not the next one.
    LsnGap {
        /// The LSN found.
        found: Lsn,
    },
    /// A record's chain hash does not follow from the record before it.
    ChainMismatch,
    /// A segment that is not the newest ends in the middle of a record, or is damaged at its end.
    TruncatedSegment,
    /// A segment does not start where the one before it ended.
    SegmentGap {
        /// The LSN the segment should start at.
        expected: Lsn,
    },
    /// A segment's header does not carry the chain hash of the record before it.
    SegmentChainMismatch,
    /// A snapshot claims a position the log does not reach, or a different chain there.
    SnapshotMismatch,
}

impl std::fmt::Display for CorruptionKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CorruptionKind::BadSegmentHeader => write!(f, "bad segment header"),
            CorruptionKind::SegmentNameMismatch { header_lsn } => {
                write!(
                    f,
                    "segment header says first LSN {header_lsn}, the file name disagrees"
                )
            }
            CorruptionKind::BadLength => write!(f, "impossible record length"),
            CorruptionKind::BadChecksum => write!(f, "record checksum (CRC32C) mismatch"),
            CorruptionKind::LsnGap { found } => write!(f, "LSN out of sequence (found {found})"),
            CorruptionKind::ChainMismatch => write!(f, "hash chain broken"),
            CorruptionKind::TruncatedSegment => write!(f, "segment ends inside a record"),
            CorruptionKind::SegmentGap { expected } => {
                write!(
                    f,
                    "segment does not continue the log (expected first LSN {expected})"
                )
            }
            CorruptionKind::SegmentChainMismatch => {
                write!(
                    f,
                    "segment header's chain does not match the previous segment"
                )
            }
            CorruptionKind::SnapshotMismatch => write!(f, "snapshot does not match the log"),
        }
    }
}

/// Where and what: enough to find the damage with a hex editor.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Corruption {
    /// The damaged file.
    pub path: PathBuf,
    /// Byte offset in that file.
    pub offset: u64,
    /// The LSN expected at that place.
    pub lsn: Lsn,
    /// What failed.
    pub kind: CorruptionKind,
}

impl std::fmt::Display for Corruption {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} in {} at byte offset {} (LSN {})",
            self.kind,
            self.path.display(),
            self.offset,
            self.lsn
        )
    }
}

/// Errors of the log.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// The log is damaged somewhere other than a torn tail.
    #[error("log corruption: {0}")]
    Corruption(Corruption),
    /// An I/O operation failed.
    #[error("I/O error during {op} on {}: {source}", path.display())]
    Io {
        /// What was being done.
        op: &'static str,
        /// On which file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// An earlier write or sync failed: the log refuses writes until the process restarts and
    /// recovers (memory may be ahead of the disk, and a failed fsync cannot be retried safely).
    #[error("log stopped after a storage failure: {0}")]
    Stopped(String),
    /// The commit queue is full.
    #[error("commit queue full ({depth_max} submissions); retry later")]
    QueueFull {
        /// The configured bound.
        depth_max: usize,
    },
    /// The log is shutting down.
    #[error("log is closed")]
    Closed,
    /// A caller broke a limit (payload size, batch size, option range).
    #[error("limit exceeded: {0}")]
    Limit(String),
}

impl LogError {
    pub(crate) fn io(op: &'static str, path: &Path, source: std::io::Error) -> LogError {
        LogError::Io {
            op,
            path: path.to_path_buf(),
            source,
        }
    }
}
