//! The TAILDIR position file, in Flume's format, and Millrace's fingerprint file beside it.
//!
//! ## Flume's position file (exact; `docs/adapters.md`, "TAILDIR")
//!
//! One compact JSON array, no newline, each object with exactly the keys `inode`, `pos`
//! and `file`, in that order (Flume's reader fails on any other key, so none is added):
//!
//! ```text
//! [{"inode":2496001,"pos":1024,"file":"/var/log/app/app.log"}]
//! ```
//!
//! `pos` is the offset of the first byte not yet committed to the channel. A position
//! applies to a file only when the file at `file` has that inode (Flume's rule).
//!
//! Unlike Flume, the file is replaced atomically: written to `<name>.tmp`, fsynced,
//! renamed over the old one, and the directory fsynced, so a crash leaves either the old
//! or the new positions, never an empty or torn file.
//!
//! ## Millrace's fingerprint file (`<positionFile>.millrace`)
//!
//! Flume's format has no room for a device number or for what a file held, so Millrace
//! keeps both in a second file written just before the position file:
//! `{"version":1,"files":[{"dev":..,"inode":..,"pos":..,"head":"<hex>"}]}`, `head` being
//! the file's first bytes. On restart a file whose first bytes differ from its head (or
//! that is shorter than its position) was truncated while the source was down (copy-
//! truncate rotation), and the head finds the copy to finish reading. A fingerprint is
//! used only when its `pos` equals the position file's for the inode; the fingerprint file
//! also keeps the fingerprints of the position file it is about to replace, so a crash
//! between the two writes leaves matching pairs. It is only a hint, replaced without fsync.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tracing::warn;

use crate::file_problem::{file_error, FileProblem};

/// One entry of Flume's position file. Do not reorder or add fields: Flume reads exactly
/// these three keys in this order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PositionEntry {
    /// The file's inode number.
    pub inode: u64,
    /// The offset of the first byte not yet committed.
    pub pos: u64,
    /// The file's absolute path.
    pub file: String,
}

/// Millrace's extra knowledge of one file (see the module documentation).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fingerprint {
    /// The device holding the file.
    pub dev: u64,
    /// Its inode.
    pub inode: u64,
    /// The position written with this fingerprint.
    pub pos: u64,
    /// Its first bytes, in hexadecimal.
    pub head: String,
}

/// The fingerprint file's layout.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct FingerprintFile {
    version: u32,
    files: Vec<Fingerprint>,
}

/// The only fingerprint file version.
const FINGERPRINT_VERSION: u32 = 1;

/// What a position file held at start.
#[derive(Debug, Default)]
pub struct SavedPositions {
    /// The entries of Flume's position file.
    pub entries: Vec<PositionEntry>,
    /// The fingerprints that match an entry's position.
    pub fingerprints: Vec<Fingerprint>,
}

impl SavedPositions {
    /// The fingerprint recorded with `entry`, if one was written with the same position.
    pub fn fingerprint_of(&self, entry: &PositionEntry) -> Option<&Fingerprint> {
        self.fingerprints
            .iter()
            .find(|print| print.inode == entry.inode && print.pos == entry.pos)
    }
}

/// The fingerprint file beside `position_file`.
pub fn fingerprint_path(position_file: &Path) -> PathBuf {
    let mut name = position_file.as_os_str().to_owned();
    name.push(".millrace");
    PathBuf::from(name)
}

fn temporary_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".tmp");
    PathBuf::from(name)
}

/// Reads the position file (and its fingerprints). A missing file means no positions; an
/// empty or unreadable one is logged and ignored, as Flume does: every file is then read
/// from its start (or its end with `skipToEnd`), which repeats lines but loses none.
pub fn load(position_file: &Path) -> SavedPositions {
    let entries = match fs::read(position_file) {
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            return SavedPositions::default()
        }
        Err(error) => {
            warn!(file = %position_file.display(), %error, "cannot read the TAILDIR position file; reading every file from its start");
            return SavedPositions::default();
        }
        Ok(bytes) => match parse_positions(&bytes) {
            Ok(entries) => entries,
            Err(error) => {
                warn!(file = %position_file.display(), %error, "the TAILDIR position file is not a JSON array of {{inode, pos, file}}; ignored, so every file is read from its start");
                return SavedPositions::default();
            }
        },
    };
    let fingerprints = fs::read(fingerprint_path(position_file))
        .ok()
        .and_then(|bytes| serde_json::from_slice::<FingerprintFile>(&bytes).ok())
        .filter(|file| file.version == FINGERPRINT_VERSION)
        .map(|file| file.files)
        .unwrap_or_default();
    SavedPositions {
        entries,
        fingerprints,
    }
}

/// Parses Flume's position file text. Extra keys are tolerated (Flume itself would fail).
pub fn parse_positions(bytes: &[u8]) -> Result<Vec<PositionEntry>, serde_json::Error> {
    serde_json::from_slice(bytes)
}

/// Flume's text for `entries`: compact, no newline.
pub fn render_positions(entries: &[PositionEntry]) -> Vec<u8> {
    serde_json::to_vec(entries).expect("positions serialize")
}

/// Writes the fingerprints (replaced by rename, not synced: they are a hint), then the
/// positions atomically: temporary file, fsync, rename, directory fsync.
pub fn store(
    position_file: &Path,
    entries: &[PositionEntry],
    fingerprints: Vec<Fingerprint>,
) -> Result<(), FileProblem> {
    let hints = fingerprint_path(position_file);
    let hint_bytes = serde_json::to_vec(&FingerprintFile {
        version: FINGERPRINT_VERSION,
        files: fingerprints,
    })
    .expect("fingerprints serialize");
    let temporary_hints = temporary_path(&hints);
    fs::write(&temporary_hints, hint_bytes)
        .and_then(|()| fs::rename(&temporary_hints, &hints))
        .map_err(file_error(
            "cannot write the TAILDIR fingerprints to",
            &hints,
        ))?;
    let temporary = temporary_path(position_file);
    File::create(&temporary)
        .and_then(|mut file| {
            file.write_all(&render_positions(entries))?;
            file.sync_data()
        })
        .and_then(|()| fs::rename(&temporary, position_file))
        .map_err(file_error(
            "cannot write the TAILDIR positions to",
            position_file,
        ))?;
    if let Some(directory) = position_file.parent() {
        File::open(directory)
            .and_then(|directory| directory.sync_all())
            .map_err(file_error("cannot sync", directory))?;
    }
    Ok(())
}

/// Lower-case hexadecimal of `bytes`.
pub fn to_hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut text, byte| {
            let _ = write!(text, "{byte:02x}");
            text
        })
}

/// The bytes of lower-case or upper-case hexadecimal; `None` when it is not.
pub fn from_hex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|at| u8::from_str_radix(text.get(at..at + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_are_written_in_flumes_compact_format_and_read_back() {
        let entries = vec![
            PositionEntry {
                inode: 2496001,
                pos: 1024,
                file: "/var/log/app/app.log".into(),
            },
            PositionEntry {
                inode: 2496007,
                pos: 0,
                file: "/var/log/app/b.log".into(),
            },
        ];
        let text = String::from_utf8(render_positions(&entries)).unwrap();
        assert_eq!(
            text,
            r#"[{"inode":2496001,"pos":1024,"file":"/var/log/app/app.log"},{"inode":2496007,"pos":0,"file":"/var/log/app/b.log"}]"#
        );
        assert_eq!(parse_positions(text.as_bytes()).unwrap(), entries);
    }

    #[test]
    fn a_flume_written_file_with_gson_escapes_is_read() {
        let text = br#"[{"inode":7,"pos":3,"file":"/logs/a\u003cb\u003e.log"}]"#;
        let entries = parse_positions(text).unwrap();
        assert_eq!(entries[0].file, "/logs/a<b>.log");
    }

    #[test]
    fn a_missing_empty_or_corrupt_position_file_means_no_positions() {
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("taildir_position.json");
        assert!(load(&path).entries.is_empty());
        fs::write(&path, "").unwrap();
        assert!(load(&path).entries.is_empty());
        fs::write(&path, "[{\"inode\":1,").unwrap();
        assert!(load(&path).entries.is_empty());
    }

    #[test]
    fn stored_positions_replace_the_file_whole_with_their_fingerprints() {
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("taildir_position.json");
        let entries = vec![PositionEntry {
            inode: 5,
            pos: 10,
            file: "/x".into(),
        }];
        let print = Fingerprint {
            dev: 1,
            inode: 5,
            pos: 10,
            head: to_hex(b"hello"),
        };
        store(&path, &entries, vec![print.clone()]).unwrap();
        let loaded = load(&path);
        assert_eq!(loaded.entries, entries);
        assert_eq!(loaded.fingerprint_of(&entries[0]), Some(&print));
        assert!(!temporary_path(&path).exists());
        let moved = PositionEntry {
            pos: 11,
            ..entries[0].clone()
        };
        assert_eq!(
            loaded.fingerprint_of(&moved),
            None,
            "a fingerprint of another position is stale"
        );
        assert_eq!(from_hex(&print.head).unwrap(), b"hello");
    }
}
