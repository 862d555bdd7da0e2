//! A file operation that failed, with the file and what was being done.

use std::path::{Path, PathBuf};

use thiserror::Error;

/// A file or directory could not be created, read, written, synced or moved.
#[derive(Debug, Error)]
#[error("{action} {}: {source}", .path.display())]
pub struct FileProblem {
    /// What was being done: "cannot write", "cannot move".
    pub action: &'static str,
    /// The file or directory.
    pub path: PathBuf,
    /// The operating system's reason.
    #[source]
    pub source: std::io::Error,
}

/// For `map_err`: turns an I/O error into a [`FileProblem`] about `path`.
pub fn file_error<'a>(
    action: &'static str,
    path: &'a Path,
) -> impl FnOnce(std::io::Error) -> FileProblem + 'a {
    move |source| FileProblem {
        action,
        path: path.to_path_buf(),
        source,
    }
}
