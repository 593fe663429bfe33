//! All file I/O of the log goes through this small trait (after redb's `StorageBackend`).
//!
//! Three implementations: [`FileStorage`] (the real disk), [`MemStorage`] (memory that keeps
//! "written" and "durable" bytes apart, so a simulated crash drops what was never synced) and
//! [`FaultStorage`] (wraps another storage and injects errors, torn writes and bit flips).

mod fault;
mod file;
mod mem;

pub use fault::{FaultPlan, FaultStorage};
pub use file::FileStorage;
pub use mem::{CrashMode, MemStorage};

use std::io;
use std::path::Path;
use std::sync::Arc;

/// How a file is opened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpenMode {
    /// Create a new, empty file; fails if it exists.
    CreateNew,
    /// Open an existing file for reading and writing.
    ReadWrite,
    /// Open an existing file for reading only.
    Read,
}

/// A directory tree of files. Paths are absolute or relative to the process, as with `std::fs`.
pub trait Storage: Send + Sync + 'static {
    /// Creates a directory and its parents.
    fn create_dir_all(&self, path: &Path) -> io::Result<()>;
    /// Names of the files directly in `path` (not sub-directories), in no particular order.
    fn list_files(&self, path: &Path) -> io::Result<Vec<String>>;
    /// Opens a file.
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Arc<dyn StorageFile>>;
    /// Removes a file.
    fn remove_file(&self, path: &Path) -> io::Result<()>;
    /// Renames a file, replacing `to` if it exists.
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Makes the directory's entries (creations, renames, removals) durable.
    fn sync_dir(&self, path: &Path) -> io::Result<()>;
    /// Whether a file or directory exists.
    fn exists(&self, path: &Path) -> bool;
}

/// One open file. Writes take `&self` (positioned writes) so that readers and the single writer
/// can share it.
#[allow(clippy::len_without_is_empty)] // `len` is a fallible stat, not a collection size
pub trait StorageFile: Send + Sync {
    /// Current length in bytes (written, not necessarily durable).
    fn len(&self) -> io::Result<u64>;
    /// Reads up to `buf.len()` bytes at `offset`; returns how many were read (0 at the end).
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<usize>;
    /// Writes all of `data` at `offset`.
    fn write_at(&self, offset: u64, data: &[u8]) -> io::Result<()>;
    /// Makes the written data durable (`fdatasync`).
    fn sync_data(&self) -> io::Result<()>;
    /// Truncates or extends the file.
    fn set_len(&self, len: u64) -> io::Result<()>;
}

/// Reads exactly `buf.len()` bytes at `offset`, or fails with `UnexpectedEof`.
pub fn read_exact_at(
    file: &dyn StorageFile,
    mut offset: u64,
    mut buf: &mut [u8],
) -> io::Result<()> {
    while !buf.is_empty() {
        let read = file.read_at(offset, buf)?;
        if read == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "short read"));
        }
        offset += read as u64;
        buf = &mut buf[read..];
    }
    Ok(())
}

/// Writes `data` to `path` atomically: temporary file, write, sync, rename, sync of the directory.
pub fn write_file_atomic(storage: &dyn Storage, path: &Path, data: &[u8]) -> io::Result<()> {
    let dir = path
        .parent()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "path has no parent"))?;
    let mut tmp_name = path.as_os_str().to_owned();
    tmp_name.push(".tmp");
    let tmp = Path::new(&tmp_name);
    if storage.exists(tmp) {
        storage.remove_file(tmp)?;
    }
    let file = storage.open(tmp, OpenMode::CreateNew)?;
    file.write_at(0, data)?;
    file.sync_data()?;
    drop(file);
    storage.rename(tmp, path)?;
    storage.sync_dir(dir)
}

/// Reads a whole file.
pub fn read_file(storage: &dyn Storage, path: &Path) -> io::Result<Vec<u8>> {
    let file = storage.open(path, OpenMode::Read)?;
    let len = usize::try_from(file.len()?)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "file too large"))?;
    let mut data = vec![0u8; len];
    read_exact_at(file.as_ref(), 0, &mut data)?;
    Ok(data)
}
