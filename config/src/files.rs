//! Checks of the files a configuration names, as they are at the moment of the check.
//!
//! Everything else in this module tree reads text and never touches the filesystem, so
//! that a configuration can be judged anywhere. These checks are the exception, run only
//! by callers that ask for them (`channelctl validate`): a key file that is missing or
//! holds no key would otherwise show only when channeld opens the channel (which then
//! stays unhealthy; see `docs/operations.md`).

use millrace_engine::config::{ChannelConfig, EncryptionConfig, KeySource};
use millrace_engine::crypto::RecordKey;

use crate::error::{ConfigError, ConfigErrorKind};
use crate::AgentConfig;

/// Every key or password file of every encrypted channel of `config`, loaded as the
/// channel would load it at start: an error for each that cannot be read or holds no
/// key, at the line of the key that names it. `file` names the configuration file.
pub fn check_key_files(config: &AgentConfig, file: &str) -> Vec<ConfigError> {
    let mut errors = Vec::new();
    for (channel_name, channel) in &config.channels {
        let Some(encryption) = encryption_of(channel) else {
            continue;
        };
        for (key_id, source) in &encryption.keys {
            // Loading derives a password key too (Argon2id, a fraction of a second), so a
            // password file that would fail at start fails here.
            let Err(error) = RecordKey::load(key_id, source) else {
                continue;
            };
            let key = format!(
                "{}.channels.{channel_name}.encryption.keyProvider.keys.{key_id}.{}",
                config.agent_name,
                key_source_key(source)
            );
            errors.push(ConfigError {
                file: file.to_string(),
                line: config.line_of(&key),
                kind: ConfigErrorKind::UnusableFile {
                    key,
                    problem: error.to_string(),
                },
            });
        }
    }
    errors
}

fn encryption_of(channel: &ChannelConfig) -> Option<&EncryptionConfig> {
    match channel {
        ChannelConfig::File(file) => file.encryption.as_ref(),
        ChannelConfig::Spillable(spillable) => spillable.overflow.encryption.as_ref(),
        ChannelConfig::Memory(_) | ChannelConfig::Kafka(_) => None,
    }
}

/// The last part of the key that names a key source.
fn key_source_key(source: &KeySource) -> &'static str {
    match source {
        KeySource::KeyFile(_) => "keyFile",
        KeySource::PasswordFile(_) => "passwordFile",
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::parse_agent_config;

    fn encrypted_channel(directory: &Path, key_lines: &str) -> AgentConfig {
        let text = format!(
            "a1.channels = c1\n\
             a1.channels.c1.type = file\n\
             a1.channels.c1.checkpointDir = {dir}/checkpoint\n\
             a1.channels.c1.dataDirs = {dir}/data\n\
             a1.channels.c1.encryption.activeKey = k1\n\
             {key_lines}",
            dir = directory.display()
        );
        parse_agent_config(&text, "a.conf", "a1", Path::new("base")).unwrap()
    }

    #[test]
    fn usable_key_and_password_files_pass() {
        let directory = tempfile::tempdir().unwrap();
        std::fs::write(directory.path().join("k1.key"), [7_u8; 32]).unwrap();
        std::fs::write(directory.path().join("k2.password"), "correct horse\n").unwrap();
        let config = encrypted_channel(
            directory.path(),
            &format!(
                "a1.channels.c1.encryption.keyProvider.keys = k1 k2\n\
                 a1.channels.c1.encryption.keyProvider.keys.k1.keyFile = {}\n\
                 a1.channels.c1.encryption.keyProvider.keys.k2.passwordFile = {}\n",
                directory.path().join("k1.key").display(),
                directory.path().join("k2.password").display()
            ),
        );
        assert_eq!(check_key_files(&config, "a.conf"), vec![]);
    }

    #[test]
    fn a_missing_key_file_and_an_empty_password_file_are_named_at_their_lines() {
        let directory = tempfile::tempdir().unwrap();
        std::fs::write(directory.path().join("empty.password"), " \n").unwrap();
        let missing = directory.path().join("missing.key");
        let empty = directory.path().join("empty.password");
        let config = encrypted_channel(
            directory.path(),
            &format!(
                "a1.channels.c1.encryption.keyProvider.keys = k1 k2\n\
                 a1.channels.c1.encryption.keyProvider.keys.k1.keyFile = {}\n\
                 a1.channels.c1.encryption.keyProvider.keys.k2.passwordFile = {}\n",
                missing.display(),
                empty.display()
            ),
        );
        let messages: Vec<String> = check_key_files(&config, "a.conf")
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(messages.len(), 2, "{messages:?}");
        assert!(
            messages[0].starts_with(&format!(
                "a.conf:7: a1.channels.c1.encryption.keyProvider.keys.k1.keyFile: key \"k1\": \
                 cannot read {}: ",
                missing.display()
            )),
            "{messages:?}"
        );
        assert_eq!(
            messages[1],
            format!(
                "a.conf:8: a1.channels.c1.encryption.keyProvider.keys.k2.passwordFile: key \
                 \"k2\": password file {} is empty",
                empty.display()
            )
        );
    }
}
