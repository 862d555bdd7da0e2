//! Sources and sinks as processes of their own: channeld starts `channel-agent` per
//! component; these tests drive whole flows through the real binaries.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use millrace_client::{Client, ClientOptions, Event};
use millrace_e2e::{
    bodies_of, free_port, kill_9_pid, require_tool, wait_until, Server, ServerSetup, AGENT,
};

/// Longest wait for events to cross a flow.
const FLOW_TIMEOUT: Duration = Duration::from_secs(60);
/// How to get the `nc` the netcat tests pipe into (as the seed flow does, `docs/adapters.md`).
const NETCAT_HOW_TO_GET: &str = "apt-get install netcat-openbsd; .ci/run installs it";

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime")
}

/// Puts `bodies` on `channel` in transactions of `batch` events.
fn put_bodies(server: &Server, channel: &str, bodies: &[String], batch: usize) {
    runtime().block_on(async {
        let mut client = Client::connect(ClientOptions::new(server.protocol_address()))
            .await
            .expect("connect");
        for chunk in bodies.chunks(batch) {
            let events: Vec<Event> = chunk.iter().map(|body| Event::new(body.clone())).collect();
            client.put_and_commit(channel, &events).await.expect("put");
        }
    });
}

/// Takes every event from `channel` until it stays empty for a moment.
fn drain(server: &Server, channel: &str) -> Vec<Event> {
    server.drain_events(channel, 500)
}

fn channel_size(server: &Server, channel: &str) -> u64 {
    server.metrics_channel_size(channel)
}

/// The lines of every file in `directory` (not its subdirectories), files in the order
/// the rolling sink named them (series start, then index).
fn rolled_lines(directory: &Path) -> Vec<String> {
    let mut files: Vec<((u128, u64), PathBuf)> = std::fs::read_dir(directory)
        .expect("list the sink directory")
        .flatten()
        .map(|entry| entry.path())
        .filter(|path| path.is_file())
        .filter_map(|path| {
            let name = path.file_name()?.to_str()?.to_string();
            let stem = name.split('.').next()?.to_string();
            let (series, index) = stem.split_once('-')?;
            Some(((series.parse().ok()?, index.parse().ok()?), path))
        })
        .collect();
    files.sort();
    files
        .iter()
        .flat_map(|(_, path)| {
            std::fs::read_to_string(path)
                .expect("read a rolled file")
                .lines()
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .collect()
}

fn numbered(prefix: &str, count: usize) -> Vec<String> {
    (0..count).map(|n| format!("{prefix}-{n:06}")).collect()
}

fn wait_for_port(port: u16) {
    let listening = wait_until(FLOW_TIMEOUT, || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    assert!(listening, "nothing listens on port {port}");
}

#[test]
fn the_seed_two_agent_flow_carries_a_netcat_line_through_the_spool_directory_to_the_logger() {
    if require_tool("nc", NETCAT_HOW_TO_GET).is_none() {
        return;
    }
    let spool = tempfile::tempdir().expect("a spool directory");
    let spool_dir = spool.path().display();
    let netcat_port = free_port();
    // The two agents of the seed flow (`docs/adapters.md`), in one file, with the lost lines restored.
    let config = format!(
        "fsource.sinks = spoolSink\n\
         fsource.sources = netcatSource\n\
         fsource.channels = inMemoryChannel\n\
         fsource.sources.netcatSource.type = netcat\n\
         fsource.sources.netcatSource.bind =\n\
         fsource.sources.netcatSource.port = {netcat_port}\n\
         fsource.sources.netcatSource.channels = inMemoryChannel\n\
         fsource.channels.inMemoryChannel.type = memory\n\
         fsource.channels.inMemoryChannel.capacity = 1000\n\
         fsource.channels.inMemoryChannel.transactionCapacity = 100\n\
         # Set up the spooling directory sink\n\
         fsource.sinks.spoolSink.type = com.unrulymedia.flume.SpoolingDirectoryFileSink\n\
         fsource.sinks.spoolSink.channel = inMemoryChannel\n\
         fsource.sinks.spoolSink.sink.directory = {spool_dir}\n\
         fsource.sinks.spoolSink.sink.rollInterval = 1\n\
         \n\
         fsink.sinks = logSink\n\
         fsink.sources = spoolSource\n\
         fsink.channels = inMemoryChannel\n\
         fsink.channels.inMemoryChannel.type = memory\n\
         fsink.channels.inMemoryChannel.capacity = 1000\n\
         fsink.channels.inMemoryChannel.transactionCapacity = 100\n\
         fsink.sinks.logSink.type = logger\n\
         fsink.sinks.logSink.channel = inMemoryChannel\n\
         fsink.sources.spoolSource.type = spooldir\n\
         fsink.sources.spoolSource.channels = inMemoryChannel\n\
         fsink.sources.spoolSource.spoolDir = {spool_dir}\n\
         fsink.sources.spoolSource.fileHeader = true\n"
    );
    let upstream = Server::start(ServerSetup::with_config(config.clone()).agent("fsource"));
    let downstream = Server::start(ServerSetup::with_config(config).agent("fsink"));
    wait_for_port(netcat_port);

    let output = Command::new("sh")
        .args([
            "-c",
            &format!("echo ding | nc -q 2 127.0.0.1 {netcat_port}"),
        ])
        .output()
        .expect("run nc");
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        "OK\n",
        "netcat's answer"
    );

    let hex_row = format!("body: 64 69 6E 67{} ding }}", " ".repeat(36));
    let logged = wait_until(FLOW_TIMEOUT, || downstream.stdout().contains(&hex_row));
    assert!(
        logged,
        "the logger did not print the event.\nstdout: {}\nupstream stderr: {}\ndownstream stderr: {}",
        downstream.stdout(),
        upstream.stderr(),
        downstream.stderr()
    );
    let line = downstream
        .stdout()
        .lines()
        .find(|line| line.contains("ding"))
        .expect("the logged line")
        .to_string();
    let spooled_file = std::fs::canonicalize(spool.path()).unwrap();
    assert!(
        line.starts_with(&format!(
            "Event: {{ headers:{{file={}/",
            spooled_file.display()
        )),
        "{line}"
    );
    let completed = wait_until(FLOW_TIMEOUT, || {
        std::fs::read_dir(spool.path())
            .unwrap()
            .flatten()
            .any(|entry| entry.file_name().to_string_lossy().ends_with(".COMPLETED"))
    });
    assert!(completed, "the spooled file was renamed after its commit");
}

fn file_roll_config(sink_dir: &Path, extra: &str) -> String {
    format!(
        "{AGENT}.channels = c1\n\
         {AGENT}.channels.c1.type = file\n\
         {AGENT}.channels.c1.checkpointDir = c1/checkpoint\n\
         {AGENT}.channels.c1.dataDirs = c1/data\n\
         {AGENT}.channels.c1.minimumRequiredSpace = 1048576\n\
         {AGENT}.channels.c1.capacity = 100000\n\
         {AGENT}.sinks = k1\n\
         {AGENT}.sinks.k1.type = file_roll\n\
         {AGENT}.sinks.k1.channel = c1\n\
         {AGENT}.sinks.k1.sink.directory = {}\n\
         {AGENT}.sinks.k1.sink.rollInterval = 0\n\
         {extra}",
        sink_dir.display()
    )
}

#[test]
fn file_roll_output_equals_the_input_in_order() {
    let sink_dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(ServerSetup::with_config(file_roll_config(
        sink_dir.path(),
        &format!("{AGENT}.sinks.k1.sink.batchSize = 50\n"),
    )));
    let bodies = numbered("event", 3_000);
    put_bodies(&server, "c1", &bodies, 100);
    let drained = wait_until(FLOW_TIMEOUT, || {
        rolled_lines(sink_dir.path()).len() >= bodies.len()
    });
    assert!(
        drained,
        "the sink wrote {} lines",
        rolled_lines(sink_dir.path()).len()
    );
    server.stop_with_sigterm();
    assert_eq!(rolled_lines(sink_dir.path()), bodies);
}

#[test]
fn killing_a_sink_process_mid_flow_loses_nothing_and_duplicates_at_most_the_batch_it_held() {
    const BATCH: usize = 20;
    let sink_dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(ServerSetup::with_config(file_roll_config(
        sink_dir.path(),
        &format!("{AGENT}.sinks.k1.sink.batchSize = {BATCH}\n"),
    )));
    let bodies = numbered("event", 20_000);
    put_bodies(&server, "c1", &bodies, 500);
    let started = wait_until(FLOW_TIMEOUT, || !rolled_lines(sink_dir.path()).is_empty());
    assert!(started, "the sink never wrote:\n{}", server.stderr());
    let pids = server.adapter_pids("k1");
    assert_eq!(pids.len(), 1, "one process for sink k1");
    kill_9_pid(pids[0]);
    let restarted = wait_until(FLOW_TIMEOUT, || {
        let now = server.adapter_pids("k1");
        !now.is_empty() && now != pids
    });
    assert!(
        restarted,
        "channeld restarted the sink:\n{}",
        server.stderr()
    );
    let drained = wait_until(FLOW_TIMEOUT, || channel_size(&server, "c1") == 0);
    assert!(drained, "the channel drained");
    server.stop_with_sigterm();

    let written = rolled_lines(sink_dir.path());
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for line in &written {
        *counts.entry(line.as_str()).or_default() += 1;
    }
    let lost: Vec<&String> = bodies
        .iter()
        .filter(|body| !counts.contains_key(body.as_str()))
        .collect();
    let duplicated = written.len() - counts.len();
    println!(
        "sink killed mid-flow: {} events, {} lines written, {} lost, {duplicated} duplicated",
        bodies.len(),
        written.len(),
        lost.len()
    );
    assert!(
        lost.is_empty(),
        "lost {} events, first {:?}",
        lost.len(),
        lost.first()
    );
    assert_eq!(counts.len(), bodies.len(), "nothing unexpected");
    assert!(
        duplicated <= BATCH,
        "{duplicated} duplicates exceed one batch of {BATCH}"
    );
}

/// Config of a server with memory channel `c1` only.
fn plain_memory_server(extra: &str) -> Server {
    Server::start(ServerSetup::with_config(format!(
        "{AGENT}.channels = c1\n\
         {AGENT}.channels.c1.type = memory\n\
         {AGENT}.channels.c1.capacity = 100000\n\
         {AGENT}.channels.c1.transactionCapacity = 1000\n\
         {extra}"
    )))
}

fn forward_sink(name: &str, target: &Server) -> String {
    let (host, port) = target
        .protocol_address()
        .rsplit_once(':')
        .expect("host:port");
    format!(
        "{AGENT}.sinks.{name}.type = forward\n\
         {AGENT}.sinks.{name}.channel = c1\n\
         {AGENT}.sinks.{name}.hostname = {host}\n\
         {AGENT}.sinks.{name}.port = {port}\n\
         {AGENT}.sinks.{name}.remoteChannel = c1\n"
    )
}

#[test]
fn a_forward_sink_moves_every_event_into_a_second_channeld_in_order() {
    let downstream = plain_memory_server("");
    let upstream = plain_memory_server(&format!(
        "{AGENT}.sinks = k1\n{}",
        forward_sink("k1", &downstream)
    ));
    let bodies = numbered("tiered", 2_000);
    put_bodies(&upstream, "c1", &bodies, 100);
    let arrived = wait_until(FLOW_TIMEOUT, || {
        channel_size(&upstream, "c1") == 0 && channel_size(&downstream, "c1") == bodies.len() as u64
    });
    assert!(arrived, "events crossed:\n{}", upstream.stderr());
    assert_eq!(bodies_of(&drain(&downstream, "c1")), bodies);
}

#[test]
fn failover_switches_to_the_backup_while_the_primary_server_is_down_and_back_when_it_returns() {
    let mut primary = plain_memory_server("");
    let backup = plain_memory_server("");
    let upstream = plain_memory_server(&format!(
        "{AGENT}.sinks = k1 k2\n{}{}\
         {AGENT}.sinkgroups = g1\n\
         {AGENT}.sinkgroups.g1.sinks = k1 k2\n\
         {AGENT}.sinkgroups.g1.processor.type = failover\n\
         {AGENT}.sinkgroups.g1.processor.priority.k1 = 10\n\
         {AGENT}.sinkgroups.g1.processor.priority.k2 = 5\n\
         {AGENT}.sinkgroups.g1.processor.maxpenalty = 1000\n",
        forward_sink("k1", &primary),
        forward_sink("k2", &backup)
    ));
    let first = numbered("first", 100);
    put_bodies(&upstream, "c1", &first, 100);
    assert!(wait_until(FLOW_TIMEOUT, || channel_size(&primary, "c1") == 100));
    assert_eq!(
        channel_size(&backup, "c1"),
        0,
        "the backup idles while the primary works"
    );

    primary.stop_with_sigterm();
    let second = numbered("second", 100);
    put_bodies(&upstream, "c1", &second, 100);
    let switched = wait_until(FLOW_TIMEOUT, || channel_size(&backup, "c1") == 100);
    assert!(switched, "the backup took over:\n{}", upstream.stderr());
    assert_eq!(bodies_of(&drain(&backup, "c1")), second);

    // A memory channel starts empty again: what arrives now came after the restart.
    primary.restart_on_the_same_addresses();
    let mut third = Vec::new();
    let back = wait_until(FLOW_TIMEOUT, || {
        let body = format!("third-{:06}", third.len());
        put_bodies(&upstream, "c1", std::slice::from_ref(&body), 1);
        third.push(body);
        std::thread::sleep(Duration::from_millis(100));
        channel_size(&primary, "c1") > 0
    });
    assert!(back, "the primary took over again:\n{}", upstream.stderr());
    let settled = wait_until(FLOW_TIMEOUT, || channel_size(&upstream, "c1") == 0);
    assert!(settled);
    let mut delivered = bodies_of(&drain(&primary, "c1"));
    delivered.extend(bodies_of(&drain(&backup, "c1")));
    delivered.sort();
    assert_eq!(
        delivered, third,
        "every event after the restart arrived once"
    );
}

#[test]
fn a_poison_event_lands_in_the_dead_letter_channel_while_the_rest_flow_on() {
    // The downstream server takes frames of at most 256 KiB; one event is larger.
    let downstream = plain_memory_server(&format!("{AGENT}.server.maxFrameBytes = 262144\n"));
    let upstream = Server::start(ServerSetup::with_config(format!(
        "{AGENT}.channels = c1 dead\n\
         {AGENT}.channels.c1.type = memory\n\
         {AGENT}.channels.c1.capacity = 10000\n\
         {AGENT}.channels.dead.type = memory\n\
         {AGENT}.sinks = k1\n{}\
         {AGENT}.sinks.k1.deadLetter.channel = dead\n\
         {AGENT}.sinks.k1.deadLetter.maxAttempts = 2\n",
        forward_sink("k1", &downstream)
    )));
    let poison = "p".repeat(300 * 1024);
    let mut bodies = numbered("before", 5);
    bodies.push(poison.clone());
    bodies.extend(numbered("after", 5));
    put_bodies(&upstream, "c1", &bodies, bodies.len());
    let flowed = wait_until(FLOW_TIMEOUT, || channel_size(&downstream, "c1") == 10);
    assert!(flowed, "the rest flowed on:\n{}", upstream.stderr());
    let mut expected = numbered("before", 5);
    expected.extend(numbered("after", 5));
    assert_eq!(bodies_of(&drain(&downstream, "c1")), expected);
    let dead = drain(&upstream, "dead");
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].body.len(), poison.len());
    assert_eq!(dead[0].header("millrace.deadLetter.sink"), Some("k1"));
    assert_eq!(dead[0].header("millrace.deadLetter.attempts"), Some("2"));
    assert!(dead[0]
        .header("millrace.deadLetter.reason")
        .is_some_and(|reason| reason.contains("262144")));
}

#[test]
fn an_over_long_netcat_line_is_refused_and_the_connection_closed_while_the_channel_keeps_working() {
    use std::io::{BufRead, BufReader, Write};
    let port = free_port();
    let server = plain_memory_server(&format!(
        "{AGENT}.sources = r1\n\
         {AGENT}.sources.r1.type = netcat\n\
         {AGENT}.sources.r1.bind = 127.0.0.1\n\
         {AGENT}.sources.r1.port = {port}\n\
         {AGENT}.sources.r1.max-line-length = 16\n\
         {AGENT}.sources.r1.channels = c1\n"
    ));
    wait_for_port(port);
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    stream
        .write_all(b"short\nthis line is far too long\nnever\n")
        .unwrap();
    let mut reader = BufReader::new(stream);
    let mut answers = String::new();
    reader.read_to_string_lossy(&mut answers);
    assert_eq!(
        answers,
        "OK\nFAILED: Event exceeds the maximum length (16 chars, including newline)\n"
    );
    assert_eq!(bodies_of(&drain(&server, "c1")), ["short"]);
    // A new connection works.
    let mut again = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    again
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    again.write_all(b"next\n").unwrap();
    let mut line = String::new();
    BufReader::new(again).read_line(&mut line).unwrap();
    assert_eq!(line, "OK\n");
}

/// A source counter as channeld publishes it (`SOURCE.<name>`), once reported.
fn source_counter(server: &Server, source: &str, counter: &str) -> Option<u64> {
    let (_, metrics) = server.http_json("/metrics");
    metrics[format!("SOURCE.{source}")][counter]
        .as_str()
        .and_then(|value| value.parse().ok())
}

#[test]
fn netcat_refuses_a_last_line_without_a_newline_with_failed_and_delivers_only_whole_lines() {
    if require_tool("nc", NETCAT_HOW_TO_GET).is_none() {
        return;
    }
    let port = free_port();
    let server = plain_memory_server(&format!(
        "{AGENT}.sources = r1\n\
         {AGENT}.sources.r1.type = netcat\n\
         {AGENT}.sources.r1.bind = 127.0.0.1\n\
         {AGENT}.sources.r1.port = {port}\n\
         {AGENT}.sources.r1.channels = c1\n"
    ));
    wait_for_port(port);
    // nc closes its sending half at the end of its input and still prints the answers.
    let output = Command::new("sh")
        .args([
            "-c",
            &format!("printf 'one\\ntwo\\nthree' | nc -q 5 127.0.0.1 {port}"),
        ])
        .output()
        .expect("run nc");
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        "OK\nOK\nFAILED: Incomplete line (5 bytes) at end of input: not delivered, end each \
         line with a newline\n",
        "netcat's answers"
    );
    assert_eq!(bodies_of(&drain(&server, "c1")), ["one", "two"]);
    let counted = wait_until(FLOW_TIMEOUT, || {
        source_counter(&server, "r1", "EventReadFail") == Some(1)
    });
    assert!(counted, "EventReadFail counts the incomplete line");
}

/// Reads until the peer closes.
trait ReadToStringLossy {
    fn read_to_string_lossy(&mut self, into: &mut String);
}

impl<R: std::io::Read> ReadToStringLossy for R {
    fn read_to_string_lossy(&mut self, into: &mut String) {
        let mut bytes = Vec::new();
        let _ = self.read_to_end(&mut bytes);
        into.push_str(&String::from_utf8_lossy(&bytes));
    }
}

#[test]
fn a_spooldir_source_killed_mid_file_resumes_where_it_stopped() {
    const BATCH: usize = 10;
    let spool = tempfile::tempdir().unwrap();
    let bodies = numbered("line", 30_000);
    std::fs::write(spool.path().join("big.log"), bodies.join("\n") + "\n").unwrap();
    let server = Server::start(ServerSetup::with_config(format!(
        "{AGENT}.channels = c1\n\
         {AGENT}.channels.c1.type = file\n\
         {AGENT}.channels.c1.checkpointDir = c1/checkpoint\n\
         {AGENT}.channels.c1.dataDirs = c1/data\n\
         {AGENT}.channels.c1.minimumRequiredSpace = 1048576\n\
         {AGENT}.channels.c1.capacity = 100000\n\
         {AGENT}.sources = r1\n\
         {AGENT}.sources.r1.type = spooldir\n\
         {AGENT}.sources.r1.spoolDir = {}\n\
         {AGENT}.sources.r1.batchSize = {BATCH}\n\
         {AGENT}.sources.r1.channels = c1\n",
        spool.path().display()
    )));
    let started = wait_until(FLOW_TIMEOUT, || channel_size(&server, "c1") > 0);
    assert!(started, "the source started:\n{}", server.stderr());
    let pids = server.adapter_pids("r1");
    assert_eq!(pids.len(), 1);
    kill_9_pid(pids[0]);
    let completed = wait_until(FLOW_TIMEOUT, || {
        spool.path().join("big.log.COMPLETED").exists()
    });
    assert!(
        completed,
        "the file was completed after the restart:\n{}",
        server.stderr()
    );
    let taken = bodies_of(&drain(&server, "c1"));
    let mut seen = std::collections::HashSet::new();
    let unique: Vec<String> = taken
        .iter()
        .filter(|body| seen.insert(body.as_str()))
        .cloned()
        .collect();
    let duplicated = taken.len() - unique.len();
    println!(
        "spooldir killed mid-file: {} lines, {} events, {duplicated} duplicated",
        bodies.len(),
        taken.len()
    );
    assert_eq!(
        unique, bodies,
        "every line once, in order, apart from a repeated batch"
    );
    assert!(
        duplicated <= BATCH,
        "{duplicated} duplicates exceed one batch of {BATCH}"
    );
}
