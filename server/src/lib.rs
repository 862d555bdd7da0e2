//! channeld: configuration, listener, per-connection sessions, metrics and health.
//!
//! The server is the only place that joins the engine (`millrace-engine`, blocking,
//! knows nothing about sockets) to the wire codec (`millrace-protocol`, sans IO):
//!
//! ```text
//! client ─TCP─► listener ─► session ─(blocking pool)─► Arc<dyn Channel> ─► disk
//!                              │                            ▲
//!                              └── error_mapping ◄── ChannelError
//! HTTP ─► http ─► metrics / health ─► registry (every channel, its state)
//! ```
//!
//! [`daemon`] runs it all from start to stop; [`cli`] is the command line. [`reports`]
//! builds the operator reports (inspect, replay) that sessions send and that `channelctl`
//! builds alike for a stopped channel.

#![warn(missing_docs)]

pub mod adapters;
pub mod cli;
pub mod config;
pub mod daemon;
pub mod descriptors;
pub mod error_mapping;
pub mod health;
pub mod http;
pub mod listener;
pub mod logging;
pub mod metrics;
pub mod registry;
pub mod reports;
pub mod session;
pub mod shutdown;
