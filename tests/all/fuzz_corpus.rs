//! The fuzz corpus, replayed on the stable toolchain: every input kept in
//! `fuzz/corpus/<target>/` goes through the same property checks as the fuzz
//! targets, so an input the fuzzer once found fails the normal test run if
//! its bug comes back, without the fuzzer.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

#[path = "../../fuzz/src/lib.rs"]
mod checks;

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz")
}

/// Every file of `dir`, sorted by name.
fn files(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        .map(|entry| entry.expect("corpus entry").path())
        .filter(|path| path.is_file())
        .map(|path| {
            let bytes = std::fs::read(&path).expect("corpus file is readable");
            (path, bytes)
        })
        .collect();
    files.sort();
    files
}

/// Runs `check` on every input, and fails naming each input whose check
/// panicked; also fails when no input was accepted, since a corpus of
/// refusals alone never reaches the code behind the parser.
fn replay(target: &str, inputs: Vec<(PathBuf, Vec<u8>)>, check: impl Fn(&[u8]) -> bool) {
    assert!(!inputs.is_empty(), "the {target} corpus is empty");
    let mut failed = Vec::new();
    let mut accepted = 0;
    for (path, bytes) in &inputs {
        match catch_unwind(AssertUnwindSafe(|| check(bytes))) {
            Ok(true) => accepted += 1,
            Ok(false) => {}
            Err(_) => failed.push(path.display().to_string()),
        }
    }
    assert!(
        failed.is_empty(),
        "{target}: these inputs break a property (replay one with `cargo fuzz run {target} FILE`):\n{}",
        failed.join("\n")
    );
    assert!(
        accepted > 0,
        "{target}: none of the {} inputs is accepted",
        inputs.len()
    );
}

#[test]
fn transaction_corpus_keeps_its_properties() {
    replay(
        "transaction",
        files(&fuzz_dir().join("corpus/transaction")),
        checks::transaction,
    );
}

#[test]
fn tenant_config_corpus_keeps_its_properties() {
    replay(
        "tenant_config",
        files(&fuzz_dir().join("corpus/tenant_config")),
        checks::tenant_config,
    );
}

#[test]
fn policy_load_corpus_keeps_its_properties() {
    let runtime = checks::runtime();
    replay(
        "policy_load",
        files(&fuzz_dir().join("corpus/policy_load")),
        |bytes| checks::policy_load(&runtime, bytes),
    );
}

/// The hand-written components the policy corpus was seeded with, from their
/// text: each keeps the properties, and the ones written to load do load.
#[test]
fn policy_load_seeds_keep_their_properties() {
    let runtime = checks::runtime();
    let seeds: Vec<_> = files(&fuzz_dir().join("seeds/policy_load"))
        .into_iter()
        .map(|(path, text)| {
            let text = String::from_utf8(text).expect("a seed is WAT text");
            let bytes = wat::parse_str(&text)
                .unwrap_or_else(|e| panic!("{} does not assemble: {e}", path.display()));
            (path, bytes)
        })
        .collect();
    for (path, bytes) in &seeds {
        let name = path.file_stem().unwrap().to_str().unwrap();
        let loads = runtime.compile(bytes).is_ok();
        let should = ["supervised", "traps", "undeclared"].contains(&name);
        assert_eq!(loads, should, "{} loads: {loads}", path.display());
    }
    replay("policy_load seeds", seeds, |bytes| {
        checks::policy_load(&runtime, bytes)
    });
}
