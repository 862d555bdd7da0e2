//! io_uring for the log writer: a write linked to an `fdatasync` in one submission, on one
//! persistent ring per writer thread.
//!
//! The pwrite + fdatasync pair costs two system calls and a return to user space between
//! them; the linked pair costs one `io_uring_enter` that returns when both are done. The
//! kernel runs the sync only if the write completed in full (a short or failed write
//! cancels it), so the data that is reported durable is exactly the data written.
//!
//! Which of the two ways a file is written is a property of the storage value
//! ([`RealFs`](super::RealFs)), chosen when it is built: channeld builds its storage from
//! `server.ioBackend`, and one process may hold storages with either backend (tests run
//! both side by side). [`IoBackendChoice::Auto`] takes plain `pwrite` + `fdatasync`: ext4
//! cannot complete an `fsync` inline, so io_uring hands every sync to an io-wq worker
//! thread, one more thread wake-up per round, and on the reference machine a lone
//! committer was a quarter faster and cheaper without it, with nothing measured slower
//! (`docs/perf.md`, "The log writer's backend"). io_uring is there when asked for
//! (containers often forbid it; asking then fails at start).

use std::cell::RefCell;
use std::io;
use std::os::fd::RawFd;

use io_uring::{opcode, squeue, types, IoUring};

use super::seam::WriteSyncError;

/// Submission queue entries per ring: the linked write and sync.
const RING_ENTRIES: u32 = 4;
const WRITE_TAG: u64 = 1;
const SYNC_TAG: u64 = 2;

/// How the log writer issues its writes and syncs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IoBackend {
    /// A write linked to an fdatasync in one io_uring submission.
    IoUring,
    /// `pwrite` then `fdatasync`.
    Pwrite,
}

/// Which backend is asked for: a configuration switch (channeld's `server.ioBackend`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IoBackendChoice {
    /// The backend measured best for the log writer: pwrite + fdatasync.
    #[default]
    Auto,
    /// io_uring, or fail to start when it is not available.
    IoUring,
    /// pwrite + fdatasync.
    Pwrite,
}

impl IoBackendChoice {
    /// The words the switch accepts, for error messages.
    pub const EXPECTED: &'static str = "auto, io_uring or pwrite";

    /// The backend this choice gives on this machine. A forced `IoUring` is probed (a
    /// ring is created and dropped) and, when no ring can be created, fails with the
    /// reason (containers often forbid io_uring), rather than failing every write later.
    pub fn resolve(self) -> io::Result<IoBackend> {
        match self {
            IoBackendChoice::Auto => Ok(auto_backend()),
            IoBackendChoice::Pwrite => Ok(IoBackend::Pwrite),
            IoBackendChoice::IoUring => match IoUring::new(RING_ENTRIES) {
                Ok(_) => Ok(IoBackend::IoUring),
                Err(error) => Err(io::Error::new(
                    error.kind(),
                    format!("io_uring was asked for but cannot be used here: {error}"),
                )),
            },
        }
    }
}

impl std::str::FromStr for IoBackendChoice {
    type Err = String;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        match value {
            "auto" => Ok(IoBackendChoice::Auto),
            "io_uring" => Ok(IoBackendChoice::IoUring),
            "pwrite" => Ok(IoBackendChoice::Pwrite),
            other => Err(format!("expected {}, got {other:?}", Self::EXPECTED)),
        }
    }
}

/// Whether this process may create an io_uring ring (containers often forbid it).
pub fn io_uring_available() -> bool {
    IoUring::new(RING_ENTRIES).is_ok()
}

/// What [`IoBackendChoice::Auto`] takes (see the module's documentation for why).
pub(crate) fn auto_backend() -> IoBackend {
    IoBackend::Pwrite
}

thread_local! {
    static RING: RefCell<Option<IoUring>> = const { RefCell::new(None) };
}

/// Writes `buf` at `offset` of `fd` and `fdatasync`s it, linked in one submission on this
/// thread's ring. Returns the number of bytes written when the write was short (the sync
/// was then cancelled), so the caller can finish the rest another way.
pub(crate) fn write_and_sync(
    fd: RawFd,
    buf: &[u8],
    offset: u64,
) -> Result<WriteOutcome, WriteSyncError> {
    RING.with(|cell| {
        let mut slot = cell.borrow_mut();
        if slot.is_none() {
            *slot = Some(IoUring::new(RING_ENTRIES).map_err(WriteSyncError::Write)?);
        }
        let ring = slot.as_mut().expect("created above");
        let length = u32::try_from(buf.len()).map_err(|_| {
            WriteSyncError::Write(io::Error::new(
                io::ErrorKind::InvalidInput,
                "one write is limited to 4 GiB",
            ))
        })?;
        let write = opcode::Write::new(types::Fd(fd), buf.as_ptr(), length)
            .offset(offset)
            .build()
            .flags(squeue::Flags::IO_LINK)
            .user_data(WRITE_TAG);
        let sync = opcode::Fsync::new(types::Fd(fd))
            .flags(types::FsyncFlags::DATASYNC)
            .build()
            .user_data(SYNC_TAG);
        // SAFETY: the entries point at `buf`, which outlives the submission: this function
        // waits for both completions before returning, and the ring is used by no one else
        // (it is this thread's own).
        unsafe {
            let mut queue = ring.submission();
            queue
                .push(&write)
                .and_then(|()| queue.push(&sync))
                .map_err(|_| {
                    WriteSyncError::Write(io::Error::other("io_uring submission queue full"))
                })?;
        }
        ring.submit_and_wait(2).map_err(WriteSyncError::Write)?;
        let mut write_result = None;
        let mut sync_result = None;
        for completion in ring.completion() {
            match completion.user_data() {
                WRITE_TAG => write_result = Some(completion.result()),
                SYNC_TAG => sync_result = Some(completion.result()),
                _ => {}
            }
        }
        let written = write_result.unwrap_or(-libc_eio());
        if written < 0 {
            return Err(WriteSyncError::Write(io::Error::from_raw_os_error(
                -written,
            )));
        }
        if (written as usize) < buf.len() {
            return Ok(WriteOutcome::Short {
                written_bytes: written as usize,
            });
        }
        match sync_result.unwrap_or(-libc_eio()) {
            result if result < 0 => {
                Err(WriteSyncError::Sync(io::Error::from_raw_os_error(-result)))
            }
            _ => Ok(WriteOutcome::Complete),
        }
    })
}

fn libc_eio() -> i32 {
    rustix::io::Errno::IO.raw_os_error()
}

/// What a linked write + sync did when it did not fail.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum WriteOutcome {
    /// Everything written and synced.
    Complete,
    /// The write stopped early and the sync was cancelled.
    Short { written_bytes: usize },
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::FileExt;

    #[test]
    fn a_linked_write_and_sync_writes_the_bytes_at_the_offset() {
        if !io_uring_available() {
            println!("skipped: io_uring is not available here");
            return;
        }
        let file = tempfile::tempfile().unwrap();
        let outcome = write_and_sync(file.as_raw_fd(), b"linked", 10).unwrap();
        assert_eq!(outcome, WriteOutcome::Complete);
        let mut read_back = [0u8; 6];
        file.read_exact_at(&mut read_back, 10).unwrap();
        assert_eq!(&read_back, b"linked");
    }

    #[test]
    fn a_failed_write_is_reported_as_the_write_half() {
        if !io_uring_available() {
            println!("skipped: io_uring is not available here");
            return;
        }
        let read_only = std::fs::File::open("/proc/self/status").unwrap();
        match write_and_sync(read_only.as_raw_fd(), b"x", 0) {
            Err(WriteSyncError::Write(error)) => assert!(error.raw_os_error().is_some()),
            other => panic!("expected a write failure, got {other:?}"),
        }
    }

    #[test]
    fn pwrite_is_always_available_auto_takes_it_and_io_uring_only_where_a_ring_can_be_created() {
        assert_eq!(
            IoBackendChoice::Pwrite.resolve().unwrap(),
            IoBackend::Pwrite
        );
        assert_eq!(IoBackendChoice::Auto.resolve().unwrap(), IoBackend::Pwrite);
        match IoBackendChoice::IoUring.resolve() {
            Ok(backend) => assert_eq!(backend, IoBackend::IoUring),
            Err(error) => {
                assert!(!io_uring_available());
                assert!(
                    error.to_string().contains("io_uring was asked for"),
                    "{error}"
                );
            }
        }
    }
}
