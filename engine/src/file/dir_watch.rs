//! A file channel's directories, held open so that one removed or replaced under the
//! running channel is noticed before anything more is acknowledged.
//!
//! An `rm -rf` of a data directory leaves the channel's open segment descriptors
//! working: writes and `fdatasync` succeed on files no path leads to any more, and a
//! restart finds none of it. So the writer cannot rely on an I/O error to tell it. Instead
//! each directory is opened once at start and held; [`DirWatch::verify`] compares the
//! identity (device, inode) of each held directory with a `stat` of its path. It runs
//! - in each data directory's writer after a round is written and before any of its
//!   commits is answered (puts and takes alike);
//! - before and after each checkpoint is written;
//! - on the background thread once a second, so `/health` reports an idle channel too.
//!
//! The first directory found moved fails the channel (fail-stop, as for an fsync error):
//! its health names the directory, and nothing is acknowledged after.

use std::path::PathBuf;
use std::sync::Arc;

use super::health::Health;
use crate::error::{ChannelError, OpenError};
use crate::storage::{DirHandle, Storage};

/// What a directory is to the channel, as messages name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DirRole {
    Data,
    Checkpoint,
    BackupCheckpoint,
}

impl DirRole {
    fn name(self) -> &'static str {
        match self {
            DirRole::Data => "data",
            DirRole::Checkpoint => "checkpoint",
            DirRole::BackupCheckpoint => "backup checkpoint",
        }
    }
}

#[derive(Debug)]
struct WatchedDir {
    role: DirRole,
    path: PathBuf,
    handle: Box<dyn DirHandle>,
}

/// Every directory of a channel, held open.
#[derive(Debug)]
pub(crate) struct DirWatch {
    channel: String,
    dirs: Vec<WatchedDir>,
    health: Arc<Health>,
}

impl DirWatch {
    /// Opens and holds each directory (they exist: the channel created them).
    pub(crate) fn open(
        channel: &str,
        storage: &dyn Storage,
        dirs: impl IntoIterator<Item = (DirRole, PathBuf)>,
        health: Arc<Health>,
    ) -> Result<Self, OpenError> {
        let dirs = dirs
            .into_iter()
            .map(|(role, path)| {
                let handle = storage.open_dir(&path).map_err(|source| OpenError::Io {
                    channel: channel.to_string(),
                    path: path.clone(),
                    operation: "open directory",
                    source,
                })?;
                Ok(WatchedDir { role, path, handle })
            })
            .collect::<Result<_, OpenError>>()?;
        Ok(DirWatch {
            channel: channel.to_string(),
            dirs,
            health,
        })
    }

    /// Checks that every directory is still where it was opened. The first one that is
    /// not fails the channel and is returned as [`ChannelError::DirectoryLost`]. Safe to
    /// call from any thread, as often as every acknowledgement (one `stat` per directory).
    pub(crate) fn verify(&self) -> Result<(), ChannelError> {
        for dir in &self.dirs {
            if let Err(moved) = dir.handle.verify() {
                let error = ChannelError::DirectoryLost {
                    channel: self.channel.clone(),
                    role: dir.role.name(),
                    dir: dir.path.clone(),
                    detail: moved.to_string(),
                };
                self.health.fail(error.to_string());
                return Err(error);
            }
        }
        Ok(())
    }
}
