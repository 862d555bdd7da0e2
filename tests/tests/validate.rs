//! `channelctl validate` on whole agent files, as a Flume user meets it first: every
//! problem of a file at once (channels, wiring, source and sink keys, and the checks
//! that span components), each at the line that causes it, and Flume's own keys
//! accepted. A starting channeld applies the same checks (through `channel-agent
//! --check`) with its flags' listener addresses.

use std::path::Path;
use std::process::{Command, Output, Stdio};

use millrace_e2e::{binaries, channelctl, free_port, ChildGuard, AGENT, SERVER_START_TIMEOUT};

/// sysexits.h `EX_CONFIG`, validate's exit code for an invalid file.
const EXIT_CONFIG_ERROR: i32 = 78;

/// Writes `text` as `agent.conf` in a fresh directory and validates agent a1 there.
/// Returns the output and the file's path as the messages name it.
fn validate(text: &str) -> (Output, String) {
    let directory = tempfile::tempdir().unwrap();
    let output = validate_in(directory.path(), text);
    let file = directory.path().join("agent.conf").display().to_string();
    (output, file)
}

fn validate_in(directory: &Path, text: &str) -> Output {
    let file = directory.join("agent.conf");
    std::fs::write(&file, text).unwrap();
    channelctl(
        &["validate", "-f", file.to_str().unwrap(), "-n", AGENT],
        b"",
    )
}

/// The lines of stderr, with the file's path shortened to `agent.conf`.
fn stderr_lines(output: &Output, file: &str) -> Vec<String> {
    String::from_utf8_lossy(&output.stderr)
        .replace(file, "agent.conf")
        .lines()
        .map(str::to_string)
        .collect()
}

/// The stderr lines that are errors (not warnings).
fn error_lines(output: &Output, file: &str) -> Vec<String> {
    stderr_lines(output, file)
        .into_iter()
        .filter(|line| !line.starts_with("warning: "))
        .collect()
}

/// The stderr lines that are warnings, without their `warning: ` prefix.
fn warning_lines(output: &Output, file: &str) -> Vec<String> {
    stderr_lines(output, file)
        .into_iter()
        .filter_map(|line| line.strip_prefix("warning: ").map(str::to_string))
        .collect()
}

fn assert_invalid(output: &Output, file: &str) -> Vec<String> {
    assert_eq!(
        output.status.code(),
        Some(EXIT_CONFIG_ERROR),
        "expected an invalid file; stderr:\n{}",
        stderr_lines(output, file).join("\n")
    );
    error_lines(output, file)
}

fn assert_valid(output: &Output, file: &str) {
    assert_eq!(
        output.status.code(),
        Some(0),
        "expected a valid file; stderr:\n{}",
        stderr_lines(output, file).join("\n")
    );
}

/// Asserts that exactly one line starts with `prefix` and contains every one of `parts`.
fn assert_one_line(lines: &[String], prefix: &str, parts: &[&str]) {
    let matching: Vec<&String> = lines
        .iter()
        .filter(|line| line.starts_with(prefix))
        .collect();
    assert_eq!(
        matching.len(),
        1,
        "expected one line starting {prefix:?} in:\n{}",
        lines.join("\n")
    );
    for part in parts {
        assert!(
            matching[0].contains(part),
            "{:?} lacks {part:?}",
            matching[0]
        );
    }
}

// 17.9 ---------------------------------------------------------------------------------

#[test]
fn a_channel_key_typo_does_not_hide_the_source_and_sink_problems() {
    let (output, file) = validate(
        "a1.channels = c1\n\
         a1.sources = r1\n\
         a1.sinks = k1\n\
         a1.channels.c1.type = memory\n\
         a1.channels.c1.capasity = 10\n\
         a1.sources.r1.type = netcat\n\
         a1.sources.r1.channels = c1\n\
         a1.sources.r1.prot = 44444\n\
         a1.sinks.k1.type = hdfs\n\
         a1.sinks.k1.channel = c1\n",
    );
    let errors = assert_invalid(&output, &file);
    let keys_by_line: Vec<&str> = errors
        .iter()
        .map(|line| line.split(": ").take(2).last().unwrap_or_default())
        .collect();
    assert_eq!(
        keys_by_line,
        [
            "a1.sources.r1.port",
            "a1.channels.c1.capasity",
            "a1.sources.r1.prot",
            "a1.sinks.k1.type",
        ],
        "every problem, in line order:\n{}",
        errors.join("\n")
    );
    assert_one_line(
        &errors,
        "agent.conf:2: a1.sources.r1.port:",
        &["but the key is missing"],
    );
    assert_one_line(
        &errors,
        "agent.conf:5: a1.channels.c1.capasity:",
        &["capacity"],
    );
    assert_one_line(
        &errors,
        "agent.conf:8: a1.sources.r1.prot:",
        &["unknown key"],
    );
}

#[test]
fn a_source_with_a_wrong_channel_still_has_its_own_keys_checked() {
    let (output, file) = validate(
        "a1.channels = c1\n\
         a1.sources = r1\n\
         a1.channels.c1.type = memory\n\
         a1.sources.r1.type = spooldir\n\
         a1.sources.r1.channels = c2\n\
         a1.sources.r1.spoolDir = /var/spool/in\n\
         a1.sources.r1.fileSufix = .DONE\n",
    );
    let errors = assert_invalid(&output, &file);
    assert_one_line(
        &errors,
        "agent.conf:5: a1.sources.r1.channels:",
        &["a channel listed in a1.channels (c1)", "\"c2\""],
    );
    assert_one_line(
        &errors,
        "agent.conf:7: a1.sources.r1.fileSufix:",
        &["unknown key"],
    );
    assert_eq!(errors.len(), 2, "{}", errors.join("\n"));
}

// 17.10 --------------------------------------------------------------------------------

#[test]
fn unsupported_types_are_reported_on_their_type_lines() {
    let (output, file) = validate(
        "a1.channels = c1\n\
         a1.sources = r1\n\
         a1.sinks = k1 k2\n\
         a1.sinkgroups = g1\n\
         a1.channels.c1.type = memory\n\
         a1.sources.r1.channels = c1\n\
         a1.sources.r1.type = thrift\n\
         a1.sources.r1.selector.type = org.example.MySelector\n\
         a1.sinks.k1.channel = c1\n\
         a1.sinks.k1.type = hdfs\n\
         a1.sinks.k2.channel = c1\n\
         a1.sinks.k2.type = null\n\
         a1.sinkgroups.g1.sinks = k2\n\
         a1.sinkgroups.g1.processor.type = org.example.MyProcessor\n",
    );
    let errors = assert_invalid(&output, &file);
    assert_one_line(
        &errors,
        "agent.conf:7: a1.sources.r1.type:",
        &[
            "one of the sources Millrace runs",
            "\"thrift\"",
            "the avro source",
        ],
    );
    assert_one_line(
        &errors,
        "agent.conf:8: a1.sources.r1.selector.type:",
        &["org.example.MySelector"],
    );
    assert_one_line(
        &errors,
        "agent.conf:10: a1.sinks.k1.type:",
        &["one of the sinks Millrace runs", "\"hdfs\""],
    );
    assert_one_line(
        &errors,
        "agent.conf:14: a1.sinkgroups.g1.processor.type:",
        &["org.example.MyProcessor"],
    );
    assert_eq!(errors.len(), 4, "{}", errors.join("\n"));
}

#[test]
fn components_millrace_does_not_run_are_refused_naming_the_replacement() {
    let (output, file) = validate(
        "a1.channels = c1 c2\n\
         a1.sources = r1\n\
         a1.sinks = k1 k2\n\
         a1.channels.c1.type = memory\n\
         a1.channels.c2.type = jdbc\n\
         a1.sources.r1.channels = c1\n\
         a1.sources.r1.type = netcat\n\
         a1.sources.r1.bind = 127.0.0.1\n\
         a1.sources.r1.port = 0\n\
         a1.sources.r1.interceptors = i1\n\
         a1.sources.r1.interceptors.i1.type = com.example.flume.AddEnvInterceptor$Builder\n\
         a1.sinks.k1.channel = c1\n\
         a1.sinks.k1.type = org.apache.flume.sink.hdfs.HDFSEventSink\n\
         a1.sinks.k2.channel = c1\n\
         a1.sinks.k2.type = file_roll\n\
         a1.sinks.k2.sink.directory = /tmp\n\
         a1.sinks.k2.sink.serializer = avro_event\n",
    );
    let errors = assert_invalid(&output, &file);
    let table = "docs/adapters.md, \"What we do not run\"";
    assert_one_line(
        &errors,
        "agent.conf:5: a1.channels.c2.type:",
        &["\"jdbc\"", "the JDBC channel", "a file channel", table],
    );
    assert_one_line(
        &errors,
        "agent.conf:11: a1.sources.r1.interceptors.i1.type:",
        &[
            "AddEnvInterceptor",
            "runs no Java classes",
            "the script interceptor (type = script)",
            table,
        ],
    );
    assert_one_line(
        &errors,
        "agent.conf:13: a1.sinks.k1.type:",
        &[
            "one of the sinks Millrace runs",
            "the HDFS sink",
            "Kafka Connect's HDFS sink connector",
            "plus an uploader",
            table,
        ],
    );
    assert_one_line(
        &errors,
        "agent.conf:17: a1.sinks.k2.sink.serializer:",
        &["\"avro_event\"", "the avro_event serializer", "TEXT", table],
    );
    assert_eq!(errors.len(), 4, "{}", errors.join("\n"));
}

// 17.11 --------------------------------------------------------------------------------

#[test]
fn keys_flume_reads_are_accepted_with_a_warning() {
    let directory = tempfile::tempdir().unwrap();
    let spool = directory.path().join("spool");
    std::fs::create_dir(&spool).unwrap();
    let text = format!(
        "a1.channels = c1\n\
         a1.sources = r1 r2 r3\n\
         a1.sinks = k1\n\
         a1.channels.c1.type = memory\n\
         a1.sources.r1.type = spooldir\n\
         a1.sources.r1.channels = c1\n\
         a1.sources.r1.spoolDir = {spool}\n\
         a1.sources.r1.maxBackoff = 8000\n\
         a1.sources.r1.bufferMaxLines = 200\n\
         a1.sources.r2.type = http\n\
         a1.sources.r2.channels = c1\n\
         a1.sources.r2.port = 5140\n\
         a1.sources.r2.ssl = false\n\
         a1.sources.r2.keystore-type = PKCS12\n\
         a1.sources.r2.exclude-protocols = SSLv3 TLSv1\n\
         a1.sources.r2.QueuedThreadPool.maxThreads = 50\n\
         a1.sources.r2.HttpConfiguration.sendServerVersion = false\n\
         a1.sources.r2.ServerConnector.idleTimeout = 300\n\
         a1.sources.r3.type = syslogtcp\n\
         a1.sources.r3.channels = c1\n\
         a1.sources.r3.port = 5141\n\
         a1.sources.r3.keystore-type = JKS\n\
         a1.sources.r3.exclude-protocols = SSLv3\n\
         a1.sinks.k1.type = null\n\
         a1.sinks.k1.channel = c1\n\
         a1.sinks.k1.logEveryNEvents = 1000\n",
        spool = spool.display()
    );
    let output = validate_in(directory.path(), &text);
    let file = directory.path().join("agent.conf").display().to_string();
    assert_valid(&output, &file);
    let warnings = warning_lines(&output, &file);
    for (line, key) in [
        (8, "a1.sources.r1.maxBackoff"),
        (9, "a1.sources.r1.bufferMaxLines"),
        (14, "a1.sources.r2.keystore-type"),
        (15, "a1.sources.r2.exclude-protocols"),
        (16, "a1.sources.r2.QueuedThreadPool.maxThreads"),
        (17, "a1.sources.r2.HttpConfiguration.sendServerVersion"),
        (22, "a1.sources.r3.keystore-type"),
        (23, "a1.sources.r3.exclude-protocols"),
        (26, "a1.sinks.k1.logEveryNEvents"),
    ] {
        assert_one_line(&warnings, &format!("agent.conf:{line}: {key}: "), &[]);
    }
    assert!(
        !warnings
            .iter()
            .any(|line| line.contains("a1.sources.r2.ssl")),
        "ssl = false is what Millrace does: {warnings:?}"
    );
    assert!(
        !warnings
            .iter()
            .any(|line| line.contains("ServerConnector.idleTimeout")),
        "the http source acts on ServerConnector.idleTimeout, so it is no warning: {warnings:?}"
    );
    let summary = String::from_utf8_lossy(&output.stdout);
    assert!(
        summary.contains(&format!(", {} warning(s)", warnings.len())),
        "the summary counts the adapters' warnings too: {summary}"
    );
}

#[test]
fn tls_switched_on_is_refused_with_the_way_out() {
    let (output, file) = validate(
        "a1.channels = c1\n\
         a1.sources = r1 r2\n\
         a1.channels.c1.type = memory\n\
         a1.sources.r1.type = syslogtcp\n\
         a1.sources.r1.channels = c1\n\
         a1.sources.r1.port = 5140\n\
         a1.sources.r1.ssl = true\n\
         a1.sources.r1.keystore = /etc/flume/keystore.jks\n\
         a1.sources.r1.keystore-password = secret\n\
         a1.sources.r2.type = http\n\
         a1.sources.r2.channels = c1\n\
         a1.sources.r2.port = 5141\n\
         a1.sources.r2.ssl = true\n",
    );
    let errors = assert_invalid(&output, &file);
    for line in [7, 13] {
        let source = if line == 7 { "r1" } else { "r2" };
        assert_one_line(
            &errors,
            &format!("agent.conf:{line}: a1.sources.{source}.ssl:"),
            &[
                "TLS is not supported here; put a TLS proxy in front",
                "\"true\"",
            ],
        );
    }
    assert_eq!(errors.len(), 2, "{}", errors.join("\n"));
}

#[test]
fn spooldir_buffer_max_line_length_is_honoured_as_flume_does() {
    let directory = tempfile::tempdir().unwrap();
    std::fs::create_dir(directory.path().join("spool")).unwrap();
    let text = format!(
        "a1.channels = c1\n\
         a1.sources = r1\n\
         a1.channels.c1.type = memory\n\
         a1.sources.r1.type = spooldir\n\
         a1.sources.r1.channels = c1\n\
         a1.sources.r1.spoolDir = {}\n\
         a1.sources.r1.bufferMaxLineLength = 4096\n",
        directory.path().join("spool").display()
    );
    let output = validate_in(directory.path(), &text);
    let file = directory.path().join("agent.conf").display().to_string();
    assert_valid(&output, &file);
}

// 17.12 --------------------------------------------------------------------------------

#[test]
fn a_line_repeated_with_the_same_value_is_a_warning() {
    let (output, file) = validate(
        "a1.channels = c1\n\
         a1.channels = c1\n\
         a1.channels.c1.type = memory\n\
         a1.channels.c1.capacity = 1000\n\
         a1.channels.c1.capacity = 1000\n",
    );
    assert_valid(&output, &file);
    let warnings = warning_lines(&output, &file);
    assert_one_line(
        &warnings,
        "agent.conf:2: a1.channels: ",
        &["same value", "line 1"],
    );
    assert_one_line(
        &warnings,
        "agent.conf:5: a1.channels.c1.capacity: ",
        &["same value", "line 4"],
    );
}

#[test]
fn a_key_repeated_with_another_value_stays_an_error() {
    let (output, file) = validate(
        "a1.channels = c1\n\
         a1.channels.c1.type = memory\n\
         a1.channels.c1.capacity = 1000\n\
         a1.channels.c1.capacity = 2000\n",
    );
    let errors = assert_invalid(&output, &file);
    assert_one_line(
        &errors,
        "agent.conf:4: a1.channels.c1.capacity:",
        &["line 3", "\"1000\"", "\"2000\""],
    );
}

// 17.1 ---------------------------------------------------------------------------------

#[test]
fn a_source_batch_larger_than_its_channels_transactions_names_both_keys() {
    let (output, file) = validate(
        "a1.channels = c1 c2\n\
         a1.sources = r1\n\
         a1.channels.c1.type = memory\n\
         a1.channels.c1.capacity = 1000\n\
         a1.channels.c1.transactionCapacity = 10\n\
         a1.channels.c2.type = memory\n\
         a1.sources.r1.type = syslogtcp\n\
         a1.sources.r1.channels = c1 c2\n\
         a1.sources.r1.port = 5140\n\
         a1.sources.r1.batchSize = 50\n",
    );
    let errors = assert_invalid(&output, &file);
    assert_one_line(
        &errors,
        "agent.conf:10: a1.sources.r1.batchSize:",
        &["a1.channels.c1.transactionCapacity", "line 5", "10", "50"],
    );
    assert_eq!(errors.len(), 1, "c2 holds 100 per transaction: {errors:?}");
}

#[test]
fn a_default_batch_larger_than_the_channel_is_sized_down_not_refused() {
    let directory = tempfile::tempdir().unwrap();
    std::fs::create_dir(directory.path().join("spool")).unwrap();
    let text = format!(
        "a1.channels = c1\n\
         a1.sources = r1 r2\n\
         a1.channels.c1.type = memory\n\
         a1.channels.c1.capacity = 1000\n\
         a1.channels.c1.transactionCapacity = 10\n\
         a1.sources.r1.type = spooldir\n\
         a1.sources.r1.channels = c1\n\
         a1.sources.r1.spoolDir = {}\n\
         a1.sources.r2.type = syslogudp\n\
         a1.sources.r2.channels = c1\n\
         a1.sources.r2.port = 5140\n",
        directory.path().join("spool").display()
    );
    let output = validate_in(directory.path(), &text);
    let file = directory.path().join("agent.conf").display().to_string();
    assert_valid(&output, &file);
}

// 17.13 (the validate half) --------------------------------------------------------------

#[test]
fn a_source_on_channelds_own_ports_is_refused_naming_both_keys() {
    let (output, file) = validate(
        "a1.channels = c1\n\
         a1.sources = r1 r2\n\
         a1.server.bind = 127.0.0.1:41460\n\
         a1.server.http = 127.0.0.1:41461\n\
         a1.channels.c1.type = memory\n\
         a1.sources.r1.type = netcat\n\
         a1.sources.r1.channels = c1\n\
         a1.sources.r1.bind = 127.0.0.1\n\
         a1.sources.r1.port = 41460\n\
         a1.sources.r2.type = http\n\
         a1.sources.r2.channels = c1\n\
         a1.sources.r2.port = 41461\n",
    );
    let errors = assert_invalid(&output, &file);
    assert_one_line(
        &errors,
        "agent.conf:9: a1.sources.r1.port:",
        &["a1.server.bind", "line 3", "41460"],
    );
    assert_one_line(
        &errors,
        "agent.conf:12: a1.sources.r2.port:",
        &["a1.server.http", "line 4", "41461"],
    );
    assert_eq!(errors.len(), 2, "{}", errors.join("\n"));
}

#[test]
fn a_source_on_the_default_protocol_port_is_refused() {
    let (output, file) = validate(
        "a1.channels = c1\n\
         a1.sources = r1\n\
         a1.channels.c1.type = memory\n\
         a1.sources.r1.type = syslogtcp\n\
         a1.sources.r1.channels = c1\n\
         a1.sources.r1.port = 41450\n",
    );
    let errors = assert_invalid(&output, &file);
    assert_one_line(
        &errors,
        "agent.conf:6: a1.sources.r1.port:",
        &["server.bind", "127.0.0.1:41450"],
    );
}

#[test]
fn two_sources_on_one_port_are_refused_but_tcp_and_udp_may_share_it() {
    let (output, file) = validate(
        "a1.channels = c1\n\
         a1.sources = r1 r2 r3\n\
         a1.channels.c1.type = memory\n\
         a1.sources.r1.type = syslogtcp\n\
         a1.sources.r1.channels = c1\n\
         a1.sources.r1.port = 5140\n\
         a1.sources.r2.type = syslogudp\n\
         a1.sources.r2.channels = c1\n\
         a1.sources.r2.port = 5140\n\
         a1.sources.r3.type = netcat\n\
         a1.sources.r3.channels = c1\n\
         a1.sources.r3.bind = 0.0.0.0\n\
         a1.sources.r3.port = 5140\n",
    );
    let errors = assert_invalid(&output, &file);
    assert_one_line(
        &errors,
        "agent.conf:13: a1.sources.r3.port:",
        &["a1.sources.r1.port", "line 6", "5140"],
    );
    assert_eq!(errors.len(), 1, "{}", errors.join("\n"));
}

#[test]
fn missing_or_unreadable_key_files_are_named_with_their_keys() {
    let directory = tempfile::tempdir().unwrap();
    std::fs::write(directory.path().join("short.key"), b"not a key").unwrap();
    let missing = directory.path().join("missing.key");
    let short = directory.path().join("short.key");
    let text = format!(
        "a1.channels = c1\n\
         a1.channels.c1.type = file\n\
         a1.channels.c1.checkpointDir = {dir}/checkpoint\n\
         a1.channels.c1.dataDirs = {dir}/data\n\
         a1.channels.c1.encryption.activeKey = k1\n\
         a1.channels.c1.encryption.keyProvider.keys = k1 k2\n\
         a1.channels.c1.encryption.keyProvider.keys.k1.keyFile = {missing}\n\
         a1.channels.c1.encryption.keyProvider.keys.k2.keyFile = {short}\n",
        dir = directory.path().display(),
        missing = missing.display(),
        short = short.display(),
    );
    let output = validate_in(directory.path(), &text);
    let file = directory.path().join("agent.conf").display().to_string();
    let errors = assert_invalid(&output, &file);
    assert_one_line(
        &errors,
        "agent.conf:7: a1.channels.c1.encryption.keyProvider.keys.k1.keyFile:",
        &[&missing.display().to_string(), "No such file"],
    );
    assert_one_line(
        &errors,
        "agent.conf:8: a1.channels.c1.encryption.keyProvider.keys.k2.keyFile:",
        &[&short.display().to_string(), "9 bytes"],
    );
}

// channeld's start applies the same checks ---------------------------------------------

/// Starts channeld on `text` (agent a1) with `args`, which must make it refuse to start;
/// returns its exit code and stderr.
fn channeld_refusal(text: &str, args: &[&str]) -> (Option<i32>, String) {
    let directory = tempfile::tempdir().unwrap();
    std::fs::write(directory.path().join("agent.conf"), text).unwrap();
    let child = Command::new(&binaries().channeld)
        .current_dir(directory.path())
        .args(["-f", "agent.conf", "-n", AGENT])
        .args(args)
        .env("MILLRACE_AGENT_BIN", &binaries().channel_agent)
        .env_remove("MILLRACE_AUTH_TOKEN")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("channeld starts");
    let output = ChildGuard(Some(child)).wait_with_output(SERVER_START_TIMEOUT);
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn channeld_refuses_a_source_on_the_port_its_bind_flag_takes() {
    let port = free_port();
    let (code, stderr) = channeld_refusal(
        &format!(
            "a1.channels = c1\n\
             a1.sources = r1\n\
             a1.channels.c1.type = memory\n\
             a1.sources.r1.type = netcat\n\
             a1.sources.r1.channels = c1\n\
             a1.sources.r1.port = {port}\n"
        ),
        &[
            "--bind",
            &format!("127.0.0.1:{port}"),
            "--http",
            "127.0.0.1:0",
        ],
    );
    assert_eq!(code, Some(EXIT_CONFIG_ERROR), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "agent.conf:6: a1.sources.r1.port: expected a TCP port no other listener of agent \
             a1 uses, got {port} (on 127.0.0.1), where channeld's protocol listener (--bind \
             127.0.0.1:{port}) already listens"
        )),
        "{stderr}"
    );
}

#[test]
fn channeld_lists_source_problems_with_channel_problems_at_start() {
    let (code, stderr) = channeld_refusal(
        "a1.channels = c1\n\
         a1.sources = r1\n\
         a1.channels.c1.type = memory\n\
         a1.channels.c1.capasity = 10\n\
         a1.sources.r1.type = netcat\n\
         a1.sources.r1.channels = c1\n\
         a1.sources.r1.prot = 44444\n",
        &["--bind", "127.0.0.1:0", "--http", "127.0.0.1:0"],
    );
    assert_eq!(code, Some(EXIT_CONFIG_ERROR), "{stderr}");
    for expected in [
        "agent.conf:2: a1.sources.r1.port: expected a port number from 0 to 65535, but the key \
         is missing",
        "agent.conf:4: a1.channels.c1.capasity: unknown key",
        "agent.conf:7: a1.sources.r1.prot: unknown key",
    ] {
        assert!(
            stderr.contains(expected),
            "{expected:?} missing from:\n{stderr}"
        );
    }
}
