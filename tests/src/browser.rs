//! A headless Chromium driven over the DevTools protocol, for the status page test.
//!
//! Chromium starts with `--remote-debugging-port=0` and prints the address it listens
//! on; the driver connects a websocket to its first page and sends DevTools commands
//! (`Page.navigate`, `Runtime.evaluate`, `Page.captureScreenshot`) as JSON, collecting
//! every console message, uncaught exception and log entry the page produces on the
//! way. No Node.js, WebDriver or browser download: Debian's `chromium` package is all it
//! needs (`.ci/run` installs it).
//!
//! The flags are those this machine's closed network needs (no background networking,
//! component updates or sync), `--no-sandbox` because tests run as root, and a fresh
//! profile directory per browser.

use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{json, Value};
use tungstenite::stream::MaybeTlsStream;
use tungstenite::{Message, WebSocket};

use crate::{http_get, ChildGuard};

/// Environment variable naming the Chromium binary (else `chromium` on `PATH`).
pub const CHROMIUM_ENV: &str = "MILLRACE_CHROMIUM";
/// Longest wait for Chromium to print its DevTools address.
const BROWSER_START_TIMEOUT: Duration = Duration::from_secs(60);
/// Longest wait for the answer to one DevTools command.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);
/// How long one read of the websocket blocks before the driver checks its deadline.
const READ_POLL: Duration = Duration::from_millis(200);
/// What Chromium prints (to stderr) once it listens.
const DEVTOOLS_BANNER: &str = "DevTools listening on ";

/// The Chromium binary, if this machine has one.
pub fn chromium_binary() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os(CHROMIUM_ENV) {
        return Some(PathBuf::from(path));
    }
    let path = std::env::var_os("PATH")?;
    ["chromium", "chromium-browser", "google-chrome"]
        .iter()
        .flat_map(|name| std::env::split_paths(&path).map(move |dir| dir.join(name)))
        .find(|candidate| candidate.is_file())
}

/// Something the page reported on its console or log.
#[derive(Debug, Clone)]
pub struct ConsoleEntry {
    /// `error`, `warning`, `exception`, …
    pub level: String,
    /// `console-api`, `javascript`, `network`, `security`, …
    pub source: String,
    /// The text, with the URL when the entry has one.
    pub text: String,
}

/// A headless Chromium with one page, killed on drop.
pub struct Browser {
    _process: ChildGuard,
    _profile: tempfile::TempDir,
    socket: WebSocket<MaybeTlsStream<TcpStream>>,
    next_id: u64,
    console: Vec<ConsoleEntry>,
}

impl Browser {
    /// Starts `chromium` with a window of `width`×`height` CSS pixels.
    pub fn start(chromium: &Path, width: u32, height: u32) -> Browser {
        let profile = tempfile::Builder::new()
            .prefix("millrace-chromium-")
            .tempdir()
            .expect("a profile directory");
        let mut child = Command::new(chromium)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--no-default-browser-check",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-extensions",
                "--hide-scrollbars",
                "--remote-debugging-address=127.0.0.1",
                "--remote-debugging-port=0",
                &format!("--window-size={width},{height}"),
                &format!("--user-data-dir={}", profile.path().display()),
                "about:blank",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|error| panic!("cannot start {}: {error}", chromium.display()));
        let stderr = child.stderr.take().expect("piped stderr");
        let process = ChildGuard(Some(child));
        let (sender, receiver) = mpsc::channel();
        // Reads stderr to its end, so Chromium never blocks on a full pipe.
        std::thread::spawn(move || {
            let mut sender = Some(sender);
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(address) = line.split(DEVTOOLS_BANNER).nth(1) {
                    if let Some(sender) = sender.take() {
                        let _ = sender.send(address.trim().to_string());
                    }
                }
            }
        });
        let browser_url = receiver
            .recv_timeout(BROWSER_START_TIMEOUT)
            .expect("Chromium printed its DevTools address");
        // ws://127.0.0.1:PORT/devtools/browser/ID -> 127.0.0.1:PORT
        let host_port = browser_url
            .trim_start_matches("ws://")
            .split('/')
            .next()
            .expect("a host and port")
            .to_string();
        let targets: Value = serde_json::from_str(&http_get(&host_port, "/json/list").body)
            .expect("the DevTools target list is JSON");
        let page_url = targets
            .as_array()
            .and_then(|targets| targets.iter().find(|target| target["type"] == "page"))
            .and_then(|target| target["webSocketDebuggerUrl"].as_str())
            .expect("a page target")
            .to_string();
        let (socket, _) = tungstenite::connect(page_url.as_str()).expect("connect to the page");
        if let MaybeTlsStream::Plain(stream) = socket.get_ref() {
            stream
                .set_read_timeout(Some(READ_POLL))
                .expect("a read timeout");
        }
        let mut browser = Browser {
            _process: process,
            _profile: profile,
            socket,
            next_id: 0,
            console: Vec::new(),
        };
        for domain in ["Page.enable", "Runtime.enable", "Log.enable"] {
            browser.call(domain, json!({}));
        }
        browser
    }

    /// Sends a DevTools command and waits for its result; panics on a protocol error.
    pub fn call(&mut self, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let message = json!({ "id": id, "method": method, "params": params }).to_string();
        self.socket
            .send(Message::Text(message.into()))
            .unwrap_or_else(|error| panic!("sending {method}: {error}"));
        let deadline = Instant::now() + COMMAND_TIMEOUT;
        loop {
            assert!(Instant::now() < deadline, "no answer to {method}");
            let Some(message) = self.read_message() else {
                continue;
            };
            if message["id"].as_u64() == Some(id) {
                assert!(message.get("error").is_none(), "{method} failed: {message}");
                return message["result"].clone();
            }
            self.record_event(&message);
        }
    }

    fn read_message(&mut self) -> Option<Value> {
        match self.socket.read() {
            Ok(Message::Text(text)) => serde_json::from_str(text.as_str()).ok(),
            Ok(_) => None,
            Err(tungstenite::Error::Io(error))
                if matches!(
                    error.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                None
            }
            Err(error) => panic!("the DevTools connection failed: {error}"),
        }
    }

    fn record_event(&mut self, message: &Value) {
        let params = &message["params"];
        let entry = match message["method"].as_str() {
            Some("Runtime.consoleAPICalled") => ConsoleEntry {
                level: params["type"].as_str().unwrap_or_default().to_string(),
                source: "console-api".to_string(),
                text: params["args"]
                    .as_array()
                    .map(|args| {
                        args.iter()
                            .map(|arg| {
                                arg["value"]
                                    .as_str()
                                    .map(str::to_string)
                                    .unwrap_or_else(|| arg["description"].to_string())
                            })
                            .collect::<Vec<_>>()
                            .join(" ")
                    })
                    .unwrap_or_default(),
            },
            Some("Runtime.exceptionThrown") => ConsoleEntry {
                level: "exception".to_string(),
                source: "javascript".to_string(),
                text: params["exceptionDetails"].to_string(),
            },
            Some("Log.entryAdded") => ConsoleEntry {
                level: params["entry"]["level"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                source: params["entry"]["source"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                text: format!(
                    "{} {}",
                    params["entry"]["text"].as_str().unwrap_or_default(),
                    params["entry"]["url"].as_str().unwrap_or_default()
                ),
            },
            _ => return,
        };
        self.console.push(entry);
    }

    /// Reads pending events for `duration` (console messages arrive between commands).
    pub fn pump_events(&mut self, duration: Duration) {
        let deadline = Instant::now() + duration;
        while Instant::now() < deadline {
            if let Some(message) = self.read_message() {
                self.record_event(&message);
            }
        }
    }

    /// Everything the page reported so far.
    pub fn console(&self) -> &[ConsoleEntry] {
        &self.console
    }

    /// The entries at level error or worse (errors, asserts, uncaught exceptions).
    pub fn console_errors(&self) -> Vec<ConsoleEntry> {
        self.console
            .iter()
            .filter(|entry| matches!(entry.level.as_str(), "error" | "assert" | "exception"))
            .cloned()
            .collect()
    }

    /// Loads `url` and waits for its `load` event.
    pub fn navigate(&mut self, url: &str) {
        let result = self.call("Page.navigate", json!({ "url": url }));
        assert!(
            result.get("errorText").is_none(),
            "navigating to {url}: {result}"
        );
        let deadline = Instant::now() + COMMAND_TIMEOUT;
        while self.evaluate("document.readyState") != "complete" {
            assert!(Instant::now() < deadline, "{url} did not finish loading");
            self.pump_events(READ_POLL);
        }
    }

    /// Evaluates a JavaScript expression in the page; returns its value as JSON.
    pub fn evaluate(&mut self, expression: &str) -> Value {
        let result = self.call(
            "Runtime.evaluate",
            json!({ "expression": expression, "returnByValue": true }),
        );
        assert!(
            result.get("exceptionDetails").is_none(),
            "evaluating {expression}: {result}"
        );
        result["result"]["value"].clone()
    }

    /// Evaluates `expression` until it is `true` or `timeout` passes; returns whether it
    /// became true.
    pub fn wait_for(&mut self, timeout: Duration, expression: &str) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if self.evaluate(expression) == Value::Bool(true) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            self.pump_events(READ_POLL);
        }
    }

    /// Emulates a viewport of `width`×`height` CSS pixels (`mobile`: a phone's, with
    /// touch and the meta viewport honoured).
    pub fn set_viewport(&mut self, width: u32, height: u32, mobile: bool) {
        self.call(
            "Emulation.setDeviceMetricsOverride",
            json!({
                "width": width,
                "height": height,
                "deviceScaleFactor": 1,
                "mobile": mobile,
            }),
        );
    }

    /// Writes a PNG of the whole page (not only the viewport) to `path`.
    pub fn screenshot(&mut self, path: &Path) {
        let result = self.call(
            "Page.captureScreenshot",
            json!({ "format": "png", "captureBeyondViewport": true }),
        );
        let data = result["data"].as_str().expect("screenshot data");
        let png = base64::engine::general_purpose::STANDARD
            .decode(data)
            .expect("base64 PNG");
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).expect("the screenshot directory");
        }
        std::fs::write(path, png).expect("write the screenshot");
    }
}
