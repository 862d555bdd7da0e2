//! # Millrace configuration: Flume's agent properties format, read strictly
//!
//! Everything channeld, channel-agent and channelctl know about a configuration file is
//! read here, and only here: the channels (into the engine's typed settings), the wiring
//! of sources, sinks, sink groups and selectors, `AGENT.server.*`, and the one way every
//! component reads its own keys ([`ComponentSettings`]). This crate reads text and
//! never opens a channel or a socket; the server, the adapters and the tools depend on
//! it, and it depends on none of them.
//!
//! # Constraints
//!
//! - **Flume's format, Flume's names.** `channeld -f FILE -n AGENT` reads the same
//!   Java-properties file a Flume agent reads. Every Flume channel key is accepted under
//!   its Flume name with Flume's real default; sources, sinks, sink groups and selectors
//!   use Flume's keys. Millrace additions (`AGENT.server.*`, `retentionTime`,
//!   `retentionBytes`) are documented as extensions in `docs/configuration.md`.
//! - **Several agents per file.** `-n` picks one; keys of the other agents are not read.
//! - **Nothing is silently dropped.** Where Flume logs a warning and carries on (an
//!   unknown key, an unparsable number replaced by its default, a component missing
//!   from its list, a duplicate key), Millrace refuses the file. Every problem names the
//!   file, the line, the full key and what was expected:
//!
//!   ```text
//!   agent.conf:12: a1.channels.c1.capacity: expected a positive integer, got "ten"
//!   ```
//!
//!   All problems of a file are reported together ([`ConfigErrors`]); warnings (values
//!   Flume clamps, keys accepted but not acted on) come back separately. Reading never
//!   stops at a problem: [`read_agent_config`] returns the agent as far as it could be
//!   read along with every error, so that the checks that build on it (adapter keys,
//!   ports, files) report their problems in the same run.
//!
//! # Layers
//!
//! ```text
//!  text ──► properties ──► agent ─┬─► server_settings ──► ServerSettings
//!           (Java rules,   (split │
//!            line numbers)  keys) ├─► channel ──────────► millrace_engine::config::ChannelConfig
//!                                 │
//!                                 └─► components ───────► SourceConfig, SinkConfig, SinkGroupConfig
//! ```
//!
//! - [`properties`] reproduces `java.util.Properties.load` (comments, continuations,
//!   escapes, separators) and keeps each entry's line.
//! - `agent` trims keys and values as Flume does (`String.trim()`, so Java's kept
//!   trailing whitespace goes), keeps the chosen agent's keys, refuses duplicates, and
//!   sorts keys into declarations, server settings and component keys.
//! - `channel` turns channel keys into the engine's typed settings and checks the rules
//!   that span keys, before handing the result to the engine's `validate()`.
//! - `components` reads the wiring of sources, sinks and sink groups and checks every
//!   reference; adapter-specific keys are handed on, with lines, for the adapters to
//!   read.
//! - [`ComponentSettings`] is how each of them reads a component's keys, and how an
//!   adapter reads the keys handed on to it: each key read by name next to the struct
//!   that holds it, a bad value recorded without stopping, and every key nobody read
//!   reported as unknown.
//! - `files` is the one part that looks at the filesystem: [`check_key_files`] loads
//!   the key files a configuration names, for callers that ask (`channelctl validate`).
//!
//! # Values
//!
//! Flume trims every value, and so does Millrace; a value that is empty after trimming
//! is refused for any key Millrace reads (Flume ignores such keys) and kept with a
//! warning for keys it hands to an adapter. Numbers follow Java's `Long.parseLong`.
//! Durations carry Flume's unit for the key (`keep-alive` in seconds,
//! `checkpointInterval` in milliseconds). Relative paths are relative to the working
//! directory, as in Flume.
//!
//! Where Millrace departs from Flume (besides strictness): a file channel without
//! `checkpointDir`/`dataDirs` keeps them under `<dataBaseDir>/<channel>/` rather than
//! `~/.flume/file-channel/`, so two channels never collide; an agent needs channels but
//! no sources or sinks, since clients reach channels over the network; the file must be
//! UTF-8 (a byte-order mark is skipped).

#![warn(missing_docs)]

mod agent;
mod channel;
mod component_settings;
mod components;
mod error;
mod files;
pub mod properties;
mod server_settings;
mod setting;
pub mod unprovided;
pub mod values;

use std::path::Path;

pub use agent::{AgentConfig, AgentReading};
pub use channel::{channel_key_names, ChannelKind};
pub use component_settings::{ComponentSettings, EmptyValues, KeyListing, SettingsProblems};
pub use components::{
    ChannelSelector, HeaderRoute, LoadBalancingPolicy, SinkConfig, SinkGroupConfig, SinkProcessor,
    SinkSelector, SourceConfig, DEFAULT_FAILOVER_MAX_PENALTY, DEFAULT_LOAD_BALANCE_MAX_BACKOFF,
    DEFAULT_MULTIPLEX_HEADER,
};
pub use error::{
    expected_one_of, sort_by_line, ConfigError, ConfigErrorKind, ConfigErrors, ConfigWarning,
};
pub use files::check_key_files;
pub use millrace_engine::config::{
    ChannelConfig, Compression, EncryptionConfig, FileChannelConfig, KeySource,
    MemoryChannelConfig, SpillableChannelConfig,
};
pub use properties::{EscapeProblem, PropertiesError};
pub use server_settings::{check_settings, max_connections, max_frame_bytes, SettingError};
pub use server_settings::{
    AuthToken, HostPort, HostPortError, ServerSettingSpec, ServerSettings, DEFAULT_DATA_BASE_DIR,
    DEFAULT_FRAME_DEADLINE, DEFAULT_HANDSHAKE_DEADLINE, DEFAULT_HTTP_HEADER_TIMEOUT,
    DEFAULT_HTTP_MAX_CONNECTIONS, DEFAULT_HTTP_PORT, DEFAULT_IDLE_TIMEOUT, DEFAULT_LISTEN_HOST,
    DEFAULT_MAX_CONNECTIONS, DEFAULT_MAX_FRAME_BYTES, DEFAULT_PROTOCOL_PORT,
    DEFAULT_SHUTDOWN_GRACE, SERVER_SETTINGS,
};
pub use setting::RawSetting;

/// The agent name of the embedded default configuration.
pub const EMBEDDED_AGENT_NAME: &str = "channeld";

/// The configuration channeld runs with when no file is given: one file channel named
/// `default` with its directories under `./millrace-data/default/`, and every server
/// setting at its default. It is ordinary config text, so it can be printed and edited.
pub const EMBEDDED_DEFAULT_CONFIG: &str = "\
# channeld's built-in configuration, used when no -f FILE is given.
channeld.channels = default
channeld.channels.default.type = file
";

/// The name used for the embedded default in messages.
const EMBEDDED_DEFAULT_FILE_NAME: &str = "<embedded default>";

/// UTF-8 byte-order mark, which some editors write at the start of a file.
const BYTE_ORDER_MARK: char = '\u{FEFF}';

/// Reads `agent` from the file at `path`.
///
/// `base_dir` is where file channels without configured directories keep them
/// (`<base_dir>/<channel>/{checkpoint,data}`), unless the file sets
/// `AGENT.server.dataBaseDir`; pass [`DEFAULT_DATA_BASE_DIR`] for the usual
/// `./millrace-data`. Messages name the file as `path` is written.
pub fn load_agent_config(
    path: &Path,
    agent: &str,
    base_dir: &Path,
) -> Result<AgentConfig, ConfigErrors> {
    read_agent_config(path, agent, base_dir).into_result()
}

/// Reads `agent` from the file at `path` as far as it can be read, with every problem
/// (see [`AgentReading`]); [`load_agent_config`] is this for callers that only want a
/// valid configuration.
pub fn read_agent_config(path: &Path, agent: &str, base_dir: &Path) -> AgentReading {
    let file_name = path.display().to_string();
    let file_level_error = |line, kind| {
        AgentReading::file_level(
            agent,
            base_dir,
            ConfigError {
                file: file_name.clone(),
                line,
                kind,
            },
        )
    };
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(error) => {
            return file_level_error(
                None,
                ConfigErrorKind::Unreadable {
                    reason: error.to_string(),
                },
            )
        }
    };
    match String::from_utf8(bytes) {
        Ok(text) => read_agent_config_text(&text, &file_name, agent, base_dir),
        Err(error) => {
            let byte_offset = error.utf8_error().valid_up_to();
            let bytes = error.into_bytes();
            let line = 1 + bytes[..byte_offset].iter().filter(|&&b| b == b'\n').count();
            file_level_error(
                Some(line),
                ConfigErrorKind::NotUtf8 {
                    byte: bytes[byte_offset],
                    byte_offset,
                },
            )
        }
    }
}

/// Reads `agent` from configuration text; `file_name` is used in messages. See
/// [`load_agent_config`] for `base_dir`.
pub fn parse_agent_config(
    text: &str,
    file_name: &str,
    agent: &str,
    base_dir: &Path,
) -> Result<AgentConfig, ConfigErrors> {
    read_agent_config_text(text, file_name, agent, base_dir).into_result()
}

/// Reads `agent` from configuration text as far as it can be read, with every problem
/// (see [`AgentReading`]).
pub fn read_agent_config_text(
    text: &str,
    file_name: &str,
    agent: &str,
    base_dir: &Path,
) -> AgentReading {
    let text = text.strip_prefix(BYTE_ORDER_MARK).unwrap_or(text);
    agent::read_agent(text, file_name, agent, base_dir)
}

impl AgentConfig {
    /// The configuration channeld runs with when no file is given
    /// ([`EMBEDDED_DEFAULT_CONFIG`]).
    pub fn embedded_default() -> AgentConfig {
        parse_agent_config(
            EMBEDDED_DEFAULT_CONFIG,
            EMBEDDED_DEFAULT_FILE_NAME,
            EMBEDDED_AGENT_NAME,
            Path::new(DEFAULT_DATA_BASE_DIR),
        )
        .expect("the embedded default configuration is valid")
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    #[test]
    fn embedded_default_is_one_default_file_channel_and_default_server_settings() {
        let config = AgentConfig::embedded_default();
        assert_eq!(config.warnings, vec![]);
        assert_eq!(config.server, ServerSettings::default());
        assert_eq!(config.server.bind.to_string(), "127.0.0.1:41450");
        assert_eq!(config.server.http.to_string(), "127.0.0.1:41451");
        assert_eq!(config.channels.len(), 1);
        let (name, channel) = &config.channels[0];
        assert_eq!(name, "default");
        assert_eq!(
            channel,
            &ChannelConfig::File(FileChannelConfig::with_default_dirs(
                "millrace-data",
                "default"
            ))
        );
        let ChannelConfig::File(file) = channel else {
            unreachable!()
        };
        assert_eq!(
            file.checkpoint_dir,
            PathBuf::from("millrace-data/default/checkpoint")
        );
        assert_eq!(
            file.data_dirs,
            vec![PathBuf::from("millrace-data/default/data")]
        );
    }

    #[test]
    fn a_byte_order_mark_is_skipped() {
        let text = format!("{BYTE_ORDER_MARK}a1.channels = c1\na1.channels.c1.type = memory\n");
        let config = parse_agent_config(&text, "bom.conf", "a1", Path::new("base")).unwrap();
        assert_eq!(config.channels.len(), 1);
    }

    /// The text of a `## heading` section of the configuration document.
    fn document_section<'a>(document: &'a str, heading: &str) -> &'a str {
        let start = document
            .find(&format!("\n## {heading}\n"))
            .unwrap_or_else(|| panic!("docs/configuration.md has no section {heading:?}"));
        let body = &document[start + 1..];
        let end = body[3..].find("\n## ").map_or(body.len(), |end| end + 3);
        &body[..end]
    }

    /// The keys in a section's tables: the first backticked word of the row's key column
    /// (the second column for the selector and sink group tables, whose first is a type).
    fn documented_keys(section: &str) -> Vec<String> {
        section
            .lines()
            .filter(|line| line.starts_with("| "))
            .filter_map(|line| {
                line.split('|')
                    .map(str::trim)
                    .find(|cell| cell.starts_with('`') && cell.ends_with('`') && cell.len() > 2)
                    .map(|cell| cell.trim_matches('`').to_string())
            })
            .collect()
    }

    #[test]
    fn the_configuration_document_lists_exactly_the_accepted_keys() {
        let document = include_str!("../../docs/configuration.md");
        let encryption = documented_keys(document_section(document, "Encryption keys"));
        let file = documented_keys(document_section(document, "File channel"));
        for (kind, heading) in [
            (ChannelKind::Memory, "Memory channel"),
            (ChannelKind::File, "File channel"),
            (ChannelKind::Spillable, "Spillable memory channel"),
            (ChannelKind::Kafka, "Kafka channel"),
        ] {
            let accepted = channel_key_names(kind);
            let own_section = documented_keys(document_section(document, heading));
            for key in &own_section {
                let is_encryption_row = key == "encryption.*";
                let is_pass_through_row =
                    kind == ChannelKind::Kafka && key.starts_with("kafka.") && key.ends_with(".*");
                assert!(
                    is_encryption_row || is_pass_through_row || accepted.contains(key),
                    "{heading} documents {key}, which is not accepted"
                );
            }
            let mut documented = own_section.clone();
            if kind != ChannelKind::Memory && kind != ChannelKind::Kafka {
                documented.extend(encryption.iter().cloned());
            }
            if kind == ChannelKind::Spillable {
                documented.extend(file.iter().cloned());
            }
            for key in accepted {
                assert!(
                    documented.contains(&key),
                    "{heading}: {key} is accepted but not documented"
                );
            }
        }
        let server_section = documented_keys(document_section(document, "Server settings"));
        let server_keys: Vec<String> = SERVER_SETTINGS
            .iter()
            .map(|spec| format!("server.{}", spec.key))
            .collect();
        assert_eq!(server_section, server_keys);
    }

    /// The `Default` column of the server settings table, by key.
    fn documented_server_defaults(document: &str) -> Vec<(String, String)> {
        document_section(document, "Server settings")
            .lines()
            .filter(|line| line.starts_with("| `server."))
            .map(|line| {
                let cells: Vec<&str> = line.split('|').map(str::trim).collect();
                let key = cells[1].trim_matches('`').trim_start_matches("server.");
                // "67108864 (64 MiB)" documents 67108864; "`auto`" documents auto.
                let default = cells[2]
                    .split(" (")
                    .next()
                    .unwrap_or_default()
                    .trim_matches('`');
                (key.to_string(), default.to_string())
            })
            .collect()
    }

    #[test]
    fn the_configuration_document_shows_the_real_server_defaults() {
        let document = include_str!("../../docs/configuration.md");
        let documented = documented_server_defaults(document);
        assert_eq!(documented.len(), SERVER_SETTINGS.len());
        // Each spec's default is checked against ServerSettings::default() in
        // server_settings.rs, so this ties the document to the running defaults.
        for ((key, default), spec) in documented.iter().zip(SERVER_SETTINGS) {
            assert_eq!(key, spec.key);
            assert_eq!(
                default.as_str(),
                spec.default.unwrap_or("unset"),
                "docs/configuration.md documents server.{key} = {default}"
            );
        }
    }

    #[test]
    fn the_documented_embedded_default_is_the_real_one() {
        let document = include_str!("../../docs/configuration.md");
        let section = document_section(document, "Embedded default");
        for line in EMBEDDED_DEFAULT_CONFIG
            .lines()
            .filter(|line| !line.starts_with('#'))
        {
            assert!(section.contains(line), "docs lack {line:?}");
        }
    }
}
