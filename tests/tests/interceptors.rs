//! Interceptors through the real binaries: channeld starts channel-agent for a spooldir
//! source whose interceptors change, drop, route and dead-letter events, and the
//! channels hold what Flume's documentation (and docs/adapters.md for the script
//! interceptor) says they should.

use std::path::Path;
use std::time::Duration;

use millrace_client::Event;
use millrace_e2e::{bodies_of, channelctl, wait_until, Server, ServerSetup, AGENT};

/// Longest wait for events to cross a flow.
const FLOW_TIMEOUT: Duration = Duration::from_secs(60);
/// sysexits.h `EX_CONFIG`, validate's exit code for an invalid file.
const EXIT_CONFIG_ERROR: i32 = 78;

/// A memory channel `name` for agent [`AGENT`].
fn memory_channel(name: &str) -> String {
    format!("{AGENT}.channels.{name}.type = memory\n{AGENT}.channels.{name}.capacity = 10000\n")
}

/// Waits until `path` was completed by the spooldir source (renamed `.COMPLETED`).
fn wait_for_completion(server: &Server, path: &Path) {
    let completed_path = format!("{}.COMPLETED", path.display());
    let completed = wait_until(FLOW_TIMEOUT, || Path::new(&completed_path).exists());
    assert!(
        completed,
        "{} was not completed:\n{}",
        path.display(),
        server.stderr()
    );
}

fn drain(server: &Server, channel: &str) -> Vec<Event> {
    server.drain_events(channel, 500)
}

#[test]
fn flumes_documented_interceptor_examples_give_flumes_results_through_channel_agent() {
    let spool = tempfile::tempdir().unwrap();
    // The User Guide's examples, chained on one source, keys exactly as Flume's
    // documentation writes them (`\\d` in the file is `\d` in the regex).
    let config = format!(
        "{AGENT}.channels = c1\n{}\
         {AGENT}.sources = r1\n\
         {AGENT}.sources.r1.type = spooldir\n\
         {AGENT}.sources.r1.spoolDir = {}\n\
         {AGENT}.sources.r1.channels = c1\n\
         {AGENT}.sources.r1.interceptors = filter search-replace i1 uuid strip\n\
         {AGENT}.sources.r1.interceptors.filter.type = regex_filter\n\
         {AGENT}.sources.r1.interceptors.filter.regex = ^DEBUG\n\
         {AGENT}.sources.r1.interceptors.filter.excludeEvents = true\n\
         {AGENT}.sources.r1.interceptors.search-replace.type = search_replace\n\
         {AGENT}.sources.r1.interceptors.search-replace.searchPattern = The quick brown ([a-z]+) jumped over the lazy ([a-z]+)\n\
         {AGENT}.sources.r1.interceptors.search-replace.replaceString = The hungry $2 ate the careless $1\n\
         {AGENT}.sources.r1.interceptors.i1.type = regex_extractor\n\
         {AGENT}.sources.r1.interceptors.i1.regex = ^(?:\\\\n)?(\\\\d\\\\d\\\\d\\\\d-\\\\d\\\\d-\\\\d\\\\d\\\\s\\\\d\\\\d:\\\\d\\\\d)\n\
         {AGENT}.sources.r1.interceptors.i1.serializers = s1\n\
         {AGENT}.sources.r1.interceptors.i1.serializers.s1.type = org.apache.flume.interceptor.RegexExtractorInterceptorMillisSerializer\n\
         {AGENT}.sources.r1.interceptors.i1.serializers.s1.name = timestamp\n\
         {AGENT}.sources.r1.interceptors.i1.serializers.s1.pattern = yyyy-MM-dd HH:mm\n\
         {AGENT}.sources.r1.interceptors.uuid.type = org.apache.flume.sink.solr.morphline.UUIDInterceptor$Builder\n\
         {AGENT}.sources.r1.interceptors.uuid.headerName = id\n\
         {AGENT}.sources.r1.interceptors.uuid.prefix = r1-\n\
         {AGENT}.sources.r1.interceptors.strip.type = remove_header\n\
         {AGENT}.sources.r1.interceptors.strip.fromList = file, basename\n",
        memory_channel("c1"),
        spool.path().display()
    );
    // The Millis example's documented result was computed in Pacific time (the JVM's
    // zone); channel-agent reads patterns in its own zone, which it inherits.
    let server = Server::start(ServerSetup::with_config(config).env("TZ", "America/Los_Angeles"));
    let input = spool.path().join("app.log");
    std::fs::write(
        &input,
        "2012-10-18 18:47:57,614 some log line\n\
         DEBUG dropped by the filter\n\
         The quick brown fox jumped over the lazy dog\n",
    )
    .unwrap();
    wait_for_completion(&server, &input);
    let events = drain(&server, "c1");
    assert_eq!(
        bodies_of(&events),
        [
            "2012-10-18 18:47:57,614 some log line",
            "The hungry dog ate the careless fox"
        ]
    );
    assert_eq!(events[0].header("timestamp"), Some("1350611220000"));
    assert_eq!(events[1].header("timestamp"), None);
    for event in &events {
        let id = event.header("id").expect("a uuid header");
        assert!(id.starts_with("r1-") && id.len() == 3 + 36, "{id}");
    }
    assert_ne!(events[0].header("id"), events[1].header("id"));
}

/// The four jobs custom Java interceptors do (docs/adapters.md), plus two runaway
/// inputs, in one script.
const SCRIPT: &str = r#"
-- Parse a JSON body; drop debug lines; add a field; route by a header.
function intercept(event)
  if event.body == "loop" then
    while true do end
  end
  if event.body == "grow" then
    local held = {}
    local chunk = string.rep("x", 1024 * 1024)
    while true do held[#held + 1] = chunk .. #held end
  end
  local doc = json.decode(event.body)
  if doc.level == "debug" then
    return nil
  end
  event.headers.level = doc.level
  event.headers.env = "prod"
  if doc.level == "error" then
    event.headers.route = "alerts"
  end
  return event
end
"#;

#[test]
fn a_script_interceptor_does_the_four_jobs_and_runaway_events_go_to_the_dead_letter_channel() {
    let spool = tempfile::tempdir().unwrap();
    let scripts = tempfile::tempdir().unwrap();
    let script_path = scripts.path().join("jobs.lua");
    std::fs::write(&script_path, SCRIPT).unwrap();
    let config = format!(
        "{AGENT}.channels = c1 alerts dead\n{}{}{}\
         {AGENT}.sources = r1\n\
         {AGENT}.sources.r1.type = spooldir\n\
         {AGENT}.sources.r1.spoolDir = {}\n\
         {AGENT}.sources.r1.batchSize = 3\n\
         {AGENT}.sources.r1.channels = c1 alerts\n\
         {AGENT}.sources.r1.selector.type = multiplexing\n\
         {AGENT}.sources.r1.selector.header = route\n\
         {AGENT}.sources.r1.selector.mapping.alerts = alerts\n\
         {AGENT}.sources.r1.selector.default = c1\n\
         {AGENT}.sources.r1.deadLetter.channel = dead\n\
         {AGENT}.sources.r1.interceptors = jobs\n\
         {AGENT}.sources.r1.interceptors.jobs.type = lua\n\
         {AGENT}.sources.r1.interceptors.jobs.file = {}\n\
         {AGENT}.sources.r1.interceptors.jobs.timeLimitMs = 200\n\
         {AGENT}.sources.r1.interceptors.jobs.memoryLimitBytes = 16777216\n",
        memory_channel("c1"),
        memory_channel("alerts"),
        memory_channel("dead"),
        spool.path().display(),
        script_path.display()
    );
    let server = Server::start(ServerSetup::with_config(config));
    let first = spool.path().join("first.log");
    std::fs::write(
        &first,
        "{\"level\":\"info\",\"msg\":\"a\"}\n\
         {\"level\":\"debug\",\"msg\":\"b\"}\n\
         loop\n\
         {\"level\":\"error\",\"msg\":\"c\"}\n\
         grow\n\
         not json\n\
         {\"level\":\"warn\",\"msg\":\"d\"}\n",
    )
    .unwrap();
    wait_for_completion(&server, &first);
    let agent_pids = server.adapter_pids("r1");
    assert_eq!(agent_pids.len(), 1);

    let kept = drain(&server, "c1");
    assert_eq!(
        bodies_of(&kept),
        [
            "{\"level\":\"info\",\"msg\":\"a\"}",
            "{\"level\":\"warn\",\"msg\":\"d\"}"
        ]
    );
    assert!(kept.iter().all(|event| event.header("env") == Some("prod")));
    assert_eq!(kept[0].header("level"), Some("info"));
    let alerts = drain(&server, "alerts");
    assert_eq!(bodies_of(&alerts), ["{\"level\":\"error\",\"msg\":\"c\"}"]);
    let dead = drain(&server, "dead");
    assert_eq!(bodies_of(&dead), ["loop", "grow", "not json"]);
    for event in &dead {
        assert_eq!(event.header("millrace.deadLetter.source"), Some("r1"));
        assert_eq!(
            event.header("millrace.deadLetter.interceptor"),
            Some("jobs")
        );
    }
    let reason = |index: usize| dead[index].header("millrace.deadLetter.reason").unwrap();
    assert!(reason(0).contains("time limit of 200 ms"), "{}", reason(0));
    assert!(reason(1).contains("memory"), "{}", reason(1));
    assert!(reason(2).contains("json.decode"), "{}", reason(2));

    // The same agent process goes on with the next file.
    let second = spool.path().join("second.log");
    std::fs::write(&second, "{\"level\":\"info\",\"msg\":\"after\"}\n").unwrap();
    wait_for_completion(&server, &second);
    assert_eq!(
        bodies_of(&drain(&server, "c1")),
        ["{\"level\":\"info\",\"msg\":\"after\"}"]
    );
    assert_eq!(
        server.adapter_pids("r1"),
        agent_pids,
        "the agent was not restarted"
    );
}

#[test]
fn validate_names_the_line_of_a_script_error_and_java_only_regex_syntax() {
    let directory = tempfile::tempdir().unwrap();
    let file = directory.path().join("agent.conf");
    std::fs::write(
        &file,
        format!(
            "{AGENT}.channels = c1\n{}\
             {AGENT}.sources = r1\n\
             {AGENT}.sources.r1.type = netcat\n\
             {AGENT}.sources.r1.port = 0\n\
             {AGENT}.sources.r1.channels = c1\n\
             {AGENT}.sources.r1.interceptors = s f\n\
             {AGENT}.sources.r1.interceptors.s.type = script\n\
             {AGENT}.sources.r1.interceptors.s.script = function intercept(e)\\n  return e +\\nend\n\
             {AGENT}.sources.r1.interceptors.f.type = regex_filter\n\
             {AGENT}.sources.r1.interceptors.f.regex = (?<=id=)\\\\d+\n",
            memory_channel("c1")
        ),
    )
    .unwrap();
    let output = channelctl(
        &["validate", "-f", file.to_str().unwrap(), "-n", AGENT],
        b"",
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(EXIT_CONFIG_ERROR), "{stderr}");
    assert!(
        stderr.contains("a1.sources.r1.interceptors.s.script")
            && stderr.contains("interceptors.s.script:3:"),
        "{stderr}"
    );
    assert!(
        stderr.contains("a1.sources.r1.interceptors.f.regex") && stderr.contains("lookbehind"),
        "{stderr}"
    );
}
