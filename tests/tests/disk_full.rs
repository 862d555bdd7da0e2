//! A real channeld on a small real filesystem that fills up under load.
//!
//! The filesystem is a small tmpfs (`TMPFS_SIZE_BYTES`) mounted in a private mount
//! namespace, held open by a small holder process; channeld enters that namespace with
//! `nsenter`, so a restart finds the same files, and the test reaches them through
//! `/proc/<holder>/root`. A ballast file (`BALLAST_BYTES`) stands for "something else on
//! the disk". The test checks:
//! - two producers fill the disk until their puts are refused with `INSUFFICIENT_SPACE`,
//!   naming the directory, the usable and the required bytes, and the channel does not
//!   fail (`/health` says `open` or `read-only`); meanwhile the filesystem's usable space
//!   never falls below the guard by more than the checkpoints' headroom (accepted puts
//!   and the segment space reserved for them stay above it);
//! - takes and their commits keep working meanwhile;
//! - when something else then takes the last free bytes, puts are still refused with the
//!   space error and the channel still does not fail;
//! - once the ballast is deleted, puts are accepted again without a restart;
//! - no empty (preallocated, never written) segment is ever left in the data directory,
//!   and recovery after a `kill -9` finds none to remove;
//! - after the restart every acknowledged event is delivered exactly once, and no refused
//!   event ever is.
//!
//! The engine's own tests cover the guard's arithmetic on a simulated disk and on a tmpfs
//! (`engine/tests/checkpoints.rs`); this one goes through the protocol, the server's
//! error mapping and health report, and a restart of the binary.
//!
//! Skipped, with one line saying what is missing, where a private mount namespace or a
//! tmpfs mount is not allowed (not root, no `unshare`/`nsenter`); with `CI=true` that is
//! a failure (`millrace_e2e::prerequisites`). The strace test skips (or fails) alike
//! without a working `strace`.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use millrace_client::{Client, ClientOptions};
use millrace_e2e::{
    drain_channel, events_with_bodies, file_channels_config, require, running_as_root,
    strace_wrapper, tool_on_path, wait_until, Missing, Server, ServerSetup, AGENT,
};
use millrace_protocol::{fields, ErrorCode};

/// What the channel's files (data and checkpoints, guard included) can take before the
/// ballast is deleted.
const CHANNEL_ROOM_BYTES: u64 = 6 * 1024 * 1024;
const TMPFS_SIZE_BYTES: u64 = CHANNEL_ROOM_BYTES + BALLAST_BYTES;
/// The guard (Flume's `minimumRequiredSpace`, at its 1 MiB floor).
const MINIMUM_REQUIRED_SPACE_BYTES: u64 = 1024 * 1024;
const SEGMENT_BYTES: u64 = 1024 * 1024;
/// Deleted to free space: enough for the guard, the next segment's reservation (a roll
/// reserves up to a whole segment at once, as far as the guard leaves room) and a segment
/// of puts after it, so puts plainly resume rather than refill to the guard at once.
const BALLAST_BYTES: u64 = MINIMUM_REQUIRED_SPACE_BYTES + 2 * SEGMENT_BYTES;
const EVENT_BODY_BYTES: usize = 1_000;
/// Bytes a checkpoint spends per queued event (one event pointer).
const CHECKPOINT_BYTES_PER_EVENT: u64 = 12;
/// How far below the guard usable space may go while puts are accepted: checkpoints are
/// written below the guard too (its margin is their headroom), a new one beside the old
/// one until the rename, each holding at most every event the channel has room for. Puts
/// and the segment space reserved for them take nothing from it.
const CHECKPOINT_HEADROOM_BYTES: u64 =
    2 * (CHANNEL_ROOM_BYTES / EVENT_BODY_BYTES as u64) * CHECKPOINT_BYTES_PER_EVENT;
const MAX_BATCH_EVENTS: usize = 20;
const PRODUCERS: usize = 2;
/// Refusals each producer must have seen before the disk counts as full.
const REFUSALS_PER_PRODUCER_WHEN_FULL: usize = 3;
/// Take transactions run while puts are refused, and events per take.
const TAKES_WHILE_FULL: usize = 5;
const EVENTS_PER_TAKE: u32 = 100;
/// Longest wait for the disk to fill, and for puts to resume once space is freed.
const PHASE_DEADLINE: Duration = Duration::from_secs(90);
/// Pause after a refused put before the next.
const RETRY_PAUSE: Duration = Duration::from_millis(20);
/// Where `unshare` and `nsenter` come from.
const UTIL_LINUX_HOW_TO_GET: &str = "apt-get install util-linux";
/// What lets root mount a tmpfs in a private mount namespace.
const MOUNT_NAMESPACE_HOW_TO_GET: &str =
    "run as root on a host or in a container allowed to mount (docker run --privileged)";

/// A tmpfs mounted in a private mount namespace, which lives as long as its holder
/// process (a `cat` reading a pipe this test holds, so it also ends if the test dies).
struct PrivateTmpfs {
    holder: Child,
    mount_point: tempfile::TempDir,
}

impl PrivateTmpfs {
    /// Mounts one of `size_bytes`, or says what this machine lacks to do it.
    fn mount(size_bytes: u64) -> Result<PrivateTmpfs, Missing> {
        running_as_root("mount a tmpfs in a private mount namespace")?;
        let unshare = tool_on_path("unshare", UTIL_LINUX_HOW_TO_GET)?;
        let nsenter = tool_on_path("nsenter", UTIL_LINUX_HOW_TO_GET)?;
        let cannot_mount = |problem: String| {
            Missing::new(
                format!("a tmpfs mount in a private mount namespace ({problem})"),
                MOUNT_NAMESPACE_HOW_TO_GET,
            )
        };
        let mount_point = tempfile::Builder::new()
            .prefix("millrace-e2e-tmpfs-")
            .tempdir()
            .expect("a temporary directory for the mount point");
        let script =
            "mount -t tmpfs -o size=\"$1\" millrace-e2e \"$0\" && echo mounted && exec cat";
        let mut holder = Command::new(unshare)
            .args(["--mount", "--propagation", "private", "sh", "-c", script])
            .arg(mount_point.path())
            .arg(size_bytes.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|error| cannot_mount(format!("unshare does not run: {error}")))?;
        let mut first_line = String::new();
        let _ = BufReader::new(holder.stdout.take().expect("stdout")).read_line(&mut first_line);
        if first_line.trim() != "mounted" {
            drop(holder.stdin.take());
            let output = holder.wait_with_output().expect("the holder exits");
            return Err(cannot_mount(
                String::from_utf8_lossy(&output.stderr).trim().to_string(),
            ));
        }
        let tmpfs = PrivateTmpfs {
            holder,
            mount_point,
        };
        // nsenter must work too, or channeld cannot get in.
        let probe = Command::new(nsenter)
            .args(tmpfs.enter_wrapper())
            .args(["test", "-d"])
            .arg(tmpfs.path())
            .output();
        match probe {
            Ok(output) if output.status.success() => Ok(tmpfs),
            Ok(output) => Err(cannot_mount(format!(
                "nsenter cannot enter it: {}",
                String::from_utf8_lossy(&output.stderr).trim()
            ))),
            Err(error) => Err(cannot_mount(format!("nsenter does not run: {error}"))),
        }
    }

    /// The mount point, as processes inside the namespace see it.
    fn path(&self) -> &Path {
        self.mount_point.path()
    }

    /// A path inside the tmpfs, reachable from outside the namespace.
    fn outside_path(&self, relative: &str) -> PathBuf {
        let inside = self.path().join(relative);
        PathBuf::from(format!("/proc/{}/root", self.holder.id()))
            .join(inside.strip_prefix("/").expect("an absolute path"))
    }

    /// `nsenter`'s arguments (without the program name) to run a program inside, in the
    /// current directory (without `--wd=.` nsenter would start it in `/`).
    fn enter_wrapper(&self) -> Vec<String> {
        vec![
            format!("--mount=/proc/{}/ns/mnt", self.holder.id()),
            "--wd=.".to_string(),
            "--".to_string(),
        ]
    }
}

impl Drop for PrivateTmpfs {
    fn drop(&mut self) {
        drop(self.holder.stdin.take());
        let _ = self.holder.kill();
        let _ = self.holder.wait();
    }
}

#[derive(Default)]
struct ProducerLog {
    acknowledged: Vec<String>,
    refused_for_space: Vec<String>,
    /// Refusals with `INSUFFICIENT_SPACE`.
    space_refusals: usize,
    /// The first such refusal's message and its available/required fields.
    first_space_refusal: Option<(String, Option<u64>, Option<u64>)>,
    /// Puts that failed any other way (their events were not committed either).
    other_failures: Vec<String>,
    refused_for_other_reasons: Vec<String>,
    acknowledged_after_space_freed: usize,
}

struct Phases {
    space_freed: AtomicBool,
    stop: AtomicBool,
}

fn body(producer: usize, sequence: u64) -> String {
    let mut body = format!("p{producer}-{sequence:08}-");
    body.extend(std::iter::repeat_n('x', EVENT_BODY_BYTES - body.len()));
    body
}

async fn producer(address: String, id: usize, phases: Arc<Phases>, log: Arc<Mutex<ProducerLog>>) {
    let mut client = Client::connect(ClientOptions::new(address))
        .await
        .expect("connect to channeld");
    let mut sequence = 0u64;
    while !phases.stop.load(Ordering::SeqCst) {
        let space_freed = phases.space_freed.load(Ordering::SeqCst);
        let batch_events = 1 + (sequence as usize * 7 + id) % MAX_BATCH_EVENTS;
        let bodies: Vec<String> = (0..batch_events)
            .map(|_| {
                sequence += 1;
                body(id, sequence)
            })
            .collect();
        let events = events_with_bodies(&bodies);
        let result = client.put_and_commit("c1", &events).await;
        let reconnect = {
            let mut log = log.lock().unwrap();
            match result {
                Ok(()) => {
                    log.acknowledged.extend(bodies);
                    if space_freed {
                        log.acknowledged_after_space_freed += 1;
                    }
                    continue;
                }
                Err(error) if error.code() == Some(ErrorCode::InsufficientSpace) => {
                    log.space_refusals += 1;
                    if log.first_space_refusal.is_none() {
                        let response = error.server_error().expect("a server error");
                        log.first_space_refusal = Some((
                            error.to_string(),
                            response.field(fields::AVAILABLE_BYTES),
                            response.field(fields::REQUIRED_BYTES),
                        ));
                    }
                    log.refused_for_space.extend(bodies);
                    false
                }
                Err(error) => {
                    log.other_failures.push(error.to_string());
                    log.refused_for_other_reasons.extend(bodies);
                    error.breaks_connection()
                }
            }
        };
        if reconnect {
            client.reconnect().await.expect("reconnect to channeld");
        }
        tokio::time::sleep(RETRY_PAUSE).await;
    }
}

async fn take_and_commit(client: &mut Client, max_events: u32) -> Vec<String> {
    client.begin("c1").await.expect("begin a take");
    let events = client
        .take(max_events, Duration::from_millis(200))
        .await
        .expect("take below the space guard");
    client
        .commit()
        .await
        .expect("commit a take below the guard");
    events
        .into_iter()
        .map(|event| String::from_utf8(event.body.to_vec()).unwrap())
        .collect()
}

/// Segment files in the data directory with no bytes at all.
fn empty_segments(data_dir: &Path) -> Vec<String> {
    std::fs::read_dir(data_dir)
        .expect("list the data directory")
        .filter_map(|entry| entry.ok())
        .filter(|entry| entry.file_name().to_string_lossy().starts_with("segment-"))
        .filter(|entry| {
            entry
                .metadata()
                .map(|meta| meta.len() == 0)
                .unwrap_or(false)
        })
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .collect()
}

/// Kills channeld with SIGKILL and starts it again (with its setup as it is now); checks
/// that the channel opens (perhaps read-only, on a disk still short) and that recovery
/// found no unfinished segment to remove; takes and commits everything; returns the
/// bodies in delivery order.
fn crash_restart_and_drain(server: &mut Server, runtime: &tokio::runtime::Runtime) -> Vec<String> {
    server.kill_9();
    server.restart();
    serving_state(server, "the channel opens after the restart");
    let (_, health) = server.http_json("/health");
    assert_eq!(
        health["channels"]["c1"]["recovery"]["removed_unfinished_segments"],
        serde_json::json!([]),
        "recovery found an unfinished segment: {health}"
    );
    runtime.block_on(async {
        let mut client = Client::connect(ClientOptions::new(server.protocol_address()))
            .await
            .unwrap();
        drain_channel(&mut client, "c1", EVENTS_PER_TAKE).await
    })
}

/// The channel's `/health` state, after checking it is `open` or `read-only` (serving,
/// not failed).
fn serving_state(server: &Server, expectation: &str) -> String {
    let (_, health) = server.http_json("/health");
    let state = health["channels"]["c1"]["state"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        state == "open" || state == "read-only",
        "{expectation}: {health}"
    );
    state
}

fn assert_no_empty_segments(data_dir: &Path) {
    let empty = empty_segments(data_dir);
    assert!(
        empty.is_empty(),
        "empty segments left in the data directory: {empty:?}"
    );
}

fn fill_to_the_last_byte(path: &Path) -> u64 {
    let mut file = std::fs::File::create(path).expect("create the filler");
    let chunk = vec![0x5a; 4096];
    let mut written = 0u64;
    loop {
        match file.write(&chunk) {
            Ok(0) | Err(_) => break,
            Ok(bytes) => written += bytes as u64,
        }
    }
    let _ = file.sync_all();
    written
}

fn total_refusals(logs: &[Arc<Mutex<ProducerLog>>]) -> usize {
    logs.iter()
        .map(|log| {
            let log = log.lock().unwrap();
            log.space_refusals + log.other_failures.len()
        })
        .sum()
}

/// The tmpfs's usable bytes (`f_bavail × f_frsize`), as the space guard reads them.
fn usable_bytes(tmpfs: &PrivateTmpfs) -> u64 {
    let stats = rustix::fs::statvfs(tmpfs.outside_path("")).expect("statvfs of the tmpfs");
    stats.f_bavail * stats.f_frsize
}

fn directory_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|entry| entry.ok()?.metadata().ok())
                .map(|meta| meta.len())
                .sum()
        })
        .unwrap_or(0)
}

#[test]
fn a_filling_disk_refuses_puts_keeps_takes_and_resumes_when_space_is_freed() {
    let Some(tmpfs) = require(PrivateTmpfs::mount(TMPFS_SIZE_BYTES)) else {
        return;
    };
    let ballast = tmpfs.outside_path("ballast");
    std::fs::File::create(&ballast)
        .and_then(|mut file| file.write_all(&vec![0xa5; BALLAST_BYTES as usize]))
        .expect("write the ballast file");
    let data_dir = tmpfs.outside_path("data");
    let root = tmpfs.path().display().to_string();
    let config = format!(
        "{AGENT}.channels = c1\n\
         {AGENT}.channels.c1.type = file\n\
         {AGENT}.channels.c1.checkpointDir = {root}/checkpoint\n\
         {AGENT}.channels.c1.dataDirs = {root}/data\n\
         {AGENT}.channels.c1.capacity = 20000\n\
         {AGENT}.channels.c1.transactionCapacity = {EVENTS_PER_TAKE}\n\
         {AGENT}.channels.c1.maxFileSize = {SEGMENT_BYTES}\n\
         {AGENT}.channels.c1.minimumRequiredSpace = {MINIMUM_REQUIRED_SPACE_BYTES}\n\
         {AGENT}.channels.c1.checkpointInterval = 1000\n"
    );
    let mut wrapper = vec!["nsenter".to_string()];
    wrapper.extend(tmpfs.enter_wrapper());
    let mut server = Server::start(ServerSetup::with_config(config).wrapped_in(&wrapper));

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let phases = Arc::new(Phases {
        space_freed: AtomicBool::new(false),
        stop: AtomicBool::new(false),
    });
    let logs: Vec<Arc<Mutex<ProducerLog>>> = (0..PRODUCERS).map(|_| Arc::default()).collect();
    let producers: Vec<_> = logs
        .iter()
        .enumerate()
        .map(|(id, log)| {
            runtime.spawn(producer(
                server.protocol_address().to_string(),
                id,
                Arc::clone(&phases),
                Arc::clone(log),
            ))
        })
        .collect();
    let stop_producers = |phases: &Phases| phases.stop.store(true, Ordering::SeqCst);
    let figures = |logs: &[Arc<Mutex<ProducerLog>>]| {
        logs.iter()
            .map(|log| {
                let log = log.lock().unwrap();
                format!(
                    "[acknowledged {}, space refusals {}, other failures {:?}]",
                    log.acknowledged.len(),
                    log.space_refusals,
                    log.other_failures.first()
                )
            })
            .collect::<Vec<_>>()
            .join(" ")
    };

    // 1. The disk fills: puts refused with the space error. The filesystem's usable space
    //    is sampled all along: accepted puts (and the segment space reserved for them) must
    //    never take it below the guard.
    let mut lowest_usable_bytes = u64::MAX;
    let full = wait_until(PHASE_DEADLINE, || {
        lowest_usable_bytes = lowest_usable_bytes.min(usable_bytes(&tmpfs));
        logs.iter()
            .all(|log| log.lock().unwrap().space_refusals >= REFUSALS_PER_PRODUCER_WHEN_FULL)
    });
    lowest_usable_bytes = lowest_usable_bytes.min(usable_bytes(&tmpfs));
    if !full {
        stop_producers(&phases);
        panic!(
            "puts were not refused for space within {PHASE_DEADLINE:?}: {}\nchanneld:\n{}",
            figures(&logs),
            server.stderr()
        );
    }
    assert!(
        lowest_usable_bytes + CHECKPOINT_HEADROOM_BYTES >= MINIMUM_REQUIRED_SPACE_BYTES,
        "accepted puts took usable space to {lowest_usable_bytes} bytes, more than \
         {CHECKPOINT_HEADROOM_BYTES} bytes (the checkpoints' headroom) below the guard of \
         {MINIMUM_REQUIRED_SPACE_BYTES}"
    );
    let acknowledged_when_full: usize = logs
        .iter()
        .map(|log| log.lock().unwrap().acknowledged.len())
        .sum();
    let data_bytes_when_full = directory_bytes(&data_dir);
    let (first_refusal, available_bytes, required_bytes) = logs[0]
        .lock()
        .unwrap()
        .first_space_refusal
        .clone()
        .expect("a space refusal");
    assert!(
        first_refusal.contains(&format!("{root}/")),
        "the refusal names the directory: {first_refusal}"
    );
    let available_bytes = available_bytes.expect("the refusal carries the usable bytes");
    let required_bytes = required_bytes.expect("the refusal carries the required bytes");
    assert!(
        available_bytes < required_bytes && required_bytes >= MINIMUM_REQUIRED_SPACE_BYTES,
        "usable {available_bytes} bytes, required {required_bytes}: {first_refusal}"
    );
    // Accepted puts never take the usable space below the guard, so the channel may still
    // call itself `open` (a small enough put would fit); it must not have failed.
    let state_when_full = serving_state(&server, "a full disk does not fail the channel");
    assert_no_empty_segments(&data_dir);

    // 2. Takes and their commits keep working while puts are refused.
    let mut taken = Vec::new();
    runtime.block_on(async {
        let mut client = Client::connect(ClientOptions::new(server.protocol_address()))
            .await
            .unwrap();
        for _ in 0..TAKES_WHILE_FULL {
            taken.extend(take_and_commit(&mut client, EVENTS_PER_TAKE).await);
        }
    });
    assert_eq!(
        taken.len(),
        TAKES_WHILE_FULL * EVENTS_PER_TAKE as usize,
        "every take below the guard returned a full batch"
    );

    // 3. Something else takes the last free bytes: puts are still refused with the space
    //    error (the guard's, or ENOSPC from the writer), and the channel does not fail.
    let filler = tmpfs.outside_path("filler");
    let filler_bytes = fill_to_the_last_byte(&filler);
    let refusals_before_filler = total_refusals(&logs);
    let refused_after_filler = wait_until(PHASE_DEADLINE, || {
        total_refusals(&logs)
            >= refusals_before_filler + PRODUCERS * REFUSALS_PER_PRODUCER_WHEN_FULL
    });
    if !refused_after_filler {
        stop_producers(&phases);
        panic!(
            "puts were not refused on a disk with no free byte: {}\nchanneld:\n{}",
            figures(&logs),
            server.stderr()
        );
    }
    let state_when_filled = serving_state(
        &server,
        "a disk filled by someone else does not fail the channel",
    );
    assert_no_empty_segments(&data_dir);

    // 4. Space is freed by someone else: puts are accepted again, without a restart.
    std::fs::remove_file(&filler).expect("delete the filler");
    std::fs::remove_file(&ballast).expect("delete the ballast");
    phases.space_freed.store(true, Ordering::SeqCst);
    let resumed = wait_until(PHASE_DEADLINE, || {
        logs.iter()
            .all(|log| log.lock().unwrap().acknowledged_after_space_freed > 0)
    });
    stop_producers(&phases);
    for task in producers {
        runtime.block_on(task).unwrap();
    }
    assert!(
        resumed,
        "puts were not accepted within {PHASE_DEADLINE:?} of freeing {BALLAST_BYTES} bytes: {}\n\
         channeld:\n{}",
        figures(&logs),
        server.stderr()
    );
    assert_no_empty_segments(&data_dir);

    // 5. A crash and a restart lose nothing acknowledged and bring back nothing refused.
    let drained = crash_restart_and_drain(&mut server, &runtime);

    let mut delivery_counts: HashMap<&str, u64> = HashMap::new();
    for body in taken.iter().chain(&drained) {
        *delivery_counts.entry(body.as_str()).or_default() += 1;
    }
    let logs: Vec<ProducerLog> = logs
        .into_iter()
        .map(|log| Arc::try_unwrap(log).ok().unwrap().into_inner().unwrap())
        .collect();
    let short = |body: &str| body.trim_end_matches('x').to_string();
    let lost: Vec<String> = logs
        .iter()
        .flat_map(|log| &log.acknowledged)
        .filter(|body| !delivery_counts.contains_key(body.as_str()))
        .map(|body| short(body))
        .collect();
    let refused_but_delivered: Vec<String> = logs
        .iter()
        .flat_map(|log| {
            log.refused_for_space
                .iter()
                .chain(&log.refused_for_other_reasons)
        })
        .filter(|body| delivery_counts.contains_key(body.as_str()))
        .map(|body| short(body))
        .collect();
    let duplicated: Vec<String> = delivery_counts
        .iter()
        .filter(|(_, count)| **count > 1)
        .map(|(body, _)| short(body))
        .collect();
    let acknowledged: usize = logs.iter().map(|log| log.acknowledged.len()).sum();
    let space_refusals: usize = logs.iter().map(|log| log.space_refusals).sum();
    let other_failures: Vec<&String> = logs.iter().flat_map(|log| &log.other_failures).collect();
    println!(
        "disk full ({} MiB tmpfs, {} MiB ballast, guard {} bytes): {acknowledged_when_full} \
         events acknowledged when puts were first refused (data dir {} bytes), first refusal \
         usable {available_bytes} / required {required_bytes} bytes, lowest usable while \
         filling {lowest_usable_bytes} bytes, health {state_when_full}; \
         {space_refusals} put batches refused for space, {} refused otherwise; {} events taken below the guard; \
         puts resumed after the ballast was deleted; {acknowledged} events acknowledged in \
         all, {} delivered after the restart; lost {}, refused but delivered {}, duplicated \
         {}, empty segments 0; a {filler_bytes}-byte filler took the last free bytes, health \
         {state_when_filled}",
        TMPFS_SIZE_BYTES >> 20,
        BALLAST_BYTES >> 20,
        MINIMUM_REQUIRED_SPACE_BYTES,
        data_bytes_when_full,
        other_failures.len(),
        taken.len(),
        drained.len(),
        lost.len(),
        refused_but_delivered.len(),
        duplicated.len(),
    );
    assert!(
        other_failures.is_empty(),
        "puts refused otherwise than with INSUFFICIENT_SPACE: {other_failures:?}"
    );
    assert!(lost.is_empty(), "lost {:?}", &lost[..lost.len().min(10)]);
    assert!(
        refused_but_delivered.is_empty(),
        "refused events were delivered: {refused_but_delivered:?}"
    );
    assert!(duplicated.is_empty(), "duplicated {duplicated:?}");
}

/// The fallocate calls that fail: the 1st reserves the first segment at startup, the 2nd
/// the first roll's segment; from the 3rd on, rolls and the writes after them meet ENOSPC
/// (a failed reservation is retried for just the bytes needed, which fails too).
const FIRST_FAILING_FALLOCATE: u64 = 3;
const LAST_FAILING_FALLOCATE: u64 = 8;
/// Small segments, so a few batches fill one and the next commit must roll.
const SMALL_SEGMENT_BYTES: u64 = 65_536;
const BATCHES_THROUGH_THE_FAULTS: usize = 40;
const EVENTS_PER_BATCH: usize = 10;

/// ENOSPC where a tmpfs would not produce it reliably: in the `fallocate` calls that
/// reserve a new segment at a roll and extend it (injected by strace). The commits that
/// meet it are refused with the retryable space error naming the file and the errno, no
/// empty segment is left, the channel keeps serving, and later commits succeed.
#[test]
fn enospc_from_fallocate_at_segment_rolls_is_a_retryable_space_refusal_that_loses_nothing() {
    let strace_log = tempfile::Builder::new()
        .prefix("millrace-e2e-strace-")
        .suffix(".log")
        .tempfile()
        .expect("a file for strace's output");
    let injection =
        format!("fallocate:error=ENOSPC:when={FIRST_FAILING_FALLOCATE}..{LAST_FAILING_FALLOCATE}");
    let Some(wrapper) = require(strace_wrapper(strace_log.path(), "fallocate", &injection)) else {
        return;
    };
    let config = file_channels_config(
        &["c1"],
        &format!("{AGENT}.channels.c1.maxFileSize = {SMALL_SEGMENT_BYTES}\n"),
    );
    let mut server = Server::start(ServerSetup::with_config(config).wrapped_in(&wrapper));
    let data_dir = server.directory().join("c1/data");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut acknowledged = Vec::new();
    let mut refused = Vec::new();
    let mut refusals = Vec::new();
    runtime.block_on(async {
        let mut client = Client::connect(ClientOptions::new(server.protocol_address()))
            .await
            .unwrap();
        let mut sequence = 0u64;
        for _ in 0..BATCHES_THROUGH_THE_FAULTS {
            let bodies: Vec<String> = (0..EVENTS_PER_BATCH)
                .map(|_| {
                    sequence += 1;
                    body(0, sequence)
                })
                .collect();
            let events = events_with_bodies(&bodies);
            match client.put_and_commit("c1", &events).await {
                Ok(()) => acknowledged.extend(bodies),
                Err(error) => {
                    refusals.push((error.code(), error.to_string()));
                    refused.extend(bodies);
                }
            }
        }
    });
    let strace_output = std::fs::read_to_string(strace_log.path()).unwrap_or_default();
    let injected = strace_output.matches("(INJECTED)").count();
    let state = serving_state(&server, "ENOSPC does not fail the channel");
    assert_eq!(
        injected as u64,
        LAST_FAILING_FALLOCATE - FIRST_FAILING_FALLOCATE + 1,
        "strace injected a different number of faults than asked:\n{strace_output}"
    );
    assert!(
        !refusals.is_empty() && refusals.len() <= injected,
        "{injected} failed reservations refused {} commits: {refusals:?}",
        refusals.len()
    );
    for (code, message) in &refusals {
        assert!(
            *code == Some(ErrorCode::InsufficientSpace)
                && message.contains("fallocate of")
                && message.contains("c1/data/segment-")
                && message.contains("os error 28"),
            "refused with the space error naming the operation, file and errno: {message}"
        );
    }
    assert_eq!(state, "open", "the guard saw enough space all along");
    assert_no_empty_segments(&data_dir);
    assert!(
        acknowledged.len() > refused.len(),
        "puts were accepted again after the faults"
    );

    server.setup_mut().wrapper.clear();
    let delivered = crash_restart_and_drain(&mut server, &runtime);
    println!(
        "ENOSPC at segment rolls (fallocate calls {FIRST_FAILING_FALLOCATE} to \
         {LAST_FAILING_FALLOCATE} failed under strace): {} batches refused with \
         INSUFFICIENT_SPACE, {} events acknowledged, {} delivered after kill -9 and restart, \
         empty segments 0",
        refusals.len(),
        acknowledged.len(),
        delivered.len()
    );
    assert_eq!(
        delivered, acknowledged,
        "after the restart exactly the acknowledged events come back, in order"
    );
}
