//! Guards the log's crash contract against a reference model: whatever the writer reported synced
//! survives any crash, LSNs stay dense, and only a prefix of the unsynced records ever comes back.
//!
//! The model is a `Vec` of every record handed to the writer, in order, and the count of those the
//! writer has reported durable (`synced_lsn`). Random operations run against `MemStorage`, which
//! drops (or tears) unsynced bytes at a simulated crash; after every reopen the recovered log is
//! compared with the model, read back with `LogReader` from random positions, scanned again from
//! random snapshot points, and reopened a second time to prove recovery is idempotent.

use cairn_log::storage::{CrashMode, FaultPlan, FaultStorage, MemStorage, Storage};
use cairn_log::{
    Entry, GENESIS_CHAIN, LogError, LogOptions, LogReader, LogWriter, Record, ScanOutcome,
    ScanStart, open_log, scan,
};
use cairn_types::Lsn;
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use std::path::Path;
use std::sync::Arc;

const DIR: &str = "/cairn/log";
/// The smallest segments the log allows, so that a few hundred records roll several of them.
const OPTIONS: LogOptions = LogOptions {
    segment_bytes_max: 64 * 1024,
};
const PAYLOAD_BYTES_MAX: usize = 300;
const BATCH_RECORDS_MAX: usize = 48;

/// One record as the model remembers it.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Rec {
    timestamp_ms: u64,
    record_type: u16,
    payload: Vec<u8>,
}

impl Rec {
    fn entry(&self) -> Entry<'_> {
        Entry {
            timestamp_ms: self.timestamp_ms,
            record_type: self.record_type,
            payload: &self.payload,
        }
    }

    fn matches(&self, record: &Record) -> bool {
        self.timestamp_ms == record.timestamp_ms
            && self.record_type == record.record_type
            && self.payload == record.payload
    }
}

#[derive(Clone, Debug)]
enum Op {
    Append(Vec<Rec>),
    Sync,
    CrashDropUnsynced,
    CrashTorn(u64),
    Reopen,
    /// Reads the live log with a `LogReader` from a position chosen by the seed.
    Read(u64),
}

fn xorshift(x: &mut u64) -> u64 {
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    *x
}

/// Deterministic bytes from a seed: cheap to generate and to shrink, unlike a `Vec<u8>` strategy.
fn bytes_from_seed(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len).map(|_| (xorshift(&mut x) >> 24) as u8).collect()
}

fn rec_strategy() -> impl Strategy<Value = Rec> {
    (
        0..PAYLOAD_BYTES_MAX,
        any::<u64>(),
        any::<u16>(),
        any::<u64>(),
    )
        .prop_map(|(len, seed, record_type, timestamp_ms)| Rec {
            timestamp_ms,
            record_type,
            payload: bytes_from_seed(seed, len),
        })
}

fn batch_strategy() -> impl Strategy<Value = Vec<Rec>> {
    proptest::collection::vec(rec_strategy(), 0..BATCH_RECORDS_MAX)
}

fn op_strategy() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => batch_strategy().prop_map(Op::Append),
        3 => Just(Op::Sync),
        1 => Just(Op::CrashDropUnsynced),
        1 => any::<u64>().prop_map(Op::CrashTorn),
        1 => Just(Op::Reopen),
        1 => any::<u64>().prop_map(Op::Read),
    ]
}

fn dir() -> &'static Path {
    Path::new(DIR)
}

/// What one `open_log` saw.
struct Opened {
    writer: LogWriter,
    outcome: ScanOutcome,
    records: Vec<Record>,
}

fn open(storage: &Arc<dyn Storage>) -> Result<Opened, LogError> {
    let mut records = Vec::new();
    let mut synced_before = Lsn::ZERO;
    let mut invariant: Result<(), String> = Ok(());
    let (writer, outcome) = open_log(
        Arc::clone(storage),
        dir(),
        OPTIONS,
        ScanStart::ZERO,
        &mut |view| {
            // synced_lsn is a promise about earlier records: below the record, never going back.
            if invariant.is_ok() && (view.synced_lsn >= view.lsn || view.synced_lsn < synced_before)
            {
                invariant = Err(format!(
                    "LSN {} carries synced_lsn {} after {}",
                    view.lsn, view.synced_lsn, synced_before
                ));
            }
            synced_before = view.synced_lsn;
            records.push(view.to_record());
            Ok(())
        },
    )?;
    invariant.map_err(LogError::Limit)?;
    Ok(Opened {
        writer,
        outcome,
        records,
    })
}

fn to_test_error(error: LogError) -> TestCaseError {
    TestCaseError::fail(format!("unexpected log error: {error}"))
}

/// The system under test and its model.
struct Harness {
    mem: MemStorage,
    storage: Arc<dyn Storage>,
    writer: Option<LogWriter>,
    /// Every record handed to the writer that may be in the log, in LSN order.
    written: Vec<Rec>,
    /// How many of `written` the writer has reported durable.
    acked: usize,
}

impl Harness {
    fn new() -> Result<Harness, TestCaseError> {
        let mem = MemStorage::new();
        let storage: Arc<dyn Storage> = Arc::new(mem.clone());
        let opened = open(&storage).map_err(to_test_error)?;
        prop_assert!(opened.records.is_empty());
        prop_assert_eq!(opened.outcome.last_lsn, Lsn::ZERO);
        Ok(Harness {
            mem,
            storage,
            writer: Some(opened.writer),
            written: Vec::new(),
            acked: 0,
        })
    }

    fn writer(&mut self) -> &mut LogWriter {
        self.writer
            .as_mut()
            .expect("a writer is open between operations")
    }

    fn run(&mut self, op: &Op) -> Result<(), TestCaseError> {
        match op {
            Op::Append(batch) => self.append(batch)?,
            Op::Sync => {
                self.writer().sync().map_err(to_test_error)?;
                let writer = self.writer();
                prop_assert_eq!(
                    writer.synced_lsn(),
                    writer.last_lsn(),
                    "sync leaves nothing unsynced"
                );
            }
            Op::CrashDropUnsynced => self.crash_and_recover(Some(CrashMode::DropUnsynced), 0)?,
            Op::CrashTorn(seed) => {
                self.crash_and_recover(Some(CrashMode::Torn { seed: *seed }), *seed)?
            }
            Op::Reopen => self.crash_and_recover(None, 0)?,
            Op::Read(seed) => {
                let last = self.writer().last_lsn();
                check_reader_from(&self.storage, &self.written, last, *seed)?;
            }
        }
        self.note_synced()
    }

    fn append(&mut self, batch: &[Rec]) -> Result<(), TestCaseError> {
        let entries: Vec<Entry<'_>> = batch.iter().map(Rec::entry).collect();
        let first_expected = Lsn(self.written.len() as u64 + 1);
        let range = self.writer().append(&entries).map_err(to_test_error)?;
        prop_assert_eq!(range.first, first_expected);
        prop_assert_eq!(range.last, Lsn(first_expected.0 + batch.len() as u64 - 1));
        self.written.extend_from_slice(batch);
        prop_assert_eq!(self.writer().last_lsn(), Lsn(self.written.len() as u64));
        Ok(())
    }

    /// Takes the writer's word for what is durable (a roll syncs too); a later crash checks it.
    fn note_synced(&mut self) -> Result<(), TestCaseError> {
        let synced = usize::try_from(self.writer().synced_lsn().0).expect("small test logs");
        prop_assert!(
            synced >= self.acked,
            "synced_lsn went back from {} to {synced}",
            self.acked
        );
        prop_assert!(synced <= self.written.len());
        self.acked = synced;
        Ok(())
    }

    /// Drops the writer, optionally crashes, reopens and checks the recovered log.
    fn crash_and_recover(
        &mut self,
        crash: Option<CrashMode>,
        seed: u64,
    ) -> Result<(), TestCaseError> {
        drop(self.writer.take());
        if let Some(mode) = crash {
            self.mem.crash(mode);
            prop_assert_eq!(self.mem.unsynced_bytes(), 0);
        }
        let opened = open(&self.storage).map_err(to_test_error)?;
        let recovered = &opened.records;
        check_recovered(recovered, &self.written, self.acked)?;
        if crash.is_none() {
            prop_assert_eq!(
                recovered.len(),
                self.written.len(),
                "a clean reopen keeps every written record"
            );
        }
        prop_assert_eq!(opened.outcome.last_lsn, Lsn(recovered.len() as u64));
        let last_chain = recovered.last().map_or(GENESIS_CHAIN, |r| r.chain);
        prop_assert_eq!(opened.outcome.last_chain, last_chain);
        prop_assert_eq!(opened.writer.last_lsn(), opened.outcome.last_lsn);
        prop_assert_eq!(opened.writer.last_chain(), last_chain);
        self.written.truncate(recovered.len());

        // Reopening again finds exactly the same log, with nothing left to cut.
        let first_outcome = opened.outcome.clone();
        drop(opened.writer);
        let again = open(&self.storage).map_err(to_test_error)?;
        prop_assert_eq!(&again.records, recovered);
        prop_assert!(
            again.outcome.torn_tail.is_none(),
            "second reopen cut {:?}",
            again.outcome.torn_tail
        );
        prop_assert_eq!(again.outcome.last_chain, first_outcome.last_chain);
        prop_assert_eq!(again.outcome.tail_offset, first_outcome.tail_offset);

        check_scans(&self.storage, recovered, seed)?;
        check_reader_from(&self.storage, &self.written, again.outcome.last_lsn, seed)?;
        check_reader_from(
            &self.storage,
            &self.written,
            again.outcome.last_lsn,
            seed.rotate_left(17),
        )?;
        self.writer = Some(again.writer);
        self.acked = self.acked.min(self.written.len());
        Ok(())
    }
}

/// Every acknowledged record is back, in order and intact; the rest is a prefix of the written.
fn check_recovered(
    recovered: &[Record],
    written: &[Rec],
    acked: usize,
) -> Result<(), TestCaseError> {
    prop_assert!(
        recovered.len() >= acked,
        "lost acknowledged records: {} recovered, {acked} were reported synced",
        recovered.len()
    );
    prop_assert!(
        recovered.len() <= written.len(),
        "{} recovered, only {} written",
        recovered.len(),
        written.len()
    );
    for (index, record) in recovered.iter().enumerate() {
        prop_assert_eq!(record.lsn, Lsn(index as u64 + 1), "LSNs are dense from 1");
        prop_assert!(
            written[index].matches(record),
            "record {} differs from what was written",
            record.lsn
        );
    }
    Ok(())
}

/// Scans from the end and from a random snapshot point: each visits exactly the records after it.
fn check_scans(
    storage: &Arc<dyn Storage>,
    recovered: &[Record],
    seed: u64,
) -> Result<(), TestCaseError> {
    let last = recovered.len();
    let mut points = vec![last];
    if last > 0 {
        points.push(usize::try_from(seed % (last as u64 + 1)).expect("small"));
    }
    for after in points {
        let chain = if after == 0 {
            GENESIS_CHAIN
        } else {
            recovered[after - 1].chain
        };
        let start = ScanStart {
            after_lsn: Lsn(after as u64),
            chain,
        };
        let mut visited = Vec::new();
        let outcome = scan::scan(
            storage.as_ref(),
            dir(),
            start,
            &mut |view| {
                visited.push(view.to_record());
                Ok(())
            },
            &mut |_| {},
        )
        .map_err(to_test_error)?;
        prop_assert_eq!(outcome.last_lsn, Lsn(last as u64));
        prop_assert_eq!(
            &visited[..],
            &recovered[after..],
            "scan after LSN {}",
            after
        );
        prop_assert!(outcome.torn_tail.is_none());
    }
    Ok(())
}

/// A reader from a random LSN returns exactly the records from there up to `last`, then nothing.
fn check_reader_from(
    storage: &Arc<dyn Storage>,
    written: &[Rec],
    last: Lsn,
    seed: u64,
) -> Result<(), TestCaseError> {
    let from = seed % (last.0 + 2); // 0 (meaning 1) ..= last + 1 (nothing to read)
    let mut reader = LogReader::new(Arc::clone(storage), dir(), Lsn(from));
    let mut expected_lsn = from.max(1);
    while let Some(record) = reader.next(last).map_err(to_test_error)? {
        prop_assert_eq!(record.lsn, Lsn(expected_lsn));
        let index = usize::try_from(expected_lsn - 1).expect("small");
        prop_assert!(
            written[index].matches(&record),
            "reader returned a different record {}",
            record.lsn
        );
        expected_lsn += 1;
    }
    prop_assert_eq!(
        expected_lsn,
        last.0 + 1,
        "reader from {} stopped early",
        from
    );
    prop_assert!(
        reader.next(Lsn(u64::MAX)).map_err(to_test_error)?.is_none(),
        "nothing past the end"
    );
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn synced_records_survive_any_sequence_of_crashes_and_reopens(
        ops in proptest::collection::vec(op_strategy(), 1..90),
    ) {
        let mut harness = Harness::new()?;
        for op in &ops {
            harness.run(op)?;
        }
        // Whatever the sequence ended with, a power cut now must keep every synced record.
        harness.crash_and_recover(Some(CrashMode::DropUnsynced), 7)?;
        // And the log keeps going: append, sync, crash, and find it all.
        let tail = vec![Rec {
            timestamp_ms: 1,
            record_type: 2,
            payload: b"after the end".to_vec(),
        }];
        harness.append(&tail)?;
        harness.writer().sync().map_err(to_test_error)?;
        harness.note_synced()?;
        harness.crash_and_recover(Some(CrashMode::Torn { seed: 11 }), 11)?;
        prop_assert_eq!(harness.written.last(), tail.last());
    }
}

// ---------------------------------------------------------------------------------------------
// Injected storage failures: the writer stops for good and loses nothing it reported synced.

#[derive(Clone, Debug)]
enum Fault {
    FailWrite(u64),
    TornWrite(u64, usize),
    FailSync(u64),
}

impl Fault {
    fn plan(&self) -> FaultPlan {
        match *self {
            Fault::FailWrite(at) => FaultPlan {
                fail_write_at: Some(at),
                ..FaultPlan::default()
            },
            Fault::TornWrite(at, bytes) => FaultPlan {
                torn_write_at: Some(at),
                torn_write_bytes: bytes,
                ..FaultPlan::default()
            },
            Fault::FailSync(at) => FaultPlan {
                fail_sync_from: Some(at),
                ..FaultPlan::default()
            },
        }
    }
}

fn fault_strategy() -> impl Strategy<Value = Fault> {
    prop_oneof![
        (1u64..40).prop_map(Fault::FailWrite),
        (1u64..40, 0usize..4096).prop_map(|(at, bytes)| Fault::TornWrite(at, bytes)),
        (1u64..25).prop_map(Fault::FailSync),
    ]
}

#[derive(Clone, Debug)]
enum FaultOp {
    Append(Vec<Rec>),
    Sync,
}

fn fault_op_strategy() -> impl Strategy<Value = FaultOp> {
    prop_oneof![
        4 => batch_strategy().prop_map(FaultOp::Append),
        1 => Just(FaultOp::Sync),
    ]
}

fn crash_strategy() -> impl Strategy<Value = Option<CrashMode>> {
    prop_oneof![
        Just(None),
        Just(Some(CrashMode::DropUnsynced)),
        any::<u64>().prop_map(|seed| Some(CrashMode::Torn { seed })),
    ]
}

fn is_stopped(result: &Result<impl std::fmt::Debug, LogError>) -> bool {
    matches!(result, Err(LogError::Stopped(_)))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn a_storage_failure_stops_the_writer_and_keeps_everything_synced_before_it(
        fault in fault_strategy(),
        ops in proptest::collection::vec(fault_op_strategy(), 1..60),
        crash in crash_strategy(),
    ) {
        let mem = MemStorage::new();
        let faulty = FaultStorage::new(Arc::new(mem.clone()));
        let faulty_dyn: Arc<dyn Storage> = Arc::new(faulty.clone());
        let mut writer = open(&faulty_dyn).map_err(to_test_error)?.writer;
        faulty.set_plan(fault.plan());

        let mut written: Vec<Rec> = Vec::new();
        let mut failed = false;
        for op in &ops {
            let result = match op {
                FaultOp::Append(batch) => {
                    let entries: Vec<Entry<'_>> = batch.iter().map(Rec::entry).collect();
                    let result = writer.append(&entries).map(drop);
                    if !failed {
                        // Attempted records may be in the log, whether or not the write failed.
                        written.extend_from_slice(batch);
                    }
                    result
                }
                FaultOp::Sync => writer.sync(),
            };
            if failed {
                prop_assert!(
                    is_stopped(&result),
                    "after a failure every operation is refused: {:?}",
                    result
                );
            } else if let Err(error) = result {
                prop_assert!(
                    matches!(error, LogError::Io { .. }),
                    "the first failure is the I/O error: {error}"
                );
                prop_assert!(writer.stopped().is_some(), "a failed operation stops the writer");
                failed = true;
            }
        }
        let acked = usize::try_from(writer.synced_lsn().0).expect("small");
        if failed {
            let entry = Rec { timestamp_ms: 0, record_type: 0, payload: vec![1] };
            prop_assert!(is_stopped(&writer.append(&[entry.entry()])));
            prop_assert!(is_stopped(&writer.sync()));
            prop_assert_eq!(usize::try_from(writer.synced_lsn().0).expect("small"), acked);
        }
        drop(writer);

        if let Some(mode) = crash {
            mem.crash(mode);
        }
        let plain: Arc<dyn Storage> = Arc::new(mem.clone());
        let opened =
            open(&plain).map_err(|e| TestCaseError::fail(format!("first reopen: {e}")))?;
        check_recovered(&opened.records, &written, acked)?;

        // The restarted log continues at the next LSN and survives a power cut.
        let mut writer = opened.writer;
        let next = Lsn(opened.records.len() as u64 + 1);
        let entry = Rec { timestamp_ms: 5, record_type: 6, payload: b"restarted".to_vec() };
        let range = writer.append(&[entry.entry()]).map_err(to_test_error)?;
        prop_assert_eq!(range.first, next);
        writer.sync().map_err(to_test_error)?;
        drop(writer);
        mem.crash(CrashMode::DropUnsynced);
        let reopened =
            open(&plain).map_err(|e| TestCaseError::fail(format!("second reopen: {e}")))?;
        prop_assert_eq!(reopened.records.len() as u64, next.0);
        prop_assert!(entry.matches(&reopened.records[reopened.records.len() - 1]));
        prop_assert_eq!(&reopened.records[..opened.records.len()], &opened.records[..]);
    }
}
