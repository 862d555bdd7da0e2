//! `docs/protocol.md` §10 shows the constants of `limits.rs`, not numbers of its own:
//! the server limits table names each default's constant, and this test checks the value
//! written beside it. (channeld's settings take their defaults from the same constants,
//! and `docs/configuration.md` is checked against those settings in the server crate.)

use millrace_protocol::{
    DEFAULT_FRAME_COMPLETION_DEADLINE_MS, DEFAULT_HANDSHAKE_DEADLINE_MS, DEFAULT_IDLE_TIMEOUT_MS,
    DEFAULT_MAX_CONNECTIONS, DEFAULT_MAX_HELLO_FRAME_BYTES, DEFAULT_MAX_TAKE_WAIT_MS,
};

const DOCUMENT: &str = include_str!("../../docs/protocol.md");

/// The value of a limits constant, by name.
fn constant(name: &str) -> Option<u64> {
    Some(match name {
        "DEFAULT_HANDSHAKE_DEADLINE_MS" => DEFAULT_HANDSHAKE_DEADLINE_MS,
        "DEFAULT_FRAME_COMPLETION_DEADLINE_MS" => DEFAULT_FRAME_COMPLETION_DEADLINE_MS,
        "DEFAULT_IDLE_TIMEOUT_MS" => DEFAULT_IDLE_TIMEOUT_MS,
        "DEFAULT_MAX_CONNECTIONS" => u64::from(DEFAULT_MAX_CONNECTIONS),
        "DEFAULT_MAX_TAKE_WAIT_MS" => u64::from(DEFAULT_MAX_TAKE_WAIT_MS),
        "DEFAULT_MAX_HELLO_FRAME_BYTES" => u64::from(DEFAULT_MAX_HELLO_FRAME_BYTES),
        _ => return None,
    })
}

/// The number a cell starts with, written with digit-group spaces ("300 000 ms (5 min)"
/// is 300000).
fn leading_number(cell: &str) -> Option<u64> {
    let digits: String = cell
        .trim_start_matches("**")
        .chars()
        .take_while(|character| character.is_ascii_digit() || *character == ' ')
        .filter(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

/// The rows of section 10's tables that name a limits constant: (constant, the cells).
fn rows_naming_a_constant() -> Vec<(String, Vec<String>)> {
    let start = DOCUMENT
        .find("## 10. Limits and defaults")
        .expect("section 10");
    let end = DOCUMENT[start..]
        .find("\n## 11.")
        .map_or(DOCUMENT.len(), |end| start + end);
    DOCUMENT[start..end]
        .lines()
        .filter(|line| line.starts_with("| "))
        .filter_map(|line| {
            let cells: Vec<String> = line
                .split('|')
                .map(|cell| cell.trim().to_string())
                .collect();
            let name = cells.iter().find_map(|cell| {
                let mut pieces = cell.split('`');
                pieces.next()?;
                pieces
                    .next()
                    .filter(|name| name.starts_with("DEFAULT_"))
                    .map(str::to_string)
            })?;
            Some((name, cells))
        })
        .collect()
}

#[test]
fn documented_server_limits_are_the_constants() {
    let rows = rows_naming_a_constant();
    let named: Vec<&str> = rows.iter().map(|(name, _)| name.as_str()).collect();
    for expected in [
        "DEFAULT_HANDSHAKE_DEADLINE_MS",
        "DEFAULT_FRAME_COMPLETION_DEADLINE_MS",
        "DEFAULT_IDLE_TIMEOUT_MS",
        "DEFAULT_MAX_CONNECTIONS",
        "DEFAULT_MAX_TAKE_WAIT_MS",
        "DEFAULT_MAX_HELLO_FRAME_BYTES",
    ] {
        assert!(
            named.contains(&expected),
            "section 10 does not show {expected}"
        );
    }
    for (name, cells) in rows {
        let value = constant(&name).unwrap_or_else(|| panic!("{name} is not a limits constant"));
        let documented: Vec<u64> = cells
            .iter()
            .filter_map(|cell| leading_number(cell))
            .collect();
        assert!(
            documented.contains(&value),
            "docs/protocol.md shows {documented:?} beside {name}, which is {value}"
        );
    }
}
