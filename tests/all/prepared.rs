//! Sandboxes made ahead of their call are invisible to the policy and to
//! replay: every decision is the one a sandbox made at the call gives,
//! failures and fuel included; none is ever used twice; and the bounds on
//! how many are kept hold.

use std::sync::{Arc, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

use tiergate_e2e::fixtures;
use tiergate_runtime::{
    CompiledPolicy, Decision, Runtime, SandboxLimits, StaticContext, TenantPolicy, Tier,
    Transaction,
};

use crate::{tx, tx_with, with_tier_count};

/// Long enough that no test waits this long unless something is wrong.
const PATIENT: Duration = Duration::from_secs(60);

fn limits(prepared_instances: u32) -> SandboxLimits {
    SandboxLimits {
        // As the suite's runtime: two cores shared by many tests.
        timeout: Duration::from_secs(2),
        prepared_instances,
        ..SandboxLimits::default()
    }
}

/// One runtime making sandboxes ahead, one making each at its call (the
/// default).
fn runtimes() -> &'static (Runtime, Runtime) {
    static BOTH: OnceLock<(Runtime, Runtime)> = OnceLock::new();
    BOTH.get_or_init(|| {
        let ahead = Runtime::with_limits(limits(32));
        let at_call = Runtime::with_limits(limits(0));
        (
            ahead.expect("runtime starts"),
            at_call.expect("runtime starts"),
        )
    })
}

fn compile(runtime: &Runtime, bytes: &[u8]) -> CompiledPolicy {
    runtime.compile(bytes).expect("policy compiles")
}

/// Waits until `policy` has a sandbox made ahead, then decides `tx` in it:
/// the decision, and whether it was taken from the shelf.
fn decide_ahead(
    runtime: &Runtime,
    policy: &TenantPolicy,
    tx: &Transaction,
    ctx: &StaticContext,
) -> Decision {
    // Its first call has asked for the shelf to be filled.
    let start = Instant::now();
    loop {
        let before = runtime.prepared_counts();
        let d = policy
            .classify_blocking(tx, Arc::new(ctx.clone()))
            .expect("transaction is valid");
        if runtime.prepared_counts().taken > before.taken {
            return d;
        }
        assert!(
            start.elapsed() < PATIENT,
            "no sandbox was ever made ahead: {:?}",
            runtime.prepared_counts()
        );
        thread::sleep(Duration::from_millis(5));
    }
}

/// Decides every case with a sandbox made ahead and with one made at the
/// call, and requires the two decisions to be equal in every field.
fn same_both_ways(bytes: &[u8], config: &str, cases: &[(Transaction, StaticContext)]) {
    let (ahead, at_call) = runtimes();
    let policy_ahead = compile(ahead, bytes).configure(config).unwrap();
    let policy_at_call = compile(at_call, bytes).configure(config).unwrap();
    for (tx, ctx) in cases {
        let made_ahead = decide_ahead(ahead, &policy_ahead, tx, ctx);
        let made_at_call = policy_at_call
            .classify_blocking(tx, Arc::new(ctx.clone()))
            .unwrap();
        assert_eq!(made_ahead, made_at_call, "{} {config}", tx.amount);
    }
}

fn bundled_bytes(name: &str) -> &'static [u8] {
    tiergate_cli::bundled::get(name).unwrap_or_else(|| panic!("{name} is bundled"))
}

#[test]
fn the_seed_policys_cases_decide_the_same_with_sandboxes_made_ahead() {
    let plain = |amount: &str, category: &str, trust: &str| {
        (tx(amount, category, trust), StaticContext::default())
    };
    let capped = |amount: &str, category: &str, window: &str, tier: Tier, count: u64| {
        (
            tx(amount, category, "known"),
            with_tier_count(window, tier, count),
        )
    };
    let cases = [
        plain("0.02", "embeddings", "verified"),
        plain("1.00", "embeddings", "verified"),
        plain("1.01", "embeddings", "verified"),
        plain("50.00", "compute", "known"),
        plain("50.01", "compute", "known"),
        plain("5000.00", "agent_hire", "known"),
        plain("5000.01", "agent_hire", "known"),
        plain("5.00", "gambling", "verified"),
        plain("0.02", "embeddings", "unknown"),
        (
            tx_with(
                "89.00",
                "agent_hire",
                "known",
                serde_json::json!({"justification": "EURC liquidity analysis", "jurisdiction": "KP"}),
            ),
            StaticContext::default(),
        ),
        capped("10.00", "compute", "1h", Tier::Supervised, 19),
        capped("10.00", "compute", "1h", Tier::Supervised, 20),
        capped("89.00", "agent_hire", "24h", Tier::Collaborative, 5),
    ];
    let seed = bundled_bytes("seed-tiers");
    same_both_ways(seed, "", &cases);
    // A tenant's own configuration, which `seed-tiers` (contract 0.2.0)
    // reads in a sandbox made ahead before its payment arrives.
    let own = r#"{"sanctioned_jurisdictions": ["KP", "RU"], "prohibited_categories": ["compute"]}"#;
    same_both_ways(seed, own, &cases);
    // A policy of contract 0.1.0, which reads it in every `classify`.
    let typescript = std::fs::read(crate::languages::component("seed-tiers-ts")).unwrap();
    same_both_ways(&typescript, own, &cases);
}

#[test]
fn failures_and_their_fuel_are_the_same_with_sandboxes_made_ahead() {
    let bytes = std::fs::read(fixtures::MISBEHAVE).unwrap();
    let payment = [(tx("1.00", "compute", "known"), StaticContext::default())];
    for mode in [
        "loop",
        "panic",
        "allocate",
        "recurse",
        "no_reason",
        "observe",
    ] {
        let config = serde_json::json!({"mode": mode}).to_string();
        same_both_ways(&bytes, &config, &payment);
    }
}

#[test]
fn a_sandbox_made_ahead_serves_one_call_only() {
    let (ahead, _) = runtimes();
    let bytes = std::fs::read(fixtures::MISBEHAVE).unwrap();
    let counter = compile(ahead, &bytes)
        .configure(r#"{"mode": "static_counter"}"#)
        .unwrap();
    let payment = tx("1.00", "compute", "known");
    for _ in 0..20 {
        let d = decide_ahead(ahead, &counter, &payment, &StaticContext::default());
        assert_eq!(d.reasons[0].message, "call number 1", "{d:?}");
    }
}

#[test]
fn the_sandboxes_kept_ahead_stay_within_their_bound_and_idle_ones_go() {
    let runtime = Runtime::with_limits(SandboxLimits {
        prepared_per_tenant: 2,
        ..limits(3)
    })
    .unwrap();
    let compiled = compile(&runtime, bundled_bytes("seed-tiers"));
    let tenants: Vec<TenantPolicy> = (0..8).map(|_| compiled.configure("").unwrap()).collect();
    let payment = tx("0.02", "embeddings", "verified");
    let start = Instant::now();
    // Every tenant asks, again and again: at most 3 are ever kept.
    while start.elapsed() < Duration::from_secs(2) {
        for tenant in &tenants {
            let d = crate::classify(tenant, &payment);
            assert_eq!(d.tier, Tier::Autonomous, "{d:?}");
            let kept = runtime.prepared_counts().kept;
            assert!(
                kept <= 3,
                "{kept} sandboxes kept ahead, over the bound of 3"
            );
        }
        thread::sleep(Duration::from_millis(2));
    }
    assert!(runtime.prepared_counts().taken > 0);
    // Nobody asks any more: the shelves are refilled, then emptied, and
    // their memory given back, once idle.
    let idle = Instant::now();
    while runtime.prepared_counts().kept == 0 {
        assert!(idle.elapsed() < PATIENT, "the shelves were never refilled");
        thread::sleep(Duration::from_millis(10));
    }
    while runtime.prepared_counts().kept > 0 {
        assert!(
            idle.elapsed() < PATIENT,
            "idle sandboxes were kept: {:?}",
            runtime.prepared_counts()
        );
        thread::sleep(Duration::from_millis(100));
    }
    assert!(idle.elapsed() >= Duration::from_secs(5), "emptied too soon");
}

#[test]
fn a_calls_context_is_released_when_it_answers_though_its_sandbox_is_torn_down_later() {
    // The context is the caller's: a governor's holds a pooled reader of
    // the tenant's history, which other payments wait for. A sandbox handed
    // to the background teardown must not keep it until the teardown runs.
    // A runtime of its own, so the counts are this test's.
    let ahead = &Runtime::with_limits(limits(4)).unwrap();
    let policy = compile(ahead, bundled_bytes("seed-tiers"))
        .configure("")
        .unwrap();
    let payment = tx("0.02", "embeddings", "verified");
    // Until 20 sandboxes have gone to the background teardown: a busy
    // machine may leave the thread no time for a while, and a call that
    // made its own sandbox tears it down itself.
    let (mut behind, start) = (0, Instant::now());
    while behind < 20 {
        assert!(
            start.elapsed() < PATIENT,
            "no sandbox was torn down behind its call: {:?}",
            ahead.prepared_counts()
        );
        thread::sleep(Duration::from_millis(2));
        let before = ahead.prepared_counts().torn_down_behind;
        let context = Arc::new(StaticContext::default());
        let d = policy
            .classify_blocking(&payment, context.clone())
            .expect("transaction is valid");
        assert_eq!(d.tier, Tier::Autonomous, "{d:?}");
        assert_eq!(
            Arc::strong_count(&context),
            1,
            "the sandbox still holds the call's context after the answer"
        );
        behind += ahead.prepared_counts().torn_down_behind - before;
    }
}
