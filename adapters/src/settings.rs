//! Typed reading of one adapter's keys, in the same words as the rest of the config.
//!
//! The config reader hands each source and sink its keys uninterpreted (which keys exist
//! depends on the adapter type). [`ComponentSettings`] reads them with the value readers
//! channeld uses for channels, collects every problem as a [`ConfigError`] naming file,
//! line, full key and what was expected, and at the end reports every key the adapter
//! did not read as unknown — nothing is silently ignored. A key Flume reads but Millrace
//! does not act on is accepted with a [`ConfigWarning`] that says so.

use std::collections::BTreeSet;
use std::time::Duration;

use millrace_server::config::values::{self, Expected};
use millrace_server::config::{
    expected_one_of, ConfigError, ConfigErrorKind, ConfigWarning, RawSetting,
};

/// One component's keys while an adapter reads them.
#[derive(Debug)]
pub struct ComponentSettings<'a> {
    file: &'a str,
    key_prefix: String,
    declared_line: usize,
    settings: &'a [RawSetting],
    read_keys: BTreeSet<String>,
    accepted_prefixes: Vec<String>,
    errors: Vec<ConfigError>,
    warnings: Vec<ConfigWarning>,
}

/// What reading one component's keys found.
#[derive(Debug, Default)]
pub struct SettingsProblems {
    /// Bad, missing and unknown keys.
    pub errors: Vec<ConfigError>,
    /// Keys accepted but not acted on.
    pub warnings: Vec<ConfigWarning>,
}

impl<'a> ComponentSettings<'a> {
    /// `key_prefix` is the component's full prefix (`a1.sources.r1`), used in messages.
    pub fn new(
        file: &'a str,
        key_prefix: impl Into<String>,
        declared_line: usize,
        settings: &'a [RawSetting],
    ) -> Self {
        ComponentSettings {
            file,
            key_prefix: key_prefix.into(),
            declared_line,
            settings,
            read_keys: BTreeSet::new(),
            accepted_prefixes: Vec::new(),
            errors: Vec::new(),
            warnings: Vec::new(),
        }
    }

    /// The full key for a relative one (`a1.sources.r1.` + `port`).
    pub fn full_key_of(&self, key: &str) -> String {
        self.full_key(key)
    }

    /// The line `key` is set on with a value (an empty value counts as unset).
    pub fn line_of(&self, key: &str) -> Option<usize> {
        self.settings
            .iter()
            .find(|setting| setting.key == key && !setting.value.is_empty())
            .map(|setting| setting.line)
    }

    /// Accepts `key`, when set, with a warning: Flume reads it, Millrace does not act on
    /// it, and `message` says what happens instead.
    pub fn accept_with_warning(&mut self, key: &str, message: &str) {
        if let Some(setting) = self.find(key) {
            let full_key = self.full_key(key);
            self.warnings.push(ConfigWarning {
                file: self.file.to_string(),
                line: setting.line,
                key: full_key,
                message: message.to_string(),
            });
        }
    }

    /// Accepts every key starting with `prefix`, each with a warning as
    /// [`accept_with_warning`](Self::accept_with_warning) gives.
    pub fn accept_prefix_with_warning(&mut self, prefix: &str, message: &str) {
        for (rest, _, _) in self.with_prefix(prefix) {
            let key = format!("{prefix}{rest}");
            self.accept_with_warning(&key, message);
        }
    }

    fn full_key(&self, key: &str) -> String {
        format!("{}.{key}", self.key_prefix)
    }

    fn find(&mut self, key: &str) -> Option<&'a RawSetting> {
        self.read_keys.insert(key.to_string());
        let settings: &'a [RawSetting] = self.settings;
        settings.iter().find(|setting| setting.key == key)
    }

    /// Every key starting with `prefix` (`deserializer.`), marked as read.
    pub fn with_prefix(&mut self, prefix: &str) -> Vec<(&'a str, &'a str, usize)> {
        self.accepted_prefixes.push(prefix.to_string());
        let settings: &'a [RawSetting] = self.settings;
        settings
            .iter()
            .filter_map(|setting| {
                setting
                    .key
                    .strip_prefix(prefix)
                    .map(|rest| (rest, setting.value.as_str(), setting.line))
            })
            .collect()
    }

    fn record(&mut self, line: Option<usize>, kind: ConfigErrorKind) {
        self.errors.push(ConfigError {
            file: self.file.to_string(),
            line,
            kind,
        });
    }

    /// Records a value that breaks a rule involving other keys.
    pub fn conflict(&mut self, key: &str, problem: impl Into<String>) {
        let line = self
            .settings
            .iter()
            .find(|setting| setting.key == key)
            .map_or(self.declared_line, |setting| setting.line);
        let full_key = self.full_key(key);
        self.record(
            Some(line),
            ConfigErrorKind::Conflict {
                key: full_key,
                problem: problem.into(),
            },
        );
    }

    /// The text of `key`; `None` when absent or empty (Flume ignores empty values).
    pub fn text(&mut self, key: &str) -> Option<String> {
        self.find(key)
            .map(|setting| setting.value.clone())
            .filter(|value| !value.is_empty())
    }

    /// The text of `key`, or `default`.
    pub fn text_or(&mut self, key: &str, default: &str) -> String {
        self.text(key).unwrap_or_else(|| default.to_string())
    }

    /// The text of a key that must be present.
    pub fn required_text(&mut self, key: &str, expected: &str) -> Option<String> {
        let value = self.text(key);
        if value.is_none() {
            let full_key = self.full_key(key);
            self.record(
                Some(self.declared_line),
                ConfigErrorKind::MissingKey {
                    key: full_key,
                    expected: expected.to_string(),
                },
            );
        }
        value
    }

    /// `key` read by `reader`, or `default` when absent or empty; a bad value is recorded
    /// and `default` returned so reading goes on.
    pub fn parsed_or<T>(
        &mut self,
        key: &str,
        default: T,
        reader: impl FnOnce(&str) -> Result<T, Expected>,
    ) -> T {
        self.parsed(key, reader).unwrap_or(default)
    }

    /// `key` read by `reader`; `None` when absent, empty or bad (recorded).
    pub fn parsed<T>(
        &mut self,
        key: &str,
        reader: impl FnOnce(&str) -> Result<T, Expected>,
    ) -> Option<T> {
        let setting = self.find(key)?;
        if setting.value.is_empty() {
            return None;
        }
        match reader(&setting.value) {
            Ok(value) => Some(value),
            Err(expected) => {
                let full_key = self.full_key(key);
                self.record(
                    Some(setting.line),
                    ConfigErrorKind::BadValue {
                        key: full_key,
                        expected: expected.to_string(),
                        value: setting.value.clone(),
                    },
                );
                None
            }
        }
    }

    /// A key that must be present, read by `reader`.
    pub fn required<T>(
        &mut self,
        key: &str,
        expected: &str,
        reader: impl FnOnce(&str) -> Result<T, Expected>,
    ) -> Option<T> {
        if self.text(key).is_none() {
            self.required_text(key, expected);
            return None;
        }
        self.parsed(key, reader)
    }

    /// `true`/`false`, or `default`.
    pub fn boolean_or(&mut self, key: &str, default: bool) -> bool {
        self.parsed_or(key, default, values::boolean)
    }

    /// A positive count, or `default`.
    pub fn count_or(&mut self, key: &str, default: u64) -> u64 {
        self.parsed_or(key, default, values::positive_integer)
    }

    /// Milliseconds (0 allowed), or `default`.
    pub fn millis_or(&mut self, key: &str, default: Duration) -> Duration {
        self.parsed_or(key, default, values::non_negative_milliseconds)
    }

    /// Seconds (0 allowed), or `default`.
    pub fn seconds_or(&mut self, key: &str, default: Duration) -> Duration {
        self.parsed_or(key, default, values::non_negative_seconds)
    }

    /// One of `choices` (any letter case), returned in the case written in `choices`.
    pub fn choice_or(
        &mut self,
        key: &str,
        default: &'static str,
        choices: &[&'static str],
    ) -> &'static str {
        let described = format!("one of {}", choices.join(", "));
        self.parsed_or(key, default, |value| {
            choices
                .iter()
                .copied()
                .find(|choice| choice.eq_ignore_ascii_case(value))
                .ok_or_else(|| Expected::new(described))
        })
    }

    /// A TCP/UDP port from 0 to 65535.
    pub fn port(&mut self, key: &str) -> Option<u16> {
        self.required(key, "a port number from 0 to 65535", port_number)
    }

    /// Ends reading: every key not read is an unknown key. Returns every problem found.
    pub fn finish(mut self) -> SettingsProblems {
        let known: Vec<String> = self.read_keys.iter().cloned().collect();
        let settings: &'a [RawSetting] = self.settings;
        for setting in settings {
            let read = self.read_keys.contains(&setting.key)
                || self
                    .accepted_prefixes
                    .iter()
                    .any(|prefix| setting.key.starts_with(prefix.as_str()));
            if !read {
                let full_key = self.full_key(&setting.key);
                self.record(
                    Some(setting.line),
                    ConfigErrorKind::UnknownKey {
                        key: full_key,
                        expected: expected_one_of(
                            &setting.key,
                            "one of this adapter's keys",
                            known.iter().map(String::as_str),
                        ),
                    },
                );
            }
        }
        SettingsProblems {
            errors: self.errors,
            warnings: self.warnings,
        }
    }
}

/// A port number from 0 to 65535.
pub fn port_number(value: &str) -> Result<u16, Expected> {
    values::non_negative_integer(value)
        .ok()
        .and_then(|port| u16::try_from(port).ok())
        .ok_or_else(|| Expected::new("a port number from 0 to 65535"))
}

/// A regular expression (Rust's `regex` syntax, close to Java's for common patterns).
pub fn regex(value: &str) -> Result<regex::Regex, Expected> {
    regex::Regex::new(value)
        .map_err(|error| Expected::new(format!("a regular expression ({error})")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(key: &str, value: &str, line: usize) -> RawSetting {
        RawSetting {
            key: key.to_string(),
            value: value.to_string(),
            line,
        }
    }

    #[test]
    fn unread_keys_are_reported_as_unknown_with_their_line() {
        let settings = [raw("port", "44444", 3), raw("prot", "1", 4)];
        let mut reader = ComponentSettings::new("a.conf", "a1.sources.r1", 1, &settings);
        assert_eq!(reader.port("port"), Some(44444));
        let errors = reader.finish().errors;
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].line, Some(4));
        assert_eq!(
            errors[0].to_string(),
            "a.conf:4: a1.sources.r1.prot: unknown key; expected one of this adapter's keys \
             (did you mean \"port\"?)"
        );
    }

    #[test]
    fn bad_and_missing_values_name_the_full_key_and_what_was_expected() {
        let settings = [raw("batchSize", "ten", 5)];
        let mut reader = ComponentSettings::new("a.conf", "a1.sinks.k1", 2, &settings);
        assert_eq!(reader.count_or("batchSize", 100), 100);
        assert_eq!(reader.port("port"), None);
        let messages: Vec<String> = reader
            .finish()
            .errors
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            messages,
            [
                "a.conf:5: a1.sinks.k1.batchSize: expected a positive integer, got \"ten\"",
                "a.conf:2: a1.sinks.k1.port: expected a port number from 0 to 65535, but the key is missing",
            ]
        );
    }

    #[test]
    fn empty_values_read_as_absent() {
        let settings = [raw("bind", "", 3)];
        let mut reader = ComponentSettings::new("a.conf", "a1.sources.r1", 1, &settings);
        assert_eq!(reader.text("bind"), None);
        assert!(reader.finish().errors.is_empty());
    }

    #[test]
    fn keys_accepted_with_a_warning_are_not_unknown() {
        let settings = [
            raw("maxBackoff", "8000", 3),
            raw("Jetty.a", "1", 4),
            raw("Jetty.b", "2", 5),
        ];
        let mut reader = ComponentSettings::new("a.conf", "a1.sources.r1", 1, &settings);
        reader.accept_with_warning("maxBackoff", "not acted on");
        reader.accept_with_warning("absent", "never reported");
        reader.accept_prefix_with_warning("Jetty.", "no Jetty here");
        let problems = reader.finish();
        assert!(problems.errors.is_empty(), "{:?}", problems.errors);
        let warnings: Vec<String> = problems.warnings.iter().map(ToString::to_string).collect();
        assert_eq!(
            warnings,
            [
                "a.conf:3: a1.sources.r1.maxBackoff: not acted on",
                "a.conf:4: a1.sources.r1.Jetty.a: no Jetty here",
                "a.conf:5: a1.sources.r1.Jetty.b: no Jetty here",
            ]
        );
    }
}
