//! Millrace storage engine: file, memory and spillable channels.
pub mod config;
