//! Avro RPC on the avro source's and sink's hot paths: an `appendBatch` of 100 events of
//! 256 bytes (one header each), as issue 20's throughput targets send them.
//!
//! * encode: our sink's client session writes the request frame (past the handshake);
//! * decode: the source's inbound pipeline splits 100 such frames off its read buffer
//!   and the server session decodes each into owned events whose bodies share the frame;
//! * both again with `compression-type = deflate` (level 6, Flume's), where the zlib
//!   work dominates.

use std::hint::black_box;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use millrace_avro::{
    AvroFlumeEvent, CallLimits, CallOutcome, ClientProtocolCache, ClientSession, ClientStep,
    Compression, FrameLimits, Inbound, Outbound, ServerSession, ServerStep, Status,
};

/// Events per `appendBatch`.
const EVENTS_PER_CALL: usize = 100;
/// Body size of each event.
const BODY_BYTES: usize = 256;
/// Frames decoded per measured batch, so that one batch's setup is amortised.
const FRAMES_PER_DECODE_BATCH: usize = 100;
/// Flume's avro source compresses at this level.
const DEFLATE: Compression = Compression::Deflate { level: 6 };

fn events() -> Vec<AvroFlumeEvent> {
    (0..EVENTS_PER_CALL)
        .map(|index| {
            AvroFlumeEvent::new(vec![index as u8; BODY_BYTES]).with_header("host", "bench")
        })
        .collect()
}

/// A client and a server session past their handshake (one round trip).
fn established_pair() -> (ClientSession, ServerSession) {
    let mut client = ClientSession::new(CallLimits::default());
    let mut server = ServerSession::new(
        Arc::new(ClientProtocolCache::default()),
        CallLimits::default(),
    );
    let mut request = Vec::new();
    client
        .append_batch_events(&[], &mut request)
        .expect("an empty batch encodes");
    let mut inbound = Inbound::new(FrameLimits::default(), Compression::None);
    inbound.read_buffer().extend_from_slice(&request);
    let frame = inbound.next_frame().expect("valid").expect("whole");
    let ServerStep::Call { reply, .. } = server.receive(&frame.message).expect("a known client")
    else {
        panic!("a known client's call is executed");
    };
    let mut response = Vec::new();
    reply
        .encode(
            frame.serial,
            &CallOutcome::Status(Status::Ok),
            &mut response,
        )
        .expect("a response encodes");
    let mut inbound = Inbound::new(FrameLimits::default(), Compression::None);
    inbound.read_buffer().extend_from_slice(&response);
    let answer = inbound.next_frame().expect("valid").expect("whole");
    assert!(matches!(
        client.receive(&answer),
        Ok(ClientStep::Answered { .. })
    ));
    (client, server)
}

/// The wire bytes of `frames` appendBatch requests from an established client.
fn request_stream(events: &[AvroFlumeEvent], frames: usize, compression: Compression) -> Vec<u8> {
    let (mut client, _) = established_pair();
    let mut outbound = Outbound::new(compression).expect("a valid level");
    let mut wire = Vec::new();
    for _ in 0..frames {
        let mut request = Vec::new();
        client
            .append_batch_events(events, &mut request)
            .expect("a batch encodes");
        wire.extend_from_slice(outbound.wire_bytes(&request).expect("compresses"));
    }
    wire
}

fn avro(criterion: &mut Criterion) {
    let events = events();
    let mut group = criterion.benchmark_group("avro");
    group.throughput(Throughput::Elements(EVENTS_PER_CALL as u64));
    for (name, compression) in [("plain", Compression::None), ("deflate", DEFLATE)] {
        group.bench_function(format!("encode_append_batch_100x256_{name}"), |bench| {
            bench.iter_batched_ref(
                || {
                    let (client, _) = established_pair();
                    (
                        client,
                        Outbound::new(compression).expect("a valid level"),
                        Vec::with_capacity(64 * 1024),
                    )
                },
                |(client, outbound, request)| {
                    request.clear();
                    client
                        .append_batch_events(&events, request)
                        .expect("a batch encodes");
                    black_box(outbound.wire_bytes(request).expect("compresses"));
                },
                BatchSize::SmallInput,
            )
        });
    }
    group.throughput(Throughput::Elements(
        (EVENTS_PER_CALL * FRAMES_PER_DECODE_BATCH) as u64,
    ));
    for (name, compression) in [("plain", Compression::None), ("deflate", DEFLATE)] {
        let wire = request_stream(&events, FRAMES_PER_DECODE_BATCH, compression);
        group.bench_function(
            format!("decode_100_append_batches_100x256_{name}"),
            |bench| {
                bench.iter_batched(
                    || {
                        let (_, server) = established_pair();
                        let mut inbound = Inbound::new(FrameLimits::default(), compression);
                        inbound.read_buffer().extend_from_slice(&wire);
                        (server, inbound)
                    },
                    |(mut server, mut inbound)| {
                        while let Some(frame) = inbound.next_frame().expect("valid frames") {
                            match server.receive(&frame.message).expect("valid calls") {
                                ServerStep::Call { message, .. } => {
                                    black_box(message.into_events());
                                }
                                other => panic!("unexpected {other:?}"),
                            }
                        }
                    },
                    BatchSize::LargeInput,
                )
            },
        );
    }
    group.finish();
}

criterion_group!(benches, avro);
criterion_main!(benches);
