//! The `multiport_syslogtcp` source: `syslogtcp` on several ports at once (Flume's
//! `MultiportSyslogTCPSource`).
//!
//! Each port of `ports` is served as `syslogtcp` serves its one port (framing, parsing,
//! `eventSize`, `keepFields`, back-pressure while the channel is full: see
//! [`super::syslog`]); `portHeader` names a header that gets the local port a message
//! came in on. As in Flume, a port that cannot be bound is logged and the others are
//! served; the source fails only when none can be.
//!
//! Flume's `charset.default` and `charset.port.<port>` are accepted for UTF-8 (and
//! ASCII); Millrace hands the message bytes on as received. `readBufferBytes` and
//! `numProcessors` tune Flume's Mina library and have no effect here (with a warning).

use std::sync::Arc;

use millrace_config::values::{self, Expected};
use millrace_config::ComponentSettings;
use tokio::task::JoinSet;
use tracing::error;

use super::syslog::{
    read_keep_fields, tcp, SyslogSettings, DEFAULT_SYSLOG_BATCH_SIZE, DEFAULT_TCP_EVENT_SIZE_BYTES,
};
use super::{
    host_port, listen_tcp, refuse_tls, serve_connections, ListenerLimits, ProcessorFactory,
    SourceError, BATCH_SIZE_KEY,
};
use crate::connection::StopSignal;
use crate::counters::SourceCounters;

/// Charsets whose text Millrace passes on unchanged (the bytes are kept as received).
const ACCEPTED_CHARSETS: &[&str] = &["UTF-8", "US-ASCII"];

/// How a multiport_syslogtcp source is configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MultiportSyslogSettings {
    /// Everything but the port, as for `syslogtcp`.
    pub syslog: SyslogSettings,
    /// `ports`.
    pub ports: Vec<u16>,
    /// `portHeader`.
    pub port_header: Option<String>,
}

fn charset(value: &str) -> Result<(), Expected> {
    ACCEPTED_CHARSETS
        .iter()
        .any(|accepted| accepted.eq_ignore_ascii_case(value.trim()))
        .then_some(())
        .ok_or_else(|| {
            Expected::new("UTF-8 or US-ASCII (Millrace keeps message bytes as received)")
        })
}

fn port_list(value: &str) -> Result<Vec<u16>, Expected> {
    let ports: Result<Vec<u16>, Expected> = values::space_separated(value)
        .into_iter()
        .map(values::port_number)
        .collect();
    match ports {
        Ok(ports) if !ports.is_empty() => Ok(ports),
        _ => Err(Expected::new("whitespace-separated port numbers")),
    }
}

impl MultiportSyslogSettings {
    /// Reads a multiport_syslogtcp source's keys.
    pub(crate) fn read(keys: &mut ComponentSettings<'_>) -> Option<MultiportSyslogSettings> {
        let host = keys.text_or("host", "0.0.0.0");
        let ports = keys.required("ports", "whitespace-separated port numbers", port_list);
        let event_size_bytes = keys.count_or("eventSize", DEFAULT_TCP_EVENT_SIZE_BYTES as u64);
        let keep_fields = read_keep_fields(keys);
        let port_header = keys.text("portHeader");
        let client_ip_header = keys.text("clientIPHeader");
        let client_hostname_header = keys.text("clientHostnameHeader");
        let batch_size = keys.count_or(BATCH_SIZE_KEY, DEFAULT_SYSLOG_BATCH_SIZE as u64);
        keys.parsed("charset.default", charset);
        for setting in keys.matching(&["charset.port.<port>"], |key| {
            key.starts_with("charset.port.")
        }) {
            let port = &setting.key["charset.port.".len()..];
            if values::port_number(port).is_err() {
                keys.refuse(&setting.key, "charset.port.<port number>", port);
            } else if let Err(expected) = charset(&setting.value) {
                keys.refuse(&setting.key, &expected.0, &setting.value);
            }
        }
        for tuning in ["readBufferBytes", "numProcessors"] {
            if keys.parsed(tuning, values::positive_integer).is_some() {
                keys.warn(tuning, "tunes Flume's Mina library; no effect in Millrace");
            }
        }
        if keys.is_set("readBufferSize") {
            keys.unknown(
                "readBufferSize",
                "readBufferBytes: Flume's User Guide names this key readBufferSize, but Flume \
                 reads readBufferBytes"
                    .to_string(),
            );
        }
        let listener = ListenerLimits::read(keys);
        refuse_tls(keys, &["ssl"], &[]);
        Some(MultiportSyslogSettings {
            syslog: SyslogSettings {
                host,
                port: 0,
                event_size_bytes: usize::try_from(event_size_bytes).unwrap_or(usize::MAX),
                keep_fields,
                client_ip_header,
                client_hostname_header,
                batch_size: usize::try_from(batch_size).unwrap_or(usize::MAX),
                listener,
            },
            ports: ports?,
            port_header,
        })
    }
}

/// Serves every port until `stop` is raised.
pub async fn run(
    settings: MultiportSyslogSettings,
    processors: ProcessorFactory,
    counters: Arc<SourceCounters>,
    stop: StopSignal,
) -> Result<(), SourceError> {
    let mut servers = JoinSet::new();
    let mut last_failure = None;
    for &port in &settings.ports {
        let address = host_port(&settings.syslog.host, port);
        let listener = match listen_tcp(&address, "multiport_syslogtcp").await {
            Ok(listener) => listener,
            Err(failure) => {
                error!(%failure, "a multiport_syslogtcp port cannot be bound; serving the others");
                last_failure = Some(failure);
                continue;
            }
        };
        let bound_port = listener
            .local_addr()
            .map(|address| address.port())
            .unwrap_or(port);
        let syslog = Arc::new(SyslogSettings {
            port: bound_port,
            ..settings.syslog.clone()
        });
        let port_header = settings
            .port_header
            .clone()
            .map(|header| Arc::new((header, bound_port.to_string())));
        let processors = processors.clone();
        let connection_counters = Arc::clone(&counters);
        let connection_stop = stop.clone();
        let limits = syslog.listener;
        let serving = serve_connections(
            listener,
            "multiport_syslogtcp",
            limits,
            Arc::clone(&counters),
            stop.clone(),
            move |stream, peer| {
                let syslog = Arc::clone(&syslog);
                let processors = processors.clone();
                let counters = Arc::clone(&connection_counters);
                let stop = connection_stop.clone();
                let port_header = port_header.clone();
                async move {
                    tcp::serve_connection(
                        stream,
                        peer,
                        &syslog,
                        &processors,
                        &counters,
                        port_header.as_deref(),
                        stop,
                    )
                    .await
                }
            },
        );
        servers.spawn(serving);
    }
    if servers.is_empty() {
        return Err(last_failure.expect("at least one port was configured"));
    }
    while let Some(finished) = servers.join_next().await {
        if let Ok(Err(error)) = finished {
            return Err(error);
        }
    }
    Ok(())
}
