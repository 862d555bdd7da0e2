//! The Debian package, end to end on this machine: `deploy/debian/build-deb.sh` packages
//! the binaries this test run built (no second build), `dpkg -i` installs it, channeld
//! starts from the installed files as the `millrace` user and answers `/health`, and
//! `dpkg --purge` leaves nothing behind.
//!
//! Changes the machine (a package, a system user, /etc/millrace, /var/lib/millrace), so
//! it needs root, dpkg and cargo-deb (`.ci/run` installs cargo-deb); without them it
//! says why and passes as skipped, unless `CI=true`. It refuses to run where a
//! `millrace` package or user already exists, rather than touch an operator's install.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use millrace_e2e::{binaries, http_get, skip_without_tool, target_dir, wait_until, ChildGuard};
use serde_json::Value;

const PACKAGE: &str = "millrace";
const USER: &str = "millrace";
const DATA_DIR: &str = "/var/lib/millrace";
const CONFIG_DIR: &str = "/etc/millrace";
const CONFIG: &str = "/etc/millrace/millrace.conf";
/// Longest wait for the installed channeld to serve.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// The files the package must install.
const INSTALLED: [&str; 12] = [
    "/usr/bin/channeld",
    "/usr/bin/channelctl",
    "/usr/bin/channel-agent",
    "/usr/bin/channel-bench",
    "/usr/lib/systemd/system/channeld.service",
    CONFIG,
    "/usr/share/man/man1/channeld.1.gz",
    "/usr/share/man/man1/channelctl-top.1.gz",
    "/usr/share/bash-completion/completions/channelctl",
    "/usr/share/zsh/vendor-completions/_channeld",
    "/usr/share/fish/vendor_completions.d/channel-agent.fish",
    "/usr/share/millrace/prometheus/millrace-alerts.yml",
];

fn run(command: &mut Command) -> Output {
    let output = command
        .output()
        .unwrap_or_else(|error| panic!("{command:?}: {error}"));
    assert!(
        output.status.success(),
        "{command:?} failed ({}):\n{}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

fn succeeds(program: &str, args: &[&str]) -> bool {
    Command::new(program)
        .args(args)
        .output()
        .is_ok_and(|output| output.status.success())
}

/// Why this machine cannot run the test, if it cannot.
fn missing_prerequisite() -> Option<String> {
    if !rustix::process::geteuid().is_root() {
        return Some("installing a package needs root".to_string());
    }
    if !succeeds("dpkg", &["--version"]) {
        return Some("needs dpkg (a Debian system)".to_string());
    }
    if !succeeds("cargo", &["deb", "--version"]) {
        return Some("needs cargo-deb: cargo install cargo-deb --locked".to_string());
    }
    None
}

/// Purges the package when dropped, so a failing test leaves the machine clean too.
struct Installed;

impl Drop for Installed {
    fn drop(&mut self) {
        let _ = Command::new("dpkg").args(["--purge", PACKAGE]).output();
    }
}

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the workspace")
        .to_path_buf()
}

#[test]
fn the_debian_package_installs_serves_health_as_its_user_and_purges_cleanly() {
    if let Some(reason) = missing_prerequisite() {
        skip_without_tool(&format!("the Debian package test {reason}"));
        return;
    }
    assert!(
        !succeeds("dpkg", &["--status", PACKAGE]) && !succeeds("getent", &["passwd", USER]),
        "a {PACKAGE} package or a {USER} user is already on this machine; the test does not \
         touch an existing install (dpkg --purge {PACKAGE} first)"
    );

    // Package this run's binaries (the test profile's): no second build.
    let started = Instant::now();
    let out_dir = target_dir().join("debian-test");
    let binary_dir = binaries()
        .channeld
        .parent()
        .expect("binaries")
        .to_path_buf();
    let built = run(Command::new(workspace().join("deploy/debian/build-deb.sh"))
        .arg(&out_dir)
        .env("MILLRACE_DEB_BINARIES", &binary_dir)
        .env("MILLRACE_DEB_FAST", "1")
        .env("CARGO_TARGET_DIR", target_dir()));
    let deb = PathBuf::from(String::from_utf8_lossy(&built.stdout).trim().to_string());
    let deb_bytes = std::fs::metadata(&deb).expect("the .deb").len();
    println!(
        "built {} ({deb_bytes} bytes) in {:.1} s",
        deb.display(),
        started.elapsed().as_secs_f64()
    );
    let contents =
        String::from_utf8(run(Command::new("dpkg-deb").arg("--contents").arg(&deb)).stdout)
            .expect("UTF-8 listing");
    let conffiles = String::from_utf8(
        run(Command::new("dpkg-deb")
            .args(["--info"])
            .arg(&deb)
            .arg("conffiles"))
        .stdout,
    )
    .expect("UTF-8 conffiles");
    assert_eq!(conffiles.trim(), CONFIG, "{contents}");

    let installed = Installed;
    run(Command::new("dpkg").arg("--install").arg(&deb));
    for path in INSTALLED {
        assert!(
            Path::new(path).is_file(),
            "{path} not installed:\n{contents}"
        );
    }
    let passwd = String::from_utf8(run(Command::new("getent").args(["passwd", USER])).stdout)
        .expect("UTF-8");
    assert!(
        passwd.contains(DATA_DIR) && passwd.trim_end().ends_with("/usr/sbin/nologin"),
        "{passwd}"
    );
    let data_dir = std::fs::metadata(DATA_DIR).expect("the data dir");
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    assert_eq!(data_dir.permissions().mode() & 0o777, 0o700);
    let uid = data_dir.uid();
    assert_eq!(
        std::fs::metadata(CONFIG)
            .expect("the config")
            .permissions()
            .mode()
            & 0o777,
        0o640
    );
    run(Command::new("/usr/bin/channelctl").args(["validate", "-f", CONFIG, "-n", "channeld"]));

    // channeld from the installed files, as the unit runs it (same user, directory,
    // configuration), on ports of its own so that it cannot collide with anything.
    let ready_file = Path::new(DATA_DIR).join("test-ready.json");
    let child = Command::new("setpriv")
        .args(["--reuid", USER, "--regid", USER, "--init-groups", "--"])
        .args([
            "/usr/bin/channeld",
            "--conf-file",
            CONFIG,
            "--name",
            "channeld",
        ])
        .args([
            "--bind",
            "127.0.0.1:0",
            "--http",
            "127.0.0.1:0",
            "--ready-file",
        ])
        .arg(&ready_file)
        .current_dir(DATA_DIR)
        .env("RUST_LOG", "info")
        .spawn()
        .expect("setpriv starts channeld");
    let mut channeld = ChildGuard(Some(child));
    assert!(
        wait_until(START_TIMEOUT, || ready_file.exists()),
        "the installed channeld did not become ready"
    );
    let ready: Value =
        serde_json::from_str(&std::fs::read_to_string(&ready_file).expect("the ready file"))
            .expect("JSON");
    let http = ready["http"].as_str().expect("the HTTP address");
    let health = http_get(http, "/health");
    assert_eq!(health.status, 200, "{}", health.body);
    let health: Value = serde_json::from_str(&health.body).expect("JSON");
    assert_eq!(health["channels"]["default"]["state"], "open", "{health}");
    let segment_dir = Path::new(DATA_DIR).join("default/data");
    assert_eq!(
        std::fs::metadata(&segment_dir)
            .expect("the channel's data dir")
            .uid(),
        uid,
        "channeld ran as {USER}"
    );
    let pid = rustix::process::Pid::from_child(channeld.0.as_ref().expect("channeld"));
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).expect("SIGTERM");
    let status = wait_until(START_TIMEOUT, || {
        channeld
            .0
            .as_mut()
            .expect("channeld")
            .try_wait()
            .expect("wait")
            .is_some()
    });
    assert!(status, "the installed channeld did not stop on SIGTERM");

    drop(installed);
    assert!(!succeeds("dpkg", &["--status", PACKAGE]), "still installed");
    for path in INSTALLED.iter().copied().chain([DATA_DIR, CONFIG_DIR]) {
        assert!(!Path::new(path).exists(), "{path} left after the purge");
    }
    assert!(
        !succeeds("getent", &["passwd", USER]),
        "the {USER} user is left"
    );
    let _ = std::fs::remove_dir_all(&out_dir);
    println!(
        "package test (build, install, serve, purge) took {:.1} s",
        started.elapsed().as_secs_f64()
    );
}
