//! channeld's command line.
//!
//! ```text
//! channeld                                   # the embedded default
//! channeld -f agent.conf -n a1               # Flume's flags (--conf-file, --name)
//! channeld -f agent.conf -n a1 --bind 0.0.0.0:41450 --http 127.0.0.1:9000
//! ```
//!
//! Flags override the file's `AGENT.server.*` settings (and the embedded default's).

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use millrace_engine::storage::IoBackendChoice;

use crate::config::{check_settings, AuthToken, HostPort, ServerSettings, SettingError};

/// channeld: the Millrace channel server.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "channeld",
    version,
    about = "Millrace channel server: Flume's channels behind a binary TCP protocol",
    long_about = "Millrace channel server: Flume's channels behind a binary TCP protocol.\n\n\
        Without -f, serves the embedded default: one file channel named `default` under \
        ./millrace-data/default/, the protocol on 127.0.0.1:41450 and metrics and health on \
        http://127.0.0.1:41451. Flags override the configuration's AGENT.server.* keys. \
        SIGTERM or SIGINT stops cleanly (open transactions get server.shutdownGraceMs to \
        finish); a second signal stops at once."
)]
pub struct ChanneldArgs {
    /// Flume agent configuration file (Java properties).
    #[arg(
        short = 'f',
        long = "conf-file",
        value_name = "FILE",
        requires = "name"
    )]
    pub conf_file: Option<PathBuf>,

    /// The agent of the file to run.
    #[arg(
        short = 'n',
        long = "name",
        value_name = "AGENT",
        requires = "conf_file"
    )]
    pub name: Option<String>,

    /// Protocol listener address (overrides server.bind); port 0 picks a free port.
    #[arg(long, value_name = "HOST:PORT")]
    pub bind: Option<HostPort>,

    /// Metrics and health listener address (overrides server.http).
    #[arg(long, value_name = "HOST:PORT")]
    pub http: Option<HostPort>,

    /// Shared secret clients must present (overrides server.authToken). Prefer the
    /// environment variable: a flag is visible to every user in the process list.
    #[arg(
        long,
        value_name = "TOKEN",
        env = "MILLRACE_AUTH_TOKEN",
        hide_env_values = true
    )]
    pub auth_token: Option<String>,

    /// Most simultaneous connections (overrides server.maxConnections).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub max_connections: Option<u64>,

    /// Largest request frame accepted, in bytes (overrides server.maxFrameBytes).
    #[arg(long, value_name = "BYTES")]
    pub max_frame_bytes: Option<u64>,

    /// Close a connection silent this long (overrides server.idleTimeoutMs).
    #[arg(long, value_name = "MS", value_parser = clap::value_parser!(u64).range(1..))]
    pub idle_timeout_ms: Option<u64>,

    /// A started frame must complete within this time (overrides server.frameDeadlineMs).
    #[arg(long, value_name = "MS", value_parser = clap::value_parser!(u64).range(1..))]
    pub frame_deadline_ms: Option<u64>,

    /// A new connection must send a complete Hello within this time (overrides
    /// server.handshakeDeadlineMs).
    #[arg(long, value_name = "MS", value_parser = clap::value_parser!(u64).range(1..))]
    pub handshake_deadline_ms: Option<u64>,

    /// Most simultaneous HTTP connections (overrides server.httpMaxConnections).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub http_max_connections: Option<u64>,

    /// An HTTP request head must be complete within this time (overrides
    /// server.httpHeaderTimeoutMs).
    #[arg(long, value_name = "MS", value_parser = clap::value_parser!(u64).range(1..))]
    pub http_header_timeout_ms: Option<u64>,

    /// On SIGTERM, how long open transactions may finish (overrides
    /// server.shutdownGraceMs).
    #[arg(long, value_name = "MS")]
    pub shutdown_grace_ms: Option<u64>,

    /// How log writers write and sync: auto, io_uring or pwrite (overrides
    /// server.ioBackend).
    #[arg(long, value_name = "BACKEND")]
    pub io_backend: Option<IoBackendChoice>,

    /// Once serving, write the bound addresses and the process id to FILE as JSON
    /// (`{"protocol":"127.0.0.1:41450","http":"127.0.0.1:41451","pid":123}`), for
    /// supervisors and scripts that bind port 0. Removed on a clean stop.
    #[arg(long, value_name = "FILE")]
    pub ready_file: Option<PathBuf>,
}

impl ChanneldArgs {
    /// Applies the flags over the configured settings and checks the result.
    pub fn apply_overrides(&self, settings: &mut ServerSettings) -> Result<(), SettingError> {
        if let Some(bind) = &self.bind {
            settings.bind = bind.clone();
        }
        if let Some(http) = &self.http {
            settings.http = http.clone();
        }
        if let Some(token) = &self.auth_token {
            if token.is_empty() {
                return Err(SettingError::EmptyAuthToken);
            }
            settings.auth_token = Some(AuthToken::new(token.clone()));
        }
        if let Some(max_connections) = self.max_connections {
            settings.max_connections = max_connections;
        }
        if let Some(max_frame_bytes) = self.max_frame_bytes {
            settings.max_frame_bytes = max_frame_bytes;
        }
        if let Some(idle_timeout_ms) = self.idle_timeout_ms {
            settings.idle_timeout = Duration::from_millis(idle_timeout_ms);
        }
        if let Some(frame_deadline_ms) = self.frame_deadline_ms {
            settings.frame_deadline = Duration::from_millis(frame_deadline_ms);
        }
        if let Some(handshake_deadline_ms) = self.handshake_deadline_ms {
            settings.handshake_deadline = Duration::from_millis(handshake_deadline_ms);
        }
        if let Some(http_max_connections) = self.http_max_connections {
            settings.http_max_connections = http_max_connections;
        }
        if let Some(http_header_timeout_ms) = self.http_header_timeout_ms {
            settings.http_header_timeout = Duration::from_millis(http_header_timeout_ms);
        }
        if let Some(shutdown_grace_ms) = self.shutdown_grace_ms {
            settings.shutdown_grace = Duration::from_millis(shutdown_grace_ms);
        }
        if let Some(io_backend) = self.io_backend {
            settings.io_backend = io_backend;
        }
        check_settings(settings)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> ChanneldArgs {
        ChanneldArgs::try_parse_from(std::iter::once("channeld").chain(args.iter().copied()))
            .unwrap()
    }

    #[test]
    fn no_arguments_means_the_embedded_default() {
        let args = parse(&[]);
        assert_eq!(args.conf_file, None);
        assert_eq!(args.name, None);
    }

    #[test]
    fn a_file_needs_an_agent_name_and_the_other_way_round() {
        assert!(ChanneldArgs::try_parse_from(["channeld", "-f", "a.conf"]).is_err());
        assert!(ChanneldArgs::try_parse_from(["channeld", "-n", "a1"]).is_err());
        let args = parse(&["--conf-file", "a.conf", "--name", "a1"]);
        assert_eq!(args.conf_file, Some(PathBuf::from("a.conf")));
        assert_eq!(args.name.as_deref(), Some("a1"));
    }

    #[test]
    fn flags_override_the_configured_settings() {
        let args = parse(&[
            "--bind",
            "127.0.0.1:0",
            "--http",
            "127.0.0.1:0",
            "--auth-token",
            "s3cret",
            "--frame-deadline-ms",
            "1000",
            "--max-connections",
            "2",
        ]);
        let mut settings = ServerSettings::default();
        args.apply_overrides(&mut settings).unwrap();
        assert_eq!(settings.bind.to_string(), "127.0.0.1:0");
        assert_eq!(settings.frame_deadline, Duration::from_millis(1000));
        assert_eq!(settings.max_connections, 2);
        assert_eq!(
            settings.auth_token.as_ref().map(AuthToken::expose_secret),
            Some("s3cret")
        );
    }

    #[test]
    fn listeners_on_one_fixed_address_are_refused() {
        let args = parse(&["--bind", "127.0.0.1:5000", "--http", "127.0.0.1:5000"]);
        let mut settings = ServerSettings::default();
        assert!(matches!(
            args.apply_overrides(&mut settings),
            Err(SettingError::ListenersShareAnAddress { .. })
        ));
    }
}
