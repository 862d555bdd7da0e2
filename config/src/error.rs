//! Configuration errors and warnings, and the collector that gathers them.
//!
//! Every problem names the file, the line (when it concerns one), the full key and what
//! was expected, so that a message can be acted on without opening the code:
//!
//! ```text
//! agent.conf:12: a1.channels.c1.capacity: expected a positive integer, got "ten"
//! ```
//!
//! Reading never stops at the first problem: [`Diagnostics`] collects every error and
//! warning in the file, and [`ConfigErrors`] hands them all back, sorted by line.

use crate::component_settings::SettingsProblems;
use crate::properties::PropertiesError;

/// One reason a configuration file cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}{kind}", location_prefix(.file, *.line))]
pub struct ConfigError {
    /// The file name as the user gave it.
    pub file: String,
    /// The 1-based line, when the problem belongs to one.
    pub line: Option<usize>,
    /// What is wrong.
    pub kind: ConfigErrorKind,
}

fn location_prefix(file: &str, line: Option<usize>) -> String {
    match line {
        Some(line) => format!("{file}:{line}: "),
        None => format!("{file}: "),
    }
}

/// What is wrong, with the key and the values involved.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigErrorKind {
    /// The file could not be opened or read.
    #[error("cannot read the file: {reason}")]
    Unreadable {
        /// The operating system's explanation.
        reason: String,
    },
    /// The file is not UTF-8 text (Flume reads the platform charset, UTF-8 on current
    /// systems).
    #[error(
        "expected UTF-8 text, got byte 0x{byte:02X} at offset {byte_offset} (save the file as \
         UTF-8)"
    )]
    NotUtf8 {
        /// The first invalid byte.
        byte: u8,
        /// Its offset in the file.
        byte_offset: usize,
    },
    /// A line breaks the Java properties syntax (Java would refuse the whole file).
    #[error("{0}")]
    Syntax(PropertiesError),
    /// The agent chosen with `-n` has no keys in the file.
    #[error("agent {agent:?} not found; {}", describe_present_agents(.present))]
    AgentNotFound {
        /// The agent asked for.
        agent: String,
        /// The agents the file does describe, sorted.
        present: Vec<String>,
    },
    /// A key of the chosen agent set again to a different value (Java and Flume would
    /// keep the last without a word). The same value twice is only a warning.
    #[error(
        "{key}: expected each key once, got {value:?} here after {first_value:?} on line \
         {first_line} (Flume would silently keep the last)"
    )]
    DuplicateKey {
        /// The full key.
        key: String,
        /// Where it was set first.
        first_line: usize,
        /// The value set there.
        first_value: String,
        /// The value set again.
        value: String,
    },
    /// A key of the chosen agent that Millrace does not know.
    #[error("{key}: unknown key; expected {expected}")]
    UnknownKey {
        /// The full key.
        key: String,
        /// What kind of key would have been accepted, possibly with a suggestion.
        expected: String,
    },
    /// A value that cannot be used for its key.
    #[error("{key}: expected {expected}, got {value:?}")]
    BadValue {
        /// The full key.
        key: String,
        /// What would have been accepted.
        expected: String,
        /// The value seen (after Flume's trimming).
        value: String,
    },
    /// A required key is absent. The line is where the component was declared.
    #[error("{key}: expected {expected}, but the key is missing")]
    MissingKey {
        /// The full key that should be present.
        key: String,
        /// What it should hold.
        expected: String,
    },
    /// A value that is fine alone but breaks a rule involving other keys.
    #[error("{key}: {problem}")]
    Conflict {
        /// The full key the problem is reported on.
        key: String,
        /// The rule and the values involved, phrased as "expected …, got …".
        problem: String,
    },
    /// A file or directory a key names cannot be used as it is now (found by the checks
    /// that look at the filesystem, such as `channelctl validate`'s).
    #[error("{key}: {problem}")]
    UnusableFile {
        /// The full key that names the file.
        key: String,
        /// What is wrong with it, with the path and the operating system's reason.
        problem: String,
    },
}

fn describe_present_agents(present: &[String]) -> String {
    if present.is_empty() {
        "the file describes no agents".to_string()
    } else {
        format!("the file describes: {}", present.join(", "))
    }
}

/// Something accepted that the user should know about: a value Flume would clamp, a key
/// Millrace reads but does not act on, a key with no effect.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}: {key}: {message}")]
pub struct ConfigWarning {
    /// The file name as the user gave it.
    pub file: String,
    /// The line of the key.
    pub line: usize,
    /// The full key.
    pub key: String,
    /// What happens instead of what the user may expect.
    pub message: String,
}

/// Every error found in a file (sorted by line), and the warnings found alongside them.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", render_lines(.errors))]
pub struct ConfigErrors {
    /// At least one error, in line order; file-level errors first.
    pub errors: Vec<ConfigError>,
    /// Warnings found while reading, in line order.
    pub warnings: Vec<ConfigWarning>,
}

fn render_lines(errors: &[ConfigError]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

impl ConfigErrors {
    /// The messages of all errors, one per entry: convenient for tests and for printing.
    pub fn messages(&self) -> Vec<String> {
        self.errors.iter().map(ToString::to_string).collect()
    }
}

/// Collects errors and warnings for one file while it is read.
#[derive(Debug)]
pub(crate) struct Diagnostics {
    file: String,
    errors: Vec<ConfigError>,
    warnings: Vec<ConfigWarning>,
}

impl Diagnostics {
    pub(crate) fn new(file: &str) -> Self {
        Diagnostics {
            file: file.to_string(),
            errors: Vec::new(),
            warnings: Vec::new(),
        }
    }

    /// The file name, as messages give it.
    pub(crate) fn file(&self) -> &str {
        &self.file
    }

    /// Adds what reading one component found, in the order it was found.
    pub(crate) fn absorb(&mut self, problems: SettingsProblems) {
        self.errors.extend(problems.errors);
        self.warnings.extend(problems.warnings);
    }

    pub(crate) fn error_count(&self) -> usize {
        self.errors.len()
    }

    pub(crate) fn error(&mut self, line: Option<usize>, kind: ConfigErrorKind) {
        self.errors.push(ConfigError {
            file: self.file.clone(),
            line,
            kind,
        });
    }

    pub(crate) fn bad_value(&mut self, line: usize, key: &str, expected: &str, value: &str) {
        self.error(
            Some(line),
            ConfigErrorKind::BadValue {
                key: key.to_string(),
                expected: expected.to_string(),
                value: value.to_string(),
            },
        );
    }

    pub(crate) fn missing_key(&mut self, line: Option<usize>, key: &str, expected: &str) {
        self.error(
            line,
            ConfigErrorKind::MissingKey {
                key: key.to_string(),
                expected: expected.to_string(),
            },
        );
    }

    pub(crate) fn unknown_key(&mut self, line: usize, key: &str, expected: String) {
        self.error(
            Some(line),
            ConfigErrorKind::UnknownKey {
                key: key.to_string(),
                expected,
            },
        );
    }

    pub(crate) fn conflict(&mut self, line: usize, key: &str, problem: String) {
        self.error(
            Some(line),
            ConfigErrorKind::Conflict {
                key: key.to_string(),
                problem,
            },
        );
    }

    pub(crate) fn warn(&mut self, line: usize, key: &str, message: impl Into<String>) {
        self.warnings.push(ConfigWarning {
            file: self.file.clone(),
            line,
            key: key.to_string(),
            message: message.into(),
        });
    }

    /// Ends reading: every error and every warning, each in line order.
    pub(crate) fn into_sorted(mut self) -> (Vec<ConfigError>, Vec<ConfigWarning>) {
        sort_by_line(&mut self.errors, &mut self.warnings);
        (self.errors, self.warnings)
    }
}

/// Sorts problems as every report lists them: file-level errors (no line) first, then by
/// line. The sort is stable, so problems on one line keep the order they were found in.
pub fn sort_by_line(errors: &mut [ConfigError], warnings: &mut [ConfigWarning]) {
    errors.sort_by_key(|error| error.line);
    warnings.sort_by_key(|warning| warning.line);
}

/// Most edits between an unknown name and a known one for the known one to be suggested.
const MAX_TYPO_EDITS: usize = 2;
/// Shortest unknown name suggested by the known name it begins (`keyStore` for
/// `keyStoreFile`); shorter ones begin too many names to mean one.
const MIN_TRUNCATED_NAME_LENGTH: usize = 4;

/// Suggests the known name closest to an unknown one, when it is close enough to be a
/// probable typo: at most two edits away ignoring case, or else a known name that the
/// unknown one begins.
pub(crate) fn closest_name<'a>(
    unknown: &str,
    known: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    let unknown_lower = unknown.to_ascii_lowercase();
    let known: Vec<&'a str> = known.into_iter().collect();
    let nearest_by_edits = known
        .iter()
        .map(|name| {
            (
                edit_distance(&unknown_lower, &name.to_ascii_lowercase()),
                *name,
            )
        })
        .filter(|(distance, _)| *distance <= MAX_TYPO_EDITS)
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, name)| name);
    nearest_by_edits.or_else(|| {
        (unknown.len() >= MIN_TRUNCATED_NAME_LENGTH)
            .then(|| {
                known
                    .iter()
                    .find(|name| name.to_ascii_lowercase().starts_with(&unknown_lower))
                    .copied()
            })
            .flatten()
    })
}

/// Levenshtein distance over chars.
fn edit_distance(left: &str, right: &str) -> usize {
    let right: Vec<char> = right.chars().collect();
    let mut previous_row: Vec<usize> = (0..=right.len()).collect();
    for (left_index, left_char) in left.chars().enumerate() {
        let mut current_row = vec![left_index + 1];
        for (right_index, right_char) in right.iter().enumerate() {
            let substitution = previous_row[right_index] + usize::from(left_char != *right_char);
            let insertion = current_row[right_index] + 1;
            let deletion = previous_row[right_index + 1] + 1;
            current_row.push(substitution.min(insertion).min(deletion));
        }
        previous_row = current_row;
    }
    previous_row[right.len()]
}

/// "expected …" text for an unknown key: the kind of key, plus a suggestion when one
/// known name is close, else the list of known names.
pub fn expected_one_of<'a>(
    unknown: &str,
    kind_of_key: &str,
    known: impl IntoIterator<Item = &'a str> + Clone,
) -> String {
    match closest_name(unknown, known.clone()) {
        Some(suggestion) => format!("{kind_of_key} (did you mean {suggestion:?}?)"),
        None => {
            let names: Vec<&str> = known.into_iter().collect();
            format!("{kind_of_key}: {}", names.join(", "))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_render_file_line_key_and_expectation() {
        let mut diagnostics = Diagnostics::new("agent.conf");
        diagnostics.bad_value(12, "a1.channels.c1.capacity", "a positive integer", "ten");
        let (errors, _) = diagnostics.into_sorted();
        assert_eq!(
            errors[0].to_string(),
            "agent.conf:12: a1.channels.c1.capacity: expected a positive integer, got \"ten\""
        );
    }

    #[test]
    fn errors_come_back_sorted_with_file_level_ones_first() {
        let mut diagnostics = Diagnostics::new("f");
        diagnostics.bad_value(9, "k9", "x", "y");
        diagnostics.bad_value(2, "k2", "x", "y");
        diagnostics.missing_key(None, "a1.channels", "a list");
        let lines: Vec<Option<usize>> = diagnostics
            .into_sorted()
            .0
            .iter()
            .map(|error| error.line)
            .collect();
        assert_eq!(lines, vec![None, Some(2), Some(9)]);
    }

    #[test]
    fn typos_get_a_suggestion_and_strangers_get_the_list() {
        let known = ["capacity", "transactionCapacity", "keep-alive"];
        assert_eq!(closest_name("capasity", known), Some("capacity"));
        assert_eq!(closest_name("Capacity", known), Some("capacity"));
        assert_eq!(closest_name("keepalive", known), Some("keep-alive"));
        assert_eq!(closest_name("colour", known), None);
        assert_eq!(
            closest_name("transaction", known),
            Some("transactionCapacity")
        );
        assert_eq!(closest_name("kee", known), None);
        assert_eq!(
            expected_one_of("colour", "a memory channel key", known),
            "a memory channel key: capacity, transactionCapacity, keep-alive"
        );
    }
}
