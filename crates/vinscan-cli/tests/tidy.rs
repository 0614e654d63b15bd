//! Tidy checks on the workspace's Rust sources (after rust-analyzer's `xtask/src/tidy.rs`): every
//! file says what it is for, no file grows past 600 lines nor a function past 120, and no two
//! modules of a crate import each other, directly or around a longer loop. Pure file reading: it
//! fails with the offending files named.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Largest file, in lines.
const MAX_FILE_LINES: usize = 600;
/// Largest function, in lines from its `fn` to its closing brace.
const MAX_FUNCTION_LINES: usize = 120;

fn crates_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

fn all_files() -> Vec<(PathBuf, String)> {
    let mut files = Vec::new();
    rust_files(&crates_dir(), &mut files);
    files.sort();
    files
        .into_iter()
        .filter(|p| !p.components().any(|c| c.as_os_str() == "target"))
        .map(|p| {
            let text = std::fs::read_to_string(&p).unwrap_or_default();
            (p, text)
        })
        .collect()
}

fn shown(p: &Path) -> String {
    p.strip_prefix(crates_dir()).unwrap_or(p).display().to_string()
}

#[test]
fn every_file_starts_with_its_purpose() {
    let missing: Vec<String> = all_files()
        .iter()
        .filter(|(_, text)| !text.trim_start().starts_with("//!"))
        .map(|(p, _)| shown(p))
        .collect();
    assert!(
        missing.is_empty(),
        "files without a leading `//!` line: {missing:?}"
    );
}

#[test]
fn no_file_is_too_long() {
    let long: Vec<String> = all_files()
        .iter()
        .filter(|(_, text)| text.lines().count() > MAX_FILE_LINES)
        .map(|(p, text)| format!("{} ({} lines)", shown(p), text.lines().count()))
        .collect();
    assert!(long.is_empty(), "files over {MAX_FILE_LINES} lines: {long:?}");
}

/// `(name, lines)` of every function: from a line whose code starts with `fn` (after `pub`,
/// `async`, `const`, `unsafe`) to the first line at the same indentation that closes it.
fn functions(text: &str) -> Vec<(String, usize)> {
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let code = line.trim_start();
        let indent = line.len() - code.len();
        let mut rest = code;
        for prefix in [
            "pub(crate) ",
            "pub(super) ",
            "pub ",
            "const ",
            "async ",
            "unsafe ",
        ] {
            rest = rest.strip_prefix(prefix).unwrap_or(rest);
        }
        let Some(sig) = rest.strip_prefix("fn ") else {
            continue;
        };
        // the signature ends at the first line ending in `{` (a body) or `;` (a declaration)
        let Some(end_of_sig) = lines[i..]
            .iter()
            .map(|l| l.trim_end())
            .find(|l| l.ends_with('{') || l.ends_with(';') || l.ends_with('}'))
        else {
            continue;
        };
        if end_of_sig.ends_with(';') {
            continue;
        }
        if end_of_sig.ends_with('}') {
            out.push((
                sig.chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect(),
                1,
            ));
            continue;
        }
        let name: String = sig
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        let close = format!("{}}}", " ".repeat(indent));
        if let Some(end) = lines[i..].iter().position(|l| *l == close) {
            out.push((name, end + 1));
        }
    }
    out
}

#[test]
fn no_function_is_too_long() {
    let mut long = Vec::new();
    for (p, text) in all_files() {
        for (name, n) in functions(&text) {
            if n > MAX_FUNCTION_LINES {
                long.push(format!("{}: fn {name} ({n} lines)", shown(&p)));
            }
        }
    }
    assert!(
        long.is_empty(),
        "functions over {MAX_FUNCTION_LINES} lines: {long:?}"
    );
}

/// A crate's module files by module path (`engine`, `convert::gguf`); the root (`lib.rs`,
/// `main.rs`) is left out: every module may use the items it defines.
fn modules(src: &Path) -> BTreeMap<String, PathBuf> {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    files
        .into_iter()
        .filter_map(|p| {
            let rel = p.strip_prefix(src).ok()?.with_extension("");
            let mut parts: Vec<String> = rel
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            if parts.last().is_some_and(|l| l == "mod") {
                parts.pop();
            }
            if parts.is_empty() || parts == ["lib"] || parts == ["main"] {
                return None;
            }
            Some((parts.join("::"), p))
        })
        .collect()
}

/// The module paths a file's `crate::` paths (and, in nested modules, `super::` paths) name.
fn references(text: &str, own: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let parent = own.rsplit_once("::").map(|(p, _)| p.to_owned());
    let code: String = text
        .lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n");
    let mut push_paths = |base: &str, rest: &str| {
        // `a::b::X` or `{a::X, b::{Y, Z}}`: every first and second segment
        let mut depth = 0;
        let mut item = String::new();
        let mut items = Vec::new();
        for c in rest.chars() {
            match c {
                '{' => depth += 1,
                '}' if depth == 0 => break,
                '}' => depth -= 1,
                ',' if depth <= 1 => items.push(std::mem::take(&mut item)),
                ';' | ')' | ' ' | '\n' | '(' | '<' | '>' | '&' | '!' | '?' | '.' if depth == 0 => break,
                _ if depth <= 1 => item.push(c),
                _ => {}
            }
        }
        items.push(item);
        for it in items {
            let segs: Vec<&str> = it
                .trim()
                .trim_start_matches('{')
                .split("::")
                .filter(|s| !s.is_empty())
                .collect();
            for n in 1..=segs.len().min(2) {
                out.insert(format!("{base}{}", segs[..n].join("::")));
            }
        }
    };
    for (i, _) in code.match_indices("crate::") {
        if i > 0 && code.as_bytes()[i - 1].is_ascii_alphanumeric() {
            continue; // `vinscan_crate::`, not this crate
        }
        push_paths("", &code[i + "crate::".len()..]);
    }
    if let Some(parent) = parent {
        for (i, _) in code.match_indices("super::") {
            push_paths(&format!("{parent}::"), &code[i + "super::".len()..]);
        }
    }
    out
}

fn related(a: &str, b: &str) -> bool {
    a == b || a.starts_with(&format!("{b}::")) || b.starts_with(&format!("{a}::"))
}

/// Module loops of one crate, each as its modules in order.
fn cycles(src: &Path) -> Vec<Vec<String>> {
    let modules = modules(src);
    let mut edges: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for (name, path) in &modules {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        for r in references(&text, name) {
            if let Some((target, _)) = modules.get_key_value(r.as_str())
                && !related(name, target)
            {
                edges.entry(name.as_str()).or_default().insert(target.as_str());
            }
        }
    }
    // a loop is a module that reaches itself
    let mut found = BTreeSet::new();
    for start in modules.keys() {
        let mut stack = vec![(start.as_str(), vec![start.clone()])];
        let mut seen = BTreeSet::new();
        while let Some((at, path)) = stack.pop() {
            for &next in edges.get(at).into_iter().flatten() {
                if next == start {
                    let mut cycle = path.clone();
                    let min = cycle
                        .iter()
                        .enumerate()
                        .min_by_key(|(_, m)| m.as_str())
                        .map_or(0, |(i, _)| i);
                    cycle.rotate_left(min);
                    found.insert(cycle);
                } else if seen.insert(next) {
                    let mut p = path.clone();
                    p.push(next.to_owned());
                    stack.push((next, p));
                }
            }
        }
    }
    found.into_iter().collect()
}

#[test]
fn no_module_imports_form_a_loop() {
    let mut loops = Vec::new();
    for e in std::fs::read_dir(crates_dir()).into_iter().flatten().flatten() {
        let src = e.path().join("src");
        for cycle in cycles(&src) {
            loops.push(format!(
                "{}: {}",
                e.file_name().to_string_lossy(),
                cycle.join(" -> ")
            ));
        }
    }
    assert!(loops.is_empty(), "modules that import each other: {loops:?}");
}

/// The checker itself finds what it is meant to find.
#[test]
fn the_checks_see_what_they_look_for() {
    let text = "//! x\npub(crate) fn a() {\n    1\n}\n\nfn b(\n    x: u8,\n) -> u8;\n    async fn c() {\n    }\nfn d() {}\n";
    assert_eq!(
        functions(text),
        [("a".to_owned(), 3), ("c".to_owned(), 2), ("d".to_owned(), 1)]
    );
    let refs = references(
        "use crate::{engine::Session, prompt::{a, b}};\nlet x = crate::scheduler::run();",
        "page",
    );
    assert!(
        refs.contains("engine") && refs.contains("prompt") && refs.contains("scheduler"),
        "{refs:?}"
    );
    let nested = references("use super::tokenizer::Vocab;", "convert::gguf");
    assert!(nested.contains("convert::tokenizer"), "{nested:?}");

    let dir = std::env::temp_dir().join(format!("vinscan-tidy-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("tmp");
    std::fs::write(dir.join("lib.rs"), "//! r\nmod a;\nmod b;\n").expect("write");
    std::fs::write(dir.join("a.rs"), "//! a\nuse crate::b::B;\npub struct A;\n").expect("write");
    std::fs::write(dir.join("b.rs"), "//! b\nuse crate::a::A;\npub struct B;\n").expect("write");
    assert_eq!(cycles(&dir), [vec!["a".to_owned(), "b".to_owned()]]);
    let _ = std::fs::remove_dir_all(&dir);
}
