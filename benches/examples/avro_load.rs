//! Load generator for the `avro` source: N connections, each sending `appendBatch` calls
//! of B events of S bytes (one header each). With DEPTH 1 (the default) each connection
//! waits for each answer, as Flume's avro sink and RPC client do; with more it keeps
//! DEPTH calls unanswered (pipelined, as Avro IPC allows once the handshake is answered).
//! Prints one JSON line with the events/s over the whole run.
//!
//! ```text
//! cargo run --release -p millrace-benches --example avro_load -- \
//!     ADDRESS [EVENTS] [CONNECTIONS] [BATCH] [SIZE] [DEPTH]
//! ```
//!
//! Defaults: 2,000,000 events, 4 connections, batches of 100, 256-byte bodies. Used by
//! `benches/scripts/avro-bench.sh` (docs/perf.md, "Avro source and sink").

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Instant;

use millrace_avro::{
    CallLimits, CallOutcome, ClientSession, ClientStep, Compression, FrameLimits, Inbound, Status,
};

/// Room offered to each socket read.
const READ_CHUNK_BYTES: usize = 64 * 1024;

fn argument(position: usize, default: usize) -> usize {
    std::env::args()
        .nth(position)
        .map(|text| text.parse().expect("a number"))
        .unwrap_or(default)
}

/// Sends `calls` batches on one connection; returns the events answered OK.
/// Encodes the `call`th `appendBatch` of `batch` events into `request`; returns its serial.
fn encode_call(
    session: &mut ClientSession,
    request: &mut Vec<u8>,
    call: usize,
    batch: usize,
    body: &[u8],
) -> i32 {
    let mut writer = session.append_batch(request, batch).expect("a request");
    for index in 0..batch {
        let sequence = (call * batch + index).to_string();
        writer
            .push([("seq", sequence.as_str())], body)
            .expect("an event");
    }
    writer.finish().expect("a frame")
}

/// Sends `calls` calls on one connection, keeping up to `depth` of them unanswered
/// (the first alone, until its handshake is answered); returns the events accepted.
fn run_connection(address: &str, calls: usize, batch: usize, size: usize, depth: usize) -> usize {
    let mut stream = TcpStream::connect(address).expect("connect to the avro source");
    stream.set_nodelay(true).expect("nodelay");
    let mut session = ClientSession::new(CallLimits::default());
    let mut inbound = Inbound::new(FrameLimits::default(), Compression::None);
    let body = vec![b'x'; size];
    let mut request = Vec::new();
    let mut read = vec![0u8; READ_CHUNK_BYTES];
    let mut in_flight: HashMap<i32, usize> = HashMap::new();
    let mut accepted = 0;
    let mut sent = 0;
    let mut answered = 0;
    while answered < calls {
        // Until the first answer only one request may be in flight (the handshake).
        let window = if session.is_established() { depth } else { 1 };
        request.clear();
        while sent < calls && in_flight.len() < window {
            let serial = encode_call(&mut session, &mut request, sent, batch, &body);
            in_flight.insert(serial, sent);
            sent += 1;
        }
        stream.write_all(&request).expect("send");
        let frame = loop {
            if let Some(frame) = inbound.next_frame().expect("a well-framed answer") {
                break frame;
            }
            let count = stream.read(&mut read).expect("read the answer");
            assert!(count > 0, "the source closed the connection");
            inbound.read_buffer().extend_from_slice(&read[..count]);
        };
        match session.receive(&frame).expect("an answer") {
            ClientStep::Answered {
                serial,
                outcome: CallOutcome::Status(Status::Ok),
            } => {
                in_flight
                    .remove(&serial)
                    .expect("an answer to a call in flight");
                accepted += batch;
                answered += 1;
            }
            ClientStep::Answered { outcome, .. } => {
                panic!("the source answered {outcome:?}")
            }
            // The source did not know our protocol: the same call again.
            ClientStep::Resend { serial } => {
                let call = in_flight
                    .remove(&serial)
                    .expect("a resend of a call in flight");
                request.clear();
                let serial = encode_call(&mut session, &mut request, call, batch, &body);
                in_flight.insert(serial, call);
                stream.write_all(&request).expect("send");
                request.clear();
            }
        }
    }
    accepted
}

fn main() {
    let address = std::env::args()
        .nth(1)
        .expect("usage: avro_load ADDRESS [EVENTS] [CONNECTIONS] [BATCH] [SIZE] [DEPTH]");
    let events = argument(2, 2_000_000);
    let connections = argument(3, 4);
    let batch = argument(4, 100);
    let size = argument(5, 256);
    let depth = argument(6, 1).max(1);
    let calls_per_connection = events / (connections * batch);
    let started = Instant::now();
    let workers: Vec<_> = (0..connections)
        .map(|_| {
            let address = address.clone();
            std::thread::spawn(move || {
                run_connection(&address, calls_per_connection, batch, size, depth)
            })
        })
        .collect();
    let accepted: usize = workers
        .into_iter()
        .map(|worker| worker.join().expect("a connection thread"))
        .sum();
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "{{\"events\":{accepted},\"connections\":{connections},\"batch\":{batch},\"size\":{size},\"in_flight\":{depth},\"seconds\":{seconds:.3},\"events_per_s\":{:.0}}}",
        accepted as f64 / seconds
    );
}
