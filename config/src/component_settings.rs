//! Reading one component's keys: the one way every channel, source, sink, selector,
//! sink processor and interceptor declares and reads its keys.
//!
//! # Constraints
//!
//! - **The reader is the declaration.** A component reads each key it knows by name, next
//!   to the struct that holds the result (`a1.sources.r1.port` into `NetcatSettings`,
//!   `a1.channels.c1.capacity` into the channel's settings). A key the component does not
//!   read is unknown: [`ComponentSettings::finish`] reports each one, with the closest
//!   known key as a suggestion or else the list of known keys. There is no second list of
//!   keys to keep in step: the keys read are the keys known, and
//!   [`ComponentSettings::listed_keys`] hands them to documentation tests.
//! - **Every problem in one run.** A bad value is recorded and reading goes on with the
//!   default, so that one run reports every bad, missing and unknown key of a file. Each
//!   problem names the file, the line, the full key and what was expected.
//! - **Nothing silently ignored.** A key Flume reads but Millrace does not act on is
//!   accepted with a [`ConfigWarning`] saying what happens instead.
//!
//! Two kinds of keys differ in one respect, chosen when the reader is made
//! ([`EmptyValues`]): keys Millrace acts on itself (a channel's, a selector's, a sink
//! processor's, the wiring of sources and sinks) refuse an empty value, since Flume would
//! ignore the key and a default would stand in for what was written; an adapter's keys
//! read an empty value as unset, after the agent reader has warned about it.
//!
//! ```text
//! let mut keys = ComponentSettings::new(file, "a1.sources.r1", declared_line, &settings);
//! let port = keys.port("port");                       // required
//! let batch = keys.count_or("batchSize", 100);        // optional, with its default
//! let problems = keys.finish();                       // + every key nobody read
//! ```

use std::collections::BTreeSet;
use std::time::Duration;

use crate::error::{expected_one_of, ConfigError, ConfigErrorKind, ConfigWarning};
use crate::setting::RawSetting;
use crate::values::{self, Expected};

/// How a key set to an empty value (`a1.sources.r1.bind =`) is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EmptyValues {
    /// As if the key were not set (an adapter's keys: the agent reader warns about them).
    Unset,
    /// As the value `""`, which the key's reader then refuses (keys Millrace acts on).
    Refused,
}

/// The order in which an unknown-key message lists the known keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyListing {
    /// Alphabetical.
    Alphabetical,
    /// The order the component reads them in, which is the documentation's order.
    AsRead,
}

/// What reading one component's keys found.
#[derive(Debug, Default)]
pub struct SettingsProblems {
    /// Bad, missing and unknown keys, in the order they were found.
    pub errors: Vec<ConfigError>,
    /// Keys accepted but not acted on, in the order they were found.
    pub warnings: Vec<ConfigWarning>,
}

/// One component's keys while it reads them.
#[derive(Debug)]
pub struct ComponentSettings<'a> {
    file: &'a str,
    key_prefix: String,
    declared_line: usize,
    settings: &'a [RawSetting],
    empty_values: EmptyValues,
    unknown_key_kind: String,
    key_listing: KeyListing,
    /// Every key read, by name or by a pattern.
    read_keys: BTreeSet<String>,
    /// The names and patterns read, in the order first read.
    listed_keys: Vec<String>,
    accepted_prefixes: Vec<String>,
    refused_values: usize,
    problems: SettingsProblems,
}

/// How an unknown adapter key is described by default.
const ADAPTER_KEY_KIND: &str = "one of this adapter's keys";

impl<'a> ComponentSettings<'a> {
    /// A reader of an adapter's keys: `key_prefix` is the component's full prefix
    /// (`a1.sources.r1`), used in messages; missing keys are reported at
    /// `declared_line`. Empty values read as unset, and unknown keys are described as
    /// "one of this adapter's keys" with the known ones in alphabetical order.
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
            empty_values: EmptyValues::Unset,
            unknown_key_kind: ADAPTER_KEY_KIND.to_string(),
            key_listing: KeyListing::Alphabetical,
            read_keys: BTreeSet::new(),
            listed_keys: Vec::new(),
            accepted_prefixes: Vec::new(),
            refused_values: 0,
            problems: SettingsProblems::default(),
        }
    }

    /// Reads empty values as `how` says.
    pub fn with_empty_values(mut self, how: EmptyValues) -> Self {
        self.empty_values = how;
        self
    }

    /// Describes an unknown key as `kind_of_key` ("a file channel key"), listing the
    /// known keys as `listing` says when none is close enough to suggest.
    pub fn describe_unknown_keys(&mut self, kind_of_key: impl Into<String>, listing: KeyListing) {
        self.unknown_key_kind = kind_of_key.into();
        self.key_listing = listing;
    }

    /// The full key for a relative one (`a1.sources.r1.` + `port`).
    pub fn full_key_of(&self, key: &str) -> String {
        format!("{}.{key}", self.key_prefix)
    }

    /// The line `key` is set on with a value (an empty value counts as unset).
    pub fn line_of(&self, key: &str) -> Option<usize> {
        self.settings
            .iter()
            .find(|setting| setting.key == key && !setting.value.is_empty())
            .map(|setting| setting.line)
    }

    /// Whether `key` is set at all, empty or not, without reading it.
    pub fn is_set(&self, key: &str) -> bool {
        self.setting(key).is_some()
    }

    /// The keys and key patterns read so far, in the order first read: after a reader has
    /// run over no settings at all, every key it knows.
    pub fn listed_keys(&self) -> &[String] {
        &self.listed_keys
    }

    /// How many errors have been recorded so far.
    pub fn error_count(&self) -> usize {
        self.problems.errors.len()
    }

    /// Whether a value was refused (as opposed to keys being unknown or missing).
    pub fn refused_any_value(&self) -> bool {
        self.refused_values > 0
    }

    fn setting(&self, key: &str) -> Option<&'a RawSetting> {
        let settings: &'a [RawSetting] = self.settings;
        settings.iter().find(|setting| setting.key == key)
    }

    /// Marks `key` read (and known) and returns its setting, empty or not.
    fn find(&mut self, key: &str) -> Option<&'a RawSetting> {
        if self.read_keys.insert(key.to_string()) {
            self.listed_keys.push(key.to_string());
        }
        self.setting(key)
    }

    /// Marks `key` read and returns its setting unless it counts as unset.
    fn find_value(&mut self, key: &str) -> Option<&'a RawSetting> {
        self.find(key).filter(|setting| {
            !setting.value.is_empty() || self.empty_values == EmptyValues::Refused
        })
    }

    fn line_or_declaration(&self, key: &str) -> usize {
        self.setting(key)
            .map_or(self.declared_line, |setting| setting.line)
    }

    fn record(&mut self, line: Option<usize>, kind: ConfigErrorKind) {
        self.problems.errors.push(ConfigError {
            file: self.file.to_string(),
            line,
            kind,
        });
    }

    /// Adds what another reader found (a part of this component read on its own, such
    /// as a source's selector), after what this one has found so far.
    pub fn absorb(&mut self, problems: SettingsProblems) {
        self.problems.errors.extend(problems.errors);
        self.problems.warnings.extend(problems.warnings);
    }

    /// Warns about `key`, which is set: `message` says what happens instead of what the
    /// user may expect.
    pub fn warn(&mut self, key: &str, message: impl Into<String>) {
        let line = self.line_or_declaration(key);
        let full_key = self.full_key_of(key);
        self.problems.warnings.push(ConfigWarning {
            file: self.file.to_string(),
            line,
            key: full_key,
            message: message.into(),
        });
    }

    /// Accepts `key`, when set, with a warning: Flume reads it, Millrace does not act on
    /// it, and `message` says what happens instead.
    pub fn accept_with_warning(&mut self, key: &str, message: &str) {
        if self.find(key).is_some() {
            self.warn(key, message);
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

    /// Every key starting with `prefix` (`deserializer.`), marked as read: (the rest of
    /// the key, the value, the line).
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

    /// Every setting whose key `matches`, in file order, marked as read; unknown-key
    /// messages list the keys as `listed_as` (names and patterns such as
    /// `selector.mapping.<header value>`).
    pub fn matching(
        &mut self,
        listed_as: &[&str],
        matches: impl Fn(&str) -> bool,
    ) -> Vec<RawSetting> {
        for name in listed_as {
            if !self.listed_keys.iter().any(|listed| listed == name) {
                self.listed_keys.push((*name).to_string());
            }
        }
        let found: Vec<RawSetting> = self
            .settings
            .iter()
            .filter(|setting| matches(&setting.key))
            .cloned()
            .collect();
        for setting in &found {
            self.read_keys.insert(setting.key.clone());
        }
        found
    }

    /// Records a value of `key` that cannot be used: `value` is the part refused (one
    /// name of a list, say) and `expected` what would have been accepted.
    pub fn refuse(&mut self, key: &str, expected: &str, value: &str) {
        self.refused_values += 1;
        let line = self.line_or_declaration(key);
        let full_key = self.full_key_of(key);
        self.record(
            Some(line),
            ConfigErrorKind::BadValue {
                key: full_key,
                expected: expected.to_string(),
                value: value.to_string(),
            },
        );
    }

    /// Records a required key that is not set, at the component's declaration.
    pub fn missing(&mut self, key: &str, expected: &str) {
        let full_key = self.full_key_of(key);
        self.record(
            Some(self.declared_line),
            ConfigErrorKind::MissingKey {
                key: full_key,
                expected: expected.to_string(),
            },
        );
    }

    /// Records `key` as unknown with `expected` saying what would have been accepted
    /// (for keys whose name holds a value, such as a priority for a sink not in the group).
    pub fn unknown(&mut self, key: &str, expected: String) {
        self.read_keys.insert(key.to_string());
        let line = self.line_or_declaration(key);
        let full_key = self.full_key_of(key);
        self.record(
            Some(line),
            ConfigErrorKind::UnknownKey {
                key: full_key,
                expected,
            },
        );
    }

    /// Records a value that breaks a rule involving other keys.
    pub fn conflict(&mut self, key: &str, problem: impl Into<String>) {
        let line = self.line_or_declaration(key);
        let full_key = self.full_key_of(key);
        self.record(
            Some(line),
            ConfigErrorKind::Conflict {
                key: full_key,
                problem: problem.into(),
            },
        );
    }

    /// The text of `key`; `None` when absent, or empty and read as unset.
    pub fn text(&mut self, key: &str) -> Option<String> {
        self.find_value(key).map(|setting| setting.value.clone())
    }

    /// The text of `key`, or `default`.
    pub fn text_or(&mut self, key: &str, default: &str) -> String {
        self.text(key).unwrap_or_else(|| default.to_string())
    }

    /// The text of a key that must be present.
    pub fn required_text(&mut self, key: &str, expected: &str) -> Option<String> {
        let value = self.text(key);
        if value.is_none() {
            self.missing(key, expected);
        }
        value
    }

    /// `key` read by `reader`, or `default` when absent (or empty and read as unset); a
    /// bad value is recorded and `default` returned so reading goes on.
    pub fn parsed_or<T>(
        &mut self,
        key: &str,
        default: T,
        reader: impl FnOnce(&str) -> Result<T, Expected>,
    ) -> T {
        self.parsed(key, reader).unwrap_or(default)
    }

    /// `key` read by `reader`; `None` when absent (or empty and read as unset), or bad
    /// (recorded).
    pub fn parsed<T>(
        &mut self,
        key: &str,
        reader: impl FnOnce(&str) -> Result<T, Expected>,
    ) -> Option<T> {
        let setting = self.find_value(key)?;
        match reader(&setting.value) {
            Ok(value) => Some(value),
            Err(expected) => {
                self.refuse(key, &expected.0, &setting.value);
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
        if self.find_value(key).is_none() {
            self.missing(key, expected);
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
        self.required(key, values::PORT_NUMBER_EXPECTED, values::port_number)
    }

    /// Ends reading without judging the keys not read, and hands them on (in file order)
    /// with what was found: for a layer that reads some of a component's keys and leaves
    /// the rest to the component itself (the wiring of a source, then its adapter).
    pub fn hand_on(self) -> (SettingsProblems, Vec<RawSetting>) {
        let unread = self
            .settings
            .iter()
            .filter(|setting| !self.was_read(&setting.key))
            .cloned()
            .collect();
        (self.problems, unread)
    }

    fn was_read(&self, key: &str) -> bool {
        self.read_keys.contains(key)
            || self
                .accepted_prefixes
                .iter()
                .any(|prefix| key.starts_with(prefix.as_str()))
    }

    /// Ends reading: every key not read is an unknown key. Returns every problem found.
    pub fn finish(mut self) -> SettingsProblems {
        let mut known: Vec<&str> = self.listed_keys.iter().map(String::as_str).collect();
        if self.key_listing == KeyListing::Alphabetical {
            known.sort_unstable();
        }
        let mut unknown_keys = Vec::new();
        for setting in self.settings {
            if !self.was_read(&setting.key) {
                let expected =
                    expected_one_of(&setting.key, &self.unknown_key_kind, known.iter().copied());
                unknown_keys.push((setting.line, self.full_key_of(&setting.key), expected));
            }
        }
        for (line, key, expected) in unknown_keys {
            self.record(Some(line), ConfigErrorKind::UnknownKey { key, expected });
        }
        self.problems
    }
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
    fn keys_millrace_acts_on_refuse_empty_values() {
        let settings = [raw("capacity", "", 3)];
        let mut reader = ComponentSettings::new("a.conf", "a1.channels.c1", 1, &settings)
            .with_empty_values(EmptyValues::Refused);
        assert_eq!(reader.parsed("capacity", values::positive_integer), None);
        assert!(reader.refused_any_value());
        let messages: Vec<String> = reader
            .finish()
            .errors
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            messages,
            ["a.conf:3: a1.channels.c1.capacity: expected a positive integer, got \"\""]
        );
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

    #[test]
    fn known_keys_are_listed_in_reading_order_with_their_patterns() {
        let settings = [
            raw("selector.mapping.CA", "c1", 3),
            raw("selector.colour", "red", 4),
        ];
        let mut reader = ComponentSettings::new("a.conf", "a1.sources.r1", 1, &settings)
            .with_empty_values(EmptyValues::Refused);
        reader.describe_unknown_keys("a key of the multiplexing selector", KeyListing::AsRead);
        reader.text("selector.type");
        reader.text("selector.header");
        let mappings = reader.matching(&["selector.mapping.<header value>"], |key| {
            key.starts_with("selector.mapping.")
        });
        assert_eq!(mappings, [settings[0].clone()]);
        assert_eq!(
            reader.listed_keys(),
            [
                "selector.type",
                "selector.header",
                "selector.mapping.<header value>"
            ]
        );
        let errors = reader.finish().errors;
        assert_eq!(
            errors[0].to_string(),
            "a.conf:4: a1.sources.r1.selector.colour: unknown key; expected a key of the \
             multiplexing selector: selector.type, selector.header, \
             selector.mapping.<header value>"
        );
    }

    #[test]
    fn a_layer_reading_part_of_a_component_hands_the_rest_on_unjudged() {
        let settings = [
            raw("type", "netcat", 2),
            raw("port", "1", 3),
            raw("channel", "c1", 4),
        ];
        let mut reader = ComponentSettings::new("a.conf", "a1.sources.r1", 1, &settings)
            .with_empty_values(EmptyValues::Refused);
        assert_eq!(reader.text("type").as_deref(), Some("netcat"));
        assert!(reader.is_set("channel"));
        let (problems, unread) = reader.hand_on();
        assert!(problems.errors.is_empty());
        assert_eq!(unread, [settings[1].clone(), settings[2].clone()]);
    }
}
