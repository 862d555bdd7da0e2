//! The seam's traits and the types they trade in (see the module doc of `storage` for
//! the contract).

use std::fmt;
use std::io;
use std::path::Path;
use std::sync::Arc;

/// Permission bits for what the engine creates: files get `file`, directories `dir`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileMode {
    /// Mode of new files (segments, checkpoints, temp and lock files), e.g. `0o600`.
    pub file: u32,
    /// Mode of new directories, e.g. `0o700`.
    pub dir: u32,
}

impl FileMode {
    /// Owner only: files `0600`, directories `0700`.
    pub const PRIVATE: FileMode = FileMode {
        file: 0o600,
        dir: 0o700,
    };

    /// Files with `file_mode`; directories with the same bits plus the search (execute)
    /// bit for every class that may read, so that whoever may read the files may reach
    /// them (`0640` gives `0750`, `0644` gives `0755`).
    pub fn for_files(file_mode: u32) -> FileMode {
        let readable = file_mode & 0o444;
        FileMode {
            file: file_mode,
            dir: file_mode | (readable >> 2),
        }
    }
}

impl Default for FileMode {
    fn default() -> Self {
        FileMode::PRIVATE
    }
}

/// A directory tree the engine can create files in.
pub trait Storage: Send + Sync + fmt::Debug {
    /// Creates the directory and its parents (like `mkdir -p`); new ones get `mode.dir`,
    /// existing ones are left as they are.
    fn create_dir_all(&self, path: &Path, mode: FileMode) -> io::Result<()>;

    /// Opens a directory and holds it open, so that [`DirHandle::verify`] can later tell
    /// whether its path still names it.
    fn open_dir(&self, path: &Path) -> io::Result<Box<dyn DirHandle>>;

    /// Names of the entries in a directory, sorted.
    fn list_dir(&self, path: &Path) -> io::Result<Vec<String>>;

    /// Creates a new, empty file with `mode.file`, opened for reading and writing. Fails
    /// if it exists.
    fn create_file(&self, path: &Path, mode: FileMode) -> io::Result<Arc<dyn StorageFile>>;

    /// Opens an existing file for reading and writing.
    fn open_file(&self, path: &Path) -> io::Result<Arc<dyn StorageFile>>;

    /// Removes a file.
    fn remove_file(&self, path: &Path) -> io::Result<()>;

    /// Renames a file, replacing the target if it exists.
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;

    /// Makes creates, renames and removes in this directory durable.
    fn sync_dir(&self, path: &Path) -> io::Result<()>;

    /// Bytes an unprivileged process can still write on the directory's filesystem.
    fn available_space_bytes(&self, path: &Path) -> io::Result<u64>;

    /// Takes an exclusive lock on `lock_file` (created with `mode.file` if missing), held
    /// until the returned guard is dropped. Fails with `ErrorKind::WouldBlock` when held
    /// elsewhere.
    fn lock_file(&self, lock_file: &Path, mode: FileMode) -> io::Result<Box<dyn DirLock>>;
}

/// An open directory, held so that the engine can tell when its path stops naming it: an
/// `rm -rf` of the directory, or another directory moved or created in its place, while
/// the channel runs. Holding it open also keeps its inode number from being reused, so a
/// new directory at the path can never pass for the old one.
pub trait DirHandle: Send + Sync + fmt::Debug {
    /// The path the directory was opened at.
    fn path(&self) -> &Path;

    /// Checks that the path still names the directory held open: one `stat` of the path,
    /// cheap enough to run before every acknowledgement.
    fn verify(&self) -> Result<(), DirMoved>;
}

/// The identity of a file or directory: its device and inode numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileIdentity {
    /// `st_dev`.
    pub device: u64,
    /// `st_ino`.
    pub inode: u64,
}

/// Why a directory's path no longer names the directory that was opened there.
#[derive(Debug, thiserror::Error)]
pub enum DirMoved {
    /// Nothing can be found at the path any more (removed, or a parent moved away).
    #[error("it is no longer at its path ({0})")]
    Missing(#[source] io::Error),
    /// The path names something else now.
    #[error(
        "its path now names another directory or file (device {}, inode {}; the one \
         opened was device {}, inode {})",
        now.device, now.inode, opened.device, opened.inode
    )]
    Replaced {
        /// What was opened.
        opened: FileIdentity,
        /// What the path names now.
        now: FileIdentity,
    },
}

/// An open file.
pub trait StorageFile: Send + Sync + fmt::Debug {
    /// Writes all of `buf` at `offset`, extending the file if needed.
    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()>;

    /// Reads up to `buf.len()` bytes at `offset`; returns how many were read (0 at EOF).
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize>;

    /// The file's size in bytes.
    fn len_bytes(&self) -> io::Result<u64>;

    /// Truncates or extends the file to `len` bytes.
    fn set_len(&self, len: u64) -> io::Result<()>;

    /// Reserves space so that the file is at least `len` bytes long (fallocate).
    fn allocate(&self, len: u64) -> io::Result<()>;

    /// Makes written data (and the size, if it changed) durable: `fdatasync`.
    fn sync_data(&self) -> io::Result<()>;

    /// Makes data and all metadata durable: `fsync`.
    fn sync_all(&self) -> io::Result<()>;

    /// Writes all of `buf` at `offset`, then makes it durable (`fdatasync`). Says which
    /// half failed: a failed write can be retried, a failed sync cannot.
    fn write_all_at_and_sync_data(&self, buf: &[u8], offset: u64) -> Result<(), WriteSyncError> {
        self.write_all_at(buf, offset)
            .map_err(WriteSyncError::Write)?;
        self.sync_data().map_err(WriteSyncError::Sync)
    }

    /// Hints that `len` bytes at `offset` will be read soon, so the system can start
    /// reading them in the background. Only a hint: the default does nothing.
    fn prefetch(&self, _offset: u64, _len: u64) {}

    /// Reads exactly `buf.len()` bytes at `offset` if that needs no wait for the device:
    /// `Ok(true)` when read, `Ok(false)` when some of the bytes are not in memory (the
    /// operating system's page cache) and reading them would wait, or the storage cannot
    /// tell (the default). Fails with `UnexpectedEof` like [`Self::read_exact_at`].
    fn read_exact_cached_at(&self, _buf: &mut [u8], _offset: u64) -> io::Result<bool> {
        Ok(false)
    }

    /// Reads exactly `buf.len()` bytes at `offset`, or fails with `UnexpectedEof`.
    fn read_exact_at(&self, mut buf: &mut [u8], mut offset: u64) -> io::Result<()> {
        while !buf.is_empty() {
            match self.read_at(buf, offset)? {
                0 => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        format!("file ends before offset {}", offset + buf.len() as u64),
                    ))
                }
                read => {
                    buf = &mut buf[read..];
                    offset += read as u64;
                }
            }
        }
        Ok(())
    }
}

/// A held directory lock; dropping it releases the lock.
pub trait DirLock: Send + Sync + fmt::Debug {}

/// Which half of a linked write + sync failed.
#[derive(Debug)]
pub enum WriteSyncError {
    /// The write failed or was short: nothing was synced; the data may be retried.
    Write(io::Error),
    /// The write succeeded and the sync failed: fail-stop.
    Sync(io::Error),
}
