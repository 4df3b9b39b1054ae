//! How long a decision takes: a fresh sandbox per transaction, compared with
//! the same policy as a native Rust function.
//!
//! Run: `cargo bench -p tiergate-cli --bench classify`. Writes the figures to
//! `docs/benchmarks.md` (its own section; set `TIERGATE_BENCH_OUT` to write elsewhere).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "a benchmark stops at its first failure"
)]

use std::sync::Arc;
use std::time::{Duration, Instant};

#[path = "native/mod.rs"]
mod native;
#[path = "report/mod.rs"]
mod report;

use report::{cpu_model, percentile, show, today};
use tiergate_policy::testing;
use tiergate_runtime::{
    ContextSource, Runtime, SandboxLimits, StaticContext, TenantPolicy, Transaction,
};

const ARTICLE_DAY: &str = include_str!("../../../examples/article-day.jsonl");
const ROUNDS: usize = 3_000;

/// Decisions per figure: a few in a quick run, which times nothing.
fn rounds() -> usize {
    if report::quick() { 30 } else { ROUNDS }
}
const FLOOR: &str = include_str!("classify/floor.wat");

/// `seed-tiers`'s defaults, every key written out.
const FULL_CONFIG: &str = r#"{"prohibited_categories": ["gambling", "unverified_agents", "sanctioned_jurisdictions"],
 "sanctioned_jurisdictions": ["KP", "IR", "SY"],
 "autonomous": {"max_amount": "1.00", "categories": ["api_calls", "embeddings", "search"], "min_trust": "verified", "max_per_window": 1000, "window": "1h"},
 "supervised": {"max_amount": "50.00", "categories": ["compute", "data_access", "saas_tools"], "min_trust": "known", "max_per_window": 20, "window": "1h"},
 "collaborative": {"max_amount": "5000.00", "min_trust": "unknown", "max_per_window": 5, "window": "24h"}}"#;

fn main() -> anyhow::Result<()> {
    let bytes = tiergate_cli::bundled::get("seed-tiers").expect("seed-tiers is bundled");
    // Every sandbox made at its call, as the rows say: what a call costs
    // when no sandbox was made ahead (the busy case).
    let runtime = Runtime::with_limits(SandboxLimits {
        prepared_instances: 0,
        ..SandboxLimits::default()
    })?;
    let txs: Vec<Transaction> = ARTICLE_DAY
        .lines()
        .map(|l| Transaction::from_json(l, 1_782_518_400_000))
        .collect::<Result<_, _>>()?;

    let samples = if report::quick() { 1 } else { 5 };
    let compile = median(
        (0..samples)
            .map(|_| time(|| runtime.compile(bytes).map(drop)))
            .collect::<Result<_, _>>()?,
    );
    // The same policy loaded from the compiled-policy cache, as a restarted
    // service loads it: machine code read back, checked and instantiated.
    let cache_dir = tempfile::tempdir()?;
    let cached = Runtime::new()?;
    cached.cache_compiled_in(cache_dir.path())?;
    cached.compile(bytes)?;
    let load = median(
        (0..samples * 4)
            .map(|_| time(|| cached.compile(bytes).map(drop)))
            .collect::<Result<_, _>>()?,
    );
    let policy = runtime.compile(bytes)?.configure("")?;
    let context: Arc<dyn ContextSource> = Arc::new(StaticContext::default());

    let sandboxed = fresh(&policy, &txs, &context)?;
    let mut fuel: Vec<u64> = txs
        .iter()
        .map(|tx| {
            policy
                .classify_blocking(tx, context.clone())
                .map(|d| d.fuel_used)
        })
        .collect::<Result<_, _>>()?;

    let native_txs: Vec<tiergate_policy::Transaction> =
        txs.iter().map(native::policy_view).collect();
    let native_ctx = testing::TestContext::new();
    // The sandbox and the native function decide alike, or nothing is timed.
    for (tx, native_tx) in txs.iter().zip(&native_txs) {
        let sandboxed = policy.classify_blocking(tx, context.clone())?;
        let native = testing::classify::<seed_tiers::SeedTiers>("", native_tx, &native_ctx)
            .map_err(anyhow::Error::msg)?;
        anyhow::ensure!(
            sandboxed.tier == native.tier && sandboxed.failure.is_none(),
            "{}: the sandbox decided {} ({:?}), native Rust {}",
            tx.id,
            sandboxed.tier,
            sandboxed.failure,
            native.tier
        );
    }
    let native_with = |config: &str| -> anyhow::Result<Vec<Duration>> {
        let mut native = Vec::with_capacity(rounds());
        for i in 0..rounds() {
            let tx = &native_txs[i % native_txs.len()];
            let start = Instant::now();
            let d = testing::classify::<seed_tiers::SeedTiers>(config, tx, &native_ctx)
                .map_err(anyhow::Error::msg)?;
            native.push(start.elapsed());
            std::hint::black_box(&d);
        }
        Ok(native)
    };
    let native = native_with("")?;

    // A tenant that writes out every key: the policy parses it on every call.
    let configured = runtime.compile(bytes)?.configure(FULL_CONFIG)?;
    let sandboxed_configured = fresh(&configured, &txs, &context)?;
    let native_configured = native_with(FULL_CONFIG)?;

    // The floor under any policy: a component that answers a constant.
    let floor = runtime.compile(&wat::parse_str(FLOOR)?)?.configure("")?;
    let floor_fresh = fresh(&floor, &txs, &context)?;
    let mut kept = floor.reused_instance()?;
    let mut floor_reused = Vec::with_capacity(rounds());
    for i in 0..rounds() {
        let start = Instant::now();
        let d = kept.classify(&txs[i % txs.len()], context.clone())?;
        floor_reused.push(start.elapsed());
        anyhow::ensure!(
            d.failure.is_none(),
            "the floor policy failed: {:?}",
            d.failure
        );
    }

    // seed-tiers in one instance, configured once: `classify` alone, which
    // is what a sandbox configured ahead of its payment runs at the call.
    let mut seed_kept = policy.reused_instance()?;
    let mut seed_reused = Vec::with_capacity(rounds());
    let mut classify_fuel = Vec::with_capacity(rounds());
    for i in 0..rounds() {
        let start = Instant::now();
        let d = seed_kept.classify(&txs[i % txs.len()], context.clone())?;
        seed_reused.push(start.elapsed());
        anyhow::ensure!(d.failure.is_none(), "seed-tiers failed: {:?}", d.failure);
        classify_fuel.push(d.fuel_used);
    }
    classify_fuel.sort_unstable();

    // Two threads (the machine's cores) classifying at once.
    let per_thread = rounds();
    let start = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| {
                for i in 0..per_thread {
                    policy
                        .classify_blocking(&txs[i % txs.len()], context.clone())
                        .expect("valid");
                }
            });
        }
    });
    let throughput = (2 * per_thread) as f64 / start.elapsed().as_secs_f64();

    let (sandboxed_median, sandboxed_p99) = (median(sandboxed.clone()), percentile(sandboxed, 99));
    let native_median = median(native);
    fuel.sort_unstable();
    let report = format!(
        "## One decision\n\n\
         Reproduce with `cargo bench -p tiergate-cli --bench classify` (release build). \
         Figures from one run on {cpu}, {cores} cores, {date}. \
         The workload is the reference article's six transactions, classified in turn by \
         `seed-tiers` with its default configuration ({rounds} decisions per figure).\n\n\
         | measure | value |\n|---|---:|\n\
         | compile and check the policy component (`Runtime::compile`, median of 5) | {compile} |\n\
         | load it precompiled from the compiled-policy cache, checked and ready (median of 20) | {load} |\n\
         | one decision in a fresh sandbox (`classify_blocking`), median | {sm} |\n\
         | one decision in a fresh sandbox, 99th percentile | {sp} |\n\
         | the same policy as native Rust (config parse + classify), median | {nm} |\n\
         | one decision in a fresh sandbox, every key of the configuration written out ({config_len} bytes of JSON), median | {scm} |\n\
         | the same as native Rust, median | {ncm} |\n\
         | sandbox cost relative to native | {ratio:.0}× |\n\
         | a policy that does nothing (`benches/classify/floor.wat`: one core instance, no imports, one page of memory, a constant answer) in a fresh sandbox, median | {ffm} |\n\
         | the same policy, one instance reused, median | {frm} |\n\
         | `seed-tiers` in one instance reused, configured once (`classify` alone), median | {srm} |\n\
         | decisions per second, 2 threads, fresh sandbox each | {tp:.0} |\n\
         | fuel per decision (min / median / max) | {fmin} / {fmed} / {fmax} |\n\
         | of which `classify` alone, the configuration read once by `configure` (min / median / max) | {cmin} / {cmed} / {cmax} |\n\n\
         A fresh store and instance per transaction is what isolation between calls and \
         tenants costs; the figures include validating the transaction, converting it to \
         the contract's types, reading the tenant's JSON configuration inside the policy \
         (its `configure`, contract 0.2.0), and checking the answer. A fresh instance reads \
         the configuration on every call, so a tenant's longer configuration costs on every \
         decision: the two configured rows hold the default values, written out. A sandbox \
         made ahead of its payment (`prepared_instances`) has read it before the call; \
         the instance reused and configured once shows what is left. The policy that does nothing shows \
         the floor under any policy: creating, calling and resetting a sandbox, and the \
         host's work around the call.\n",
        cpu = cpu_model(),
        cores = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1),
        date = today(),
        rounds = rounds(),
        compile = show(compile),
        load = show(load),
        sm = show(sandboxed_median),
        sp = show(sandboxed_p99),
        nm = show(native_median),
        config_len = FULL_CONFIG.len(),
        scm = show(median(sandboxed_configured)),
        ncm = show(median(native_configured)),
        ffm = show(median(floor_fresh)),
        frm = show(median(floor_reused)),
        srm = show(median(seed_reused)),
        cmin = classify_fuel[0],
        cmed = classify_fuel[classify_fuel.len() / 2],
        cmax = classify_fuel[classify_fuel.len() - 1],
        ratio = sandboxed_median.as_secs_f64() / native_median.as_secs_f64(),
        tp = throughput,
        fmin = fuel[0],
        fmed = fuel[fuel.len() / 2],
        fmax = fuel[fuel.len() - 1],
    );
    print!("{report}");
    report::write_section("classify", &report)?;
    Ok(())
}

/// Each decision's time, one fresh sandbox per decision, after a warm-up.
fn fresh(
    policy: &TenantPolicy,
    txs: &[Transaction],
    context: &Arc<dyn ContextSource>,
) -> anyhow::Result<Vec<Duration>> {
    for tx in txs {
        policy.classify_blocking(tx, context.clone())?;
    }
    let mut times = Vec::with_capacity(rounds());
    for i in 0..rounds() {
        let start = Instant::now();
        let d = policy.classify_blocking(&txs[i % txs.len()], context.clone())?;
        times.push(start.elapsed());
        anyhow::ensure!(d.failure.is_none(), "a decision failed: {:?}", d.failure);
    }
    Ok(times)
}

fn time<E>(f: impl FnOnce() -> Result<(), E>) -> Result<Duration, E> {
    let start = Instant::now();
    f()?;
    Ok(start.elapsed())
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort_unstable();
    v[v.len() / 2]
}
