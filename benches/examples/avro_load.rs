//! Load generator for the `avro` source: N connections, each sending `appendBatch` calls
//! of B events of S bytes (one header each) and waiting for each answer, as Flume's avro
//! sink and RPC client do. Prints one JSON line with the events/s over the whole run.
//!
//! ```text
//! cargo run --release -p millrace-benches --example avro_load -- \
//!     ADDRESS [EVENTS] [CONNECTIONS] [BATCH] [SIZE]
//! ```
//!
//! Defaults: 2,000,000 events, 4 connections, batches of 100, 256-byte bodies. Used by
//! `benches/scripts/avro-bench.sh` (docs/perf.md, "Avro source and sink").

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
fn run_connection(address: &str, calls: usize, batch: usize, size: usize) -> usize {
    let mut stream = TcpStream::connect(address).expect("connect to the avro source");
    stream.set_nodelay(true).expect("nodelay");
    let mut session = ClientSession::new(CallLimits::default());
    let mut inbound = Inbound::new(FrameLimits::default(), Compression::None);
    let body = vec![b'x'; size];
    let mut request = Vec::new();
    let mut read = vec![0u8; READ_CHUNK_BYTES];
    let mut accepted = 0;
    let mut call = 0;
    while call < calls {
        request.clear();
        let mut writer = session
            .append_batch(&mut request, batch)
            .expect("a request");
        for index in 0..batch {
            let sequence = (call * batch + index).to_string();
            writer
                .push([("seq", sequence.as_str())], &body)
                .expect("an event");
        }
        writer.finish().expect("a frame");
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
                outcome: CallOutcome::Status(Status::Ok),
                ..
            } => {
                accepted += batch;
                call += 1;
            }
            ClientStep::Answered { outcome, .. } => {
                panic!("the source answered {outcome:?}")
            }
            // The source did not know our protocol: the same call again.
            ClientStep::Resend { .. } => {}
        }
    }
    accepted
}

fn main() {
    let address = std::env::args()
        .nth(1)
        .expect("usage: avro_load ADDRESS [EVENTS] [CONNECTIONS] [BATCH] [SIZE]");
    let events = argument(2, 2_000_000);
    let connections = argument(3, 4);
    let batch = argument(4, 100);
    let size = argument(5, 256);
    let calls_per_connection = events / (connections * batch);
    let started = Instant::now();
    let workers: Vec<_> = (0..connections)
        .map(|_| {
            let address = address.clone();
            std::thread::spawn(move || run_connection(&address, calls_per_connection, batch, size))
        })
        .collect();
    let accepted: usize = workers
        .into_iter()
        .map(|worker| worker.join().expect("a connection thread"))
        .sum();
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "{{\"events\":{accepted},\"connections\":{connections},\"batch\":{batch},\"size\":{size},\"seconds\":{seconds:.3},\"events_per_s\":{:.0}}}",
        accepted as f64 / seconds
    );
}
