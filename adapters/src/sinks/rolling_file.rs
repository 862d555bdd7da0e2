//! `file_roll` and the spooling-directory file sink (`SpoolingDirectoryFileSink`).
//!
//! Both write each event's body and a newline to a file named
//! `<prefix><seriesStartMillis>-<n>[.<extension>]` and start a new file every
//! `sink.rollInterval` seconds (0: never). Unlike Flume's `file_roll`, each batch is
//! synced to disk before the take commits, so a crash or power loss cannot lose events
//! that the channel already gave away; and a file is opened only when there is
//! something to write, so idle intervals leave no empty files.
//!
//! The spooling-directory variant writes into `<sink.directory>/working/` and, on each
//! roll and on stop, moves the finished file into `<sink.directory>/` (synced, then
//! renamed, then the directory synced), so a downstream `spooldir` source only ever sees
//! complete files. Like the original it refuses to start when `working/` is not empty:
//! a file there was cut short by a crash and needs a look from its operator.

use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use millrace_client::Event;
use millrace_config::unprovided::{instead_of, ComponentRole};
use millrace_config::values::Expected;
use millrace_config::{values, ComponentSettings};
use tracing::info;

use super::{SinkError, DEFAULT_BATCH_SIZE};
use crate::file_problem::file_error;

/// The working subdirectory of the spooling-directory sink.
pub const WORKING_DIRECTORY_NAME: &str = "working";
/// Write buffer of the current file.
const WRITE_BUFFER_BYTES: usize = 64 * 1024;

/// How a rolling file sink is configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RollingFileSettings {
    /// `sink.directory`.
    pub directory: PathBuf,
    /// `sink.rollInterval`; zero never rolls.
    pub roll_interval: Duration,
    /// `sink.pathManager.prefix`.
    pub prefix: String,
    /// `sink.pathManager.extension` (without the dot); empty for none.
    pub extension: String,
    /// `sink.serializer.appendNewline`.
    pub append_newline: bool,
    /// Write into `working/` and move finished files into the directory.
    pub spool_into_directory: bool,
}

/// The spooling-directory file sink's class name, accepted as Millrace's own.
pub const SPOOLING_DIRECTORY_SINK_CLASS: &str = "com.unrulymedia.flume.SpoolingDirectoryFileSink";
/// Millrace's alias for the spooling-directory file sink.
pub const SPOOLING_DIRECTORY_SINK_ALIAS: &str = "spooling_directory";
/// The one serializer the file sinks have: the body as text (Flume's default).
const TEXT_SERIALIZER: &str = "TEXT";
/// Flume's default `sink.rollInterval`.
pub const DEFAULT_ROLL_INTERVAL: Duration = Duration::from_secs(30);

impl RollingFileSettings {
    /// Reads the keys of a `file_roll` sink (Flume's `RollingFileSink`) or, with
    /// `spool_into_directory`, of a spooling-directory file sink: the settings and the
    /// batch size.
    pub(crate) fn read(
        keys: &mut ComponentSettings<'_>,
        spool_into_directory: bool,
    ) -> Option<(u64, RollingFileSettings)> {
        let directory = keys.required("sink.directory", "a directory path", values::directory);
        let roll_interval = keys.seconds_or("sink.rollInterval", DEFAULT_ROLL_INTERVAL);
        let batch_size = keys.count_or("sink.batchSize", DEFAULT_BATCH_SIZE);
        keys.parsed_or("sink.serializer", (), |value| {
            if value.eq_ignore_ascii_case(TEXT_SERIALIZER) {
                Ok(())
            } else {
                Err(Expected::new(format!(
                    "{TEXT_SERIALIZER}; {}",
                    instead_of(ComponentRole::Serializer, value)
                )))
            }
        });
        let append_newline = keys.boolean_or("sink.serializer.appendNewline", true);
        keys.choice_or("sink.pathManager", "DEFAULT", &["DEFAULT"]);
        let prefix = keys.text_or("sink.pathManager.prefix", "");
        let extension = keys.text_or("sink.pathManager.extension", "");
        let settings = RollingFileSettings {
            directory: directory?,
            roll_interval,
            prefix,
            extension,
            append_newline,
            spool_into_directory,
        };
        Some((batch_size, settings))
    }
}

#[derive(Debug)]
struct OpenFile {
    path: PathBuf,
    writer: BufWriter<File>,
}

/// Writes events to rolling files.
#[derive(Debug)]
pub struct RollingFileSink {
    settings: RollingFileSettings,
    series_start_ms: u128,
    next_file_index: u64,
    current: Option<OpenFile>,
    interval_started: Instant,
}

impl RollingFileSink {
    /// A sink that has not touched the disk yet.
    pub fn new(settings: RollingFileSettings) -> Self {
        let series_start_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |since| since.as_millis());
        RollingFileSink {
            settings,
            series_start_ms,
            next_file_index: 1,
            current: None,
            interval_started: Instant::now(),
        }
    }

    fn working_directory(&self) -> PathBuf {
        if self.settings.spool_into_directory {
            self.settings.directory.join(WORKING_DIRECTORY_NAME)
        } else {
            self.settings.directory.clone()
        }
    }

    /// Creates the directories; the spooling variant refuses a non-empty `working/`.
    pub fn start(&mut self) -> Result<(), SinkError> {
        let directory = self.working_directory();
        fs::create_dir_all(&directory).map_err(file_error("cannot create", &directory))?;
        if self.settings.spool_into_directory {
            let leftover = fs::read_dir(&directory)
                .map_err(file_error("cannot list", &directory))?
                .next();
            if let Some(entry) = leftover {
                let name = entry
                    .map(|entry| entry.path().display().to_string())
                    .unwrap_or_default();
                return Err(SinkError::CannotStart(format!(
                    "Working directory [{}] is not empty (found {name}). Please clean it and \
                     restart: move complete files into {} and delete partial ones",
                    directory.display(),
                    self.settings.directory.display()
                )));
            }
        }
        self.interval_started = Instant::now();
        Ok(())
    }

    fn next_file_name(&mut self) -> String {
        let mut name = format!(
            "{}{}-{}",
            self.settings.prefix, self.series_start_ms, self.next_file_index
        );
        self.next_file_index += 1;
        if !self.settings.extension.is_empty() {
            name.push('.');
            name.push_str(&self.settings.extension);
        }
        name
    }

    fn current_file(&mut self) -> Result<&mut OpenFile, SinkError> {
        if self.current.is_none() {
            let path = self.working_directory().join(self.next_file_name());
            let file = File::options()
                .create_new(true)
                .append(true)
                .open(&path)
                .map_err(file_error("cannot create", &path))?;
            info!(file = %path.display(), "opened a new output file");
            self.current = Some(OpenFile {
                path,
                writer: BufWriter::with_capacity(WRITE_BUFFER_BYTES, file),
            });
        }
        Ok(self.current.as_mut().expect("opened above"))
    }

    /// Appends the bodies, then flushes and syncs the file.
    pub fn write(&mut self, events: &[Event]) -> Result<(), SinkError> {
        self.roll_if_due()?;
        let append_newline = self.settings.append_newline;
        let open = self.current_file()?;
        let path = open.path.clone();
        for event in events {
            open.writer
                .write_all(&event.body)
                .map_err(file_error("cannot write", &path))?;
            if append_newline {
                open.writer
                    .write_all(b"\n")
                    .map_err(file_error("cannot write", &path))?;
            }
        }
        open.writer
            .flush()
            .map_err(file_error("cannot write", &path))?;
        open.writer
            .get_ref()
            .sync_data()
            .map_err(file_error("cannot sync", &path))?;
        Ok(())
    }

    /// Closes the current file when its interval is over.
    pub fn roll_if_due(&mut self) -> Result<(), SinkError> {
        let interval = self.settings.roll_interval;
        if interval.is_zero() || self.interval_started.elapsed() < interval {
            return Ok(());
        }
        self.interval_started = Instant::now();
        self.finish_current_file()
    }

    /// Closes the current file and, for the spooling variant, moves it into place.
    fn finish_current_file(&mut self) -> Result<(), SinkError> {
        let Some(mut open) = self.current.take() else {
            return Ok(());
        };
        let path = open.path.clone();
        open.writer
            .flush()
            .map_err(file_error("cannot write", &path))?;
        open.writer
            .get_ref()
            .sync_all()
            .map_err(file_error("cannot sync", &path))?;
        drop(open);
        if self.settings.spool_into_directory {
            let file_name = path.file_name().expect("output files have names");
            let target = self.settings.directory.join(file_name);
            fs::rename(&path, &target).map_err(file_error("cannot move", &path))?;
            File::open(&self.settings.directory)
                .and_then(|directory| directory.sync_all())
                .map_err(file_error("cannot sync", &self.settings.directory))?;
            info!(file = %target.display(), "moved a finished file into the spool directory");
        }
        Ok(())
    }

    /// Closes (and moves) the current file.
    pub fn stop(&mut self) -> Result<(), SinkError> {
        self.finish_current_file()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn settings(directory: &Path, spool: bool, roll_interval: Duration) -> RollingFileSettings {
        RollingFileSettings {
            directory: directory.to_path_buf(),
            roll_interval,
            prefix: String::new(),
            extension: String::new(),
            append_newline: true,
            spool_into_directory: spool,
        }
    }

    fn files_in(directory: &Path) -> Vec<PathBuf> {
        let mut files: Vec<PathBuf> = fs::read_dir(directory)
            .unwrap()
            .map(|entry| entry.unwrap().path())
            .filter(|path| path.is_file())
            .collect();
        files.sort();
        files
    }

    #[test]
    fn the_spooling_sink_writes_in_working_and_moves_the_file_on_stop() {
        let directory = tempfile::tempdir().unwrap();
        let mut sink = RollingFileSink::new(settings(directory.path(), true, Duration::ZERO));
        sink.start().unwrap();
        sink.write(&[Event::new("one"), Event::new("two")]).unwrap();
        let working = directory.path().join(WORKING_DIRECTORY_NAME);
        assert_eq!(files_in(&working).len(), 1);
        assert!(files_in(directory.path()).is_empty());
        sink.stop().unwrap();
        assert!(files_in(&working).is_empty());
        let finished = files_in(directory.path());
        assert_eq!(finished.len(), 1);
        assert_eq!(fs::read_to_string(&finished[0]).unwrap(), "one\ntwo\n");
    }

    #[test]
    fn the_spooling_sink_refuses_a_working_directory_that_is_not_empty() {
        let directory = tempfile::tempdir().unwrap();
        let working = directory.path().join(WORKING_DIRECTORY_NAME);
        fs::create_dir_all(&working).unwrap();
        fs::write(working.join("1-1"), "partial").unwrap();
        let mut sink = RollingFileSink::new(settings(directory.path(), true, Duration::ZERO));
        let error = sink.start().unwrap_err().to_string();
        assert!(error.contains("is not empty"), "{error}");
        assert!(error.contains("1-1"), "{error}");
    }

    #[test]
    fn a_due_roll_starts_a_new_file_and_idle_intervals_leave_no_empty_files() {
        let directory = tempfile::tempdir().unwrap();
        let mut sink =
            RollingFileSink::new(settings(directory.path(), false, Duration::from_millis(1)));
        sink.start().unwrap();
        sink.write(&[Event::new("a")]).unwrap();
        std::thread::sleep(Duration::from_millis(5));
        sink.roll_if_due().unwrap();
        std::thread::sleep(Duration::from_millis(5));
        sink.roll_if_due().unwrap();
        sink.write(&[Event::new("b")]).unwrap();
        sink.stop().unwrap();
        let contents: Vec<String> = files_in(directory.path())
            .iter()
            .map(|path| fs::read_to_string(path).unwrap())
            .collect();
        assert_eq!(contents, ["a\n", "b\n"]);
    }
}
