//! Reading the keys of the `exec`, `syslogtcp`, `syslogudp` and `http` sources from a
//! Flume agent configuration: Flume's defaults, and errors naming file, line and key.

use std::path::Path;
use std::time::Duration;

use millrace_adapters::plan::{plan_agent, ComponentPlan};
use millrace_adapters::sources::exec::ExecSettings;
use millrace_adapters::sources::http::{HttpLimits, HttpSettings};
use millrace_adapters::sources::syslog::{KeepFields, KeptFields, SyslogSettings};
use millrace_adapters::sources::{ListenerLimits, SourceKind};
use millrace_config::parse_agent_config;

const FILE: &str = "agent.conf";

/// The configuration of one source `r1` on memory channel `c1`, with `keys` (each
/// `key = value` without the `a1.sources.r1.` prefix).
fn config_with_source(source_type: &str, keys: &[&str]) -> String {
    let mut text = format!(
        "a1.channels = c1\n\
         a1.channels.c1.type = memory\n\
         a1.sources = r1\n\
         a1.sources.r1.channels = c1\n\
         a1.sources.r1.type = {source_type}\n"
    );
    for key in keys {
        text.push_str(&format!("a1.sources.r1.{key}\n"));
    }
    text
}

fn planned_source(source_type: &str, keys: &[&str]) -> Result<SourceKind, Vec<String>> {
    let text = config_with_source(source_type, keys);
    let config = parse_agent_config(&text, FILE, "a1", Path::new("data"))
        .unwrap_or_else(|errors| panic!("the channel part is valid: {errors:?}"));
    match plan_agent(&config, FILE).into_result() {
        Ok(plans) => match plans.into_iter().next() {
            Some(ComponentPlan::Source(source)) => Ok(source.kind),
            other => panic!("expected one source, got {other:?}"),
        },
        Err(errors) => Err(errors.errors.iter().map(ToString::to_string).collect()),
    }
}

#[test]
fn exec_takes_flumes_defaults_and_accepts_its_class_name() {
    let kind = planned_source(
        "org.apache.flume.source.ExecSource",
        &["command = tail -F /var/log/messages"],
    )
    .unwrap();
    let SourceKind::Exec(settings) = kind else {
        panic!("an exec source, got {kind:?}");
    };
    assert_eq!(
        settings,
        ExecSettings {
            command: "tail -F /var/log/messages".into(),
            shell: None,
            restart: false,
            restart_throttle: Duration::from_millis(10_000),
            log_stderr: false,
            batch_size: 20,
            batch_timeout: Duration::from_millis(3_000),
        }
    );
}

#[test]
fn exec_reads_every_key_it_knows() {
    let kind = planned_source(
        "exec",
        &[
            "command = for i in 1 2; do echo $i; done",
            "shell = /bin/bash -c",
            "restart = true",
            "restartThrottle = 500",
            "logStdErr = true",
            "batchSize = 7",
            "batchTimeout = 250",
            "charset = UTF-8",
        ],
    )
    .unwrap();
    assert_eq!(
        kind_as_exec(kind),
        ExecSettings {
            command: "for i in 1 2; do echo $i; done".into(),
            shell: Some("/bin/bash -c".into()),
            restart: true,
            restart_throttle: Duration::from_millis(500),
            log_stderr: true,
            batch_size: 7,
            batch_timeout: Duration::from_millis(250),
        }
    );
}

fn kind_as_exec(kind: SourceKind) -> ExecSettings {
    match kind {
        SourceKind::Exec(settings) => settings,
        other => panic!("an exec source, got {other:?}"),
    }
}

#[test]
fn exec_without_a_command_names_the_missing_key() {
    let errors = planned_source("exec", &["restart = yes"]).unwrap_err();
    assert_eq!(
        errors,
        [
            "agent.conf:3: a1.sources.r1.command: expected the command to run, but the key is missing",
            "agent.conf:6: a1.sources.r1.restart: expected true or false, got \"yes\"",
        ]
    );
}

#[test]
fn syslog_sources_listen_everywhere_by_default_with_flumes_event_sizes() {
    let tcp = planned_source("syslogtcp", &["port = 5140"]).unwrap();
    let expected = SyslogSettings {
        host: "0.0.0.0".into(),
        port: 5140,
        event_size_bytes: 2500,
        keep_fields: KeepFields::None,
        client_ip_header: None,
        client_hostname_header: None,
        batch_size: 100,
        listener: ListenerLimits {
            max_connections: 1000,
            idle_timeout: Some(Duration::from_millis(300_000)),
        },
    };
    assert!(matches!(&tcp, SourceKind::SyslogTcp(settings) if *settings == expected));
    let udp = planned_source("org.apache.flume.source.SyslogUDPSource", &["port = 5140"]).unwrap();
    let expected_udp = SyslogSettings {
        event_size_bytes: 65_536,
        ..expected
    };
    assert!(matches!(&udp, SourceKind::SyslogUdp(settings) if *settings == expected_udp));
}

#[test]
fn syslog_reads_keep_fields_and_client_headers() {
    let kind = planned_source(
        "syslogtcp",
        &[
            "host = 127.0.0.1",
            "port = 5140",
            "eventSize = 4096",
            "keepFields = timestamp hostname",
            "clientIPHeader = client_ip",
            "clientHostnameHeader = client_host",
            "batchSize = 10",
            "maxConnections = 50",
            "idleTimeout = 0",
        ],
    )
    .unwrap();
    let SourceKind::SyslogTcp(settings) = kind else {
        panic!("a syslogtcp source, got {kind:?}");
    };
    assert_eq!(
        settings,
        SyslogSettings {
            host: "127.0.0.1".into(),
            port: 5140,
            event_size_bytes: 4096,
            keep_fields: KeepFields::Some(KeptFields {
                timestamp: true,
                hostname: true,
                ..KeptFields::default()
            }),
            client_ip_header: Some("client_ip".into()),
            client_hostname_header: Some("client_host".into()),
            batch_size: 10,
            listener: ListenerLimits {
                max_connections: 50,
                idle_timeout: None,
            },
        }
    );
}

#[test]
fn syslog_names_a_keep_fields_word_it_does_not_know_and_a_missing_port() {
    let errors = planned_source("syslogudp", &["keepFields = hostname facility"]).unwrap_err();
    assert_eq!(
        errors,
        [
            "agent.conf:3: a1.sources.r1.port: expected a port number from 0 to 65535, but the key is missing",
            "agent.conf:6: a1.sources.r1.keepFields: expected none, all, or a space-separated list of \
             priority, version, timestamp, hostname (not \"facility\"), got \"hostname facility\"",
        ]
    );
}

#[test]
fn http_takes_the_json_handler_by_default_and_by_its_class_name() {
    for keys in [
        &["port = 8080"][..],
        &[
            "port = 8080",
            "bind = 127.0.0.1",
            "handler = org.apache.flume.source.http.JSONHandler",
            "enableSSL = false",
        ][..],
    ] {
        let kind = planned_source("http", keys).unwrap();
        let SourceKind::Http(settings) = kind else {
            panic!("an http source, got {kind:?}");
        };
        assert_eq!(settings.port, 8080);
        assert!(settings.bind == "0.0.0.0" || settings.bind == "127.0.0.1");
    }
    let kind = planned_source(
        "org.apache.flume.source.http.HTTPSource",
        &["port = 1", "bind = ::1"],
    )
    .unwrap();
    assert!(
        matches!(kind, SourceKind::Http(HttpSettings { ref bind, port: 1, limits }) if bind == "::1" && limits == HttpLimits::default())
    );
}

#[test]
fn http_reads_its_bounds_with_flumes_jetty_idle_timeout_key() {
    let kind = planned_source(
        "http",
        &[
            "port = 8080",
            "maxConnections = 10",
            "ServerConnector.idleTimeout = 5000",
            "requestTimeout = 2000",
            "maxBodyBytes = 1024",
            "maxConcurrentRequests = 2",
            "maxBytesInFlight = 65536",
            "channeldConnections = 2",
        ],
    )
    .unwrap();
    let SourceKind::Http(settings) = kind else {
        panic!("an http source, got {kind:?}");
    };
    assert_eq!(
        settings.limits,
        HttpLimits {
            max_connections: 10,
            idle_timeout: Duration::from_millis(5000),
            request_timeout: Duration::from_millis(2000),
            max_body_bytes: 1024,
            max_concurrent_requests: 2,
            max_bytes_in_flight: 65536,
        }
    );
    let errors = planned_source(
        "http",
        &[
            "port = 8080",
            "maxBodyBytes = 2048",
            "maxBytesInFlight = 1024",
        ],
    )
    .unwrap_err();
    assert_eq!(errors.len(), 1, "{errors:#?}");
    assert!(
        errors[0].contains(
            "a1.sources.r1.maxBodyBytes: expected at most maxBytesInFlight (1024), got 2048"
        ),
        "{}",
        errors[0]
    );
}

#[test]
fn channeld_connections_is_a_key_of_the_sources_serving_many_clients_only() {
    assert!(planned_source("syslogtcp", &["port = 1", "channeldConnections = 2"]).is_ok());
    let errors = planned_source("syslogudp", &["port = 1", "channeldConnections = 2"]).unwrap_err();
    assert_eq!(errors.len(), 1, "{errors:#?}");
    assert!(
        errors[0].contains("a1.sources.r1.channeldConnections: unknown key"),
        "{}",
        errors[0]
    );
}

#[test]
fn http_refuses_other_handlers_handler_keys_and_ssl() {
    let errors = planned_source(
        "http",
        &[
            "port = 8080",
            "handler = org.apache.flume.source.http.BLOBHandler",
            "handler.extra = 1",
            "enableSSL = true",
        ],
    )
    .unwrap_err();
    assert_eq!(errors.len(), 3, "{errors:#?}");
    assert!(errors[0].starts_with(
        "agent.conf:7: a1.sources.r1.handler: expected org.apache.flume.source.http.JSONHandler"
    ));
    assert!(errors[1].starts_with("agent.conf:8: a1.sources.r1.handler.extra:"));
    assert!(errors[1].contains("the JSON handler takes no settings"));
    assert!(errors[2].starts_with("agent.conf:9: a1.sources.r1.enableSSL: expected false"));
}
