//! The wire codec on the hot path: a producer's `PutCommit` frame encoded by the client
//! and decoded by the server, and a consumer's `Events` frame encoded by the server and
//! decoded by the client. Batches of 100 events, as in the performance targets.

use std::hint::black_box;

use bytes::BytesMut;
use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion, Throughput};
use millrace_protocol::{
    DecodeLimits, Encoder, Event, Hello, HelloAccepted, Request, RequestDecoder, RequestId,
    Response, ResponseDecoder, DEFAULT_MAX_FRAME_BYTES,
};

/// Event body sizes measured: the targets' small-event shape and a 4 KiB shape.
const BODY_SIZES_BYTES: [usize; 2] = [256, 4096];
/// Events per frame.
const EVENTS_PER_FRAME: usize = 100;
/// Frames decoded per measured batch, so that one batch's setup is amortised.
const FRAMES_PER_DECODE_BATCH: usize = 100;
/// The channel the frames name.
const CHANNEL: &str = "c1";

fn events(body_bytes: usize) -> Vec<Event> {
    (0..EVENTS_PER_FRAME)
        .map(|index| Event::new(vec![index as u8; body_bytes]).with_header("host", "bench"))
        .collect()
}

fn put_commit_frame(encoder: &Encoder, events: &[Event], out: &mut BytesMut) {
    let mut writer = encoder
        .put_commit_writer(out, RequestId(1), CHANNEL)
        .expect("a valid channel name");
    for event in events {
        writer.push_event(event).expect("the frame has room");
    }
    writer.finish().expect("the frame has room");
}

fn events_frame(encoder: &Encoder, events: &[Event], out: &mut BytesMut) {
    let mut writer = encoder.events_writer(out, RequestId(1));
    for event in events {
        writer.push_event(event).expect("the frame has room");
    }
    writer.finish().expect("the frame has room");
}

/// A request decoder past the handshake, and the bytes of `frames` copies of `frame`.
fn request_stream(frame: &[u8], frames: usize) -> (RequestDecoder, BytesMut) {
    let mut decoder = RequestDecoder::new(DecodeLimits::default());
    let mut hello = BytesMut::new();
    Encoder::default()
        .encode_request(
            RequestId(0),
            &Request::Hello(Hello::new("bench")),
            &mut hello,
        )
        .expect("a hello encodes");
    decoder
        .decode(&mut hello)
        .expect("a hello decodes")
        .expect("a whole hello");
    (decoder, repeated(frame, frames))
}

/// A response decoder past the handshake, and the bytes of `frames` copies of `frame`.
fn response_stream(frame: &[u8], frames: usize) -> (ResponseDecoder, BytesMut) {
    let mut decoder = ResponseDecoder::new(DecodeLimits::default());
    let accepted = Response::HelloAccepted(HelloAccepted {
        version: 1,
        max_frame_bytes: DEFAULT_MAX_FRAME_BYTES,
        server_name: "bench".into(),
    });
    let mut handshake = BytesMut::new();
    Encoder::default()
        .encode_response(RequestId(0), &accepted, &mut handshake)
        .expect("a handshake answer encodes");
    decoder
        .decode(&mut handshake)
        .expect("a handshake answer decodes")
        .expect("a whole handshake answer");
    (decoder, repeated(frame, frames))
}

fn repeated(frame: &[u8], frames: usize) -> BytesMut {
    let mut stream = BytesMut::with_capacity(frame.len() * frames);
    for _ in 0..frames {
        stream.extend_from_slice(frame);
    }
    stream
}

fn codec(criterion: &mut Criterion) {
    // A peer that takes the default frame limit (16 MiB), as channeld and the client do.
    let encoder = Encoder::new(DEFAULT_MAX_FRAME_BYTES);
    let mut group = criterion.benchmark_group("codec");
    for body_bytes in BODY_SIZES_BYTES {
        let events = events(body_bytes);
        let mut frame = BytesMut::new();
        group.throughput(Throughput::Elements(EVENTS_PER_FRAME as u64));
        group.bench_with_input(
            BenchmarkId::new("encode_put_commit_100_events", body_bytes),
            &events,
            |bench, events| {
                bench.iter(|| {
                    frame.clear();
                    put_commit_frame(&encoder, events, &mut frame);
                    black_box(&frame);
                })
            },
        );
        group.bench_with_input(
            BenchmarkId::new("encode_events_100_events", body_bytes),
            &events,
            |bench, events| {
                bench.iter(|| {
                    frame.clear();
                    events_frame(&encoder, events, &mut frame);
                    black_box(&frame);
                })
            },
        );

        frame.clear();
        put_commit_frame(&encoder, &events, &mut frame);
        let put_commit = frame.to_vec();
        frame.clear();
        events_frame(&encoder, &events, &mut frame);
        let events_answer = frame.to_vec();
        group.throughput(Throughput::Elements(
            (EVENTS_PER_FRAME * FRAMES_PER_DECODE_BATCH) as u64,
        ));
        group.bench_function(
            BenchmarkId::new("decode_put_commit_100_frames_of_100_events", body_bytes),
            |bench| {
                bench.iter_batched(
                    || request_stream(&put_commit, FRAMES_PER_DECODE_BATCH),
                    |(mut decoder, mut stream)| {
                        while let Some(frame) = decoder.decode(&mut stream).expect("valid frames") {
                            if let Request::PutCommit { events, .. } = frame.request {
                                for event in events.unshared().shared_events() {
                                    black_box(event);
                                }
                            }
                        }
                    },
                    BatchSize::LargeInput,
                )
            },
        );
        group.bench_function(
            BenchmarkId::new("decode_events_100_frames_of_100_events", body_bytes),
            |bench| {
                bench.iter_batched(
                    || response_stream(&events_answer, FRAMES_PER_DECODE_BATCH),
                    |(mut decoder, mut stream)| {
                        while let Some(frame) = decoder.decode(&mut stream).expect("valid frames") {
                            if let Response::Events(events) = frame.response {
                                for event in events.iter() {
                                    black_box(event.body());
                                }
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

criterion_group!(benches, codec);
criterion_main!(benches);
