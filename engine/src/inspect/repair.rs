//! Offline checkpoint rebuild: a full replay of the log, then a fresh checkpoint.
//!
//! For when both checkpoint slots are damaged or lost (a restart would replay the whole
//! log every time until a checkpoint is written), or when an operator distrusts them.
//! Existing checkpoint files are moved aside first (renamed `checkpoint.replaced-<ms>`,
//! never deleted) so that the channel opens by a full replay; if the replay fails they
//! are put back. The channel is then checkpointed and closed through [`FileChannel`],
//! which writes both slots the usual safe way.

use std::io;
use std::path::PathBuf;
use std::sync::Arc;

use crate::channel::Channel;
use crate::config::FileChannelConfig;
use crate::figures::RecoveryReport;
use crate::file::segments::LOCK_FILE_NAME;
use crate::file::{CheckpointReport, FileChannel};
use crate::storage::Storage;

use super::checkpoints::slot_files;
use super::error::InspectError;

/// What a rebuild did.
#[derive(Debug, Clone)]
pub struct CheckpointRebuildReport {
    /// Checkpoint files moved aside before the replay: `(from, to)`.
    pub moved_aside: Vec<(PathBuf, PathBuf)>,
    /// How the channel was opened (always a full replay) and what it replayed.
    pub recovery: RecoveryReport,
    /// The checkpoint written.
    pub checkpoint: CheckpointReport,
}

/// Rebuilds the checkpoint of a stopped channel. Fails without changing anything when
/// the channel is open elsewhere (its directory locks are held).
pub fn rebuild_checkpoint(
    storage: &Arc<dyn Storage>,
    channel: &str,
    config: &FileChannelConfig,
) -> Result<CheckpointRebuildReport, InspectError> {
    refuse_if_running(storage.as_ref(), channel, config)?;
    let stamp_ms = crate::clock::unix_time_ms();
    let mut moved_aside = Vec::new();
    for (_, file) in slot_files(config) {
        let aside = file.with_file_name(format!("checkpoint.replaced-{stamp_ms}"));
        match storage.rename(&file, &aside) {
            Ok(()) => moved_aside.push((file, aside)),
            Err(error) if error.kind() == io::ErrorKind::NotFound => {}
            Err(source) => {
                restore(storage.as_ref(), &moved_aside);
                return Err(InspectError::io(&file, "move aside", source));
            }
        }
    }
    let opened = FileChannel::open_with_storage(channel, config.clone(), Arc::clone(storage));
    let opened = match opened {
        Ok(opened) => opened,
        Err(error) => {
            restore(storage.as_ref(), &moved_aside);
            return Err(error.into());
        }
    };
    let recovery = opened
        .recovery_report()
        .expect("a file channel reports its recovery");
    let checkpoint = opened.checkpoint_now()?;
    opened.close()?;
    Ok(CheckpointRebuildReport {
        moved_aside,
        recovery,
        checkpoint,
    })
}

fn restore(storage: &dyn Storage, moved_aside: &[(PathBuf, PathBuf)]) {
    for (original, aside) in moved_aside {
        if let Err(error) = storage.rename(aside, original) {
            tracing::warn!(
                from = %aside.display(),
                to = %original.display(),
                %error,
                "could not put a checkpoint back after a failed rebuild"
            );
        }
    }
}

/// Takes and releases every directory lock, so that a rebuild never moves the checkpoint
/// of a running channel aside.
fn refuse_if_running(
    storage: &dyn Storage,
    channel: &str,
    config: &FileChannelConfig,
) -> Result<(), InspectError> {
    let mut dirs: Vec<&PathBuf> = config.data_dirs.iter().collect();
    dirs.push(&config.checkpoint_dir);
    dirs.extend(
        config
            .backup_checkpoint_dir
            .iter()
            .filter(|_| config.use_dual_checkpoints),
    );
    for dir in dirs {
        let lock_file = dir.join(LOCK_FILE_NAME);
        match storage.lock_file(&lock_file, config.file_modes()) {
            Ok(lock) => drop(lock),
            Err(error) if error.kind() == io::ErrorKind::NotFound => {}
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
                return Err(crate::error::OpenError::Locked {
                    channel: channel.to_string(),
                    dir: dir.clone(),
                    lock_file,
                }
                .into())
            }
            Err(source) => return Err(InspectError::io(&lock_file, "lock", source)),
        }
    }
    Ok(())
}
