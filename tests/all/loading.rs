//! What the runtime refuses to load, and the message it gives.

use tiergate_runtime::LoadError;

use crate::{bundled, runtime};

fn refuse(bytes: &[u8]) -> LoadError {
    runtime().compile(bytes).expect_err("must be refused")
}

#[test]
fn not_a_component() {
    assert!(matches!(refuse(b"hello"), LoadError::NotWasm { .. }));
    assert!(matches!(refuse(b""), LoadError::NotWasm { .. }));
    let core = wat::parse_str("(module (func (export \"classify\")))").unwrap();
    let err = refuse(&core);
    assert!(matches!(err, LoadError::CoreModule));
    assert!(err.to_string().contains("wasm32-wasip2"), "{err}");
    // Component text is not accepted either: only binary components.
    assert!(matches!(refuse(b"(component)"), LoadError::NotWasm { .. }));
}

#[test]
fn a_precompiled_artifact_is_never_deserialized() {
    let engine = wasmtime::Engine::default();
    let component = wat::parse_str("(component)").unwrap();
    let artifact = engine.precompile_component(&component).unwrap();
    let err = refuse(&artifact);
    assert!(matches!(err, LoadError::Precompiled { .. }), "{err}");
}

#[test]
fn a_component_of_another_world_names_the_missing_export() {
    let other = wat::parse_str(
        r#"(component
             (core module $m (func (export "run")))
             (core instance $i (instantiate $m))
             (func (export "run") (canon lift (core func $i "run"))))"#,
    )
    .unwrap();
    let err = refuse(&other);
    let text = err.to_string();
    assert!(matches!(err, LoadError::MissingExport { .. }), "{text}");
    assert!(
        text.contains("tiergate:policy/policy@0.2.0") && text.contains("exports: run"),
        "{text}"
    );
}

#[test]
fn a_component_of_another_contract_version_is_named() {
    let newer = wat::parse_str(
        r#"(component
             (instance $p)
             (export "tiergate:policy/policy@0.3.0" (instance $p)))"#,
    )
    .unwrap();
    let err = refuse(&newer);
    let text = err.to_string();
    assert!(
        matches!(err, LoadError::UnsupportedContract { .. }),
        "{text}"
    );
    assert!(
        text.contains("tiergate:policy@0.3.0") && text.contains("serves 0.2.0, 0.1.0"),
        "{text}"
    );
}

#[test]
fn an_import_outside_the_allow_list_is_named() {
    let networked = wat::parse_str(
        r#"(component
             (import "wasi:sockets/tcp@0.2.0" (instance))
             (instance $p)
             (export "tiergate:policy/policy@0.1.0" (instance $p)))"#,
    )
    .unwrap();
    let err = refuse(&networked);
    assert!(
        matches!(&err, LoadError::ForbiddenImport { name } if name == "wasi:sockets/tcp@0.2.0"),
        "{err}"
    );
}

#[test]
fn an_invalid_configuration_gets_the_policys_own_words() {
    let err = bundled("seed-tiers")
        .configure(r#"{"autonomus": {}}"#)
        .unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, LoadError::InvalidConfig(_)), "{text}");
    assert!(text.contains("unknown field `autonomus`"), "{text}");
    let err = bundled("table")
        .configure(r#"{"tiers": []}"#)
        .unwrap_err()
        .to_string();
    assert!(err.contains("at least one row"), "{err}");
}

#[test]
fn metadata_identifies_the_code() {
    let info = bundled("seed-tiers").info().clone();
    assert_eq!(info.name, "seed-tiers");
    assert_eq!(info.contract, "0.2.0");
    assert_eq!(info.tiers.len(), 4);
    assert!(info.digest.starts_with("sha256:") && info.digest.len() == 7 + 64);
    let flat = bundled("flat-limit").info().clone();
    assert_eq!(
        flat.tiers,
        [
            tiergate_runtime::Tier::Autonomous,
            tiergate_runtime::Tier::Prohibited
        ]
    );
}

#[test]
fn every_sdk_policy_records_the_contract_it_was_built_against() {
    for name in ["seed-tiers", "table", "flat-limit"] {
        let bytes = tiergate_cli::bundled::get(name).unwrap();
        let recorded = wasmparser::Parser::new(0)
            .parse_all(bytes)
            .filter_map(Result::ok)
            .find_map(|p| match p {
                wasmparser::Payload::CustomSection(s) if s.name() == "tiergate:contract" => {
                    Some(s.data().to_vec())
                }
                _ => None,
            });
        assert_eq!(
            recorded.as_deref(),
            Some(&b"tiergate:policy@0.2.0"[..]),
            "{name}"
        );
    }
}

#[test]
fn a_recorded_contract_explains_a_missing_export() {
    // No policy export at all, but the SDK's section says which contract it
    // was built for: the refusal names that version.
    let future =
        wat::parse_str(r#"(component (@custom "tiergate:contract" "tiergate:policy@0.3.0"))"#)
            .unwrap();
    let err = refuse(&future).to_string();
    assert!(err.contains("tiergate:policy@0.3.0"), "{err}");
}

#[test]
fn a_served_contract_in_the_record_does_not_excuse_a_missing_export() {
    let hollow =
        wat::parse_str(r#"(component (@custom "tiergate:contract" "tiergate:policy@0.1.0"))"#)
            .unwrap();
    let err = refuse(&hollow);
    assert!(matches!(err, LoadError::MissingExport { .. }), "{err}");
}

#[test]
fn a_cached_compiled_policy_loads_again_and_decides_the_same() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("compiled");
    let first = tiergate_runtime::Runtime::new().unwrap();
    first.cache_compiled_in(&cache).unwrap();
    let bytes = tiergate_cli::bundled::get("seed-tiers").unwrap();
    let compiled = first.compile(bytes).unwrap();
    let files: Vec<_> = std::fs::read_dir(&cache).unwrap().collect();
    assert_eq!(files.len(), 1, "one compiled file per policy");
    // A second cache on the same runtime is refused rather than ignored.
    assert!(first.cache_compiled_in(dir.path()).is_err());

    // A new process (here: a new runtime) loads it from the cache.
    let second = tiergate_runtime::Runtime::new().unwrap();
    second.cache_compiled_in(&cache).unwrap();
    let loaded = second.compile(bytes).unwrap();
    assert_eq!(loaded.info(), compiled.info());
    let tx = tiergate_runtime::Transaction::from_json(
        r#"{"id":"t1","tenant":"acme","agent":"a","amount":"89.00","currency":"USDC","category":"agent_hire","recipient":"r","recipient_trust":"known"}"#,
        1_782_518_400_000,
    )
    .unwrap();
    let context = std::sync::Arc::new(tiergate_runtime::StaticContext::default());
    let a = compiled
        .configure("")
        .unwrap()
        .classify_blocking(&tx, context.clone())
        .unwrap();
    let b = loaded
        .configure("")
        .unwrap()
        .classify_blocking(&tx, context)
        .unwrap();
    assert_eq!((a.tier, &a.reasons), (b.tier, &b.reasons));

    // A damaged file is compiled again and replaced, never trusted.
    drop(loaded);
    let path = files[0].as_ref().unwrap().path();
    let whole = std::fs::read(&path).unwrap();
    std::fs::write(&path, &whole[..whole.len() / 3]).unwrap();
    use std::os::unix::fs::MetadataExt;
    let damaged = std::fs::metadata(&path).unwrap().ino();
    let third = tiergate_runtime::Runtime::new().unwrap();
    third.cache_compiled_in(&cache).unwrap();
    assert_eq!(third.compile(bytes).unwrap().info(), compiled.info());
    assert_eq!(std::fs::read(&path).unwrap().len(), whole.len());
    // By a new file renamed over it, never by writing into it: a policy
    // loaded earlier maps the file it was checked in.
    assert_ne!(std::fs::metadata(&path).unwrap().ino(), damaged);
}

/// A policy loaded from the cache maps the file it checked: the cache
/// replacing that file (by a new one renamed over it) leaves it deciding as
/// before, and a load afterwards checks the new file.
#[test]
fn a_loaded_policy_keeps_its_code_when_its_cache_file_is_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("compiled");
    let seed = tiergate_cli::bundled::get("seed-tiers").unwrap();
    let runtime = || {
        let runtime = tiergate_runtime::Runtime::new().unwrap();
        runtime.cache_compiled_in(&cache).unwrap();
        runtime
    };
    drop(runtime().compile(seed).unwrap());
    let loaded = runtime().compile(seed).unwrap().configure("").unwrap();
    // Another host's copy of another policy's code is renamed over the file.
    let file = only_file(&cache);
    let other = dir.path().join("other");
    let elsewhere = tiergate_runtime::Runtime::new().unwrap();
    elsewhere.cache_compiled_in(&other).unwrap();
    elsewhere
        .compile(tiergate_cli::bundled::get("flat-limit").unwrap())
        .unwrap();
    std::fs::rename(only_file(&other), &file).unwrap();

    let hire = tiergate_runtime::Transaction::from_json(
        r#"{"id":"t1","tenant":"acme","agent":"a","amount":"89.00","currency":"USDC","category":"agent_hire","recipient":"r","recipient_trust":"known"}"#,
        1_782_518_400_000,
    )
    .unwrap();
    let context = std::sync::Arc::new(tiergate_runtime::StaticContext::default());
    let decide = |policy: &tiergate_runtime::TenantPolicy| {
        let d = policy.classify_blocking(&hire, context.clone()).unwrap();
        (d.tier, d.reasons[0].code.clone())
    };
    let seed_tiers = (
        tiergate_runtime::Tier::Collaborative,
        "collaborative_conditions_met".to_string(),
    );
    assert_eq!(decide(&loaded), seed_tiers);
    // A new load finds the swapped file failing its check and compiles again.
    let reloaded = runtime().compile(seed).unwrap().configure("").unwrap();
    assert_eq!(decide(&reloaded), seed_tiers);
    assert_eq!(decide(&loaded), seed_tiers);
}

#[test]
fn a_tampered_compiled_policy_is_compiled_again_never_run() {
    // Whoever can write the cache directory swaps one policy's machine code
    // for another's: a file that loads fine, but is not what was compiled.
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("compiled");
    let seed = tiergate_cli::bundled::get("seed-tiers").unwrap();
    let flat = tiergate_cli::bundled::get("flat-limit").unwrap();
    let first = tiergate_runtime::Runtime::new().unwrap();
    first.cache_compiled_in(&cache).unwrap();
    first.compile(seed).unwrap();
    let seed_file = only_file(&cache);
    let other = dir.path().join("other");
    let second = tiergate_runtime::Runtime::new().unwrap();
    second.cache_compiled_in(&other).unwrap();
    second.compile(flat).unwrap();
    let flat_code = std::fs::read(only_file(&other)).unwrap();
    // Machine code and its key are this user's alone.
    use std::os::unix::fs::PermissionsExt;
    for file in [seed_file.clone(), cache.with_extension("key")] {
        let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{}", file.display());
    }
    std::fs::write(&seed_file, &flat_code).unwrap();

    let third = tiergate_runtime::Runtime::new().unwrap();
    third.cache_compiled_in(&cache).unwrap();
    let policy = third.compile(seed).unwrap().configure("").unwrap();
    let hire = tiergate_runtime::Transaction::from_json(
        r#"{"id":"t1","tenant":"acme","agent":"a","amount":"89.00","currency":"USDC","category":"agent_hire","recipient":"r","recipient_trust":"known"}"#,
        1_782_518_400_000,
    )
    .unwrap();
    let d = policy
        .classify_blocking(
            &hire,
            std::sync::Arc::new(tiergate_runtime::StaticContext::default()),
        )
        .unwrap();
    assert_eq!(
        (d.tier, d.reasons[0].code.as_str()),
        (
            tiergate_runtime::Tier::Collaborative,
            "collaborative_conditions_met"
        ),
        "seed-tiers decides, not the code swapped in: {d:?}"
    );
    assert_ne!(
        std::fs::read(&seed_file).unwrap(),
        flat_code,
        "the swapped file was replaced"
    );
}

fn only_file(dir: &std::path::Path) -> std::path::PathBuf {
    let files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "cwasm"))
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    files[0].clone()
}

/// Every bundled Rust policy starts in at most the linear memory the sandbox
/// keeps resident between sandboxes (256 KiB): stack, data and arena. One
/// linked with the default 1 MiB stack starts in 1,088 KiB, and every
/// decision faults in the pages it touches again; a build of the policies
/// without the workspace's link flags did that unnoticed.
#[test]
fn bundled_policies_start_within_the_memory_kept_resident() {
    const KEPT_RESIDENT: u64 = 256 << 10;
    for name in tiergate_cli::bundled::names() {
        let bytes = tiergate_cli::bundled::get(name).unwrap();
        let mut initial = 0;
        for payload in wasmparser::Parser::new(0).parse_all(bytes) {
            if let wasmparser::Payload::MemorySection(memories) = payload.unwrap() {
                for memory in memories {
                    initial += memory.unwrap().initial << 16;
                }
            }
        }
        assert!(
            initial > 0 && initial <= KEPT_RESIDENT,
            "{name} starts in {} KiB of memory; is it linked with `-zstack-size=65536` (.cargo/config.toml)?",
            initial >> 10
        );
    }
}
