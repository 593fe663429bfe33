//! Group commit: many submitters, one writer thread, one `write` and one `fdatasync` per batch.
//!
//! A submission gets its LSNs at once (under the queue lock, so LSN order is queue order) and a
//! completion that runs when its records are durable (`sync`) or written (`async`). The queue is
//! bounded: a full queue is `QueueFull`, returned to the caller at once.
//!
//! The writer thread does as little as it can besides `write` and `fdatasync`:
//! - a submission wakes it only when it sleeps (`writer_waiting`); while it writes or syncs,
//!   submissions just queue, one uncontended lock and a push each;
//! - completions run on a second thread, the completer, in LSN order, so that the writer starts
//!   the next batch's `write` + `fdatasync` at once instead of waking every submitter first. When
//!   nothing is queued and the completer is idle, the writer runs them itself (one hand-off less
//!   for a lone submitter) until a new submission arrives, and then hands the rest over.
//!
//! Fail-stop is unchanged: after a failed write or sync the queue is marked stopped (new
//! submissions are refused) before any failure is reported, and everything still queued fails.

use crate::error::LogError;
use crate::metrics::LogMetrics;
use crate::record::Entry;
use crate::writer::{LogWriter, LsnRange};
use cairn_types::Lsn;
use cairn_types::limits::{
    COMMIT_BATCH_BYTES_MAX, COMMIT_BATCH_RECORDS_MAX, RECORD_PAYLOAD_BYTES_MAX,
};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::{JoinHandle, Thread};
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

/// Runs with the last LSN of the submission once it is done, on the log's writer or completer
/// thread, in LSN order: it should be quick (wake a waiter, send on a channel).
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
    /// The writer is (about to be) asleep on `wake_writer`: the next submission must wake it.
    /// While it is busy writing, submissions only queue, without a wake-up system call each.
    writer_waiting: bool,
}

struct Shared {
    queue: Mutex<Queue>,
    wake_writer: Condvar,
    metrics: Arc<LogMetrics>,
    queue_depth_max: usize,
    /// Submissions waiting in `items` (a copy readable without the lock, to see that the writer
    /// has work waiting while it runs completions).
    queued: AtomicUsize,
}

fn lock(shared: &Shared) -> MutexGuard<'_, Queue> {
    shared
        .queue
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Most batches of completions handed to the completer and not yet run: past this the writer
/// waits for the completer (back-pressure), so completions cannot pile up without bound.
const COMPLETER_BATCHES_MAX: usize = 4;

/// A log behind a writer thread.
pub struct GroupCommit {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<LogWriter>>,
}

impl GroupCommit {
    /// Starts the writer thread (and its completer thread).
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
                writer_waiting: false,
            }),
            wake_writer: Condvar::new(),
            metrics,
            queue_depth_max: options.queue_depth_max.max(1),
            queued: AtomicUsize::new(0),
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
            drop(queue);
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
        let depth = queue.items.len();
        // Only a sleeping writer needs the wake-up (a system call); a busy one takes the whole
        // queue when it comes back for more.
        let wake = std::mem::take(&mut queue.writer_waiting);
        self.shared.queued.store(depth, Ordering::Relaxed);
        drop(queue);
        self.shared
            .metrics
            .queue_depth
            .store(depth as u64, Ordering::Relaxed);
        if wake {
            self.shared.wake_writer.notify_one();
        }
        Ok(range)
    }

    /// Queues records and blocks the calling thread until they are done.
    ///
    /// # Errors
    /// As [`GroupCommit::submit`], or the write/sync failure.
    pub fn append(&self, entries: Vec<OwnedEntry>) -> Result<LsnRange, LogError> {
        let waiter = Arc::new(Waiter {
            result: Mutex::new(None),
            done: AtomicBool::new(false),
            thread: std::thread::current(),
        });
        let notify = Notify(Some(Arc::clone(&waiter)));
        let range = self.submit(entries, Box::new(move |result| notify.send(result)))?;
        while !waiter.done.load(Ordering::Acquire) {
            std::thread::park();
        }
        let result = waiter
            .result
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        match result {
            Some(Ok(_)) => Ok(range),
            Some(Err(error)) => Err(error),
            None => Err(LogError::Closed),
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

    /// Refuses new submissions, finishes the queued ones (their completions included), syncs,
    /// and returns the writer.
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

/// Where [`GroupCommit::append`] waits: the outcome, and the thread to unpark when it is set.
/// Cheaper than a channel per record: no allocation besides this one, and one `futex` wake only
/// when the thread is actually parked.
struct Waiter {
    result: Mutex<Option<Result<Lsn, LogError>>>,
    done: AtomicBool,
    thread: Thread,
}

impl Waiter {
    fn set(&self, result: Result<Lsn, LogError>) {
        *self
            .result
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(result);
        self.done.store(true, Ordering::Release);
        self.thread.unpark();
    }
}

/// The completion's side of a [`Waiter`]: a completion dropped without being run (the writer
/// gone) still releases the waiter, with `Closed`.
struct Notify(Option<Arc<Waiter>>);

impl Notify {
    fn send(mut self, result: Result<Lsn, LogError>) {
        if let Some(waiter) = self.0.take() {
            waiter.set(result);
        }
    }
}

impl Drop for Notify {
    fn drop(&mut self) {
        if let Some(waiter) = self.0.take() {
            waiter.set(Err(LogError::Closed));
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
    let mut batch = Vec::with_capacity(queue.items.len().min(COMMIT_BATCH_RECORDS_MAX));
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

fn writer_loop(mut writer: LogWriter, shared: &Arc<Shared>, durability: Durability) -> LogWriter {
    let sync_interval = match durability {
        Durability::Sync => None,
        Durability::Async { sync_interval_ms } => {
            Some(Duration::from_millis(sync_interval_ms.max(1)))
        }
    };
    let asynchronous = sync_interval.is_some();
    let mut completer = Completer::start(shared, asynchronous);
    let mut last_sync = Instant::now();
    loop {
        let mut queue = lock(shared);
        while queue.items.is_empty() && !queue.closed {
            queue.writer_waiting = true;
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
        queue.writer_waiting = false;
        let batch = take_batch(&mut queue);
        let closing = queue.closed && queue.items.is_empty();
        let depth = queue.items.len();
        shared.queued.store(depth, Ordering::Relaxed);
        drop(queue);
        shared
            .metrics
            .queue_depth
            .store(depth as u64, Ordering::Relaxed);
        let due = sync_interval.is_none_or(|interval| last_sync.elapsed() >= interval) || closing;
        let result = write_batch(&mut writer, shared, &batch, due);
        if due && result.is_ok() {
            last_sync = Instant::now();
        }
        match result {
            Ok(()) => completer.complete(shared, batch, &Ok(())),
            Err(error) => {
                // Refuse new work before telling anyone of the failure: a submitter that has seen
                // it must find the log stopped, not have its next submission queued and failed
                // later. Then fail this batch and everything queued behind it, in LSN order
                // (after the completions of earlier batches, which the completer may still run).
                let reason = error.to_string();
                let drained = fail_all(shared, &reason);
                let failed = Err(reason);
                completer.complete(shared, batch, &failed);
                completer.complete(shared, drained, &failed);
            }
        }
        if closing {
            completer.finish();
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
    let records = batch.iter().map(|p| p.entries.len()).sum();
    let mut entries = Vec::with_capacity(records);
    let mut bytes = 0u64;
    for pending in batch {
        for e in &pending.entries {
            bytes += crate::record::encoded_len(e.payload.len()) as u64;
            entries.push(Entry {
                timestamp_ms: e.timestamp_ms,
                record_type: e.record_type,
                payload: &e.payload,
            });
        }
    }
    if !entries.is_empty() {
        let range = writer.append(&entries)?;
        let expected_first = batch.first().map_or(range.first, |p| p.range.first);
        assert_eq!(
            range.first, expected_first,
            "writer LSNs diverged from the queue's"
        );
        let metrics = &shared.metrics;
        metrics
            .records_written
            .fetch_add(entries.len() as u64, Ordering::Relaxed);
        metrics.bytes_written.fetch_add(bytes, Ordering::Relaxed);
        metrics.batches.fetch_add(1, Ordering::Relaxed);
        metrics.batch_records.observe_us(entries.len() as u64);
        metrics.written_lsn.store(range.last.0, Ordering::Release);
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

/// Runs one submission's completion: in `sync` mode once synced, in `async` mode once written.
fn complete_one(shared: &Shared, pending: Pending, result: &Result<(), String>) {
    let outcome = match result {
        Ok(()) => {
            debug_assert!(
                pending.range.last.0 <= shared.metrics.written_lsn.load(Ordering::Acquire),
                "completed before written"
            );
            Ok(pending.range.last)
        }
        Err(reason) => Err(LogError::Stopped(reason.clone())),
    };
    (pending.done)(outcome);
}

/// After a failure: refuse new work; what was queued, to be failed in order.
fn fail_all(shared: &Shared, reason: &str) -> Vec<Pending> {
    shared.metrics.stopped.store(1, Ordering::Relaxed);
    let mut queue = lock(shared);
    queue.stopped = Some(reason.to_string());
    let drained = queue.items.drain(..).collect();
    shared.queued.store(0, Ordering::Relaxed);
    shared.metrics.queue_depth.store(0, Ordering::Relaxed);
    drained
}

/// Completions handed to the completer: submissions in LSN order and their common outcome.
struct Handoff {
    items: Vec<Pending>,
    result: Result<(), String>,
}

/// The writer's side of the completer thread, which runs completions in the order they are
/// handed over (LSN order) while the writer goes on writing.
struct Completer {
    sender: Option<SyncSender<Handoff>>,
    thread: Option<JoinHandle<()>>,
    /// Hand-offs not yet fully run. The writer runs completions itself only when this is 0, so
    /// that they never overtake earlier ones.
    outstanding: Arc<AtomicUsize>,
    asynchronous: bool,
}

impl Completer {
    /// Starts the completer thread; if it cannot be spawned, the writer runs every completion.
    fn start(shared: &Arc<Shared>, asynchronous: bool) -> Completer {
        let (sender, receiver) = std::sync::mpsc::sync_channel(COMPLETER_BATCHES_MAX);
        let outstanding = Arc::new(AtomicUsize::new(0));
        let thread_shared = Arc::clone(shared);
        let thread_outstanding = Arc::clone(&outstanding);
        let spawned = std::thread::Builder::new()
            .name("cairn-log-completer".into())
            .spawn(move || completer_loop(&receiver, &thread_shared, &thread_outstanding));
        let (sender, thread) = match spawned {
            Ok(thread) => (Some(sender), Some(thread)),
            Err(error) => {
                tracing::warn!(%error, "no completer thread: the log writer runs completions itself");
                (None, None)
            }
        };
        Completer {
            sender,
            thread,
            outstanding,
            asynchronous,
        }
    }

    /// Completes `items` (in LSN order, after every completion handed over before). When the
    /// completer is idle and nothing is queued, runs them right here until a submission arrives,
    /// then hands the rest over so that the writer can take it. When submissions are already
    /// waiting, hands everything over at once: the writer's next `write` is not delayed by even
    /// one completion (whose wake-up of its caller may cost a system call).
    fn complete(&mut self, shared: &Shared, items: Vec<Pending>, result: &Result<(), String>) {
        if items.is_empty() {
            return;
        }
        debug_assert!(
            self.asynchronous
                || result.is_err()
                || items.iter().all(
                    |p| p.range.last <= Lsn(shared.metrics.durable_lsn.load(Ordering::Acquire))
                ),
            "completed before durable"
        );
        let mut items = items.into_iter();
        let threaded = self.sender.is_some();
        if !threaded || self.outstanding.load(Ordering::Acquire) == 0 {
            while !(threaded && shared.queued.load(Ordering::Relaxed) > 0) {
                let Some(pending) = items.next() else {
                    return;
                };
                complete_one(shared, pending, result);
            }
        }
        let rest: Vec<Pending> = items.collect();
        if rest.is_empty() {
            return;
        }
        self.hand_off(shared, rest, result);
    }

    fn hand_off(&mut self, shared: &Shared, items: Vec<Pending>, result: &Result<(), String>) {
        let handoff = Handoff {
            items,
            result: result.clone(),
        };
        let Some(sender) = &self.sender else {
            run_handoff(shared, handoff);
            return;
        };
        self.outstanding.fetch_add(1, Ordering::AcqRel);
        // Full: wait for the completer (`send` blocks), rather than let completions pile up.
        let failed = match sender.try_send(handoff) {
            Ok(()) => None,
            Err(TrySendError::Full(handoff)) => sender.send(handoff).err().map(|e| e.0),
            Err(TrySendError::Disconnected(handoff)) => Some(handoff),
        };
        if let Some(handoff) = failed {
            // The completer is gone: a completion panicked there (a caller's bug). What it had
            // not run yet is lost with it; run everything from now on here.
            tracing::error!("the log's completer thread died; the writer runs completions itself");
            self.sender = None;
            run_handoff(shared, handoff);
        }
    }

    /// Waits until every completion handed over has run.
    fn finish(mut self) {
        drop(self.sender.take());
        if let Some(thread) = self.thread.take()
            && thread.join().is_err()
        {
            tracing::error!("a completion panicked on the log's completer thread");
        }
    }
}

fn run_handoff(shared: &Shared, handoff: Handoff) {
    for pending in handoff.items {
        complete_one(shared, pending, &handoff.result);
    }
}

fn completer_loop(receiver: &Receiver<Handoff>, shared: &Shared, outstanding: &AtomicUsize) {
    while let Ok(handoff) = receiver.recv() {
        run_handoff(shared, handoff);
        outstanding.fetch_sub(1, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::{FaultPlan, FaultStorage, MemStorage, Storage};
    use crate::{LogOptions, ScanStart, open_log};
    use std::path::Path;
    use std::sync::mpsc;

    const WAIT_MAX: Duration = Duration::from_secs(10);

    fn start(storage: Arc<dyn Storage>, dir: &str) -> GroupCommit {
        let (writer, _) = open_log(
            storage,
            Path::new(dir),
            LogOptions::default(),
            ScanStart::ZERO,
            &mut |_| Ok(()),
        )
        .expect("the log opens");
        GroupCommit::start(writer, CommitOptions::default()).expect("the writer starts")
    }

    fn entry(byte: u8) -> Vec<OwnedEntry> {
        vec![OwnedEntry {
            timestamp_ms: 1,
            record_type: 1,
            payload: vec![byte; 10],
        }]
    }

    /// What a completion saw: its LSN or failure, the thread it ran on, and whether the log was
    /// durable up to it (or already marked stopped, for a failure).
    type Seen = Arc<Mutex<Vec<(Result<Lsn, String>, Option<String>, bool)>>>;

    fn recording(seen: &Seen, metrics: &Arc<LogMetrics>) -> Completion {
        let (seen, metrics) = (Arc::clone(seen), Arc::clone(metrics));
        Box::new(move |result: Result<Lsn, LogError>| {
            let thread = std::thread::current().name().map(str::to_string);
            let checked = match &result {
                Ok(lsn) => metrics.durable_lsn.load(Ordering::Acquire) >= lsn.0,
                Err(_) => metrics.stopped.load(Ordering::Acquire) == 1,
            };
            let result = result.map_err(|e| e.to_string());
            seen.lock().expect("seen").push((result, thread, checked));
        })
    }

    #[test]
    fn the_rest_of_a_batch_is_handed_to_the_completer_once_work_is_queued_and_stays_in_order() {
        let log = start(Arc::new(MemStorage::new()), "/cairn/handoff");
        let metrics = Arc::clone(log.metrics());
        let seen: Seen = Arc::default();

        // A: its completion holds the writer (it runs inline: nothing is queued) while B1..B10
        // queue up behind it, so that they make one batch.
        let (a_running, a_running_rx) = mpsc::channel();
        let (a_release, a_release_rx) = mpsc::channel::<()>();
        let a_done = recording(&seen, &metrics);
        log.submit(
            entry(0),
            Box::new(move |result| {
                a_running.send(()).expect("test waits");
                a_release_rx.recv_timeout(WAIT_MAX).expect("released");
                a_done(result);
            }),
        )
        .expect("submit A");
        a_running_rx.recv_timeout(WAIT_MAX).expect("A completes");
        // B1's completion holds the writer until C is queued: the writer must then hand B2..B10
        // over and go on with C.
        let (b1_running, b1_running_rx) = mpsc::channel();
        let (c_queued, c_queued_rx) = mpsc::channel::<()>();
        let b1_done = recording(&seen, &metrics);
        log.submit(
            entry(1),
            Box::new(move |result| {
                b1_running.send(()).expect("test waits");
                c_queued_rx.recv_timeout(WAIT_MAX).expect("C queued");
                b1_done(result);
            }),
        )
        .expect("submit B1");
        for byte in 2..=10 {
            log.submit(entry(byte), recording(&seen, &metrics))
                .expect("submit B");
        }
        a_release.send(()).expect("A waits");
        b1_running_rx.recv_timeout(WAIT_MAX).expect("B1 completes");
        log.submit(entry(11), recording(&seen, &metrics))
            .expect("submit C");
        c_queued.send(()).expect("B1 waits");
        let writer = log.shutdown().expect("shutdown");
        assert_eq!(writer.synced_lsn(), Lsn(12));

        let seen = seen.lock().expect("seen");
        let lsns: Vec<u64> = seen
            .iter()
            .map(|(result, _, _)| result.as_ref().expect("all succeed").0)
            .collect();
        assert_eq!(
            lsns,
            (1..=12).collect::<Vec<_>>(),
            "completions in LSN order"
        );
        assert!(
            seen.iter().all(|(_, _, durable)| *durable),
            "completed before durable"
        );
        let thread = |index: usize| seen[index].1.as_deref();
        assert_eq!(thread(0), Some("cairn-log-writer"), "A ran inline");
        assert_eq!(thread(1), Some("cairn-log-writer"), "B1 ran inline");
        for index in 2..11 {
            assert_eq!(
                thread(index),
                Some("cairn-log-completer"),
                "B{index} was handed over"
            );
        }
    }

    #[test]
    fn under_load_completions_keep_lsn_order_and_a_failure_comes_after_every_earlier_success() {
        const THREADS: usize = 8;
        let faulty = FaultStorage::new(Arc::new(MemStorage::new()));
        let log = Arc::new(start(Arc::new(faulty.clone()), "/cairn/order"));
        faulty.set_plan(FaultPlan {
            fail_sync_from: Some(60),
            ..FaultPlan::default()
        });
        let metrics = Arc::clone(log.metrics());
        let seen: Seen = Arc::default();
        let workers: Vec<_> = (0..THREADS)
            .map(|thread| {
                let (log, seen, metrics) =
                    (Arc::clone(&log), Arc::clone(&seen), Arc::clone(&metrics));
                std::thread::spawn(move || {
                    for round in 0..10_000u32 {
                        // A few submissions in flight per thread, some with slow completions, so
                        // that the completer falls behind and the writer hands batches over.
                        let (done, acked) = mpsc::channel();
                        for k in 0..3u32 {
                            let record = recording(&seen, &metrics);
                            let done = done.clone();
                            let slow = (round + k + thread as u32).is_multiple_of(7);
                            let completion: Completion = Box::new(move |result| {
                                if slow {
                                    std::thread::sleep(Duration::from_micros(200));
                                }
                                let failed = result.is_err();
                                record(result);
                                let _ = done.send(failed);
                            });
                            if log.submit(entry(k as u8), completion).is_err() {
                                return;
                            }
                        }
                        drop(done);
                        if acked.iter().any(|failed| failed) {
                            return;
                        }
                    }
                    panic!("the injected failure never came");
                })
            })
            .collect();
        for worker in workers {
            worker.join().expect("worker");
        }
        let log = Arc::into_inner(log).expect("workers are done");
        drop(log);
        let seen = seen.lock().expect("seen");
        let first_failure = seen
            .iter()
            .position(|(result, _, _)| result.is_err())
            .expect("a failure was reported");
        assert!(
            seen[first_failure..]
                .iter()
                .all(|(result, _, _)| result.is_err()),
            "a success completed after a failure"
        );
        let oks: Vec<u64> = seen[..first_failure]
            .iter()
            .map(|(result, _, _)| result.as_ref().expect("ok").0)
            .collect();
        assert_eq!(
            oks,
            (1..=oks.len() as u64).collect::<Vec<_>>(),
            "successes in LSN order"
        );
        assert!(
            seen.iter().all(|(_, _, checked)| *checked),
            "a success before its sync, or a failure before the log was marked stopped"
        );
        assert!(
            seen.iter()
                .any(|(_, thread, _)| thread.as_deref() == Some("cairn-log-completer")),
            "the completer was never used"
        );
    }
}
