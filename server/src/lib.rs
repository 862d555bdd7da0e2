//! channeld: listener, per-connection sessions, metrics and health, adapter supervision.
//!
//! The server is the only place that joins live channels of the engine
//! (`millrace-engine`, blocking, knows nothing about sockets) to the wire codec
//! (`millrace-protocol`, sans IO). It reads its configuration with `millrace-config`,
//! opens channels and builds the operator reports with `millrace-ops`, and logs through
//! `millrace-logging`; nothing depends on this crate (see the Map in `docs/design.md`).
//!
//! ```text
//! client ─TCP─► listener ─► session ─(blocking pool)─► Arc<dyn Channel> ─► disk
//!                              │                            ▲
//!                              └── error_mapping ◄── ChannelError
//! HTTP ─► http ─► metrics / health ─► registry (every channel, its state)
//! ```
//!
//! [`daemon`] runs it all from start to stop; [`cli`] is the command line. They are the
//! crate's whole public surface: what `main.rs` calls. The end-to-end tests run the
//! binary.

#![warn(missing_docs)]

mod adapters;
pub mod cli;
mod commit_timing;
pub mod daemon;
mod descriptors;
mod error_mapping;
mod health;
mod http;
mod listener;
mod metrics;
mod registry;
mod reports;
mod session;
mod shutdown;
mod status;
mod systemd;

// The configuration and the log escaper under the names the modules use.
use millrace_config as config;
use millrace_logging as logging;
