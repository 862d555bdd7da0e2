//! `channelctl inspect`: a stopped channel's report from its files, and the tables for
//! people that a live channel's report (from the server) prints with too.
//!
//! Both reports are built by `millrace_ops::reports` in the shape `docs/inspect.md`
//! gives, so the tables here are drawn from that JSON and read the same for both.

use std::io::Write;

use millrace_engine::inspect::scan_channel;
use millrace_ops::reports::stopped_inspect_report;
use serde_json::Value;

use super::{
    exit, format_age_ms, format_unix_ms, progress_for_stderr, table, write_json, ChannelTarget,
    ToolError,
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
    let data_dirs = scan.data_dirs(target.storage.as_ref());
    let report = stopped_inspect_report(&scan, &data_dirs, events.as_deref());
    write_inspect_report(&report, options.json, out)?;
    Ok(exit::OK)
}

/// Writes an inspect report (a stopped channel's or a live one's) as JSON or as tables.
pub fn write_inspect_report(
    report: &Value,
    json: bool,
    out: &mut dyn Write,
) -> Result<(), ToolError> {
    if json {
        write_json(out, report)
    } else {
        write_tables(report, out)
    }
}

/// A JSON value as a table cell: strings without quotes, `null` as empty.
fn cell(value: &Value) -> String {
    match value {
        Value::Null => String::new(),
        Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}

fn unsigned(value: &Value) -> u64 {
    value.as_u64().unwrap_or(0)
}

fn write_tables(report: &Value, out: &mut dyn Write) -> Result<(), ToolError> {
    let now = unsigned(&report["scanned_unix_ms"]);
    let live = report["online"].as_bool().unwrap_or(false);
    writeln!(
        out,
        "channel {}{}",
        cell(&report["channel"]),
        if live {
            " (live, through the server)"
        } else {
            ""
        }
    )?;
    let no_rows = Vec::new();
    let rows = |key: &str| report[key].as_array().unwrap_or(&no_rows);
    let mut dirs = table(&[
        "data dir",
        "segments",
        "bytes",
        "available",
        "guard",
        "state",
    ]);
    for dir in rows("data_dirs") {
        let available = &dir["available_bytes"];
        dirs.add_row(vec![
            cell(&dir["path"]),
            cell(&dir["segment_count"]),
            cell(&dir["segment_bytes"]),
            if available.is_null() {
                "?".to_string()
            } else {
                cell(available)
            },
            cell(&dir["minimum_required_space_bytes"]),
            if dir["below_space_guard"].as_bool().unwrap_or(false) {
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
    for segment in rows("segments") {
        let range = &segment["write_order_range"];
        let problem = &segment["first_problem"];
        segments.add_row(vec![
            cell(&segment["segment_id"]),
            cell(&segment["dir_index"]),
            cell(&segment["size_bytes"]),
            cell(&segment["records"]["put"]),
            cell(&segment["records"]["take"]),
            cell(&segment["records"]["commit"]),
            if range.is_null() {
                "-".to_string()
            } else {
                format!("{}..={}", cell(&range[0]), cell(&range[1]))
            },
            cell(&segment["live_events"]),
            if !segment["header_valid"].as_bool().unwrap_or(true) {
                format!("bad header: {}", cell(&segment["header_problem"]))
            } else if problem.is_null() {
                String::new()
            } else {
                format!(
                    "{} at offset {}",
                    cell(&problem["kind"]),
                    cell(&problem["offset"])
                )
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
    for slot in rows("checkpoints") {
        let state = match slot["state"].as_str() {
            Some("unusable") => format!(
                "unusable at offset {}: {}",
                cell(&slot["offset"]),
                cell(&slot["reason"])
            ),
            _ => cell(&slot["state"]),
        };
        let age = &slot["age_ms"];
        slots.add_row(vec![
            cell(&slot["slot"]),
            cell(&slot["file"]),
            state,
            cell(&slot["sequence"]),
            cell(&slot["covered_write_order_id"]),
            cell(&slot["queued_events"]),
            if age.is_null() {
                String::new()
            } else {
                format_age_ms(unsigned(age))
            },
        ]);
    }
    writeln!(out, "{slots}")?;
    let queue = &report["queue"];
    match queue["oldest_event_committed_unix_ms"].as_u64() {
        Some(oldest) => writeln!(
            out,
            "queue: {} events; oldest committed {} ({} ago)",
            unsigned(&queue["depth"]),
            format_unix_ms(oldest),
            format_age_ms(now.saturating_sub(oldest))
        )?,
        None if unsigned(&queue["depth"]) > 0 => {
            writeln!(out, "queue: {} events", unsigned(&queue["depth"]))?
        }
        None => writeln!(out, "queue: empty")?,
    }
    if live {
        writeln!(
            out,
            "in-flight transactions: {} open, holding {} taken and {} put events not yet committed",
            unsigned(&report["in_flight_transactions"]),
            unsigned(&report["in_flight"]["taken_events"]),
            unsigned(&report["in_flight"]["put_events"])
        )?;
    } else {
        writeln!(
            out,
            "in-flight transactions: none (the channel is stopped; takes in flight at a stop are back in the queue)"
        )?;
    }
    for transaction in rows("uncommitted_transactions") {
        writeln!(
            out,
            "uncommitted records: transaction {} at {} offset {} ({} puts, {} takes)",
            cell(&transaction["transaction_id"]),
            cell(&transaction["file"]),
            cell(&transaction["offset"]),
            cell(&transaction["put_events"]),
            cell(&transaction["take_events"])
        )?;
    }
    let problems = unsigned(&report["problem_count"]);
    if problems > 0 {
        writeln!(
            out,
            "{problems} problems found: run `channelctl verify` for details"
        )?;
    }
    if let Some(events) = report["events"].as_array() {
        let mut dump = table(&["#", "write order", "committed", "headers", "body"]);
        for event in events {
            let headers = event["headers"]
                .as_object()
                .map(|headers| {
                    headers
                        .iter()
                        .map(|(key, value)| format!("{key}={}", cell(value)))
                        .collect::<Vec<_>>()
                        .join(" ")
                })
                .unwrap_or_default();
            let body = match event["body_text"].as_str() {
                Some(text) => text.to_string(),
                None => format!("hex:{}", cell(&event["body_hex"])),
            };
            dump.add_row(vec![
                cell(&event["position"]),
                cell(&event["put_write_order_id"]),
                format_unix_ms(unsigned(&event["committed_unix_ms"])),
                headers,
                body,
            ]);
        }
        writeln!(out, "{dump}")?;
    }
    Ok(())
}
