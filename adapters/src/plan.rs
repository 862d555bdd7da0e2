//! From an agent's configuration to the components channel-agent runs.
//!
//! Each source is one component; each sink group is one component holding its sinks;
//! each sink outside a group is one component. channeld starts one channel-agent process
//! per component, so a component that crashes takes nothing else with it.
//!
//! Every adapter key is read with [`ComponentSettings`], the reader channel keys are read
//! with, so the errors are the same: a missing or bad value, or a key the adapter does
//! not know, names file, line and key. Each source and sink declares its keys by reading
//! them next to the struct that holds them (`NetcatSettings::read`,
//! `RollingFileSettings::read`, …); this module matches each `type` to its reader and
//! reads the keys every source or sink has (interceptors, dead letter, connections).

use millrace_client::ClientOptions;
use millrace_config::unprovided::{instead_of, ComponentRole};
use millrace_config::{
    sort_by_line, AgentConfig, ChannelKind, ChannelSelector, ComponentSettings, ConfigError,
    ConfigErrorKind, ConfigErrors, ConfigWarning, SinkConfig, SinkProcessor, SourceConfig,
};

use crate::interceptors::{plan_interceptors, Interceptor};
use crate::pool::DEFAULT_CHANNELD_CONNECTIONS;
use crate::sinks::{
    read_null_sink, ForwardTarget, LoggerSink, RollingFileSettings, SinkKindPlan,
    SPOOLING_DIRECTORY_SINK_ALIAS, SPOOLING_DIRECTORY_SINK_CLASS,
};
use crate::sources::syslog::SyslogTransport;
use crate::sources::{
    ExecSettings, HttpSettings, MultiportSyslogSettings, NetcatSettings, NetcatUdpSettings,
    SeqSettings, SourceKind, SpoolDirSettings, SyslogSettings, TaildirSettings, BATCH_SIZE_KEY,
};

/// Refusals before an event goes to the dead-letter channel, by default.
pub const DEFAULT_DEAD_LETTER_MAX_ATTEMPTS: u64 = 3;

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
/// [`millrace_config::AgentReading`]): every component in it is planned, so that
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
            found.errors.push(refused_type(
                file,
                config.line_of(&key).unwrap_or(group.declared_line),
                key,
                "default, failover or load_balance".into(),
                ComponentRole::SinkProcessor,
                class_name,
            ));
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
///
/// The message ends with what to run instead, from [`millrace_config::unprovided`].
fn unsupported_type(
    config: &AgentConfig,
    role: ComponentRole,
    name: &str,
    declared_line: usize,
    value: &str,
    file: &str,
) -> ConfigError {
    let (list, supported) = match role {
        ComponentRole::Sink => ("sinks", SUPPORTED_SINKS),
        _ => ("sources", SUPPORTED_SOURCES),
    };
    let key = format!("{}.{list}.{name}.type", config.agent_name);
    refused_type(
        file,
        config.line_of(&key).unwrap_or(declared_line),
        key,
        format!("one of the {list} Millrace runs: {supported}"),
        role,
        value,
    )
}

/// A refused `type` of `role` at `key`: `expected` names what Millrace runs, and the
/// message ends with what to run instead of `value`.
fn refused_type(
    file: &str,
    line: usize,
    key: String,
    expected: String,
    role: ComponentRole,
    value: &str,
) -> ConfigError {
    ConfigError {
        file: file.to_string(),
        line: Some(line),
        kind: ConfigErrorKind::BadValue {
            key,
            expected: format!("{expected}; {}", instead_of(role, value)),
            value: value.to_string(),
        },
    }
}

const SUPPORTED_SOURCES: &str =
    "netcat, spooldir, exec, syslogtcp, syslogudp, http, avro, TAILDIR, seq, netcatudp, \
     multiport_syslogtcp, kafka";

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
        found.errors.push(refused_type(
            file,
            config.line_of(&key).unwrap_or(source.declared_line),
            key,
            "replicating, multiplexing or load_balancing".into(),
            ComponentRole::ChannelSelector,
            class_name,
        ));
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
    let serves_many_clients = ["netcat", "syslogtcp", "multiport_syslogtcp", "http", "avro"]
        .iter()
        .any(|alias| source_type.eq_ignore_ascii_case(alias))
        || source_type.ends_with("NetcatSource")
        || source_type.ends_with("SyslogTcpSource")
        || source_type.ends_with("MultiportSyslogTCPSource")
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
        NetcatSettings::read(&mut keys).map(SourceKind::Netcat)
    } else if type_is(
        source_type,
        "spooldir",
        "org.apache.flume.source.SpoolDirectorySource",
    ) {
        SpoolDirSettings::read(&mut keys).map(SourceKind::SpoolDir)
    } else if type_is(source_type, "exec", "org.apache.flume.source.ExecSource") {
        ExecSettings::read(&mut keys).map(SourceKind::Exec)
    } else if type_is(
        source_type,
        "syslogtcp",
        "org.apache.flume.source.SyslogTcpSource",
    ) {
        SyslogSettings::read(&mut keys, SyslogTransport::Tcp).map(SourceKind::SyslogTcp)
    } else if type_is(
        source_type,
        "syslogudp",
        "org.apache.flume.source.SyslogUDPSource",
    ) {
        SyslogSettings::read(&mut keys, SyslogTransport::Udp).map(SourceKind::SyslogUdp)
    } else if type_is(
        source_type,
        "http",
        "org.apache.flume.source.http.HTTPSource",
    ) {
        HttpSettings::read(&mut keys).map(SourceKind::Http)
    } else if type_is(source_type, "avro", "org.apache.flume.source.AvroSource") {
        crate::sources::avro::plan(&mut keys).map(SourceKind::Avro)
    } else if type_is(
        source_type,
        "TAILDIR",
        "org.apache.flume.source.taildir.TaildirSource",
    ) {
        TaildirSettings::read(&mut keys).map(|settings| SourceKind::Taildir(Box::new(settings)))
    } else if type_is(
        source_type,
        "seq",
        "org.apache.flume.source.SequenceGeneratorSource",
    ) {
        SeqSettings::read(&mut keys).map(SourceKind::Seq)
    } else if type_is(
        source_type,
        "netcatudp",
        "org.apache.flume.source.NetcatUdpSource",
    ) {
        NetcatUdpSettings::read(&mut keys).map(SourceKind::NetcatUdp)
    } else if type_is(
        source_type,
        "multiport_syslogtcp",
        "org.apache.flume.source.MultiportSyslogTCPSource",
    ) {
        MultiportSyslogSettings::read(&mut keys).map(SourceKind::MultiportSyslogTcp)
    } else if type_is(
        source_type,
        "kafka",
        "org.apache.flume.source.kafka.KafkaSource",
    ) {
        millrace_kafka::KafkaSourceSettings::read(&mut keys)
            .map(|settings| SourceKind::Kafka(Box::new(settings)))
    } else {
        found.errors.push(unsupported_type(
            config,
            ComponentRole::Source,
            &source.name,
            source.declared_line,
            source_type,
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

/// The events a source puts in one transaction, for the sources that batch (netcat puts
/// each line alone; an http request is one batch whatever its size).
fn batch_size_mut(kind: &mut SourceKind) -> Option<&mut usize> {
    match kind {
        SourceKind::SpoolDir(settings) => Some(&mut settings.batch_size),
        SourceKind::Exec(settings) => Some(&mut settings.batch_size),
        SourceKind::SyslogTcp(settings) | SourceKind::SyslogUdp(settings) => {
            Some(&mut settings.batch_size)
        }
        SourceKind::Taildir(settings) => Some(&mut settings.batch_size),
        SourceKind::Seq(settings) => Some(&mut settings.batch_size),
        SourceKind::MultiportSyslogTcp(settings) => Some(&mut settings.syslog.batch_size),
        SourceKind::NetcatUdp(_) => None,
        SourceKind::Kafka(settings) => Some(&mut settings.batch_size),
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
    if keys.line_of(BATCH_SIZE_KEY).is_none() {
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
            ChannelKind::of(channel).alias()
        ),
    };
    keys.conflict(
        BATCH_SIZE_KEY,
        format!(
            "expected at most {transaction_capacity}, the transactionCapacity of channel \
             {channel_name} ({capacity_origin}), got {batch_size}: the channel refuses a \
             larger transaction"
        ),
    );
}

const SUPPORTED_SINKS: &str = "logger, null, file_roll, spooling_directory (or \
     com.unrulymedia.flume.SpoolingDirectoryFileSink), forward, avro, kafka";

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
            let (batch_size, logger) = LoggerSink::read(&mut keys);
            Some((batch_size, SinkKindPlan::Logger(logger)))
        } else if type_is(sink_type, "null", "org.apache.flume.sink.NullSink") {
            Some((read_null_sink(&mut keys), SinkKindPlan::Null))
        } else if type_is(
            sink_type,
            "file_roll",
            "org.apache.flume.sink.RollingFileSink",
        ) {
            RollingFileSettings::read(&mut keys, false)
                .map(|(batch_size, settings)| (batch_size, SinkKindPlan::RollingFile(settings)))
        } else if type_is(
            sink_type,
            SPOOLING_DIRECTORY_SINK_ALIAS,
            SPOOLING_DIRECTORY_SINK_CLASS,
        ) {
            RollingFileSettings::read(&mut keys, true)
                .map(|(batch_size, settings)| (batch_size, SinkKindPlan::RollingFile(settings)))
        } else if type_is(sink_type, "forward", "forward") {
            ForwardTarget::read(&mut keys, &sink.channel)
                .map(|(batch_size, target)| (batch_size, SinkKindPlan::Forward(target)))
        } else if type_is(sink_type, "avro", "org.apache.flume.sink.AvroSink") {
            crate::sinks::avro::plan(&mut keys)
                .map(|(batch, settings)| (batch, SinkKindPlan::Avro(settings)))
        } else if type_is(sink_type, "kafka", "org.apache.flume.sink.kafka.KafkaSink") {
            millrace_kafka::KafkaSinkSettings::read(&mut keys)
                .map(|settings| (settings.batch_size, SinkKindPlan::Kafka(Box::new(settings))))
        } else {
            found.errors.push(unsupported_type(
                config,
                ComponentRole::Sink,
                &sink.name,
                sink.declared_line,
                sink_type,
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

/// Client options for reaching `address` with `auth_token`, named after the component.
pub fn client_options(address: &str, auth_token: Option<&str>, component: &str) -> ClientOptions {
    let mut options =
        ClientOptions::new(address).with_client_name(format!("channel-agent {component}"));
    if let Some(token) = auth_token {
        options = options.with_auth_token(token);
    }
    options
}
