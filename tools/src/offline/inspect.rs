//! `channelctl inspect` on a stopped channel.

use std::io::Write;

use millrace_engine::inspect::{
    scan_channel, ChannelScan, DumpedEvent, SlotState, UncommittedReason,
};
use serde_json::{json, Value};

use super::{
    display_path, exit, format_age_ms, format_unix_ms, progress_for_stderr, table, write_json,
    ChannelTarget, ToolError,
};

/// How many events `--events` shows without `--limit`.
pub const DEFAULT_EVENT_LIMIT: usize = 100;

/// Options of `channelctl inspect`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InspectOptions {
    /// `--json`.
    pub json: bool,
    /// `--events`: dump queued events.
    pub events: bool,
    /// `--limit N`: at most this many events.
    pub limit: usize,
    /// `--from ID`: start at the first queued event whose put record's write-order id is
    /// at least this.
    pub from_write_order_id: Option<u64>,
}

impl Default for InspectOptions {
    fn default() -> Self {
        InspectOptions {
            json: false,
            events: false,
            limit: DEFAULT_EVENT_LIMIT,
            from_write_order_id: None,
        }
    }
}

/// Scans the channel and writes its report. Exit code 0 whatever the channel's state
/// (`verify` is the command that judges); see [`ToolError::exit_code`] for failures.
pub fn inspect(
    target: &ChannelTarget,
    options: &InspectOptions,
    out: &mut dyn Write,
) -> Result<i32, ToolError> {
    let progress = progress_for_stderr();
    let scan = scan_channel(
        target.storage.as_ref(),
        &target.name,
        &target.config,
        progress.as_ref(),
    )?;
    let events = if options.events {
        Some(scan.read_events(
            target.storage.as_ref(),
            options.from_write_order_id,
            options.limit,
        )?)
    } else {
        None
    };
    if options.json {
        write_json(out, &inspect_json(target, &scan, events.as_deref()))?;
    } else {
        write_tables(target, &scan, events.as_deref(), out)?;
    }
    Ok(exit::OK)
}

fn inspect_json(
    target: &ChannelTarget,
    scan: &ChannelScan,
    events: Option<&[DumpedEvent]>,
) -> Value {
    let now = scan.scanned_unix_ms;
    let data_dirs: Vec<Value> = scan
        .data_dirs(target.storage.as_ref())
        .iter()
        .map(|dir| {
            json!({
                "path": display_path(&dir.path),
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
                Ok(header) => (true, Some(header.created_unix_ms), Some(header.key_id.clone()), None),
                Err(reason) => (false, None, None, Some(reason.clone())),
            };
            json!({
                "segment_id": segment.segment_id,
                "data_dir": display_path(&target.config.data_dirs[segment.dir_index]),
                "file": display_path(&segment.path),
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
                "commit_time_range_unix_ms": figures.commit_time_range_unix_ms.map(|(low, high)| json!([low, high])),
                "live_events": figures.live_events,
                "first_problem": segment.damaged_regions.first().map(|region| json!({
                    "offset": region.offset,
                    "kind": region.kind.as_str(),
                    "reason": region.reason,
                })),
            })
        })
        .collect();
    let queue = scan.queue_summary();
    json!({
        "channel": scan.channel,
        "scanned_unix_ms": now,
        "data_dirs": data_dirs,
        "segments": segments,
        "checkpoints": checkpoints_json(scan),
        "queue": {
            "depth": queue.depth,
            "oldest_event_committed_unix_ms": queue.oldest_event_committed_unix_ms,
            "oldest_event_age_ms": queue.oldest_event_committed_unix_ms.map(|time| now.saturating_sub(time)),
        },
        "in_flight_transactions": 0,
        "uncommitted_transactions": uncommitted_json(scan),
        "problem_count": scan.problems().len(),
        "events": events.map(events_json),
    })
}

pub(crate) fn checkpoints_json(scan: &ChannelScan) -> Vec<Value> {
    scan.checkpoints
        .iter()
        .map(|slot| {
            let mut value = json!({
                "slot": slot.slot.as_str(),
                "file": display_path(&slot.file),
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
                "file": display_path(&transaction.file),
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

fn write_tables(
    target: &ChannelTarget,
    scan: &ChannelScan,
    events: Option<&[DumpedEvent]>,
    out: &mut dyn Write,
) -> Result<(), ToolError> {
    let now = scan.scanned_unix_ms;
    writeln!(out, "channel {}", scan.channel)?;
    let mut dirs = table(&[
        "data dir",
        "segments",
        "bytes",
        "available",
        "guard",
        "state",
    ]);
    for dir in scan.data_dirs(target.storage.as_ref()) {
        dirs.add_row(vec![
            display_path(&dir.path),
            dir.segment_count.to_string(),
            dir.segment_bytes.to_string(),
            dir.available_bytes
                .map_or("?".into(), |bytes| bytes.to_string()),
            dir.minimum_required_space_bytes.to_string(),
            if dir.below_guard() {
                "BELOW GUARD (puts refused)"
            } else {
                "ok"
            }
            .to_string(),
        ]);
    }
    writeln!(out, "{dirs}")?;
    let mut segments = table(&[
        "segment",
        "dir",
        "bytes",
        "put",
        "take",
        "commit",
        "write order",
        "live",
        "problem",
    ]);
    for segment in &scan.segments {
        let figures = scan.segment_figures(segment);
        segments.add_row(vec![
            segment.segment_id.to_string(),
            segment.dir_index.to_string(),
            segment.size_bytes.to_string(),
            figures.put_records.to_string(),
            figures.take_records.to_string(),
            figures.commit_records.to_string(),
            figures
                .write_order_range
                .map_or("-".into(), |(low, high)| format!("{low}..={high}")),
            figures.live_events.to_string(),
            match (&segment.header, segment.damaged_regions.first()) {
                (Err(reason), _) => format!("bad header: {reason}"),
                (Ok(_), Some(region)) => {
                    format!("{} at offset {}", region.kind.as_str(), region.offset)
                }
                (Ok(_), None) => String::new(),
            },
        ]);
    }
    writeln!(out, "{segments}")?;
    let mut slots = table(&[
        "checkpoint",
        "file",
        "state",
        "sequence",
        "covers below",
        "events",
        "age",
    ]);
    for slot in &scan.checkpoints {
        let (state, sequence, covered, queued, age) = match &slot.state {
            SlotState::Missing => (
                "missing".to_string(),
                String::new(),
                String::new(),
                String::new(),
                String::new(),
            ),
            SlotState::Unusable { offset, reason } => (
                format!("unusable at offset {offset}: {reason}"),
                String::new(),
                String::new(),
                String::new(),
                String::new(),
            ),
            SlotState::Valid(summary) => (
                "valid".to_string(),
                summary.sequence.to_string(),
                summary.covered_write_order_id.to_string(),
                summary.queued_events.to_string(),
                format_age_ms(now.saturating_sub(summary.created_unix_ms)),
            ),
        };
        slots.add_row(vec![
            slot.slot.as_str().to_string(),
            display_path(&slot.file),
            state,
            sequence,
            covered,
            queued,
            age,
        ]);
    }
    writeln!(out, "{slots}")?;
    let queue = scan.queue_summary();
    match queue.oldest_event_committed_unix_ms {
        Some(oldest) => writeln!(
            out,
            "queue: {} events; oldest committed {} ({} ago)",
            queue.depth,
            format_unix_ms(oldest),
            format_age_ms(now.saturating_sub(oldest))
        )?,
        None => writeln!(out, "queue: empty")?,
    }
    writeln!(
        out,
        "in-flight transactions: none (the channel is stopped; takes in flight at a stop are back in the queue)"
    )?;
    for transaction in &scan.log.uncommitted {
        writeln!(
            out,
            "uncommitted records: transaction {} at {} offset {} ({} puts, {} takes)",
            transaction.transaction_id,
            transaction.file.display(),
            transaction.offset,
            transaction.put_events,
            transaction.take_events
        )?;
    }
    let problems = scan.problems().len();
    if problems > 0 {
        writeln!(
            out,
            "{problems} problems found: run `channelctl verify` for details"
        )?;
    }
    if let Some(events) = events {
        let mut dump = table(&["#", "write order", "committed", "headers", "body"]);
        for dumped in events {
            let body = &dumped.event.body[..];
            dump.add_row(vec![
                dumped.position.to_string(),
                dumped.source.put_write_order_id.to_string(),
                format_unix_ms(dumped.source.committed_unix_ms),
                dumped
                    .event
                    .headers
                    .iter()
                    .map(|(key, value)| format!("{key}={value}"))
                    .collect::<Vec<_>>()
                    .join(" "),
                body_as_text(body).map_or_else(|| format!("hex:{}", hex(body)), str::to_string),
            ]);
        }
        writeln!(out, "{dump}")?;
    }
    Ok(())
}
