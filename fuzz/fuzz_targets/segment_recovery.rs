//! Fuzzes segment recovery: a channel whose log is arbitrary bytes must open or refuse to
//! open with an error, and drain what it opened, without panicking.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    millrace_engine::fuzzing::recover_segment_bytes(bytes);
});
