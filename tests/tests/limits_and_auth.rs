//! Limits enforced before allocating, non-Millrace clients, and the shared token,
//! against a real channeld.

use std::io::Write;
use std::net::TcpStream;
use std::thread;
use std::time::{Duration, Instant};

use millrace_e2e::{successful_lines, wait_until, RawConnection, Server, ServerSetup};
use millrace_protocol::{
    fields, ErrorCode, ErrorResponse, Event, EventBatch, Hello, LooksLike, Request, RequestId,
    Response, MAGIC,
};

const MIB: u64 = 1024 * 1024;

fn rejection_of(response: Response) -> ErrorResponse {
    match response {
        Response::HandshakeRejected(error) => error,
        other => panic!("expected a handshake rejection, got {other:?}"),
    }
}

fn error_of(response: Response) -> ErrorResponse {
    match response {
        Response::Error(error) => error,
        other => panic!("expected an error, got {other:?}"),
    }
}

fn assert_closed_by_server(connection: &mut RawConnection) {
    let (_, closed) = connection.read_until_closed();
    assert!(closed, "the server should have closed the connection");
}

#[test]
fn an_oversized_length_prefix_is_refused_and_closed_without_a_big_allocation() {
    let server = Server::start(ServerSetup::embedded_default());
    let mut connection = RawConnection::open(server.protocol_address());
    let resident_before = server.resident_memory_bytes();
    // A frame header announcing 4 GiB, then nothing.
    let mut header = u32::MAX.to_le_bytes().to_vec();
    header.push(0x04);
    header.extend_from_slice(&7u32.to_le_bytes());
    connection.send_bytes(&header);
    let frame = connection.receive();
    assert_eq!(frame.request_id, RequestId::CONNECTION);
    let error = error_of(frame.response);
    assert_eq!(error.code, ErrorCode::FrameTooLarge);
    assert_eq!(
        error.field(fields::FRAME_BYTES),
        Some(u64::from(u32::MAX) + 4)
    );
    assert_eq!(error.field(fields::MAX_FRAME_BYTES), Some(64 * MIB));
    assert_closed_by_server(&mut connection);
    let growth = server
        .resident_memory_bytes()
        .saturating_sub(resident_before);
    assert!(growth < 16 * MIB, "resident memory grew by {growth} bytes");
}

#[test]
fn an_oversized_first_frame_gets_a_handshake_rejection() {
    let server = Server::start(ServerSetup::embedded_default());
    let mut connection = server.connect_raw();
    let mut bytes = MAGIC.to_vec();
    bytes.extend_from_slice(&0x7FFF_FFF0u32.to_le_bytes());
    connection.send_bytes(&bytes);
    let error = rejection_of(connection.receive().response);
    assert_eq!(error.code, ErrorCode::FrameTooLarge);
    assert_closed_by_server(&mut connection);
}

#[test]
fn a_slow_sender_is_closed_at_the_frame_deadline() {
    let server = Server::start(
        ServerSetup::embedded_default()
            .arg("--frame-deadline-ms")
            .arg("1000"),
    );
    let mut connection = server.connect_raw();
    let mut hello_bytes = Vec::new();
    millrace_protocol::Encoder::default()
        .encode_request(
            RequestId(1),
            &Request::Hello(Hello::new("slowloris")),
            &mut hello_bytes,
        )
        .unwrap();
    // One byte every 150 ms: each byte arrives well within any idle timeout, but the
    // frame would take seconds to complete.
    let mut trickle = TcpStream::try_clone(connection_stream(&connection)).unwrap();
    let started = Instant::now();
    let sender = thread::spawn(move || {
        for byte in hello_bytes {
            if trickle.write_all(&[byte]).is_err() {
                return;
            }
            thread::sleep(Duration::from_millis(150));
        }
    });
    let error = rejection_of(connection.receive().response);
    let elapsed = started.elapsed();
    assert_eq!(error.code, ErrorCode::TimedOut);
    assert_eq!(error.field(fields::LIMIT_MS), Some(1000));
    assert!(
        error.message.contains("frame-completion deadline"),
        "{}",
        error.message
    );
    assert!(
        elapsed >= Duration::from_millis(900) && elapsed < Duration::from_secs(4),
        "closed after {elapsed:?}"
    );
    assert_closed_by_server(&mut connection);
    sender.join().unwrap();
}

/// The raw connection's socket, to write from another thread.
fn connection_stream(connection: &RawConnection) -> &TcpStream {
    connection.stream()
}

#[test]
fn an_idle_connection_is_closed_and_its_transaction_rolled_back() {
    let server = Server::start(
        ServerSetup::embedded_default()
            .arg("--idle-timeout-ms")
            .arg("500"),
    );
    let mut producer = RawConnection::open(server.protocol_address());
    assert_eq!(
        producer.call(&Request::PutCommit {
            channel: "default".into(),
            events: EventBatch::from_events(&[Event::new("kept")]).unwrap(),
        }),
        Response::Ok
    );
    producer.disconnect();
    let mut idler = RawConnection::open(server.protocol_address());
    assert_eq!(
        idler.call(&Request::Begin {
            channel: "default".into()
        }),
        Response::Ok
    );
    assert!(matches!(
        idler.call(&Request::Take { max_events: 1, wait_ms: 0 }),
        Response::Events(events) if events.len() == 1
    ));
    let started = Instant::now();
    let frame = idler.receive();
    assert_eq!(frame.request_id, RequestId::CONNECTION);
    let error = error_of(frame.response);
    assert_eq!(error.code, ErrorCode::TimedOut);
    assert_eq!(error.field(fields::LIMIT_MS), Some(500));
    assert!(started.elapsed() < Duration::from_secs(4));
    assert_closed_by_server(&mut idler);
    let take = successful_lines(&server.channelctl("take", &["--wait-ms", "500"], b""));
    assert_eq!(
        take,
        ["kept"],
        "the idle transaction's take was rolled back"
    );
}

#[test]
fn connections_beyond_the_cap_are_refused_with_an_error_frame() {
    let server = Server::start(
        ServerSetup::embedded_default()
            .arg("--max-connections")
            .arg("2"),
    );
    let first = RawConnection::open(server.protocol_address());
    let _second = RawConnection::open(server.protocol_address());
    let mut third = server.connect_raw();
    let error = rejection_of(third.receive().response);
    assert_eq!(error.code, ErrorCode::TooManyConnections);
    assert_eq!(error.field(fields::MAX_CONNECTIONS), Some(2));
    assert_closed_by_server(&mut third);

    first.disconnect();
    let accepted_again = wait_until(Duration::from_secs(10), || {
        let mut connection = server.connect_raw();
        matches!(connection.handshake(None), Response::HelloAccepted(_))
    });
    assert!(accepted_again, "a freed place must be usable again");
}

#[test]
fn an_http_request_on_the_protocol_port_gets_a_hint_and_a_close() {
    let server = Server::start(ServerSetup::embedded_default());
    let mut connection = server.connect_raw();
    connection.send_bytes(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n");
    let (reply, closed) = connection.read_until_closed();
    assert!(closed);
    assert_eq!(reply, LooksLike::Http.hint_reply());
    let text = String::from_utf8(reply).unwrap();
    assert!(text.starts_with("HTTP/1.0 400 Bad Request\r\n"), "{text}");
    assert!(text.contains("Millrace"), "{text}");
}

#[test]
fn a_tls_client_hello_on_the_protocol_port_gets_a_tls_alert() {
    let server = Server::start(ServerSetup::embedded_default());
    let mut connection = server.connect_raw();
    connection.send_bytes(&[
        0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xFC, 0x03, 0x03,
    ]);
    let (reply, closed) = connection.read_until_closed();
    assert!(closed);
    assert_eq!(reply, LooksLike::Tls.hint_reply());
}

fn token_server() -> Server {
    Server::start(
        ServerSetup::embedded_default()
            .arg("--auth-token")
            .arg("s3cret"),
    )
}

#[test]
fn a_missing_token_is_refused() {
    let server = token_server();
    let mut connection = server.connect_raw();
    let error = rejection_of(connection.handshake(None));
    assert_eq!(error.code, ErrorCode::Unauthorized);
    assert_closed_by_server(&mut connection);
}

#[test]
fn a_wrong_token_is_refused() {
    let server = token_server();
    for wrong in ["s3creT", "s3cre", "s3crett", ""] {
        let mut connection = server.connect_raw();
        let error = rejection_of(connection.handshake(Some(wrong)));
        assert_eq!(error.code, ErrorCode::Unauthorized, "token {wrong:?}");
        assert_closed_by_server(&mut connection);
    }
}

#[test]
fn requests_pipelined_behind_a_refused_hello_are_not_executed() {
    let server = token_server();
    let mut intruder = server.connect_raw();
    let mut hello = Hello::new("intruder");
    hello.auth_token = Some("guess".into());
    intruder.send_pipelined(&[
        Request::Hello(hello),
        Request::PutCommit {
            channel: "default".into(),
            events: EventBatch::from_events(&[Event::new("smuggled")]).unwrap(),
        },
    ]);
    let error = rejection_of(intruder.receive().response);
    assert_eq!(error.code, ErrorCode::Unauthorized);
    assert_closed_by_server(&mut intruder);

    let mut insider = server.connect_raw();
    assert!(matches!(
        insider.handshake(Some("s3cret")),
        Response::HelloAccepted(_)
    ));
    match insider.call(&Request::Stats {
        channel: "default".into(),
    }) {
        Response::Stats(stats) => assert_eq!(stats.size(), Some(0), "nothing was put"),
        other => panic!("expected stats, got {other:?}"),
    }
}

#[test]
fn channelctl_needs_the_token_when_the_server_has_one() {
    let server = token_server();
    let refused = server.channelctl("put", &[], b"a\n");
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("UNAUTHORIZED"));
    let put = server.channelctl("put", &["--auth-token", "s3cret"], b"a\n");
    assert_eq!(successful_lines(&put), ["committed 1"]);
}
