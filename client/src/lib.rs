//! Async client library for channeld.
