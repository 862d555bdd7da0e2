//! # Harness for the end-to-end tests
//!
//! The tests in `tests/tests/` start the real `channeld` and `channelctl` binaries. This
//! library finds (and builds) them, runs servers in their own temporary directories on
//! ports the system picks, and talks to them over HTTP and the raw protocol.
//!
//! ## Constraints
//!
//! - **Real binaries, from any cargo invocation.** `env!("CARGO_BIN_EXE_…")` only names
//!   binaries of the test's own package, and these live in `server/` and `tools/`. So
//!   [`binaries`] runs `cargo build --profile test --bins -p millrace-server -p
//!   millrace-tools` once per test process, into the same target directory as the test
//!   itself (found from the test executable's path), and uses what it produced. Under
//!   `cargo test --workspace` the binaries are already current and the build is a no-op
//!   check; under `cargo test -p millrace-e2e` it brings them up to date.
//! - **Parallel and shared.** Tests run in parallel and `/tmp` is shared with other
//!   processes: every server gets its own temporary directory and binds port 0; it
//!   reports the ports it got through `--ready-file`.
//! - **Bounded and clean.** Every wait has a deadline, and every child process is killed
//!   when its handle drops, even when the test panics.

#![warn(missing_docs)]

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::OnceLock;
use std::thread;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use millrace_protocol::{
    DecodeLimits, Encoder, Hello, Request, RequestId, Response, ResponseDecoder, ResponseFrame,
};
use rustix::process::{kill_process, Pid, Signal};
use serde_json::Value;

pub use millrace_prerequisites as prerequisites;
pub use millrace_prerequisites::{
    require, require_tool, running_as_root, running_in_ci, skip, tool_on_path, Missing,
};

pub mod browser;

/// Longest wait for a server to write its ready file.
pub const SERVER_START_TIMEOUT: Duration = Duration::from_secs(60);
/// Longest wait for a server to exit after SIGTERM.
pub const SERVER_STOP_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest a `channelctl` run may take.
pub const CHANNELCTL_TIMEOUT: Duration = Duration::from_secs(60);
/// Longest wait for one response or one read on a raw connection.
pub const READ_TIMEOUT: Duration = Duration::from_secs(20);
/// Pause between polls of a file or a process.
const POLL_INTERVAL: Duration = Duration::from_millis(20);
/// The agent name of the configurations the tests write.
pub const AGENT: &str = "a1";
/// The file name of a server's ready file in its directory.
const READY_FILE_NAME: &str = "ready.json";
/// The file name of a server's configuration in its directory.
const CONFIG_FILE_NAME: &str = "agent.conf";

/// Paths of the binaries under test.
#[derive(Debug)]
pub struct Binaries {
    /// `channeld`.
    pub channeld: PathBuf,
    /// `channelctl`.
    pub channelctl: PathBuf,
    /// `channel-agent`.
    pub channel_agent: PathBuf,
}

/// The binaries, built on first use. Panics with cargo's output if the build fails.
pub fn binaries() -> &'static Binaries {
    static BINARIES: OnceLock<Binaries> = OnceLock::new();
    BINARIES.get_or_init(build_binaries)
}

fn build_binaries() -> Binaries {
    let test_executable = std::env::current_exe().expect("the test executable's path");
    // <target>/<profile>/deps/<test>-<hash>
    let profile_dir = test_executable
        .parent()
        .and_then(Path::parent)
        .expect("the test executable lives in <target>/<profile>/deps")
        .to_path_buf();
    let target_dir = profile_dir
        .parent()
        .expect("a target directory")
        .to_path_buf();
    let workspace_dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ sits in the workspace");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut build = Command::new(cargo);
    build
        .current_dir(workspace_dir)
        .env("CARGO_TARGET_DIR", &target_dir)
        .args([
            "build",
            "--bins",
            "-p",
            "millrace-server",
            "-p",
            "millrace-tools",
            "-p",
            "millrace-adapters",
        ]);
    // The release directory holds the release profile; "debug" holds dev and test.
    if profile_dir
        .file_name()
        .is_some_and(|name| name == "release")
    {
        build.arg("--release");
    } else {
        build.args(["--profile", "test"]);
    }
    let output = build.output().expect("cargo runs");
    assert!(
        output.status.success(),
        "building channeld and channelctl failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let binaries = Binaries {
        channeld: profile_dir.join("channeld"),
        channelctl: profile_dir.join("channelctl"),
        channel_agent: profile_dir.join("channel-agent"),
    };
    for binary in [
        &binaries.channeld,
        &binaries.channelctl,
        &binaries.channel_agent,
    ] {
        assert!(binary.exists(), "{} was not built", binary.display());
    }
    binaries
}

/// Polls `condition` until it is true or `timeout` passes; returns whether it became
/// true.
pub fn wait_until(timeout: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if condition() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        thread::sleep(POLL_INTERVAL);
    }
}

/// How to start a server.
#[derive(Debug, Clone, Default)]
pub struct ServerSetup {
    /// Configuration text for agent [`AGENT`]; `None` runs the embedded default.
    pub config: Option<String>,
    /// Extra command-line arguments.
    pub args: Vec<String>,
    /// Files to create in the server's directory before it starts: (relative path,
    /// contents).
    pub files: Vec<(String, Vec<u8>)>,
    /// The agent to run (`-n`); [`AGENT`] when `None`.
    pub agent: Option<String>,
    /// A program (and its arguments) to start channeld under, such as `strace`; channeld's
    /// path and arguments follow them. The wrapper must pass signals through and exit
    /// when channeld does.
    pub wrapper: Vec<String>,
    /// Extra environment variables for channeld (and its wrapper).
    pub env: Vec<(String, String)>,
    /// The open-file limit (`RLIMIT_NOFILE`, soft and hard) channeld starts with, when
    /// not the test's own.
    pub open_file_limit: Option<(u64, u64)>,
}

impl ServerSetup {
    /// The embedded default (one file channel `default`).
    pub fn embedded_default() -> Self {
        ServerSetup::default()
    }

    /// A configuration file for agent [`AGENT`].
    pub fn with_config(config: impl Into<String>) -> Self {
        ServerSetup {
            config: Some(config.into()),
            ..ServerSetup::default()
        }
    }

    /// Adds a file to create in the server's directory before it starts.
    pub fn file(mut self, path: impl Into<String>, contents: impl Into<Vec<u8>>) -> Self {
        self.files.push((path.into(), contents.into()));
        self
    }

    /// Adds command-line arguments.
    pub fn arg(mut self, arg: impl Into<String>) -> Self {
        self.args.push(arg.into());
        self
    }

    /// Runs another agent of the file than [`AGENT`].
    pub fn agent(mut self, name: impl Into<String>) -> Self {
        self.agent = Some(name.into());
        self
    }

    /// Starts channeld under `wrapper` (program, then its arguments).
    pub fn wrapped_in(mut self, wrapper: &[String]) -> Self {
        self.wrapper = wrapper.to_vec();
        self
    }

    /// Sets an environment variable for channeld.
    pub fn env(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.env.push((name.into(), value.into()));
        self
    }

    /// Starts channeld with this open-file limit (soft, hard), as `prlimit --nofile`
    /// would.
    pub fn open_file_limit(mut self, soft: u64, hard: u64) -> Self {
        self.open_file_limit = Some((soft, hard));
        self
    }
}

/// A running (or stopped) channeld in its own temporary directory. Killed on drop.
pub struct Server {
    directory: tempfile::TempDir,
    setup: ServerSetup,
    /// channeld, or its wrapper when [`ServerSetup::wrapper`] is set.
    process: Option<Child>,
    /// channeld's own process id, from the ready file.
    channeld_pid: Option<Pid>,
    protocol_address: String,
    http_address: String,
    starts: u32,
    /// Restart on the addresses of the previous run instead of new ports.
    keep_addresses: bool,
}

impl Server {
    /// Starts a server and waits until it serves.
    pub fn start(setup: ServerSetup) -> Server {
        Server::try_start(setup).unwrap_or_else(|problem| panic!("{problem}"))
    }

    /// Like [`start`](Self::start), but says why (with channeld's stderr) instead of
    /// panicking when channeld exits during startup or does not become ready.
    pub fn try_start(setup: ServerSetup) -> Result<Server, String> {
        let directory = tempfile::Builder::new()
            .prefix("millrace-e2e-")
            .tempdir()
            .expect("a temporary directory");
        if let Some(config) = &setup.config {
            std::fs::write(directory.path().join(CONFIG_FILE_NAME), config).expect("write config");
        }
        for (path, contents) in &setup.files {
            std::fs::write(directory.path().join(path), contents).expect("write a prepared file");
        }
        let mut server = Server {
            directory,
            setup,
            process: None,
            channeld_pid: None,
            protocol_address: String::new(),
            http_address: String::new(),
            starts: 0,
            keep_addresses: false,
        };
        server.try_launch()?;
        Ok(server)
    }

    /// The server's working directory (channel data lives under it).
    pub fn directory(&self) -> &Path {
        self.directory.path()
    }

    /// Where the protocol listens, `host:port`.
    pub fn protocol_address(&self) -> &str {
        &self.protocol_address
    }

    /// Where HTTP listens, `host:port`.
    pub fn http_address(&self) -> &str {
        &self.http_address
    }

    fn stderr_path(&self) -> PathBuf {
        self.directory
            .path()
            .join(format!("channeld-{}.stderr", self.starts))
    }

    /// What the current (or last) run wrote to stderr.
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(self.stderr_path()).unwrap_or_default()
    }

    fn stdout_path(&self) -> PathBuf {
        self.directory
            .path()
            .join(format!("channeld-{}.stdout", self.starts))
    }

    /// What the current (or last) run and its adapters wrote to stdout.
    pub fn stdout(&self) -> String {
        std::fs::read_to_string(self.stdout_path()).unwrap_or_default()
    }

    fn launch(&mut self) {
        self.try_launch()
            .unwrap_or_else(|problem| panic!("{problem}"));
    }

    fn try_launch(&mut self) -> Result<(), String> {
        assert!(self.process.is_none(), "the server is already running");
        self.starts += 1;
        let ready_file = self.directory.path().join(READY_FILE_NAME);
        let _ = std::fs::remove_file(&ready_file);
        let stderr = std::fs::File::create(self.stderr_path()).expect("stderr log file");
        let stdout = std::fs::File::create(self.stdout_path()).expect("stdout log file");
        let mut command = match self.setup.wrapper.split_first() {
            Some((program, wrapper_args)) => {
                let mut command = Command::new(program);
                command.args(wrapper_args).arg(&binaries().channeld);
                command
            }
            None => Command::new(&binaries().channeld),
        };
        command
            .envs(self.setup.env.iter().map(|(name, value)| (name, value)))
            .current_dir(self.directory.path())
            .env("RUST_LOG", "info")
            .env("MILLRACE_AGENT_BIN", &binaries().channel_agent)
            .env_remove("MILLRACE_AUTH_TOKEN")
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr);
        if self.setup.config.is_some() {
            let agent = self.setup.agent.as_deref().unwrap_or(AGENT);
            command.args(["-f", CONFIG_FILE_NAME, "-n", agent]);
        }
        let (bind, http) = if self.keep_addresses {
            (self.protocol_address.clone(), self.http_address.clone())
        } else {
            ("127.0.0.1:0".to_string(), "127.0.0.1:0".to_string())
        };
        command
            .args(["--bind", &bind, "--http", &http, "--ready-file"])
            .arg(&ready_file)
            .args(&self.setup.args);
        if let Some((soft, hard)) = self.setup.open_file_limit {
            use std::os::unix::process::CommandExt;
            let limit = rustix::process::Rlimit {
                current: Some(soft),
                maximum: Some(hard),
            };
            // SAFETY: between fork and exec the closure makes one system call
            // (setrlimit), which is async-signal-safe, and allocates nothing.
            #[allow(unsafe_code)]
            unsafe {
                command.pre_exec(move || {
                    rustix::process::setrlimit(rustix::process::Resource::Nofile, limit)
                        .map_err(std::io::Error::from)
                });
            }
        }
        let mut child = command.spawn().expect("channeld starts");
        let mut exited = None;
        let ready = wait_until(SERVER_START_TIMEOUT, || {
            if let Ok(Some(status)) = child.try_wait() {
                exited = Some(status);
                return true;
            }
            ready_file.exists()
        });
        if let Some(status) = exited {
            return Err(format!(
                "channeld exited during startup ({status}):\n{}",
                self.stderr()
            ));
        }
        if !ready {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("channeld did not become ready:\n{}", self.stderr()));
        }
        let ready: Value = serde_json::from_str(
            &std::fs::read_to_string(&ready_file).expect("read the ready file"),
        )
        .expect("the ready file is JSON");
        self.protocol_address = ready["protocol"].as_str().expect("protocol").to_string();
        self.http_address = ready["http"].as_str().expect("http").to_string();
        let pid = ready["pid"]
            .as_i64()
            .and_then(|pid| i32::try_from(pid).ok())
            .and_then(Pid::from_raw)
            .expect("the ready file names channeld's pid");
        self.channeld_pid = Some(pid);
        self.process = Some(child);
        Ok(())
    }

    /// channeld's process id (not its wrapper's).
    pub fn pid(&self) -> Pid {
        assert!(self.process.is_some(), "the server is running");
        self.channeld_pid
            .expect("the ready file named channeld's pid")
    }

    /// The setup the next [`restart`](Self::restart) uses; change it to restart
    /// differently (without a wrapper, say).
    pub fn setup_mut(&mut self) -> &mut ServerSetup {
        &mut self.setup
    }

    /// The process's resident memory, from `/proc/PID/status` (`VmRSS`).
    pub fn resident_memory_bytes(&self) -> u64 {
        resident_memory_bytes_of(self.pid().as_raw_nonzero().get())
            .expect("channeld's /proc/PID/status has a VmRSS line")
    }

    /// The soft and hard open-file limits of the process, from `/proc/PID/limits`
    /// (`u64::MAX` for unlimited).
    pub fn open_file_limits(&self) -> (u64, u64) {
        let limits =
            std::fs::read_to_string(format!("/proc/{}/limits", self.pid().as_raw_nonzero()))
                .expect("read /proc/PID/limits");
        let line = limits
            .lines()
            .find(|line| line.starts_with("Max open files"))
            .expect("a Max open files line");
        let mut values = line["Max open files".len()..]
            .split_whitespace()
            .map(|value| value.parse().unwrap_or(u64::MAX));
        (
            values.next().expect("a soft limit"),
            values.next().expect("a hard limit"),
        )
    }

    /// How many file descriptors the process holds open (the entries of
    /// `/proc/PID/fd`).
    pub fn open_fd_count(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid().as_raw_nonzero()))
            .expect("list /proc/PID/fd")
            .count()
    }

    /// The pids of the running `channel-agent` processes this server started for
    /// `component`.
    pub fn adapter_pids(&self, component: &str) -> Vec<i32> {
        let parent = self.pid().as_raw_nonzero().to_string();
        let mut pids = Vec::new();
        for entry in std::fs::read_dir("/proc").expect("list /proc").flatten() {
            let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
                continue;
            };
            let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
                continue;
            };
            let args: Vec<String> = cmdline
                .split(|&byte| byte == 0)
                .map(|arg| String::from_utf8_lossy(arg).into_owned())
                .collect();
            let follows = |flag: &str, value: &str| {
                args.windows(2)
                    .any(|pair| pair[0] == flag && pair[1] == value)
            };
            if follows("--component", component) && follows("--exit-with-parent", &parent) {
                pids.push(pid);
            }
        }
        pids
    }

    /// Sends SIGTERM and waits for the exit.
    pub fn stop_with_sigterm(&mut self) -> ExitStatus {
        kill_process(self.pid(), Signal::TERM).expect("send SIGTERM");
        self.wait_for_exit(SERVER_STOP_TIMEOUT)
            .unwrap_or_else(|| panic!("channeld did not stop after SIGTERM:\n{}", self.stderr()))
    }

    /// Sends SIGTERM without waiting.
    pub fn send_sigterm(&self) {
        kill_process(self.pid(), Signal::TERM).expect("send SIGTERM");
    }

    /// Waits up to `timeout` for the process to exit.
    pub fn wait_for_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let process = self.process.as_mut().expect("the server is running");
        let mut status = None;
        wait_until(timeout, || {
            status = process.try_wait().expect("wait for channeld");
            status.is_some()
        });
        if status.is_some() {
            self.process = None;
            self.channeld_pid = None;
        }
        status
    }

    /// Kills channeld with SIGKILL, as a crash would (and then its wrapper, if it does
    /// not exit with channeld).
    pub fn kill_9(&mut self) {
        let Some(mut process) = self.process.take() else {
            return;
        };
        if let Some(pid) = self.channeld_pid.take() {
            if pid.as_raw_nonzero().get() as u32 != process.id() {
                // A wrapper (strace) exits once channeld is gone; SIGKILL of the wrapper
                // alone would leave channeld running, detached.
                let _ = kill_process(pid, Signal::KILL);
                wait_until(SERVER_STOP_TIMEOUT, || {
                    !matches!(process.try_wait(), Ok(None))
                });
            }
        }
        let _ = process.kill();
        let _ = process.wait();
    }

    /// Starts the stopped server again with the same directory, configuration and
    /// arguments.
    pub fn restart(&mut self) {
        self.keep_addresses = false;
        self.launch();
    }

    /// Like [`restart`](Self::restart), but on the same protocol and HTTP addresses, so
    /// clients can reconnect to the address they knew.
    pub fn restart_on_the_same_addresses(&mut self) {
        self.keep_addresses = true;
        self.launch();
    }

    /// `GET path` on the HTTP listener.
    pub fn http_get(&self, path: &str) -> HttpResponse {
        http_get(&self.http_address, path)
    }

    /// `GET path` parsed as JSON.
    pub fn http_json(&self, path: &str) -> (u16, Value) {
        let response = self.http_get(path);
        let json = serde_json::from_str(&response.body)
            .unwrap_or_else(|error| panic!("{path} is not JSON ({error}): {}", response.body));
        (response.status, json)
    }

    /// Runs `channelctl` against this server: `subcommand`, then `--server ADDR`, then
    /// `args`.
    pub fn channelctl(&self, subcommand: &str, args: &[&str], stdin: &[u8]) -> Output {
        let mut full_args = vec![subcommand, "--server", self.protocol_address()];
        full_args.extend_from_slice(args);
        channelctl(&full_args, stdin)
    }

    /// `ChannelSize` of `channel` as `/metrics` publishes it; `u64::MAX` when it is not
    /// there.
    pub fn metrics_channel_size(&self, channel: &str) -> u64 {
        let (_, metrics) = self.http_json("/metrics");
        metrics[format!("CHANNEL.{channel}")]["ChannelSize"]
            .as_str()
            .and_then(|size| size.parse().ok())
            .unwrap_or(u64::MAX)
    }

    /// Takes and commits every event of `channel`, `max_per_take` at a time, until a take
    /// returns nothing within 300 ms; the events in delivery order. Panics on any error.
    pub fn drain_events(&self, channel: &str, max_per_take: u32) -> Vec<millrace_client::Event> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        runtime.block_on(async {
            let options = millrace_client::ClientOptions::new(self.protocol_address());
            let mut client = millrace_client::Client::connect(options)
                .await
                .expect("connect to drain");
            let mut taken = Vec::new();
            loop {
                client.begin(channel).await.expect("begin a draining take");
                let events = client
                    .take(max_per_take, Duration::from_millis(300))
                    .await
                    .expect("take while draining");
                client.commit().await.expect("commit a draining take");
                if events.is_empty() {
                    return taken;
                }
                taken.extend(events);
            }
        })
    }

    /// A raw protocol connection to this server.
    pub fn connect_raw(&self) -> RawConnection {
        RawConnection::connect(self.protocol_address())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill_9();
    }
}

/// Runs `channelctl` with `args`, feeding `stdin`; bounded by [`CHANNELCTL_TIMEOUT`].
pub fn channelctl(args: &[&str], stdin: &[u8]) -> Output {
    let mut child = Command::new(&binaries().channelctl)
        .args(args)
        .env_remove("MILLRACE_AUTH_TOKEN")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("channelctl starts");
    let mut input = child.stdin.take().expect("stdin");
    let stdin = stdin.to_vec();
    let feeder = thread::spawn(move || {
        let _ = input.write_all(&stdin);
    });
    let guard = ChildGuard(Some(child));
    let output = guard.wait_with_output(CHANNELCTL_TIMEOUT);
    let _ = feeder.join();
    output
}

/// Kills its child process on drop.
pub struct ChildGuard(pub Option<Child>);

impl ChildGuard {
    /// Waits up to `timeout` for the child and collects its output; panics (after
    /// killing it) when it takes longer.
    pub fn wait_with_output(mut self, timeout: Duration) -> Output {
        let mut child = self.0.take().expect("a child");
        let mut stdout = child.stdout.take();
        let mut stderr = child.stderr.take();
        let stdout_reader = thread::spawn(move || {
            let mut bytes = Vec::new();
            if let Some(stdout) = stdout.as_mut() {
                let _ = stdout.read_to_end(&mut bytes);
            }
            bytes
        });
        let stderr_reader = thread::spawn(move || {
            let mut bytes = Vec::new();
            if let Some(stderr) = stderr.as_mut() {
                let _ = stderr.read_to_end(&mut bytes);
            }
            bytes
        });
        let mut status = None;
        wait_until(timeout, || {
            status = child.try_wait().expect("wait for the child");
            status.is_some()
        });
        let Some(status) = status else {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the child process did not finish within {timeout:?}");
        };
        Output {
            status,
            stdout: stdout_reader.join().expect("stdout reader"),
            stderr: stderr_reader.join().expect("stderr reader"),
        }
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// An HTTP response: status and body.
#[derive(Debug)]
pub struct HttpResponse {
    /// The status code.
    pub status: u16,
    /// Header lines, lower-cased names.
    pub headers: Vec<(String, String)>,
    /// The body as text.
    pub body: String,
}

impl HttpResponse {
    /// The value of a header.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(header, _)| header == name)
            .map(|(_, value)| value.as_str())
    }
}

/// Reads a response to its end, or to the end of its `Content-Length` body: some servers
/// (Chromium's DevTools listener) keep the connection open despite `Connection: close`.
fn read_http_response(stream: &mut TcpStream) -> Vec<u8> {
    let mut raw = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        let read = stream.read(&mut chunk).expect("read the response");
        if read == 0 {
            return raw;
        }
        raw.extend_from_slice(&chunk[..read]);
        let Some(head_end) = raw.windows(4).position(|window| window == b"\r\n\r\n") else {
            continue;
        };
        let head = String::from_utf8_lossy(&raw[..head_end]).to_ascii_lowercase();
        let content_length = head
            .lines()
            .filter_map(|line| line.strip_prefix("content-length:"))
            .find_map(|value| value.trim().parse::<usize>().ok());
        if content_length.is_some_and(|length| raw.len() >= head_end + 4 + length) {
            return raw;
        }
    }
}

/// A minimal HTTP/1.1 GET with `Connection: close`, reading to the end. Enough for the
/// server's fixed-length responses; keeps an HTTP client library out of the tests.
pub fn http_get(address: &str, path: &str) -> HttpResponse {
    let mut stream = TcpStream::connect(address).expect("connect to the HTTP listener");
    stream
        .set_read_timeout(Some(READ_TIMEOUT))
        .expect("read timeout");
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n"
    )
    .expect("send the request");
    let raw = read_http_response(&mut stream);
    let text = String::from_utf8(raw).expect("a UTF-8 response");
    let (head, body) = text
        .split_once("\r\n\r\n")
        .expect("a header/body separator");
    let mut lines = head.lines();
    let status_line = lines.next().expect("a status line");
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
    let headers = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_string()))
        .collect();
    HttpResponse {
        status,
        headers,
        body: body.to_string(),
    }
}

/// A protocol connection driven byte by byte from the test (blocking, with timeouts),
/// for checks the client library would not let happen: pipelining in one write, broken
/// frames, slow senders.
pub struct RawConnection {
    stream: TcpStream,
    decoder: ResponseDecoder,
    encoder: Encoder,
    input: BytesMut,
    last_request_id: RequestId,
}

impl RawConnection {
    /// Connects (no handshake yet).
    pub fn connect(address: &str) -> RawConnection {
        let stream = TcpStream::connect(address).expect("connect to the protocol listener");
        stream
            .set_read_timeout(Some(READ_TIMEOUT))
            .expect("read timeout");
        stream.set_nodelay(true).expect("nodelay");
        RawConnection {
            stream,
            decoder: ResponseDecoder::new(DecodeLimits::default()),
            encoder: Encoder::default(),
            input: BytesMut::new(),
            last_request_id: RequestId::CONNECTION,
        }
    }

    /// Encodes requests back to back and sends them in one write. Returns their ids.
    pub fn send_pipelined(&mut self, requests: &[Request]) -> Vec<RequestId> {
        let mut bytes = Vec::new();
        let ids = requests
            .iter()
            .map(|request| {
                self.last_request_id = self.last_request_id.next();
                self.encoder
                    .encode_request(self.last_request_id, request, &mut bytes)
                    .expect("encode the request");
                self.last_request_id
            })
            .collect();
        self.send_bytes(&bytes);
        ids
    }

    /// Sends one request.
    pub fn send(&mut self, request: &Request) -> RequestId {
        self.send_pipelined(std::slice::from_ref(request))[0]
    }

    /// Sends raw bytes.
    pub fn send_bytes(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("send bytes");
    }

    /// Sends a `Hello` (with `token`) and returns the server's answer.
    pub fn handshake(&mut self, token: Option<&str>) -> Response {
        let mut hello = Hello::new("millrace-e2e");
        hello.auth_token = token.map(str::to_string);
        self.handshake_with(hello)
    }

    /// Sends the given `Hello` and returns the server's answer.
    pub fn handshake_with(&mut self, hello: Hello) -> Response {
        self.send(&Request::Hello(hello));
        let response = self.receive().response;
        if let Response::HelloAccepted(accepted) = &response {
            self.encoder
                .set_peer_max_frame_bytes(accepted.max_frame_bytes);
        }
        response
    }

    /// Handshakes without a token and panics unless accepted.
    pub fn open(address: &str) -> RawConnection {
        let mut connection = RawConnection::connect(address);
        let response = connection.handshake(None);
        assert!(
            matches!(response, Response::HelloAccepted(_)),
            "handshake refused: {response:?}"
        );
        connection
    }

    /// Reads the next response; panics on a timeout, a close or a decode error.
    pub fn receive(&mut self) -> ResponseFrame {
        self.try_receive()
            .unwrap_or_else(|problem| panic!("{problem}"))
    }

    /// Reads the next response, or says why there is none.
    pub fn try_receive(&mut self) -> Result<ResponseFrame, String> {
        loop {
            match self.decoder.decode(&mut self.input) {
                Ok(Some(frame)) => return Ok(frame),
                Ok(None) => {}
                Err(error) => return Err(format!("undecodable response: {error}")),
            }
            let mut chunk = [0u8; 64 * 1024];
            match self.stream.read(&mut chunk) {
                Ok(0) => return Err("the server closed the connection".to_string()),
                Ok(read) => self.input.extend_from_slice(&chunk[..read]),
                Err(error) => return Err(format!("reading a response failed: {error}")),
            }
        }
    }

    /// Sends `request` and returns its answer.
    pub fn call(&mut self, request: &Request) -> Response {
        let id = self.send(request);
        let frame = self.receive();
        assert_eq!(frame.request_id, id, "answer to the wrong request");
        frame.response
    }

    /// Reads everything until the server closes (or `READ_TIMEOUT`), returning the raw
    /// bytes and whether the server closed.
    pub fn read_until_closed(&mut self) -> (Vec<u8>, bool) {
        let mut bytes = self.input.split().to_vec();
        let mut chunk = [0u8; 64 * 1024];
        loop {
            match self.stream.read(&mut chunk) {
                Ok(0) => return (bytes, true),
                Ok(read) => bytes.extend_from_slice(&chunk[..read]),
                Err(error) if error.kind() == std::io::ErrorKind::ConnectionReset => {
                    return (bytes, true)
                }
                Err(_) => return (bytes, false),
            }
        }
    }

    /// The socket, for writing from another thread (`try_clone`).
    pub fn stream(&self) -> &TcpStream {
        &self.stream
    }

    /// Closes the connection abruptly from the client side.
    pub fn disconnect(self) {
        let _ = self.stream.shutdown(Shutdown::Both);
    }
}

/// The regular files under `dir`, recursively: their total length in bytes, and how
/// many of them have a name ending in `suffix` (`".log"` counts segments). A file removed
/// while the walk runs is skipped.
pub fn dir_usage(dir: &Path, suffix: &str) -> (u64, usize) {
    let mut bytes = 0;
    let mut matching = 0;
    let Ok(entries) = std::fs::read_dir(dir) else {
        return (0, 0);
    };
    for entry in entries.flatten() {
        let Ok(file_type) = entry.file_type() else {
            continue;
        };
        if file_type.is_dir() {
            let (inner_bytes, inner_matching) = dir_usage(&entry.path(), suffix);
            bytes += inner_bytes;
            matching += inner_matching;
        } else if file_type.is_file() {
            if let Ok(metadata) = entry.metadata() {
                bytes += metadata.len();
                if entry.file_name().to_string_lossy().ends_with(suffix) {
                    matching += 1;
                }
            }
        }
    }
    (bytes, matching)
}

/// A process's resident memory, from `/proc/PID/status` (`VmRSS`); `None` once it is
/// gone.
pub fn resident_memory_bytes_of(pid: i32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kib: u64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())?;
    Some(kib * 1024)
}

/// Raises this test process's soft open-file limit to its hard limit, for tests that
/// hold thousands of sockets; returns the limit now in force (`u64::MAX` when
/// unlimited).
pub fn raise_own_open_file_limit() -> u64 {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    let limits = getrlimit(Resource::Nofile);
    let _ = setrlimit(
        Resource::Nofile,
        Rlimit {
            current: limits.maximum,
            maximum: limits.maximum,
        },
    );
    getrlimit(Resource::Nofile).current.unwrap_or(u64::MAX)
}

/// Sends SIGKILL to a process by pid (an adapter, say).
pub fn kill_9_pid(pid: i32) {
    if let Some(pid) = Pid::from_raw(pid) {
        let _ = kill_process(pid, Signal::KILL);
    }
}

/// A TCP port that was free a moment ago on 127.0.0.1 (for adapters that listen).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("bind a free port")
        .port()
}

/// The bodies of `events` as text; panics on a body that is not UTF-8.
pub fn bodies_of(events: &[millrace_client::Event]) -> Vec<String> {
    events
        .iter()
        .map(|event| String::from_utf8(event.body.to_vec()).expect("UTF-8 body"))
        .collect()
}

/// Events with these bodies and no headers.
pub fn events_with_bodies(bodies: &[String]) -> Vec<millrace_client::Event> {
    bodies
        .iter()
        .map(|body| millrace_client::Event::new(body.clone().into_bytes()))
        .collect()
}

/// Takes and commits up to `max_per_take` events at a time from `channel` until a take
/// returns nothing within 200 ms; returns the bodies (as text) in delivery order.
/// Panics on any error.
pub async fn drain_channel(
    client: &mut millrace_client::Client,
    channel: &str,
    max_per_take: u32,
) -> Vec<String> {
    let mut delivered = Vec::new();
    loop {
        client.begin(channel).await.expect("begin a draining take");
        let events = client
            .take(max_per_take, Duration::from_millis(200))
            .await
            .expect("take while draining");
        client.commit().await.expect("commit a draining take");
        if events.is_empty() {
            return delivered;
        }
        delivered.extend(
            events
                .into_iter()
                .map(|event| String::from_utf8(event.body.to_vec()).expect("a text body")),
        );
    }
}

/// How to get a working `strace`, for the fault-injection tests' skip lines.
const STRACE_HOW_TO_GET: &str =
    "apt-get install strace, and allow ptrace (root, or a container without a seccomp \
     profile that forbids it); .ci/run installs it";

/// Arguments that run a program under `strace` with a fault injected: `strace -f -o LOG
/// -e trace=TRACED -e inject=INJECTION` (plus `--seccomp-bpf` where it works, so that only
/// the traced system calls stop the program). Append the program and its arguments.
/// Injection only reaches traced calls, so `traced_syscalls` must include the injected
/// one. `Err` says what is missing (strace, or the permission to trace), for
/// [`require`].
pub fn strace_wrapper(
    log_path: &Path,
    traced_syscalls: &str,
    injection: &str,
) -> Result<Vec<String>, Missing> {
    let strace = tool_on_path("strace", STRACE_HOW_TO_GET)?;
    let mut last_problem = String::new();
    for seccomp in [true, false] {
        let mut args = vec![strace.display().to_string()];
        if seccomp {
            args.push("--seccomp-bpf".to_string());
        }
        args.extend([
            "-f".to_string(),
            "-o".to_string(),
            log_path.display().to_string(),
            "-e".to_string(),
            format!("trace={traced_syscalls}"),
            "-e".to_string(),
            format!("inject={injection}"),
        ]);
        match Command::new(&args[0]).args(&args[1..]).arg("true").output() {
            Err(error) => {
                let what = format!("a runnable strace ({}: {error})", strace.display());
                return Err(Missing::new(what, STRACE_HOW_TO_GET));
            }
            Ok(output) if output.status.success() => return Ok(args),
            Ok(output) => {
                last_problem = String::from_utf8_lossy(&output.stderr).trim().to_string();
            }
        }
    }
    Err(Missing::new(
        format!("strace permitted to trace here (ptrace): {last_problem}"),
        STRACE_HOW_TO_GET,
    ))
}

/// Config text for agent [`AGENT`] with file channels `names`, each with its
/// directories under `<name>/` in the server's directory, plus `extra` lines.
pub fn file_channels_config(names: &[&str], extra: &str) -> String {
    let mut config = format!("{AGENT}.channels = {}\n", names.join(" "));
    for name in names {
        config.push_str(&format!(
            "{AGENT}.channels.{name}.type = file\n\
             {AGENT}.channels.{name}.checkpointDir = {name}/checkpoint\n\
             {AGENT}.channels.{name}.dataDirs = {name}/data\n\
             {AGENT}.channels.{name}.minimumRequiredSpace = 1048576\n"
        ));
    }
    config.push_str(extra);
    config
}

/// Config text for agent [`AGENT`] with one channel of each engine type: file `f1`,
/// memory `m1` and spillable `s1`. The spillable one keeps two events in memory and
/// spills the rest to its overflow at once, so a read of three or more crosses both tiers.
pub fn one_channel_of_each_type_config() -> String {
    let mut config = file_channels_config(&["f1"], "");
    config = config.replacen(
        &format!("{AGENT}.channels = f1\n"),
        &format!("{AGENT}.channels = f1 m1 s1\n"),
        1,
    );
    config.push_str(&format!(
        "{AGENT}.channels.m1.type = memory\n\
         {AGENT}.channels.m1.byteCapacity = 1048576\n\
         {AGENT}.channels.s1.type = spillablememory\n\
         {AGENT}.channels.s1.memoryCapacity = 2\n\
         {AGENT}.channels.s1.byteCapacity = 1048576\n\
         {AGENT}.channels.s1.overflowTimeout = 0\n\
         {AGENT}.channels.s1.checkpointDir = s1/checkpoint\n\
         {AGENT}.channels.s1.dataDirs = s1/data\n\
         {AGENT}.channels.s1.minimumRequiredSpace = 1048576\n"
    ));
    config
}

/// `bytes` as lowercase hex: how the interop tests pass binary bodies to and from the
/// Python peers in JSON.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// The bytes of a hex string written by [`hex`] or a Python peer.
pub fn unhex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|at| u8::from_str_radix(&text[at..at + 2], 16).expect("hex"))
        .collect()
}

/// Stdout of a `channelctl` run as lines, after checking it succeeded.
pub fn successful_lines(output: &Output) -> Vec<String> {
    assert!(
        output.status.success(),
        "channelctl failed ({}): {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout.clone())
        .expect("UTF-8 output")
        .lines()
        .map(str::to_string)
        .collect()
}

/// A test that needs a tool this machine lacks: prints one line saying which and how to
/// get it, and returns (the test passes as skipped) — unless `CI=true`, where it fails.
pub fn skip_without_tool(message: &str) {
    eprintln!("skipped: {message}");
    assert!(std::env::var("CI").as_deref() != Ok("true"), "{message}");
}

/// The build directory the tests run from (`target/` or `$CARGO_TARGET_DIR`): where tests
/// leave artefacts worth looking at (screenshots).
pub fn target_dir() -> PathBuf {
    let test_executable = std::env::current_exe().expect("the test executable's path");
    // <target>/<profile>/deps/<test>-<hash>
    test_executable
        .ancestors()
        .nth(3)
        .expect("the test executable lives in <target>/<profile>/deps")
        .to_path_buf()
}
