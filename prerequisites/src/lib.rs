//! What a test needs from the machine beyond a Rust toolchain, and what happens when the
//! machine lacks it.
//!
//! A newcomer's `cargo test --workspace` must pass on a machine with nothing but the
//! toolchain, and CI (which installs everything: `.ci/run`) must run every test. So a test
//! that needs a system tool (`nc`, `strace`, `outagefs`), a privilege (root, to mount) or
//! a service (PyPI, for a Python venv) asks here first:
//!
//! - when the machine has it, the test gets it and runs;
//! - when it does not, one line goes to the run's stderr, past libtest's output capture
//!   so that it shows in a plain `cargo test`:
//!   `SKIPPED <test>: needs <what> (<how to get it>)`, and the test returns, passing;
//! - with `CI=true` in the environment the test panics with the same facts instead: on CI a missing
//!   tool is a broken machine, never a silent skip.
//!
//! ```no_run
//! use millrace_prerequisites::{require, require_tool, running_as_root, tool_on_path, Missing};
//!
//! // One tool:
//! let Some(nc) = require_tool("nc", "apt-get install netcat-openbsd") else {
//!     return;
//! };
//! // Several needs, checked in one function that says what is missing:
//! fn can_mount() -> Result<std::path::PathBuf, Missing> {
//!     running_as_root("mount a tmpfs")?;
//!     tool_on_path("unshare", "apt-get install util-linux")
//! }
//! let Some(unshare) = require(can_mount()) else {
//!     return;
//! };
//! ```

#![warn(missing_docs)]

use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

/// The environment variable CI sets, and its value there.
const CI_VARIABLE: &str = "CI";
const CI_VALUE: &str = "true";
/// Permission bits that make a file executable by someone.
const ANY_EXECUTE_BITS: u32 = 0o111;

/// Something a test needs that this machine lacks, and how to get it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Missing {
    /// What is needed, phrased to follow "needs": "`nc` on PATH", "root, to mount a
    /// tmpfs", "ptrace permitted for strace (…)".
    pub what: String,
    /// How to get it: a package to install, a command, a setting.
    pub how_to_get: String,
}

impl Missing {
    /// `what` is needed and missing; `how_to_get` says how to provide it.
    pub fn new(what: impl Into<String>, how_to_get: impl Into<String>) -> Missing {
        Missing {
            what: what.into(),
            how_to_get: how_to_get.into(),
        }
    }
}

impl fmt::Display for Missing {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "needs {} ({})", self.what, self.how_to_get)
    }
}

/// True when the run is on CI (`CI=true`), where a missing prerequisite fails its test.
pub fn running_in_ci() -> bool {
    std::env::var(CI_VARIABLE).as_deref() == Ok(CI_VALUE)
}

/// The path of the executable `tool` on `PATH`, or what is missing.
pub fn tool_on_path(tool: &str, how_to_get: &str) -> Result<PathBuf, Missing> {
    find_on_path(tool).ok_or_else(|| Missing::new(format!("`{tool}` on PATH"), how_to_get))
}

/// `Ok` when the process runs as root; else what is missing, saying what the test does
/// with root (`needed_to`, e.g. "mount a tmpfs").
pub fn running_as_root(needed_to: &str) -> Result<(), Missing> {
    if rustix::process::getuid().is_root() {
        Ok(())
    } else {
        Err(Missing::new(
            format!("root, to {needed_to}"),
            "run the tests as root, as CI does",
        ))
    }
}

/// The value of a met prerequisite; for a missing one, a [`skip`] and `None` (the test
/// then returns). With `CI=true` a missing one panics.
pub fn require<T>(prerequisite: Result<T, Missing>) -> Option<T> {
    prerequisite.map_err(|missing| skip(&missing)).ok()
}

/// `tool`'s path when it is on `PATH`; otherwise a [`skip`] naming the tool and
/// `how_to_get` it, and `None`. With `CI=true` a missing tool panics.
pub fn require_tool(tool: &str, how_to_get: &str) -> Option<PathBuf> {
    require(tool_on_path(tool, how_to_get))
}

/// Reports that the running test cannot run here: one line on stderr naming the test and
/// what it is `missing`; the caller then returns and the test passes as skipped. With
/// `CI=true` this panics instead, failing the test.
pub fn skip(missing: &Missing) {
    let thread = std::thread::current();
    // libtest runs each test on a thread named after the test.
    let test = thread.name().unwrap_or("a test");
    if running_in_ci() {
        panic!(
            "{test} {missing}: with {CI_VARIABLE}={CI_VALUE} a missing prerequisite fails \
             the test instead of skipping it"
        );
    }
    let line = format!("SKIPPED {test}: {missing}");
    // Straight to the stderr handle: `eprintln!` is captured by libtest and shown only
    // for failing tests (or with --show-output), and a skip must be seen.
    let _ = writeln!(std::io::stderr().lock(), "{line}");
}

/// The first executable file named `tool` in the directories of `PATH`.
fn find_on_path(tool: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|directory| directory.join(tool))
        .find(|candidate| is_executable_file(candidate))
}

fn is_executable_file(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|metadata| {
        metadata.is_file() && metadata.permissions().mode() & ANY_EXECUTE_BITS != 0
    })
}

/// The interop venv's `python` (Apache Avro's Python package, pinned by
/// `tests/scripts/interop-venv.sh`, which makes the venv under the build directory once
/// and prints the interpreter's path). `repository_root` is where that script lives under.
/// Made once per test binary; when it cannot be made, a [`skip`] and `None` (with `CI=true`
/// a panic).
pub fn avro_python(repository_root: &Path) -> Option<&'static Path> {
    static PYTHON: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let found = PYTHON.get_or_init(|| {
        let script = repository_root.join("tests/scripts/interop-venv.sh");
        let output = Command::new("bash")
            .arg(&script)
            .stdin(Stdio::null())
            .output()
            .map_err(|error| format!("cannot run {}: {error}", script.display()))?;
        if !output.status.success() {
            return Err(String::from_utf8_lossy(&output.stderr).trim().to_string());
        }
        Ok(PathBuf::from(
            String::from_utf8_lossy(&output.stdout).trim(),
        ))
    });
    match found {
        Ok(path) => Some(path),
        Err(problem) => {
            skip(&Missing::new(
                format!("Apache Avro's Python package in a venv ({problem})"),
                "run tests/scripts/interop-venv.sh, which needs python3 with venv (apt-get \
                 install python3-venv) and PyPI; .ci/run does it",
            ));
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tool_every_machine_has_is_found_on_the_path() {
        // Every test that runs a shell relies on `sh`: a machine without it is broken,
        // so this test does not skip.
        let sh = find_on_path("sh").expect("sh on PATH");
        assert_eq!(sh.file_name().and_then(|name| name.to_str()), Some("sh"));
        assert!(is_executable_file(&sh), "{sh:?}");
    }

    #[test]
    fn a_tool_no_machine_has_is_missing_with_how_to_get_it() {
        let missing = tool_on_path("millrace-no-such-tool", "apt-get install nothing").unwrap_err();
        assert_eq!(
            missing.to_string(),
            "needs `millrace-no-such-tool` on PATH (apt-get install nothing)"
        );
    }

    #[test]
    fn a_file_without_execute_bits_is_not_a_tool() {
        let directory = tempfile::tempdir().unwrap();
        let plain = directory.path().join("plain");
        std::fs::write(&plain, "#!/bin/sh\n").unwrap();
        assert!(!is_executable_file(&plain));
        assert!(!is_executable_file(directory.path()), "a directory");
    }
}
