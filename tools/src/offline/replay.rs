//! `channelctl replay` on a stopped channel: plan by default, change data only with
//! `--execute`.

use std::io::Write;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use millrace_engine::inspect::{
    execute_replay, plan_replay, scan_channel, ReplayPlan, ReplayPoint,
};
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

    /// The engine's point, resolving `--since` against `now`.
    pub fn resolve(&self, now: SystemTime) -> ReplayPoint {
        match *self {
            ReplayPointSpec::Since(duration) => {
                let now_ms = now
                    .duration_since(UNIX_EPOCH)
                    .map(|elapsed| elapsed.as_millis() as u64)
                    .unwrap_or(0);
                ReplayPoint::FromUnixMs(now_ms.saturating_sub(duration.as_millis() as u64))
            }
            ReplayPointSpec::FromUnixMs(unix_ms) => ReplayPoint::FromUnixMs(unix_ms),
            ReplayPointSpec::FromWriteOrderId(id) => ReplayPoint::FromWriteOrderId(id),
        }
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
    if options.json {
        let mut value = plan_json(&target.name, &plan);
        value["executed"] = json!(outcome.is_some());
        value["events_replayed"] = json!(outcome.as_ref().map(|outcome| outcome.events_replayed));
        write_json(out, &value)?;
    } else {
        write!(out, "{}", plan_text(&target.name, &plan))?;
        match outcome {
            Some(outcome) => writeln!(
                out,
                "replayed: {} events put back in {} transactions (as new copies at the tail of the queue)",
                outcome.events_replayed, outcome.transactions
            )?,
            None => writeln!(out, "nothing changed: run again with --execute to put these events back")?,
        }
    }
    Ok(exit::OK)
}

fn point_json(point: ReplayPoint) -> Value {
    match point {
        ReplayPoint::FromUnixMs(unix_ms) => json!({ "from_unix_ms": unix_ms }),
        ReplayPoint::FromWriteOrderId(id) => json!({ "from_write_order_id": id }),
    }
}

fn plan_json(channel: &str, plan: &ReplayPlan) -> Value {
    json!({
        "channel": channel,
        "point": point_json(plan.point),
        "take_transactions": plan.take_transactions,
        "events": plan.events.len(),
        "first_put_write_order_id": plan.events.first().map(|event| event.put_write_order_id),
        "last_put_write_order_id": plan.events.last().map(|event| event.put_write_order_id),
        "segments": plan.segments,
        "not_retained": plan.not_retained.iter().map(|pointer| json!({
            "segment_id": pointer.segment_id,
            "record_offset": pointer.record_offset,
            "event_index": pointer.event_index,
        })).collect::<Vec<_>>(),
        "oldest_retained_commit": plan.oldest_retained_commit.map(|(id, unix_ms)| json!({
            "write_order_id": id,
            "unix_ms": unix_ms,
        })),
        "history_truncated": plan.history_truncated,
    })
}

fn plan_text(channel: &str, plan: &ReplayPlan) -> String {
    let point = match plan.point {
        ReplayPoint::FromUnixMs(unix_ms) => {
            format!("takes committed since {}", format_unix_ms(unix_ms))
        }
        ReplayPoint::FromWriteOrderId(id) => format!("takes from write-order id {id}"),
    };
    let mut text = format!(
        "replay plan for channel {channel}: {point}\n  {} events from {} take transactions, in segments {:?}\n",
        plan.events.len(),
        plan.take_transactions,
        plan.segments
    );
    if !plan.not_retained.is_empty() {
        text.push_str(&format!(
            "  {} taken events are no longer retained (their segments were deleted) and cannot be replayed\n",
            plan.not_retained.len()
        ));
    }
    if let Some((id, unix_ms)) = plan.oldest_retained_commit {
        text.push_str(&format!(
            "  retained history starts at write-order id {id}, committed {}\n",
            format_unix_ms(unix_ms)
        ));
    }
    if plan.history_truncated {
        text.push_str("  the point is older than the retained history: takes before it were deleted and are not in this plan (raise retentionTime/retentionBytes)\n");
    }
    text
}
