//! The architecture rules of `ARCHITECTURE.md` that a machine can check (after rust-analyzer's
//! tidy tests): the backend's folders are layers, each with a list of the layers it may import;
//! the module graph has no cycle; nothing imports `cli`. The graph is read from the code: every
//! `crate::` path (in `use` trees, grouped imports included, and anywhere else, macro bodies
//! too) and every `super::` path, resolved to the module it names. The checker is a pure
//! function of the sources, so it is itself tested on planted violations.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
};

/// What each module may import (of the crate): every module within one of the listed ones,
/// and its own ancestors (whose items children share). A module follows the longest rule
/// that names it or one of its ancestors; the top-level rules are the layers, the longer ones
/// hold a module to a narrower rule than its layer's. Nothing lists `cli`: nobody imports it.
const RULES: &[(&str, &[&str])] = &[
    ("core", &["core"]),
    // Pure rules: no storage, no events, nothing.
    ("core::policy", &[]),
    // Crash points (nothing in a release build) are a leaf everyone may reach.
    ("core::crash", &[]),
    // The file-body vocabulary between the public site and the plain listener is a leaf too.
    ("core::body", &[]),
    ("transport", &["transport", "core::crash", "core::body"]),
    ("serve", &["serve", "core", "transport"]),
    // The public site knows nothing of Tor, iroh or the API.
    ("serve::public", &["serve::public", "core"]),
    // The receiving side trusts nothing of the serving side's state: of the core it needs
    // only the range maths, and the (pure) metadata cleaning `send` applies to photos.
    (
        "receive",
        &["receive", "transport", "core::bao", "core::metadata"],
    ),
    ("app", &["app", "core", "transport", "serve", "receive"]),
    ("cli", &["cli", "app"]),
];

fn crate_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn sources(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).expect("read src") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            out.extend(sources(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
    out.sort();
    out
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).expect("read source")
}

/// The module path of a source file under `src`: `core/shares.rs` → `core::shares`,
/// `serve/public/mod.rs` → `serve::public`, `lib.rs` → `` (the crate root).
fn module_of(src: &Path, file: &Path) -> String {
    let relative = file.strip_prefix(src).expect("file under src");
    let mut parts: Vec<String> = relative
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    let last = parts.pop().unwrap_or_default();
    let stem = last.trim_end_matches(".rs");
    if !matches!(stem, "mod" | "lib" | "main") {
        parts.push(stem.to_owned());
    }
    parts.join("::")
}

/// The backend's modules and their sources.
fn backend() -> Vec<(String, String)> {
    let src = crate_dir().join("src");
    sources(&src)
        .iter()
        .map(|file| (module_of(&src, file), read(file)))
        .collect()
}

/// The text with comments, string and char literals blanked out (so that paths in them do not
/// count), lengths kept.
fn code_only(text: &str) -> String {
    let bytes: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        let next = bytes.get(i + 1).copied();
        if c == '/' && next == Some('/') {
            while i < bytes.len() && bytes[i] != '\n' {
                out.push(' ');
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            let mut depth = 0;
            while i < bytes.len() {
                if bytes[i] == '/' && bytes.get(i + 1) == Some(&'*') {
                    depth += 1;
                    out.push_str("  ");
                    i += 2;
                } else if bytes[i] == '*' && bytes.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    out.push_str("  ");
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    out.push(if bytes[i] == '\n' { '\n' } else { ' ' });
                    i += 1;
                }
            }
        } else if c == 'r'
            && (next == Some('"') || next == Some('#'))
            && !ident_char_before(&bytes, i)
        {
            // Raw string: r"…" or r#"…"#.
            let mut j = i + 1;
            let mut hashes = 0;
            while bytes.get(j) == Some(&'#') {
                hashes += 1;
                j += 1;
            }
            if bytes.get(j) != Some(&'"') {
                out.push(c);
                i += 1;
                continue;
            }
            j += 1;
            loop {
                if j >= bytes.len() {
                    break;
                }
                if bytes[j] == '"' && (0..hashes).all(|k| bytes.get(j + 1 + k) == Some(&'#')) {
                    j += 1 + hashes;
                    break;
                }
                j += 1;
            }
            for &k in &bytes[i..j.min(bytes.len())] {
                out.push(if k == '\n' { '\n' } else { ' ' });
            }
            i = j;
        } else if c == '"' {
            out.push(' ');
            i += 1;
            while i < bytes.len() && bytes[i] != '"' {
                if bytes[i] == '\\' {
                    out.push(' ');
                    i += 1;
                }
                if i < bytes.len() {
                    out.push(if bytes[i] == '\n' { '\n' } else { ' ' });
                    i += 1;
                }
            }
            out.push(' ');
            i += 1;
        } else if c == '\'' && is_char_literal(&bytes, i) {
            out.push(' ');
            i += 1;
            while i < bytes.len() && bytes[i] != '\'' {
                if bytes[i] == '\\' {
                    out.push(' ');
                    i += 1;
                }
                out.push(' ');
                i += 1;
            }
            out.push(' ');
            i += 1;
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

fn ident_char_before(chars: &[char], i: usize) -> bool {
    i > 0 && (chars[i - 1].is_alphanumeric() || chars[i - 1] == '_')
}

/// Whether the `'` at `i` opens a char literal (not a lifetime or label).
fn is_char_literal(chars: &[char], i: usize) -> bool {
    matches!(
        (chars.get(i + 1), chars.get(i + 2)),
        (Some('\\'), _) | (Some(_), Some('\''))
    )
}

/// A tiny lexer for paths: identifiers, `::`, `{`, `}`, `,`, `*`, and anything else as a
/// separator.
#[derive(Debug, Clone, PartialEq)]
enum Token {
    Ident(String),
    PathSep,
    Open,
    Close,
    Comma,
    Glob,
    Other,
}

fn tokens(code: &str) -> Vec<Token> {
    let chars: Vec<char> = code.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_alphabetic() || c == '_' || c == '$' {
            let start = i;
            i += 1;
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            out.push(Token::Ident(chars[start..i].iter().collect()));
            continue;
        }
        match c {
            ':' if chars.get(i + 1) == Some(&':') => {
                out.push(Token::PathSep);
                i += 2;
                continue;
            }
            '{' => out.push(Token::Open),
            '}' => out.push(Token::Close),
            ',' => out.push(Token::Comma),
            '*' => out.push(Token::Glob),
            c if c.is_whitespace() => {}
            _ => out.push(Token::Other),
        }
        i += 1;
    }
    out
}

/// Parses a use tree (or a plain path) starting at `tokens[i]`, after a `::`; pushes every
/// path it names (relative to the prefix) and returns where it stopped.
fn parse_tree(
    tokens: &[Token],
    mut i: usize,
    prefix: &[String],
    out: &mut Vec<Vec<String>>,
) -> usize {
    let mut path = prefix.to_vec();
    loop {
        match tokens.get(i) {
            Some(Token::Ident(name)) => {
                if name == "self" {
                    // `a::{self, …}` names `a`.
                } else {
                    path.push(name.clone());
                }
                i += 1;
                if tokens.get(i) == Some(&Token::PathSep) {
                    i += 1;
                    continue;
                }
                out.push(path);
                return i;
            }
            Some(Token::Open) => {
                i += 1;
                loop {
                    match tokens.get(i) {
                        Some(Token::Close) => return i + 1,
                        Some(Token::Comma) => i += 1,
                        None => return i,
                        _ => {
                            let before = i;
                            i = parse_tree(tokens, i, &path, out);
                            // `as alias`: skip the alias.
                            if matches!(tokens.get(i), Some(Token::Ident(word)) if word == "as") {
                                i += 2;
                            }
                            if i == before {
                                i += 1;
                            }
                        }
                    }
                }
            }
            Some(Token::Glob) => {
                out.push(path);
                return i + 1;
            }
            _ => {
                out.push(path);
                return i;
            }
        }
    }
}

/// Every module path named in `text` (a module's source), resolved to absolute segments:
/// `crate::…` paths as they are, `super::…` relative to `module`.
fn named_paths(module: &str, text: &str) -> Vec<Vec<String>> {
    let tokens = tokens(&code_only(text));
    let here: Vec<String> = if module.is_empty() {
        Vec::new()
    } else {
        module.split("::").map(str::to_owned).collect()
    };
    let mut out = Vec::new();
    let mut i = 0;
    while i < tokens.len() {
        let Token::Ident(word) = &tokens[i] else {
            i += 1;
            continue;
        };
        let preceded_by_sep = i > 0 && tokens[i - 1] == Token::PathSep;
        if preceded_by_sep || tokens.get(i + 1) != Some(&Token::PathSep) {
            i += 1;
            continue;
        }
        let base = match word.as_str() {
            "crate" => Some(Vec::new()),
            "super" => {
                // `super::super::x` climbs once per `super`.
                let mut base = here.clone();
                let mut j = i;
                base.pop();
                while tokens.get(j + 1) == Some(&Token::PathSep)
                    && tokens.get(j + 2) == Some(&Token::Ident("super".into()))
                {
                    base.pop();
                    j += 2;
                }
                i = j;
                Some(base)
            }
            _ => None,
        };
        match base {
            Some(base) => i = parse_tree(&tokens, i + 2, &base, &mut out),
            None => i += 1,
        }
    }
    out
}

/// The module a path names: its longest prefix that is a module.
fn resolve(modules: &BTreeSet<String>, path: &[String]) -> Option<String> {
    (1..=path.len())
        .rev()
        .map(|n| path[..n].join("::"))
        .find(|candidate| modules.contains(candidate))
}

fn is_within(module: &str, ancestor: &str) -> bool {
    module == ancestor || module.starts_with(&format!("{ancestor}::"))
}

/// The module graph: module → the modules it names (not itself).
fn graph(sources: &[(String, String)]) -> BTreeMap<String, BTreeSet<String>> {
    let modules: BTreeSet<String> = sources.iter().map(|(m, _)| m.clone()).collect();
    sources
        .iter()
        .map(|(module, text)| {
            let targets = named_paths(module, text)
                .iter()
                .filter_map(|path| resolve(&modules, path))
                .filter(|target| target != module && !target.is_empty())
                .collect();
            (module.clone(), targets)
        })
        .collect()
}

/// Every broken rule, in words.
fn violations(sources: &[(String, String)]) -> Vec<String> {
    let graph = graph(sources);
    let mut found = Vec::new();
    for (module, targets) in &graph {
        if module.is_empty() {
            continue;
        }
        let rule = RULES
            .iter()
            .filter(|(name, _)| is_within(module, name))
            .max_by_key(|(name, _)| name.len());
        let Some((name, allowed)) = rule else {
            found.push(format!(
                "{module} is in no layer; add its folder to RULES and ARCHITECTURE.md"
            ));
            continue;
        };
        for target in targets {
            if is_within(module, target) || allowed.iter().any(|ok| is_within(target, ok)) {
                continue;
            }
            if is_within(target, "cli") {
                found.push(format!("{module} imports {target}: nothing may import cli"));
            } else {
                found.push(format!(
                    "{module} imports {target}: {name} may import only {allowed:?}"
                ));
            }
        }
    }
    found.extend(cycles(&graph));
    found
}

/// Cycles of the module graph, each as `a → b → a`. A child naming an item of its own
/// ancestor (`super::Item`) is how Rust modules share items, not a dependency: those edges do
/// not count.
fn cycles(graph: &BTreeMap<String, BTreeSet<String>>) -> Vec<String> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        Open,
        Done,
    }
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        marks: &mut BTreeMap<String, Mark>,
        stack: &mut Vec<String>,
        found: &mut Vec<String>,
    ) {
        marks.insert(node.to_owned(), Mark::Open);
        stack.push(node.to_owned());
        for next in graph.get(node).into_iter().flatten() {
            if is_within(node, next) {
                continue;
            }
            match marks.get(next.as_str()).copied().unwrap_or(Mark::New) {
                Mark::New => visit(next, graph, marks, stack, found),
                Mark::Open => {
                    let from = stack.iter().position(|m| m == next).unwrap_or(0);
                    let mut cycle: Vec<&str> = stack[from..].iter().map(String::as_str).collect();
                    cycle.push(next);
                    found.push(format!("import cycle: {}", cycle.join(" → ")));
                }
                Mark::Done => {}
            }
        }
        stack.pop();
        marks.insert(node.to_owned(), Mark::Done);
    }
    let mut marks = BTreeMap::new();
    let mut found = Vec::new();
    for node in graph.keys() {
        if marks.get(node).copied().unwrap_or(Mark::New) == Mark::New {
            visit(node, graph, &mut marks, &mut Vec::new(), &mut found);
        }
    }
    found
}

#[test]
fn the_backend_keeps_its_layers_and_has_no_import_cycle() {
    let found = violations(&backend());
    assert!(
        found.is_empty(),
        "architecture rules broken:\n{}",
        found.join("\n")
    );
}

#[test]
fn the_graph_sees_the_real_imports() {
    let graph = graph(&backend());
    assert!(graph["serve::onion"].contains("core::shares"));
    assert!(graph["app"].contains("serve::direct"));
    assert!(graph["core::shares"].contains("core::store"));
}

/// A small tree of modules for planted violations.
fn planted(extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut sources: Vec<(String, String)> = [
        (
            "",
            "pub mod core; pub mod transport; pub mod app; pub mod cli;",
        ),
        ("core", "pub mod shares; pub mod policy;"),
        ("core::policy", "//! pure\n"),
        ("core::shares", "use crate::core::policy::admit;"),
        ("transport", "pub mod tor;"),
        ("transport::tor", "//! tor\n"),
        (
            "app",
            "use crate::{core::shares::Shares, transport::tor::Tor};",
        ),
        ("cli", "use crate::app::Node;"),
    ]
    .iter()
    .map(|(m, t)| ((*m).to_owned(), (*t).to_owned()))
    .collect();
    for (module, text) in extra {
        match sources.iter_mut().find(|(m, _)| m == module) {
            Some(entry) => entry.1 = (*text).to_owned(),
            None => sources.push(((*module).to_owned(), (*text).to_owned())),
        }
    }
    sources
}

#[test]
fn the_checker_passes_a_clean_tree() {
    assert_eq!(violations(&planted(&[])), Vec::<String>::new());
}

#[test]
fn the_checker_finds_a_wrong_arrow_in_a_grouped_import() {
    let found = violations(&planted(&[(
        "core::shares",
        "use crate::{\n    core::policy::admit,\n    transport::{tor::Tor},\n};",
    )]));
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(
        found[0].contains("core::shares imports transport::tor"),
        "{found:?}"
    );
}

#[test]
fn the_checker_finds_paths_outside_use_and_climbing_super() {
    let inline = violations(&planted(&[(
        "core::shares",
        "fn f() { let t = crate::transport::tor::start(); }",
    )]));
    assert!(
        inline.iter().any(|v| v.contains("transport::tor")),
        "{inline:?}"
    );
    let climbing = violations(&planted(&[(
        "core::shares",
        "use super::super::cli::main;",
    )]));
    assert!(
        climbing
            .iter()
            .any(|v| v.contains("nothing may import cli")),
        "{climbing:?}"
    );
    // Paths in comments and strings are not imports.
    let quiet = violations(&planted(&[(
        "core::shares",
        "// crate::transport::tor\nconst A: &str = \"crate::transport::tor\";\nconst B: &str = r#\"crate::cli\"#;",
    )]));
    assert_eq!(quiet, Vec::<String>::new());
}

#[test]
fn the_checker_finds_a_planted_cycle() {
    let found = violations(&planted(&[
        ("app", "pub mod a; pub mod b;"),
        ("app::a", "use crate::app::b::B;"),
        ("app::b", "use crate::app::{a::A};"),
    ]));
    assert!(
        found
            .iter()
            .any(|v| v.contains("import cycle") && v.contains("app::a") && v.contains("app::b")),
        "{found:?}"
    );
}

#[test]
fn the_checker_holds_narrow_modules_to_their_rule() {
    let found = violations(&planted(&[(
        "core::policy",
        "use crate::core::shares::Shares;",
    )]));
    assert!(
        found
            .iter()
            .any(|v| v.contains("core::policy imports core::shares")),
        "{found:?}"
    );
}

#[test]
fn use_trees_resolve_to_every_path_they_name() {
    let paths = named_paths(
        "serve::onion",
        "use crate::{core::{shares::{self, Shares}, store::Record as R}, transport::*};\nuse super::public;",
    );
    let joined: Vec<String> = paths.iter().map(|p| p.join("::")).collect();
    assert_eq!(
        joined,
        [
            "core::shares",
            "core::shares::Shares",
            "core::store::Record",
            "transport",
            "serve::public"
        ]
    );
}

#[test]
fn every_module_opens_with_a_doc_comment_saying_what_it_is_for() {
    for path in sources(&crate_dir().join("src")) {
        assert!(
            read(&path).starts_with("//!"),
            "{} does not open with a `//!` comment",
            path.display()
        );
    }
}

#[test]
fn policy_does_no_io_and_reads_no_clock() {
    let text = code_only(&read(&crate_dir().join("src/core/policy.rs")));
    for forbidden in [
        "std::fs",
        "tokio",
        "SystemTime",
        "Instant::now",
        "std::net",
        "reqwest",
    ] {
        assert!(!text.contains(forbidden), "policy.rs mentions {forbidden}");
    }
}

/// Crates a module may not even name (paths through `use` aliases or re-exports included).
const UNNAMED: &[(&str, &[&str])] = &[
    (
        "core",
        &[
            "arti_client",
            "tor_hsservice",
            "tor_proto",
            "iroh::",
            "axum",
            "hyper",
        ],
    ),
    (
        "serve::public",
        &[
            "arti_client",
            "tor_hsservice",
            "tor_proto",
            "TorClient",
            "iroh::",
        ],
    ),
];

#[test]
fn the_core_and_the_public_site_name_no_transport_crate() {
    for (module, text) in backend() {
        let code = code_only(&text);
        for (within, forbidden) in UNNAMED {
            if !is_within(&module, within) {
                continue;
            }
            for name in *forbidden {
                assert!(!code.contains(name), "{module} names {name}");
            }
        }
    }
}

/// Names of the dependencies of a manifest, in every dependency table (`[dependencies]`,
/// `[dependencies.x]`, target-specific ones).
fn dependency_names(manifest: &str) -> BTreeSet<String> {
    let value: toml::Value = manifest.parse().expect("valid Cargo.toml");
    let mut names = BTreeSet::new();
    let mut collect = |table: Option<&toml::Value>| {
        if let Some(table) = table.and_then(toml::Value::as_table) {
            for (name, spec) in table {
                names.insert(name.clone());
                if let Some(package) = spec.get("package").and_then(toml::Value::as_str) {
                    names.insert(package.to_owned());
                }
            }
        }
    };
    collect(value.get("dependencies"));
    if let Some(targets) = value.get("target").and_then(toml::Value::as_table) {
        for target in targets.values() {
            collect(target.get("dependencies"));
        }
    }
    names
}

#[test]
fn shared_has_no_runtime_or_web_dependencies() {
    let deps = dependency_names(&read(&crate_dir().join("../shared/Cargo.toml")));
    for forbidden in ["tokio", "axum", "web-sys", "hyper", "reqwest"] {
        assert!(!deps.contains(forbidden), "shared depends on {forbidden}");
    }
}

#[test]
fn dependency_names_reads_every_form_of_table() {
    let deps = dependency_names(
        "[dependencies]\nserde = \"1\"\n[dependencies.tokio]\nversion = \"1\"\n\
         [target.'cfg(unix)'.dependencies]\nweb = { package = \"web-sys\", version = \"0.3\" }\n",
    );
    assert!(deps.contains("serde") && deps.contains("tokio") && deps.contains("web-sys"));
}
