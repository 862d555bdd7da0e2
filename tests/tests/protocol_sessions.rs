//! Transactions over the wire against a real channeld: pipelining, disconnect =
//! rollback, errors that name their limits, one transaction per connection.

use millrace_e2e::{
    file_channels_config, successful_lines, RawConnection, Server, ServerSetup, AGENT,
};
use millrace_protocol::{fields, ErrorCode, Event, EventBatch, Request, Response};

fn batch(bodies: &[&str]) -> EventBatch {
    let events: Vec<Event> = bodies
        .iter()
        .map(|body| Event::new(body.to_string()))
        .collect();
    EventBatch::from_events(&events).unwrap()
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

fn bodies(response: &Response) -> Vec<String> {
    match response {
        Response::Events(events) => events
            .iter()
            .map(|event| String::from_utf8(event.body().to_vec()).unwrap())
            .collect(),
        other => panic!("expected events, got {other:?}"),
    }
}

fn error_of(response: Response) -> millrace_protocol::ErrorResponse {
    match response {
        Response::Error(error) => error,
        other => panic!("expected an error, got {other:?}"),
    }
}

fn put_commit(connection: &mut RawConnection, channel: &str, bodies: &[&str]) {
    let response = connection.call(&Request::PutCommit {
        channel: channel.to_string(),
        events: batch(bodies),
    });
    assert_eq!(response, Response::Ok);
}

#[test]
fn pipelined_requests_are_answered_once_each_in_order() {
    let server = Server::start(ServerSetup::embedded_default());
    let mut connection = server.connect_raw();
    let mut hello = millrace_protocol::Hello::new("pipeliner");
    hello.auth_token = None;
    // Everything in one write, right behind the Hello.
    let requests = vec![
        Request::Hello(hello),
        begin("default"),
        Request::Put {
            events: batch(&["a", "b"]),
        },
        Request::Put {
            events: batch(&["c"]),
        },
        Request::Commit,
        Request::Ping,
        begin("default"),
        take(10, 0),
        Request::Commit,
        Request::Stats {
            channel: "default".into(),
        },
    ];
    let ids = connection.send_pipelined(&requests);
    let answers: Vec<_> = ids.iter().map(|_| connection.receive()).collect();
    let answered_ids: Vec<_> = answers.iter().map(|frame| frame.request_id).collect();
    assert_eq!(answered_ids, ids, "one answer per request, in order");
    assert!(matches!(answers[0].response, Response::HelloAccepted(_)));
    for index in [1, 2, 3, 4, 6, 8] {
        assert_eq!(answers[index].response, Response::Ok, "answer {index}");
    }
    assert_eq!(answers[5].response, Response::Pong);
    assert_eq!(bodies(&answers[7].response), ["a", "b", "c"]);
    match &answers[9].response {
        Response::Stats(stats) => {
            assert_eq!(stats.size(), Some(0));
            assert_eq!(stats.get("EventPutSuccessCount"), Some(3));
            assert_eq!(stats.get("EventTakeSuccessCount"), Some(3));
        }
        other => panic!("expected stats, got {other:?}"),
    }
}

#[test]
fn pipelined_put_commits_are_answered_in_order_and_their_events_keep_that_order() {
    const BATCHES: usize = 80;
    let server = Server::start(ServerSetup::embedded_default());
    let mut connection = server.connect_raw();
    let mut requests = vec![Request::Hello(millrace_protocol::Hello::new("pipeliner"))];
    let batches: Vec<Vec<String>> = (0..BATCHES)
        .map(|batch| (0..3).map(|index| format!("{batch:03}-{index}")).collect())
        .collect();
    for bodies in &batches {
        let bodies: Vec<&str> = bodies.iter().map(String::as_str).collect();
        requests.push(Request::PutCommit {
            channel: "default".into(),
            events: batch(&bodies),
        });
    }
    // A request behind them waits until every PutCommit before it is answered.
    requests.push(Request::Stats {
        channel: "default".into(),
    });
    requests.push(begin("default"));
    requests.push(take(1_000, 0));
    requests.push(Request::Commit);
    let ids = connection.send_pipelined(&requests);
    let answers: Vec<_> = ids.iter().map(|_| connection.receive()).collect();
    let answered_ids: Vec<_> = answers.iter().map(|frame| frame.request_id).collect();
    assert_eq!(answered_ids, ids, "one answer per request, in order");
    for (index, answer) in answers[1..=BATCHES].iter().enumerate() {
        assert_eq!(answer.response, Response::Ok, "put-commit {index}");
    }
    match &answers[BATCHES + 1].response {
        Response::Stats(stats) => {
            assert_eq!(stats.get("EventPutSuccessCount"), Some(3 * BATCHES as u64));
        }
        other => panic!("expected stats, got {other:?}"),
    }
    let expected: Vec<String> = batches.concat();
    assert_eq!(bodies(&answers[BATCHES + 3].response), expected);
}

#[test]
fn pipelined_take_transactions_deliver_each_event_once_in_order() {
    let server = Server::start(ServerSetup::embedded_default());
    let mut connection = server.connect_raw();
    let expected: Vec<String> = (0..250).map(|n| format!("{n:04}")).collect();
    let body_refs: Vec<&str> = expected.iter().map(String::as_str).collect();
    let mut requests = vec![
        Request::Hello(millrace_protocol::Hello::new("consumer")),
        Request::PutCommit {
            channel: "default".into(),
            events: batch(&body_refs),
        },
    ];
    // Five take transactions back to back: each commit is still syncing while the next
    // Begin and Take are served.
    for _ in 0..5 {
        requests.extend([begin("default"), take(100, 0), Request::Commit]);
    }
    requests.push(Request::Stats {
        channel: "default".into(),
    });
    let ids = connection.send_pipelined(&requests);
    let answers: Vec<_> = ids.iter().map(|_| connection.receive()).collect();
    let answered_ids: Vec<_> = answers.iter().map(|frame| frame.request_id).collect();
    assert_eq!(answered_ids, ids, "one answer per request, in order");
    assert_eq!(answers[1].response, Response::Ok);
    let mut taken = Vec::new();
    for transaction in 0..5 {
        let first = 2 + 3 * transaction;
        assert_eq!(answers[first].response, Response::Ok, "begin {transaction}");
        taken.extend(bodies(&answers[first + 1].response));
        assert_eq!(
            answers[first + 2].response,
            Response::Ok,
            "commit {transaction}"
        );
    }
    assert_eq!(taken, expected, "every event once, in order");
    match &answers[17].response {
        Response::Stats(stats) => {
            assert_eq!(stats.size(), Some(0));
            assert_eq!(stats.get("EventTakeSuccessCount"), Some(250));
        }
        other => panic!("expected stats, got {other:?}"),
    }
}

#[test]
fn disconnect_mid_transaction_returns_taken_events_to_the_head() {
    let server = Server::start(ServerSetup::embedded_default());
    let mut producer = RawConnection::open(server.protocol_address());
    put_commit(&mut producer, "default", &["first", "second", "third"]);

    let mut consumer = RawConnection::open(server.protocol_address());
    assert_eq!(consumer.call(&begin("default")), Response::Ok);
    assert_eq!(bodies(&consumer.call(&take(2, 0))), ["first", "second"]);
    consumer.disconnect();

    // The rollback happens as the server notices the close; the next consumer sees the
    // events again, in their original order.
    let mut next = RawConnection::open(server.protocol_address());
    let mut seen = Vec::new();
    for _ in 0..100 {
        assert_eq!(next.call(&begin("default")), Response::Ok);
        seen = bodies(&next.call(&take(10, 200)));
        if seen.len() == 3 {
            break;
        }
        assert_eq!(next.call(&Request::Rollback), Response::Ok);
    }
    assert_eq!(seen, ["first", "second", "third"]);
}

#[test]
fn disconnect_mid_transaction_discards_uncommitted_puts() {
    let server = Server::start(ServerSetup::embedded_default());
    let mut producer = RawConnection::open(server.protocol_address());
    assert_eq!(producer.call(&begin("default")), Response::Ok);
    assert_eq!(
        producer.call(&Request::Put {
            events: batch(&["never"])
        }),
        Response::Ok
    );
    producer.disconnect();

    let mut writer = RawConnection::open(server.protocol_address());
    put_commit(&mut writer, "default", &["committed"]);
    let take = successful_lines(&server.channelctl("take", &["--wait-ms", "200"], b""));
    assert_eq!(take, ["committed"]);
}

#[test]
fn a_connection_holds_one_transaction_at_a_time() {
    let server = Server::start(ServerSetup::embedded_default());
    let mut connection = RawConnection::open(server.protocol_address());
    assert_eq!(connection.call(&begin("default")), Response::Ok);
    let second = error_of(connection.call(&begin("default")));
    assert_eq!(second.code, ErrorCode::TransactionAlreadyOpen);
    let fused = error_of(connection.call(&Request::PutCommit {
        channel: "default".into(),
        events: batch(&["x"]),
    }));
    assert_eq!(fused.code, ErrorCode::TransactionAlreadyOpen);
    assert_eq!(connection.call(&Request::Rollback), Response::Ok);
    let none = error_of(connection.call(&Request::Commit));
    assert_eq!(none.code, ErrorCode::NoTransaction);
    let unknown = error_of(connection.call(&begin("nope")));
    assert_eq!(unknown.code, ErrorCode::UnknownChannel);
    // Request-level errors leave the connection open.
    assert_eq!(connection.call(&Request::Ping), Response::Pong);
}

#[test]
fn a_put_over_transaction_capacity_names_the_limit_and_rolls_back() {
    let extra = format!(
        "{AGENT}.channels.small.capacity = 10\n{AGENT}.channels.small.transactionCapacity = 3\n"
    );
    let server = Server::start(ServerSetup::with_config(file_channels_config(
        &["small"],
        &extra,
    )));
    let mut connection = RawConnection::open(server.protocol_address());
    // Pipelined: the failing put rolls the transaction back, so the commit behind it
    // finds no transaction and nothing of the batch is ever committed.
    let ids = connection.send_pipelined(&[
        begin("small"),
        Request::Put {
            events: batch(&["1", "2"]),
        },
        Request::Put {
            events: batch(&["3", "4"]),
        },
        Request::Commit,
    ]);
    let answers: Vec<_> = ids.iter().map(|_| connection.receive().response).collect();
    assert_eq!(answers[0], Response::Ok);
    assert_eq!(answers[1], Response::Ok);
    let too_large = error_of(answers[2].clone());
    assert_eq!(too_large.code, ErrorCode::TransactionTooLarge);
    assert_eq!(too_large.channel.as_deref(), Some("small"));
    assert_eq!(too_large.field(fields::TRANSACTION_CAPACITY), Some(3));
    assert_eq!(too_large.field(fields::ATTEMPTED_EVENTS), Some(4));
    assert!(
        too_large.message.contains("transactionCapacity 3"),
        "{}",
        too_large.message
    );
    assert_eq!(error_of(answers[3].clone()).code, ErrorCode::NoTransaction);

    match connection.call(&Request::Stats {
        channel: "small".into(),
    }) {
        Response::Stats(stats) => assert_eq!(stats.size(), Some(0)),
        other => panic!("expected stats, got {other:?}"),
    }
}

#[test]
fn a_full_channel_names_capacity_and_size() {
    let extra = format!(
        "{AGENT}.channels.small.capacity = 2\n\
         {AGENT}.channels.small.transactionCapacity = 2\n\
         {AGENT}.channels.small.keep-alive = 0\n"
    );
    let server = Server::start(ServerSetup::with_config(file_channels_config(
        &["small"],
        &extra,
    )));
    let mut connection = RawConnection::open(server.protocol_address());
    put_commit(&mut connection, "small", &["1", "2"]);
    let full = error_of(connection.call(&Request::PutCommit {
        channel: "small".into(),
        events: batch(&["3"]),
    }));
    assert_eq!(full.code, ErrorCode::ChannelFull);
    assert_eq!(full.field(fields::CAPACITY), Some(2));
    assert_eq!(full.field(fields::SIZE), Some(2));
    assert!(full.message.contains("'small'"), "{}", full.message);
    // Retryable: the connection stays usable.
    assert_eq!(connection.call(&Request::Ping), Response::Pong);
}

#[test]
fn a_take_waits_for_an_event_put_meanwhile() {
    let server = Server::start(ServerSetup::embedded_default());
    let mut consumer = RawConnection::open(server.protocol_address());
    assert_eq!(consumer.call(&begin("default")), Response::Ok);
    let take_id = consumer.send(&take(5, 10_000));
    std::thread::sleep(std::time::Duration::from_millis(200));
    let mut producer = RawConnection::open(server.protocol_address());
    put_commit(&mut producer, "default", &["late"]);
    let frame = consumer.receive();
    assert_eq!(frame.request_id, take_id);
    assert_eq!(bodies(&frame.response), ["late"]);
    assert_eq!(consumer.call(&Request::Commit), Response::Ok);
}

#[test]
fn checkpoint_requests_are_answered() {
    let server = Server::start(ServerSetup::embedded_default());
    let mut connection = RawConnection::open(server.protocol_address());
    assert_eq!(
        connection.call(&Request::Checkpoint {
            channel: "default".into()
        }),
        Response::Ok
    );
}

/// A consumer that announces the protocol's smallest frame limit.
fn small_frame_consumer(server: &Server) -> RawConnection {
    let mut connection = server.connect_raw();
    let mut hello = millrace_protocol::Hello::new("small-frames");
    hello.max_frame_bytes = millrace_protocol::MIN_MAX_FRAME_BYTES;
    assert!(matches!(
        connection.handshake_with(hello),
        Response::HelloAccepted(_)
    ));
    connection
}

/// Three events of 100 KiB: two fit in a 256 KiB frame, the third does not.
fn put_three_large_events(server: &Server) -> Vec<String> {
    let bodies: Vec<String> = (1..=3)
        .map(|index| format!("{index}{}", "x".repeat(100 * 1024)))
        .collect();
    let refs: Vec<&str> = bodies.iter().map(String::as_str).collect();
    let mut producer = RawConnection::open(server.protocol_address());
    put_commit(&mut producer, "default", &refs);
    bodies
}

#[test]
fn a_take_stays_within_the_clients_frame_limit_and_delivers_the_rest_next() {
    let server = Server::start(ServerSetup::embedded_default());
    let sent = put_three_large_events(&server);
    let mut consumer = small_frame_consumer(&server);
    assert_eq!(consumer.call(&begin("default")), Response::Ok);
    assert_eq!(bodies(&consumer.call(&take(10, 0))), sent[..2]);
    assert_eq!(bodies(&consumer.call(&take(10, 0))), sent[2..]);
    assert_eq!(consumer.call(&Request::Commit), Response::Ok);
}

#[test]
fn a_commit_after_a_take_cut_short_by_the_frame_limit_leaves_the_rest_at_the_head() {
    let server = Server::start(ServerSetup::embedded_default());
    let sent = put_three_large_events(&server);
    let mut consumer = small_frame_consumer(&server);
    assert_eq!(consumer.call(&begin("default")), Response::Ok);
    assert_eq!(bodies(&consumer.call(&take(10, 0))), sent[..2]);
    assert_eq!(consumer.call(&Request::Commit), Response::Ok);
    let mut reader = RawConnection::open(server.protocol_address());
    assert_eq!(reader.call(&begin("default")), Response::Ok);
    assert_eq!(bodies(&reader.call(&take(10, 0))), sent[2..]);
    assert_eq!(reader.call(&Request::Commit), Response::Ok);
}

#[test]
fn a_waiting_take_woken_by_large_events_delivers_what_fits_and_leaves_the_rest() {
    let server = Server::start(ServerSetup::embedded_default());
    let mut consumer = small_frame_consumer(&server);
    assert_eq!(consumer.call(&begin("default")), Response::Ok);
    // The channel is empty: the take waits (on the blocking pool) until the put.
    consumer.send(&take(10, 10_000));
    let sent = put_three_large_events(&server);
    assert_eq!(bodies(&consumer.receive().response), sent[..2]);
    assert_eq!(consumer.call(&Request::Commit), Response::Ok);
    let mut reader = RawConnection::open(server.protocol_address());
    assert_eq!(reader.call(&begin("default")), Response::Ok);
    assert_eq!(bodies(&reader.call(&take(10, 0))), sent[2..]);
}

#[test]
fn an_event_larger_than_the_clients_frame_limit_is_refused_and_stays_in_the_channel() {
    let server = Server::start(ServerSetup::embedded_default());
    let huge = "h".repeat(300 * 1024);
    let mut producer = RawConnection::open(server.protocol_address());
    put_commit(&mut producer, "default", &[&huge]);
    let mut consumer = small_frame_consumer(&server);
    assert_eq!(consumer.call(&begin("default")), Response::Ok);
    let error = error_of(consumer.call(&take(1, 0)));
    assert_eq!(error.code, ErrorCode::FrameTooLarge);
    assert_eq!(
        error.field(fields::MAX_FRAME_BYTES),
        Some(u64::from(millrace_protocol::MIN_MAX_FRAME_BYTES))
    );
    let (_, closed) = consumer.read_until_closed();
    assert!(closed);
    let mut reader = RawConnection::open(server.protocol_address());
    let mut seen = Vec::new();
    for _ in 0..100 {
        assert_eq!(reader.call(&begin("default")), Response::Ok);
        seen = bodies(&reader.call(&take(1, 200)));
        if !seen.is_empty() {
            break;
        }
        assert_eq!(reader.call(&Request::Rollback), Response::Ok);
    }
    assert_eq!(seen, [huge]);
}

#[test]
fn the_log_writer_can_be_forced_to_pwrite_and_still_commits_durably() {
    let mut server = Server::start(
        ServerSetup::embedded_default()
            .arg("--io-backend")
            .arg("pwrite"),
    );
    let mut producer = RawConnection::open(server.protocol_address());
    put_commit(&mut producer, "default", &["kept"]);
    assert!(
        server.stderr().contains("Pwrite"),
        "the chosen backend is logged: {}",
        server.stderr()
    );
    server.kill_9();
    server.restart();
    let mut reader = RawConnection::open(server.protocol_address());
    assert_eq!(reader.call(&begin("default")), Response::Ok);
    assert_eq!(bodies(&reader.call(&take(10, 0))), ["kept"]);
}

#[test]
fn an_unknown_io_backend_flag_is_refused_before_starting() {
    let output = std::process::Command::new(&millrace_e2e::binaries().channeld)
        .args(["--io-backend", "uring"])
        .output()
        .expect("run channeld");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("auto, io_uring or pwrite"), "{stderr}");
}

/// How long the take below is willing to wait: far longer than the event takes to come.
const LONG_TAKE_WAIT_MS: u32 = 30_000;
/// How long after the take starts the event is committed.
const EVENT_DELAY: std::time::Duration = std::time::Duration::from_millis(300);

#[test]
fn a_waiting_take_returns_as_soon_as_an_event_is_committed_on_every_channel_type() {
    let config = format!(
        "{AGENT}.channels = f1 m1 s1\n\
         {AGENT}.channels.f1.type = file\n\
         {AGENT}.channels.f1.checkpointDir = f1/checkpoint\n\
         {AGENT}.channels.f1.dataDirs = f1/data\n\
         {AGENT}.channels.m1.type = memory\n\
         {AGENT}.channels.s1.type = spillablememory\n\
         {AGENT}.channels.s1.checkpointDir = s1/checkpoint\n\
         {AGENT}.channels.s1.dataDirs = s1/data\n"
    );
    let server = Server::start(ServerSetup::with_config(config));
    for channel in ["f1", "m1", "s1"] {
        let mut consumer = RawConnection::open(server.protocol_address());
        assert_eq!(consumer.call(&begin(channel)), Response::Ok);
        let started = std::time::Instant::now();
        let take_id = consumer.send(&take(10, LONG_TAKE_WAIT_MS));
        std::thread::sleep(EVENT_DELAY);
        let mut producer = RawConnection::open(server.protocol_address());
        let put = Request::PutCommit {
            channel: channel.to_string(),
            events: batch(&["woken"]),
        };
        assert_eq!(producer.call(&put), Response::Ok, "{channel}");
        let answer = consumer.receive();
        let waited = started.elapsed();
        assert_eq!(answer.request_id, take_id);
        assert_eq!(bodies(&answer.response), ["woken"], "{channel}");
        // Woken by the commit, not by the end of the wait.
        assert!(
            waited < std::time::Duration::from_millis(u64::from(LONG_TAKE_WAIT_MS) / 3),
            "{channel}: the take came back after {waited:?}"
        );
        assert_eq!(consumer.call(&Request::Commit), Response::Ok);
    }
}
