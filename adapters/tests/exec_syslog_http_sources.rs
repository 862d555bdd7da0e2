//! The `exec`, `syslogtcp`, `syslogudp` and `http` sources against a real channeld.
//!
//! Each test starts channeld (the built binary, in its own temporary directory, with
//! memory channels) and runs one source in-process through `SourceKind::run`; the
//! events are taken back over the protocol and compared, in order. Time limits only
//! stop a stuck test; nothing asserts how long anything took.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpStream as StdTcpStream, UdpSocket as StdUdpSocket};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use millrace_adapters::connection::{stop_signal, StopHandle};
use millrace_adapters::counters::SourceCounters;
use millrace_adapters::delivery::SourceDeadLetter;
use millrace_adapters::sources::exec::ExecSettings;
use millrace_adapters::sources::http::{HttpLimits, HttpSettings};
use millrace_adapters::sources::syslog::{KeepFields, SyslogSettings};
use millrace_adapters::sources::{ListenerLimits, ProcessorFactory, SourceError, SourceKind};
use millrace_client::{Client, ClientOptions, Event};
use millrace_e2e::{Server, ServerSetup, AGENT};
use tokio::task::JoinHandle;

/// Longest a test waits for events or for a source to stop before failing.
const STUCK_TEST_TIMEOUT: Duration = Duration::from_secs(60);
/// Pause between polls.
const POLL_INTERVAL: Duration = Duration::from_millis(20);
/// The channel every test writes to.
const CHANNEL: &str = "c1";

/// channeld with one memory channel `c1` that refuses puts at once when full.
fn server_with_memory_channel(capacity: u32, transaction_capacity: u32) -> Server {
    Server::start(ServerSetup::with_config(format!(
        "{AGENT}.channels = {CHANNEL}\n\
         {AGENT}.channels.{CHANNEL}.type = memory\n\
         {AGENT}.channels.{CHANNEL}.capacity = {capacity}\n\
         {AGENT}.channels.{CHANNEL}.transactionCapacity = {transaction_capacity}\n\
         {AGENT}.channels.{CHANNEL}.keep-alive = 0\n"
    )))
}

/// A source running in a task, with its counters and stop handle.
struct RunningSource {
    task: JoinHandle<Result<(), SourceError>>,
    counters: Arc<SourceCounters>,
    stop: StopHandle,
}

impl RunningSource {
    fn start(kind: SourceKind, server: &Server) -> RunningSource {
        RunningSource::start_with(kind, server, None)
    }

    /// Starts `kind` writing to `c1`, with `dead_letter` as its `deadLetter.channel`.
    fn start_with(kind: SourceKind, server: &Server, dead_letter: Option<&str>) -> RunningSource {
        let counters = Arc::new(SourceCounters::default());
        let mut processors = ProcessorFactory::new(
            ClientOptions::new(server.protocol_address()),
            vec![CHANNEL.to_string()],
            Arc::clone(&counters),
        );
        processors.dead_letter = dead_letter.map(|channel| SourceDeadLetter {
            channel: channel.to_string(),
            source: "r1".to_string(),
        });
        let (stop, signal) = stop_signal();
        let task = tokio::spawn(kind.run(processors, signal));
        RunningSource {
            task,
            counters,
            stop,
        }
    }

    fn counter(&self, read: impl Fn(&SourceCounters) -> &std::sync::atomic::AtomicU64) -> u64 {
        read(&self.counters).load(Ordering::Relaxed)
    }

    /// Waits until the channel has refused one of the source's batches (it was full).
    async fn channel_refused_a_batch(&self) {
        let deadline = tokio::time::Instant::now() + STUCK_TEST_TIMEOUT;
        while self.counter(|counters| &counters.channel_write_failures) == 0 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the channel never refused a batch"
            );
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }

    /// Waits for the source to end by itself.
    async fn ended(self) -> Result<(), SourceError> {
        tokio::time::timeout(STUCK_TEST_TIMEOUT, self.task)
            .await
            .expect("the source ends by itself")
            .expect("the source does not panic")
    }

    /// Stops the source and waits for it.
    async fn stopped(self) -> Result<(), SourceError> {
        self.stop.stop();
        self.ended().await
    }
}

/// A port nobody listened on a moment ago.
fn free_tcp_port() -> u16 {
    std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port()
}

fn free_udp_port() -> u16 {
    StdUdpSocket::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|socket| socket.local_addr())
        .expect("a free port")
        .port()
}

/// Connects to `port` once the source listens there.
async fn connect_when_listening(port: u16, source: &RunningSource) -> tokio::net::TcpStream {
    let deadline = tokio::time::Instant::now() + STUCK_TEST_TIMEOUT;
    loop {
        if let Ok(stream) = tokio::net::TcpStream::connect((Ipv4Addr::LOCALHOST, port)).await {
            return stream;
        }
        assert!(
            !source.task.is_finished(),
            "the source ended before listening on port {port}"
        );
        assert!(
            tokio::time::Instant::now() < deadline,
            "nothing listens on port {port}"
        );
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

/// Takes exactly `count` events from `c1` (committing each take), in order.
async fn take_events(server: &Server, count: usize) -> Vec<Event> {
    take_events_from(server, CHANNEL, count).await
}

/// Takes exactly `count` events from `channel` (committing each take), in order.
async fn take_events_from(server: &Server, channel: &str, count: usize) -> Vec<Event> {
    let mut client = Client::connect(ClientOptions::new(server.protocol_address()))
        .await
        .expect("a consumer connects");
    let mut taken = Vec::new();
    let deadline = tokio::time::Instant::now() + STUCK_TEST_TIMEOUT;
    while taken.len() < count {
        assert!(
            tokio::time::Instant::now() < deadline,
            "only {} of {count} events arrived: {:?}",
            taken.len(),
            bodies(&taken)
        );
        client.begin(channel).await.expect("begin");
        let wanted = u32::try_from(count - taken.len()).unwrap().min(4);
        let batch = client
            .take(wanted, Duration::from_millis(200))
            .await
            .expect("take");
        client.commit().await.expect("commit");
        taken.extend(batch);
    }
    taken
}

/// Events left in `c1`.
async fn channel_size(server: &Server) -> u64 {
    let mut client = Client::connect(ClientOptions::new(server.protocol_address()))
        .await
        .expect("a client connects");
    let stats = client.stats(CHANNEL).await.expect("stats");
    stats.size().expect("a ChannelSize counter")
}

fn body_text(event: &Event) -> String {
    String::from_utf8(event.body.to_vec()).expect("UTF-8 body")
}

fn bodies(events: &[Event]) -> Vec<String> {
    events.iter().map(body_text).collect()
}

fn exec_settings(command: &str) -> ExecSettings {
    ExecSettings {
        command: command.to_string(),
        shell: Some("/bin/sh -c".to_string()),
        restart: false,
        restart_throttle: Duration::from_millis(10_000),
        log_stderr: false,
        batch_size: 20,
        batch_timeout: Duration::from_millis(3_000),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_restarts_a_command_that_exited_and_delivers_the_lines_of_both_runs() {
    let server = server_with_memory_channel(100, 100);
    let source = RunningSource::start(
        SourceKind::Exec(ExecSettings {
            restart: true,
            restart_throttle: Duration::from_millis(50),
            ..exec_settings("echo first; echo second")
        }),
        &server,
    );
    let events = take_events(&server, 4).await;
    assert_eq!(bodies(&events), ["first", "second", "first", "second"]);
    source
        .stopped()
        .await
        .expect("a stopped exec source ends cleanly");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_without_restart_delivers_the_last_partial_batch_and_ends() {
    let server = server_with_memory_channel(100, 100);
    let source = RunningSource::start(
        SourceKind::Exec(ExecSettings {
            batch_size: 2,
            ..exec_settings("printf 'a\\r\\nb\\nc'")
        }),
        &server,
    );
    source
        .ended()
        .await
        .expect("an exec source whose command exited ends cleanly");
    assert_eq!(bodies(&take_events(&server, 3).await), ["a", "b", "c"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_waits_while_the_channel_is_full_and_loses_no_line() {
    const LINES: usize = 120;
    let server = server_with_memory_channel(10, 5);
    let source = RunningSource::start(
        SourceKind::Exec(ExecSettings {
            batch_size: 5,
            ..exec_settings(&format!("seq 1 {LINES}"))
        }),
        &server,
    );
    // The channel holds 10 events: the source runs into it being full before anyone
    // takes anything.
    source.channel_refused_a_batch().await;
    let events = take_events(&server, LINES).await;
    let expected: Vec<String> = (1..=LINES).map(|line| line.to_string()).collect();
    assert_eq!(bodies(&events), expected);
    source
        .ended()
        .await
        .expect("the exec source ends once seq has exited");
    assert_eq!(
        channel_size(&server).await,
        0,
        "no line was delivered twice"
    );
}

fn syslog_settings(port: u16, event_size_bytes: usize) -> SyslogSettings {
    SyslogSettings {
        host: "127.0.0.1".to_string(),
        port,
        event_size_bytes,
        keep_fields: KeepFields::None,
        client_ip_header: Some("client.ip".to_string()),
        client_hostname_header: None,
        batch_size: 100,
        listener: ListenerLimits::default(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn syslog_tcp_delivers_parsed_messages_of_both_rfcs_and_flags_bad_ones_in_order() {
    let server = server_with_memory_channel(100, 100);
    let port = free_tcp_port();
    let source = RunningSource::start(SourceKind::SyslogTcp(syslog_settings(port, 120)), &server);
    let mut stream = connect_when_listening(port, &source).await;
    let rfc5424 = "<165>1 2003-10-11T22:14:15.003Z mymachine.example.com evntslog - ID47 - An application event";
    let counted = "<13>1 2003-10-11T22:14:15Z host2 app - - - two\nlines";
    let input = format!(
        "<34>Oct 11 22:14:15 mymachine su: 'su root' failed\n\
         {rfc5424}\n\
         not syslog at all\n\
         {} {counted}\
         <13>Oct 11 22:14:15 host3 {}\n\
         <13>Oct 11 22:14:15 host4 after the long one\n",
        counted.len(),
        "x".repeat(300),
    );
    tokio::io::AsyncWriteExt::write_all(&mut stream, input.as_bytes())
        .await
        .expect("send");
    drop(stream);
    let events = take_events(&server, 6).await;
    assert_eq!(
        bodies(&events),
        [
            "su: 'su root' failed".to_string(),
            "evntslog - ID47 - An application event".to_string(),
            "not syslog at all".to_string(),
            "app - - - two\nlines".to_string(),
            "x".repeat(120 - "<13>Oct 11 22:14:15 host3 ".len()),
            "after the long one".to_string(),
        ]
    );
    assert_eq!(events[0].header("Facility"), Some("4"));
    assert_eq!(events[0].header("Severity"), Some("2"));
    assert_eq!(events[0].header("host"), Some("mymachine"));
    assert!(events[0]
        .header("timestamp")
        .is_some_and(|millis| millis.parse::<i64>().is_ok()));
    assert_eq!(events[1].header("timestamp"), Some("1065910455003"));
    assert_eq!(events[1].header("host"), Some("mymachine.example.com"));
    assert_eq!(events[1].header("Facility"), Some("20"));
    assert_eq!(events[2].header("flume.syslog.status"), Some("Invalid"));
    assert_eq!(events[3].header("host"), Some("host2"));
    assert_eq!(events[4].header("flume.syslog.status"), Some("Incomplete"));
    assert_eq!(events[5].header("host"), Some("host4"));
    assert!(events
        .iter()
        .all(|event| event.header("client.ip") == Some("127.0.0.1")));
    assert_eq!(source.counter(|counters| &counters.events_received), 6);
    assert_eq!(source.counter(|counters| &counters.events_accepted), 6);
    assert_eq!(source.counter(|counters| &counters.event_read_failures), 2);
    source
        .stopped()
        .await
        .expect("a stopped syslogtcp source ends cleanly");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn syslog_tcp_waits_while_the_channel_is_full_and_loses_no_message() {
    const MESSAGES: usize = 60;
    let server = server_with_memory_channel(10, 5);
    let port = free_tcp_port();
    let source = RunningSource::start(
        SourceKind::SyslogTcp(SyslogSettings {
            batch_size: 5,
            ..syslog_settings(port, 2500)
        }),
        &server,
    );
    let mut stream = connect_when_listening(port, &source).await;
    let input: String = (1..=MESSAGES)
        .map(|number| format!("<13>Oct 11 22:14:15 host message {number}\n"))
        .collect();
    tokio::io::AsyncWriteExt::write_all(&mut stream, input.as_bytes())
        .await
        .expect("send");
    drop(stream);
    source.channel_refused_a_batch().await;
    let events = take_events(&server, MESSAGES).await;
    let expected: Vec<String> = (1..=MESSAGES)
        .map(|number| format!("message {number}"))
        .collect();
    assert_eq!(bodies(&events), expected);
    assert_eq!(
        channel_size(&server).await,
        0,
        "no message was delivered twice"
    );
    source
        .stopped()
        .await
        .expect("a stopped syslogtcp source ends cleanly");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn syslog_udp_delivers_one_event_per_datagram_in_order() {
    let server = server_with_memory_channel(100, 100);
    let port = free_udp_port();
    let source = RunningSource::start(
        SourceKind::SyslogUdp(syslog_settings(port, 65_536)),
        &server,
    );
    let sender = StdUdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).expect("a sending socket");
    sender
        .connect((Ipv4Addr::LOCALHOST, port))
        .expect("aim at the source");
    // Datagrams sent before the source binds are lost: probe until one gets through.
    const PROBE: &str = "<14>Oct 11 22:14:15 prober probe";
    let deadline = tokio::time::Instant::now() + STUCK_TEST_TIMEOUT;
    while source.counter(|counters| &counters.events_accepted) == 0 {
        assert!(!source.task.is_finished(), "the source ended");
        assert!(
            tokio::time::Instant::now() < deadline,
            "no probe got through"
        );
        let _ = sender.send(PROBE.as_bytes());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let messages = [
        "<34>Oct 11 22:14:15 mymachine su: 'su root' failed\n",
        "<165>1 2003-08-24T05:14:15.000003-07:00 192.0.2.1 myproc 8710 - - %% It's time",
        "no priority here",
    ];
    for message in messages {
        sender.send(message.as_bytes()).expect("send a datagram");
    }
    let mut events = Vec::new();
    while events.len() < messages.len() {
        let taken = take_events(&server, 1).await;
        events.extend(
            taken
                .into_iter()
                .filter(|event| event.header("host") != Some("prober")),
        );
    }
    assert_eq!(
        bodies(&events),
        [
            "su: 'su root' failed",
            "myproc 8710 - - %% It's time",
            "no priority here"
        ]
    );
    assert_eq!(events[0].header("host"), Some("mymachine"));
    assert_eq!(events[1].header("timestamp"), Some("1061727255000"));
    assert_eq!(events[1].header("Facility"), Some("20"));
    assert_eq!(events[1].header("Severity"), Some("5"));
    assert_eq!(events[2].header("flume.syslog.status"), Some("Invalid"));
    assert_eq!(events[2].header("client.ip"), Some("127.0.0.1"));
    source
        .stopped()
        .await
        .expect("a stopped syslogudp source ends cleanly");
}

/// Sends one HTTP/1.1 request and returns the status and the body of the answer.
async fn http_request(port: u16, method: &str, body: &str) -> (u16, String) {
    let request = format!(
        "{method} / HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let response = tokio::task::spawn_blocking(move || {
        let mut stream = StdTcpStream::connect((Ipv4Addr::LOCALHOST, port)).expect("connect");
        stream
            .set_read_timeout(Some(STUCK_TEST_TIMEOUT))
            .expect("a read timeout");
        stream.write_all(request.as_bytes()).expect("send");
        let mut response = String::new();
        stream.read_to_string(&mut response).expect("read");
        response
    })
    .await
    .expect("the request task");
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP response: {response:?}"));
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_string())
        .unwrap_or_default();
    (status, body)
}

async fn start_http_source(server: &Server) -> (RunningSource, u16) {
    start_http_source_with(server, HttpLimits::default()).await
}

async fn start_http_source_with(server: &Server, limits: HttpLimits) -> (RunningSource, u16) {
    let port = free_tcp_port();
    let source = RunningSource::start(
        SourceKind::Http(HttpSettings {
            bind: "127.0.0.1".to_string(),
            port,
            limits,
        }),
        server,
    );
    drop(connect_when_listening(port, &source).await);
    (source, port)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_answers_200_once_the_events_are_committed_with_their_headers() {
    let server = server_with_memory_channel(100, 100);
    let (source, port) = start_http_source(&server).await;
    let (status, answer) = http_request(
        port,
        "POST",
        r#"[{"headers": {"a": "b", "c": "d"}, "body": "random_body"}, {"headers": {"e": "f"}, "body": "random_body2"}]"#,
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    let events = take_events(&server, 2).await;
    assert_eq!(bodies(&events), ["random_body", "random_body2"]);
    assert_eq!(events[0].header("a"), Some("b"));
    assert_eq!(events[0].header("c"), Some("d"));
    assert_eq!(events[1].header("e"), Some("f"));
    assert_eq!(
        source.counter(|counters| &counters.append_batches_accepted),
        1
    );
    let (status, _) = http_request(port, "GET", "").await;
    assert_eq!(status, 405);
    source
        .stopped()
        .await
        .expect("a stopped http source ends cleanly");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_answers_400_with_the_reason_for_malformed_json_and_delivers_nothing() {
    let server = server_with_memory_channel(100, 100);
    let (source, port) = start_http_source(&server).await;
    let (status, answer) = http_request(port, "POST", r#"[{"body": "x"}"#).await;
    assert_eq!(status, 400);
    assert!(answer.contains("invalid JSON"), "{answer}");
    let (status, answer) = http_request(port, "POST", r#"{"body": "x"}"#).await;
    assert_eq!(status, 400);
    assert!(answer.contains("expected a JSON array"), "{answer}");
    assert_eq!(channel_size(&server).await, 0);
    assert_eq!(source.counter(|counters| &counters.event_read_failures), 2);
    source
        .stopped()
        .await
        .expect("a stopped http source ends cleanly");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_answers_503_when_the_channel_is_full_and_puts_none_of_that_request() {
    let server = server_with_memory_channel(3, 3);
    let (source, port) = start_http_source(&server).await;
    let (status, answer) =
        http_request(port, "POST", r#"[{"body": "one"}, {"body": "two"}]"#).await;
    assert_eq!(status, 200, "{answer}");
    let (status, answer) =
        http_request(port, "POST", r#"[{"body": "three"}, {"body": "four"}]"#).await;
    assert_eq!(status, 503, "{answer}");
    assert_eq!(
        channel_size(&server).await,
        2,
        "all of a request or none of it"
    );
    assert_eq!(bodies(&take_events(&server, 2).await), ["one", "two"]);
    let (status, answer) =
        http_request(port, "POST", r#"[{"body": "three"}, {"body": "four"}]"#).await;
    assert_eq!(
        status, 200,
        "the retry fits once the channel drained: {answer}"
    );
    assert_eq!(bodies(&take_events(&server, 2).await), ["three", "four"]);
    source
        .stopped()
        .await
        .expect("a stopped http source ends cleanly");
}

/// Sends `raw` on a new connection and reads until the source closes it (or
/// `STUCK_TEST_TIMEOUT`); returns what came back and whether the source closed.
async fn exchange_until_closed(port: u16, raw: Vec<u8>) -> (String, bool) {
    tokio::task::spawn_blocking(move || {
        let mut stream = StdTcpStream::connect((Ipv4Addr::LOCALHOST, port)).expect("connect");
        stream
            .set_read_timeout(Some(STUCK_TEST_TIMEOUT))
            .expect("a read timeout");
        // A source that closes at once may reset the connection under our bytes.
        let _ = stream.write_all(&raw);
        let mut answer = Vec::new();
        let closed = match stream.read_to_end(&mut answer) {
            Ok(_) => true,
            Err(error) => error.kind() == std::io::ErrorKind::ConnectionReset,
        };
        (String::from_utf8_lossy(&answer).into_owned(), closed)
    })
    .await
    .expect("the exchange task")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_answers_413_to_a_10_gb_content_length_without_waiting_for_the_body() {
    let server = server_with_memory_channel(100, 100);
    let (source, port) = start_http_source(&server).await;
    let head = "POST / HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n\
                Content-Length: 10737418240\r\n\r\n";
    let (answer, closed) = exchange_until_closed(port, head.as_bytes().to_vec()).await;
    assert!(closed, "the source closed the connection: {answer:?}");
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(
        answer.contains("more than maxBodyBytes 2097152"),
        "{answer}"
    );
    assert_eq!(source.counter(|counters| &counters.event_read_failures), 1);
    source
        .stopped()
        .await
        .expect("a stopped http source ends cleanly");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_answers_408_and_closes_when_a_body_is_slower_than_request_timeout() {
    let server = server_with_memory_channel(100, 100);
    let limits = HttpLimits {
        request_timeout: Duration::from_millis(500),
        ..HttpLimits::default()
    };
    let (source, port) = start_http_source_with(&server, limits).await;
    // Ten of the hundred bytes announced, then nothing.
    let head = "POST / HTTP/1.1\r\nHost: localhost\r\nContent-Length: 100\r\n\r\n[{\"body\":";
    let (answer, closed) = exchange_until_closed(port, head.as_bytes().to_vec()).await;
    assert!(closed, "the source closed the connection");
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert_eq!(channel_size(&server).await, 0);
    source
        .stopped()
        .await
        .expect("a stopped http source ends cleanly");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_closes_a_connection_silent_past_its_idle_timeout() {
    let server = server_with_memory_channel(100, 100);
    let limits = HttpLimits {
        idle_timeout: Duration::from_millis(300),
        ..HttpLimits::default()
    };
    let (source, port) = start_http_source_with(&server, limits).await;
    let (answer, closed) = exchange_until_closed(port, Vec::new()).await;
    assert!(
        closed && answer.is_empty(),
        "closed without an answer: {answer:?}"
    );
    source
        .stopped()
        .await
        .expect("a stopped http source ends cleanly");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn syslog_tcp_closes_senders_beyond_max_connections_and_silent_ones_after_idle_timeout() {
    let server = server_with_memory_channel(100, 100);
    let port = free_tcp_port();
    let source = RunningSource::start(
        SourceKind::SyslogTcp(SyslogSettings {
            listener: ListenerLimits {
                max_connections: 2,
                idle_timeout: Some(Duration::from_millis(500)),
            },
            ..syslog_settings(port, 2500)
        }),
        &server,
    );
    let mut first = connect_when_listening(port, &source).await;
    let mut second = tokio::net::TcpStream::connect((Ipv4Addr::LOCALHOST, port))
        .await
        .expect("a second sender connects");
    for (number, sender) in [&mut first, &mut second].into_iter().enumerate() {
        tokio::io::AsyncWriteExt::write_all(
            sender,
            format!("<13>Oct 11 22:14:15 host sender {number}\n").as_bytes(),
        )
        .await
        .expect("send");
    }
    // Both are served (their messages arrive) before the third knocks.
    assert_eq!(bodies(&take_events(&server, 2).await).len(), 2);
    let (answer, closed) =
        exchange_until_closed(port, b"<13>Oct 11 22:14:15 host third\n".to_vec()).await;
    assert!(
        closed && answer.is_empty(),
        "the third sender was closed at once"
    );
    // The two silent senders are disconnected after idleTimeout.
    for mut sender in [first, second] {
        let mut rest = Vec::new();
        let read = tokio::time::timeout(
            STUCK_TEST_TIMEOUT,
            tokio::io::AsyncReadExt::read_to_end(&mut sender, &mut rest),
        )
        .await
        .expect("the source disconnects a silent sender");
        assert!(read.is_ok());
    }
    assert_eq!(
        channel_size(&server).await,
        0,
        "the third sender's message was not taken"
    );
    source
        .stopped()
        .await
        .expect("a stopped syslogtcp source ends cleanly");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn syslog_tcp_puts_a_message_its_channel_refuses_on_the_dead_letter_channel_and_the_rest_on_the_channel(
) {
    // c1's log records hold at most 64 KiB; the dead-letter channel takes anything.
    let server = Server::start(ServerSetup::with_config(format!(
        "{AGENT}.channels = {CHANNEL} dead\n\
         {AGENT}.channels.{CHANNEL}.type = file\n\
         {AGENT}.channels.{CHANNEL}.checkpointDir = c1/checkpoint\n\
         {AGENT}.channels.{CHANNEL}.dataDirs = c1/data\n\
         {AGENT}.channels.{CHANNEL}.maxFileSize = 65536\n\
         {AGENT}.channels.{CHANNEL}.minimumRequiredSpace = 1048576\n\
         {AGENT}.channels.dead.type = memory\n"
    )));
    let port = free_tcp_port();
    let source = RunningSource::start_with(
        SourceKind::SyslogTcp(syslog_settings(port, 200_000)),
        &server,
        Some("dead"),
    );
    let mut stream = connect_when_listening(port, &source).await;
    let huge = "h".repeat(100_000);
    let input = format!(
        "<13>Oct 11 22:14:15 host before\n<13>Oct 11 22:14:15 host {huge}\n<13>Oct 11 22:14:15 host after\n"
    );
    tokio::io::AsyncWriteExt::write_all(&mut stream, input.as_bytes())
        .await
        .expect("send");
    drop(stream);
    assert_eq!(bodies(&take_events(&server, 2).await), ["before", "after"]);
    let dead = take_events_from(&server, "dead", 1).await;
    assert_eq!(body_text(&dead[0]), huge);
    assert_eq!(dead[0].header("millrace.deadLetter.source"), Some("r1"));
    assert_eq!(dead[0].header("millrace.deadLetter.channel"), Some(CHANNEL));
    assert!(
        dead[0]
            .header("millrace.deadLetter.reason")
            .is_some_and(|reason| reason.contains("too large")),
        "{:?}",
        dead[0].headers
    );
    assert_eq!(source.counter(|counters| &counters.events_accepted), 2);
    source
        .stopped()
        .await
        .expect("a stopped syslogtcp source ends cleanly");
}
