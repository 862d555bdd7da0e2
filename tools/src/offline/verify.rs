//! `channelctl verify` on a stopped channel, optionally followed by `--salvage DIR`.

use std::io::Write;
use std::path::PathBuf;

use millrace_engine::inspect::{scan_channel, Problem, Verdict};
use serde_json::{json, Value};

use super::salvage::{salvage_scanned, SalvageOptions};
use super::{display_path, exit, progress_for_stderr, table, write_json, ChannelTarget, ToolError};
use millrace_ops::reports::checkpoints_json;

/// Options of `channelctl verify`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VerifyOptions {
    /// `--json`.
    pub json: bool,
    /// `--salvage DIR`: after verifying, write every readable committed event into a new
    /// channel under DIR.
    pub salvage: Option<PathBuf>,
}

/// Checks every record of every segment and both checkpoint slots. Exit code:
/// [`exit::OK`] when clean, [`exit::REPAIRS_ITSELF`] when a restart deals with every
/// problem by itself, [`exit::DAMAGED`] otherwise. With `--salvage`, the salvage's exit
/// code is returned when it is worse.
pub fn verify(
    target: &ChannelTarget,
    options: &VerifyOptions,
    out: &mut dyn Write,
) -> Result<i32, ToolError> {
    let progress = progress_for_stderr();
    let scan = scan_channel(
        target.storage.as_ref(),
        &target.name,
        &target.config,
        progress.as_ref(),
    )?;
    let problems = scan.problems();
    let verdict = scan.verdict();
    let code = match verdict {
        Verdict::Clean => exit::OK,
        Verdict::RepairsItself => exit::REPAIRS_ITSELF,
        Verdict::Damaged => exit::DAMAGED,
    };
    let records: usize = scan
        .segments
        .iter()
        .map(|segment| segment.records.len())
        .sum();
    let salvage_value = match &options.salvage {
        Some(destination) => Some(salvage_scanned(
            target,
            &scan,
            &SalvageOptions {
                json: options.json,
                destination: destination.clone(),
            },
        )?),
        None => None,
    };
    if options.json {
        let mut report = json!({
            "channel": scan.channel,
            "verdict": verdict_name(verdict),
            "segments_checked": scan.segments.len(),
            "records_valid": records,
            "checkpoints": checkpoints_json(&scan),
            "problems": problems.iter().map(problem_json).collect::<Vec<Value>>(),
        });
        if let Some((value, _, _)) = &salvage_value {
            report["salvage"] = value.clone();
        }
        write_json(out, &report)?;
    } else {
        writeln!(
            out,
            "channel {}: {} segments, {} valid records, {} checkpoint slots checked",
            scan.channel,
            scan.segments.len(),
            records,
            scan.checkpoints.len()
        )?;
        if problems.is_empty() {
            writeln!(out, "no problems found")?;
        } else {
            let mut rows = table(&["severity", "kind", "file", "offset", "what is wrong"]);
            for problem in &problems {
                rows.add_row(vec![
                    problem.severity.as_str().to_string(),
                    problem.kind.to_string(),
                    display_path(&problem.file),
                    problem
                        .offset
                        .map_or("-".into(), |offset| offset.to_string()),
                    problem.detail.clone(),
                ]);
            }
            writeln!(out, "{rows}")?;
            writeln!(out, "verdict: {}", verdict_text(verdict))?;
        }
        if let Some((_, text, _)) = &salvage_value {
            write!(out, "{text}")?;
        }
    }
    Ok(salvage_value.map_or(code, |(_, _, salvage_code)| code.max(salvage_code)))
}

fn verdict_name(verdict: Verdict) -> &'static str {
    match verdict {
        Verdict::Clean => "clean",
        Verdict::RepairsItself => "repairs-itself",
        Verdict::Damaged => "damaged",
    }
}

fn verdict_text(verdict: Verdict) -> &'static str {
    match verdict {
        Verdict::Clean => "clean",
        Verdict::RepairsItself => "a restart repairs these by itself (warnings only)",
        Verdict::Damaged => "damaged: the channel will not start; `channelctl verify --salvage DIR` keeps what is readable",
    }
}

pub(crate) fn problem_json(problem: &Problem) -> Value {
    json!({
        "severity": problem.severity.as_str(),
        "kind": problem.kind,
        "file": display_path(&problem.file),
        "offset": problem.offset,
        "detail": problem.detail,
    })
}
