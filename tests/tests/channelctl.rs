//! channelctl against a real channeld: put and take in order, stats, validate; and
//! channeld refusing what it cannot run.

use millrace_e2e::{
    binaries, channelctl, file_channels_config, one_channel_of_each_type_config, successful_lines,
    ChildGuard, Server, ServerSetup, AGENT,
};

fn numbered_lines(prefix: &str, count: usize) -> Vec<String> {
    (1..=count)
        .map(|number| format!("{prefix}-{number:05}"))
        .collect()
}

fn as_stdin(lines: &[String]) -> Vec<u8> {
    let mut bytes = lines.join("\n").into_bytes();
    bytes.push(b'\n');
    bytes
}

#[test]
fn put_then_take_through_channelctl_preserves_order() {
    let server = Server::start(ServerSetup::embedded_default());
    let bodies = numbered_lines("event", 250);

    let put = server.channelctl("put", &["--batch", "100"], &as_stdin(&bodies));
    assert_eq!(
        successful_lines(&put),
        ["committed 100", "committed 200", "committed 250"]
    );

    let first = server.channelctl("take", &["--max", "7", "--batch", "3"], b"");
    assert_eq!(successful_lines(&first), bodies[..7]);
    let rest = server.channelctl("take", &["--wait-ms", "200"], b"");
    assert_eq!(successful_lines(&rest), bodies[7..]);
    let nothing = server.channelctl("take", &["--wait-ms", "100"], b"");
    assert!(successful_lines(&nothing).is_empty());
}

#[test]
fn put_commits_a_final_partial_batch_at_end_of_input() {
    let server = Server::start(ServerSetup::embedded_default());
    let put = server.channelctl("put", &["--batch", "4"], b"a\nb\nc\nd\ne\r\nf");
    assert_eq!(successful_lines(&put), ["committed 4", "committed 6"]);
    let take = server.channelctl("take", &["--wait-ms", "100"], b"");
    assert_eq!(successful_lines(&take), ["a", "b", "c", "d", "e", "f"]);
}

#[test]
fn take_follow_keeps_waiting_for_new_events() {
    let server = Server::start(ServerSetup::embedded_default());
    let mut follower = std::process::Command::new(&binaries().channelctl)
        .args([
            "take",
            "--server",
            server.protocol_address(),
            "--follow",
            "--wait-ms",
            "100",
            "--max",
            "3",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("channelctl starts");
    let stdout = follower.stdout.take();
    let stderr = follower.stderr.take();
    let mut follower = ChildGuard(Some(follower));
    // Several empty waits pass before anything is put.
    std::thread::sleep(std::time::Duration::from_millis(500));
    assert!(
        follower.0.as_mut().unwrap().try_wait().unwrap().is_none(),
        "--follow must not stop when a take returns nothing"
    );
    successful_lines(&server.channelctl("put", &[], b"x\ny\nz\n"));
    let child = follower.0.as_mut().unwrap();
    child.stdout = stdout;
    child.stderr = stderr;
    let output = follower.wait_with_output(std::time::Duration::from_secs(30));
    assert_eq!(successful_lines(&output), ["x", "y", "z"]);
}

#[test]
fn put_to_an_unknown_channel_fails_with_the_servers_message() {
    let server = Server::start(ServerSetup::embedded_default());
    let put = server.channelctl("put", &["--channel", "nope"], b"a\n");
    assert!(!put.status.success());
    assert!(put.stdout.is_empty(), "nothing was committed");
    let stderr = String::from_utf8_lossy(&put.stderr);
    assert!(stderr.contains("UNKNOWN_CHANNEL"), "{stderr}");
    assert!(stderr.contains("'nope'"), "{stderr}");
}

#[test]
fn stats_prints_flume_counters_as_a_table_and_as_json() {
    let server = Server::start(ServerSetup::embedded_default());
    successful_lines(&server.channelctl("put", &[], b"1\n2\n3\n"));
    successful_lines(&server.channelctl("take", &["--max", "1"], b""));

    let table = successful_lines(&server.channelctl("stats", &[], b""));
    assert_eq!(table[0], "channel default");
    let row = |name: &str| {
        table
            .iter()
            .find(|line| line.split_whitespace().next() == Some(name))
            .unwrap_or_else(|| panic!("no {name} row in {table:?}"))
            .split_whitespace()
            .nth(1)
            .unwrap()
            .to_string()
    };
    assert_eq!(row("ChannelSize"), "2");
    assert_eq!(row("EventPutSuccessCount"), "3");
    assert_eq!(row("EventTakeSuccessCount"), "1");

    let json = successful_lines(&server.channelctl("stats", &["--json"], b"")).join("\n");
    let json: serde_json::Value = serde_json::from_str(&json).expect("stats --json is JSON");
    assert_eq!(json["channel"], "default");
    assert_eq!(json["counters"]["ChannelSize"], 2);
    assert_eq!(json["counters"]["ChannelCapacity"], 1_000_000);
    assert_eq!(json["counters"]["EventPutSuccessCount"], 3);
}

#[test]
fn several_file_channels_from_one_config_keep_their_events_apart() {
    let config = file_channels_config(&["c1", "c2", "c3"], "");
    let server = Server::start(ServerSetup::with_config(config));
    for (channel, bodies) in [("c1", "one\ntwo\n"), ("c2", "three\n"), ("c3", "")] {
        let put = server.channelctl("put", &["--channel", channel], bodies.as_bytes());
        assert!(
            put.status.success(),
            "{}",
            String::from_utf8_lossy(&put.stderr)
        );
    }
    let take = |channel| {
        successful_lines(&server.channelctl(
            "take",
            &["--channel", channel, "--wait-ms", "100"],
            b"",
        ))
    };
    assert_eq!(take("c2"), ["three"]);
    assert_eq!(take("c1"), ["one", "two"]);
    assert!(take("c3").is_empty());
    for channel in ["c1", "c2", "c3"] {
        assert!(
            server.directory().join(channel).join("data").is_dir(),
            "{channel} has its own data dir"
        );
    }
}

#[test]
fn validate_accepts_a_good_file_with_a_summary() {
    let directory = tempfile::tempdir().unwrap();
    let file = directory.path().join("good.conf");
    std::fs::write(&file, file_channels_config(&["c1", "c2"], "")).unwrap();
    let output = channelctl(
        &["validate", "-f", file.to_str().unwrap(), "-n", AGENT],
        b"",
    );
    let summary = successful_lines(&output).join("\n");
    assert!(summary.contains("agent a1 is valid"), "{summary}");
    assert!(summary.contains("c1 (file), c2 (file)"), "{summary}");
}

#[test]
fn validate_exits_78_listing_every_error() {
    let directory = tempfile::tempdir().unwrap();
    let file = directory.path().join("bad.conf");
    std::fs::write(
        &file,
        "a1.channels = c1\n\
         a1.channels.c1.type = file\n\
         a1.channels.c1.capasity = 10\n\
         a1.channels.c1.transactionCapacity = ten\n",
    )
    .unwrap();
    let output = channelctl(
        &["validate", "-f", file.to_str().unwrap(), "-n", AGENT],
        b"",
    );
    assert_eq!(output.status.code(), Some(78));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("bad.conf:3: a1.channels.c1.capasity: unknown key"),
        "{stderr}"
    );
    assert!(
        stderr.contains("bad.conf:4: a1.channels.c1.transactionCapacity"),
        "{stderr}"
    );
}

#[test]
fn a_memory_channel_validates_and_serves() {
    let directory = tempfile::tempdir().unwrap();
    let file = directory.path().join("memory.conf");
    std::fs::write(&file, "a1.channels = m1\na1.channels.m1.type = memory\n").unwrap();

    let validate = channelctl(
        &["validate", "-f", file.to_str().unwrap(), "-n", AGENT],
        b"",
    );
    assert_eq!(
        validate.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&validate.stderr)
    );
}

#[test]
fn memory_and_spillable_channels_serve_beside_a_file_channel() {
    let server = Server::start(ServerSetup::with_config(one_channel_of_each_type_config()));
    for channel in ["f1", "m1", "s1"] {
        let put = server.channelctl(
            "put",
            &["--channel", channel, "--batch", "2"],
            b"one\ntwo\nthree\nfour\nfive\n",
        );
        assert!(
            put.status.success(),
            "{}",
            String::from_utf8_lossy(&put.stderr)
        );
        let take = successful_lines(&server.channelctl(
            "take",
            &["--channel", channel, "--wait-ms", "100"],
            b"",
        ));
        assert_eq!(take, ["one", "two", "three", "four", "five"], "{channel}");
    }
    assert!(
        server.directory().join("s1").join("data").is_dir(),
        "the spillable channel's overflow spilled to its own directory"
    );
}

#[test]
fn checkpoint_inspect_verify_and_replay_through_channelctl() {
    let config = file_channels_config(&["c1"], "a1.channels.c1.retentionTime = 3600000\n");
    let mut server = Server::start(ServerSetup::with_config(config));
    let put = server.channelctl("put", &["--channel", "c1"], b"e1\ne2\ne3\ne4\ne5\n");
    assert!(
        put.status.success(),
        "{}",
        String::from_utf8_lossy(&put.stderr)
    );
    let taken = successful_lines(&server.channelctl(
        "take",
        &["--channel", "c1", "--max", "2", "--wait-ms", "100"],
        b"",
    ));
    assert_eq!(taken, ["e1", "e2"]);
    let live = server.channelctl("inspect", &["--channel", "c1", "--json"], b"");
    let live: serde_json::Value = serde_json::from_slice(&live.stdout).expect("inspect --json");
    assert_eq!(live["online"], true, "{live}");
    assert_eq!(live["counters"]["ChannelSize"], 3, "{live}");
    let online = successful_lines(&server.channelctl("checkpoint", &["--channel", "c1"], b""));
    assert_eq!(online, ["channel c1: checkpoint written"]);
    assert_eq!(server.stop_with_sigterm().code(), Some(0));

    let data_dir = server.directory().join("c1").join("data");
    let checkpoint_dir = server.directory().join("c1").join("checkpoint");
    let files = [
        "--channel",
        "c1",
        "--data-dir",
        data_dir.to_str().unwrap(),
        "--checkpoint-dir",
        checkpoint_dir.to_str().unwrap(),
    ];
    let with_files = |subcommand: &str, extra: &[&str]| {
        let mut args = vec![subcommand];
        args.extend_from_slice(&files);
        args.extend_from_slice(extra);
        channelctl(&args, b"")
    };
    let inspect = with_files("inspect", &["--json"]);
    let report: serde_json::Value =
        serde_json::from_slice(&inspect.stdout).unwrap_or_else(|error| {
            panic!(
                "inspect --json: {error}: {}",
                String::from_utf8_lossy(&inspect.stdout)
            )
        });
    assert_eq!(report["queue"]["depth"], 3, "{report}");

    let verify = with_files("verify", &[]);
    assert_eq!(
        verify.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&verify.stdout)
    );

    let rebuild = with_files("checkpoint", &[]);
    assert_eq!(
        rebuild.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&rebuild.stderr)
    );

    let plan = with_files("replay", &["--from-id", "1", "--json"]);
    let plan: serde_json::Value = serde_json::from_slice(&plan.stdout).expect("replay --json");
    assert_eq!(plan["events"], 2, "{plan}");
    assert_eq!(plan["executed"], false, "{plan}");
}
