//! N shards over one data directory, with keys routed by a stable hash.
//!
//! ```text
//! DIR/cairn.json                  format version and shard count, fixed at creation
//! DIR/LOCK                        held (flock) by the one process that owns DIR
//! DIR/shards/000/log/*.seg        shard 0's log segments
//! DIR/shards/000/snapshots/*.snap shard 0's snapshots
//! ```

use crate::clock::Clock;
use crate::config::ShardConfig;
use crate::error::OpenError;
use crate::homes::{ClaimedElsewhere, RequestHomes};
use crate::machine::StateMachine;
use crate::shard::{Recovery, Shard};
use cairn_log::storage::{FileStorage, Storage, read_file, write_file_atomic};
use cairn_types::limits::SHARD_COUNT_MAX;
use cairn_types::{ShardId, shard_for_key};
use serde::{Deserialize, Serialize};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

const META_FILE: &str = "cairn.json";
const LOCK_FILE: &str = "LOCK";
const DATA_FORMAT_VERSION: u32 = 1;

/// What a data directory records about itself at creation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataDirMeta {
    /// Layout version.
    pub format_version: u32,
    /// Number of shards, fixed for the directory's life.
    pub shard_count: u16,
}

/// How to open an engine.
#[derive(Clone)]
pub struct EngineConfig {
    /// The data directory.
    pub data_dir: PathBuf,
    /// Shards for a new directory; for an existing one it must match (or be `None`).
    pub shard_count: Option<u16>,
    /// Per-shard settings.
    pub shard: ShardConfig,
}

/// The directory of shard `shard` under `data_dir`.
#[must_use]
pub fn shard_dir(data_dir: &Path, shard: ShardId) -> PathBuf {
    data_dir.join("shards").join(format!("{:03}", shard.0))
}

/// Reads a data directory's metadata; `None` for a directory never initialised.
///
/// # Errors
/// I/O errors or a malformed file.
pub fn read_meta(storage: &dyn Storage, data_dir: &Path) -> Result<Option<DataDirMeta>, OpenError> {
    let path = data_dir.join(META_FILE);
    if !storage.exists(&path) {
        return Ok(None);
    }
    let bytes = read_file(storage, &path)
        .map_err(|e| OpenError::DataDir(format!("cannot read {}: {e}", path.display())))?;
    let meta: DataDirMeta = serde_json::from_slice(&bytes)
        .map_err(|e| OpenError::DataDir(format!("{} is malformed: {e}", path.display())))?;
    if meta.format_version != DATA_FORMAT_VERSION {
        return Err(OpenError::DataDir(format!(
            "{} has format version {}; this build reads version {DATA_FORMAT_VERSION}",
            path.display(),
            meta.format_version
        )));
    }
    Ok(Some(meta))
}

/// Checks the requested shard count against the directory, creating the metadata if new.
fn settle_meta(
    storage: &dyn Storage,
    data_dir: &Path,
    requested: Option<u16>,
) -> Result<DataDirMeta, OpenError> {
    if let Some(count) = requested
        && (count == 0 || count > SHARD_COUNT_MAX)
    {
        return Err(OpenError::Config(format!(
            "shard count must be in 1..={SHARD_COUNT_MAX}, got {count}"
        )));
    }
    if let Some(meta) = read_meta(storage, data_dir)? {
        if let Some(count) = requested.filter(|&count| count != meta.shard_count) {
            return Err(OpenError::DataDir(format!(
                "{} was created with {} shards; it cannot be opened with {count} (resharding is a separate, explicit tool)",
                data_dir.display(),
                meta.shard_count
            )));
        }
        return Ok(meta);
    }
    let meta = DataDirMeta {
        format_version: DATA_FORMAT_VERSION,
        shard_count: requested.unwrap_or(1),
    };
    let bytes = serde_json::to_vec_pretty(&meta).map_err(|e| OpenError::DataDir(e.to_string()))?;
    storage
        .create_dir_all(data_dir)
        .and_then(|()| write_file_atomic(storage, &data_dir.join(META_FILE), &bytes))
        .map_err(|e| {
            OpenError::DataDir(format!("cannot initialise {}: {e}", data_dir.display()))
        })?;
    Ok(meta)
}

/// Takes the data directory's lock so that no second process opens it.
///
/// # Errors
/// The directory is in use, or the lock file cannot be created.
pub fn lock_data_dir(data_dir: &Path) -> Result<File, OpenError> {
    std::fs::create_dir_all(data_dir)
        .map_err(|e| OpenError::DataDir(format!("cannot create {}: {e}", data_dir.display())))?;
    let path = data_dir.join(LOCK_FILE);
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| OpenError::DataDir(format!("cannot open {}: {e}", path.display())))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(OpenError::DataDir(format!(
            "{} is in use by another Cairn process (stop it first)",
            data_dir.display()
        ))),
        Err(std::fs::TryLockError::Error(e)) => Err(OpenError::DataDir(format!(
            "cannot lock {}: {e}",
            path.display()
        ))),
    }
}

/// A running engine: its shards and its data directory.
pub struct Engine<M: StateMachine> {
    shards: Vec<Shard<M>>,
    /// Which shard each recent request id belongs to (idempotency across the data directory).
    homes: RequestHomes,
    /// The shards' clock, which also ages the index.
    clock: Arc<dyn Clock>,
    data_dir: PathBuf,
    /// When this process opened the directory: transactions begun before have no orchestrator.
    opened_at_ms: u64,
    /// Asked at every fault point of the transaction orchestrator (tests).
    pub(crate) fault_hook: std::sync::RwLock<Option<crate::txn_run::FaultHook>>,
    _lock: Option<File>,
}

impl<M: StateMachine + Default> Engine<M> {
    /// Opens the data directory on the real disk, locking it, recovering every shard.
    ///
    /// # Errors
    /// As [`Engine::open_on`], and `DataDir` when another process holds the directory.
    pub fn open(config: EngineConfig) -> Result<(Engine<M>, Vec<Recovery>), OpenError> {
        let lock = lock_data_dir(&config.data_dir)?;
        let (mut engine, recoveries) = Self::open_on(Arc::new(FileStorage), config)?;
        engine._lock = Some(lock);
        Ok((engine, recoveries))
    }

    /// Opens the data directory on any storage (no lock): for tests and the simulator.
    ///
    /// # Errors
    /// Bad configuration, a shard-count mismatch, corruption, I/O errors.
    pub fn open_on(
        storage: Arc<dyn Storage>,
        config: EngineConfig,
    ) -> Result<(Engine<M>, Vec<Recovery>), OpenError> {
        let meta = settle_meta(storage.as_ref(), &config.data_dir, config.shard_count)?;
        let mut shards = Vec::with_capacity(usize::from(meta.shard_count));
        let mut recoveries = Vec::with_capacity(usize::from(meta.shard_count));
        let dedup = config.shard.dedup;
        let homes = RequestHomes::new(
            dedup
                .entries_max
                .saturating_mul(usize::from(meta.shard_count)),
            dedup.retention_ms,
        );
        for index in 0..meta.shard_count {
            let id = ShardId(index);
            let dir = shard_dir(&config.data_dir, id);
            let (shard, recovery, request_ids) =
                Shard::open_with_request_ids(Arc::clone(&storage), id, &dir, config.shard.clone())?;
            for (request_id, at_ms) in request_ids {
                homes.remembered(&request_id, id, at_ms);
            }
            shards.push(shard);
            recoveries.push(recovery);
        }
        let opened_at_ms = config.shard.clock.now_ms();
        Ok((
            Engine {
                shards,
                homes,
                clock: Arc::clone(&config.shard.clock),
                data_dir: config.data_dir,
                opened_at_ms,
                fault_hook: std::sync::RwLock::new(None),
                _lock: None,
            },
            recoveries,
        ))
    }
}

impl<M: StateMachine> Engine<M> {
    /// The shards, by id.
    #[must_use]
    pub fn shards(&self) -> &[Shard<M>] {
        &self.shards
    }

    /// Number of shards.
    #[must_use]
    pub fn shard_count(&self) -> u16 {
        u16::try_from(self.shards.len()).unwrap_or(u16::MAX)
    }

    /// A shard by id.
    #[must_use]
    pub fn shard(&self, id: ShardId) -> Option<&Shard<M>> {
        self.shards.get(usize::from(id.0))
    }

    /// The shard that owns `key`.
    #[must_use]
    pub fn shard_for(&self, key: &[u8]) -> &Shard<M> {
        let id = shard_for_key(key, self.shard_count());
        &self.shards[usize::from(id.0)]
    }

    /// Claims `request_id` for a request routed to `shard`. Every
    /// request with an id must claim it before it is submitted and [`Engine::settle_request`] it
    /// after: a shard only sees its own ids, and this makes their scope the whole data directory.
    ///
    /// # Errors
    /// The id belongs to another shard: the request reuses it with a different body (a body that
    /// routes elsewhere differs), which is `request_id_reused`.
    pub fn claim_request(&self, request_id: &str, shard: ShardId) -> Result<(), ClaimedElsewhere> {
        self.homes.claim(request_id, shard, self.clock.now_ms())
    }

    /// Settles a claim: `decided` says whether the shard reached (or had) a decision on it,
    /// which it remembers; ids only ever refused before a decision are forgotten.
    pub fn settle_request(&self, request_id: &str, decided: bool) {
        self.homes.settle(request_id, decided);
    }

    /// The shards' clock.
    #[must_use]
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    /// When this process opened the data directory (the clock's milliseconds).
    #[must_use]
    pub fn opened_at_ms(&self) -> u64 {
        self.opened_at_ms
    }

    /// The data directory.
    #[must_use]
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// Shards that stopped after a storage failure, with the reason.
    #[must_use]
    pub fn stopped(&self) -> Vec<(ShardId, String)> {
        self.shards
            .iter()
            .filter_map(|s| s.stopped().map(|reason| (s.id(), reason)))
            .collect()
    }

    /// Stops every shard: finishes queued work, syncs, joins the threads.
    pub fn shutdown(self) {
        for shard in self.shards {
            shard.shutdown();
        }
    }
}
