//! Each binary of the tools package describes itself in its `--help`, not the package.

use std::process::Command;

fn help_first_line(binary: &str) -> String {
    let output = Command::new(binary)
        .arg("--help")
        .output()
        .expect("run --help");
    assert!(output.status.success());
    String::from_utf8(output.stdout)
        .expect("UTF-8 help")
        .lines()
        .next()
        .unwrap_or_default()
        .to_string()
}

#[test]
fn channelctl_help_opens_with_what_channelctl_does() {
    let first = help_first_line(env!("CARGO_BIN_EXE_channelctl"));
    assert!(first.starts_with("channelctl: put, take"), "{first}");
    assert!(!first.contains("channel-bench"), "{first}");
}

#[test]
fn channel_bench_help_opens_with_what_channel_bench_does() {
    let first = help_first_line(env!("CARGO_BIN_EXE_channel-bench"));
    assert!(first.starts_with("channel-bench: measure"), "{first}");
    assert!(!first.contains("channelctl"), "{first}");
}
