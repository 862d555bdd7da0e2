//! One agent's configuration, assembled from the properties of a file.
//!
//! The steps, each collecting every problem it finds; every step runs, whatever the
//! earlier ones found, on what they could read:
//!
//! 1. Read the text as Java properties; trim keys and values as Flume does.
//! 2. Split each key at its first dot into the agent name and the rest. Keys of other
//!    agents are set aside unread; a key with no agent part is an error.
//! 3. Refuse a key of the chosen agent set twice to different values (Java would keep
//!    the last silently); set twice to the same value it gets a warning.
//! 4. Sort the agent's keys into the four declaration lists (`sources`, `channels`,
//!    `sinks`, `sinkgroups`), `server.*` settings, and component keys
//!    (`channels.NAME.KEY` and the like). Anything else is an unknown key.
//! 5. Refuse component keys whose component is not declared in its list.
//! 6. Read server settings (they give the base directory for channel defaults), then
//!    channels, then check no two channels share a directory, then sources, sinks and
//!    sink groups, whose references to channels and sinks must resolve.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;

use millrace_engine::config::ChannelConfig;

use crate::channel::{self, describe_use, normalized_directory, DirectoryUse};
use crate::components::{self, SinkConfig, SinkGroupConfig, SourceConfig};
use crate::error::{
    expected_one_of, ConfigError, ConfigErrorKind, ConfigErrors, ConfigWarning, Diagnostics,
};
use crate::properties::{self, Property};
use crate::server_settings::{self, ServerSettings, SERVER_SETTINGS};
use crate::setting::{Component, RawSetting};
use crate::values::{self, java_trim};

/// Everything channeld needs from one agent of a configuration file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentConfig {
    /// The agent's name (`-n`).
    pub agent_name: String,
    /// The channels, in the order `AGENT.channels` lists them.
    pub channels: Vec<(String, ChannelConfig)>,
    /// The sources, in the order `AGENT.sources` lists them.
    pub sources: Vec<SourceConfig>,
    /// The sinks, in the order `AGENT.sinks` lists them.
    pub sinks: Vec<SinkConfig>,
    /// The sink groups, in the order `AGENT.sinkgroups` lists them.
    pub sink_groups: Vec<SinkGroupConfig>,
    /// channeld's own settings (`AGENT.server.*`).
    pub server: ServerSettings,
    /// Things accepted that the operator should know about, in line order.
    pub warnings: Vec<ConfigWarning>,
    /// The line of every key of the agent (its first setting), by full key.
    pub key_lines: BTreeMap<String, usize>,
}

/// An agent read as far as its file allows: what could be read, and every error.
///
/// Checks that look beyond one key's own rules (an adapter's keys, ports shared between
/// components, files the configuration names) run on `config` even when `errors` is not
/// empty, so that one run reports every problem of a file. `config` holds every
/// channel that could be read, every source and sink whose `type` could be read (with
/// the channels among those it names that are declared, and a replicating selector
/// when its own could not be read), every sink group whose processor could be read,
/// and the server settings (a setting that could not be read keeps its default).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentReading {
    /// The agent as far as it could be read; its `warnings` are every warning found.
    pub config: AgentConfig,
    /// Every error, in line order (file-level ones first); empty for a valid file.
    pub errors: Vec<ConfigError>,
}

impl AgentReading {
    fn new(mut config: AgentConfig, diagnostics: Diagnostics) -> AgentReading {
        let (errors, warnings) = diagnostics.into_sorted();
        config.warnings = warnings;
        AgentReading { config, errors }
    }

    /// A reading that stopped at the file itself (unreadable, not UTF-8).
    pub(crate) fn file_level(agent: &str, base_dir: &Path, error: ConfigError) -> AgentReading {
        AgentReading {
            config: AgentConfig::empty(agent, base_dir),
            errors: vec![error],
        }
    }

    /// The configuration when the file is valid, else every error and warning.
    pub fn into_result(self) -> Result<AgentConfig, ConfigErrors> {
        if self.errors.is_empty() {
            Ok(self.config)
        } else {
            Err(ConfigErrors {
                errors: self.errors,
                warnings: self.config.warnings,
            })
        }
    }
}

impl AgentConfig {
    /// An agent with no components and default server settings.
    fn empty(agent: &str, base_dir: &Path) -> AgentConfig {
        AgentConfig {
            agent_name: agent.to_string(),
            channels: Vec::new(),
            sources: Vec::new(),
            sinks: Vec::new(),
            sink_groups: Vec::new(),
            server: ServerSettings {
                data_base_dir: base_dir.to_path_buf(),
                ..ServerSettings::default()
            },
            warnings: Vec::new(),
            key_lines: BTreeMap::new(),
        }
    }

    /// The line a full key (`a1.sources.r1.type`) is set on, when the file sets it.
    pub fn line_of(&self, key: &str) -> Option<usize> {
        self.key_lines.get(key).copied()
    }

    /// The settings of the named channel.
    pub fn channel(&self, name: &str) -> Option<&ChannelConfig> {
        self.channels
            .iter()
            .find(|(channel_name, _)| channel_name == name)
            .map(|(_, config)| config)
    }

    /// What runs as one adapter process each: every source, every sink group, and every
    /// sink outside a group, in that order.
    pub fn adapter_components(&self) -> Vec<String> {
        let grouped = |sink: &str| {
            self.sink_groups
                .iter()
                .any(|group| group.sinks.iter().any(|name| name == sink))
        };
        self.sources
            .iter()
            .map(|source| source.name.clone())
            .chain(self.sink_groups.iter().map(|group| group.name.clone()))
            .chain(
                self.sinks
                    .iter()
                    .filter(|sink| !grouped(&sink.name))
                    .map(|sink| sink.name.clone()),
            )
            .collect()
    }
}

/// The four lists that declare an agent's components.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Section {
    Sources,
    Channels,
    Sinks,
    SinkGroups,
}

impl Section {
    const ALL: [Section; 4] = [
        Section::Sources,
        Section::Channels,
        Section::Sinks,
        Section::SinkGroups,
    ];

    /// The key word, as in `a1.sinkgroups`.
    fn word(self) -> &'static str {
        match self {
            Section::Sources => "sources",
            Section::Channels => "channels",
            Section::Sinks => "sinks",
            Section::SinkGroups => "sinkgroups",
        }
    }

    /// What one member is called in messages.
    fn member(self) -> &'static str {
        match self {
            Section::Sources => "source",
            Section::Channels => "channel",
            Section::Sinks => "sink",
            Section::SinkGroups => "sink group",
        }
    }

    fn from_word(word: &str) -> Option<Section> {
        Section::ALL
            .into_iter()
            .find(|section| section.word() == word)
    }
}

/// A declaration list as read: the names and the line they are on.
#[derive(Debug, Default)]
struct Declaration {
    names: Vec<String>,
    line: Option<usize>,
}

/// The chosen agent's keys, sorted by what they configure.
#[derive(Debug, Default)]
struct SortedKeys {
    declarations: HashMap<Section, Declaration>,
    /// Component keys per section, per component name, in file order.
    components: HashMap<Section, Vec<(String, Vec<RawSetting>)>>,
    /// `server.*` keys: (setting name, property).
    server: Vec<(String, Property)>,
}

impl SortedKeys {
    fn declared_names(&self, section: Section) -> Vec<String> {
        self.declarations
            .get(&section)
            .map(|declaration| declaration.names.clone())
            .unwrap_or_default()
    }

    /// The declared components of a section with their keys, in declaration order.
    fn declared_components(&self, agent: &str, section: Section) -> Vec<Component> {
        let Some(declaration) = self.declarations.get(&section) else {
            return Vec::new();
        };
        let keyed = self.components.get(&section);
        declaration
            .names
            .iter()
            .map(|name| Component {
                name: name.clone(),
                key_prefix: format!("{agent}.{}.{name}", section.word()),
                declared_line: declaration.line.unwrap_or_default(),
                settings: keyed
                    .and_then(|components| components.iter().find(|(n, _)| n == name))
                    .map(|(_, settings)| settings.clone())
                    .unwrap_or_default(),
            })
            .collect()
    }
}

/// Reads the named agent from properties text. See the module doc for the steps.
///
/// Never stops early: the result holds every problem of the file and the agent as far
/// as it could be read (see [`AgentReading`]).
pub(crate) fn read_agent(
    text: &str,
    file_name: &str,
    agent: &str,
    base_dir: &Path,
) -> AgentReading {
    let mut diagnostics = Diagnostics::new(file_name);
    let parsed = properties::parse_properties(text);
    for error in parsed.errors {
        diagnostics.error(Some(error.line), ConfigErrorKind::Syntax(error));
    }

    let mut agents_present = BTreeSet::new();
    let mut agent_properties = Vec::new();
    for property in parsed.properties {
        let key = java_trim(&property.key);
        match key.split_once('.') {
            Some((agent_name, rest)) if !agent_name.is_empty() => {
                agents_present.insert(agent_name.to_string());
                if agent_name == agent {
                    if rest.is_empty() {
                        diagnostics.unknown_key(property.line, key, top_level_expected(agent, ""));
                        continue;
                    }
                    agent_properties.push(Property {
                        key: key.to_string(),
                        value: java_trim(&property.value).to_string(),
                        line: property.line,
                    });
                }
            }
            _ => diagnostics.unknown_key(
                property.line,
                key,
                "a key of the form AGENT.KEY, such as a1.channels".to_string(),
            ),
        }
    }
    let mut config = AgentConfig::empty(agent, base_dir);
    if !agents_present.contains(agent) {
        diagnostics.error(
            None,
            ConfigErrorKind::AgentNotFound {
                agent: agent.to_string(),
                present: agents_present.into_iter().collect(),
            },
        );
        return AgentReading::new(config, diagnostics);
    }

    let agent_properties = drop_repeated_keys(agent_properties, &mut diagnostics);
    config.key_lines = agent_properties
        .iter()
        .map(|property| (property.key.clone(), property.line))
        .collect();
    let sorted = sort_keys(agent, agent_properties, &mut diagnostics);
    refuse_undeclared_components(agent, &sorted, &mut diagnostics);

    config.server = read_server_settings(&sorted.server, base_dir, &mut diagnostics);
    let channels_list_key = format!("{agent}.channels");
    if !sorted.declarations.contains_key(&Section::Channels) {
        diagnostics.missing_key(
            None,
            &channels_list_key,
            "a space-separated list of channel names",
        );
    }
    let mut directories: Vec<DirectoryUse> = Vec::new();
    for channel in sorted.declared_components(agent, Section::Channels) {
        if let Some(parsed) =
            channel::parse_channel(&channel, &config.server.data_base_dir, &mut diagnostics)
        {
            directories.extend(parsed.directories);
            config.channels.push((channel.name, parsed.config));
        }
    }
    refuse_shared_directories(&directories, &mut diagnostics);

    let channel_names = sorted.declared_names(Section::Channels);
    config.sources = sorted
        .declared_components(agent, Section::Sources)
        .iter()
        .filter_map(|source| {
            components::parse_source(source, &channel_names, &channels_list_key, &mut diagnostics)
        })
        .collect();
    config.sinks = sorted
        .declared_components(agent, Section::Sinks)
        .iter()
        .filter_map(|sink| {
            components::parse_sink(sink, &channel_names, &channels_list_key, &mut diagnostics)
        })
        .collect();
    let sink_names = sorted.declared_names(Section::Sinks);
    let sinks_list_key = format!("{agent}.sinks");
    let mut group_of_sink = HashMap::new();
    config.sink_groups = sorted
        .declared_components(agent, Section::SinkGroups)
        .iter()
        .filter_map(|group| {
            components::parse_sink_group(
                group,
                &sink_names,
                &sinks_list_key,
                &mut group_of_sink,
                &mut diagnostics,
            )
        })
        .collect();
    AgentReading::new(config, diagnostics)
}

/// Keeps the first setting of each key. A key set again to the same value is harmless
/// (Flume reads it too: the last of equal values wins) and gets a warning; set again to
/// a different value it is an error, since the file says two things and Flume would
/// silently take the last.
fn drop_repeated_keys(properties: Vec<Property>, diagnostics: &mut Diagnostics) -> Vec<Property> {
    let repeated = properties::find_duplicate_keys(&properties);
    for repetition in &repeated {
        if repetition.value == repetition.first_value {
            diagnostics.warn(
                repetition.line,
                &repetition.key,
                format!(
                    "set again to the same value as on line {}; the repetition changes nothing",
                    repetition.first_line
                ),
            );
        } else {
            diagnostics.error(
                Some(repetition.line),
                ConfigErrorKind::DuplicateKey {
                    key: repetition.key.clone(),
                    first_line: repetition.first_line,
                    first_value: repetition.first_value.clone(),
                    value: repetition.value.clone(),
                },
            );
        }
    }
    properties
        .into_iter()
        .filter(|property| {
            !repeated.iter().any(|repetition| {
                repetition.line == property.line && repetition.key == property.key
            })
        })
        .collect()
}

/// What the rest of an agent key may start with, with a suggestion for a likely typo.
fn top_level_expected(agent: &str, unknown_word: &str) -> String {
    let known = ["sources", "channels", "sinks", "sinkgroups", "server"];
    let choices = format!(
        "a key starting {agent}.sources, {agent}.channels, {agent}.sinks, \
         {agent}.sinkgroups or {agent}.server"
    );
    match crate::error::closest_name(unknown_word, known) {
        Some(suggestion) if suggestion != unknown_word => {
            format!("{choices} (did you mean {agent}.{suggestion}?)")
        }
        _ => choices,
    }
}

/// Step 4 of the module doc.
fn sort_keys(agent: &str, properties: Vec<Property>, diagnostics: &mut Diagnostics) -> SortedKeys {
    let mut sorted = SortedKeys::default();
    for property in properties {
        let rest = &property.key[agent.len() + 1..];
        if let Some(section) = Section::from_word(rest) {
            read_declaration(section, &property, &mut sorted, diagnostics);
            continue;
        }
        if let Some(setting_name) = rest.strip_prefix("server.") {
            sorted.server.push((setting_name.to_string(), property));
            continue;
        }
        let component_key = rest.split_once('.').and_then(|(word, after)| {
            let section = Section::from_word(word)?;
            let (name, sub_key) = after.split_once('.')?;
            (!name.is_empty() && !sub_key.is_empty()).then_some((section, name, sub_key))
        });
        match component_key {
            Some((section, name, sub_key)) => {
                let setting = RawSetting {
                    key: sub_key.to_string(),
                    value: property.value.clone(),
                    line: property.line,
                };
                let components = sorted.components.entry(section).or_default();
                match components.iter_mut().find(|(n, _)| n == name) {
                    Some((_, settings)) => settings.push(setting),
                    None => components.push((name.to_string(), vec![setting])),
                }
            }
            None => {
                let first_word = rest.split('.').next().unwrap_or_default();
                let expected = match Section::from_word(first_word) {
                    Some(section) => format!(
                        "a key of the form {agent}.{}.<name>.<setting>",
                        section.word()
                    ),
                    None if first_word == "server" => {
                        format!("a key of the form {agent}.server.<setting>")
                    }
                    None => top_level_expected(agent, first_word),
                };
                diagnostics.unknown_key(property.line, &property.key, expected);
            }
        }
    }
    sorted
}

fn read_declaration(
    section: Section,
    property: &Property,
    sorted: &mut SortedKeys,
    diagnostics: &mut Diagnostics,
) {
    let mut names: Vec<String> = Vec::new();
    let expected_list = format!("a space-separated list of {} names", section.member());
    let items = values::space_separated(&property.value);
    if items.is_empty() {
        diagnostics.bad_value(
            property.line,
            &property.key,
            &expected_list,
            &property.value,
        );
    }
    for name in items {
        if name.contains('.') {
            diagnostics.bad_value(
                property.line,
                &property.key,
                &format!(
                    "{} names without dots (a dot ends the name in keys)",
                    section.member()
                ),
                name,
            );
        } else if names.iter().any(|seen| seen == name) {
            diagnostics.bad_value(
                property.line,
                &property.key,
                &format!("each {} once", section.member()),
                name,
            );
        } else {
            names.push(name.to_string());
        }
    }
    sorted.declarations.insert(
        section,
        Declaration {
            names,
            line: Some(property.line),
        },
    );
}

/// Step 5: Flume silently ignores keys of components missing from their list; Millrace
/// reports each such component once, at its first key.
fn refuse_undeclared_components(agent: &str, sorted: &SortedKeys, diagnostics: &mut Diagnostics) {
    for section in Section::ALL {
        let declared = sorted.declared_names(section);
        let list_key = format!("{agent}.{}", section.word());
        let Some(components) = sorted.components.get(&section) else {
            continue;
        };
        for (name, settings) in components {
            if declared.contains(name) {
                continue;
            }
            let first = &settings[0];
            let expected = format!(
                "a {} listed in {}",
                section.member(),
                components::describe_declared(&list_key, &declared)
            );
            let first_key = format!("{list_key}.{name}.{}", first.key);
            diagnostics.bad_value(first.line, &first_key, &expected, name);
        }
    }
}

fn read_server_settings(
    server_keys: &[(String, Property)],
    base_dir: &Path,
    diagnostics: &mut Diagnostics,
) -> ServerSettings {
    let mut settings = ServerSettings {
        data_base_dir: base_dir.to_path_buf(),
        ..ServerSettings::default()
    };
    for (name, property) in server_keys {
        let Some(spec) = server_settings::server_setting(name) else {
            let expected = expected_one_of(
                name,
                "a server setting",
                SERVER_SETTINGS.iter().map(|spec| spec.key),
            );
            diagnostics.unknown_key(property.line, &property.key, expected);
            continue;
        };
        if let Err(expected) = spec.apply(&mut settings, &property.value) {
            diagnostics.bad_value(property.line, &property.key, &expected.0, &property.value);
        }
    }
    let line_of = |name: &str| {
        server_keys
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, property)| (property.line, property.key.as_str()))
    };
    let shares_a_fixed_port = settings.bind == settings.http && settings.bind.port != 0;
    if shares_a_fixed_port {
        if let Some((line, key)) = [line_of("bind"), line_of("http")]
            .into_iter()
            .flatten()
            .max()
        {
            diagnostics.conflict(
                line,
                key,
                format!(
                    "expected server.bind and server.http to differ, got {} for both",
                    settings.bind
                ),
            );
        }
    }
    settings
}

/// No directory may serve two channels: each holds a lock and files with fixed names.
fn refuse_shared_directories(directories: &[DirectoryUse], diagnostics: &mut Diagnostics) {
    let owner = |directory: &DirectoryUse| {
        directory
            .key
            .rsplit_once('.')
            .map_or(String::new(), |(prefix, _)| prefix.to_string())
    };
    for (index, later) in directories.iter().enumerate() {
        let normalized = normalized_directory(&later.path);
        let earlier = directories[..index].iter().find(|earlier| {
            owner(earlier) != owner(later) && normalized_directory(&earlier.path) == normalized
        });
        if let Some(earlier) = earlier {
            diagnostics.bad_value(
                later.line,
                &later.key,
                &format!("a directory not already used as {}", describe_use(earlier)),
                &later.path.display().to_string(),
            );
        }
    }
}
