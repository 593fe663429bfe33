//! A storage that injects faults into another: failed writes and syncs, torn writes, bit flips.
//!
//! Operations are counted from 1 across all files of the storage, so a test can say "the 7th
//! write fails" and replay the same failure from a seed.

use super::{OpenMode, Storage, StorageFile};
use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Which operations fail, and how. Counts start at 1; `None` never fires.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FaultPlan {
    /// The Nth `write_at` fails with an I/O error and writes nothing.
    pub fail_write_at: Option<u64>,
    /// The Nth `write_at` writes only its first `torn_write_bytes` bytes, then fails.
    pub torn_write_at: Option<u64>,
    /// How many bytes a torn write keeps.
    pub torn_write_bytes: usize,
    /// The Nth `write_at` silently flips one bit of what it writes (at `flip_byte`, modulo the
    /// write's length).
    pub flip_bit_on_write_at: Option<u64>,
    /// Which byte of that write is flipped.
    pub flip_byte: usize,
    /// The Nth `sync_data` fails (and every one after it, as a dying disk would).
    pub fail_sync_from: Option<u64>,
}

struct Shared {
    plan: Mutex<FaultPlan>,
    writes: AtomicU64,
    syncs: AtomicU64,
}

/// Wraps a storage and injects the faults of a [`FaultPlan`].
#[derive(Clone)]
pub struct FaultStorage {
    inner: Arc<dyn Storage>,
    shared: Arc<Shared>,
}

impl FaultStorage {
    /// Wraps `inner` with no faults planned.
    #[must_use]
    pub fn new(inner: Arc<dyn Storage>) -> Self {
        Self {
            inner,
            shared: Arc::new(Shared {
                plan: Mutex::new(FaultPlan::default()),
                writes: AtomicU64::new(0),
                syncs: AtomicU64::new(0),
            }),
        }
    }

    /// Replaces the plan and restarts the operation counts.
    pub fn set_plan(&self, plan: FaultPlan) {
        *self
            .shared
            .plan
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = plan;
        self.shared.writes.store(0, Ordering::SeqCst);
        self.shared.syncs.store(0, Ordering::SeqCst);
    }

    /// Writes seen since the plan was set.
    #[must_use]
    pub fn writes(&self) -> u64 {
        self.shared.writes.load(Ordering::SeqCst)
    }

    /// Syncs seen since the plan was set.
    #[must_use]
    pub fn syncs(&self) -> u64 {
        self.shared.syncs.load(Ordering::SeqCst)
    }

    fn plan(&self) -> FaultPlan {
        self.shared
            .plan
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

fn injected(what: &str) -> io::Error {
    io::Error::other(format!("injected fault: {what}"))
}

impl Storage for FaultStorage {
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        self.inner.create_dir_all(path)
    }

    fn list_files(&self, path: &Path) -> io::Result<Vec<String>> {
        self.inner.list_files(path)
    }

    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Arc<dyn StorageFile>> {
        let inner = self.inner.open(path, mode)?;
        Ok(Arc::new(FaultFile {
            inner,
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

struct FaultFile {
    inner: Arc<dyn StorageFile>,
    storage: FaultStorage,
}

impl StorageFile for FaultFile {
    fn len(&self) -> io::Result<u64> {
        self.inner.len()
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
        self.inner.read_at(offset, buf)
    }

    fn write_at(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        let count = self.storage.shared.writes.fetch_add(1, Ordering::SeqCst) + 1;
        let plan = self.storage.plan();
        if plan.fail_write_at == Some(count) {
            return Err(injected("write failed"));
        }
        if plan.torn_write_at == Some(count) {
            let kept = plan.torn_write_bytes.min(data.len());
            self.inner.write_at(offset, &data[..kept])?;
            return Err(injected("torn write"));
        }
        if plan.flip_bit_on_write_at == Some(count) && !data.is_empty() {
            let mut damaged = data.to_vec();
            let index = plan.flip_byte % damaged.len();
            damaged[index] ^= 0x01;
            return self.inner.write_at(offset, &damaged);
        }
        self.inner.write_at(offset, data)
    }

    fn sync_data(&self) -> io::Result<()> {
        let count = self.storage.shared.syncs.fetch_add(1, Ordering::SeqCst) + 1;
        if self
            .storage
            .plan()
            .fail_sync_from
            .is_some_and(|from| count >= from)
        {
            return Err(injected("fdatasync failed"));
        }
        self.inner.sync_data()
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.inner.set_len(len)
    }
}
