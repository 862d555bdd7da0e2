//! The crate graph is the one `docs/design.md` draws: its "Map" table lists, for every
//! crate of the workspace, the crates of ours it depends on, and this test compares the
//! table with the manifests (`cargo metadata`). On top, the rules the map states: the
//! adapters and the tools never link channeld, nothing depends on the server, and the
//! engine and the protocol know nothing of each other.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;

use serde_json::Value;

/// Our crates' names start with this.
const OUR_PREFIX: &str = "millrace-";

/// Each of our crates and the crates of ours it depends on, from `cargo metadata`:
/// normal and dev dependencies (the benchmarks and the adapters' tests use crates of
/// ours only as dev dependencies), not build ones.
fn manifest_dependencies() -> BTreeMap<String, BTreeSet<String>> {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ sits in the workspace");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    // --no-deps: the workspace's own manifests only, so nothing is resolved or fetched.
    let output = Command::new(cargo)
        .current_dir(workspace)
        .args(["metadata", "--format-version", "1", "--no-deps"])
        .output()
        .expect("cargo metadata runs");
    assert!(
        output.status.success(),
        "cargo metadata failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let metadata: Value = serde_json::from_slice(&output.stdout).expect("cargo metadata JSON");
    metadata["packages"]
        .as_array()
        .expect("packages")
        .iter()
        .map(|package| {
            let name = package["name"].as_str().expect("name").to_string();
            let dependencies = package["dependencies"]
                .as_array()
                .expect("dependencies")
                .iter()
                .filter(|dependency| {
                    dependency["kind"].is_null() || dependency["kind"].as_str() == Some("dev")
                })
                .filter_map(|dependency| dependency["name"].as_str())
                .filter(|name| name.starts_with(OUR_PREFIX))
                .map(str::to_string)
                .collect();
            (name, dependencies)
        })
        .collect()
}

/// The rows of the table in `docs/design.md`'s "Map" section: the crate named in the
/// first column and the crates named in the last.
fn documented_dependencies() -> BTreeMap<String, BTreeSet<String>> {
    let design = include_str!("../../docs/design.md");
    let map_start = design
        .find("\n## Map\n")
        .expect("docs/design.md has a Map section");
    let map = &design[map_start + 1..];
    let map = &map[..map[3..].find("\n## ").map_or(map.len(), |end| end + 3)];
    let backticked = |cell: &str| -> Vec<String> {
        cell.split('`')
            .skip(1)
            .step_by(2)
            .filter(|name| name.starts_with(OUR_PREFIX))
            .map(str::to_string)
            .collect()
    };
    map.lines()
        .filter(|line| line.starts_with("| `millrace-"))
        .map(|line| {
            let cells: Vec<&str> = line.split(" | ").collect();
            let name = backticked(cells[0])
                .into_iter()
                .next()
                .expect("a crate name in the first column");
            let dependencies = backticked(cells.last().expect("a last column"))
                .into_iter()
                .collect();
            (name, dependencies)
        })
        .collect()
}

/// Everything `name` links, directly or through other crates of ours.
fn transitive(graph: &BTreeMap<String, BTreeSet<String>>, name: &str) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    let mut pending = vec![name.to_string()];
    while let Some(next) = pending.pop() {
        for dependency in graph.get(&next).into_iter().flatten() {
            if seen.insert(dependency.clone()) {
                pending.push(dependency.clone());
            }
        }
    }
    seen
}

#[test]
fn the_map_in_the_design_notes_is_the_real_crate_graph() {
    let real = manifest_dependencies();
    let documented = documented_dependencies();
    assert_eq!(
        documented, real,
        "docs/design.md's Map table (left) differs from the manifests (right): update the \
         table, the picture above it and the reasons below it together"
    );
}

#[test]
fn the_adapters_and_the_tools_do_not_link_the_server() {
    let graph = manifest_dependencies();
    for binary_crate in ["millrace-adapters", "millrace-tools"] {
        let linked = transitive(&graph, binary_crate);
        assert!(
            !linked.contains("millrace-server"),
            "{binary_crate} links millrace-server (through {linked:?}); read the configuration \
             with millrace-config and open channels with millrace-ops instead"
        );
    }
    for (name, dependencies) in &graph {
        assert!(
            !dependencies.contains("millrace-server"),
            "{name} depends on millrace-server: nothing may, it is channeld"
        );
    }
}

#[test]
fn the_engine_and_the_protocol_know_nothing_of_each_other() {
    let graph = manifest_dependencies();
    assert!(!transitive(&graph, "millrace-engine").contains("millrace-protocol"));
    assert!(!transitive(&graph, "millrace-protocol").contains("millrace-engine"));
}
