//! Sources, sinks and sink groups, with their channel selectors and sink processors.
//!
//! In Millrace, sources and sinks are adapter processes that channeld starts and that
//! talk to it over the protocol. This layer reads the keys that wire them to channels —
//! a source's `type`, `channels` and `selector.*`, a sink's `type` and `channel`, a sink
//! group's `sinks` and `processor.*` — and checks every reference: a source or sink must
//! name channels listed in `AGENT.channels`, a selector only channels of its source, a
//! group only sinks listed in `AGENT.sinks`, each sink in at most one group.
//!
//! Every other key of a source or sink (`bind`, `port`, `spoolDir`, `interceptors.*`,
//! `sink.directory`, …) is kept as a [`RawSetting`] with its line, for the adapter to
//! validate: which keys exist depends on the adapter type. A key with an empty value is
//! kept too, with a warning, because Flume ignores such keys.

use std::collections::HashMap;
use std::time::Duration;

use crate::config::error::{expected_one_of, Diagnostics};
use crate::config::setting::{Component, ComponentSetting, RawSetting};
use crate::config::values::{self, Expected};

/// Header a multiplexing selector reads when `selector.header` is not set (Flume's
/// `MultiplexingChannelSelector.DEFAULT_MULTIPLEX_HEADER`).
pub const DEFAULT_MULTIPLEX_HEADER: &str = "flume.selector.header";
/// Flume's default `processor.maxpenalty` for the failover processor.
pub const DEFAULT_FAILOVER_MAX_PENALTY: Duration = Duration::from_millis(30_000);
/// Flume's default `processor.selector.maxTimeOut` for the load-balancing processor.
pub const DEFAULT_LOAD_BALANCE_MAX_BACKOFF: Duration = Duration::from_millis(30_000);

/// A source adapter and the channels it writes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceConfig {
    /// Its name in `AGENT.sources`.
    pub name: String,
    /// `type`, as written: an alias (`netcat`, `spooldir`) or a class name.
    pub source_type: String,
    /// `channels`, in the order written.
    pub channels: Vec<String>,
    /// `selector.*`: which of `channels` each event goes to.
    pub selector: ChannelSelector,
    /// Every other key, for the adapter to validate.
    pub settings: Vec<RawSetting>,
    /// The line of `AGENT.sources`.
    pub declared_line: usize,
}

/// A sink adapter and the one channel it takes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SinkConfig {
    /// Its name in `AGENT.sinks`.
    pub name: String,
    /// `type`, as written: an alias (`logger`, `file_roll`) or a class name.
    pub sink_type: String,
    /// `channel`.
    pub channel: String,
    /// Every other key, for the adapter to validate.
    pub settings: Vec<RawSetting>,
    /// The line of `AGENT.sinks`.
    pub declared_line: usize,
}

/// Sinks that share one processor (`AGENT.sinkgroups`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SinkGroupConfig {
    /// Its name in `AGENT.sinkgroups`.
    pub name: String,
    /// `sinks`, in the order written.
    pub sinks: Vec<String>,
    /// `processor.*`.
    pub processor: SinkProcessor,
    /// The line of `AGENT.sinkgroups`.
    pub declared_line: usize,
}

/// A source's `selector.type` and its keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChannelSelector {
    /// `replicating` (the default): every event to every channel.
    Replicating {
        /// `selector.optional`: channels whose failures are only logged.
        optional: Vec<String>,
    },
    /// `multiplexing`: the channels depend on one header's value.
    Multiplexing {
        /// `selector.header`.
        header: String,
        /// `selector.mapping.<value>`: required channels per header value.
        mappings: Vec<HeaderRoute>,
        /// `selector.optional.<value>`: optional channels per header value.
        optional: Vec<HeaderRoute>,
        /// `selector.default`: channels for a missing, blank or unmapped header.
        default: Vec<String>,
    },
    /// `load_balancing`: each event to exactly one of the channels.
    LoadBalancing {
        /// `selector.policy`.
        policy: LoadBalancingPolicy,
    },
    /// A selector class Millrace does not know; its keys are kept for the adapter.
    Custom {
        /// `selector.type`.
        class_name: String,
        /// The other `selector.*` keys, relative to `selector.`.
        settings: Vec<RawSetting>,
    },
}

/// Channels chosen for one header value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderRoute {
    /// The header value.
    pub header_value: String,
    /// The channels, in the order written.
    pub channels: Vec<String>,
}

/// How a load-balancing selector picks a channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoadBalancingPolicy {
    /// `round_robin` (the default).
    RoundRobin,
    /// `random`.
    Random,
}

/// A sink group's `processor.type` and its keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SinkProcessor {
    /// `default`: exactly one sink.
    Default,
    /// `failover`: the highest-priority live sink takes everything.
    Failover {
        /// `processor.priority.<sink>`, for the sinks that set one; higher goes first.
        priorities: Vec<(String, i32)>,
        /// `processor.maxpenalty`: the longest a failed sink is set aside.
        max_penalty: Duration,
    },
    /// `load_balance`: sinks take turns.
    LoadBalance {
        /// `processor.selector`.
        selector: SinkSelector,
        /// `processor.backoff`: set failed sinks aside for a while.
        backoff: bool,
        /// `processor.selector.maxTimeOut`: the longest back-off.
        max_backoff: Duration,
    },
    /// A processor class Millrace does not know; its keys are kept.
    Custom {
        /// `processor.type`.
        class_name: String,
        /// The other `processor.*` keys, relative to `processor.`.
        settings: Vec<RawSetting>,
    },
}

/// How a load-balancing sink processor picks a sink.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SinkSelector {
    /// `round_robin` (the default).
    RoundRobin,
    /// `random`.
    Random,
    /// A selector class.
    Custom(String),
}

/// Matches a Flume `type` value against an alias and its class, ignoring case.
fn is_type(value: &str, alias: &str, class_name: &str) -> bool {
    value.eq_ignore_ascii_case(alias) || value.eq_ignore_ascii_case(class_name)
}

/// A value that can only be a Java class name (custom components) must at least look
/// like one, so a misspelt alias is caught here rather than as a missing class later.
fn looks_like_class_name(value: &str) -> bool {
    value.contains('.')
        && value.split('.').all(|part| {
            !part.is_empty()
                && part
                    .chars()
                    .all(|c| c.is_alphanumeric() || c == '_' || c == '$')
        })
}

/// Reads a list of channel names and checks each one is in `allowed`: the names that
/// are, and whether every name was (an empty list counts as a problem).
fn channel_references(
    setting: &ComponentSetting,
    allowed: &[String],
    allowed_description: &str,
    diagnostics: &mut Diagnostics,
) -> (Vec<String>, bool) {
    let errors_before = diagnostics.error_count();
    let mut channels: Vec<String> = Vec::new();
    let listed = format!("a channel listed in {allowed_description}");
    for name in values::space_separated(&setting.value) {
        if !allowed.iter().any(|allowed_name| allowed_name == name) {
            diagnostics.bad_value(setting.line, &setting.key, &listed, name);
        } else if channels.iter().any(|seen| seen == name) {
            diagnostics.bad_value(setting.line, &setting.key, "each channel once", name);
        } else {
            channels.push(name.to_string());
        }
    }
    if channels.is_empty() && diagnostics.error_count() == errors_before {
        diagnostics.bad_value(setting.line, &setting.key, &listed, &setting.value);
    }
    let complete = diagnostics.error_count() == errors_before;
    (channels, complete)
}

/// "a1.channels (c1 c2)", or a note that the list is empty.
pub(crate) fn describe_declared(list_key: &str, names: &[String]) -> String {
    if names.is_empty() {
        format!("{list_key}, which lists none")
    } else {
        format!("{list_key} ({})", names.join(" "))
    }
}

/// Reads a required `type` key of a source or sink.
fn component_type(
    component: &Component,
    expected: &str,
    diagnostics: &mut Diagnostics,
) -> Option<String> {
    let Some(setting) = component.get("type") else {
        diagnostics.missing_key(
            Some(component.declared_line),
            &component.full_key("type"),
            expected,
        );
        return None;
    };
    match values::single_word(&setting.value, expected) {
        Ok(type_name) => Some(type_name),
        Err(expected) => {
            diagnostics.bad_value(setting.line, &setting.key, &expected.0, &setting.value);
            None
        }
    }
}

/// Keeps a key for the adapter; an empty value gets a warning because Flume ignores it.
fn keep_raw(setting: &ComponentSetting, diagnostics: &mut Diagnostics) -> RawSetting {
    if setting.value.is_empty() {
        diagnostics.warn(
            setting.line,
            &setting.key,
            "empty value: Flume ignores keys with empty values; kept for the adapter to judge",
        );
    }
    setting.to_raw()
}

/// Reads one declared source. `channels` are the names in `AGENT.channels`.
///
/// Problems are recorded in `diagnostics`; the source comes back whenever its `type`
/// could be read, so that its adapter keys can still be checked (see
/// [`AgentReading`](crate::config::AgentReading)): with the declared channels among
/// those it names, and a replicating selector when its own could not be read.
pub(crate) fn parse_source(
    source: &Component,
    channels: &[String],
    channels_list_key: &str,
    diagnostics: &mut Diagnostics,
) -> Option<SourceConfig> {
    let source_type = component_type(
        source,
        "a source type (an alias such as netcat or spooldir, or a class name)",
        diagnostics,
    );
    let (source_channels, channels_complete) = match source.get("channels") {
        Some(setting) => channel_references(
            setting,
            channels,
            &describe_declared(channels_list_key, channels),
            diagnostics,
        ),
        None => {
            let expected = if source.get("channel").is_some() {
                "a space-separated list of channels (sources use the plural key channels; \
                 channel is for sinks)"
            } else {
                "a space-separated list of channels"
            };
            diagnostics.missing_key(
                Some(source.declared_line),
                &source.full_key("channels"),
                expected,
            );
            (Vec::new(), false)
        }
    };
    let mut settings = Vec::new();
    for setting in &source.settings {
        let is_wiring = matches!(setting.sub_key.as_str(), "type" | "channels")
            || setting.sub_key.starts_with(SELECTOR_PREFIX);
        if !is_wiring {
            settings.push(keep_raw(setting, diagnostics));
        }
    }
    // A selector is only judged against a complete channel list: judged against part of
    // it, every reference to a misnamed channel would be reported a second time.
    let selector = if channels_complete {
        parse_selector(source, &source_channels, diagnostics)
    } else {
        None
    };
    Some(SourceConfig {
        name: source.name.clone(),
        source_type: source_type?,
        channels: source_channels,
        selector: selector.unwrap_or(ChannelSelector::Replicating {
            optional: Vec::new(),
        }),
        settings,
        declared_line: source.declared_line,
    })
}

const SELECTOR_PREFIX: &str = "selector.";

#[derive(Clone, Copy)]
enum SelectorKind {
    Replicating,
    Multiplexing,
    LoadBalancing,
}

const SELECTOR_TYPE_EXPECTED: &str =
    "replicating, multiplexing, load_balancing or a channel selector class name";

fn parse_selector(
    source: &Component,
    source_channels: &[String],
    diagnostics: &mut Diagnostics,
) -> Option<ChannelSelector> {
    let selector_settings: Vec<&ComponentSetting> = source
        .settings
        .iter()
        .filter(|setting| setting.sub_key.starts_with(SELECTOR_PREFIX))
        .collect();
    let type_setting = source.get("selector.type");
    let type_name = type_setting.map_or("replicating", |setting| setting.value.as_str());
    let kind = if is_type(
        type_name,
        "replicating",
        "org.apache.flume.channel.ReplicatingChannelSelector",
    ) {
        SelectorKind::Replicating
    } else if is_type(
        type_name,
        "multiplexing",
        "org.apache.flume.channel.MultiplexingChannelSelector",
    ) {
        SelectorKind::Multiplexing
    } else if is_type(
        type_name,
        "load_balancing",
        "org.apache.flume.channel.LoadBalancingChannelSelector",
    ) {
        SelectorKind::LoadBalancing
    } else if looks_like_class_name(type_name) {
        let settings = selector_settings
            .iter()
            .filter(|setting| setting.sub_key != "selector.type")
            .map(|setting| {
                let mut raw = keep_raw(setting, diagnostics);
                raw.key = setting.sub_key[SELECTOR_PREFIX.len()..].to_string();
                raw
            })
            .collect();
        return Some(ChannelSelector::Custom {
            class_name: type_name.to_string(),
            settings,
        });
    } else {
        let setting = type_setting.expect("the default type is known");
        diagnostics.bad_value(
            setting.line,
            &setting.key,
            SELECTOR_TYPE_EXPECTED,
            type_name,
        );
        return None;
    };

    let errors_before = diagnostics.error_count();
    let source_channels_description =
        describe_declared(&source.full_key("channels"), source_channels);
    let mut optional = Vec::new();
    let mut header = DEFAULT_MULTIPLEX_HEADER.to_string();
    let mut mappings = Vec::new();
    let mut optional_routes = Vec::new();
    let mut default = Vec::new();
    let mut policy = LoadBalancingPolicy::RoundRobin;
    for setting in selector_settings {
        let key = &setting.sub_key[SELECTOR_PREFIX.len()..];
        let channels = |diagnostics: &mut Diagnostics| {
            channel_references(
                setting,
                source_channels,
                &source_channels_description,
                diagnostics,
            )
            .0
        };
        match (kind, key) {
            (_, "type") => {}
            (SelectorKind::Replicating, "optional") => optional = channels(diagnostics),
            (SelectorKind::Multiplexing, "header") => {
                match values::single_word(&setting.value, "a header name") {
                    Ok(name) => header = name,
                    Err(expected) => diagnostics.bad_value(
                        setting.line,
                        &setting.key,
                        &expected.0,
                        &setting.value,
                    ),
                }
            }
            (SelectorKind::Multiplexing, "default") => default = channels(diagnostics),
            (SelectorKind::Multiplexing, _) if header_route_value(key, "mapping.").is_some() => {
                mappings.push(HeaderRoute {
                    header_value: header_route_value(key, "mapping.").unwrap_or_default(),
                    channels: channels(diagnostics),
                });
            }
            (SelectorKind::Multiplexing, _) if header_route_value(key, "optional.").is_some() => {
                optional_routes.push(HeaderRoute {
                    header_value: header_route_value(key, "optional.").unwrap_or_default(),
                    channels: channels(diagnostics),
                });
            }
            (SelectorKind::LoadBalancing, "policy") => {
                if setting.value.eq_ignore_ascii_case("round_robin") {
                    policy = LoadBalancingPolicy::RoundRobin;
                } else if setting.value.eq_ignore_ascii_case("random") {
                    policy = LoadBalancingPolicy::Random;
                } else {
                    diagnostics.bad_value(
                        setting.line,
                        &setting.key,
                        "round_robin or random",
                        &setting.value,
                    );
                }
            }
            _ => {
                let known: &[&str] = match kind {
                    SelectorKind::Replicating => &["selector.type", "selector.optional"],
                    SelectorKind::Multiplexing => &[
                        "selector.type",
                        "selector.header",
                        "selector.default",
                        "selector.mapping.<header value>",
                        "selector.optional.<header value>",
                    ],
                    SelectorKind::LoadBalancing => &["selector.type", "selector.policy"],
                };
                let label = format!("a key of the {type_name} selector");
                let expected = expected_one_of(&setting.sub_key, &label, known.iter().copied());
                diagnostics.unknown_key(setting.line, &setting.key, expected);
            }
        }
    }
    if let SelectorKind::Multiplexing = kind {
        if mappings.is_empty() && default.is_empty() {
            diagnostics.missing_key(
                Some(type_setting.map_or(source.declared_line, |setting| setting.line)),
                &source.full_key("selector.default"),
                "channels for events whose header has no selector.mapping (with neither, a \
                 multiplexing selector sends every event nowhere)",
            );
        } else if default.is_empty() {
            diagnostics.warn(
                type_setting.map_or(source.declared_line, |setting| setting.line),
                &source.full_key("selector.type"),
                "no selector.default: events whose header matches no mapping are dropped, as \
                 in Flume",
            );
        }
    }
    if diagnostics.error_count() != errors_before {
        return None;
    }
    Some(match kind {
        SelectorKind::Replicating => ChannelSelector::Replicating { optional },
        SelectorKind::Multiplexing => ChannelSelector::Multiplexing {
            header,
            mappings,
            optional: optional_routes,
            default,
        },
        SelectorKind::LoadBalancing => ChannelSelector::LoadBalancing { policy },
    })
}

/// The header value in `mapping.<value>` or `optional.<value>`.
fn header_route_value(key: &str, prefix: &str) -> Option<String> {
    key.strip_prefix(prefix)
        .filter(|value| !value.is_empty())
        .map(str::to_string)
}

/// Reads one declared sink. `channels` are the names in `AGENT.channels`.
///
/// As for sources, the sink comes back whenever its `type` could be read; its `channel`
/// is then the name as written (empty when missing), whether or not it is declared.
pub(crate) fn parse_sink(
    sink: &Component,
    channels: &[String],
    channels_list_key: &str,
    diagnostics: &mut Diagnostics,
) -> Option<SinkConfig> {
    let sink_type = component_type(
        sink,
        "a sink type (an alias such as logger or file_roll, or a class name)",
        diagnostics,
    );
    let channel = match sink.get("channel") {
        Some(setting) => {
            let listed = format!(
                "a channel listed in {}",
                describe_declared(channels_list_key, channels)
            );
            match values::single_word(&setting.value, "exactly one channel name") {
                Err(expected) => {
                    diagnostics.bad_value(setting.line, &setting.key, &expected.0, &setting.value);
                    setting.value.clone()
                }
                Ok(name) => {
                    if !channels.contains(&name) {
                        diagnostics.bad_value(setting.line, &setting.key, &listed, &name);
                    }
                    name
                }
            }
        }
        None => {
            let expected = if sink.get("channels").is_some() {
                "exactly one channel name (sinks use the singular key channel; channels is for \
                 sources)"
            } else {
                "exactly one channel name"
            };
            diagnostics.missing_key(
                Some(sink.declared_line),
                &sink.full_key("channel"),
                expected,
            );
            String::new()
        }
    };
    let settings: Vec<RawSetting> = sink
        .settings
        .iter()
        .filter(|setting| !matches!(setting.sub_key.as_str(), "type" | "channel"))
        .map(|setting| keep_raw(setting, diagnostics))
        .collect();
    Some(SinkConfig {
        name: sink.name.clone(),
        sink_type: sink_type?,
        channel,
        settings,
        declared_line: sink.declared_line,
    })
}

const PROCESSOR_PREFIX: &str = "processor.";
const PROCESSOR_TYPE_EXPECTED: &str =
    "default, failover, load_balance or a sink processor class name";

#[derive(Clone, Copy, PartialEq, Eq)]
enum ProcessorKind {
    Default,
    Failover,
    LoadBalance,
}

/// Reads one declared sink group. `sinks` are the names in `AGENT.sinks`; `group_of_sink`
/// records which group already holds each sink, so that no sink is in two. The group
/// comes back whenever its processor could be read, with the sinks that could be.
pub(crate) fn parse_sink_group(
    group: &Component,
    sinks: &[String],
    sinks_list_key: &str,
    group_of_sink: &mut HashMap<String, String>,
    diagnostics: &mut Diagnostics,
) -> Option<SinkGroupConfig> {
    let group_sinks = match group.get("sinks") {
        Some(setting) => group_sink_references(
            group,
            setting,
            sinks,
            sinks_list_key,
            group_of_sink,
            diagnostics,
        ),
        None => {
            diagnostics.missing_key(
                Some(group.declared_line),
                &group.full_key("sinks"),
                "a space-separated list of the group's sinks",
            );
            Vec::new()
        }
    };
    let processor = parse_processor(group, &group_sinks, diagnostics);
    for setting in &group.settings {
        if setting.sub_key != "sinks" && !setting.sub_key.starts_with(PROCESSOR_PREFIX) {
            let expected = expected_one_of(
                &setting.sub_key,
                "a sink group key",
                ["sinks", "processor.type", "processor.<setting>"],
            );
            diagnostics.unknown_key(setting.line, &setting.key, expected);
        }
    }
    Some(SinkGroupConfig {
        name: group.name.clone(),
        sinks: group_sinks,
        processor: processor?,
        declared_line: group.declared_line,
    })
}

fn group_sink_references(
    group: &Component,
    setting: &ComponentSetting,
    sinks: &[String],
    sinks_list_key: &str,
    group_of_sink: &mut HashMap<String, String>,
    diagnostics: &mut Diagnostics,
) -> Vec<String> {
    let listed = format!(
        "a sink listed in {}",
        describe_declared(sinks_list_key, sinks)
    );
    let mut group_sinks: Vec<String> = Vec::new();
    for name in values::space_separated(&setting.value) {
        if !sinks.iter().any(|sink| sink == name) {
            diagnostics.bad_value(setting.line, &setting.key, &listed, name);
        } else if group_sinks.iter().any(|seen| seen == name) {
            diagnostics.bad_value(setting.line, &setting.key, "each sink once", name);
        } else if let Some(other_group) = group_of_sink.get(name) {
            diagnostics.bad_value(
                setting.line,
                &setting.key,
                &format!("a sink in no other group ({name} is already in {other_group})"),
                name,
            );
        } else {
            group_of_sink.insert(name.to_string(), group.name.clone());
            group_sinks.push(name.to_string());
        }
    }
    group_sinks
}

fn parse_processor(
    group: &Component,
    group_sinks: &[String],
    diagnostics: &mut Diagnostics,
) -> Option<SinkProcessor> {
    let Some(type_setting) = group.get("processor.type") else {
        diagnostics.missing_key(
            Some(group.declared_line),
            &group.full_key("processor.type"),
            PROCESSOR_TYPE_EXPECTED,
        );
        return None;
    };
    let type_name = type_setting.value.as_str();
    let processor_settings = group
        .settings
        .iter()
        .filter(|setting| setting.sub_key.starts_with(PROCESSOR_PREFIX))
        .filter(|setting| setting.sub_key != "processor.type");
    let kind = if is_type(
        type_name,
        "default",
        "org.apache.flume.sink.DefaultSinkProcessor",
    ) {
        ProcessorKind::Default
    } else if is_type(
        type_name,
        "failover",
        "org.apache.flume.sink.FailoverSinkProcessor",
    ) {
        ProcessorKind::Failover
    } else if is_type(
        type_name,
        "load_balance",
        "org.apache.flume.sink.LoadBalancingSinkProcessor",
    ) {
        ProcessorKind::LoadBalance
    } else if looks_like_class_name(type_name) {
        let settings = processor_settings
            .map(|setting| RawSetting {
                key: setting.sub_key[PROCESSOR_PREFIX.len()..].to_string(),
                value: setting.value.clone(),
                line: setting.line,
            })
            .collect();
        return Some(SinkProcessor::Custom {
            class_name: type_name.to_string(),
            settings,
        });
    } else {
        diagnostics.bad_value(
            type_setting.line,
            &type_setting.key,
            PROCESSOR_TYPE_EXPECTED,
            type_name,
        );
        return None;
    };

    let errors_before = diagnostics.error_count();
    let mut priorities: Vec<(String, i32, usize)> = Vec::new();
    let mut max_penalty = DEFAULT_FAILOVER_MAX_PENALTY;
    let mut selector = SinkSelector::RoundRobin;
    let mut backoff = false;
    let mut max_backoff = DEFAULT_LOAD_BALANCE_MAX_BACKOFF;
    for setting in processor_settings {
        let key = &setting.sub_key[PROCESSOR_PREFIX.len()..];
        let mut refuse = |expected: Expected| {
            diagnostics.bad_value(setting.line, &setting.key, &expected.0, &setting.value)
        };
        match (kind, key) {
            (ProcessorKind::Failover, "maxpenalty") => {
                match values::positive_milliseconds(&setting.value) {
                    Ok(penalty) => max_penalty = penalty,
                    Err(expected) => refuse(expected),
                }
            }
            (ProcessorKind::Failover, _) if key.starts_with("priority.") => {
                let sink = &key["priority.".len()..];
                if !group_sinks.iter().any(|group_sink| group_sink == sink) {
                    let expected = format!(
                        "a priority for a sink of this group ({})",
                        group_sinks.join(" ")
                    );
                    diagnostics.unknown_key(setting.line, &setting.key, expected);
                    continue;
                }
                match values::java_int(&setting.value) {
                    Ok(priority) => priorities.push((sink.to_string(), priority, setting.line)),
                    Err(expected) => refuse(expected),
                }
            }
            (ProcessorKind::LoadBalance, "backoff") => match values::boolean(&setting.value) {
                Ok(enabled) => backoff = enabled,
                Err(expected) => refuse(expected),
            },
            (ProcessorKind::LoadBalance, "selector") => {
                if setting.value.eq_ignore_ascii_case("round_robin") {
                    selector = SinkSelector::RoundRobin;
                } else if setting.value.eq_ignore_ascii_case("random") {
                    selector = SinkSelector::Random;
                } else if looks_like_class_name(&setting.value) {
                    selector = SinkSelector::Custom(setting.value.clone());
                } else {
                    refuse(Expected::new(
                        "round_robin, random or a sink selector class name",
                    ));
                }
            }
            (ProcessorKind::LoadBalance, "selector.maxTimeOut") => {
                match values::positive_milliseconds(&setting.value) {
                    Ok(limit) => max_backoff = limit,
                    Err(expected) => refuse(expected),
                }
            }
            _ => {
                let known: &[&str] = match kind {
                    ProcessorKind::Default => &["processor.type"],
                    ProcessorKind::Failover => &[
                        "processor.type",
                        "processor.maxpenalty",
                        "processor.priority.<sink>",
                    ],
                    ProcessorKind::LoadBalance => &[
                        "processor.type",
                        "processor.backoff",
                        "processor.selector",
                        "processor.selector.maxTimeOut",
                    ],
                };
                let label = format!("a key of the {type_name} sink processor");
                let expected = expected_one_of(&setting.sub_key, &label, known.iter().copied());
                diagnostics.unknown_key(setting.line, &setting.key, expected);
            }
        }
    }
    // Flume's failover processor silently drops a sink whose priority another sink has.
    for (index, (sink, priority, line)) in priorities.iter().enumerate() {
        if let Some((other_sink, _, _)) = priorities[..index]
            .iter()
            .find(|(_, other_priority, _)| other_priority == priority)
        {
            diagnostics.bad_value(
                *line,
                &group.full_key(&format!("processor.priority.{sink}")),
                &format!("a priority no other sink of the group has ({other_sink} has {priority})"),
                &priority.to_string(),
            );
        }
    }
    if kind == ProcessorKind::Default && group_sinks.len() > 1 {
        diagnostics.conflict(
            group.line_of_or_declaration("sinks"),
            &group.full_key("sinks"),
            format!(
                "expected exactly one sink for processor.type = default, got {} (failover and \
                 load_balance take several)",
                group_sinks.len()
            ),
        );
    }
    if diagnostics.error_count() != errors_before {
        return None;
    }
    Some(match kind {
        ProcessorKind::Default => SinkProcessor::Default,
        ProcessorKind::Failover => SinkProcessor::Failover {
            priorities: priorities
                .into_iter()
                .map(|(sink, priority, _)| (sink, priority))
                .collect(),
            max_penalty,
        },
        ProcessorKind::LoadBalance => SinkProcessor::LoadBalance {
            selector,
            backoff,
            max_backoff,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn class_names_need_dotted_java_identifiers() {
        assert!(looks_like_class_name(
            "com.unrulymedia.flume.SpoolingDirectoryFileSink"
        ));
        assert!(looks_like_class_name("org.example.Outer$Inner"));
        for not_a_class in ["replicatng", "a..b", ".a", "a.", "a b.c", ""] {
            assert!(!looks_like_class_name(not_a_class), "{not_a_class:?}");
        }
    }
}
