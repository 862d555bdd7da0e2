//! Fuzzes both stream decoders with arbitrary bytes delivered in arbitrary pieces.
//!
//! Input layout: byte 0 picks the direction and what valid bytes come first (nothing, the
//! magic, or a whole handshake, so the fuzzer reaches the frame parsers quickly); byte 1
//! seeds the sizes of the reads; the rest is the stream.
//!
//! Checked on every input:
//! * no panic, whatever the bytes (libFuzzer also catches OOM and timeouts);
//! * split invariance: decoding the stream in pieces through `BytesMut` gives the same
//!   frames and error as decoding it in one go through the slice API;
//! * decoded event batches re-encode to the bytes they were decoded from.
#![no_main]

mod read_sizes;

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use millrace_protocol::{
    DecodeError, DecodeLimits, Encoder, EventBatchBuilder, Hello, HelloAccepted, Request,
    RequestDecoder, RequestFrame, RequestId, Response, ResponseDecoder, ResponseFrame, MAGIC,
    MIN_MAX_FRAME_BYTES,
};
use read_sizes::read_sizes;

/// A small limit, so that length prefixes made of fuzz bytes often cross it.
fn limits() -> DecodeLimits {
    DecodeLimits::new(MIN_MAX_FRAME_BYTES).expect("the minimum is a valid limit")
}

fn hello_bytes() -> Vec<u8> {
    let mut out = Vec::new();
    Encoder::default()
        .encode_request(RequestId(1), &Request::Hello(Hello::new("fuzz")), &mut out)
        .expect("a valid hello");
    out
}

fn accepted_bytes() -> Vec<u8> {
    let accepted = HelloAccepted {
        version: 1,
        max_frame_bytes: MIN_MAX_FRAME_BYTES,
        server_name: "fuzz".into(),
    };
    let mut out = Vec::new();
    Encoder::default()
        .encode_response(RequestId(1), &Response::HelloAccepted(accepted), &mut out)
        .expect("a valid hello");
    out
}

/// Decodes with `decode` after every piece; returns the frames and the error, if any.
fn in_pieces<F>(
    stream: &[u8],
    sizes: &[usize],
    mut decode: impl FnMut(&mut BytesMut) -> Result<Option<F>, DecodeError>,
) -> (Vec<F>, Option<DecodeError>) {
    let mut buffer = BytesMut::new();
    let mut frames = Vec::new();
    let mut offset = 0;
    for size in sizes {
        buffer.extend_from_slice(&stream[offset..offset + size]);
        offset += size;
        loop {
            match decode(&mut buffer) {
                Ok(Some(frame)) => frames.push(frame),
                Ok(None) => break,
                Err(error) => return (frames, Some(error)),
            }
        }
    }
    (frames, None)
}

/// Decodes the whole stream at once with `decode_slice`.
fn at_once<F>(
    mut stream: &[u8],
    mut decode: impl FnMut(&[u8]) -> Result<Option<(F, usize)>, DecodeError>,
) -> (Vec<F>, Option<DecodeError>) {
    let mut frames = Vec::new();
    loop {
        match decode(stream) {
            Ok(Some((frame, used))) => {
                frames.push(frame);
                stream = &stream[used..];
            }
            Ok(None) => return (frames, None),
            Err(error) => return (frames, Some(error)),
        }
    }
}

fn check_batch_re_encodes(batch: &millrace_protocol::EventBatch) {
    let mut builder = EventBatchBuilder::new();
    for view in batch {
        let headers: Vec<(&str, &str)> = view.headers().collect();
        builder
            .push(&headers, view.body())
            .expect("a decoded event re-encodes");
    }
    assert_eq!(&builder.build(), batch);
}

fn check_requests(frames: &[RequestFrame]) {
    for frame in frames {
        if let Request::Put { events } | Request::PutCommit { events, .. } = &frame.request {
            check_batch_re_encodes(events);
        }
    }
}

fn check_responses(frames: &[ResponseFrame]) {
    for frame in frames {
        if let Response::Events(events) = &frame.response {
            check_batch_re_encodes(events);
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let [mode, seed, rest @ ..] = data else {
        return;
    };
    let server_side = mode & 1 == 0;
    let prefix = match (mode >> 1) % 3 {
        0 => Vec::new(),
        1 => MAGIC.to_vec(),
        _ if server_side => hello_bytes(),
        _ => accepted_bytes(),
    };
    let stream = [prefix.as_slice(), rest].concat();
    let sizes = read_sizes(*seed, stream.len());

    if server_side {
        let mut piecewise = RequestDecoder::new(limits());
        let mut whole = RequestDecoder::new(limits());
        let pieces = in_pieces(&stream, &sizes, |buffer| piecewise.decode(buffer));
        let once = at_once(&stream, |input| whole.decode_slice(input));
        assert_eq!(pieces, once, "split changed the decoding");
        check_requests(&once.0);
    } else {
        let mut piecewise = ResponseDecoder::new(limits());
        let mut whole = ResponseDecoder::new(limits());
        let pieces = in_pieces(&stream, &sizes, |buffer| piecewise.decode(buffer));
        let once = at_once(&stream, |input| whole.decode_slice(input));
        assert_eq!(pieces, once, "split changed the decoding");
        check_responses(&once.0);
    }
});
