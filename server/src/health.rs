//! `GET /health`: whether every channel serves, how each one last recovered, and
//! whether the sources and sinks channeld runs are doing their work.
//!
//! ```text
//! 200 {"status":"ok","phase":"running","reasons":[],
//!      "channels":{"default":{"type":"file","state":"open",
//!                             "recovery":{"path":"checkpoint","records_replayed":0,…}}},
//!      "adapters":{"r1":{"state":"running","restarts":0,"last_error":null,…}}}
//! 200 {"status":"degraded","phase":"running",
//!      "reasons":["adapter 'r1' is failing (restarted 3 times): cannot listen on …"],…}
//! 503 {"status":"unavailable","phase":"running",
//!      "reasons":["channel 'c2' is unhealthy: fdatasync of … failed: EIO"],…}
//! ```
//!
//! The HTTP status answers "can clients use this server?", which is what a load balancer
//! asks: 200 when the server is running and every channel is `open`, 503 otherwise. A
//! channel is `recovering` while its log replays, `read-only` below its space guard
//! (puts refused), `unhealthy` after a failure (or when it could not be opened) and
//! `closed` once stopped; each of those gives a reason.
//!
//! A failing adapter does not stop clients from putting and taking, so it does not turn
//! the answer into 503 (which would take a working server out of rotation); it makes
//! `status` `degraded`, adds a reason, and shows in `adapters` with its last error and
//! restart count, for a monitor to alert on.

use millrace_engine::file::RecoveryReport;
use millrace_engine::ChannelHealth;
use serde_json::{json, Map, Value};

use crate::adapters::{AdapterState, AdapterStatus};
use crate::registry::{ChannelRegistry, ChannelState};
use crate::shutdown::ShutdownPhase;

/// The report and whether it is healthy (HTTP 200) or not (503).
pub struct HealthReport {
    /// True when every channel is open and the server is running (a failing adapter
    /// leaves it true: the status is then `degraded`).
    pub healthy: bool,
    /// The JSON body.
    pub body: Value,
}

fn recovery_json(report: &RecoveryReport) -> Value {
    json!({
        "path": report.path.as_str(),
        "records_replayed": report.records_replayed,
        "bytes_replayed": report.bytes_replayed,
        "transactions_committed": report.transactions_committed,
        "segments_scanned": report.segments_scanned,
        "events_recovered": report.events_recovered,
        "duration_ms": report.duration_ms,
        "truncated_tails": report.truncated_tails.iter().map(|tail| json!({
            "file": tail.file.display().to_string(),
            "offset": tail.offset,
            "discarded_bytes": tail.discarded_bytes,
        })).collect::<Vec<_>>(),
        "removed_unfinished_segments": report
            .removed_unfinished_segments
            .iter()
            .map(|path| path.display().to_string())
            .collect::<Vec<_>>(),
    })
}

fn phase_name(phase: ShutdownPhase) -> &'static str {
    match phase {
        ShutdownPhase::Running => "running",
        ShutdownPhase::Draining => "draining",
        ShutdownPhase::Aborting => "stopping",
    }
}

fn adapter_json(adapter: &AdapterStatus) -> Value {
    json!({
        "state": adapter.state.name(),
        "restarts": adapter.restarts,
        "last_error": adapter.last_error,
        "last_failure_unix_ms": adapter.last_failure_unix_ms,
    })
}

/// Builds the health report from the channels, the server's phase and the adapters'
/// statuses.
pub fn health_report(
    registry: &ChannelRegistry,
    phase: ShutdownPhase,
    adapters: &[AdapterStatus],
) -> HealthReport {
    let mut reasons = Vec::new();
    if phase != ShutdownPhase::Running {
        reasons.push("the server is shutting down".to_string());
    }
    let mut channels = Map::new();
    for entry in registry.entries() {
        let mut channel = Map::new();
        channel.insert("type".into(), Value::from(entry.type_name()));
        let (state, reason) = match entry.state() {
            ChannelState::Opening => ("recovering", Some("replaying its log".to_string())),
            ChannelState::FailedToOpen { reason } => {
                ("unhealthy", Some(format!("failed to open: {reason}")))
            }
            ChannelState::Ready(opened) => {
                if let Some(report) = opened.recovery_report() {
                    channel.insert("recovery".into(), recovery_json(&report));
                }
                match opened.health() {
                    ChannelHealth::Open => ("open", None),
                    ChannelHealth::ReadOnly { reason } => ("read-only", Some(reason)),
                    ChannelHealth::Failed { reason } => ("unhealthy", Some(reason)),
                    ChannelHealth::Closed => ("closed", Some("the channel is closed".to_string())),
                }
            }
        };
        channel.insert("state".into(), Value::from(state));
        if let Some(reason) = reason {
            reasons.push(format!("channel '{}' is {state}: {reason}", entry.name()));
            channel.insert("reason".into(), Value::from(reason));
        }
        channels.insert(entry.name().to_string(), Value::Object(channel));
    }
    let healthy = reasons.is_empty();
    let mut degraded = false;
    let mut adapters_json = Map::new();
    for adapter in adapters {
        if adapter.state == AdapterState::Failing {
            degraded = true;
            reasons.push(format!(
                "adapter '{}' is failing (restarted {} times): {}",
                adapter.component,
                adapter.restarts,
                adapter.last_error.as_deref().unwrap_or("no reason given")
            ));
        }
        adapters_json.insert(adapter.component.clone(), adapter_json(adapter));
    }
    let status = match (healthy, degraded) {
        (false, _) => "unavailable",
        (true, true) => "degraded",
        (true, false) => "ok",
    };
    HealthReport {
        healthy,
        body: json!({
            "status": status,
            "phase": phase_name(phase),
            "reasons": reasons,
            "channels": channels,
            "adapters": adapters_json,
        }),
    }
}
