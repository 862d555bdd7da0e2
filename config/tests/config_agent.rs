//! Valid agents: every key read into the right field, defaults where keys are absent,
//! and warnings for what Flume would bend.

use std::path::{Path, PathBuf};
use std::time::Duration;

use millrace_config::{
    load_agent_config, parse_agent_config, AgentConfig, ChannelConfig, ChannelSelector,
    Compression, EncryptionConfig, FileChannelConfig, HeaderRoute, HostPort, KeySource,
    LoadBalancingPolicy, MemoryChannelConfig, RawSetting, SinkProcessor, SinkSelector,
    DEFAULT_FAILOVER_MAX_PENALTY,
};
use millrace_engine::storage::IoBackendChoice;

fn parse(text: &str) -> AgentConfig {
    parse_agent_config(text, "agent.conf", "a1", Path::new("base"))
        .unwrap_or_else(|errors| panic!("expected a valid agent:\n{errors}"))
}

fn file_channel(config: &AgentConfig, name: &str) -> FileChannelConfig {
    match config.channel(name) {
        Some(ChannelConfig::File(file)) => file.clone(),
        other => panic!("{name} is not a file channel: {other:?}"),
    }
}

fn warning_messages(config: &AgentConfig) -> Vec<String> {
    config.warnings.iter().map(ToString::to_string).collect()
}

#[test]
fn every_file_channel_key_lands_in_its_field() {
    let config = parse(
        "\
a1.channels = c1
a1.channels.c1.type = org.apache.flume.channel.file.FileChannel
a1.channels.c1.checkpointDir = /mnt/cp
a1.channels.c1.dataDirs = /mnt/d1, /mnt/d2
a1.channels.c1.useDualCheckpoints = TRUE
a1.channels.c1.backupCheckpointDir = /mnt/cp-backup
a1.channels.c1.compressBackupCheckpoint = false
a1.channels.c1.capacity = 5000
a1.channels.c1.transactionCapacity = 500
a1.channels.c1.checkpointInterval = 60000
a1.channels.c1.maxFileSize = 104857600
a1.channels.c1.minimumRequiredSpace = 1073741824
a1.channels.c1.keep-alive = 0
a1.channels.c1.use-log-replay-v1 = false
a1.channels.c1.use-fast-replay = false
a1.channels.c1.fsyncPerTransaction = false
a1.channels.c1.fsyncInterval = 2
a1.channels.c1.checkpointOnClose = false
a1.channels.c1.retentionTime = 86400000
a1.channels.c1.retentionBytes = 10737418240
a1.channels.c1.compression = LZ4
a1.channels.c1.fileMode = 0640
a1.channels.c1.encryption.activeKey = k2
a1.channels.c1.encryption.keyProvider = KEYFILE
a1.channels.c1.encryption.cipherProvider = aes256gcm
a1.channels.c1.encryption.keyProvider.keys = k1 k2
a1.channels.c1.encryption.keyProvider.keys.k1.passwordFile = /keys/k1.password
a1.channels.c1.encryption.keyProvider.keys.k2.keyFile = /keys/k2.key
",
    );
    assert_eq!(config.warnings, vec![]);
    let expected = FileChannelConfig {
        data_dirs: vec![PathBuf::from("/mnt/d1"), PathBuf::from("/mnt/d2")],
        checkpoint_dir: PathBuf::from("/mnt/cp"),
        use_dual_checkpoints: true,
        backup_checkpoint_dir: Some(PathBuf::from("/mnt/cp-backup")),
        capacity: 5000,
        transaction_capacity: 500,
        keep_alive: Duration::ZERO,
        checkpoint_interval: Duration::from_millis(60_000),
        checkpoint_on_close: false,
        max_file_size_bytes: 104_857_600,
        minimum_required_space_bytes: 1_073_741_824,
        fsync_per_transaction: false,
        fsync_interval: Duration::from_secs(2),
        retention_time: Duration::from_millis(86_400_000),
        retention_bytes: 10_737_418_240,
        compression: Compression::Lz4,
        file_mode: 0o640,
        encryption: Some(EncryptionConfig {
            active_key_id: "k2".to_string(),
            keys: [
                (
                    "k1".to_string(),
                    KeySource::PasswordFile(PathBuf::from("/keys/k1.password")),
                ),
                (
                    "k2".to_string(),
                    KeySource::KeyFile(PathBuf::from("/keys/k2.key")),
                ),
            ]
            .into(),
        }),
    };
    assert_eq!(file_channel(&config, "c1"), expected);
}

#[test]
fn a_file_channel_without_directories_keeps_them_under_the_base_directory() {
    let config =
        parse("a1.channels = c1 c2\na1.channels.c1.type = file\na1.channels.c2.type = FILE\n");
    assert_eq!(
        file_channel(&config, "c1"),
        FileChannelConfig::with_default_dirs("base", "c1")
    );
    assert_eq!(
        file_channel(&config, "c2").data_dirs,
        vec![PathBuf::from("base/c2/data")]
    );
}

#[test]
fn a_data_base_dir_in_the_file_overrides_the_callers() {
    let config = parse(
        "a1.channels = c1\na1.channels.c1.type = file\na1.channels.c1.dataDirs = /d\n\
         a1.server.dataBaseDir = /var/lib/millrace\n",
    );
    let file = file_channel(&config, "c1");
    assert_eq!(file.data_dirs, vec![PathBuf::from("/d")]);
    assert_eq!(
        file.checkpoint_dir,
        PathBuf::from("/var/lib/millrace/c1/checkpoint")
    );
    assert_eq!(
        config.server.data_base_dir,
        PathBuf::from("/var/lib/millrace")
    );
}

#[test]
fn memory_and_spillable_keys_land_in_their_fields() {
    let config = parse(
        "\
a1.channels = m s
a1.channels.m.type = Memory
a1.channels.m.capacity = 1000
a1.channels.m.transactionCapacity = 10
a1.channels.m.keep-alive = 1
a1.channels.m.byteCapacity = 800000
a1.channels.m.byteCapacityBufferPercentage = 10
a1.channels.s.type = org.apache.flume.channel.SpillableMemoryChannel
a1.channels.s.memoryCapacity = 0
a1.channels.s.overflowCapacity = 20000
a1.channels.s.overflowTimeout = 0
a1.channels.s.overflowDeactivationThreshold = 50
a1.channels.s.byteCapacity = 1000000
a1.channels.s.byteCapacityBufferPercentage = 0
a1.channels.s.avgEventSize = 1000
a1.channels.s.transactionCapacity = 200
a1.channels.s.dataDirs = /spill
",
    );
    assert_eq!(config.warnings, vec![]);
    assert_eq!(
        config.channel("m"),
        Some(&ChannelConfig::Memory(MemoryChannelConfig {
            capacity: 1000,
            transaction_capacity: 10,
            keep_alive: Duration::from_secs(1),
            byte_capacity_bytes: Some(800_000),
            byte_capacity_buffer_percentage: 10,
        }))
    );
    let Some(ChannelConfig::Spillable(spillable)) = config.channel("s") else {
        panic!("s is spillable")
    };
    assert_eq!(spillable.memory_capacity, 0);
    assert_eq!(spillable.overflow_capacity, 20_000);
    assert_eq!(spillable.overflow_timeout, Duration::ZERO);
    assert_eq!(spillable.overflow_deactivation_threshold_percent, 50);
    assert_eq!(spillable.byte_capacity_bytes, Some(1_000_000));
    assert_eq!(spillable.byte_capacity_buffer_percentage, 0);
    assert_eq!(spillable.avg_event_size_bytes, 1000);
    assert_eq!(
        spillable.overflow.capacity, 20_000,
        "forced to overflowCapacity"
    );
    assert_eq!(spillable.overflow.keep_alive, Duration::ZERO, "forced to 0");
    assert_eq!(spillable.overflow.transaction_capacity, 200);
    assert_eq!(spillable.overflow.data_dirs, vec![PathBuf::from("/spill")]);
    assert_eq!(
        spillable.overflow.checkpoint_dir,
        PathBuf::from("base/s/checkpoint")
    );
}

#[test]
fn a_spillable_channel_may_switch_its_overflow_off() {
    let config = parse(
        "a1.channels = s\na1.channels.s.type = spillablememory\na1.channels.s.overflowCapacity = 0\n",
    );
    let Some(ChannelConfig::Spillable(spillable)) = config.channel("s") else {
        panic!("s is spillable")
    };
    assert_eq!(spillable.overflow_capacity, 0);
    assert_eq!(spillable.overflow.capacity, 0);
}

#[test]
fn server_settings_are_read_from_the_agent() {
    let config = parse(
        "\
a1.channels = c1
a1.channels.c1.type = memory
a1.server.bind = 0.0.0.0:5000
a1.server.http = [::1]:5001
a1.server.authToken = s3cret token
a1.server.maxConnections = 10
a1.server.maxFrameBytes = 1048576
a1.server.idleTimeoutMs = 1000
a1.server.frameDeadlineMs = 500
a1.server.shutdownGraceMs = 0
a1.server.ioBackend = pwrite
",
    );
    let server = &config.server;
    assert_eq!(server.bind, "0.0.0.0:5000".parse::<HostPort>().unwrap());
    assert_eq!(server.http.host, "::1");
    assert_eq!(
        server
            .auth_token
            .as_ref()
            .map(|token| token.expose_secret()),
        Some("s3cret token")
    );
    assert!(
        !format!("{server:?}").contains("s3cret"),
        "the token is redacted"
    );
    assert_eq!(server.max_connections, 10);
    assert_eq!(server.max_frame_bytes, 1_048_576);
    assert_eq!(server.idle_timeout, Duration::from_millis(1000));
    assert_eq!(server.frame_deadline, Duration::from_millis(500));
    assert_eq!(server.shutdown_grace, Duration::ZERO);
    assert_eq!(server.io_backend, IoBackendChoice::Pwrite);
    assert_eq!(server.data_base_dir, PathBuf::from("base"));
}

#[test]
fn an_agent_with_channels_only_is_valid() {
    let config = parse("a1.channels = c1\na1.channels.c1.type = memory\n");
    assert!(config.sources.is_empty() && config.sinks.is_empty() && config.sink_groups.is_empty());
}

#[test]
fn sources_sinks_selectors_and_sink_groups_are_wired() {
    let config = parse(
        "\
a1.sources = r1 r2 r3
a1.channels = c1 c2 c3
a1.sinks = k1 k2 k3 k4
a1.sinkgroups = failover balance

a1.channels.c1.type = memory
a1.channels.c2.type = memory
a1.channels.c3.type = memory

a1.sources.r1.type = netcat
a1.sources.r1.bind = localhost
a1.sources.r1.port = 44444
a1.sources.r1.channels = c1 c2
a1.sources.r1.selector.type = replicating
a1.sources.r1.selector.optional = c2
a1.sources.r1.interceptors = i1
a1.sources.r1.interceptors.i1.type = timestamp

a1.sources.r2.type = http
a1.sources.r2.channels = c1 c2 c3
a1.sources.r2.selector.type = MULTIPLEXING
a1.sources.r2.selector.header = state
a1.sources.r2.selector.mapping.CZ = c1
a1.sources.r2.selector.mapping.US = c2 c3
a1.sources.r2.selector.optional.CZ = c3
a1.sources.r2.selector.default = c3

a1.sources.r3.type = org.example.CustomSource
a1.sources.r3.channels = c1 c2
a1.sources.r3.selector.type = load_balancing
a1.sources.r3.selector.policy = random

a1.sinks.k1.type = logger
a1.sinks.k1.channel = c1
a1.sinks.k2.type = file_roll
a1.sinks.k2.channel = c1
a1.sinks.k2.sink.directory = /var/out
a1.sinks.k3.type = logger
a1.sinks.k3.channel = c2
a1.sinks.k4.type = logger
a1.sinks.k4.channel = c3

a1.sinkgroups.failover.sinks = k1 k2
a1.sinkgroups.failover.processor.type = failover
a1.sinkgroups.failover.processor.priority.k1 = 10
a1.sinkgroups.failover.processor.priority.k2 = -5

a1.sinkgroups.balance.sinks = k3 k4
a1.sinkgroups.balance.processor.type = load_balance
a1.sinkgroups.balance.processor.backoff = true
a1.sinkgroups.balance.processor.selector = random
a1.sinkgroups.balance.processor.selector.maxTimeOut = 10000
",
    );
    assert_eq!(config.warnings, vec![]);

    let r1 = &config.sources[0];
    assert_eq!(r1.channels, vec!["c1", "c2"]);
    assert_eq!(
        r1.selector,
        ChannelSelector::Replicating {
            optional: vec!["c2".into()]
        }
    );
    let r1_keys: Vec<&str> = r1.settings.iter().map(|s| s.key.as_str()).collect();
    assert_eq!(
        r1_keys,
        vec!["bind", "port", "interceptors", "interceptors.i1.type"]
    );

    assert_eq!(
        config.sources[1].selector,
        ChannelSelector::Multiplexing {
            header: "state".into(),
            mappings: vec![
                HeaderRoute {
                    header_value: "CZ".into(),
                    channels: vec!["c1".into()]
                },
                HeaderRoute {
                    header_value: "US".into(),
                    channels: vec!["c2".into(), "c3".into()]
                },
            ],
            optional: vec![HeaderRoute {
                header_value: "CZ".into(),
                channels: vec!["c3".into()]
            }],
            default: vec!["c3".into()],
        }
    );
    assert_eq!(config.sources[2].source_type, "org.example.CustomSource");
    assert_eq!(
        config.sources[2].selector,
        ChannelSelector::LoadBalancing {
            policy: LoadBalancingPolicy::Random
        }
    );

    let sink_channels: Vec<(&str, &str)> = config
        .sinks
        .iter()
        .map(|sink| (sink.name.as_str(), sink.channel.as_str()))
        .collect();
    assert_eq!(
        sink_channels,
        vec![("k1", "c1"), ("k2", "c1"), ("k3", "c2"), ("k4", "c3")]
    );
    assert_eq!(
        config.sinks[1].settings,
        vec![RawSetting {
            key: "sink.directory".into(),
            value: "/var/out".into(),
            line: 37
        }]
    );

    let groups: Vec<(&str, &[String])> = config
        .sink_groups
        .iter()
        .map(|group| (group.name.as_str(), group.sinks.as_slice()))
        .collect();
    assert_eq!(
        groups,
        vec![
            ("failover", &["k1".to_string(), "k2".to_string()][..]),
            ("balance", &["k3".to_string(), "k4".to_string()][..]),
        ]
    );
    assert_eq!(
        config.sink_groups[0].processor,
        SinkProcessor::Failover {
            priorities: vec![("k1".into(), 10), ("k2".into(), -5)],
            max_penalty: DEFAULT_FAILOVER_MAX_PENALTY,
        }
    );
    assert_eq!(
        config.sink_groups[1].processor,
        SinkProcessor::LoadBalance {
            selector: SinkSelector::Random,
            backoff: true,
            max_backoff: Duration::from_millis(10_000),
        }
    );
}

#[test]
fn custom_selectors_and_processors_keep_their_keys() {
    let config = parse(
        "\
a1.channels = c1
a1.sources = r1
a1.sinks = k1
a1.sinkgroups = g1
a1.channels.c1.type = memory
a1.sources.r1.type = seq
a1.sources.r1.channels = c1
a1.sources.r1.selector.type = org.example.RoutingSelector
a1.sources.r1.selector.routes = geo
a1.sinks.k1.type = logger
a1.sinks.k1.channel = c1
a1.sinkgroups.g1.sinks = k1
a1.sinkgroups.g1.processor.type = org.example.Processor
a1.sinkgroups.g1.processor.mode = fast
",
    );
    assert_eq!(
        config.sources[0].selector,
        ChannelSelector::Custom {
            class_name: "org.example.RoutingSelector".into(),
            settings: vec![RawSetting {
                key: "routes".into(),
                value: "geo".into(),
                line: 9
            }],
        }
    );
    assert_eq!(
        config.sink_groups[0].processor,
        SinkProcessor::Custom {
            class_name: "org.example.Processor".into(),
            settings: vec![RawSetting {
                key: "mode".into(),
                value: "fast".into(),
                line: 14
            }],
        }
    );
}

/// Each row: one channel key, and the warning it must produce.
#[test]
fn values_flume_would_bend_or_ignore_are_accepted_with_a_warning() {
    let table: &[(&str, &str, &str)] = &[
        (
            "file",
            "maxFileSize = 2146435071",
            "lowered to 1623195647 bytes, the ceiling Flume applies as well",
        ),
        (
            "file",
            "minimumRequiredSpace = 1000",
            "raised to 1048576 bytes, the floor Flume applies as well",
        ),
        (
            "file",
            "checkpointInterval = 10",
            "raised to 1000 ms, the floor Flume applies as well",
        ),
        (
            "file",
            "compressBackupCheckpoint = true",
            "accepted but not acted on: Millrace writes the backup checkpoint uncompressed",
        ),
        (
            "file",
            "use-fast-replay = true",
            "accepted but not acted on: Millrace has a single replay procedure; Flume's fast \
             replay does not apply",
        ),
        (
            "file",
            "use-log-replay-v1 = true",
            "accepted but not acted on: Millrace has a single replay procedure; Flume's v1 \
             log replay does not apply",
        ),
        (
            "file",
            "backupCheckpointDir = /backup",
            "ignored because useDualCheckpoints is not true",
        ),
        (
            "file",
            "fsyncInterval = 1",
            "has no effect while fsyncPerTransaction = true (every commit is synced)",
        ),
        (
            "file",
            "checkpointDir = ~/flume/cp",
            "\"~\" is not expanded (Flume does not expand it either): this names a directory \
             called \"~\" under the working directory, \"~/flume/cp\"",
        ),
        (
            "spillablememory",
            "capacity = 100",
            "has no effect on a spillable channel (Flume overrides it too): the overflow holds \
             overflowCapacity events and memory holds memoryCapacity",
        ),
        (
            "spillablememory",
            "keep-alive = 10",
            "has no effect on a spillable channel (Flume forces the overflow's keep-alive to \
             0): overflowTimeout governs how long a commit waits",
        ),
    ];
    for (channel_type, line, message) in table {
        let text = format!(
            "a1.channels = c1\na1.channels.c1.type = {channel_type}\na1.channels.c1.{line}\n"
        );
        let config = parse(&text);
        let key = line.split(" = ").next().unwrap();
        assert_eq!(
            warning_messages(&config),
            vec![format!("agent.conf:3: a1.channels.c1.{key}: {message}")],
            "{line}"
        );
    }
}

#[test]
fn clamped_and_floored_values_use_flumes_limits() {
    let config = parse(
        "\
a1.channels = c1
a1.channels.c1.type = file
a1.channels.c1.maxFileSize = 9999999999
a1.channels.c1.minimumRequiredSpace = 0
a1.channels.c1.checkpointInterval = 1
",
    );
    let file = file_channel(&config, "c1");
    assert_eq!(file.max_file_size_bytes, 1_623_195_647);
    assert_eq!(file.effective_minimum_required_space_bytes(), 1_048_576);
    assert_eq!(
        file.effective_checkpoint_interval(),
        Duration::from_millis(1000)
    );
    assert_eq!(config.warnings.len(), 3);
}

#[test]
fn flumes_aes_ctr_cipher_name_is_mapped_to_the_authenticated_cipher_with_a_warning() {
    let config = parse(
        "\
a1.channels = c1
a1.channels.c1.type = file
a1.channels.c1.encryption.activeKey = key-1
a1.channels.c1.encryption.cipherProvider = AESCTRNOPADDING
a1.channels.c1.encryption.keyProvider.keys = key-0 key-1
a1.channels.c1.encryption.keyProvider.keys.key-0.passwordFile = /keys/key-0.password
a1.channels.c1.encryption.keyProvider.keys.key-1.keyFile = /keys/key-1.key
",
    );
    let encryption = file_channel(&config, "c1")
        .encryption
        .expect("encryption is set");
    assert_eq!(encryption.active_key_id, "key-1");
    assert_eq!(
        encryption.keys.keys().collect::<Vec<_>>(),
        vec!["key-0", "key-1"]
    );
    assert_eq!(
        warning_messages(&config),
        vec![
            "agent.conf:4: a1.channels.c1.encryption.cipherProvider: Millrace encrypts with \
             AES256GCM (authenticated, a fresh subkey per channel open) instead of Flume's \
             AES-CTR, which does not authenticate and reuses its keystream within a file; set \
             AES256GCM to silence this warning"
        ]
    );
}

#[test]
fn a_spillable_channel_encrypts_and_compresses_its_overflow() {
    let config = parse(
        "\
a1.channels = c1
a1.channels.c1.type = spillablememory
a1.channels.c1.compression = lz4
a1.channels.c1.encryption.activeKey = k1
a1.channels.c1.encryption.keyProvider.keys = k1
a1.channels.c1.encryption.keyProvider.keys.k1.keyFile = /keys/k1.key
",
    );
    let Some(ChannelConfig::Spillable(spillable)) = config.channel("c1") else {
        panic!("c1 is spillable")
    };
    assert_eq!(spillable.overflow.compression, Compression::Lz4);
    assert_eq!(
        spillable
            .overflow
            .encryption
            .as_ref()
            .map(|encryption| encryption.active_key_id.as_str()),
        Some("k1")
    );
}

#[test]
fn flume_trims_values_so_trailing_whitespace_and_continuations_are_harmless() {
    let config = parse(
        "a1.channels = c1 \\\n    c2   \na1.channels.c1.type = memory\t\n\
         a1.channels.c2.type : memory\na1.channels.c2.capacity   500 \n",
    );
    let names: Vec<&str> = config
        .channels
        .iter()
        .map(|(name, _)| name.as_str())
        .collect();
    assert_eq!(names, vec!["c1", "c2"]);
    let Some(ChannelConfig::Memory(c2)) = config.channel("c2") else {
        panic!("c2 is memory")
    };
    assert_eq!(c2.capacity, 500);
}

#[test]
fn a_file_on_disk_is_read_with_its_path_in_messages() {
    let directory = tempfile::tempdir().unwrap();
    let path = directory.path().join("agent.conf");
    std::fs::write(
        &path,
        "a1.channels = c1\na1.channels.c1.type = file\na1.channels.c1.maxFileSize = 1e9\n",
    )
    .unwrap();
    let errors = load_agent_config(&path, "a1", Path::new("base")).unwrap_err();
    assert_eq!(
        errors.messages(),
        vec![format!(
            "{}:3: a1.channels.c1.maxFileSize: expected a positive integer, got \"1e9\"",
            path.display()
        )]
    );
}
