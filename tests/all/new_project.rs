//! From zero in three commands, in each language: `tiergate new`, then
//! `tiergate build`, then `tiergate test` on the cases it wrote, in a fresh
//! directory; the project's native tests pass too. And when a toolchain is
//! missing, `build` names what to install.
//!
//! Python needs componentize-py: `cargo xtask test` names the Python that
//! has it in `TIERGATE_PYTHON`. TypeScript installs its packages with npm.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::tiergate_command;

/// Shared by every run, so only the first builds the SDK's dependencies
/// and compiles a component from cold.
fn scratch() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("new-policies")
}

fn ok(output: Output, what: &str) -> String {
    assert!(
        output.status.success(),
        "{what} failed ({}):\n{}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn tiergate(dir: &Path, args: &[&str]) -> Command {
    let mut command = tiergate_command();
    command
        .current_dir(dir)
        .args(args)
        .env("CARGO_TARGET_DIR", scratch().join("cargo"))
        .env("TIERGATE_COMPILED_CACHE", scratch().join("compiled"));
    command
}

/// `new`, `build` and `test` for `lang`, each with `env` set, and
/// `inspect` naming the language; the project's folder and what `new`
/// printed.
fn three_commands(dir: &Path, name: &str, lang: &str, env: &[(&str, &str)]) -> (PathBuf, String) {
    let run = |dir: &Path, args: &[&str], what: &str| {
        ok(
            tiergate(dir, args)
                .envs(env.iter().copied())
                .output()
                .unwrap(),
            what,
        )
    };
    let created = run(dir, &["new", name, "--lang", lang], "tiergate new");
    assert!(created.contains("tiergate build"), "{created}");
    let project = dir.join(name);
    let built = run(&project, &["build"], "tiergate build");
    let component = project.join("target").join(format!("{name}.wasm"));
    assert_eq!(Path::new(built.trim()), component);

    let policy = format!("target/{name}.wasm");
    let tested = run(
        &project,
        &["test", "--policy", &policy, "cases.toml"],
        "tiergate test",
    );
    assert!(tested.contains("3 passed, 0 failed"), "{tested}");

    // The host sees the language it was written in.
    let inspected = run(
        &project,
        &["inspect", "--policy", &policy],
        "tiergate inspect",
    );
    assert!(
        inspected
            .to_lowercase()
            .contains(&format!("\"language\": \"{lang}\"")),
        "{inspected}"
    );
    (project, created)
}

fn python() -> String {
    std::env::var("TIERGATE_PYTHON").unwrap_or_else(|_| {
        panic!(
            "TIERGATE_PYTHON is not set: run the suite with `cargo xtask test`, which makes a Python with componentize-py"
        )
    })
}

#[test]
fn a_new_rust_policy_builds_and_passes_its_cases() {
    let dir = tempfile::tempdir().unwrap();
    let (project, _) = three_commands(dir.path(), "fees", "rust", &[]);
    let native = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(["test", "--quiet"])
        .current_dir(&project)
        .env("CARGO_TARGET_DIR", scratch().join("cargo"))
        .output()
        .unwrap();
    let out = ok(native, "cargo test in the new project");
    assert!(out.contains("2 passed"), "{out}");
}

#[test]
fn a_new_python_policy_builds_and_passes_its_cases() {
    let dir = tempfile::tempdir().unwrap();
    let python = python();
    // Each command with the Python that has componentize-py.
    let (project, created) = three_commands(
        dir.path(),
        "small-spends",
        "python",
        &[("TIERGATE_PYTHON", python.as_str())],
    );
    assert!(created.contains("pytest"), "{created}");

    let native = Command::new(&python)
        .args(["-m", "pytest", "-q", "-p", "no:cacheprovider"])
        .current_dir(&project)
        .output()
        .unwrap();
    let out = ok(native, "pytest in the new project");
    assert!(out.contains("2 passed"), "{out}");
}

#[test]
fn a_new_typescript_policy_builds_and_passes_its_cases() {
    let dir = tempfile::tempdir().unwrap();
    let (project, _) = three_commands(dir.path(), "fees-ts", "typescript", &[]);
    let native = Command::new("npm")
        .args(["test", "--silent"])
        .current_dir(&project)
        .output()
        .unwrap();
    let out = ok(native, "npm test in the new project");
    assert!(out.contains("# pass 2"), "{out}");
}

/// `build` with nothing on PATH: each language's message names what to install.
#[test]
fn a_missing_toolchain_is_named_with_what_to_install() {
    let dir = tempfile::tempdir().unwrap();
    for (lang, install) in [
        ("rust", "install Rust (https://rustup.rs)"),
        ("python", "install Python 3.11 or later"),
        ("typescript", "install Node.js 20 or later"),
    ] {
        let name = format!("bare-{lang}");
        ok(
            tiergate(dir.path(), &["new", &name, "--lang", lang])
                .output()
                .unwrap(),
            "tiergate new",
        );
        let failed = tiergate(&dir.path().join(&name), &["build"])
            .env("PATH", "")
            .env_remove("CARGO")
            .env_remove("TIERGATE_PYTHON")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&failed.stderr);
        assert_eq!(failed.status.code(), Some(2), "{lang}: {stderr}");
        assert!(stderr.contains(install), "{lang}: {stderr}");
        assert!(!stderr.contains("panicked"), "{lang}: {stderr}");
    }
}

/// `new` refuses what would not make a project in every language, and
/// never writes over a folder that is there.
#[test]
fn new_refuses_a_bad_name_and_an_existing_folder() {
    let dir = tempfile::tempdir().unwrap();
    let failed = tiergate(dir.path(), &["new", "Fees", "--lang", "rust"])
        .output()
        .unwrap();
    assert_eq!(failed.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&failed.stderr).contains("`Fees` is not a policy name"));

    std::fs::create_dir(dir.path().join("fees")).unwrap();
    std::fs::write(dir.path().join("fees/notes.txt"), "mine").unwrap();
    let failed = tiergate(dir.path(), &["new", "fees", "--lang", "python"])
        .output()
        .unwrap();
    assert_eq!(failed.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&failed.stderr).contains("already exists"));
    assert_eq!(
        std::fs::read_to_string(dir.path().join("fees/notes.txt")).unwrap(),
        "mine"
    );
    assert_eq!(
        std::fs::read_dir(dir.path().join("fees")).unwrap().count(),
        1
    );
}
