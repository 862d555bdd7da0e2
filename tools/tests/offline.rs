//! The offline channelctl subcommands, called as the binary calls them: channels found
//! through a Flume properties file, JSON checked against known contents, exit codes.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use millrace_engine::file::RecoveryPath;
use millrace_engine::{Channel, Event, FileChannel};
use millrace_tools::offline::{
    checkpoint_offline, exit, inspect, replay, verify, ChannelTarget, CheckpointOptions,
    InspectOptions, ReplayOptions, ReplayPointSpec, VerifyOptions,
};
use serde_json::Value;

const AGENT: &str = "a1";
const CHANNEL: &str = "c1";
/// Kept long enough that nothing a test takes is deleted during it.
const RETENTION_MS: u64 = 3_600_000;
/// Gap left on either side of a replay point, so that clock reads around it cannot
/// move an event to the wrong side.
const POINT_MARGIN: Duration = Duration::from_millis(200);

/// A channel described by a properties file under a temp dir.
struct Fixture {
    _root: tempfile::TempDir,
    root: PathBuf,
    config_file: PathBuf,
}

impl Fixture {
    /// `extra_keys` may name the fixture's directory as `{root}`.
    fn new(extra_keys: &str) -> Self {
        let root = tempfile::tempdir().unwrap();
        let path = root.path().to_path_buf();
        let config_file = path.join("agent.properties");
        let text = format!(
            "{AGENT}.channels = {CHANNEL}\n\
             {AGENT}.channels.{CHANNEL}.type = file\n\
             {AGENT}.channels.{CHANNEL}.dataDirs = {data}\n\
             {AGENT}.channels.{CHANNEL}.checkpointDir = {checkpoint}\n\
             {AGENT}.channels.{CHANNEL}.minimumRequiredSpace = 1048576\n\
             {extra_keys}",
            extra_keys = extra_keys.replace("{root}", &path.display().to_string()),
            data = path.join("data").display(),
            checkpoint = path.join("checkpoint").display(),
        );
        std::fs::write(&config_file, text).unwrap();
        Fixture {
            _root: root,
            root: path,
            config_file,
        }
    }

    fn target(&self) -> ChannelTarget {
        ChannelTarget::from_agent_config(&self.config_file, AGENT, CHANNEL).expect("config")
    }

    fn open(&self) -> FileChannel {
        FileChannel::open(CHANNEL, self.target().config).expect("open")
    }

    fn only_segment(&self) -> PathBuf {
        let mut segments: Vec<PathBuf> = std::fs::read_dir(self.root.join("data"))
            .unwrap()
            .map(|entry| entry.unwrap().path())
            .filter(|path| path.extension().is_some_and(|ext| ext == "log"))
            .collect();
        assert_eq!(segments.len(), 1, "{segments:?}");
        segments.pop().unwrap()
    }
}

fn put(channel: &dyn Channel, events: Vec<Event>) {
    let mut transaction = channel.begin().unwrap();
    for event in events {
        transaction.put(event).unwrap();
    }
    transaction.commit().unwrap();
}

fn put_bodies(channel: &dyn Channel, bodies: &[String]) {
    put(
        channel,
        bodies
            .iter()
            .map(|body| Event::from_body(body.clone().into_bytes()))
            .collect(),
    );
}

fn take(channel: &dyn Channel, count: usize) -> Vec<String> {
    let mut transaction = channel.begin().unwrap();
    let mut bodies = Vec::new();
    while bodies.len() < count {
        match transaction.take().unwrap() {
            Some(event) => bodies.push(String::from_utf8(event.body.to_vec()).unwrap()),
            None => break,
        }
    }
    transaction.commit().unwrap();
    bodies
}

fn peek_all(channel: &dyn Channel) -> Vec<String> {
    let mut transaction = channel.begin().unwrap();
    let mut bodies = Vec::new();
    while let Some(event) = transaction.take().unwrap() {
        bodies.push(String::from_utf8_lossy(&event.body).into_owned());
    }
    transaction.rollback().unwrap();
    bodies
}

/// Five transactions of three events (`t{transaction}-{event}`), the first event with a
/// header; then the first four events taken.
fn five_transactions_four_taken(fixture: &Fixture) {
    let channel = fixture.open();
    for transaction in 0..5 {
        let events = (0..3)
            .map(|event| {
                let body = format!("t{transaction}-{event}").into_bytes();
                Event::from_body(body).with_header("source", format!("test-{transaction}"))
            })
            .collect();
        put(&channel, events);
    }
    assert_eq!(take(&channel, 4).len(), 4);
    channel.close().unwrap();
}

fn run_json(
    command: impl FnOnce(&mut Vec<u8>) -> Result<i32, millrace_tools::offline::ToolError>,
) -> (i32, Value) {
    let mut out = Vec::new();
    let code = command(&mut out).expect("command runs");
    let value = serde_json::from_slice(&out)
        .unwrap_or_else(|error| panic!("{error}: {}", String::from_utf8_lossy(&out)));
    (code, value)
}

fn flip_byte(path: &Path, offset: u64) {
    let mut bytes = std::fs::read(path).unwrap();
    bytes[offset as usize] ^= 0x5a;
    std::fs::write(path, bytes).unwrap();
}

fn scan(fixture: &Fixture) -> millrace_engine::inspect::ChannelScan {
    let target = fixture.target();
    millrace_engine::inspect::scan_channel(
        target.storage.as_ref(),
        CHANNEL,
        &target.config,
        &millrace_engine::inspect::NoProgress,
    )
    .unwrap()
}

fn last_record_offset(fixture: &Fixture) -> u64 {
    scan(fixture).segments[0].records.last().unwrap().offset
}

/// Offset of the `nth` put record of the only segment.
fn put_record_offset(fixture: &Fixture, nth: usize) -> u64 {
    scan(fixture).segments[0]
        .records
        .iter()
        .filter(|record| {
            matches!(
                record.body,
                millrace_engine::inspect::RecordBody::Put { .. }
            )
        })
        .nth(nth)
        .unwrap()
        .offset
}

fn verify_json(fixture: &Fixture, salvage: Option<PathBuf>) -> (i32, Value) {
    run_json(|out| {
        verify(
            &fixture.target(),
            &VerifyOptions {
                json: true,
                salvage,
            },
            out,
        )
    })
}

mod inspect_command {
    use super::*;

    #[test]
    fn inspect_json_of_a_stopped_channel_matches_its_known_contents() {
        let fixture = Fixture::new("");
        five_transactions_four_taken(&fixture);
        let (code, report) = run_json(|out| {
            inspect(
                &fixture.target(),
                &InspectOptions {
                    json: true,
                    ..InspectOptions::default()
                },
                out,
            )
        });
        assert_eq!(code, exit::OK);
        assert_eq!(report["channel"], CHANNEL);
        assert_eq!(report["segments"].as_array().unwrap().len(), 1);
        let segment = &report["segments"][0];
        assert_eq!(segment["header_valid"], true);
        assert_eq!(segment["records"]["put"], 5);
        assert_eq!(segment["records"]["take"], 1);
        assert_eq!(segment["records"]["commit"], 6);
        assert_eq!(segment["write_order_range"], serde_json::json!([1, 12]));
        assert_eq!(segment["live_events"], 11);
        assert_eq!(segment["first_problem"], Value::Null);
        assert_eq!(report["queue"]["depth"], 11);
        assert!(report["queue"]["oldest_event_age_ms"].is_u64());
        assert_eq!(report["checkpoints"][0]["slot"], "primary");
        assert_eq!(report["checkpoints"][0]["state"], "valid");
        assert_eq!(report["checkpoints"][0]["queued_events"], 11);
        assert_eq!(report["checkpoints"][0]["covered_write_order_id"], 13);
        assert_eq!(report["data_dirs"][0]["segment_count"], 1);
        assert_eq!(report["data_dirs"][0]["below_space_guard"], false);
        assert_eq!(report["in_flight_transactions"], 0);
        assert_eq!(report["problem_count"], 0);
        assert_eq!(report["events"], Value::Null);
    }

    #[test]
    fn inspect_events_dumps_headers_and_bodies_from_a_write_order_id_up_to_a_limit() {
        let fixture = Fixture::new("");
        five_transactions_four_taken(&fixture);
        {
            let channel = fixture.open();
            put(&channel, vec![Event::from_body(vec![0u8, 159, 255])]);
        }
        let options = InspectOptions {
            json: true,
            events: true,
            limit: 3,
            from_write_order_id: Some(5),
        };
        let (_, report) = run_json(|out| inspect(&fixture.target(), &options, out));
        let events = report["events"].as_array().unwrap();
        let bodies: Vec<&str> = events
            .iter()
            .map(|event| event["body_text"].as_str().unwrap())
            .collect();
        // Write-order ids: puts of transactions 0..5 are 1, 3, 5, 7, 9.
        assert_eq!(bodies, vec!["t2-0", "t2-1", "t2-2"]);
        assert_eq!(events[0]["headers"]["source"], "test-2");
        assert_eq!(events[0]["position"], 2);
        assert_eq!(events[0]["put_write_order_id"], 5);

        let all = InspectOptions {
            json: true,
            events: true,
            ..InspectOptions::default()
        };
        let (_, report) = run_json(|out| inspect(&fixture.target(), &all, out));
        let last = report["events"].as_array().unwrap().last().unwrap().clone();
        assert_eq!(last["body_text"], Value::Null);
        assert_eq!(last["body_hex"], "009fff");
    }

    #[test]
    fn inspect_prints_tables_for_people() {
        let fixture = Fixture::new("");
        five_transactions_four_taken(&fixture);
        let mut out = Vec::new();
        let options = InspectOptions {
            events: true,
            limit: 1,
            ..InspectOptions::default()
        };
        assert_eq!(
            inspect(&fixture.target(), &options, &mut out).unwrap(),
            exit::OK
        );
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("channel c1"), "{text}");
        assert!(text.contains("queue: 11 events"), "{text}");
        assert!(text.contains("t1-1"), "{text}");
        assert!(text.contains("source=test-1"), "{text}");
    }

    #[test]
    fn a_channel_missing_from_the_config_or_on_disk_fails_with_its_exit_code() {
        let fixture = Fixture::new("");
        let error =
            ChannelTarget::from_agent_config(&fixture.config_file, AGENT, "nope").unwrap_err();
        assert_eq!(error.exit_code(), exit::CONFIG);
        assert!(error.to_string().contains("c1"), "{error}");
        let error = inspect(
            &fixture.target(),
            &InspectOptions::default(),
            &mut Vec::new(),
        )
        .unwrap_err();
        assert_eq!(error.exit_code(), exit::NO_INPUT, "{error}");
    }
}

mod verify_command {
    use super::*;

    #[test]
    fn verify_of_a_clean_channel_exits_zero() {
        let fixture = Fixture::new("");
        five_transactions_four_taken(&fixture);
        let (code, report) = verify_json(&fixture, None);
        assert_eq!(code, exit::OK);
        assert_eq!(report["verdict"], "clean");
        assert_eq!(report["problems"], serde_json::json!([]));
        assert_eq!(report["records_valid"], 12);
    }

    #[test]
    fn verify_reports_a_flipped_byte_in_the_middle_of_a_segment_with_file_and_offset() {
        let fixture = Fixture::new("");
        five_transactions_four_taken(&fixture);
        let segment = fixture.only_segment();
        let damaged = put_record_offset(&fixture, 2);
        flip_byte(&segment, damaged + 40);
        let (code, report) = verify_json(&fixture, None);
        assert_eq!(code, exit::DAMAGED);
        assert_eq!(report["verdict"], "damaged");
        let problem = &report["problems"][0];
        assert_eq!(problem["kind"], "corruption");
        assert_eq!(problem["severity"], "error");
        assert_eq!(problem["file"], segment.display().to_string());
        assert_eq!(problem["offset"], damaged);
    }

    #[test]
    fn verify_reports_a_torn_tail_with_file_and_offset_and_exits_non_zero() {
        let fixture = Fixture::new("");
        five_transactions_four_taken(&fixture);
        let segment = fixture.only_segment();
        let last = last_record_offset(&fixture);
        // Cut the last record (the take transaction's commit) in half.
        std::fs::OpenOptions::new()
            .write(true)
            .open(&segment)
            .unwrap()
            .set_len(last + 26)
            .unwrap();
        let (code, report) = verify_json(&fixture, None);
        assert_eq!(code, exit::REPAIRS_ITSELF);
        assert_ne!(code, exit::OK);
        let problems = report["problems"].as_array().unwrap();
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(problems[0]["kind"], "torn-tail");
        assert_eq!(problems[0]["file"], segment.display().to_string());
        assert_eq!(problems[0]["offset"], last);
    }

    #[test]
    fn verify_reports_a_damaged_checkpoint_with_file_and_offset_and_exits_non_zero() {
        let fixture = Fixture::new("");
        five_transactions_four_taken(&fixture);
        let checkpoint = fixture.root.join("checkpoint/checkpoint");
        let length = std::fs::metadata(&checkpoint).unwrap().len();
        flip_byte(&checkpoint, 30);
        let (code, report) = verify_json(&fixture, None);
        assert_ne!(code, exit::OK);
        let problem = &report["problems"][0];
        assert_eq!(problem["kind"], "checkpoint-unusable");
        assert_eq!(problem["file"], checkpoint.display().to_string());
        assert_eq!(problem["offset"], length - 4);
        assert_eq!(report["checkpoints"][0]["state"], "unusable");
    }

    #[test]
    fn salvage_recovers_everything_outside_the_damaged_record_and_names_what_was_lost() {
        let fixture = Fixture::new("");
        five_transactions_four_taken(&fixture);
        let segment = fixture.only_segment();
        let damaged = put_record_offset(&fixture, 2);
        flip_byte(&segment, damaged + 40);
        let destination = fixture.root.join("salvaged");
        let (code, report) = verify_json(&fixture, Some(destination.clone()));
        assert_eq!(code, exit::DAMAGED);
        let salvage = &report["salvage"];
        assert_eq!(salvage["events_salvaged"], 8);
        assert_eq!(salvage["lost_put_events"], 3);
        let lost = &salvage["damaged_transactions"][0];
        assert_eq!(lost["lost_put_events"], 3);
        assert_eq!(lost["damage_file"], segment.display().to_string());
        assert_eq!(lost["damage_offset"], damaged);
        assert_eq!(salvage["missing_write_order_ids"][0]["first"], 5);
        assert_eq!(salvage["missing_write_order_ids"][0]["last"], 5);

        let mut config = fixture.target().config;
        config.data_dirs = vec![destination.join("data")];
        config.checkpoint_dir = destination.join("checkpoint");
        let salvaged = FileChannel::open(CHANNEL, config).unwrap();
        assert_eq!(
            peek_all(&salvaged),
            vec!["t1-1", "t1-2", "t3-0", "t3-1", "t3-2", "t4-0", "t4-1", "t4-2"]
        );
    }
}

mod checkpoint_command {
    use super::*;

    #[test]
    fn offline_rebuild_after_both_checkpoints_are_deleted_lets_the_channel_start_without_a_full_replay(
    ) {
        let fixture = Fixture::new(
            "a1.channels.c1.useDualCheckpoints = true\n\
             a1.channels.c1.backupCheckpointDir = {root}/backup\n",
        );
        five_transactions_four_taken(&fixture);
        std::fs::remove_file(fixture.root.join("checkpoint/checkpoint")).unwrap();
        std::fs::remove_file(fixture.root.join("backup/checkpoint")).unwrap();

        let (code, report) = run_json(|out| {
            checkpoint_offline(&fixture.target(), &CheckpointOptions { json: true }, out)
        });
        assert_eq!(code, exit::OK);
        assert_eq!(report["replay"]["events_recovered"], 11);
        assert_eq!(report["checkpoint"]["events"], 11);
        assert_eq!(report["checkpoint"]["backup_written"], true);

        let channel = fixture.open();
        let recovery = channel.recovery_report().unwrap();
        assert_eq!(recovery.path, RecoveryPath::Checkpoint);
        assert_eq!(recovery.records_replayed, 0);
        assert_eq!(peek_all(&channel).len(), 11);
    }

    #[test]
    fn offline_rebuild_of_a_running_channel_is_refused() {
        let fixture = Fixture::new("");
        let channel = fixture.open();
        let error = checkpoint_offline(
            &fixture.target(),
            &CheckpointOptions::default(),
            &mut Vec::new(),
        )
        .unwrap_err();
        assert_eq!(error.exit_code(), exit::TEMPORARY_FAILURE, "{error}");
        drop(channel);
    }
}

mod replay_command {
    use super::*;

    fn now_ms() -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64
    }

    /// Early events put and taken, then (after the returned point) late events put and
    /// taken, and two events left queued.
    fn history(fixture: &Fixture) -> u64 {
        let channel = fixture.open();
        let early: Vec<String> = (0..20).map(|index| format!("early-{index}")).collect();
        put_bodies(&channel, &early);
        take(&channel, 20);
        std::thread::sleep(POINT_MARGIN);
        let point_ms = now_ms();
        std::thread::sleep(POINT_MARGIN);
        for chunk in 0..3 {
            let late: Vec<String> = (0..5)
                .map(|index| format!("late-{}", chunk * 5 + index))
                .collect();
            put_bodies(&channel, &late);
        }
        take(&channel, 8);
        take(&channel, 7);
        put_bodies(&channel, &["queued-0".to_string(), "queued-1".to_string()]);
        channel.close().unwrap();
        point_ms
    }

    #[test]
    fn replay_of_the_last_minutes_plans_correctly_and_changes_nothing_without_execute() {
        let fixture = Fixture::new(&format!("a1.channels.c1.retentionTime = {RETENTION_MS}\n"));
        let point_ms = history(&fixture);
        let since = Duration::from_millis(now_ms() - point_ms);
        let options = ReplayOptions {
            json: true,
            point: ReplayPointSpec::Since(since),
            execute: false,
        };
        let (code, plan) = run_json(|out| replay(&fixture.target(), &options, out));
        assert_eq!(code, exit::OK);
        assert_eq!(plan["events"], 15);
        assert_eq!(plan["take_transactions"], 2);
        assert_eq!(plan["executed"], false);
        assert_eq!(plan["not_retained"], serde_json::json!([]));
        assert_eq!(plan["history_truncated"], false);
        let channel = fixture.open();
        assert_eq!(peek_all(&channel), vec!["queued-0", "queued-1"]);
    }

    #[test]
    fn replay_with_execute_redelivers_exactly_the_events_taken_since_the_point_in_order() {
        let fixture = Fixture::new(&format!("a1.channels.c1.retentionTime = {RETENTION_MS}\n"));
        let point_ms = history(&fixture);
        let options = ReplayOptions {
            json: true,
            point: ReplayPointSpec::parse_from_time(&point_ms.to_string()).unwrap(),
            execute: true,
        };
        let (code, report) = run_json(|out| replay(&fixture.target(), &options, out));
        assert_eq!(code, exit::OK);
        assert_eq!(report["executed"], true);
        assert_eq!(report["events_replayed"], 15);
        let channel = fixture.open();
        let mut expected = vec!["queued-0".to_string(), "queued-1".to_string()];
        expected.extend((0..15).map(|index| format!("late-{index}")));
        assert_eq!(peek_all(&channel), expected);
    }

    #[test]
    fn replay_options_that_do_not_parse_are_usage_errors() {
        assert_eq!(
            ReplayPointSpec::parse_since("ten minutes")
                .unwrap_err()
                .exit_code(),
            exit::USAGE
        );
        assert_eq!(
            ReplayPointSpec::parse_from_time("yesterday")
                .unwrap_err()
                .exit_code(),
            exit::USAGE
        );
        assert_eq!(
            ReplayPointSpec::parse_from_id("-1")
                .unwrap_err()
                .exit_code(),
            exit::USAGE
        );
        assert_eq!(
            ReplayPointSpec::parse_since("15m").unwrap(),
            ReplayPointSpec::Since(Duration::from_secs(900))
        );
        assert_eq!(
            ReplayPointSpec::parse_from_time("1970-01-01T00:00:01.5Z").unwrap(),
            ReplayPointSpec::FromUnixMs(1500)
        );
    }
}
