//! Guards the engine's promises: replies only after durability, replay equals live state,
//! idempotent requests, expiry by log time, bounded queues, fail-stop on a failed fsync, shard
//! count fixed per data directory, and subscriptions that catch up and then tail.

mod common;

use cairn_engine::{
    Engine, EngineConfig, EngineError, ManualClock, RequestKey, Shard, ShardConfig, StateMachine,
    SubscriptionError,
};
use cairn_log::storage::{CrashMode, FaultPlan, FaultStorage, MemStorage, Storage};
use cairn_types::{Lsn, ShardId};
use common::{Command, Ledger, Refusal};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

const T0_MS: u64 = 1_800_000_000_000;

fn config(clock: &ManualClock) -> ShardConfig {
    ShardConfig {
        clock: Arc::new(clock.clone()),
        snapshot_every_records: 0,
        ..ShardConfig::default()
    }
}

fn open(storage: Arc<dyn Storage>, shard: ShardConfig) -> Engine<Ledger> {
    let config = EngineConfig {
        data_dir: PathBuf::from("/data"),
        shard_count: Some(1),
        shard,
    };
    Engine::open_on(storage, config).expect("engine opens").0
}

fn deposit(account: &str, amount: u64) -> Command {
    Command::Deposit {
        account: account.into(),
        amount,
    }
}

fn withdraw(account: &str, amount: u64) -> Command {
    Command::Withdraw {
        account: account.into(),
        amount,
    }
}

fn shard(engine: &Engine<Ledger>) -> &Shard<Ledger> {
    engine.shard(ShardId(0)).expect("shard 0")
}

fn state(engine: &Engine<Ledger>) -> Ledger {
    shard(engine)
        .read_blocking(|ledger: &Ledger, _| ledger.clone())
        .expect("read")
}

#[test]
fn acknowledged_commands_survive_a_crash() {
    let memory = MemStorage::new();
    let clock = ManualClock::new(T0_MS);
    let engine = open(Arc::new(memory.clone()), config(&clock));
    let mut acknowledged = Vec::new();
    for i in 1..=50 {
        let committed = shard(&engine)
            .execute(deposit("a", i), None)
            .expect("deposit accepted");
        acknowledged.push(committed.lsn);
    }
    // Power cut right after the last acknowledgement: whatever was not synced is gone.
    memory.crash(CrashMode::DropUnsynced);
    drop(engine);
    let engine = open(Arc::new(memory), config(&clock));
    assert_eq!(state(&engine).balance("a"), (1..=50).sum::<u64>());
    assert_eq!(
        shard(&engine).durable_lsn(),
        *acknowledged.last().expect("some")
    );
}

#[test]
fn replay_from_zero_and_from_a_snapshot_give_the_live_state_hash() {
    let memory = MemStorage::new();
    let clock = ManualClock::new(T0_MS);
    let engine = open(Arc::new(memory.clone()), config(&clock));
    for i in 0..200u64 {
        let account = format!("acct-{}", i % 7);
        let request = Some(RequestKey::new(format!("req-{i}"), &i.to_le_bytes()));
        let command = if i % 3 == 0 {
            withdraw(&account, i)
        } else {
            deposit(&account, i + 1)
        };
        let _ = shard(&engine).execute(command, request);
        if i == 120 {
            shard(&engine).snapshot_now().expect("snapshot");
        }
        clock.advance_ms(5);
    }
    let (lsn, live_hash) = shard(&engine).state_hash().expect("hash");
    engine.shutdown();

    let storage: Arc<dyn Storage> = Arc::new(memory.clone());
    let shard_dir = cairn_engine::shard_dir(&PathBuf::from("/data"), ShardId(0));
    let from_snapshot =
        cairn_engine::offline::replay_shard::<Ledger>(&storage, &shard_dir, None, false)
            .expect("replay");
    assert!(
        from_snapshot.snapshot_lsn.is_some(),
        "the snapshot was used"
    );
    let from_zero = cairn_engine::offline::replay_shard::<Ledger>(&storage, &shard_dir, None, true)
        .expect("replay");
    assert_eq!(from_snapshot.lsn, lsn);
    assert_eq!(from_zero.lsn, lsn);
    assert_eq!(from_snapshot.state_hash, live_hash);
    assert_eq!(from_zero.state_hash, live_hash);

    let engine = open(storage, config(&clock));
    assert_eq!(shard(&engine).state_hash().expect("hash"), (lsn, live_hash));
}

#[test]
fn replay_to_a_past_lsn_shows_the_state_then() {
    let memory = MemStorage::new();
    let clock = ManualClock::new(T0_MS);
    let engine = open(Arc::new(memory.clone()), config(&clock));
    let first = shard(&engine).execute(deposit("a", 10), None).expect("ok");
    shard(&engine).execute(deposit("a", 5), None).expect("ok");
    shard(&engine).snapshot_now().expect("snapshot");
    shard(&engine).execute(deposit("a", 1), None).expect("ok");
    engine.shutdown();
    let storage: Arc<dyn Storage> = Arc::new(memory);
    let dir = cairn_engine::shard_dir(&PathBuf::from("/data"), ShardId(0));
    let past =
        cairn_engine::offline::replay_shard::<Ledger>(&storage, &dir, Some(first.lsn), false)
            .expect("replay");
    assert_eq!(past.lsn, first.lsn);
    assert_eq!(
        past.snapshot_lsn, None,
        "the snapshot is after the target, so it is not used"
    );
    let mut expected = Ledger::default();
    expected.balances.insert("a".into(), 10);
    expected.last_lsn = first.lsn.0;
    assert_eq!(past.summary, expected.summary());
    let too_far =
        cairn_engine::offline::replay_shard::<Ledger>(&storage, &dir, Some(Lsn(999)), false);
    assert!(
        too_far.is_err(),
        "a target past the end of the log is an error"
    );
}

#[test]
fn a_repeated_request_returns_the_first_outcome_even_after_restart() {
    let memory = MemStorage::new();
    let clock = ManualClock::new(T0_MS);
    let engine = open(Arc::new(memory.clone()), config(&clock));
    let key = RequestKey::new("r-1", b"deposit a 7");
    let first = shard(&engine)
        .execute(deposit("a", 7), Some(key.clone()))
        .expect("accepted");
    let again = shard(&engine)
        .execute(deposit("a", 7), Some(key.clone()))
        .expect("repeat");
    assert_eq!(
        (again.lsn, &again.reply, again.repeated),
        (first.lsn, &first.reply, true)
    );
    let other_body = RequestKey::new("r-1", b"deposit a 8");
    assert_eq!(
        shard(&engine).execute(deposit("a", 8), Some(other_body)),
        Err(EngineError::RequestIdReused)
    );
    let refusal_key = RequestKey::new("r-2", b"withdraw a 100");
    let refused = shard(&engine).execute(withdraw("a", 100), Some(refusal_key.clone()));
    assert_eq!(
        refused,
        Err(EngineError::Refused(Refusal::Insufficient { available: 7 }))
    );
    shard(&engine)
        .execute(deposit("a", 1000), None)
        .expect("ok");
    engine.shutdown();

    let engine = open(Arc::new(memory), config(&clock));
    let again = shard(&engine)
        .execute(deposit("a", 7), Some(key))
        .expect("repeat after restart");
    assert!(again.repeated);
    assert_eq!(again.lsn, first.lsn);
    // The refusal is remembered, although the withdrawal would now succeed.
    let refused_again = shard(&engine).execute(withdraw("a", 100), Some(refusal_key));
    assert_eq!(
        refused_again,
        Err(EngineError::Refused(Refusal::Insufficient { available: 7 }))
    );
    assert_eq!(state(&engine).balance("a"), 1007);
}

#[test]
fn holds_expire_by_log_time_without_other_traffic() {
    let clock = ManualClock::new(T0_MS);
    let engine = open(Arc::new(MemStorage::new()), config(&clock));
    shard(&engine).execute(deposit("a", 10), None).expect("ok");
    let hold = Command::Hold {
        account: "a".into(),
        amount: 10,
        ttl_ms: 1_000,
    };
    shard(&engine).execute(hold, None).expect("held");
    assert_eq!(state(&engine).available("a"), 0);
    clock.advance_ms(999);
    assert_eq!(state(&engine).holds.len(), 1, "not yet due");
    clock.advance_ms(1);
    let deadline = Instant::now() + Duration::from_secs(5);
    while !state(&engine).holds.is_empty() {
        assert!(
            Instant::now() < deadline,
            "the hold did not expire within the tick interval"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(state(&engine).available("a"), 10);
}

#[test]
fn a_failed_fsync_stops_the_shard_and_loses_nothing_acknowledged() {
    let memory = MemStorage::new();
    let faulty = FaultStorage::new(Arc::new(memory.clone()));
    let clock = ManualClock::new(T0_MS);
    let engine = open(Arc::new(faulty.clone()), config(&clock));
    for _ in 0..10 {
        shard(&engine).execute(deposit("a", 1), None).expect("ok");
    }
    faulty.set_plan(FaultPlan {
        fail_sync_from: Some(1),
        ..FaultPlan::default()
    });
    let failed = shard(&engine).execute(deposit("a", 100), None);
    assert!(
        matches!(failed, Err(EngineError::Unavailable(_))),
        "got {failed:?}"
    );
    assert!(shard(&engine).stopped().is_some());
    let after = shard(&engine).execute(deposit("a", 1), None);
    assert!(
        matches!(after, Err(EngineError::Unavailable(_))),
        "got {after:?}"
    );
    assert!(matches!(
        shard(&engine).read_blocking(|l: &Ledger, _| l.balance("a")),
        Err(EngineError::Unavailable(_))
    ));
    drop(engine);
    memory.crash(CrashMode::DropUnsynced);
    let engine = open(Arc::new(memory), config(&clock));
    assert_eq!(
        state(&engine).balance("a"),
        10,
        "the acknowledged deposits are there, the failed one is not"
    );
}

#[test]
fn a_full_command_queue_is_refused_with_overloaded() {
    let memory = MemStorage::new();
    let gate = common_gate::GatedStorage::new(Arc::new(memory));
    let clock = ManualClock::new(T0_MS);
    let shard_config = ShardConfig {
        command_queue_depth_max: 4,
        in_flight_batches_max: 1,
        ..config(&clock)
    };
    let engine = open(Arc::new(gate.clone()), shard_config);
    gate.close();
    // The first batch blocks in fsync; the sequencer then blocks waiting for room in flight;
    // the queue of 4 fills up.
    let (sender, receiver) = std::sync::mpsc::channel();
    let mut overloaded = 0;
    for i in 0..20 {
        let sender = sender.clone();
        shard(&engine).submit(
            deposit("a", 1),
            None,
            Box::new(move |outcome| drop(sender.send((i, outcome)))),
        );
        if let Ok((_, Err(EngineError::Overloaded { depth_max: 4, .. }))) =
            receiver.recv_timeout(Duration::from_millis(50))
        {
            overloaded += 1;
        }
    }
    assert!(
        overloaded > 0,
        "no submission was refused while the shard was blocked"
    );
    gate.open();
    drop(sender);
    let accepted = receiver
        .iter()
        .filter(|(_, outcome)| outcome.is_ok())
        .count();
    assert!(accepted >= 1);
    assert_eq!(
        state(&engine).balance("a"),
        accepted as u64,
        "refused commands changed nothing"
    );
}

#[test]
fn the_shard_count_of_a_data_directory_is_fixed() {
    let memory: Arc<dyn Storage> = Arc::new(MemStorage::new());
    let clock = ManualClock::new(T0_MS);
    let make = |count| EngineConfig {
        data_dir: PathBuf::from("/d"),
        shard_count: Some(count),
        shard: config(&clock),
    };
    let engine = Engine::<Ledger>::open_on(Arc::clone(&memory), make(3))
        .expect("opens")
        .0;
    assert_eq!(engine.shard_count(), 3);
    engine.shutdown();
    let refused = Engine::<Ledger>::open_on(Arc::clone(&memory), make(4));
    let message = refused.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(
        message.contains("3 shards") && message.contains("4"),
        "unclear error: {message}"
    );
    let unspecified = EngineConfig {
        shard_count: None,
        ..make(1)
    };
    assert_eq!(
        Engine::<Ledger>::open_on(memory, unspecified)
            .expect("opens")
            .0
            .shard_count(),
        3
    );
}

#[test]
fn a_data_directory_is_opened_by_one_process_at_a_time() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = ManualClock::new(T0_MS);
    let make = || EngineConfig {
        data_dir: dir.path().to_path_buf(),
        shard_count: Some(1),
        shard: config(&clock),
    };
    let engine = Engine::<Ledger>::open(make()).expect("first open").0;
    let second = Engine::<Ledger>::open(make());
    assert!(
        second
            .err()
            .is_some_and(|e| e.to_string().contains("in use"))
    );
    engine.shutdown();
    Engine::<Ledger>::open(make()).expect("open after the first closed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscription_catches_up_from_the_files_then_follows_live() {
    let clock = ManualClock::new(T0_MS);
    let engine = open(Arc::new(MemStorage::new()), config(&clock));
    for i in 0..30 {
        shard(&engine)
            .execute(deposit("a", i + 1), None)
            .expect("ok");
    }
    let mut subscription = shard(&engine).subscribe(Lsn(11));
    for expected in 11..=30 {
        let record = tokio::time::timeout(Duration::from_secs(5), subscription.next())
            .await
            .expect("in time")
            .expect("record");
        assert_eq!(record.lsn, Lsn(expected));
    }
    let live = std::thread::scope(|scope| {
        scope
            .spawn(|| shard(&engine).execute(deposit("a", 1), None).expect("ok"))
            .join()
            .expect("thread")
    });
    let record = tokio::time::timeout(Duration::from_secs(5), subscription.next())
        .await
        .expect("in time")
        .expect("record");
    assert_eq!(record.lsn, live.lsn);
    let envelope: cairn_engine::core::EnvelopeOf<Ledger> =
        cairn_engine::envelope::decode(&record.payload).expect("decodes");
    assert_eq!(envelope.events().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_that_falls_behind_is_told_where_to_resume() {
    let clock = ManualClock::new(T0_MS);
    let shard_config = ShardConfig {
        subscription_buffer_records: 16,
        ..config(&clock)
    };
    let engine = open(Arc::new(MemStorage::new()), shard_config);
    shard(&engine).execute(deposit("a", 1), None).expect("ok");
    let mut subscription = shard(&engine).subscribe(Lsn(1));
    assert_eq!(subscription.next().await.expect("first").lsn, Lsn(1));
    // Now live and idle; 100 records arrive while the subscriber does not read.
    for _ in 0..100 {
        shard(&engine).execute(deposit("a", 1), None).expect("ok");
    }
    let mut seen = Vec::new();
    let mut fell_behind = 0;
    loop {
        match subscription.poll() {
            Ok(Some(record)) => seen.push(record.lsn),
            Ok(None) => break,
            Err(SubscriptionError::FellBehind {
                next_lsn,
                buffer_records_max,
            }) => {
                assert_eq!(buffer_records_max, 16);
                assert_eq!(next_lsn, Lsn(2 + seen.len() as u64));
                subscription.resume_from_files();
                fell_behind += 1;
            }
            Err(other) => panic!("unexpected {other}"),
        }
    }
    assert_eq!(
        fell_behind, 1,
        "100 records into a buffer of 16 must overflow once"
    );
    let expected: Vec<Lsn> = (2..=101).map(Lsn).collect();
    assert_eq!(
        seen, expected,
        "after resuming from the files nothing is missed or repeated"
    );
}

mod common_gate {
    //! A storage whose `sync_data` blocks while the gate is closed: makes "slow disk" states
    //! deterministic without sleeps.
    use cairn_log::storage::{OpenMode, Storage, StorageFile};
    use std::io;
    use std::path::Path;
    use std::sync::{Arc, Condvar, Mutex};

    #[derive(Clone)]
    pub struct GatedStorage {
        inner: Arc<dyn Storage>,
        gate: Arc<(Mutex<bool>, Condvar)>,
    }

    impl GatedStorage {
        pub fn new(inner: Arc<dyn Storage>) -> Self {
            GatedStorage {
                inner,
                gate: Arc::new((Mutex::new(true), Condvar::new())),
            }
        }
        pub fn close(&self) {
            *self.gate.0.lock().expect("gate") = false;
        }
        pub fn open(&self) {
            *self.gate.0.lock().expect("gate") = true;
            self.gate.1.notify_all();
        }
        fn wait(&self) {
            let guard = self.gate.0.lock().expect("gate");
            let _open = self.gate.1.wait_while(guard, |open| !*open).expect("gate");
        }
    }

    struct GatedFile {
        inner: Arc<dyn StorageFile>,
        storage: GatedStorage,
    }

    impl Storage for GatedStorage {
        fn create_dir_all(&self, path: &Path) -> io::Result<()> {
            self.inner.create_dir_all(path)
        }
        fn list_files(&self, path: &Path) -> io::Result<Vec<String>> {
            self.inner.list_files(path)
        }
        fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Arc<dyn StorageFile>> {
            Ok(Arc::new(GatedFile {
                inner: self.inner.open(path, mode)?,
                storage: self.clone(),
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
            self.storage.wait();
            self.inner.sync_data()
        }
        fn set_len(&self, len: u64) -> io::Result<()> {
            self.inner.set_len(len)
        }
    }
}

#[test]
fn regression_a_batch_larger_than_one_group_commit_is_split_not_fatal() {
    // Twelve commands of about 1 MiB of events each arrive together: 12 MiB is over one group
    // commit's 8 MiB, which used to stop the shard.
    let clock = ManualClock::new(T0_MS);
    let gate = common_gate::GatedStorage::new(Arc::new(MemStorage::new()));
    let engine = open(Arc::new(gate.clone()), config(&clock));
    shard(&engine)
        .execute(deposit("warm", 1), None)
        .expect("ok");
    gate.close();
    // While the disk is held, the first burst's batch waits and the rest queue up together.
    let (sender, receiver) = std::sync::mpsc::channel();
    for i in 0..12 {
        let sender = sender.clone();
        let burst = Command::Burst {
            account: format!("a{i}"),
            count: 200_000,
        };
        shard(&engine).submit(
            burst,
            None,
            Box::new(move |outcome| drop(sender.send(outcome))),
        );
    }
    drop(sender);
    gate.open();
    let outcomes: Vec<_> = receiver.iter().collect();
    assert_eq!(outcomes.len(), 12);
    assert!(
        outcomes.iter().all(Result::is_ok),
        "{:?}",
        outcomes.iter().find(|o| o.is_err())
    );
    assert!(shard(&engine).stopped().is_none());
    assert_eq!(state(&engine).balance("a11"), 200_000);
}

#[test]
fn regression_an_undecodable_snapshot_falls_back_to_an_older_one_or_to_replay() {
    let memory = MemStorage::new();
    let clock = ManualClock::new(T0_MS);
    let engine = open(Arc::new(memory.clone()), config(&clock));
    shard(&engine).execute(deposit("a", 3), None).expect("ok");
    shard(&engine).snapshot_now().expect("snapshot");
    let last = shard(&engine).execute(deposit("a", 4), None).expect("ok");
    let expected = shard(&engine).state_hash().expect("hash");
    engine.shutdown();
    // A newer snapshot this build cannot decode (as one from another state format would be).
    let storage: Arc<dyn Storage> = Arc::new(memory.clone());
    let dir = cairn_engine::shard_dir(&PathBuf::from("/data"), ShardId(0)).join("snapshots");
    let mut reader =
        cairn_log::LogReader::new(Arc::clone(&storage), &dir.with_file_name("log"), last.lsn);
    let chain = reader.next(last.lsn).expect("read").expect("record").chain;
    let garbage = b"not a snapshot body".to_vec();
    let meta = cairn_log::snapshot::SnapshotMeta {
        lsn: last.lsn,
        timestamp_ms: T0_MS,
        chain,
        state_hash: *blake3::hash(&garbage).as_bytes(),
    };
    cairn_log::snapshot::write_snapshot(storage.as_ref(), &dir, &meta, &garbage).expect("written");
    let engine = open(Arc::new(memory), config(&clock));
    assert_eq!(shard(&engine).state_hash().expect("hash"), expected);
}

#[test]
fn regression_a_panic_on_the_sequencer_stops_the_shard_visibly() {
    let clock = ManualClock::new(T0_MS);
    let engine = open(Arc::new(MemStorage::new()), config(&clock));
    shard(&engine).execute(deposit("a", 1), None).expect("ok");
    let (sender, receiver) = std::sync::mpsc::channel();
    shard(&engine).read(
        |_: &Ledger, _| -> u64 { panic!("a bug in a read") },
        move |result| drop(sender.send(result)),
    );
    assert!(
        receiver.recv().is_err(),
        "the read is never answered with a value"
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    while shard(&engine).stopped().is_none() {
        assert!(
            Instant::now() < deadline,
            "the shard did not report the panic"
        );
        std::thread::yield_now();
    }
    assert!(
        shard(&engine)
            .stopped()
            .is_some_and(|reason| reason.contains("panicked"))
    );
    assert!(matches!(
        shard(&engine).execute(deposit("a", 1), None),
        Err(EngineError::Unavailable(_))
    ));
}
