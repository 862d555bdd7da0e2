//! channeld: configuration, listener, sessions, metrics and health.
pub mod config;
