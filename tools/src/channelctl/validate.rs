//! `channelctl validate`: checks a configuration the way channeld reads it.
//!
//! Valid: a summary on stdout, warnings on stderr, exit 0. Invalid: every error on
//! stderr (file, line, key, what was expected), exit 78. Beyond the file's own rules it
//! checks what channeld would refuse at startup: channel types this build does not
//! implement, unusable server settings, and every source and sink key (as channel-agent
//! reads them).

use std::io::Write;
use std::path::Path;

use millrace_adapters::plan::plan_agent;
use millrace_server::cli::check_settings;
use millrace_server::config::{load_agent_config, AgentConfig, DEFAULT_DATA_BASE_DIR};
use millrace_server::registry::type_alias;

use super::{ChannelctlError, ValidateArgs};

/// The summary printed for a valid agent.
pub fn summary(file: &Path, config: &AgentConfig) -> String {
    let list = |names: Vec<String>| {
        if names.is_empty() {
            "none".to_string()
        } else {
            names.join(", ")
        }
    };
    let channels = list(
        config
            .channels
            .iter()
            .map(|(name, channel)| format!("{name} ({})", type_alias(channel)))
            .collect(),
    );
    let sources = list(
        config
            .sources
            .iter()
            .map(|source| source.name.clone())
            .collect(),
    );
    let sinks = list(config.sinks.iter().map(|sink| sink.name.clone()).collect());
    let sink_groups = list(
        config
            .sink_groups
            .iter()
            .map(|group| group.name.clone())
            .collect(),
    );
    let server = &config.server;
    format!(
        "{file}: agent {agent} is valid\n\
         \x20 channels:    {channels}\n\
         \x20 sources:     {sources}\n\
         \x20 sinks:       {sinks}\n\
         \x20 sink groups: {sink_groups}\n\
         \x20 protocol {bind}, http {http}, auth token {auth}, {warnings} warning(s)\n",
        file = file.display(),
        agent = config.agent_name,
        bind = server.bind,
        http = server.http,
        auth = if server.auth_token.is_some() {
            "set"
        } else {
            "unset"
        },
        warnings = config.warnings.len(),
    )
}

pub(super) fn run(args: &ValidateArgs) -> Result<(), ChannelctlError> {
    let mut stderr = std::io::stderr().lock();
    let config = match load_agent_config(
        &args.conf_file,
        &args.name,
        Path::new(DEFAULT_DATA_BASE_DIR),
    ) {
        Ok(config) => config,
        Err(errors) => {
            for error in &errors.errors {
                let _ = writeln!(stderr, "{error}");
            }
            for warning in &errors.warnings {
                let _ = writeln!(stderr, "warning: {warning}");
            }
            return Err(ChannelctlError::InvalidConfig {
                error_count: errors.errors.len(),
            });
        }
    };
    for warning in &config.warnings {
        let _ = writeln!(stderr, "warning: {warning}");
    }
    if let Err(errors) = plan_agent(&config, &args.conf_file.display().to_string()) {
        for error in &errors.errors {
            let _ = writeln!(stderr, "{error}");
        }
        return Err(ChannelctlError::InvalidConfig {
            error_count: errors.errors.len(),
        });
    }
    let mut startup_errors: Vec<String> = Vec::new();
    if let Err(problem) = check_settings(&config.server) {
        startup_errors.push(format!("server settings: {problem}"));
    }
    if !startup_errors.is_empty() {
        for problem in &startup_errors {
            let _ = writeln!(stderr, "{}: {problem}", args.conf_file.display());
        }
        return Err(ChannelctlError::InvalidConfig {
            error_count: startup_errors.len(),
        });
    }
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(summary(&args.conf_file, &config).as_bytes())
        .and_then(|()| stdout.flush())
        .map_err(ChannelctlError::stdout)
}
