//! The small sources of Flume's template and User Guide — `seq`, `netcatudp`,
//! `multiport_syslogtcp` — and TAILDIR's User Guide example, through the real binaries:
//! each file passes `channelctl validate` and runs.

use std::io::Write;
use std::net::TcpStream;
use std::process::Command;
use std::time::Duration;

use millrace_e2e::{
    bodies_of, channelctl, free_port, require_tool, wait_until, Server, ServerSetup,
};

/// Longest wait for events to cross a flow.
const FLOW_TIMEOUT: Duration = Duration::from_secs(60);
/// How to get the `nc` the netcatudp test sends with.
const NETCAT_HOW_TO_GET: &str = "apt-get install netcat-openbsd; .ci/run installs it";

/// Flume's `conf/flume-conf.properties.template` as shipped (agent `agent`: seq source,
/// memory channel of capacity 100, logger sink), comments included.
const FLUME_TEMPLATE: &str = "\
# The configuration file needs to define the sources,
# the channels and the sinks.
# Sources, channels and sinks are defined per agent,
# in this case called 'agent'

agent.sources = seqGenSrc
agent.channels = memoryChannel
agent.sinks = loggerSink

# For each one of the sources, the type is defined
agent.sources.seqGenSrc.type = seq

# The channel can be defined as follows.
agent.sources.seqGenSrc.channels = memoryChannel

# Each sink's type must be defined
agent.sinks.loggerSink.type = logger

#Specify the channel the sink should use
agent.sinks.loggerSink.channel = memoryChannel

# Each channel's type is defined.
agent.channels.memoryChannel.type = memory

# Other config values specific to each type of channel(sink or source)
# can be defined as well
# In this case, it specifies the capacity of the memory channel
agent.channels.memoryChannel.capacity = 100
";

/// Runs `channelctl validate` on `text` for `agent`; panics with its output unless valid.
fn assert_valid(text: &str, agent: &str) {
    let directory = tempfile::tempdir().unwrap();
    let file = directory.path().join("flume.conf");
    std::fs::write(&file, text).unwrap();
    let output = channelctl(
        &["validate", "-f", file.to_str().unwrap(), "-n", agent],
        b"",
    );
    assert!(
        output.status.success(),
        "validate refused it ({}):\n{}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn flumes_shipped_template_validates_and_its_seq_events_reach_the_logger() {
    assert_valid(FLUME_TEMPLATE, "agent");
    let server = Server::start(ServerSetup::with_config(FLUME_TEMPLATE).agent("agent"));
    // "0".."9" as the logger prints them: hex row, then the text.
    let first_events = ["30", "31", "32"].map(|hex| format!("body: {hex} "));
    let logged = wait_until(FLOW_TIMEOUT, || {
        let stdout = server.stdout();
        first_events.iter().all(|row| stdout.contains(row.as_str()))
    });
    assert!(
        logged,
        "the logger printed seq's first events:\n{}\n{}",
        server.stdout(),
        server.stderr()
    );
    let first = server
        .stdout()
        .lines()
        .find(|line| line.starts_with("Event: "))
        .expect("a logged event")
        .to_string();
    assert!(
        first.starts_with("Event: { headers:{} body: 30 "),
        "{first}"
    );
}

#[test]
fn seq_sends_total_events_numbers_in_order_in_batches() {
    let config = "\
a1.sources = r1
a1.channels = c1
a1.sources.r1.type = seq
a1.sources.r1.channels = c1
a1.sources.r1.totalEvents = 1000
a1.sources.r1.batchSize = 100
a1.channels.c1.type = memory
a1.channels.c1.capacity = 10000
";
    assert_valid(config, "a1");
    let server = Server::start(ServerSetup::with_config(config));
    let all = wait_until(FLOW_TIMEOUT, || server.metrics_channel_size("c1") == 1000);
    assert!(all, "1000 events arrived:\n{}", server.stderr());
    // It stops at totalEvents: no more arrive.
    std::thread::sleep(Duration::from_millis(300));
    let bodies = bodies_of(&server.drain_events("c1", 500));
    let expected: Vec<String> = (0..1000).map(|number: u32| number.to_string()).collect();
    assert_eq!(bodies, expected);
}

#[test]
fn netcatudp_delivers_each_datagram_sent_by_nc_up_to_its_newline() {
    if require_tool("nc", NETCAT_HOW_TO_GET).is_none() {
        return;
    }
    let port = free_port();
    // The User Guide's example, on a free port, with the remote-address header.
    let config = format!(
        "a1.sources = r1
a1.channels = c1
a1.sources.r1.type = netcatudp
a1.sources.r1.bind = 127.0.0.1
a1.sources.r1.port = {port}
a1.sources.r1.remoteAddress = sender
a1.sources.r1.channels = c1
a1.channels.c1.type = memory
"
    );
    assert_valid(&config, "a1");
    let server = Server::start(ServerSetup::with_config(config));
    // UDP has no connection to wait for: send until the source has bound and takes one.
    let mut sent = 0;
    let arrived = wait_until(FLOW_TIMEOUT, || {
        sent += 1;
        let output = Command::new("sh")
            .args([
                "-c",
                &format!("printf 'ping\\n' | nc -u -w1 127.0.0.1 {port}"),
            ])
            .output()
            .expect("run nc");
        assert!(output.status.success(), "nc -u failed: {output:?}");
        server.metrics_channel_size("c1") >= 1
    });
    assert!(arrived, "a datagram arrived:\n{}", server.stderr());
    let output = Command::new("sh")
        .args([
            "-c",
            &format!("printf 'hello udp\\nnot this part' | nc -u -w1 127.0.0.1 {port}"),
        ])
        .output()
        .expect("run nc");
    assert!(output.status.success());
    let both = wait_until(FLOW_TIMEOUT, || server.metrics_channel_size("c1") >= 2);
    assert!(both, "the second datagram arrived:\n{}", server.stderr());
    let events = server.drain_events("c1", 100);
    let bodies = bodies_of(&events);
    assert!(
        bodies
            .iter()
            .all(|body| body == "ping" || body == "hello udp"),
        "{bodies:?}"
    );
    assert_eq!(bodies.last().map(String::as_str), Some("hello udp"));
    let sender = events[0].header("sender").expect("the sender header");
    assert!(sender.starts_with("/127.0.0.1:"), "{sender}");
}

#[test]
fn multiport_syslogtcp_serves_every_port_and_names_it_in_the_port_header() {
    let ports = [free_port(), free_port()];
    // The User Guide's example, on free ports.
    let config = format!(
        "a1.sources = r1
a1.channels = c1
a1.sources.r1.type = multiport_syslogtcp
a1.sources.r1.channels = c1
a1.sources.r1.host = 127.0.0.1
a1.sources.r1.ports = {} {}
a1.sources.r1.portHeader = port
a1.channels.c1.type = memory
",
        ports[0], ports[1]
    );
    assert_valid(&config, "a1");
    let server = Server::start(ServerSetup::with_config(config));
    for (index, port) in ports.iter().enumerate() {
        let mut stream = None;
        let connected = wait_until(FLOW_TIMEOUT, || {
            stream = TcpStream::connect(("127.0.0.1", *port)).ok();
            stream.is_some()
        });
        assert!(connected, "port {port} listens:\n{}", server.stderr());
        let mut stream = stream.unwrap();
        writeln!(stream, "<13>Jan  5 12:00:00 myhost message {index}").unwrap();
    }
    let arrived = wait_until(FLOW_TIMEOUT, || server.metrics_channel_size("c1") == 2);
    assert!(arrived, "both messages arrived:\n{}", server.stderr());
    let mut events = server.drain_events("c1", 10);
    events.sort_by_key(|event| event.header("port").map(str::to_string));
    let mut found: Vec<(String, String, String)> = events
        .iter()
        .map(|event| {
            (
                String::from_utf8(event.body.to_vec()).unwrap(),
                event.header("port").unwrap_or_default().to_string(),
                event.header("host").unwrap_or_default().to_string(),
            )
        })
        .collect();
    found.sort();
    assert_eq!(
        found,
        [
            (
                "message 0".to_string(),
                ports[0].to_string(),
                "myhost".to_string()
            ),
            (
                "message 1".to_string(),
                ports[1].to_string(),
                "myhost".to_string()
            ),
        ]
    );
}

#[test]
fn the_user_guides_taildir_example_validates_and_runs() {
    let logs = tempfile::tempdir().unwrap();
    let test1 = logs.path().join("test1");
    let test2 = logs.path().join("test2");
    std::fs::create_dir_all(&test1).unwrap();
    std::fs::create_dir_all(&test2).unwrap();
    std::fs::write(test1.join("example.log"), "from f1\n").unwrap();
    std::fs::write(test2.join("app.log.2024"), "from f2\n").unwrap();
    std::fs::write(test2.join("ignored.txt"), "not matched\n").unwrap();
    // The User Guide's example with its /var/log directories moved under a temporary one.
    let config = format!(
        "a1.sources = r1
a1.channels = c1
a1.sources.r1.type = TAILDIR
a1.sources.r1.channels = c1
a1.sources.r1.positionFile = {root}/flume/taildir_position.json
a1.sources.r1.filegroups = f1 f2
a1.sources.r1.filegroups.f1 = {root}/test1/example.log
a1.sources.r1.headers.f1.headerKey1 = value1
a1.sources.r1.filegroups.f2 = {root}/test2/.*log.*
a1.sources.r1.headers.f2.headerKey1 = value2
a1.sources.r1.headers.f2.headerKey2 = value2-2
a1.sources.r1.fileHeader = true
a1.sources.r1.maxBatchCount = 1000
a1.channels.c1.type = memory
",
        root = logs.path().display()
    );
    assert_valid(&config, "a1");
    let server = Server::start(ServerSetup::with_config(config));
    let arrived = wait_until(FLOW_TIMEOUT, || server.metrics_channel_size("c1") == 2);
    assert!(arrived, "both files' lines arrived:\n{}", server.stderr());
    let events = server.drain_events("c1", 10);
    let mut found: Vec<(String, Vec<(String, String)>)> = events
        .iter()
        .map(|event| {
            let mut headers = event.headers.clone();
            headers.sort();
            (String::from_utf8(event.body.to_vec()).unwrap(), headers)
        })
        .collect();
    found.sort();
    let f1_file = test1.join("example.log").display().to_string();
    let f2_file = test2.join("app.log.2024").display().to_string();
    assert_eq!(
        found,
        [
            (
                "from f1".to_string(),
                vec![
                    ("file".to_string(), f1_file),
                    ("headerKey1".to_string(), "value1".to_string()),
                ]
            ),
            (
                "from f2".to_string(),
                vec![
                    ("file".to_string(), f2_file),
                    ("headerKey1".to_string(), "value2".to_string()),
                    ("headerKey2".to_string(), "value2-2".to_string()),
                ]
            ),
        ]
    );
}
