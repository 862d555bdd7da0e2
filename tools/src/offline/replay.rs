//! `channelctl replay` on a stopped channel: plan by default, change data only with
//! `--execute`.

use std::io::Write;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use millrace_client::{ReplayPoint as WirePoint, ReplayReport};
use millrace_engine::inspect::{execute_replay, plan_replay, scan_channel, ReplayPoint};
use millrace_ops::reports::{replay_report, resolve_replay_point};
use serde_json::{json, Value};

use super::{exit, format_unix_ms, progress_for_stderr, write_json, ChannelTarget, ToolError};

/// Where to rewind to, as given on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplayPointSpec {
    /// `--since DURATION` ("90s", "15m", "2h 30m"): takes committed within that long
    /// before now.
    Since(Duration),
    /// `--from-time TIME`: takes committed at or after it (Unix milliseconds).
    FromUnixMs(u64),
    /// `--from-id WRITE_ORDER_ID`: takes whose commit record has at least this id.
    FromWriteOrderId(u64),
}

impl ReplayPointSpec {
    /// Parses `--since` ("90s", "15m", "1h 30m").
    pub fn parse_since(text: &str) -> Result<Self, ToolError> {
        humantime::parse_duration(text)
            .map(ReplayPointSpec::Since)
            .map_err(|error| ToolError::Usage {
                option: "--since",
                problem: format!("{text:?} is not a duration like 90s, 15m or 2h ({error})"),
            })
    }

    /// Parses `--from-time`: RFC 3339 ("2025-01-31T12:00:00Z", UTC; fractional seconds
    /// allowed) or Unix milliseconds.
    pub fn parse_from_time(text: &str) -> Result<Self, ToolError> {
        if let Ok(unix_ms) = text.parse::<u64>() {
            return Ok(ReplayPointSpec::FromUnixMs(unix_ms));
        }
        let time = humantime::parse_rfc3339_weak(text).map_err(|error| ToolError::Usage {
            option: "--from-time",
            problem: format!("{text:?} is neither an RFC 3339 time (2025-01-31T12:00:00Z) nor Unix milliseconds ({error})"),
        })?;
        let unix_ms = time
            .duration_since(UNIX_EPOCH)
            .map(|elapsed| elapsed.as_millis() as u64)
            .unwrap_or(0);
        Ok(ReplayPointSpec::FromUnixMs(unix_ms))
    }

    /// Parses `--from-id`.
    pub fn parse_from_id(text: &str) -> Result<Self, ToolError> {
        text.parse::<u64>()
            .map(ReplayPointSpec::FromWriteOrderId)
            .map_err(|_| ToolError::Usage {
                option: "--from-id",
                problem: format!("{text:?} is not a write-order id (a whole number)"),
            })
    }

    /// The point as the protocol sends it: the server resolves `--since` against its own
    /// clock, the one that stamped the commit records.
    pub fn to_wire(&self) -> WirePoint {
        match *self {
            ReplayPointSpec::Since(duration) => {
                WirePoint::LastMs(u64::try_from(duration.as_millis()).unwrap_or(u64::MAX))
            }
            ReplayPointSpec::FromUnixMs(unix_ms) => WirePoint::FromUnixMs(unix_ms),
            ReplayPointSpec::FromWriteOrderId(id) => WirePoint::FromWriteOrderId(id),
        }
    }

    /// The engine's point, resolving `--since` against `now` (as the server does with
    /// its clock).
    pub fn resolve(&self, now: SystemTime) -> ReplayPoint {
        resolve_replay_point(self.to_wire(), now)
    }
}

/// Options of `channelctl replay`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplayOptions {
    /// `--json`.
    pub json: bool,
    /// The point.
    pub point: ReplayPointSpec,
    /// `--execute`: put the events back; without it nothing changes.
    pub execute: bool,
}

/// Plans (and with `--execute` performs) a replay. Exit code [`exit::OK`]; with
/// `--execute` and events no longer retained, [`exit::DAMAGED`] is not used — the plan
/// says what is missing, and a replay of what remains is what was asked for.
pub fn replay(
    target: &ChannelTarget,
    options: &ReplayOptions,
    out: &mut dyn Write,
) -> Result<i32, ToolError> {
    let progress = progress_for_stderr();
    let scan = scan_channel(
        target.storage.as_ref(),
        &target.name,
        &target.config,
        progress.as_ref(),
    )?;
    let point = options.point.resolve(SystemTime::now());
    let plan = plan_replay(&scan, point);
    let outcome = if options.execute {
        Some(execute_replay(
            &target.storage,
            &scan,
            &plan,
            progress.as_ref(),
        )?)
    } else {
        None
    };
    let report = replay_report(&plan, outcome.as_ref());
    write_replay_report(&target.name, &report, options.json, out)?;
    Ok(exit::OK)
}

/// Writes a replay report (planned offline, or by the server) as JSON or as text.
pub fn write_replay_report(
    channel: &str,
    report: &ReplayReport,
    json: bool,
    out: &mut dyn Write,
) -> Result<(), ToolError> {
    if json {
        return write_json(out, &report_json(channel, report));
    }
    write!(out, "{}", plan_text(channel, report))?;
    match report.execution {
        Some(execution) => writeln!(
            out,
            "replayed: {} events put back in {} transactions (as new copies at the tail of the queue)",
            execution.events_replayed, execution.transactions
        )?,
        None => writeln!(out, "nothing changed: run again with --execute to put these events back")?,
    }
    Ok(())
}

fn point_json(point: WirePoint) -> Value {
    match point {
        WirePoint::FromUnixMs(unix_ms) => json!({ "from_unix_ms": unix_ms }),
        WirePoint::FromWriteOrderId(id) => json!({ "from_write_order_id": id }),
        WirePoint::LastMs(last_ms) => json!({ "last_ms": last_ms }),
    }
}

fn report_json(channel: &str, report: &ReplayReport) -> Value {
    let (first_put, last_put) = report.put_write_order_range.unzip();
    json!({
        "channel": channel,
        "point": point_json(report.point),
        "take_transactions": report.take_transactions,
        "events": report.events,
        "first_put_write_order_id": first_put,
        "last_put_write_order_id": last_put,
        "segment_count": report.segment_count,
        "segments": report.segments,
        "not_retained_events": report.not_retained_events,
        "not_retained": report.not_retained.iter().map(|location| json!({
            "segment_id": location.segment_id,
            "record_offset": location.record_offset,
            "event_index": location.event_index,
        })).collect::<Vec<_>>(),
        "oldest_retained_commit": report.oldest_retained_commit.map(|commit| json!({
            "write_order_id": commit.write_order_id,
            "unix_ms": commit.committed_unix_ms,
        })),
        "history_truncated": report.history_truncated,
        "executed": report.execution.is_some(),
        "events_replayed": report.execution.map(|execution| execution.events_replayed),
    })
}

fn plan_text(channel: &str, report: &ReplayReport) -> String {
    let point = match report.point {
        WirePoint::FromUnixMs(unix_ms) => {
            format!("takes committed since {}", format_unix_ms(unix_ms))
        }
        WirePoint::FromWriteOrderId(id) => format!("takes from write-order id {id}"),
        WirePoint::LastMs(last_ms) => format!("takes committed in the last {last_ms} ms"),
    };
    let unlisted_segments = report.segment_count - report.segments.len() as u64;
    let mut text = format!(
        "replay plan for channel {channel}: {point}\n  {} events from {} take transactions, in segments {:?}{}\n",
        report.events,
        report.take_transactions,
        report.segments,
        if unlisted_segments > 0 {
            format!(" and {unlisted_segments} more")
        } else {
            String::new()
        }
    );
    if report.not_retained_events > 0 {
        text.push_str(&format!(
            "  {} taken events are no longer retained (their segments were deleted) and cannot be replayed\n",
            report.not_retained_events
        ));
    }
    if let Some(commit) = report.oldest_retained_commit {
        text.push_str(&format!(
            "  retained history starts at write-order id {}, committed {}\n",
            commit.write_order_id,
            format_unix_ms(commit.committed_unix_ms)
        ));
    }
    if report.history_truncated {
        text.push_str("  the point is older than the retained history: takes before it were deleted and are not in this plan (raise retentionTime/retentionBytes)\n");
    }
    text
}
