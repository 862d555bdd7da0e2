//! The TAILDIR source end to end: channeld runs it as a `channel-agent` process, files
//! are written and rotated while it reads, and the agent is killed with SIGKILL.

use std::collections::BTreeMap;
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::thread;
use std::time::Duration;

use millrace_e2e::{
    bodies_of, file_channels_config, kill_9_pid, wait_until, Server, ServerSetup, AGENT,
};

/// Longest wait for lines to cross the flow.
const FLOW_TIMEOUT: Duration = Duration::from_secs(90);
/// Lines each writer writes.
const LINES_PER_FILE: usize = 40_000;
/// The rename-rotated file is renamed away after this many lines.
const RENAME_EVERY: usize = 10_000;
/// The copy-truncate-rotated file is copied and truncated after this many lines.
const COPY_TRUNCATE_EVERY: usize = 15_000;
/// Lines a writer writes before it lets the others run a moment.
const WRITE_BURST_LINES: usize = 400;
/// The pause between bursts, so the run lasts long enough for three kills.
const WRITE_PAUSE: Duration = Duration::from_millis(15);
/// The source's batchSize: a kill may repeat at most one batch.
const BATCH: usize = 500;
/// How many times the agent is killed.
const KILLS: usize = 3;
/// Every line is this long, newline included.
const LINE_BYTES: usize = 100;

fn line(stream: &str, number: usize) -> String {
    let text = format!("{stream} {number:08} ");
    format!("{text}{}\n", "x".repeat(LINE_BYTES - 1 - text.len()))
}

/// How a writer rotates its file.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Rotation {
    None,
    /// `name` → `name.N`, then a new `name`.
    Rename,
    /// `name` copied to `name.N`, then truncated to 0 and written on.
    CopyTruncate,
}

fn write_stream(directory: &Path, stream: &str, rotation: Rotation) {
    let path = directory.join(format!("{stream}.log"));
    let open = |path: &Path| {
        OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .expect("open a log file")
    };
    let mut file = open(&path);
    let mut rotations = 0;
    for number in 0..LINES_PER_FILE {
        if number > 0 && number % WRITE_BURST_LINES == 0 {
            thread::sleep(WRITE_PAUSE);
        }
        match rotation {
            Rotation::Rename if number > 0 && number % RENAME_EVERY == 0 => {
                rotations += 1;
                fs::rename(&path, directory.join(format!("{stream}.log.{rotations}")))
                    .expect("rename rotation");
                file = open(&path);
            }
            Rotation::CopyTruncate if number > 0 && number % COPY_TRUNCATE_EVERY == 0 => {
                rotations += 1;
                fs::copy(&path, directory.join(format!("{stream}.log.{rotations}")))
                    .expect("copy before truncation");
                file.set_len(0).expect("truncate after the copy");
            }
            _ => {}
        }
        file.write_all(line(stream, number).as_bytes())
            .expect("write a line");
    }
}

fn taildir_config(log_directory: &Path, position_file: &Path, extra: &str) -> String {
    file_channels_config(
        &["c1"],
        &format!(
            "{AGENT}.channels.c1.capacity = 1000000\n\
             {AGENT}.channels.c1.transactionCapacity = 10000\n\
             {AGENT}.sources = r1\n\
             {AGENT}.sources.r1.type = TAILDIR\n\
             {AGENT}.sources.r1.channels = c1\n\
             {AGENT}.sources.r1.positionFile = {}\n\
             {AGENT}.sources.r1.filegroups = g1\n\
             {AGENT}.sources.r1.filegroups.g1 = {}/.*\\.log\n\
             {AGENT}.sources.r1.batchSize = {BATCH}\n\
             {AGENT}.sources.r1.backoffSleepIncrement = 50\n\
             {AGENT}.sources.r1.maxBackoffSleep = 200\n\
             {extra}",
            position_file.display(),
            log_directory.display()
        ),
    )
}

/// Checks a position file is Flume's format: a compact JSON array of objects with
/// exactly `inode`, `pos`, `file`, in that order. Returns (inode, pos, file) each.
fn flume_positions(path: &Path) -> Vec<(u64, u64, String)> {
    let text = fs::read_to_string(path).expect("read the position file");
    let value: serde_json::Value = serde_json::from_str(&text)
        .unwrap_or_else(|error| panic!("position file is not JSON ({error}): {text}"));
    let entries = value.as_array().expect("a JSON array");
    let mut found = Vec::new();
    for entry in entries {
        let object = entry.as_object().expect("objects");
        let mut keys: Vec<&str> = object.keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(
            keys,
            ["file", "inode", "pos"],
            "exactly Flume's keys: {text}"
        );
        found.push((
            object["inode"].as_u64().expect("inode number"),
            object["pos"].as_u64().expect("pos number"),
            object["file"].as_str().expect("file text").to_string(),
        ));
    }
    // Flume's order and compact form: each object reads {"inode":…,"pos":…,"file":…}.
    for (inode, pos, _) in &found {
        let expected = format!("{{\"inode\":{inode},\"pos\":{pos},\"file\":");
        assert!(text.contains(&expected), "{expected} in {text}");
    }
    found
}

/// Rotations fall around the kills: a file can be renamed or copied and truncated more
/// than once while the agent is down or busy with other files (`docs/adapters.md`,
/// TAILDIR, "Rotation"); every generation must still arrive, in order.
#[test]
fn taildir_delivers_every_line_of_four_rotating_files_in_order_across_three_kills() {
    let logs = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let position_file = state.path().join("pos").join("taildir_position.json");
    let mut server = Server::start(
        ServerSetup::with_config(taildir_config(logs.path(), &position_file, ""))
            .env("RUST_LOG", "info"),
    );
    let writers: Vec<thread::JoinHandle<()>> = [
        ("plain", Rotation::None),
        ("renamed", Rotation::Rename),
        ("copied", Rotation::CopyTruncate),
        ("other", Rotation::None),
    ]
    .into_iter()
    .map(|(stream, rotation)| {
        let directory = logs.path().to_path_buf();
        thread::spawn(move || write_stream(&directory, stream, rotation))
    })
    .collect();
    let total = 4 * LINES_PER_FILE as u64;
    let mut killed_pids = Vec::new();
    for kill in 1..=KILLS {
        let threshold = total * kill as u64 / (KILLS as u64 + 1);
        let reached = wait_until(FLOW_TIMEOUT, || {
            server.metrics_channel_size("c1") != u64::MAX
                && server.metrics_channel_size("c1") >= threshold
        });
        assert!(
            reached,
            "{threshold} lines arrived before kill {kill}:\n{}",
            server.stderr()
        );
        let mut pids = Vec::new();
        let running = wait_until(FLOW_TIMEOUT, || {
            pids = server.adapter_pids("r1");
            pids.len() == 1 && !killed_pids.contains(&pids[0])
        });
        assert!(running, "the source's agent runs again before kill {kill}");
        kill_9_pid(pids[0]);
        killed_pids.push(pids[0]);
    }
    for writer in writers {
        writer.join().expect("a writer");
    }
    let arrived = wait_until(FLOW_TIMEOUT, || {
        let size = server.metrics_channel_size("c1");
        size != u64::MAX && size >= total
    });
    if !arrived {
        eprintln!("not every line arrived; what did:\n{}", server.stderr());
    }
    // Let a last repeated batch, if any, land too.
    thread::sleep(Duration::from_millis(500));
    let bodies = bodies_of(&server.drain_events("c1", 5000));
    let mut streams: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for body in &bodies {
        let mut words = body.split(' ');
        let stream = words.next().expect("a stream name").to_string();
        let number: usize = words
            .next()
            .and_then(|word| word.parse().ok())
            .expect("a number");
        assert_eq!(body.len(), LINE_BYTES - 1, "a whole line: {body}");
        streams.entry(stream).or_default().push(number);
    }
    let mut duplicates = 0;
    for (stream, numbers) in &streams {
        let mut next = 0;
        for &number in numbers {
            if number == next {
                next += 1;
            } else {
                assert!(
                    number < next || !arrived,
                    "{stream}: line {number} arrived before line {next} (a skipped or reordered line)"
                );
                duplicates += 1;
            }
        }
        assert_eq!(
            next,
            LINES_PER_FILE,
            "{stream}: every line delivered; first missing {next}, then {:?}",
            numbers
                .iter()
                .filter(|&&number| number > next)
                .take(3)
                .collect::<Vec<_>>()
        );
    }
    assert_eq!(streams.len(), 4, "four streams: {:?}", streams.keys());
    println!(
        "taildir with {KILLS} kills: {} events for {total} lines, {duplicates} repeated",
        bodies.len()
    );
    assert!(
        duplicates <= KILLS * BATCH,
        "{duplicates} repeated lines exceed one batch of {BATCH} per kill"
    );
    // A clean stop leaves a position file in Flume's format with every line committed.
    server.stop_with_sigterm();
    let positions = flume_positions(&position_file);
    for name in ["plain.log", "renamed.log", "copied.log", "other.log"] {
        let path = logs.path().join(name);
        let metadata = fs::metadata(&path).unwrap();
        let entry = positions
            .iter()
            .find(|(_, _, file)| Path::new(file) == path)
            .unwrap_or_else(|| panic!("{name} in {positions:?}"));
        assert_eq!(
            (entry.0, entry.1),
            (metadata.ino(), metadata.len()),
            "{name} fully committed"
        );
    }
}

#[test]
fn a_position_file_written_by_flume_is_honoured() {
    let logs = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let position_file = state.path().join("taildir_position.json");
    let app = logs.path().join("app.log");
    let lines: Vec<String> = (0..100).map(|n| format!("app-{n:03}\n")).collect();
    fs::write(&app, lines.concat()).unwrap();
    let fresh = logs.path().join("fresh.log");
    fs::write(&fresh, "fresh-0\nfresh-1\n").unwrap();
    let resume_at: usize = lines[..40].iter().map(String::len).sum();
    let inode = fs::metadata(&app).unwrap().ino();
    // As Flume's Gson writes it: compact, no newline, a vanished file listed too.
    fs::write(
        &position_file,
        format!(
            "[{{\"inode\":{inode},\"pos\":{resume_at},\"file\":\"{}\"}},{{\"inode\":4242424242,\"pos\":7,\"file\":\"{}/gone.log\"}}]",
            app.display(),
            logs.path().display()
        ),
    )
    .unwrap();
    let mut server = Server::start(ServerSetup::with_config(taildir_config(
        logs.path(),
        &position_file,
        "",
    )));
    let expected = 60 + 2;
    let arrived = wait_until(FLOW_TIMEOUT, || {
        server.metrics_channel_size("c1") == expected
    });
    assert!(
        arrived,
        "the lines after the position arrived:\n{}",
        server.stderr()
    );
    let mut bodies = bodies_of(&server.drain_events("c1", 500));
    bodies.sort();
    let mut wanted: Vec<String> = lines[40..]
        .iter()
        .map(|line| line.trim_end().to_string())
        .collect();
    wanted.extend(["fresh-0".to_string(), "fresh-1".to_string()]);
    wanted.sort();
    assert_eq!(bodies, wanted);
    server.stop_with_sigterm();
    let positions = flume_positions(&position_file);
    assert!(
        positions.contains(&(
            inode,
            fs::metadata(&app).unwrap().len(),
            app.display().to_string()
        )),
        "{positions:?}"
    );
    assert!(
        !positions
            .iter()
            .any(|(_, _, file)| file.ends_with("gone.log")),
        "vanished files drop out"
    );
}
