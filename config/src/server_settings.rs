//! channeld's own settings: Millrace additions under `AGENT.server.*`.
//!
//! Flume has no equivalent (a Flume agent is not a network server for its channels), so
//! these keys are Millrace extensions. [`SERVER_SETTINGS`] is the single list of them:
//! the parser dispatches through it, `docs/configuration.md` documents exactly its keys
//! (a test keeps the two in step), and each entry's `default` is checked against
//! [`ServerSettings::default`] so the documented defaults cannot drift.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use millrace_engine::storage::IoBackendChoice;
use millrace_protocol::MIN_MAX_FRAME_BYTES;

use crate::values::{self, Expected};

/// Host both listeners use by default: loopback only, so a fresh server is not exposed.
pub const DEFAULT_LISTEN_HOST: &str = "127.0.0.1";
/// Default port of the binary protocol (`server.bind`).
pub const DEFAULT_PROTOCOL_PORT: u16 = 41450;
/// Default port of the metrics and health HTTP listener (`server.http`).
pub const DEFAULT_HTTP_PORT: u16 = 41451;
/// Default `server.maxConnections` (the protocol crate's number, so `docs/protocol.md`
/// and the server agree).
pub const DEFAULT_MAX_CONNECTIONS: u64 = millrace_protocol::DEFAULT_MAX_CONNECTIONS as u64;
/// Default `server.maxFrameBytes`: 64 MiB, enough for a large put batch, small enough
/// that a hostile length prefix cannot make the server allocate without bound.
pub const DEFAULT_MAX_FRAME_BYTES: u64 = 64 * 1024 * 1024;
/// Default `server.idleTimeoutMs`: five minutes.
pub const DEFAULT_IDLE_TIMEOUT: Duration =
    Duration::from_millis(millrace_protocol::DEFAULT_IDLE_TIMEOUT_MS);
/// Default `server.frameDeadlineMs`: a started frame must be complete within 30 s.
pub const DEFAULT_FRAME_DEADLINE: Duration =
    Duration::from_millis(millrace_protocol::DEFAULT_FRAME_COMPLETION_DEADLINE_MS);
/// Default `server.handshakeDeadlineMs`: a connection must have said a complete `Hello`
/// within 5 s of being accepted.
pub const DEFAULT_HANDSHAKE_DEADLINE: Duration =
    Duration::from_millis(millrace_protocol::DEFAULT_HANDSHAKE_DEADLINE_MS);
/// Default `server.httpMaxConnections`: HTTP serves a scraper, a health check and an
/// operator's curl; 64 at once is plenty, and few enough that a flood of idle HTTP
/// connections costs little.
pub const DEFAULT_HTTP_MAX_CONNECTIONS: u64 = 64;
/// Default `server.httpHeaderTimeoutMs`: an HTTP connection must have sent a complete
/// request head within 5 s (of being accepted, or of its previous answer).
pub const DEFAULT_HTTP_HEADER_TIMEOUT: Duration = Duration::from_millis(5_000);
/// Default `server.shutdownGraceMs`: how long SIGTERM waits for open transactions.
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_millis(10_000);
/// Default `server.dataBaseDir`, relative to the working directory. A file channel
/// without `checkpointDir`/`dataDirs` keeps them under `<this>/<channel>/`.
pub const DEFAULT_DATA_BASE_DIR: &str = "millrace-data";

/// Longest DNS name (RFC 1035), in characters.
const MAX_HOSTNAME_LENGTH: usize = 253;
/// Longest DNS label (RFC 1035), in characters.
const MAX_HOSTNAME_LABEL_LENGTH: usize = 63;

const HOST_PORT_EXPECTED: &str =
    "a host:port address such as 127.0.0.1:41450 (IPv6 in brackets, as [::1]:41450)";

/// A listen address as written: a host name or IP address, and a port. Host names are
/// kept unresolved; the listener resolves them when it binds. Port 0 asks the operating
/// system for a free port (useful in tests).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HostPort {
    /// Host name, IPv4 address, or IPv6 address (without brackets).
    pub host: String,
    /// TCP port.
    pub port: u16,
}

impl HostPort {
    /// The default listen address on the given port.
    pub fn loopback(port: u16) -> Self {
        HostPort {
            host: DEFAULT_LISTEN_HOST.to_string(),
            port,
        }
    }
}

impl fmt::Display for HostPort {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(formatter, "[{}]:{}", self.host, self.port)
        } else {
            write!(formatter, "{}:{}", self.host, self.port)
        }
    }
}

/// Why a `host:port` text was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("expected {HOST_PORT_EXPECTED}")]
pub struct HostPortError;

impl FromStr for HostPort {
    type Err = HostPortError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let (host, port) = if let Some(bracketed) = text.strip_prefix('[') {
            let (host, after_host) = bracketed.split_once(']').ok_or(HostPortError)?;
            host.parse::<Ipv6Addr>().map_err(|_| HostPortError)?;
            let port = after_host.strip_prefix(':').ok_or(HostPortError)?;
            (host, port)
        } else {
            let (host, port) = text.rsplit_once(':').ok_or(HostPortError)?;
            if !is_host_name_or_ipv4(host) {
                return Err(HostPortError);
            }
            (host, port)
        };
        if port.is_empty() || !port.bytes().all(|byte| byte.is_ascii_digit()) {
            return Err(HostPortError);
        }
        let port = port.parse::<u16>().map_err(|_| HostPortError)?;
        Ok(HostPort {
            host: host.to_string(),
            port,
        })
    }
}

/// A DNS name (letters, digits, hyphens; labels not starting or ending with a hyphen)
/// or a dotted IPv4 address. An all-numeric name must be a valid IPv4 address, so
/// `999.0.0.1` is refused rather than looked up.
fn is_host_name_or_ipv4(host: &str) -> bool {
    if host.is_empty() || host.len() > MAX_HOSTNAME_LENGTH {
        return false;
    }
    let labels_are_valid = host.split('.').all(|label| {
        !label.is_empty()
            && label.len() <= MAX_HOSTNAME_LABEL_LENGTH
            && label
                .bytes()
                .all(|byte| byte.is_ascii_alphanumeric() || byte == b'-')
            && !label.starts_with('-')
            && !label.ends_with('-')
    });
    let looks_numeric = host
        .bytes()
        .all(|byte| byte.is_ascii_digit() || byte == b'.');
    labels_are_valid && (!looks_numeric || host.parse::<Ipv4Addr>().is_ok())
}

/// The shared secret clients present. Its `Debug` output is redacted so it never lands
/// in logs by accident.
#[derive(Clone, PartialEq, Eq)]
pub struct AuthToken(String);

impl AuthToken {
    /// Wraps a token.
    pub fn new(token: impl Into<String>) -> Self {
        AuthToken(token.into())
    }

    /// The token itself, for comparing with what a client sends.
    pub fn expose_secret(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for AuthToken {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("AuthToken(<redacted>)")
    }
}

/// channeld's listener, limit and storage-location settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerSettings {
    /// `server.bind`: where the binary protocol listens.
    pub bind: HostPort,
    /// `server.http`: where `/metrics` and `/health` are served.
    pub http: HostPort,
    /// `server.authToken`: when set, clients must present it in the handshake.
    pub auth_token: Option<AuthToken>,
    /// `server.maxConnections`: further connections are refused with an error.
    pub max_connections: u64,
    /// `server.maxFrameBytes`: a frame announcing more is refused before allocating.
    pub max_frame_bytes: u64,
    /// `server.idleTimeoutMs`: a connection silent this long is closed (an open
    /// transaction is rolled back).
    pub idle_timeout: Duration,
    /// `server.frameDeadlineMs`: a frame whose first byte has arrived must be complete
    /// within this time.
    pub frame_deadline: Duration,
    /// `server.handshakeDeadlineMs`: a connection must have sent a complete `Hello`
    /// within this time of being accepted.
    pub handshake_deadline: Duration,
    /// `server.httpMaxConnections`: most simultaneous HTTP connections.
    pub http_max_connections: u64,
    /// `server.httpHeaderTimeoutMs`: an HTTP request head must be complete within this
    /// time.
    pub http_header_timeout: Duration,
    /// `server.shutdownGraceMs`: on SIGTERM, how long open transactions may finish.
    pub shutdown_grace: Duration,
    /// `server.dataBaseDir`: where file channels without configured directories live.
    pub data_base_dir: PathBuf,
    /// `server.ioBackend`: how file channels' log writers write and sync.
    pub io_backend: IoBackendChoice,
}

impl Default for ServerSettings {
    fn default() -> Self {
        ServerSettings {
            bind: HostPort::loopback(DEFAULT_PROTOCOL_PORT),
            http: HostPort::loopback(DEFAULT_HTTP_PORT),
            auth_token: None,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_frame_bytes: DEFAULT_MAX_FRAME_BYTES,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            frame_deadline: DEFAULT_FRAME_DEADLINE,
            handshake_deadline: DEFAULT_HANDSHAKE_DEADLINE,
            http_max_connections: DEFAULT_HTTP_MAX_CONNECTIONS,
            http_header_timeout: DEFAULT_HTTP_HEADER_TIMEOUT,
            shutdown_grace: DEFAULT_SHUTDOWN_GRACE,
            data_base_dir: PathBuf::from(DEFAULT_DATA_BASE_DIR),
            io_backend: IoBackendChoice::Auto,
        }
    }
}

/// One `AGENT.server.*` key: its name, its default as it would be written in the file,
/// what it means, and how it is read.
pub struct ServerSettingSpec {
    /// The key after `AGENT.server.`.
    pub key: &'static str,
    /// The default as file text; `None` when unset by default.
    pub default: Option<&'static str>,
    /// One line for the documentation.
    pub description: &'static str,
    apply: fn(&mut ServerSettings, &str) -> Result<(), Expected>,
}

impl ServerSettingSpec {
    /// Reads `value` into `settings`.
    pub(crate) fn apply(&self, settings: &mut ServerSettings, value: &str) -> Result<(), Expected> {
        (self.apply)(settings, value)
    }
}

fn host_port(value: &str) -> Result<HostPort, Expected> {
    value.parse().map_err(|_| Expected::new(HOST_PORT_EXPECTED))
}

/// Every `AGENT.server.*` key Millrace accepts. The one place they are listed.
pub static SERVER_SETTINGS: &[ServerSettingSpec] = &[
    ServerSettingSpec {
        key: "bind",
        default: Some("127.0.0.1:41450"),
        description: "host:port of the binary protocol listener",
        apply: |settings, value| {
            settings.bind = host_port(value)?;
            Ok(())
        },
    },
    ServerSettingSpec {
        key: "http",
        default: Some("127.0.0.1:41451"),
        description: "host:port of the HTTP listener for /metrics and /health",
        apply: |settings, value| {
            settings.http = host_port(value)?;
            Ok(())
        },
    },
    ServerSettingSpec {
        key: "authToken",
        default: None,
        description: "shared secret clients must present; unset means no authentication",
        apply: |settings, value| {
            if value.is_empty() {
                return Err(Expected::new("a non-empty token"));
            }
            settings.auth_token = Some(AuthToken::new(value));
            Ok(())
        },
    },
    ServerSettingSpec {
        key: "maxConnections",
        default: Some("1024"),
        description: "most simultaneous client connections",
        apply: |settings, value| {
            settings.max_connections = values::positive_integer(value)?;
            Ok(())
        },
    },
    ServerSettingSpec {
        key: "maxFrameBytes",
        default: Some("67108864"),
        description: "largest protocol frame accepted, in bytes",
        apply: |settings, value| {
            settings.max_frame_bytes = values::positive_integer(value)?;
            Ok(())
        },
    },
    ServerSettingSpec {
        key: "idleTimeoutMs",
        default: Some("300000"),
        description: "milliseconds of silence after which a connection is closed",
        apply: |settings, value| {
            settings.idle_timeout = values::positive_milliseconds(value)?;
            Ok(())
        },
    },
    ServerSettingSpec {
        key: "frameDeadlineMs",
        default: Some("30000"),
        description: "milliseconds within which a started frame must be complete",
        apply: |settings, value| {
            settings.frame_deadline = values::positive_milliseconds(value)?;
            Ok(())
        },
    },
    ServerSettingSpec {
        key: "handshakeDeadlineMs",
        default: Some("5000"),
        description: "milliseconds within which a new connection must send a complete Hello",
        apply: |settings, value| {
            settings.handshake_deadline = values::positive_milliseconds(value)?;
            Ok(())
        },
    },
    ServerSettingSpec {
        key: "httpMaxConnections",
        default: Some("64"),
        description: "most simultaneous HTTP connections (/metrics, /health)",
        apply: |settings, value| {
            settings.http_max_connections = values::positive_integer(value)?;
            Ok(())
        },
    },
    ServerSettingSpec {
        key: "httpHeaderTimeoutMs",
        default: Some("5000"),
        description: "milliseconds within which an HTTP request head must be complete",
        apply: |settings, value| {
            settings.http_header_timeout = values::positive_milliseconds(value)?;
            Ok(())
        },
    },
    ServerSettingSpec {
        key: "shutdownGraceMs",
        default: Some("10000"),
        description: "milliseconds SIGTERM waits for open transactions; 0 waits for none",
        apply: |settings, value| {
            settings.shutdown_grace = values::non_negative_milliseconds(value)?;
            Ok(())
        },
    },
    ServerSettingSpec {
        key: "dataBaseDir",
        default: Some("millrace-data"),
        description: "base directory of file channels configured without directories",
        apply: |settings, value| {
            settings.data_base_dir = values::directory(value)?;
            Ok(())
        },
    },
    ServerSettingSpec {
        key: "ioBackend",
        default: Some("auto"),
        description: "how log writers write and sync: pwrite + fdatasync (auto, measured best), \
                      io_uring (refuse to start without it) or pwrite",
        apply: |settings, value| {
            settings.io_backend = value
                .parse()
                .map_err(|_| Expected::new(IoBackendChoice::EXPECTED))?;
            Ok(())
        },
    },
];

/// A server setting that cannot be used, from a flag or the file: the rules the
/// listeners need beyond each key's own ([`check_settings`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SettingError {
    /// `maxFrameBytes` outside what the protocol can announce.
    #[error(
        "maxFrameBytes {max_frame_bytes} is outside {min_bytes}..={max_bytes}: the protocol \
         announces it as a u32 and every peer must accept at least {min_bytes} bytes"
    )]
    MaxFrameBytesOutOfRange {
        /// The value asked for.
        max_frame_bytes: u64,
        /// The protocol minimum.
        min_bytes: u32,
        /// The largest value the handshake can carry.
        max_bytes: u32,
    },
    /// `maxConnections` larger than the protocol's error field can report.
    #[error("maxConnections {max_connections} is larger than {max_allowed}")]
    TooManyConnectionsAllowed {
        /// The value asked for.
        max_connections: u64,
        /// The largest accepted.
        max_allowed: u32,
    },
    /// The two listeners on one fixed address.
    #[error("bind and http must differ, both are {address}")]
    ListenersShareAnAddress {
        /// The shared address.
        address: HostPort,
    },
    /// An empty auth token would let anyone in while looking configured.
    #[error("the auth token must not be empty")]
    EmptyAuthToken,
    /// The configured I/O backend cannot be used on this machine.
    #[error("ioBackend {choice:?} cannot be used: {reason}")]
    IoBackendUnavailable {
        /// The backend asked for.
        choice: IoBackendChoice,
        /// Why not, from the operating system.
        reason: String,
    },
}

/// The rules the listeners need that the file's parser does not check: `channelctl
/// validate` applies them to the file's settings, channeld to those and its flags.
pub fn check_settings(settings: &ServerSettings) -> Result<(), SettingError> {
    max_frame_bytes(settings)?;
    max_connections(settings)?;
    if settings.bind == settings.http && settings.bind.port != 0 {
        return Err(SettingError::ListenersShareAnAddress {
            address: settings.bind.clone(),
        });
    }
    Ok(())
}

/// `maxFrameBytes` as the `u32` the handshake announces.
pub fn max_frame_bytes(settings: &ServerSettings) -> Result<u32, SettingError> {
    u32::try_from(settings.max_frame_bytes)
        .ok()
        .filter(|bytes| *bytes >= MIN_MAX_FRAME_BYTES)
        .ok_or(SettingError::MaxFrameBytesOutOfRange {
            max_frame_bytes: settings.max_frame_bytes,
            min_bytes: MIN_MAX_FRAME_BYTES,
            max_bytes: u32::MAX,
        })
}

/// `maxConnections` as the `u32` the `TOO_MANY_CONNECTIONS` error reports.
pub fn max_connections(settings: &ServerSettings) -> Result<u32, SettingError> {
    u32::try_from(settings.max_connections).map_err(|_| SettingError::TooManyConnectionsAllowed {
        max_connections: settings.max_connections,
        max_allowed: u32::MAX,
    })
}

/// The spec of a server key, if Millrace knows it.
pub(crate) fn server_setting(key: &str) -> Option<&'static ServerSettingSpec> {
    SERVER_SETTINGS.iter().find(|spec| spec.key == key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documented_defaults_are_the_real_defaults() {
        for spec in SERVER_SETTINGS {
            let Some(default_text) = spec.default else {
                continue;
            };
            let mut settings = ServerSettings::default();
            spec.apply(&mut settings, default_text).unwrap();
            assert_eq!(
                settings,
                ServerSettings::default(),
                "server.{} documents default {default_text:?}",
                spec.key
            );
        }
    }

    #[test]
    fn host_port_accepts_names_ipv4_and_bracketed_ipv6() {
        let table = [
            ("127.0.0.1:41450", "127.0.0.1", 41450),
            ("0.0.0.0:0", "0.0.0.0", 0),
            ("localhost:8080", "localhost", 8080),
            ("channel-01.example.com:1", "channel-01.example.com", 1),
            ("[::1]:41450", "::1", 41450),
            ("[fe80::1]:65535", "fe80::1", 65535),
        ];
        for (text, host, port) in table {
            let parsed: HostPort = text.parse().unwrap_or_else(|_| panic!("{text}"));
            assert_eq!((parsed.host.as_str(), parsed.port), (host, port));
            assert_eq!(parsed.to_string(), text, "round trip");
        }
    }

    #[test]
    fn host_port_refuses_malformed_addresses() {
        for text in [
            "",
            "41450",
            ":41450",
            "localhost",
            "localhost:",
            "localhost:http",
            "localhost:65536",
            "localhost:-1",
            "::1:41450",
            "[::1]41450",
            "[::1]",
            "[nonsense]:1",
            "999.0.0.1:1",
            "bad_host:1",
            "-bad.example:1",
            "a..b:1",
            "host name:1",
            "localhost:+80",
        ] {
            assert!(
                text.parse::<HostPort>().is_err(),
                "{text:?} should be refused"
            );
        }
    }

    #[test]
    fn a_frame_limit_below_the_protocol_minimum_is_refused() {
        let settings = ServerSettings {
            max_frame_bytes: 1024,
            ..ServerSettings::default()
        };
        assert!(max_frame_bytes(&settings).is_err());
    }

    #[test]
    fn auth_token_debug_output_is_redacted() {
        let token = AuthToken::new("s3cret");
        assert_eq!(format!("{token:?}"), "AuthToken(<redacted>)");
        assert_eq!(token.expose_secret(), "s3cret");
    }
}
