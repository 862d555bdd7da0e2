//! `GET /health`: whether every channel serves, and how each one last recovered.
//!
//! ```text
//! 200 {"status":"ok","phase":"running","reasons":[],
//!      "channels":{"default":{"type":"file","state":"open",
//!                             "recovery":{"path":"checkpoint","records_replayed":0,…}}}}
//! 503 {"status":"unavailable","phase":"running",
//!      "reasons":["channel 'c2' is unhealthy: fdatasync of … failed: EIO"],…}
//! ```
//!
//! The status is 200 only when the server is running and every channel is `open`. A
//! channel is `recovering` while its log replays, `read-only` below its space guard
//! (puts refused), `unhealthy` after a failure (or when it could not be opened) and
//! `closed` once stopped; each of those gives a reason.

use millrace_engine::file::RecoveryReport;
use millrace_engine::ChannelHealth;
use serde_json::{json, Map, Value};

use crate::registry::{ChannelRegistry, ChannelState};
use crate::shutdown::ShutdownPhase;

/// The report and whether it is healthy (HTTP 200) or not (503).
pub struct HealthReport {
    /// True when every channel is open and the server is running.
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

/// Builds the health report.
pub fn health_report(registry: &ChannelRegistry, phase: ShutdownPhase) -> HealthReport {
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
    HealthReport {
        healthy,
        body: json!({
            "status": if healthy { "ok" } else { "unavailable" },
            "phase": phase_name(phase),
            "reasons": reasons,
            "channels": channels,
        }),
    }
}
