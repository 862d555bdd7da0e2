//! channeld: configuration, listener, sessions, metrics and health.
