//! The real filesystem: `std::fs` plus `rustix` for `fallocate` and `statvfs`, and the
//! I/O backend its files write and sync with (see `uring`).

use std::fs::{self, DirBuilder, File, OpenOptions, TryLockError};
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::fs::{DirBuilderExt, FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use std::os::fd::AsRawFd;

use super::seam::{
    DirHandle, DirLock, DirMoved, FileIdentity, FileMode, Storage, StorageFile, WriteSyncError,
};
use super::uring::{self, IoBackend, IoBackendChoice, WriteOutcome};

/// The operating system's filesystem, with the I/O backend its files' linked write +
/// sync (the log writer's path) uses. The backend belongs to this value, not to the
/// process: two storages with different backends can run side by side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RealFs {
    io_backend: IoBackend,
}

impl RealFs {
    /// The real filesystem, writing with `io_backend`. A forced
    /// [`IoBackend::IoUring`] where rings cannot be created shows up as failed writes,
    /// with the reason; [`RealFs::with_choice`] checks first.
    pub fn new(io_backend: IoBackend) -> Self {
        RealFs { io_backend }
    }

    /// The real filesystem with the backend a configuration switch asks for; fails when
    /// io_uring is forced and cannot be used here (see [`IoBackendChoice::resolve`]).
    pub fn with_choice(choice: IoBackendChoice) -> io::Result<Self> {
        choice.resolve().map(RealFs::new)
    }

    /// The real filesystem with the backend [`IoBackendChoice::Auto`] takes (pwrite +
    /// fdatasync).
    pub fn auto() -> Self {
        RealFs::new(uring::auto_backend())
    }

    /// The backend this storage's files write and sync with.
    pub fn io_backend(&self) -> IoBackend {
        self.io_backend
    }
}

#[derive(Debug)]
struct RealFile {
    file: File,
    io_backend: IoBackend,
}

#[derive(Debug)]
struct RealLock {
    // Held for its lock; closing the descriptor releases it.
    _file: File,
}

impl DirLock for RealLock {}

/// A directory held open by a descriptor, with the identity it had when opened.
#[derive(Debug)]
struct RealDir {
    path: PathBuf,
    // Held so the inode stays allocated: its number cannot go to a new directory.
    _descriptor: OwnedFd,
    identity: FileIdentity,
}

// `dev_t` and `ino_t` are u64 on the 64-bit Linux targets, narrower on some others.
#[allow(clippy::unnecessary_cast)]
fn identity_of(stat: &rustix::fs::Stat) -> FileIdentity {
    FileIdentity {
        device: stat.st_dev as u64,
        inode: stat.st_ino as u64,
    }
}

impl DirHandle for RealDir {
    fn path(&self) -> &Path {
        &self.path
    }

    fn verify(&self) -> Result<(), DirMoved> {
        let now = rustix::fs::stat(&self.path).map_err(|errno| DirMoved::Missing(errno.into()))?;
        let now = identity_of(&now);
        if now == self.identity {
            Ok(())
        } else {
            Err(DirMoved::Replaced {
                opened: self.identity,
                now,
            })
        }
    }
}

impl Storage for RealFs {
    fn create_dir_all(&self, path: &Path, mode: FileMode) -> io::Result<()> {
        DirBuilder::new()
            .recursive(true)
            .mode(mode.dir)
            .create(path)
    }

    fn open_dir(&self, path: &Path) -> io::Result<Box<dyn DirHandle>> {
        use rustix::fs::{Mode, OFlags};
        let descriptor = rustix::fs::open(
            path,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        let identity = identity_of(&rustix::fs::fstat(&descriptor)?);
        Ok(Box::new(RealDir {
            path: path.to_path_buf(),
            _descriptor: descriptor,
            identity,
        }))
    }

    fn list_dir(&self, path: &Path) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in fs::read_dir(path)? {
            names.push(entry?.file_name().to_string_lossy().into_owned());
        }
        names.sort();
        Ok(names)
    }

    fn create_file(&self, path: &Path, mode: FileMode) -> io::Result<Arc<dyn StorageFile>> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(mode.file)
            .open(path)?;
        Ok(Arc::new(RealFile {
            file,
            io_backend: self.io_backend,
        }))
    }

    fn open_file(&self, path: &Path) -> io::Result<Arc<dyn StorageFile>> {
        let file = OpenOptions::new().read(true).write(true).open(path)?;
        Ok(Arc::new(RealFile {
            file,
            io_backend: self.io_backend,
        }))
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        fs::remove_file(path)
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        fs::rename(from, to)
    }

    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        File::open(path)?.sync_all()
    }

    fn available_space_bytes(&self, path: &Path) -> io::Result<u64> {
        let stats = rustix::fs::statvfs(path)?;
        Ok(stats.f_bavail.saturating_mul(stats.f_frsize))
    }

    fn lock_file(&self, lock_file: &Path, mode: FileMode) -> io::Result<Box<dyn DirLock>> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(mode.file)
            .open(lock_file)?;
        match file.try_lock() {
            Ok(()) => Ok(Box::new(RealLock { _file: file })),
            Err(TryLockError::WouldBlock) => Err(io::Error::new(
                io::ErrorKind::WouldBlock,
                "lock held by another open file",
            )),
            Err(TryLockError::Error(error)) => Err(error),
        }
    }
}

impl StorageFile for RealFile {
    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.file.write_all_at(buf, offset)
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        self.file.read_at(buf, offset)
    }

    /// `preadv2` with `RWF_NOWAIT`: the kernel reads from the page cache only and says
    /// `EAGAIN` (or reads short) where it would have to wait for the device. Kernels or
    /// file systems without the flag answer `EOPNOTSUPP`, which reads as "would wait".
    fn read_exact_cached_at(&self, mut buf: &mut [u8], mut offset: u64) -> io::Result<bool> {
        while !buf.is_empty() {
            let slices = &mut [io::IoSliceMut::new(buf)];
            match rustix::io::preadv2(
                &self.file,
                slices,
                offset,
                rustix::io::ReadWriteFlags::NOWAIT,
            ) {
                Ok(0) => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        format!("file ends before offset {}", offset + buf.len() as u64),
                    ))
                }
                Ok(read) => {
                    buf = &mut buf[read..];
                    offset += read as u64;
                }
                Err(rustix::io::Errno::AGAIN | rustix::io::Errno::OPNOTSUPP) => return Ok(false),
                Err(rustix::io::Errno::INTR) => {}
                Err(errno) => return Err(errno.into()),
            }
        }
        Ok(true)
    }

    fn len_bytes(&self) -> io::Result<u64> {
        Ok(self.file.metadata()?.len())
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.file.set_len(len)
    }

    fn allocate(&self, len: u64) -> io::Result<()> {
        let current = self.len_bytes()?;
        if len <= current {
            return Ok(());
        }
        match rustix::fs::fallocate(
            &self.file,
            rustix::fs::FallocateFlags::empty(),
            current,
            len - current,
        ) {
            Ok(()) => Ok(()),
            // Filesystems without fallocate still get the size; blocks come on write.
            Err(rustix::io::Errno::OPNOTSUPP) => self.file.set_len(len),
            Err(errno) => Err(errno.into()),
        }
    }

    fn write_all_at_and_sync_data(&self, buf: &[u8], offset: u64) -> Result<(), WriteSyncError> {
        if self.io_backend == IoBackend::IoUring {
            match uring::write_and_sync(self.file.as_raw_fd(), buf, offset)? {
                WriteOutcome::Complete => return Ok(()),
                WriteOutcome::Short { written_bytes } => {
                    // Finish the rest the plain way; the sync below covers all of it.
                    self.file
                        .write_all_at(&buf[written_bytes..], offset + written_bytes as u64)
                        .map_err(WriteSyncError::Write)?;
                    return self.file.sync_data().map_err(WriteSyncError::Sync);
                }
            }
        }
        self.file
            .write_all_at(buf, offset)
            .map_err(WriteSyncError::Write)?;
        self.file.sync_data().map_err(WriteSyncError::Sync)
    }

    fn prefetch(&self, offset: u64, len: u64) {
        // A hint: if the kernel declines, reads simply are not overlapped.
        let _ = rustix::fs::fadvise(
            &self.file,
            offset,
            std::num::NonZeroU64::new(len),
            rustix::fs::Advice::WillNeed,
        );
    }

    fn sync_data(&self) -> io::Result<()> {
        self.file.sync_data()
    }

    fn sync_all(&self) -> io::Result<()> {
        self.file.sync_all()
    }
}
