//! The files in `deploy/` against the real channeld: the systemd unit (`systemd-analyze
//! verify`, its open-file limit, the readiness protocol), and the Prometheus alert rules
//! and Grafana dashboard (every metric they name exists in `/metrics/prometheus`).

use std::collections::BTreeSet;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use millrace_e2e::{
    binaries, skip_without_tool, successful_lines, wait_until, Server, ServerSetup, AGENT,
};
use serde_json::Value;

/// Longest wait for a notification or for an adapter to report its counters.
const WAIT: Duration = Duration::from_secs(30);
/// The agent of the packaged configuration.
const PACKAGED_AGENT: &str = "channeld";
/// Where the packaged configuration keeps data.
const PACKAGED_DATA_DIR: &str = "/var/lib/millrace";

fn deploy_file(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the workspace")
        .join("deploy")
        .join(path)
}

fn read_deploy_file(path: &str) -> String {
    std::fs::read_to_string(deploy_file(path))
        .unwrap_or_else(|error| panic!("deploy/{path}: {error}"))
}

/// The value of `key=` in the unit (the last one, as systemd reads it).
fn unit_setting(unit: &str, key: &str) -> Option<String> {
    unit.lines()
        .rev()
        .find_map(|line| line.strip_prefix(&format!("{key}=")))
        .map(str::to_string)
}

#[test]
fn the_systemd_unit_passes_systemd_analyze_verify() {
    if Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_err()
    {
        skip_without_tool("verifying the unit needs systemd-analyze: apt-get install systemd");
        return;
    }
    let unit = read_deploy_file("systemd/channeld.service");
    // The unit runs /usr/bin/channeld, which exists once the package is installed: point
    // it at the binary under test instead, changing nothing else.
    let exec_start = unit_setting(&unit, "ExecStart").expect("ExecStart");
    let installed = "/usr/bin/channeld";
    assert!(exec_start.starts_with(installed), "{exec_start}");
    let checked = unit.replace(
        &format!("ExecStart={installed}"),
        &format!("ExecStart={}", binaries().channeld.display()),
    );
    let directory = tempfile::tempdir().expect("a temporary directory");
    let path = directory.path().join("channeld.service");
    std::fs::write(&path, checked).expect("write the unit");
    let output = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(&path)
        .output()
        .expect("systemd-analyze runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "systemd-analyze verify: {stderr}");
    // Unknown keys and bad values are warnings ("…, ignoring") with status 0.
    assert!(
        !stderr.contains("channeld.service"),
        "systemd-analyze warns about the unit: {stderr}"
    );
    for (key, expected) in [
        ("Type", "notify"),
        ("NoNewPrivileges", "yes"),
        ("ProtectSystem", "strict"),
        ("PrivateTmp", "yes"),
        ("StateDirectory", "millrace"),
        ("ReadWritePaths", PACKAGED_DATA_DIR),
    ] {
        assert_eq!(unit_setting(&unit, key).as_deref(), Some(expected), "{key}");
    }
    assert_eq!(
        unit_setting(&unit, "ExecReload"),
        None,
        "channeld has no reload"
    );
}

/// The packaged configuration with its data under `base` instead of /var/lib/millrace.
fn packaged_config_under(base: &Path) -> String {
    read_deploy_file("debian/millrace.conf").replace(PACKAGED_DATA_DIR, &base.display().to_string())
}

#[test]
fn channeld_serves_the_packaged_config_within_the_units_open_file_limit() {
    let unit = read_deploy_file("systemd/channeld.service");
    let limit: u64 = unit_setting(&unit, "LimitNOFILE")
        .expect("LimitNOFILE")
        .parse()
        .expect("a number");
    let hard = rustix::process::getrlimit(rustix::process::Resource::Nofile)
        .maximum
        .unwrap_or(u64::MAX);
    if hard < limit {
        // Not a missing tool: a sandbox whose hard limit the test cannot raise (raising it
        // needs CAP_SYS_RESOURCE). Skipped, with the reason, under CI too.
        println!(
            "skipped: starting channeld with LimitNOFILE={limit} needs a hard open-file limit of \
             at least that; this process has {hard} (ulimit -Hn) and may not raise it"
        );
        return;
    }
    let data = tempfile::tempdir().expect("a data directory");
    let server = Server::start(
        ServerSetup::with_config(packaged_config_under(data.path()))
            .agent(PACKAGED_AGENT)
            .open_file_limit(limit, limit),
    );
    let (status, health) = server.http_json("/health");
    assert_eq!(status, 200, "{health}");
    assert_eq!(health["channels"]["default"]["state"], "open", "{health}");
    successful_lines(&server.channelctl("put", &["--channel", "default"], b"packaged\n"));
    assert!(data.path().join("default/data").is_dir());
}

#[test]
fn channeld_tells_the_notify_socket_it_is_ready_and_then_that_it_stops() {
    let directory = tempfile::tempdir().expect("a temporary directory");
    let socket_path = directory.path().join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).expect("bind the notify socket");
    socket.set_read_timeout(Some(WAIT)).expect("a read timeout");
    let mut server = Server::start(
        ServerSetup::embedded_default().env("NOTIFY_SOCKET", socket_path.display().to_string()),
    );
    let mut buffer = [0u8; 4096];
    let received = |buffer: &mut [u8]| {
        let length = socket.recv(buffer).expect("a notification within the wait");
        String::from_utf8_lossy(&buffer[..length]).to_string()
    };
    let ready = received(&mut buffer);
    assert!(
        ready.lines().any(|line| line == "READY=1"),
        "first notification: {ready:?}"
    );
    assert!(
        ready.contains(&format!(
            "STATUS=serving 1 channel(s) on {}",
            server.protocol_address()
        )),
        "{ready:?}"
    );
    // Ready means serving: a put is accepted right away.
    successful_lines(&server.channelctl("put", &[], b"ready\n"));
    server.send_sigterm();
    let stopping = received(&mut buffer);
    assert!(
        stopping.lines().any(|line| line == "STOPPING=1"),
        "second notification: {stopping:?}"
    );
    assert!(server
        .wait_for_exit(WAIT)
        .is_some_and(|status| status.success()));
}

/// Every `millrace_*` name in `text` (PromQL expressions).
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = text;
    while let Some(start) = rest.find("millrace_") {
        let preceded_by_name_character = rest[..start]
            .chars()
            .last()
            .is_some_and(|character| character.is_ascii_alphanumeric() || character == '_');
        let name: String = rest[start..]
            .chars()
            .take_while(|character| character.is_ascii_alphanumeric() || *character == '_')
            .collect();
        if !preceded_by_name_character {
            names.insert(name.clone());
        }
        rest = &rest[start + name.len()..];
    }
    names
}

/// The sample names of an OpenMetrics text (`name{labels} value` or `name value`).
fn exposed_names(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter(|line| !line.starts_with('#') && !line.is_empty())
        .filter_map(|line| line.split(['{', ' ']).next())
        .map(str::to_string)
        .collect()
}

/// The expressions of the alert rules, after checking each rule's shape.
fn alert_expressions() -> Vec<(String, String)> {
    let rules: Value = serde_yaml_ng::from_str(&read_deploy_file("prometheus/millrace-alerts.yml"))
        .expect("the alert rules are YAML");
    let mut expressions = Vec::new();
    for group in rules["groups"].as_array().expect("groups") {
        assert!(group["name"].is_string(), "{group}");
        for rule in group["rules"].as_array().expect("rules") {
            let alert = rule["alert"].as_str().expect("an alert name").to_string();
            assert!(
                rule["labels"]["severity"]
                    .as_str()
                    .is_some_and(|severity| ["warning", "critical"].contains(&severity)),
                "{alert}: severity"
            );
            assert!(
                rule["annotations"]["summary"].is_string(),
                "{alert}: summary"
            );
            expressions.push((alert, rule["expr"].as_str().expect("an expr").to_string()));
        }
    }
    expressions
}

/// Every expression of the dashboard's panels and variables, after checking its shape.
fn dashboard_expressions() -> Vec<(String, String)> {
    let dashboard: Value = serde_json::from_str(&read_deploy_file("grafana/millrace.json"))
        .expect("the dashboard is JSON");
    assert_eq!(dashboard["uid"], "millrace-channeld");
    let mut expressions = Vec::new();
    for panel in dashboard["panels"].as_array().expect("panels") {
        let title = panel["title"].as_str().expect("a title").to_string();
        for target in panel["targets"].as_array().into_iter().flatten() {
            assert_eq!(target["datasource"]["uid"], "${datasource}", "{title}");
            expressions.push((
                title.clone(),
                target["expr"].as_str().expect("expr").to_string(),
            ));
        }
    }
    for variable in dashboard["templating"]["list"]
        .as_array()
        .expect("variables")
    {
        if let Some(query) = variable["query"]["query"].as_str() {
            expressions.push((format!("${}", variable["name"]), query.to_string()));
        }
    }
    assert!(expressions.len() >= 10, "{expressions:?}");
    expressions
}

#[test]
fn every_metric_the_alerts_and_the_dashboard_name_exists_in_prometheus_text() {
    // A file channel, a memory channel, a source and a sink: every family appears.
    let config = format!(
        "{AGENT}.channels = c1 m1\n\
         {AGENT}.channels.c1.type = file\n\
         {AGENT}.channels.c1.checkpointDir = c1/checkpoint\n\
         {AGENT}.channels.c1.dataDirs = c1/data\n\
         {AGENT}.channels.c1.minimumRequiredSpace = 1048576\n\
         {AGENT}.channels.m1.type = memory\n\
         {AGENT}.sources = r1\n\
         {AGENT}.sources.r1.type = netcat\n\
         {AGENT}.sources.r1.channels = m1\n\
         {AGENT}.sources.r1.bind = 127.0.0.1\n\
         {AGENT}.sources.r1.port = 0\n\
         {AGENT}.sinks = k1\n\
         {AGENT}.sinks.k1.type = null\n\
         {AGENT}.sinks.k1.channel = c1\n"
    );
    let server = Server::start(ServerSetup::with_config(config));
    successful_lines(&server.channelctl("put", &["--channel", "c1"], b"a\nb\n"));
    let mut exposed = BTreeSet::new();
    let reported = wait_until(WAIT, || {
        let response = server.http_get("/metrics/prometheus");
        assert_eq!(response.status, 200);
        assert!(response.body.ends_with("# EOF\n"), "one EOF, at the end");
        assert_eq!(response.body.matches("# EOF").count(), 1);
        exposed = exposed_names(&response.body);
        response.body.contains("type=\"SINK\"") && response.body.contains("type=\"SOURCE\"")
    });
    assert!(
        reported,
        "the adapters never reported counters: {exposed:?}"
    );
    let mut missing = Vec::new();
    for (origin, expression) in alert_expressions()
        .into_iter()
        .chain(dashboard_expressions())
    {
        for name in metric_names(&expression) {
            if !exposed.contains(&name) {
                missing.push(format!("{name} (in {origin})"));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "named but not exposed: {missing:?}\nexposed: {exposed:?}"
    );
    // The families the alerts need beyond Flume's counters carry their figures.
    let text = server.http_get("/metrics/prometheus").body;
    assert!(
        text.contains("millrace_data_dir_minimum_required_space_bytes{channel=\"c1\",dir=\"c1/data\"} 1048576"),
        "{text}"
    );
    assert!(
        text.contains("millrace_adapter_restarts_total{component=\"r1\"} 0"),
        "{text}"
    );
    assert!(
        text.contains("millrace_channel_read_only{channel=\"c1\",type=\"file\"} 0"),
        "{text}"
    );
    assert!(
        text.contains(
            "millrace_channel_commit_duration_seconds_count{channel=\"c1\",type=\"file\"}"
        ),
        "{text}"
    );
}

#[test]
fn metric_names_are_found_in_expressions() {
    let names = metric_names(
        "histogram_quantile(0.99, rate(millrace_a_bucket{x=\"millrace_label\"}[5m])) / millrace_b_total and not_millrace_c",
    );
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    assert_eq!(
        names,
        ["millrace_a_bucket", "millrace_b_total", "millrace_label"]
    );
}
