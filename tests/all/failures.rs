//! A policy that misbehaves in any way lands on the failure tier, never a
//! looser one, with a reason saying what happened; the host carries on.

use std::time::Duration;

use tiergate::audit::Replayed;
use tiergate::governance::{Governor, TenantConfig};
use tiergate::{FailureKind, LoadError, Runtime, SandboxLimits, StaticContext, TenantPolicy, Tier};
use tiergate_e2e::fixtures;

use crate::hostile::{CLOCK, Wat};
use crate::stores::{Kind, TestStore, on_both_stores};
use crate::{classify, runtime, seed_tiers, tx};

fn misbehave(mode: &str) -> TenantPolicy {
    misbehave_on(runtime(), mode)
}

fn misbehave_on(runtime: &Runtime, mode: &str) -> TenantPolicy {
    runtime
        .compile_file(fixtures::MISBEHAVE.as_ref())
        .expect("fixture compiles")
        .configure(&format!(r#"{{"mode": "{mode}"}}"#))
        .expect("fixture configures")
}

#[test]
fn every_misbehaviour_fails_closed() {
    let cases = [
        ("panic", FailureKind::Trap),
        ("loop", FailureKind::FuelExhausted),
        ("allocate", FailureKind::MemoryLimit),
        // Deep recursion first exhausts the guest's own 64 KiB stack in linear
        // memory, which traps as an out-of-bounds access.
        ("recurse", FailureKind::Trap),
        ("too_many_reasons", FailureKind::DecisionOversized),
        ("long_message", FailureKind::DecisionOversized),
        ("no_reason", FailureKind::DecisionMalformed),
        ("bad_code", FailureKind::DecisionMalformed),
        ("flood_context", FailureKind::TooManyContextReads),
    ];
    let t = tx("0.02", "embeddings", "verified");
    for (mode, kind) in cases {
        let d = classify(&misbehave(mode), &t);
        let failure = d
            .failure
            .as_ref()
            .unwrap_or_else(|| panic!("{mode}: no failure in {d:?}"));
        assert_eq!(failure.kind, kind, "{mode}: {}", failure.detail);
        assert_eq!(
            d.tier,
            Tier::Collaborative,
            "{mode}: the default failure tier"
        );
        assert_eq!(d.reasons[0].code, kind.code(), "{mode}");
        assert!(!failure.detail.is_empty(), "{mode}: the failure says why");
    }
    // The host is unharmed: a good policy still classifies afterwards.
    assert_eq!(classify(&seed_tiers(), &t).tier, Tier::Autonomous);
}

#[test]
fn a_panic_message_reaches_the_failure_detail() {
    let d = classify(&misbehave("panic"), &tx("0.02", "embeddings", "verified"));
    let detail = &d.failure.unwrap().detail;
    assert!(
        detail.contains("policy bug: amount 0.02 unexpected"),
        "{detail}"
    );
}

#[test]
fn the_configured_failure_tier_applies_and_cannot_be_loose() {
    let strict = misbehave("panic")
        .with_failure_tier(Tier::Prohibited)
        .unwrap();
    assert_eq!(
        classify(&strict, &tx("0.02", "embeddings", "verified")).tier,
        Tier::Prohibited
    );
    for loose in [Tier::Autonomous, Tier::Supervised] {
        let err = misbehave("panic").with_failure_tier(loose).unwrap_err();
        assert!(
            matches!(err, LoadError::FailureTierTooLoose(t) if t == loose),
            "{err}"
        );
    }
}

#[test]
fn a_broken_answer_keeps_the_stricter_tier_it_asked_for() {
    // The fixture does not declare `prohibited`; answering it is malformed,
    // but the host will not loosen a prohibition to the failure tier.
    let undeclared = runtime()
        .compile_file(fixtures::MISBEHAVE.as_ref())
        .unwrap()
        .configure(r#"{"mode": "answer", "tier": "prohibited"}"#)
        .unwrap();
    let d = classify(&undeclared, &tx("0.02", "embeddings", "verified"));
    assert_eq!(
        d.failure.as_ref().unwrap().kind,
        FailureKind::UndeclaredTier
    );
    assert_eq!(d.tier, Tier::Prohibited);

    let loose = runtime()
        .compile_file(fixtures::MISBEHAVE.as_ref())
        .unwrap()
        .configure(r#"{"mode": "too_many_reasons", "tier": "autonomous"}"#)
        .unwrap();
    assert_eq!(
        classify(&loose, &tx("0.02", "embeddings", "verified")).tier,
        Tier::Collaborative
    );
}

#[test]
fn a_wall_clock_deadline_stops_a_policy_with_fuel_to_spare() {
    let runtime = Runtime::with_limits(SandboxLimits {
        fuel: u64::MAX / 2,
        timeout: Duration::from_millis(20),
        ..SandboxLimits::default()
    })
    .unwrap();
    let d = classify(
        &misbehave_on(&runtime, "loop"),
        &tx("0.02", "embeddings", "verified"),
    );
    assert_eq!(d.failure.unwrap().kind, FailureKind::Timeout);
    assert_eq!(d.tier, Tier::Collaborative);
}

#[test]
fn the_native_stack_limit_stops_deep_recursion() {
    let runtime = Runtime::with_limits(SandboxLimits {
        stack_bytes: 48 << 10,
        timeout: Duration::from_secs(2),
        ..SandboxLimits::default()
    })
    .unwrap();
    let d = classify(
        &misbehave_on(&runtime, "recurse"),
        &tx("0.02", "embeddings", "verified"),
    );
    let failure = d.failure.unwrap();
    assert_eq!(
        failure.kind,
        FailureKind::StackOverflow,
        "{}",
        failure.detail
    );
    assert_eq!(d.tier, Tier::Collaborative);
}

#[test]
fn fuel_use_is_deterministic() {
    let p = misbehave("loop");
    let t = tx("0.02", "embeddings", "verified");
    let (a, b) = (classify(&p, &t), classify(&p, &t));
    assert_eq!(a.fuel_used, runtime().limits().fuel);
    assert_eq!(a, b);
}

#[test]
fn the_sandbox_shows_no_clock_environment_files_or_entropy() {
    let p = misbehave("observe");
    let t = tx("0.02", "embeddings", "verified");
    let first = classify(&p, &t);
    assert!(first.failure.is_none(), "{first:?}");
    assert_eq!(
        first.reasons[0].message,
        "clock_ms=0 env=0 args=0 files=denied"
    );
    // Hash seeds come from the sandbox's random source, which is fixed.
    let second = classify_in_fresh_context(&p, &t);
    assert_eq!(first.reasons[1], second.reasons[1]);
}

fn classify_in_fresh_context(p: &TenantPolicy, t: &tiergate::Transaction) -> tiergate::Decision {
    crate::classify_in(p, t, StaticContext::default())
}

#[test]
fn a_policy_that_fails_while_checking_its_configuration_is_refused() {
    let compiled = runtime()
        .compile_file(fixtures::MISBEHAVE.as_ref())
        .unwrap();
    match compiled
        .configure(r#"{"mode": "panic_on_load"}"#)
        .unwrap_err()
    {
        LoadError::ConfigCheckFailed(f) => {
            assert_eq!(f.kind, FailureKind::Trap);
            assert!(f.detail.contains("refusing to load"), "{}", f.detail);
        }
        other => panic!("expected ConfigCheckFailed, got {other}"),
    }
    let err = compiled
        .configure(r#"{"mode": "dance"}"#)
        .unwrap_err()
        .to_string();
    assert!(err.contains("unknown variant `dance`"), "{err}");
}

/// A tenant `acme` whose policy is `policy_path`, governed as the example
/// configuration says (collaborative decisions keep enhanced records).
fn acme_with_policy(policy_path: &std::path::Path, config: &str) -> String {
    crate::pipeline::ACME
        .replace(
            r#"path = "seed-tiers""#,
            &format!("path = {:?}", policy_path.display().to_string()),
        )
        .replace(
            r#"config = { sanctioned_jurisdictions = ["KP", "IR", "SY"] }"#,
            &format!("config = {config}"),
        )
}

fn a_decision_that_failed_by_deadline_replays_as_the_same_failure(kind: Kind) {
    // Clock calls cost the host far more time than their fuel: this loop
    // meets a 20 ms deadline long before 2,000,000 fuel, on any machine.
    let dir = tempfile::tempdir().unwrap();
    let wasm = dir.path().join("clock-loop.wasm");
    std::fs::write(
        &wasm,
        Wat::new("(loop $l (drop (call $now)) (br $l))")
            .import(CLOCK)
            .bytes(),
    )
    .unwrap();
    let config_path = dir.path().join("acme.toml");
    std::fs::write(&config_path, acme_with_policy(&wasm, "{}")).unwrap();
    let config = TenantConfig::load(&config_path).unwrap();
    let runtime = Runtime::with_limits(SandboxLimits {
        timeout: Duration::from_millis(20),
        ..SandboxLimits::default()
    })
    .unwrap();
    let store = TestStore::new(kind);
    let governor = Governor::builder(runtime.clone(), store.open())
        .tenant(config.clone())
        .unwrap()
        .build()
        .unwrap();
    let a = governor
        .authorize_blocking(tx("0.02", "embeddings", "verified"))
        .unwrap();
    assert_eq!(
        a.policy_failure.as_ref().map(|f| f.kind),
        Some(FailureKind::Timeout),
        "{a:?}"
    );
    assert_eq!(a.tier, Tier::Collaborative);

    let policy = tiergate::governance::tenant_policy(&runtime, &config).unwrap();
    let replayed = tiergate::audit::replay(&store.open().events("acme", None).unwrap(), &policy);
    assert_eq!(replayed.len(), 1, "{replayed:?}");
    assert!(
        matches!(
            &replayed[0],
            Replayed::SameFailure { audit_id, kind: FailureKind::Timeout, .. } if *audit_id == a.audit_id
        ),
        "{replayed:?}"
    );
    assert!(!replayed[0].is_problem());

    // The command line says what it compared, and exits 0.
    let out = crate::tiergate_command()
        .env("TIERGATE_TIMEOUT_MS", "20")
        .args(["audit", "replay", "--store", &store.arg(), "--config"])
        .arg(&config_path)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("1 failed the same way again (policy_timeout: failure kind and tier compared; fuel at a deadline is not deterministic)"),
        "{stdout}"
    );
}

on_both_stores!(a_decision_that_failed_by_deadline_replays_as_the_same_failure);
