//! # What channeld and the tools do with a channel in process
//!
//! Two things need the engine's channels outside a protocol session, in channeld and in
//! the tools alike, and neither belongs to the server:
//!
//! - [`open_channel`]: the channel a configuration describes, opened. channeld's registry
//!   opens every configured channel through it; `channel-bench --embedded` opens the one
//!   it measures, without a server in between.
//! - [`reports`]: the operator reports. channeld sends a live channel's inspect report and
//!   a replay's report in answer to `Inspect` and `Replay`; `channelctl` builds the same
//!   reports from a stopped channel's files, so the two print alike.
//!
//! ```text
//! millrace-engine (channels, scans, replay plans) ─► millrace-ops ─► channeld (millrace-server)
//! millrace-protocol (ReplayReport, ReplayPoint)   ─┘             └─► channelctl, channel-bench
//! ```

#![warn(missing_docs)]

mod open;
pub mod reports;

pub use open::{open_channel, OpenedChannel};
