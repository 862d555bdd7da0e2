//! Shared code for channelctl and channel-bench.
//!
//! [`offline`] holds the logic of `channelctl inspect`, `verify`, `checkpoint` and
//! `replay` on a stopped channel: each function takes parsed options, writes a table (or
//! JSON with `--json`) to a writer and returns the process exit code.

pub mod offline;
