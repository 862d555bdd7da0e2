//! `channelctl checkpoint` on a stopped channel: rebuild its checkpoint by a full replay.

use std::io::Write;

use millrace_engine::inspect::rebuild_checkpoint;
use serde_json::json;

use super::{display_path, exit, write_json, ChannelTarget, ToolError};

/// Options of an offline `channelctl checkpoint`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CheckpointOptions {
    /// `--json`.
    pub json: bool,
}

/// Moves existing checkpoints aside, opens the channel by a full replay, writes a new
/// checkpoint to every slot and closes it. The next start uses the checkpoint. Exit code
/// [`exit::OK`]; a running channel is [`exit::TEMPORARY_FAILURE`], damage that stops
/// the replay [`exit::DAMAGED`].
pub fn checkpoint_offline(
    target: &ChannelTarget,
    options: &CheckpointOptions,
    out: &mut dyn Write,
) -> Result<i32, ToolError> {
    let report = rebuild_checkpoint(&target.storage, &target.name, &target.config)?;
    if options.json {
        write_json(
            out,
            &json!({
                "channel": target.name,
                "moved_aside": report.moved_aside.iter().map(|(from, to)| json!({
                    "from": display_path(from),
                    "to": display_path(to),
                })).collect::<Vec<_>>(),
                "replay": {
                    "records_replayed": report.recovery.records_replayed,
                    "bytes_replayed": report.recovery.bytes_replayed,
                    "segments_scanned": report.recovery.segments_scanned,
                    "events_recovered": report.recovery.events_recovered,
                    "truncated_tails": report.recovery.truncated_tails.iter().map(|tail| json!({
                        "file": display_path(&tail.file),
                        "offset": tail.offset,
                        "discarded_bytes": tail.discarded_bytes,
                    })).collect::<Vec<_>>(),
                    "duration_ms": report.recovery.duration_ms,
                },
                "checkpoint": {
                    "sequence": report.checkpoint.sequence,
                    "covered_write_order_id": report.checkpoint.covered_write_order_id,
                    "events": report.checkpoint.events,
                    "bytes": report.checkpoint.bytes,
                    "backup_written": report.checkpoint.backup_written,
                },
            }),
        )?;
    } else {
        for (from, to) in &report.moved_aside {
            writeln!(out, "moved {} aside to {}", from.display(), to.display())?;
        }
        for tail in &report.recovery.truncated_tails {
            writeln!(
                out,
                "truncated a torn tail: {} at offset {} ({} bytes)",
                tail.file.display(),
                tail.offset,
                tail.discarded_bytes
            )?;
        }
        writeln!(
            out,
            "replayed {} records from {} segments: {} events queued",
            report.recovery.records_replayed,
            report.recovery.segments_scanned,
            report.recovery.events_recovered
        )?;
        writeln!(
            out,
            "checkpoint {} written (covers write-order ids below {}, {} events{})",
            report.checkpoint.sequence,
            report.checkpoint.covered_write_order_id,
            report.checkpoint.events,
            if report.checkpoint.backup_written {
                ", backup too"
            } else {
                ""
            }
        )?;
    }
    Ok(exit::OK)
}
