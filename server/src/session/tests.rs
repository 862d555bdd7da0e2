//! Sessions in-process: a [`Session`] over an in-memory duplex stream, serving channels
//! that a real [`ChannelRegistry`] opened (memory channels, and a file channel in a
//! temporary directory where a commit really waits for the disk). No listener, no
//! daemon, no other process, so each test takes milliseconds. What only a process shows
//! (the listener's connection cap, signals, restarts, a real socket's resets) stays in
//! the end-to-end crate (`tests/tests/protocol_sessions.rs` and its neighbours).

use std::time::Duration;

use millrace_engine::config::{ChannelConfig, FileChannelConfig, MemoryChannelConfig};
use millrace_protocol::{ErrorCode, Event, ResponseDecoder, ResponseFrame};
use tempfile::TempDir;
use tokio::io::DuplexStream;

use super::*;
use crate::config::AuthToken;
use crate::shutdown::ShutdownController;

/// Bytes each direction of the in-memory connection holds before a writer waits: of the
/// order of a socket's buffer, so a pipelined burst and its answers flow as over TCP.
const DUPLEX_BUFFER_BYTES: usize = 256 * 1024;
/// The longest a test waits for one answer or for a session to end. Generous for a
/// loaded machine: it only turns a hang into a failure.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(30);
/// The sessions' deadlines: long enough never to expire in these tests.
const TEST_DEADLINE: Duration = Duration::from_secs(60);
/// A `Take`'s wait that only an arriving event ends within a test.
const LONG_TAKE_WAIT_MS: u32 = 30_000;
/// The memory channel's capacity and transaction capacity.
const MEMORY_CAPACITY_EVENTS: u64 = 10_000;
/// The memory channel's byte capacity (set, so the test does not depend on the
/// machine's memory).
const MEMORY_BYTE_CAPACITY_BYTES: u64 = 16 * 1024 * 1024;
/// The shared token of the tests that require one.
const TOKEN: &str = "s3cret-token";

/// Channels, settings and the stop phase of a server, without its listener.
struct TestServer {
    registry: Arc<ChannelRegistry>,
    settings: Arc<SessionSettings>,
    shutdown: ShutdownController,
    next_connection_id: ConnectionId,
    /// Holds the file channel's directories for as long as the server lives.
    _directory: TempDir,
}

impl TestServer {
    /// A memory channel `m1` and a file channel `f1` (one sync per commit).
    fn new() -> TestServer {
        TestServer::with_auth_token(None)
    }

    fn with_auth_token(auth_token: Option<AuthToken>) -> TestServer {
        let directory = tempfile::tempdir().expect("a directory for the file channel");
        let memory = MemoryChannelConfig {
            capacity: MEMORY_CAPACITY_EVENTS,
            transaction_capacity: MEMORY_CAPACITY_EVENTS,
            byte_capacity_bytes: Some(MEMORY_BYTE_CAPACITY_BYTES),
            ..MemoryChannelConfig::default()
        };
        let file = FileChannelConfig::with_default_dirs(directory.path(), "f1");
        let channels = [
            ("m1".to_string(), ChannelConfig::Memory(memory)),
            ("f1".to_string(), ChannelConfig::File(file)),
        ];
        let (registry, openers) = ChannelRegistry::plan(&channels);
        registry.open_all(openers).expect("the channels open");
        let settings = SessionSettings {
            decode_limits: DecodeLimits::default(),
            frame_deadline: TEST_DEADLINE,
            idle_timeout: TEST_DEADLINE,
            handshake_deadline: TEST_DEADLINE,
            max_take_wait: TEST_DEADLINE,
            auth_token,
            server_name: "channeld (in-process test)".to_string(),
        };
        TestServer {
            registry: Arc::new(registry),
            settings: Arc::new(settings),
            shutdown: ShutdownController::new(),
            next_connection_id: 1,
            _directory: directory,
        }
    }

    /// A new connection with its session running; no handshake yet.
    fn connect(&mut self) -> Peer {
        let (client_side, server_side) = tokio::io::duplex(DUPLEX_BUFFER_BYTES);
        let session = Session::new(
            server_side,
            SocketAddr::from(([127, 0, 0, 1], 0)),
            self.next_connection_id,
            Arc::clone(&self.registry),
            Arc::clone(&self.settings),
            self.shutdown.watcher(),
        );
        self.next_connection_id += 1;
        Peer {
            stream: client_side,
            encoder: Encoder::default(),
            decoder: ResponseDecoder::new(DecodeLimits::default()),
            input: BytesMut::new(),
            last_request_id: RequestId::CONNECTION,
            session: tokio::spawn(session.run(())),
        }
    }

    /// A new connection whose handshake was accepted.
    async fn open(&mut self) -> Peer {
        let mut peer = self.connect();
        let answer = peer.call(&Request::Hello(Hello::new("session-test"))).await;
        assert!(
            matches!(answer, Response::HelloAccepted(_)),
            "handshake refused: {answer:?}"
        );
        peer
    }

    /// The open channel `name`, for the engine's view of what the sessions did.
    fn channel(&self, name: &str) -> Arc<dyn Channel> {
        self.registry
            .get(name)
            .and_then(|entry| entry.channel())
            .expect("an open channel")
    }
}

/// The client's end of an in-memory connection.
struct Peer {
    stream: DuplexStream,
    encoder: Encoder,
    decoder: ResponseDecoder,
    input: BytesMut,
    last_request_id: RequestId,
    session: JoinHandle<()>,
}

impl Peer {
    /// Encodes `requests` back to back and sends them in one write; returns their ids.
    async fn send_pipelined(&mut self, requests: &[Request]) -> Vec<RequestId> {
        let mut bytes = Vec::new();
        let ids = requests
            .iter()
            .map(|request| {
                self.last_request_id = self.last_request_id.next();
                self.encoder
                    .encode_request(self.last_request_id, request, &mut bytes)
                    .expect("encode the request");
                self.last_request_id
            })
            .collect();
        self.stream
            .write_all(&bytes)
            .await
            .expect("send the requests");
        ids
    }

    /// The next answer, or `None` once the session closed the connection.
    async fn try_receive(&mut self) -> Option<ResponseFrame> {
        loop {
            if let Some(frame) = self
                .decoder
                .decode(&mut self.input)
                .expect("a decodable answer")
            {
                return Some(frame);
            }
            let read = timeout(ANSWER_TIMEOUT, self.stream.read_buf(&mut self.input))
                .await
                .expect("an answer within the timeout")
                .expect("reading an answer");
            if read == 0 {
                return None;
            }
        }
    }

    async fn receive(&mut self) -> ResponseFrame {
        self.try_receive()
            .await
            .expect("an answer before the connection closed")
    }

    /// Answers to `requests` pipelined in one write, checked to come once each, in order.
    async fn pipeline(&mut self, requests: &[Request]) -> Vec<Response> {
        let ids = self.send_pipelined(requests).await;
        let mut answers = Vec::with_capacity(ids.len());
        for _ in &ids {
            answers.push(self.receive().await);
        }
        let answered_ids: Vec<RequestId> = answers.iter().map(|frame| frame.request_id).collect();
        assert_eq!(answered_ids, ids, "one answer per request, in order");
        answers.into_iter().map(|frame| frame.response).collect()
    }

    async fn call(&mut self, request: &Request) -> Response {
        self.pipeline(std::slice::from_ref(request)).await.remove(0)
    }

    /// Closes the client's end and waits until the session has ended (rolled back what
    /// was open, released what it held).
    async fn disconnect(self) {
        let Peer {
            stream, session, ..
        } = self;
        drop(stream);
        wait_for_end(session).await;
    }
}

async fn wait_for_end(session: JoinHandle<()>) {
    timeout(ANSWER_TIMEOUT, session)
        .await
        .expect("the session ends within the timeout")
        .expect("the session does not panic");
}

fn batch(bodies: &[&str]) -> EventBatch {
    let events: Vec<Event> = bodies
        .iter()
        .map(|body| Event::new(body.to_string()))
        .collect();
    EventBatch::from_events(&events).expect("a batch within the limits")
}

fn numbered(prefix: &str, count: usize) -> Vec<String> {
    (0..count).map(|n| format!("{prefix}-{n:04}")).collect()
}

fn begin(channel: &str) -> Request {
    Request::Begin {
        channel: channel.to_string(),
    }
}

fn take(max_events: u32, wait_ms: u32) -> Request {
    Request::Take {
        max_events,
        wait_ms,
    }
}

fn put_commit(channel: &str, bodies: &[&str]) -> Request {
    Request::PutCommit {
        channel: channel.to_string(),
        events: batch(bodies),
    }
}

fn stats(channel: &str) -> Request {
    Request::Stats {
        channel: channel.to_string(),
    }
}

fn bodies(response: &Response) -> Vec<String> {
    match response {
        Response::Events(events) => events
            .iter()
            .map(|event| String::from_utf8(event.body().to_vec()).expect("a text body"))
            .collect(),
        other => panic!("expected events, got {other:?}"),
    }
}

fn error_code(response: &Response) -> ErrorCode {
    match response {
        Response::Error(error) => error.code,
        other => panic!("expected an error, got {other:?}"),
    }
}

fn counters(response: &Response) -> &ChannelStats {
    match response {
        Response::Stats(stats) => stats,
        other => panic!("expected stats, got {other:?}"),
    }
}

/// Commits `bodies` into `channel` through the engine, beside the sessions.
fn put_directly(channel: &dyn Channel, bodies: &[&str]) {
    let mut transaction = channel.begin().expect("begin");
    for body in bodies {
        transaction
            .put(millrace_engine::Event::from_body(body.to_string()))
            .expect("put");
    }
    transaction.commit().expect("commit");
}

/// Takes everything `channel` holds through the engine, in order, and commits.
fn take_all_directly(channel: &dyn Channel) -> Vec<String> {
    let mut transaction = channel.begin().expect("begin");
    let mut taken = Vec::new();
    while let Some(event) = transaction.take().expect("take") {
        taken.push(String::from_utf8(event.body.to_vec()).expect("a text body"));
    }
    transaction.commit().expect("commit");
    taken
}

#[tokio::test]
async fn pipelined_requests_are_answered_once_each_in_order() {
    let mut server = TestServer::new();
    let mut peer = server.connect();
    let answers = peer
        .pipeline(&[
            Request::Hello(Hello::new("pipeliner")),
            begin("m1"),
            Request::Put {
                events: batch(&["a", "b"]),
            },
            Request::Put {
                events: batch(&["c"]),
            },
            Request::Commit,
            Request::Ping,
            begin("m1"),
            take(10, 0),
            Request::Commit,
            stats("m1"),
        ])
        .await;
    assert!(matches!(answers[0], Response::HelloAccepted(_)));
    for index in [1, 2, 3, 4, 6, 8] {
        assert_eq!(answers[index], Response::Ok, "answer {index}");
    }
    assert_eq!(answers[5], Response::Pong);
    assert_eq!(bodies(&answers[7]), ["a", "b", "c"]);
    let stats = counters(&answers[9]);
    assert_eq!(stats.size(), Some(0));
    assert_eq!(stats.get("EventPutSuccessCount"), Some(3));
    assert_eq!(stats.get("EventTakeSuccessCount"), Some(3));
}

#[tokio::test]
async fn pipelined_put_commits_on_a_file_channel_are_answered_in_order_and_keep_that_order() {
    const BATCHES: usize = 40;
    let mut server = TestServer::new();
    let mut peer = server.open().await;
    let batches: Vec<Vec<String>> = (0..BATCHES)
        .map(|batch| numbered(&format!("{batch:03}"), 3))
        .collect();
    let mut requests: Vec<Request> = batches
        .iter()
        .map(|bodies| {
            let bodies: Vec<&str> = bodies.iter().map(String::as_str).collect();
            put_commit("f1", &bodies)
        })
        .collect();
    requests.extend([stats("f1"), begin("f1"), take(1_000, 0), Request::Commit]);
    let answers = peer.pipeline(&requests).await;
    for (index, answer) in answers[..BATCHES].iter().enumerate() {
        assert_eq!(*answer, Response::Ok, "put-commit {index}");
    }
    assert_eq!(
        counters(&answers[BATCHES]).get("EventPutSuccessCount"),
        Some(3 * BATCHES as u64)
    );
    assert_eq!(bodies(&answers[BATCHES + 2]), batches.concat());
    assert_eq!(answers[BATCHES + 3], Response::Ok);
}

#[tokio::test]
async fn a_take_pipelined_behind_a_put_commit_on_its_way_to_the_disk_sees_its_events() {
    let mut server = TestServer::new();
    let mut peer = server.open().await;
    // The commit waits for fdatasync while the Begin and Take are already read: they
    // must wait for it, or the take (which does not wait) would find nothing.
    let answers = peer
        .pipeline(&[
            put_commit("f1", &["written", "then read"]),
            begin("f1"),
            take(10, 0),
            Request::Commit,
        ])
        .await;
    assert_eq!(answers[0], Response::Ok);
    assert_eq!(answers[1], Response::Ok);
    assert_eq!(bodies(&answers[2]), ["written", "then read"]);
    assert_eq!(answers[3], Response::Ok);
}

#[tokio::test]
async fn pipelined_take_transactions_deliver_each_event_once_in_order() {
    const TRANSACTIONS: usize = 5;
    const EVENTS_PER_TAKE: u32 = 50;
    let mut server = TestServer::new();
    let expected = numbered("event", TRANSACTIONS * EVENTS_PER_TAKE as usize);
    let expected_refs: Vec<&str> = expected.iter().map(String::as_str).collect();
    put_directly(server.channel("f1").as_ref(), &expected_refs);
    let mut peer = server.open().await;
    // Each take's commit is still syncing while the next Begin and Take are served.
    let mut requests = Vec::new();
    for _ in 0..TRANSACTIONS {
        requests.extend([begin("f1"), take(EVENTS_PER_TAKE, 0), Request::Commit]);
    }
    requests.push(stats("f1"));
    let answers = peer.pipeline(&requests).await;
    let mut taken = Vec::new();
    for transaction in answers[..3 * TRANSACTIONS].chunks(3) {
        assert_eq!(transaction[0], Response::Ok);
        taken.extend(bodies(&transaction[1]));
        assert_eq!(transaction[2], Response::Ok);
    }
    assert_eq!(taken, expected, "every event once, in order");
    let stats = counters(&answers[3 * TRANSACTIONS]);
    assert_eq!(stats.size(), Some(0));
    assert_eq!(
        stats.get("EventTakeSuccessCount"),
        Some(expected.len() as u64)
    );
}

#[tokio::test]
async fn answers_queued_before_a_waiting_take_arrive_before_it_waits_and_an_arrival_ends_the_wait()
{
    let mut server = TestServer::new();
    let mut peer = server.open().await;
    let ids = peer
        .send_pipelined(&[Request::Ping, begin("m1"), take(10, LONG_TAKE_WAIT_MS)])
        .await;
    // The Take waits for an event: the Ping's and the Begin's answers must not wait with
    // it.
    assert_eq!(peer.receive().await.response, Response::Pong);
    assert_eq!(peer.receive().await.response, Response::Ok);
    let mut producer = server.open().await;
    assert_eq!(
        producer.call(&put_commit("m1", &["arrived"])).await,
        Response::Ok
    );
    let taken = peer.receive().await;
    assert_eq!(taken.request_id, ids[2]);
    assert_eq!(bodies(&taken.response), ["arrived"]);
    assert_eq!(peer.call(&Request::Commit).await, Response::Ok);
}

#[tokio::test]
async fn disconnect_mid_transaction_returns_taken_events_to_the_head_in_order() {
    let mut server = TestServer::new();
    for channel in ["m1", "f1"] {
        put_directly(
            server.channel(channel).as_ref(),
            &["first", "second", "third"],
        );
        let mut consumer = server.open().await;
        assert_eq!(consumer.call(&begin(channel)).await, Response::Ok);
        assert_eq!(
            bodies(&consumer.call(&take(2, 0)).await),
            ["first", "second"]
        );
        consumer.disconnect().await;
        assert_eq!(
            take_all_directly(server.channel(channel).as_ref()),
            ["first", "second", "third"],
            "{channel}: the rolled-back takes are back at the head, in order"
        );
    }
}

#[tokio::test]
async fn disconnect_mid_transaction_discards_uncommitted_puts() {
    let mut server = TestServer::new();
    for channel in ["m1", "f1"] {
        let mut producer = server.open().await;
        assert_eq!(producer.call(&begin(channel)).await, Response::Ok);
        let put = Request::Put {
            events: batch(&["never"]),
        };
        assert_eq!(producer.call(&put).await, Response::Ok);
        producer.disconnect().await;
        let stats = server.channel(channel).stats();
        assert_eq!(stats.channel_size, 0, "{channel}");
        assert_eq!(stats.event_put_success_count, 0, "{channel}");
        assert!(take_all_directly(server.channel(channel).as_ref()).is_empty());
    }
}

#[tokio::test]
async fn a_client_closing_its_side_behind_pipelined_put_commits_still_gets_every_answer() {
    const BATCHES: usize = 10;
    let mut server = TestServer::new();
    let mut peer = server.open().await;
    let requests: Vec<Request> = (0..BATCHES)
        .map(|batch| put_commit("f1", &[&format!("batch-{batch}")]))
        .collect();
    let ids = peer.send_pipelined(&requests).await;
    peer.stream.shutdown().await.expect("half-close");
    for id in ids {
        let answer = peer.receive().await;
        assert_eq!((answer.request_id, answer.response), (id, Response::Ok));
    }
    assert!(
        peer.try_receive().await.is_none(),
        "the session closes after the last answer"
    );
    wait_for_end(peer.session).await;
    assert_eq!(
        server.channel("f1").stats().event_put_success_count,
        BATCHES as u64
    );
}

#[tokio::test]
async fn a_second_begin_is_refused_while_a_transaction_is_open() {
    let mut server = TestServer::new();
    let mut peer = server.open().await;
    let answers = peer
        .pipeline(&[
            begin("m1"),
            begin("m1"),
            put_commit("m1", &["fused"]),
            Request::Rollback,
            Request::Commit,
        ])
        .await;
    assert_eq!(answers[0], Response::Ok);
    assert_eq!(error_code(&answers[1]), ErrorCode::TransactionAlreadyOpen);
    assert_eq!(error_code(&answers[2]), ErrorCode::TransactionAlreadyOpen);
    assert_eq!(answers[3], Response::Ok);
    assert_eq!(error_code(&answers[4]), ErrorCode::NoTransaction);
}

#[tokio::test]
async fn draining_closes_an_idle_session_and_lets_an_open_transaction_commit() {
    let mut server = TestServer::new();
    let mut idle = server.open().await;
    let mut producer = server.open().await;
    assert_eq!(producer.call(&begin("m1")).await, Response::Ok);
    server.shutdown.advance(ShutdownPhase::Draining);

    let goodbye = idle.receive().await;
    assert_eq!(error_code(&goodbye.response), ErrorCode::ShuttingDown);
    assert!(
        idle.try_receive().await.is_none(),
        "then the session closes"
    );

    let put = Request::Put {
        events: batch(&["last one in"]),
    };
    assert_eq!(producer.call(&put).await, Response::Ok);
    assert_eq!(producer.call(&Request::Commit).await, Response::Ok);
    // With its transaction over, the producer's session says goodbye too.
    let goodbye = producer.receive().await;
    assert_eq!(error_code(&goodbye.response), ErrorCode::ShuttingDown);
    assert!(producer.try_receive().await.is_none());
    assert_eq!(
        take_all_directly(server.channel("m1").as_ref()),
        ["last one in"]
    );
}

#[tokio::test]
async fn only_the_configured_token_is_accepted() {
    let mut server = TestServer::with_auth_token(Some(AuthToken::new(TOKEN)));
    for offered in [None, Some("s3cret-tokeN"), Some("s3cret")] {
        let mut peer = server.connect();
        let mut hello = Hello::new("guesser");
        hello.auth_token = offered.map(str::to_string);
        match peer.call(&Request::Hello(hello)).await {
            Response::HandshakeRejected(error) => {
                assert_eq!(error.code, ErrorCode::Unauthorized, "{offered:?}")
            }
            other => panic!("{offered:?}: expected a rejection, got {other:?}"),
        }
        assert!(
            peer.try_receive().await.is_none(),
            "{offered:?}: then a close"
        );
    }
    let mut peer = server.connect();
    let hello = Hello::new("knows it").with_auth_token(TOKEN);
    assert!(matches!(
        peer.call(&Request::Hello(hello)).await,
        Response::HelloAccepted(_)
    ));
    assert_eq!(peer.call(&Request::Ping).await, Response::Pong);
}

#[test]
fn tokens_match_only_when_equal() {
    assert!(tokens_match("s3cret", "s3cret"));
    assert!(!tokens_match("s3creT", "s3cret"));
    assert!(!tokens_match("s3cre", "s3cret"));
    assert!(!tokens_match("", "s3cret"));
}

#[test]
fn repeated_header_keys_keep_the_last_value() {
    let event = millrace_protocol::Event::new("body")
        .with_header("k", "first")
        .with_header("k", "second");
    let engine_event = to_engine_event(event);
    assert_eq!(
        engine_event.headers.get("k").map(String::as_str),
        Some("second")
    );
    assert_eq!(&engine_event.body[..], b"body");
}
