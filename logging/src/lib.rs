//! Logging for Millrace's binaries: `tracing` to stderr, filtered by `RUST_LOG`, and
//! [`Untrusted`], the form every client-supplied text takes on its way into a log line.

#![warn(missing_docs)]

use std::fmt;
use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

/// Log filter when `RUST_LOG` is unset.
pub const DEFAULT_LOG_FILTER: &str = "info";

/// Sends logs to stderr (colours only on a terminal), filtered by `RUST_LOG`.
pub fn init_stderr_logging() {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_LOG_FILTER));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}

/// Text a client sent (its name in the `Hello`, a channel or component name), shown in a
/// log line so that it cannot forge or hide lines: control characters (newline, carriage
/// return, ESC and the rest of C0 and C1), Unicode's invisible format characters (bidi
/// overrides, zero-width spaces) and the backslash itself are written as Rust escapes
/// (`\n`, `\u{1b}`, `\\`), so what the log shows maps back to exactly one text. Printable
/// text, accented letters and other scripts included, is shown as it is.
///
/// `tracing-subscriber` escapes ESC but not newlines, so a raw `%name` could still start
/// a fake log line.
#[derive(Debug, Clone, Copy)]
pub struct Untrusted<'a>(pub &'a str);

impl fmt::Display for Untrusted<'_> {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        use fmt::Write as _;
        for character in self.0.chars() {
            match character {
                '\\' => formatter.write_str("\\\\")?,
                // Quotes are printable: `escape_debug` would escape them, the log need not.
                '"' | '\'' => formatter.write_char(character)?,
                _ => write!(formatter, "{}", character.escape_debug())?,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_and_format_characters_are_escaped_and_printable_text_is_kept() {
        let cases = [
            ("plain-client 1.0", "plain-client 1.0"),
            ("évent 中文 \"quoted\" it's", "évent 中文 \"quoted\" it's"),
            ("a\nWARN forged line", "a\\nWARN forged line"),
            ("\r\u{1b}[31mred\u{1b}[0m", "\\r\\u{1b}[31mred\\u{1b}[0m"),
            ("bidi\u{202e}txt.exe", "bidi\\u{202e}txt.exe"),
            (
                "zero\u{200b}width \u{85}next",
                "zero\\u{200b}width \\u{85}next",
            ),
            ("back\\slash\\n", "back\\\\slash\\\\n"),
            ("tab\tnul\0", "tab\\tnul\\0"),
        ];
        for (raw, shown) in cases {
            assert_eq!(Untrusted(raw).to_string(), shown, "{raw:?}");
        }
    }
}
