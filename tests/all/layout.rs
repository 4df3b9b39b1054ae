//! The shape of the workspace holds: the crates depend on each other in one
//! direction, no module of a crate imports another that imports it back, the
//! sandbox crate pulls in no server or database, and the policy SDK carries
//! the very contract in `wit/`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Each host crate and the tiergate crates it may depend on (normal
/// dependencies): the runtime at the bottom, the binary at the top.
const LAYERS: &[(&str, &[&str])] = &[
    ("runtime", &["tiergate-policy"]),
    ("core", &["tiergate-policy", "tiergate-runtime"]),
    ("sqlite", &["tiergate-core", "tiergate-runtime"]),
    ("postgres", &["tiergate-core", "tiergate-runtime"]),
    // A client of the HTTP API, whichever way it is called.
    ("mcp", &[]),
    (
        "x402",
        &["tiergate-core", "tiergate-runtime", "tiergate-policy"],
    ),
    (
        "server",
        &[
            "tiergate-core",
            "tiergate-runtime",
            "tiergate-policy",
            "tiergate-x402",
            "tiergate-mcp",
        ],
    ),
    (
        "cli",
        &[
            "tiergate-core",
            "tiergate-runtime",
            "tiergate-policy",
            "tiergate-sqlite",
            "tiergate-postgres",
            "tiergate-server",
            "tiergate-x402",
            "tiergate-mcp",
        ],
    ),
];

/// The `tiergate-*` names in a manifest's `[dependencies]` table.
fn tiergate_dependencies(manifest: &Path) -> BTreeSet<String> {
    let text = std::fs::read_to_string(manifest).unwrap();
    let doc: toml::Table = toml::from_str(&text).unwrap();
    doc.get("dependencies")
        .and_then(|d| d.as_table())
        .map(|deps| {
            deps.keys()
                .filter(|k| k.starts_with("tiergate-"))
                .cloned()
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn each_crate_depends_only_on_the_layers_below_it() {
    for (dir, allowed) in LAYERS {
        let manifest = root().join("host").join(dir).join("Cargo.toml");
        let deps = tiergate_dependencies(&manifest);
        let allowed: BTreeSet<String> = allowed.iter().map(|s| s.to_string()).collect();
        let extra: Vec<_> = deps.difference(&allowed).collect();
        assert!(
            extra.is_empty(),
            "host/{dir} depends on {extra:?}, which it may not (see docs/architecture.md)"
        );
    }
    let embed = tiergate_dependencies(&root().join("examples/embed/Cargo.toml"));
    assert_eq!(
        embed,
        BTreeSet::from(["tiergate-runtime".to_string()]),
        "the embedding example shows the runtime alone"
    );
}

/// What an embedder of the sandbox alone must never compile: a web server,
/// an HTTP client, TLS, a database, a command-line parser, OpenAPI.
const NOT_IN_THE_SANDBOX: &[&str] = &[
    "axum",
    "hyper",
    "reqwest",
    "rustls",
    "rusqlite",
    "libsqlite3-sys",
    "tokio-postgres",
    "clap",
    "utoipa",
];

#[test]
fn the_runtime_pulls_in_no_server_database_or_command_line() {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let out = std::process::Command::new(cargo)
        .current_dir(root())
        .args([
            "tree",
            "--offline",
            "-p",
            "tiergate-runtime",
            "-e",
            "normal",
            "--prefix",
            "none",
            "--format",
            "{p}",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "cargo tree failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let tree = String::from_utf8(out.stdout).unwrap();
    let names: BTreeSet<&str> = tree
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert!(names.contains("wasmtime"), "{tree}");
    let found: Vec<_> = NOT_IN_THE_SANDBOX
        .iter()
        .filter(|n| names.contains(**n))
        .collect();
    assert!(
        found.is_empty(),
        "tiergate-runtime depends on {found:?}: `cargo tree -p tiergate-runtime -e normal -i NAME` shows through what"
    );
}

/// The top-level modules of a crate's `src` and, for each, the other
/// top-level modules its files name as `crate::<module>`.
fn module_imports(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let modules: BTreeSet<String> = std::fs::read_dir(src)
        .unwrap()
        .filter_map(|e| {
            let path = e.unwrap().path();
            let name = path.file_stem()?.to_str()?.to_string();
            (path.is_dir() || path.extension()? == "rs").then_some(name)
        })
        .filter(|n| n != "lib" && n != "main")
        .collect();
    let mut imports = BTreeMap::new();
    for module in &modules {
        let mut files = Vec::new();
        let dir = src.join(module);
        if dir.is_dir() {
            files_under(&dir, &mut files);
            files.retain(|f| f.extension().is_some_and(|e| e == "rs"));
        }
        let file = src.join(format!("{module}.rs"));
        if file.is_file() {
            files.push(file);
        }
        let mut named = BTreeSet::new();
        for file in files {
            let text = std::fs::read_to_string(&file).unwrap();
            for other in modules.iter().filter(|m| *m != module) {
                if text.contains(&format!("crate::{other}::"))
                    || text.contains(&format!("crate::{other};"))
                {
                    named.insert(other.clone());
                }
            }
        }
        imports.insert(module.clone(), named);
    }
    imports
}

/// Every file under `dir`, at any depth.
fn files_under(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files_under(&path, out);
        } else {
            out.push(path);
        }
    }
}

/// A cycle in `graph`, if it has one, as the modules along it.
fn cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|n| n == node) {
            let mut found = path[at..].to_vec();
            found.push(node.to_string());
            return Some(found);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_string());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(found) = visit(next, graph, path, done) {
                return Some(found);
            }
        }
        path.pop();
        done.insert(node.to_string());
        None
    }
    let mut done = BTreeSet::new();
    graph
        .keys()
        .find_map(|n| visit(n, graph, &mut Vec::new(), &mut done))
}

#[test]
fn no_module_imports_one_that_imports_it_back() {
    for dir in [
        "runtime", "core", "sqlite", "postgres", "mcp", "server", "cli",
    ] {
        let src = root().join("host").join(dir).join("src");
        let graph = module_imports(&src);
        assert_eq!(
            cycle(&graph),
            None,
            "host/{dir}: these modules import each other in a circle"
        );
    }
}

#[test]
fn the_cycle_check_sees_a_circle() {
    let graph = BTreeMap::from([
        (
            "store".to_string(),
            BTreeSet::from(["governance".to_string()]),
        ),
        (
            "governance".to_string(),
            BTreeSet::from(["store".to_string()]),
        ),
    ]);
    assert!(cycle(&graph).is_some());
}

/// Each SDK builds its policies from its own copy of the contract, so its
/// published package carries it; each copy must be the contract, byte for
/// byte.
#[test]
fn every_sdk_carries_the_contract_unchanged() {
    let wit = root().join("wit");
    for sdk in [
        "guest-sdk/rust/wit",
        "guest-sdk/python/tiergate_policy/wit",
        "guest-sdk/typescript/wit",
    ] {
        let copy = root().join(sdk);
        let mut versions = 0;
        for entry in std::fs::read_dir(&wit).unwrap() {
            let version = entry.unwrap().path();
            if !version.is_dir() {
                continue;
            }
            versions += 1;
            let name = version.file_name().unwrap();
            let mut files = Vec::new();
            files_under(&version, &mut files);
            for file in files {
                let relative = file.strip_prefix(&wit).unwrap();
                let carried = copy.join(relative);
                let ours = std::fs::read(&file).unwrap();
                let theirs = std::fs::read(&carried).unwrap_or_else(|_| {
                    panic!(
                        "{sdk}/{} is missing: copy wit/{} into {sdk}/",
                        relative.display(),
                        name.to_string_lossy()
                    )
                });
                assert!(
                    ours == theirs,
                    "{sdk}/{0} differs from wit/{0}: the contract lives in wit/; copy it over the SDK's",
                    relative.display()
                );
            }
        }
        assert!(versions > 0, "no contract version under wit/");
    }
}
