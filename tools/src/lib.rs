//! Shared code for channelctl and channel-bench.
//!
//! [`channelctl`] holds the operator tool's subcommands; `src/bin/channelctl.rs` only
//! parses the command line and maps the outcome to an exit code.

pub mod channelctl;
