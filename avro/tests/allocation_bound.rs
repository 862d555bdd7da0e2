//! Decoding Avro RPC never allocates more than the bytes actually received justify,
//! whatever the lengths, counts and block sizes inside them claim, with the default
//! (large) caps in force.
//!
//! A counting global allocator records the peak of live heap bytes while the framing,
//! inflation and the server and client sessions run. This file holds a single test so
//! no other thread allocates during a measurement.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use millrace_avro::{
    binary, AvroFlumeEvent, CallLimits, ClientProtocolCache, ClientSession, Compression,
    FrameLimits, Inbound, NettyFrame, Outbound, ServerSession,
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

/// What one received byte may cost at most: 1 for the received copy; 56 for the items
/// parsed from it (an event of 2 bytes on the wire, `00 00`, is a 56-byte
/// `AvroFlumeEvent`, and a `Vec` grown block by block may hold up to twice its items);
/// the rest for the JSON tree of a protocol text, which is part of the input.
const ALLOWANCE_PER_INPUT_BYTE: usize = 96;

/// Fixed allowance: the inflater's state and first output chunk (zlib's window is 32
/// KiB, its state a few more, the chunk 64 KiB) and error values.
const FIXED_ALLOWANCE_BYTES: usize = 256 * 1024;

/// What decoding `input_bytes` may allocate.
fn allowance_for(input_bytes: usize) -> usize {
    input_bytes * ALLOWANCE_PER_INPUT_BYTE + FIXED_ALLOWANCE_BYTES
}

/// Requests whose counts and lengths claim far more than is there.
fn lying_messages() -> Vec<Vec<u8>> {
    let mut first = Vec::new();
    ClientSession::new(CallLimits::default())
        .append_batch_events(&[AvroFlumeEvent::new("x")], &mut first)
        .unwrap();
    let handshake_and_head = &first[12..12 + 48];
    let with_count = |count: i64, tail: &[u8]| {
        let mut message = handshake_and_head.to_vec();
        binary::write_long(&mut message, count);
        message.extend_from_slice(tail);
        message
    };
    vec![
        with_count(100_000, &[0, 0]),
        with_count(-100_000, &[0x80, 0x80, 0x04, 0, 0]),
        with_count(1, &[0xfe, 0xff, 0xff, 0xff, 0x0f]),
        with_count(1, &[0x02, 0xfe, 0xff, 0xff, 0xff, 0x0f]),
        with_count(i64::MAX, &[]),
        with_count(i64::MIN, &[0]),
    ]
}

fn frame_of(message: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    millrace_avro::encode_frame(1, &[message], &mut out).unwrap();
    out
}

/// Decodes `wire` as a server and as a client would, dropping everything.
fn decode_everything(wire: &[u8], compression: Compression) {
    let cache = Arc::new(ClientProtocolCache::default());
    let mut inbound = Inbound::new(FrameLimits::default(), compression);
    inbound.read_buffer().extend_from_slice(wire);
    let mut server = ServerSession::new(cache, CallLimits::default());
    let mut client = ClientSession::new(CallLimits::default());
    let mut request = Vec::new();
    client.append_batch_events(&[], &mut request).unwrap();
    while let Ok(Some(frame)) = inbound.next_frame() {
        let _ = server.receive(&frame.message);
        let _ = client.receive(&NettyFrame {
            serial: 1,
            message: frame.message.clone(),
        });
        let _ = millrace_avro::decode_event_datum(&frame.message, &CallLimits::default());
    }
}

#[test]
fn decoding_allocates_in_proportion_to_received_bytes_not_claimed_counts() {
    let check = |wire: &[u8], compression: Compression, plain_bytes: usize| {
        let peak = peak_allocation_of(|| decode_everything(wire, compression));
        assert!(
            peak <= allowance_for(plain_bytes),
            "decoding {plain_bytes} bytes ({compression:?}) allocated {peak} bytes at peak, more than {}",
            allowance_for(plain_bytes)
        );
    };
    for message in lying_messages() {
        let wire = frame_of(&message);
        check(&wire, Compression::None, wire.len());
        let deflated = Outbound::new(Compression::Deflate { level: 6 })
            .unwrap()
            .wire_bytes(&wire)
            .unwrap()
            .to_vec();
        check(&deflated, Compression::Deflate { level: 6 }, wire.len());
    }
    // A frame head claiming the largest buffers allowed, with nothing behind it.
    let huge = [0, 0, 0, 1, 0, 0, 0, 1, 0x00, 0xff, 0xff, 0xff];
    check(&huge, Compression::None, huge.len());

    let mut runner = TestRunner::new(Config {
        cases: 512,
        ..Config::default()
    });
    let mutated = (
        0usize..6,
        proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..8),
        proptest::collection::vec(any::<u8>(), 0..256),
    );
    runner
        .run(&mutated, |(base, mutations, tail)| {
            let mut message = lying_messages().swap_remove(base % 6);
            message.extend_from_slice(&tail);
            for (index, byte) in mutations {
                let at = index.index(message.len());
                message[at] = byte;
            }
            let wire = frame_of(&message);
            check(&wire, Compression::None, wire.len());
            check(&message, Compression::None, message.len());
            Ok(())
        })
        .unwrap();
}
