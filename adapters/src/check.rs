//! Everything that can be known about an agent file before anything runs: the checks
//! `channelctl validate`, a starting channeld (through `channel-agent --check`) and
//! channel-agent itself apply.
//!
//! # Constraints
//!
//! - **One run reports every problem of a file.** The file is read with
//!   [`read_agent_config`], which goes on past errors and hands back the agent as far as
//!   it could be read; the sources and sinks in it are planned (every adapter key read),
//!   and the rules that span components are checked on top. A typo in a channel key does
//!   not hide an unknown source key, a missing port or an unsupported sink.
//! - **Each problem at the line that causes it**, naming every key involved with its
//!   line, so that it can be fixed without opening the code.
//! - **Ports are compared, not probed.** A source must not listen where channeld's own
//!   listeners (`server.bind`, `server.http`, or the flags that move them) or another
//!   source of the agent listen. A port taken by another program is not looked for:
//!   validating the configuration of a running agent would find its own sources there.
//!   At run time a source that cannot bind keeps failing and `/health` says so
//!   (`docs/operations.md`).
//! - **The filesystem only when asked** ([`CheckOptions::files`]): `channelctl validate`
//!   loads every key file and looks at spool directories; a starting channeld leaves key
//!   files to each channel (a channel whose key is missing stays unhealthy while the
//!   others serve) and spool directories to their sources.

use std::net::IpAddr;
use std::path::Path;

use millrace_config::{
    check_key_files, read_agent_config, sort_by_line, AgentConfig, AgentReading, ConfigError,
    ConfigErrorKind, ConfigErrors, ConfigWarning, HostPort, DEFAULT_DATA_BASE_DIR,
};

use crate::plan::{plan_agent, ComponentPlan};
use crate::sources::SourceKind;

/// channeld's listeners when command-line flags moved them from the file's
/// `server.bind` and `server.http`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListenerOverrides {
    /// channeld's `--bind`.
    pub bind: Option<HostPort>,
    /// channeld's `--http`.
    pub http: Option<HostPort>,
}

/// Which checks run besides the file's own rules and every adapter key.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CheckOptions {
    /// Compare the ports sources listen on with channeld's listeners (as the file sets
    /// them, or as these overrides move them) and with each other. `None` skips it, as
    /// channel-agent does when it runs components channeld has already checked.
    pub listeners: Option<ListenerOverrides>,
    /// Look at the files the configuration names (key files, spool directories).
    pub files: bool,
}

impl CheckOptions {
    /// What `channelctl validate` checks: everything, with the file's listeners.
    pub fn everything() -> CheckOptions {
        CheckOptions {
            listeners: Some(ListenerOverrides::default()),
            files: true,
        }
    }
}

/// A file that passed every check.
#[derive(Debug, Clone)]
pub struct CheckedAgent {
    /// The agent's configuration.
    pub config: AgentConfig,
    /// Its sources and sinks, ready to run.
    pub components: Vec<ComponentPlan>,
    /// Every warning: the file's own and the adapters', in line order.
    pub warnings: Vec<ConfigWarning>,
}

/// Reads `agent` from the file at `path` and checks it; see the module doc.
pub fn check_agent(
    path: &Path,
    agent: &str,
    options: &CheckOptions,
) -> Result<CheckedAgent, ConfigErrors> {
    let reading = read_agent_config(path, agent, Path::new(DEFAULT_DATA_BASE_DIR));
    check_reading(reading, &path.display().to_string(), options)
}

/// Checks an agent already read; `file` names the file in messages.
pub fn check_reading(
    reading: AgentReading,
    file: &str,
    options: &CheckOptions,
) -> Result<CheckedAgent, ConfigErrors> {
    let AgentReading { config, mut errors } = reading;
    let plan = plan_agent(&config, file);
    errors.extend(plan.errors);
    let mut warnings = config.warnings.clone();
    warnings.extend(plan.warnings);
    if let Some(overrides) = &options.listeners {
        let collisions = listener_collisions(&config, &plan.components, overrides, &errors, file);
        errors.extend(collisions);
    }
    if options.files {
        errors.extend(check_key_files(&config, file));
        let (spool_errors, spool_warnings) =
            check_spool_directories(&config, &plan.components, file);
        errors.extend(spool_errors);
        warnings.extend(spool_warnings);
    }
    sort_by_line(&mut errors, &mut warnings);
    if errors.is_empty() {
        Ok(CheckedAgent {
            config,
            components: plan.components,
            warnings,
        })
    } else {
        Err(ConfigErrors { errors, warnings })
    }
}

/// The transport a listener uses: a TCP and a UDP socket may share a port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Transport {
    Tcp,
    Udp,
}

impl Transport {
    fn name(self) -> &'static str {
        match self {
            Transport::Tcp => "TCP",
            Transport::Udp => "UDP",
        }
    }
}

/// One socket the agent will listen on.
#[derive(Debug, Clone)]
struct Listener {
    /// Who listens and where that is set, for messages ("a1.sources.r1.port on line 9").
    origin: String,
    transport: Transport,
    host: String,
    port: u16,
}

impl Listener {
    fn overlaps(&self, other: &Listener) -> bool {
        self.transport == other.transport
            && self.port == other.port
            && hosts_overlap(&self.host, &other.host)
    }
}

/// Whether sockets bound to `left` and `right` on one port would collide. Wildcards
/// (`0.0.0.0`, `::`, empty) take every address of their family, and Linux's `::` takes
/// IPv4 too; `localhost` is the IPv4 loopback, as Rust resolves it first. Other host
/// names are compared as written: no name is resolved, so two names for one address
/// are not caught here.
fn hosts_overlap(left: &str, right: &str) -> bool {
    let address = |host: &str| -> Option<IpAddr> {
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() {
            return Some(IpAddr::from([0, 0, 0, 0]));
        }
        if host.eq_ignore_ascii_case("localhost") {
            return Some(IpAddr::from([127, 0, 0, 1]));
        }
        host.parse().ok()
    };
    match (address(left), address(right)) {
        (Some(left), Some(right)) => addresses_overlap(left, right),
        (Some(address), None) | (None, Some(address)) => address.is_unspecified(),
        (None, None) => left.eq_ignore_ascii_case(right),
    }
}

fn addresses_overlap(left: IpAddr, right: IpAddr) -> bool {
    let takes = |wildcard: IpAddr, other: IpAddr| {
        wildcard.is_unspecified() && (wildcard.is_ipv6() || other.is_ipv4())
    };
    left == right || takes(left, right) || takes(right, left)
}

/// Where a source listens, for the sources that listen (port 0 takes any free port and
/// collides with nothing).
fn source_listener(kind: &SourceKind) -> Option<(Transport, &str, u16)> {
    let (transport, host, port) = match kind {
        SourceKind::Netcat(settings) => {
            // An empty bind is the loopback address, as Java resolves "".
            let host = if settings.bind.is_empty() {
                "127.0.0.1"
            } else {
                settings.bind.as_str()
            };
            (Transport::Tcp, host, settings.port)
        }
        SourceKind::SyslogTcp(settings) => (Transport::Tcp, settings.host.as_str(), settings.port),
        SourceKind::SyslogUdp(settings) => (Transport::Udp, settings.host.as_str(), settings.port),
        SourceKind::Http(settings) => (Transport::Tcp, settings.bind.as_str(), settings.port),
        SourceKind::Avro(settings) => (Transport::Tcp, settings.bind.as_str(), settings.port),
        SourceKind::NetcatUdp(settings) => (Transport::Udp, settings.bind.as_str(), settings.port),
        // Several ports: channeld reports a port taken twice when it binds.
        SourceKind::MultiportSyslogTcp(_) => return None,
        SourceKind::SpoolDir(_)
        | SourceKind::Exec(_)
        | SourceKind::Taildir(_)
        | SourceKind::Seq(_)
        | SourceKind::Kafka(_) => return None,
    };
    (port != 0).then_some((transport, host, port))
}

/// channeld's own listeners, described by where they are set. One whose key has an
/// error of its own is left out: its address is not what the user meant.
fn server_listeners(
    config: &AgentConfig,
    overrides: &ListenerOverrides,
    errors: &[ConfigError],
) -> Vec<Listener> {
    let listener = |setting: &str,
                    purpose: &str,
                    flag: &str,
                    overridden: &Option<HostPort>,
                    configured: &HostPort| {
        let key = format!("{}.server.{setting}", config.agent_name);
        let line = config.line_of(&key);
        if line.is_some_and(|line| errors.iter().any(|error| error.line == Some(line))) {
            return None;
        }
        let (address, origin) = match (overridden, line) {
            (Some(address), _) => (
                address,
                format!("channeld's {purpose} listener ({flag} {address})"),
            ),
            (None, Some(line)) => (
                configured,
                format!("channeld's {purpose} listener ({key} on line {line}, {configured})"),
            ),
            (None, None) => (
                configured,
                format!("channeld's {purpose} listener ({key}, not set: the default {configured})"),
            ),
        };
        Some(Listener {
            origin,
            transport: Transport::Tcp,
            host: address.host.clone(),
            port: address.port,
        })
    };
    [
        listener(
            "bind",
            "protocol",
            "--bind",
            &overrides.bind,
            &config.server.bind,
        ),
        listener(
            "http",
            "HTTP",
            "--http",
            &overrides.http,
            &config.server.http,
        ),
    ]
    .into_iter()
    .flatten()
    .filter(|listener| listener.port != 0)
    .collect()
}

/// Every source whose port another listener of the agent already takes, reported at
/// the source's `port` line naming the other listener and where it is set.
fn listener_collisions(
    config: &AgentConfig,
    components: &[ComponentPlan],
    overrides: &ListenerOverrides,
    errors_so_far: &[ConfigError],
    file: &str,
) -> Vec<ConfigError> {
    let mut taken = server_listeners(config, overrides, errors_so_far);
    let mut collisions = Vec::new();
    for component in components {
        let ComponentPlan::Source(source) = component else {
            continue;
        };
        let Some((transport, host, port)) = source_listener(&source.kind) else {
            continue;
        };
        let key = format!("{}.sources.{}.port", config.agent_name, source.name);
        let line = config.line_of(&key);
        let origin = match line {
            Some(line) => format!("{key} on line {line} ({host}:{port})"),
            None => format!("{key} ({host}:{port})"),
        };
        let listener = Listener {
            origin,
            transport,
            host: host.to_string(),
            port,
        };
        if let Some(other) = taken.iter().find(|other| other.overlaps(&listener)) {
            collisions.push(ConfigError {
                file: file.to_string(),
                line,
                kind: ConfigErrorKind::Conflict {
                    key,
                    problem: format!(
                        "expected a {transport} port no other listener of agent {agent} uses, \
                         got {port} (on {host}), where {other} already listens",
                        transport = transport.name(),
                        agent = config.agent_name,
                        other = other.origin,
                    ),
                },
            });
        } else {
            taken.push(listener);
        }
    }
    collisions
}

/// The spool directory of every spooldir source: an error when it is not a readable
/// directory, a warning when it does not exist yet (the source fails, and is restarted,
/// until it does — as Flume's does).
fn check_spool_directories(
    config: &AgentConfig,
    components: &[ComponentPlan],
    file: &str,
) -> (Vec<ConfigError>, Vec<ConfigWarning>) {
    let mut errors = Vec::new();
    let mut warnings = Vec::new();
    for component in components {
        let ComponentPlan::Source(source) = component else {
            continue;
        };
        let SourceKind::SpoolDir(settings) = &source.kind else {
            continue;
        };
        let key = format!("{}.sources.{}.spoolDir", config.agent_name, source.name);
        let line = config.line_of(&key);
        let directory = settings.spool_dir.display();
        let problem = match std::fs::read_dir(&settings.spool_dir) {
            Ok(_) => continue,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                warnings.push(ConfigWarning {
                    file: file.to_string(),
                    line: line.unwrap_or(source_declared_line(config, &source.name)),
                    key,
                    message: format!(
                        "{directory} does not exist yet: the source fails, and is restarted, \
                         until it does"
                    ),
                });
                continue;
            }
            Err(error) if settings.spool_dir.is_file() => {
                format!(
                    "expected a directory to read files from, got the file {directory} ({error})"
                )
            }
            Err(error) => format!("cannot read the directory {directory}: {error}"),
        };
        errors.push(ConfigError {
            file: file.to_string(),
            line,
            kind: ConfigErrorKind::UnusableFile { key, problem },
        });
    }
    (errors, warnings)
}

fn source_declared_line(config: &AgentConfig, source: &str) -> usize {
    config
        .sources
        .iter()
        .find(|candidate| candidate.name == source)
        .map_or(0, |source| source.declared_line)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_and_loopback_overlap_as_linux_binds_them() {
        let overlapping = [
            ("127.0.0.1", "127.0.0.1"),
            ("0.0.0.0", "127.0.0.1"),
            ("127.0.0.1", "0.0.0.0"),
            ("::", "127.0.0.1"),
            ("::", "0.0.0.0"),
            ("[::1]", "::1"),
            ("localhost", "127.0.0.1"),
            ("", "127.0.0.1"),
            ("0.0.0.0", "collector.example"),
            ("Collector.example", "collector.example"),
        ];
        for (left, right) in overlapping {
            assert!(hosts_overlap(left, right), "{left} and {right}");
        }
        let apart = [
            ("127.0.0.1", "127.0.0.2"),
            ("0.0.0.0", "::1"),
            ("::1", "127.0.0.1"),
            ("collector.example", "127.0.0.1"),
            ("a.example", "b.example"),
        ];
        for (left, right) in apart {
            assert!(!hosts_overlap(left, right), "{left} and {right}");
        }
    }
}
