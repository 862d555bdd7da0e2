//! Power loss on real ext4 under the real channeld: every crash state that respects the
//! disk's flushes, recorded and replayed with outagefs (crate `outagefs`, over FUSE).
//!
//! outagefs's own `run-suite` runs a shell script for each step, serially, stops at the
//! first failure and exits 0 either way; this test drives the same steps (`mount
//! --record`, `gen-tests`, `mount --filter`) itself, two crash states at a time, and
//! keeps the model of the workload in memory.
//!
//! ## How a run goes
//!
//! 1. **Prepare.** A 16 MiB image is made with `mkfs.ext4 -m 0 -b 4096`: 4 KiB blocks as
//!    on a real disk, so that a torn write can split a block; no reserved blocks, since
//!    the test runs as root and root would write into them anyway.
//! 2. **Record.** `outagefs mount --record` shows the image as one file over FUSE and
//!    records every write and every flush that reaches it. The file is loop-mounted as
//!    ext4; channeld runs a file channel on it (two data dirs, dual checkpoints, 8 KiB
//!    segments, so the log rolls and old segments are deleted during the run); a client
//!    runs a seeded sequence of operations one at a time: put transactions (fused
//!    `PutCommit` and `Begin`/`Put`/`Commit`), takes of whole put transactions, put and
//!    take transactions that are rolled back, and checkpoints. After each acknowledged
//!    operation the client appends `acked N` to a marker file **on the same filesystem**
//!    and fsyncs it. At the end channeld is killed with SIGKILL and the filesystem is
//!    unmounted.
//! 3. **Crash states.** `outagefs gen-tests` lists them: every write before one flush, plus
//!    a subset of the writes between that flush and the next (all subsets when there are
//!    at most 2^`max_cases_log2`, else that many random ones). These are exactly the
//!    images a power cut can leave behind on a disk that honours flushes.
//! 4. **Verify** each state: `outagefs mount --filter` shows the image as the power cut
//!    left it (writes made while verifying are discarded); it is loop-mounted
//!    **read-write**, so ext4 replays its journal as it would after a real power cut (a
//!    `ro,noload` mount would show states no real restart sees), channeld starts on it and
//!    the channel is drained.
//!
//! ## What must hold
//!
//! The client runs one operation at a time and an operation is acknowledged only once it
//! is durable, so after any power cut the channel must hold **exactly the queue left by
//! the first j operations**, for some j at least the number the marker file proves (a
//! marker line is written only after its acknowledgement, so its presence proves the
//! operation was acknowledged). That single comparison covers every promise at once:
//! nothing marker-proven lost, nothing unexpected, every transaction all-or-nothing, no
//! acknowledged take delivered again, put-commit order kept. channeld must also start (no
//! panic), report the channel healthy, and take every event.
//!
//! Two more tests mutate the recording first (`outagefs mutate`):
//! - `--split-write`: every write may land in 2 KiB halves, any of them without the
//!   others (a disk whose atomic unit is smaller than ext4's block). Each half holds
//!   either the old or the new bytes, so everything synced survives, and the rule above
//!   holds unchanged: torn tails are fine, loss and corruption are not.
//! - `--split-write --zero-fill`: every write may also land as zeros first. Such a disk
//!   destroys bytes that were synced earlier when it rewrites their block (the log's
//!   last, partly filled block is rewritten at each commit): it breaks "powersafe
//!   overwrite", which SQLite and most logs assume and no append-only log that shares a
//!   block between two syncs can survive. There recovery may lose marker-proven work,
//!   but never silently: it must either report corruption (refuse the channel, or fail
//!   the take that reaches the damage) or report what it cut away (`/health`'s
//!   `truncated_tails`, or `removed_unfinished_segments`: a segment whose first block
//!   was zeroed looks exactly like one whose creation never finished); and it must never
//!   panic, nor deliver an unexpected, duplicated,
//!   reordered or partial transaction. The figures count each kind.
//!
//! A fourth test is the negative control: with `fsyncPerTransaction = false` (channeld
//! then acknowledges before syncing, as documented) some crash state must fail.
//!
//! ## Sizes and replay
//!
//! By default the plain test checks every crash state of one recording of
//! [`OPERATIONS_PER_ROUND`] operations (300–400 states), and each mutated test
//! [`DEFAULT_MUTATED_SAMPLE`] states of one recording, evenly spread over it.
//! `MILLRACE_POWER_LOSS_CASES=N` (the long form uses 1,000) makes each test check every
//! state of as many recordings as it takes to reach N. `MILLRACE_POWER_LOSS_SEED` fixes
//! the workloads (round r uses seed + r). A failure keeps the recording (base image and
//! changes) and prints the seed, the round, the outagefs filter string of the crash state
//! and the commands that mount it again.
//!
//! Skipped, with one line saying what is missing, where the test is not root, or
//! `/dev/fuse`, loop devices, `mkfs.ext4`, `losetup` or the `outagefs` binary are
//! missing; with `CI=true` that is a failure (`millrace_e2e::prerequisites`).

use std::collections::{HashMap, HashSet, VecDeque};
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant};

use millrace_client::{Client, ClientError, ClientOptions, Event};
use millrace_e2e::{
    require, running_as_root, tool_on_path, wait_until, Missing, Server, ServerSetup, AGENT,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const MIB: u64 = 1024 * 1024;
/// The ext4 image's size: room for the journal (4 MiB at this size), the channel and
/// channeld's 1 MiB space guard, and small enough that outagefs keeps it in memory.
const IMAGE_BYTES: u64 = 16 * MIB;
/// Crash states the plain test checks by default (at least: it checks every state of
/// each recording it makes; one recording has 300–400).
const DEFAULT_PLAIN_CASES: usize = 200;
/// The mutated tests check this many of one recording's states by default, spread
/// evenly over the run (a recording has 900–1,400 of them, and each takes ~70 ms).
const DEFAULT_MUTATED_SAMPLE: usize = 150;
/// The negative control stops at its first failure; it gives up after this many states.
const NEGATIVE_CONTROL_MAX_CASES: usize = 2_000;
/// Operations in one recorded workload.
const OPERATIONS_PER_ROUND: usize = 12;
/// `outagefs gen-tests --max-cases-log2`: at most 2^this crash states between two
/// flushes (all subsets of the writes there when they are fewer).
const MAX_CASES_LOG2: u32 = 5;
/// Event bodies are between these sizes, so 8 KiB segments roll every few puts.
const MIN_BODY_BYTES: usize = 100;
const MAX_BODY_BYTES: usize = 1_000;
const MAX_EVENTS_PER_PUT: usize = 5;
/// Verifications run side by side (the machine has 2 cores).
const WORKERS: usize = 2;
/// Longest wait for an outagefs mount to appear or to finish.
const OUTAGEFS_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest wait for a just-killed channeld's files to be released so that its
/// filesystem unmounts.
const UNMOUNT_BUSY_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a take during the recording waits for events the model says are there.
const RECORDING_TAKE_WAIT: Duration = Duration::from_secs(2);
/// The marker file's name at the root of the filesystem under test.
const MARKER_FILE: &str = "acked-operations";
/// The channel's settings besides its directories (which [`channel_config`] puts on the
/// filesystem under test): small segments so the log rolls, frequent checkpoints, the
/// smallest space guard.
const CHANNEL_SETTINGS: &str = "maxFileSize = 8192\n\
                                checkpointInterval = 1000\n\
                                minimumRequiredSpace = 1048576\n\
                                useDualCheckpoints = true\n";

// ---------------------------------------------------------------------------------------
// The workload and its model
// ---------------------------------------------------------------------------------------

/// One step of the client's sequential workload.
#[derive(Debug, Clone)]
enum Operation {
    /// Puts these events in one transaction and commits; `fused` sends one `PutCommit`.
    Put { bodies: Vec<String>, fused: bool },
    /// Begins, puts these events, rolls back: the queue does not change.
    PutRolledBack { bodies: Vec<String> },
    /// Takes the `count` events at the head (whole put transactions) and commits.
    Take { count: usize },
    /// Takes `count` events and rolls back: they go back to the head.
    TakeRolledBack { count: usize },
    /// Asks for a checkpoint now.
    Checkpoint,
}

/// A body's identity without its filler: `t0003-e01-of04`.
fn short(body: &str) -> &str {
    body.get(..14).unwrap_or(body)
}

fn shorts(bodies: &[String]) -> String {
    bodies
        .iter()
        .map(|body| short(body))
        .collect::<Vec<_>>()
        .join(" ")
}

impl Operation {
    /// The operation for a failure report: its kind and its events.
    fn describe(&self) -> String {
        match self {
            Operation::Put { bodies, .. } | Operation::PutRolledBack { bodies } => {
                format!("{} [{}]", self.name(), shorts(bodies))
            }
            Operation::Take { count } | Operation::TakeRolledBack { count } => {
                format!("{} {count}", self.name())
            }
            Operation::Checkpoint => self.name().to_string(),
        }
    }

    fn name(&self) -> &'static str {
        match self {
            Operation::Put { fused: true, .. } => "put (fused)",
            Operation::Put { fused: false, .. } => "put",
            Operation::PutRolledBack { .. } => "put rolled back",
            Operation::Take { .. } => "take",
            Operation::TakeRolledBack { .. } => "take rolled back",
            Operation::Checkpoint => "checkpoint",
        }
    }
}

/// A seeded workload and the queue after each prefix of it.
struct Workload {
    operations: Vec<Operation>,
    /// `queues[j]`: the channel's contents after the first `j` operations, head first.
    queues: Vec<Vec<String>>,
    /// Every body a committed put offered, with the put transaction it belongs to.
    transaction_of: HashMap<String, usize>,
    /// The operation index of each put transaction.
    put_operation: Vec<usize>,
}

fn event_body(rng: &mut StdRng, transaction: usize, index: usize, count: usize) -> String {
    let mut body = format!("t{transaction:04}-e{index:02}-of{count:02}-");
    let size = rng.random_range(MIN_BODY_BYTES..=MAX_BODY_BYTES);
    let filler = char::from(b'a' + (transaction % 26) as u8);
    body.extend(std::iter::repeat_n(filler, size.saturating_sub(body.len())));
    body
}

impl Workload {
    fn generate(seed: u64, operations: usize) -> Workload {
        let mut rng = StdRng::seed_from_u64(seed);
        // The queue as (put transaction, body), head first.
        let mut queue: VecDeque<(usize, String)> = VecDeque::new();
        let mut workload = Workload {
            operations: Vec::new(),
            queues: vec![Vec::new()],
            transaction_of: HashMap::new(),
            put_operation: Vec::new(),
        };
        let mut next_transaction = 0usize;
        while workload.operations.len() < operations {
            let roll = rng.random_range(0..100);
            let head_count = |transactions: usize| -> usize {
                let mut seen = Vec::new();
                for (transaction, _) in &queue {
                    if !seen.contains(transaction) {
                        if seen.len() == transactions {
                            break;
                        }
                        seen.push(*transaction);
                    }
                }
                queue.iter().filter(|(t, _)| seen.contains(t)).count()
            };
            let operation = if queue.is_empty() || roll < 52 {
                let transaction = next_transaction;
                next_transaction += 1;
                let count = rng.random_range(1..=MAX_EVENTS_PER_PUT);
                let bodies: Vec<String> = (0..count)
                    .map(|index| event_body(&mut rng, transaction, index, count))
                    .collect();
                if roll < 8 && !queue.is_empty() {
                    // Never committed: a body of it in the channel is unexpected.
                    Operation::PutRolledBack { bodies }
                } else {
                    for body in &bodies {
                        workload.transaction_of.insert(body.clone(), transaction);
                    }
                    workload.put_operation.push(workload.operations.len());
                    queue.extend(bodies.iter().map(|body| (transaction, body.clone())));
                    Operation::Put {
                        bodies,
                        fused: rng.random_bool(0.5),
                    }
                }
            } else if roll < 74 {
                let count = head_count(rng.random_range(1..=2));
                queue.drain(..count);
                Operation::Take { count }
            } else if roll < 86 {
                Operation::TakeRolledBack {
                    count: head_count(1),
                }
            } else {
                Operation::Checkpoint
            };
            workload.operations.push(operation);
            workload
                .queues
                .push(queue.iter().map(|(_, body)| body.clone()).collect());
        }
        workload
    }

    /// Put transactions among the first `operations` operations.
    fn put_transactions_within(&self, operations: usize) -> usize {
        self.put_operation
            .iter()
            .filter(|&&index| index < operations)
            .count()
    }
}

// ---------------------------------------------------------------------------------------
// Commands, mounts and their guards
// ---------------------------------------------------------------------------------------

/// Runs a program to completion; `Err` names it and carries its stderr.
fn run(program: &str, args: &[&str]) -> Result<String, String> {
    let output = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|error| format!("cannot run {program}: {error}"))?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(format!(
            "`{program} {}` failed ({}): {}",
            args.join(" "),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        ))
    }
}

fn path_str(path: &Path) -> &str {
    path.to_str().expect("a UTF-8 path")
}

/// The outagefs binary: `MILLRACE_OUTAGEFS`, else `outagefs` on the PATH, else cargo's
/// install directory.
fn outagefs_binary() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("MILLRACE_OUTAGEFS") {
        return Some(PathBuf::from(path)).filter(|path| path.is_file());
    }
    let mut candidates: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).collect())
        .unwrap_or_default();
    if let Some(cargo_home) = std::env::var_os("CARGO_HOME") {
        candidates.push(PathBuf::from(cargo_home).join("bin"));
    }
    if let Some(home) = std::env::var_os("HOME") {
        candidates.push(PathBuf::from(home).join(".cargo/bin"));
    }
    candidates
        .into_iter()
        .map(|directory| directory.join("outagefs"))
        .find(|candidate| candidate.is_file())
}

/// How to get outagefs, for the skip line.
const OUTAGEFS_HOW_TO_GET: &str = "apt-get install libfuse-dev pkg-config fuse, then cargo \
     install outagefs --locked, or set MILLRACE_OUTAGEFS to its path; .ci/run does both";

/// The outagefs binary when this machine can run the test, else what it lacks.
fn prerequisites() -> Result<PathBuf, Missing> {
    running_as_root("attach loop devices and mount FUSE file systems")?;
    if !Path::new("/dev/fuse").exists() {
        return Err(Missing::new(
            "FUSE (/dev/fuse)",
            "modprobe fuse; in a container, pass --device /dev/fuse",
        ));
    }
    if !Path::new("/dev/loop-control").exists() {
        return Err(Missing::new(
            "loop devices (/dev/loop-control)",
            "modprobe loop; in a container, run it privileged",
        ));
    }
    for (tool, package) in [
        ("mkfs.ext4", "e2fsprogs"),
        ("losetup", "mount"),
        ("mount", "mount"),
        ("umount", "mount"),
    ] {
        tool_on_path(tool, &format!("apt-get install {package}"))?;
    }
    let filesystems = std::fs::read_to_string("/proc/filesystems").unwrap_or_default();
    if !filesystems
        .lines()
        .any(|line| line.trim_end().ends_with("ext4"))
    {
        return Err(Missing::new("ext4 in the kernel", "modprobe ext4"));
    }
    outagefs_binary().ok_or_else(|| Missing::new("the outagefs binary", OUTAGEFS_HOW_TO_GET))
}

/// An `outagefs mount`: the image (with the chosen changes applied) as one file over
/// FUSE. Unmounted when `finish`ed or dropped: outagefs unmounts when its stdin gives a
/// line or ends.
struct OutageMount {
    child: Option<Child>,
    stdin: Option<ChildStdin>,
    image: PathBuf,
}

impl OutageMount {
    fn mount(
        outagefs: &Path,
        recording: &Path,
        changes: &str,
        filter: Option<&str>,
        record: bool,
        image: &Path,
    ) -> Result<OutageMount, String> {
        File::create(image).map_err(|error| format!("cannot create {image:?}: {error}"))?;
        let mut command = Command::new(outagefs);
        command
            .arg("mount")
            .arg("--base")
            .arg(recording.join("base"))
            .arg("--changes")
            .arg(recording.join(changes))
            .arg("--dest")
            .arg(image);
        if let Some(filter) = filter {
            command.args(["--filter", filter]);
        }
        if record {
            command.arg("--record");
        }
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|error| format!("cannot run outagefs: {error}"))?;
        let stdin = child.stdin.take();
        let mut mount = OutageMount {
            child: Some(child),
            stdin,
            image: image.to_path_buf(),
        };
        let mut exited = None;
        let appeared = wait_until(OUTAGEFS_TIMEOUT, || {
            if let Some(Ok(Some(status))) = mount.child.as_mut().map(Child::try_wait) {
                exited = Some(status);
                return true;
            }
            is_mount_point(image) && fuse_file_size(image) == Some(IMAGE_BYTES)
        });
        if exited.is_some() || !appeared {
            let mut stderr = String::new();
            if let Some(mut child) = mount.child.take() {
                let _ = child.kill();
                let _ = child.wait();
                if let Some(mut pipe) = child.stderr.take() {
                    let _ = pipe.read_to_string(&mut stderr);
                }
            }
            return Err(format!(
                "outagefs mount of {image:?} did not appear ({exited:?}): {}",
                stderr.trim()
            ));
        }
        Ok(mount)
    }

    /// Unmounts (saving the changes when recording) and checks that outagefs succeeded.
    fn finish(mut self) -> Result<(), String> {
        if let Some(mut stdin) = self.stdin.take() {
            let _ = stdin.write_all(b"\n");
        }
        let mut child = self.child.take().expect("a running outagefs");
        let mut status = None;
        wait_until(OUTAGEFS_TIMEOUT, || {
            status = child.try_wait().ok().flatten();
            status.is_some()
        });
        let mut stderr = String::new();
        if let Some(mut pipe) = child.stderr.take() {
            if status.is_some() {
                let _ = pipe.read_to_string(&mut stderr);
            }
        }
        match status {
            Some(status) if status.success() => Ok(()),
            Some(status) => Err(format!("outagefs failed ({status}): {}", stderr.trim())),
            None => {
                let _ = child.kill();
                let _ = child.wait();
                let _ = Command::new("umount").arg("-l").arg(&self.image).status();
                Err("outagefs did not unmount in time".into())
            }
        }
    }
}

impl Drop for OutageMount {
    fn drop(&mut self) {
        drop(self.stdin.take());
        if let Some(mut child) = self.child.take() {
            let ended = wait_until(OUTAGEFS_TIMEOUT, || !matches!(child.try_wait(), Ok(None)));
            if !ended {
                let _ = child.kill();
                let _ = child.wait();
            }
            // A killed FUSE server leaves its mount behind, disconnected.
            if is_mount_point(&self.image) {
                let _ = Command::new("umount").arg("-l").arg(&self.image).status();
            }
        }
    }
}

/// The size of a file on outagefs, by seeking to its end. Not `std::fs::metadata`: that
/// asks for `statx` with the birth time, which the kernel forwards to FUSE as
/// `FUSE_STATX`, an opcode outagefs's FUSE library does not know and answers by dropping
/// the connection, which kills the mount.
fn fuse_file_size(path: &Path) -> Option<u64> {
    File::open(path)
        .and_then(|mut file| file.seek(SeekFrom::End(0)))
        .ok()
}

fn is_mount_point(path: &Path) -> bool {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    mountinfo
        .lines()
        .any(|line| line.split(' ').nth(4) == Some(path_str(path)))
}

/// Unmounts `mount_point`, trying again for up to [`UNMOUNT_BUSY_TIMEOUT`] while it
/// fails. A channeld killed with SIGKILL is reaped before the kernel has torn down its
/// io_uring: a sync still running in io-wq holds its file for a moment after the process
/// is gone, and `umount` meanwhile says "target is busy".
fn unmount_waiting_while_busy(mount_point: &Path) -> Result<(), String> {
    let mut last_problem = String::new();
    let unmounted = wait_until(UNMOUNT_BUSY_TIMEOUT, || {
        match run("umount", &[path_str(mount_point)]) {
            Ok(_) => true,
            Err(problem) => {
                last_problem = problem;
                false
            }
        }
    });
    if unmounted {
        Ok(())
    } else {
        Err(format!(
            "{last_problem} (still failing after {} ms of retries)",
            UNMOUNT_BUSY_TIMEOUT.as_millis()
        ))
    }
}

/// An image file attached to a loop device and mounted as ext4. Unmounted and detached
/// when `finish`ed or dropped.
struct Ext4Mount {
    device: Option<String>,
    mount_point: PathBuf,
    mounted: bool,
}

impl Ext4Mount {
    fn mount(image: &Path, mount_point: &Path) -> Result<Ext4Mount, String> {
        let device = run("losetup", &["--find", "--show", path_str(image)])?
            .trim()
            .to_string();
        let mut mount = Ext4Mount {
            device: Some(device.clone()),
            mount_point: mount_point.to_path_buf(),
            mounted: false,
        };
        run("mount", &["-t", "ext4", &device, path_str(mount_point)])?;
        mount.mounted = true;
        Ok(mount)
    }

    fn finish(mut self) -> Result<(), String> {
        if self.mounted {
            self.mounted = false;
            unmount_waiting_while_busy(&self.mount_point)?;
        }
        if let Some(device) = self.device.take() {
            run("losetup", &["--detach", &device])?;
        }
        Ok(())
    }
}

impl Drop for Ext4Mount {
    fn drop(&mut self) {
        if self.mounted && unmount_waiting_while_busy(&self.mount_point).is_err() {
            let _ = run("umount", &["-l", path_str(&self.mount_point)]);
        }
        if let Some(device) = self.device.take() {
            let _ = run("losetup", &["--detach", &device]);
        }
    }
}

/// A channeld configuration with its file channel `c1` under `root`, with
/// [`CHANNEL_SETTINGS`] and then `extra_settings` (lines of `key = value`).
fn channel_config(root: &Path, extra_settings: &str) -> String {
    let root = path_str(root);
    let mut config = format!(
        "{AGENT}.channels = c1\n\
         {AGENT}.channels.c1.type = file\n\
         {AGENT}.channels.c1.checkpointDir = {root}/channel/checkpoint\n\
         {AGENT}.channels.c1.backupCheckpointDir = {root}/channel/backup-checkpoint\n\
         {AGENT}.channels.c1.dataDirs = {root}/channel/data-1,{root}/channel/data-2\n"
    );
    for line in CHANNEL_SETTINGS.lines().chain(extra_settings.lines()) {
        config.push_str(&format!("{AGENT}.channels.c1.{line}\n"));
    }
    config
}

fn events(bodies: &[String]) -> Vec<Event> {
    bodies
        .iter()
        .map(|body| Event::new(body.clone().into_bytes()))
        .collect()
}

fn bodies_of(events: Vec<Event>) -> Vec<String> {
    events
        .into_iter()
        .map(|event| String::from_utf8_lossy(&event.body).into_owned())
        .collect()
}

// ---------------------------------------------------------------------------------------
// Recording
// ---------------------------------------------------------------------------------------

/// One recorded workload: `base` (the fresh image) and `changes` (what the run wrote) in
/// `directory`, plus `changes-mutated` for the mutated variant.
struct Recording {
    directory: tempfile::TempDir,
    workload: Workload,
    /// Channel settings beyond [`CHANNEL_SETTINGS`], for the recording and every
    /// verification.
    extra_settings: &'static str,
}

async fn run_operation(
    client: &mut Client,
    operation: &Operation,
    head: &[String],
) -> Result<(), String> {
    let failed = |what: &str, error: ClientError| format!("{what} failed: {error}");
    match operation {
        Operation::Put {
            bodies,
            fused: true,
        } => client
            .put_and_commit("c1", &events(bodies))
            .await
            .map_err(|error| failed("PutCommit", error)),
        Operation::Put {
            bodies,
            fused: false,
        } => {
            client.begin("c1").await.map_err(|e| failed("Begin", e))?;
            client
                .put(&events(bodies))
                .await
                .map_err(|e| failed("Put", e))?;
            client.commit().await.map_err(|e| failed("Commit", e))
        }
        Operation::PutRolledBack { bodies } => {
            client.begin("c1").await.map_err(|e| failed("Begin", e))?;
            client
                .put(&events(bodies))
                .await
                .map_err(|e| failed("Put", e))?;
            client.rollback().await.map_err(|e| failed("Rollback", e))
        }
        Operation::Take { count } | Operation::TakeRolledBack { count } => {
            client.begin("c1").await.map_err(|e| failed("Begin", e))?;
            let mut taken = Vec::new();
            while taken.len() < *count {
                let batch = client
                    .take((count - taken.len()) as u32, RECORDING_TAKE_WAIT)
                    .await
                    .map_err(|e| failed("Take", e))?;
                if batch.is_empty() {
                    break;
                }
                taken.extend(bodies_of(batch));
            }
            if taken != head[..*count] {
                return Err(format!(
                    "the take returned {} events that are not the {count} at the head \
                     of the queue",
                    taken.len()
                ));
            }
            if matches!(operation, Operation::Take { .. }) {
                client.commit().await.map_err(|e| failed("Commit", e))
            } else {
                client.rollback().await.map_err(|e| failed("Rollback", e))
            }
        }
        Operation::Checkpoint => client
            .checkpoint("c1")
            .await
            .map_err(|e| failed("Checkpoint", e)),
    }
}

fn record(
    outagefs: &Path,
    seed: u64,
    round: usize,
    extra_settings: &'static str,
) -> Result<Recording, String> {
    let directory = tempfile::Builder::new()
        .prefix("millrace-power-loss-")
        .tempdir()
        .map_err(|error| format!("no temporary directory: {error}"))?;
    let base = directory.path().join("base");
    File::create(&base)
        .and_then(|file| file.set_len(IMAGE_BYTES))
        .map_err(|error| format!("cannot create the image: {error}"))?;
    // Inode tables and the journal are initialised now, not by a background thread
    // during the recording.
    run(
        "mkfs.ext4",
        &[
            "-q",
            "-F",
            "-m",
            "0",
            "-b",
            "4096",
            "-E",
            "lazy_itable_init=0,lazy_journal_init=0",
            path_str(&base),
        ],
    )?;
    let image = directory.path().join("image");
    let mount_point = directory.path().join("mnt");
    std::fs::create_dir(&mount_point).map_err(|error| error.to_string())?;
    let workload = Workload::generate(seed, OPERATIONS_PER_ROUND);

    let fuse = OutageMount::mount(outagefs, directory.path(), "changes", None, true, &image)?;
    let ext4 = Ext4Mount::mount(&image, &mount_point)?;
    let mut server = Server::try_start(ServerSetup::with_config(channel_config(
        &mount_point,
        extra_settings,
    )))?;
    let mut marker = OpenOptions::new()
        .create(true)
        .append(true)
        .open(mount_point.join(MARKER_FILE))
        .map_err(|error| format!("cannot open the marker file: {error}"))?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let address = server.protocol_address().to_string();
    runtime.block_on(async {
        let mut client = Client::connect(ClientOptions::new(address))
            .await
            .map_err(|error| format!("cannot connect: {error}"))?;
        for (index, operation) in workload.operations.iter().enumerate() {
            run_operation(&mut client, operation, &workload.queues[index])
                .await
                .map_err(|problem| {
                    format!(
                        "operation {index} ({}) of the recording (seed {seed}, round \
                         {round}): {problem}",
                        operation.name()
                    )
                })?;
            marker
                .write_all(format!("acked {index}\n").as_bytes())
                .and_then(|()| marker.sync_all())
                .map_err(|error| format!("cannot write the marker: {error}"))?;
        }
        Ok::<(), String>(())
    })?;
    drop(marker);
    server.kill_9();
    drop(server);
    ext4.finish()?;
    fuse.finish()?;

    Ok(Recording {
        directory,
        workload,
        extra_settings,
    })
}

/// Writes the variant's changes file (a mutated copy of the recorded one) and returns
/// its crash states, with the writes and flushes it holds.
fn crash_states(
    outagefs: &Path,
    recording: &Recording,
    variant: Variant,
) -> Result<(Vec<String>, usize, usize), String> {
    let directory = recording.directory.path();
    let base = directory.join("base");
    let changes = directory.join(variant.changes_file());
    if let Some(mutations) = variant.mutations() {
        std::fs::copy(directory.join("changes"), &changes)
            .map_err(|error| format!("cannot copy the changes: {error}"))?;
        let mut args = vec!["mutate"];
        args.extend_from_slice(mutations);
        args.extend(["--base", path_str(&base), "--changes", path_str(&changes)]);
        run(path_str(outagefs), &args)?;
    }
    let paths = ["--base", path_str(&base), "--changes", path_str(&changes)];
    let shown = run(path_str(outagefs), &[&["show"][..], &paths].concat())?;
    let flushes = shown.lines().filter(|line| line.ends_with(" Sync")).count();
    let writes = shown
        .lines()
        .filter(|line| line.contains(" Write "))
        .count();
    let max_cases_log2 = MAX_CASES_LOG2.to_string();
    let listed = run(
        path_str(outagefs),
        &[
            &["gen-tests"][..],
            &paths,
            &["--max-cases-log2", &max_cases_log2],
        ]
        .concat(),
    )?;
    let states = listed
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .map(str::to_string)
        .collect();
    Ok((states, writes, flushes))
}

// ---------------------------------------------------------------------------------------
// Verification
// ---------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Variant {
    /// The changes as recorded: a disk that writes each 4 KiB block whole.
    Plain,
    /// After `outagefs mutate --split-write`: each write may land in 2 KiB halves, any
    /// of them without the others (a disk whose atomic unit is smaller than ext4's block).
    Split,
    /// After `outagefs mutate --split-write --zero-fill`: each write may also land as
    /// zeros first. Such a disk can destroy bytes synced earlier when it rewrites their
    /// block (it breaks "powersafe overwrite", which SQLite, like most logs, assumes).
    SplitZeroFill,
}

impl Variant {
    fn changes_file(self) -> &'static str {
        match self {
            Variant::Plain => "changes",
            Variant::Split => "changes-split",
            Variant::SplitZeroFill => "changes-split-zero-fill",
        }
    }

    /// The `outagefs mutate` flags, or `None` for the recording as it is.
    fn mutations(self) -> Option<&'static [&'static str]> {
        match self {
            Variant::Plain => None,
            Variant::Split => Some(&["--split-write"]),
            Variant::SplitZeroFill => Some(&["--split-write", "--zero-fill"]),
        }
    }

    /// Whether the disk may destroy synced bytes, so that recovery may lose (or
    /// resurrect) marker-proven work — provided it says so.
    fn destroys_synced_bytes(self) -> bool {
        self == Variant::SplitZeroFill
    }
}

/// How one crash state turned out (when it passed).
#[derive(Debug)]
enum Outcome {
    /// The channel held exactly the queue after `operations` operations;
    /// `proven_operations` were marker-proven.
    Recovered {
        proven_operations: usize,
        operations: usize,
    },
    /// (Zero-filled variant) synced bytes were destroyed: recovery reported a truncated
    /// tail or a removed segment, and lost `lost_transactions` marker-proven put transactions (or delivered
    /// `resurrected` events of acknowledged takes again), all else consistent.
    LossReported {
        proven_operations: usize,
        lost_transactions: usize,
        resurrected: usize,
    },
    /// (Zero-filled variant) recovery reported corruption: it refused the channel, or
    /// failed the take that reached the damage; what was delivered before was consistent.
    CorruptionReported {
        proven_operations: usize,
        reason: String,
    },
    /// (Zero-filled variant) ext4 itself could not mount the image.
    Unmountable,
}

/// How a drain differs from the model.
#[derive(Debug, Default)]
struct Violations {
    /// Events of marker-proven put transactions missing (and not taken by any take).
    lost: usize,
    /// Put transactions those events belong to.
    lost_transactions: usize,
    /// Events no committed put offered.
    unexpected: usize,
    /// Events delivered twice.
    duplicated: usize,
    /// Put transactions delivered in part.
    atomicity: usize,
    /// Events of marker-proven takes delivered again.
    taken_again: usize,
    /// Transactions delivered out of put-commit order.
    out_of_order: bool,
}

impl Violations {
    /// Nothing that a disk destroying synced bytes could explain: an event from nowhere,
    /// twice, half a transaction, or the order broken.
    fn inconsistent(&self) -> bool {
        self.unexpected > 0 || self.duplicated > 0 || self.atomicity > 0 || self.out_of_order
    }
}

/// The operations the marker file proves: one more than the highest complete, well-formed
/// `acked N` line (a line is written only after its operation's acknowledgement, and the
/// client is sequential, so every earlier operation was acknowledged too).
fn proven_operations(mount_point: &Path) -> usize {
    let Ok(bytes) = std::fs::read(mount_point.join(MARKER_FILE)) else {
        return 0;
    };
    let text = String::from_utf8_lossy(&bytes);
    let mut proven = 0;
    let mut rest: &str = &text;
    while let Some(end) = rest.find('\n') {
        let line = &rest[..end];
        rest = &rest[end + 1..];
        let index = line
            .trim_start_matches('\0')
            .strip_prefix("acked ")
            .and_then(|number| number.parse::<usize>().ok());
        if let Some(index) = index {
            proven = proven.max(index + 1);
        }
    }
    proven
}

/// Compares a drain with the model: `Ok(j)` when it is exactly the queue after `j ≥
/// proven` operations (when `complete` is false, the drain was cut short by an error:
/// then it must be a prefix of the queue after some j). Otherwise what differs.
fn judge(
    workload: &Workload,
    proven: usize,
    delivered: &[String],
    complete: bool,
) -> Result<usize, Violations> {
    let matches = |j: usize| {
        let queue = &workload.queues[j];
        if complete {
            queue.as_slice() == delivered
        } else {
            queue.starts_with(delivered)
        }
    };
    let first = if complete { proven } else { 0 };
    if let Some(j) = (first..workload.queues.len()).find(|&j| matches(j)) {
        return Ok(j);
    }
    let mut violations = Violations::default();
    let delivered_set: HashSet<&String> = delivered.iter().collect();
    let mut counts: HashMap<&String, usize> = HashMap::new();
    for body in delivered {
        *counts.entry(body).or_default() += 1;
    }
    violations.duplicated = counts.values().filter(|&&count| count > 1).count();
    violations.unexpected = delivered
        .iter()
        .filter(|body| !workload.transaction_of.contains_key(*body))
        .count();
    // Taken by a marker-proven take, or by a later one (which may have become durable).
    let mut maybe_taken: HashSet<&String> = HashSet::new();
    let mut surely_taken: HashSet<&String> = HashSet::new();
    for (index, operation) in workload.operations.iter().enumerate() {
        if let Operation::Take { count } = operation {
            for body in &workload.queues[index][..*count] {
                if index < proven {
                    surely_taken.insert(body);
                } else {
                    maybe_taken.insert(body);
                }
            }
        }
    }
    if complete {
        let lost: Vec<&String> = workload.queues[proven]
            .iter()
            .filter(|body| !delivered_set.contains(body) && !maybe_taken.contains(body))
            .collect();
        violations.lost = lost.len();
        violations.lost_transactions = lost
            .iter()
            .filter_map(|body| workload.transaction_of.get(*body))
            .collect::<HashSet<_>>()
            .len();
    }
    violations.taken_again = delivered
        .iter()
        .filter(|body| surely_taken.contains(body))
        .count();
    let mut size_of: HashMap<usize, usize> = HashMap::new();
    for transaction in workload.transaction_of.values() {
        *size_of.entry(*transaction).or_default() += 1;
    }
    let mut present: HashMap<usize, usize> = HashMap::new();
    for body in &delivered_set {
        if let Some(transaction) = workload.transaction_of.get(*body) {
            *present.entry(*transaction).or_default() += 1;
        }
    }
    // A drain cut short may end inside a transaction.
    let cut_short = if complete {
        None
    } else {
        delivered
            .last()
            .and_then(|body| workload.transaction_of.get(body))
    };
    violations.atomicity = present
        .iter()
        .filter(|(transaction, count)| {
            Some(*transaction) != cut_short && **count != size_of[*transaction]
        })
        .count();
    let order: Vec<usize> = delivered
        .iter()
        .filter_map(|body| workload.transaction_of.get(body).copied())
        .collect();
    violations.out_of_order = order.windows(2).any(|pair| pair[0] > pair[1]);
    Err(violations)
}

/// Takes and commits everything, a thousand events at a time. `Err` carries what was
/// delivered before the error and the error.
async fn drain(address: &str) -> Result<Vec<String>, (Vec<String>, String)> {
    let mut delivered = Vec::new();
    let mut client = Client::connect(ClientOptions::new(address.to_string()))
        .await
        .map_err(|error| (Vec::new(), format!("cannot connect: {error}")))?;
    loop {
        let taken = async {
            client.begin("c1").await?;
            let events = client.take(1_000, Duration::ZERO).await?;
            client.commit().await?;
            Ok::<_, ClientError>(events)
        }
        .await;
        match taken {
            Ok(events) if events.is_empty() => return Ok(delivered),
            Ok(events) => delivered.extend(bodies_of(events)),
            Err(error) => return Err((delivered, error.to_string())),
        }
    }
}

/// What a verification needs besides the crash state.
struct Verifier {
    outagefs: PathBuf,
    scratch: tempfile::TempDir,
    runtime: tokio::runtime::Runtime,
}

impl Verifier {
    fn new(outagefs: &Path) -> Verifier {
        let scratch = tempfile::Builder::new()
            .prefix("millrace-power-loss-verify-")
            .tempdir()
            .expect("a temporary directory");
        std::fs::create_dir(scratch.path().join("mnt")).expect("a mount point");
        Verifier {
            outagefs: outagefs.to_path_buf(),
            scratch,
            runtime: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime"),
        }
    }

    fn verify(
        &self,
        recording: &Recording,
        variant: Variant,
        filter: &str,
    ) -> Result<Outcome, String> {
        let image = self.scratch.path().join("image");
        let mount_point = self.scratch.path().join("mnt");
        let fuse = OutageMount::mount(
            &self.outagefs,
            recording.directory.path(),
            variant.changes_file(),
            Some(filter),
            false,
            &image,
        )?;
        let ext4 = match Ext4Mount::mount(&image, &mount_point) {
            Ok(ext4) => ext4,
            Err(_) if variant.destroys_synced_bytes() => {
                fuse.finish()?;
                return Ok(Outcome::Unmountable);
            }
            Err(problem) => return Err(format!("ext4 did not mount the crash state: {problem}")),
        };
        let proven = proven_operations(&mount_point);
        let workload = &recording.workload;
        let server = Server::try_start(ServerSetup::with_config(channel_config(
            &mount_point,
            recording.extra_settings,
        )))
        .map_err(|problem| format!("channeld did not start on the crash state: {problem}"))?;
        let drained = self.runtime.block_on(drain(server.protocol_address()));
        let (health_status, health) = server.http_json("/health");
        let stderr = server.stderr();
        drop(server);
        ext4.finish()?;
        fuse.finish()?;
        if stderr.contains("panicked") {
            return Err(format!("channeld panicked:\n{stderr}"));
        }
        // What recovery said it cut away: torn tails it truncated, and segments it removed
        // as never finished (a zeroed first block looks exactly like one).
        let recovery = &health["channels"]["c1"]["recovery"];
        let reported_cuts = ["truncated_tails", "removed_unfinished_segments"]
            .iter()
            .map(|key| recovery[*key].as_array().map_or(0, Vec::len))
            .sum::<usize>();
        let describe = |violations: &Violations, delivered: &[String]| {
            let operations: Vec<String> = workload
                .operations
                .iter()
                .enumerate()
                .map(|(index, operation)| format!("  {index}: {}", operation.describe()))
                .collect();
            format!(
                "{proven} operations marker-proven, {} events delivered; lost {} (of {} \
                 put transactions), unexpected {}, duplicated {}, atomicity violations {}, \
                 delivered again after an acknowledged take {}, out of order {}; \
                 truncated tails and removed segments reported {reported_cuts}\n\
                 delivered: [{}]\n\
                 queue after the proven operations: [{}]\n\
                 operations:\n{}\n\
                 channeld's log:\n{stderr}",
                delivered.len(),
                violations.lost,
                violations.lost_transactions,
                violations.unexpected,
                violations.duplicated,
                violations.atomicity,
                violations.taken_again,
                violations.out_of_order,
                shorts(delivered),
                shorts(&workload.queues[proven]),
                operations.join("\n"),
            )
        };
        match drained {
            Ok(delivered) => {
                if health_status != 200 {
                    return Err(format!("channel not healthy after the drain: {health}"));
                }
                match judge(workload, proven, &delivered, true) {
                    Ok(operations) => Ok(Outcome::Recovered {
                        proven_operations: proven,
                        operations,
                    }),
                    Err(violations)
                        if variant.destroys_synced_bytes()
                            && reported_cuts > 0
                            && !violations.inconsistent() =>
                    {
                        Ok(Outcome::LossReported {
                            proven_operations: proven,
                            lost_transactions: violations.lost_transactions,
                            resurrected: violations.taken_again,
                        })
                    }
                    Err(violations) => Err(describe(&violations, &delivered)),
                }
            }
            Err((delivered, error)) => {
                let reason = format!("{error}; /health: {health}");
                if !variant.destroys_synced_bytes() {
                    return Err(format!(
                        "the drain failed after {} events: {reason}\nchannel's log:\n{stderr}",
                        delivered.len()
                    ));
                }
                if !reason.to_ascii_lowercase().contains("corrupt") {
                    return Err(format!(
                        "the drain failed without naming corruption: {reason}"
                    ));
                }
                match judge(workload, proven, &delivered, false) {
                    Err(violations) if violations.inconsistent() => {
                        Err(describe(&violations, &delivered))
                    }
                    _ => Ok(Outcome::CorruptionReported {
                        proven_operations: proven,
                        reason,
                    }),
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// The runs
// ---------------------------------------------------------------------------------------

#[derive(Default)]
struct Figures {
    states: usize,
    rounds: usize,
    writes: usize,
    flushes: usize,
    proven_operations: usize,
    proven_put_transactions: usize,
    recovered_at_proven: usize,
    recovered_beyond_proven: usize,
    loss_reported: usize,
    lost_transactions_reported: usize,
    resurrected_reported: usize,
    corruption_reported: usize,
    unmountable: usize,
    corruption_reasons: HashSet<String>,
}

impl Figures {
    fn count(&mut self, workload: &Workload, outcome: &Outcome) {
        self.states += 1;
        let proven = match outcome {
            Outcome::Recovered {
                proven_operations,
                operations,
            } => {
                if operations == proven_operations {
                    self.recovered_at_proven += 1;
                } else {
                    self.recovered_beyond_proven += 1;
                }
                *proven_operations
            }
            Outcome::LossReported {
                proven_operations,
                lost_transactions,
                resurrected,
            } => {
                self.loss_reported += 1;
                self.lost_transactions_reported += lost_transactions;
                self.resurrected_reported += resurrected;
                *proven_operations
            }
            Outcome::CorruptionReported {
                proven_operations,
                reason,
            } => {
                self.corruption_reported += 1;
                self.corruption_reasons
                    .insert(reason.chars().take(160).collect());
                *proven_operations
            }
            Outcome::Unmountable => {
                self.unmountable += 1;
                0
            }
        };
        self.proven_operations += proven;
        self.proven_put_transactions += workload.put_transactions_within(proven);
    }
}

/// A crash state that failed, with what replays it.
struct Failure {
    problem: String,
    replay: String,
}

/// `MILLRACE_POWER_LOSS_CASES`, when set.
fn requested_cases() -> Option<usize> {
    std::env::var("MILLRACE_POWER_LOSS_CASES")
        .ok()
        .and_then(|value| value.parse().ok())
}

/// `count` of `states`, evenly spread from the first to the last.
fn spread_sample(states: Vec<String>, count: usize) -> Vec<String> {
    if states.len() <= count || count == 0 {
        return states;
    }
    let last = states.len() - 1;
    (0..count)
        .map(|index| states[index * last / (count - 1).max(1)].clone())
        .collect()
}

/// How many crash states to check.
#[derive(Debug, Clone, Copy)]
enum Size {
    /// Every state of as many recordings as it takes to reach this many.
    AtLeast(usize),
    /// This many states of one recording, evenly spread.
    Sample(usize),
}

/// Records workloads and checks crash states of `variant`, as many as `size` says, until
/// one fails (the first failure is returned, its recording kept).
fn check_crash_states(
    outagefs: &Path,
    variant: Variant,
    size: Size,
    extra_settings: &'static str,
    seed: u64,
) -> Result<Figures, Failure> {
    let wanted = match size {
        Size::AtLeast(count) => count,
        Size::Sample(_) => 1,
    };
    let verifiers: Vec<Verifier> = (0..WORKERS).map(|_| Verifier::new(outagefs)).collect();
    let mut figures = Figures::default();
    let mut round = 0;
    while figures.states < wanted {
        let round_seed = seed.wrapping_add(round as u64);
        let replay_round = format!("MILLRACE_POWER_LOSS_SEED={seed} (round {round})");
        let recording =
            record(outagefs, round_seed, round, extra_settings).map_err(|problem| Failure {
                problem: format!("recording failed: {problem}"),
                replay: replay_round.clone(),
            })?;
        let (filters, writes, flushes) =
            crash_states(outagefs, &recording, variant).map_err(|problem| Failure {
                problem: format!("listing the crash states failed: {problem}"),
                replay: replay_round.clone(),
            })?;
        let filters = match size {
            Size::AtLeast(_) => filters,
            Size::Sample(count) => spread_sample(filters, count),
        };
        figures.rounds += 1;
        figures.writes += writes;
        figures.flushes += flushes;
        let queue = Mutex::new(filters.iter());
        let outcomes: Mutex<Vec<(String, Result<Outcome, String>)>> = Mutex::new(Vec::new());
        thread::scope(|scope| {
            for verifier in &verifiers {
                let queue = &queue;
                let outcomes = &outcomes;
                let recording = &recording;
                scope.spawn(move || loop {
                    let Some(filter) = queue.lock().unwrap().next() else {
                        return;
                    };
                    let outcome = catch_unwind(AssertUnwindSafe(|| {
                        verifier.verify(recording, variant, filter)
                    }))
                    .unwrap_or_else(|panic| {
                        let message = panic
                            .downcast_ref::<String>()
                            .cloned()
                            .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                            .unwrap_or_default();
                        Err(format!("the verification panicked: {message}"))
                    });
                    let failed = outcome.is_err();
                    outcomes.lock().unwrap().push((filter.clone(), outcome));
                    if failed {
                        // One failure is enough to replay: skip the rest of the round.
                        while queue.lock().unwrap().next().is_some() {}
                    }
                });
            }
        });
        for (filter, outcome) in outcomes.into_inner().unwrap() {
            match outcome {
                Ok(outcome) => figures.count(&recording.workload, &outcome),
                Err(problem) => {
                    let directory = recording.directory.keep();
                    let directory = directory.display();
                    let changes = variant.changes_file();
                    return Err(Failure {
                        problem,
                        replay: format!(
                            "{replay_round}; outagefs filter {filter}; the recording is \
                             kept in {directory}: `outagefs mount --base {directory}/base \
                             --changes {directory}/{changes} --filter {filter} --dest \
                             IMAGE`, then `losetup --find --show IMAGE` and mount it \
                             read-write"
                        ),
                    });
                }
            }
        }
        round += 1;
    }
    Ok(figures)
}

fn seed() -> u64 {
    std::env::var("MILLRACE_POWER_LOSS_SEED")
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or_else(|| rand::rng().random())
}

/// Runs `variant` (at `default_size` unless `MILLRACE_POWER_LOSS_CASES` is set) and
/// asserts that every crash state passed.
fn every_crash_state_passes(variant: Variant, default_size: Size) {
    let Some(outagefs) = require(prerequisites()) else {
        return;
    };
    let size = requested_cases().map_or(default_size, Size::AtLeast);
    let seed = seed();
    let started = Instant::now();
    let figures =
        check_crash_states(&outagefs, variant, size, "", seed).unwrap_or_else(|failure| {
            panic!(
                "power loss on real ext4 ({variant:?}): a crash state failed: {}\nreplay: {}",
                failure.problem, failure.replay
            )
        });
    println!(
        "power loss on real ext4 ({variant:?}, seed {seed}, {size:?}): {} crash states \
         checked from {} recordings of {OPERATIONS_PER_ROUND} operations ({} writes, {} flushes; at most \
         2^{MAX_CASES_LOG2} states between flushes) in {:.1} s; marker-proven (summed over \
         states): {} operations, {} put transactions; recovered exactly at the proven prefix \
         {}, with later unproven operations too {}; lost 0, unexpected 0, duplicated 0, \
         atomicity violations 0 (outside what is listed next); destroyed synced bytes \
         reported as a truncated tail or a removed segment {} (marker-proven put transactions lost there {}, \
         events of acknowledged takes back {}); corruption reported {}; ext4 could not mount \
         {}",
        figures.states,
        figures.rounds,
        figures.writes,
        figures.flushes,
        started.elapsed().as_secs_f64(),
        figures.proven_operations,
        figures.proven_put_transactions,
        figures.recovered_at_proven,
        figures.recovered_beyond_proven,
        figures.loss_reported,
        figures.lost_transactions_reported,
        figures.resurrected_reported,
        figures.corruption_reported,
        figures.unmountable,
    );
    for reason in &figures.corruption_reasons {
        println!("  corruption reported: {reason}");
    }
    assert!(
        figures.proven_put_transactions > 0,
        "some crash states must hold marker-proven transactions (seed {seed})"
    );
}

#[test]
fn acknowledged_transactions_survive_every_synced_crash_state_of_real_ext4() {
    every_crash_state_passes(Variant::Plain, Size::AtLeast(DEFAULT_PLAIN_CASES));
}

#[test]
fn acknowledged_transactions_survive_writes_torn_into_halves() {
    every_crash_state_passes(Variant::Split, Size::Sample(DEFAULT_MUTATED_SAMPLE));
}

#[test]
fn zero_filled_torn_writes_never_panic_recovery_nor_lose_proven_transactions_silently() {
    every_crash_state_passes(Variant::SplitZeroFill, Size::Sample(DEFAULT_MUTATED_SAMPLE));
}

/// The check has teeth: with `fsyncPerTransaction = false` channeld acknowledges before
/// its data is synced (as documented), and some crash state must then fail.
#[test]
fn acknowledging_before_the_sync_is_caught_by_the_power_loss_check() {
    let Some(outagefs) = require(prerequisites()) else {
        return;
    };
    let seed = seed();
    let outcome = check_crash_states(
        &outagefs,
        Variant::Plain,
        Size::AtLeast(NEGATIVE_CONTROL_MAX_CASES),
        "fsyncPerTransaction = false\n",
        seed,
    );
    match outcome {
        Ok(figures) => panic!(
            "{} crash states of a channel that acknowledges before syncing all passed \
             (MILLRACE_POWER_LOSS_SEED={seed}): the check cannot see a missing sync",
            figures.states
        ),
        Err(failure) => {
            println!(
                "power loss on real ext4 (negative control, fsyncPerTransaction = false): \
                 caught as expected: {}\nreplay: {}",
                failure.problem.lines().next().unwrap_or_default(),
                failure.replay
            );
            // The kept recording is not needed here.
            if let Some(directory) = failure
                .replay
                .split("kept in ")
                .nth(1)
                .and_then(|rest| rest.split(':').next())
            {
                let _ = std::fs::remove_dir_all(directory);
            }
        }
    }
}

/// The checker itself: a drain that misses a proven event, splits or reorders a
/// transaction, or brings an unknown or doubled event, is caught.
#[test]
fn the_power_loss_checker_catches_lost_partial_reordered_and_unexpected_events() {
    let workload = Workload::generate(7, 40);
    let last = workload.queues.len() - 1;
    let full = workload.queues[last].clone();
    assert!(full.len() >= 2, "the workload leaves events queued");
    assert_eq!(judge(&workload, last, &full, true).ok(), Some(last));
    let mut missing_one = full.clone();
    missing_one.remove(0);
    let violations = judge(&workload, last, &missing_one, true).unwrap_err();
    assert!(
        violations.lost == 1 && violations.atomicity + violations.lost_transactions >= 1,
        "{violations:?}"
    );
    let mut with_stranger = full.clone();
    with_stranger.push("stranger".into());
    assert_eq!(
        judge(&workload, last, &with_stranger, true)
            .unwrap_err()
            .unexpected,
        1
    );
    let mut reordered = full.clone();
    reordered.reverse();
    assert!(judge(&workload, last, &reordered, true)
        .unwrap_err()
        .inconsistent());
    let mut doubled = full.clone();
    doubled.push(full[0].clone());
    assert_eq!(
        judge(&workload, last, &doubled, true)
            .unwrap_err()
            .duplicated,
        1
    );
    // A drain cut short by a reported corruption may stop anywhere in a queue.
    assert!(judge(&workload, last, &full[..1], false).is_ok());
}
