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

/// `new`, `build` and `test` for `lang`; returns the project's folder.
fn three_commands(dir: &Path, name: &str, lang: &str) -> PathBuf {
    let created = ok(
        tiergate(dir, &["new", name, "--lang", lang])
            .output()
            .unwrap(),
        "tiergate new",
    );
    assert!(created.contains("tiergate build"), "{created}");
    let project = dir.join(name);
    let built = ok(
        tiergate(&project, &["build"]).output().unwrap(),
        "tiergate build",
    );
    let component = project.join("target").join(format!("{name}.wasm"));
    assert_eq!(Path::new(built.trim()), component);

    let tested = ok(
        tiergate(
            &project,
            &[
                "test",
                "--policy",
                &format!("target/{name}.wasm"),
                "cases.toml",
            ],
        )
        .output()
        .unwrap(),
        "tiergate test",
    );
    assert!(tested.contains("3 passed, 0 failed"), "{tested}");

    // The host sees the language it was written in.
    let inspected = ok(
        tiergate(
            &project,
            &["inspect", "--policy", &format!("target/{name}.wasm")],
        )
        .output()
        .unwrap(),
        "tiergate inspect",
    );
    assert!(
        inspected
            .to_lowercase()
            .contains(&format!("\"language\": \"{lang}\"")),
        "{inspected}"
    );
    project
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
    let project = three_commands(dir.path(), "fees", "rust");
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
    let with_python = |project: &Path| {
        let mut command = tiergate(project, &[]);
        command.env("TIERGATE_PYTHON", &python);
        command
    };
    // The three commands, each with the Python that has componentize-py.
    let created = ok(
        with_python(dir.path())
            .args(["new", "small-spends", "--lang", "python"])
            .output()
            .unwrap(),
        "tiergate new",
    );
    assert!(created.contains("pytest"), "{created}");
    let project = dir.path().join("small-spends");
    ok(
        with_python(&project).arg("build").output().unwrap(),
        "tiergate build",
    );
    let tested = ok(
        with_python(&project)
            .args(["test", "--policy", "target/small-spends.wasm", "cases.toml"])
            .output()
            .unwrap(),
        "tiergate test",
    );
    assert!(tested.contains("3 passed, 0 failed"), "{tested}");

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
    let project = three_commands(dir.path(), "fees-ts", "typescript");
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
