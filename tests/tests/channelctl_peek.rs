//! `channelctl peek` (the protocol's `Peek`): the head of memory, spillable and file
//! channels with headers and bodies, through the real binaries, and every event still
//! there to take afterwards, in order.

use std::time::Duration;

use millrace_client::{Client, ClientOptions, Event};
use millrace_e2e::{
    bodies_of, one_channel_of_each_type_config, successful_lines, Server, ServerSetup,
};
use serde_json::Value;

/// A body that is not text: shown as hex.
const BINARY_BODY: [u8; 3] = [0xff, 0x00, 0x1b];

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime")
}

/// The five events every channel gets, in order: a header on the first, a binary body last.
fn five_events() -> Vec<Event> {
    vec![
        Event::new("one").with_header("host", "web-1"),
        Event::new("two"),
        Event::new("three"),
        Event::new("four"),
        Event::new(BINARY_BODY.to_vec()),
    ]
}

fn put_in_pairs(server: &Server, channel: &str, events: &[Event]) {
    runtime().block_on(async {
        let options = ClientOptions::new(server.protocol_address());
        let mut client = Client::connect(options).await.expect("connect");
        for pair in events.chunks(2) {
            client
                .put_and_commit(channel, pair)
                .await
                .expect("put and commit");
        }
    });
}

fn take_attempts(server: &Server, channel: &str) -> String {
    let (_, metrics) = server.http_json("/metrics");
    metrics[format!("CHANNEL.{channel}")]["EventTakeAttemptCount"]
        .as_str()
        .expect("EventTakeAttemptCount")
        .to_string()
}

fn peek_json(server: &Server, channel: &str, max: &str) -> Value {
    let lines = successful_lines(&server.channelctl(
        "peek",
        &["--channel", channel, "--max", max, "--json"],
        b"",
    ));
    serde_json::from_str(&lines.join("\n")).expect("peek --json prints JSON")
}

fn json_bodies(peeked: &Value) -> Vec<String> {
    peeked["events"]
        .as_array()
        .expect("events")
        .iter()
        .map(|event| event["body"].as_str().expect("a body").to_string())
        .collect()
}

#[test]
fn peek_shows_the_head_of_file_memory_and_spillable_channels_and_leaves_every_event_to_take() {
    let server = Server::start(ServerSetup::with_config(one_channel_of_each_type_config()));
    for channel in ["f1", "m1", "s1"] {
        put_in_pairs(&server, channel, &five_events());
        let attempts_before = take_attempts(&server, channel);

        let head = peek_json(&server, channel, "3");
        assert_eq!(
            json_bodies(&head),
            ["one", "two", "three"],
            "{channel}: {head}"
        );
        assert_eq!(
            head["events"][0]["headers"],
            serde_json::json!([["host", "web-1"]])
        );
        assert_eq!(head["events"][1]["body_encoding"], "text");

        let all = peek_json(&server, channel, "100");
        assert_eq!(
            json_bodies(&all),
            ["one", "two", "three", "four", "ff001b"],
            "{channel}: {all}"
        );
        assert_eq!(all["events"][4]["body_encoding"], "hex");

        let text = successful_lines(&server.channelctl("peek", &["--channel", channel], b""));
        assert!(text.iter().any(|line| line == "  host: web-1"), "{text:?}");
        assert!(
            text.iter().any(|line| line == "  body (hex): ff001b"),
            "{text:?}"
        );

        assert_eq!(
            take_attempts(&server, channel),
            attempts_before,
            "{channel}: peek counted as a take"
        );
        assert_eq!(server.metrics_channel_size(channel), 5, "{channel}");
        let taken = server.drain_events(channel, 10);
        assert_eq!(
            taken,
            five_events(),
            "{channel}: every event is still there, in order"
        );
        assert_eq!(
            json_bodies(&peek_json(&server, channel, "10")),
            Vec::<String>::new()
        );
    }
}

#[test]
fn peek_skips_events_an_open_transaction_took_and_shows_them_again_after_its_rollback() {
    let server = Server::start(ServerSetup::with_config(one_channel_of_each_type_config()));
    for channel in ["f1", "m1", "s1"] {
        put_in_pairs(&server, channel, &five_events());
        runtime().block_on(async {
            let options = ClientOptions::new(server.protocol_address());
            let mut consumer = Client::connect(options.clone()).await.expect("connect");
            let mut peeker = Client::connect(options).await.expect("connect");
            consumer.begin(channel).await.expect("begin");
            let taken = consumer
                .take(2, Duration::from_millis(500))
                .await
                .expect("take");
            assert_eq!(bodies_of(&taken), ["one", "two"], "{channel}");
            let during = peeker
                .peek(channel, 10)
                .await
                .expect("peek during the take");
            assert_eq!(
                during,
                five_events()[2..],
                "{channel}: the two taken events are not at the head"
            );
            consumer.rollback().await.expect("rollback");
            let after = peeker
                .peek(channel, 10)
                .await
                .expect("peek after the rollback");
            assert_eq!(after, five_events(), "{channel}");
        });
    }
}
