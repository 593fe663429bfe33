//! Snapshot files: a state machine's state at an LSN, compressed and checksummed.
//!
//! ```text
//! offset  size  field
//!      0     8  magic "CAIRNSNP"
//!      8     4  format version (1)
//!     12     4  reserved, zero
//!     16     8  lsn: the last record the state includes
//!     24     8  timestamp_ms of that record
//!     32    16  chain hash of that record (recovery checks the log against it)
//!     48    32  state hash (BLAKE3 of the state's canonical encoding)
//!     80     8  uncompressed body length
//!     88     8  compressed body length
//!     96    16  BLAKE3 of the compressed body, first 16 bytes
//!    112    12  reserved, zero
//!    124     4  crc32c of bytes 0..124
//!    128     n  zstd-compressed body
//! ```
//!
//! Written atomically (temporary file, fsync, rename, fsync of the directory), so a crash leaves
//! either the old set of snapshots or the new one. A damaged snapshot is skipped with a warning
//! and recovery falls back to an older one (or to replay from zero).

use crate::error::LogError;
use crate::record::{CHAIN_BYTES, ChainHash};
use crate::storage::{Storage, read_file, write_file_atomic};
use cairn_types::Lsn;
use cairn_types::limits::SNAPSHOT_BYTES_MAX;
use std::path::{Path, PathBuf};

const MAGIC: &[u8; 8] = b"CAIRNSNP";
const FORMAT_VERSION: u32 = 1;
const HEADER_BYTES: usize = 128;
const PREFIX: &str = "snapshot-";
const SUFFIX: &str = ".snap";
/// zstd level: fast enough to keep up with a busy shard, still a good ratio on state encodings.
const ZSTD_LEVEL: i32 = 3;

/// What a snapshot says about itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SnapshotMeta {
    /// The last record the state includes.
    pub lsn: Lsn,
    /// That record's timestamp.
    pub timestamp_ms: u64,
    /// That record's chain hash.
    pub chain: ChainHash,
    /// Hash of the state's canonical encoding.
    pub state_hash: [u8; 32],
}

/// A snapshot read back and checked.
#[derive(Clone, Debug)]
pub struct LoadedSnapshot {
    /// Its header.
    pub meta: SnapshotMeta,
    /// The uncompressed state bytes.
    pub state: Vec<u8>,
    /// Its file.
    pub path: PathBuf,
}

/// The file name of the snapshot at `lsn`.
#[must_use]
pub fn snapshot_file_name(lsn: Lsn) -> String {
    format!("{PREFIX}{:020}{SUFFIX}", lsn.0)
}

/// Snapshot files in `dir`, newest first.
///
/// # Errors
/// I/O errors listing the directory.
pub fn list_snapshots(storage: &dyn Storage, dir: &Path) -> Result<Vec<(Lsn, PathBuf)>, LogError> {
    if !storage.exists(dir) {
        return Ok(Vec::new());
    }
    let names = storage
        .list_files(dir)
        .map_err(|e| LogError::io("list", dir, e))?;
    let mut found: Vec<(Lsn, PathBuf)> = names
        .iter()
        .filter_map(|name| {
            let digits = name.strip_prefix(PREFIX)?.strip_suffix(SUFFIX)?;
            let lsn = digits.parse().ok()?;
            Some((Lsn(lsn), dir.join(name)))
        })
        .collect();
    found.sort_by_key(|(lsn, _)| std::cmp::Reverse(*lsn));
    Ok(found)
}

/// Compresses and writes a snapshot atomically; returns its path and compressed size.
///
/// # Errors
/// I/O errors; `Limit` for a state over `SNAPSHOT_BYTES_MAX`.
pub fn write_snapshot(
    storage: &dyn Storage,
    dir: &Path,
    meta: &SnapshotMeta,
    state: &[u8],
) -> Result<(PathBuf, u64), LogError> {
    if state.len() as u64 > SNAPSHOT_BYTES_MAX {
        return Err(LogError::Limit(format!(
            "snapshot of {} bytes is over {SNAPSHOT_BYTES_MAX}",
            state.len()
        )));
    }
    let body =
        zstd::bulk::compress(state, ZSTD_LEVEL).map_err(|e| LogError::io("compress", dir, e))?;
    let mut file = Vec::with_capacity(HEADER_BYTES + body.len());
    file.extend_from_slice(MAGIC);
    file.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    file.extend_from_slice(&[0u8; 4]);
    file.extend_from_slice(&meta.lsn.0.to_le_bytes());
    file.extend_from_slice(&meta.timestamp_ms.to_le_bytes());
    file.extend_from_slice(&meta.chain);
    file.extend_from_slice(&meta.state_hash);
    file.extend_from_slice(&(state.len() as u64).to_le_bytes());
    file.extend_from_slice(&(body.len() as u64).to_le_bytes());
    file.extend_from_slice(&blake3::hash(&body).as_bytes()[..16]);
    file.extend_from_slice(&[0u8; 12]);
    let crc = crc32c::crc32c(&file[..124]);
    file.extend_from_slice(&crc.to_le_bytes());
    debug_assert_eq!(file.len(), HEADER_BYTES);
    file.extend_from_slice(&body);
    storage
        .create_dir_all(dir)
        .map_err(|e| LogError::io("create dir", dir, e))?;
    let path = dir.join(snapshot_file_name(meta.lsn));
    write_file_atomic(storage, &path, &file)
        .map_err(|e| LogError::io("write snapshot", &path, e))?;
    Ok((path, file.len() as u64))
}

fn u64_at(bytes: &[u8], at: usize) -> u64 {
    let mut word = [0u8; 8];
    word.copy_from_slice(&bytes[at..at + 8]);
    u64::from_le_bytes(word)
}

/// Reads and checks one snapshot file.
///
/// # Errors
/// A description of what is wrong with it.
pub fn read_snapshot(storage: &dyn Storage, path: &Path) -> Result<LoadedSnapshot, String> {
    let bytes = read_file(storage, path).map_err(|e| format!("read failed: {e}"))?;
    if bytes.len() < HEADER_BYTES || &bytes[..8] != MAGIC {
        return Err("not a snapshot file (bad magic or too short)".into());
    }
    let crc = u32::from_le_bytes([bytes[124], bytes[125], bytes[126], bytes[127]]);
    if crc32c::crc32c(&bytes[..124]) != crc {
        return Err("header checksum mismatch at offset 124".into());
    }
    if u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) != FORMAT_VERSION {
        return Err("unknown snapshot format version".into());
    }
    let uncompressed_len = u64_at(&bytes, 80);
    let compressed_len = u64_at(&bytes, 88);
    let body = &bytes[HEADER_BYTES..];
    if body.len() as u64 != compressed_len {
        return Err(format!(
            "body is {} bytes, header says {compressed_len}",
            body.len()
        ));
    }
    if blake3::hash(body).as_bytes()[..16] != bytes[96..112] {
        return Err("body checksum mismatch".into());
    }
    if uncompressed_len > SNAPSHOT_BYTES_MAX {
        return Err(format!(
            "uncompressed size {uncompressed_len} is over {SNAPSHOT_BYTES_MAX}"
        ));
    }
    let capacity =
        usize::try_from(uncompressed_len).map_err(|_| "too large for this machine".to_string())?;
    let state =
        zstd::bulk::decompress(body, capacity).map_err(|e| format!("decompression failed: {e}"))?;
    if state.len() != capacity {
        return Err("decompressed size differs from the header".into());
    }
    let mut chain = [0u8; CHAIN_BYTES];
    chain.copy_from_slice(&bytes[32..48]);
    let mut state_hash = [0u8; 32];
    state_hash.copy_from_slice(&bytes[48..80]);
    let meta = SnapshotMeta {
        lsn: Lsn(u64_at(&bytes, 16)),
        timestamp_ms: u64_at(&bytes, 24),
        chain,
        state_hash,
    };
    Ok(LoadedSnapshot {
        meta,
        state,
        path: path.to_path_buf(),
    })
}

/// The newest snapshot that checks out, skipping (with a warning) damaged ones, and at most
/// `lsn_max` if given.
///
/// # Errors
/// I/O errors listing the directory.
pub fn load_newest_snapshot(
    storage: &dyn Storage,
    dir: &Path,
    lsn_max: Option<Lsn>,
) -> Result<Option<LoadedSnapshot>, LogError> {
    for (lsn, path) in list_snapshots(storage, dir)? {
        if lsn_max.is_some_and(|max| lsn > max) {
            continue;
        }
        match read_snapshot(storage, &path) {
            Ok(loaded) if loaded.meta.lsn == lsn => return Ok(Some(loaded)),
            Ok(_) => {
                tracing::warn!(path = %path.display(), "snapshot header LSN differs from its name; skipped")
            }
            Err(reason) => {
                tracing::warn!(path = %path.display(), %reason, "damaged snapshot skipped")
            }
        }
    }
    Ok(None)
}

/// Removes all but the newest `keep` snapshots ; returns how many
/// were removed.
///
/// # Errors
/// I/O errors.
pub fn prune_snapshots(storage: &dyn Storage, dir: &Path, keep: usize) -> Result<usize, LogError> {
    let keep = keep.max(1);
    let mut removed = 0;
    for (_, path) in list_snapshots(storage, dir)?.into_iter().skip(keep) {
        storage
            .remove_file(&path)
            .map_err(|e| LogError::io("remove", &path, e))?;
        removed += 1;
    }
    if removed > 0 {
        storage
            .sync_dir(dir)
            .map_err(|e| LogError::io("sync dir", dir, e))?;
    }
    Ok(removed)
}
