//! The `avro` source and sink through the real binaries (channeld supervising
//! channel-agent), against an independent implementation: Apache Avro's own Python
//! package driven by `tests/interop/avro_peer.py` (its client over TCP for the source,
//! its `Responder` as a TCP server for the sink), and two Millrace agents chained avro
//! sink → avro source as in the Flume User Guide.
//!
//! The venv comes from `tests/scripts/interop-venv.sh` (under the build directory).
//! Without python3's venv module or PyPI each test prints one line and passes as
//! skipped, unless `CI=true`.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use millrace_client::Event;
use millrace_e2e::{
    channelctl, file_channels_config, free_port, hex, unhex, wait_until, Server, ServerSetup, AGENT,
};
use serde_json::{json, Value};

/// Longest wait for events to cross a flow, or for a peer to finish.
const FLOW_TIMEOUT: Duration = Duration::from_secs(90);

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

/// An event in the peer's JSON shape.
fn event_json(headers: &[(&str, &str)], body: &[u8]) -> Value {
    let headers: serde_json::Map<String, Value> = headers
        .iter()
        .map(|(key, value)| (key.to_string(), Value::String(value.to_string())))
        .collect();
    json!({"headers": headers, "body": hex(body)})
}

/// An event as the peer's JSON, headers sorted (the JSON carrying them sorts them).
fn channel_event_json(event: &Event) -> Value {
    let mut headers = event.headers.clone();
    headers.sort();
    let headers: Vec<(&str, &str)> = headers
        .iter()
        .map(|(key, value)| (key.as_str(), value.as_str()))
        .collect();
    event_json(&headers, &event.body)
}

fn numbered_events(prefix: &str, count: usize) -> Vec<Value> {
    (0..count)
        .map(|n| {
            event_json(
                &[("seq", &n.to_string())],
                format!("{prefix}-{n:06}").as_bytes(),
            )
        })
        .collect()
}

fn batch_call(events: &[Value]) -> Value {
    json!({"message": "appendBatch", "events": events})
}

/// Runs Python's client against `port` with `calls`; returns its report (`results`,
/// `handshake_matches`).
fn run_client(python: &Path, port: u16, calls: &[Value], extra_args: &[&str]) -> Value {
    let directory = tempfile::tempdir().expect("a temporary directory");
    let calls_path = directory.path().join("calls.json");
    let report_path = directory.path().join("report.json");
    std::fs::write(&calls_path, serde_json::to_vec(calls).unwrap()).unwrap();
    let mut child = Command::new(python)
        .arg(peer_script())
        .arg("client")
        .arg("--connect")
        .arg(format!("127.0.0.1:{port}"))
        .arg("--calls")
        .arg(&calls_path)
        .arg("--report")
        .arg(&report_path)
        .args(extra_args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the python client starts");
    let finished = wait_until(FLOW_TIMEOUT, || matches!(child.try_wait(), Ok(Some(_))));
    if !finished {
        let _ = child.kill();
    }
    let output = child.wait_with_output().expect("the python client ends");
    assert!(
        finished && output.status.success(),
        "the python client failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&std::fs::read(&report_path).expect("the client's report"))
        .expect("a JSON report")
}

fn statuses(report: &Value) -> Vec<String> {
    report["results"]
        .as_array()
        .expect("results")
        .iter()
        .map(|result| match &result["status"] {
            Value::String(status) => status.clone(),
            _ => format!("not a status: {result}"),
        })
        .collect()
}

/// Waits until something listens on `port`.
fn wait_for_port(port: u16) {
    let listening = wait_until(FLOW_TIMEOUT, || {
        TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    assert!(listening, "nothing listens on port {port}");
}

/// Lines of an avro source `r1` on `port` writing to `channel`, plus `extra` keys of it.
fn avro_source(port: u16, channel: &str, extra: &str) -> String {
    let mut text = format!(
        "{AGENT}.sources = r1\n\
         {AGENT}.sources.r1.type = avro\n\
         {AGENT}.sources.r1.bind = 127.0.0.1\n\
         {AGENT}.sources.r1.port = {port}\n\
         {AGENT}.sources.r1.channels = {channel}\n"
    );
    for line in extra.lines().filter(|line| !line.trim().is_empty()) {
        text.push_str(&format!("{AGENT}.sources.r1.{}\n", line.trim()));
    }
    text
}

/// A server with file channel `c1` and an avro source on a fresh port.
fn source_server(source_extra: &str) -> (Server, u16) {
    let port = free_port();
    let config = file_channels_config(&["c1"], &avro_source(port, "c1", source_extra));
    let server = Server::start(ServerSetup::with_config(config));
    wait_for_port(port);
    (server, port)
}

fn drained_json(server: &Server, channel: &str) -> Vec<Value> {
    server
        .drain_events(channel, 1000)
        .iter()
        .map(channel_event_json)
        .collect()
}

/// A source counter as channeld publishes it, once the agent reported it.
fn source_counter(server: &Server, counter: &str) -> u64 {
    let (_, metrics) = server.http_json("/metrics");
    metrics["SOURCE.r1"][counter]
        .as_str()
        .and_then(|value| value.parse().ok())
        .unwrap_or(0)
}

/// Events with awkward contents: empty and many headers, non-ASCII text, every byte
/// value in a body, an empty body, a body larger than Java's 8 KiB buffers.
fn awkward_events() -> Vec<Value> {
    let every_byte: Vec<u8> = (0..=255u8).collect();
    vec![
        event_json(&[("k", "v")], b"hi"),
        event_json(&[], b""),
        event_json(
            &[
                ("", ""),
                ("host", "web-1.example.com"),
                ("timestamp", "1700000000000"),
                ("ünïcödé ✓", "値 🦀"),
            ],
            &every_byte,
        ),
        event_json(&[("big", &"x".repeat(300))], &vec![0u8; 20_000]),
    ]
}

#[test]
fn pythons_append_and_append_batch_arrive_exactly_with_headers_binary_bodies_and_order() {
    let Some(python) = python() else { return };
    let (server, port) = source_server("");
    let awkward = awkward_events();
    let numbered = numbered_events("batch", 250);
    let calls = vec![
        json!({"message": "append", "events": [awkward[2].clone()]}),
        batch_call(&awkward),
        batch_call(&numbered),
        json!({"message": "append", "events": [awkward[0].clone()]}),
        batch_call(&[]),
    ];
    let report = run_client(python, port, &calls, &[]);
    assert_eq!(statuses(&report), ["OK"; 5]);
    // Python's rendering of Flume's protocol is a known hash: CLIENT once, then no
    // handshake on the connection.
    assert_eq!(report["handshake_matches"], json!(["CLIENT"]));
    let mut expected = vec![awkward[2].clone()];
    expected.extend(awkward.iter().cloned());
    expected.extend(numbered.iter().cloned());
    expected.push(awkward[0].clone());
    assert_eq!(drained_json(&server, "c1"), expected);
    let counted = wait_until(FLOW_TIMEOUT, || {
        source_counter(&server, "EventAcceptedCount") == expected.len() as u64
            && source_counter(&server, "AppendBatchAcceptedCount") == 3
    });
    assert!(
        counted,
        "counters on /metrics: {}",
        server.http_json("/metrics").1
    );
    assert_eq!(source_counter(&server, "AppendReceivedCount"), 2);
    assert_eq!(source_counter(&server, "AppendAcceptedCount"), 2);
    assert_eq!(source_counter(&server, "AppendBatchReceivedCount"), 3);
    assert_eq!(
        source_counter(&server, "EventReceivedCount"),
        expected.len() as u64
    );
}

#[test]
fn a_client_with_an_unknown_protocol_hash_gets_none_and_succeeds_on_its_resend() {
    let Some(python) = python() else { return };
    let (server, port) = source_server("");
    let events = numbered_events("renamed", 10);
    let report = run_client(
        python,
        port,
        &[batch_call(&events), batch_call(&events[..1])],
        &["--protocol", "renamed"],
    );
    assert_eq!(statuses(&report), ["OK", "OK"]);
    assert_eq!(report["handshake_matches"], json!(["NONE", "BOTH"]));
    let mut expected = events.clone();
    expected.push(events[0].clone());
    assert_eq!(
        drained_json(&server, "c1"),
        expected,
        "the NONE call was not executed"
    );
}

#[test]
fn deflate_compressed_calls_round_trip_exactly() {
    let Some(python) = python() else { return };
    let (server, port) = source_server("compression-type = deflate");
    let awkward = awkward_events();
    let numbered = numbered_events("deflate", 300);
    let report = run_client(
        python,
        port,
        &[batch_call(&awkward), batch_call(&numbered)],
        &["--deflate"],
    );
    assert_eq!(statuses(&report), ["OK", "OK"]);
    let mut expected = awkward.clone();
    expected.extend(numbered.iter().cloned());
    assert_eq!(drained_json(&server, "c1"), expected);
}

#[test]
fn a_full_channel_answers_failed_and_commits_nothing_of_the_refused_calls() {
    let Some(python) = python() else { return };
    let port = free_port();
    let server = Server::start(ServerSetup::with_config(format!(
        "{AGENT}.channels = c1\n\
         {AGENT}.channels.c1.type = memory\n\
         {AGENT}.channels.c1.capacity = 10\n\
         {AGENT}.channels.c1.transactionCapacity = 10\n{}",
        avro_source(port, "c1", "")
    )));
    wait_for_port(port);
    let first = numbered_events("first", 8);
    let overflowing = numbered_events("overflowing", 5);
    let too_many = numbered_events("too-many", 11);
    let report = run_client(
        python,
        port,
        &[
            batch_call(&first),
            batch_call(&overflowing),
            batch_call(&too_many),
        ],
        &[],
    );
    assert_eq!(statuses(&report), ["OK", "FAILED", "FAILED"]);
    assert_eq!(
        drained_json(&server, "c1"),
        first,
        "nothing of a FAILED call is kept"
    );
    // The sender's retry, once there is room, succeeds and loses nothing.
    let retry = run_client(python, port, &[batch_call(&overflowing)], &[]);
    assert_eq!(statuses(&retry), ["OK"]);
    assert_eq!(drained_json(&server, "c1"), overflowing);
    let counted = wait_until(FLOW_TIMEOUT, || {
        source_counter(&server, "ChannelWriteFail") >= 2
    });
    assert!(counted, "ChannelWriteFail counts the FAILED answers");
}

/// Sends `bytes` on a new connection and waits for the source to close it; true when
/// it did within the flow timeout.
fn closes_after(port: u16, bytes: &[u8]) -> bool {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    stream.set_read_timeout(Some(FLOW_TIMEOUT)).unwrap();
    // The source may close before reading everything: a reset is a close too.
    let _ = stream.write_all(bytes);
    let mut sink = Vec::new();
    match stream.read_to_end(&mut sink) {
        Ok(_) => true,
        Err(error) => {
            error.kind() != std::io::ErrorKind::WouldBlock
                && error.kind() != std::io::ErrorKind::TimedOut
        }
    }
}

#[test]
fn garbage_lying_lengths_and_foreign_protocols_are_closed_while_the_source_keeps_serving() {
    let Some(python) = python() else { return };
    let (server, port) = source_server("");
    let before = run_client(
        python,
        port,
        &[batch_call(&numbered_events("before", 3))],
        &[],
    );
    assert_eq!(statuses(&before), ["OK"]);

    assert!(
        closes_after(port, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"),
        "an HTTP request is not Netty framing"
    );
    // serial 1, one buffer, claiming 2 GiB - 1, then a few bytes: refused from the
    // length alone, nothing allocated on its account.
    let mut lying = Vec::new();
    lying.extend_from_slice(&1i32.to_be_bytes());
    lying.extend_from_slice(&1i32.to_be_bytes());
    lying.extend_from_slice(&i32::MAX.to_be_bytes());
    lying.extend_from_slice(b"only these");
    assert!(
        closes_after(port, &lying),
        "a lying length closes the connection"
    );
    // A well-framed message that is not Avro at all.
    let mut nonsense = Vec::new();
    nonsense.extend_from_slice(&7i32.to_be_bytes());
    nonsense.extend_from_slice(&1i32.to_be_bytes());
    nonsense.extend_from_slice(&5i32.to_be_bytes());
    nonsense.extend_from_slice(&[0xff; 5]);
    assert!(
        closes_after(port, &nonsense),
        "a malformed handshake closes the connection"
    );

    // Another protocol (nullable header values: another layout): NONE, then, on the
    // resend with its text, CLIENT and an error (which Python reports as a handshake
    // failure, a Java client as the error); nothing of its call is executed.
    let foreign = run_client(
        python,
        port,
        &[batch_call(&numbered_events("foreign", 2))],
        &["--protocol", "nullable-headers"],
    );
    assert_eq!(foreign["handshake_matches"], json!(["NONE", "CLIENT"]));
    assert!(
        foreign["results"][0].get("status").is_none(),
        "the foreign client's call failed: {foreign}"
    );

    let after = run_client(
        python,
        port,
        &[batch_call(&numbered_events("after", 3))],
        &[],
    );
    assert_eq!(statuses(&after), ["OK"]);
    let mut expected = numbered_events("before", 3);
    expected.extend(numbered_events("after", 3));
    assert_eq!(drained_json(&server, "c1"), expected);
    let counted = wait_until(FLOW_TIMEOUT, || {
        source_counter(&server, "EventReadFail") >= 4
    });
    assert!(counted, "EventReadFail counts each refused connection");
}

#[test]
fn ip_filter_rules_close_denied_peers_and_serve_allowed_ones() {
    let Some(python) = python() else { return };
    let (denying, denied_port) =
        source_server("ipFilter = true\nipFilterRules = allow:ip:10.*,deny:ip:127.*");
    let closed = closes_after(denied_port, b"");
    assert!(closed, "a denied peer is closed before anything is read");
    let (allowing, allowed_port) =
        source_server("ipFilter = true\nipFilterRules = allow:ip:127.*,deny:ip:*");
    let report = run_client(
        python,
        allowed_port,
        &[batch_call(&numbered_events("in", 2))],
        &[],
    );
    assert_eq!(statuses(&report), ["OK"]);
    assert_eq!(drained_json(&allowing, "c1"), numbered_events("in", 2));
    assert!(drained_json(&denying, "c1").is_empty());
}

/// Python's `Responder` as a TCP server: every call it gets, with its answer, is in
/// the calls report.
struct PythonResponder {
    child: Child,
    port: u16,
    calls_report: PathBuf,
    _directory: tempfile::TempDir,
}

impl PythonResponder {
    /// Starts on `port` (0: any) answering calls in turn with `answers` (the last one
    /// repeats; across connections).
    fn start(python: &Path, port: u16, answers: &str, extra_args: &[&str]) -> PythonResponder {
        let directory = tempfile::tempdir().expect("a temporary directory");
        let calls_report = directory.path().join("calls.json");
        let mut child = Command::new(python)
            .arg(peer_script())
            .arg("server")
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .arg("--answers")
            .arg(answers)
            .arg("--calls-report")
            .arg(&calls_report)
            .arg("--report")
            .arg(directory.path().join("report.json"))
            .args(extra_args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("the python responder starts");
        let mut line = String::new();
        BufReader::new(child.stdout.as_mut().unwrap())
            .read_line(&mut line)
            .expect("the responder says where it listens");
        let port = line
            .trim()
            .rsplit(':')
            .next()
            .and_then(|port| port.parse().ok())
            .unwrap_or_else(|| panic!("not a listening line: {line:?}"));
        PythonResponder {
            child,
            port,
            calls_report,
            _directory: directory,
        }
    }

    /// Every call so far: (answer, events).
    fn calls(&self) -> Vec<(String, Vec<Value>)> {
        let Ok(bytes) = std::fs::read(&self.calls_report) else {
            return Vec::new();
        };
        let report: Value = serde_json::from_slice(&bytes).expect("a JSON calls report");
        report["calls"]
            .as_array()
            .expect("calls")
            .iter()
            .map(|call| {
                (
                    call["answer"].as_str().unwrap_or_default().to_string(),
                    call["events"].as_array().cloned().unwrap_or_default(),
                )
            })
            .collect()
    }

    /// The events of the calls answered OK, in order.
    fn accepted(&self) -> Vec<Value> {
        self.calls()
            .into_iter()
            .filter(|(answer, _)| answer == "OK")
            .flat_map(|(_, events)| events)
            .collect()
    }

    fn has_exited(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(_)))
    }
}

impl Drop for PythonResponder {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Puts `events` (peer JSON) on `channel` in transactions of `batch`.
fn put_events(server: &Server, channel: &str, events: &[Value], batch: usize) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(async {
        let options = millrace_client::ClientOptions::new(server.protocol_address());
        let mut client = millrace_client::Client::connect(options)
            .await
            .expect("connect");
        for chunk in events.chunks(batch) {
            let chunk: Vec<Event> = chunk.iter().map(event_from_json).collect();
            client.put_and_commit(channel, &chunk).await.expect("put");
        }
    });
}

fn event_from_json(value: &Value) -> Event {
    let mut event = Event::new(unhex(value["body"].as_str().expect("a body")));
    event.headers = value["headers"]
        .as_object()
        .expect("headers")
        .iter()
        .map(|(key, value)| (key.clone(), value.as_str().expect("text").to_string()))
        .collect();
    event
}

/// A server with memory channel `c1` and an avro sink `k1` to `port` (plus `extra` keys
/// of the sink).
fn sink_server(port: u16, extra: &str) -> Server {
    let mut config = format!(
        "{AGENT}.channels = c1\n\
         {AGENT}.channels.c1.type = memory\n\
         {AGENT}.channels.c1.capacity = 100000\n\
         {AGENT}.channels.c1.transactionCapacity = 1000\n\
         {AGENT}.sinks = k1\n\
         {AGENT}.sinks.k1.type = avro\n\
         {AGENT}.sinks.k1.channel = c1\n\
         {AGENT}.sinks.k1.hostname = 127.0.0.1\n\
         {AGENT}.sinks.k1.port = {port}\n"
    );
    for line in extra.lines().filter(|line| !line.trim().is_empty()) {
        config.push_str(&format!("{AGENT}.sinks.k1.{}\n", line.trim()));
    }
    Server::start(ServerSetup::with_config(config))
}

#[test]
fn the_avro_sink_delivers_every_event_once_in_order_to_pythons_responder() {
    let Some(python) = python() else { return };
    for deflate in [false, true] {
        let (responder_args, compression): (&[&str], &str) = if deflate {
            (
                &["--deflate"],
                "compression-type = deflate\ncompression-level = 9",
            )
        } else {
            (&[], "")
        };
        let responder = PythonResponder::start(python, 0, "OK", responder_args);
        let server = sink_server(responder.port, &format!("batch-size = 70\n{compression}"));
        let mut events = awkward_events();
        events.extend(numbered_events("sunk", 1000));
        put_events(&server, "c1", &events, 100);
        let delivered = wait_until(FLOW_TIMEOUT, || responder.accepted().len() >= events.len());
        assert!(
            delivered,
            "the responder got every event:\n{}",
            server.stderr()
        );
        assert_eq!(responder.accepted(), events, "exactly once, in order");
        assert!(responder.calls().iter().all(|(answer, _)| answer == "OK"));
        assert!(wait_until(FLOW_TIMEOUT, || server
            .metrics_channel_size("c1")
            == 0));
    }
}

#[test]
fn failed_and_stalled_answers_roll_back_and_redeliver_without_loss() {
    let Some(python) = python() else { return };
    let responder = PythonResponder::start(python, 0, "FAILED,OK,STALL,OK", &[]);
    let server = sink_server(responder.port, "batch-size = 100\nrequest-timeout = 1500");
    let events = numbered_events("retried", 300);
    put_events(&server, "c1", &events, 300);
    let delivered = wait_until(FLOW_TIMEOUT, || responder.accepted().len() >= events.len());
    assert!(delivered, "every event arrived:\n{}", server.stderr());
    assert_eq!(
        responder.accepted(),
        events,
        "exactly once in order among OK answers"
    );
    let answers: Vec<String> = responder
        .calls()
        .into_iter()
        .map(|(answer, _)| answer)
        .collect();
    assert_eq!(answers, ["FAILED", "OK", "STALL", "OK", "OK"]);
    let calls = responder.calls();
    assert_eq!(calls[0].1, calls[1].1, "the FAILED batch is sent again");
    assert_eq!(calls[2].1, calls[3].1, "the stalled batch is sent again");
    assert!(wait_until(FLOW_TIMEOUT, || server
        .metrics_channel_size("c1")
        == 0));
}

#[test]
fn a_responder_killed_mid_batch_causes_redelivery_to_its_replacement() {
    let Some(python) = python() else { return };
    let mut responder = PythonResponder::start(python, 0, "OK,DIE", &[]);
    let port = responder.port;
    let server = sink_server(port, "batch-size = 100\nrequest-timeout = 5000");
    let events = numbered_events("survivor", 300);
    put_events(&server, "c1", &events, 300);
    assert!(
        wait_until(FLOW_TIMEOUT, || responder.has_exited()),
        "the responder died on its second call"
    );
    let first = responder.accepted();
    assert_eq!(first, events[..100], "the first batch was accepted");
    drop(responder);
    let replacement = PythonResponder::start(python, port, "OK", &[]);
    let delivered = wait_until(FLOW_TIMEOUT, || {
        first.len() + replacement.accepted().len() >= events.len()
    });
    assert!(
        delivered,
        "the rest arrived after the restart:\n{}",
        server.stderr()
    );
    let mut all = first;
    all.extend(replacement.accepted());
    assert_eq!(all, events, "nothing lost, nothing twice, in order");
}

fn validate(directory: &Path, text: &str, agent: &str) -> Output {
    let file = directory.join("flume.conf");
    std::fs::write(&file, text).unwrap();
    channelctl(
        &["validate", "-f", file.to_str().unwrap(), "-n", agent],
        b"",
    )
}

/// The Flume User Guide's multi-agent flow ("Setting multi-agent flow"): `agent_foo`
/// takes events on an avro source and forwards them with an avro sink to
/// `agent_bar`'s avro source. Copied unchanged except the ports, the address and the
/// paths, and the two agents' parts put in one file.
fn user_guide_two_agents(foo_port: u16, bar_port: u16) -> String {
    format!(
        "# list sources, sinks and channels in the agent
agent_foo.sources = avro-AppSrv-source
agent_foo.sinks = avro-forward-sink
agent_foo.channels = file-channel

# define the flow
agent_foo.sources.avro-AppSrv-source.channels = file-channel
agent_foo.sinks.avro-forward-sink.channel = file-channel

# avro source properties
agent_foo.sources.avro-AppSrv-source.type = avro
agent_foo.sources.avro-AppSrv-source.bind = 127.0.0.1
agent_foo.sources.avro-AppSrv-source.port = {foo_port}

# avro sink properties
agent_foo.sinks.avro-forward-sink.type = avro
agent_foo.sinks.avro-forward-sink.hostname = 127.0.0.1
agent_foo.sinks.avro-forward-sink.port = {bar_port}

agent_foo.channels.file-channel.type = file
agent_foo.channels.file-channel.checkpointDir = foo/checkpoint
agent_foo.channels.file-channel.dataDirs = foo/data
agent_foo.channels.file-channel.minimumRequiredSpace = 1048576

# list sources, sinks and channels in the agent
agent_bar.sources = avro-collection-source
agent_bar.channels = file-channel

# define the flow
agent_bar.sources.avro-collection-source.channels = file-channel

# avro source properties
agent_bar.sources.avro-collection-source.type = avro
agent_bar.sources.avro-collection-source.bind = 127.0.0.1
agent_bar.sources.avro-collection-source.port = {bar_port}

agent_bar.channels.file-channel.type = file
agent_bar.channels.file-channel.checkpointDir = bar/checkpoint
agent_bar.channels.file-channel.dataDirs = bar/data
agent_bar.channels.file-channel.minimumRequiredSpace = 1048576
"
    )
}

/// Every event of `expected` is among `delivered`, and `delivered` holds nothing else
/// (a batch in flight when a process was killed may arrive twice).
fn assert_all_arrived(delivered: &[Value], expected: &[Value]) {
    let key = |event: &Value| event["body"].as_str().unwrap_or_default().to_string();
    let mut unique: Vec<String> = delivered.iter().map(key).collect();
    unique.sort();
    unique.dedup();
    let mut wanted: Vec<String> = expected.iter().map(key).collect();
    wanted.sort();
    assert_eq!(unique, wanted, "every event arrived, and nothing else");
}

#[test]
fn the_user_guides_two_agent_avro_flow_validates_and_survives_the_downstream_restarting() {
    let Some(python) = python() else { return };
    let (foo_port, bar_port) = (free_port(), free_port());
    let config = user_guide_two_agents(foo_port, bar_port);
    let directory = tempfile::tempdir().unwrap();
    for agent in ["agent_foo", "agent_bar"] {
        let output = validate(directory.path(), &config, agent);
        assert!(
            output.status.success(),
            "channelctl validate -n {agent}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let mut downstream = Server::start(ServerSetup::with_config(config.clone()).agent("agent_bar"));
    let upstream = Server::start(ServerSetup::with_config(config).agent("agent_foo"));
    wait_for_port(foo_port);
    wait_for_port(bar_port);
    let first = numbered_events("first", 500);
    let report = run_client(python, foo_port, &[batch_call(&first)], &[]);
    assert_eq!(statuses(&report), ["OK"]);
    let crossed = wait_until(FLOW_TIMEOUT, || {
        downstream.metrics_channel_size("file-channel") == first.len() as u64
    });
    assert!(crossed, "events crossed:\n{}", upstream.stderr());

    downstream.kill_9();
    let second = numbered_events("second", 500);
    let report = run_client(python, foo_port, &[batch_call(&second)], &[]);
    assert_eq!(
        statuses(&report),
        ["OK"],
        "the upstream keeps taking events"
    );
    downstream.restart_on_the_same_addresses();
    let mut expected = first.clone();
    expected.extend(second.iter().cloned());
    let crossed = wait_until(FLOW_TIMEOUT, || {
        upstream.metrics_channel_size("file-channel") == 0
            && downstream.metrics_channel_size("file-channel") >= expected.len() as u64
    });
    assert!(
        crossed,
        "the held events crossed after the restart:\n{}",
        upstream.stderr()
    );
    let delivered = drained_json(&downstream, "file-channel");
    assert_all_arrived(&delivered, &expected);
    assert_eq!(
        delivered[..first.len()],
        first[..],
        "the first events, in order"
    );
}

/// Agent `agent_foo` (an avro source, memory channel `c1`, avro sinks `k1` and `k2` in
/// group `g1` with `processor` lines) and two downstream agents, `agent_one` and
/// `agent_two`, each an avro source into memory channel `c1`.
fn fan_out_config(foo_port: u16, one_port: u16, two_port: u16, processor: &str) -> String {
    let agent = |name: &str, port: u16| {
        format!(
            "{name}.sources = in\n\
             {name}.channels = c1\n\
             {name}.sources.in.type = avro\n\
             {name}.sources.in.bind = 127.0.0.1\n\
             {name}.sources.in.port = {port}\n\
             {name}.sources.in.channels = c1\n\
             {name}.channels.c1.type = memory\n\
             {name}.channels.c1.capacity = 100000\n\
             {name}.channels.c1.transactionCapacity = 1000\n"
        )
    };
    let mut config = agent("agent_foo", foo_port);
    config.push_str("agent_foo.sinks = k1 k2\nagent_foo.sinkgroups = g1\nagent_foo.sinkgroups.g1.sinks = k1 k2\n");
    for (sink, port) in [("k1", one_port), ("k2", two_port)] {
        config.push_str(&format!(
            "agent_foo.sinks.{sink}.type = avro\n\
             agent_foo.sinks.{sink}.channel = c1\n\
             agent_foo.sinks.{sink}.hostname = 127.0.0.1\n\
             agent_foo.sinks.{sink}.port = {port}\n\
             agent_foo.sinks.{sink}.connect-timeout = 2000\n"
        ));
    }
    for line in processor.lines().filter(|line| !line.trim().is_empty()) {
        config.push_str(&format!(
            "agent_foo.sinkgroups.g1.processor.{}\n",
            line.trim()
        ));
    }
    config.push_str(&agent("agent_one", one_port));
    config.push_str(&agent("agent_two", two_port));
    config
}

/// Starts the three agents of [`fan_out_config`]: (upstream, one, two, upstream's port).
fn start_fan_out(processor: &str) -> (Server, Server, Server, u16) {
    let (foo_port, one_port, two_port) = (free_port(), free_port(), free_port());
    let config = fan_out_config(foo_port, one_port, two_port, processor);
    let one = Server::start(ServerSetup::with_config(config.clone()).agent("agent_one"));
    let two = Server::start(ServerSetup::with_config(config.clone()).agent("agent_two"));
    let upstream = Server::start(ServerSetup::with_config(config).agent("agent_foo"));
    for port in [foo_port, one_port, two_port] {
        wait_for_port(port);
    }
    (upstream, one, two, foo_port)
}

#[test]
fn a_failover_group_of_avro_sinks_switches_to_the_second_agent_while_the_first_is_down() {
    let Some(python) = python() else { return };
    let (upstream, mut primary, backup, foo_port) =
        start_fan_out("type = failover\npriority.k1 = 10\npriority.k2 = 5\nmaxpenalty = 1000");
    let first = numbered_events("first", 200);
    assert_eq!(
        statuses(&run_client(python, foo_port, &[batch_call(&first)], &[])),
        ["OK"]
    );
    assert!(wait_until(FLOW_TIMEOUT, || primary
        .metrics_channel_size("c1")
        == 200));
    assert_eq!(backup.metrics_channel_size("c1"), 0, "the backup idles");

    primary.kill_9();
    let second = numbered_events("second", 200);
    assert_eq!(
        statuses(&run_client(python, foo_port, &[batch_call(&second)], &[])),
        ["OK"]
    );
    let switched = wait_until(FLOW_TIMEOUT, || backup.metrics_channel_size("c1") >= 200);
    assert!(switched, "the backup took over:\n{}", upstream.stderr());
    assert!(wait_until(FLOW_TIMEOUT, || upstream
        .metrics_channel_size("c1")
        == 0));
    assert_all_arrived(&drained_json(&backup, "c1"), &second);
}

#[test]
fn a_load_balanced_pair_of_avro_sinks_loses_nothing_when_one_agent_is_killed_and_restarted() {
    let Some(python) = python() else { return };
    let (upstream, mut one, two, foo_port) =
        start_fan_out("type = load_balance\nselector = round_robin\nbackoff = true");
    let first = numbered_events("first", 1000);
    let calls: Vec<Value> = first.chunks(100).map(batch_call).collect();
    assert_eq!(
        statuses(&run_client(python, foo_port, &calls, &[])),
        ["OK"; 10]
    );
    let spread = wait_until(FLOW_TIMEOUT, || {
        one.metrics_channel_size("c1") + two.metrics_channel_size("c1") >= 1000
    });
    assert!(spread, "events crossed:\n{}", upstream.stderr());
    assert!(one.metrics_channel_size("c1") > 0 && two.metrics_channel_size("c1") > 0);
    let mut delivered = drained_json(&one, "c1");

    one.kill_9();
    let second = numbered_events("second", 1000);
    let calls: Vec<Value> = second.chunks(100).map(batch_call).collect();
    assert_eq!(
        statuses(&run_client(python, foo_port, &calls, &[])),
        ["OK"; 10]
    );
    one.restart_on_the_same_addresses();
    let settled = wait_until(FLOW_TIMEOUT, || upstream.metrics_channel_size("c1") == 0);
    assert!(settled, "the upstream drained:\n{}", upstream.stderr());
    delivered.extend(drained_json(&one, "c1"));
    delivered.extend(drained_json(&two, "c1"));
    let mut expected = first;
    expected.extend(second);
    assert_all_arrived(&delivered, &expected);
}

#[test]
fn validate_accepts_every_flume_key_of_the_avro_source_and_sink_and_refuses_tls_clearly() {
    let directory = tempfile::tempdir().unwrap();
    let accepted = file_channels_config(
        &["c1"],
        &format!(
            "{}{AGENT}.sinks = k1\n\
             {AGENT}.sinks.k1.type = org.apache.flume.sink.AvroSink\n\
             {AGENT}.sinks.k1.channel = c1\n\
             {AGENT}.sinks.k1.hostname = collector.example.com\n\
             {AGENT}.sinks.k1.port = 4545\n\
             {AGENT}.sinks.k1.batch-size = 500\n\
             {AGENT}.sinks.k1.connect-timeout = 5000\n\
             {AGENT}.sinks.k1.request-timeout = 10000\n\
             {AGENT}.sinks.k1.reset-connection-interval = 600\n\
             {AGENT}.sinks.k1.compression-type = deflate\n\
             {AGENT}.sinks.k1.compression-level = 9\n\
             {AGENT}.sinks.k1.maxIoWorkers = 4\n",
            avro_source(
                4545,
                "c1",
                "threads = 8\ncompression-type = DEFLATE\nipFilter = true\n\
                 ipFilterRules = allow:ip:127.*,allow:name:localhost,deny:ip:*\n\
                 selector.type = replicating\ninterceptors = i1\ninterceptors.i1.type = timestamp"
            )
        ),
    );
    let output = validate(directory.path(), &accepted, AGENT);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(
        stderr.contains("maxIoWorkers"),
        "a warning names maxIoWorkers: {stderr}"
    );

    let refused = file_channels_config(
        &["c1"],
        &avro_source(
            4545,
            "c1",
            "ssl = true\nipFilter = true\ncompression-type = gzip",
        ),
    );
    let output = validate(directory.path(), &refused, AGENT);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    for expected in [
        "a1.sources.r1.ssl",
        "TLS is not supported here",
        "a1.sources.r1.ipFilterRules",
        "a1.sources.r1.compression-type",
    ] {
        assert!(stderr.contains(expected), "{expected:?} in:\n{stderr}");
    }
}
