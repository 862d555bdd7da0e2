//! The free-space guard (`minimumRequiredSpace`).
//!
//! Puts are refused when no data directory could take the write without dropping below
//! the guard, or when a checkpoint directory is already below it (checkpoints are what
//! keep the log from growing without bound). Takes, commits of takes, rollbacks and
//! checkpoints are never refused by the guard: the guard's own margin is their headroom.
//!
//! `statvfs` is not cheap enough for every put, so the usable figure is cached: refreshed
//! in the background, lowered by every byte the writers reserve in between and raised by
//! every byte they give back (segment space is reserved ahead with fallocate, so a
//! reservation, not a write, is what takes space from the filesystem; a closed segment's
//! unused reservation is trimmed). Puts are accepted again as soon as a refresh sees
//! space, without a restart.
//!
//! What a data directory can take is its usable space above the guard plus what its
//! writer has reserved and not yet written ([`SpaceGuard::set_reserved_ahead`]): writing
//! into a reservation takes nothing more from the filesystem. The guard is applied twice:
//! at each put and at commit (a quick refusal), and by the directory's writer, which knows
//! every byte of the round it is about to write and refuses the put transactions that
//! would not fit. The writer reserves ahead only as far as [`SpaceGuard::room_bytes`]
//! allows, so neither a put nor a reservation made for it takes the directory below the
//! guard (up to the accuracy of the cached figure: another process writing to the same
//! filesystem is seen at the next refresh).

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
    /// Bytes reserved in the directory's active segment and not yet written.
    reserved_ahead_bytes: AtomicU64,
}

impl GuardedDir {
    fn new(path: PathBuf) -> Self {
        GuardedDir {
            path,
            available_bytes: AtomicU64::new(u64::MAX),
            reserved_ahead_bytes: AtomicU64::new(0),
        }
    }

    fn available(&self) -> u64 {
        self.available_bytes.load(Ordering::Relaxed)
    }

    /// What the channel can still write here: usable space plus its own reservation.
    fn writable(&self) -> u64 {
        self.available()
            .saturating_add(self.reserved_ahead_bytes.load(Ordering::Relaxed))
    }

    fn adjust(&self, change: impl Fn(u64) -> u64) {
        let _ =
            self.available_bytes
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |available| {
                    Some(change(available))
                });
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

    /// Records bytes a writer reserved on a data directory since the last refresh.
    pub(crate) fn consume(&self, dir_index: usize, bytes: u64) {
        self.data_dirs[dir_index].adjust(|available| available.saturating_sub(bytes));
    }

    /// Records bytes a writer gave back to the filesystem (a trimmed reservation).
    pub(crate) fn release(&self, dir_index: usize, bytes: u64) {
        self.data_dirs[dir_index].adjust(|available| available.saturating_add(bytes));
    }

    /// Records what the writer of a data directory has reserved and not written.
    pub(crate) fn set_reserved_ahead(&self, dir_index: usize, bytes: u64) {
        self.data_dirs[dir_index]
            .reserved_ahead_bytes
            .store(bytes, Ordering::Relaxed);
    }

    /// Whether a data directory can take `bytes` and stay at or above the guard.
    pub(crate) fn data_dir_has_room(&self, dir_index: usize, bytes: u64) -> bool {
        self.data_dirs[dir_index].writable() >= self.minimum_bytes.saturating_add(bytes)
    }

    /// Bytes a data directory's filesystem can give before it reaches the guard (zero
    /// below it): how far its writer may reserve ahead.
    pub(crate) fn room_bytes(&self, dir_index: usize) -> u64 {
        self.data_dirs[dir_index]
            .available()
            .saturating_sub(self.minimum_bytes)
    }

    /// The refusal of a write of `bytes` to a data directory without room for it.
    pub(crate) fn shortage(&self, channel: &str, dir_index: usize, bytes: u64) -> ChannelError {
        self.refusal(channel, &self.data_dirs[dir_index], bytes)
    }

    fn refusal(&self, channel: &str, dir: &GuardedDir, bytes: u64) -> ChannelError {
        ChannelError::InsufficientSpace {
            channel: channel.to_string(),
            dir: dir.path.clone(),
            available_bytes: dir.writable(),
            required_bytes: self.minimum_bytes.saturating_add(bytes),
        }
    }

    /// Refuses a put of `bytes` when it could not be written without crossing the guard.
    pub(crate) fn check_put(&self, channel: &str, bytes: u64) -> Result<(), ChannelError> {
        if let Some(dir) = self
            .checkpoint_dirs
            .iter()
            .find(|dir| dir.available() < self.minimum_bytes)
        {
            return Err(self.refusal(channel, dir, 0));
        }
        match self.data_dirs.iter().max_by_key(|dir| dir.writable()) {
            Some(best) if best.writable() < self.minimum_bytes.saturating_add(bytes) => {
                Err(self.refusal(channel, best, bytes))
            }
            _ => Ok(()),
        }
    }
}
