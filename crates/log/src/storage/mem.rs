//! In-memory storage that keeps "written" and "durable" apart, for crash tests.
//!
//! A file's bytes become durable at `sync_data`; a file's existence (creation, rename, removal)
//! becomes durable at `sync_dir` of its directory. [`MemStorage::crash`] throws away everything
//! that was not durable, as a power cut would, optionally keeping a torn prefix of unsynced bytes.

use super::{OpenMode, Storage, StorageFile};
use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

/// What survives of unsynced bytes at a simulated crash.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CrashMode {
    /// Nothing that was not synced survives.
    DropUnsynced,
    /// A prefix of each file's unsynced appended bytes survives (its length chosen by the seed),
    /// and the last surviving byte may be garbage: a torn write.
    Torn {
        /// Chooses the prefix lengths.
        seed: u64,
    },
}

#[derive(Default)]
struct FileData {
    written: Vec<u8>,
    durable: Vec<u8>,
    /// Lowest offset changed since the last sync: `written[..dirty_from] == durable[..dirty_from]`.
    dirty_from: usize,
}

type FileCell = Arc<Mutex<FileData>>;

#[derive(Default)]
struct State {
    /// The namespace as the running process sees it.
    live: BTreeMap<PathBuf, FileCell>,
    /// The namespace as it would be after a crash.
    durable: BTreeMap<PathBuf, FileCell>,
    dirs: Vec<PathBuf>,
}

/// Storage in memory. Cloning shares the same files.
#[derive(Clone, Default)]
pub struct MemStorage {
    state: Arc<Mutex<State>>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic in a test thread must not hide the state from the checker that follows.
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn not_found(path: &Path) -> io::Error {
    io::Error::new(
        io::ErrorKind::NotFound,
        format!("{} not found", path.display()),
    )
}

impl MemStorage {
    /// An empty storage.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Simulates a power cut: every file returns to its durable bytes and the namespace to its
    /// durable entries.
    pub fn crash(&self, mode: CrashMode) {
        let mut state = lock(&self.state);
        let mut rng = match mode {
            CrashMode::DropUnsynced => None,
            CrashMode::Torn { seed } => Some(seed | 1),
        };
        let mut survivors = BTreeMap::new();
        for (path, cell) in &state.durable {
            let mut data = lock(cell);
            let mut kept = data.durable.clone();
            if let Some(x) = rng.as_mut() {
                let extends = data.written.len() > kept.len() && data.dirty_from >= kept.len();
                if extends {
                    let extra = data.written.len() - kept.len();
                    let keep = usize::try_from(xorshift(x) % (extra as u64 + 1)).unwrap_or(0);
                    kept.extend_from_slice(
                        &data.written[data.durable.len()..data.durable.len() + keep],
                    );
                    if keep > 0 && xorshift(x).is_multiple_of(2) {
                        let last = kept.len() - 1;
                        kept[last] ^= 0x5a;
                    }
                }
            }
            data.dirty_from = kept.len();
            data.written = kept.clone();
            data.durable = kept;
            survivors.insert(path.clone(), Arc::clone(cell));
        }
        state.live = survivors.clone();
        state.durable = survivors;
    }

    /// Flips one bit of a file, in both its written and durable bytes: damage at rest.
    ///
    /// # Errors
    /// `NotFound` for an unknown file, `InvalidInput` for an offset past its end.
    pub fn flip_bit(&self, path: &Path, offset: u64, bit: u8) -> io::Result<()> {
        let state = lock(&self.state);
        let cell = state.live.get(path).ok_or_else(|| not_found(path))?;
        let mut data = lock(cell);
        let index = usize::try_from(offset).map_err(|_| io::ErrorKind::InvalidInput)?;
        let FileData {
            written, durable, ..
        } = &mut *data;
        for bytes in [written, durable] {
            if let Some(byte) = bytes.get_mut(index) {
                *byte ^= 1 << (bit % 8);
            }
        }
        if index >= data.written.len() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "offset past end",
            ));
        }
        Ok(())
    }

    /// Total bytes written and not yet durable, over all files.
    #[must_use]
    pub fn unsynced_bytes(&self) -> u64 {
        let state = lock(&self.state);
        state
            .live
            .values()
            .map(|cell| {
                let data = lock(cell);
                data.written.len().abs_diff(data.durable.len()) as u64
            })
            .sum()
    }
}

fn xorshift(x: &mut u64) -> u64 {
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    *x
}

struct MemFile {
    cell: FileCell,
    writable: bool,
}

impl Storage for MemStorage {
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        let mut state = lock(&self.state);
        if !state.dirs.iter().any(|dir| dir == path) {
            state.dirs.push(path.to_path_buf());
        }
        Ok(())
    }

    fn list_files(&self, path: &Path) -> io::Result<Vec<String>> {
        let state = lock(&self.state);
        if !state.dirs.iter().any(|dir| dir == path) {
            return Err(not_found(path));
        }
        Ok(state
            .live
            .keys()
            .filter(|file| file.parent() == Some(path))
            .filter_map(|file| {
                file.file_name()
                    .map(|name| name.to_string_lossy().into_owned())
            })
            .collect())
    }

    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Arc<dyn StorageFile>> {
        let mut state = lock(&self.state);
        let cell = match mode {
            OpenMode::CreateNew => {
                if state.live.contains_key(path) {
                    return Err(io::Error::new(io::ErrorKind::AlreadyExists, "file exists"));
                }
                let parent = path.parent().unwrap_or(Path::new(""));
                if !state.dirs.iter().any(|dir| dir == parent) {
                    return Err(not_found(parent));
                }
                let cell = FileCell::default();
                state.live.insert(path.to_path_buf(), Arc::clone(&cell));
                cell
            }
            OpenMode::ReadWrite | OpenMode::Read => {
                Arc::clone(state.live.get(path).ok_or_else(|| not_found(path))?)
            }
        };
        Ok(Arc::new(MemFile {
            cell,
            writable: mode != OpenMode::Read,
        }))
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        let mut state = lock(&self.state);
        state
            .live
            .remove(path)
            .map(drop)
            .ok_or_else(|| not_found(path))
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut state = lock(&self.state);
        let cell = state.live.remove(from).ok_or_else(|| not_found(from))?;
        state.live.insert(to.to_path_buf(), cell);
        Ok(())
    }

    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        let mut state = lock(&self.state);
        let State { live, durable, .. } = &mut *state;
        durable.retain(|file, _| file.parent() != Some(path));
        for (file, cell) in live.iter() {
            if file.parent() == Some(path) {
                durable.insert(file.clone(), Arc::clone(cell));
            }
        }
        Ok(())
    }

    fn exists(&self, path: &Path) -> bool {
        let state = lock(&self.state);
        state.live.contains_key(path) || state.dirs.iter().any(|dir| dir == path)
    }
}

impl StorageFile for MemFile {
    fn len(&self) -> io::Result<u64> {
        Ok(lock(&self.cell).written.len() as u64)
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
        let data = lock(&self.cell);
        let start = usize::try_from(offset).map_err(|_| io::ErrorKind::InvalidInput)?;
        if start >= data.written.len() {
            return Ok(0);
        }
        let count = buf.len().min(data.written.len() - start);
        buf[..count].copy_from_slice(&data.written[start..start + count]);
        Ok(count)
    }

    fn write_at(&self, offset: u64, bytes: &[u8]) -> io::Result<()> {
        if !self.writable {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                "read-only file",
            ));
        }
        let mut data = lock(&self.cell);
        let start = usize::try_from(offset).map_err(|_| io::ErrorKind::InvalidInput)?;
        let end = start + bytes.len();
        if data.written.len() < end {
            data.written.resize(end, 0);
        }
        data.dirty_from = data.dirty_from.min(start);
        data.written[start..end].copy_from_slice(bytes);
        Ok(())
    }

    fn sync_data(&self) -> io::Result<()> {
        let mut data = lock(&self.cell);
        let FileData {
            written,
            durable,
            dirty_from,
        } = &mut *data;
        let from = (*dirty_from).min(durable.len());
        durable.truncate(from);
        durable.extend_from_slice(&written[from.min(written.len())..]);
        durable.truncate(written.len());
        *dirty_from = written.len();
        Ok(())
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        let len = usize::try_from(len).map_err(|_| io::ErrorKind::InvalidInput)?;
        let mut data = lock(&self.cell);
        data.dirty_from = data.dirty_from.min(len).min(data.written.len());
        data.written.resize(len, 0);
        Ok(())
    }
}
