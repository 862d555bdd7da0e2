//! The `TAILDIR` source: follows the files of directories as they grow, one event per
//! line, and resumes after a restart where its committed lines end.
//!
//! ## Constraints
//!
//! - **A line is delivered once it is whole.** Lines end at `\n` (a `\r` before it is
//!   dropped, as in Flume). A last line without its newline waits for it; it is emitted
//!   without one only when its file was rotated away or deleted and has been read to
//!   its end, since nobody can finish it then.
//! - **Positions follow commits.** A file's position (the offset of its first byte not
//!   yet committed) moves only after the channel committed the events before it, and the
//!   position file is rewritten after every committed batch, atomically (see
//!   [`position`]). A crash (`kill -9`) repeats at most the batch that was in flight and
//!   never skips a line.
//! - **Files are identified by device and inode**, not by name. A renamed file (`app.log`
//!   → `app.log.1`) is the same file: it is read to its end through its open descriptor
//!   whatever its new name, and a new `app.log` is a new file. A deleted file is read to
//!   its end before it is let go. Its position is kept (under its new name when it is
//!   still in the directory), so a crash in between loses nothing either.
//! - **Copy-truncate rotation** (`cp app.log app.log.1; : > app.log`) is detected when the
//!   file is shorter than what was read, or when its first bytes change (it was
//!   truncated and grew again before the next look). The lines between the last read and
//!   the truncation are then read from the copy: the file in the same directory that
//!   starts with the same bytes and is at least as long as the position. The first
//!   bytes are remembered beside the position file (see [`position`]), so this works
//!   across a restart too.
//! - **Every generation is read.** A file rotated away more than once before the source
//!   reads it again (while the source is down, or busy with other files) leaves middle
//!   generations no name or inode leads to; they are found as the files named after it
//!   with a suffix, not compressed, renamed or created since the generation found (see
//!   `Tailer::follow_later_generations`).
//! - **Flume's keys and position file.** Every key of Flume's `TaildirSource` is read
//!   with its default; a position file written by Flume is honoured, and Flume can read
//!   ours.
//!
//! ```text
//!  scan (readdir + stat, inotify wakes it)        deliver batch ─► channel commit
//!  files by (dev, inode) ─► read lines ─► batch ─────────────────────┘     │
//!                                          ▲                    positions file (tmp, fsync,
//!                                          └── next batch ◄──── rename, dir fsync)
//! ```

pub mod position;
mod reader;

use std::collections::BTreeMap;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use millrace_config::values::{self, Expected};
use millrace_config::ComponentSettings;
use tokio::io::unix::AsyncFd;
use tracing::{debug, info, warn};

use self::position::{Fingerprint, PositionEntry};
use self::reader::{DirectoryListing, FileKey, ReadOutcome, TailFile};
use super::{SourceError, BATCH_SIZE_KEY};
use crate::connection::StopSignal;
use crate::counters::{self, SourceCounters};
use crate::delivery::ChannelProcessor;
use crate::file_problem::file_error;

/// Flume's default `positionFile`, under the home directory.
pub const DEFAULT_POSITION_FILE: &str = "~/.flume/taildir_position.json";
/// Flume's default `batchSize`.
pub const DEFAULT_BATCH_SIZE: u64 = 100;
/// Flume's default `idleTimeout`.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_millis(120_000);
/// Flume's default `writePosInterval`.
pub const DEFAULT_WRITE_POS_INTERVAL: Duration = Duration::from_millis(3_000);
/// Flume's default `backoffSleepIncrement`.
pub const DEFAULT_BACKOFF_SLEEP_INCREMENT: Duration = Duration::from_millis(1_000);
/// Flume's default `maxBackoffSleep`.
pub const DEFAULT_MAX_BACKOFF_SLEEP: Duration = Duration::from_millis(5_000);
/// Flume's default `fileHeaderKey`.
pub const DEFAULT_FILE_HEADER_KEY: &str = "file";
/// The header `byteOffsetHeader` adds (Flume's name).
pub const BYTE_OFFSET_HEADER: &str = "byteoffset";
/// How long a rotated-away or deleted file must stay unchanged after it was read to its
/// end before it is let go: a writer that has not reopened its log yet may still append
/// to it.
pub const ROTATED_FILE_QUIET: Duration = Duration::from_secs(5);
/// Longest time between two scans of the directories while files are being read.
const BUSY_SCAN_INTERVAL: Duration = Duration::from_millis(200);

/// One `filegroups.<name>`: files of one directory whose names match a pattern.
#[derive(Debug, Clone)]
pub struct FileGroup {
    /// The group's name.
    pub name: String,
    /// The directory (literal; it must exist when the source starts).
    pub directory: PathBuf,
    /// The pattern a whole file name must match.
    pub pattern: regex::Regex,
    /// `headers.<group>.<key>`: headers of every event from this group.
    pub headers: Vec<(String, String)>,
}

/// How a TAILDIR source is configured.
#[derive(Debug, Clone)]
pub struct TaildirSettings {
    /// `filegroups` with each `filegroups.<name>` and `headers.<name>.*`.
    pub groups: Vec<FileGroup>,
    /// `positionFile`.
    pub position_file: PathBuf,
    /// `batchSize`: lines per delivery.
    pub batch_size: usize,
    /// `maxBatchCount`: batches read from one file before the next file gets its turn.
    pub max_batch_count: u64,
    /// `skipToEnd`: files found at start without a position start at their end.
    pub skip_to_end: bool,
    /// `idleTimeout`: a file unchanged this long is closed (and reopened when it grows).
    pub idle_timeout: Duration,
    /// `writePosInterval`: longest time between two writes of the position file when
    /// files come and go without commits (it is rewritten after every commit anyway).
    pub write_pos_interval: Duration,
    /// `byteOffsetHeader`.
    pub byte_offset_header: bool,
    /// `fileHeaderKey` when `fileHeader = true`.
    pub file_header_key: Option<String>,
    /// `cachePatternMatching`: reuse a directory's listing while its mtime is unchanged.
    pub cache_pattern_matching: bool,
    /// `backoffSleepIncrement`.
    pub backoff_sleep_increment: Duration,
    /// `maxBackoffSleep`.
    pub max_backoff_sleep: Duration,
}

/// `~/…` under `$HOME`, as Java's `user.home`.
fn expand_home(path: &str) -> PathBuf {
    match (path.strip_prefix("~/"), std::env::var_os("HOME")) {
        (Some(rest), Some(home)) => PathBuf::from(home).join(rest),
        _ => PathBuf::from(path),
    }
}

/// `filegroups.<g>`: an absolute path whose last component is a regular expression
/// matched against whole file names.
fn file_group_path(value: &str) -> Result<(PathBuf, regex::Regex), Expected> {
    let expected = "an absolute path whose last part is a regular expression for file names, \
                    such as /var/log/app/.*\\.log";
    let path = Path::new(value);
    if !path.is_absolute() {
        return Err(Expected::new(expected));
    }
    let (directory, name_pattern) = value
        .rsplit_once('/')
        .filter(|(_, name)| !name.is_empty())
        .ok_or_else(|| Expected::new(expected))?;
    let directory = if directory.is_empty() { "/" } else { directory };
    let pattern = regex::Regex::new(&format!("^(?:{name_pattern})$")).map_err(|error| {
        Expected::new(format!(
            "{expected} (the pattern does not compile: {error})"
        ))
    })?;
    Ok((PathBuf::from(directory), pattern))
}

/// `maxBatchCount`: Flume turns values of 0 or less into its default (no limit).
fn batch_count(value: &str) -> Result<u64, Expected> {
    let number: i64 = values::java_trim(value)
        .parse()
        .map_err(|_| Expected::new("an integer (0 or less means no limit)"))?;
    Ok(u64::try_from(number)
        .ok()
        .filter(|count| *count > 0)
        .unwrap_or(u64::MAX))
}

impl TaildirSettings {
    /// Reads a TAILDIR source's keys (Flume's `TaildirSource`).
    pub(crate) fn read(keys: &mut ComponentSettings<'_>) -> Option<TaildirSettings> {
        let names: Vec<String> = keys
            .required_text("filegroups", "whitespace-separated file group names")
            .map(|value| {
                values::space_separated(&value)
                    .into_iter()
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default();
        let mut groups = Vec::new();
        for name in &names {
            let key = format!("filegroups.{name}");
            if let Some((directory, pattern)) = keys.required(
                &key,
                "an absolute path ending in a file name pattern",
                file_group_path,
            ) {
                groups.push(FileGroup {
                    name: name.clone(),
                    directory,
                    pattern,
                    headers: Vec::new(),
                });
            }
        }
        let group_keys = keys.matching(&["filegroups.<group>"], |key| {
            key.starts_with("filegroups.")
        });
        for setting in group_keys {
            let group = &setting.key["filegroups.".len()..];
            if !names.iter().any(|name| name == group) {
                keys.refuse(
                    &setting.key,
                    &format!(
                        "a key for a group listed in filegroups ({})",
                        names.join(" ")
                    ),
                    group,
                );
            }
        }
        let header_keys = keys.matching(&["headers.<group>.<header>"], |key| {
            key.starts_with("headers.")
        });
        for setting in header_keys {
            let rest = &setting.key["headers.".len()..];
            let found = rest
                .split_once('.')
                .filter(|(_, header)| !header.is_empty())
                .and_then(|(group, header)| {
                    groups
                        .iter_mut()
                        .find(|candidate| candidate.name == group)
                        .map(|group| (group, header))
                });
            match found {
                Some((group, header)) => group
                    .headers
                    .push((header.to_string(), setting.value.clone())),
                None => keys.refuse(
                    &setting.key,
                    &format!(
                        "headers.<group>.<header> with a group listed in filegroups ({})",
                        names.join(" ")
                    ),
                    rest,
                ),
            }
        }
        let position_file = expand_home(&keys.text_or("positionFile", DEFAULT_POSITION_FILE));
        let batch_size = keys.count_or(BATCH_SIZE_KEY, DEFAULT_BATCH_SIZE);
        let max_batch_count = keys.parsed_or("maxBatchCount", u64::MAX, batch_count);
        let skip_to_end = keys.boolean_or("skipToEnd", false);
        let idle_timeout = keys.parsed_or(
            "idleTimeout",
            DEFAULT_IDLE_TIMEOUT,
            values::positive_milliseconds,
        );
        let write_pos_interval = keys.parsed_or(
            "writePosInterval",
            DEFAULT_WRITE_POS_INTERVAL,
            values::positive_milliseconds,
        );
        let byte_offset_header = keys.boolean_or("byteOffsetHeader", false);
        let file_header = keys.boolean_or("fileHeader", false);
        let file_header_key = keys.text_or("fileHeaderKey", DEFAULT_FILE_HEADER_KEY);
        let cache_pattern_matching = keys.boolean_or("cachePatternMatching", true);
        let backoff_sleep_increment = keys.parsed_or(
            "backoffSleepIncrement",
            DEFAULT_BACKOFF_SLEEP_INCREMENT,
            values::positive_milliseconds,
        );
        let max_backoff_sleep = keys.parsed_or(
            "maxBackoffSleep",
            DEFAULT_MAX_BACKOFF_SLEEP,
            values::positive_milliseconds,
        );
        if groups.len() != names.len() || names.is_empty() {
            return None;
        }
        Some(TaildirSettings {
            groups,
            position_file,
            batch_size: usize::try_from(batch_size).unwrap_or(usize::MAX),
            max_batch_count,
            skip_to_end,
            idle_timeout,
            write_pos_interval,
            byte_offset_header,
            file_header_key: file_header.then_some(file_header_key),
            cache_pattern_matching,
            backoff_sleep_increment,
            max_backoff_sleep,
        })
    }
}

/// Wakes the source when something changes in a watched directory (inotify); without
/// inotify the source polls with its backoff sleep.
struct ChangeWatch {
    inotify: Option<AsyncFd<OwnedFd>>,
}

/// Room for a burst of inotify events per read.
const INOTIFY_BUFFER_BYTES: usize = 64 * 1024;

impl ChangeWatch {
    fn new(directories: &[&Path]) -> ChangeWatch {
        use rustix::fs::inotify;
        let watch = || -> std::io::Result<AsyncFd<OwnedFd>> {
            let fd = inotify::init(inotify::CreateFlags::NONBLOCK | inotify::CreateFlags::CLOEXEC)?;
            let flags = inotify::WatchFlags::MODIFY
                | inotify::WatchFlags::CREATE
                | inotify::WatchFlags::DELETE
                | inotify::WatchFlags::MOVED_FROM
                | inotify::WatchFlags::MOVED_TO
                | inotify::WatchFlags::ATTRIB
                | inotify::WatchFlags::CLOSE_WRITE;
            for directory in directories {
                inotify::add_watch(&fd, *directory, flags)?;
            }
            // SAFETY: the AsyncFd takes ownership of the inotify descriptor, which nothing
            // else holds, so it stays open for as long as it is registered and is closed
            // only when the AsyncFd (and with it the registration) is dropped.
            #[allow(unsafe_code)]
            let registered = unsafe { AsyncFd::register(fd) };
            registered.map_err(std::io::Error::from)
        };
        match watch() {
            Ok(fd) => ChangeWatch { inotify: Some(fd) },
            Err(error) => {
                info!(%error, "inotify is not available; TAILDIR polls its directories");
                ChangeWatch { inotify: None }
            }
        }
    }

    /// Sleeps up to `timeout`, less when a watched directory changes; `false` on stop.
    async fn wait(&mut self, timeout: Duration, stop: &mut StopSignal) -> bool {
        let Some(fd) = &self.inotify else {
            return stop.sleep(timeout).await;
        };
        tokio::select! {
            () = tokio::time::sleep(timeout) => true,
            () = stop.raised() => false,
            ready = fd.readable() => {
                if let Ok(mut guard) = ready {
                    let mut buffer = vec![0_u8; INOTIFY_BUFFER_BYTES];
                    // Drain what is queued: the events only mean "look again".
                    while rustix::io::read(guard.get_inner(), &mut buffer).is_ok_and(|read| read > 0) {}
                    guard.clear_ready();
                }
                true
            }
        }
    }
}

/// The files being followed and how to reach their positions.
struct Tailer {
    settings: TaildirSettings,
    files: BTreeMap<FileKey, TailFile>,
    listings: Vec<DirectoryListing>,
    /// The fingerprints of the position file on disk.
    stored_prints: Vec<Fingerprint>,
}

impl Tailer {
    fn new(settings: TaildirSettings) -> Tailer {
        let listings = settings
            .groups
            .iter()
            .map(|group| DirectoryListing::new(group.directory.clone()))
            .collect();
        Tailer {
            settings,
            files: BTreeMap::new(),
            listings,
            stored_prints: Vec::new(),
        }
    }

    /// Looks at every group's directory: new matching files are followed, renamed ones
    /// get their new name, files gone from their names are marked rotated.
    /// `starting`: the first scan, where `skipToEnd` applies to files without positions.
    fn scan(&mut self, starting: Option<&position::SavedPositions>) -> Result<(), SourceError> {
        for file in self.files.values_mut() {
            file.matched = false;
        }
        let mut listed: Vec<(usize, reader::ListedFile)> = Vec::new();
        for (index, listing) in self.listings.iter_mut().enumerate() {
            listing.refresh(self.settings.cache_pattern_matching)?;
            listed.extend(listing.entries().iter().map(|found| (index, found.clone())));
        }
        let mut seen: Vec<(FileKey, PathBuf)> = Vec::new();
        for (index, found) in listed {
            seen.push((found.key, found.path.clone()));
            if !self.settings.groups[index].pattern.is_match(&found.name) {
                continue;
            }
            if let Some(file) = self.files.get_mut(&found.key) {
                if file.path != found.path {
                    debug!(from = %file.path.display(), to = %found.path.display(), "a followed file was renamed");
                }
                file.path = found.path.clone();
                file.group = index;
                file.matched = true;
                file.rotated = false;
                file.observe(found.size_bytes, found.modified);
                continue;
            }
            let start = match starting {
                Some(saved) => {
                    self.starting_position(saved, found.key, &found.path, found.size_bytes)
                }
                None => StartAt::Offset(0),
            };
            let opened = match start {
                StartAt::Offset(offset) => TailFile::open(&found.path, index, offset),
                StartAt::End => TailFile::open(&found.path, index, found.size_bytes),
                StartAt::AfterTruncation { copy, offset } => {
                    let known: Vec<u64> = starting
                        .map(|saved| saved.entries.iter().map(|entry| entry.inode).collect())
                        .unwrap_or_default();
                    self.follow_copy(&found.path, &copy, offset, index, &known);
                    TailFile::open(&found.path, index, 0)
                }
            };
            match opened {
                Ok(Some(mut file)) if file.key == found.key => {
                    file.matched = true;
                    info!(file = %file.path.display(), offset_bytes = file.committed_pos, "TAILDIR following a file");
                    self.files.insert(file.key, file);
                }
                // Replaced between the listing and the open: the next scan sees it.
                Ok(_) => {}
                Err(error) => {
                    warn!(file = %found.path.display(), %error, "cannot open a matching file; trying again at the next scan")
                }
            }
        }
        let mut renamed_away: Vec<(PathBuf, PathBuf, usize)> = Vec::new();
        for file in self.files.values_mut().filter(|file| !file.matched) {
            // Renamed to a name the pattern does not match, or deleted: keep reading it
            // through its descriptor; remember its new name if it is still here.
            let stream = file.path.clone();
            match seen.iter().find(|(key, _)| *key == file.key) {
                Some((_, path)) => file.path = path.clone(),
                None => file.deleted = true,
            }
            if !file.rotated {
                file.rotated = true;
                info!(file = %file.path.display(), "a followed file was rotated away or deleted; reading it to its end");
                if !file.deleted {
                    renamed_away.push((stream, file.path.clone(), file.group));
                }
            }
        }
        for (stream, rotated, group) in renamed_away {
            self.follow_later_generations(&stream, &rotated, group, &[]);
        }
        if let Some(saved) = starting {
            self.resume_rotated(saved);
        }
        Ok(())
    }

    /// Where a file found at start begins.
    fn starting_position(
        &self,
        saved: &position::SavedPositions,
        key: FileKey,
        path: &Path,
        size_bytes: u64,
    ) -> StartAt {
        let path_text = path.display().to_string();
        let Some(entry) = saved
            .entries
            .iter()
            .find(|entry| entry.inode == key.inode && entry.file == path_text)
        else {
            return if self.settings.skip_to_end {
                StartAt::End
            } else {
                StartAt::Offset(0)
            };
        };
        let head = saved
            .fingerprint_of(entry)
            .filter(|print| print.dev == key.dev)
            .and_then(|print| position::from_hex(&print.head));
        let truncated = entry.pos > size_bytes
            || head
                .as_deref()
                .is_some_and(|head| !reader::starts_with(path, head));
        if !truncated {
            return StartAt::Offset(entry.pos);
        }
        warn!(file = %path_text, position_bytes = entry.pos, size_bytes, "file was truncated while the source was down; reading it from its start");
        match head {
            Some(head) => StartAt::AfterTruncation {
                copy: head,
                offset: entry.pos,
            },
            None => StartAt::Offset(0),
        }
    }

    /// Follows the copy a copy-truncate rotation made of a file (in its directory, not
    /// followed, starting with `head` and at least `offset` long) from `offset`, and the
    /// copies made after it (see `Tailer::follow_later_generations`).
    fn follow_copy(
        &mut self,
        original: &Path,
        head: &[u8],
        offset: u64,
        group: usize,
        known_inodes: &[u64],
    ) {
        let Some(directory) = original.parent() else {
            return;
        };
        let candidates = reader::list_regular_files(directory).unwrap_or_default();
        for (path, key, size_bytes) in candidates {
            if path == original || self.files.contains_key(&key) || size_bytes < offset {
                continue;
            }
            if !reader::starts_with(&path, head) {
                continue;
            }
            if let Ok(Some(mut copy)) = TailFile::open(&path, group, offset) {
                info!(copy = %path.display(), original = %original.display(), offset_bytes = offset, "reading the rest of a truncated file from its copy");
                copy.rotated = true;
                copy.head = head.to_vec();
                self.files.insert(copy.key, copy);
                self.follow_later_generations(original, &path, group, known_inodes);
                return;
            }
        }
        warn!(file = %original.display(), offset_bytes = offset, "no copy of the truncated file found; lines written after the last read and before the truncation are not delivered");
    }

    /// The generations of `stream` (a followed file's path) rotated away after
    /// `rotated`, which were never followed: a file can be rotated away more than once
    /// before the source reads it again (while the source is down, or while it reads
    /// other files), and then neither the pattern nor an inode leads to the middle
    /// generations. They are the files of its directory named after it with a suffix
    /// (`app.log.3`, `app.log-20240101` for `app.log`) that the pattern does not match,
    /// renamed or created after `rotated` (their ctime, or at the same time: timestamps
    /// are coarse, and reading twice beats losing), not compressed, not followed
    /// and not in `known_inodes` (the position file's, read from their own positions).
    /// They are read from their start, oldest first, before the file that replaced them.
    fn follow_later_generations(
        &mut self,
        stream: &Path,
        rotated: &Path,
        group_index: usize,
        known_inodes: &[u64],
    ) {
        let (Some(directory), Some(stream_name)) = (
            stream.parent(),
            stream.file_name().and_then(|name| name.to_str()),
        ) else {
            return;
        };
        let Some(rotated_at) = reader::changed_at(rotated) else {
            return;
        };
        let pattern = &self.settings.groups[group_index].pattern;
        let candidates = reader::list_regular_files(directory).unwrap_or_default();
        for (path, key, _) in candidates {
            let Some(name) = path.file_name().and_then(|name| name.to_str()) else {
                continue;
            };
            let later_generation = name.len() > stream_name.len()
                && name.starts_with(stream_name)
                && !pattern.is_match(name)
                && !self.files.contains_key(&key)
                && !known_inodes.contains(&key.inode)
                && reader::changed_at(&path).is_some_and(|changed| changed >= rotated_at);
            if !later_generation {
                continue;
            }
            match TailFile::open(&path, group_index, 0) {
                Ok(Some(mut file)) if file.key == key && !reader::is_compressed(&file.head) => {
                    warn!(file = %path.display(), stream = %stream.display(), "a generation rotated away before it was ever read; reading it from its start");
                    file.rotated = true;
                    self.files.insert(key, file);
                }
                Ok(_) => {}
                Err(error) => {
                    warn!(file = %path.display(), %error, "cannot open a rotated-away generation; its lines are not delivered");
                }
            }
        }
    }

    /// Files in the position file that no longer match (rotated before the restart):
    /// found by inode in their directory, they are read to their end.
    fn resume_rotated(&mut self, saved: &position::SavedPositions) {
        for entry in &saved.entries {
            if self.files.keys().any(|key| key.inode == entry.inode) {
                continue;
            }
            let recorded = Path::new(&entry.file);
            let Some(directory) = recorded.parent() else {
                continue;
            };
            let Some(group) = self
                .settings
                .groups
                .iter()
                .position(|group| group.directory == directory)
            else {
                continue;
            };
            let Ok(candidates) = reader::list_regular_files(directory) else {
                continue;
            };
            let Some((path, key, size_bytes)) = candidates
                .into_iter()
                .find(|(_, key, _)| key.inode == entry.inode)
            else {
                continue;
            };
            if size_bytes < entry.pos {
                continue;
            }
            if let Ok(Some(mut file)) = TailFile::open(&path, group, entry.pos) {
                if file.key == key {
                    info!(file = %path.display(), offset_bytes = entry.pos, "TAILDIR reading a file rotated before the restart to its end");
                    file.rotated = true;
                    self.files.insert(key, file);
                    if let Some(stream) = self.stream_of(&path, recorded, group) {
                        let known: Vec<u64> =
                            saved.entries.iter().map(|entry| entry.inode).collect();
                        self.follow_later_generations(&stream, &path, group, &known);
                    }
                }
            }
        }
    }

    /// The followed file whose rotated generation `rotated` is: `recorded` (the name it
    /// had in the position file) when its group's pattern matches it, else the longest
    /// followed name of the group that `rotated`'s name starts with.
    fn stream_of(&self, rotated: &Path, recorded: &Path, group: usize) -> Option<PathBuf> {
        let pattern = &self.settings.groups[group].pattern;
        let name_of = |path: &Path| path.file_name()?.to_str().map(str::to_string);
        if name_of(recorded).is_some_and(|name| pattern.is_match(&name)) {
            return Some(recorded.to_path_buf());
        }
        let rotated_name = name_of(rotated)?;
        self.files
            .values()
            .filter(|file| file.matched && file.group == group)
            .filter_map(|file| Some((name_of(&file.path)?, file.path.clone())))
            .filter(|(name, _)| rotated_name.len() > name.len() && rotated_name.starts_with(name))
            .max_by_key(|(name, _)| name.len())
            .map(|(_, path)| path)
    }

    /// The position file's entries and the fingerprints beside them.
    fn positions(&self) -> (Vec<PositionEntry>, Vec<Fingerprint>) {
        let mut entries = Vec::new();
        let mut prints = Vec::new();
        // Files not found in the last listing stay listed too: a listing races with
        // renames (a file renamed between readdir and stat is found under neither
        // name), and a restarted source looks for each inode in its directory anyway.
        for file in self.files.values() {
            entries.push(PositionEntry {
                inode: file.key.inode,
                pos: file.committed_pos,
                file: file.path.display().to_string(),
            });
            prints.push(Fingerprint {
                dev: file.key.dev,
                inode: file.key.inode,
                pos: file.committed_pos,
                head: position::to_hex(&file.head),
            });
        }
        (entries, prints)
    }

    /// Writes the position file. The fingerprints written just before it also keep
    /// those of the position file being replaced: a crash between the two writes leaves
    /// the old positions with fingerprints that still match them.
    fn store_positions(&mut self) -> Result<(), SourceError> {
        let (entries, prints) = self.positions();
        let mut written = prints.clone();
        written.extend(
            self.stored_prints
                .iter()
                .filter(|old| {
                    !prints
                        .iter()
                        .any(|new| new.inode == old.inode && new.pos == old.pos)
                })
                .cloned(),
        );
        position::store(&self.settings.position_file, &entries, written)?;
        self.stored_prints = prints;
        Ok(())
    }

    /// The order files are read in: rotated ones first (their lines came before those
    /// of the file that replaced them), then oldest modification first, as Flume.
    fn reading_order(&self) -> Vec<FileKey> {
        let mut keys: Vec<(bool, std::time::SystemTime, FileKey)> = self
            .files
            .values()
            .map(|file| (!file.rotated, file.modified, file.key))
            .collect();
        keys.sort();
        keys.into_iter().map(|(_, _, key)| key).collect()
    }

    /// Lets go of rotated files read to their end and quiet, and closes idle files.
    /// Returns whether the set of files changed.
    fn retire_and_close(&mut self) -> bool {
        let idle_timeout = self.settings.idle_timeout;
        let before = self.files.len();
        self.files.retain(|_, file| {
            let done = file.rotated && file.at_end && file.unchanged_for() >= ROTATED_FILE_QUIET;
            if done {
                info!(file = %file.path.display(), "finished a rotated-away file");
            }
            !done
        });
        for file in self.files.values_mut() {
            if !file.rotated
                && file.at_end
                && file.is_open()
                && file.unchanged_for() >= idle_timeout
            {
                debug!(file = %file.path.display(), "closing an idle file");
                file.close();
            }
        }
        before != self.files.len()
    }
}

/// Where a file found at start begins reading.
enum StartAt {
    Offset(u64),
    End,
    /// Truncated while the source was down: from 0, after the copy starting with `copy`
    /// was read from `offset`.
    AfterTruncation {
        copy: Vec<u8>,
        offset: u64,
    },
}

/// Follows the file groups until `stop` is raised.
pub async fn run(
    settings: TaildirSettings,
    mut processor: ChannelProcessor,
    counters: Arc<SourceCounters>,
    mut stop: StopSignal,
) -> Result<(), SourceError> {
    if let Some(parent) = settings.position_file.parent() {
        std::fs::create_dir_all(parent).map_err(file_error("cannot create", parent))?;
    }
    for group in &settings.groups {
        if !group.directory.is_dir() {
            return Err(SourceError::Violation(format!(
                "the directory of file group {} does not exist: {} (filegroups.{} = {}/{})",
                group.name,
                group.directory.display(),
                group.name,
                group.directory.display(),
                group
                    .pattern
                    .as_str()
                    .trim_start_matches("^(?:")
                    .trim_end_matches(")$"),
            )));
        }
    }
    let directories: Vec<&Path> = settings
        .groups
        .iter()
        .map(|group| group.directory.as_path())
        .collect();
    let mut watch = ChangeWatch::new(&directories);
    let saved = position::load(&settings.position_file);
    if !saved.entries.is_empty() {
        info!(file = %settings.position_file.display(), entries = saved.entries.len(), "TAILDIR positions loaded");
    }
    let mut tailer = Tailer::new(settings);
    tailer.stored_prints = saved.fingerprints.clone();
    tailer.scan(Some(&saved))?;
    tailer.store_positions()?;
    let mut last_scan = Instant::now();
    let mut last_position_write = Instant::now();
    let mut positions_changed = false;
    let mut backoff = Duration::ZERO;
    let outcome = 'running: loop {
        if stop.is_raised() {
            break Ok(());
        }
        let mut delivered_any = false;
        for key in tailer.reading_order() {
            let mut batches = 0_u64;
            while batches < tailer.settings.max_batch_count {
                if stop.is_raised() {
                    break 'running Ok(());
                }
                if last_scan.elapsed() >= BUSY_SCAN_INTERVAL {
                    if let Err(error) = tailer.scan(None) {
                        break 'running Err(error);
                    }
                    last_scan = Instant::now();
                }
                let Some(file) = tailer.files.get_mut(&key) else {
                    break;
                };
                let group = &tailer.settings.groups[file.group];
                let outcome = match file.read_batch(&tailer.settings, group) {
                    Ok(outcome) => outcome,
                    Err(error) => {
                        counters::increment(&counters.event_read_failures);
                        break 'running Err(error);
                    }
                };
                let batch = match outcome {
                    ReadOutcome::Lines(batch) => batch,
                    ReadOutcome::Nothing => break,
                    ReadOutcome::Truncated { head, offset } => {
                        let path = file.path.clone();
                        let group_index = file.group;
                        tailer.follow_copy(&path, &head, offset, group_index, &[]);
                        positions_changed = true;
                        // Read the copy first: its lines came before the file's new ones.
                        break;
                    }
                };
                counters::increment(&counters.append_batches_received);
                counters::add(&counters.events_received, batch.events.len());
                let end = batch.end_pos;
                let mut delivery = processor.prepare(batch.events);
                match processor.attempt_patiently(&mut delivery, &mut stop).await {
                    Ok(Ok(())) => {}
                    Ok(Err(refused)) => break 'running Err(refused.into()),
                    Err(_stopped) => break 'running Ok(()),
                }
                counters::increment(&counters.append_batches_accepted);
                if let Some(file) = tailer.files.get_mut(&key) {
                    file.commit(end);
                }
                if let Err(error) = tailer.store_positions() {
                    break 'running Err(error);
                }
                last_position_write = Instant::now();
                positions_changed = false;
                delivered_any = true;
                batches += 1;
            }
        }
        if tailer.retire_and_close() {
            positions_changed = true;
        }
        if positions_changed && last_position_write.elapsed() >= tailer.settings.write_pos_interval
        {
            if let Err(error) = tailer.store_positions() {
                break Err(error);
            }
            last_position_write = Instant::now();
            positions_changed = false;
        }
        if delivered_any {
            backoff = Duration::ZERO;
            continue;
        }
        backoff = (backoff + tailer.settings.backoff_sleep_increment)
            .min(tailer.settings.max_backoff_sleep);
        if !watch.wait(backoff, &mut stop).await {
            break Ok(());
        }
        if let Err(error) = tailer.scan(None) {
            break Err(error);
        }
        last_scan = Instant::now();
    };
    processor.close();
    // What was committed is recorded whatever stopped the source.
    tailer.store_positions()?;
    outcome
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn settings(directory: &Path, batch_size: usize) -> TaildirSettings {
        TaildirSettings {
            groups: vec![FileGroup {
                name: "g1".into(),
                directory: directory.to_path_buf(),
                pattern: regex::Regex::new(r"^(?:.*\.log)$").unwrap(),
                headers: vec![("topic".into(), "app".into())],
            }],
            position_file: directory.join("positions").join("taildir_position.json"),
            batch_size,
            max_batch_count: u64::MAX,
            skip_to_end: false,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            write_pos_interval: DEFAULT_WRITE_POS_INTERVAL,
            byte_offset_header: true,
            file_header_key: Some("file".into()),
            cache_pattern_matching: false,
            backoff_sleep_increment: DEFAULT_BACKOFF_SLEEP_INCREMENT,
            max_backoff_sleep: DEFAULT_MAX_BACKOFF_SLEEP,
        }
    }

    fn append(path: &Path, text: &str) {
        fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
    }

    use std::fs;

    /// Reads every whole line available from every file, committing as it goes, in
    /// the source's order; truncations are handled as the source does.
    fn read_all(tailer: &mut Tailer) -> Vec<String> {
        tailer.scan(None).unwrap();
        let mut bodies = Vec::new();
        loop {
            let mut progressed = false;
            for key in tailer.reading_order() {
                while let Some(file) = tailer.files.get_mut(&key) {
                    let group = &tailer.settings.groups[file.group];
                    match file.read_batch(&tailer.settings, group).unwrap() {
                        ReadOutcome::Lines(batch) => {
                            bodies.extend(
                                batch
                                    .events
                                    .iter()
                                    .map(|event| String::from_utf8(event.body.to_vec()).unwrap()),
                            );
                            file.commit(batch.end_pos);
                            progressed = true;
                        }
                        ReadOutcome::Nothing => break,
                        ReadOutcome::Truncated { head, offset } => {
                            let (path, group) = (file.path.clone(), file.group);
                            tailer.follow_copy(&path, &head, offset, group, &[]);
                            progressed = true;
                            break;
                        }
                    }
                }
            }
            if !progressed {
                return bodies;
            }
        }
    }

    #[test]
    fn a_last_line_without_its_newline_waits_for_it() {
        let directory = tempfile::tempdir().unwrap();
        let log = directory.path().join("app.log");
        append(&log, "one\r\ntwo\nthr");
        let mut tailer = Tailer::new(settings(directory.path(), 10));
        assert_eq!(read_all(&mut tailer), ["one", "two"]);
        assert_eq!(read_all(&mut tailer), Vec::<String>::new());
        append(&log, "ee\n");
        assert_eq!(read_all(&mut tailer), ["three"]);
    }

    #[test]
    fn events_carry_group_headers_the_byte_offset_and_the_file() {
        let directory = tempfile::tempdir().unwrap();
        let log = directory.path().join("app.log");
        append(&log, "ab\ncd\n");
        let mut tailer = Tailer::new(settings(directory.path(), 10));
        tailer.scan(None).unwrap();
        let key = tailer.reading_order()[0];
        let file = tailer.files.get_mut(&key).unwrap();
        let group = &tailer.settings.groups[0];
        let ReadOutcome::Lines(batch) = file.read_batch(&tailer.settings, group).unwrap() else {
            panic!("lines expected");
        };
        let second = &batch.events[1];
        assert_eq!(second.header("topic"), Some("app"));
        assert_eq!(second.header(BYTE_OFFSET_HEADER), Some("3"));
        assert_eq!(
            second.header("file"),
            Some(log.display().to_string().as_str())
        );
        assert_eq!(batch.end_pos, 6);
    }

    #[test]
    fn a_renamed_file_is_read_to_its_end_before_the_new_one() {
        let directory = tempfile::tempdir().unwrap();
        let log = directory.path().join("app.log");
        append(&log, "a1\n");
        let mut tailer = Tailer::new(settings(directory.path(), 10));
        assert_eq!(read_all(&mut tailer), ["a1"]);
        append(&log, "a2\n");
        fs::rename(&log, directory.path().join("app.log.1")).unwrap();
        append(&log, "b1\n");
        assert_eq!(read_all(&mut tailer), ["a2", "b1"]);
        let (entries, _) = tailer.positions();
        let rotated = entries
            .iter()
            .find(|entry| entry.file.ends_with("app.log.1"));
        assert_eq!(rotated.map(|entry| entry.pos), Some(6), "{entries:?}");
    }

    #[test]
    fn a_deleted_and_recreated_file_loses_nothing() {
        let directory = tempfile::tempdir().unwrap();
        let log = directory.path().join("app.log");
        append(&log, "old1\n");
        let mut tailer = Tailer::new(settings(directory.path(), 10));
        assert_eq!(read_all(&mut tailer), ["old1"]);
        append(&log, "old2\n");
        fs::remove_file(&log).unwrap();
        append(&log, "new1\n");
        assert_eq!(read_all(&mut tailer), ["old2", "new1"]);
    }

    #[test]
    fn copy_truncate_reads_the_lines_before_the_truncation_from_the_copy() {
        let directory = tempfile::tempdir().unwrap();
        let log = directory.path().join("app.log");
        append(&log, "gen1-line1\n");
        let mut tailer = Tailer::new(settings(directory.path(), 10));
        assert_eq!(read_all(&mut tailer), ["gen1-line1"]);
        append(&log, "gen1-line2\n");
        fs::copy(&log, directory.path().join("app.log.1")).unwrap();
        fs::OpenOptions::new()
            .write(true)
            .open(&log)
            .unwrap()
            .set_len(0)
            .unwrap();
        // Grown past the old position again before the source looks.
        append(&log, "gen2-line1-is-longer-than-before\n");
        assert_eq!(
            read_all(&mut tailer),
            ["gen1-line2", "gen2-line1-is-longer-than-before"]
        );
    }

    #[test]
    fn a_restart_resumes_at_the_committed_position_and_finishes_rotated_files() {
        let directory = tempfile::tempdir().unwrap();
        let log = directory.path().join("app.log");
        append(&log, "a1\na2\n");
        let config = settings(directory.path(), 1);
        fs::create_dir_all(config.position_file.parent().unwrap()).unwrap();
        let mut tailer = Tailer::new(config.clone());
        tailer.scan(None).unwrap();
        let key = tailer.reading_order()[0];
        let file = tailer.files.get_mut(&key).unwrap();
        let ReadOutcome::Lines(batch) = file.read_batch(&config, &config.groups[0]).unwrap() else {
            panic!("a line expected");
        };
        file.commit(batch.end_pos);
        tailer.store_positions().unwrap();
        drop(tailer);
        // Rotated while the source was down.
        fs::rename(&log, directory.path().join("app.log.1")).unwrap();
        append(&log, "b1\n");
        let saved = position::load(&config.position_file);
        let mut restarted = Tailer::new(config);
        restarted.scan(Some(&saved)).unwrap();
        assert_eq!(read_all(&mut restarted), ["a2", "b1"]);
    }

    /// Gives the files their modification times in this order, oldest first (the
    /// source reads rotated generations oldest first; a coarse clock could tie them).
    fn age_in_order(paths: &[&Path]) {
        let now = std::time::SystemTime::now();
        for (index, path) in paths.iter().enumerate() {
            let age = Duration::from_secs(10 * (paths.len() - index) as u64);
            fs::File::options()
                .write(true)
                .open(path)
                .unwrap()
                .set_modified(now - age)
                .unwrap();
        }
    }

    /// Reads one batch of the only file, commits it and writes the positions.
    fn read_one_batch_and_stop(config: &TaildirSettings) {
        fs::create_dir_all(config.position_file.parent().unwrap()).unwrap();
        let mut tailer = Tailer::new(config.clone());
        tailer.scan(None).unwrap();
        let key = tailer.reading_order()[0];
        let file = tailer.files.get_mut(&key).unwrap();
        let ReadOutcome::Lines(batch) = file.read_batch(config, &config.groups[0]).unwrap() else {
            panic!("a line expected");
        };
        file.commit(batch.end_pos);
        tailer.store_positions().unwrap();
    }

    fn restart(config: TaildirSettings) -> Tailer {
        let saved = position::load(&config.position_file);
        let mut restarted = Tailer::new(config);
        restarted.scan(Some(&saved)).unwrap();
        restarted
    }

    #[test]
    fn a_generation_created_and_renamed_away_while_the_source_was_down_is_read() {
        let directory = tempfile::tempdir().unwrap();
        let log = directory.path().join("app.log");
        append(&log, "a1\na2\n");
        let config = settings(directory.path(), 1);
        read_one_batch_and_stop(&config);
        // Two rename rotations while the source is down: the generation holding b1 is
        // never seen under a name the pattern matches, nor in the position file.
        let first = directory.path().join("app.log.1");
        let second = directory.path().join("app.log.2");
        fs::rename(&log, &first).unwrap();
        append(&log, "b1\n");
        fs::rename(&log, &second).unwrap();
        append(&log, "c1\n");
        age_in_order(&[&first, &second, &log]);
        // Neither an archive nor a file of another name is taken for a generation.
        fs::write(directory.path().join("app.log.3.gz"), b"\x1f\x8b\x08rest\n").unwrap();
        fs::write(directory.path().join("notes.txt"), b"not a log\n").unwrap();
        let mut restarted = restart(config);
        assert_eq!(read_all(&mut restarted), ["a2", "b1", "c1"]);
    }

    #[test]
    fn two_copy_truncate_rotations_while_the_source_was_down_lose_no_generation() {
        let directory = tempfile::tempdir().unwrap();
        let log = directory.path().join("app.log");
        append(&log, "gen1-line1\ngen1-line2\n");
        let config = settings(directory.path(), 1);
        read_one_batch_and_stop(&config);
        let first = directory.path().join("app.log.1");
        let second = directory.path().join("app.log.2");
        let truncate = || {
            fs::OpenOptions::new()
                .write(true)
                .open(&log)
                .unwrap()
                .set_len(0)
                .unwrap();
        };
        fs::copy(&log, &first).unwrap();
        truncate();
        append(&log, "gen2-line1\n");
        fs::copy(&log, &second).unwrap();
        truncate();
        append(&log, "gen3-line1\n");
        age_in_order(&[&first, &second, &log]);
        let mut restarted = restart(config);
        assert_eq!(
            read_all(&mut restarted),
            ["gen1-line2", "gen2-line1", "gen3-line1"]
        );
    }

    #[test]
    fn file_group_paths_split_into_a_directory_and_a_whole_name_pattern() {
        let (directory, pattern) = file_group_path("/var/log/app/.*\\.log").unwrap();
        assert_eq!(directory, Path::new("/var/log/app"));
        assert!(pattern.is_match("x.log"));
        assert!(!pattern.is_match("x.log.1"));
        assert!(file_group_path("relative/.*").is_err());
        assert!(file_group_path("/var/log/(").is_err());
        assert_eq!(batch_count("0").unwrap(), u64::MAX);
        assert_eq!(batch_count("7").unwrap(), 7);
    }
}
