//! Sources, sinks and sink groups, with their channel selectors and sink processors.
//!
//! In Millrace, sources and sinks are adapter processes that channeld starts and that
//! talk to it over the protocol. This layer reads the keys that wire them to channels —
//! a source's `type`, `channels` and `selector.*`, a sink's `type` and `channel`, a sink
//! group's `sinks` and `processor.*` — and checks every reference: a source or sink must
//! name channels listed in `AGENT.channels`, a selector only channels of its source, a
//! group only sinks listed in `AGENT.sinks`, each sink in at most one group.
//!
//! Every part is read with a [`ComponentSettings`], next to the type that holds it
//! (`ChannelSelector::read`, `SinkProcessor::read`). Every other key of a source or sink
//! (`bind`, `port`, `spoolDir`, `interceptors.*`, `sink.directory`, …) is handed on as a
//! [`RawSetting`] with its line, for the adapter to read in the same way
//! (`millrace-adapters`): which keys exist depends on the adapter type. A key with an
//! empty value is handed on too, with a warning, because Flume ignores such keys.

use std::collections::HashMap;
use std::time::Duration;

use crate::component_settings::{ComponentSettings, EmptyValues, KeyListing};
use crate::error::Diagnostics;
use crate::setting::{Component, RawSetting};
use crate::values::{self, Expected};

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

/// Reads `value`, the list of channel names set for `key`, and checks each one is in
/// `allowed`: the names that are, and whether every name was (an empty list counts as a
/// problem).
fn channel_references(
    keys: &mut ComponentSettings<'_>,
    key: &str,
    value: &str,
    allowed: &[String],
    allowed_description: &str,
) -> (Vec<String>, bool) {
    let errors_before = keys.error_count();
    let mut channels: Vec<String> = Vec::new();
    let listed = format!("a channel listed in {allowed_description}");
    for name in values::space_separated(value) {
        if !allowed.iter().any(|allowed_name| allowed_name == name) {
            keys.refuse(key, &listed, name);
        } else if channels.iter().any(|seen| seen == name) {
            keys.refuse(key, "each channel once", name);
        } else {
            channels.push(name.to_string());
        }
    }
    if channels.is_empty() && keys.error_count() == errors_before {
        keys.refuse(key, &listed, value);
    }
    let complete = keys.error_count() == errors_before;
    (channels, complete)
}

/// The channels named by the key `key`, when it is set; see [`channel_references`].
fn channel_list(
    keys: &mut ComponentSettings<'_>,
    key: &str,
    allowed: &[String],
    allowed_description: &str,
) -> Option<(Vec<String>, bool)> {
    let value = keys.text(key)?;
    Some(channel_references(
        keys,
        key,
        &value,
        allowed,
        allowed_description,
    ))
}

/// "a1.channels (c1 c2)", or a note that the list is empty.
pub(crate) fn describe_declared(list_key: &str, names: &[String]) -> String {
    if names.is_empty() {
        format!("{list_key}, which lists none")
    } else {
        format!("{list_key} ({})", names.join(" "))
    }
}

/// Reads the required `type` of a source or sink.
fn component_type(keys: &mut ComponentSettings<'_>, expected: &str) -> Option<String> {
    keys.required("type", expected, |value| {
        values::single_word(value, expected)
    })
}

/// Hands a key on to the adapter; an empty value gets a warning because Flume ignores it.
fn keep_raw(
    component: &Component,
    setting: RawSetting,
    diagnostics: &mut Diagnostics,
) -> RawSetting {
    if setting.value.is_empty() {
        diagnostics.warn(
            setting.line,
            &component.full_key(&setting.key),
            "empty value: Flume ignores keys with empty values; kept for the adapter to judge",
        );
    }
    setting
}

/// Ends reading the wiring of a source or sink: what was found goes to `diagnostics`,
/// and every key not read is handed on to the adapter.
fn hand_on_to_adapter(
    component: &Component,
    keys: ComponentSettings<'_>,
    diagnostics: &mut Diagnostics,
) -> Vec<RawSetting> {
    let (problems, unread) = keys.hand_on();
    diagnostics.absorb(problems);
    unread
        .into_iter()
        .map(|setting| keep_raw(component, setting, diagnostics))
        .collect()
}

/// Reads one declared source. `channels` are the names in `AGENT.channels`.
///
/// Problems are recorded in `diagnostics`; the source comes back whenever its `type`
/// could be read, so that its adapter keys can still be checked (see
/// [`AgentReading`](crate::AgentReading)): with the declared channels among
/// those it names, and a replicating selector when its own could not be read.
pub(crate) fn parse_source(
    source: &Component,
    channels: &[String],
    channels_list_key: &str,
    diagnostics: &mut Diagnostics,
) -> Option<SourceConfig> {
    let file = diagnostics.file().to_string();
    let mut keys = source.reader(&file);
    let source_type = component_type(
        &mut keys,
        "a source type (an alias such as netcat or spooldir, or a class name)",
    );
    let declared = describe_declared(channels_list_key, channels);
    let (source_channels, channels_complete) =
        match channel_list(&mut keys, "channels", channels, &declared) {
            Some(references) => references,
            None => {
                let expected = if keys.is_set("channel") {
                    "a space-separated list of channels (sources use the plural key channels; \
                     channel is for sinks)"
                } else {
                    "a space-separated list of channels"
                };
                keys.missing("channels", expected);
                (Vec::new(), false)
            }
        };
    let selector_settings = keys.matching(&[], |key| key.starts_with(SELECTOR_PREFIX));
    let settings = hand_on_to_adapter(source, keys, diagnostics);
    // A selector is only judged against a complete channel list: judged against part of
    // it, every reference to a misnamed channel would be reported a second time.
    let selector = if channels_complete {
        ChannelSelector::read(
            source,
            &file,
            &selector_settings,
            &source_channels,
            diagnostics,
        )
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
const SELECTOR_TYPE_KEY: &str = "selector.type";
const SELECTOR_MAPPING_PREFIX: &str = "selector.mapping.";
const SELECTOR_OPTIONAL_PREFIX: &str = "selector.optional.";

#[derive(Clone, Copy)]
enum SelectorKind {
    Replicating,
    Multiplexing,
    LoadBalancing,
}

const SELECTOR_TYPE_EXPECTED: &str =
    "replicating, multiplexing, load_balancing or a channel selector class name";

impl ChannelSelector {
    /// Reads a source's `selector.*` keys (`selector_settings`), whose channels must be
    /// among `source_channels`. `None` when a problem was recorded.
    fn read(
        source: &Component,
        file: &str,
        selector_settings: &[RawSetting],
        source_channels: &[String],
        diagnostics: &mut Diagnostics,
    ) -> Option<ChannelSelector> {
        let type_setting = selector_settings
            .iter()
            .find(|setting| setting.key == SELECTOR_TYPE_KEY);
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
                .filter(|setting| setting.key != SELECTOR_TYPE_KEY)
                .map(|setting| {
                    let mut raw = keep_raw(source, setting.clone(), diagnostics);
                    raw.key = setting.key[SELECTOR_PREFIX.len()..].to_string();
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
                &source.full_key(SELECTOR_TYPE_KEY),
                SELECTOR_TYPE_EXPECTED,
                type_name,
            );
            return None;
        };

        let errors_before = diagnostics.error_count();
        let mut keys = ComponentSettings::new(
            file,
            &source.key_prefix,
            source.declared_line,
            selector_settings,
        )
        .with_empty_values(EmptyValues::Refused);
        keys.describe_unknown_keys(
            format!("a key of the {type_name} selector"),
            KeyListing::AsRead,
        );
        keys.text(SELECTOR_TYPE_KEY);
        let described = describe_declared(&source.full_key("channels"), source_channels);
        let channels_of = |keys: &mut ComponentSettings<'_>, key: &str| {
            channel_list(keys, key, source_channels, &described).map(|(channels, _)| channels)
        };
        let selector = match kind {
            SelectorKind::Replicating => ChannelSelector::Replicating {
                optional: channels_of(&mut keys, "selector.optional").unwrap_or_default(),
            },
            SelectorKind::Multiplexing => {
                let header = keys
                    .parsed("selector.header", |value| {
                        values::single_word(value, "a header name")
                    })
                    .unwrap_or_else(|| DEFAULT_MULTIPLEX_HEADER.to_string());
                let default = channels_of(&mut keys, "selector.default").unwrap_or_default();
                let routes = |keys: &mut ComponentSettings<'_>, prefix: &str, listed: &str| {
                    let settings =
                        keys.matching(&[listed], |key| header_route_value(key, prefix).is_some());
                    settings
                        .iter()
                        .map(|setting| HeaderRoute {
                            header_value: header_route_value(&setting.key, prefix)
                                .unwrap_or_default(),
                            channels: channel_references(
                                keys,
                                &setting.key,
                                &setting.value,
                                source_channels,
                                &described,
                            )
                            .0,
                        })
                        .collect::<Vec<HeaderRoute>>()
                };
                let mappings = routes(
                    &mut keys,
                    SELECTOR_MAPPING_PREFIX,
                    "selector.mapping.<header value>",
                );
                let optional = routes(
                    &mut keys,
                    SELECTOR_OPTIONAL_PREFIX,
                    "selector.optional.<header value>",
                );
                ChannelSelector::Multiplexing {
                    header,
                    mappings,
                    optional,
                    default,
                }
            }
            SelectorKind::LoadBalancing => ChannelSelector::LoadBalancing {
                policy: keys.parsed_or(
                    "selector.policy",
                    LoadBalancingPolicy::RoundRobin,
                    |value| {
                        if value.eq_ignore_ascii_case("round_robin") {
                            Ok(LoadBalancingPolicy::RoundRobin)
                        } else if value.eq_ignore_ascii_case("random") {
                            Ok(LoadBalancingPolicy::Random)
                        } else {
                            Err(Expected::new("round_robin or random"))
                        }
                    },
                ),
            },
        };
        diagnostics.absorb(keys.finish());
        if let ChannelSelector::Multiplexing {
            mappings, default, ..
        } = &selector
        {
            let type_line = type_setting.map_or(source.declared_line, |setting| setting.line);
            if mappings.is_empty() && default.is_empty() {
                diagnostics.missing_key(
                    Some(type_line),
                    &source.full_key("selector.default"),
                    "channels for events whose header has no selector.mapping (with neither, a \
                     multiplexing selector sends every event nowhere)",
                );
            } else if default.is_empty() {
                diagnostics.warn(
                    type_line,
                    &source.full_key(SELECTOR_TYPE_KEY),
                    "no selector.default: events whose header matches no mapping are dropped, \
                     as in Flume",
                );
            }
        }
        (diagnostics.error_count() == errors_before).then_some(selector)
    }
}

/// The header value in `selector.mapping.<value>` or `selector.optional.<value>`.
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
    let file = diagnostics.file().to_string();
    let mut keys = sink.reader(&file);
    let sink_type = component_type(
        &mut keys,
        "a sink type (an alias such as logger or file_roll, or a class name)",
    );
    let channel = match keys.text("channel") {
        Some(value) => {
            let listed = format!(
                "a channel listed in {}",
                describe_declared(channels_list_key, channels)
            );
            match values::single_word(&value, "exactly one channel name") {
                Err(expected) => {
                    keys.refuse("channel", &expected.0, &value);
                    value
                }
                Ok(name) => {
                    if !channels.contains(&name) {
                        keys.refuse("channel", &listed, &name);
                    }
                    name
                }
            }
        }
        None => {
            let expected = if keys.is_set("channels") {
                "exactly one channel name (sinks use the singular key channel; channels is for \
                 sources)"
            } else {
                "exactly one channel name"
            };
            keys.missing("channel", expected);
            String::new()
        }
    };
    let settings = hand_on_to_adapter(sink, keys, diagnostics);
    Some(SinkConfig {
        name: sink.name.clone(),
        sink_type: sink_type?,
        channel,
        settings,
        declared_line: sink.declared_line,
    })
}

const PROCESSOR_PREFIX: &str = "processor.";
const PROCESSOR_TYPE_KEY: &str = "processor.type";
const PROCESSOR_PRIORITY_PREFIX: &str = "processor.priority.";
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
    let file = diagnostics.file().to_string();
    let mut keys = group.reader(&file);
    keys.describe_unknown_keys("a sink group key", KeyListing::AsRead);
    let group_sinks = match keys.text("sinks") {
        Some(value) => group_sink_references(
            group,
            &mut keys,
            &value,
            sinks,
            sinks_list_key,
            group_of_sink,
        ),
        None => {
            keys.missing("sinks", "a space-separated list of the group's sinks");
            Vec::new()
        }
    };
    let processor_settings = keys.matching(&[PROCESSOR_TYPE_KEY, "processor.<setting>"], |key| {
        key.starts_with(PROCESSOR_PREFIX)
    });
    let processor = SinkProcessor::read(group, &file, &processor_settings, &group_sinks, &mut keys);
    diagnostics.absorb(keys.finish());
    Some(SinkGroupConfig {
        name: group.name.clone(),
        sinks: group_sinks,
        processor: processor?,
        declared_line: group.declared_line,
    })
}

fn group_sink_references(
    group: &Component,
    keys: &mut ComponentSettings<'_>,
    value: &str,
    sinks: &[String],
    sinks_list_key: &str,
    group_of_sink: &mut HashMap<String, String>,
) -> Vec<String> {
    let listed = format!(
        "a sink listed in {}",
        describe_declared(sinks_list_key, sinks)
    );
    let mut group_sinks: Vec<String> = Vec::new();
    for name in values::space_separated(value) {
        if !sinks.iter().any(|sink| sink == name) {
            keys.refuse("sinks", &listed, name);
        } else if group_sinks.iter().any(|seen| seen == name) {
            keys.refuse("sinks", "each sink once", name);
        } else if let Some(other_group) = group_of_sink.get(name) {
            keys.refuse(
                "sinks",
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

impl SinkProcessor {
    /// Reads a sink group's `processor.*` keys (`processor_settings`) for the group's
    /// sinks, recording problems in `group_keys`, the reader of the group's keys. `None`
    /// when a problem was recorded.
    fn read(
        group: &Component,
        file: &str,
        processor_settings: &[RawSetting],
        group_sinks: &[String],
        group_keys: &mut ComponentSettings<'_>,
    ) -> Option<SinkProcessor> {
        let Some(type_setting) = processor_settings
            .iter()
            .find(|setting| setting.key == PROCESSOR_TYPE_KEY)
        else {
            group_keys.missing(PROCESSOR_TYPE_KEY, PROCESSOR_TYPE_EXPECTED);
            return None;
        };
        let type_name = type_setting.value.as_str();
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
                .iter()
                .filter(|setting| setting.key != PROCESSOR_TYPE_KEY)
                .map(|setting| RawSetting {
                    key: setting.key[PROCESSOR_PREFIX.len()..].to_string(),
                    value: setting.value.clone(),
                    line: setting.line,
                })
                .collect();
            return Some(SinkProcessor::Custom {
                class_name: type_name.to_string(),
                settings,
            });
        } else {
            group_keys.refuse(PROCESSOR_TYPE_KEY, PROCESSOR_TYPE_EXPECTED, type_name);
            return None;
        };

        let errors_before = group_keys.error_count();
        let mut keys = ComponentSettings::new(
            file,
            &group.key_prefix,
            group.declared_line,
            processor_settings,
        )
        .with_empty_values(EmptyValues::Refused);
        keys.describe_unknown_keys(
            format!("a key of the {type_name} sink processor"),
            KeyListing::AsRead,
        );
        keys.text(PROCESSOR_TYPE_KEY);
        let mut priorities: Vec<(String, i32, usize)> = Vec::new();
        let processor = match kind {
            ProcessorKind::Default => SinkProcessor::Default,
            ProcessorKind::Failover => {
                let max_penalty = keys.parsed_or(
                    "processor.maxpenalty",
                    DEFAULT_FAILOVER_MAX_PENALTY,
                    values::positive_milliseconds,
                );
                let priority_settings = keys.matching(&["processor.priority.<sink>"], |key| {
                    key.starts_with(PROCESSOR_PRIORITY_PREFIX)
                });
                for setting in &priority_settings {
                    let sink = &setting.key[PROCESSOR_PRIORITY_PREFIX.len()..];
                    if !group_sinks.iter().any(|group_sink| group_sink == sink) {
                        let expected = format!(
                            "a priority for a sink of this group ({})",
                            group_sinks.join(" ")
                        );
                        keys.unknown(&setting.key, expected);
                        continue;
                    }
                    match values::java_int(&setting.value) {
                        Ok(priority) => priorities.push((sink.to_string(), priority, setting.line)),
                        Err(expected) => keys.refuse(&setting.key, &expected.0, &setting.value),
                    }
                }
                SinkProcessor::Failover {
                    priorities: Vec::new(),
                    max_penalty,
                }
            }
            ProcessorKind::LoadBalance => SinkProcessor::LoadBalance {
                backoff: keys.boolean_or("processor.backoff", false),
                selector: keys.parsed_or("processor.selector", SinkSelector::RoundRobin, |value| {
                    if value.eq_ignore_ascii_case("round_robin") {
                        Ok(SinkSelector::RoundRobin)
                    } else if value.eq_ignore_ascii_case("random") {
                        Ok(SinkSelector::Random)
                    } else if looks_like_class_name(value) {
                        Ok(SinkSelector::Custom(value.to_string()))
                    } else {
                        Err(Expected::new(
                            "round_robin, random or a sink selector class name",
                        ))
                    }
                }),
                max_backoff: keys.parsed_or(
                    "processor.selector.maxTimeOut",
                    DEFAULT_LOAD_BALANCE_MAX_BACKOFF,
                    values::positive_milliseconds,
                ),
            },
        };
        group_keys.absorb(keys.finish());
        // Flume's failover processor silently drops a sink whose priority another sink has.
        for (index, (sink, priority, _)) in priorities.iter().enumerate() {
            if let Some((other_sink, _, _)) = priorities[..index]
                .iter()
                .find(|(_, other_priority, _)| other_priority == priority)
            {
                group_keys.refuse(
                    &format!("{PROCESSOR_PRIORITY_PREFIX}{sink}"),
                    &format!(
                        "a priority no other sink of the group has ({other_sink} has {priority})"
                    ),
                    &priority.to_string(),
                );
            }
        }
        if kind == ProcessorKind::Default && group_sinks.len() > 1 {
            group_keys.conflict(
                "sinks",
                format!(
                    "expected exactly one sink for processor.type = default, got {} (failover \
                     and load_balance take several)",
                    group_sinks.len()
                ),
            );
        }
        if group_keys.error_count() != errors_before {
            return None;
        }
        Some(match processor {
            SinkProcessor::Failover { max_penalty, .. } => SinkProcessor::Failover {
                priorities: priorities
                    .into_iter()
                    .map(|(sink, priority, _)| (sink, priority))
                    .collect(),
                max_penalty,
            },
            other => other,
        })
    }
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
