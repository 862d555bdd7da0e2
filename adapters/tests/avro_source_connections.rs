//! The avro source's connections: a client that pipelines its calls (several serials in
//! flight on one connection, as Avro IPC allows once the handshake is answered) gets each
//! call answered by its serial, `OK` exactly for the calls whose events were committed;
//! a client that trickles a request is cut off at `frameReadTimeout`.
//!
//! The client here is `millrace-avro`'s own codec: what is tested is the source's
//! handling of concurrent calls, not the wire (Apache Avro's Python implementation
//! checks the wire in `tests/tests/avro_flow.rs`).

use std::collections::{BTreeSet, HashMap};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use millrace_avro::{
    CallLimits, CallOutcome, ClientSession, ClientStep, Compression, FrameLimits, Inbound, Status,
};
use millrace_e2e::{free_port, wait_until, Server, ServerSetup, AGENT};

/// Longest a test waits for the source to listen.
const STUCK_TEST_TIMEOUT: Duration = Duration::from_secs(60);
/// Events per call.
const EVENTS_PER_CALL: usize = 10;
/// Calls sent without waiting, after the first.
const PIPELINED_CALLS: usize = 16;
/// Pause between the bytes of a trickled request.
const TRICKLE_INTERVAL: Duration = Duration::from_millis(50);
/// Calls whose events the channel has room for (the first one included).
const CALLS_THE_CHANNEL_HOLDS: usize = 10;

/// A connected client: its socket, codec session and what it has read.
struct PipeliningClient {
    stream: TcpStream,
    session: ClientSession,
    inbound: Inbound,
}

impl PipeliningClient {
    fn connect(port: u16) -> Self {
        let stream = TcpStream::connect(("127.0.0.1", port)).expect("connect to the avro source");
        stream
            .set_read_timeout(Some(STUCK_TEST_TIMEOUT))
            .expect("a read timeout");
        PipeliningClient {
            stream,
            session: ClientSession::new(CallLimits::default()),
            inbound: Inbound::new(FrameLimits::default(), Compression::None),
        }
    }

    /// Sends `appendBatch` of events `call/0` … `call/N` without waiting; returns its serial.
    fn send_call(&mut self, call: usize) -> i32 {
        let mut request = Vec::new();
        let mut writer = self
            .session
            .append_batch(&mut request, EVENTS_PER_CALL)
            .expect("a request");
        for index in 0..EVENTS_PER_CALL {
            writer
                .push(
                    [("call", call.to_string().as_str())],
                    format!("{call}/{index}").as_bytes(),
                )
                .expect("an event");
        }
        let serial = writer.finish().expect("a frame");
        self.stream.write_all(&request).expect("send a call");
        serial
    }

    /// The next answer: its serial and status.
    fn answer(&mut self) -> (i32, Status) {
        let mut read = vec![0u8; 64 * 1024];
        let frame = loop {
            if let Some(frame) = self.inbound.next_frame().expect("a well-framed answer") {
                break frame;
            }
            let count = self.stream.read(&mut read).expect("read an answer");
            assert!(count > 0, "the source closed the connection");
            self.inbound.read_buffer().extend_from_slice(&read[..count]);
        };
        match self.session.receive(&frame).expect("a valid answer") {
            ClientStep::Answered {
                serial,
                outcome: CallOutcome::Status(status),
            } => (serial, status),
            other => panic!("unexpected answer {other:?}"),
        }
    }
}

/// channeld with memory channel `c1` (`capacity`, transactions of [`EVENTS_PER_CALL`])
/// fed by avro source `r1` with `source_keys`; returns it with the source's port once
/// the source listens.
fn avro_source_server(capacity: usize, source_keys: &str) -> (Server, u16) {
    let port = free_port();
    let mut config = format!(
        "{AGENT}.channels = c1\n\
         {AGENT}.channels.c1.type = memory\n\
         {AGENT}.channels.c1.capacity = {capacity}\n\
         {AGENT}.channels.c1.transactionCapacity = {EVENTS_PER_CALL}\n\
         {AGENT}.channels.c1.keep-alive = 0\n\
         {AGENT}.sources = r1\n\
         {AGENT}.sources.r1.type = avro\n\
         {AGENT}.sources.r1.bind = 127.0.0.1\n\
         {AGENT}.sources.r1.port = {port}\n\
         {AGENT}.sources.r1.channels = c1\n"
    );
    for line in source_keys.lines() {
        config.push_str(&format!("{AGENT}.sources.r1.{}\n", line.trim()));
    }
    let server = Server::start(ServerSetup::with_config(config));
    let listening = wait_until(STUCK_TEST_TIMEOUT, || {
        TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    assert!(listening, "the avro source never listened on {port}");
    (server, port)
}

#[test]
fn pipelined_calls_are_answered_by_serial_ok_exactly_for_the_committed_ones() {
    let (server, port) = avro_source_server(
        CALLS_THE_CHANNEL_HOLDS * EVENTS_PER_CALL,
        "maxCallsInFlight = 8\nchanneldConnections = 8",
    );

    let mut client = PipeliningClient::connect(port);
    // The first call carries the handshake and is answered alone.
    let first = client.send_call(0);
    assert_eq!(client.answer(), (first, Status::Ok));
    assert!(client.session.is_established());

    let mut calls_by_serial = HashMap::new();
    for call in 1..=PIPELINED_CALLS {
        calls_by_serial.insert(client.send_call(call), call);
    }
    let mut committed_calls = BTreeSet::from([0]);
    let mut failed = 0;
    for _ in 0..PIPELINED_CALLS {
        let (serial, status) = client.answer();
        let call = calls_by_serial
            .remove(&serial)
            .unwrap_or_else(|| panic!("answer for serial {serial}, which is not in flight"));
        match status {
            Status::Ok => {
                committed_calls.insert(call);
            }
            Status::Failed => failed += 1,
            Status::Unknown => panic!("call {call} answered with an unknown status"),
        }
    }
    assert!(calls_by_serial.is_empty(), "every call answered once");
    assert_eq!(committed_calls.len(), CALLS_THE_CHANNEL_HOLDS);
    assert_eq!(failed, PIPELINED_CALLS + 1 - CALLS_THE_CHANNEL_HOLDS);

    // The channel holds the events of exactly the calls answered OK, each call whole.
    let events = server.drain_events("c1", 1000);
    let mut events_by_call: HashMap<usize, Vec<String>> = HashMap::new();
    for event in &events {
        let call: usize = event
            .headers
            .iter()
            .find(|(key, _)| key == "call")
            .map(|(_, value)| value.parse().expect("a call number"))
            .expect("a call header");
        events_by_call
            .entry(call)
            .or_default()
            .push(String::from_utf8(event.body.to_vec()).expect("text"));
    }
    assert_eq!(
        events_by_call.keys().copied().collect::<BTreeSet<_>>(),
        committed_calls
    );
    for (call, bodies) in &events_by_call {
        let expected: Vec<String> = (0..EVENTS_PER_CALL)
            .map(|index| format!("{call}/{index}"))
            .collect();
        assert_eq!(
            bodies, &expected,
            "call {call} committed whole and in order"
        );
    }
}

#[test]
fn a_client_trickling_a_request_is_cut_off_at_the_frame_read_timeout_and_delivers_nothing() {
    let (server, port) = avro_source_server(100, "frameReadTimeout = 1000\nidleTimeout = 600000");
    // A whole, valid call, sent a byte at a time, slower than frameReadTimeout allows
    // for the whole request though far faster than idleTimeout.
    let mut session = ClientSession::new(CallLimits::default());
    let mut request = Vec::new();
    let mut writer = session.append_batch(&mut request, 1).expect("a request");
    writer.push([("k", "v")], b"trickled").expect("an event");
    writer.finish().expect("a frame");
    let trickle_duration = TRICKLE_INTERVAL * request.len() as u32;
    assert!(trickle_duration > 4 * Duration::from_millis(1000));

    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_millis(1)))
        .expect("a read timeout");
    let mut sent = 0;
    let mut closed = false;
    for byte in &request {
        if stream.write_all(std::slice::from_ref(byte)).is_err() {
            closed = true;
            break;
        }
        sent += 1;
        std::thread::sleep(TRICKLE_INTERVAL);
        let mut probe = [0u8; 64];
        if let Ok(0) = stream.read(&mut probe) {
            closed = true;
            break;
        }
    }
    assert!(
        closed,
        "the source kept a connection that trickled a {}-byte request over {trickle_duration:?}",
        request.len()
    );
    assert!(
        sent < request.len(),
        "the connection was closed only after the whole request"
    );
    assert!(
        server.drain_events("c1", 100).is_empty(),
        "nothing of the cut request is delivered"
    );
}
