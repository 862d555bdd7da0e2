//! What `top` shows: a screen of tables on a terminal, `key=value` lines otherwise.

use std::io::Write;
use std::time::SystemTime;

use comfy_table::presets::NOTHING;
use comfy_table::{CellAlignment, Table};
use crossterm::style::{Attribute, Print, SetAttribute};
use crossterm::{cursor, queue, terminal};

use super::reading::{Reading, ReadingError};
use super::ChannelView;

/// The eight heights of a sparkline cell.
const SPARK_LEVELS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
const MICROS_PER_MILLI: f64 = 1_000.0;
const PERCENT: f64 = 100.0;

/// How a screen line is drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    /// As is.
    Plain,
    /// Bold: titles and table headers.
    Heading,
    /// Reverse video: problems.
    Alert,
}

/// One line of the terminal screen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    /// The text (one terminal row; cut to the width when drawn).
    pub text: String,
    /// How to draw it.
    pub style: Style,
}

impl Line {
    fn new(text: impl Into<String>, style: Style) -> Line {
        Line {
            text: text.into(),
            style,
        }
    }
}

fn time_of_day(wall: SystemTime) -> String {
    // RFC 3339 in UTC: 2026-01-01T12:00:00Z -> 12:00:00
    let stamp = humantime::format_rfc3339_seconds(wall).to_string();
    stamp
        .get(11..19)
        .map_or_else(|| stamp.clone(), str::to_string)
}

fn rate_text(rate: Option<f64>) -> String {
    match rate {
        None => "-".to_string(),
        Some(rate) if rate >= 10_000.0 => format!("{:.1}k", rate / 1_000.0),
        Some(rate) if rate > 0.0 && rate < 10.0 => format!("{rate:.1}"),
        Some(rate) => format!("{rate:.0}"),
    }
}

fn millis_text(micros: Option<f64>) -> String {
    micros.map_or_else(
        || "-".to_string(),
        |micros| format!("{:.2} ms", micros / MICROS_PER_MILLI),
    )
}

/// Bytes with a binary unit: `512 B`, `1.5 MiB`, `48.2 GiB`.
pub fn bytes_text(bytes: Option<u64>) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let Some(bytes) = bytes else {
        return "-".to_string();
    };
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

fn fill_percent(size: u64, capacity: u64) -> f64 {
    if capacity == 0 {
        0.0
    } else {
        size as f64 * PERCENT / capacity as f64
    }
}

/// A sparkline of `samples`, scaled to their peak.
pub fn sparkline(samples: &[f64]) -> String {
    let peak = samples.iter().copied().fold(0.0_f64, f64::max);
    samples
        .iter()
        .map(|sample| {
            if peak <= 0.0 {
                SPARK_LEVELS[0]
            } else {
                let level = (sample / peak * (SPARK_LEVELS.len() - 1) as f64).round() as usize;
                SPARK_LEVELS[level.min(SPARK_LEVELS.len() - 1)]
            }
        })
        .collect()
}

fn table(header: &[&str], right_aligned: &[usize], rows: Vec<Vec<String>>) -> Vec<Line> {
    let mut table = Table::new();
    table.load_style(NOTHING).set_header(header.to_vec());
    for row in rows {
        table.add_row(row);
    }
    for index in right_aligned {
        if let Some(column) = table.column_mut(*index) {
            column.set_cell_alignment(CellAlignment::Right);
        }
    }
    table
        .lines()
        .enumerate()
        .map(|(index, text)| {
            Line::new(
                text,
                if index == 0 {
                    Style::Heading
                } else {
                    Style::Plain
                },
            )
        })
        .collect()
}

/// The terminal screen for a reading.
pub fn screen(address: &str, reading: &Reading, views: &[ChannelView<'_>]) -> Vec<Line> {
    let mut lines = vec![Line::new(
        format!(
            "channeld {} at {address}   status {}   phase {}   {} UTC   q quits",
            reading.version,
            reading.status,
            reading.phase,
            time_of_day(reading.wall)
        ),
        Style::Heading,
    )];
    for reason in &reading.reasons {
        lines.push(Line::new(format!("! {reason}"), Style::Alert));
    }
    lines.push(Line::new("", Style::Plain));
    let channel_rows = views
        .iter()
        .map(|view| {
            let channel = view.channel;
            vec![
                channel.name.clone(),
                channel.kind.clone(),
                channel.state.clone(),
                channel.size.to_string(),
                channel.capacity.to_string(),
                format!("{:.1}%", fill_percent(channel.size, channel.capacity)),
                rate_text(view.rates.put_per_second),
                rate_text(view.rates.take_per_second),
                millis_text(view.rates.commit_mean_us),
                sparkline(&view.history),
                channel.recovery.clone().unwrap_or_else(|| "-".to_string()),
            ]
        })
        .collect();
    lines.extend(table(
        &[
            "CHANNEL",
            "TYPE",
            "STATE",
            "SIZE",
            "CAPACITY",
            "FILL",
            "PUT/S",
            "TAKE/S",
            "COMMIT",
            "PUTS/S (RECENT)",
            "RECOVERY",
        ],
        &[3, 4, 5, 6, 7, 8],
        channel_rows,
    ));
    if !reading.dirs.is_empty() {
        lines.push(Line::new("", Style::Plain));
        let dir_rows = reading
            .dirs
            .iter()
            .map(|dir| {
                vec![
                    dir.channel.clone(),
                    dir.path.clone(),
                    bytes_text(Some(dir.bytes_written)),
                    dir.syncs.to_string(),
                    millis_text(
                        (dir.syncs > 0).then(|| dir.sync_time_us as f64 / dir.syncs as f64),
                    ),
                    bytes_text(dir.usable_bytes),
                    bytes_text(dir.guard_bytes),
                ]
            })
            .collect();
        lines.extend(table(
            &[
                "CHANNEL",
                "DATA DIR",
                "WRITTEN",
                "SYNCS",
                "MEAN SYNC",
                "FREE",
                "GUARD",
            ],
            &[2, 3, 4, 5, 6],
            dir_rows,
        ));
    }
    if !reading.adapters.is_empty() {
        lines.push(Line::new("", Style::Plain));
        let adapter_rows = reading
            .adapters
            .iter()
            .map(|adapter| {
                vec![
                    adapter.name.clone(),
                    adapter.state.clone(),
                    adapter.restarts.to_string(),
                    adapter
                        .last_error
                        .clone()
                        .unwrap_or_else(|| "-".to_string()),
                ]
            })
            .collect();
        lines.extend(table(
            &["ADAPTER", "STATE", "RESTARTS", "LAST ERROR"],
            &[2],
            adapter_rows,
        ));
    }
    lines
}

/// The last good screen with the error on its second line (or the error alone).
pub fn with_error(address: &str, good: &[Line], error: &ReadingError) -> Vec<Line> {
    let alert = Line::new(
        format!("! channeld at {address} does not answer, retrying: {error}"),
        Style::Alert,
    );
    match good.split_first() {
        Some((title, rest)) => std::iter::once(title.clone())
            .chain(std::iter::once(alert))
            .chain(rest.iter().cloned())
            .collect(),
        None => vec![
            Line::new(format!("channeld at {address}   q quits"), Style::Heading),
            alert,
        ],
    }
}

/// Draws `frame` over the whole screen: each line cut to `width`, at most `height` rows
/// (the last one saying how many did not fit), the rest of the screen cleared.
pub fn draw(out: &mut impl Write, frame: &[Line], width: u16, height: u16) -> std::io::Result<()> {
    let width = usize::from(width);
    let rows = usize::from(height.max(1));
    let (shown, hidden) = if frame.len() > rows {
        (&frame[..rows - 1], frame.len() - (rows - 1))
    } else {
        (frame, 0)
    };
    let more = Line::new(
        format!("… {hidden} more lines: enlarge the window"),
        Style::Alert,
    );
    let lines = shown.iter().chain((hidden > 0).then_some(&more));
    for (row, line) in lines.enumerate() {
        let text: String = line.text.chars().take(width).collect();
        let attribute = match line.style {
            Style::Plain => Attribute::Reset,
            Style::Heading => Attribute::Bold,
            Style::Alert => Attribute::Reverse,
        };
        queue!(
            out,
            cursor::MoveTo(0, u16::try_from(row).unwrap_or(u16::MAX)),
            SetAttribute(attribute),
            Print(text),
            SetAttribute(Attribute::Reset),
            terminal::Clear(terminal::ClearType::UntilNewLine)
        )?;
    }
    queue!(out, terminal::Clear(terminal::ClearType::FromCursorDown))?;
    out.flush()
}

/// A string value for a `key=value` line: bare when it is one plain word, else quoted
/// with escapes (so a reason with spaces or newlines stays on its line).
fn value(text: &str) -> String {
    let plain = !text.is_empty()
        && text
            .chars()
            .all(|character| character.is_ascii_graphic() && character != '"' && character != '=');
    if plain {
        text.to_string()
    } else {
        format!("{text:?}")
    }
}

fn number(value: Option<f64>, decimals: usize) -> String {
    value.map_or_else(|| "-".to_string(), |value| format!("{value:.decimals$}"))
}

/// The plain lines of a reading: one per channel, data dir and adapter, each starting
/// with the time of the reading.
pub fn plain_lines(reading: &Reading, views: &[ChannelView<'_>]) -> Vec<String> {
    let stamp = humantime::format_rfc3339_seconds(reading.wall);
    let mut lines = Vec::new();
    for view in views {
        let channel = view.channel;
        let mut line = format!(
            "{stamp} channel {} type={} state={} size={} capacity={} fill_percent={:.2} \
             put_per_s={} take_per_s={} commit_ms={} recovery={}",
            value(&channel.name),
            value(&channel.kind),
            value(&channel.state),
            channel.size,
            channel.capacity,
            fill_percent(channel.size, channel.capacity),
            number(view.rates.put_per_second, 1),
            number(view.rates.take_per_second, 1),
            number(
                view.rates
                    .commit_mean_us
                    .map(|micros| micros / MICROS_PER_MILLI),
                3
            ),
            value(channel.recovery.as_deref().unwrap_or("-")),
        );
        if let Some(reason) = &channel.reason {
            line.push_str(&format!(" reason={}", value(reason)));
        }
        lines.push(line);
    }
    for dir in &reading.dirs {
        lines.push(format!(
            "{stamp} dir {} channel={} written_bytes={} syncs={} mean_sync_ms={} usable_bytes={} \
             guard_bytes={}",
            value(&dir.path),
            value(&dir.channel),
            dir.bytes_written,
            dir.syncs,
            number(
                (dir.syncs > 0)
                    .then(|| dir.sync_time_us as f64 / dir.syncs as f64 / MICROS_PER_MILLI),
                3
            ),
            dir.usable_bytes
                .map_or_else(|| "-".to_string(), |bytes| bytes.to_string()),
            dir.guard_bytes
                .map_or_else(|| "-".to_string(), |bytes| bytes.to_string()),
        ));
    }
    for adapter in &reading.adapters {
        lines.push(format!(
            "{stamp} adapter {} state={} restarts={} last_error={}",
            value(&adapter.name),
            value(&adapter.state),
            adapter.restarts,
            value(adapter.last_error.as_deref().unwrap_or("-")),
        ));
    }
    if lines.is_empty() {
        lines.push(format!(
            "{stamp} server status={} (no channels)",
            reading.status
        ));
    }
    lines
}

/// The plain line of a failed reading.
pub fn plain_error_line(error: &ReadingError) -> String {
    format!(
        "{} unreachable error={}",
        humantime::format_rfc3339_seconds(SystemTime::now()),
        value(&error.to_string())
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sparklines_scale_to_their_peak() {
        assert_eq!(sparkline(&[0.0, 5.0, 10.0]), "▁▅█");
        assert_eq!(sparkline(&[0.0, 0.0]), "▁▁");
    }

    #[test]
    fn plain_values_are_bare_words_or_quoted() {
        assert_eq!(value("open"), "open");
        assert_eq!(value("c1/data"), "c1/data");
        assert_eq!(value("two words"), "\"two words\"");
        assert_eq!(value("line\nbreak"), "\"line\\nbreak\"");
        assert_eq!(value(""), "\"\"");
    }

    #[test]
    fn draw_cuts_lines_to_the_screen_and_says_what_did_not_fit() {
        let frame: Vec<Line> = (0..5)
            .map(|index| Line::new(format!("line {index} is long"), Style::Plain))
            .collect();
        let mut out = Vec::new();
        draw(&mut out, &frame, 6, 3).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.contains("line 0") && text.contains("line 1"),
            "{text:?}"
        );
        assert!(!text.contains("is long"), "cut to the width: {text:?}");
        assert!(!text.contains("line 2"), "{text:?}");
        assert!(text.contains("… 3 mo"), "{text:?}");
    }

    #[test]
    fn bytes_are_shown_with_binary_units() {
        assert_eq!(bytes_text(Some(512)), "512 B");
        assert_eq!(bytes_text(Some(1536)), "1.5 KiB");
        assert_eq!(bytes_text(Some(5 << 30)), "5.0 GiB");
        assert_eq!(bytes_text(None), "-");
    }
}
