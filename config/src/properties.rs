//! A strict reader for Java `.properties` text that remembers where each entry came from.
//!
//! Flume loads its agent file with `java.util.Properties.load`, so a Millrace config must
//! mean exactly what it means to Java. This module reproduces Java's reading rules and
//! adds two things Java does not give: the line number of every entry, and errors instead
//! of exceptions for the few malformed inputs. It knows nothing about agents or channels.
//!
//! Java's rules, in the order they apply:
//!
//! 1. **Natural lines** end at `\n`, `\r` or `\r\n`.
//! 2. **Blank and comment lines**: leading whitespace (space, tab, form feed) is skipped;
//!    a line that is then empty, or starts with `#` or `!`, is ignored. A comment line
//!    never continues onto the next line, whatever it ends with.
//! 3. **Logical lines**: a natural line ending in an *odd* number of backslashes continues
//!    on the next natural line; the last backslash is dropped and so is the leading
//!    whitespace of the continuation. A continuation that starts with `#` is text, not a
//!    comment. A continuation line that is blank ends the logical line.
//! 4. **Key and value**: the key ends at the first unescaped `=`, `:`, space, tab or form
//!    feed. Then whitespace is skipped, at most one `=` or `:` if the key ended at
//!    whitespace, and whitespace again; the rest of the line is the value, *trailing
//!    whitespace included* (Java keeps it; Flume trims it later, see `config/mod.rs`).
//! 5. **Escapes** in keys and values: `\t \n \r \f`, `\uXXXX` (exactly four hex digits),
//!    and `\` before any other character stands for that character (`\=`, `\:`, `\ `,
//!    `\#`, `\\`).
//!
//! Where Millrace differs from Java, and why:
//!
//! - A malformed `\uXXXX` is reported with its line instead of aborting the whole load
//!   with `IllegalArgumentException`; the line is skipped and reading goes on so that one
//!   run reports every problem.
//! - A `\uXXXX` escape that leaves half of a UTF-16 surrogate pair unpaired is an error:
//!   Java would store the lone surrogate, a Rust `String` cannot hold it.
//! - Duplicate keys are not resolved here (Java silently keeps the last one);
//!   [`find_duplicate_keys`] lists them, with both values, so the caller can refuse
//!   them (or only warn when the value is the same).
//!
//! The input is already-decoded text. Flume reads the file with the platform charset
//! (UTF-8 on current systems); the caller decodes UTF-8 and strips a byte-order mark.

use std::collections::HashMap;

/// Characters Java's `Properties` treats as whitespace between and around keys and
/// values. Note that this is narrower than Rust's `char::is_whitespace`.
const JAVA_PROPERTIES_WHITESPACE: [char; 3] = [' ', '\t', '\u{000C}'];

/// Number of hexadecimal digits that follow `\u` in a Java escape.
const UNICODE_ESCAPE_DIGITS: usize = 4;

/// One `key = value` entry, with escapes resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Property {
    /// The key, unescaped, exactly as Java would store it.
    pub key: String,
    /// The value, unescaped, with trailing whitespace kept as Java keeps it.
    pub value: String,
    /// The 1-based line on which the entry starts (a continued entry spans more lines).
    pub line: usize,
}

/// A line Java would refuse to load.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {problem}")]
pub struct PropertiesError {
    /// The line of the entry.
    pub line: usize,
    /// The entry's key: unescaped when the key itself is well formed, else as written.
    pub key: String,
    /// What is malformed.
    pub problem: EscapeProblem,
}

/// A malformed escape sequence.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EscapeProblem {
    /// `\u` was not followed by four hexadecimal digits.
    #[error("expected four hexadecimal digits after \\u, got \"\\u{found}\"")]
    MalformedUnicodeEscape {
        /// What followed `\u` (at most four characters).
        found: String,
    },
    /// A `\uXXXX` escape produced half of a UTF-16 surrogate pair without the other half.
    #[error(
        "expected a complete UTF-16 surrogate pair, got \\u{code_unit:04X} without its other half"
    )]
    UnpairedSurrogate {
        /// The lone surrogate code unit.
        code_unit: u16,
    },
}

/// Everything read from a properties text: the entries in file order, and the lines that
/// could not be read (which are left out of `properties`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ParsedProperties {
    /// Entries in file order, duplicates included.
    pub properties: Vec<Property>,
    /// Malformed entries, in file order.
    pub errors: Vec<PropertiesError>,
}

/// A key set more than once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DuplicateKey {
    /// The repeated key.
    pub key: String,
    /// Where the key was first set.
    pub first_line: usize,
    /// The value set there.
    pub first_value: String,
    /// Where it was set again.
    pub line: usize,
    /// The value set again.
    pub value: String,
}

/// Reads properties text with `java.util.Properties` semantics (see the module doc).
pub fn parse_properties(text: &str) -> ParsedProperties {
    let mut parsed = ParsedProperties::default();
    for logical_line in logical_lines(text) {
        let (raw_key, raw_value) = split_key_and_value(&logical_line.text);
        let line = logical_line.line;
        let key = match unescape(raw_key) {
            Ok(key) => key,
            Err(problem) => {
                parsed.errors.push(PropertiesError {
                    line,
                    key: raw_key.to_string(),
                    problem,
                });
                continue;
            }
        };
        match unescape(raw_value) {
            Ok(value) => parsed.properties.push(Property { key, value, line }),
            Err(problem) => parsed.errors.push(PropertiesError { line, key, problem }),
        }
    }
    parsed
}

/// Every key that appears more than once, reported at each repetition with the line of
/// its first appearance. Keys are compared exactly, as Java's `Hashtable` does.
pub fn find_duplicate_keys<'a>(
    properties: impl IntoIterator<Item = &'a Property>,
) -> Vec<DuplicateKey> {
    let mut first_settings: HashMap<&str, &Property> = HashMap::new();
    let mut duplicates = Vec::new();
    for property in properties {
        match first_settings.get(property.key.as_str()) {
            Some(first) => duplicates.push(DuplicateKey {
                key: property.key.clone(),
                first_line: first.line,
                first_value: first.value.clone(),
                line: property.line,
                value: property.value.clone(),
            }),
            None => {
                first_settings.insert(&property.key, property);
            }
        }
    }
    duplicates
}

/// A logical line: natural lines joined at continuations, escapes not yet resolved.
struct LogicalLine {
    text: String,
    line: usize,
}

/// Splits text at `\n`, `\r` and `\r\n`, numbering lines from 1.
fn natural_lines(text: &str) -> Vec<(usize, &str)> {
    let bytes = text.as_bytes();
    let mut lines = Vec::new();
    let mut line_start = 0;
    let mut line_number = 1;
    let mut index = 0;
    while index < bytes.len() {
        let terminator_length = match (bytes[index], bytes.get(index + 1)) {
            (b'\r', Some(b'\n')) => 2,
            (b'\r', _) | (b'\n', _) => 1,
            _ => 0,
        };
        if terminator_length == 0 {
            index += 1;
            continue;
        }
        lines.push((line_number, &text[line_start..index]));
        index += terminator_length;
        line_start = index;
        line_number += 1;
    }
    if line_start < bytes.len() {
        lines.push((line_number, &text[line_start..]));
    }
    lines
}

fn ends_with_odd_number_of_backslashes(text: &str) -> bool {
    text.chars().rev().take_while(|&c| c == '\\').count() % 2 == 1
}

/// Joins continued lines and drops blank and comment lines (rules 1–3 of the module doc).
fn logical_lines(text: &str) -> Vec<LogicalLine> {
    let mut logical_lines = Vec::new();
    let mut pending: Option<LogicalLine> = None;
    for (line_number, natural_line) in natural_lines(text) {
        let content = natural_line.trim_start_matches(JAVA_PROPERTIES_WHITESPACE);
        let mut current = match pending.take() {
            Some(continued) => continued,
            None => {
                if content.is_empty() || content.starts_with(['#', '!']) {
                    continue;
                }
                LogicalLine {
                    text: String::new(),
                    line: line_number,
                }
            }
        };
        if ends_with_odd_number_of_backslashes(content) {
            current
                .text
                .push_str(&content[..content.len() - '\\'.len_utf8()]);
            pending = Some(current);
        } else {
            current.text.push_str(content);
            // Java never returns an empty logical line: a lone continuation backslash
            // followed by a blank line reads as nothing at all.
            if !current.text.is_empty() {
                logical_lines.push(current);
            }
        }
    }
    if let Some(last) = pending.filter(|line| !line.text.is_empty()) {
        logical_lines.push(last);
    }
    logical_lines
}

fn is_java_properties_whitespace(c: char) -> bool {
    JAVA_PROPERTIES_WHITESPACE.contains(&c)
}

/// Rule 4 of the module doc: returns the raw (still escaped) key and value.
fn split_key_and_value(line: &str) -> (&str, &str) {
    let mut key_end = line.len();
    let mut value_search_start = line.len();
    let mut separator_seen = false;
    let mut preceded_by_backslash = false;
    for (index, c) in line.char_indices() {
        if !preceded_by_backslash {
            if c == '=' || c == ':' {
                key_end = index;
                value_search_start = index + c.len_utf8();
                separator_seen = true;
                break;
            }
            if is_java_properties_whitespace(c) {
                key_end = index;
                value_search_start = index + c.len_utf8();
                break;
            }
        }
        preceded_by_backslash = c == '\\' && !preceded_by_backslash;
    }
    let rest = &line[value_search_start..];
    let mut value_start = rest.len();
    for (index, c) in rest.char_indices() {
        if is_java_properties_whitespace(c) {
            continue;
        }
        if !separator_seen && (c == '=' || c == ':') {
            separator_seen = true;
            continue;
        }
        value_start = index;
        break;
    }
    (&line[..key_end], &rest[value_start..])
}

/// Rule 5 of the module doc: resolves escapes.
fn unescape(raw: &str) -> Result<String, EscapeProblem> {
    let mut unescaped = String::with_capacity(raw.len());
    let mut chars = raw.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\\' {
            unescaped.push(c);
            continue;
        }
        match chars.next() {
            // Unreachable through `parse_properties` (an odd trailing backslash is a
            // continuation), kept total: Java drops it too.
            None => {}
            Some('t') => unescaped.push('\t'),
            Some('n') => unescaped.push('\n'),
            Some('r') => unescaped.push('\r'),
            Some('f') => unescaped.push('\u{000C}'),
            Some('u') => {
                let code_unit = read_unicode_escape(&mut chars)?;
                unescaped.push(decode_code_unit(code_unit, &mut chars)?);
            }
            Some(other) => unescaped.push(other),
        }
    }
    Ok(unescaped)
}

/// Reads the four hex digits after `\u`.
fn read_unicode_escape(
    chars: &mut std::iter::Peekable<std::str::Chars<'_>>,
) -> Result<u16, EscapeProblem> {
    let digits: String = chars.by_ref().take(UNICODE_ESCAPE_DIGITS).collect();
    let well_formed = digits.len() == UNICODE_ESCAPE_DIGITS
        && digits.chars().all(|digit| digit.is_ascii_hexdigit());
    match u16::from_str_radix(&digits, 16) {
        Ok(code_unit) if well_formed => Ok(code_unit),
        _ => Err(EscapeProblem::MalformedUnicodeEscape { found: digits }),
    }
}

/// Turns a UTF-16 code unit into a char, reading the low half of a surrogate pair from
/// an immediately following `\uXXXX` escape when needed.
fn decode_code_unit(
    code_unit: u16,
    chars: &mut std::iter::Peekable<std::str::Chars<'_>>,
) -> Result<char, EscapeProblem> {
    let unpaired = EscapeProblem::UnpairedSurrogate { code_unit };
    if let Some(c) = char::from_u32(u32::from(code_unit)) {
        return Ok(c);
    }
    let is_high_surrogate = (0xD800..=0xDBFF).contains(&code_unit);
    if !is_high_surrogate {
        return Err(unpaired);
    }
    let mut lookahead = chars.clone();
    if lookahead.next() != Some('\\') || lookahead.next() != Some('u') {
        return Err(unpaired);
    }
    let low = read_unicode_escape(&mut lookahead)?;
    let decoded = char::decode_utf16([code_unit, low])
        .next()
        .and_then(Result::ok)
        .ok_or(unpaired)?;
    *chars = lookahead;
    Ok(decoded)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(text: &str) -> Vec<(String, String, usize)> {
        let parsed = parse_properties(text);
        assert_eq!(parsed.errors, vec![], "unexpected errors for {text:?}");
        parsed
            .properties
            .into_iter()
            .map(|property| (property.key, property.value, property.line))
            .collect()
    }

    fn one(key: &str, value: &str, line: usize) -> Vec<(String, String, usize)> {
        vec![(key.to_string(), value.to_string(), line)]
    }

    /// Each row: the text, then the (key, value) Java's `Properties.load` stores. The
    /// expectations were written from the JDK's `Properties.LineReader` and `loadConvert`.
    #[test]
    fn single_entries_read_as_java_reads_them() {
        let table: &[(&str, &str, &str)] = &[
            ("key=value", "key", "value"),
            ("key = value", "key", "value"),
            ("key:value", "key", "value"),
            ("key : value", "key", "value"),
            ("key value", "key", "value"),
            ("key\tvalue", "key", "value"),
            ("key\u{000C}value", "key", "value"),
            ("   key = value", "key", "value"),
            ("key   value with spaces", "key", "value with spaces"),
            ("key = value  ", "key", "value  "),
            ("key == value", "key", "= value"),
            ("key =: value", "key", ": value"),
            ("key  = = value", "key", "= value"),
            ("key", "key", ""),
            ("key =", "key", ""),
            ("key:", "key", ""),
            ("=value", "", "value"),
            (":value", "", "value"),
            ("key\\=with\\:separators = v", "key=with:separators", "v"),
            ("key\\ with\\ spaces = v", "key with spaces", "v"),
            ("key = a\\tb\\nc\\rd\\fe", "key", "a\tb\nc\rd\u{000C}e"),
            ("key = back\\\\slash", "key", "back\\slash"),
            ("key = \\q\\#\\!", "key", "q#!"),
            ("key = \\u0041\\u00e9\\u4E2D", "key", "Aé中"),
            ("key = \\uD83D\\uDE00", "key", "😀"),
            ("k\\u0065y = v", "key", "v"),
            ("key = # not a comment", "key", "# not a comment"),
            (
                "key = value # still the value",
                "key",
                "value # still the value",
            ),
            ("key = ünïcødé", "key", "ünïcødé"),
            ("key = \\ leading space kept", "key", " leading space kept"),
        ];
        for (text, key, value) in table {
            assert_eq!(entries(text), one(key, value, 1), "reading {text:?}");
        }
    }

    #[test]
    fn comment_and_blank_lines_are_skipped() {
        let text = "# comment\n! bang comment\n   # indented comment\n\n   \t\nkey = v\n";
        assert_eq!(entries(text), one("key", "v", 6));
    }

    #[test]
    fn a_comment_ending_in_a_backslash_does_not_continue() {
        let text = "# comment \\\nkey = v";
        assert_eq!(entries(text), one("key", "v", 2));
    }

    #[test]
    fn continuation_joins_lines_and_drops_leading_whitespace() {
        let text = "key = first, \\\n      second, \\\n\tthird\nnext = n";
        assert_eq!(
            entries(text),
            vec![
                ("key".into(), "first, second, third".into(), 1),
                ("next".into(), "n".into(), 4),
            ]
        );
    }

    #[test]
    fn a_continuation_line_starting_with_a_hash_is_text() {
        assert_eq!(entries("key = a\\\n  #b"), one("key", "a#b", 1));
    }

    #[test]
    fn an_even_number_of_trailing_backslashes_does_not_continue() {
        let text = "key = a\\\\\nother = b";
        assert_eq!(
            entries(text),
            vec![
                ("key".into(), "a\\".into(), 1),
                ("other".into(), "b".into(), 2)
            ]
        );
    }

    #[test]
    fn a_blank_continuation_line_ends_the_entry() {
        let text = "key = a\\\n   \nother = b";
        assert_eq!(
            entries(text),
            vec![
                ("key".into(), "a".into(), 1),
                ("other".into(), "b".into(), 3)
            ]
        );
    }

    #[test]
    fn a_trailing_backslash_at_end_of_file_is_dropped() {
        assert_eq!(entries("key = a\\"), one("key", "a", 1));
        assert_eq!(entries("key = a\\\n"), one("key", "a", 1));
    }

    #[test]
    fn a_lone_continuation_before_a_blank_line_reads_as_nothing() {
        assert_eq!(entries("\\\n\nkey = v"), one("key", "v", 3));
    }

    #[test]
    fn the_key_can_continue_onto_the_next_line() {
        assert_eq!(entries("ke\\\n   y = v"), one("key", "v", 1));
    }

    #[test]
    fn every_line_ending_counts_as_one_line() {
        let text = "a = 1\r\nb = 2\rc = 3\nd = 4";
        let lines: Vec<usize> = entries(text).into_iter().map(|entry| entry.2).collect();
        assert_eq!(lines, vec![1, 2, 3, 4]);
    }

    #[test]
    fn crlf_continuations_are_joined() {
        assert_eq!(entries("key = a\\\r\n  b\r\n"), one("key", "ab", 1));
    }

    #[test]
    fn malformed_unicode_escapes_are_errors_naming_the_line() {
        for text in ["k = \\u12", "k = \\u12G4", "k = \\u", "k\\uZZZZ = v"] {
            let parsed = parse_properties(&format!("ok = 1\n{text}\nafter = 2"));
            assert_eq!(parsed.errors.len(), 1, "{text:?}");
            assert_eq!(parsed.errors[0].line, 2);
            let keys: Vec<&str> = parsed.properties.iter().map(|p| p.key.as_str()).collect();
            assert_eq!(keys, vec!["ok", "after"], "the bad line is skipped");
        }
        let error = &parse_properties("k = \\u12G4").errors[0];
        assert_eq!(
            error.to_string(),
            "k: expected four hexadecimal digits after \\u, got \"\\u12G4\""
        );
        let error = &parse_properties("k\\u12 = v").errors[0];
        assert_eq!(error.key, "k\\u12", "a malformed key is shown as written");
    }

    #[test]
    fn unpaired_surrogates_are_errors() {
        for text in [
            "k = \\uD83D",
            "k = \\uD83Dx",
            "k = \\uDE00",
            "k = \\uD83D\\u0041",
        ] {
            let parsed = parse_properties(text);
            assert!(
                matches!(
                    parsed.errors.as_slice(),
                    [PropertiesError {
                        line: 1,
                        problem: EscapeProblem::UnpairedSurrogate { .. },
                        ..
                    }]
                ),
                "{text:?}: {:?}",
                parsed.errors
            );
        }
    }

    #[test]
    fn duplicates_are_listed_with_both_lines() {
        let parsed = parse_properties("a = 1\nb = 2\na = 3\na = 4");
        assert_eq!(
            find_duplicate_keys(&parsed.properties),
            vec![
                DuplicateKey {
                    key: "a".into(),
                    first_line: 1,
                    first_value: "1".into(),
                    line: 3,
                    value: "3".into(),
                },
                DuplicateKey {
                    key: "a".into(),
                    first_line: 1,
                    first_value: "1".into(),
                    line: 4,
                    value: "4".into(),
                },
            ]
        );
    }

    #[test]
    fn keys_that_differ_only_by_escaping_are_the_same_key() {
        let parsed = parse_properties("a\\u0062 = 1\nab = 2");
        assert_eq!(find_duplicate_keys(&parsed.properties).len(), 1);
    }
}
