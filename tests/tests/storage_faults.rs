//! A real channeld whose files are interfered with: its directories removed under it, a
//! file in the way of its next segment; and the permissions of the files it (and
//! `channelctl`, offline) creates.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use millrace_e2e::{
    binaries, file_channels_config, successful_lines, wait_until, ChildGuard, Server, ServerSetup,
    AGENT, CHANNELCTL_TIMEOUT,
};
use serde_json::Value;

/// Longest wait for channeld's once-a-second background check to notice a removal.
const DETECTION_DEADLINE: Duration = Duration::from_secs(30);
/// The umask the permission tests run channeld and channelctl with: the usual one, which
/// leaves files 0644 and directories 0755 unless the program asks for less.
const PERMISSIVE_UMASK: &str = "022";
/// A small `maxFileSize`, so that a few events roll a segment.
const SMALL_SEGMENT_BYTES: u64 = 4096;

/// `sh` arguments that set the umask and then run the program that follows.
fn with_umask() -> Vec<String> {
    vec![
        "sh".to_string(),
        "-c".to_string(),
        format!("umask {PERMISSIVE_UMASK} && exec \"$0\" \"$@\""),
    ]
}

/// Runs `channelctl` offline in the server's directory (where the configuration's relative
/// paths lead), under the permissive umask.
fn channelctl_offline(server: &Server, args: &[&str]) -> Output {
    let wrapper = with_umask();
    let child = Command::new(&wrapper[0])
        .args(&wrapper[1..])
        .arg(&binaries().channelctl)
        .args(args)
        .current_dir(server.directory())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("channelctl starts");
    ChildGuard(Some(child)).wait_with_output(CHANNELCTL_TIMEOUT)
}

fn channel_metrics(server: &Server, channel: &str) -> Value {
    let (status, metrics) = server.http_json("/metrics");
    assert_eq!(status, 200);
    metrics[format!("CHANNEL.{channel}")].clone()
}

/// Waits until `/health` is 503, then returns the channel's reason.
fn unhealthy_reason(server: &Server, channel: &str) -> String {
    let unhealthy = wait_until(DETECTION_DEADLINE, || {
        server.http_get("/health").status == 503
    });
    let (status, health) = server.http_json("/health");
    assert!(
        unhealthy && status == 503,
        "/health stayed {status}: {health}"
    );
    assert_eq!(
        health["channels"][channel]["state"], "unhealthy",
        "{health}"
    );
    health["channels"][channel]["reason"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

#[test]
fn a_put_after_the_channels_directories_are_deleted_is_refused_counted_and_health_names_them() {
    let server = Server::start(ServerSetup::with_config(file_channels_config(&["c1"], "")));
    let accepted = server.channelctl("put", &["--channel", "c1"], b"before\n");
    assert_eq!(successful_lines(&accepted), ["committed 1"]);
    let checkpoint_dir = server.directory().join("c1/checkpoint");
    let data_dir = server.directory().join("c1/data");
    std::fs::remove_dir_all(&checkpoint_dir).unwrap();
    std::fs::remove_dir_all(&data_dir).unwrap();

    // The channel notices without a commit, within its once-a-second check.
    let reason = unhealthy_reason(&server, "c1");
    assert!(
        reason.contains("was removed or replaced while the channel was running")
            && (reason.contains("c1/checkpoint") || reason.contains("c1/data")),
        "the reason names the directory: {reason}"
    );

    let refused = server.channelctl("put", &["--channel", "c1"], b"after\n");
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        !refused.status.success() && refused.stdout.is_empty(),
        "the put was acknowledged: {}{stderr}",
        String::from_utf8_lossy(&refused.stdout)
    );
    assert!(
        stderr.contains("CHANNEL_UNHEALTHY") && stderr.contains("removed or replaced"),
        "{stderr}"
    );
    let metrics = channel_metrics(&server, "c1");
    let put_errors: u64 = metrics["EventPutErrorCount"]
        .as_str()
        .and_then(|count| count.parse().ok())
        .expect("EventPutErrorCount");
    assert!(put_errors >= 1, "{metrics}");
    assert_eq!(metrics["EventPutSuccessCount"], "1", "{metrics}");
    assert_eq!(metrics["Unhealthy"], "1", "{metrics}");
    let (status, health) = server.http_json("/health");
    assert_eq!(status, 503, "{health}");
    let reasons = health["reasons"].to_string();
    assert!(reasons.contains("channel 'c1' is unhealthy"), "{reasons}");
}

#[test]
fn a_put_into_a_deleted_data_directory_before_any_background_check_is_not_acknowledged() {
    let server = Server::start(ServerSetup::with_config(file_channels_config(&["c1"], "")));
    assert_eq!(
        successful_lines(&server.channelctl("put", &["--channel", "c1"], b"before\n")),
        ["committed 1"]
    );
    // Removed and put at once: the commit is checked before its acknowledgement, whether
    // or not the background check has run yet.
    std::fs::remove_dir_all(server.directory().join("c1/data")).unwrap();
    let refused = server.channelctl("put", &["--channel", "c1"], b"after\n");
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success(), "acknowledged: {stderr}");
    assert!(
        stderr.contains("CHANNEL_UNHEALTHY") && stderr.contains("c1/data"),
        "{stderr}"
    );
    assert_ne!(channel_metrics(&server, "c1")["EventPutErrorCount"], "0");
    assert!(unhealthy_reason(&server, "c1").contains("data directory"));
}

#[test]
fn a_file_in_the_way_of_the_next_segment_fails_the_channel_and_health_says_so() {
    let config = file_channels_config(
        &["c1"],
        &format!("{AGENT}.channels.c1.maxFileSize = {SMALL_SEGMENT_BYTES}\n"),
    );
    let server = Server::start(ServerSetup::with_config(config));
    let body = "x".repeat(1000);
    let batch = format!("{body}\n{body}\n");
    assert!(server
        .channelctl("put", &["--channel", "c1"], batch.as_bytes())
        .status
        .success());
    let data_dir = server.directory().join("c1/data");
    let newest = newest_segment_id(&data_dir);
    let intruder = data_dir.join(format!("segment-{:010}.log", newest + 1));
    std::fs::write(&intruder, b"not channeld's").unwrap();
    // Enough to fill the segment and need the next one.
    let mut refusal = None;
    for _ in 0..4 {
        let put = server.channelctl("put", &["--channel", "c1"], batch.as_bytes());
        if !put.status.success() {
            refusal = Some(String::from_utf8_lossy(&put.stderr).into_owned());
            break;
        }
    }
    let refusal = refusal.expect("a put needed the segment in the way");
    assert!(
        refusal.contains("CHANNEL_UNHEALTHY")
            && refusal.contains("create of")
            && refusal.contains("File exists"),
        "{refusal}"
    );
    // The code and the health report agree: the channel has failed, and says why.
    let reason = unhealthy_reason(&server, "c1");
    assert!(
        reason.contains(&intruder.display().to_string()) || reason.contains("segment-"),
        "{reason}"
    );
    assert!(reason.contains("File exists"), "{reason}");
    assert_eq!(channel_metrics(&server, "c1")["Unhealthy"], "1");
    assert_eq!(std::fs::read(&intruder).unwrap(), b"not channeld's");
}

fn newest_segment_id(data_dir: &Path) -> u32 {
    std::fs::read_dir(data_dir)
        .unwrap()
        .filter_map(|entry| {
            let name = entry.ok()?.file_name().to_string_lossy().into_owned();
            name.strip_prefix("segment-")?
                .strip_suffix(".log")?
                .parse()
                .ok()
        })
        .max()
        .expect("a segment")
}

/// Every file and directory under `root` (itself included) with its permission bits.
fn modes_under(root: &Path) -> Vec<(PathBuf, bool, u32)> {
    let mut found = Vec::new();
    let mut pending = vec![root.to_path_buf()];
    while let Some(path) = pending.pop() {
        let metadata = std::fs::symlink_metadata(&path).unwrap();
        if metadata.is_dir() {
            pending.extend(
                std::fs::read_dir(&path)
                    .unwrap()
                    .map(|entry| entry.unwrap().path()),
            );
        }
        found.push((
            path,
            metadata.is_dir(),
            metadata.permissions().mode() & 0o7777,
        ));
    }
    found
}

/// Checks every file under `root` has `file_mode` and every directory `dir_mode`; returns
/// how many files there are.
fn assert_modes(root: &Path, file_mode: u32, dir_mode: u32) -> usize {
    let found = modes_under(root);
    let wrong: Vec<String> = found
        .iter()
        .filter(|(_, is_dir, mode)| *mode != if *is_dir { dir_mode } else { file_mode })
        .map(|(path, _, mode)| format!("{} {mode:04o}", path.display()))
        .collect();
    assert!(
        wrong.is_empty(),
        "expected files {file_mode:04o} and directories {dir_mode:04o}: {wrong:?}"
    );
    found.iter().filter(|(_, is_dir, _)| !is_dir).count()
}

#[test]
fn files_holding_events_are_private_by_default_even_under_a_permissive_umask() {
    let config = file_channels_config(
        &["c1"],
        &format!(
            "{AGENT}.channels.c1.useDualCheckpoints = true\n\
             {AGENT}.channels.c1.backupCheckpointDir = c1/backup\n\
             {AGENT}.channels.c1.maxFileSize = {SMALL_SEGMENT_BYTES}\n\
             {AGENT}.channels.c1.retentionTime = 3600000\n"
        ),
    );
    let mut server = Server::start(ServerSetup::with_config(config).wrapped_in(&with_umask()));
    let bodies: String = (0..20)
        .map(|index| format!("event-{index:04}-{}\n", "x".repeat(400)))
        .collect();
    assert!(server
        .channelctl("put", &["--channel", "c1"], bodies.as_bytes())
        .status
        .success());
    successful_lines(&server.channelctl("take", &["--channel", "c1", "--max", "5"], b""));
    successful_lines(&server.channelctl("checkpoint", &["--channel", "c1"], b""));
    assert_eq!(server.stop_with_sigterm().code(), Some(0));
    let channel_root = server.directory().join("c1");
    let files = assert_modes(&channel_root, 0o600, 0o700);
    assert!(files >= 6, "segments, checkpoints and lock files: {files}");

    // channelctl, offline: a rebuilt checkpoint, a replay, a salvaged copy.
    let from_config = ["-f", "agent.conf", "-n", AGENT, "--channel", "c1"];
    for (subcommand, extra) in [
        ("checkpoint", vec![]),
        ("replay", vec!["--from-id", "1", "--execute"]),
        ("verify", vec!["--salvage", "salvaged"]),
    ] {
        let mut args = vec![subcommand];
        args.extend_from_slice(&from_config);
        args.extend(extra);
        let output = channelctl_offline(&server, &args);
        assert!(
            output.status.success(),
            "channelctl {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    assert_modes(&channel_root, 0o600, 0o700);
    let salvaged = assert_modes(&server.directory().join("salvaged"), 0o600, 0o700);
    assert!(salvaged >= 3, "the salvaged channel's files: {salvaged}");
}

#[test]
fn file_mode_loosens_what_the_channel_creates_for_a_group() {
    let config = file_channels_config(&["c1"], &format!("{AGENT}.channels.c1.fileMode = 0640\n"));
    let mut server = Server::start(ServerSetup::with_config(config).wrapped_in(&with_umask()));
    assert!(server
        .channelctl("put", &["--channel", "c1"], b"shared with the group\n")
        .status
        .success());
    assert_eq!(server.stop_with_sigterm().code(), Some(0));
    assert_modes(&server.directory().join("c1"), 0o640, 0o750);
}
