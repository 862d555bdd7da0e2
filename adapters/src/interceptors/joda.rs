//! Joda-Time date patterns (`DateTimeFormat.forPattern`), as Flume's
//! `RegexExtractorInterceptorMillisSerializer` takes them in `serializers.<s>.pattern`,
//! parsed with chrono.
//!
//! The pattern letters are translated once, when the configuration is read, into
//! chrono's parsing items. Letters Millrace does not translate (eras, centuries, week
//! years, zone names, …) are refused then, naming the letter, rather than parsed
//! differently. As in Joda, fields the pattern lacks default to 1970-01-01 00:00:00.000,
//! the whole text must be consumed, and a time without an offset (`Z`) is read in the
//! process's time zone (Java's JVM default zone; here `TZ` or `/etc/localtime`).

use chrono::format::{parse, Parsed, StrftimeItems};
use chrono::{NaiveDate, NaiveDateTime, TimeZone};

/// A Joda pattern ready to parse with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JodaPattern {
    /// The pattern as configured.
    pub joda: String,
    /// Its chrono `strftime` equivalent.
    chrono_format: String,
}

/// Joda's defaults for fields a pattern lacks: the epoch's date.
const DEFAULT_YEAR: i32 = 1970;

impl JodaPattern {
    /// Translates `joda`, or names the part that cannot be translated.
    pub fn new(joda: &str) -> Result<Self, String> {
        let mut chrono_format = String::new();
        let chars: Vec<char> = joda.chars().collect();
        let mut index = 0;
        while index < chars.len() {
            let letter = chars[index];
            let run = chars[index..].iter().take_while(|&&c| c == letter).count();
            if letter == '\'' {
                index += 1;
                if chars.get(index) == Some(&'\'') {
                    chrono_format.push('\'');
                    index += 1;
                    continue;
                }
                loop {
                    match chars.get(index) {
                        None => return Err(format!("a closing ' in the Joda pattern {joda:?}")),
                        Some('\'') if chars.get(index + 1) == Some(&'\'') => {
                            chrono_format.push('\'');
                            index += 2;
                        }
                        Some('\'') => {
                            index += 1;
                            break;
                        }
                        Some(&c) => {
                            push_literal(&mut chrono_format, c);
                            index += 1;
                        }
                    }
                }
                continue;
            }
            if !letter.is_ascii_alphabetic() {
                push_literal(&mut chrono_format, letter);
                index += 1;
                continue;
            }
            let item = match (letter, run) {
                ('y' | 'Y', 2) => "%y",
                ('y' | 'Y', _) => "%Y",
                ('M', 1 | 2) => "%m",
                ('M', 3) => "%b",
                ('M', _) => "%B",
                ('d', _) => "%d",
                ('D', _) => "%j",
                ('H', _) => "%H",
                ('h', _) => "%I",
                ('a', _) => "%p",
                ('m', _) => "%M",
                ('s', _) => "%S",
                ('S', 3) => "%3f",
                ('S', 6) => "%6f",
                ('S', 9) => "%9f",
                ('Z', 1) => "%z",
                ('Z', _) => "%:z",
                ('E', 1..=3) => "%a",
                ('E', _) => "%A",
                _ => {
                    return Err(format!(
                        "a Joda pattern with the letters y, M, d, D, H, h, a, m, s, S (3, 6 or 9 \
                         of them), Z and E; {:?} in {joda:?} is not supported",
                        chars[index..index + run].iter().collect::<String>()
                    ))
                }
            };
            chrono_format.push_str(item);
            index += run;
        }
        Ok(JodaPattern {
            joda: joda.to_string(),
            chrono_format,
        })
    }

    /// Milliseconds since the epoch of `text`, read in `zone` unless the pattern has an
    /// offset; `None` when `text` does not fit the pattern.
    pub fn parse_millis<Zone: TimeZone>(&self, text: &str, zone: &Zone) -> Option<i64> {
        let mut parsed = Parsed::new();
        parse(&mut parsed, text, StrftimeItems::new(&self.chrono_format)).ok()?;
        let date = if parsed.ordinal().is_some() {
            if parsed.year().is_none() {
                parsed.set_year(i64::from(DEFAULT_YEAR)).ok()?;
            }
            parsed.to_naive_date().ok()?
        } else {
            let year = parsed.year().unwrap_or(DEFAULT_YEAR);
            NaiveDate::from_ymd_opt(year, parsed.month().unwrap_or(1), parsed.day().unwrap_or(1))?
        };
        let hour = match (parsed.hour_div_12(), parsed.hour_mod_12()) {
            (Some(half), Some(hour)) => half * 12 + hour,
            (None, Some(hour)) => hour,
            _ => 0,
        };
        let nanosecond = parsed.nanosecond().unwrap_or(0);
        let time = chrono::NaiveTime::from_hms_nano_opt(
            hour,
            parsed.minute().unwrap_or(0),
            parsed.second().unwrap_or(0),
            nanosecond,
        )?;
        let local = NaiveDateTime::new(date, time);
        match parsed.offset() {
            Some(offset_seconds) => {
                let utc = local - chrono::Duration::seconds(i64::from(offset_seconds));
                Some(utc.and_utc().timestamp_millis())
            }
            None => zone
                .from_local_datetime(&local)
                .earliest()
                .map(|moment| moment.timestamp_millis()),
        }
    }
}

fn push_literal(format: &mut String, c: char) {
    if c == '%' {
        format.push_str("%%");
    } else {
        format.push(c);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{FixedOffset, Utc};

    /// Pacific Daylight Time, the zone the User Guide's example was computed in.
    fn pacific_daylight_time() -> FixedOffset {
        FixedOffset::west_opt(7 * 3600).unwrap()
    }

    #[test]
    fn the_user_guide_example_gives_its_documented_milliseconds() {
        let pattern = JodaPattern::new("yyyy-MM-dd HH:mm").unwrap();
        assert_eq!(
            pattern.parse_millis("2012-10-18 18:47", &pacific_daylight_time()),
            Some(1_350_611_220_000)
        );
    }

    #[test]
    fn missing_fields_default_to_the_epoch_and_offsets_in_the_text_win() {
        let pattern = JodaPattern::new("HH:mm:ss.SSS").unwrap();
        assert_eq!(pattern.parse_millis("00:00:01.250", &Utc), Some(1_250));
        let pattern = JodaPattern::new("yyyy-MM-dd'T'HH:mm:ssZZ").unwrap();
        assert_eq!(
            pattern.parse_millis("1970-01-01T01:00:00+01:00", &pacific_daylight_time()),
            Some(0)
        );
        let pattern = JodaPattern::new("dd/MMM/yyyy:HH:mm:ss Z").unwrap();
        assert_eq!(
            pattern.parse_millis("10/Oct/2000:13:55:36 -0700", &Utc),
            Some(971_211_336_000)
        );
    }

    #[test]
    fn text_that_does_not_fit_or_letters_not_translated_are_refused() {
        let pattern = JodaPattern::new("yyyy-MM-dd").unwrap();
        assert_eq!(pattern.parse_millis("2012-10-18 trailing", &Utc), None);
        assert_eq!(pattern.parse_millis("not a date", &Utc), None);
        let refusal = JodaPattern::new("yyyy GG").unwrap_err();
        assert!(refusal.contains("\"GG\""), "{refusal}");
    }
}
