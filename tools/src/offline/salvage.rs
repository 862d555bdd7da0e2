//! `channelctl verify --salvage DIR`: copy what can be read into a new channel.

use std::io::Write;
use std::path::PathBuf;

use millrace_engine::inspect::{scan_channel, ChannelScan, SalvageReport};
use serde_json::{json, Value};

use super::{display_path, exit, progress_for_stderr, write_json, ChannelTarget, ToolError};

/// Options of a salvage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SalvageOptions {
    /// `--json`.
    pub json: bool,
    /// Where the new channel goes (must be missing or empty).
    pub destination: PathBuf,
}

/// Scans the channel and salvages it into `options.destination`. Exit code
/// [`exit::OK`] when nothing was lost, [`exit::DAMAGED`] when events were.
pub fn salvage(
    target: &ChannelTarget,
    options: &SalvageOptions,
    out: &mut dyn Write,
) -> Result<i32, ToolError> {
    let progress = progress_for_stderr();
    let scan = scan_channel(
        target.storage.as_ref(),
        &target.name,
        &target.config,
        progress.as_ref(),
    )?;
    let (value, text, code) = salvage_scanned(target, &scan, options)?;
    if options.json {
        write_json(out, &value)?;
    } else {
        write!(out, "{text}")?;
    }
    Ok(code)
}

/// Salvages an already scanned channel: the JSON report, the text report and the exit
/// code.
pub(crate) fn salvage_scanned(
    target: &ChannelTarget,
    scan: &ChannelScan,
    options: &SalvageOptions,
) -> Result<(Value, String, i32), ToolError> {
    let progress = progress_for_stderr();
    let report = millrace_engine::inspect::salvage(
        &target.storage,
        scan,
        &options.destination,
        progress.as_ref(),
    )?;
    let lost_anything = report.lost_put_events > 0
        || !report.unconfirmed_transactions.is_empty()
        || !report.unreadable_events.is_empty()
        || !report.missing_write_order_ids.is_empty();
    let code = if lost_anything {
        exit::DAMAGED
    } else {
        exit::OK
    };
    Ok((salvage_json(&report), salvage_text(&report), code))
}

fn salvage_json(report: &SalvageReport) -> Value {
    let destination = &report.destination;
    json!({
        "destination": {
            "data_dirs": destination.data_dirs.iter().map(|dir| display_path(dir)).collect::<Vec<_>>(),
            "checkpoint_dir": display_path(&destination.checkpoint_dir),
            "backup_checkpoint_dir": destination.backup_checkpoint_dir.as_deref().map(display_path),
        },
        "events_salvaged": report.events_salvaged,
        "lost_put_events": report.lost_put_events,
        "lost_take_events": report.lost_take_events,
        "damaged_regions": report.damaged_regions.iter().map(|(file, region)| json!({
            "file": display_path(file),
            "offset": region.offset,
            "end_offset": region.end_offset,
            "kind": region.kind.as_str(),
            "reason": region.reason,
        })).collect::<Vec<_>>(),
        "damaged_transactions": report.damaged_transactions.iter().map(|transaction| {
            let loss = transaction.loss.as_ref();
            json!({
                "transaction_id": transaction.transaction_id,
                "commit_file": display_path(&transaction.commit_file),
                "commit_offset": transaction.commit_offset,
                "committed_unix_ms": transaction.summary.committed_unix_ms,
                "put_events_salvageable": transaction.puts.len(),
                "lost_put_events": loss.map(|loss| loss.lost_put_events),
                "lost_take_events": loss.map(|loss| loss.lost_take_events),
                "damage_file": loss.and_then(|loss| loss.cause.as_ref()).map(|cause| display_path(&cause.file)),
                "damage_offset": loss.and_then(|loss| loss.cause.as_ref()).map(|cause| cause.offset),
            })
        }).collect::<Vec<_>>(),
        "unconfirmed_transactions": report.unconfirmed_transactions.iter().map(|transaction| json!({
            "transaction_id": transaction.transaction_id,
            "file": display_path(&transaction.file),
            "offset": transaction.offset,
            "put_events": transaction.put_events,
        })).collect::<Vec<_>>(),
        "missing_write_order_ids": report.missing_write_order_ids.iter().map(|(location, first, last)| json!({
            "file": display_path(&location.file),
            "offset": location.offset,
            "first": first,
            "last": last,
        })).collect::<Vec<_>>(),
        "unreadable_events": report.unreadable_events.iter().map(|(pointer, reason)| json!({
            "segment_id": pointer.segment_id,
            "record_offset": pointer.record_offset,
            "event_index": pointer.event_index,
            "reason": reason,
        })).collect::<Vec<_>>(),
    })
}

fn salvage_text(report: &SalvageReport) -> String {
    let mut text = format!(
        "salvaged {} events into a new channel: data {}, checkpoint {}\n",
        report.events_salvaged,
        report
            .destination
            .data_dirs
            .iter()
            .map(|dir| display_path(dir))
            .collect::<Vec<_>>()
            .join(","),
        display_path(&report.destination.checkpoint_dir)
    );
    for transaction in &report.damaged_transactions {
        if let Some(loss) = &transaction.loss {
            let cause = loss.cause.as_ref().map_or_else(
                || "no damage in sight".to_string(),
                |cause| format!("damage at {} offset {}", cause.file.display(), cause.offset),
            );
            text.push_str(&format!(
                "lost: {} put events of committed transaction {} (commit at {} offset {}): {cause}\n",
                loss.lost_put_events,
                transaction.transaction_id,
                transaction.commit_file.display(),
                transaction.commit_offset
            ));
            if loss.lost_take_events > 0 {
                text.push_str(&format!(
                    "  and its take of {} events: those events, if they survived, are delivered again\n",
                    loss.lost_take_events
                ));
            }
        }
    }
    for transaction in &report.unconfirmed_transactions {
        text.push_str(&format!(
            "not salvaged: {} put events of transaction {} at {} offset {}: its commit record is unreadable\n",
            transaction.put_events,
            transaction.transaction_id,
            transaction.file.display(),
            transaction.offset
        ));
    }
    for (location, first, last) in &report.missing_write_order_ids {
        text.push_str(&format!(
            "records with write-order ids {first}..={last} were in the damage at {} offset {}\n",
            location.file.display(),
            location.offset
        ));
    }
    for (pointer, reason) in &report.unreadable_events {
        text.push_str(&format!(
            "unreadable event: segment {} offset {} index {}: {reason}\n",
            pointer.segment_id, pointer.record_offset, pointer.event_index
        ));
    }
    if report.lost_put_events == 0
        && report.unconfirmed_transactions.is_empty()
        && report.unreadable_events.is_empty()
        && report.missing_write_order_ids.is_empty()
    {
        text.push_str("nothing was lost\n");
    }
    text
}
