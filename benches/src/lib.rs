//! Criterion micro-benchmarks live in `benches/`; see docs/perf.md for how to run them.

#![warn(missing_docs)]
