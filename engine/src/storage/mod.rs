//! The storage seam: every file operation the engine performs goes through [`Storage`]
//! and [`StorageFile`], so tests can run the engine on [`SimFs`], a simulated disk that
//! loses unsynced writes, tears the last write and injects errors, as well as on the real
//! filesystem ([`RealFs`]).
//!
//! The contract mirrors POSIX as the engine relies on it:
//! - data written to a file is durable only after `sync_data` / `sync_all` on that file;
//! - creating, renaming or removing a file is durable only after `sync_dir` on its parent;
//! - `close` (dropping a handle) syncs nothing.
//!
//! Files and directories are created with the permission bits the caller passes
//! ([`FileMode`]); the process's umask may only take bits away.

mod real;
mod seam;
mod sim;
// The one place the engine needs `unsafe`: io_uring submission entries point at the
// caller's buffer (see the SAFETY comment in `uring.rs`).
#[allow(unsafe_code)]
mod uring;

pub use real::RealFs;
pub use seam::{
    DirHandle, DirLock, DirMoved, FileIdentity, FileMode, Storage, StorageFile, WriteSyncError,
};
pub use sim::{CrashMode, SimFs, SimFsOptions};
pub use uring::{io_uring_available, IoBackend, IoBackendChoice};
