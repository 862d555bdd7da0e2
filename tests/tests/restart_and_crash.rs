//! Stopping and crashing a real channeld: SIGTERM drains and stops cleanly, open
//! transactions finish or roll back, and `kill -9` under load loses no committed event.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use millrace_e2e::{binaries, successful_lines, ChildGuard, RawConnection, Server, ServerSetup};
use millrace_protocol::{ErrorCode, Event, EventBatch, Request, RequestId, Response};

fn lines(prefix: &str, range: std::ops::RangeInclusive<usize>) -> Vec<String> {
    range
        .map(|number| format!("{prefix}-{number:07}"))
        .collect()
}

fn stdin_of(lines: &[String]) -> Vec<u8> {
    lines
        .iter()
        .flat_map(|line| format!("{line}\n").into_bytes())
        .collect()
}

fn batch(bodies: &[&str]) -> EventBatch {
    let events: Vec<Event> = bodies
        .iter()
        .map(|body| Event::new(body.to_string()))
        .collect();
    EventBatch::from_events(&events).unwrap()
}

fn take_everything(server: &Server) -> Vec<String> {
    successful_lines(&server.channelctl("take", &["--wait-ms", "500", "--batch", "1000"], b""))
}

#[test]
fn sigterm_stops_cleanly_and_a_restart_recovers_every_event() {
    let mut server = Server::start(ServerSetup::embedded_default());
    let bodies = lines("event", 1..=50);
    successful_lines(&server.channelctl("put", &[], &stdin_of(&bodies)));
    let taken =
        successful_lines(&server.channelctl("take", &["--max", "20", "--batch", "20"], b""));
    assert_eq!(taken, bodies[..20]);

    let status = server.stop_with_sigterm();
    assert_eq!(status.code(), Some(0), "{}", server.stderr());
    assert!(server.stderr().contains("channeld stopped"));

    server.restart();
    let (status, health) = server.http_json("/health");
    assert_eq!(status, 200, "{health}");
    let recovery = &health["channels"]["default"]["recovery"];
    assert_eq!(recovery["events_recovered"], 30);
    // SIGTERM checkpoints every channel on the way out: the restart reads the checkpoint
    // and replays nothing.
    assert_eq!(recovery["path"], "checkpoint");
    assert_eq!(recovery["records_replayed"], 0);

    assert_eq!(take_everything(&server), bodies[20..]);
}

#[test]
fn sigterm_lets_an_open_transaction_commit_within_the_grace_period() {
    let mut server = Server::start(
        ServerSetup::embedded_default()
            .arg("--shutdown-grace-ms")
            .arg("20000"),
    );
    let mut producer = RawConnection::open(server.protocol_address());
    assert_eq!(
        producer.call(&Request::Begin {
            channel: "default".into()
        }),
        Response::Ok
    );
    assert_eq!(
        producer.call(&Request::Put {
            events: batch(&["in-flight"])
        }),
        Response::Ok
    );

    server.send_sigterm();
    // New connections and new transactions are refused while draining…
    assert!(millrace_e2e::wait_until(Duration::from_secs(10), || {
        server.http_get("/health").status == 503
    }));
    // …but the open transaction may still commit.
    assert_eq!(producer.call(&Request::Commit), Response::Ok);
    // Having no transaction left, the connection is closed with SHUTTING_DOWN.
    let frame = producer.receive();
    assert_eq!(frame.request_id, RequestId::CONNECTION);
    match frame.response {
        Response::Error(error) => assert_eq!(error.code, ErrorCode::ShuttingDown),
        other => panic!("expected SHUTTING_DOWN, got {other:?}"),
    }
    let status = server
        .wait_for_exit(Duration::from_secs(30))
        .expect("channeld exits");
    assert_eq!(status.code(), Some(0), "{}", server.stderr());

    server.restart();
    assert_eq!(take_everything(&server), ["in-flight"]);
}

#[test]
fn sigterm_rolls_back_a_transaction_still_open_after_the_grace_period() {
    let mut server = Server::start(
        ServerSetup::embedded_default()
            .arg("--shutdown-grace-ms")
            .arg("300"),
    );
    successful_lines(&server.channelctl("put", &[], b"one\ntwo\nthree\n"));
    let mut consumer = RawConnection::open(server.protocol_address());
    assert_eq!(
        consumer.call(&Request::Begin {
            channel: "default".into()
        }),
        Response::Ok
    );
    match consumer.call(&Request::Take {
        max_events: 2,
        wait_ms: 0,
    }) {
        Response::Events(events) => assert_eq!(events.len(), 2),
        other => panic!("expected events, got {other:?}"),
    }

    let status = server.stop_with_sigterm();
    assert_eq!(status.code(), Some(0), "{}", server.stderr());
    match consumer.try_receive() {
        Ok(frame) => match frame.response {
            Response::Error(error) => assert_eq!(error.code, ErrorCode::ShuttingDown),
            other => panic!("expected SHUTTING_DOWN, got {other:?}"),
        },
        Err(closed) => assert!(closed.contains("closed"), "{closed}"),
    }

    server.restart();
    assert_eq!(take_everything(&server), ["one", "two", "three"]);
}

/// Events a `channelctl put` reported as committed, read from its stdout as it runs.
struct CommittedWatcher {
    totals: mpsc::Receiver<u64>,
    last_total: u64,
}

impl CommittedWatcher {
    /// Waits until at least `total` events are reported committed.
    fn wait_for(&mut self, total: u64, timeout: Duration) -> bool {
        let deadline = std::time::Instant::now() + timeout;
        while self.last_total < total {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.totals.recv_timeout(left) {
                Ok(reported) => self.last_total = reported,
                Err(_) => return false,
            }
        }
        true
    }

    /// Every total reported until the process's stdout closed.
    fn finish(mut self) -> u64 {
        while let Ok(reported) = self.totals.recv_timeout(Duration::from_secs(30)) {
            self.last_total = reported;
        }
        self.last_total
    }
}

#[test]
fn kill_9_under_load_loses_no_committed_event_over_three_crashes() {
    const CYCLES: usize = 3;
    const EVENTS_OFFERED: usize = 200_000;
    const BATCH_EVENTS: u64 = 10;
    const COMMITTED_BEFORE_KILL: u64 = 300;

    let mut server = Server::start(ServerSetup::embedded_default());
    for cycle in 1..=CYCLES {
        let prefix = format!("crash{cycle}");
        let offered = lines(&prefix, 1..=EVENTS_OFFERED);
        let mut put = Command::new(&binaries().channelctl)
            .args(["put", "--server", server.protocol_address(), "--batch"])
            .arg(BATCH_EVENTS.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("channelctl put starts");
        let mut stdin = put.stdin.take().unwrap();
        let stdout = put.stdout.take().unwrap();
        let put = ChildGuard(Some(put));
        let feeder = thread::spawn(move || {
            for line in &offered {
                if writeln!(stdin, "{line}").is_err() {
                    return; // channelctl died with the server
                }
            }
        });
        let (totals_sender, totals) = mpsc::channel();
        let reader = thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let total = line
                    .strip_prefix("committed ")
                    .and_then(|total| total.parse::<u64>().ok())
                    .unwrap_or_else(|| panic!("unexpected put output {line:?}"));
                if totals_sender.send(total).is_err() {
                    return;
                }
            }
        });
        let mut watcher = CommittedWatcher {
            totals,
            last_total: 0,
        };
        assert!(
            watcher.wait_for(COMMITTED_BEFORE_KILL, Duration::from_secs(60)),
            "cycle {cycle}: the put did not get going:\n{}",
            server.stderr()
        );
        server.kill_9();
        let put_output = put.wait_with_output(Duration::from_secs(30));
        assert!(
            !put_output.status.success(),
            "cycle {cycle}: put must fail once the server is gone"
        );
        reader.join().unwrap();
        feeder.join().unwrap();
        let committed = watcher.finish() as usize;

        server.restart();
        let recovered = take_everything(&server);
        let expected = lines(&prefix, 1..=recovered.len().max(1));
        assert!(
            recovered.len() >= committed,
            "cycle {cycle}: {committed} events were reported committed, only {} came back",
            recovered.len()
        );
        assert_eq!(
            recovered,
            expected[..recovered.len()],
            "cycle {cycle}: events must come back in put order, with nothing from earlier cycles"
        );
        assert!(
            recovered.len() <= committed + BATCH_EVENTS as usize,
            "cycle {cycle}: at most the batch in flight at the kill may be committed unreported"
        );
    }
}

#[test]
fn sigterm_with_checkpoint_on_close_false_leaves_the_checkpoint_and_the_restart_replays_the_log() {
    // A checkpoint interval far beyond the test, so the only checkpoint is the one the
    // test asks for.
    let config = millrace_e2e::file_channels_config(
        &["c1"],
        "a1.channels.c1.checkpointOnClose = false\n\
         a1.channels.c1.checkpointInterval = 3600000\n",
    );
    let mut server = Server::start(ServerSetup::with_config(config));
    let bodies = lines("event", 1..=15);
    successful_lines(&server.channelctl("put", &["--channel", "c1"], &stdin_of(&bodies[..10])));
    successful_lines(&server.channelctl("checkpoint", &["--channel", "c1"], b""));
    let checkpoint_file = server.directory().join("c1/checkpoint/checkpoint");
    let checkpoint_before = std::fs::read(&checkpoint_file).expect("the requested checkpoint");
    // Log after the checkpoint: a put and a take, each one transaction.
    successful_lines(&server.channelctl("put", &["--channel", "c1"], &stdin_of(&bodies[10..])));
    let taken = successful_lines(&server.channelctl(
        "take",
        &["--channel", "c1", "--max", "3", "--batch", "3"],
        b"",
    ));
    assert_eq!(taken, bodies[..3]);

    let status = server.stop_with_sigterm();
    assert_eq!(status.code(), Some(0), "{}", server.stderr());
    assert_eq!(
        std::fs::read(&checkpoint_file).unwrap(),
        checkpoint_before,
        "with checkpointOnClose = false a stop must not rewrite the checkpoint"
    );

    server.restart();
    let (status, health) = server.http_json("/health");
    assert_eq!(status, 200, "{health}");
    let recovery = &health["channels"]["c1"]["recovery"];
    assert_eq!(recovery["path"], "checkpoint", "{recovery}");
    // The log is read again (the segment was still open at the checkpoint, so it is read
    // whole), and the two transactions after the checkpoint, the second put and the
    // take, are applied from it.
    assert!(
        recovery["records_replayed"].as_u64().unwrap() > 0,
        "{recovery}"
    );
    assert_eq!(recovery["transactions_committed"], 2, "{recovery}");
    assert_eq!(recovery["events_recovered"], 12, "{recovery}");
    let remaining = successful_lines(&server.channelctl(
        "take",
        &["--channel", "c1", "--wait-ms", "500", "--batch", "1000"],
        b"",
    ));
    assert_eq!(remaining, bodies[3..]);
}

/// A consumer connection that has begun a transaction on `channel` and taken `count`
/// events, still open.
fn open_take(server: &Server, channel: &str, count: u32) -> (RawConnection, Vec<String>) {
    let mut connection = RawConnection::open(server.protocol_address());
    assert_eq!(
        connection.call(&Request::Begin {
            channel: channel.into()
        }),
        Response::Ok
    );
    match connection.call(&Request::Take {
        max_events: count,
        wait_ms: 0,
    }) {
        Response::Events(events) => {
            let bodies: Vec<String> = events
                .to_events()
                .into_iter()
                .map(|event| String::from_utf8(event.body.to_vec()).unwrap())
                .collect();
            assert_eq!(bodies.len(), count as usize, "{channel}: {bodies:?}");
            (connection, bodies)
        }
        other => panic!("{channel}: expected events, got {other:?}"),
    }
}

#[test]
fn takes_rolled_back_in_any_order_at_a_sigterm_come_back_in_put_order_after_the_restart() {
    // c1: A rolls back before the stop, B at the stop; c2: the other way round; c3: both
    // at the stop, in whatever order the sessions end.
    let channels = ["c1", "c2", "c3"];
    let mut server = Server::start(
        ServerSetup::with_config(millrace_e2e::file_channels_config(&channels, ""))
            .arg("--shutdown-grace-ms")
            .arg("300"),
    );
    let bodies = lines("event", 1..=7);
    let mut held = Vec::new();
    for channel in channels {
        successful_lines(&server.channelctl("put", &["--channel", channel], &stdin_of(&bodies)));
        let (mut a, taken_by_a) = open_take(&server, channel, 2);
        let (mut b, taken_by_b) = open_take(&server, channel, 3);
        assert_eq!(taken_by_a, bodies[..2], "{channel}");
        assert_eq!(taken_by_b, bodies[2..5], "{channel}");
        match channel {
            "c1" => assert_eq!(a.call(&Request::Rollback), Response::Ok),
            "c2" => assert_eq!(b.call(&Request::Rollback), Response::Ok),
            _ => {}
        }
        held.push((a, b));
    }

    let status = server.stop_with_sigterm();
    assert_eq!(status.code(), Some(0), "{}", server.stderr());
    drop(held);

    server.restart();
    for channel in channels {
        let delivered = successful_lines(&server.channelctl(
            "take",
            &["--channel", channel, "--wait-ms", "500", "--batch", "1000"],
            b"",
        ));
        assert_eq!(
            delivered, bodies,
            "{channel}: put-commit order after the rollbacks"
        );
    }
}
