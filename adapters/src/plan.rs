//! From an agent's configuration to the components channel-agent runs.
//!
//! Each source is one component; each sink group is one component holding its sinks;
//! each sink outside a group is one component. channeld starts one channel-agent process
//! per component, so a component that crashes takes nothing else with it.
//!
//! Every adapter key is read here, with the same errors as channel keys: a missing or
//! bad value, or a key the adapter does not know, names file, line and key.

use std::path::PathBuf;
use std::time::Duration;

use millrace_client::ClientOptions;
use millrace_server::config::values::{self, Expected};
use millrace_server::config::{
    sort_by_line, AgentConfig, ChannelSelector, ConfigError, ConfigErrorKind, ConfigErrors,
    ConfigWarning, SinkConfig, SinkProcessor, SourceConfig,
};
use millrace_server::registry::type_alias;

use crate::interceptors::{plan_interceptors, Interceptor};
use crate::pool::DEFAULT_CHANNELD_CONNECTIONS;
use crate::settings::{self, ComponentSettings};
use crate::sinks::{RollingFileSettings, DEFAULT_MAX_BYTES_TO_LOG};
use crate::sources::exec::{self, ExecSettings};
use crate::sources::http::{self, HttpLimits, HttpSettings};
use crate::sources::netcat::{self, NetcatSettings};
use crate::sources::spooldir::{
    self, CompletionPolicy, ConsumeOrder, DecodeErrorPolicy, SpoolDirSettings,
};
use crate::sources::syslog::{self, KeepFields, SyslogSettings};
use crate::sources::{ListenerLimits, SourceKind, DEFAULT_IDLE_TIMEOUT, DEFAULT_MAX_CONNECTIONS};

/// The spooling-directory file sink's class name, accepted as Millrace's own.
pub const SPOOLING_DIRECTORY_SINK_CLASS: &str = "com.unrulymedia.flume.SpoolingDirectoryFileSink";
/// Millrace's alias for the spooling-directory file sink.
pub const SPOOLING_DIRECTORY_SINK_ALIAS: &str = "spooling_directory";
/// Flume's default sink batch size.
pub const DEFAULT_SINK_BATCH_SIZE: u64 = 100;
/// Flume's default `sink.rollInterval`.
pub const DEFAULT_ROLL_INTERVAL: Duration = Duration::from_secs(30);
/// Refusals before an event goes to the dead-letter channel, by default.
pub const DEFAULT_DEAD_LETTER_MAX_ATTEMPTS: u64 = 3;
/// Flume's default spooldir `batchSize`.
pub const DEFAULT_SPOOLDIR_BATCH_SIZE: u64 = 100;
/// Flume's default spooldir `pollDelay`.
pub const DEFAULT_POLL_DELAY: Duration = Duration::from_millis(500);
/// Flume's Avro sink default connect timeout, used by `forward`.
pub const DEFAULT_FORWARD_CONNECT_TIMEOUT: Duration = Duration::from_millis(20_000);

/// What a sink does with the events it takes.
#[derive(Debug, Clone)]
pub enum SinkKindPlan {
    /// `logger`.
    Logger {
        /// `maxBytesToLog`.
        max_bytes_to_log: usize,
    },
    /// `null`.
    Null,
    /// `file_roll` or the spooling-directory sink.
    RollingFile(RollingFileSettings),
    /// `forward`.
    Forward {
        /// `hostname:port`.
        address: String,
        /// `authToken`.
        auth_token: Option<String>,
        /// `remoteChannel`.
        remote_channel: String,
        /// `connect-timeout`.
        connect_timeout: Duration,
    },
    /// `avro`.
    Avro(crate::sinks::AvroSinkSettings),
}

/// One sink, ready to build.
#[derive(Debug, Clone)]
pub struct SinkPlan {
    /// Its name.
    pub name: String,
    /// The channel it takes from.
    pub channel: String,
    /// Events per take.
    pub batch_size: u32,
    /// What it does.
    pub kind: SinkKindPlan,
    /// `deadLetter.channel` and `deadLetter.maxAttempts`.
    pub dead_letter: Option<(String, u32)>,
}

/// One source, ready to run.
#[derive(Debug, Clone)]
pub struct SourcePlan {
    /// Its name.
    pub name: String,
    /// What it reads.
    pub kind: SourceKind,
    /// Its channels, in order.
    pub channels: Vec<String>,
    /// Its selector.
    pub selector: ChannelSelector,
    /// Its interceptors, in order.
    pub interceptors: Vec<Interceptor>,
    /// `deadLetter.channel`: where events its channels refuse go.
    pub dead_letter_channel: Option<String>,
    /// `channeldConnections`: most connections to channeld it opens.
    pub channeld_connections: usize,
}

/// One unit channel-agent runs and channeld supervises as a process.
#[derive(Debug, Clone)]
pub enum ComponentPlan {
    /// A source.
    Source(Box<SourcePlan>),
    /// A sink outside any group.
    Sink(SinkPlan),
    /// A sink group and its sinks, in the group's order.
    SinkGroup {
        /// The group's name.
        name: String,
        /// Its processor.
        processor: SinkProcessor,
        /// Its sinks.
        sinks: Vec<SinkPlan>,
    },
}

impl ComponentPlan {
    /// The name `--component` selects it by.
    pub fn name(&self) -> &str {
        match self {
            ComponentPlan::Source(source) => &source.name,
            ComponentPlan::Sink(sink) => &sink.name,
            ComponentPlan::SinkGroup { name, .. } => name,
        }
    }
}

/// What planning an agent's sources and sinks found: the components that can run, and
/// every problem with their keys.
#[derive(Debug, Default)]
pub struct AgentPlan {
    /// The components whose keys are all good, in [`AgentConfig::adapter_components`]
    /// order.
    pub components: Vec<ComponentPlan>,
    /// Bad, missing and unknown adapter keys, in line order.
    pub errors: Vec<ConfigError>,
    /// Adapter keys accepted but not acted on, in line order.
    pub warnings: Vec<ConfigWarning>,
}

impl AgentPlan {
    /// The components when every key is good, else every problem.
    pub fn into_result(self) -> Result<Vec<ComponentPlan>, ConfigErrors> {
        if self.errors.is_empty() {
            Ok(self.components)
        } else {
            Err(ConfigErrors {
                errors: self.errors,
                warnings: self.warnings,
            })
        }
    }
}

/// Reads every source and sink of `config`; `file` names the file in messages.
///
/// `config` may be a partial reading of a file with errors (see
/// [`millrace_server::config::AgentReading`]): every component in it is planned, so that
/// its problems are reported in the same run as the file's own.
pub fn plan_agent(config: &AgentConfig, file: &str) -> AgentPlan {
    let mut found = AgentPlan::default();
    let channel_names: Vec<&str> = config
        .channels
        .iter()
        .map(|(name, _)| name.as_str())
        .collect();
    for source in &config.sources {
        if let Some(planned) = plan_source(config, source, file, &channel_names, &mut found) {
            found
                .components
                .push(ComponentPlan::Source(Box::new(SourcePlan {
                    name: source.name.clone(),
                    kind: planned.kind,
                    channels: source.channels.clone(),
                    selector: source.selector.clone(),
                    interceptors: planned.interceptors,
                    dead_letter_channel: planned.dead_letter_channel,
                    channeld_connections: planned.channeld_connections,
                })));
        }
    }
    let mut sink_plans: Vec<SinkPlan> = Vec::new();
    for sink in &config.sinks {
        if let Some(plan) = plan_sink(config, sink, file, &channel_names, &mut found) {
            sink_plans.push(plan);
        }
    }
    for group in &config.sink_groups {
        if let SinkProcessor::Custom { class_name, .. } = &group.processor {
            let key = format!(
                "{}.sinkgroups.{}.processor.type",
                config.agent_name, group.name
            );
            found.errors.push(ConfigError {
                file: file.to_string(),
                line: Some(config.line_of(&key).unwrap_or(group.declared_line)),
                kind: ConfigErrorKind::BadValue {
                    key,
                    expected: "default, failover or load_balance (Millrace runs no Java classes)"
                        .into(),
                    value: class_name.clone(),
                },
            });
            continue;
        }
        let sinks = group
            .sinks
            .iter()
            .filter_map(|name| sink_plans.iter().find(|plan| &plan.name == name).cloned())
            .collect();
        found.components.push(ComponentPlan::SinkGroup {
            name: group.name.clone(),
            processor: group.processor.clone(),
            sinks,
        });
    }
    let names = config.adapter_components();
    for plan in sink_plans {
        if names.contains(&plan.name) {
            found.components.push(ComponentPlan::Sink(plan));
        }
    }
    sort_by_line(&mut found.errors, &mut found.warnings);
    found
}

fn type_is(value: &str, alias: &str, class_name: &str) -> bool {
    value.eq_ignore_ascii_case(alias) || value == class_name
}

/// A `type` no adapter implements, reported on the `type` line (or the declaration,
/// for a configuration built without a file).
fn unsupported_type(
    config: &AgentConfig,
    list: &str,
    name: &str,
    declared_line: usize,
    value: &str,
    supported: &str,
    file: &str,
) -> ConfigError {
    let key = format!("{}.{list}.{name}.type", config.agent_name);
    ConfigError {
        file: file.to_string(),
        line: Some(config.line_of(&key).unwrap_or(declared_line)),
        kind: ConfigErrorKind::BadValue {
            key,
            expected: format!("one of the {list} Millrace runs: {supported}"),
            value: value.to_string(),
        },
    }
}

const SUPPORTED_SOURCES: &str = "netcat, spooldir, exec, syslogtcp, syslogudp, http, avro";

/// What [`plan_source`] reads besides the source's type-specific keys.
struct PlannedSource {
    kind: SourceKind,
    interceptors: Vec<Interceptor>,
    dead_letter_channel: Option<String>,
    channeld_connections: usize,
}

/// Reads `deadLetter.channel`: a channel of the agent that is none of `own_channels`
/// (the component's own, described as `own` in the message).
fn plan_dead_letter_channel(
    keys: &mut ComponentSettings<'_>,
    config: &AgentConfig,
    channel_names: &[&str],
    own_channels: &[String],
    own: &str,
) -> Option<String> {
    let channel = keys.text("deadLetter.channel")?;
    if !channel_names.contains(&channel.as_str()) {
        keys.conflict(
            "deadLetter.channel",
            format!(
                "expected a channel listed in {}.channels ({}), got {channel:?}",
                config.agent_name,
                channel_names.join(" ")
            ),
        );
    } else if own_channels.contains(&channel) {
        keys.conflict(
            "deadLetter.channel",
            format!("expected a channel other than {own}, got {channel:?}"),
        );
    }
    Some(channel)
}

/// `maxConnections` and `idleTimeout` of a netcat or syslogtcp listener.
fn plan_listener_limits(keys: &mut ComponentSettings<'_>) -> ListenerLimits {
    let max_connections = keys.count_or("maxConnections", DEFAULT_MAX_CONNECTIONS as u64);
    let idle_timeout = keys.millis_or("idleTimeout", DEFAULT_IDLE_TIMEOUT);
    ListenerLimits {
        max_connections: usize::try_from(max_connections).unwrap_or(usize::MAX),
        idle_timeout: (!idle_timeout.is_zero()).then_some(idle_timeout),
    }
}

fn plan_source(
    config: &AgentConfig,
    source: &SourceConfig,
    file: &str,
    channel_names: &[&str],
    found: &mut AgentPlan,
) -> Option<PlannedSource> {
    let prefix = format!("{}.sources.{}", config.agent_name, source.name);
    let mut keys = ComponentSettings::new(file, &prefix, source.declared_line, &source.settings);
    let interceptors = plan_interceptors(&mut keys);
    if let ChannelSelector::Custom { class_name, .. } = &source.selector {
        let key = format!("{prefix}.selector.type");
        found.errors.push(ConfigError {
            file: file.to_string(),
            line: Some(config.line_of(&key).unwrap_or(source.declared_line)),
            kind: ConfigErrorKind::BadValue {
                key,
                expected: "replicating, multiplexing or load_balancing (Millrace runs no Java \
                           classes)"
                    .into(),
                value: class_name.clone(),
            },
        });
    }
    let dead_letter_channel = plan_dead_letter_channel(
        &mut keys,
        config,
        channel_names,
        &source.channels,
        "the source's own channels",
    );
    let source_type = source.source_type.as_str();
    // Only sources serving many clients at once can use more than one connection.
    let serves_many_clients = ["netcat", "syslogtcp", "http", "avro"]
        .iter()
        .any(|alias| source_type.eq_ignore_ascii_case(alias))
        || source_type.ends_with("NetcatSource")
        || source_type.ends_with("SyslogTcpSource")
        || source_type.ends_with("HTTPSource")
        || source_type.ends_with("AvroSource");
    let channeld_connections = if serves_many_clients {
        keys.count_or("channeldConnections", DEFAULT_CHANNELD_CONNECTIONS as u64)
    } else {
        1
    };
    let kind = if type_is(
        source_type,
        "netcat",
        "org.apache.flume.source.NetcatSource",
    ) {
        plan_netcat(&mut keys).map(SourceKind::Netcat)
    } else if type_is(
        source_type,
        "spooldir",
        "org.apache.flume.source.SpoolDirectorySource",
    ) {
        plan_spooldir(&mut keys).map(SourceKind::SpoolDir)
    } else if type_is(source_type, "exec", "org.apache.flume.source.ExecSource") {
        plan_exec(&mut keys).map(SourceKind::Exec)
    } else if type_is(
        source_type,
        "syslogtcp",
        "org.apache.flume.source.SyslogTcpSource",
    ) {
        plan_syslog(&mut keys, SyslogTransport::Tcp).map(SourceKind::SyslogTcp)
    } else if type_is(
        source_type,
        "syslogudp",
        "org.apache.flume.source.SyslogUDPSource",
    ) {
        plan_syslog(&mut keys, SyslogTransport::Udp).map(SourceKind::SyslogUdp)
    } else if type_is(
        source_type,
        "http",
        "org.apache.flume.source.http.HTTPSource",
    ) {
        plan_http(&mut keys).map(SourceKind::Http)
    } else if type_is(source_type, "avro", "org.apache.flume.source.AvroSource") {
        crate::sources::avro::plan(&mut keys).map(SourceKind::Avro)
    } else {
        found.errors.push(unsupported_type(
            config,
            "sources",
            &source.name,
            source.declared_line,
            source_type,
            SUPPORTED_SOURCES,
            file,
        ));
        return None;
    };
    let mut kind = kind;
    if let Some(kind) = kind.as_mut() {
        fit_batch_to_channels(config, source, kind, &mut keys);
    }
    let problems = keys.finish();
    let failed = !problems.errors.is_empty();
    found.errors.extend(problems.errors);
    found.warnings.extend(problems.warnings);
    if failed {
        None
    } else {
        kind.map(|kind| PlannedSource {
            kind,
            interceptors,
            dead_letter_channel,
            channeld_connections: usize::try_from(channeld_connections).unwrap_or(usize::MAX),
        })
    }
}

/// The key every batching source reads its batch size from.
const SOURCE_BATCH_SIZE_KEY: &str = "batchSize";

/// The events a source puts in one transaction, for the sources that batch (netcat puts
/// each line alone; an http request is one batch whatever its size).
fn batch_size_mut(kind: &mut SourceKind) -> Option<&mut usize> {
    match kind {
        SourceKind::SpoolDir(settings) => Some(&mut settings.batch_size),
        SourceKind::Exec(settings) => Some(&mut settings.batch_size),
        SourceKind::SyslogTcp(settings) | SourceKind::SyslogUdp(settings) => {
            Some(&mut settings.batch_size)
        }
        SourceKind::Netcat(_) | SourceKind::Http(_) | SourceKind::Avro(_) => None,
    }
}

/// A channel refuses a put transaction larger than its `transactionCapacity`. A
/// `batchSize` set above that of any channel the source writes to is an error naming
/// both keys (Flume only fails such a spooldir at run time, and retries it forever); a
/// default batch size is lowered to the smallest `transactionCapacity` instead, since
/// the user asked for nothing.
fn fit_batch_to_channels(
    config: &AgentConfig,
    source: &SourceConfig,
    kind: &mut SourceKind,
    keys: &mut ComponentSettings<'_>,
) {
    let Some(batch_size) = batch_size_mut(kind) else {
        return;
    };
    // A channel that could not be read is left out: its own errors say why.
    let smallest = source
        .channels
        .iter()
        .filter_map(|name| Some((name, config.channel(name)?)))
        .map(|(name, channel)| (channel.transaction_capacity(), name, channel))
        .min_by_key(|(transaction_capacity, _, _)| *transaction_capacity);
    let Some((transaction_capacity, channel_name, channel)) = smallest else {
        return;
    };
    let fits = u64::try_from(*batch_size).is_ok_and(|batch| batch <= transaction_capacity);
    if fits {
        return;
    }
    if keys.line_of(SOURCE_BATCH_SIZE_KEY).is_none() {
        *batch_size = usize::try_from(transaction_capacity).unwrap_or(usize::MAX);
        return;
    }
    let capacity_key = format!(
        "{}.channels.{channel_name}.transactionCapacity",
        config.agent_name
    );
    let capacity_origin = match config.line_of(&capacity_key) {
        Some(line) => format!("{capacity_key} on line {line}"),
        None => format!(
            "{capacity_key}, not set: the {} channel default",
            type_alias(channel)
        ),
    };
    keys.conflict(
        SOURCE_BATCH_SIZE_KEY,
        format!(
            "expected at most {transaction_capacity}, the transactionCapacity of channel \
             {channel_name} ({capacity_origin}), got {batch_size}: the channel refuses a \
             larger transaction"
        ),
    );
}

fn plan_netcat(keys: &mut ComponentSettings<'_>) -> Option<NetcatSettings> {
    let bind = keys.text_or("bind", "");
    let port = keys.port("port");
    let max_line_length = keys.count_or("max-line-length", netcat::DEFAULT_MAX_LINE_LENGTH as u64);
    let ack_every_event = keys.boolean_or("ack-every-event", true);
    keys.choice_or("encoding", "utf-8", &["utf-8"]);
    let listener = plan_listener_limits(keys);
    Some(NetcatSettings {
        bind,
        port: port?,
        max_line_length: usize::try_from(max_line_length).unwrap_or(usize::MAX),
        ack_every_event,
        listener,
    })
}

fn plan_spooldir(keys: &mut ComponentSettings<'_>) -> Option<SpoolDirSettings> {
    let spool_dir = keys.required("spoolDir", "a directory path", values::directory);
    let file_suffix = keys.text_or("fileSuffix", ".COMPLETED");
    let delete_policy = keys.choice_or("deletePolicy", "never", &["never", "immediate"]);
    let tracking_policy = keys.choice_or("trackingPolicy", "rename", &["rename", "tracker_dir"]);
    let tracker_dir = PathBuf::from(keys.text_or("trackerDir", ".flumespool"));
    let file_header = keys.boolean_or("fileHeader", false);
    let file_header_key = keys.text_or("fileHeaderKey", "file");
    let basename_header = keys.boolean_or("basenameHeader", false);
    let basename_header_key = keys.text_or("basenameHeaderKey", "basename");
    let include_pattern = keys.parsed("includePattern", settings::regex);
    let ignore_pattern = keys.parsed("ignorePattern", settings::regex);
    let consume_order = keys.choice_or("consumeOrder", "oldest", &["oldest", "youngest", "random"]);
    let poll_delay = keys.parsed_or(
        "pollDelay",
        DEFAULT_POLL_DELAY,
        values::positive_milliseconds,
    );
    let batch_size = keys.count_or(SOURCE_BATCH_SIZE_KEY, DEFAULT_SPOOLDIR_BATCH_SIZE);
    keys.choice_or("inputCharset", "UTF-8", &["UTF-8"]);
    let decode_error_policy =
        keys.choice_or("decodeErrorPolicy", "FAIL", &["FAIL", "REPLACE", "IGNORE"]);
    keys.choice_or("deserializer", "LINE", &["LINE"]);
    let max_line_length = keys.count_or(
        "deserializer.maxLineLength",
        spooldir::DEFAULT_MAX_LINE_LENGTH as u64,
    );
    // Flume's name from before deserializers; Flume copies it over the line
    // deserializer's maxLineLength, so it wins when both are set.
    let legacy_max_line_length = keys.parsed("bufferMaxLineLength", values::positive_integer);
    if legacy_max_line_length.is_some() && keys.line_of("deserializer.maxLineLength").is_some() {
        keys.accept_with_warning(
            "bufferMaxLineLength",
            "overrides deserializer.maxLineLength, as in Flume (it is that key's old name)",
        );
    }
    let max_line_length = legacy_max_line_length.unwrap_or(max_line_length);
    if keys
        .parsed("maxBackoff", values::positive_milliseconds)
        .is_some()
    {
        keys.accept_with_warning(
            "maxBackoff",
            "accepted but not acted on: when the channel is full, Millrace's spooldir waits \
             250 ms doubling up to 4 s, Flume's default maxBackoff",
        );
    }
    keys.accept_with_warning(
        "bufferMaxLines",
        "has no effect: Flume deprecated it and no longer reads it either",
    );
    keys.choice_or("deserializer.outputCharset", "UTF-8", &["UTF-8"]);
    keys.parsed_or(
        "recursiveDirectorySearch",
        false,
        |value| match values::boolean(value)? {
            false => Ok(false),
            true => Err(Expected::new(
                "false (recursive search is not supported yet)",
            )),
        },
    );
    let completion = match (delete_policy, tracking_policy) {
        ("immediate", _) => CompletionPolicy::Delete,
        (_, "tracker_dir") => CompletionPolicy::TrackerDir,
        _ => CompletionPolicy::Rename,
    };
    let spool_dir = spool_dir?;
    let tracker_dir = if tracker_dir.is_absolute() {
        tracker_dir
    } else {
        spool_dir.join(tracker_dir)
    };
    Some(SpoolDirSettings {
        spool_dir,
        file_suffix,
        completion,
        tracker_dir,
        file_header_key: file_header.then_some(file_header_key),
        basename_header_key: basename_header.then_some(basename_header_key),
        include_pattern: include_pattern
            .unwrap_or_else(|| regex::Regex::new("^.*$").expect("valid pattern")),
        ignore_pattern: ignore_pattern
            .unwrap_or_else(|| regex::Regex::new("^$").expect("valid pattern")),
        consume_order: match consume_order {
            "youngest" => ConsumeOrder::Youngest,
            "random" => ConsumeOrder::Random,
            _ => ConsumeOrder::Oldest,
        },
        poll_delay,
        batch_size: usize::try_from(batch_size).unwrap_or(usize::MAX),
        max_line_length: usize::try_from(max_line_length).unwrap_or(usize::MAX),
        decode_error_policy: match decode_error_policy {
            "REPLACE" => DecodeErrorPolicy::Replace,
            "IGNORE" => DecodeErrorPolicy::Ignore,
            _ => DecodeErrorPolicy::Fail,
        },
    })
}

const SUPPORTED_SINKS: &str = "logger, null, file_roll, spooling_directory (or \
     com.unrulymedia.flume.SpoolingDirectoryFileSink), forward, avro";

fn batch_size(value: u64) -> u32 {
    u32::try_from(value).unwrap_or(u32::MAX)
}

fn plan_sink(
    config: &AgentConfig,
    sink: &SinkConfig,
    file: &str,
    channel_names: &[&str],
    found: &mut AgentPlan,
) -> Option<SinkPlan> {
    let prefix = format!("{}.sinks.{}", config.agent_name, sink.name);
    let mut keys = ComponentSettings::new(file, prefix, sink.declared_line, &sink.settings);
    let sink_type = sink.sink_type.as_str();
    let planned: Option<(u64, SinkKindPlan)> =
        if type_is(sink_type, "logger", "org.apache.flume.sink.LoggerSink") {
            let max_bytes = keys.parsed_or(
                "maxBytesToLog",
                DEFAULT_MAX_BYTES_TO_LOG as u64,
                values::non_negative_integer,
            );
            Some((
                keys.count_or("batchSize", DEFAULT_SINK_BATCH_SIZE),
                SinkKindPlan::Logger {
                    max_bytes_to_log: usize::try_from(max_bytes).unwrap_or(usize::MAX),
                },
            ))
        } else if type_is(sink_type, "null", "org.apache.flume.sink.NullSink") {
            if keys
                .parsed("logEveryNEvents", values::positive_integer)
                .is_some()
            {
                keys.accept_with_warning(
                    "logEveryNEvents",
                    "accepted but not acted on: Millrace's null sink logs no progress lines \
                     (its counters are on /metrics)",
                );
            }
            Some((
                keys.count_or("batchSize", DEFAULT_SINK_BATCH_SIZE),
                SinkKindPlan::Null,
            ))
        } else if type_is(
            sink_type,
            "file_roll",
            "org.apache.flume.sink.RollingFileSink",
        ) {
            plan_rolling_file(&mut keys, false)
        } else if type_is(
            sink_type,
            SPOOLING_DIRECTORY_SINK_ALIAS,
            SPOOLING_DIRECTORY_SINK_CLASS,
        ) {
            plan_rolling_file(&mut keys, true)
        } else if type_is(sink_type, "forward", "forward") {
            plan_forward(&mut keys, &sink.channel)
        } else if type_is(sink_type, "avro", "org.apache.flume.sink.AvroSink") {
            crate::sinks::avro::plan(&mut keys)
                .map(|(batch, settings)| (batch, SinkKindPlan::Avro(settings)))
        } else {
            found.errors.push(unsupported_type(
                config,
                "sinks",
                &sink.name,
                sink.declared_line,
                sink_type,
                SUPPORTED_SINKS,
                file,
            ));
            return None;
        };
    let dead_letter_channel = plan_dead_letter_channel(
        &mut keys,
        config,
        channel_names,
        std::slice::from_ref(&sink.channel),
        "the sink's own channel",
    );
    let max_attempts = keys.count_or("deadLetter.maxAttempts", DEFAULT_DEAD_LETTER_MAX_ATTEMPTS);
    let problems = keys.finish();
    let failed = !problems.errors.is_empty();
    found.errors.extend(problems.errors);
    found.warnings.extend(problems.warnings);
    let (batch, kind) = planned?;
    if failed {
        return None;
    }
    Some(SinkPlan {
        name: sink.name.clone(),
        channel: sink.channel.clone(),
        batch_size: batch_size(batch),
        kind,
        dead_letter: dead_letter_channel
            .map(|channel| (channel, u32::try_from(max_attempts).unwrap_or(u32::MAX))),
    })
}

fn plan_rolling_file(
    keys: &mut ComponentSettings<'_>,
    spool_into_directory: bool,
) -> Option<(u64, SinkKindPlan)> {
    let directory = keys.required("sink.directory", "a directory path", values::directory);
    let roll_interval = keys.seconds_or("sink.rollInterval", DEFAULT_ROLL_INTERVAL);
    let batch = keys.count_or("sink.batchSize", DEFAULT_SINK_BATCH_SIZE);
    keys.choice_or("sink.serializer", "TEXT", &["TEXT"]);
    let append_newline = keys.boolean_or("sink.serializer.appendNewline", true);
    keys.choice_or("sink.pathManager", "DEFAULT", &["DEFAULT"]);
    let prefix = keys.text_or("sink.pathManager.prefix", "");
    let extension = keys.text_or("sink.pathManager.extension", "");
    Some((
        batch,
        SinkKindPlan::RollingFile(RollingFileSettings {
            directory: directory?,
            roll_interval,
            prefix,
            extension,
            append_newline,
            spool_into_directory,
        }),
    ))
}

fn plan_forward(
    keys: &mut ComponentSettings<'_>,
    own_channel: &str,
) -> Option<(u64, SinkKindPlan)> {
    let hostname = keys.required_text("hostname", "the downstream channeld's host");
    let port = keys.port("port");
    let remote_channel = keys.text_or("remoteChannel", own_channel);
    let batch = keys.count_or("batch-size", DEFAULT_SINK_BATCH_SIZE);
    let auth_token = keys.text("authToken");
    let connect_timeout = keys.parsed_or(
        "connect-timeout",
        DEFAULT_FORWARD_CONNECT_TIMEOUT,
        values::positive_milliseconds,
    );
    let host = hostname?;
    let address = if host.contains(':') {
        format!("[{host}]:{}", port?)
    } else {
        format!("{host}:{}", port?)
    };
    Some((
        batch,
        SinkKindPlan::Forward {
            address,
            auth_token,
            remote_channel,
            connect_timeout,
        },
    ))
}

/// Client options for reaching `address` with `auth_token`, named after the component.
pub fn client_options(address: &str, auth_token: Option<&str>, component: &str) -> ClientOptions {
    let mut options =
        ClientOptions::new(address).with_client_name(format!("channel-agent {component}"));
    if let Some(token) = auth_token {
        options = options.with_auth_token(token);
    }
    options
}

fn plan_exec(keys: &mut ComponentSettings<'_>) -> Option<ExecSettings> {
    let command = keys.required_text("command", "the command to run");
    if command
        .as_deref()
        .is_some_and(|command| command.trim().is_empty())
    {
        keys.conflict("command", "expected a command, got only whitespace");
    }
    let shell = keys.text("shell");
    let restart = keys.boolean_or("restart", false);
    let restart_throttle = keys.millis_or("restartThrottle", exec::DEFAULT_RESTART_THROTTLE);
    let log_stderr = keys.boolean_or("logStdErr", false);
    let batch_size = keys.count_or(SOURCE_BATCH_SIZE_KEY, exec::DEFAULT_BATCH_SIZE as u64);
    let batch_timeout = keys.parsed_or(
        "batchTimeout",
        exec::DEFAULT_BATCH_TIMEOUT,
        values::positive_milliseconds,
    );
    keys.choice_or("charset", "UTF-8", &["UTF-8"]);
    Some(ExecSettings {
        command: command.filter(|command| !command.trim().is_empty())?,
        shell,
        restart,
        restart_throttle,
        log_stderr,
        batch_size: usize::try_from(batch_size).unwrap_or(usize::MAX),
        batch_timeout,
    })
}

/// Which syslog source is being read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SyslogTransport {
    Tcp,
    Udp,
}

fn plan_syslog(
    keys: &mut ComponentSettings<'_>,
    transport: SyslogTransport,
) -> Option<SyslogSettings> {
    // Flume listens on every interface when `host` is absent.
    let host = keys.text_or("host", "0.0.0.0");
    let port = keys.port("port");
    let default_event_size = match transport {
        SyslogTransport::Tcp => syslog::DEFAULT_TCP_EVENT_SIZE_BYTES,
        SyslogTransport::Udp => syslog::DEFAULT_UDP_EVENT_SIZE_BYTES,
    };
    let event_size_bytes = keys.count_or("eventSize", default_event_size as u64);
    let keep_fields = keys.parsed_or("keepFields", KeepFields::None, |value| {
        KeepFields::parse(value).map_err(|word| {
            Expected::new(format!(
                "none, all, or a space-separated list of priority, version, timestamp, \
                 hostname (not {word:?})"
            ))
        })
    });
    let client_ip_header = keys.text("clientIPHeader");
    let client_hostname_header = keys.text("clientHostnameHeader");
    let batch_size = keys.count_or(
        SOURCE_BATCH_SIZE_KEY,
        syslog::DEFAULT_SYSLOG_BATCH_SIZE as u64,
    );
    let listener = match transport {
        SyslogTransport::Tcp => plan_listener_limits(keys),
        SyslogTransport::Udp => ListenerLimits::default(),
    };
    if transport == SyslogTransport::Tcp {
        refuse_tls(keys, &["ssl"], &[]);
    }
    Some(SyslogSettings {
        host,
        port: port?,
        event_size_bytes: usize::try_from(event_size_bytes).unwrap_or(usize::MAX),
        keep_fields,
        client_ip_header,
        client_hostname_header,
        batch_size: usize::try_from(batch_size).unwrap_or(usize::MAX),
        listener,
    })
}

/// Flume's TLS settings of its TLS-capable sources (`SslContextAwareAbstractSource`),
/// read only when `ssl` is on.
const FLUME_TLS_SETTINGS: &[&str] = &[
    "keystore",
    "keystore-password",
    "keystore-type",
    "exclude-protocols",
    "include-protocols",
    "exclude-cipher-suites",
    "include-cipher-suites",
];

/// The http source also reads the older names of two of them, and hands the keys
/// under `SslContextFactory.` to Jetty's TLS object.
const HTTP_EXTRA_TLS_SETTINGS: &[&str] =
    &["keystorePassword", "excludeProtocols", "SslContextFactory."];

/// Flume's http source hands the keys under these prefixes to the Jetty objects they
/// are named after (`FlumeBeanConfigurator`).
/// Flume's Jetty key for the idle timeout of an HTTP connection, the one Jetty key the
/// http source honours.
const HTTP_IDLE_TIMEOUT_KEY: &str = "ServerConnector.idleTimeout";

const JETTY_SETTING_PREFIXES: &[&str] = &[
    "QueuedThreadPool.",
    "HttpConfiguration.",
    "ServerConnector.",
];

/// What a TLS switch turned on gets.
const TLS_REFUSAL: &str = "false (TLS is not supported here; put a TLS proxy in front)";

/// Reads a source's TLS switches (`ssl`, and `enableSSL` for http), refusing `true`,
/// and accepts its other TLS settings ([`FLUME_TLS_SETTINGS`] and `extra_settings`, where
/// a trailing `.` names a prefix) with a warning: with TLS off, Flume does not read them
/// either.
pub(crate) fn refuse_tls(
    keys: &mut ComponentSettings<'_>,
    switches: &[&str],
    extra_settings: &[&str],
) {
    for switch in switches {
        keys.parsed_or(switch, (), |value| match values::boolean(value)? {
            false => Ok(()),
            true => Err(Expected::new(TLS_REFUSAL)),
        });
    }
    let no_effect = "a TLS setting; TLS is off (Millrace's sources do not do TLS), so it has \
                     no effect, as in Flume with ssl off";
    for setting in FLUME_TLS_SETTINGS.iter().chain(extra_settings) {
        if setting.ends_with('.') {
            keys.accept_prefix_with_warning(setting, no_effect);
        } else {
            keys.accept_with_warning(setting, no_effect);
        }
    }
}

fn plan_http(keys: &mut ComponentSettings<'_>) -> Option<HttpSettings> {
    let bind = keys.text_or("bind", http::DEFAULT_BIND);
    let port = keys.port("port");
    keys.parsed_or("handler", (), |value| {
        if value.trim() == http::JSON_HANDLER_CLASS {
            Ok(())
        } else {
            Err(Expected::new(format!(
                "{} (the only handler Millrace has; it runs no Java classes)",
                http::JSON_HANDLER_CLASS
            )))
        }
    });
    for (rest, _, _) in keys.with_prefix("handler.") {
        keys.conflict(
            &format!("handler.{rest}"),
            "the JSON handler takes no settings; remove this key",
        );
    }
    refuse_tls(keys, &["ssl", "enableSSL"], HTTP_EXTRA_TLS_SETTINGS);
    let as_usize = |value: u64| usize::try_from(value).unwrap_or(usize::MAX);
    let max_connections = keys.count_or("maxConnections", http::DEFAULT_MAX_CONNECTIONS as u64);
    let idle_timeout = keys.parsed_or(
        HTTP_IDLE_TIMEOUT_KEY,
        http::DEFAULT_IDLE_TIMEOUT,
        values::positive_milliseconds,
    );
    let request_timeout = keys.parsed_or(
        "requestTimeout",
        http::DEFAULT_REQUEST_TIMEOUT,
        values::positive_milliseconds,
    );
    let max_body_bytes = keys.count_or("maxBodyBytes", http::DEFAULT_MAX_BODY_BYTES as u64);
    let max_concurrent_requests = keys.count_or(
        "maxConcurrentRequests",
        http::DEFAULT_MAX_CONCURRENT_REQUESTS as u64,
    );
    let max_bytes_in_flight = keys.parsed_or(
        "maxBytesInFlight",
        http::DEFAULT_MAX_BYTES_IN_FLIGHT as u64,
        |value| {
            let bytes = values::positive_integer(value)?;
            if bytes > u64::from(u32::MAX) {
                return Err(Expected::new("a positive number of bytes up to 4294967295"));
            }
            Ok(bytes)
        },
    );
    if max_body_bytes > max_bytes_in_flight {
        keys.conflict(
            "maxBodyBytes",
            format!(
                "expected at most maxBytesInFlight ({max_bytes_in_flight}), got {max_body_bytes}"
            ),
        );
    }
    for jetty_part in JETTY_SETTING_PREFIXES {
        for (rest, _, _) in keys.with_prefix(jetty_part) {
            let key = format!("{jetty_part}{rest}");
            if key != HTTP_IDLE_TIMEOUT_KEY {
                keys.accept_with_warning(
                    &key,
                    "tunes Flume's Jetty server; Millrace's http source is not Jetty, so it has \
                     no effect",
                );
            }
        }
    }
    Some(HttpSettings {
        bind,
        port: port?,
        limits: HttpLimits {
            max_connections: as_usize(max_connections),
            idle_timeout,
            request_timeout,
            max_body_bytes: as_usize(max_body_bytes),
            max_concurrent_requests: as_usize(max_concurrent_requests),
            max_bytes_in_flight: as_usize(max_bytes_in_flight),
        },
    })
}
