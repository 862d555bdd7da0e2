//! The configurations the project started from (`tests/fixtures/seed*.conf`), read end to
//! end.

use std::path::{Path, PathBuf};
use std::time::Duration;

use millrace_config::{
    load_agent_config, parse_agent_config, AgentConfig, ChannelConfig, ChannelSelector,
    FileChannelConfig, MemoryChannelConfig, RawSetting, ServerSettings, SpillableChannelConfig,
    DEFAULT_DATA_BASE_DIR,
};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn load(name: &str, agent: &str) -> AgentConfig {
    load_agent_config(&fixture(name), agent, Path::new(DEFAULT_DATA_BASE_DIR))
        .unwrap_or_else(|errors| panic!("{name} should load:\n{errors}"))
}

fn raw(key: &str, value: &str, line: usize) -> RawSetting {
    RawSetting {
        key: key.to_string(),
        value: value.to_string(),
        line,
    }
}

fn flume_memory_channel(capacity: u64, transaction_capacity: u64) -> ChannelConfig {
    ChannelConfig::Memory(MemoryChannelConfig {
        capacity,
        transaction_capacity,
        ..MemoryChannelConfig::default()
    })
}

#[test]
fn seed_000_source_agent_wires_netcat_to_the_spooling_directory_sink() {
    let config = load("seed000_fsource.conf", "fsource");
    assert_eq!(config.agent_name, "fsource");
    assert_eq!(
        config.channels,
        vec![(
            "inMemoryChannel".to_string(),
            flume_memory_channel(1000, 100)
        )]
    );

    let [source] = config.sources.as_slice() else {
        panic!("one source expected: {:?}", config.sources)
    };
    assert_eq!(source.name, "netcatSource");
    assert_eq!(source.source_type, "netcat");
    assert_eq!(source.channels, vec!["inMemoryChannel"]);
    assert_eq!(
        source.selector,
        ChannelSelector::Replicating { optional: vec![] }
    );
    assert_eq!(
        source.settings,
        vec![raw("bind", "", 9), raw("port", "44444", 10)]
    );

    let [sink] = config.sinks.as_slice() else {
        panic!("one sink expected: {:?}", config.sinks)
    };
    assert_eq!(sink.name, "spoolSink");
    assert_eq!(
        sink.sink_type,
        "com.unrulymedia.flume.SpoolingDirectoryFileSink"
    );
    assert_eq!(sink.channel, "inMemoryChannel");
    assert_eq!(
        sink.settings,
        vec![
            raw("sink.directory", "/var/tmp/sink", 20),
            raw("sink.rollInterval", "5", 21)
        ]
    );
    assert!(config.sink_groups.is_empty());
    assert_eq!(config.server, ServerSettings::default());
}

#[test]
fn seed_000_empty_bind_is_kept_for_the_adapter_with_a_warning() {
    let config = load("seed000_fsource.conf", "fsource");
    let warnings: Vec<String> = config.warnings.iter().map(ToString::to_string).collect();
    assert_eq!(
        warnings,
        vec![
            "tests/fixtures/seed000_fsource.conf:9: fsource.sources.netcatSource.bind: empty \
             value: Flume ignores keys with empty values; kept for the adapter to judge"
                .to_string()
                .replace(
                    "tests/fixtures/seed000_fsource.conf",
                    &fixture("seed000_fsource.conf").display().to_string()
                )
        ]
    );
}

#[test]
fn seed_000_sink_agent_wires_spooldir_to_the_logger() {
    let config = load("seed000_fsink.conf", "fsink");
    assert_eq!(config.warnings, vec![]);
    assert_eq!(
        config.channels,
        vec![(
            "inMemoryChannel".to_string(),
            flume_memory_channel(1000, 100)
        )]
    );
    let [source] = config.sources.as_slice() else {
        panic!("one source expected")
    };
    assert_eq!(source.source_type, "spooldir");
    assert_eq!(source.channels, vec!["inMemoryChannel"]);
    assert_eq!(
        source.settings,
        vec![
            raw("spoolDir", "/var/tmp/sink", 16),
            raw("fileHeader", "true", 17)
        ]
    );
    let [sink] = config.sinks.as_slice() else {
        panic!("one sink expected")
    };
    assert_eq!(
        (sink.sink_type.as_str(), sink.channel.as_str()),
        ("logger", "inMemoryChannel")
    );
    assert!(sink.settings.is_empty());
}

#[test]
fn both_seed_000_agents_in_one_file_are_picked_by_name() {
    let source_text = std::fs::read_to_string(fixture("seed000_fsource.conf")).unwrap();
    let sink_text = std::fs::read_to_string(fixture("seed000_fsink.conf")).unwrap();
    let combined = format!("{source_text}\n{sink_text}");
    let base = Path::new(DEFAULT_DATA_BASE_DIR);

    let source_agent = parse_agent_config(&combined, "flume.conf", "fsource", base).unwrap();
    assert_eq!(
        source_agent.sinks[0].sink_type,
        "com.unrulymedia.flume.SpoolingDirectoryFileSink"
    );
    let sink_agent = parse_agent_config(&combined, "flume.conf", "fsink", base).unwrap();
    assert_eq!(sink_agent.sinks[0].sink_type, "logger");
    // Lines are those of the combined file.
    assert_eq!(
        sink_agent.sources[0].declared_line,
        4 + source_text.lines().count() + 1
    );
}

#[test]
fn seed_000_as_published_is_refused_naming_the_lost_keys() {
    let errors = load_agent_config(
        &fixture("seed000_as_published.conf"),
        "fsource",
        Path::new(DEFAULT_DATA_BASE_DIR),
    )
    .unwrap_err();
    let file = fixture("seed000_as_published.conf").display().to_string();
    assert_eq!(
        errors.messages(),
        vec![
            format!(
                "{file}:1: fsource.sinks.spoolSink.channel: expected exactly one channel name, \
                 but the key is missing"
            ),
            format!(
                "{file}:15: fsource.sinks.spoolSink.type: expected a sink type (an alias such \
                 as logger or file_roll, or a class name), got \
                 \"com.unrulymedia.flume.SpoolingDirectoryFileSink = inMemoryChannel = \
                 /var/tmp/sink\""
            ),
        ]
    );
}

#[test]
fn seed_003_channel_snippets_read_with_flumes_real_defaults() {
    let config = load("seed003_channels.conf", "agent");
    assert_eq!(config.warnings, vec![]);
    let names: Vec<&str> = config
        .channels
        .iter()
        .map(|(name, _)| name.as_str())
        .collect();
    assert_eq!(
        names,
        vec!["memoryChannel", "fileChannel", "spillableChannel"]
    );

    assert_eq!(
        config.channel("memoryChannel"),
        Some(&flume_memory_channel(200, 100))
    );

    let mut file = FileChannelConfig::new(
        vec![PathBuf::from("/flume/c1/data")],
        PathBuf::from("/flume/c1/checkpoint"),
    );
    file.use_dual_checkpoints = true;
    file.backup_checkpoint_dir = Some(PathBuf::from("/flume/c1/checkpoint2"));
    assert_eq!(
        config.channel("fileChannel"),
        Some(&ChannelConfig::File(file.clone()))
    );
    // The book's table quotes the User Guide's stale maxFileSize; the code's is lower.
    assert_eq!(file.max_file_size_bytes, 1_623_195_647);
    assert_eq!(file.capacity, 1_000_000);
    assert_eq!(file.transaction_capacity, 10_000);

    let mut overflow =
        FileChannelConfig::with_default_dirs(DEFAULT_DATA_BASE_DIR, "spillableChannel");
    overflow.capacity = 100_000_000;
    overflow.keep_alive = Duration::ZERO;
    let mut spillable = SpillableChannelConfig::new(overflow);
    spillable.memory_capacity = 20_000;
    assert_eq!(
        config.channel("spillableChannel"),
        Some(&ChannelConfig::Spillable(spillable))
    );
}
