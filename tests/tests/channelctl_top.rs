//! `channelctl top` against a real channeld: plain lines when stdout is not a terminal,
//! and the full-screen view in a pseudo-terminal (util-linux `script`), quit with `q`.

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use millrace_e2e::{
    binaries, channelctl, file_channels_config, free_port, skip_without_tool, successful_lines,
    wait_until, ChildGuard, Server, ServerSetup, AGENT,
};

/// Longest wait for the screen to show something or for `top` to quit.
const SCREEN_TIMEOUT: Duration = Duration::from_secs(30);
/// xterm's escape sequences to enter and leave the alternate screen.
const ENTER_ALTERNATE_SCREEN: &str = "\u{1b}[?1049h";
const LEAVE_ALTERNATE_SCREEN: &str = "\u{1b}[?1049l";

fn server_with_a_file_and_a_memory_channel() -> Server {
    let extra = format!(
        "{AGENT}.channels = c1 m1\n\
         {AGENT}.channels.c1.capacity = 200\n\
         {AGENT}.channels.c1.transactionCapacity = 100\n\
         {AGENT}.channels.m1.type = memory\n\
         {AGENT}.channels.m1.capacity = 50\n\
         {AGENT}.channels.m1.transactionCapacity = 50\n"
    );
    let config = file_channels_config(&["c1"], "")
        .lines()
        .filter(|line| !line.starts_with(&format!("{AGENT}.channels =")))
        .map(|line| format!("{line}\n"))
        .collect::<String>()
        + &extra;
    let server = Server::start(ServerSetup::with_config(config));
    successful_lines(&server.channelctl("put", &["--channel", "c1"], b"a\nb\nc\n"));
    server
}

#[test]
fn top_without_a_terminal_prints_a_line_per_channel_and_dir_at_each_refresh() {
    let server = server_with_a_file_and_a_memory_channel();
    let output = channelctl(
        &[
            "top",
            "--http",
            server.http_address(),
            "--count",
            "3",
            "--interval-ms",
            "300",
        ],
        b"",
    );
    let lines = successful_lines(&output);
    assert_eq!(lines.len(), 3 * 3, "{lines:#?}");
    let c1: Vec<&String> = lines
        .iter()
        .filter(|line| line.contains(" channel c1 "))
        .collect();
    assert_eq!(c1.len(), 3, "{lines:#?}");
    for line in &c1 {
        for field in [
            "type=file",
            "state=open",
            "size=3",
            "capacity=200",
            "fill_percent=1.50",
        ] {
            assert!(line.contains(field), "{field} missing: {line}");
        }
        assert!(!line.contains("commit_ms=- "), "c1 committed a put: {line}");
    }
    assert!(
        c1[0].contains("put_per_s=- "),
        "no rate from one reading: {}",
        c1[0]
    );
    assert!(
        c1[2].contains("put_per_s=0.0 "),
        "a rate from two readings: {}",
        c1[2]
    );
    let m1 = lines
        .iter()
        .find(|line| line.contains(" channel m1 "))
        .expect("m1");
    assert!(
        m1.contains("type=memory") && m1.contains("capacity=50"),
        "{m1}"
    );
    assert!(m1.contains("commit_ms=- "), "m1 never committed: {m1}");
    let dir = lines
        .iter()
        .find(|line| line.contains(" dir c1/data "))
        .expect("c1's dir");
    assert!(
        dir.contains("channel=c1") && dir.contains("guard_bytes=1048576"),
        "{dir}"
    );
    assert!(
        !dir.contains("usable_bytes=- "),
        "free space is read: {dir}"
    );
}

#[test]
fn top_without_a_server_says_it_is_unreachable_and_keeps_trying() {
    let address = format!("127.0.0.1:{}", free_port());
    let output = channelctl(
        &[
            "top",
            "--http",
            &address,
            "--count",
            "2",
            "--interval-ms",
            "100",
        ],
        b"",
    );
    let lines = successful_lines(&output);
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(
        lines
            .iter()
            .all(|line| line.contains(" unreachable error=") && line.contains(&address)),
        "{lines:?}"
    );
}

#[test]
fn top_on_a_terminal_draws_in_place_and_quits_on_q() {
    if Command::new("script").arg("--version").output().is_err() {
        skip_without_tool(
            "the terminal test of top needs util-linux's script: apt-get install bsdutils",
        );
        return;
    }
    let server = server_with_a_file_and_a_memory_channel();
    let command = format!(
        "stty cols 160 rows 40; exec {} top --http {} --interval-ms 200",
        binaries().channelctl.display(),
        server.http_address()
    );
    let mut child = Command::new("script")
        .args([
            "--quiet",
            "--flush",
            "--return",
            "--command",
            &command,
            "/dev/null",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("script starts");
    let mut input = child.stdin.take().expect("stdin");
    let mut stdout = child.stdout.take().expect("stdout");
    let screen = Arc::new(Mutex::new(String::new()));
    let reader = {
        let screen = Arc::clone(&screen);
        std::thread::spawn(move || {
            let mut buffer = [0u8; 4096];
            while let Ok(read) = stdout.read(&mut buffer) {
                if read == 0 {
                    break;
                }
                screen
                    .lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buffer[..read]));
            }
        })
    };
    let mut guard = ChildGuard(Some(child));
    let drawn = wait_until(SCREEN_TIMEOUT, || {
        let screen = screen.lock().unwrap();
        screen.contains("CHANNEL") && screen.contains("c1/data") && screen.contains("PUT/S")
    });
    assert!(
        drawn,
        "no table on the screen: {:?}",
        screen.lock().unwrap()
    );
    input.write_all(b"q").expect("type q");
    input.flush().expect("flush");
    let mut exited = None;
    let quit = wait_until(SCREEN_TIMEOUT, || {
        exited = guard.0.as_mut().unwrap().try_wait().expect("wait");
        exited.is_some()
    });
    assert!(quit, "top did not quit on q: {:?}", screen.lock().unwrap());
    assert!(exited.unwrap().success(), "top failed");
    reader.join().expect("the reader");
    let screen = screen.lock().unwrap();
    assert!(screen.contains(ENTER_ALTERNATE_SCREEN), "{screen:?}");
    assert!(
        screen.rfind(LEAVE_ALTERNATE_SCREEN) > screen.rfind("CHANNEL"),
        "the terminal is restored after the last frame: {screen:?}"
    );
    drop(guard);
}
