//! Why an offline inspection or repair could not run.

use std::io;
use std::path::{Path, PathBuf};

use crate::error::{ChannelError, OpenError};

/// Why an offline inspection or repair could not run (damage found in the channel is not
/// an error: it is what the reports describe).
#[derive(Debug, thiserror::Error)]
pub enum InspectError {
    /// A file or directory could not be read (or, for repairs, written).
    #[error("{operation} of {path} failed: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What was being done.
        operation: &'static str,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// A record that the scan found valid could not be read back as the put record an
    /// event pointer names.
    #[error("cannot read the event at {file} offset {offset}: {detail}")]
    UnreadableEvent {
        /// The segment.
        file: PathBuf,
        /// The put record's offset.
        offset: u64,
        /// What went wrong.
        detail: String,
    },
    /// A salvage destination already holds files.
    #[error("salvage destination {path} is not empty; choose a new directory")]
    DestinationNotEmpty {
        /// The destination.
        path: PathBuf,
    },
    /// Opening the channel (for a repair) failed.
    #[error(transparent)]
    Open(#[from] OpenError),
    /// Work on the opened channel failed.
    #[error(transparent)]
    Channel(#[from] ChannelError),
    /// A replay stopped part-way: the first transactions of copies were committed (and
    /// stay: running the same replay again would put them back twice), then one failed.
    #[error(
        "replay stopped after putting back {events_replayed} of {events_planned} events in \
         {transactions} committed transactions: {source}"
    )]
    ReplayInterrupted {
        /// Events put back by the committed transactions.
        events_replayed: u64,
        /// Events the plan held.
        events_planned: u64,
        /// Transactions committed before the failure.
        transactions: u64,
        /// Why the next transaction failed.
        #[source]
        source: ChannelError,
    },
}

impl InspectError {
    pub(crate) fn io(path: &Path, operation: &'static str, source: io::Error) -> Self {
        InspectError::Io {
            path: path.to_path_buf(),
            operation,
            source,
        }
    }
}
