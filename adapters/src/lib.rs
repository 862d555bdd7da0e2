//! # Millrace adapters: Flume's sources and sinks as clients of channeld
//!
//! `channel-agent -f FILE -n AGENT` reads the sources, sinks, sink groups and channel
//! selectors of a Flume agent configuration and runs them against a channeld over the
//! protocol. `channeld -f FILE -n AGENT` starts one `channel-agent --component NAME`
//! process per source, sink group and ungrouped sink, so bad data that breaks one sink
//! never stops the channel or the other components.
//!
//! ```text
//! source ─► ChannelProcessor (selector) ─► put+commit per channel ─► channeld
//! channeld ─► take ─► sink.write (file synced, downstream committed) ─► commit
//!                        └─ refused event ×maxAttempts ─► dead-letter channel
//! ```

#![warn(missing_docs)]

pub mod agent;
pub mod check;
pub mod cli;
pub mod connection;
pub mod counters;
pub mod delivery;
pub mod file_problem;
pub mod interceptors;
pub mod plan;
pub mod pool;
pub mod sink_runner;
pub mod sinks;
pub mod sources;
