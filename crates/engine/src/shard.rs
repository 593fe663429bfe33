//! One shard: a sequencer thread that owns the state, a group-commit writer under it, a
//! snapshotter beside it, and a handle that callers use from any thread.
//!
//! The sequencer drains its bounded queue in batches. For each command it decides, encodes the
//! envelope, applies it in memory at once (so later commands in the batch see it) and queues the
//! reply. The batch goes to the group-commit writer as one submission; replies, reads included,
//! are released only when the writer reports the batch durable. While the writer syncs batch N,
//! the sequencer already decides batch N+1: the pipeline is bounded by `in_flight_batches_max`.

use crate::config::ShardConfig;
use crate::core::{Core, EnvelopeOf, FrozenCore, hash_state};
use crate::dedup::{Lookup, RequestKey, StoredOutcome};
use crate::durable::DurableLsn;
use crate::envelope::{self, Envelope};
use crate::error::{EngineError, OpenError};
use crate::machine::{Stamp, StateMachine};
use crate::metrics::ShardMetrics;
use crate::subscribe::{LiveRecord, Subscription};
use cairn_log::snapshot::{SnapshotMeta, load_newest_snapshot, prune_snapshots, write_snapshot};
use cairn_log::storage::Storage;
use cairn_log::{GroupCommit, LogError, LogReader, OwnedEntry, ScanStart, open_log};
use cairn_types::limits::{
    COMMIT_BATCH_BYTES_MAX, COMMIT_BATCH_RECORDS_MAX, RECORD_PAYLOAD_BYTES_MAX,
};
use cairn_types::{Lsn, ShardId};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tokio::sync::broadcast;

/// An accepted command's result, released once durable.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Committed<R> {
    /// The record that holds the command's events (its last event's position).
    pub lsn: Lsn,
    /// The reply.
    pub reply: R,
    /// True when this is the remembered outcome of an earlier request with the same id.
    pub repeated: bool,
}

/// The outcome of a command.
pub type Outcome<M> =
    Result<Committed<<M as StateMachine>::Reply>, EngineError<<M as StateMachine>::Error>>;

/// Receives the outcome of a command, on the writer thread: keep it short (send on a channel).
pub type ReplyFn<M> = Box<dyn FnOnce(Outcome<M>) + Send>;

/// A release: runs when the batch is durable (`Ok`) or failed (`Err(reason)`).
type Release = Box<dyn FnOnce(Result<(), String>) + Send>;

type ReadFn<M> = Box<dyn FnOnce(&M, Lsn) -> Release + Send>;

/// What a snapshot request produced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnapshotInfo {
    /// The last record the snapshot includes.
    pub lsn: Lsn,
    /// The snapshot file.
    pub path: PathBuf,
    /// Compressed size.
    pub bytes: u64,
    /// Hash of the state.
    pub state_hash: [u8; 32],
    /// How long the sequencer paused to freeze the state, in microseconds.
    pub pause_us: u64,
}

/// Most timer records per sequencer batch.
const TIMER_RECORDS_PER_BATCH_MAX: usize = 16;

type SnapshotReply = Box<dyn FnOnce(Result<SnapshotInfo, String>) + Send>;

type HashReply = Box<dyn FnOnce(Result<(Lsn, [u8; 32]), String>) + Send>;

enum Message<M: StateMachine> {
    Command {
        command: M::Command,
        request: Option<RequestKey>,
        reply: ReplyFn<M>,
    },
    Read {
        read: ReadFn<M>,
    },
    Snapshot {
        reply: SnapshotReply,
    },
    Hash {
        reply: HashReply,
    },
}

/// Paths of a shard's files.
#[derive(Clone, Debug)]
pub struct ShardPaths {
    /// Log segments.
    pub log_dir: PathBuf,
    /// Snapshot files.
    pub snapshot_dir: PathBuf,
}

impl ShardPaths {
    /// The layout under a shard directory.
    #[must_use]
    pub fn new(shard_dir: &Path) -> ShardPaths {
        ShardPaths {
            log_dir: shard_dir.join("log"),
            snapshot_dir: shard_dir.join("snapshots"),
        }
    }
}

/// Counts batches written but not yet durable, and lets the sequencer wait for room.
#[derive(Default)]
struct InFlight {
    count: Mutex<usize>,
    room: Condvar,
}

impl InFlight {
    fn acquire(&self, max: usize) {
        let count = self
            .count
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut count = self
            .room
            .wait_while(count, |c| *c >= max)
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *count += 1;
    }

    fn release(&self) {
        let mut count = self
            .count
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *count = count.saturating_sub(1);
        drop(count);
        self.room.notify_all();
    }
}

/// What the handle, the sequencer and the writer's completions share.
struct Shared {
    shard: ShardId,
    paths: ShardPaths,
    storage: Arc<dyn Storage>,
    durable: DurableLsn,
    stopped: Mutex<Option<String>>,
    metrics: ShardMetrics,
    live: broadcast::Sender<LiveRecord>,
    subscription_buffer_records: usize,
    /// True from the moment a snapshot is frozen until its file is written.
    snapshot_busy: std::sync::atomic::AtomicBool,
}

impl Shared {
    fn stopped(&self) -> Option<String> {
        self.stopped
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    fn stop(&self, reason: &str) {
        let mut stopped = self
            .stopped
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if stopped.is_none() {
            tracing::error!(shard = self.shard.0, %reason, "shard stopped: refusing work until restart (memory may be ahead of disk)");
            *stopped = Some(reason.to_string());
        }
    }
}

/// A handle to a running shard. Dropping it stops the shard (draining and syncing).
pub struct Shard<M: StateMachine> {
    shared: Arc<Shared>,
    sender: Option<SyncSender<Message<M>>>,
    queue_depth_max: usize,
    sequencer: Option<JoinHandle<()>>,
    snapshotter: Option<JoinHandle<()>>,
}

/// Request ids a shard remembers, with the log time of each outcome, oldest first.
pub(crate) type RequestIds = Vec<(String, u64)>;

/// What recovery did when the shard opened.
#[derive(Clone, Debug)]
pub struct Recovery {
    /// The snapshot it started from, if any.
    pub snapshot_lsn: Option<Lsn>,
    /// Records replayed after it.
    pub records_replayed: u64,
    /// The last LSN after recovery.
    pub last_lsn: Lsn,
    /// Bytes of torn tail cut, if any.
    pub torn_bytes_dropped: u64,
    /// How long recovery took, in milliseconds.
    pub elapsed_ms: u64,
}

/// Loads the newest valid snapshot (at most `lsn_max`) and replays the log after it into a state,
/// calling `visit_lsn_max` records at most. Used by shard start and by `cairn replay`.
pub(crate) fn recover_core<M: StateMachine + Default>(
    storage: &Arc<dyn Storage>,
    paths: &ShardPaths,
    config: &ShardConfig,
    lsn_max: Option<Lsn>,
) -> Result<(Core<M>, ScanStart, Option<Lsn>), OpenError> {
    // Newest first; a snapshot this build cannot decode (damaged, or written by an older state
    // format) is skipped with a warning: the log holds the whole history, so an older snapshot or
    // replay from zero gives the same state.
    let mut bound = lsn_max;
    while let Some(loaded) = load_newest_snapshot(storage.as_ref(), &paths.snapshot_dir, bound)? {
        let restored = Core::<M>::restore(
            &loaded.state,
            loaded.meta.lsn,
            loaded.meta.timestamp_ms,
            config.dedup,
        );
        match restored {
            Ok(core) if hash_state(&loaded.state) == loaded.meta.state_hash => {
                let start = ScanStart {
                    after_lsn: loaded.meta.lsn,
                    chain: loaded.meta.chain,
                };
                return Ok((core, start, Some(loaded.meta.lsn)));
            }
            Ok(_) => {
                tracing::warn!(path = %loaded.path.display(), "snapshot state hash mismatch; skipped")
            }
            Err(reason) => {
                tracing::warn!(path = %loaded.path.display(), %reason, "snapshot does not decode; skipped")
            }
        }
        let Some(older) = loaded.meta.lsn.0.checked_sub(1) else {
            break;
        };
        bound = Some(Lsn(older));
    }
    Ok((Core::empty(config.dedup), ScanStart::ZERO, None))
}

impl<M: StateMachine + Default> Shard<M> {
    /// Recovers the shard in `shard_dir` (newest valid snapshot, then replay) and starts it.
    ///
    /// # Errors
    /// Corruption, I/O errors, undecodable records, bad configuration.
    pub fn open(
        storage: Arc<dyn Storage>,
        shard: ShardId,
        shard_dir: &Path,
        config: ShardConfig,
    ) -> Result<(Shard<M>, Recovery), OpenError> {
        Self::open_with_request_ids(storage, shard, shard_dir, config)
            .map(|(shard, recovery, _)| (shard, recovery))
    }

    /// As [`Shard::open`], also returning the request ids the shard remembers (with their log
    /// times, oldest first), for the engine's index of ids across shards.
    pub(crate) fn open_with_request_ids(
        storage: Arc<dyn Storage>,
        shard: ShardId,
        shard_dir: &Path,
        config: ShardConfig,
    ) -> Result<(Shard<M>, Recovery, RequestIds), OpenError> {
        config.validate().map_err(OpenError::Config)?;
        let started = Instant::now();
        let paths = ShardPaths::new(shard_dir);
        for dir in [&paths.log_dir, &paths.snapshot_dir] {
            storage.create_dir_all(dir).map_err(|e| {
                OpenError::Log(LogError::Io {
                    op: "create dir",
                    path: dir.clone(),
                    source: e,
                })
            })?;
        }
        // New directories are durable only once their parents are synced.
        for dir in shard_dir.ancestors().take(3) {
            storage.sync_dir(dir).map_err(|e| {
                OpenError::Log(LogError::Io {
                    op: "sync dir",
                    path: dir.to_path_buf(),
                    source: e,
                })
            })?;
        }
        let (mut core, start, snapshot_lsn) = recover_core::<M>(&storage, &paths, &config, None)?;
        let mut replay_error = None;
        let mut replayed = 0u64;
        let opened = open_log(
            Arc::clone(&storage),
            &paths.log_dir,
            config.log,
            start,
            &mut |record| {
                replayed += 1;
                core.apply_record(record).map_err(|reason| {
                    replay_error = Some(reason.clone());
                    LogError::Stopped(reason)
                })
            },
        );
        if let Some(reason) = replay_error {
            return Err(OpenError::Decode {
                what: format!("shard {shard} log"),
                reason,
            });
        }
        let (writer, outcome) = opened?;
        assert_eq!(
            writer.last_lsn(),
            core.lsn.max(outcome.last_lsn),
            "replay ended where the log ends"
        );
        let recovery = Recovery {
            snapshot_lsn,
            records_replayed: replayed,
            last_lsn: writer.last_lsn(),
            torn_bytes_dropped: outcome.torn_tail.as_ref().map_or(0, |t| t.bytes_dropped),
            elapsed_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        };
        tracing::info!(shard = shard.0, ?recovery, "shard recovered");
        let request_ids = core.requests.ids();
        let commit = GroupCommit::start(writer, config.commit)?;
        let (live, _) = broadcast::channel(config.subscription_buffer_records);
        let shared = Arc::new(Shared {
            shard,
            paths,
            storage,
            durable: DurableLsn::new(recovery.last_lsn),
            stopped: Mutex::new(None),
            metrics: ShardMetrics::new(Arc::clone(commit.metrics())),
            live,
            subscription_buffer_records: config.subscription_buffer_records,
            snapshot_busy: std::sync::atomic::AtomicBool::new(false),
        });
        shared
            .metrics
            .applied_lsn
            .store(recovery.last_lsn.0, Ordering::Relaxed);
        let (snapshot_sender, snapshot_receiver) = std::sync::mpsc::sync_channel(1);
        let snapshotter = spawn_named(format!("cairn-snap-{shard}"), {
            let shared = Arc::clone(&shared);
            let kept = config.snapshots_kept;
            move || snapshotter_loop::<M>(&shared, &snapshot_receiver, kept)
        })?;
        let (sender, receiver) = std::sync::mpsc::sync_channel(config.command_queue_depth_max);
        let queue_depth_max = config.command_queue_depth_max;
        let sequencer = Sequencer {
            core,
            config,
            shared: Arc::clone(&shared),
            commit,
            in_flight: Arc::new(InFlight::default()),
            snapshots: snapshot_sender,
            records_since_snapshot: 0,
        };
        let sequencer = spawn_named(format!("cairn-seq-{shard}"), move || {
            sequencer.run(&receiver)
        })?;
        let handle = Shard {
            shared,
            sender: Some(sender),
            queue_depth_max,
            sequencer: Some(sequencer),
            snapshotter: Some(snapshotter),
        };
        Ok((handle, recovery, request_ids))
    }
}

fn spawn_named(
    name: String,
    body: impl FnOnce() + Send + 'static,
) -> Result<JoinHandle<()>, OpenError> {
    std::thread::Builder::new()
        .name(name)
        .spawn(body)
        .map_err(|e| {
            OpenError::Log(LogError::Io {
                op: "spawn thread",
                path: PathBuf::new(),
                source: e,
            })
        })
}

impl<M: StateMachine> Shard<M> {
    /// This shard's id.
    #[must_use]
    pub fn id(&self) -> ShardId {
        self.shared.shard
    }

    fn send(&self, message: Message<M>) -> Result<(), (Message<M>, EngineError<M::Error>)> {
        if let Some(reason) = self.shared.stopped() {
            return Err((message, EngineError::Unavailable(reason)));
        }
        let Some(sender) = &self.sender else {
            return Err((
                message,
                EngineError::Unavailable("shard is shutting down".into()),
            ));
        };
        self.shared
            .metrics
            .queue_depth
            .fetch_add(1, Ordering::Relaxed);
        match sender.try_send(message) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(message)) => {
                self.shared
                    .metrics
                    .queue_depth
                    .fetch_sub(1, Ordering::Relaxed);
                self.shared
                    .metrics
                    .overloaded_total
                    .fetch_add(1, Ordering::Relaxed);
                Err((
                    message,
                    EngineError::Overloaded {
                        queue: "command queue",
                        depth_max: self.queue_depth_max,
                    },
                ))
            }
            Err(TrySendError::Disconnected(message)) => {
                self.shared
                    .metrics
                    .queue_depth
                    .fetch_sub(1, Ordering::Relaxed);
                Err((
                    message,
                    EngineError::Unavailable("shard is shutting down".into()),
                ))
            }
        }
    }

    /// Queues a command; `reply` runs once its outcome is durable (or it fails). A full queue
    /// calls `reply` at once with `Overloaded`.
    pub fn submit(&self, command: M::Command, request: Option<RequestKey>, reply: ReplyFn<M>) {
        if let Err((message, error)) = self.send(Message::Command {
            command,
            request,
            reply,
        }) && let Message::Command { reply, .. } = message
        {
            reply(Err(error));
        }
    }

    /// Runs `read` on the sequencer against the state; `reply` gets its result once every
    /// record that state includes is durable (no dirty reads). A full queue or a stopped shard
    /// calls `reply` at once with the error.
    pub fn read<T: Send + 'static>(
        &self,
        read: impl FnOnce(&M, Lsn) -> T + Send + 'static,
        reply: impl FnOnce(Result<T, EngineError<M::Error>>) + Send + 'static,
    ) {
        let slot = Arc::new(Mutex::new(Some(reply)));
        let take = |slot: &Mutex<Option<_>>| {
            slot.lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .take()
        };
        let run_slot = Arc::clone(&slot);
        let read: ReadFn<M> = Box::new(move |machine, lsn| {
            let value = read(machine, lsn);
            Box::new(move |durable: Result<(), String>| {
                if let Some(reply) = take(&run_slot) {
                    reply(durable.map(|()| value).map_err(EngineError::Unavailable));
                }
            })
        });
        if let Err((_, error)) = self.send(Message::Read { read })
            && let Some(reply) = take(&slot)
        {
            reply(Err(error));
        }
    }

    /// Like [`Shard::read`], waiting for the answer on this thread.
    ///
    /// # Errors
    /// `Overloaded` or `Unavailable`.
    pub fn read_blocking<T: Send + 'static>(
        &self,
        read: impl FnOnce(&M, Lsn) -> T + Send + 'static,
    ) -> Result<T, EngineError<M::Error>> {
        let (sender, receiver) = std::sync::mpsc::sync_channel(1);
        self.read(read, move |result| drop(sender.send(result)));
        receiver
            .recv()
            .unwrap_or_else(|_| Err(EngineError::Unavailable("shard stopped".into())))
    }

    /// Submits a command and waits for its outcome on this thread.
    pub fn execute(&self, command: M::Command, request: Option<RequestKey>) -> Outcome<M> {
        let (sender, receiver) = std::sync::mpsc::sync_channel(1);
        self.submit(
            command,
            request,
            Box::new(move |outcome| drop(sender.send(outcome))),
        );
        receiver
            .recv()
            .unwrap_or_else(|_| Err(EngineError::Unavailable("shard stopped".into())))
    }

    /// Takes a snapshot now and waits until it is written.
    ///
    /// # Errors
    /// A description of the failure.
    pub fn snapshot_now(&self) -> Result<SnapshotInfo, String> {
        let (sender, receiver) = std::sync::mpsc::sync_channel(1);
        let reply: SnapshotReply = Box::new(move |result| drop(sender.send(result)));
        self.send(Message::Snapshot { reply })
            .map_err(|(_, error)| error.to_string())?;
        receiver
            .recv()
            .map_err(|_| "shard stopped before the snapshot was written".to_string())?
    }

    /// The LSN and hash of the whole state (machine and request table), answered once durable.
    ///
    /// # Errors
    /// `Overloaded` or `Unavailable`.
    pub fn state_hash(&self) -> Result<(Lsn, [u8; 32]), EngineError<M::Error>> {
        let (sender, receiver) = std::sync::mpsc::sync_channel(1);
        let reply: HashReply = Box::new(move |result| drop(sender.send(result)));
        self.send(Message::Hash { reply })
            .map_err(|(_, error)| error)?;
        receiver
            .recv()
            .map_err(|_| EngineError::Unavailable("shard stopped".into()))?
            .map_err(EngineError::Unavailable)
    }

    /// The last durable LSN.
    #[must_use]
    pub fn durable_lsn(&self) -> Lsn {
        self.shared.durable.get()
    }

    /// Why the shard stopped accepting work, if it did.
    #[must_use]
    pub fn stopped(&self) -> Option<String> {
        self.shared.stopped()
    }

    /// The shard's counters.
    #[must_use]
    pub fn metrics(&self) -> &ShardMetrics {
        &self.shared.metrics
    }

    /// Follows the shard's log from `from_lsn` (catch-up from the files, then live).
    #[must_use]
    pub fn subscribe(&self, from_lsn: Lsn) -> Subscription {
        Subscription::new(
            Arc::clone(&self.shared.storage),
            self.shared.paths.log_dir.clone(),
            from_lsn,
            self.shared.durable.subscribe(),
            self.shared.live.subscribe(),
            self.shared.subscription_buffer_records,
        )
    }

    /// Stops accepting commands, finishes what is queued, syncs and joins the threads.
    pub fn shutdown(mut self) {
        self.stop_threads();
    }

    fn stop_threads(&mut self) {
        self.sender = None;
        if let Some(sequencer) = self.sequencer.take() {
            let _ = sequencer.join();
        }
        if let Some(snapshotter) = self.snapshotter.take() {
            let _ = snapshotter.join();
        }
    }
}

impl<M: StateMachine> Drop for Shard<M> {
    fn drop(&mut self) {
        self.stop_threads();
    }
}

struct SnapshotJob<M: StateMachine> {
    frozen: FrozenCore<M>,
    pause_us: u64,
    reply: Option<SnapshotReply>,
}

struct Sequencer<M: StateMachine> {
    core: Core<M>,
    config: ShardConfig,
    shared: Arc<Shared>,
    commit: GroupCommit,
    in_flight: Arc<InFlight>,
    snapshots: SyncSender<SnapshotJob<M>>,
    records_since_snapshot: u64,
}

/// A batch being built: records to write and releases to run once they are durable.
struct Batch {
    entries: Vec<OwnedEntry>,
    releases: Vec<Release>,
    live: Vec<LiveRecord>,
    payload_bytes: usize,
}

impl Batch {
    fn new() -> Batch {
        Batch {
            entries: Vec::new(),
            releases: Vec::new(),
            live: Vec::new(),
            payload_bytes: 0,
        }
    }

    /// Whether one more record of `payload_len` bytes stays within one group commit's limits.
    fn has_room(&self, payload_len: usize) -> bool {
        self.entries.len() < COMMIT_BATCH_RECORDS_MAX
            && self.payload_bytes + payload_len <= COMMIT_BATCH_BYTES_MAX
    }
}

impl<M: StateMachine> Sequencer<M> {
    fn run(mut self, receiver: &Receiver<Message<M>>) {
        let _guard = PanicGuard(Arc::clone(&self.shared));
        let tick = Duration::from_millis(cairn_types::limits::SEQUENCER_TICK_INTERVAL_MS);
        loop {
            let first = match receiver.recv_timeout(tick) {
                Ok(message) => Some(message),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => break,
            };
            let now_ms = self.config.clock.now_ms().max(self.core.at_ms);
            let mut batch = Batch::new();
            let mut snapshot_replies = Vec::new();
            if self.shared.stopped().is_none() {
                self.timers(now_ms, &mut batch);
            }
            let mut next = first;
            let mut taken = 0;
            while let Some(message) = next.take() {
                self.shared
                    .metrics
                    .queue_depth
                    .fetch_sub(1, Ordering::Relaxed);
                match message {
                    Message::Command {
                        command,
                        request,
                        reply,
                    } => {
                        self.command(now_ms, command, request, reply, &mut batch);
                    }
                    Message::Read { read } => {
                        let release = read(&self.core.machine, self.core.lsn);
                        match self.shared.stopped() {
                            Some(reason) => release(Err(reason)),
                            None => batch.releases.push(release),
                        }
                    }
                    Message::Snapshot { reply } => snapshot_replies.push(reply),
                    Message::Hash { reply } => {
                        let lsn = self.core.lsn;
                        let hash = self.core.state_hash();
                        batch
                            .releases
                            .push(Box::new(move |durable: Result<(), String>| {
                                reply(durable.and(hash).map(|hash| (lsn, hash)));
                            }));
                    }
                }
                taken += 1;
                if taken < self.config.batch_commands_max {
                    next = receiver.try_recv().ok();
                }
            }
            self.submit(batch);
            self.maybe_snapshot(snapshot_replies);
        }
        self.finish();
    }

    fn finish(self) {
        // Wait for every batch in flight, then sync and close the log.
        self.in_flight.acquire(1);
        self.in_flight.release();
        if let Err(error) = self.commit.shutdown() {
            tracing::error!(shard = self.shared.shard.0, %error, "log shutdown failed");
        }
    }

    /// Stamps the next record and applies `envelope` to the state, then queues it for writing.
    /// Refuses (without applying) an envelope too large for one record.
    fn append(
        &mut self,
        now_ms: u64,
        envelope: &EnvelopeOf<M>,
        batch: &mut Batch,
    ) -> Result<Lsn, EngineError<M::Error>> {
        let payload = envelope::encode(envelope).map_err(EngineError::Unavailable)?;
        if payload.len() > RECORD_PAYLOAD_BYTES_MAX as usize {
            return Err(EngineError::TooLarge(format!(
                "the request's events take {} bytes; one record holds at most {RECORD_PAYLOAD_BYTES_MAX}",
                payload.len()
            )));
        }
        if !batch.has_room(payload.len()) {
            // Close this batch (its records and replies go together) and start another.
            let full = std::mem::replace(batch, Batch::new());
            self.submit(full);
        }
        let stamp = Stamp {
            lsn: self.core.lsn.next(),
            at_ms: now_ms,
        };
        self.core
            .apply_envelope(envelope, stamp)
            .map_err(EngineError::Unavailable)?;
        let record_type = envelope.record_type();
        // Always kept: a subscriber may join between now and durability.
        batch.live.push(LiveRecord::new(
            stamp.lsn,
            now_ms,
            record_type,
            payload.clone(),
        ));
        batch.payload_bytes += payload.len();
        batch.entries.push(OwnedEntry {
            timestamp_ms: now_ms,
            record_type,
            payload,
        });
        self.records_since_snapshot += 1;
        Ok(stamp.lsn)
    }

    /// Turns due timers into records: up to `TIMER_RECORDS_PER_BATCH_MAX` records of
    /// `timers_per_batch_max` events each, so a mass expiry drains quickly but boundedly.
    fn timers(&mut self, now_ms: u64, batch: &mut Batch) {
        for _ in 0..TIMER_RECORDS_PER_BATCH_MAX {
            let events = self
                .core
                .machine
                .due(now_ms, self.config.timers_per_batch_max);
            if events.is_empty() {
                return;
            }
            if let Err(error) = self.append(now_ms, &Envelope::Timers { events }, batch) {
                tracing::error!(
                    shard = self.shared.shard.0,
                    ?error,
                    "timer events could not be logged"
                );
                return;
            }
        }
    }

    fn command(
        &mut self,
        now_ms: u64,
        command: M::Command,
        request: Option<RequestKey>,
        reply: ReplyFn<M>,
        batch: &mut Batch,
    ) {
        if let Some(reason) = self.shared.stopped() {
            reply(Err(EngineError::Unavailable(reason)));
            return;
        }
        self.shared
            .metrics
            .commands_total
            .fetch_add(1, Ordering::Relaxed);
        let outcome = self.decide(now_ms, &command, request, batch);
        if matches!(outcome, Err(EngineError::Refused(_))) {
            self.shared
                .metrics
                .refusals_total
                .fetch_add(1, Ordering::Relaxed);
        }
        batch
            .releases
            .push(Box::new(move |durable: Result<(), String>| match durable {
                Ok(()) => reply(outcome),
                Err(reason) => reply(Err(EngineError::Unavailable(reason))),
            }));
    }

    fn decide(
        &mut self,
        now_ms: u64,
        command: &M::Command,
        request: Option<RequestKey>,
        batch: &mut Batch,
    ) -> Outcome<M> {
        if let Some(key) = &request {
            match self.core.requests.lookup(key) {
                Lookup::New => {}
                Lookup::Reused => return Err(EngineError::RequestIdReused),
                Lookup::Repeat(found) => return repeated::<M>(found.lsn, &found.outcome),
            }
        }
        match self.core.machine.decide(command, now_ms) {
            // Nothing to log (a repeated protocol message): answer from the state as it is.
            Ok(decision) if decision.events.is_empty() && request.is_none() => Ok(Committed {
                lsn: self.core.lsn,
                reply: decision.reply,
                repeated: false,
            }),
            Ok(decision) => {
                let reply = decision.reply.clone();
                let envelope = Envelope::Command {
                    request,
                    events: decision.events,
                    reply: decision.reply,
                };
                let lsn = self.append(now_ms, &envelope, batch)?;
                Ok(Committed {
                    lsn,
                    reply,
                    repeated: false,
                })
            }
            Err(error) => {
                if let Some(request) = request.filter(|_| !M::is_bad_input(&error)) {
                    let envelope = Envelope::Refusal {
                        request,
                        error: error.clone(),
                    };
                    self.append(now_ms, &envelope, batch)?;
                }
                Err(EngineError::Refused(error))
            }
        }
    }

    fn submit(&mut self, batch: Batch) {
        let Batch {
            entries,
            releases,
            live,
            ..
        } = batch;
        if entries.is_empty() && releases.is_empty() {
            return;
        }
        self.shared.metrics.batches.fetch_add(1, Ordering::Relaxed);
        self.shared
            .metrics
            .batch_records
            .observe_us(entries.len() as u64);
        self.shared
            .metrics
            .applied_lsn
            .store(self.core.lsn.0, Ordering::Relaxed);
        self.in_flight.acquire(self.config.in_flight_batches_max);
        // The releases live in a slot so that they are answered whether the log runs the
        // completion or refuses the submission outright.
        let pending = Arc::new(Mutex::new(Some((releases, live))));
        let shared = Arc::clone(&self.shared);
        let in_flight = Arc::clone(&self.in_flight);
        let completion_pending = Arc::clone(&pending);
        let done = Box::new(move |result: Result<Lsn, LogError>| {
            let result = match result {
                Ok(lsn) => {
                    shared.durable.advance(lsn);
                    Ok(())
                }
                Err(error) => {
                    shared.stop(&error.to_string());
                    Err(error.to_string())
                }
            };
            release_all(&shared, &completion_pending, &result);
            in_flight.release();
        });
        let expected_first = Lsn(self.core.lsn.0 + 1 - entries.len() as u64);
        match self.commit.submit(entries, done) {
            Ok(range) => assert_eq!(
                range.first, expected_first,
                "sequencer and log disagree on LSNs"
            ),
            Err(error) => {
                // Not queued, so memory is ahead of the log: stop, and tell this batch's callers.
                let reason = error.to_string();
                self.shared.stop(&reason);
                release_all(&self.shared, &pending, &Err(reason));
                self.in_flight.release();
            }
        }
    }

    fn maybe_snapshot(&mut self, replies: Vec<SnapshotReply>) {
        let every = self.config.snapshot_every_records;
        let due = every > 0 && self.records_since_snapshot >= every;
        // An automatic snapshot waits while the previous one is still being written.
        let busy = self.shared.snapshot_busy.load(Ordering::Acquire);
        if replies.is_empty() && (!due || busy) {
            return;
        }
        let started = Instant::now();
        let frozen = self.core.freeze();
        let pause_us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
        self.shared.metrics.snapshot_pause.observe_us(pause_us);
        self.records_since_snapshot = 0;
        self.shared.snapshot_busy.store(true, Ordering::Release);
        let reply: Option<SnapshotReply> = if replies.is_empty() {
            None
        } else {
            Some(Box::new(move |result: Result<SnapshotInfo, String>| {
                for reply in replies {
                    reply(result.clone());
                }
            }))
        };
        if let Err(error) = self.snapshots.send(SnapshotJob {
            frozen,
            pause_us,
            reply,
        }) && let Some(reply) = error.0.reply
        {
            reply(Err("snapshotter stopped".into()));
        }
    }
}

/// Marks the shard stopped if the sequencer thread unwinds (a bug in a state machine or a read):
/// readiness then says so, and callers get `Unavailable` instead of a silent dead shard.
struct PanicGuard(Arc<Shared>);

impl Drop for PanicGuard {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0
                .stop("the sequencer thread panicked (a bug); restart to recover from the log");
        }
    }
}

type PendingReleases = Mutex<Option<(Vec<Release>, Vec<LiveRecord>)>>;

/// Answers a batch's callers once (and feeds live subscribers on success).
fn release_all(shared: &Shared, pending: &PendingReleases, result: &Result<(), String>) {
    let taken = pending
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .take();
    let Some((releases, live)) = taken else {
        return;
    };
    if result.is_ok() {
        for record in live {
            let _ = shared.live.send(record);
        }
    }
    for release in releases {
        release(result.clone());
    }
}

fn repeated<M: StateMachine>(lsn: Lsn, outcome: &StoredOutcome) -> Outcome<M> {
    match outcome {
        StoredOutcome::Accepted(bytes) => match envelope::decode::<M::Reply>(bytes) {
            Ok(reply) => Ok(Committed {
                lsn,
                reply,
                repeated: true,
            }),
            Err(reason) => Err(EngineError::Unavailable(reason)),
        },
        StoredOutcome::Refused(bytes) => match envelope::decode::<M::Error>(bytes) {
            Ok(error) => Err(EngineError::Refused(error)),
            Err(reason) => Err(EngineError::Unavailable(reason)),
        },
    }
}

fn snapshotter_loop<M: StateMachine>(
    shared: &Shared,
    jobs: &Receiver<SnapshotJob<M>>,
    kept: usize,
) {
    while let Ok(job) = jobs.recv() {
        let result = write_job(shared, &job, kept);
        match &result {
            Ok(info) => {
                shared
                    .metrics
                    .snapshots_written
                    .fetch_add(1, Ordering::Relaxed);
                shared
                    .metrics
                    .snapshot_lsn
                    .store(info.lsn.0, Ordering::Relaxed);
                tracing::info!(
                    shard = shared.shard.0,
                    lsn = info.lsn.0,
                    bytes = info.bytes,
                    pause_us = info.pause_us,
                    "snapshot written"
                );
            }
            Err(reason) => tracing::error!(shard = shared.shard.0, %reason, "snapshot failed"),
        }
        shared.snapshot_busy.store(false, Ordering::Release);
        if let Some(reply) = job.reply {
            reply(result);
        }
    }
}

fn write_job<M: StateMachine>(
    shared: &Shared,
    job: &SnapshotJob<M>,
    kept: usize,
) -> Result<SnapshotInfo, String> {
    let lsn = job.frozen.lsn;
    // A snapshot may only describe records on disk: in async mode an acknowledged record may
    // not be yet, so wait for the writer's synced LSN, not the acknowledged one.
    let synced = || Lsn(shared.metrics.log.durable_lsn.load(Ordering::Acquire));
    while synced() < lsn {
        // Woken by acknowledgements in sync mode; in async mode the sync interval decides.
        let _ = shared.durable.wait_for(lsn, Duration::from_millis(10));
        if let Some(reason) = shared.stopped() {
            return Err(format!(
                "shard stopped before LSN {lsn} was durable: {reason}"
            ));
        }
    }
    let chain = chain_at(shared, lsn)?;
    let body = job.frozen.encode()?;
    let state_hash = hash_state(&body);
    let meta = SnapshotMeta {
        lsn,
        timestamp_ms: job.frozen.at_ms,
        chain,
        state_hash,
    };
    let (path, bytes) = write_snapshot(
        shared.storage.as_ref(),
        &shared.paths.snapshot_dir,
        &meta,
        &body,
    )
    .map_err(|e| e.to_string())?;
    prune_snapshots(shared.storage.as_ref(), &shared.paths.snapshot_dir, kept)
        .map_err(|e| e.to_string())?;
    Ok(SnapshotInfo {
        lsn,
        path,
        bytes,
        state_hash,
        pause_us: job.pause_us,
    })
}

/// The chain hash of the record at `lsn` (genesis for LSN 0).
fn chain_at(shared: &Shared, lsn: Lsn) -> Result<cairn_log::ChainHash, String> {
    if lsn == Lsn::ZERO {
        return Ok(cairn_log::GENESIS_CHAIN);
    }
    let mut reader = LogReader::new(Arc::clone(&shared.storage), &shared.paths.log_dir, lsn);
    match reader.next(lsn).map_err(|e| e.to_string())? {
        Some(record) if record.lsn == lsn => Ok(record.chain),
        _ => Err(format!("record {lsn} not found in the log")),
    }
}
