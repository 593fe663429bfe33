//! The single writer of a log: encodes records, rolls segments, writes and syncs.
//!
//! It is not thread-safe on purpose: one thread owns it (the group-commit thread, or a test).
//! Any failed write or sync stops it for good (fail-stop): after a failed `fdatasync` the kernel
//! may have dropped the dirty pages, so retrying could report durable what is not.

use crate::error::LogError;
use crate::record::{ChainHash, Entry, encode_into, encoded_len};
use crate::scan::ScanOutcome;
use crate::segment::{SEGMENT_HEADER_BYTES, SegmentHeader, segment_file_name};
use crate::storage::{OpenMode, Storage, StorageFile};
use cairn_types::Lsn;
use cairn_types::limits::{RECORD_PAYLOAD_BYTES_MAX, SEGMENT_BYTES_MAX, SEGMENT_BYTES_MIN};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Options of a log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LogOptions {
    /// A segment is closed once it would grow past this many bytes.
    pub segment_bytes_max: u64,
}

impl Default for LogOptions {
    fn default() -> Self {
        LogOptions {
            segment_bytes_max: cairn_types::limits::SEGMENT_BYTES_DEFAULT,
        }
    }
}

impl LogOptions {
    /// Checks the options against the hard limits.
    ///
    /// # Errors
    /// `Limit` naming the option that is out of range.
    pub fn validate(&self) -> Result<(), LogError> {
        if !(SEGMENT_BYTES_MIN..=SEGMENT_BYTES_MAX).contains(&self.segment_bytes_max) {
            return Err(LogError::Limit(format!(
                "segment_bytes_max must be in {SEGMENT_BYTES_MIN}..={SEGMENT_BYTES_MAX}, got {}",
                self.segment_bytes_max
            )));
        }
        Ok(())
    }
}

/// First and last LSN given to a group of records. For an empty group, `last` is the LSN before
/// `first`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LsnRange {
    /// The first LSN of the group.
    pub first: Lsn,
    /// The last LSN of the group.
    pub last: Lsn,
}

/// Appends records to the newest segment of a log directory.
pub struct LogWriter {
    storage: Arc<dyn Storage>,
    dir: PathBuf,
    options: LogOptions,
    file: Arc<dyn StorageFile>,
    file_path: PathBuf,
    segment_len: u64,
    last_lsn: Lsn,
    synced_lsn: Lsn,
    chain: ChainHash,
    buf: Vec<u8>,
    stopped: Option<String>,
}

impl LogWriter {
    /// Takes over a scanned log: cuts its torn tail (durably) and opens its newest segment, or
    /// creates the first segment of an empty log.
    pub(crate) fn resume(
        storage: Arc<dyn Storage>,
        dir: &Path,
        options: LogOptions,
        outcome: &ScanOutcome,
    ) -> Result<LogWriter, LogError> {
        options.validate()?;
        let mut newest = outcome.segments.last().cloned();
        if let Some(torn) = &outcome.torn_tail {
            if torn.whole_segment {
                storage
                    .remove_file(&torn.path)
                    .map_err(|e| LogError::io("remove", &torn.path, e))?;
                storage
                    .sync_dir(dir)
                    .map_err(|e| LogError::io("sync dir", dir, e))?;
                newest = outcome.segments.iter().rev().nth(1).cloned();
            } else {
                let file = storage
                    .open(&torn.path, OpenMode::ReadWrite)
                    .map_err(|e| LogError::io("open", &torn.path, e))?;
                file.set_len(torn.offset)
                    .map_err(|e| LogError::io("truncate", &torn.path, e))?;
                file.sync_data()
                    .map_err(|e| LogError::io("sync", &torn.path, e))?;
            }
        }
        let Some(segment) = newest else {
            return Self::create_first(storage, dir, options);
        };
        let file = storage
            .open(&segment.path, OpenMode::ReadWrite)
            .map_err(|e| LogError::io("open", &segment.path, e))?;
        let segment_len = file
            .len()
            .map_err(|e| LogError::io("stat", &segment.path, e))?;
        // The scan may have read what a killed process wrote but never made durable: records still
        // in the page cache, or a segment whose directory entry was never synced. `synced_lsn`
        // starts at the last of those records, and every record written from now on promises it:
        // make that true first. Without this, a roll would skip its sync, or acknowledged appends
        // could land in a file a power cut removes, leaving a gap in the log.
        file.sync_data()
            .map_err(|e| LogError::io("fdatasync", &segment.path, e))?;
        storage
            .sync_dir(dir)
            .map_err(|e| LogError::io("sync dir", dir, e))?;
        Ok(LogWriter {
            storage,
            dir: dir.to_path_buf(),
            options,
            file,
            file_path: segment.path,
            segment_len,
            last_lsn: outcome.last_lsn,
            synced_lsn: outcome.last_lsn,
            chain: outcome.last_chain,
            buf: Vec::new(),
            stopped: None,
        })
    }

    fn create_first(
        storage: Arc<dyn Storage>,
        dir: &Path,
        options: LogOptions,
    ) -> Result<LogWriter, LogError> {
        let header = SegmentHeader {
            first_lsn: Lsn(1),
            prev_chain: crate::record::GENESIS_CHAIN,
        };
        let (file, file_path) = create_segment(storage.as_ref(), dir, &header)?;
        Ok(LogWriter {
            storage,
            dir: dir.to_path_buf(),
            options,
            file,
            file_path,
            segment_len: SEGMENT_HEADER_BYTES,
            last_lsn: Lsn::ZERO,
            synced_lsn: Lsn::ZERO,
            chain: header.prev_chain,
            buf: Vec::new(),
            stopped: None,
        })
    }

    /// The last LSN written (not necessarily durable).
    #[must_use]
    pub fn last_lsn(&self) -> Lsn {
        self.last_lsn
    }

    /// The last LSN known durable.
    #[must_use]
    pub fn synced_lsn(&self) -> Lsn {
        self.synced_lsn
    }

    /// The chain hash of the last record written.
    #[must_use]
    pub fn last_chain(&self) -> ChainHash {
        self.chain
    }

    /// Why the writer stopped, if it did.
    #[must_use]
    pub fn stopped(&self) -> Option<&str> {
        self.stopped.as_deref()
    }

    fn check_running(&self) -> Result<(), LogError> {
        match &self.stopped {
            Some(reason) => Err(LogError::Stopped(reason.clone())),
            None => Ok(()),
        }
    }

    fn stop(&mut self, error: LogError) -> LogError {
        let reason = error.to_string();
        tracing::error!(%reason, path = %self.file_path.display(), "log writer stopped: refusing writes until restart");
        self.stopped = Some(reason);
        error
    }

    /// Writes records (one `write` per segment touched) without syncing them.
    ///
    /// # Errors
    /// `Limit` for a payload over `RECORD_PAYLOAD_BYTES_MAX` (nothing is written); `Stopped` after
    /// an earlier failure; I/O errors, after which the writer is stopped.
    pub fn append(&mut self, entries: &[Entry<'_>]) -> Result<LsnRange, LogError> {
        self.check_running()?;
        if let Some(entry) = entries
            .iter()
            .find(|e| e.payload.len() > RECORD_PAYLOAD_BYTES_MAX as usize)
        {
            return Err(LogError::Limit(format!(
                "record payload of {} bytes is over the limit of {RECORD_PAYLOAD_BYTES_MAX}",
                entry.payload.len()
            )));
        }
        let first = self.last_lsn.next();
        self.buf.clear();
        for entry in entries {
            let pending = self.segment_len + self.buf.len() as u64;
            let full =
                pending + encoded_len(entry.payload.len()) as u64 > self.options.segment_bytes_max;
            if full && pending > SEGMENT_HEADER_BYTES {
                self.flush_buf()?;
                self.roll()?;
            }
            let lsn = self.last_lsn.next();
            self.chain = encode_into(&mut self.buf, lsn, self.synced_lsn, entry, &self.chain);
            self.last_lsn = lsn;
        }
        self.flush_buf()?;
        Ok(LsnRange {
            first,
            last: self.last_lsn,
        })
    }

    fn flush_buf(&mut self) -> Result<(), LogError> {
        if self.buf.is_empty() {
            return Ok(());
        }
        if let Err(source) = self.file.write_at(self.segment_len, &self.buf) {
            let error = LogError::io("write", &self.file_path, source);
            return Err(self.stop(error));
        }
        self.segment_len += self.buf.len() as u64;
        self.buf.clear();
        Ok(())
    }

    /// Makes every written record durable (`fdatasync`).
    ///
    /// # Errors
    /// `Stopped` after an earlier failure; the I/O error, after which the writer is stopped.
    pub fn sync(&mut self) -> Result<(), LogError> {
        self.check_running()?;
        if self.synced_lsn == self.last_lsn {
            return Ok(());
        }
        if let Err(source) = self.file.sync_data() {
            let error = LogError::io("fdatasync", &self.file_path, source);
            return Err(self.stop(error));
        }
        self.synced_lsn = self.last_lsn;
        Ok(())
    }

    /// Closes the current segment (durably) and starts the next one.
    fn roll(&mut self) -> Result<(), LogError> {
        self.sync()?;
        let header = SegmentHeader {
            first_lsn: self.last_lsn.next(),
            prev_chain: self.chain,
        };
        match create_segment(self.storage.as_ref(), &self.dir, &header) {
            Ok((file, path)) => {
                self.file = file;
                self.file_path = path;
                self.segment_len = SEGMENT_HEADER_BYTES;
                Ok(())
            }
            Err(error) => Err(self.stop(error)),
        }
    }
}

/// Creates a segment file with its header, durably (file and directory entry).
fn create_segment(
    storage: &dyn Storage,
    dir: &Path,
    header: &SegmentHeader,
) -> Result<(Arc<dyn StorageFile>, PathBuf), LogError> {
    let path = dir.join(segment_file_name(header.first_lsn));
    let file = storage
        .open(&path, OpenMode::CreateNew)
        .map_err(|e| LogError::io("create", &path, e))?;
    file.write_at(0, &header.encode())
        .map_err(|e| LogError::io("write", &path, e))?;
    file.sync_data()
        .map_err(|e| LogError::io("fdatasync", &path, e))?;
    storage
        .sync_dir(dir)
        .map_err(|e| LogError::io("sync dir", dir, e))?;
    Ok((file, path))
}
