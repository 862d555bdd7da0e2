//! Fuzzes checkpoint loading: arbitrary checkpoint bytes must be decoded or rejected, and a
//! channel holding them must start (from the log, if the checkpoint is unusable) without
//! panicking.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    millrace_engine::fuzzing::load_checkpoint_bytes(bytes);
});
