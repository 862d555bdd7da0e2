//! Fuzzes the Avro RPC receive path: Netty framing (optionally behind zlib), then the
//! server session's handshake and call decoding, and the client session's answer
//! decoding, with arbitrary bytes delivered in arbitrary pieces.
//!
//! Input layout: byte 0 picks the options (bit 0: the stream is zlib-compressed as with
//! `compression-type = deflate`; bit 1: a valid first request, so the fuzzer reaches
//! the established state quickly); byte 1 seeds the sizes of the reads; the rest is the
//! stream.
//!
//! Checked on every input:
//! * no panic, whatever the bytes (libFuzzer also catches OOM and timeouts);
//! * split invariance: the frames and error are the same however the stream is cut;
//! * decoded calls re-encode: a batch the server accepted, written again by our client,
//!   decodes to the same events.
#![no_main]

mod read_sizes;

use std::sync::Arc;

use libfuzzer_sys::fuzz_target;
use millrace_avro::{
    AvroFlumeEvent, CallLimits, ClientProtocolCache, ClientSession, Compression, FrameLimits,
    Inbound, Message, NettyFrame, Outbound, ServerSession, ServerStep,
};
use read_sizes::read_sizes;

/// Small caps, so that counts and lengths made of fuzz bytes often cross them.
fn frame_limits() -> FrameLimits {
    FrameLimits {
        max_frame_bytes: 64 * 1024,
        max_buffers_per_frame: 64,
        max_buffer_bytes: 32 * 1024,
    }
}

fn call_limits() -> CallLimits {
    CallLimits {
        max_events_per_call: 256,
        max_headers_per_event: 32,
        max_headers_per_call: 512,
        max_string_bytes: 1024,
        max_protocol_text_bytes: 8 * 1024,
        max_meta_entries: 8,
    }
}

fn decode(
    stream: &[u8],
    compression: Compression,
    sizes: &[usize],
) -> (Vec<NettyFrame>, Option<String>) {
    let mut inbound = Inbound::new(frame_limits(), compression);
    let mut frames = Vec::new();
    let mut offset = 0;
    for size in sizes {
        inbound
            .read_buffer()
            .extend_from_slice(&stream[offset..offset + size]);
        offset += size;
        loop {
            match inbound.next_frame() {
                Ok(Some(frame)) => frames.push(frame),
                Ok(None) => break,
                Err(error) => return (frames, Some(error.to_string())),
            }
        }
    }
    (frames, None)
}

fn check_re_encodes(events: &[AvroFlumeEvent]) {
    let mut client = ClientSession::new(call_limits());
    let mut request = Vec::new();
    client
        .append_batch_events(events, &mut request)
        .expect("accepted events re-encode");
    let (frames, error) = decode(&request, Compression::None, &[request.len()]);
    assert_eq!(error, None);
    let mut server = ServerSession::new(
        Arc::new(ClientProtocolCache::default()),
        CallLimits::default(),
    );
    match server.receive(&frames[0].message) {
        Ok(ServerStep::Call { message, .. }) => {
            assert_eq!(message, Message::AppendBatch(events.to_vec()))
        }
        other => panic!("re-encoded batch did not decode: {other:?}"),
    }
}

fuzz_target!(|data: &[u8]| {
    let [options, seed, rest @ ..] = data else {
        return;
    };
    let deflate = options & 1 == 1;
    let mut plain = Vec::new();
    if options & 2 == 2 {
        ClientSession::new(call_limits())
            .append_batch_events(
                &[AvroFlumeEvent::new("seed").with_header("k", "v")],
                &mut plain,
            )
            .expect("a valid request");
    }
    let (stream, compression) = if deflate {
        let compression = Compression::Deflate { level: 6 };
        // The prefix compressed, the fuzz bytes raw: they are the compressed stream's tail.
        let mut stream = Outbound::new(compression)
            .unwrap()
            .wire_bytes(&plain)
            .unwrap()
            .to_vec();
        stream.extend_from_slice(rest);
        (stream, compression)
    } else {
        plain.extend_from_slice(rest);
        (plain, Compression::None)
    };
    let sizes = read_sizes(*seed, stream.len());
    let pieces = decode(&stream, compression, &sizes);
    let whole = decode(&stream, compression, &[stream.len()]);
    assert_eq!(pieces, whole, "split changed the decoding");

    let mut server = ServerSession::new(Arc::new(ClientProtocolCache::default()), call_limits());
    let mut client = ClientSession::new(call_limits());
    let mut first = Vec::new();
    client
        .append_batch_events(&[], &mut first)
        .expect("an empty batch encodes");
    for frame in &whole.0 {
        if let Ok(ServerStep::Call { message, .. }) = server.receive(&frame.message) {
            check_re_encodes(&message.into_events());
        }
        let _ = client.receive(frame);
    }
});
