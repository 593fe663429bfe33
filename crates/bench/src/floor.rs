//! The disk's floor: what one thread gets from one `write` + `fdatasync` per batch of records on
//! a plain, growing file, with no encoding, no queue and no thread hand-offs.
//!
//! The batch size is the mean the log reached, which may be fractional: batches of the two
//! nearest whole sizes are mixed so that the running mean stays on it.

use crate::PAYLOAD_BYTES;
use crate::append::{Tally, payload_of};
use anyhow::Context as _;
use cairn_log::record::encoded_len;
use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Largest batch the floor writes, in records (the log's own limit per group commit).
const BATCH_RECORDS_MAX: usize = cairn_types::limits::COMMIT_BATCH_RECORDS_MAX;

/// The floor's file, appended to slice after slice.
pub(crate) struct Floor {
    file: File,
    path: PathBuf,
    /// Bytes that look like records, enough for the largest batch.
    filler: Vec<u8>,
}

impl Floor {
    /// Creates the file at `path` and makes its creation durable, as the log does for a
    /// segment, so that the measured syncs carry only data and the file's size.
    pub(crate) fn create(path: &Path) -> anyhow::Result<Floor> {
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(path)
            .with_context(|| format!("creating {}", path.display()))?;
        file.sync_all()
            .with_context(|| format!("syncing {}", path.display()))?;
        if let Some(dir) = path.parent() {
            File::open(dir)
                .and_then(|d| d.sync_all())
                .with_context(|| format!("syncing {}", dir.display()))?;
        }
        Ok(Floor {
            file,
            path: path.to_path_buf(),
            filler: Vec::new(),
        })
    }

    /// Writes batches of `batch_mean` records (at least one) for `duration`.
    pub(crate) fn slice(&mut self, batch_mean: f64, duration: Duration) -> anyhow::Result<Tally> {
        let batch_mean = batch_mean.clamp(1.0, BATCH_RECORDS_MAX as f64);
        let record_bytes = encoded_len(PAYLOAD_BYTES);
        self.grow_filler(batch_mean.ceil() as usize * record_bytes);
        let mut sizes = BatchSizes::new(batch_mean);
        let mut tally = Tally::default();
        let started = Instant::now();
        while started.elapsed() < duration {
            let size = sizes.next();
            let batch_started = Instant::now();
            let sync_us = self.write_batch(size * record_bytes)?;
            let elapsed = u64::try_from(batch_started.elapsed().as_micros()).unwrap_or(u64::MAX);
            tally.latencies_us.push(elapsed);
            tally.fsync_us += sync_us;
            tally.records += size as u64;
            tally.fsyncs += 1;
        }
        tally.seconds = started.elapsed().as_secs_f64();
        tally.fsynced_records = tally.records;
        Ok(tally)
    }

    fn grow_filler(&mut self, len: usize) {
        let mut seed = self.filler.len() / PAYLOAD_BYTES;
        while self.filler.len() < len {
            self.filler.extend_from_slice(&payload_of(seed));
            seed += 1;
        }
    }

    /// Writes `bytes` and syncs them; the microseconds the sync took.
    fn write_batch(&mut self, bytes: usize) -> anyhow::Result<u64> {
        let path = &self.path;
        self.file
            .write_all(&self.filler[..bytes])
            .with_context(|| format!("writing {}", path.display()))?;
        let started = Instant::now();
        self.file
            .sync_data()
            .with_context(|| format!("fdatasync of {}", path.display()))?;
        Ok(u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX))
    }

    /// Closes and removes the file.
    pub(crate) fn remove(self) -> anyhow::Result<()> {
        drop(self.file);
        std::fs::remove_file(&self.path)
            .with_context(|| format!("removing {}", self.path.display()))
    }
}

/// Whole batch sizes whose running mean stays on a fractional target.
struct BatchSizes {
    mean: f64,
    batches: u64,
    records: u64,
}

impl BatchSizes {
    fn new(mean: f64) -> BatchSizes {
        assert!(mean >= 1.0, "batches hold at least one record");
        BatchSizes {
            mean,
            batches: 0,
            records: 0,
        }
    }

    fn next(&mut self) -> usize {
        self.batches += 1;
        let due = (self.batches as f64 * self.mean).round() as u64;
        let largest = self.mean.ceil() as u64;
        let size = due.saturating_sub(self.records).clamp(1, largest);
        self.records += size;
        usize::try_from(size).unwrap_or(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_sizes_keep_a_fractional_mean() {
        let mut sizes = BatchSizes::new(8.3);
        let drawn: Vec<usize> = (0..10).map(|_| sizes.next()).collect();
        assert!(drawn.iter().all(|&s| s == 8 || s == 9), "{drawn:?}");
        assert_eq!(drawn.iter().sum::<usize>(), 83);
        let mut ones = BatchSizes::new(1.0);
        assert!((0..5).all(|_| ones.next() == 1));
    }
}
