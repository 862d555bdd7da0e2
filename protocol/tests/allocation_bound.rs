//! Decoding never allocates more than the bytes actually received justify, whatever the
//! length prefixes and counts inside them claim.
//!
//! A counting global allocator records the peak of live heap bytes while a decoder runs.
//! This file holds a single test so no other thread allocates during a measurement.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::BytesMut;
use millrace_protocol::{
    DecodeLimits, Encoder, ErrorResponse, Hello, HelloAccepted, Request, RequestDecoder, RequestId,
    Response, ResponseDecoder, MAGIC, MIN_MAX_FRAME_BYTES,
};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

struct CountingAllocator;

static LIVE_BYTES: AtomicUsize = AtomicUsize::new(0);
static PEAK_BYTES: AtomicUsize = AtomicUsize::new(0);

// A global allocator is an unsafe trait; this one only counts and hands every call to
// the system allocator unchanged.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded unchanged to the system allocator.
        let pointer = unsafe { System.alloc(layout) };
        if !pointer.is_null() {
            let live = LIVE_BYTES.fetch_add(layout.size(), Ordering::SeqCst) + layout.size();
            PEAK_BYTES.fetch_max(live, Ordering::SeqCst);
        }
        pointer
    }

    unsafe fn dealloc(&self, pointer: *mut u8, layout: Layout) {
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.dealloc(pointer, layout) };
        LIVE_BYTES.fetch_sub(layout.size(), Ordering::SeqCst);
    }
}

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

/// Runs `work` and returns how far live heap bytes rose above where they started.
fn peak_allocation_of(work: impl FnOnce()) -> usize {
    let baseline = LIVE_BYTES.load(Ordering::SeqCst);
    PEAK_BYTES.store(baseline, Ordering::SeqCst);
    work();
    PEAK_BYTES.load(Ordering::SeqCst) - baseline
}

/// Fixed allowance for small bookkeeping: the `Vec` of at most 255 error fields or stats
/// counters (255 × 32 bytes) reserved from a count before its entries are read, the few
/// bytes a `NotMillrace` error keeps, and the decoder's copy of its error.
const BOOKKEEPING_ALLOWANCE_BYTES: usize = 16 * 1024;

/// What decoding `input_bytes` may allocate: one copy of the frame (the slice API copies
/// it into shared bytes), the strings parsed out of it (never more than the frame), and
/// the fixed allowance.
fn allowance_for(input_bytes: usize) -> usize {
    2 * input_bytes + BOOKKEEPING_ALLOWANCE_BYTES
}

fn hello_bytes() -> Vec<u8> {
    let mut out = Vec::new();
    Encoder::default()
        .encode_request(RequestId(1), &Request::Hello(Hello::new("alloc")), &mut out)
        .unwrap();
    out
}

fn accepted_bytes() -> Vec<u8> {
    let mut out = Vec::new();
    let accepted = HelloAccepted {
        version: 1,
        max_frame_bytes: MIN_MAX_FRAME_BYTES,
        server_name: "alloc".into(),
    };
    Encoder::default()
        .encode_response(RequestId(1), &Response::HelloAccepted(accepted), &mut out)
        .unwrap();
    out
}

/// Frames whose counts and lengths claim far more than is there.
fn lying_frames() -> Vec<Vec<u8>> {
    let header = |length: u32, frame_type: u8| {
        let mut frame = length.to_le_bytes().to_vec();
        frame.push(frame_type);
        frame.extend_from_slice(&2u32.to_le_bytes());
        frame
    };
    let mut put_with_huge_count = header(9, 0x04);
    put_with_huge_count.extend_from_slice(&u32::MAX.to_le_bytes());
    let mut error_with_255_fields = header(11, 0x80);
    error_with_255_fields.extend_from_slice(&[101, 0, 0, 0, 0, 255]);
    vec![
        u32::MAX.to_le_bytes().to_vec(),
        header(u32::MAX - 4, 0x04),
        put_with_huge_count,
        error_with_255_fields,
    ]
}

#[test]
fn decoding_allocates_in_proportion_to_received_bytes_not_claimed_lengths() {
    let limits = DecodeLimits::new(MIN_MAX_FRAME_BYTES).unwrap();
    let server_prefixes = [Vec::new(), MAGIC.to_vec(), hello_bytes()];
    let client_prefixes = [Vec::new(), MAGIC.to_vec(), accepted_bytes()];

    let check_request_stream = |input: &[u8]| {
        let peak = peak_allocation_of(|| {
            let mut decoder = RequestDecoder::new(limits);
            let mut rest = input;
            while let Ok(Some((_, used))) = decoder.decode_slice(rest) {
                rest = &rest[used..];
            }
        });
        assert!(
            peak <= allowance_for(input.len()),
            "decoding {} request bytes allocated {peak} bytes",
            input.len()
        );
    };
    let check_response_stream = |input: &[u8]| {
        let mut buffer = BytesMut::from(input);
        let peak = peak_allocation_of(|| {
            let mut decoder = ResponseDecoder::new(limits);
            while let Ok(Some(_)) = decoder.decode(&mut buffer) {}
        });
        assert!(
            peak <= allowance_for(input.len()),
            "decoding {} response bytes allocated {peak} bytes",
            input.len()
        );
    };

    for frame in lying_frames() {
        check_request_stream(&[hello_bytes(), frame.clone()].concat());
        check_response_stream(&[accepted_bytes(), frame].concat());
    }
    let rejection = {
        let mut out = Vec::new();
        Encoder::default()
            .encode_response(
                RequestId(1),
                &Response::HandshakeRejected(ErrorResponse::internal("x")),
                &mut out,
            )
            .unwrap();
        out
    };
    check_response_stream(&rejection);

    let mut runner = TestRunner::new(Config {
        cases: 512,
        ..Config::default()
    });
    let strategy = (
        0..3usize,
        prop::collection::vec(any::<u8>(), 0..2048),
        any::<bool>(),
    );
    runner
        .run(&strategy, |(prefix_index, tail, server_side)| {
            if server_side {
                check_request_stream(&[server_prefixes[prefix_index].clone(), tail].concat());
            } else {
                check_response_stream(&[client_prefixes[prefix_index].clone(), tail].concat());
            }
            Ok(())
        })
        .unwrap();
}
