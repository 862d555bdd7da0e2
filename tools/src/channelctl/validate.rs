//! `channelctl validate`: checks a configuration the way channeld reads it.
//!
//! Valid: a summary on stdout, warnings on stderr, exit 0. Invalid: every error on
//! stderr (file, line, key, what was expected), exit 78, with the warnings. Beyond the
//! file's own rules it checks what channeld would refuse at startup (unusable server
//! settings, every source and sink key as channel-agent reads them, sources whose port
//! channeld or another source takes, batches larger than their channels' transactions)
//! and what a channel or source would fail on once started: key files that cannot be
//! loaded, spool directories that cannot be read. All of it in one run: see
//! `millrace_adapters::check`.

use std::io::Write;
use std::path::Path;

use millrace_adapters::check::{check_agent, CheckOptions};
use millrace_config::{check_settings, AgentConfig, ChannelKind};

use super::{ChannelctlError, ValidateArgs};

/// The summary printed for a valid agent with `warning_count` warnings (the file's and
/// its adapters').
pub fn summary(file: &Path, config: &AgentConfig, warning_count: usize) -> String {
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
            .map(|(name, channel)| format!("{name} ({})", ChannelKind::of(channel).alias()))
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
        warnings = warning_count,
    )
}

pub(super) fn run(args: &ValidateArgs) -> Result<(), ChannelctlError> {
    let mut stderr = std::io::stderr().lock();
    let checked = match check_agent(&args.conf_file, &args.name, &CheckOptions::everything()) {
        Ok(checked) => checked,
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
    for warning in &checked.warnings {
        let _ = writeln!(stderr, "warning: {warning}");
    }
    if let Err(problem) = check_settings(&checked.config.server) {
        let _ = writeln!(
            stderr,
            "{}: server settings: {problem}",
            args.conf_file.display()
        );
        return Err(ChannelctlError::InvalidConfig { error_count: 1 });
    }
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(summary(&args.conf_file, &checked.config, checked.warnings.len()).as_bytes())
        .and_then(|()| stdout.flush())
        .map_err(ChannelctlError::stdout)
}
