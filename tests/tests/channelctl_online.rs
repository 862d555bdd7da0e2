//! `channelctl replay` and `channelctl inspect` through a running channeld: the replay
//! plan and its execution, the live inspect report, and what the server refuses.

use std::time::{SystemTime, UNIX_EPOCH};

use millrace_e2e::{
    channelctl, file_channels_config, successful_lines, RawConnection, Server, ServerSetup, AGENT,
};
use millrace_protocol::{Request, Response};
use serde_json::Value;

/// Keeps taken segments for an hour, so replays can read what was taken.
const RETAINED: &str = "a1.channels.c1.retentionTime = 3600000\n";
const HOUR_MS: u64 = 3_600_000;

fn retained_server() -> Server {
    Server::start(ServerSetup::with_config(file_channels_config(
        &["c1"],
        RETAINED,
    )))
}

fn now_unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("the clock is after 1970")
        .as_millis() as u64
}

fn json_of(output: &std::process::Output) -> Value {
    let text = successful_lines(output).join("\n");
    serde_json::from_str(&text).unwrap_or_else(|error| panic!("not JSON ({error}): {text}"))
}

fn put(server: &Server, bodies: &str) {
    let put = server.channelctl("put", &["--channel", "c1"], bodies.as_bytes());
    assert!(
        put.status.success(),
        "{}",
        String::from_utf8_lossy(&put.stderr)
    );
}

fn take(server: &Server, max: &str) -> Vec<String> {
    successful_lines(&server.channelctl(
        "take",
        &["--channel", "c1", "--max", max, "--wait-ms", "100"],
        b"",
    ))
}

fn take_all(server: &Server) -> Vec<String> {
    take(server, "1000")
}

fn inspect_json(server: &Server) -> Value {
    json_of(&server.channelctl("inspect", &["--channel", "c1", "--json"], b""))
}

/// The highest write-order id the channel has written, from the live inspect report.
fn last_write_order_id(server: &Server) -> u64 {
    inspect_json(server)["segments"]
        .as_array()
        .expect("segments")
        .iter()
        .filter_map(|segment| segment["write_order_range"][1].as_u64())
        .max()
        .expect("a segment with records")
}

/// Puts e1..e6, takes e1 and e2 in one transaction and e3 and e4 in a second; returns the
/// first write-order id after the first take (a point between the two).
fn two_take_transactions(server: &Server) -> u64 {
    put(server, "e1\ne2\ne3\ne4\ne5\ne6\n");
    assert_eq!(take(server, "2"), ["e1", "e2"]);
    let between = last_write_order_id(server) + 1;
    assert_eq!(take(server, "2"), ["e3", "e4"]);
    between
}

#[test]
fn online_replay_of_the_last_hour_plans_every_take_since_and_changes_nothing_without_execute() {
    let server = retained_server();
    two_take_transactions(&server);
    let before_ms = now_unix_ms();
    let plan = json_of(&server.channelctl(
        "replay",
        &["--channel", "c1", "--since", "1h", "--json"],
        b"",
    ));
    let after_ms = now_unix_ms();
    assert_eq!(plan["channel"], "c1", "{plan}");
    let from_unix_ms = plan["point"]["from_unix_ms"].as_u64().expect("a time");
    assert!(
        (before_ms - HOUR_MS..=after_ms - HOUR_MS).contains(&from_unix_ms),
        "the server counts the hour back from its clock: {from_unix_ms}"
    );
    assert_eq!(plan["take_transactions"], 2, "{plan}");
    assert_eq!(plan["events"], 4, "{plan}");
    assert_eq!(plan["segment_count"], 1, "{plan}");
    assert_eq!(plan["not_retained_events"], 0, "{plan}");
    assert_eq!(plan["history_truncated"], false, "{plan}");
    assert_eq!(plan["executed"], false, "{plan}");
    assert_eq!(plan["events_replayed"], Value::Null, "{plan}");

    let text =
        successful_lines(&server.channelctl("replay", &["--channel", "c1", "--since", "1h"], b""))
            .join("\n");
    assert!(text.contains("4 events from 2 take transactions"), "{text}");
    assert!(text.contains("nothing changed"), "{text}");

    assert_eq!(take_all(&server), ["e5", "e6"], "planning put nothing back");
}

#[test]
fn online_replay_with_execute_redelivers_exactly_the_events_taken_since_the_point_in_order() {
    let server = retained_server();
    let between = two_take_transactions(&server);
    let from_id = between.to_string();
    let plan = json_of(&server.channelctl(
        "replay",
        &["--channel", "c1", "--from-id", &from_id, "--json"],
        b"",
    ));
    assert_eq!(plan["point"]["from_write_order_id"], between, "{plan}");
    assert_eq!(plan["take_transactions"], 1, "{plan}");
    assert_eq!(plan["events"], 2, "{plan}");

    let executed = json_of(&server.channelctl(
        "replay",
        &[
            "--channel",
            "c1",
            "--from-id",
            &from_id,
            "--execute",
            "--json",
        ],
        b"",
    ));
    assert_eq!(executed["executed"], true, "{executed}");
    assert_eq!(executed["events_replayed"], 2, "{executed}");
    assert_eq!(
        take_all(&server),
        ["e5", "e6", "e3", "e4"],
        "the copies join the tail of the queue in their original order"
    );

    let everything = successful_lines(&server.channelctl(
        "replay",
        &["--channel", "c1", "--since", "1h", "--execute"],
        b"",
    ))
    .join("\n");
    assert!(
        everything.contains("replayed: 8 events put back"),
        "every take since (e1 to e6 and the copies of e3, e4): {everything}"
    );
    assert_eq!(
        take_all(&server),
        ["e1", "e2", "e3", "e4", "e5", "e6", "e3", "e4"]
    );
}

#[test]
fn an_online_replay_plan_is_the_plan_offline_replay_prints_for_the_stopped_channel() {
    let mut server = retained_server();
    let between = two_take_transactions(&server).to_string();
    let online = json_of(&server.channelctl(
        "replay",
        &["--channel", "c1", "--from-id", &between, "--json"],
        b"",
    ));
    assert_eq!(server.stop_with_sigterm().code(), Some(0));
    let data_dir = server.directory().join("c1").join("data");
    let checkpoint_dir = server.directory().join("c1").join("checkpoint");
    let offline = json_of(&channelctl(
        &[
            "replay",
            "--channel",
            "c1",
            "--data-dir",
            data_dir.to_str().unwrap(),
            "--checkpoint-dir",
            checkpoint_dir.to_str().unwrap(),
            "--from-id",
            &between,
            "--json",
        ],
        b"",
    ));
    assert_eq!(online, offline);
}

#[test]
fn online_inspect_reports_segments_queue_depth_and_a_transaction_a_client_holds_open() {
    let server = retained_server();
    put(&server, "a\nb\nc\nd\ne\n");
    let written = server.channelctl("checkpoint", &["--channel", "c1"], b"");
    assert!(written.status.success());
    let mut holder = RawConnection::open(server.protocol_address());
    assert_eq!(
        holder.call(&Request::Begin {
            channel: "c1".into()
        }),
        Response::Ok
    );
    match holder.call(&Request::Take {
        max_events: 2,
        wait_ms: 0,
    }) {
        Response::Events(events) => assert_eq!(events.len(), 2),
        other => panic!("expected two events, got {other:?}"),
    }

    let report = inspect_json(&server);
    assert_eq!(report["channel"], "c1", "{report}");
    assert_eq!(report["online"], true, "{report}");
    assert_eq!(report["queue"]["depth"], 3, "{report}");
    assert!(report["queue"]["oldest_event_age_ms"].is_u64(), "{report}");
    assert_eq!(report["in_flight_transactions"], 1, "{report}");
    assert_eq!(report["in_flight"]["taken_events"], 2, "{report}");
    assert_eq!(report["in_flight"]["put_events"], 0, "{report}");
    assert_eq!(report["counters"]["ChannelSize"], 5, "{report}");
    let segments = report["segments"].as_array().expect("segments");
    assert_eq!(segments.len(), 1, "{report}");
    let segment = &segments[0];
    assert_eq!(segment["records"]["put"], 1, "one put record for the batch");
    assert_eq!(segment["records"]["take"], 0, "{report}");
    assert_eq!(segment["records"]["commit"], 1, "{report}");
    assert_eq!(segment["write_order_range"], serde_json::json!([1, 2]));
    assert_eq!(segment["live_events"], 5, "3 queued and 2 in flight");
    assert_eq!(segment["first_problem"], Value::Null, "{report}");
    let data_dir = &report["data_dirs"][0];
    assert_eq!(data_dir["segment_count"], 1, "{report}");
    assert_eq!(data_dir["minimum_required_space_bytes"], 1_048_576);
    assert_eq!(data_dir["below_space_guard"], false, "{report}");
    let primary = &report["checkpoints"][0];
    assert_eq!(primary["slot"], "primary", "{report}");
    assert_eq!(primary["state"], "valid", "{report}");
    assert_eq!(primary["covered_write_order_id"], 3, "{report}");
    assert_eq!(primary["queued_events"], 5, "{report}");
    assert_eq!(report["problem_count"], 0, "{report}");

    let tables =
        successful_lines(&server.channelctl("inspect", &["--channel", "c1"], b"")).join("\n");
    assert!(tables.contains("channel c1 (live"), "{tables}");
    assert!(tables.contains("queue: 3 events"), "{tables}");
    assert!(
        tables.contains("in-flight transactions: 1 open, holding 2 taken"),
        "{tables}"
    );

    assert_eq!(holder.call(&Request::Commit), Response::Ok);
    let after = inspect_json(&server);
    assert_eq!(after["in_flight_transactions"], 0, "{after}");
    assert_eq!(after["queue"]["depth"], 3, "{after}");
    assert_eq!(after["segments"][0]["live_events"], 3, "{after}");
    assert_eq!(after["segments"][0]["records"]["take"], 1, "{after}");
}

#[test]
fn replay_and_inspect_of_a_memory_channel_are_refused_as_not_supported() {
    let config = format!("{AGENT}.channels = m1\n{AGENT}.channels.m1.type = memory\n");
    let server = Server::start(ServerSetup::with_config(config));
    for (subcommand, extra) in [("replay", &["--since", "5m"][..]), ("inspect", &[][..])] {
        let mut args = vec!["--channel", "m1"];
        args.extend_from_slice(extra);
        let refused = server.channelctl(subcommand, &args, b"");
        assert!(!refused.status.success(), "{subcommand}");
        let stderr = String::from_utf8_lossy(&refused.stderr);
        assert!(stderr.contains("NOT_SUPPORTED"), "{subcommand}: {stderr}");
        assert!(
            stderr.contains(&format!(
                "{subcommand} is not supported for memory channel 'm1'"
            )),
            "{subcommand}: {stderr}"
        );
    }
}

#[test]
fn online_replay_and_inspect_need_the_token_when_the_server_has_one() {
    let server = Server::start(
        ServerSetup::embedded_default()
            .arg("--auth-token")
            .arg("s3cret"),
    );
    for (subcommand, extra) in [("replay", &["--since", "5m"][..]), ("inspect", &[][..])] {
        let refused = server.channelctl(subcommand, extra, b"");
        assert!(!refused.status.success(), "{subcommand}");
        let stderr = String::from_utf8_lossy(&refused.stderr);
        assert!(stderr.contains("UNAUTHORIZED"), "{subcommand}: {stderr}");
        let mut args = extra.to_vec();
        args.extend_from_slice(&["--auth-token", "s3cret", "--json"]);
        let report = json_of(&server.channelctl(subcommand, &args, b""));
        assert_eq!(report["channel"], "default", "{subcommand}: {report}");
    }
}

/// A body larger than the 16 MiB channelctl used to announce, well within the server's
/// default 64 MiB frame limit.
const LARGE_BODY_BYTES: usize = 30 * 1024 * 1024;

#[test]
fn channelctl_takes_an_event_as_large_as_the_server_accepted() {
    let server = Server::start(ServerSetup::embedded_default());
    let mut input = vec![b'x'; LARGE_BODY_BYTES];
    input.push(b'\n');
    let put = successful_lines(&server.channelctl("put", &[], &input));
    assert_eq!(put, ["committed 1"]);
    let take = server.channelctl("take", &["--max", "1", "--wait-ms", "1000"], b"");
    assert!(
        take.status.success(),
        "a take of the 30 MiB event failed: {}",
        String::from_utf8_lossy(&take.stderr)
    );
    assert_eq!(
        take.stdout.len(),
        LARGE_BODY_BYTES + 1,
        "the whole body and its newline"
    );
    assert!(take.stdout[..LARGE_BODY_BYTES]
        .iter()
        .all(|byte| *byte == b'x'));
}

/// The protocol's smallest frame limit.
const SMALLEST_FRAME_BYTES: usize = 262_144;

#[test]
fn channelctl_put_refuses_up_front_an_event_no_take_could_return() {
    let server = Server::start(
        ServerSetup::embedded_default()
            .arg("--max-frame-bytes")
            .arg(SMALLEST_FRAME_BYTES.to_string()),
    );
    let mut input = b"small\n".to_vec();
    input.extend(std::iter::repeat_n(b'x', SMALLEST_FRAME_BYTES));
    input.extend_from_slice(b"\nafter\n");
    let put = server.channelctl("put", &["--batch", "1"], &input);
    let stderr = String::from_utf8_lossy(&put.stderr);
    assert!(!put.status.success(), "the put succeeded");
    assert_eq!(String::from_utf8_lossy(&put.stdout), "committed 1\n");
    assert!(stderr.contains("line 2 is not put"), "{stderr}");
    assert!(stderr.contains("no take could ever return it"), "{stderr}");
    assert!(
        stderr.contains(&SMALLEST_FRAME_BYTES.to_string()),
        "{stderr}"
    );
    // Nothing after the refused line went in.
    let taken = successful_lines(&server.channelctl("take", &["--wait-ms", "200"], b""));
    assert_eq!(taken, ["small"]);
}
