//! The free-space guard (`minimumRequiredSpace`).
//!
//! Puts are refused when no data directory could take the write without dropping below
//! the guard, or when a checkpoint directory is already below it (checkpoints are what
//! keep the log from growing without bound). Takes, commits of takes, rollbacks and
//! checkpoints are never refused by the guard: the guard's own margin is their headroom.
//!
//! `statvfs` is not cheap enough for every put, so the usable figure is cached: refreshed
//! in the background, and lowered by every byte the writers write in between (Flume does
//! the same). Puts are accepted again as soon as a refresh sees space, without a restart.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

use tracing::warn;

use crate::error::ChannelError;
use crate::storage::Storage;

/// How often the background refresh re-reads free space.
pub(crate) const SPACE_REFRESH_INTERVAL_MS: u64 = 1_000;

#[derive(Debug)]
struct GuardedDir {
    path: PathBuf,
    available_bytes: AtomicU64,
}

impl GuardedDir {
    fn new(path: PathBuf) -> Self {
        GuardedDir {
            path,
            available_bytes: AtomicU64::new(u64::MAX),
        }
    }

    fn available(&self) -> u64 {
        self.available_bytes.load(Ordering::Relaxed)
    }
}

/// Cached usable space of a channel's directories against `minimumRequiredSpace`.
#[derive(Debug)]
pub(crate) struct SpaceGuard {
    minimum_bytes: u64,
    data_dirs: Vec<GuardedDir>,
    checkpoint_dirs: Vec<GuardedDir>,
}

impl SpaceGuard {
    pub(crate) fn new(
        minimum_bytes: u64,
        data_dirs: &[PathBuf],
        checkpoint_dirs: &[PathBuf],
    ) -> Self {
        SpaceGuard {
            minimum_bytes,
            data_dirs: data_dirs.iter().cloned().map(GuardedDir::new).collect(),
            checkpoint_dirs: checkpoint_dirs
                .iter()
                .cloned()
                .map(GuardedDir::new)
                .collect(),
        }
    }

    /// Re-reads free space. A directory whose figure cannot be read keeps its old one.
    pub(crate) fn refresh(&self, storage: &dyn Storage) {
        for dir in self.data_dirs.iter().chain(&self.checkpoint_dirs) {
            match storage.available_space_bytes(&dir.path) {
                Ok(bytes) => dir.available_bytes.store(bytes, Ordering::Relaxed),
                Err(error) => warn!(dir = %dir.path.display(), %error, "cannot read free space"),
            }
        }
    }

    /// Records bytes a writer put on a data directory since the last refresh.
    pub(crate) fn consume(&self, dir_index: usize, bytes: u64) {
        let _ = self.data_dirs[dir_index].available_bytes.fetch_update(
            Ordering::Relaxed,
            Ordering::Relaxed,
            |available| Some(available.saturating_sub(bytes)),
        );
    }

    /// Whether a data directory can take `bytes` and stay at or above the guard.
    pub(crate) fn data_dir_has_room(&self, dir_index: usize, bytes: u64) -> bool {
        self.data_dirs[dir_index].available() >= self.minimum_bytes.saturating_add(bytes)
    }

    /// Refuses a put of `bytes` when it could not be written without crossing the guard.
    pub(crate) fn check_put(&self, channel: &str, bytes: u64) -> Result<(), ChannelError> {
        let shortage = |dir: &GuardedDir, required_bytes: u64| ChannelError::InsufficientSpace {
            channel: channel.to_string(),
            dir: dir.path.clone(),
            available_bytes: dir.available(),
            required_bytes,
        };
        if let Some(dir) = self
            .checkpoint_dirs
            .iter()
            .find(|dir| dir.available() < self.minimum_bytes)
        {
            return Err(shortage(dir, self.minimum_bytes));
        }
        let required_bytes = self.minimum_bytes.saturating_add(bytes);
        match self.data_dirs.iter().max_by_key(|dir| dir.available()) {
            Some(best) if best.available() < required_bytes => Err(shortage(best, required_bytes)),
            _ => Ok(()),
        }
    }
}
