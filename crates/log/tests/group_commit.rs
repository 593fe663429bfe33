//! Guards group commit: concurrent submitters get dense, distinct LSNs and durable
//! acknowledgements, a full queue is refused at once, a failed fsync stops the log without losing
//! an acknowledged record, and `async` mode acknowledges before syncing yet syncs in its interval.

use cairn_log::storage::{
    CrashMode, FaultPlan, FaultStorage, FileStorage, MemStorage, OpenMode, Storage, StorageFile,
};
use cairn_log::{
    CommitOptions, Durability, GroupCommit, LogError, LogOptions, LogReader, LsnRange, OwnedEntry,
    Record, ScanStart, open_log,
};
use cairn_types::Lsn;
use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

const SMALL_SEGMENTS: LogOptions = LogOptions {
    segment_bytes_max: 64 * 1024,
};
/// How long any wait in these tests may take before the test fails instead of hanging.
const WAIT_MAX: Duration = Duration::from_secs(10);

fn entry(payload: Vec<u8>) -> OwnedEntry {
    OwnedEntry {
        timestamp_ms: 1_700_000_000_000,
        record_type: 3,
        payload,
    }
}

/// A payload that says who wrote it, so a misplaced record is caught.
fn payload_of(thread: usize, seq: usize, index: usize) -> Vec<u8> {
    let mut payload = format!("thread {thread} append {seq} record {index} ").into_bytes();
    payload.resize(
        payload.len() + (thread * 31 + seq * 7 + index) % 200,
        b'a' + (seq % 26) as u8,
    );
    payload
}

fn open(storage: &Arc<dyn Storage>, dir: &Path) -> (cairn_log::LogWriter, Vec<Record>) {
    let mut records = Vec::new();
    let (writer, _) = open_log(
        Arc::clone(storage),
        dir,
        SMALL_SEGMENTS,
        ScanStart::ZERO,
        &mut |view| {
            records.push(view.to_record());
            Ok(())
        },
    )
    .expect("the log opens");
    (writer, records)
}

fn start(
    storage: &Arc<dyn Storage>,
    dir: &Path,
    durability: Durability,
    queue_depth_max: usize,
) -> GroupCommit {
    let (writer, _) = open(storage, dir);
    GroupCommit::start(
        writer,
        CommitOptions {
            durability,
            queue_depth_max,
        },
    )
    .expect("writer thread starts")
}

/// Each acknowledged record is in `records` at its LSN, with its payload.
fn assert_acknowledged_present(acked: &[(Lsn, Vec<u8>)], records: &[Record]) {
    for (lsn, payload) in acked {
        let index = usize::try_from(lsn.0 - 1).expect("small");
        let record = records
            .get(index)
            .unwrap_or_else(|| panic!("acknowledged LSN {lsn} is missing"));
        assert_eq!(record.lsn, *lsn);
        assert_eq!(&record.payload, payload, "LSN {lsn} has another payload");
    }
}

#[test]
fn concurrent_appenders_get_distinct_dense_durable_lsns_and_their_records_read_back() {
    const THREADS: usize = 16;
    const APPENDS_PER_THREAD: usize = 30;
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("log");
    let storage: Arc<dyn Storage> = Arc::new(FileStorage);
    let log = Arc::new(start(&storage, &dir, Durability::Sync, 1024));

    let workers: Vec<_> = (0..THREADS)
        .map(|thread| {
            let log = Arc::clone(&log);
            thread::spawn(move || {
                let mut acked = Vec::new();
                for seq in 0..APPENDS_PER_THREAD {
                    let count = 1 + (thread + seq) % 4;
                    let payloads: Vec<Vec<u8>> =
                        (0..count).map(|i| payload_of(thread, seq, i)).collect();
                    let range = log
                        .append(payloads.iter().cloned().map(entry).collect())
                        .expect("append");
                    assert!(
                        log.durable_lsn() >= range.last,
                        "acknowledged before durable: {range:?}"
                    );
                    assert_eq!(range.last.0 - range.first.0 + 1, count as u64);
                    acked.push((range, payloads));
                }
                acked
            })
        })
        .collect();

    // Meanwhile a reader follows the live log, never past the durable LSN.
    let follower = {
        let log = Arc::clone(&log);
        let storage = Arc::clone(&storage);
        let dir = dir.clone();
        thread::spawn(move || {
            let total: u64 = (0..THREADS)
                .flat_map(|t| (0..APPENDS_PER_THREAD).map(move |s| 1 + (t + s) % 4))
                .sum::<usize>() as u64;
            let mut reader = LogReader::new(storage, &dir, Lsn(1));
            let mut seen = Vec::new();
            let deadline = Instant::now() + WAIT_MAX;
            while (seen.len() as u64) < total {
                assert!(
                    Instant::now() < deadline,
                    "follower saw {} of {total} records",
                    seen.len()
                );
                let durable = log.durable_lsn();
                match reader.next(durable).expect("the live log reads cleanly") {
                    Some(record) => {
                        assert!(record.lsn <= durable, "read past the durable LSN");
                        seen.push(record);
                    }
                    None => thread::yield_now(),
                }
            }
            seen
        })
    };

    let mut acked: Vec<(LsnRange, Vec<Vec<u8>>)> = workers
        .into_iter()
        .flat_map(|w| w.join().expect("appender thread"))
        .collect();
    let followed = follower.join().expect("follower thread");
    acked.sort_by_key(|(range, _)| range.first);
    let mut next = Lsn(1);
    for (range, _) in &acked {
        assert_eq!(
            range.first, next,
            "LSN ranges are distinct and leave no gap"
        );
        next = range.last.next();
    }
    let last = Lsn(next.0 - 1);
    assert_eq!(log.durable_lsn(), last);
    assert_eq!(
        log.metrics().records_written.load(Ordering::Relaxed),
        last.0
    );
    assert!(log.metrics().batches.load(Ordering::Relaxed) <= (THREADS * APPENDS_PER_THREAD) as u64);

    let flat: Vec<(Lsn, Vec<u8>)> = acked
        .iter()
        .flat_map(|(range, payloads)| {
            payloads
                .iter()
                .enumerate()
                .map(move |(i, p)| (Lsn(range.first.0 + i as u64), p.clone()))
        })
        .collect();
    assert_acknowledged_present(&flat, &followed);

    let log = Arc::try_unwrap(log).unwrap_or_else(|_| panic!("all threads are done"));
    let writer = log.shutdown().expect("clean shutdown");
    assert_eq!(writer.last_lsn(), last);
    drop(writer);
    let (_, records) = open(&storage, &dir);
    assert_eq!(records.len() as u64, last.0);
    assert_acknowledged_present(&flat, &records);
    let segments = cairn_log::segment::list_segments(storage.as_ref(), &dir).expect("list");
    assert!(
        segments.len() > 1,
        "the workload rolls segments under concurrency"
    );
}

// ---------------------------------------------------------------------------------------------
// A storage whose `sync_data` the test holds inside, to make a slow disk deterministic.

struct Gate {
    armed: AtomicBool,
    entered: Mutex<Sender<()>>,
    release: Mutex<Receiver<()>>,
}

#[derive(Clone)]
struct GatedStorage {
    inner: Arc<dyn Storage>,
    gate: Arc<Gate>,
}

/// The test's side of the gate.
struct GateControl {
    gate: Arc<Gate>,
    entered: Receiver<()>,
    release: Sender<()>,
}

impl GatedStorage {
    fn new(inner: Arc<dyn Storage>) -> (GatedStorage, GateControl) {
        let (entered_tx, entered_rx) = mpsc::channel();
        let (release_tx, release_rx) = mpsc::channel();
        let gate = Arc::new(Gate {
            armed: AtomicBool::new(false),
            entered: Mutex::new(entered_tx),
            release: Mutex::new(release_rx),
        });
        let control = GateControl {
            gate: Arc::clone(&gate),
            entered: entered_rx,
            release: release_tx,
        };
        (GatedStorage { inner, gate }, control)
    }
}

impl GateControl {
    fn arm(&self, armed: bool) {
        self.gate.armed.store(armed, Ordering::SeqCst);
    }

    /// Waits until a sync is held at the gate.
    fn wait_entered(&self) {
        self.entered
            .recv_timeout(WAIT_MAX)
            .expect("a sync reached the gate");
    }

    fn no_sync_entered(&self) -> bool {
        matches!(self.entered.try_recv(), Err(mpsc::TryRecvError::Empty))
    }

    /// Disarms the gate and lets the held sync go on.
    fn open(&self) {
        self.arm(false);
        self.release.send(()).expect("the held sync is waiting");
    }
}

struct GatedFile {
    inner: Arc<dyn StorageFile>,
    gate: Arc<Gate>,
}

impl Storage for GatedStorage {
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        self.inner.create_dir_all(path)
    }
    fn list_files(&self, path: &Path) -> io::Result<Vec<String>> {
        self.inner.list_files(path)
    }
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Arc<dyn StorageFile>> {
        let inner = self.inner.open(path, mode)?;
        Ok(Arc::new(GatedFile {
            inner,
            gate: Arc::clone(&self.gate),
        }))
    }
    fn remove_file(&self, path: &Path) -> io::Result<()> {
        self.inner.remove_file(path)
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.inner.rename(from, to)
    }
    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        self.inner.sync_dir(path)
    }
    fn exists(&self, path: &Path) -> bool {
        self.inner.exists(path)
    }
}

impl StorageFile for GatedFile {
    fn len(&self) -> io::Result<u64> {
        self.inner.len()
    }
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
        self.inner.read_at(offset, buf)
    }
    fn write_at(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        self.inner.write_at(offset, data)
    }
    fn sync_data(&self) -> io::Result<()> {
        if self.gate.armed.load(Ordering::SeqCst) {
            let _ = self.gate.entered.lock().expect("gate").send(());
            // Bounded: a test that forgets to open the gate fails instead of hanging.
            let released = self
                .gate
                .release
                .lock()
                .expect("gate")
                .recv_timeout(WAIT_MAX);
            if released.is_err() {
                return Err(io::Error::other("gate never opened"));
            }
        }
        self.inner.sync_data()
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        self.inner.set_len(len)
    }
}

fn completion() -> (cairn_log::Completion, Receiver<Result<Lsn, LogError>>) {
    let (sender, receiver) = mpsc::channel();
    (Box::new(move |result| drop(sender.send(result))), receiver)
}

#[test]
fn a_full_queue_is_refused_at_once_while_the_writer_is_held_in_a_slow_sync() {
    let (gated, control) = GatedStorage::new(Arc::new(MemStorage::new()));
    let storage: Arc<dyn Storage> = Arc::new(gated);
    let dir = Path::new("/cairn/queue");
    let log = start(&storage, dir, Durability::Sync, 1);

    control.arm(true);
    let (done1, acked1) = completion();
    let first = log
        .submit(vec![entry(b"one".to_vec())], done1)
        .expect("the queue is empty");
    control.wait_entered(); // the writer took the first submission and is inside its fsync
    let (done2, acked2) = completion();
    let second = log
        .submit(vec![entry(b"two".to_vec())], done2)
        .expect("one slot is free");
    let (done3, _never) = completion();
    let third = log.submit(vec![entry(b"three".to_vec())], done3);
    assert!(
        matches!(third, Err(LogError::QueueFull { depth_max: 1 })),
        "got {third:?}"
    );
    assert_eq!(log.metrics().queue_full_total.load(Ordering::Relaxed), 1);
    assert!(
        matches!(acked1.try_recv(), Err(mpsc::TryRecvError::Empty)),
        "acknowledged before its fsync"
    );

    control.open();
    assert_eq!(
        acked1
            .recv_timeout(WAIT_MAX)
            .expect("first completes")
            .expect("ok"),
        first.last
    );
    assert_eq!(
        acked2
            .recv_timeout(WAIT_MAX)
            .expect("second completes")
            .expect("ok"),
        second.last
    );
    assert_eq!((first.first, second.first), (Lsn(1), Lsn(2)));
    // The refused submission took no LSN: the next one gets LSN 3.
    let retried = log
        .append(vec![entry(b"three".to_vec())])
        .expect("room again");
    assert_eq!(retried.first, Lsn(3));
    let writer = log.shutdown().expect("shutdown");
    assert_eq!(writer.synced_lsn(), Lsn(3));
}

#[test]
fn a_failed_fsync_fails_its_waiter_and_stops_the_log() {
    let mem = MemStorage::new();
    let faulty = FaultStorage::new(Arc::new(mem.clone()));
    let storage: Arc<dyn Storage> = Arc::new(faulty.clone());
    let dir = Path::new("/cairn/fsync");
    let log = start(&storage, dir, Durability::Sync, 64);
    faulty.set_plan(FaultPlan {
        fail_sync_from: Some(4),
        ..FaultPlan::default()
    });

    let mut acked = Vec::new();
    for seq in 0..3 {
        let payload = payload_of(0, seq, 0);
        let range = log
            .append(vec![entry(payload.clone())])
            .expect("syncs 1 to 3 succeed");
        acked.push((range.last, payload));
    }
    let failed = log.append(vec![entry(b"lost".to_vec())]);
    match failed {
        Err(LogError::Stopped(reason)) => assert!(reason.contains("injected"), "reason: {reason}"),
        other => panic!("the waiter of the failed fsync must get an error, got {other:?}"),
    }
    // Once a failure has been reported, the log refuses new work.
    assert_eq!(log.metrics().stopped.load(Ordering::Relaxed), 1);
    assert!(log.stopped().is_some());
    let (done, _never) = completion();
    let later = log.submit(vec![entry(b"later".to_vec())], done);
    assert!(matches!(later, Err(LogError::Stopped(_))), "got {later:?}");
    assert!(matches!(
        log.append(vec![entry(b"later".to_vec())]),
        Err(LogError::Stopped(_))
    ));
    drop(log);

    mem.crash(CrashMode::DropUnsynced);
    let plain: Arc<dyn Storage> = Arc::new(mem);
    let (_, records) = open(&plain, dir);
    assert_acknowledged_present(&acked, &records);
    assert_eq!(
        records.len(),
        3,
        "the record whose fsync failed was never durable"
    );
}

#[test]
fn a_failed_fsync_under_concurrent_appenders_loses_no_acknowledged_record() {
    const THREADS: usize = 8;
    let mem = MemStorage::new();
    let faulty = FaultStorage::new(Arc::new(mem.clone()));
    let storage: Arc<dyn Storage> = Arc::new(faulty.clone());
    let dir = Path::new("/cairn/fsync-concurrent");
    let log = Arc::new(start(&storage, dir, Durability::Sync, 4096));
    faulty.set_plan(FaultPlan {
        fail_sync_from: Some(12),
        ..FaultPlan::default()
    });

    let workers: Vec<_> = (0..THREADS)
        .map(|thread| {
            let log = Arc::clone(&log);
            thread::spawn(move || {
                let mut acked = Vec::new();
                for seq in 0.. {
                    let payload = payload_of(thread, seq, 0);
                    match log.append(vec![entry(payload.clone())]) {
                        Ok(range) => acked.push((range.last, payload)),
                        Err(LogError::Stopped(_)) => break,
                        Err(other) => panic!("unexpected error {other}"),
                    }
                    assert!(seq < 10_000, "the injected failure never came");
                }
                // Whoever has seen the failure finds the log stopped.
                let (done, _never) = completion();
                assert!(matches!(
                    log.submit(vec![entry(vec![1])], done),
                    Err(LogError::Stopped(_))
                ));
                acked
            })
        })
        .collect();
    let acked: Vec<(Lsn, Vec<u8>)> = workers
        .into_iter()
        .flat_map(|w| w.join().expect("appender"))
        .collect();
    assert_eq!(log.metrics().stopped.load(Ordering::Relaxed), 1);
    assert!(!acked.is_empty(), "the first eleven fsyncs succeeded");
    drop(log);

    mem.crash(CrashMode::DropUnsynced);
    let plain: Arc<dyn Storage> = Arc::new(mem);
    let (_, records) = open(&plain, dir);
    assert_acknowledged_present(&acked, &records);
}

#[test]
fn async_mode_acknowledges_after_the_write_without_waiting_for_a_sync() {
    let (gated, control) = GatedStorage::new(Arc::new(MemStorage::new()));
    let storage: Arc<dyn Storage> = Arc::new(gated);
    let dir = Path::new("/cairn/async-ack");
    // An interval no test run reaches: any sync before shutdown would be held at the gate.
    let log = start(
        &storage,
        dir,
        Durability::Async {
            sync_interval_ms: 600_000,
        },
        64,
    );
    control.arm(true);
    let range = log
        .append(vec![entry(b"fast".to_vec()), entry(b"ack".to_vec())])
        .expect("acknowledged");
    assert_eq!(range.last, Lsn(2));
    assert!(
        control.no_sync_entered(),
        "async mode acknowledged only after a sync"
    );
    assert_eq!(log.durable_lsn(), Lsn::ZERO);
    assert_eq!(
        log.metrics().unsynced_records(),
        2,
        "the loss window is exposed"
    );
    control.arm(false);
    let writer = log.shutdown().expect("shutdown syncs");
    assert_eq!(writer.synced_lsn(), Lsn(2));
}

#[test]
fn async_mode_syncs_within_its_interval_and_what_it_reports_durable_survives_a_power_cut() {
    let mem = MemStorage::new();
    let storage: Arc<dyn Storage> = Arc::new(mem.clone());
    let dir = Path::new("/cairn/async-sync");
    let log = start(
        &storage,
        dir,
        Durability::Async {
            sync_interval_ms: 20,
        },
        64,
    );
    let mut acked = Vec::new();
    for seq in 0..50 {
        let payload = payload_of(1, seq, 0);
        let range = log.append(vec![entry(payload.clone())]).expect("append");
        acked.push((range.last, payload));
    }
    let last = acked.last().expect("appended").0;
    let deadline = Instant::now() + WAIT_MAX;
    while log.durable_lsn() < last {
        assert!(
            Instant::now() < deadline,
            "no sync within {WAIT_MAX:?}: durable {}",
            log.durable_lsn()
        );
        thread::sleep(Duration::from_millis(2)); // polling a metric, not synchronizing
    }
    assert_eq!(log.metrics().unsynced_records(), 0);
    // A power cut now, with the writer still running, keeps everything reported durable.
    mem.crash(CrashMode::DropUnsynced);
    let (_, records) = open(&storage, dir);
    assert_acknowledged_present(&acked, &records);
    drop(log);
}

#[test]
fn submissions_over_the_limits_are_refused_without_taking_an_lsn() {
    let storage: Arc<dyn Storage> = Arc::new(MemStorage::new());
    let dir = Path::new("/cairn/limits");
    let log = start(&storage, dir, Durability::Sync, 64);
    let too_many = (0..cairn_types::limits::COMMIT_BATCH_RECORDS_MAX + 1)
        .map(|_| entry(Vec::new()))
        .collect();
    assert!(matches!(log.append(too_many), Err(LogError::Limit(_))));
    let too_big = vec![0u8; cairn_types::limits::RECORD_PAYLOAD_BYTES_MAX as usize + 1];
    assert!(matches!(
        log.append(vec![entry(too_big)]),
        Err(LogError::Limit(_))
    ));
    let range = log.append(vec![entry(b"fits".to_vec())]).expect("append");
    assert_eq!(range.first, Lsn(1));
    assert!(
        log.stopped().is_none(),
        "a refused submission does not stop the log"
    );
    let writer = log.shutdown().expect("shutdown");
    assert_eq!(writer.last_lsn(), Lsn(1));
}

#[test]
fn shutdown_finishes_queued_submissions_and_returns_a_synced_writer() {
    let (gated, control) = GatedStorage::new(Arc::new(MemStorage::new()));
    let storage: Arc<dyn Storage> = Arc::new(gated);
    let dir = Path::new("/cairn/shutdown");
    let log = start(&storage, dir, Durability::Sync, 64);
    control.arm(true);
    let (done1, acked1) = completion();
    log.submit(vec![entry(b"held".to_vec())], done1)
        .expect("submit");
    control.wait_entered();
    let receivers: Vec<_> = (0..5)
        .map(|i| {
            let (done, acked) = completion();
            log.submit(vec![entry(vec![i])], done)
                .expect("queued behind the held sync");
            acked
        })
        .collect();
    let closer = thread::spawn(move || log.shutdown().expect("shutdown"));
    control.open();
    let writer = closer.join().expect("shutdown thread");
    assert_eq!(writer.synced_lsn(), Lsn(6));
    assert_eq!(
        acked1.recv_timeout(WAIT_MAX).expect("done").expect("ok"),
        Lsn(1)
    );
    for (i, acked) in receivers.iter().enumerate() {
        match acked.recv_timeout(WAIT_MAX) {
            Ok(result) => assert_eq!(result.expect("ok"), Lsn(i as u64 + 2)),
            Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => {
                panic!("queued submission {i} was dropped at shutdown")
            }
        }
    }
}
