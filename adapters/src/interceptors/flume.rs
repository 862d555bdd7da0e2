//! Flume's body and header interceptors, with Flume's keys and defaults: `uuid`,
//! `search_replace`, `regex_extractor`, `regex_filter` and `remove_header`.
//!
//! Where Millrace does better than Flume, on purpose (each documented in
//! docs/configuration.md):
//!
//! - Bodies are matched as bytes, so a body that is not valid UTF-8 is never rewritten
//!   where nothing matched (Flume decodes and re-encodes every body, replacing invalid
//!   bytes with U+FFFD).
//! - A `regex_extractor` group that took no part in the match adds no header (Flume adds
//!   a null value, which later breaks Avro serialization); a Millis serializer that
//!   cannot parse its text adds no header and logs a warning (Flume throws, and the
//!   source retries the batch forever).

use millrace_client::Event;
use millrace_config::{values, ComponentSettings};
use regex::bytes::Regex;
use tracing::warn;

use super::java_regex;
use super::joda::JodaPattern;

/// Flume's class of the uuid interceptor (in the morphline Solr sink's jar).
pub const UUID_INTERCEPTOR_CLASS: &str =
    "org.apache.flume.sink.solr.morphline.UUIDInterceptor$Builder";
/// Flume's class of `search_replace`.
pub const SEARCH_REPLACE_CLASS: &str =
    "org.apache.flume.interceptor.SearchAndReplaceInterceptor$Builder";
/// Flume's class of `regex_extractor`.
pub const REGEX_EXTRACTOR_CLASS: &str =
    "org.apache.flume.interceptor.RegexExtractorInterceptor$Builder";
/// Flume's class of `regex_filter`.
pub const REGEX_FILTER_CLASS: &str =
    "org.apache.flume.interceptor.RegexFilteringInterceptor$Builder";
/// Flume's class of `remove_header`.
pub const REMOVE_HEADER_CLASS: &str =
    "org.apache.flume.interceptor.RemoveHeaderInterceptor$Builder";
/// The pass-through serializer's class (the `DEFAULT` type).
const PASS_THROUGH_SERIALIZER_CLASS: &str =
    "org.apache.flume.interceptor.RegexExtractorInterceptorPassThroughSerializer";
/// The Millis serializer's class.
const MILLIS_SERIALIZER_CLASS: &str =
    "org.apache.flume.interceptor.RegexExtractorInterceptorMillisSerializer";
/// `regex_filter`'s default `regex`: every event matches.
const MATCH_EVERYTHING: &str = ".*";
/// `remove_header`'s default `fromListSeparator`.
const DEFAULT_LIST_SEPARATOR: &str = "\\s*,\\s*";

/// `uuid`: a random UUID in a header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UuidInterceptor {
    /// `headerName` (`id`).
    pub header: String,
    /// `preserveExisting` (true).
    pub preserve_existing: bool,
    /// `prefix` (empty): put before the UUID.
    pub prefix: String,
}

impl UuidInterceptor {
    /// Reads its keys under `prefix` (`interceptors.i1.`).
    pub fn read(keys: &mut ComponentSettings<'_>, prefix: &str) -> Self {
        UuidInterceptor {
            header: keys.text_or(&format!("{prefix}headerName"), "id"),
            preserve_existing: keys.boolean_or(&format!("{prefix}preserveExisting"), true),
            prefix: keys.text_or(&format!("{prefix}prefix"), ""),
        }
    }

    /// Adds the header.
    pub fn apply(&self, event: &mut Event) {
        if self.preserve_existing && event.header(&self.header).is_some() {
            return;
        }
        let value = format!("{}{}", self.prefix, uuid::Uuid::new_v4());
        super::set_header(event, &self.header, value, false);
    }
}

/// `search_replace`: every match in the body replaced.
#[derive(Debug, Clone)]
pub struct SearchReplace {
    /// `searchPattern`.
    pub search: Regex,
    /// `replaceString`, translated to the `regex` crate's syntax.
    pub replacement: String,
}

impl SearchReplace {
    /// Reads its keys under `prefix`; `None` when one is bad (recorded).
    pub fn read(keys: &mut ComponentSettings<'_>, prefix: &str) -> Option<Self> {
        let search_key = format!("{prefix}searchPattern");
        let search = keys.required(&search_key, "a regular expression", |value| {
            java_regex::compile(value).map_err(values::Expected::new)
        });
        let replace_key = format!("{prefix}replaceString");
        let java_replacement = keys.text_or(&replace_key, "");
        keys.parsed_or(&format!("{prefix}charset"), (), |value| {
            let utf8 = ["UTF-8", "UTF8"]
                .iter()
                .any(|name| name.eq_ignore_ascii_case(value));
            if utf8 {
                Ok(())
            } else {
                Err(values::Expected::new(
                    "UTF-8 (the only charset Millrace's search_replace reads)",
                ))
            }
        });
        let search = search?;
        let names: Vec<&str> = search.capture_names().flatten().collect();
        match java_regex::java_replacement(&java_replacement, search.captures_len() - 1, &names) {
            Ok(replacement) => Some(SearchReplace {
                search,
                replacement,
            }),
            Err(expected) => {
                keys.refuse(&replace_key, &expected, &java_replacement);
                None
            }
        }
    }

    /// Replaces every match in the body; a body without a match is left as it is.
    pub fn apply(&self, event: &mut Event) {
        let replaced = self
            .search
            .replace_all(&event.body, self.replacement.as_bytes());
        if let std::borrow::Cow::Owned(body) = replaced {
            event.body = body.into();
        }
    }
}

/// How one `regex_extractor` group becomes a header value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExtractorSerializer {
    /// `DEFAULT`: the text as matched.
    PassThrough,
    /// The Millis serializer: the text read with a Joda pattern, as epoch milliseconds.
    Millis(JodaPattern),
}

/// One serializer of `regex_extractor`: a group's header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtractorField {
    /// `serializers.<s>.name`.
    pub header: String,
    /// `serializers.<s>.type`.
    pub serializer: ExtractorSerializer,
}

/// `regex_extractor`: the groups of the first match as headers.
#[derive(Debug, Clone)]
pub struct RegexExtractor {
    /// `regex`.
    pub regex: Regex,
    /// Group `i + 1`'s header.
    pub fields: Vec<ExtractorField>,
}

impl RegexExtractor {
    /// Reads its keys under `prefix`; `None` when one is bad (recorded).
    pub fn read(keys: &mut ComponentSettings<'_>, prefix: &str) -> Option<Self> {
        let regex = keys.required(&format!("{prefix}regex"), "a regular expression", |value| {
            java_regex::compile(value).map_err(values::Expected::new)
        });
        let names = keys.required_text(
            &format!("{prefix}serializers"),
            "serializer names separated by spaces",
        );
        let mut fields = Vec::new();
        let mut complete = true;
        for name in names
            .as_deref()
            .map(values::space_separated)
            .into_iter()
            .flatten()
        {
            let key = |sub_key: &str| format!("{prefix}serializers.{name}.{sub_key}");
            let header = keys.required_text(&key("name"), "the header name");
            let kind = keys.text_or(&key("type"), "DEFAULT");
            let serializer =
                if kind.eq_ignore_ascii_case("DEFAULT") || kind == PASS_THROUGH_SERIALIZER_CLASS {
                    Some(ExtractorSerializer::PassThrough)
                } else if kind == MILLIS_SERIALIZER_CLASS {
                    keys.required(&key("pattern"), "a Joda-Time date pattern", |value| {
                        JodaPattern::new(value).map_err(values::Expected::new)
                    })
                    .map(ExtractorSerializer::Millis)
                } else {
                    keys.refuse(
                        &key("type"),
                        &format!(
                            "DEFAULT or {MILLIS_SERIALIZER_CLASS} (Millrace runs no Java classes; \
                         convert values in a script interceptor instead)"
                        ),
                        &kind,
                    );
                    None
                };
            match (header, serializer) {
                (Some(header), Some(serializer)) => {
                    fields.push(ExtractorField { header, serializer })
                }
                _ => complete = false,
            }
        }
        let regex = regex?;
        (complete && names.is_some()).then_some(RegexExtractor { regex, fields })
    }

    /// Adds a header per group of the first match; an event without a match is left as
    /// it is.
    pub fn apply(&self, event: &mut Event) {
        let Some(captures) = self.regex.captures(&event.body) else {
            return;
        };
        let mut found = Vec::with_capacity(self.fields.len());
        for (field, group) in self.fields.iter().zip(captures.iter().skip(1)) {
            let Some(group) = group else {
                continue;
            };
            let text = String::from_utf8_lossy(group.as_bytes());
            let value = match &field.serializer {
                ExtractorSerializer::PassThrough => text.into_owned(),
                ExtractorSerializer::Millis(pattern) => {
                    match pattern.parse_millis(&text, &chrono::Local) {
                        Some(millis) => millis.to_string(),
                        None => {
                            warn!(header = %field.header, text = %text, pattern = %pattern.joda, "regex_extractor: the text does not fit the serializer's pattern; no header added");
                            continue;
                        }
                    }
                }
            };
            found.push((field.header.as_str(), value));
        }
        for (header, value) in found {
            super::set_header(event, header, value, false);
        }
    }
}

/// `regex_filter`: keeps (or drops) the events whose body matches.
#[derive(Debug, Clone)]
pub struct RegexFilter {
    /// `regex` (`.*`).
    pub regex: Regex,
    /// `excludeEvents` (false): drop matching events instead of keeping only them.
    pub exclude_matching: bool,
}

impl RegexFilter {
    /// Reads its keys under `prefix`; `None` when one is bad (recorded).
    pub fn read(keys: &mut ComponentSettings<'_>, prefix: &str) -> Option<Self> {
        let regex = keys.parsed(&format!("{prefix}regex"), |value| {
            java_regex::compile(value).map_err(values::Expected::new)
        });
        let exclude_matching = keys.boolean_or(&format!("{prefix}excludeEvents"), false);
        let regex = match regex {
            Some(regex) => regex,
            None if keys.is_set(&format!("{prefix}regex")) => return None,
            None => Regex::new(MATCH_EVERYTHING).ok()?,
        };
        Some(RegexFilter {
            regex,
            exclude_matching,
        })
    }

    /// Whether `event` goes on.
    pub fn keeps(&self, event: &Event) -> bool {
        self.regex.is_match(&event.body) != self.exclude_matching
    }
}

/// `remove_header`: headers removed by name, list or pattern.
#[derive(Debug, Clone)]
pub struct RemoveHeader {
    /// `withName`.
    pub name: Option<String>,
    /// `fromList`, split by `fromListSeparator`.
    pub list: Vec<String>,
    /// `matching`: names matching it whole.
    pub matching: Option<regex::Regex>,
}

impl RemoveHeader {
    /// Reads its keys under `prefix`; `None` when one is bad (recorded).
    pub fn read(keys: &mut ComponentSettings<'_>, prefix: &str) -> Option<Self> {
        let name = keys.text(&format!("{prefix}withName"));
        let list = keys.text(&format!("{prefix}fromList"));
        let separator_key = format!("{prefix}fromListSeparator");
        let separator = keys.parsed(&separator_key, |value| {
            java_regex::compile_text(value).map_err(values::Expected::new)
        });
        let matching_key = format!("{prefix}matching");
        // Java's `matches()`: the whole name.
        let matching = keys.parsed(&matching_key, |value| {
            java_regex::compile_text(value)
                .and_then(|_| java_regex::compile_text(&format!("^(?:{value})$")))
                .map_err(values::Expected::new)
        });
        if (separator.is_none() && keys.is_set(&separator_key))
            || (matching.is_none() && keys.is_set(&matching_key))
        {
            return None;
        }
        let separator = match separator {
            Some(separator) => separator,
            None => regex::Regex::new(DEFAULT_LIST_SEPARATOR).ok()?,
        };
        let list = list
            .map(|list| {
                separator
                    .split(&list)
                    .filter(|name| !name.is_empty())
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default();
        Some(RemoveHeader {
            name,
            list,
            matching,
        })
    }

    /// Removes the headers named.
    pub fn apply(&self, event: &mut Event) {
        event.headers.retain(|(key, _)| {
            let named = self.name.as_deref() == Some(key.as_str())
                || self.list.iter().any(|listed| listed == key)
                || self
                    .matching
                    .as_ref()
                    .is_some_and(|pattern| pattern.is_match(key));
            !named
        });
    }
}

#[cfg(test)]
mod tests {
    use super::super::{intercept_all, plan_interceptors, Interceptor};
    use millrace_client::Event;
    use millrace_config::{ComponentSettings, RawSetting};

    /// Settings of source `a1.sources.r1`, as the properties reader leaves them (Java
    /// escapes resolved: the file's `\\d` is `\d` here).
    fn settings(pairs: &[(&str, &str)]) -> Vec<RawSetting> {
        pairs
            .iter()
            .enumerate()
            .map(|(index, (key, value))| RawSetting {
                key: key.to_string(),
                value: value.to_string(),
                line: index + 2,
            })
            .collect()
    }

    fn planned(pairs: &[(&str, &str)]) -> Vec<Interceptor> {
        let settings = settings(pairs);
        let mut keys = ComponentSettings::new("a.conf", "a1.sources.r1", 1, &settings);
        let interceptors = plan_interceptors(&mut keys);
        let problems = keys.finish();
        assert!(problems.errors.is_empty(), "{:?}", problems.errors);
        interceptors
    }

    fn errors(pairs: &[(&str, &str)]) -> Vec<String> {
        let settings = settings(pairs);
        let mut keys = ComponentSettings::new("a.conf", "a1.sources.r1", 1, &settings);
        plan_interceptors(&mut keys);
        keys.finish()
            .errors
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    fn run(pairs: &[(&str, &str)], events: Vec<Event>) -> Vec<Event> {
        intercept_all(&planned(pairs), events).events
    }

    fn body(event: &Event) -> &str {
        std::str::from_utf8(&event.body).unwrap()
    }

    #[test]
    fn uuid_by_flume_class_name_adds_a_canonical_uuid_under_id_and_preserves_an_existing_one() {
        let class = "org.apache.flume.sink.solr.morphline.UUIDInterceptor$Builder";
        let out = run(
            &[("interceptors", "i1"), ("interceptors.i1.type", class)],
            vec![Event::new("a"), Event::new("b").with_header("id", "kept")],
        );
        let id = out[0].header("id").unwrap();
        assert_eq!(id.len(), 36, "{id}");
        assert!(uuid::Uuid::parse_str(id).is_ok_and(|uuid| uuid.get_version_num() == 4));
        assert_eq!(id, id.to_lowercase());
        assert_eq!(out[1].header("id"), Some("kept"));
    }

    #[test]
    fn uuid_alias_takes_header_name_prefix_and_preserve_existing() {
        let out = run(
            &[
                ("interceptors", "u"),
                ("interceptors.u.type", "uuid"),
                ("interceptors.u.headerName", "eventId"),
                ("interceptors.u.prefix", "host1-"),
                ("interceptors.u.preserveExisting", "false"),
            ],
            vec![Event::new("a").with_header("eventId", "old")],
        );
        let id = out[0].header("eventId").unwrap();
        assert!(id.starts_with("host1-") && id.len() == 6 + 36, "{id}");
        assert_eq!(out[0].headers.len(), 1);
    }

    #[test]
    fn search_replace_removes_leading_alphanumerics_as_the_user_guide_shows() {
        let out = run(
            &[
                ("interceptors", "search-replace"),
                ("interceptors.search-replace.type", "search_replace"),
                (
                    "interceptors.search-replace.searchPattern",
                    "^[A-Za-z0-9_]+",
                ),
                ("interceptors.search-replace.replaceString", ""),
            ],
            vec![
                Event::new("log_42: disk full"),
                Event::new(": nothing leading"),
            ],
        );
        assert_eq!(body(&out[0]), ": disk full");
        assert_eq!(body(&out[1]), ": nothing leading");
    }

    #[test]
    fn search_replace_reorders_words_with_groups_as_the_user_guide_shows() {
        let out = run(
            &[
                ("interceptors", "search-replace"),
                (
                    "interceptors.search-replace.type",
                    "org.apache.flume.interceptor.SearchAndReplaceInterceptor$Builder",
                ),
                (
                    "interceptors.search-replace.searchPattern",
                    "The quick brown ([a-z]+) jumped over the lazy ([a-z]+)",
                ),
                (
                    "interceptors.search-replace.replaceString",
                    "The hungry $2 ate the careless $1",
                ),
            ],
            vec![Event::new("The quick brown fox jumped over the lazy dog")],
        );
        assert_eq!(body(&out[0]), "The hungry dog ate the careless fox");
    }

    #[test]
    fn search_replace_leaves_a_body_without_a_match_byte_for_byte() {
        let binary: &[u8] = &[0xff, 0xfe, b'x', 0x80];
        let out = run(
            &[
                ("interceptors", "s"),
                ("interceptors.s.type", "search_replace"),
                ("interceptors.s.searchPattern", "y+"),
            ],
            vec![Event::new(binary.to_vec())],
        );
        assert_eq!(out[0].body.as_ref(), binary);
    }

    #[test]
    fn regex_extractor_adds_one_header_per_group_as_the_user_guide_shows() {
        let out = run(
            &[
                ("interceptors", "i1"),
                ("interceptors.i1.type", "regex_extractor"),
                ("interceptors.i1.regex", "(\\d):(\\d):(\\d)"),
                ("interceptors.i1.serializers", "s1 s2 s3"),
                ("interceptors.i1.serializers.s1.name", "one"),
                ("interceptors.i1.serializers.s2.name", "two"),
                ("interceptors.i1.serializers.s3.name", "three"),
            ],
            vec![Event::new("1:2:3.4foobar5"), Event::new("no digits")],
        );
        let headers = |event: &Event| -> Vec<(String, String)> { event.headers.clone() };
        assert_eq!(
            headers(&out[0]),
            [
                ("one".to_string(), "1".to_string()),
                ("two".to_string(), "2".to_string()),
                ("three".to_string(), "3".to_string())
            ]
        );
        assert_eq!(body(&out[0]), "1:2:3.4foobar5");
        assert!(out[1].headers.is_empty());
    }

    #[test]
    fn regex_extractor_millis_serializer_reads_the_user_guide_pattern() {
        let interceptors = planned(&[
            ("interceptors", "i1"),
            ("interceptors.i1.type", "regex_extractor"),
            (
                "interceptors.i1.regex",
                "^(?:\\n)?(\\d\\d\\d\\d-\\d\\d-\\d\\d\\s\\d\\d:\\d\\d)",
            ),
            ("interceptors.i1.serializers", "s1"),
            (
                "interceptors.i1.serializers.s1.type",
                "org.apache.flume.interceptor.RegexExtractorInterceptorMillisSerializer",
            ),
            ("interceptors.i1.serializers.s1.name", "timestamp"),
            ("interceptors.i1.serializers.s1.pattern", "yyyy-MM-dd HH:mm"),
        ]);
        let Interceptor::RegexExtractor(extractor) = &interceptors[0] else {
            panic!("{interceptors:?}");
        };
        let super::ExtractorSerializer::Millis(pattern) = &extractor.fields[0].serializer else {
            panic!("{extractor:?}");
        };
        // The guide's result, 1350611220000, is 18:47 in Pacific Daylight Time, the JVM
        // zone it was computed in (the end-to-end test runs the agent in that zone).
        let pacific_daylight_time = chrono::FixedOffset::west_opt(7 * 3600).unwrap();
        let captured = extractor
            .regex
            .captures(b"2012-10-18 18:47:57,614 some log line")
            .unwrap();
        let text = std::str::from_utf8(&captured[1]).unwrap();
        assert_eq!(
            pattern.parse_millis(text, &pacific_daylight_time),
            Some(1_350_611_220_000)
        );
    }

    #[test]
    fn regex_extractor_serializer_types_and_missing_keys_are_checked() {
        let problems = errors(&[
            ("interceptors", "i1"),
            ("interceptors.i1.type", "regex_extractor"),
            ("interceptors.i1.regex", "(a)"),
            ("interceptors.i1.serializers", "s1"),
            ("interceptors.i1.serializers.s1.name", "x"),
            (
                "interceptors.i1.serializers.s1.type",
                "com.example.Serializer",
            ),
        ]);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].contains("interceptors.i1.serializers.s1.type"));
        let problems = errors(&[
            ("interceptors", "i1"),
            ("interceptors.i1.type", "regex_extractor"),
            ("interceptors.i1.serializers", "s1"),
            ("interceptors.i1.serializers.s1.name", "x"),
        ]);
        assert!(
            problems[0].contains("interceptors.i1.regex"),
            "{problems:?}"
        );
    }

    #[test]
    fn regex_filter_keeps_matching_events_or_drops_them_with_exclude_events() {
        let events = || {
            vec![
                Event::new("INFO started"),
                Event::new("DEBUG noise"),
                Event::new("WARN DEBUG inside"),
            ]
        };
        let keep = run(
            &[
                ("interceptors", "f"),
                ("interceptors.f.type", "regex_filter"),
                ("interceptors.f.regex", "DEBUG"),
            ],
            events(),
        );
        let kept: Vec<&str> = keep.iter().map(body).collect();
        assert_eq!(kept, ["DEBUG noise", "WARN DEBUG inside"]);
        let exclude = run(
            &[
                ("interceptors", "f"),
                (
                    "interceptors.f.type",
                    "org.apache.flume.interceptor.RegexFilteringInterceptor$Builder",
                ),
                ("interceptors.f.regex", "^DEBUG"),
                ("interceptors.f.excludeEvents", "true"),
            ],
            events(),
        );
        let kept: Vec<&str> = exclude.iter().map(body).collect();
        assert_eq!(kept, ["INFO started", "WARN DEBUG inside"]);
        let default = run(
            &[
                ("interceptors", "f"),
                ("interceptors.f.type", "regex_filter"),
            ],
            events(),
        );
        assert_eq!(default.len(), 3, "the default regex .* keeps everything");
    }

    #[test]
    fn remove_header_removes_by_name_list_and_whole_name_pattern() {
        let event = Event::new("x")
            .with_header("keep", "1")
            .with_header("secret", "2")
            .with_header("a", "3")
            .with_header("b", "4")
            .with_header("tmp.one", "5")
            .with_header("xtmp.one", "6");
        let out = run(
            &[
                ("interceptors", "r"),
                ("interceptors.r.type", "remove_header"),
                ("interceptors.r.withName", "secret"),
                ("interceptors.r.fromList", "a , b"),
                ("interceptors.r.matching", "tmp\\..*"),
            ],
            vec![event],
        );
        let names: Vec<&str> = out[0].headers.iter().map(|(key, _)| key.as_str()).collect();
        assert_eq!(names, ["keep", "xtmp.one"]);
        let out = run(
            &[
                ("interceptors", "r"),
                ("interceptors.r.type", "remove_header"),
                ("interceptors.r.fromList", "a:b"),
                ("interceptors.r.fromListSeparator", ":"),
            ],
            vec![Event::new("x")
                .with_header("a", "1")
                .with_header("b", "2")
                .with_header("c", "3")],
        );
        assert_eq!(out[0].headers, [("c".to_string(), "3".to_string())]);
    }

    #[test]
    fn java_only_regex_syntax_is_refused_on_its_key() {
        let problems = errors(&[
            ("interceptors", "s"),
            ("interceptors.s.type", "search_replace"),
            ("interceptors.s.searchPattern", "(?<=user=)\\w++"),
        ]);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(
            problems[0].starts_with("a.conf:4: a1.sources.r1.interceptors.s.searchPattern"),
            "{}",
            problems[0]
        );
        assert!(problems[0].contains("lookbehind"), "{}", problems[0]);
        let problems = errors(&[
            ("interceptors", "s"),
            ("interceptors.s.type", "search_replace"),
            ("interceptors.s.searchPattern", "(a)"),
            ("interceptors.s.replaceString", "$2"),
        ]);
        assert!(
            problems[0].contains("interceptors.s.replaceString")
                && problems[0].contains("No group 2"),
            "{problems:?}"
        );
    }
}
