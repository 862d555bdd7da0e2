//! `channelctl peek`: the events at the head of a live channel, with headers and body,
//! without taking them (the server's `Peek` request: no transaction, nothing changes).
//!
//! A body is shown as text when it is UTF-8 without control characters other than tab,
//! else as hex (`--hex` forces hex), so what is printed is never a terminal escape.

use std::io::Write;

use clap::Args;
use millrace_client::{Client, Event};
use serde_json::{json, Value};

use super::{ChannelctlError, ServerArgs};

/// Events shown when `--max` is not given.
pub const DEFAULT_PEEK_EVENTS: u32 = 10;

/// `channelctl peek`.
#[derive(Debug, Args)]
pub struct PeekArgs {
    /// The server, channel and token to use.
    #[command(flatten)]
    pub server: ServerArgs,

    /// At most this many events from the head (the server may return fewer: what one
    /// response frame carries).
    #[arg(long, value_name = "N", default_value_t = DEFAULT_PEEK_EVENTS,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub max: u32,

    /// Show every body as hex, even text.
    #[arg(long)]
    pub hex: bool,

    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// How a body is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyEncoding {
    /// UTF-8 text, printable.
    Text,
    /// Lowercase hex, two digits a byte.
    Hex,
}

impl BodyEncoding {
    fn name(self) -> &'static str {
        match self {
            BodyEncoding::Text => "text",
            BodyEncoding::Hex => "hex",
        }
    }
}

/// A body as shown: text when it is printable UTF-8 (and hex is not forced), else hex.
pub fn show_body(body: &[u8], force_hex: bool) -> (BodyEncoding, String) {
    match std::str::from_utf8(body) {
        Ok(text) if !force_hex && !text.chars().any(|c| c.is_control() && c != '\t') => {
            (BodyEncoding::Text, text.to_string())
        }
        _ => (
            BodyEncoding::Hex,
            body.iter().map(|byte| format!("{byte:02x}")).collect(),
        ),
    }
}

/// Header text with control characters escaped, so a header cannot forge lines.
fn printable(text: &str) -> String {
    text.chars().flat_map(char::escape_debug).collect()
}

/// The text for people: one block per event, numbered from the head.
pub fn render_text(channel: &str, events: &[Event], force_hex: bool) -> String {
    let mut text = format!("channel {channel}: {} event(s) at the head\n", events.len());
    for (index, event) in events.iter().enumerate() {
        text.push_str(&format!("#{}\n", index + 1));
        for (name, value) in &event.headers {
            text.push_str(&format!("  {}: {}\n", printable(name), printable(value)));
        }
        let (encoding, body) = show_body(&event.body, force_hex);
        text.push_str(&format!("  body ({}): {body}\n", encoding.name()));
    }
    text
}

/// The JSON: `{"channel":"c1","events":[{"headers":[["k","v"]],"body":"…","body_encoding":"text"}]}`;
/// headers in their order, as pairs (a name may repeat).
pub fn render_json(channel: &str, events: &[Event], force_hex: bool) -> Value {
    let events: Vec<Value> = events
        .iter()
        .map(|event| {
            let (encoding, body) = show_body(&event.body, force_hex);
            json!({
                "headers": event.headers,
                "body": body,
                "body_encoding": encoding.name(),
            })
        })
        .collect();
    json!({ "channel": channel, "events": events })
}

/// Prints the events at the head of the channel.
pub(super) async fn run(args: &PeekArgs) -> Result<(), ChannelctlError> {
    let server = &args.server;
    let mut client = Client::connect(server.client_options()).await?;
    let channel = server.channel.as_str();
    let events = client.peek(channel, args.max).await?;
    let text = if args.json {
        format!("{}\n", render_json(channel, &events, args.hex))
    } else {
        render_text(channel, &events, args.hex)
    };
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
        .map_err(ChannelctlError::stdout)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn printable_utf8_is_text_and_the_rest_is_hex() {
        assert_eq!(
            show_body(b"hello\tworld", false),
            (BodyEncoding::Text, "hello\tworld".into())
        );
        assert_eq!(
            show_body(b"\x1b[2J", false),
            (BodyEncoding::Hex, "1b5b324a".into())
        );
        assert_eq!(
            show_body(&[0xff, 0x00], false),
            (BodyEncoding::Hex, "ff00".into())
        );
        assert_eq!(show_body(b"ok", true), (BodyEncoding::Hex, "6f6b".into()));
    }
}
