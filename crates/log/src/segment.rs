//! Segment files: a fixed header, then records back to back.
//!
//! ```text
//! offset  size  field
//!      0     8  magic "CAIRNSEG"
//!      8     4  format version (1)
//!     12     4  reserved, zero
//!     16     8  first_lsn: LSN of the first record in this segment
//!     24    16  prev_chain: chain hash of the record before first_lsn (zeros for LSN 1)
//!     40    20  reserved, zero
//!     60     4  crc32c of bytes 0..60
//! ```
//!
//! A segment is named after its first LSN, zero-padded so that names sort as numbers:
//! `00000000000000000001.seg`.

use crate::error::{Corruption, CorruptionKind, LogError};
use crate::record::{CHAIN_BYTES, ChainHash};
use crate::storage::{Storage, StorageFile, read_exact_at};
use cairn_types::Lsn;
use std::path::{Path, PathBuf};

/// Bytes of a segment header.
pub const SEGMENT_HEADER_BYTES: u64 = 64;
const MAGIC: &[u8; 8] = b"CAIRNSEG";
const FORMAT_VERSION: u32 = 1;
const SUFFIX: &str = ".seg";

/// What a segment header says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SegmentHeader {
    /// LSN of the segment's first record.
    pub first_lsn: Lsn,
    /// Chain hash of the record before it.
    pub prev_chain: ChainHash,
}

impl SegmentHeader {
    /// The header's bytes.
    #[must_use]
    pub fn encode(&self) -> [u8; SEGMENT_HEADER_BYTES as usize] {
        let mut bytes = [0u8; SEGMENT_HEADER_BYTES as usize];
        bytes[0..8].copy_from_slice(MAGIC);
        bytes[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
        bytes[16..24].copy_from_slice(&self.first_lsn.0.to_le_bytes());
        bytes[24..24 + CHAIN_BYTES].copy_from_slice(&self.prev_chain);
        let crc = crc32c::crc32c(&bytes[0..60]);
        bytes[60..64].copy_from_slice(&crc.to_le_bytes());
        bytes
    }

    /// Parses and checks a header; `None` when the bytes are not a valid header.
    #[must_use]
    pub fn decode(bytes: &[u8]) -> Option<SegmentHeader> {
        if bytes.len() < SEGMENT_HEADER_BYTES as usize || &bytes[0..8] != MAGIC {
            return None;
        }
        let crc = u32::from_le_bytes([bytes[60], bytes[61], bytes[62], bytes[63]]);
        if crc32c::crc32c(&bytes[0..60]) != crc {
            return None;
        }
        if u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) != FORMAT_VERSION {
            return None;
        }
        let mut lsn = [0u8; 8];
        lsn.copy_from_slice(&bytes[16..24]);
        let mut prev_chain = [0u8; CHAIN_BYTES];
        prev_chain.copy_from_slice(&bytes[24..24 + CHAIN_BYTES]);
        Some(SegmentHeader {
            first_lsn: Lsn(u64::from_le_bytes(lsn)),
            prev_chain,
        })
    }
}

/// The file name of the segment whose first record is `first_lsn`.
#[must_use]
pub fn segment_file_name(first_lsn: Lsn) -> String {
    format!("{:020}{SUFFIX}", first_lsn.0)
}

/// One segment file found in a log directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SegmentFile {
    /// First LSN, from the file name.
    pub first_lsn: Lsn,
    /// Full path.
    pub path: PathBuf,
}

/// The segments of a log directory, oldest first. Files that are not segments are ignored.
///
/// # Errors
/// I/O errors listing the directory.
pub fn list_segments(storage: &dyn Storage, dir: &Path) -> Result<Vec<SegmentFile>, LogError> {
    let names = storage
        .list_files(dir)
        .map_err(|source| LogError::io("list", dir, source))?;
    let mut segments: Vec<SegmentFile> = names
        .iter()
        .filter_map(|name| {
            let stem = name.strip_suffix(SUFFIX)?;
            if stem.len() != 20 || !stem.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            let first_lsn = Lsn(stem.parse().ok()?);
            Some(SegmentFile {
                first_lsn,
                path: dir.join(name),
            })
        })
        .collect();
    segments.sort_by_key(|segment| segment.first_lsn);
    Ok(segments)
}

/// Reads and checks the header of a segment file against its name.
///
/// # Errors
/// `Corruption` when the header is damaged or disagrees with the file name.
pub fn read_header(
    file: &dyn StorageFile,
    segment: &SegmentFile,
) -> Result<SegmentHeader, LogError> {
    let mut bytes = [0u8; SEGMENT_HEADER_BYTES as usize];
    let corrupt = |kind| {
        LogError::Corruption(Corruption {
            path: segment.path.clone(),
            offset: 0,
            lsn: segment.first_lsn,
            kind,
        })
    };
    read_exact_at(file, 0, &mut bytes).map_err(|_| corrupt(CorruptionKind::BadSegmentHeader))?;
    let header =
        SegmentHeader::decode(&bytes).ok_or_else(|| corrupt(CorruptionKind::BadSegmentHeader))?;
    if header.first_lsn != segment.first_lsn {
        return Err(corrupt(CorruptionKind::SegmentNameMismatch {
            header_lsn: header.first_lsn,
        }));
    }
    Ok(header)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_header_round_trips_and_rejects_damage() {
        let header = SegmentHeader {
            first_lsn: Lsn(42),
            prev_chain: [7u8; CHAIN_BYTES],
        };
        let bytes = header.encode();
        assert_eq!(SegmentHeader::decode(&bytes), Some(header));
        for byte in 0..bytes.len() {
            let mut damaged = bytes;
            damaged[byte] ^= 0x10;
            assert_eq!(
                SegmentHeader::decode(&damaged),
                None,
                "damage at byte {byte} unseen"
            );
        }
    }

    #[test]
    fn segment_names_sort_as_numbers() {
        assert_eq!(segment_file_name(Lsn(1)), "00000000000000000001.seg");
        assert!(segment_file_name(Lsn(9)) < segment_file_name(Lsn(10)));
    }
}
