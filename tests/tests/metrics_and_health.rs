//! `/metrics`, `/metrics/prometheus` and `/health` of a real channeld.

use std::time::Duration;

use millrace_e2e::{
    file_channels_config, successful_lines, wait_until, Server, ServerSetup, AGENT,
};
use serde_json::Value;

/// Longest wait for a supervised adapter to fail (and be restarted) twice: restarts wait
/// 0.5 s, then 1 s, so this leaves a loaded machine plenty of room.
const ADAPTER_FAILURE_TIMEOUT: Duration = Duration::from_secs(60);

fn server_with_c1() -> Server {
    let extra = format!(
        "{AGENT}.channels.c1.capacity = 100\n{AGENT}.channels.c1.transactionCapacity = 100\n"
    );
    let server = Server::start(ServerSetup::with_config(file_channels_config(
        &["c1"],
        &extra,
    )));
    successful_lines(&server.channelctl("put", &["--channel", "c1"], b"a\nb\nc\n"));
    successful_lines(&server.channelctl("take", &["--channel", "c1", "--max", "1"], b""));
    server
}

#[test]
fn metrics_json_has_flume_attribute_names_and_string_values() {
    let server = server_with_c1();
    let response = server.http_get("/metrics");
    assert_eq!(response.status, 200);
    assert_eq!(
        response.header("content-type"),
        Some("application/json;charset=utf-8")
    );
    let metrics: Value = serde_json::from_str(&response.body).unwrap();
    let channel = &metrics["CHANNEL.c1"];
    let attribute = |name: &str| {
        channel[name]
            .as_str()
            .unwrap_or_else(|| panic!("{name} is not a string in {channel}"))
            .to_string()
    };
    assert_eq!(attribute("ChannelSize"), "2");
    assert_eq!(attribute("ChannelCapacity"), "100");
    assert_eq!(attribute("ChannelFillPercentage"), "2.0");
    assert_eq!(attribute("EventPutAttemptCount"), "3");
    assert_eq!(attribute("EventPutSuccessCount"), "3");
    assert_eq!(attribute("EventTakeSuccessCount"), "1");
    assert!(attribute("EventTakeAttemptCount").parse::<u64>().unwrap() >= 1);
    assert_eq!(attribute("Type"), "CHANNEL");
    assert_eq!(attribute("StopTime"), "0");
    assert!(attribute("StartTime").parse::<u64>().unwrap() > 0);
    assert_eq!(attribute("Open"), "true");
    assert_eq!(attribute("Closed"), "0");
    assert_eq!(attribute("Unhealthy"), "0");
    for counter in [
        "EventPutErrorCount",
        "EventTakeErrorCount",
        "CheckpointWriteErrorCount",
        "CheckpointBackupWriteErrorCount",
    ] {
        assert_eq!(attribute(counter), "0", "{counter}");
    }
    let data_dir = &metrics["DATADIR.c1.0"];
    assert_eq!(data_dir["Path"], "c1/data");
    assert!(
        data_dir["BytesWritten"]
            .as_str()
            .unwrap()
            .parse::<u64>()
            .unwrap()
            > 0
    );
    assert!(
        data_dir["SyncCount"]
            .as_str()
            .unwrap()
            .parse::<u64>()
            .unwrap()
            >= 2
    );
}

#[test]
fn prometheus_metrics_carry_channel_counters_and_data_dir_figures() {
    let server = server_with_c1();
    let response = server.http_get("/metrics/prometheus");
    assert_eq!(response.status, 200);
    let text = response.body;
    let value = |series: &str| -> f64 {
        text.lines()
            .find_map(|line| line.strip_prefix(series))
            .and_then(|rest| rest.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {series} in\n{text}"))
    };
    assert_eq!(
        value(r#"millrace_channel_size{channel="c1",type="file"}"#),
        2.0
    );
    assert_eq!(
        value(r#"millrace_channel_capacity{channel="c1",type="file"}"#),
        100.0
    );
    assert_eq!(
        value(r#"millrace_channel_event_put_success_total{channel="c1",type="file"}"#),
        3.0
    );
    assert_eq!(
        value(r#"millrace_channel_event_take_success_total{channel="c1",type="file"}"#),
        1.0
    );
    assert_eq!(
        value(r#"millrace_channel_open{channel="c1",type="file"}"#),
        1.0
    );
    assert!(value(r#"millrace_data_dir_written_bytes_total{channel="c1",dir="c1/data"}"#) > 0.0);
    assert!(value(r#"millrace_data_dir_syncs_total{channel="c1",dir="c1/data"}"#) >= 2.0);
    // Present; its value may round to zero on a fast (tmpfs) disk.
    assert!(
        value(r#"millrace_data_dir_sync_duration_seconds_total{channel="c1",dir="c1/data"}"#)
            >= 0.0
    );
    assert!(text.trim_end().ends_with("# EOF"));
}

#[test]
fn health_is_200_when_every_channel_is_open_and_reports_recovery() {
    let server = Server::start(ServerSetup::with_config(file_channels_config(
        &["c1", "c2"],
        "",
    )));
    let (status, health) = server.http_json("/health");
    assert_eq!(status, 200, "{health}");
    assert_eq!(health["status"], "ok");
    assert_eq!(health["reasons"], Value::Array(vec![]));
    for channel in ["c1", "c2"] {
        let report = &health["channels"][channel];
        assert_eq!(report["state"], "open");
        assert_eq!(report["type"], "file");
        assert_eq!(report["recovery"]["records_replayed"], 0);
        assert!(report["recovery"]["path"].is_string());
    }
}

#[test]
fn health_is_503_naming_a_channel_that_could_not_open_while_the_others_serve() {
    // c2's data directory is a regular file, so c2 cannot open.
    let config = format!(
        "{AGENT}.channels = c1 c2\n\
         {AGENT}.channels.c1.type = file\n\
         {AGENT}.channels.c1.checkpointDir = c1/checkpoint\n\
         {AGENT}.channels.c1.dataDirs = c1/data\n\
         {AGENT}.channels.c2.type = file\n\
         {AGENT}.channels.c2.checkpointDir = c2-checkpoint\n\
         {AGENT}.channels.c2.dataDirs = not-a-directory\n"
    );
    let server = Server::start(ServerSetup::with_config(config).file("not-a-directory", "blocker"));
    let (status, health) = server.http_json("/health");
    assert_eq!(status, 503, "{health}");
    assert_eq!(health["status"], "unavailable");
    assert_eq!(health["channels"]["c1"]["state"], "open");
    assert_eq!(health["channels"]["c2"]["state"], "unhealthy");
    let reason = health["channels"]["c2"]["reason"].as_str().unwrap();
    assert!(reason.contains("not-a-directory"), "{reason}");
    let reasons = health["reasons"].as_array().unwrap();
    assert_eq!(reasons.len(), 1);
    assert!(reasons[0]
        .as_str()
        .unwrap()
        .starts_with("channel 'c2' is unhealthy"));

    let (_, metrics) = server.http_json("/metrics");
    assert_eq!(metrics["CHANNEL.c2"]["Unhealthy"], "1");
    assert_eq!(metrics["CHANNEL.c2"]["Open"], "false");

    let refused = server.channelctl("put", &["--channel", "c2"], b"x\n");
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("CHANNEL_UNHEALTHY"));
    let accepted = server.channelctl("put", &["--channel", "c1"], b"x\n");
    assert_eq!(successful_lines(&accepted), ["committed 1"]);
}

/// A memory channel c1 fed by netcat source r1 on 127.0.0.1:`port`.
fn netcat_source_on(port: u16) -> String {
    format!(
        "{AGENT}.channels = c1\n\
         {AGENT}.sources = r1\n\
         {AGENT}.channels.c1.type = memory\n\
         {AGENT}.sources.r1.type = netcat\n\
         {AGENT}.sources.r1.channels = c1\n\
         {AGENT}.sources.r1.bind = 127.0.0.1\n\
         {AGENT}.sources.r1.port = {port}\n"
    )
}

#[test]
fn a_source_that_cannot_listen_leaves_health_200_but_degraded_naming_it() {
    // Another program holds the port, which no check before the start can know.
    let holder = std::net::TcpListener::bind("127.0.0.1:0").expect("hold a port");
    let port = holder.local_addr().expect("the held port").port();
    let server = Server::start(ServerSetup::with_config(netcat_source_on(port)));
    let mut last = (0, Value::Null);
    let failed_twice = wait_until(ADAPTER_FAILURE_TIMEOUT, || {
        last = server.http_json("/health");
        last.1["adapters"]["r1"]["restarts"].as_u64() >= Some(2)
    });
    let (status, health) = last;
    assert!(failed_twice, "{health}");
    assert_eq!(status, 200, "the channels serve: {health}");
    assert_eq!(health["status"], "degraded", "{health}");
    assert_eq!(health["channels"]["c1"]["state"], "open", "{health}");
    let adapter = &health["adapters"]["r1"];
    assert_eq!(adapter["state"], "failing", "{health}");
    let error = adapter["last_error"].as_str().expect("a last error");
    assert!(
        error.contains(&format!("cannot listen on 127.0.0.1:{port}")) && error.contains("in use"),
        "{error}"
    );
    assert!(
        adapter["last_failure_unix_ms"].as_u64().is_some(),
        "{health}"
    );
    let reasons: Vec<&str> = health["reasons"]
        .as_array()
        .expect("reasons")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(reasons.len(), 1, "{health}");
    assert!(
        reasons[0].starts_with("adapter 'r1' is failing (restarted ") && reasons[0].contains(error),
        "{reasons:?}"
    );
    let put = server.channelctl("put", &["--channel", "c1"], b"still served\n");
    assert_eq!(successful_lines(&put), ["committed 1"]);
    drop(holder);
}

#[test]
fn a_healthy_source_is_listed_as_running_with_no_restarts() {
    let server = Server::start(ServerSetup::with_config(netcat_source_on(0)));
    let (status, health) = server.http_json("/health");
    assert_eq!(status, 200, "{health}");
    assert_eq!(health["status"], "ok", "{health}");
    assert_eq!(
        health["adapters"]["r1"],
        serde_json::json!({
            "state": "running",
            "restarts": 0,
            "last_error": null,
            "last_failure_unix_ms": null,
        })
    );
}
