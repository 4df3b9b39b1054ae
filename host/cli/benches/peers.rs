//! The `seed-tiers` rules (default configuration) decided four ways over one
//! fixed mix of transactions: as native Rust, as the tiergate component (a
//! fresh sandbox per decision, and one instance reused), as Cedar policies and
//! as a Rego module. Every engine must give native's tier on every
//! transaction before anything is timed.
//!
//! Run: `cargo bench -p tiergate-cli --bench peers`. Writes the figures to
//! `docs/benchmarks.md` (its own section; set `TIERGATE_BENCH_OUT` to write
//! elsewhere) and a chart to `benchmarks-peers.svg` beside it.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "a benchmark stops at its first failure"
)]

use std::collections::{HashMap, HashSet};
use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::{Context as _, anyhow, bail};
use cedar_policy::{
    Authorizer, Context as CedarContext, Decision as CedarDecision, Entities, Entity, EntityId,
    EntityTypeName, EntityUid, PolicySet, Request, RestrictedExpression,
};
use criterion::{Criterion, SamplingMode, Throughput};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use regorus::languages::rego::compiler::Compiler;
use regorus::rvm::RegoVM;
use tiergate_policy::testing;
use tiergate_runtime::{
    ActivityAnswer, ActivityFilter, ContextSource, Decimal, RecipientTrust, Runtime, SandboxLimits,
    StaticContext, TenantPolicy, Tier, Transaction, Window,
};

#[path = "native/mod.rs"]
mod native;
#[path = "report/mod.rs"]
#[allow(dead_code)]
mod report;

const CEDAR_POLICIES: &str = include_str!("peers/seed-tiers.cedar");
const REGO_MODULE: &str = include_str!("peers/seed-tiers.rego");
const REGO_RULE: &str = "data.tiergate.seed_tiers.tier";
const FLOOR_POLICY: &str = include_str!("classify/floor.wat");
const CARGO_LOCK: &str = include_str!("../../../Cargo.lock");

/// Transactions in the mix, and the seed that makes it.
const MIX_SIZE: usize = 1_000;
const SEED: u64 = 0x5eed_7135;

const GROUP: &str = "peers";
const NATIVE: &str = "native";
const FRESH: &str = "tiergate fresh";
const REUSED: &str = "tiergate reused";
/// Not the rules: a policy that answers a constant, the floor under any policy.
const FLOOR: &str = "tiergate floor";
/// Sandboxes made ahead of their call (the default), not made at it.
const AHEAD: &str = "tiergate made ahead";
const FLOOR_AHEAD: &str = "tiergate floor made ahead";
const CEDAR_BUILD: &str = "cedar build";
const CEDAR_PREBUILT: &str = "cedar prebuilt";
const REGO_INTERPRETER: &str = "regorus interpreter";
const REGO_RVM: &str = "regorus rvm";
const ENGINES: [&str; 8] = [
    NATIVE,
    FRESH,
    REUSED,
    FLOOR,
    CEDAR_BUILD,
    CEDAR_PREBUILT,
    REGO_INTERPRETER,
    REGO_RVM,
];

/// The agent's recent payments per tier, as the policy asks for them
/// (`seed-tiers` defaults: autonomous and supervised over one hour,
/// collaborative over 24 hours).
#[derive(Debug, Clone, Copy, Default)]
struct Recent {
    autonomous_1h: u64,
    supervised_1h: u64,
    collaborative_24h: u64,
}

/// One transaction of the mix, in each engine's form.
struct Case {
    tx: Transaction,
    recent: Recent,
    context: Arc<dyn ContextSource>,
    native_tx: tiergate_policy::Transaction,
    native_ctx: testing::TestContext,
    cedar: (Request, Entities),
    rego_input: regorus::Value,
}

/// What Cedar requests share: built once.
struct CedarNames {
    agent: EntityTypeName,
    payment: EntityTypeName,
    pay: EntityUid,
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let timing = args.iter().any(|a| a == "--bench")
        && !args
            .iter()
            .any(|a| a == "--test" || a == "--list" || a == "--profile-time");

    // The engines, each set up outside the timing.
    let names = CedarNames {
        agent: "Agent".parse()?,
        payment: "Payment".parse()?,
        pay: r#"Action::"pay""#.parse()?,
    };
    let cases: Vec<Case> = mix()
        .into_iter()
        .map(|(tx, recent)| case(&names, tx, recent))
        .collect::<anyhow::Result<_>>()?;

    // The policy's own defaults, as the SDK merges them under a tenant's.
    let native_policy: seed_tiers::SeedTiers =
        <seed_tiers::SeedTiers as tiergate_policy::Policy>::DEFAULTS
            .parse("{}")
            .map_err(|e| anyhow!("seed-tiers' defaults: {e}"))?;
    tiergate_policy::Policy::validate(&native_policy).map_err(anyhow::Error::msg)?;

    let bytes = tiergate_cli::bundled::get("seed-tiers").context("seed-tiers is bundled")?;
    // Every sandbox made at its call (the default, said here because the
    // low-load table below sets this beside sandboxes made ahead).
    let runtime = Runtime::with_limits(SandboxLimits {
        prepared_instances: 0,
        ..SandboxLimits::default()
    })?;
    let policy = runtime.compile(bytes)?.configure("")?;
    let mut reused = policy.reused_instance()?;
    let floor_bytes = wat::parse_str(FLOOR_POLICY)?;
    let floor = runtime.compile(&floor_bytes)?.configure("")?;
    let ahead_runtime = Runtime::with_limits(SandboxLimits {
        prepared_instances: PREPARED,
        ..SandboxLimits::default()
    })?;
    let ahead = ahead_runtime.compile(bytes)?.configure("")?;
    let floor_ahead = ahead_runtime.compile(&floor_bytes)?.configure("")?;

    let authorizer = cedar_policy::Authorizer::new();
    let policies = PolicySet::from_str(CEDAR_POLICIES).map_err(|e| anyhow!("{e:?}"))?;

    let mut rego = regorus::Engine::new();
    rego.add_policy("seed-tiers.rego".into(), REGO_MODULE.into())?;
    let compiled = rego.compile_with_entrypoint(&REGO_RULE.into())?;
    let program = Compiler::compile_from_policy(&compiled, &[REGO_RULE])?;
    let mut vm = RegoVM::new();
    vm.load_program(program);

    let mut native = |c: &Case| -> Result<Tier, String> {
        Ok(tiergate_policy::Policy::classify(&native_policy, &c.native_tx, &c.native_ctx).tier)
    };
    let mut fresh = |c: &Case| -> Result<Tier, String> {
        let d = policy
            .classify_blocking(&c.tx, c.context.clone())
            .map_err(|e| e.to_string())?;
        sandboxed_tier(&d)
    };
    let mut reuse = |c: &Case| -> Result<Tier, String> {
        let d = reused
            .classify(&c.tx, c.context.clone())
            .map_err(|e| e.to_string())?;
        sandboxed_tier(&d)
    };
    let mut floor_fresh = |c: &Case| -> Result<Tier, String> {
        let d = floor
            .classify_blocking(&c.tx, c.context.clone())
            .map_err(|e| e.to_string())?;
        sandboxed_tier(&d)
    };
    let mut cedar_build = |c: &Case| -> Result<Tier, String> {
        let (request, entities) = cedar_request(&names, &c.tx, c.recent)?;
        cedar_tier(&authorizer, &policies, &request, &entities)
    };
    let mut cedar_prebuilt = |c: &Case| -> Result<Tier, String> {
        cedar_tier(&authorizer, &policies, &c.cedar.0, &c.cedar.1)
    };
    let mut rego_interpreter = |c: &Case| -> Result<Tier, String> {
        rego.set_input(c.rego_input.clone());
        let v = rego
            .eval_rule(REGO_RULE.to_string())
            .map_err(|e| e.to_string())?;
        rego_tier(&v)
    };
    let mut rego_rvm = |c: &Case| -> Result<Tier, String> {
        vm.set_input(c.rego_input.clone());
        let v = vm.execute().map_err(|e| e.to_string())?;
        rego_tier(&v)
    };

    // Every engine agrees with native on every transaction, or nothing is timed.
    let expected: Vec<Tier> = cases
        .iter()
        .map(&mut native)
        .collect::<Result<_, _>>()
        .map_err(anyhow::Error::msg)?;
    let coverage = coverage(&native_policy, &cases, &expected)?;
    agree(FRESH, &cases, &expected, &mut fresh)?;
    agree(AHEAD, &cases, &expected, &mut |c: &Case| {
        let d = ahead
            .classify_blocking(&c.tx, c.context.clone())
            .map_err(|e| e.to_string())?;
        sandboxed_tier(&d)
    })?;
    agree(REUSED, &cases, &expected, &mut reuse)?;
    agree(CEDAR_BUILD, &cases, &expected, &mut cedar_build)?;
    agree(CEDAR_PREBUILT, &cases, &expected, &mut cedar_prebuilt)?;
    agree(REGO_INTERPRETER, &cases, &expected, &mut rego_interpreter)?;
    agree(REGO_RVM, &cases, &expected, &mut rego_rvm)?;
    eprintln!(
        "all {} engines agree with native on all {} transactions ({coverage})",
        ENGINES.len() - 2,
        cases.len()
    );

    if report::quick() {
        eprintln!("quick run of the peers bench: every check passed; nothing was timed");
        return Ok(());
    }
    if timing {
        let low = {
            let mut engines: Vec<(&str, Engine<'_>)> = vec![
                (NATIVE, Box::new(&mut native)),
                (AHEAD, Box::new(sandboxed(&ahead))),
                (FRESH, Box::new(&mut fresh)),
                (FLOOR_AHEAD, Box::new(sandboxed(&floor_ahead))),
                (FLOOR, Box::new(&mut floor_fresh)),
                (CEDAR_PREBUILT, Box::new(&mut cedar_prebuilt)),
                (REGO_RVM, Box::new(&mut rego_rvm)),
            ];
            let before = ahead_runtime.prepared_counts();
            let times = at_low_load(&cases, &mut engines)?;
            let after = ahead_runtime.prepared_counts();
            (
                times,
                after.taken - before.taken,
                after.made_at_call - before.made_at_call,
            )
        };
        let saturated = at_saturation(&cases, &ahead, &policy)?;
        let report = low_load_report(&low, &saturated, cases.len());
        print!("{report}");
        report::write_section("low-load", &report)?;
        if std::env::var("TIERGATE_BENCH_ONLY").as_deref() == Ok("low-load") {
            return Ok(());
        }
    }

    let out_dir = criterion_dir();
    let started = SystemTime::now();
    let mut criterion = Criterion::default()
        .output_directory(&out_dir)
        .without_plots()
        .configure_from_args();
    {
        let mut group = criterion.benchmark_group(GROUP);
        group
            .sampling_mode(SamplingMode::Flat)
            .sample_size(20)
            .warm_up_time(Duration::from_secs(2))
            .measurement_time(Duration::from_secs(6))
            .throughput(Throughput::Elements(cases.len() as u64));
        let counts = [
            (NATIVE, bench(&mut group, NATIVE, &cases, &mut native)),
            (FRESH, bench(&mut group, FRESH, &cases, &mut fresh)),
            (REUSED, bench(&mut group, REUSED, &cases, &mut reuse)),
            (FLOOR, bench(&mut group, FLOOR, &cases, &mut floor_fresh)),
            (
                CEDAR_BUILD,
                bench(&mut group, CEDAR_BUILD, &cases, &mut cedar_build),
            ),
            (
                CEDAR_PREBUILT,
                bench(&mut group, CEDAR_PREBUILT, &cases, &mut cedar_prebuilt),
            ),
            (
                REGO_INTERPRETER,
                bench(&mut group, REGO_INTERPRETER, &cases, &mut rego_interpreter),
            ),
            (REGO_RVM, bench(&mut group, REGO_RVM, &cases, &mut rego_rvm)),
        ];
        group.finish();
        // A failure can be much faster than a decision (a reused instance out
        // of memory fails at its first allocation): a run where an engine
        // failed more than now and then (a deadline missed on a busy
        // machine) does not time decisions.
        for (name, (calls, failed)) in counts {
            if failed * 1000 > calls {
                anyhow::bail!(
                    "`{name}` failed {failed} of {calls} timed decisions; nothing reported"
                );
            }
        }
    }
    criterion.final_summary();

    if !timing {
        return Ok(());
    }
    let mut medians = Vec::new();
    for name in ENGINES {
        let path = out_dir
            .join(GROUP)
            .join(name)
            .join("new")
            .join("estimates.json");
        match median_ns(&path, started)? {
            Some(ns) => medians.push((name, ns / cases.len() as f64)),
            None => {
                eprintln!("`{name}` was not measured in this run: the report is left as it was");
                return Ok(());
            }
        }
    }
    let report = report_text(&medians, &coverage, cases.len());
    print!("{report}");
    report::write_section("peers", &report)?;
    let svg_path = report_dir().join("benchmarks-peers.svg");
    std::fs::write(&svg_path, svg(&medians))?;
    eprintln!("wrote {}", svg_path.display());
    Ok(())
}

type Engine<'a> = Box<dyn FnMut(&Case) -> Result<Tier, String> + 'a>;

/// A tenant policy's decision, as the other engines give theirs.
fn sandboxed(policy: &TenantPolicy) -> impl FnMut(&Case) -> Result<Tier, String> + '_ {
    move |c: &Case| {
        let d = policy
            .classify_blocking(&c.tx, c.context.clone())
            .map_err(|e| e.to_string())?;
        sandboxed_tier(&d)
    }
}

/// Sandboxes kept made ahead in the made-ahead runtime.
const PREPARED: u32 = 32;

/// Rounds of the whole mix at low load.
const LOW_LOAD_ROUNDS: usize = 3;
/// The pause after each decision at low load: time for the background work
/// a decision leaves (tearing down its sandbox, making the next) to finish.
const PAUSE: Duration = Duration::from_micros(300);
/// How long each mode runs at saturation, and how many times each.
const SATURATED_FOR: Duration = Duration::from_secs(3);
const SATURATED_RUNS: usize = 3;

/// One caller, a pause before every decision, each decision timed alone:
/// each engine decides the whole mix in turn, round after round, so the
/// machine's drift falls on every engine alike.
fn at_low_load(
    cases: &[Case],
    engines: &mut [(&str, Engine<'_>)],
) -> anyhow::Result<Vec<(String, Vec<Duration>)>> {
    let mut times: Vec<Vec<Duration>> = vec![Vec::new(); engines.len()];
    for _ in 0..LOW_LOAD_ROUNDS {
        for ((name, decide), times) in engines.iter_mut().zip(&mut times) {
            for c in cases {
                pause();
                let start = std::time::Instant::now();
                let decided = black_box(decide(black_box(c)));
                times.push(start.elapsed());
                decided.map_err(|e| anyhow!("`{name}` failed at low load: {e}"))?;
            }
        }
    }
    Ok(engines
        .iter()
        .zip(times)
        .map(|((name, _), t)| (name.to_string(), t))
        .collect())
}

/// Waits [`PAUSE`] on the core, spinning: a sleeping caller would let the
/// virtual machine park its core, and time waking it up, not deciding.
fn pause() {
    let start = std::time::Instant::now();
    while start.elapsed() < PAUSE {
        std::hint::spin_loop();
    }
}

/// Decisions per second with as many callers as cores and no pauses, made
/// ahead and made at the call alternately: the runs of each mode.
fn at_saturation(
    cases: &[Case],
    ahead: &TenantPolicy,
    at_call: &TenantPolicy,
) -> anyhow::Result<Vec<(&'static str, Vec<f64>)>> {
    let callers = std::thread::available_parallelism().map_or(2, |n| n.get());
    let mut runs = vec![(AHEAD, Vec::new()), (FRESH, Vec::new())];
    for _ in 0..SATURATED_RUNS {
        for (mode, policy) in [(0, ahead), (1, at_call)] {
            let start = std::time::Instant::now();
            let decided: u64 = std::thread::scope(|s| {
                let threads: Vec<_> = (0..callers)
                    .map(|k| {
                        s.spawn(move || {
                            let mut n = 0u64;
                            while start.elapsed() < SATURATED_FOR {
                                let c = &cases[(n as usize * callers + k) % cases.len()];
                                let d = policy.classify_blocking(&c.tx, c.context.clone());
                                if d.is_ok_and(|d| d.failure.is_none()) {
                                    n += 1;
                                }
                            }
                            n
                        })
                    })
                    .collect();
                threads.into_iter().map(|t| t.join().unwrap_or(0)).sum()
            });
            runs[mode]
                .1
                .push(decided as f64 / start.elapsed().as_secs_f64());
        }
    }
    Ok(runs)
}

/// Each engine's times at low load, and how many of the made-ahead calls
/// found a sandbox made ahead and how many made their own.
type LowLoad = (Vec<(String, Vec<Duration>)>, u64, u64);

fn low_load_report(
    (low, taken, at_call): &LowLoad,
    saturated: &[(&str, Vec<f64>)],
    mix: usize,
) -> String {
    let mut table = String::from("| engine / mode | p50 | p99 |\n|---|---:|---:|\n");
    for (name, times) in low {
        table.push_str(&format!(
            "| {name} | {} | {} |\n",
            report::show(report::percentile(times.clone(), 50)),
            report::show(report::percentile(times.clone(), 99)),
        ));
    }
    let mut sat =
        String::from("| sandboxes | decisions per second, each run | median |\n|---|---|---:|\n");
    for (name, runs) in saturated {
        let mut sorted = runs.clone();
        sorted.sort_by(f64::total_cmp);
        let each: Vec<String> = runs.iter().map(|r| format!("{r:.0}")).collect();
        sat.push_str(&format!(
            "| {name} | {} | {:.0} |\n",
            each.join(", "),
            sorted[sorted.len() / 2]
        ));
    }
    format!(
        "## A decision at low load, sandboxes made ahead\n\n\
         Reproduce with `TIERGATE_BENCH_ONLY=low-load cargo bench -p tiergate-cli --bench peers` \
         (the whole peers bench also writes it). One run on {cpu}, {cores} cores, {date}. \
         One caller decides the peer comparison's {mix} transactions with each engine in turn, \
         {rounds} rounds, spinning {pause} µs after each decision (a sleeping caller lets the virtual machine park its core, and times the wake-up) so the work a \
         decision leaves behind (tearing its sandbox down, making the next) is done before the \
         next arrives; each decision is timed alone, as its caller sees it.\n\n\
         {table}\n\
         - `tiergate made ahead`: `classify_blocking` with `prepared_instances = {prepared}`: \
         the sandbox was made before the payment arrived, on a thread that runs only when a \
         core is idle, and is torn down there after the answer. `tiergate fresh`: the same \
         with `prepared_instances = 0`, every sandbox made and torn down by its call. The floor \
         rows are the policy that answers a constant, the same two ways.\n\
         - At low load, {taken} of the made-ahead calls found a sandbox made ahead and {at_call} \
         made their own.\n\n\
         At saturation ({callers} callers, as many as cores, no pauses, {secs} s a run, the two \
         modes alternating), with the same mix:\n\n\
         {sat}",
        cpu = report::cpu_model(),
        cores = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1),
        callers = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1),
        date = report::today(),
        rounds = LOW_LOAD_ROUNDS,
        pause = PAUSE.as_micros(),
        secs = SATURATED_FOR.as_secs(),
        prepared = PREPARED,
        taken = taken,
        at_call = at_call,
    )
}

/// Times `decide` over the whole mix; criterion's figure is per mix.
/// Returns how many decisions were timed and how many of them failed.
fn bench(
    group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    name: &str,
    cases: &[Case],
    decide: &mut impl FnMut(&Case) -> Result<Tier, String>,
) -> (u64, u64) {
    let (mut calls, mut failed) = (0, 0);
    group.bench_function(name, |b| {
        b.iter(|| {
            for c in cases {
                calls += 1;
                if black_box(decide(black_box(c))).is_err() {
                    failed += 1;
                }
            }
        })
    });
    (calls, failed)
}

/// Fails on the first transaction where `engine` does not give `expected`.
fn agree(
    engine: &str,
    cases: &[Case],
    expected: &[Tier],
    decide: &mut impl FnMut(&Case) -> Result<Tier, String>,
) -> anyhow::Result<()> {
    for (c, want) in cases.iter().zip(expected) {
        match decide(c) {
            Ok(got) if got == *want => {}
            Ok(got) => bail!(
                "`{engine}` disagrees with native on {}: native says {want}, `{engine}` says {got}",
                describe(c)
            ),
            Err(e) => bail!(
                "`{engine}` failed on {} (native says {want}): {e}",
                describe(c)
            ),
        }
    }
    Ok(())
}

fn describe(c: &Case) -> String {
    let tx = &c.tx;
    format!(
        "transaction {} ({} {} to a {} recipient, jurisdiction {}; recent autonomous/1h {}, \
         supervised/1h {}, collaborative/24h {})",
        tx.id,
        tx.amount,
        tx.category,
        tx.recipient_trust,
        tx.jurisdiction.as_deref().unwrap_or("none"),
        c.recent.autonomous_1h,
        c.recent.supervised_1h,
        c.recent.collaborative_24h,
    )
}

/// What the mix covers: transactions per tier, and how many a frequency cap
/// escalated (native would have given a looser tier without that count).
/// Fails when a tier or a cap is missing.
fn coverage(
    policy: &seed_tiers::SeedTiers,
    cases: &[Case],
    expected: &[Tier],
) -> anyhow::Result<String> {
    let tiers: Vec<usize> = Tier::ALL
        .iter()
        .map(|t| expected.iter().filter(|e| *e == t).count())
        .collect();
    let caps = [
        (Tier::Autonomous, Window::hours(1)),
        (Tier::Supervised, Window::hours(1)),
        (Tier::Collaborative, Window::hours(24)),
    ];
    let mut escalated = [0usize; 3];
    for (c, tier) in cases.iter().zip(expected) {
        for (i, (capped, window)) in caps.iter().enumerate() {
            let without = native_ctx(c.recent).with_tier_count(*window, *capped, 0);
            let looser = tiergate_policy::Policy::classify(policy, &c.native_tx, &without).tier;
            if looser < *tier {
                escalated[i] += 1;
            }
        }
    }
    let text = format!(
        "{} autonomous, {} supervised, {} collaborative, {} prohibited; \
         escalated by a frequency cap: {} past the autonomous cap, {} past the supervised cap, \
         {} past the collaborative cap",
        tiers[0], tiers[1], tiers[2], tiers[3], escalated[0], escalated[1], escalated[2]
    );
    if tiers.contains(&0) || escalated.contains(&0) {
        bail!("the mix must cover every tier and every frequency cap: {text}");
    }
    Ok(text)
}

/// The fixed mix: every tier, the amount limits' edges, every prohibition and
/// every frequency cap, from one seed.
fn mix() -> Vec<(Transaction, Recent)> {
    const CATEGORIES: [(&str, u32); 13] = [
        ("embeddings", 18),
        ("search", 12),
        ("api_calls", 12),
        ("compute", 10),
        ("data_access", 8),
        ("saas_tools", 6),
        ("agent_hire", 10),
        ("service_procurement", 6),
        ("subscription", 6),
        ("travel", 5),
        ("gambling", 4),
        ("unverified_agents", 2),
        ("sanctioned_jurisdictions", 1),
    ];
    let total: u32 = CATEGORIES.iter().map(|(_, w)| w).sum();
    let mut rng = StdRng::seed_from_u64(SEED);
    (0..MIX_SIZE)
        .map(|i| {
            let mut pick = rng.random_range(0..total);
            let category = CATEGORIES
                .iter()
                .find(|(_, w)| {
                    let hit = pick < *w;
                    pick = pick.saturating_sub(*w);
                    hit
                })
                .map(|(c, _)| *c)
                .expect("a category");
            // Amounts in cents: mostly small for metered calls, some on the
            // limits' edges.
            let small = if ["embeddings", "search", "api_calls"].contains(&category) {
                75
            } else {
                25
            };
            let cents: i64 = if rng.random_range(0..100) < small {
                rng.random_range(1..=100)
            } else {
                match rng.random_range(0..100) {
                    0..12 => [100, 101, 5_000, 5_001, 500_000, 500_001][rng.random_range(0..6)],
                    12..60 => rng.random_range(101..=5_000),
                    60..92 => rng.random_range(5_001..=500_000),
                    _ => rng.random_range(500_001..=2_000_000),
                }
            };
            let trust = match rng.random_range(0..100) {
                0..55 => "verified",
                55..92 => "known",
                _ => "unknown",
            };
            let jurisdiction = match rng.random_range(0..100) {
                0..78 => None,
                78..94 => Some(["DE", "FR", "US", "SG"][rng.random_range(0..4)]),
                _ => Some(["KP", "IR", "SY"][rng.random_range(0..3)]),
            };
            let recent = Recent {
                autonomous_1h: match rng.random_range(0..100) {
                    0..82 => rng.random_range(0..990),
                    82..88 => 999,
                    88..94 => 1_000,
                    _ => rng.random_range(1_001..3_000),
                },
                supervised_1h: match rng.random_range(0..100) {
                    0..78 => rng.random_range(0..19),
                    78..85 => 19,
                    85..91 => 20,
                    _ => rng.random_range(21..60),
                },
                collaborative_24h: match rng.random_range(0..100) {
                    0..72 => rng.random_range(0..4),
                    72..82 => 4,
                    82..90 => 5,
                    _ => rng.random_range(6..15),
                },
            };
            let mut json = serde_json::json!({
                "id": format!("tx-{i:04}"),
                "tenant": "bench",
                "agent": format!("agent-{}", rng.random_range(0..8)),
                "amount": Decimal::new(cents, 2).to_string(),
                "currency": "USDC",
                "category": category,
                "recipient": format!("recipient-{}.example", rng.random_range(0..50)),
                "recipient_trust": trust,
            });
            if let Some(j) = jurisdiction {
                json["jurisdiction"] = j.into();
            }
            let tx = Transaction::from_json(&json.to_string(), 1_782_518_400_000)
                .expect("the mix's transactions are valid");
            (tx, recent)
        })
        .collect()
}

/// One transaction in each engine's form.
fn case(names: &CedarNames, tx: Transaction, recent: Recent) -> anyhow::Result<Case> {
    let answer = |window, tier, count| ActivityAnswer {
        window,
        filter: ActivityFilter::Tier(tier),
        count,
        total: Decimal::ZERO,
    };
    let context: Arc<dyn ContextSource> = Arc::new(StaticContext {
        activity: vec![
            answer(Window::hours(1), Tier::Autonomous, recent.autonomous_1h),
            answer(Window::hours(1), Tier::Supervised, recent.supervised_1h),
            answer(
                Window::hours(24),
                Tier::Collaborative,
                recent.collaborative_24h,
            ),
        ],
        ..StaticContext::default()
    });
    let cedar = cedar_request(names, &tx, recent).map_err(anyhow::Error::msg)?;
    let mut input = serde_json::json!({
        "amount": serde_json::Number::from_str(&tx.amount.to_string())?,
        "category": tx.category,
        "recipient_trust": trust_name(tx.recipient_trust),
        "recent": {
            "autonomous_1h": recent.autonomous_1h,
            "supervised_1h": recent.supervised_1h,
            "collaborative_24h": recent.collaborative_24h,
        },
    });
    if let Some(j) = &tx.jurisdiction {
        input["jurisdiction"] = j.as_str().into();
    }
    let rego_input = regorus::Value::from_json_str(&input.to_string())?;
    Ok(Case {
        native_tx: native::policy_view(&tx),
        native_ctx: native_ctx(recent),
        context,
        cedar,
        rego_input,
        tx,
        recent,
    })
}

fn native_ctx(recent: Recent) -> testing::TestContext {
    testing::TestContext::new()
        .with_tier_count(Window::hours(1), Tier::Autonomous, recent.autonomous_1h)
        .with_tier_count(Window::hours(1), Tier::Supervised, recent.supervised_1h)
        .with_tier_count(
            Window::hours(24),
            Tier::Collaborative,
            recent.collaborative_24h,
        )
}

fn trust_name(trust: RecipientTrust) -> &'static str {
    match trust {
        RecipientTrust::Unknown => "unknown",
        RecipientTrust::Known => "known",
        RecipientTrust::Verified => "verified",
    }
}

/// The tier of a sandboxed decision; a policy failure is an error here.
fn sandboxed_tier(d: &tiergate_runtime::Decision) -> Result<Tier, String> {
    match &d.failure {
        None => Ok(d.tier),
        Some(f) => Err(format!("the policy failed: {f:?}")),
    }
}

/// The Cedar request for `tx`: the payment is the resource entity, the
/// recent counts are the context.
fn cedar_request(
    names: &CedarNames,
    tx: &Transaction,
    recent: Recent,
) -> Result<(Request, Entities), String> {
    let principal = EntityUid::from_type_name_and_id(names.agent.clone(), EntityId::new(&tx.agent));
    let resource = EntityUid::from_type_name_and_id(names.payment.clone(), EntityId::new(&tx.id));
    let mut attrs = HashMap::with_capacity(4);
    attrs.insert(
        "amount".to_string(),
        RestrictedExpression::new_decimal(cedar_decimal(tx.amount)?),
    );
    attrs.insert(
        "category".to_string(),
        RestrictedExpression::new_string(tx.category.clone()),
    );
    attrs.insert(
        "recipient_trust".to_string(),
        RestrictedExpression::new_string(trust_name(tx.recipient_trust).to_string()),
    );
    if let Some(j) = &tx.jurisdiction {
        attrs.insert(
            "jurisdiction".to_string(),
            RestrictedExpression::new_string(j.clone()),
        );
    }
    let payment =
        Entity::new(resource.clone(), attrs, HashSet::new()).map_err(|e| e.to_string())?;
    let entities = Entities::from_entities([payment], None).map_err(|e| e.to_string())?;
    let count = |n: u64| RestrictedExpression::new_long(n.min(i64::MAX as u64) as i64);
    let context = CedarContext::from_pairs([
        (
            "autonomous_last_1h".to_string(),
            count(recent.autonomous_1h),
        ),
        (
            "supervised_last_1h".to_string(),
            count(recent.supervised_1h),
        ),
        (
            "collaborative_last_24h".to_string(),
            count(recent.collaborative_24h),
        ),
    ])
    .map_err(|e| e.to_string())?;
    let request = Request::new(principal, names.pay.clone(), resource, context, None)
        .map_err(|e| e.to_string())?;
    Ok((request, entities))
}

/// An amount as Cedar's `decimal` reads it: a "." and at most four decimals.
fn cedar_decimal(amount: Decimal) -> Result<String, String> {
    let d = amount.normalize();
    match d.scale() {
        0 => Ok(format!("{d}.0")),
        1..=4 => Ok(d.to_string()),
        _ => Err(format!(
            "{amount} has more decimals than Cedar's decimal holds"
        )),
    }
}

/// One `is_authorized` call: a forbid, or no permit, is prohibited;
/// otherwise the determining permit with the least oversight gives the tier.
fn cedar_tier(
    authorizer: &Authorizer,
    policies: &PolicySet,
    request: &Request,
    entities: &Entities,
) -> Result<Tier, String> {
    let response = authorizer.is_authorized(request, policies, entities);
    if let Some(e) = response.diagnostics().errors().next() {
        return Err(format!("a Cedar policy failed: {e}"));
    }
    match response.decision() {
        CedarDecision::Deny => Ok(Tier::Prohibited),
        CedarDecision::Allow => {
            let mut tier = None;
            for id in response.diagnostics().reason() {
                let t: Tier = policies
                    .annotation(id, "tier")
                    .ok_or_else(|| format!("Cedar policy {id} has no @tier"))?
                    .parse()?;
                tier = Some(tier.map_or(t, |old: Tier| old.min(t)));
            }
            tier.ok_or_else(|| "Cedar allowed with no determining policy".to_string())
        }
    }
}

fn rego_tier(v: &regorus::Value) -> Result<Tier, String> {
    v.as_string()
        .map_err(|_| format!("the Rego rule gave {v}, not a tier"))?
        .parse()
}

/// Where criterion writes: what it would choose itself, named explicitly so
/// the report can read it back.
fn criterion_dir() -> PathBuf {
    if let Some(home) = std::env::var_os("CRITERION_HOME") {
        return PathBuf::from(home);
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target"));
    target.join("criterion")
}

/// The folder of the report file (`TIERGATE_BENCH_OUT` or `docs/`).
fn report_dir() -> PathBuf {
    std::env::var_os("TIERGATE_BENCH_OUT")
        .map(PathBuf::from)
        .and_then(|p| p.parent().map(Path::to_path_buf))
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs"))
}

/// Criterion's median time per iteration in ns, when written by this run.
fn median_ns(path: &Path, since: SystemTime) -> anyhow::Result<Option<f64>> {
    let Ok(meta) = std::fs::metadata(path) else {
        return Ok(None);
    };
    if meta.modified()? < since {
        return Ok(None);
    }
    let estimates: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path)?)?;
    let ns = estimates["median"]["point_estimate"]
        .as_f64()
        .with_context(|| format!("no median in {}", path.display()))?;
    Ok(Some(ns))
}

/// The version of `package` in Cargo.lock.
fn locked_version(package: &str) -> String {
    let name = format!("name = \"{package}\"");
    let mut lines = CARGO_LOCK.lines();
    while let Some(line) = lines.next() {
        if line == name
            && let Some(v) = lines.next().and_then(|l| l.strip_prefix("version = "))
        {
            return v.trim_matches('"').to_string();
        }
    }
    "?".into()
}

fn report_text(medians: &[(&str, f64)], coverage: &str, mix: usize) -> String {
    let of = |name: &str| {
        medians
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, ns)| *ns)
            .expect("every engine was measured")
    };
    let (native, fresh) = (of(NATIVE), of(FRESH));
    let mut table = String::from(
        "| engine / mode | median ns per decision | × native | × tiergate fresh |\n|---|---:|---:|---:|\n",
    );
    for (name, ns) in medians {
        table.push_str(&format!(
            "| {name} | {} | {} | {} |\n",
            thousands(*ns),
            ratio(ns / native),
            ratio(ns / fresh),
        ));
    }
    format!(
        "## Peer comparison\n\n\
         Reproduce with `cargo bench -p tiergate-cli --bench peers`. One run on {cpu}, {cores} cores, \
         {date}; wasmtime {wasmtime}, cedar-policy {cedar}, regorus {regorus}. \
         The same rules, `seed-tiers` with its default configuration, decide a fixed mix of \
         {mix} generated transactions (seed {seed:#x}): {coverage}. Each transaction comes with \
         the agent's recent payment counts, and every engine is given the same counts. Before \
         timing, every engine gave native's tier on every transaction. Figures are criterion's \
         median time over the whole mix divided by {mix}.\n\n\
         {table}\n\
         ![Per-decision cost by engine, log scale](benchmarks-peers.svg)\n\n\
         - `native`: the policy's Rust code called directly, configuration parsed beforehand.\n\
         - `tiergate fresh`: `classify_blocking`, a fresh sandbox per decision, as the host \
         runs policies. `tiergate reused`: one instance kept across calls, which the host \
         never does; it shows what the fresh instance costs. `tiergate floor`: a policy \
         that decides nothing (`host/benches/classify/floor.wat`: a constant answer, one core \
         instance, no imports, one page of memory) in a fresh sandbox per decision, the \
         least any policy costs there; it is not checked against native.\n\
         - `cedar build`: the payment entity, context and request built per decision, then one \
         `is_authorized`; `cedar prebuilt`: requests and entities built beforehand. A `forbid` \
         is prohibited; otherwise the applicable permit with the least oversight (its `@tier` \
         annotation) gives the tier.\n\
         - `regorus interpreter`: `Engine::eval_rule`; `regorus rvm`: the module compiled to \
         regorus's bytecode VM (`compile_with_entrypoint`, `Compiler::compile_from_policy`, \
         `RegoVM::execute`). Both get input values built beforehand.\n\n\
         `native` and both tiergate modes also write each decision's reasons and suggestion \
         (formatted messages); Cedar and Rego return the tier only. Against each peer's fastest \
         mode, `tiergate fresh` takes {cedar_ratio} the time of `cedar prebuilt` and \
         {rvm_ratio} the time of `regorus rvm`; the policy that decides nothing takes \
         {floor_ratio} the time of `regorus rvm`. The Cedar policies and the Rego module are in \
         `host/benches/peers/`.\n",
        cpu = report::cpu_model(),
        cores = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1),
        date = report::today(),
        wasmtime = locked_version("wasmtime"),
        cedar = locked_version("cedar-policy"),
        regorus = locked_version("regorus"),
        seed = SEED,
        cedar_ratio = ratio(fresh / of(CEDAR_PREBUILT)),
        rvm_ratio = ratio(fresh / of(REGO_RVM)),
        floor_ratio = ratio(of(FLOOR) / of(REGO_RVM)),
    )
}

/// `12,345` for ns figures.
fn thousands(ns: f64) -> String {
    let digits = format!("{:.0}", ns);
    let mut out = String::new();
    for (i, ch) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

fn ratio(r: f64) -> String {
    if r >= 100.0 {
        format!("{}×", thousands(r))
    } else if r >= 10.0 {
        format!("{r:.0}×")
    } else if r >= 1.0 {
        format!("{r:.1}×")
    } else if r >= 0.01 {
        format!("{r:.2}×")
    } else {
        format!("{r:.4}×")
    }
}

fn duration_label(ns: f64) -> String {
    if ns >= 1e6 {
        format!("{:.1} ms", ns / 1e6)
    } else if ns >= 1e3 {
        format!("{:.1} µs", ns / 1e3)
    } else {
        format!("{ns:.0} ns")
    }
}

/// `100 ns`, `1 µs`, ... for the power of ten `decade` in ns.
fn decade_label(decade: i32) -> String {
    let (unit, base) = match decade {
        ..3 => ("ns", 0),
        3..6 => ("µs", 3),
        6..9 => ("ms", 6),
        _ => ("s", 9),
    };
    format!("{} {unit}", 10u64.pow((decade - base).max(0) as u32))
}

/// A horizontal bar chart of the medians on a log scale.
fn svg(medians: &[(&str, f64)]) -> String {
    const WIDTH: f64 = 760.0;
    const LEFT: f64 = 200.0;
    const RIGHT: f64 = 90.0;
    const TOP: f64 = 48.0;
    const ROW: f64 = 30.0;
    let plot = WIDTH - LEFT - RIGHT;
    // Room below the fastest, so its bar stays visible.
    let fastest = medians.iter().map(|m| m.1).fold(f64::INFINITY, f64::min);
    let lo = (fastest * 0.3).log10().floor();
    let hi = medians
        .iter()
        .map(|m| m.1)
        .fold(0.0, f64::max)
        .log10()
        .ceil()
        .max(lo + 1.0);
    let x = |ns: f64| LEFT + (ns.log10() - lo) / (hi - lo) * plot;
    let bottom = TOP + ROW * medians.len() as f64;
    let height = bottom + 40.0;
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{WIDTH}\" height=\"{height}\" \
         viewBox=\"0 0 {WIDTH} {height}\" font-family=\"sans-serif\" font-size=\"13\">\n\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
         <text x=\"{LEFT}\" y=\"24\" font-size=\"15\" font-weight=\"bold\">\
         seed-tiers: median time per decision (log scale)</text>\n"
    );
    for decade in (lo as i32)..=(hi as i32) {
        let ns = 10f64.powi(decade);
        let gx = x(ns);
        s.push_str(&format!(
            "<line x1=\"{gx:.1}\" y1=\"{:.1}\" x2=\"{gx:.1}\" y2=\"{bottom:.1}\" stroke=\"#ddd\"/>\n\
             <text x=\"{gx:.1}\" y=\"{:.1}\" text-anchor=\"middle\" fill=\"#555\">{}</text>\n",
            TOP - 8.0,
            bottom + 18.0,
            decade_label(decade),
        ));
    }
    for (i, (name, ns)) in medians.iter().enumerate() {
        let y = TOP + ROW * i as f64 + 5.0;
        let colour = match name.split(' ').next() {
            _ if *name == FLOOR => "#90b4e0",
            Some("tiergate") => "#2b6cb0",
            Some("cedar") => "#dd6b20",
            Some("regorus") => "#38a169",
            _ => "#718096",
        };
        let end = x(*ns).max(LEFT + 1.0);
        let label = if *name == FLOOR {
            "tiergate floor (no rules)"
        } else {
            name
        };
        s.push_str(&format!(
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{label}</text>\n\
             <rect x=\"{LEFT}\" y=\"{y:.1}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"{colour}\"/>\n\
             <text x=\"{:.1}\" y=\"{:.1}\">{}</text>\n",
            LEFT - 8.0,
            y + 15.0,
            end - LEFT,
            ROW - 10.0,
            end + 6.0,
            y + 15.0,
            duration_label(*ns),
        ));
    }
    s.push_str(&format!(
        "<line x1=\"{LEFT}\" y1=\"{TOP:.1}\" x2=\"{LEFT}\" y2=\"{bottom:.1}\" stroke=\"#333\"/>\n</svg>\n"
    ));
    s
}
