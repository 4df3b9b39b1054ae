//! A policy that misbehaves in any way lands on the failure tier, never a
//! looser one, with a reason saying what happened; the host carries on.

use std::time::Duration;

use tiergate::{FailureKind, LoadError, Runtime, SandboxLimits, StaticContext, TenantPolicy, Tier};
use tiergate_e2e::fixtures;

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
