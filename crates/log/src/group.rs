//! Group commit: many submitters, one writer thread, one `write` and one `fdatasync` per batch.
//!
//! A submission gets its LSNs at once (under the queue lock, so LSN order is queue order) and a
//! completion that runs on the writer thread when its records are durable (`sync`) or written
//! (`async`). The queue is bounded: a full queue is `QueueFull`, returned to the caller at once.

use crate::error::LogError;
use crate::metrics::LogMetrics;
use crate::record::Entry;
use crate::writer::{LogWriter, LsnRange};
use cairn_types::Lsn;
use cairn_types::limits::{
    COMMIT_BATCH_BYTES_MAX, COMMIT_BATCH_RECORDS_MAX, RECORD_PAYLOAD_BYTES_MAX,
};
use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// When a submission counts as done.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Durability {
    /// After its batch's `fdatasync` (the default; nothing acknowledged can be lost).
    Sync,
    /// After its batch's `write`; a sync runs every `sync_interval_ms`. A crash of the machine
    /// (not of the process) can lose what was acknowledged since the last sync: see the
    /// `cairn_log_unsynced_records` metric.
    Async {
        /// Longest time between syncs, in milliseconds.
        sync_interval_ms: u64,
    },
}

/// Options of a group-commit writer.
#[derive(Clone, Copy, Debug)]
pub struct CommitOptions {
    /// Sync or async acknowledgement.
    pub durability: Durability,
    /// Most submissions waiting at once.
    pub queue_depth_max: usize,
}

impl Default for CommitOptions {
    fn default() -> Self {
        CommitOptions {
            durability: Durability::Sync,
            queue_depth_max: cairn_types::limits::COMMIT_QUEUE_DEPTH_DEFAULT,
        }
    }
}

/// A record to append, owning its payload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OwnedEntry {
    /// Time stamped by the sequencer.
    pub timestamp_ms: u64,
    /// The engine's tag.
    pub record_type: u16,
    /// The payload.
    pub payload: Vec<u8>,
}

/// Runs on the writer thread with the last LSN of the submission once it is done.
pub type Completion = Box<dyn FnOnce(Result<Lsn, LogError>) + Send>;

struct Pending {
    range: LsnRange,
    entries: Vec<OwnedEntry>,
    done: Completion,
}

struct Queue {
    items: VecDeque<Pending>,
    next_lsn: Lsn,
    closed: bool,
    stopped: Option<String>,
}

struct Shared {
    queue: Mutex<Queue>,
    wake_writer: Condvar,
    metrics: Arc<LogMetrics>,
    queue_depth_max: usize,
}

fn lock(shared: &Shared) -> MutexGuard<'_, Queue> {
    shared
        .queue
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A log behind a writer thread.
pub struct GroupCommit {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<LogWriter>>,
}

impl GroupCommit {
    /// Starts the writer thread.
    ///
    /// # Errors
    /// An I/O error if the thread cannot be spawned.
    pub fn start(writer: LogWriter, options: CommitOptions) -> Result<GroupCommit, LogError> {
        let metrics = Arc::new(LogMetrics::default());
        metrics
            .written_lsn
            .store(writer.last_lsn().0, Ordering::Relaxed);
        metrics
            .durable_lsn
            .store(writer.synced_lsn().0, Ordering::Relaxed);
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue {
                items: VecDeque::new(),
                next_lsn: writer.last_lsn().next(),
                closed: false,
                stopped: writer.stopped().map(str::to_string),
            }),
            wake_writer: Condvar::new(),
            metrics,
            queue_depth_max: options.queue_depth_max.max(1),
        });
        let thread_shared = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("cairn-log-writer".into())
            .spawn(move || writer_loop(writer, &thread_shared, options.durability))
            .map_err(|e| LogError::io("spawn writer", std::path::Path::new(""), e))?;
        Ok(GroupCommit {
            shared,
            thread: Some(thread),
        })
    }

    /// Queues records; `done` runs when they are durable (or on failure). Returns their LSNs.
    ///
    /// # Errors
    /// `QueueFull`, `Stopped`, `Closed`, or `Limit` for an over-large submission; `done` is not
    /// called when `submit` returns an error.
    pub fn submit(&self, entries: Vec<OwnedEntry>, done: Completion) -> Result<LsnRange, LogError> {
        check_submission(&entries)?;
        let mut queue = lock(&self.shared);
        if let Some(reason) = &queue.stopped {
            return Err(LogError::Stopped(reason.clone()));
        }
        if queue.closed {
            return Err(LogError::Closed);
        }
        if queue.items.len() >= self.shared.queue_depth_max {
            self.shared
                .metrics
                .queue_full_total
                .fetch_add(1, Ordering::Relaxed);
            return Err(LogError::QueueFull {
                depth_max: self.shared.queue_depth_max,
            });
        }
        let first = queue.next_lsn;
        let last = Lsn(first.0 + entries.len() as u64 - 1);
        queue.next_lsn = last.next();
        let range = LsnRange { first, last };
        queue.items.push_back(Pending {
            range,
            entries,
            done,
        });
        self.shared
            .metrics
            .queue_depth
            .store(queue.items.len() as u64, Ordering::Relaxed);
        drop(queue);
        self.shared.wake_writer.notify_one();
        Ok(range)
    }

    /// Queues records and waits until they are done.
    ///
    /// # Errors
    /// As [`GroupCommit::submit`], or the write/sync failure.
    pub fn append(&self, entries: Vec<OwnedEntry>) -> Result<LsnRange, LogError> {
        let (sender, receiver) = std::sync::mpsc::sync_channel(1);
        let range = self.submit(entries, Box::new(move |result| drop(sender.send(result))))?;
        match receiver.recv() {
            Ok(Ok(_)) => Ok(range),
            Ok(Err(error)) => Err(error),
            Err(_) => Err(LogError::Closed),
        }
    }

    /// The writer's counters.
    #[must_use]
    pub fn metrics(&self) -> &Arc<LogMetrics> {
        &self.shared.metrics
    }

    /// The last durable LSN.
    #[must_use]
    pub fn durable_lsn(&self) -> Lsn {
        Lsn(self.shared.metrics.durable_lsn.load(Ordering::Acquire))
    }

    /// Why the writer stopped, if it did.
    #[must_use]
    pub fn stopped(&self) -> Option<String> {
        lock(&self.shared).stopped.clone()
    }

    /// Refuses new submissions, finishes the queued ones, syncs, and returns the writer.
    ///
    /// # Errors
    /// `Closed` if the writer thread panicked.
    pub fn shutdown(mut self) -> Result<LogWriter, LogError> {
        self.close();
        let thread = self.thread.take().ok_or(LogError::Closed)?;
        thread.join().map_err(|_| LogError::Closed)
    }

    fn close(&self) {
        lock(&self.shared).closed = true;
        self.shared.wake_writer.notify_one();
    }
}

impl Drop for GroupCommit {
    fn drop(&mut self) {
        self.close();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn check_submission(entries: &[OwnedEntry]) -> Result<(), LogError> {
    if entries.len() > COMMIT_BATCH_RECORDS_MAX {
        return Err(LogError::Limit(format!(
            "{} records in one submission; at most {COMMIT_BATCH_RECORDS_MAX}",
            entries.len()
        )));
    }
    let bytes: usize = entries.iter().map(|e| e.payload.len()).sum();
    if bytes > COMMIT_BATCH_BYTES_MAX {
        return Err(LogError::Limit(format!(
            "{bytes} payload bytes in one submission; at most {COMMIT_BATCH_BYTES_MAX}"
        )));
    }
    if entries
        .iter()
        .any(|e| e.payload.len() > RECORD_PAYLOAD_BYTES_MAX as usize)
    {
        return Err(LogError::Limit(format!(
            "a record payload is over {RECORD_PAYLOAD_BYTES_MAX} bytes"
        )));
    }
    Ok(())
}

/// Takes queued submissions up to the batch limits (at least one).
fn take_batch(queue: &mut Queue) -> Vec<Pending> {
    let mut batch = Vec::new();
    let mut records = 0;
    let mut bytes = 0;
    while let Some(next) = queue.items.front() {
        let next_bytes: usize = next.entries.iter().map(|e| e.payload.len()).sum();
        let over = records + next.entries.len() > COMMIT_BATCH_RECORDS_MAX
            || bytes + next_bytes > COMMIT_BATCH_BYTES_MAX;
        if over && !batch.is_empty() {
            break;
        }
        records += next.entries.len();
        bytes += next_bytes;
        if let Some(item) = queue.items.pop_front() {
            batch.push(item);
        }
    }
    batch
}

fn writer_loop(mut writer: LogWriter, shared: &Shared, durability: Durability) -> LogWriter {
    let sync_interval = match durability {
        Durability::Sync => None,
        Durability::Async { sync_interval_ms } => {
            Some(Duration::from_millis(sync_interval_ms.max(1)))
        }
    };
    let mut last_sync = Instant::now();
    loop {
        let mut queue = lock(shared);
        while queue.items.is_empty() && !queue.closed {
            let Some(interval) = sync_interval else {
                queue = shared
                    .wake_writer
                    .wait(queue)
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                continue;
            };
            let unsynced = writer.synced_lsn() < writer.last_lsn();
            if unsynced && last_sync.elapsed() >= interval {
                break;
            }
            let wait = if unsynced {
                interval.saturating_sub(last_sync.elapsed())
            } else {
                interval
            };
            let (guard, _) = shared
                .wake_writer
                .wait_timeout(queue, wait)
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            queue = guard;
        }
        let batch = take_batch(&mut queue);
        let closing = queue.closed && queue.items.is_empty();
        shared
            .metrics
            .queue_depth
            .store(queue.items.len() as u64, Ordering::Relaxed);
        drop(queue);
        let due = sync_interval.is_none_or(|interval| last_sync.elapsed() >= interval) || closing;
        let result = write_batch(&mut writer, shared, &batch, due);
        if due && result.is_ok() {
            last_sync = Instant::now();
        }
        // Refuse new work before telling anyone of the failure: a submitter that has seen it must
        // find the log stopped, not have its next submission queued and failed later.
        if let Err(error) = &result {
            fail_all(shared, &error.to_string());
        }
        finish(
            shared,
            batch,
            result.as_ref().map(|_| ()).map_err(ToString::to_string),
            sync_interval.is_some(),
        );
        if closing {
            return writer;
        }
    }
}

/// Writes a batch and, when due, syncs. In `sync` mode it is always due.
fn write_batch(
    writer: &mut LogWriter,
    shared: &Shared,
    batch: &[Pending],
    sync_due: bool,
) -> Result<(), LogError> {
    let entries: Vec<Entry<'_>> = batch
        .iter()
        .flat_map(|p| p.entries.iter())
        .map(|e| Entry {
            timestamp_ms: e.timestamp_ms,
            record_type: e.record_type,
            payload: &e.payload,
        })
        .collect();
    if !entries.is_empty() {
        let range = writer.append(&entries)?;
        let expected_first = batch
            .iter()
            .map(|p| p.range.first)
            .min()
            .unwrap_or(range.first);
        assert_eq!(
            range.first, expected_first,
            "writer LSNs diverged from the queue's"
        );
        let bytes = entries
            .iter()
            .map(|e| crate::record::encoded_len(e.payload.len()) as u64)
            .sum();
        shared
            .metrics
            .records_written
            .fetch_add(entries.len() as u64, Ordering::Relaxed);
        shared
            .metrics
            .bytes_written
            .fetch_add(bytes, Ordering::Relaxed);
        shared.metrics.batches.fetch_add(1, Ordering::Relaxed);
        shared
            .metrics
            .batch_records
            .observe_us(entries.len() as u64);
        shared
            .metrics
            .written_lsn
            .store(range.last.0, Ordering::Release);
    }
    if sync_due && writer.synced_lsn() < writer.last_lsn() {
        let started = Instant::now();
        writer.sync()?;
        let elapsed_us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
        shared.metrics.fsync_latency.observe_us(elapsed_us);
        shared
            .metrics
            .durable_lsn
            .store(writer.synced_lsn().0, Ordering::Release);
    }
    Ok(())
}

/// Completes a batch's submissions: in `sync` mode once synced, in `async` mode once written.
fn finish(shared: &Shared, batch: Vec<Pending>, result: Result<(), String>, asynchronous: bool) {
    let durable = Lsn(shared.metrics.durable_lsn.load(Ordering::Acquire));
    for pending in batch {
        let outcome = match &result {
            Ok(()) => {
                debug_assert!(
                    asynchronous || pending.range.last <= durable,
                    "completed before durable"
                );
                Ok(pending.range.last)
            }
            Err(reason) => Err(LogError::Stopped(reason.clone())),
        };
        (pending.done)(outcome);
    }
}

/// After a failure: refuse new work and fail everything queued.
fn fail_all(shared: &Shared, reason: &str) {
    shared.metrics.stopped.store(1, Ordering::Relaxed);
    let drained: Vec<Pending> = {
        let mut queue = lock(shared);
        queue.stopped = Some(reason.to_string());
        queue.items.drain(..).collect()
    };
    for pending in drained {
        (pending.done)(Err(LogError::Stopped(reason.to_string())));
    }
}
