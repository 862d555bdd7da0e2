//! The module graphs of the engine and the protocol crate stay free of loops: no two
//! source files import each other, directly or through a chain of `use` paths, and the
//! channel contract (`engine/src/channel.rs`) imports nothing from the file channel
//! (`engine/src/file/`). A loop means two files that can only be understood, changed and
//! tested together; this keeps each layer readable from the bottom up
//! (`docs/design.md`).
//!
//! What counts as an import of file B by file A: any path in A (in a `use` item, or
//! written out in code) that names B's module or an item B defines, including through a
//! re-export (`pub use`), which is followed to the file that defines the item. Test
//! modules inside a file count too. Declaring a child module (`mod b;`) does not: it
//! is how the files are put together, not a dependency.
//!
//! The reader below is deliberately small: it strips comments, strings and character
//! literals, then reads paths. It understands the Rust these crates are written in; its
//! own tests (at the bottom) pin down what it must catch.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// The crates whose graphs must stay acyclic, by their `src` directory relative to this
/// crate's manifest.
const CHECKED_CRATES: [&str; 2] = ["src", "../protocol/src"];
/// Re-exports followed before giving up (a loop of re-exports would otherwise never end).
const MAX_REEXPORT_HOPS: usize = 16;

type ModulePath = Vec<String>;

#[test]
fn no_source_files_of_the_engine_or_the_protocol_crate_import_each_other() {
    let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut loops = Vec::new();
    for src in CHECKED_CRATES {
        let graph = ModuleGraph::read(&manifest_dir.join(src));
        assert!(
            graph.files.len() > 5,
            "{src}: found only {} files; is the path right?",
            graph.files.len()
        );
        for cycle in graph.cycles() {
            loops.push(format!("{src}: {}", graph.describe(&cycle)));
        }
    }
    assert!(
        loops.is_empty(),
        "source files that import each other (break each loop by moving what both need \
         into a module of its own):\n{}",
        loops.join("\n")
    );
}

#[test]
fn the_channel_contract_imports_nothing_from_the_file_channel() {
    let graph = ModuleGraph::read(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"));
    let contract = vec!["channel".to_string()];
    let file_channel_imports: Vec<String> = graph.edges[&contract]
        .iter()
        .filter(|target| target.first().map(String::as_str) == Some("file"))
        .map(|target| graph.file_name(target))
        .collect();
    assert!(
        file_channel_imports.is_empty(),
        "engine/src/channel.rs imports {file_channel_imports:?}"
    );
}

/// The files of a crate and which import which.
struct ModuleGraph {
    /// Module path (`[]` for the crate root) to its file, relative to `src`.
    files: BTreeMap<ModulePath, PathBuf>,
    /// Module path to the module paths of the files it imports.
    edges: BTreeMap<ModulePath, BTreeSet<ModulePath>>,
}

impl ModuleGraph {
    fn read(src: &Path) -> Self {
        let mut files = BTreeMap::new();
        collect_files(src, src, &mut files);
        let sources: BTreeMap<ModulePath, Source> = files
            .iter()
            .map(|(module, path)| {
                let text = fs::read_to_string(src.join(path))
                    .unwrap_or_else(|error| panic!("cannot read {}: {error}", path.display()));
                (module.clone(), Source::parse(&text))
            })
            .collect();
        let resolver = Resolver {
            files: &files,
            sources: &sources,
        };
        let mut edges = BTreeMap::new();
        for (module, source) in &sources {
            let targets: BTreeSet<ModulePath> = source
                .paths
                .iter()
                .filter_map(|(inline, path)| {
                    let mut scope = module.clone();
                    scope.extend(inline.iter().cloned());
                    resolver.resolve(&scope, path, 0)
                })
                .filter(|target| target != module)
                .collect();
            edges.insert(module.clone(), targets);
        }
        ModuleGraph { files, edges }
    }

    fn file_name(&self, module: &ModulePath) -> String {
        self.files[module].display().to_string()
    }

    /// Every set of files that import each other (strongly connected components of
    /// more than one file), each in a stable order.
    fn cycles(&self) -> Vec<Vec<ModulePath>> {
        let mut tarjan = Tarjan::default();
        for module in self.files.keys() {
            if !tarjan.index.contains_key(module) {
                tarjan.visit(module, &self.edges);
            }
        }
        tarjan.components
    }

    /// "a.rs -> b.rs -> a.rs" style text for a cycle: each file with the others of the
    /// cycle it imports.
    fn describe(&self, cycle: &[ModulePath]) -> String {
        let members: BTreeSet<&ModulePath> = cycle.iter().collect();
        cycle
            .iter()
            .map(|module| {
                let imported: Vec<String> = self.edges[module]
                    .iter()
                    .filter(|target| members.contains(target))
                    .map(|target| self.file_name(target))
                    .collect();
                format!("{} imports {}", self.file_name(module), imported.join(", "))
            })
            .collect::<Vec<_>>()
            .join("; ")
    }
}

/// Tarjan's strongly connected components.
#[derive(Default)]
struct Tarjan {
    next_index: usize,
    index: BTreeMap<ModulePath, usize>,
    low: BTreeMap<ModulePath, usize>,
    stack: Vec<ModulePath>,
    on_stack: BTreeSet<ModulePath>,
    components: Vec<Vec<ModulePath>>,
}

impl Tarjan {
    fn visit(&mut self, module: &ModulePath, edges: &BTreeMap<ModulePath, BTreeSet<ModulePath>>) {
        self.index.insert(module.clone(), self.next_index);
        self.low.insert(module.clone(), self.next_index);
        self.next_index += 1;
        self.stack.push(module.clone());
        self.on_stack.insert(module.clone());
        for target in &edges[module] {
            if !self.index.contains_key(target) {
                self.visit(target, edges);
                let low = self.low[module].min(self.low[target]);
                self.low.insert(module.clone(), low);
            } else if self.on_stack.contains(target) {
                let low = self.low[module].min(self.index[target]);
                self.low.insert(module.clone(), low);
            }
        }
        if self.low[module] == self.index[module] {
            let mut component = Vec::new();
            loop {
                let member = self.stack.pop().expect("the module is on the stack");
                self.on_stack.remove(&member);
                let done = &member == module;
                component.push(member);
                if done {
                    break;
                }
            }
            if component.len() > 1 {
                component.sort();
                self.components.push(component);
            }
        }
    }
}

/// Every `.rs` file under `dir`, by module path.
fn collect_files(src: &Path, dir: &Path, files: &mut BTreeMap<ModulePath, PathBuf>) {
    let mut entries: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap_or_else(|error| panic!("cannot list {}: {error}", dir.display()))
        .map(|entry| entry.expect("a directory entry").path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            collect_files(src, &path, files);
        } else if path.extension().is_some_and(|extension| extension == "rs") {
            let relative = path.strip_prefix(src).expect("under src").to_path_buf();
            files.insert(module_path_of(&relative), relative);
        }
    }
}

/// `lib.rs` is the root, `a/mod.rs` and `a.rs` are module `a`, `a/b.rs` is `a::b`.
fn module_path_of(relative: &Path) -> ModulePath {
    let mut parts: ModulePath = relative
        .with_extension("")
        .components()
        .map(|part| part.as_os_str().to_string_lossy().into_owned())
        .collect();
    if parts.last().is_some_and(|last| last == "mod") || parts == ["lib"] {
        parts.pop();
    }
    parts
}

/// What one file says about paths.
struct Source {
    /// Each path written in the file, with the inline modules (`mod tests { … }`) it
    /// sits in.
    paths: Vec<(ModulePath, Vec<String>)>,
    /// Names the file re-exports (`pub use a::b::C;` makes `C` name `a::b::C`).
    reexports: BTreeMap<String, Vec<String>>,
}

impl Source {
    fn parse(text: &str) -> Self {
        let code = strip_comments_and_literals(text);
        let tokens = tokenize(&code);
        let mut paths = Vec::new();
        let mut reexports = BTreeMap::new();
        let mut inline: Vec<(usize, String)> = Vec::new();
        let mut depth = 0usize;
        let mut position = 0;
        while position < tokens.len() {
            let token = tokens[position].as_str();
            match token {
                "mod" if tokens.get(position + 2).map(String::as_str) == Some("{") => {
                    inline.push((depth, tokens[position + 1].clone()));
                    depth += 1;
                    position += 3;
                    continue;
                }
                "{" => depth += 1,
                "}" => {
                    depth -= 1;
                    if inline
                        .last()
                        .is_some_and(|(opened_at, _)| *opened_at == depth)
                    {
                        inline.pop();
                    }
                }
                "use" => {
                    let public = position > 0
                        && (tokens[position - 1] == "pub" || tokens[position - 1] == ")");
                    let end = tokens[position..]
                        .iter()
                        .position(|token| token == ";")
                        .map_or(tokens.len(), |offset| position + offset);
                    let scope: ModulePath = inline.iter().map(|(_, name)| name.clone()).collect();
                    for path in expand_use_tree(&tokens[position + 1..end]) {
                        if public && scope.is_empty() {
                            if let Some(last) = path.last() {
                                reexports.insert(last.clone(), path.clone());
                            }
                        }
                        paths.push((scope.clone(), path));
                    }
                    position = end + 1;
                    continue;
                }
                "crate" | "super" | "self" => {
                    let (path, next) = read_path(&tokens, position);
                    if path.len() > 1 {
                        let scope = inline.iter().map(|(_, name)| name.clone()).collect();
                        paths.push((scope, path));
                    }
                    position = next;
                    continue;
                }
                _ => {}
            }
            position += 1;
        }
        Source { paths, reexports }
    }
}

/// `a :: b :: c` from `position`: the identifiers joined by `::`, and where they end.
fn read_path(tokens: &[String], mut position: usize) -> (Vec<String>, usize) {
    let mut path = vec![tokens[position].clone()];
    position += 1;
    while tokens.get(position).map(String::as_str) == Some("::")
        && tokens
            .get(position + 1)
            .is_some_and(|token| is_identifier(token))
    {
        path.push(tokens[position + 1].clone());
        position += 2;
    }
    (path, position)
}

/// The paths a `use` tree names: `a::{b, c::{d, self}}` gives `a::b`, `a::c::d`, `a::c`.
fn expand_use_tree(tokens: &[String]) -> Vec<Vec<String>> {
    let mut paths = Vec::new();
    expand_into(tokens, &[], &mut paths);
    paths
}

fn expand_into(tokens: &[String], prefix: &[String], paths: &mut Vec<Vec<String>>) {
    let mut path = prefix.to_vec();
    let mut position = 0;
    while position < tokens.len() {
        match tokens[position].as_str() {
            "::" => {}
            "{" => {
                let close = matching_brace(tokens, position);
                for branch in split_top_level(&tokens[position + 1..close]) {
                    expand_into(branch, &path, paths);
                }
                return;
            }
            "as" => break,
            "self" if !path.is_empty() => {}
            "*" => {}
            token => path.push(token.to_string()),
        }
        position += 1;
    }
    if !path.is_empty() {
        paths.push(path);
    }
}

fn matching_brace(tokens: &[String], open: usize) -> usize {
    let mut depth = 0;
    for (position, token) in tokens.iter().enumerate().skip(open) {
        match token.as_str() {
            "{" => depth += 1,
            "}" => {
                depth -= 1;
                if depth == 0 {
                    return position;
                }
            }
            _ => {}
        }
    }
    tokens.len()
}

fn split_top_level(tokens: &[String]) -> Vec<&[String]> {
    let mut branches = Vec::new();
    let mut depth = 0;
    let mut start = 0;
    for (position, token) in tokens.iter().enumerate() {
        match token.as_str() {
            "{" => depth += 1,
            "}" => depth -= 1,
            "," if depth == 0 => {
                branches.push(&tokens[start..position]);
                start = position + 1;
            }
            _ => {}
        }
    }
    branches.push(&tokens[start..]);
    branches.retain(|branch| !branch.is_empty());
    branches
}

/// Resolves paths to the files that define what they name.
struct Resolver<'a> {
    files: &'a BTreeMap<ModulePath, PathBuf>,
    sources: &'a BTreeMap<ModulePath, Source>,
}

impl Resolver<'_> {
    /// The file (module path) that `path`, written in module `scope`, names; `None` for
    /// paths into other crates or the standard library.
    fn resolve(&self, scope: &ModulePath, path: &[String], hops: usize) -> Option<ModulePath> {
        let (mut module, rest): (ModulePath, &[String]) = match path.first()?.as_str() {
            "crate" => (Vec::new(), &path[1..]),
            "super" | "self" => {
                let mut module = scope.clone();
                let mut rest = path;
                while let Some(first) = rest.first() {
                    match first.as_str() {
                        "super" => {
                            module.pop();
                        }
                        "self" => {}
                        _ => break,
                    }
                    rest = &rest[1..];
                }
                (module, rest)
            }
            first => {
                let mut child = scope.clone();
                child.push(first.to_string());
                if !self.files.contains_key(&child) {
                    return None;
                }
                (scope.clone(), path)
            }
        };
        // `scope` may be an inline module; the file is its nearest ancestor with one.
        while !self.files.contains_key(&module) {
            module.pop();
        }
        let mut rest = rest;
        while let Some(next) = rest.first() {
            let mut child = module.clone();
            child.push(next.clone());
            if !self.files.contains_key(&child) {
                break;
            }
            module = child;
            rest = &rest[1..];
        }
        if let Some(name) = rest.first() {
            if hops < MAX_REEXPORT_HOPS {
                if let Some(target) = self.sources[&module].reexports.get(name) {
                    if let Some(defining) = self.resolve(&module, target, hops + 1) {
                        return Some(defining);
                    }
                }
            }
        }
        Some(module)
    }
}

fn is_identifier(token: &str) -> bool {
    token
        .chars()
        .next()
        .is_some_and(|first| first.is_alphabetic() || first == '_')
}

/// Identifiers, `::`, and single punctuation characters.
fn tokenize(code: &str) -> Vec<String> {
    let mut tokens = Vec::new();
    let mut chars = code.char_indices().peekable();
    while let Some((start, character)) = chars.next() {
        if character.is_alphanumeric() || character == '_' {
            let mut end = start + character.len_utf8();
            while let Some(&(position, next)) = chars.peek() {
                if next.is_alphanumeric() || next == '_' {
                    end = position + next.len_utf8();
                    chars.next();
                } else {
                    break;
                }
            }
            tokens.push(code[start..end].to_string());
        } else if character == ':' && chars.peek().is_some_and(|&(_, next)| next == ':') {
            chars.next();
            tokens.push("::".to_string());
        } else if !character.is_whitespace() {
            tokens.push(character.to_string());
        }
    }
    tokens
}

/// The code with comments removed and string and character literals emptied, so that
/// neither can be read as a path.
fn strip_comments_and_literals(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut code = String::with_capacity(text.len());
    let mut position = 0;
    while position < chars.len() {
        let rest = &chars[position..];
        match rest {
            ['/', '/', ..] => {
                while position < chars.len() && chars[position] != '\n' {
                    position += 1;
                }
            }
            ['/', '*', ..] => {
                let mut depth = 0;
                while position < chars.len() {
                    match &chars[position..] {
                        ['/', '*', ..] => {
                            depth += 1;
                            position += 2;
                        }
                        ['*', '/', ..] => {
                            depth -= 1;
                            position += 2;
                            if depth == 0 {
                                break;
                            }
                        }
                        _ => position += 1,
                    }
                }
                code.push(' ');
            }
            ['r', '#', ..] | ['r', '"', ..] | ['b', 'r', '#', ..] | ['b', 'r', '"', ..]
                if position == 0 || !is_identifier_char(chars[position - 1]) =>
            {
                position += if chars[position] == 'b' { 2 } else { 1 };
                let hashes = chars[position..].iter().take_while(|&&c| c == '#').count();
                position += hashes + 1;
                loop {
                    if position >= chars.len() {
                        break;
                    }
                    if chars[position] == '"'
                        && chars[position + 1..]
                            .iter()
                            .take(hashes)
                            .filter(|&&c| c == '#')
                            .count()
                            == hashes
                    {
                        position += 1 + hashes;
                        break;
                    }
                    position += 1;
                }
                code.push_str("\"\"");
            }
            ['"', ..] => {
                position += 1;
                while position < chars.len() && chars[position] != '"' {
                    position += if chars[position] == '\\' { 2 } else { 1 };
                }
                position += 1;
                code.push_str("\"\"");
            }
            ['\'', '\\', ..] => {
                position += 2;
                while position < chars.len() && chars[position] != '\'' {
                    position += 1;
                }
                position += 1;
                code.push_str("' '");
            }
            ['\'', _, '\'', ..] => {
                position += 3;
                code.push_str("' '");
            }
            [character, ..] => {
                code.push(*character);
                position += 1;
            }
            [] => unreachable!("the loop stops at the end"),
        }
    }
    code
}

fn is_identifier_char(character: char) -> bool {
    character.is_alphanumeric() || character == '_'
}

// The reader's own tests: small crates written to a temporary directory.

fn graph_of(files: &[(&str, &str)]) -> ModuleGraph {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in files {
        let path = dir.path().join(name);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, text).unwrap();
    }
    ModuleGraph::read(dir.path())
}

fn cycle_names(graph: &ModuleGraph) -> Vec<Vec<String>> {
    graph
        .cycles()
        .iter()
        .map(|cycle| cycle.iter().map(|module| graph.file_name(module)).collect())
        .collect()
}

#[test]
fn two_files_that_use_each_other_are_a_loop() {
    let graph = graph_of(&[
        ("lib.rs", "mod a;\nmod b;\n"),
        ("a.rs", "use crate::b::B;\npub struct A;\n"),
        ("b.rs", "use crate::a::A;\npub struct B;\n"),
    ]);
    assert_eq!(cycle_names(&graph), [["a.rs", "b.rs"]]);
}

#[test]
fn a_loop_through_a_third_file_and_a_path_written_in_code_is_found() {
    let graph = graph_of(&[
        ("lib.rs", "mod a;\nmod b;\nmod c;\n"),
        ("a.rs", "use super::b::{self, B};\n"),
        ("b.rs", "fn f() { let _ = crate::c::C::new(); }\n"),
        ("c.rs", "pub fn g() -> crate::a::A { todo!() }\n"),
    ]);
    assert_eq!(cycle_names(&graph), [["a.rs", "b.rs", "c.rs"]]);
}

#[test]
fn a_parent_that_re_exports_what_its_child_uses_from_it_is_a_loop() {
    let graph = graph_of(&[
        ("lib.rs", "mod file;\n"),
        (
            "file/mod.rs",
            "mod writer;\npub use writer::Writer;\npub struct Shared;\n",
        ),
        ("file/writer.rs", "use super::Shared;\npub struct Writer;\n"),
    ]);
    assert_eq!(cycle_names(&graph), [["file/mod.rs", "file/writer.rs"]]);
}

#[test]
fn a_path_through_a_re_export_counts_as_an_import_of_the_defining_file() {
    let graph = graph_of(&[
        (
            "lib.rs",
            "pub mod event;\nmod queue;\npub use event::Event;\n",
        ),
        ("event.rs", "pub struct Event;\n"),
        ("queue.rs", "use crate::Event;\n"),
    ]);
    assert!(cycle_names(&graph).is_empty());
    let queue = vec!["queue".to_string()];
    assert_eq!(
        graph.edges[&queue].iter().collect::<Vec<_>>(),
        [&vec!["event".to_string()]]
    );
}

#[test]
fn comments_strings_and_a_test_module_using_its_own_file_make_no_loop() {
    let graph = graph_of(&[
        ("lib.rs", "mod a;\nmod b;\n"),
        (
            "a.rs",
            "//! See [`crate::b::B`].\n/* crate::b::B */\nconst S: &str = \"crate::b::B\";\n\
             const R: &str = r#\"use crate::b::B;\"#;\nconst Q: char = '\"';\n\
             fn f<'a>(x: &'a str) -> &'a str { x }\n\
             #[cfg(test)]\nmod tests {\n    use super::*;\n}\n",
        ),
        ("b.rs", "use crate::a::f;\npub struct B;\n"),
    ]);
    assert!(cycle_names(&graph).is_empty(), "{:?}", cycle_names(&graph));
}

#[test]
fn a_test_module_that_imports_a_file_importing_its_own_is_a_loop() {
    let graph = graph_of(&[
        ("lib.rs", "mod a;\nmod b;\n"),
        (
            "a.rs",
            "pub struct A;\n#[cfg(test)]\nmod tests {\n    use crate::b::B;\n}\n",
        ),
        ("b.rs", "use crate::a::A;\npub struct B;\n"),
    ]);
    assert_eq!(cycle_names(&graph), [["a.rs", "b.rs"]]);
}
