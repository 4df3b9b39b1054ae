//! End-to-end tests: real policies compiled to wasm components, run in the
//! real sandbox, through the library and the `tiergate` binary. One test
//! binary, so the heavy runtime links once.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "a test states what it expects; a failure is the test failing"
)]

mod audit;
mod batches;
mod cli;
mod clusters;
mod compliance;
mod concurrency;
mod crashes;
mod failures;
mod fuzz_corpus;
mod history;
mod hostile;
mod inbox;
mod languages;
mod layout;
mod listings;
mod loading;
mod lookalikes;
mod mcp;
mod new_project;
mod pipeline;
mod prepared;
mod properties;
mod races;
mod replicas;
mod service;
mod settings;
mod store;
mod stores;
mod tenancy;
mod tiers;
mod trust;
mod webhooks;
mod x402;

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tiergate_runtime::{
    CompiledPolicy, Decision, Runtime, SandboxLimits, StaticContext, TenantPolicy, Tier,
    Transaction,
};

/// A runtime with the default limits but a generous wall-clock deadline: the
/// tests share two cores with each other, and a preempted thread must not
/// look like a slow policy. Fuel still bounds every policy deterministically.
fn runtime() -> &'static Runtime {
    static RUNTIME: OnceLock<Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        Runtime::with_limits(SandboxLimits {
            timeout: Duration::from_secs(2),
            ..SandboxLimits::default()
        })
        .expect("runtime starts")
    })
}

/// A bundled example policy, compiled once per test run.
fn bundled(name: &str) -> CompiledPolicy {
    static CACHE: OnceLock<std::sync::Mutex<Vec<(String, CompiledPolicy)>>> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    let mut cache = cache.lock().unwrap();
    if let Some((_, p)) = cache.iter().find(|(n, _)| n == name) {
        return p.clone();
    }
    let bytes = tiergate_cli::bundled::get(name).unwrap_or_else(|| panic!("{name} is bundled"));
    let compiled = runtime().compile(bytes).expect("bundled policy compiles");
    cache.push((name.to_string(), compiled.clone()));
    compiled
}

fn seed_tiers() -> TenantPolicy {
    bundled("seed-tiers")
        .configure("")
        .expect("defaults are valid")
}

/// A transaction from the fields that matter to a test; the rest get
/// neutral values.
fn tx(amount: &str, category: &str, trust: &str) -> Transaction {
    tx_with(amount, category, trust, serde_json::json!({}))
}

fn tx_with(amount: &str, category: &str, trust: &str, extra: serde_json::Value) -> Transaction {
    let mut v = serde_json::json!({
        "id": "tx-1", "tenant": "acme", "agent": "procurement-agent-prod",
        "amount": amount, "currency": "USDC", "category": category,
        "recipient": "vendor.example", "recipient_trust": trust,
        "requested_at_ms": 1_782_518_400_000u64
    });
    for (k, val) in extra.as_object().expect("extra fields are an object") {
        v[k] = val.clone();
    }
    Transaction::from_json(&v.to_string(), 0).expect("test transaction is valid")
}

fn classify(policy: &TenantPolicy, tx: &Transaction) -> Decision {
    classify_in(policy, tx, StaticContext::default())
}

fn classify_in(policy: &TenantPolicy, tx: &Transaction, ctx: StaticContext) -> Decision {
    policy
        .classify_blocking(tx, Arc::new(ctx))
        .expect("transaction is valid")
}

/// A context in which the agent already has `count` transactions of `tier`
/// in the `window` (as the CLI's `--context` file would say).
fn with_tier_count(window: &str, tier: Tier, count: u64) -> StaticContext {
    serde_json::from_value(serde_json::json!({
        "activity": [{"window": window, "filter": {"tier": tier}, "count": count, "total": "0"}]
    }))
    .expect("context is valid")
}

/// The `tiergate` binary, with the same generous wall-clock backstop as
/// [`runtime`]: the suite runs many processes on two cores at once.
fn tiergate_command() -> std::process::Command {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_tiergate"));
    command.env("TIERGATE_TIMEOUT_MS", "2000");
    command
}
