//! A policy that misbehaves in any way lands on the failure tier, never a
//! looser one, with a reason saying what happened; the host carries on.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tiergate_core::audit::Replayed;
use tiergate_core::governance::{Authorization, Governor, ManualClock, Observer, TenantConfig};
use tiergate_e2e::fixtures;
use tiergate_runtime::{
    ActivityFilter, ActivityResult, ContextSource, FailureKind, LoadError, RecipientHistory,
    Runtime, SandboxLimits, StaticContext, TenantPolicy, Tier,
};

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
fn a_deadline_stops_a_looping_policy_with_fuel_to_spare() {
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

/// A context whose answers take wall time and no CPU time, as a call
/// waiting for a core, or for a slow store, would.
struct SlowContext(Duration);

impl ContextSource for SlowContext {
    fn agent_activity(&self, window_ms: u64, filter: &ActivityFilter) -> ActivityResult {
        std::thread::sleep(self.0);
        StaticContext::default().agent_activity(window_ms, filter)
    }

    fn recipient(&self) -> RecipientHistory {
        StaticContext::default().recipient()
    }
}

#[test]
fn the_deadline_counts_the_calls_own_cpu_time_and_four_times_it_in_wall_time() {
    let runtime = Runtime::with_limits(SandboxLimits {
        timeout: Duration::from_millis(50),
        ..SandboxLimits::default()
    })
    .unwrap();
    let policy = runtime
        .compile(tiergate_cli::bundled::get("seed-tiers").unwrap())
        .unwrap()
        .configure("")
        .unwrap();
    let t = tx("0.02", "embeddings", "verified");
    // Kept waiting 1.4 times its deadline without working (a busy machine
    // gave its core to others): a sound policy still answers.
    let waited = policy
        .classify_blocking(&t, Arc::new(SlowContext(Duration::from_millis(70))))
        .unwrap();
    assert_eq!(waited.failure, None, "{waited:?}");
    assert_eq!(waited.tier, Tier::Autonomous);
    assert_eq!(waited.context_reads.len(), 1, "one slow answer: {waited:?}");
    // Past four times its deadline in all, it is stopped whatever it spent.
    let stuck = policy
        .classify_blocking(&t, Arc::new(SlowContext(Duration::from_millis(250))))
        .unwrap();
    assert_eq!(stuck.failure.unwrap().kind, FailureKind::Timeout);
    assert_eq!(stuck.tier, Tier::Collaborative);
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
    // Work whose fuel depends on the input: seed-tiers on different
    // payments. Each uses the same fuel every time, in this runtime and in
    // a new one, and the payments do not all use the same.
    let payments = [
        tx("0.02", "embeddings", "verified"),
        tx("47.00", "compute", "known"),
        tx("89.00", "agent_hire", "known"),
        tx("1.00", "gambling", "verified"),
        tx("0.0200000000000000001", "embeddings", "unknown"),
    ];
    let fresh = Runtime::with_limits(SandboxLimits {
        timeout: Duration::from_secs(2),
        ..SandboxLimits::default()
    })
    .unwrap()
    .compile(tiergate_cli::bundled::get("seed-tiers").unwrap())
    .unwrap()
    .configure("")
    .unwrap();
    let mut used = Vec::new();
    for t in &payments {
        let first = classify(&seed_tiers(), t);
        assert!(first.failure.is_none(), "{first:?}");
        assert!(first.fuel_used > 0 && first.fuel_used < runtime().limits().fuel);
        for again in [classify(&seed_tiers(), t), classify(&fresh, t)] {
            assert_eq!(again, first, "{}", t.amount);
        }
        used.push(first.fuel_used);
    }
    used.sort_unstable();
    used.dedup();
    assert!(used.len() >= 3, "fuel that varies with the input: {used:?}");
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

fn classify_in_fresh_context(
    p: &TenantPolicy,
    t: &tiergate_runtime::Transaction,
) -> tiergate_runtime::Decision {
    crate::classify_in(p, t, StaticContext::default())
}

#[test]
fn the_sandbox_shows_no_entropy_across_processes_either() {
    // A generator seeded once per process would give the same numbers to
    // every call in it; two processes show whether it is fixed.
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("observe.json");
    std::fs::write(&config, r#"{"mode": "observe"}"#).unwrap();
    let input = dir.path().join("tx.json");
    std::fs::write(
        &input,
        serde_json::to_string(&tx("0.02", "embeddings", "verified")).unwrap(),
    )
    .unwrap();
    let seen = || {
        let out = crate::tiergate_command()
            .args(["eval", "--policy", fixtures::MISBEHAVE, "--config"])
            .arg(&config)
            .arg(&input)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let line: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let reasons = &line["reasons"];
        assert_eq!(reasons[1]["code"], "hash_seed", "{line}");
        (
            reasons[0]["message"].as_str().unwrap().to_string(),
            reasons[1]["message"].as_str().unwrap().to_string(),
        )
    };
    let (first, second) = (seen(), seen());
    assert_eq!(first.0, "clock_ms=0 env=0 args=0 files=denied");
    assert_eq!(first, second, "two processes saw different entropy");
    // And the same as a call in this process.
    let here =
        classify_in_fresh_context(&misbehave("observe"), &tx("0.02", "embeddings", "verified"));
    assert_eq!(here.reasons[1].message, first.1);
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

#[test]
fn a_policy_that_asks_the_context_while_reading_its_configuration_is_refused() {
    // Contract 0.2.0 reads the configuration before any transaction, maybe
    // ahead of the payment: an answer then could not be the payment's.
    let compiled = runtime()
        .compile_file(fixtures::MISBEHAVE.as_ref())
        .unwrap();
    assert_eq!(compiled.info().contract, "0.2.0");
    match compiled
        .configure(r#"{"mode": "ask_on_load"}"#)
        .unwrap_err()
    {
        LoadError::ConfigCheckFailed(f) => {
            assert_eq!(f.kind, FailureKind::Trap);
            assert!(
                f.detail
                    .contains("asked the context while reading its configuration"),
                "{}",
                f.detail
            );
        }
        other => panic!("expected ConfigCheckFailed, got {other}"),
    }
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
        .named_policies(tiergate_cli::named_policies())
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

    let policy = tiergate_core::governance::compile_tenant_policy(
        &runtime,
        &config,
        &tiergate_cli::named_policies(),
    )
    .unwrap();
    let replayed =
        tiergate_core::audit::replay(&store.open().events("acme", None).unwrap(), &policy);
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

/// Counts the policy's runs in a sandbox, and those made under the store's
/// write lock, where every other writer waits on them.
#[derive(Default)]
struct Runs {
    all: AtomicU64,
    under_lock: AtomicU64,
}

impl Observer for Runs {
    fn policy_ran(&self, _tenant: &str, under_write_lock: bool) {
        self.all.fetch_add(1, Ordering::SeqCst);
        if under_write_lock {
            self.under_lock.fetch_add(1, Ordering::SeqCst);
        }
    }
}

impl Runs {
    fn counts(&self) -> (u64, u64) {
        (
            self.all.load(Ordering::SeqCst),
            self.under_lock.load(Ordering::SeqCst),
        )
    }
}

/// Tenant `acme` governed by the `misbehave` fixture in `panic_from` mode:
/// it panics on amounts of 10 or more and answers autonomous below.
struct Failing {
    store: TestStore,
    governor: Governor,
    clock: ManualClock,
    runs: Arc<Runs>,
}

impl Failing {
    fn on(kind: Kind) -> Failing {
        Self::with(
            kind,
            runtime().clone(),
            r#"{ mode = "panic_from", count = 10 }"#,
        )
    }

    /// Tenant `acme` governed by `misbehave` configured with `config`, on `runtime`.
    fn with(kind: Kind, runtime: Runtime, config: &str) -> Failing {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("acme.toml");
        std::fs::write(
            &path,
            acme_with_policy(fixtures::MISBEHAVE.as_ref(), config),
        )
        .unwrap();
        let config = TenantConfig::load(&path).unwrap();
        let store = TestStore::new(kind);
        let clock = ManualClock::at(1_782_518_400_000);
        let runs = Arc::new(Runs::default());
        let governor = Governor::builder(runtime, store.open())
            .named_policies(tiergate_cli::named_policies())
            .clock(Arc::new(clock.clone()))
            .observer(runs.clone())
            .tenant(config)
            .unwrap()
            .build()
            .unwrap();
        Failing {
            store,
            governor,
            clock,
            runs,
        }
    }

    fn pay(&self, id: &str, amount: &str) -> Authorization {
        let mut t = tx(amount, "embeddings", "verified");
        t.id = id.to_string();
        self.governor.authorize_blocking(t).unwrap()
    }

    /// The kinds of the audit events recorded for payment `id`.
    fn events(&self, id: &str) -> Vec<String> {
        self.store
            .open()
            .events("acme", Some(id))
            .unwrap()
            .into_iter()
            .map(|e| e.event.kind)
            .collect()
    }
}

fn failure_kind(a: &Authorization) -> Option<FailureKind> {
    a.policy_failure.as_ref().map(|f| f.kind)
}

fn a_failing_policy_runs_once_per_payment_never_under_the_write_lock(kind: Kind) {
    let w = Failing::on(kind);
    for i in 1..=3 {
        let a = w.pay(&format!("p{i}"), "10.00");
        assert_eq!(failure_kind(&a), Some(FailureKind::Trap), "{a:?}");
        assert_eq!(a.tier, Tier::Collaborative);
    }
    assert_eq!(
        w.runs.counts(),
        (3, 0),
        "(runs, runs under the write lock) for three failing payments"
    );
}

fn a_policy_failing_again_and_again_is_suspended_then_tried_again(kind: Kind) {
    let w = Failing::on(kind);
    // Five failures in a row open the breaker; the fifth alerts the owners.
    for i in 1..=5 {
        let a = w.pay(&format!("p{i}"), "10.00");
        assert_eq!(failure_kind(&a), Some(FailureKind::Trap), "p{i}: {a:?}");
        let alerted = w
            .events(&format!("p{i}"))
            .contains(&"owner_alerted".to_string());
        assert_eq!(alerted, i == 5, "p{i}: {:?}", w.events(&format!("p{i}")));
    }
    assert_eq!(w.runs.counts(), (5, 0));
    // Suspended: the failure tier at once, the policy not run, even for a
    // payment it would have answered; recorded as such, saying until when.
    for id in ["p6", "p7"] {
        let a = w.pay(id, "1.00");
        assert_eq!(
            failure_kind(&a),
            Some(FailureKind::PolicySuspended),
            "{a:?}"
        );
        assert_eq!(a.tier, Tier::Collaborative);
        let detail = &a.policy_failure.as_ref().unwrap().detail;
        assert!(
            detail.contains("5 times in a row") && detail.contains("until 2026-06-27 00:00:30"),
            "{detail}"
        );
        assert!(a.reasons[0].code == "policy_suspended", "{a:?}");
        assert!(
            !w.events(id).contains(&"owner_alerted".to_string()),
            "alerted once per trip"
        );
    }
    assert_eq!(w.runs.counts(), (5, 0), "no run while suspended");

    // After the back-off the policy is tried again; failing, it is
    // suspended again, for twice as long, without alerting again.
    w.clock.advance(30_000);
    let a = w.pay("p8", "10.00");
    assert_eq!(failure_kind(&a), Some(FailureKind::Trap), "{a:?}");
    assert_eq!(w.runs.counts(), (6, 0));
    let a = w.pay("p9", "1.00");
    assert_eq!(
        failure_kind(&a),
        Some(FailureKind::PolicySuspended),
        "{a:?}"
    );
    assert!(
        a.policy_failure
            .unwrap()
            .detail
            .contains("until 2026-06-27 00:01:30"),
        "twice the back-off"
    );
    assert!(!w.events("p8").contains(&"owner_alerted".to_string()));
    assert_eq!(w.runs.counts(), (6, 0));

    // Its next answer closes the breaker: payments are decided again.
    w.clock.advance(60_000);
    let a = w.pay("p10", "1.00");
    assert_eq!(
        (a.tier, failure_kind(&a)),
        (Tier::Autonomous, None),
        "{a:?}"
    );
    let a = w.pay("p11", "10.00");
    assert_eq!(
        failure_kind(&a),
        Some(FailureKind::Trap),
        "counted from one again"
    );
    assert_eq!(w.runs.counts(), (8, 0));
}

fn owners_hear_once_that_a_tenants_cpu_budget_is_spent(kind: Kind) {
    let runtime = Runtime::with_limits(SandboxLimits {
        fuel: u64::MAX / 2,
        timeout: Duration::from_millis(50),
        cpu_burst: Duration::from_millis(5),
        cpu_per_second: Duration::from_micros(1),
        ..SandboxLimits::default()
    })
    .unwrap();
    let w = Failing::with(kind, runtime, r#"{ mode = "loop" }"#);
    let a = w.pay("p1", "1.00");
    assert_eq!(failure_kind(&a), Some(FailureKind::Timeout), "{a:?}");
    for id in ["p2", "p3", "p4"] {
        let a = w.pay(id, "1.00");
        assert_eq!(
            (failure_kind(&a), a.tier),
            (Some(FailureKind::CpuBudgetExhausted), Tier::Collaborative),
            "{a:?}"
        );
        let alerted = w.events(id).contains(&"owner_alerted".to_string());
        assert_eq!(alerted, id == "p2", "{id}: {:?}", w.events(id));
    }
}

on_both_stores!(
    owners_hear_once_that_a_tenants_cpu_budget_is_spent,
    a_failing_policy_runs_once_per_payment_never_under_the_write_lock,
    a_policy_failing_again_and_again_is_suspended_then_tried_again,
);
