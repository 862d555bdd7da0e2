//! The `spooldir` source: the lines of each file dropped into a directory.
//!
//! As Flume's `SpoolDirectorySource`: files are taken one at a time in `consumeOrder`
//! (skipping names that start with `.`, already end in `fileSuffix`, match
//! `ignorePattern` or miss `includePattern`); each line becomes an event (lines longer
//! than `deserializer.maxLineLength` are split); batches of `batchSize` are committed,
//! and only once the whole file is committed is it renamed to `<name><fileSuffix>` (or
//! deleted, or recorded in the tracker directory).
//!
//! Progress survives crashes: after every committed batch the byte offset reached is
//! written (atomically) to `<trackerDir>/.flumespool-main.meta`, and a restarted source
//! resumes the same file from there — a crash can repeat at most the batch in flight.
//!
//! A spooled file must not change once it is in the directory. When its size or
//! modification time differs at the end from what they were when it was opened, the
//! source stops with Flume's "File has been modified since being read" and leaves the
//! file in place (its committed lines stay committed; the tracker keeps the offset).

use std::fs::{self, File};
use std::io::{BufRead, BufReader, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use millrace_client::Event;
use millrace_config::values::{self, Expected};
use millrace_config::ComponentSettings;
use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};
use tracing::info;

use super::{SourceError, BATCH_SIZE_KEY};
use crate::connection::StopSignal;
use crate::counters::{self, SourceCounters};
use crate::delivery::ChannelProcessor;
use crate::file_problem::file_error;

/// Name of the position tracker inside the tracker directory (Flume's).
pub const TRACKER_FILE_NAME: &str = ".flumespool-main.meta";
/// Flume's default `deserializer.maxLineLength`.
pub const DEFAULT_MAX_LINE_LENGTH: usize = 2048;

/// What happens to a file once all its lines are committed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompletionPolicy {
    /// `deletePolicy = never`, `trackingPolicy = rename`: rename to `<name><suffix>`.
    Rename,
    /// `trackingPolicy = tracker_dir`: leave it; create `<trackerDir>/<name><suffix>`.
    TrackerDir,
    /// `deletePolicy = immediate`: delete it.
    Delete,
}

/// The order files are taken in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConsumeOrder {
    /// Oldest modification time first (ties by name).
    Oldest,
    /// Youngest first.
    Youngest,
    /// Any.
    Random,
}

/// What to do with bytes that are not valid in the input charset (UTF-8).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecodeErrorPolicy {
    /// Stop the source.
    Fail,
    /// Replace each bad sequence with U+FFFD.
    Replace,
    /// Drop bad sequences.
    Ignore,
}

/// How a spooldir source is configured.
#[derive(Debug, Clone)]
pub struct SpoolDirSettings {
    /// `spoolDir`.
    pub spool_dir: PathBuf,
    /// `fileSuffix`.
    pub file_suffix: String,
    /// From `deletePolicy` and `trackingPolicy`.
    pub completion: CompletionPolicy,
    /// `trackerDir`, resolved against `spoolDir`.
    pub tracker_dir: PathBuf,
    /// `fileHeaderKey` when `fileHeader = true`.
    pub file_header_key: Option<String>,
    /// `basenameHeaderKey` when `basenameHeader = true`.
    pub basename_header_key: Option<String>,
    /// `includePattern`.
    pub include_pattern: regex::Regex,
    /// `ignorePattern`.
    pub ignore_pattern: regex::Regex,
    /// `consumeOrder`.
    pub consume_order: ConsumeOrder,
    /// `pollDelay`.
    pub poll_delay: Duration,
    /// `batchSize`.
    pub batch_size: usize,
    /// `deserializer.maxLineLength`, in characters.
    pub max_line_length: usize,
    /// `decodeErrorPolicy`.
    pub decode_error_policy: DecodeErrorPolicy,
}

/// Flume's default spooldir `batchSize`.
pub const DEFAULT_BATCH_SIZE: u64 = 100;
/// Flume's default spooldir `pollDelay`.
pub const DEFAULT_POLL_DELAY: Duration = Duration::from_millis(500);

/// A regular expression (Rust's `regex` syntax, close to Java's for common patterns).
fn pattern(value: &str) -> Result<regex::Regex, Expected> {
    regex::Regex::new(value)
        .map_err(|error| Expected::new(format!("a regular expression ({error})")))
}

impl SpoolDirSettings {
    /// Reads a spooldir source's keys (Flume's `SpoolDirectorySource`).
    pub(crate) fn read(keys: &mut ComponentSettings<'_>) -> Option<SpoolDirSettings> {
        let spool_dir = keys.required("spoolDir", "a directory path", values::directory);
        let file_suffix = keys.text_or("fileSuffix", ".COMPLETED");
        let delete_policy = keys.choice_or("deletePolicy", "never", &["never", "immediate"]);
        let tracking_policy =
            keys.choice_or("trackingPolicy", "rename", &["rename", "tracker_dir"]);
        let tracker_dir = PathBuf::from(keys.text_or("trackerDir", ".flumespool"));
        let file_header = keys.boolean_or("fileHeader", false);
        let file_header_key = keys.text_or("fileHeaderKey", "file");
        let basename_header = keys.boolean_or("basenameHeader", false);
        let basename_header_key = keys.text_or("basenameHeaderKey", "basename");
        let include_pattern = keys.parsed("includePattern", pattern);
        let ignore_pattern = keys.parsed("ignorePattern", pattern);
        let consume_order =
            keys.choice_or("consumeOrder", "oldest", &["oldest", "youngest", "random"]);
        let poll_delay = keys.parsed_or(
            "pollDelay",
            DEFAULT_POLL_DELAY,
            values::positive_milliseconds,
        );
        let batch_size = keys.count_or(BATCH_SIZE_KEY, DEFAULT_BATCH_SIZE);
        keys.choice_or("inputCharset", "UTF-8", &["UTF-8"]);
        let decode_error_policy =
            keys.choice_or("decodeErrorPolicy", "FAIL", &["FAIL", "REPLACE", "IGNORE"]);
        keys.choice_or("deserializer", "LINE", &["LINE"]);
        let max_line_length =
            keys.count_or("deserializer.maxLineLength", DEFAULT_MAX_LINE_LENGTH as u64);
        // Flume's name from before deserializers; Flume copies it over the line
        // deserializer's maxLineLength, so it wins when both are set.
        let legacy_max_line_length = keys.parsed("bufferMaxLineLength", values::positive_integer);
        if legacy_max_line_length.is_some() && keys.line_of("deserializer.maxLineLength").is_some()
        {
            keys.accept_with_warning(
                "bufferMaxLineLength",
                "overrides deserializer.maxLineLength, as in Flume (it is that key's old name)",
            );
        }
        let max_line_length = legacy_max_line_length.unwrap_or(max_line_length);
        if keys
            .parsed("maxBackoff", values::positive_milliseconds)
            .is_some()
        {
            keys.accept_with_warning(
                "maxBackoff",
                "accepted but not acted on: when the channel is full, Millrace's spooldir \
                 waits 250 ms doubling up to 4 s, Flume's default maxBackoff",
            );
        }
        keys.accept_with_warning(
            "bufferMaxLines",
            "has no effect: Flume deprecated it and no longer reads it either",
        );
        keys.choice_or("deserializer.outputCharset", "UTF-8", &["UTF-8"]);
        keys.parsed_or(
            "recursiveDirectorySearch",
            false,
            |value| match values::boolean(value)? {
                false => Ok(false),
                true => Err(Expected::new(
                    "false (recursive search is not supported yet)",
                )),
            },
        );
        let completion = match (delete_policy, tracking_policy) {
            ("immediate", _) => CompletionPolicy::Delete,
            (_, "tracker_dir") => CompletionPolicy::TrackerDir,
            _ => CompletionPolicy::Rename,
        };
        let spool_dir = spool_dir?;
        let tracker_dir = if tracker_dir.is_absolute() {
            tracker_dir
        } else {
            spool_dir.join(tracker_dir)
        };
        Some(SpoolDirSettings {
            spool_dir,
            file_suffix,
            completion,
            tracker_dir,
            file_header_key: file_header.then_some(file_header_key),
            basename_header_key: basename_header.then_some(basename_header_key),
            include_pattern: include_pattern
                .unwrap_or_else(|| regex::Regex::new("^.*$").expect("valid pattern")),
            ignore_pattern: ignore_pattern
                .unwrap_or_else(|| regex::Regex::new("^$").expect("valid pattern")),
            consume_order: match consume_order {
                "youngest" => ConsumeOrder::Youngest,
                "random" => ConsumeOrder::Random,
                _ => ConsumeOrder::Oldest,
            },
            poll_delay,
            batch_size: usize::try_from(batch_size).unwrap_or(usize::MAX),
            max_line_length: usize::try_from(max_line_length).unwrap_or(usize::MAX),
            decode_error_policy: match decode_error_policy {
                "REPLACE" => DecodeErrorPolicy::Replace,
                "IGNORE" => DecodeErrorPolicy::Ignore,
                _ => DecodeErrorPolicy::Fail,
            },
        })
    }
}

/// The tracker's record: how far into which file the committed lines reach.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Position {
    file_name: String,
    offset_bytes: u64,
}

/// The size and modification time of a file when it was opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileIdentity {
    size_bytes: u64,
    modified: Option<SystemTime>,
}

fn identity_of(path: &Path) -> Result<FileIdentity, SourceError> {
    let metadata = fs::metadata(path).map_err(file_error("cannot read the metadata of", path))?;
    Ok(FileIdentity {
        size_bytes: metadata.len(),
        modified: metadata.modified().ok(),
    })
}

/// Reads the spool directory until `stop` is raised or an assumption is violated.
pub async fn run(
    settings: SpoolDirSettings,
    mut processor: ChannelProcessor,
    counters: Arc<SourceCounters>,
    mut stop: StopSignal,
) -> Result<(), SourceError> {
    fs::create_dir_all(&settings.tracker_dir)
        .map_err(file_error("cannot create", &settings.tracker_dir))?;
    info!(directory = %settings.spool_dir.display(), "spooldir source watching");
    let mut reader = SpoolReader::new(settings);
    while !stop.is_raised() {
        let batch = match reader.next_batch() {
            Ok(batch) => batch,
            Err(error) => {
                if matches!(error, SourceError::Violation(_)) {
                    counters::increment(&counters.event_read_failures);
                }
                return Err(error);
            }
        };
        let Some(batch) = batch else {
            if !stop.sleep(reader.settings.poll_delay).await {
                break;
            }
            continue;
        };
        counters::increment(&counters.append_batches_received);
        counters::add(&counters.events_received, batch.events.len());
        match processor.deliver_patiently(&batch.events, &mut stop).await {
            Ok(Ok(())) => {}
            Ok(Err(refused)) => return Err(refused.into()),
            Err(_stopped) => break,
        }
        counters::increment(&counters.append_batches_accepted);
        reader.commit(&batch)?;
    }
    processor.close();
    Ok(())
}

/// Lines read from one file, and the offset just after them.
#[derive(Debug)]
struct Batch {
    events: Vec<Event>,
    end_offset_bytes: u64,
    reaches_end_of_file: bool,
}

#[derive(Debug)]
struct OpenSpoolFile {
    name: String,
    path: PathBuf,
    reader: BufReader<File>,
    offset_bytes: u64,
    identity: FileIdentity,
}

/// Picks files and reads their lines; remembers progress in the tracker.
#[derive(Debug)]
struct SpoolReader {
    settings: SpoolDirSettings,
    current: Option<OpenSpoolFile>,
}

impl SpoolReader {
    fn new(settings: SpoolDirSettings) -> Self {
        SpoolReader {
            settings,
            current: None,
        }
    }

    fn tracker_path(&self) -> PathBuf {
        self.settings.tracker_dir.join(TRACKER_FILE_NAME)
    }

    fn saved_position(&self) -> Option<Position> {
        let text = fs::read(self.tracker_path()).ok()?;
        serde_json::from_slice(&text).ok()
    }

    fn save_position(&self, position: Option<&Position>) -> Result<(), SourceError> {
        let path = self.tracker_path();
        let Some(position) = position else {
            return match fs::remove_file(&path) {
                Err(error) if error.kind() != std::io::ErrorKind::NotFound => {
                    Err(file_error("cannot remove", &path)(error).into())
                }
                _ => Ok(()),
            };
        };
        let temporary = self
            .settings
            .tracker_dir
            .join(format!("{TRACKER_FILE_NAME}.tmp"));
        let body = serde_json::to_vec(position).expect("positions serialize");
        File::create(&temporary)
            .and_then(|mut file| {
                file.write_all(&body)?;
                file.sync_data()
            })
            .and_then(|()| fs::rename(&temporary, &path))
            .and_then(|()| File::open(&self.settings.tracker_dir)?.sync_all())
            .map_err(file_error("cannot write the position to", &path))?;
        Ok(())
    }

    fn is_candidate(&self, name: &str) -> bool {
        let recorded_done = self.settings.completion == CompletionPolicy::TrackerDir
            && self
                .settings
                .tracker_dir
                .join(format!("{name}{}", self.settings.file_suffix))
                .exists();
        !name.starts_with('.')
            && !name.ends_with(&self.settings.file_suffix)
            && self.settings.include_pattern.is_match(name)
            && !self.settings.ignore_pattern.is_match(name)
            && !recorded_done
    }

    /// The next file to read: the one the tracker names, else by `consumeOrder`.
    fn choose_file(&self) -> Result<Option<(String, u64)>, SourceError> {
        if let Some(position) = self.saved_position() {
            if self.settings.spool_dir.join(&position.file_name).is_file() {
                return Ok(Some((position.file_name, position.offset_bytes)));
            }
        }
        let directory = &self.settings.spool_dir;
        let mut candidates = Vec::new();
        for entry in fs::read_dir(directory).map_err(file_error("cannot list", directory))? {
            let entry = entry.map_err(file_error("cannot list", directory))?;
            let Ok(name) = entry.file_name().into_string() else {
                continue;
            };
            let Ok(metadata) = entry.metadata() else {
                continue;
            };
            if metadata.is_file() && self.is_candidate(&name) {
                let modified = metadata.modified().unwrap_or(UNIX_EPOCH);
                candidates.push((modified, name));
            }
        }
        match self.settings.consume_order {
            ConsumeOrder::Oldest => candidates.sort(),
            ConsumeOrder::Youngest => {
                candidates.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)))
            }
            ConsumeOrder::Random => candidates.shuffle(&mut rand::rng()),
        }
        Ok(candidates.into_iter().next().map(|(_, name)| (name, 0)))
    }

    fn open(&mut self) -> Result<bool, SourceError> {
        let Some((name, offset_bytes)) = self.choose_file()? else {
            return Ok(false);
        };
        let path = self.settings.spool_dir.join(&name);
        let identity = identity_of(&path)?;
        if offset_bytes > identity.size_bytes {
            return Err(SourceError::Violation(format!(
                "File has changed size since being read: {} (committed up to byte {offset_bytes}, \
                 now {} bytes)",
                path.display(),
                identity.size_bytes
            )));
        }
        let mut file = File::open(&path).map_err(file_error("cannot open", &path))?;
        file.seek(SeekFrom::Start(offset_bytes))
            .map_err(file_error("cannot read", &path))?;
        if offset_bytes > 0 {
            info!(file = %path.display(), offset_bytes, "resuming a spooled file");
        } else {
            info!(file = %path.display(), "reading a spooled file");
        }
        self.current = Some(OpenSpoolFile {
            name,
            path,
            reader: BufReader::new(file),
            offset_bytes,
            identity,
        });
        Ok(true)
    }

    /// Up to `batchSize` events from the current (or next) file; `None` when no file
    /// has anything to read.
    fn next_batch(&mut self) -> Result<Option<Batch>, SourceError> {
        if self.current.is_none() && !self.open()? {
            return Ok(None);
        }
        let settings = &self.settings;
        let open = self.current.as_mut().expect("opened above");
        let mut events = Vec::new();
        let mut offset = open.offset_bytes;
        let mut reaches_end_of_file = false;
        let mut line = Vec::new();
        while events.len() < settings.batch_size {
            line.clear();
            let read = open
                .reader
                .read_until(b'\n', &mut line)
                .map_err(file_error("cannot read", &open.path))?;
            if read == 0 {
                reaches_end_of_file = true;
                break;
            }
            offset += read as u64;
            let text = line.strip_suffix(b"\n").unwrap_or(&line);
            let decoded = decode(text, settings.decode_error_policy).ok_or_else(|| {
                SourceError::Violation(format!(
                    "{} holds bytes that are not UTF-8 before byte {offset} (decodeErrorPolicy = FAIL)",
                    open.path.display()
                ))
            })?;
            for piece in split_chars(&decoded, settings.max_line_length) {
                let mut event = Event::new(piece.to_string());
                if let Some(key) = &settings.file_header_key {
                    let absolute =
                        fs::canonicalize(&open.path).unwrap_or_else(|_| open.path.clone());
                    event = event.with_header(key.clone(), absolute.display().to_string());
                }
                if let Some(key) = &settings.basename_header_key {
                    event = event.with_header(key.clone(), open.name.clone());
                }
                events.push(event);
            }
        }
        Ok(Some(Batch {
            events,
            end_offset_bytes: offset,
            reaches_end_of_file,
        }))
    }

    /// Records a committed batch; completes the file when the batch reached its end.
    fn commit(&mut self, batch: &Batch) -> Result<(), SourceError> {
        let Some(open) = self.current.as_mut() else {
            return Ok(());
        };
        open.offset_bytes = batch.end_offset_bytes;
        let position = Position {
            file_name: open.name.clone(),
            offset_bytes: batch.end_offset_bytes,
        };
        if !batch.reaches_end_of_file {
            return self.save_position(Some(&position));
        }
        let open = self.current.take().expect("checked above");
        let now = identity_of(&open.path)?;
        if now != open.identity || now.size_bytes != batch.end_offset_bytes {
            self.save_position(Some(&position))?;
            return Err(SourceError::Violation(format!(
                "File has been modified since being read: {} (size {} bytes when opened, {} now)",
                open.path.display(),
                open.identity.size_bytes,
                now.size_bytes
            )));
        }
        self.complete(&open.name, &open.path)?;
        self.save_position(None)
    }

    fn complete(&self, name: &str, path: &Path) -> Result<(), SourceError> {
        let suffixed = format!("{name}{}", self.settings.file_suffix);
        match self.settings.completion {
            CompletionPolicy::Delete => {
                fs::remove_file(path).map_err(file_error("cannot delete", path))?;
                info!(file = %path.display(), "spooled file done; deleted");
            }
            CompletionPolicy::TrackerDir => {
                let marker = self.settings.tracker_dir.join(&suffixed);
                File::create(&marker).map_err(file_error("cannot create", &marker))?;
                info!(file = %path.display(), "spooled file done; recorded in the tracker directory");
            }
            CompletionPolicy::Rename => {
                let target = self.settings.spool_dir.join(&suffixed);
                if target.exists() {
                    return Err(SourceError::Violation(format!(
                        "File name has been re-used with different files. Spooling assumptions \
                         violated for {} ({} exists)",
                        path.display(),
                        target.display()
                    )));
                }
                fs::rename(path, &target).map_err(file_error("cannot rename", path))?;
                info!(file = %target.display(), "spooled file done; renamed");
            }
        }
        File::open(&self.settings.spool_dir)
            .and_then(|directory| directory.sync_all())
            .map_err(file_error("cannot sync", &self.settings.spool_dir))?;
        Ok(())
    }
}

/// Decodes one line as UTF-8 under the policy; `None` when it must fail.
fn decode(bytes: &[u8], policy: DecodeErrorPolicy) -> Option<String> {
    match std::str::from_utf8(bytes) {
        Ok(text) => Some(text.to_string()),
        Err(_) => match policy {
            DecodeErrorPolicy::Fail => None,
            DecodeErrorPolicy::Replace => Some(String::from_utf8_lossy(bytes).into_owned()),
            DecodeErrorPolicy::Ignore => Some(
                bytes
                    .utf8_chunks()
                    .map(|chunk| chunk.valid())
                    .collect::<String>(),
            ),
        },
    }
}

/// Splits `text` into pieces of at most `max_chars` characters (an empty line stays one
/// empty piece).
fn split_chars(text: &str, max_chars: usize) -> Vec<&str> {
    if text.is_empty() {
        return vec![text];
    }
    let mut pieces = Vec::new();
    let mut rest = text;
    while !rest.is_empty() {
        let cut = rest
            .char_indices()
            .nth(max_chars)
            .map_or(rest.len(), |(index, _)| index);
        pieces.push(&rest[..cut]);
        rest = &rest[cut..];
    }
    pieces
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(spool_dir: &Path) -> SpoolDirSettings {
        SpoolDirSettings {
            spool_dir: spool_dir.to_path_buf(),
            file_suffix: ".COMPLETED".into(),
            completion: CompletionPolicy::Rename,
            tracker_dir: spool_dir.join(".flumespool"),
            file_header_key: Some("file".into()),
            basename_header_key: None,
            include_pattern: regex::Regex::new("^.*$").unwrap(),
            ignore_pattern: regex::Regex::new("^$").unwrap(),
            consume_order: ConsumeOrder::Oldest,
            poll_delay: Duration::from_millis(10),
            batch_size: 2,
            max_line_length: DEFAULT_MAX_LINE_LENGTH,
            decode_error_policy: DecodeErrorPolicy::Fail,
        }
    }

    fn bodies(batch: &Batch) -> Vec<String> {
        batch
            .events
            .iter()
            .map(|event| String::from_utf8(event.body.to_vec()).unwrap())
            .collect()
    }

    #[test]
    fn a_file_is_renamed_only_after_its_last_batch_is_committed() {
        let directory = tempfile::tempdir().unwrap();
        fs::write(directory.path().join("log1"), "a\nb\nc\n").unwrap();
        let mut reader = SpoolReader::new(settings(directory.path()));
        fs::create_dir_all(&reader.settings.tracker_dir).unwrap();
        let first = reader.next_batch().unwrap().unwrap();
        assert_eq!(bodies(&first), ["a", "b"]);
        reader.commit(&first).unwrap();
        let second = reader.next_batch().unwrap().unwrap();
        assert_eq!(bodies(&second), ["c"]);
        assert!(second.reaches_end_of_file);
        assert!(
            directory.path().join("log1").exists(),
            "not renamed before the commit"
        );
        reader.commit(&second).unwrap();
        assert!(directory.path().join("log1.COMPLETED").exists());
        assert!(reader.next_batch().unwrap().is_none());
    }

    #[test]
    fn a_restarted_reader_resumes_after_the_last_committed_batch() {
        let directory = tempfile::tempdir().unwrap();
        fs::write(directory.path().join("log1"), "a\nb\nc\nd\n").unwrap();
        let mut reader = SpoolReader::new(settings(directory.path()));
        fs::create_dir_all(&reader.settings.tracker_dir).unwrap();
        let first = reader.next_batch().unwrap().unwrap();
        reader.commit(&first).unwrap();
        let _uncommitted = reader.next_batch().unwrap().unwrap();
        drop(reader);
        let mut restarted = SpoolReader::new(settings(directory.path()));
        let resumed = restarted.next_batch().unwrap().unwrap();
        assert_eq!(bodies(&resumed), ["c", "d"]);
        assert_eq!(
            resumed.events[0].header("file").unwrap(),
            fs::canonicalize(directory.path().join("log1"))
                .unwrap()
                .display()
                .to_string()
        );
    }

    #[test]
    fn a_file_that_grows_while_being_read_stops_the_source_and_is_not_renamed() {
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("log1");
        fs::write(&path, "a\n").unwrap();
        let mut reader = SpoolReader::new(settings(directory.path()));
        fs::create_dir_all(&reader.settings.tracker_dir).unwrap();
        let batch = reader.next_batch().unwrap().unwrap();
        fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(b"late\n")
            .unwrap();
        let error = reader.commit(&batch).unwrap_err().to_string();
        assert!(
            error.contains("File has been modified since being read"),
            "{error}"
        );
        assert!(path.exists());
        assert!(!directory.path().join("log1.COMPLETED").exists());
        // After a restart the source picks up the appended line and completes the file.
        let mut restarted = SpoolReader::new(settings(directory.path()));
        let rest = restarted.next_batch().unwrap().unwrap();
        assert_eq!(bodies(&rest), ["late"]);
        restarted.commit(&rest).unwrap();
        assert!(directory.path().join("log1.COMPLETED").exists());
    }

    #[test]
    fn ignored_hidden_and_completed_files_are_skipped() {
        let directory = tempfile::tempdir().unwrap();
        let mut config = settings(directory.path());
        config.ignore_pattern = regex::Regex::new(r"\.tmp$").unwrap();
        for name in ["x.tmp", ".hidden", "done.COMPLETED"] {
            fs::write(directory.path().join(name), "line\n").unwrap();
        }
        let reader = SpoolReader::new(config);
        assert!(reader.choose_file().unwrap().is_none());
    }

    #[test]
    fn long_lines_split_into_events_of_at_most_max_line_length_characters() {
        assert_eq!(split_chars("abcdé", 2), ["ab", "cd", "é"]);
        assert_eq!(split_chars("", 2), [""]);
    }

    #[test]
    fn decode_policies_fail_replace_or_drop_bad_bytes() {
        let bytes = b"ok\xFFyes";
        assert_eq!(decode(bytes, DecodeErrorPolicy::Fail), None);
        assert_eq!(
            decode(bytes, DecodeErrorPolicy::Replace).unwrap(),
            "ok\u{FFFD}yes"
        );
        assert_eq!(decode(bytes, DecodeErrorPolicy::Ignore).unwrap(), "okyes");
    }
}
