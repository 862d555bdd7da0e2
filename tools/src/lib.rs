//! Shared code for channelctl and channel-bench.
//!
//! [`channelctl`] holds the operator tool's subcommands; `src/bin/channelctl.rs` only
//! parses the command line and maps the outcome to an exit code. [`offline`] holds the
//! logic of `channelctl inspect`, `verify`, `checkpoint` and `replay` on a stopped
//! channel: each function takes parsed options, writes a table (or JSON with `--json`) to
//! a writer and returns the process exit code; its report writers also print the
//! reports channeld sends for a live channel.

#![warn(missing_docs)]

pub mod channelctl;
pub mod offline;
