//! The operator reports: a channel's inspect report (JSON, `docs/inspect.md`) and a
//! replay's report (the protocol's [`ReplayReport`]), built from what the engine found.
//!
//! channeld sends them in answer to `Inspect` and `Replay`; `channelctl` builds the same
//! reports from a stopped channel's files, so a live channel and a stopped one print
//! alike. The differences are only what a stopped channel cannot know: a live report's
//! queue is the channel's queue now, its segments' live events are the channel's own
//! counts, and it names the transactions open on the channel (`"online": true`).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use millrace_engine::inspect::{
    ChannelScan, DataDirReport, DumpedEvent, LiveInspection, QueueSummary, ReplayOutcome,
    ReplayPlan, ReplayPoint as EnginePoint, SegmentFigures, SegmentScan, SlotState,
    UncommittedReason,
};
use millrace_protocol::{
    EventLocation, ReplayExecution, ReplayPoint, ReplayReport, RetainedCommit,
    MAX_LISTED_NOT_RETAINED_EVENTS, MAX_LISTED_REPLAY_SEGMENTS,
};
use serde_json::{json, Map, Value};

/// The inspect report of a running channel: its scan joined with its queue, open
/// transactions and `counters` (Flume's names for the channel's statistics, as channeld
/// reports them on `/metrics`).
pub fn live_inspect_report(inspection: &LiveInspection, counters: &[(&str, u64)]) -> Value {
    let figures = &inspection.figures;
    let counters: Map<String, Value> = counters
        .iter()
        .map(|(name, value)| (name.to_string(), Value::from(*value)))
        .collect();
    let mut report = inspect_report(
        &inspection.scan,
        &inspection.data_dirs,
        &inspection.queue_summary(),
        |segment, _| inspection.live_events(segment.segment_id),
        None,
    );
    report["online"] = Value::Bool(true);
    report["in_flight_transactions"] = json!(figures.open_transactions);
    report["in_flight"] = json!({
        "taken_events": figures.in_flight_taken_events,
        "put_events": figures.in_flight_put_events,
    });
    report["counters"] = Value::Object(counters);
    report
}

/// The inspect report of a stopped channel, from a scan of its files (`data_dirs` from
/// [`ChannelScan::data_dirs`]): the queue is the one a restart would rebuild, and no
/// transaction can be open.
pub fn stopped_inspect_report(
    scan: &ChannelScan,
    data_dirs: &[DataDirReport],
    events: Option<&[DumpedEvent]>,
) -> Value {
    let mut report = inspect_report(
        scan,
        data_dirs,
        &scan.queue_summary(),
        |_, figures| figures.live_events,
        events,
    );
    report["online"] = Value::Bool(false);
    report["in_flight_transactions"] = json!(0);
    report["in_flight"] = json!({ "taken_events": 0, "put_events": 0 });
    report
}

fn inspect_report(
    scan: &ChannelScan,
    data_dirs: &[DataDirReport],
    queue: &QueueSummary,
    live_events: impl Fn(&SegmentScan, &SegmentFigures) -> u64,
    events: Option<&[DumpedEvent]>,
) -> Value {
    let now = scan.scanned_unix_ms;
    let data_dirs: Vec<Value> = data_dirs
        .iter()
        .map(|dir| {
            json!({
                "path": dir.path.display().to_string(),
                "segment_count": dir.segment_count,
                "segment_bytes": dir.segment_bytes,
                "available_bytes": dir.available_bytes,
                "minimum_required_space_bytes": dir.minimum_required_space_bytes,
                "below_space_guard": dir.below_guard(),
            })
        })
        .collect();
    let segments: Vec<Value> = scan
        .segments
        .iter()
        .map(|segment| {
            let figures = scan.segment_figures(segment);
            let (header_valid, created_unix_ms, key_id, header_problem) = match &segment.header {
                Ok(header) => (
                    true,
                    Some(header.created_unix_ms),
                    Some(header.key_id.clone()),
                    None,
                ),
                Err(reason) => (false, None, None, Some(reason.clone())),
            };
            json!({
                "segment_id": segment.segment_id,
                "dir_index": segment.dir_index,
                "data_dir": scan.config.data_dirs[segment.dir_index].display().to_string(),
                "file": segment.path.display().to_string(),
                "size_bytes": segment.size_bytes,
                "header_valid": header_valid,
                "header_problem": header_problem,
                "created_unix_ms": created_unix_ms,
                "key_id": key_id,
                "records": {
                    "put": figures.put_records,
                    "take": figures.take_records,
                    "commit": figures.commit_records,
                },
                "write_order_range": figures.write_order_range.map(|(low, high)| json!([low, high])),
                "commit_time_range_unix_ms": figures
                    .commit_time_range_unix_ms
                    .map(|(low, high)| json!([low, high])),
                "live_events": live_events(segment, &figures),
                "first_problem": segment.damaged_regions.first().map(|region| json!({
                    "offset": region.offset,
                    "kind": region.kind.as_str(),
                    "reason": region.reason,
                })),
            })
        })
        .collect();
    json!({
        "channel": scan.channel,
        "scanned_unix_ms": now,
        "data_dirs": data_dirs,
        "segments": segments,
        "checkpoints": checkpoints_json(scan),
        "queue": {
            "depth": queue.depth,
            "oldest_event_committed_unix_ms": queue.oldest_event_committed_unix_ms,
            "oldest_event_age_ms": queue
                .oldest_event_committed_unix_ms
                .map(|time| now.saturating_sub(time)),
        },
        "uncommitted_transactions": uncommitted_json(scan),
        "problem_count": scan.problems().len(),
        "events": events.map(events_json),
    })
}

/// The checkpoint slots as `inspect` and `verify` report them.
pub fn checkpoints_json(scan: &ChannelScan) -> Vec<Value> {
    scan.checkpoints
        .iter()
        .map(|slot| {
            let mut value = json!({
                "slot": slot.slot.as_str(),
                "file": slot.file.display().to_string(),
            });
            let fields = match &slot.state {
                SlotState::Missing => json!({ "state": "missing" }),
                SlotState::Unusable { offset, reason } => json!({
                    "state": "unusable",
                    "offset": offset,
                    "reason": reason,
                }),
                SlotState::Valid(summary) => json!({
                    "state": "valid",
                    "sequence": summary.sequence,
                    "covered_write_order_id": summary.covered_write_order_id,
                    "created_unix_ms": summary.created_unix_ms,
                    "age_ms": scan.scanned_unix_ms.saturating_sub(summary.created_unix_ms),
                    "queued_events": summary.queued_events,
                    "file_bytes": summary.file_bytes,
                }),
            };
            if let (Some(object), Value::Object(extra)) = (value.as_object_mut(), fields) {
                object.extend(extra);
            }
            value
        })
        .collect()
}

fn uncommitted_json(scan: &ChannelScan) -> Vec<Value> {
    scan.log
        .uncommitted
        .iter()
        .map(|transaction| {
            let reason = match &transaction.reason {
                UncommittedReason::TornTail => "torn-tail".to_string(),
                UncommittedReason::DamageFollows(location) => format!(
                    "damage follows at {} offset {}",
                    location.file.display(),
                    location.offset
                ),
                UncommittedReason::NoCommitRecord => "no commit record".to_string(),
            };
            json!({
                "transaction_id": transaction.transaction_id,
                "file": transaction.file.display().to_string(),
                "offset": transaction.offset,
                "put_events": transaction.put_events,
                "take_events": transaction.take_events,
                "reason": reason,
            })
        })
        .collect()
}

/// A body is shown as text when it is UTF-8 without control characters other than tab
/// and line breaks; otherwise as hex.
fn body_as_text(body: &[u8]) -> Option<&str> {
    std::str::from_utf8(body).ok().filter(|text| {
        !text
            .chars()
            .any(|c| c.is_control() && !matches!(c, '\t' | '\n' | '\r'))
    })
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

fn events_json(events: &[DumpedEvent]) -> Value {
    Value::Array(
        events
            .iter()
            .map(|dumped| {
                let body = &dumped.event.body[..];
                json!({
                    "position": dumped.position,
                    "segment_id": dumped.source.pointer.segment_id,
                    "record_offset": dumped.source.pointer.record_offset,
                    "event_index": dumped.source.pointer.event_index,
                    "put_write_order_id": dumped.source.put_write_order_id,
                    "transaction_id": dumped.source.transaction_id,
                    "committed_unix_ms": dumped.source.committed_unix_ms,
                    "headers": dumped.event.headers,
                    "body_bytes": body.len(),
                    "body_text": body_as_text(body),
                    "body_hex": body_as_text(body).is_none().then(|| hex(body)),
                })
            })
            .collect(),
    )
}

/// The engine's point for a requested one; [`ReplayPoint::LastMs`] counts back from
/// `now`.
pub fn resolve_replay_point(point: ReplayPoint, now: SystemTime) -> EnginePoint {
    match point {
        ReplayPoint::LastMs(last_ms) => {
            let now_ms = now
                .duration_since(UNIX_EPOCH)
                .unwrap_or(Duration::ZERO)
                .as_millis() as u64;
            EnginePoint::FromUnixMs(now_ms.saturating_sub(last_ms))
        }
        ReplayPoint::FromUnixMs(unix_ms) => EnginePoint::FromUnixMs(unix_ms),
        ReplayPoint::FromWriteOrderId(id) => EnginePoint::FromWriteOrderId(id),
    }
}

/// A plan (and what executing it did) as the protocol reports it: the lists capped as
/// the protocol allows, their full counts beside them.
pub fn replay_report(plan: &ReplayPlan, outcome: Option<&ReplayOutcome>) -> ReplayReport {
    ReplayReport {
        point: match plan.point {
            EnginePoint::FromUnixMs(unix_ms) => ReplayPoint::FromUnixMs(unix_ms),
            EnginePoint::FromWriteOrderId(id) => ReplayPoint::FromWriteOrderId(id),
        },
        take_transactions: plan.take_transactions,
        events: plan.events.len() as u64,
        put_write_order_range: plan
            .events
            .first()
            .zip(plan.events.last())
            .map(|(first, last)| (first.put_write_order_id, last.put_write_order_id)),
        segment_count: plan.segments.len() as u64,
        segments: plan
            .segments
            .iter()
            .take(MAX_LISTED_REPLAY_SEGMENTS)
            .copied()
            .collect(),
        not_retained_events: plan.not_retained.len() as u64,
        not_retained: plan
            .not_retained
            .iter()
            .take(MAX_LISTED_NOT_RETAINED_EVENTS)
            .map(|pointer| EventLocation {
                segment_id: pointer.segment_id,
                record_offset: pointer.record_offset,
                event_index: pointer.event_index,
            })
            .collect(),
        oldest_retained_commit: plan.oldest_retained_commit.map(
            |(write_order_id, committed_unix_ms)| RetainedCommit {
                write_order_id,
                committed_unix_ms,
            },
        ),
        history_truncated: plan.history_truncated,
        execution: outcome.map(|outcome| ReplayExecution {
            events_replayed: outcome.events_replayed,
            transactions: outcome.transactions,
        }),
    }
}
