//! One followed file: its identity, its committed position and the lines read past it.
//!
//! The buffer holds the file's bytes from the committed position on; a batch is the
//! whole lines at its front, and committing the batch moves the position (and the
//! buffer's start) past them. Nothing in the buffer counts as delivered until then.

use std::fs::{self, File};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use millrace_client::Event;

use super::{FileGroup, TaildirSettings, BYTE_OFFSET_HEADER, ROTATED_FILE_QUIET};
use crate::file_problem::file_error;
use crate::sources::SourceError;

/// Bytes asked of a file per read.
const READ_CHUNK_BYTES: usize = 1 << 20;
/// How many first bytes of a file identify its content (to tell a truncated file that
/// grew again, and to find the copy of a copy-truncate rotation).
pub const HEAD_BYTES: usize = 256;
/// A directory listing is reused (`cachePatternMatching`) only when the directory's
/// mtime is at least this old, so a change within the mtime's granularity is not missed.
const LISTING_CACHE_MIN_AGE: Duration = Duration::from_secs(1);

/// A file's identity: its device and inode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FileKey {
    /// `st_dev`.
    pub dev: u64,
    /// `st_ino`.
    pub inode: u64,
}

impl FileKey {
    fn of(metadata: &fs::Metadata) -> FileKey {
        FileKey {
            dev: metadata.dev(),
            inode: metadata.ino(),
        }
    }
}

/// Lines read from a file, ready to deliver, and the position just past them.
#[derive(Debug)]
pub struct LineBatch {
    /// One event per line.
    pub events: Vec<Event>,
    /// The offset after the last line.
    pub end_pos: u64,
}

/// What a read found.
#[derive(Debug)]
pub enum ReadOutcome {
    /// Whole lines.
    Lines(LineBatch),
    /// No whole line yet.
    Nothing,
    /// The file was truncated (copy-truncate rotation); it is now read from its start.
    /// `head` is what it started with before, `offset` the position it had reached.
    Truncated {
        /// The file's first bytes before the truncation.
        head: Vec<u8>,
        /// Its committed position before the truncation.
        offset: u64,
    },
}

/// A followed file.
#[derive(Debug)]
pub struct TailFile {
    /// Its identity.
    pub key: FileKey,
    /// Where it was last seen.
    pub path: PathBuf,
    /// Its group's index.
    pub group: usize,
    file: Option<File>,
    /// The offset of its first byte not yet committed.
    pub committed_pos: u64,
    buffer: Vec<u8>,
    /// Where `committed_pos` is in `buffer`.
    buffer_start: usize,
    /// Found under a name its group's pattern matches at the last scan.
    pub matched: bool,
    /// Renamed to a name no pattern matches, or deleted: read to its end, then let go.
    pub rotated: bool,
    /// Gone from its directory (only its descriptor reaches it).
    pub deleted: bool,
    /// Its first bytes (up to [`HEAD_BYTES`]).
    pub head: Vec<u8>,
    /// Its modification time at the last look.
    pub modified: SystemTime,
    size_bytes: u64,
    last_change: Instant,
    /// Read to its end at the last read, nothing left over.
    pub at_end: bool,
}

impl TailFile {
    /// Opens `path` to read from `offset`; `None` when it is gone.
    pub fn open(path: &Path, group: usize, offset: u64) -> Result<Option<TailFile>, SourceError> {
        let file = match File::open(path) {
            Ok(file) => file,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(error) => return Err(file_error("cannot open", path)(error).into()),
        };
        let metadata = file.metadata().map_err(file_error("cannot stat", path))?;
        let head = read_head(&file, path)?;
        Ok(Some(TailFile {
            key: FileKey::of(&metadata),
            path: path.to_path_buf(),
            group,
            file: Some(file),
            committed_pos: offset.min(metadata.len()),
            buffer: Vec::new(),
            buffer_start: 0,
            matched: false,
            rotated: false,
            deleted: false,
            head,
            modified: metadata.modified().unwrap_or(UNIX_EPOCH),
            size_bytes: metadata.len(),
            last_change: Instant::now(),
            at_end: false,
        }))
    }

    /// Whether its descriptor is open.
    pub fn is_open(&self) -> bool {
        self.file.is_some()
    }

    /// Closes it (idle); it is reopened by name when it is read again.
    pub fn close(&mut self) {
        self.file = None;
        self.buffer = Vec::new();
        self.buffer_start = 0;
    }

    /// How long since it last grew, changed or had lines committed.
    pub fn unchanged_for(&self) -> Duration {
        self.last_change.elapsed()
    }

    /// Notes what a directory scan saw of it.
    pub fn observe(&mut self, size_bytes: u64, modified: SystemTime) {
        if size_bytes != self.size_bytes || modified != self.modified {
            self.size_bytes = size_bytes;
            self.modified = modified;
            self.last_change = Instant::now();
            self.at_end = false;
        }
    }

    /// Records that the lines up to `end_pos` are committed.
    pub fn commit(&mut self, end_pos: u64) {
        let advanced = usize::try_from(end_pos - self.committed_pos).expect("a batch fits memory");
        self.buffer_start += advanced;
        self.committed_pos = end_pos;
        if self.buffer_start == self.buffer.len() {
            self.buffer.clear();
            self.buffer_start = 0;
        }
        self.last_change = Instant::now();
    }

    fn buffered_end(&self) -> u64 {
        self.committed_pos + (self.buffer.len() - self.buffer_start) as u64
    }

    /// Reopens a file closed for idleness; `false` when its name now holds another file
    /// (then it is finished: it was read to its end before it was closed).
    fn reopen(&mut self) -> Result<bool, SourceError> {
        if self.file.is_some() {
            return Ok(true);
        }
        let Some(reopened) = TailFile::open(&self.path, self.group, self.committed_pos)? else {
            self.rotated = true;
            self.deleted = true;
            return Ok(false);
        };
        if reopened.key != self.key {
            self.rotated = true;
            self.deleted = true;
            return Ok(false);
        }
        self.file = reopened.file;
        Ok(true)
    }

    /// The whole lines after the committed position, at most `batchSize` of them. A
    /// rotated file quiet for [`ROTATED_FILE_QUIET`] also gives its last line without a
    /// newline.
    pub fn read_batch(
        &mut self,
        settings: &TaildirSettings,
        group: &FileGroup,
    ) -> Result<ReadOutcome, SourceError> {
        if !self.reopen()? {
            return Ok(ReadOutcome::Nothing);
        }
        let file = self.file.as_ref().expect("reopened above");
        let metadata = file
            .metadata()
            .map_err(file_error("cannot stat", &self.path))?;
        let size_bytes = metadata.len();
        if size_bytes != self.size_bytes {
            self.size_bytes = size_bytes;
            self.last_change = Instant::now();
        }
        self.modified = metadata.modified().unwrap_or(self.modified);
        if size_bytes > self.buffered_end() || self.head.len() < HEAD_BYTES {
            let head_now = read_head(file, &self.path)?;
            let same_start = head_now.starts_with(&self.head) || self.head.starts_with(&head_now);
            if size_bytes < self.buffered_end() || !same_start {
                return Ok(self.truncated(head_now));
            }
            if head_now.len() > self.head.len() {
                self.head = head_now;
            }
        } else if size_bytes < self.buffered_end() {
            let head_now = read_head(file, &self.path)?;
            return Ok(self.truncated(head_now));
        }
        let flush_partial = self.rotated && self.unchanged_for() >= ROTATED_FILE_QUIET;
        let mut events = Vec::new();
        let mut cursor = self.buffer_start;
        let mut reached_end = false;
        loop {
            while events.len() < settings.batch_size {
                let Some(newline) = memchr(&self.buffer[cursor..]) else {
                    break;
                };
                let line_offset = self.committed_pos + (cursor - self.buffer_start) as u64;
                let mut line = &self.buffer[cursor..cursor + newline];
                if let Some(without_return) = line.strip_suffix(b"\r") {
                    line = without_return;
                }
                events.push(line_event(line, line_offset, &self.path, settings, group));
                cursor += newline + 1;
            }
            if events.len() >= settings.batch_size || reached_end {
                break;
            }
            if self.buffer_start > 0 {
                self.buffer.drain(..self.buffer_start);
                cursor -= self.buffer_start;
                self.buffer_start = 0;
            }
            let file = self.file.as_ref().expect("reopened above");
            let read_from = self.buffered_end();
            let filled = self.buffer.len();
            self.buffer.resize(filled + READ_CHUNK_BYTES, 0);
            let read = file
                .read_at(&mut self.buffer[filled..], read_from)
                .map_err(file_error("cannot read", &self.path));
            let read = match read {
                Ok(read) => read,
                Err(error) => {
                    self.buffer.truncate(filled);
                    return Err(error.into());
                }
            };
            self.buffer.truncate(filled + read);
            reached_end = read == 0;
        }
        if reached_end
            && flush_partial
            && events.len() < settings.batch_size
            && cursor < self.buffer.len()
        {
            let line_offset = self.committed_pos + (cursor - self.buffer_start) as u64;
            let line = &self.buffer[cursor..];
            events.push(line_event(line, line_offset, &self.path, settings, group));
            cursor = self.buffer.len();
        }
        if events.is_empty() {
            self.at_end = reached_end && cursor == self.buffer.len();
            return Ok(ReadOutcome::Nothing);
        }
        self.at_end = false;
        Ok(ReadOutcome::Lines(LineBatch {
            events,
            end_pos: self.committed_pos + (cursor - self.buffer_start) as u64,
        }))
    }

    /// Starts the file over after a truncation; says where it was.
    fn truncated(&mut self, head_now: Vec<u8>) -> ReadOutcome {
        tracing::warn!(
            file = %self.path.display(),
            position_bytes = self.committed_pos,
            size_bytes = self.size_bytes,
            "file was truncated (copy-truncate rotation?); reading it again from its start"
        );
        let outcome = ReadOutcome::Truncated {
            head: std::mem::replace(&mut self.head, head_now),
            offset: self.committed_pos,
        };
        self.committed_pos = 0;
        self.buffer.clear();
        self.buffer_start = 0;
        self.last_change = Instant::now();
        self.at_end = false;
        outcome
    }
}

fn memchr(bytes: &[u8]) -> Option<usize> {
    bytes.iter().position(|&byte| byte == b'\n')
}

fn line_event(
    line: &[u8],
    offset: u64,
    path: &Path,
    settings: &TaildirSettings,
    group: &FileGroup,
) -> Event {
    let mut event = Event::new(Bytes::copy_from_slice(line));
    if !group.headers.is_empty() {
        event.headers.extend(group.headers.iter().cloned());
    }
    if settings.byte_offset_header {
        event
            .headers
            .push((BYTE_OFFSET_HEADER.to_string(), offset.to_string()));
    }
    if let Some(key) = &settings.file_header_key {
        event
            .headers
            .push((key.clone(), path.display().to_string()));
    }
    event
}

/// The first bytes of `file` (up to [`HEAD_BYTES`]).
fn read_head(file: &File, path: &Path) -> Result<Vec<u8>, SourceError> {
    let mut head = vec![0_u8; HEAD_BYTES];
    let mut filled = 0;
    while filled < HEAD_BYTES {
        let read = file
            .read_at(&mut head[filled..], filled as u64)
            .map_err(file_error("cannot read", path))?;
        if read == 0 {
            break;
        }
        filled += read;
    }
    head.truncate(filled);
    Ok(head)
}

/// Whether the file at `path` starts with `head` (never for an empty `head`).
pub fn starts_with(path: &Path, head: &[u8]) -> bool {
    if head.is_empty() {
        return false;
    }
    File::open(path)
        .ok()
        .and_then(|file| read_head(&file, path).ok())
        .is_some_and(|found| found.starts_with(head))
}

/// When the file at `path` was last renamed, created or written (its ctime); `None`
/// when it cannot be looked at.
pub fn changed_at(path: &Path) -> Option<SystemTime> {
    let metadata = fs::metadata(path).ok()?;
    let seconds = u64::try_from(metadata.ctime()).ok()?;
    let nanos = u32::try_from(metadata.ctime_nsec()).ok()?;
    UNIX_EPOCH.checked_add(Duration::new(seconds, nanos))
}

/// The first bytes of the compressed formats rotated logs are kept in (gzip, bzip2, xz,
/// zstd, zip, lz4): such a file is an archive, not lines.
const COMPRESSED_MAGICS: [&[u8]; 6] = [
    &[0x1f, 0x8b],
    b"BZh",
    &[0xfd, b'7', b'z', b'X', b'Z', 0x00],
    &[0x28, 0xb5, 0x2f, 0xfd],
    b"PK\x03\x04",
    &[0x04, 0x22, 0x4d, 0x18],
];

/// Whether a file starting with `head` is compressed.
pub fn is_compressed(head: &[u8]) -> bool {
    COMPRESSED_MAGICS
        .iter()
        .any(|magic| head.starts_with(magic))
}

/// One regular file of a directory listing.
#[derive(Debug, Clone)]
pub struct ListedFile {
    /// Its name.
    pub name: String,
    /// Its path.
    pub path: PathBuf,
    /// Its identity.
    pub key: FileKey,
    /// Its size.
    pub size_bytes: u64,
    /// Its modification time.
    pub modified: SystemTime,
}

/// The regular files of a directory: `(path, identity, size)`.
pub fn list_regular_files(directory: &Path) -> Result<Vec<(PathBuf, FileKey, u64)>, SourceError> {
    let mut found = Vec::new();
    for entry in fs::read_dir(directory).map_err(file_error("cannot list", directory))? {
        let Ok(entry) = entry else { continue };
        let path = entry.path();
        if let Ok(metadata) = fs::metadata(&path) {
            if metadata.is_file() {
                found.push((path, FileKey::of(&metadata), metadata.len()));
            }
        }
    }
    Ok(found)
}

/// A group directory's files, relisted when the directory changes.
#[derive(Debug)]
pub struct DirectoryListing {
    directory: PathBuf,
    cached_names: Option<(SystemTime, Vec<String>)>,
    entries: Vec<ListedFile>,
}

impl DirectoryListing {
    /// For `directory`, not listed yet.
    pub fn new(directory: PathBuf) -> DirectoryListing {
        DirectoryListing {
            directory,
            cached_names: None,
            entries: Vec::new(),
        }
    }

    /// The regular files found by the last [`refresh`](Self::refresh).
    pub fn entries(&self) -> &[ListedFile] {
        &self.entries
    }

    /// Lists the directory again (its names from the cache when `use_cache` and its
    /// mtime is unchanged and old enough) and stats every file.
    pub fn refresh(&mut self, use_cache: bool) -> Result<(), SourceError> {
        let directory = &self.directory;
        let modified = fs::metadata(directory)
            .and_then(|metadata| metadata.modified())
            .map_err(file_error("cannot stat", directory))?;
        let cache_valid = use_cache
            && self
                .cached_names
                .as_ref()
                .is_some_and(|(cached, _)| *cached == modified)
            && modified
                .elapsed()
                .is_ok_and(|age| age >= LISTING_CACHE_MIN_AGE);
        if !cache_valid {
            let mut names = Vec::new();
            for entry in fs::read_dir(directory).map_err(file_error("cannot list", directory))? {
                let Ok(entry) = entry else { continue };
                if let Ok(name) = entry.file_name().into_string() {
                    names.push(name);
                }
            }
            self.cached_names = Some((modified, names));
        }
        let names = &self.cached_names.as_ref().expect("listed above").1;
        self.entries.clear();
        for name in names {
            let path = directory.join(name);
            let Ok(metadata) = fs::metadata(&path) else {
                continue;
            };
            if !metadata.is_file() {
                continue;
            }
            self.entries.push(ListedFile {
                name: name.clone(),
                path,
                key: FileKey::of(&metadata),
                size_bytes: metadata.len(),
                modified: metadata.modified().unwrap_or(UNIX_EPOCH),
            });
        }
        Ok(())
    }
}
