//! Readers for single values: integers, booleans, durations, percentages, lists, paths.
//!
//! Each reader takes a value that Flume's rules have already trimmed and returns either
//! the typed value or an [`Expected`]: a description of what would have been accepted.
//! The caller adds the file, line, key and the value seen, so every message reads
//! `FILE:LINE: KEY: expected WHAT, got "VALUE"`.
//!
//! Numbers follow Java's `Long.parseLong` (an optional `+` or `-`, then ASCII digits; no
//! underscores, no hex, no units) because that is what Flume calls. Unlike Flume, a value
//! outside the allowed range is never replaced by a default: it is an error.

use std::path::PathBuf;
use std::time::Duration;

use millrace_engine::config::{file_mode_is_acceptable, FILE_MODE_EXPECTED};

/// What a value should have looked like, e.g. "a positive integer".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expected(pub String);

impl Expected {
    /// A value that should have been `description`.
    pub fn new(description: impl Into<String>) -> Self {
        Expected(description.into())
    }
}

impl std::fmt::Display for Expected {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str(&self.0)
    }
}

/// Digit strings longer than this cannot fit an `i128`; they are out of every range.
const MAX_DECIMAL_DIGITS_IN_I128: usize = 38;

/// The most octal digits a file mode has (`0640`; a leading zero is optional).
const MAX_FILE_MODE_DIGITS: usize = 4;

/// Percentages are whole numbers from 0 to this.
const FULL_PERCENT: u8 = 100;

/// Java's `String.trim()`: removes every char at or below U+0020 from both ends. Flume
/// trims every key and value with it before use.
pub fn java_trim(text: &str) -> &str {
    text.trim_matches(|c: char| c <= ' ')
}

/// The separators of Java's regex `\s`, which Flume's space-separated lists split on.
fn is_java_regex_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\u{000B}' | '\u{000C}' | '\r')
}

/// Splits a Flume list (`a1.channels = c1 c2`) on runs of whitespace.
pub fn space_separated(value: &str) -> Vec<&str> {
    value
        .split(is_java_regex_space)
        .filter(|item| !item.is_empty())
        .collect()
}

/// An integer in Java's syntax; `None` when the text is not one. Values too long for an
/// `i128` come back as `i128::MAX` or `i128::MIN`, which every range check rejects.
fn java_integer(value: &str) -> Option<i128> {
    let (is_negative, digits) = match value.as_bytes().first() {
        Some(b'-') => (true, &value[1..]),
        Some(b'+') => (false, &value[1..]),
        _ => (false, value),
    };
    if digits.is_empty() || !digits.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    let significant = digits.trim_start_matches('0');
    if significant.len() > MAX_DECIMAL_DIGITS_IN_I128 {
        return Some(if is_negative { i128::MIN } else { i128::MAX });
    }
    let magnitude: i128 = if significant.is_empty() {
        0
    } else {
        significant.parse().ok()?
    };
    Some(if is_negative { -magnitude } else { magnitude })
}

/// An integer within `minimum..=maximum`. `description` names the accepted set, e.g.
/// "a positive integer"; a too-large value is told the upper bound as well.
fn integer_in_range(
    value: &str,
    minimum: i128,
    maximum: i128,
    description: &str,
) -> Result<i128, Expected> {
    match java_integer(value) {
        Some(number) if (minimum..=maximum).contains(&number) => Ok(number),
        Some(number) if number > maximum => Err(Expected::new(format!(
            "{description} no larger than {maximum}"
        ))),
        _ => Err(Expected::new(description)),
    }
}

fn to_u64(number: i128) -> u64 {
    u64::try_from(number).expect("range-checked to fit u64")
}

/// An integer of at least 1.
pub fn positive_integer(value: &str) -> Result<u64, Expected> {
    integer_in_range(value, 1, i128::from(u64::MAX), "a positive integer").map(to_u64)
}

/// An integer of at least 0.
pub fn non_negative_integer(value: &str) -> Result<u64, Expected> {
    integer_in_range(value, 0, i128::from(u64::MAX), "a non-negative integer").map(to_u64)
}

/// A Kafka partition number: a Java `int` of at least 0 (`defaultPartitionId`).
pub fn partition_number(value: &str) -> Result<i32, Expected> {
    match java_int(value) {
        Ok(partition) if partition >= 0 => Ok(partition),
        _ => Err(Expected::new("a partition number from 0 to 2147483647")),
    }
}

/// Any Java `int`.
pub fn java_int(value: &str) -> Result<i32, Expected> {
    integer_in_range(
        value,
        i128::from(i32::MIN),
        i128::from(i32::MAX),
        "an integer from -2147483648 to 2147483647",
    )
    .map(|number| i32::try_from(number).expect("range-checked to fit i32"))
}

/// A whole percentage from 0 to 100.
pub fn percentage(value: &str) -> Result<u8, Expected> {
    percentage_up_to(value, FULL_PERCENT)
}

/// A whole percentage from 0 to 99: used where 100 would leave nothing (Flume then
/// silently switches the byte limit off).
pub fn percentage_below_full(value: &str) -> Result<u8, Expected> {
    percentage_up_to(value, FULL_PERCENT - 1)
}

fn percentage_up_to(value: &str, maximum: u8) -> Result<u8, Expected> {
    let description = format!("a whole percentage from 0 to {maximum}");
    match java_integer(value) {
        Some(number) if (0..=i128::from(maximum)).contains(&number) => {
            Ok(u8::try_from(number).expect("range-checked to fit u8"))
        }
        _ => Err(Expected::new(description)),
    }
}

/// `true` or `false`, in any letter case. Java's `Boolean.valueOf` reads anything but
/// "true" as false; Millrace refuses anything but the two words.
pub fn boolean(value: &str) -> Result<bool, Expected> {
    if value.eq_ignore_ascii_case("true") {
        Ok(true)
    } else if value.eq_ignore_ascii_case("false") {
        Ok(false)
    } else {
        Err(Expected::new("true or false"))
    }
}

/// A whole number of seconds, at least 1.
pub fn positive_seconds(value: &str) -> Result<Duration, Expected> {
    integer_in_range(
        value,
        1,
        i128::from(u64::MAX),
        "a positive whole number of seconds",
    )
    .map(|seconds| Duration::from_secs(to_u64(seconds)))
}

/// A whole number of seconds, 0 allowed.
pub fn non_negative_seconds(value: &str) -> Result<Duration, Expected> {
    integer_in_range(
        value,
        0,
        i128::from(u64::MAX),
        "a non-negative whole number of seconds",
    )
    .map(|seconds| Duration::from_secs(to_u64(seconds)))
}

/// A whole number of milliseconds, at least 1.
pub fn positive_milliseconds(value: &str) -> Result<Duration, Expected> {
    integer_in_range(
        value,
        1,
        i128::from(u64::MAX),
        "a positive whole number of milliseconds",
    )
    .map(|millis| Duration::from_millis(to_u64(millis)))
}

/// A whole number of milliseconds, 0 allowed.
pub fn non_negative_milliseconds(value: &str) -> Result<Duration, Expected> {
    integer_in_range(
        value,
        0,
        i128::from(u64::MAX),
        "a non-negative whole number of milliseconds",
    )
    .map(|millis| Duration::from_millis(to_u64(millis)))
}

/// Permission bits in octal, as `chmod` takes them (`0600`, `640`), that the engine
/// accepts for data files ([`FILE_MODE_EXPECTED`]).
pub fn file_mode(value: &str) -> Result<u32, Expected> {
    let digits = value.strip_prefix("0o").unwrap_or(value);
    let octal = !digits.is_empty()
        && digits.len() <= MAX_FILE_MODE_DIGITS
        && digits.bytes().all(|byte| (b'0'..=b'7').contains(&byte));
    match u32::from_str_radix(digits, 8) {
        Ok(mode) if octal && file_mode_is_acceptable(mode) => Ok(mode),
        _ => Err(Expected::new(FILE_MODE_EXPECTED)),
    }
}

/// A directory path. Relative paths are relative to the working directory, as in Flume;
/// nothing is expanded (`~` and `$HOME` are literal text).
pub fn directory(value: &str) -> Result<PathBuf, Expected> {
    if value.is_empty() {
        return Err(Expected::new("a directory path"));
    }
    Ok(PathBuf::from(value))
}

/// Flume's `dataDirs`: a comma-separated list, each entry trimmed. Flume drops empty
/// entries silently; Millrace refuses them.
pub fn directory_list(value: &str) -> Result<Vec<PathBuf>, Expected> {
    let entries: Vec<&str> = value.split(',').map(java_trim).collect();
    if entries.iter().any(|entry| entry.is_empty()) {
        return Err(Expected::new(
            "a comma-separated list of directories without empty entries",
        ));
    }
    Ok(entries.into_iter().map(PathBuf::from).collect())
}

/// What [`port_number`] accepts.
pub const PORT_NUMBER_EXPECTED: &str = "a port number from 0 to 65535";

/// A TCP/UDP port number from 0 to 65535.
pub fn port_number(value: &str) -> Result<u16, Expected> {
    non_negative_integer(value)
        .ok()
        .and_then(|port| u16::try_from(port).ok())
        .ok_or_else(|| Expected::new(PORT_NUMBER_EXPECTED))
}

/// A single word without whitespace (a component name, a header name).
pub fn single_word(value: &str, description: &str) -> Result<String, Expected> {
    match space_separated(value).as_slice() {
        [word] => Ok((*word).to_string()),
        _ => Err(Expected::new(description)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_follow_java_parse_long() {
        assert_eq!(positive_integer("42"), Ok(42));
        assert_eq!(positive_integer("+42"), Ok(42));
        assert_eq!(positive_integer("007"), Ok(7));
        assert_eq!(non_negative_integer("0"), Ok(0));
        assert_eq!(non_negative_integer("-0"), Ok(0));
        for bad in [
            "", "+", "-", "ten", "1_000", "0x10", "1e3", "1.5", "1 000", "١٢",
        ] {
            assert!(positive_integer(bad).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn out_of_range_integers_are_refused_with_the_bound() {
        assert_eq!(
            positive_integer("0"),
            Err(Expected::new("a positive integer"))
        );
        assert_eq!(
            positive_integer("-3"),
            Err(Expected::new("a positive integer"))
        );
        assert_eq!(
            positive_integer("18446744073709551616"),
            Err(Expected::new(
                "a positive integer no larger than 18446744073709551615"
            ))
        );
        assert!(positive_integer(&"9".repeat(60)).is_err());
        assert_eq!(positive_integer("18446744073709551615"), Ok(u64::MAX));
        assert_eq!(java_int("-2147483648"), Ok(i32::MIN));
        assert!(java_int("2147483648").is_err());
    }

    #[test]
    fn file_modes_are_octal_data_file_modes() {
        assert_eq!(file_mode("0600"), Ok(0o600));
        assert_eq!(file_mode("640"), Ok(0o640));
        assert_eq!(file_mode("0o644"), Ok(0o644));
        for bad in [
            "", "0", "600x", "0800", "0700", "0400", "4600", "1600", "-600", "rw",
        ] {
            assert_eq!(
                file_mode(bad),
                Err(Expected::new(FILE_MODE_EXPECTED)),
                "{bad:?} should be refused"
            );
        }
    }

    #[test]
    fn booleans_are_exactly_true_or_false_in_any_case() {
        assert_eq!(boolean("TRUE"), Ok(true));
        assert_eq!(boolean("False"), Ok(false));
        for bad in ["yes", "1", "on", "truee", ""] {
            assert_eq!(boolean(bad), Err(Expected::new("true or false")));
        }
    }

    #[test]
    fn percentages_are_whole_and_bounded() {
        assert_eq!(percentage("100"), Ok(100));
        assert_eq!(percentage_below_full("99"), Ok(99));
        assert_eq!(
            percentage_below_full("100"),
            Err(Expected::new("a whole percentage from 0 to 99"))
        );
        assert!(percentage("12.5").is_err());
        assert!(percentage("-1").is_err());
    }

    #[test]
    fn durations_carry_their_unit() {
        assert_eq!(non_negative_seconds("0"), Ok(Duration::ZERO));
        assert_eq!(positive_seconds("3"), Ok(Duration::from_secs(3)));
        assert_eq!(
            positive_milliseconds("30000"),
            Ok(Duration::from_millis(30_000))
        );
        assert_eq!(
            positive_milliseconds("0"),
            Err(Expected::new("a positive whole number of milliseconds"))
        );
    }

    #[test]
    fn lists_split_like_flume() {
        assert_eq!(
            space_separated(" c1 \t c2\u{000B}c3 "),
            vec!["c1", "c2", "c3"]
        );
        assert_eq!(
            directory_list(" /a , /b,/c "),
            Ok(vec![
                PathBuf::from("/a"),
                PathBuf::from("/b"),
                PathBuf::from("/c")
            ])
        );
        assert!(directory_list("/a,,/b").is_err());
        assert!(directory_list("/a,").is_err());
    }

    #[test]
    fn java_trim_removes_control_characters_too() {
        assert_eq!(java_trim("\u{0001} v \t\r\n"), "v");
        assert_eq!(java_trim("\u{00A0}v"), "\u{00A0}v");
    }
}
