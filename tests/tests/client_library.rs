//! The async client library against a real channeld: large batches split over frames,
//! typed errors, and reconnecting after a crash.

use std::time::Duration;

use millrace_client::{Backoff, Client, ClientError, ClientOptions, ErrorCode, Event};
use millrace_e2e::{Server, ServerSetup};

/// The protocol's smallest frame limit, so a modest batch needs several frames.
const SMALL_FRAME_BYTES: &str = "262144";
const BODY_BYTES: usize = 10 * 1024;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn events(count: usize) -> Vec<Event> {
    (0..count)
        .map(|index| {
            let mut body = format!("{index:05}-").into_bytes();
            body.resize(BODY_BYTES, b'x');
            Event::new(body).with_header("index", index.to_string())
        })
        .collect()
}

#[test]
fn a_batch_larger_than_one_frame_is_committed_atomically_and_taken_back_in_order() {
    let server = Server::start(
        ServerSetup::embedded_default()
            .arg("--max-frame-bytes")
            .arg(SMALL_FRAME_BYTES),
    );
    let sent = events(100); // about 1 MiB: four frames or more
    runtime()
        .block_on(async {
            let mut client = Client::connect(ClientOptions::new(server.protocol_address())).await?;
            assert_eq!(client.server().max_frame_bytes, 262_144);
            client.put_and_commit("default", &sent).await?;
            client.begin("default").await?;
            let mut received = Vec::new();
            while received.len() < sent.len() {
                let taken = client.take(1_000, Duration::from_millis(500)).await?;
                assert!(
                    !taken.is_empty(),
                    "events went missing after {}",
                    received.len()
                );
                received.extend(taken);
            }
            client.commit().await?;
            assert_eq!(received, sent);
            let stats = client.stats("default").await?;
            assert_eq!(stats.size(), Some(0));
            assert_eq!(stats.get("EventPutSuccessCount"), Some(100));
            Ok::<(), ClientError>(())
        })
        .unwrap();
}

#[test]
fn server_errors_arrive_typed_with_code_and_message() {
    let server = Server::start(ServerSetup::embedded_default());
    runtime().block_on(async {
        let mut client = Client::connect(ClientOptions::new(server.protocol_address()))
            .await
            .unwrap();
        let error = client.put_and_commit("nope", &events(1)).await.unwrap_err();
        assert_eq!(error.code(), Some(ErrorCode::UnknownChannel));
        assert!(!error.is_retryable());
        assert!(!error.breaks_connection());
        assert!(
            error.to_string().contains("no channel named 'nope'"),
            "{error}"
        );
        let error = client.commit().await.unwrap_err();
        assert_eq!(error.code(), Some(ErrorCode::NoTransaction));
        client.ping().await.unwrap();
    });
}

#[test]
fn a_wrong_token_is_a_typed_rejection_and_is_not_retried() {
    let server = Server::start(
        ServerSetup::embedded_default()
            .arg("--auth-token")
            .arg("s3cret"),
    );
    runtime().block_on(async {
        let options = ClientOptions::new(server.protocol_address()).with_auth_token("wrong");
        let error = Client::connect_with_retry(options)
            .await
            .err()
            .expect("refused");
        assert_eq!(error.code(), Some(ErrorCode::Unauthorized));
        let options = ClientOptions::new(server.protocol_address()).with_auth_token("s3cret");
        Client::connect(options)
            .await
            .unwrap()
            .ping()
            .await
            .unwrap();
    });
}

#[test]
fn reconnect_with_backoff_reaches_a_restarted_server() {
    let mut server = Server::start(ServerSetup::embedded_default());
    let rt = runtime();
    let mut options = ClientOptions::new(server.protocol_address());
    options.backoff = Backoff {
        initial_delay: Duration::from_millis(50),
        max_delay: Duration::from_millis(500),
        max_attempts: 40,
    };
    let mut client = rt.block_on(Client::connect(options)).unwrap();
    rt.block_on(client.put_and_commit("default", &events(3)))
        .unwrap();

    server.kill_9();
    let broken = rt.block_on(client.ping()).unwrap_err();
    assert!(
        broken.breaks_connection() && broken.is_retryable(),
        "{broken}"
    );

    server.restart_on_the_same_addresses();
    rt.block_on(client.reconnect()).unwrap();
    rt.block_on(async {
        client.begin("default").await?;
        let taken = client.take(10, Duration::from_millis(500)).await?;
        assert_eq!(taken, events(3));
        client.commit().await
    })
    .unwrap();
}

/// A client that bounds its memory below the event it takes: a megabyte body, a client
/// limit of 256 KiB.
const CONSUMER_FRAME_BYTES: u32 = 262_144;
const LARGE_EVENT_BYTES: usize = 1024 * 1024;

#[test]
fn a_consumer_with_a_smaller_frame_limit_is_told_and_a_default_client_takes_the_event() {
    let server = Server::start(ServerSetup::embedded_default());
    let address = server.protocol_address().to_string();
    runtime()
        .block_on(async {
            let mut producer = Client::connect(ClientOptions::new(address.clone())).await?;
            producer
                .put_and_commit("default", &[Event::new(vec![b'b'; LARGE_EVENT_BYTES])])
                .await?;

            let mut small = ClientOptions::new(address.clone());
            small.max_frame_bytes = CONSUMER_FRAME_BYTES;
            let mut consumer = Client::connect(small).await?;
            assert_eq!(consumer.receive_max_frame_bytes(), CONSUMER_FRAME_BYTES);
            consumer.begin("default").await?;
            let refused = consumer
                .take(1, Duration::from_millis(500))
                .await
                .expect_err("the event does not fit the consumer's frames");
            let error = refused.server_error().expect("a server error");
            assert_eq!(error.code, ErrorCode::FrameTooLarge);
            assert_eq!(
                error.field(millrace_client::fields::MAX_FRAME_BYTES),
                Some(u64::from(CONSUMER_FRAME_BYTES))
            );
            assert!(refused.breaks_connection());

            // The event stayed at the head; a client with the default options takes the
            // server's limit and gets it.
            let mut default = Client::connect(ClientOptions::new(address.clone())).await?;
            assert_eq!(
                default.receive_max_frame_bytes(),
                default.server().max_frame_bytes
            );
            default.begin("default").await?;
            let taken = default.take(1, Duration::from_millis(500)).await?;
            default.commit().await?;
            assert_eq!(taken.len(), 1);
            assert_eq!(taken[0].body.len(), LARGE_EVENT_BYTES);
            Ok::<(), ClientError>(())
        })
        .unwrap();
}

#[test]
fn begin_and_take_opens_a_transaction_in_one_round_trip_and_reports_a_refused_begin() {
    let server = Server::start(ServerSetup::embedded_default());
    let sent = events(5);
    runtime().block_on(async {
        let mut client = Client::connect(ClientOptions::new(server.protocol_address()))
            .await
            .unwrap();
        // A refused Begin: its error, and the connection still in step for what follows.
        let error = client
            .begin_and_take("nope", 10, Duration::from_millis(10))
            .await
            .unwrap_err();
        assert_eq!(error.code(), Some(ErrorCode::UnknownChannel), "{error}");
        client.ping().await.unwrap();

        client.put_and_commit("default", &sent).await.unwrap();
        let taken = client
            .begin_and_take("default", 3, Duration::from_millis(500))
            .await
            .unwrap();
        assert_eq!(taken, sent[..3]);
        // The take is in an open transaction: rolled back, the events are there again.
        client.rollback().await.unwrap();
        let taken = client
            .begin_and_take("default", 10, Duration::from_millis(500))
            .await
            .unwrap();
        assert_eq!(taken, sent);
        client.commit().await.unwrap();
    });
}
