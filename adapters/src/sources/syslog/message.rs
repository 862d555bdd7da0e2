//! One syslog message to one event, with the headers Flume's `SyslogUtils` sets.
//!
//! - `<PRI>` gives `Facility` (PRI / 8) and `Severity` (PRI % 8). A message that does
//!   not start with `<` and one to three digits and `>` is `Invalid`: its whole text is
//!   the body, `Facility` and `Severity` are `0`, and `flume.syslog.status = Invalid`.
//! - The rest is matched against RFC 5424 (`<PRI>VERSION TIMESTAMP HOST REST`) and then
//!   RFC 3164 (`<PRI>Mmm dd hh:mm:ss HOST REST`). A match adds `timestamp` (epoch
//!   milliseconds), `host`, `priority` and `version` headers, and the body is `REST` —
//!   the message without its PRI and header — unless `keepFields` keeps some fields
//!   (prepended in the order PRI, version, timestamp, host) or all of them (the message
//!   as received). No match leaves the whole message as the body.
//! - A message cut at `eventSize` bytes is marked `flume.syslog.status = Incomplete`.
//!
//! RFC 3164 timestamps have no year: the current one is used, then moved back a year
//! when that puts the time more than a month ahead, or forward one when it puts it more
//! than eleven months behind (Flume's rolling window). Times without a zone are local
//! time, as in Flume.

use std::sync::LazyLock;

use chrono::{DateTime, Datelike, FixedOffset, Local, Months, NaiveDate, NaiveDateTime, TimeZone};
use millrace_client::Event;
use regex::bytes::{Captures, Regex};

/// Header holding the facility (`PRI / 8`).
pub const FACILITY_HEADER: &str = "Facility";
/// Header holding the severity (`PRI % 8`).
pub const SEVERITY_HEADER: &str = "Severity";
/// Header holding the message time in epoch milliseconds.
pub const TIMESTAMP_HEADER: &str = "timestamp";
/// Header holding the sender's host name from the message.
pub const HOST_HEADER: &str = "host";
/// Header holding the PRI digits as received.
pub const PRIORITY_HEADER: &str = "priority";
/// Header holding the RFC 5424 version.
pub const VERSION_HEADER: &str = "version";
/// Header marking a message that could not be parsed or was cut.
pub const STATUS_HEADER: &str = "flume.syslog.status";

/// `<PRI>VERSION TIMESTAMP HOST REST`, where TIMESTAMP and HOST may be `-`.
static RFC5424: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(?s-u)^<(\d{1,3})>(?:(\d?)\s?)(?:(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,6})?(?:[+-]\d{2}:\d{2}|Z)?)|-)\s(?:(\w[\w.@\-]*)|-)\s(.*)$",
    )
    .expect("valid RFC 5424 pattern")
});

/// `<PRI>Mmm dd hh:mm:ss HOST REST` (a one-digit day is padded with a space).
static RFC3164: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(?s-u)^<(\d{1,3})>(?:(\d)?\s?)([A-Z][a-z][a-z]\s{1,2}\d{1,2}\s\d{2}:\d{2}:\d{2})\s(\w[\w.@\-]*)\s(.*)$",
    )
    .expect("valid RFC 3164 pattern")
});

/// The fields of the syslog header `keepFields` can keep in the body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct KeptFields {
    /// `<PRI>`.
    pub priority: bool,
    /// The RFC 5424 version.
    pub version: bool,
    /// The timestamp as written in the message.
    pub timestamp: bool,
    /// The host name.
    pub hostname: bool,
}

/// What of the syslog header stays in the event body (`keepFields`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum KeepFields {
    /// `none` (or `false`): the body is the message without PRI and header.
    #[default]
    None,
    /// `all` (or `true`): the body is the message as received.
    All,
    /// A space-separated list of `priority version timestamp hostname`.
    Some(KeptFields),
}

impl KeepFields {
    /// Reads a `keepFields` value; the error names the word not understood.
    pub fn parse(value: &str) -> Result<KeepFields, String> {
        let lowered = value.trim().to_ascii_lowercase();
        match lowered.as_str() {
            "none" | "false" => return Ok(KeepFields::None),
            "all" | "true" => return Ok(KeepFields::All),
            _ => {}
        }
        let mut kept = KeptFields::default();
        for word in lowered.split_whitespace() {
            match word {
                "priority" => kept.priority = true,
                "version" => kept.version = true,
                "timestamp" => kept.timestamp = true,
                "hostname" => kept.hostname = true,
                other => return Err(other.to_string()),
            }
        }
        Ok(KeepFields::Some(kept))
    }
}

/// Why a message carries a `flume.syslog.status` header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyslogStatus {
    /// No valid `<PRI>`.
    Invalid,
    /// Cut at `eventSize`.
    Incomplete,
}

impl SyslogStatus {
    /// Flume's header value.
    pub fn header_value(self) -> &'static str {
        match self {
            SyslogStatus::Invalid => "Invalid",
            SyslogStatus::Incomplete => "Incomplete",
        }
    }
}

/// One parsed message: the event and whether it was flagged.
#[derive(Debug, Clone, PartialEq)]
pub struct ParsedMessage {
    /// The event to deliver.
    pub event: Event,
    /// `Invalid` or `Incomplete`, when so.
    pub status: Option<SyslogStatus>,
}

/// Turns the bytes of one message (`truncated` when cut at `eventSize`) into an event,
/// taking `now` as the current time for RFC 3164's missing year.
pub fn parse_message(
    raw: &[u8],
    truncated: bool,
    keep: KeepFields,
    now: DateTime<Local>,
) -> ParsedMessage {
    let Some(priority) = leading_priority(raw) else {
        let event = Event::new(raw.to_vec())
            .with_header(FACILITY_HEADER, "0")
            .with_header(SEVERITY_HEADER, "0")
            .with_header(STATUS_HEADER, SyslogStatus::Invalid.header_value());
        return ParsedMessage {
            event,
            status: Some(SyslogStatus::Invalid),
        };
    };
    let mut headers = vec![
        (FACILITY_HEADER.to_string(), (priority / 8).to_string()),
        (SEVERITY_HEADER.to_string(), (priority % 8).to_string()),
    ];
    let mut body = None;
    let matchable = without_final_line_terminator(raw);
    if let Some(header) = match_header(matchable, now) {
        headers.push((PRIORITY_HEADER.to_string(), header.priority.clone()));
        if let Some(version) = header.version.as_ref().filter(|text| !text.is_empty()) {
            headers.push((VERSION_HEADER.to_string(), version.clone()));
        }
        if let Some(millis) = header.timestamp_ms {
            headers.push((TIMESTAMP_HEADER.to_string(), millis.to_string()));
        }
        if let Some(host) = &header.host {
            headers.push((HOST_HEADER.to_string(), host.clone()));
        }
        body = Some(header.body_with_kept_fields(keep));
    }
    let status = truncated.then_some(SyslogStatus::Incomplete);
    if let Some(status) = status {
        headers.push((STATUS_HEADER.to_string(), status.header_value().to_string()));
    }
    let body = match (keep, body) {
        (KeepFields::All, _) | (_, None) => raw.to_vec(),
        (_, Some(body)) if body.is_empty() => raw.to_vec(),
        (_, Some(body)) => body,
    };
    let mut event = Event::new(body);
    event.headers = headers;
    ParsedMessage { event, status }
}

/// The PRI value when `raw` starts with `<`, one to three digits and `>`.
fn leading_priority(raw: &[u8]) -> Option<u16> {
    let rest = raw.strip_prefix(b"<")?;
    let digits = rest.iter().take_while(|byte| byte.is_ascii_digit()).count();
    if !(1..=3).contains(&digits) || rest.get(digits) != Some(&b'>') {
        return None;
    }
    std::str::from_utf8(&rest[..digits]).ok()?.parse().ok()
}

/// `raw` without one final `\r\n`, `\n` or `\r` (Java's `$` matches before it).
fn without_final_line_terminator(raw: &[u8]) -> &[u8] {
    raw.strip_suffix(b"\r\n")
        .or_else(|| raw.strip_suffix(b"\n"))
        .or_else(|| raw.strip_suffix(b"\r"))
        .unwrap_or(raw)
}

/// The header fields of a message that matched RFC 5424 or RFC 3164.
#[derive(Debug)]
struct MatchedHeader {
    priority: String,
    version: Option<String>,
    timestamp_text: Option<String>,
    timestamp_ms: Option<i64>,
    host: Option<String>,
    rest: Vec<u8>,
}

impl MatchedHeader {
    /// The body: the rest of the message, with the kept fields in front.
    fn body_with_kept_fields(&self, keep: KeepFields) -> Vec<u8> {
        let KeepFields::Some(kept) = keep else {
            return self.rest.clone();
        };
        let mut prefix = String::new();
        if kept.priority {
            prefix.push_str(&format!("<{}>", self.priority));
        }
        if kept.version {
            if let Some(version) = self.version.as_ref().filter(|text| !text.is_empty()) {
                prefix.push_str(version);
                prefix.push(' ');
            }
        }
        if kept.timestamp {
            prefix.push_str(self.timestamp_text.as_deref().unwrap_or("-"));
            prefix.push(' ');
        }
        if kept.hostname {
            prefix.push_str(self.host.as_deref().unwrap_or("-"));
            prefix.push(' ');
        }
        let mut body = prefix.into_bytes();
        body.extend_from_slice(&self.rest);
        body
    }
}

fn ascii_group(captures: &Captures<'_>, index: usize) -> Option<String> {
    captures
        .get(index)
        .map(|group| String::from_utf8_lossy(group.as_bytes()).into_owned())
}

fn match_header(message: &[u8], now: DateTime<Local>) -> Option<MatchedHeader> {
    if let Some(captures) = RFC5424.captures(message) {
        let timestamp_text = ascii_group(&captures, 3);
        return Some(MatchedHeader {
            priority: ascii_group(&captures, 1)?,
            version: ascii_group(&captures, 2),
            timestamp_ms: timestamp_text.as_deref().and_then(rfc5424_epoch_ms),
            timestamp_text,
            host: ascii_group(&captures, 4),
            rest: captures.get(5)?.as_bytes().to_vec(),
        });
    }
    let captures = RFC3164.captures(message)?;
    let timestamp_text = ascii_group(&captures, 3);
    Some(MatchedHeader {
        priority: ascii_group(&captures, 1)?,
        version: ascii_group(&captures, 2),
        timestamp_ms: timestamp_text
            .as_deref()
            .and_then(|text| rfc3164_epoch_ms(text, now)),
        timestamp_text,
        host: ascii_group(&captures, 4),
        rest: captures.get(5)?.as_bytes().to_vec(),
    })
}

/// `2003-10-11T22:14:15.003Z`, `…+02:00`, or without a zone (local time).
fn rfc5424_epoch_ms(text: &str) -> Option<i64> {
    if let Ok(zoned) = DateTime::<FixedOffset>::parse_from_rfc3339(text) {
        return Some(zoned.timestamp_millis());
    }
    let naive = NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f").ok()?;
    local_epoch_ms(naive)
}

fn local_epoch_ms(naive: NaiveDateTime) -> Option<i64> {
    Local
        .from_local_datetime(&naive)
        .earliest()
        .map(|time| time.timestamp_millis())
}

const MONTH_ABBREVIATIONS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// `Oct 11 22:14:15` (or `Oct  1 …`) in local time, in the year that puts it within
/// eleven months before and one month after `now`.
fn rfc3164_epoch_ms(text: &str, now: DateTime<Local>) -> Option<i64> {
    let mut parts = text.split_whitespace();
    let month_name = parts.next()?;
    let day: u32 = parts.next()?.parse().ok()?;
    let time = chrono::NaiveTime::parse_from_str(parts.next()?, "%H:%M:%S").ok()?;
    let month = MONTH_ABBREVIATIONS
        .iter()
        .position(|name| *name == month_name)?;
    let month = u32::try_from(month).ok()? + 1;
    let at_year = |year: i32| {
        NaiveDate::from_ymd_opt(year, month, day)
            .and_then(|date| Local.from_local_datetime(&date.and_time(time)).earliest())
    };
    let this_year = at_year(now.year())?;
    let chosen = if this_year > now && this_year.checked_sub_months(Months::new(1))? > now {
        at_year(now.year() - 1)?
    } else if this_year < now && this_year.checked_add_months(Months::new(11))? < now {
        at_year(now.year() + 1)?
    } else {
        this_year
    };
    Some(chosen.timestamp_millis())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at_local(
        year: i32,
        month: u32,
        day: u32,
        hour: u32,
        minute: u32,
        second: u32,
    ) -> DateTime<Local> {
        Local
            .with_ymd_and_hms(year, month, day, hour, minute, second)
            .earliest()
            .unwrap()
    }

    fn parse(raw: &str) -> ParsedMessage {
        parse_message(
            raw.as_bytes(),
            false,
            KeepFields::None,
            at_local(2024, 6, 1, 12, 0, 0),
        )
    }

    fn body(parsed: &ParsedMessage) -> String {
        String::from_utf8(parsed.event.body.to_vec()).unwrap()
    }

    #[test]
    fn an_rfc5424_message_gives_facility_severity_timestamp_host_and_the_rest_as_body() {
        // RFC 5424 section 6.5, example 1.
        let parsed = parse(
            "<34>1 2003-10-11T22:14:15.003Z mymachine.example.com su - ID47 - 'su root' failed for lonvick on /dev/pts/8",
        );
        let event = &parsed.event;
        assert_eq!(event.header(FACILITY_HEADER), Some("4"));
        assert_eq!(event.header(SEVERITY_HEADER), Some("2"));
        assert_eq!(event.header(TIMESTAMP_HEADER), Some("1065910455003"));
        assert_eq!(event.header(HOST_HEADER), Some("mymachine.example.com"));
        assert_eq!(event.header(PRIORITY_HEADER), Some("34"));
        assert_eq!(event.header(VERSION_HEADER), Some("1"));
        assert_eq!(event.header(STATUS_HEADER), None);
        assert_eq!(parsed.status, None);
        assert_eq!(
            body(&parsed),
            "su - ID47 - 'su root' failed for lonvick on /dev/pts/8"
        );
    }

    #[test]
    fn rfc5424_timestamps_honour_their_zone_offset_and_microseconds_are_cut_to_milliseconds() {
        // RFC 5424 section 6.5, example 2.
        let parsed = parse(
            "<165>1 2003-08-24T05:14:15.000003-07:00 192.0.2.1 myproc 8710 - - %% It's time to make the do-nuts.",
        );
        assert_eq!(parsed.event.header(FACILITY_HEADER), Some("20"));
        assert_eq!(parsed.event.header(SEVERITY_HEADER), Some("5"));
        assert_eq!(parsed.event.header(TIMESTAMP_HEADER), Some("1061727255000"));
        assert_eq!(parsed.event.header(HOST_HEADER), Some("192.0.2.1"));
        assert_eq!(
            body(&parsed),
            "myproc 8710 - - %% It's time to make the do-nuts."
        );
    }

    #[test]
    fn an_rfc5424_message_with_nil_timestamp_and_host_has_neither_header() {
        let parsed = parse("<13>1 - - app - - - hello");
        assert_eq!(parsed.event.header(TIMESTAMP_HEADER), None);
        assert_eq!(parsed.event.header(HOST_HEADER), None);
        assert_eq!(body(&parsed), "app - - - hello");
    }

    #[test]
    fn an_rfc3164_message_gets_the_current_year_in_local_time() {
        // RFC 3164 section 5.4, example 1.
        let parsed =
            parse("<34>Oct 11 22:14:15 mymachine su: 'su root' failed for lonvick on /dev/pts/8");
        let expected = at_local(2023, 10, 11, 22, 14, 15).timestamp_millis();
        // October is more than a month after June 1st: it was last year's October.
        assert_eq!(
            parsed.event.header(TIMESTAMP_HEADER),
            Some(expected.to_string().as_str())
        );
        assert_eq!(parsed.event.header(HOST_HEADER), Some("mymachine"));
        assert_eq!(parsed.event.header(FACILITY_HEADER), Some("4"));
        assert_eq!(parsed.event.header(SEVERITY_HEADER), Some("2"));
        assert_eq!(
            body(&parsed),
            "su: 'su root' failed for lonvick on /dev/pts/8"
        );
    }

    #[test]
    fn rfc3164_years_roll_within_eleven_months_back_and_one_month_ahead() {
        let june = at_local(2024, 6, 1, 12, 0, 0);
        let stamp = |text: &str, now| rfc3164_epoch_ms(text, now).unwrap();
        assert_eq!(
            stamp("Jun 20 08:00:00", june),
            at_local(2024, 6, 20, 8, 0, 0).timestamp_millis()
        );
        assert_eq!(
            stamp("Dec 31 23:59:59", at_local(2025, 1, 1, 0, 0, 10)),
            at_local(2024, 12, 31, 23, 59, 59).timestamp_millis()
        );
        assert_eq!(
            stamp("Jan  1 00:00:05", at_local(2024, 12, 31, 23, 59, 0)),
            at_local(2025, 1, 1, 0, 0, 5).timestamp_millis()
        );
    }

    #[test]
    fn a_message_without_a_valid_priority_is_invalid_and_kept_whole() {
        for raw in [
            "hello world",
            "<>hello",
            "<1234>x",
            "<1a>x",
            "Oct 11 22:14:15 host msg",
        ] {
            let parsed = parse(raw);
            assert_eq!(parsed.status, Some(SyslogStatus::Invalid), "{raw}");
            assert_eq!(parsed.event.header(STATUS_HEADER), Some("Invalid"));
            assert_eq!(parsed.event.header(FACILITY_HEADER), Some("0"));
            assert_eq!(parsed.event.header(SEVERITY_HEADER), Some("0"));
            assert_eq!(body(&parsed), raw);
        }
    }

    #[test]
    fn a_valid_priority_with_an_unknown_header_keeps_the_whole_message_as_body() {
        let parsed = parse("<13>just some text");
        assert_eq!(parsed.status, None);
        assert_eq!(parsed.event.header(FACILITY_HEADER), Some("1"));
        assert_eq!(parsed.event.header(SEVERITY_HEADER), Some("5"));
        assert_eq!(parsed.event.header(HOST_HEADER), None);
        assert_eq!(body(&parsed), "<13>just some text");
    }

    #[test]
    fn a_truncated_message_is_marked_incomplete_but_still_parsed() {
        let parsed = parse_message(
            b"<13>Oct 11 22:14:15 host the beginn",
            true,
            KeepFields::None,
            at_local(2024, 6, 1, 12, 0, 0),
        );
        assert_eq!(parsed.status, Some(SyslogStatus::Incomplete));
        assert_eq!(parsed.event.header(STATUS_HEADER), Some("Incomplete"));
        assert_eq!(parsed.event.header(HOST_HEADER), Some("host"));
        assert_eq!(body(&parsed), "the beginn");
    }

    #[test]
    fn keep_fields_all_keeps_the_message_and_a_list_prepends_the_chosen_fields() {
        let raw = "<34>1 2003-10-11T22:14:15.003Z mymachine.example.com su - - - failed";
        let now = at_local(2024, 6, 1, 12, 0, 0);
        let all = parse_message(raw.as_bytes(), false, KeepFields::All, now);
        assert_eq!(body(&all), raw);
        assert_eq!(all.event.header(HOST_HEADER), Some("mymachine.example.com"));
        let some = parse_message(
            raw.as_bytes(),
            false,
            KeepFields::parse("hostname priority").unwrap(),
            now,
        );
        assert_eq!(body(&some), "<34>mymachine.example.com su - - - failed");
    }

    #[test]
    fn keep_fields_reads_flume_words_and_names_an_unknown_one() {
        assert_eq!(KeepFields::parse("none"), Ok(KeepFields::None));
        assert_eq!(KeepFields::parse("false"), Ok(KeepFields::None));
        assert_eq!(KeepFields::parse("ALL"), Ok(KeepFields::All));
        assert_eq!(
            KeepFields::parse("timestamp version"),
            Ok(KeepFields::Some(KeptFields {
                timestamp: true,
                version: true,
                ..KeptFields::default()
            }))
        );
        assert_eq!(
            KeepFields::parse("hostname facility"),
            Err("facility".to_string())
        );
    }

    #[test]
    fn a_final_carriage_return_stays_out_of_the_parsed_body() {
        let parsed = parse("<13>Oct 11 22:14:15 host text\r");
        assert_eq!(body(&parsed), "text");
    }
}
