//! The llama.cpp the benchmark runs, for its report: the version of `llama-cpp-sys-2` (which
//! vendors llama.cpp) that the workspace's `Cargo.lock` resolves, read at build time so the
//! report cannot drift from what was compiled.

use std::path::Path;

fn main() {
    let lock = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../Cargo.lock");
    println!("cargo::rerun-if-changed={}", lock.display());
    let text = match std::fs::read_to_string(&lock) {
        Ok(t) => t,
        Err(e) => panic!("{}: {e}", lock.display()),
    };
    let versions = locked_versions(&text, "llama-cpp-sys-2");
    match versions.as_slice() {
        [one] => println!("cargo::rustc-env=VINSCAN_LLAMA_CPP_SYS_2={one}"),
        other => panic!(
            "{}: expected one llama-cpp-sys-2, found {other:?}",
            lock.display()
        ),
    }
}

/// The `version` of every `[[package]]` named `name` in a Cargo.lock.
fn locked_versions(lock: &str, name: &str) -> Vec<String> {
    let wanted = format!("name = \"{name}\"");
    let mut out = Vec::new();
    let mut lines = lock.lines();
    while let Some(line) = lines.next() {
        if line.trim() == wanted
            && let Some(v) = lines.next().and_then(|l| l.trim().strip_prefix("version = "))
        {
            out.push(v.trim_matches('"').to_owned());
        }
    }
    out
}
