//! The map's rules, checked on the sources (ARCHITECTURE.md, "Bounded contexts").
//!
//! A context is a folder with a `mod.rs` directly under a layer's `src/`; shared modules
//! use the `name.rs` (+ `name/`) form. A context reaches another context only through
//! the other's root (what its `mod.rs` re-exports), never through one of its submodules,
//! in any layer; and the api's contract modules, which the contexts import, import no
//! context of the api.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

const LAYERS: [(&str, &str); 4] = [
    ("domain", "medledger_domain"),
    ("application", "medledger_application"),
    ("projections", "medledger_projections"),
    ("api", "medledger_api"),
];

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("the tests crate is in the workspace").to_path_buf()
}

/// The contexts of one layer: folders under `src/` with a `mod.rs`.
fn contexts(layer: &str) -> BTreeSet<String> {
    let src = workspace().join(layer).join("src");
    std::fs::read_dir(&src)
        .expect("layer sources")
        .filter_map(Result::ok)
        .filter(|e| e.path().join("mod.rs").is_file())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect()
}

/// The submodules of `context` in `layer` (its files and folders but `mod.rs`).
fn submodules(layer: &str, context: &str) -> BTreeSet<String> {
    let dir = workspace().join(layer).join("src").join(context);
    let Ok(entries) = std::fs::read_dir(dir) else { return BTreeSet::new() };
    entries
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().trim_end_matches(".rs").to_string())
        .filter(|name| name != "mod")
        .collect()
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("readable sources").filter_map(Result::ok) {
        let path = entry.path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// `root::context::submodule` paths in `text`, with `root` one of `roots`.
fn paths<'a>(text: &'a str, roots: &[&str]) -> Vec<(String, &'a str, &'a str)> {
    let mut found = Vec::new();
    for root in roots {
        let needle = format!("{root}::");
        let mut rest = text;
        while let Some(at) = rest.find(&needle) {
            let before = rest[..at].chars().next_back();
            rest = &rest[at + needle.len()..];
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
                continue;
            }
            let ident = |s: &'a str| s.split(|c: char| !(c.is_alphanumeric() || c == '_')).next().unwrap_or("");
            let context = ident(rest);
            let after = &rest[context.len()..];
            let sub = after.strip_prefix("::").map(ident).unwrap_or("");
            found.push((root.to_string(), context, sub));
        }
    }
    found
}

#[test]
fn contexts_meet_only_at_each_others_roots() {
    let mut violations = Vec::new();
    for (layer, _) in LAYERS {
        let src = workspace().join(layer).join("src");
        for context in contexts(layer) {
            let mut files = Vec::new();
            rust_files(&src.join(&context), &mut files);
            for file in files {
                let text = std::fs::read_to_string(&file).expect("readable source");
                for (root, other, sub) in paths(&text, &["crate", "medledger_domain", "medledger_application", "medledger_projections"]) {
                    let other_layer =
                        if root == "crate" { layer } else { LAYERS.iter().find(|(_, c)| *c == root).map_or(layer, |(l, _)| l) };
                    if other == context || !contexts(other_layer).contains(other) {
                        continue;
                    }
                    if submodules(other_layer, other).contains(sub) {
                        violations.push(format!("{}: {root}::{other}::{sub}", file.strip_prefix(workspace()).unwrap_or(&file).display()));
                    }
                }
            }
        }
    }
    assert!(
        violations.is_empty(),
        "contexts reaching into another context's submodules (use what its mod.rs re-exports):\n{}",
        violations.join("\n")
    );
}

#[test]
fn contract_modules_import_no_context() {
    let mut files = Vec::new();
    rust_files(&workspace().join("api/src/contracts"), &mut files);
    files.push(workspace().join("api/src/contracts.rs"));
    let api_contexts = contexts("api");
    let mut violations = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).expect("readable source");
        for (_, context, _) in paths(&text, &["crate"]) {
            if api_contexts.contains(context) {
                violations.push(format!("{}: crate::{context}", file.display()));
            }
        }
    }
    assert!(violations.is_empty(), "a contract module mounts nothing and imports no context:\n{}", violations.join("\n"));
}

#[test]
fn every_layer_has_the_same_contexts_where_it_has_any() {
    // The api may have a context whose lower layers are still to come (scans, issue 18);
    // the lower layers agree with each other.
    let domain = contexts("domain");
    assert!(!domain.is_empty(), "no context found: the check would pass vacuously");
    for layer in ["application", "projections"] {
        assert_eq!(contexts(layer), domain, "{layer}'s contexts differ from the domain's");
    }
    assert!(contexts("api").is_superset(&domain), "every context has its api folder");
}

/// The check itself catches a reach into another context's submodule.
#[test]
fn a_reach_into_a_submodule_is_found() {
    let found = paths("use medledger_projections::catalog::queries::dataset;", &["medledger_projections"]);
    assert_eq!(found, vec![("medledger_projections".to_string(), "catalog", "queries")]);
    assert!(submodules("projections", "catalog").contains("queries"));
    assert!(paths("use my_crate::x::y;", &["crate"]).is_empty(), "crate:: inside another identifier is not a path root");
}
