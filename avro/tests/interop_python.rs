//! Interoperability at the codec level with an independent implementation: Apache Avro's
//! own Python package (PyPI `avro`, version pinned in `tests/scripts/interop-venv.sh`),
//! driven through `tests/interop/avro_peer.py` as a child process whose stdin and stdout
//! carry the Netty-framed bytes (no sockets: those tests come with the source and sink).
//!
//! The venv is made by `tests/scripts/interop-venv.sh` under the build directory. When it
//! cannot be made (no python3 venv module, no PyPI), each test prints one line saying so
//! and passes as skipped, unless `CI=true`, where it fails (`millrace_prerequisites`).

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::mpsc;
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use bytes::Bytes;
use millrace_avro::{
    decode_event_datum, encode_event_datum, AvroFlumeEvent, CallLimits, CallOutcome,
    ClientProtocolCache, ClientSession, ClientStep, Compression, FrameLimits, HandshakeMatch,
    Inbound, Message, NettyFrame, Outbound, RequestProblem, ServerSession, ServerStep, Status,
    KNOWN_COMPATIBLE_PROTOCOLS,
};
use serde_json::{json, Value};

/// A Python peer that has not finished by then is killed and the test fails.
const PEER_DEADLINE: Duration = Duration::from_secs(120);

fn repository_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The interop venv's python (see `millrace_prerequisites::avro_python`).
fn python() -> Option<&'static Path> {
    millrace_prerequisites::avro_python(&repository_root())
}

fn peer_script() -> PathBuf {
    repository_root().join("tests/interop/avro_peer.py")
}

/// Kills `child` if it is still running after the deadline.
fn watchdog(child: &Child) -> mpsc::Sender<()> {
    let (done, wait) = mpsc::channel::<()>();
    let pid = child.id();
    thread::spawn(move || {
        if let Err(mpsc::RecvTimeoutError::Timeout) = wait.recv_timeout(PEER_DEADLINE) {
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
        }
    });
    done
}

/// Runs a peer command with `input` on stdin; returns its stdout.
fn run_peer(python: &Path, args: &[&str], input: &[u8]) -> Vec<u8> {
    let mut child = Command::new(python)
        .arg(peer_script())
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("the python peer starts");
    let _done = watchdog(&child);
    child.stdin.take().unwrap().write_all(input).unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success(), "avro_peer.py {args:?} failed");
    output.stdout
}

fn event_json(event: &AvroFlumeEvent) -> Value {
    let headers: serde_json::Map<String, Value> = event
        .headers
        .iter()
        .map(|(key, value)| (key.clone(), Value::String(value.clone())))
        .collect();
    json!({"headers": headers, "body": hex(&event.body)})
}

fn event_from_json(value: &Value) -> AvroFlumeEvent {
    AvroFlumeEvent {
        headers: value["headers"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(key, value)| (key.clone(), value.as_str().unwrap().to_string()))
            .collect(),
        body: Bytes::from(unhex(value["body"].as_str().unwrap())),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

fn unhex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|at| u8::from_str_radix(&text[at..at + 2], 16).unwrap())
        .collect()
}

/// Events with awkward contents: no headers, many, non-ASCII text, empty strings,
/// every byte value in a body, an empty body. Header keys sorted, as the JSON carrying
/// them to Python sorts them.
fn awkward_events() -> Vec<AvroFlumeEvent> {
    vec![
        AvroFlumeEvent::new("hi").with_header("k", "v"),
        AvroFlumeEvent::new(Bytes::new()),
        AvroFlumeEvent::new((0..=255u8).collect::<Vec<u8>>())
            .with_header("", "")
            .with_header("host", "web-1.example.com")
            .with_header("timestamp", "1700000000000")
            .with_header("ünïcödé ✓", "値 🦀"),
        AvroFlumeEvent::new(vec![0u8; 5000]).with_header("big", "x".repeat(300)),
    ]
}

#[test]
fn pythons_datum_writer_and_our_codec_agree_on_every_byte() {
    let Some(python) = python() else { return };
    let events = awkward_events();
    let input = serde_json::to_vec(&events.iter().map(event_json).collect::<Vec<_>>()).unwrap();
    let datums: Vec<String> =
        serde_json::from_slice(&run_peer(python, &["encode-datums"], &input)).unwrap();
    assert_eq!(datums.len(), events.len());
    for (datum, event) in datums.iter().zip(&events) {
        let bytes = unhex(datum);
        assert_eq!(
            decode_event_datum(&Bytes::from(bytes.clone()), &CallLimits::default()).unwrap(),
            *event
        );
        assert_eq!(bytes, encode_event_datum(event), "the same bytes both ways");
    }
    let ours: Vec<String> = events
        .iter()
        .map(|event| hex(&encode_event_datum(event)))
        .collect();
    let decoded: Vec<Value> = serde_json::from_slice(&run_peer(
        python,
        &["decode-datums"],
        &serde_json::to_vec(&ours).unwrap(),
    ))
    .unwrap();
    let decoded: Vec<AvroFlumeEvent> = decoded.iter().map(event_from_json).collect();
    assert_eq!(decoded, events);
}

/// A python peer speaking Netty frames on its stdin and stdout.
struct FramedPeer {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: ChildStdout,
    inbound: Inbound,
    outbound: Outbound,
    report: tempfile::NamedTempFile,
    _done: mpsc::Sender<()>,
}

impl FramedPeer {
    fn start(python: &Path, args: &[&str], compression: Compression) -> FramedPeer {
        let report = tempfile::NamedTempFile::new().unwrap();
        let mut command = Command::new(python);
        command
            .arg(peer_script())
            .args(args)
            .arg("--report")
            .arg(report.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped());
        if compression != Compression::None {
            command.arg("--deflate");
        }
        let mut child = command.spawn().expect("the python peer starts");
        let done = watchdog(&child);
        FramedPeer {
            stdin: child.stdin.take(),
            stdout: child.stdout.take().unwrap(),
            child,
            inbound: Inbound::new(FrameLimits::default(), compression),
            outbound: Outbound::new(compression).unwrap(),
            report,
            _done: done,
        }
    }

    /// The next frame from the peer, `None` when it closed its stdout.
    fn next_frame(&mut self) -> Option<NettyFrame> {
        loop {
            if let Some(frame) = self
                .inbound
                .next_frame()
                .expect("the peer's framing is valid")
            {
                return Some(frame);
            }
            let mut chunk = [0u8; 16 * 1024];
            let read = self.stdout.read(&mut chunk).unwrap();
            if read == 0 {
                assert!(
                    !self.inbound.has_partial_frame(),
                    "the peer stopped inside a frame"
                );
                return None;
            }
            self.inbound.read_buffer().extend_from_slice(&chunk[..read]);
        }
    }

    fn send(&mut self, frame: &[u8]) {
        let wire = self.outbound.wire_bytes(frame).unwrap();
        let stdin = self.stdin.as_mut().expect("stdin still open");
        stdin.write_all(wire).unwrap();
        stdin.flush().unwrap();
    }

    /// Closes our side, waits for the peer and returns its report.
    fn finish(mut self) -> Value {
        drop(self.stdin.take());
        let status = self.child.wait().unwrap();
        assert!(status.success(), "the python peer failed: {status}");
        serde_json::from_slice(&std::fs::read(self.report.path()).unwrap()).unwrap()
    }
}

/// Serves a Python client's calls with our server session, answering `statuses` in turn;
/// returns the calls executed, the handshake matches we sent, errors, and the client's
/// report.
struct Served {
    messages: Vec<Message>,
    matches: Vec<HandshakeMatch>,
    problems: Vec<RequestProblem>,
    report: Value,
}

fn serve_python_client(
    python: &Path,
    protocol: &str,
    calls: &[(&str, Vec<AvroFlumeEvent>)],
    statuses: &[Status],
    compression: Compression,
) -> Served {
    let calls_file = tempfile::NamedTempFile::new().unwrap();
    let calls_json: Vec<Value> = calls
        .iter()
        .map(|(message, events)| json!({"message": message, "events": events.iter().map(event_json).collect::<Vec<_>>()}))
        .collect();
    std::fs::write(calls_file.path(), serde_json::to_vec(&calls_json).unwrap()).unwrap();
    let calls_path = calls_file.path().to_str().unwrap().to_string();
    let mut peer = FramedPeer::start(
        python,
        &["client", "--calls", &calls_path, "--protocol", protocol],
        compression,
    );
    let mut session = ServerSession::new(
        Arc::new(ClientProtocolCache::default()),
        CallLimits::default(),
    );
    let mut served = Served {
        messages: Vec::new(),
        matches: Vec::new(),
        problems: Vec::new(),
        report: Value::Null,
    };
    while let Some(frame) = peer.next_frame() {
        let mut answer = Vec::new();
        match session.receive(&frame.message) {
            Ok(ServerStep::Call { message, reply, .. }) => {
                served
                    .matches
                    .extend(reply.handshake().map(|handshake| handshake.matched));
                let status = statuses[served.messages.len().min(statuses.len() - 1)];
                served.messages.push(message);
                reply
                    .encode(frame.serial, &CallOutcome::Status(status), &mut answer)
                    .unwrap();
            }
            Ok(ServerStep::HandshakeOnly { reply }) => {
                served
                    .matches
                    .extend(reply.handshake().map(|handshake| handshake.matched));
                reply
                    .encode_handshake_only(frame.serial, &mut answer)
                    .unwrap();
            }
            Err(error) => {
                served
                    .matches
                    .extend(error.reply.handshake().map(|handshake| handshake.matched));
                error.encode_reply(frame.serial, &mut answer).unwrap();
                served.problems.push(error.problem);
            }
        }
        peer.send(&answer);
    }
    served.report = peer.finish();
    served
}

fn results(report: &Value) -> Vec<String> {
    report["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|result| match result.get("status") {
            Some(status) => status.as_str().unwrap().to_string(),
            None => format!("{result}"),
        })
        .collect()
}

fn flume_calls() -> Vec<(&'static str, Vec<AvroFlumeEvent>)> {
    let events = awkward_events();
    vec![
        ("append", vec![events[0].clone()]),
        ("appendBatch", events.clone()),
        ("appendBatch", Vec::new()),
        ("appendBatch", events[1..3].to_vec()),
    ]
}

fn assert_calls_arrived(served: &Served, calls: &[(&str, Vec<AvroFlumeEvent>)]) {
    let expected: Vec<Message> = calls
        .iter()
        .map(|(message, events)| match *message {
            "append" => Message::Append(events[0].clone()),
            _ => Message::AppendBatch(events.clone()),
        })
        .collect();
    assert_eq!(served.messages, expected);
}

#[test]
fn a_python_client_with_flumes_protocol_is_served_after_one_client_answer() {
    let Some(python) = python() else { return };
    for compression in [Compression::None, Compression::Deflate { level: 6 }] {
        let calls = flume_calls();
        let statuses = [Status::Ok, Status::Failed, Status::Ok];
        let served = serve_python_client(python, "flume", &calls, &statuses, compression);
        assert_eq!(
            served.report["client_hash"],
            json!(KNOWN_COMPATIBLE_PROTOCOLS[3].md5.to_string())
        );
        // Python's hash is pre-seeded, its guess of ours is its own: CLIENT, once.
        assert_eq!(served.matches, [HandshakeMatch::Client], "{compression:?}");
        assert_eq!(served.report["handshake_matches"], json!(["CLIENT"]));
        assert_calls_arrived(&served, &calls);
        assert_eq!(
            results(&served.report),
            ["OK", "FAILED", "OK", "OK"],
            "{compression:?}"
        );
        assert!(served.problems.is_empty());
    }
}

#[test]
fn a_python_client_with_an_unknown_hash_goes_through_none_and_its_resend() {
    let Some(python) = python() else { return };
    let calls = flume_calls();
    let served = serve_python_client(python, "renamed", &calls, &[Status::Ok], Compression::None);
    assert_eq!(served.matches, [HandshakeMatch::None, HandshakeMatch::Both]);
    assert_eq!(served.report["handshake_matches"], json!(["NONE", "BOTH"]));
    assert_calls_arrived(&served, &calls);
    assert_eq!(results(&served.report), ["OK"; 4]);
}

#[test]
fn a_python_client_whose_protocol_allows_null_header_values_is_refused_and_executes_nothing() {
    let Some(python) = python() else { return };
    let calls = flume_calls();
    let served = serve_python_client(
        python,
        "nullable-headers",
        &calls,
        &[Status::Ok],
        Compression::None,
    );
    assert!(served.messages.is_empty(), "nothing executed");
    assert_eq!(
        served.matches,
        [HandshakeMatch::None, HandshakeMatch::Client]
    );
    assert!(
        matches!(
            served.problems.as_slice(),
            [RequestProblem::IncompatibleClientProtocol { .. }]
        ),
        "{:?}",
        served.problems
    );
    // Python gives up on a CLIENT answer after sending its protocol ("Handshake failure").
    let report_results = results(&served.report);
    assert_eq!(report_results.len(), 1);
    assert!(
        report_results[0].contains("Handshake failure"),
        "{report_results:?}"
    );
}

/// Sends our client's calls to a Python `Responder` answering `answers`; returns the
/// outcomes and the responder's report.
fn call_python_responder(
    python: &Path,
    batches: &[Vec<AvroFlumeEvent>],
    answers: &str,
    compression: Compression,
) -> (Vec<CallOutcome>, Value, ClientSession) {
    let mut peer = FramedPeer::start(python, &["server", "--answers", answers], compression);
    let mut client = ClientSession::new(CallLimits::default());
    let mut outcomes = Vec::new();
    for (index, batch) in batches.iter().enumerate() {
        loop {
            let mut request = Vec::new();
            let serial = if index == 0 && batch.len() == 1 {
                client.append_event(&batch[0], &mut request).unwrap()
            } else {
                client.append_batch_events(batch, &mut request).unwrap()
            };
            peer.send(&request);
            let frame = peer.next_frame().expect("an answer");
            assert_eq!(frame.serial, serial);
            match client.receive(&frame).unwrap() {
                ClientStep::Answered { outcome, .. } => {
                    outcomes.push(outcome);
                    break;
                }
                ClientStep::Resend { .. } => continue,
            }
        }
    }
    let report = peer.finish();
    (outcomes, report, client)
}

#[test]
fn pythons_responder_answers_our_client_after_none_and_our_resend() {
    let Some(python) = python() else { return };
    let events = awkward_events();
    let batches = vec![
        vec![events[0].clone()],
        events.clone(),
        Vec::new(),
        events[2..].to_vec(),
    ];
    for compression in [Compression::None, Compression::Deflate { level: 6 }] {
        let (outcomes, report, client) = call_python_responder(
            python,
            &batches,
            "OK,FAILED,ERROR:disk on fire,OK",
            compression,
        );
        assert_eq!(
            outcomes,
            [
                CallOutcome::Status(Status::Ok),
                CallOutcome::Status(Status::Failed),
                CallOutcome::SystemError("disk on fire".into()),
                CallOutcome::Status(Status::Ok),
            ],
            "{compression:?}"
        );
        // Python's Responder knows only its own hash: NONE, then BOTH once it parsed the
        // Flume JSON we resent (our client then knows Python's hash).
        assert_eq!(report["handshake_matches"], json!(["NONE", "BOTH"]));
        assert_eq!(client.server_hash(), KNOWN_COMPATIBLE_PROTOCOLS[3].md5);
        let calls = report["calls"].as_array().unwrap();
        assert_eq!(calls.len(), batches.len());
        assert_eq!(calls[0]["message"], json!("append"));
        for (call, batch) in calls.iter().zip(&batches) {
            let received: Vec<AvroFlumeEvent> = call["events"]
                .as_array()
                .unwrap()
                .iter()
                .map(event_from_json)
                .collect();
            assert_eq!(&received, batch);
        }
    }
}

#[test]
fn the_python_peer_helper_passes_its_own_selftest() {
    let Some(python) = python() else { return };
    let output = run_peer(python, &["selftest"], b"");
    assert_eq!(String::from_utf8_lossy(&output).trim(), "selftest passed");
}
