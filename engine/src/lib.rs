//! # Millrace storage engine
//!
//! Channels in the sense of Apache Flume: buffers between producers and consumers, used
//! through put/take transactions. This crate knows nothing about sockets; the server
//! (`channeld`) joins it to the wire protocol.
//!
//! - [`file::FileChannel`]: durable, a write-ahead log striped over data directories.
//! - [`memory::MemoryChannel`]: in process memory, fast, lost on close and on crash.
//! - [`spillable::SpillableChannel`]: a memory tier that overflows into a file channel,
//!   in one global order.
//! - [`storage`]: the file-operation seam, with the real filesystem and a simulated disk
//!   for power-loss tests.
//! - [`record`]: the on-disk layout (see `docs/format.md`).
//! - [`inspect`]: read-only scans of a stopped file channel (inspect, verify) and the
//!   offline repairs built on them (salvage, checkpoint rebuild, replay).
//! - [`crypto`]: keys, nonces and the record cipher for encryption at rest.

#![warn(missing_docs)]

pub mod channel;
pub mod clock;
pub mod config;
pub mod crypto;
pub mod error;
pub mod event;
pub mod figures;
pub mod file;
/// Entry points for the fuzz targets in `fuzz/`: only with the `fuzzing` feature (the
/// module's smoke tests always run).
#[cfg(any(test, feature = "fuzzing"))]
pub mod fuzzing;
pub mod inspect;
pub mod memory;
mod ordered_queue;
pub mod record;
pub mod spillable;
pub mod storage;

pub use channel::{
    ArrivalListener, Arrivals, Channel, ChannelCounters, ChannelHealth, ChannelStats,
    CommitAttempt, CommitFuture, PendingCommit, PutAttempt, TakeStop, Transaction,
};
pub use error::{ChannelError, OpenError};
pub use event::Event;
pub use file::FileChannel;
pub use memory::MemoryChannel;
pub use spillable::SpillableChannel;
