//! Flume's interceptors take Java regular expressions; Millrace runs them with Rust's
//! `regex` crate, whose matching time is linear in the input (no catastrophic
//! backtracking on a hostile event). The two syntaxes agree on everything common
//! configurations use (classes, groups, named groups `(?<name>…)`, lazy quantifiers,
//! `\d \w \s \b`, anchors, inline flags). What Java has and `regex` lacks is refused when
//! the configuration is read, naming the key and the construct, so `channelctl validate`
//! reports it before anything runs.
//!
//! Differences that compile in both and match differently (documented in
//! docs/configuration.md): `\d`, `\w`, `\s` and `\b` are Unicode-aware here (ASCII in
//! Java); `.` excludes only `\n` (Java also excludes `\r`, `\u0085`, `\u2028`, `\u2029`);
//! `$` without `(?m)` matches only at the very end (Java also before a final line break).
//!
//! Java's replacement syntax (`Matcher.replaceAll`: `$1`, `${name}`, `\$`, `\\`) is
//! translated to the `regex` crate's (`${1}`, `${name}`, `$$`) by [`java_replacement`].

use regex::Regex;

/// A Java construct the `regex` crate does not support, found in a pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JavaOnlyConstruct {
    /// What it is ("a possessive quantifier").
    pub what: &'static str,
    /// The text found.
    pub found: String,
    /// Its byte offset in the pattern.
    pub offset: usize,
    /// What to write instead.
    pub instead: &'static str,
}

impl std::fmt::Display for JavaOnlyConstruct {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            formatter,
            "{} ({:?} at offset {}) is Java regex syntax that Millrace's linear-time regex \
             engine (Rust regex) does not support; {}",
            self.what, self.found, self.offset, self.instead
        )
    }
}

/// Group constructs `(?…` Java has and `regex` lacks.
const JAVA_ONLY_GROUPS: &[(&str, &str, &str)] = &[
    (
        "(?<=",
        "a lookbehind",
        "match the text and capture what you need instead",
    ),
    (
        "(?<!",
        "a negative lookbehind",
        "filter with a second interceptor (regex_filter with excludeEvents = true) instead",
    ),
    (
        "(?=",
        "a lookahead",
        "match the text and capture what you need instead",
    ),
    (
        "(?!",
        "a negative lookahead",
        "filter with a second interceptor (regex_filter with excludeEvents = true) instead",
    ),
    (
        "(?>",
        "an atomic group",
        "write a plain group (?:…); matching here never backtracks, so it is not needed",
    ),
];

/// Escapes `\X` Java has and `regex` lacks (or reads differently).
const JAVA_ONLY_ESCAPES: &[(char, &str, &str)] = &[
    (
        'Q',
        "a \\Q…\\E quotation",
        "escape each special character with \\ instead",
    ),
    (
        'E',
        "a \\Q…\\E quotation",
        "escape each special character with \\ instead",
    ),
    (
        'G',
        "the \\G anchor (end of the previous match)",
        "anchor with ^ instead",
    ),
    ('Z', "the \\Z anchor", "use \\z or $ instead"),
    (
        'h',
        "the \\h class (horizontal space)",
        "use [ \\t] instead",
    ),
    ('H', "the \\H class", "use [^ \\t] instead"),
    (
        'R',
        "the \\R line break matcher",
        "use (?:\\r\\n|\\n|\\r) instead",
    ),
    (
        'X',
        "the \\X grapheme matcher",
        "match the characters explicitly instead",
    ),
    (
        'k',
        "a named backreference",
        "capture the parts with regex_extractor and compare them in a script interceptor instead",
    ),
];

/// The first construct of `pattern` that is Java-only, if any.
pub fn find_java_only_construct(pattern: &str) -> Option<JavaOnlyConstruct> {
    let bytes = pattern.as_bytes();
    let mut in_class_depth = 0_usize;
    let mut index = 0;
    while index < bytes.len() {
        let byte = bytes[index];
        if byte == b'\\' {
            let Some(next) = pattern[index + 1..].chars().next() else {
                break;
            };
            if in_class_depth == 0 {
                if next.is_ascii_digit() && next != '0' {
                    return Some(JavaOnlyConstruct {
                        what: "a backreference",
                        found: format!("\\{next}"),
                        offset: index,
                        instead: "capture the parts with regex_extractor and compare them in a \
                                  script interceptor instead",
                    });
                }
                if let Some((_, what, instead)) = JAVA_ONLY_ESCAPES
                    .iter()
                    .find(|(escape, _, _)| *escape == next)
                {
                    return Some(JavaOnlyConstruct {
                        what,
                        found: format!("\\{next}"),
                        offset: index,
                        instead,
                    });
                }
            }
            index += 1 + next.len_utf8();
            continue;
        }
        match byte {
            b'[' => in_class_depth += 1,
            b']' if in_class_depth > 0 => in_class_depth -= 1,
            b'(' if in_class_depth == 0 => {
                let rest = &pattern[index..];
                if let Some((prefix, what, instead)) = JAVA_ONLY_GROUPS
                    .iter()
                    .find(|(prefix, _, _)| rest.starts_with(prefix))
                {
                    return Some(JavaOnlyConstruct {
                        what,
                        found: (*prefix).to_string(),
                        offset: index,
                        instead,
                    });
                }
            }
            b'*' | b'+' | b'?' | b'}'
                if in_class_depth == 0 && bytes.get(index + 1) == Some(&b'+') =>
            {
                // `(?+` is not a quantifier; neither is a `?` opening a group.
                let opens_group = byte == b'?' && index > 0 && bytes[index - 1] == b'(';
                if !opens_group {
                    return Some(JavaOnlyConstruct {
                        what: "a possessive quantifier",
                        found: pattern[index..index + 2].to_string(),
                        offset: index,
                        instead: "drop the trailing + (matching here never backtracks, so the \
                                  plain quantifier behaves the same)",
                    });
                }
            }
            _ => {}
        }
        index += 1;
    }
    None
}

/// Compiles a Java regular expression, or says why it cannot be run: the Java-only
/// construct it uses, or the `regex` crate's own message.
pub fn compile(pattern: &str) -> Result<regex::bytes::Regex, String> {
    refuse_java_only(pattern)?;
    regex::bytes::Regex::new(pattern).map_err(|error| explain(pattern, &error))
}

/// [`compile`] for matching text (header names) rather than bodies.
pub fn compile_text(pattern: &str) -> Result<Regex, String> {
    refuse_java_only(pattern)?;
    Regex::new(pattern).map_err(|error| explain(pattern, &error))
}

/// Some Java-only escapes mean something else here rather than failing to compile, so
/// every pattern is checked before it is compiled.
fn refuse_java_only(pattern: &str) -> Result<(), String> {
    match find_java_only_construct(pattern) {
        Some(construct) => Err(construct.to_string()),
        None => Ok(()),
    }
}

fn explain(pattern: &str, error: &regex::Error) -> String {
    match find_java_only_construct(pattern) {
        Some(construct) => construct.to_string(),
        None => format!("a regular expression that compiles ({error})"),
    }
}

/// Translates a Java replacement string (`Matcher.appendReplacement`) for a pattern
/// with `group_count` groups and these group names into the `regex` crate's syntax.
///
/// Java's rules, followed exactly: `\c` is the character `c`; `${name}` is a named
/// group; `$` followed by digits is a group number, read digit by digit for as long as
/// the number stays a group of the pattern (`$12` with 3 groups is group 1 then `2`).
/// A `$` followed by anything else, a trailing `\`, and a group the pattern does not
/// have are errors (Java throws them at the first match; here they are configuration
/// errors).
pub fn java_replacement(
    replacement: &str,
    group_count: usize,
    group_names: &[&str],
) -> Result<String, String> {
    let mut translated = String::with_capacity(replacement.len());
    let mut chars = replacement.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some('$') => translated.push_str("$$"),
                Some(escaped) => translated.push(escaped),
                None => {
                    return Err(
                        "a character after the final \\ (Java's \"character to be escaped is \
                         missing\")"
                            .to_string(),
                    )
                }
            },
            '$' => {
                match chars.peek().copied() {
                    Some('{') => {
                        chars.next();
                        let name: String = chars.by_ref().take_while(|&c| c != '}').collect();
                        if !group_names.contains(&name.as_str()) {
                            return Err(format!(
                                "${{{name}}} to name a group of searchPattern (it has {})",
                                describe_names(group_names)
                            ));
                        }
                        translated.push_str(&format!("${{{name}}}"));
                    }
                    Some(digit) if digit.is_ascii_digit() => {
                        chars.next();
                        let mut group = digit.to_digit(10).unwrap_or(0) as usize;
                        if group > group_count {
                            return Err(format!(
                            "${group} to name a group of searchPattern, which has {group_count} \
                             group(s) (Java's \"No group {group}\")"
                        ));
                        }
                        while let Some(next) = chars.peek().and_then(|c| c.to_digit(10)) {
                            let longer = group * 10 + next as usize;
                            if longer > group_count {
                                break;
                            }
                            group = longer;
                            chars.next();
                        }
                        translated.push_str(&format!("${{{group}}}"));
                    }
                    _ => return Err(
                        "a group number or ${name} after $ (write \\$ for a literal dollar sign; \
                         Java's \"Illegal group reference\")"
                            .to_string(),
                    ),
                }
            }
            other => translated.push(other),
        }
    }
    Ok(translated)
}

fn describe_names(names: &[&str]) -> String {
    if names.is_empty() {
        "no named groups".to_string()
    } else {
        format!("named groups {}", names.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn java_only_constructs_are_named_with_their_offset() {
        let cases = [
            ("a*+b", "a possessive quantifier", "*+", 1),
            ("x(?=y)", "a lookahead", "(?=", 1),
            ("(?<!x)y", "a negative lookbehind", "(?<!", 0),
            ("(a)\\1", "a backreference", "\\1", 3),
            ("(?>ab)", "an atomic group", "(?>", 0),
            ("\\Qa.b\\E", "a \\Q…\\E quotation", "\\Q", 0),
            ("a{2}+", "a possessive quantifier", "}+", 3),
        ];
        for (pattern, what, found, offset) in cases {
            let construct = find_java_only_construct(pattern).expect(pattern);
            assert_eq!(
                (construct.what, construct.found.as_str(), construct.offset),
                (what, found, offset),
                "{pattern}"
            );
            let message = compile(pattern).unwrap_err();
            assert!(message.contains(what), "{message}");
        }
    }

    #[test]
    fn constructs_shared_by_both_syntaxes_are_not_flagged() {
        for pattern in [
            "(?<name>\\d+)",
            "a+?",
            "[+*?]",
            "\\+\\+",
            "(\\d):(\\d):(\\d)",
            "^(?:\\n)?(\\d\\d\\d\\d-\\d\\d-\\d\\d\\s\\d\\d:\\d\\d)",
            "[\\\\1]",
        ] {
            assert_eq!(find_java_only_construct(pattern), None, "{pattern}");
            assert!(compile(pattern).is_ok(), "{pattern}");
        }
    }

    #[test]
    fn java_replacements_translate_groups_escapes_and_dollars() {
        assert_eq!(
            java_replacement("The hungry $2 ate the careless $1", 2, &[]).unwrap(),
            "The hungry ${2} ate the careless ${1}"
        );
        assert_eq!(java_replacement("$12", 3, &[]).unwrap(), "${1}2");
        assert_eq!(java_replacement("$12", 12, &[]).unwrap(), "${12}");
        assert_eq!(java_replacement("\\$1 \\\\", 1, &[]).unwrap(), "$$1 \\");
        assert_eq!(
            java_replacement("${year}", 1, &["year"]).unwrap(),
            "${year}"
        );
        assert!(java_replacement("$3", 2, &[])
            .unwrap_err()
            .contains("No group 3"));
        assert!(java_replacement("cost: $", 0, &[])
            .unwrap_err()
            .contains("Illegal group reference"));
        assert!(java_replacement("a\\", 0, &[])
            .unwrap_err()
            .contains("missing"));
        assert!(java_replacement("${nope}", 0, &[]).is_err());
    }
}
