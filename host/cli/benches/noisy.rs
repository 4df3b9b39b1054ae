//! Noisy neighbours: one tenant's decision latency while another tenant's
//! hostile policy is called on the same `Runtime` (one engine, one instance
//! pool, one epoch ticker), with each tenant's CPU budget on and off.
//!
//! Run: `cargo bench -p tiergate-cli --bench noisy`. Writes the figures to
//! `docs/benchmarks.md` (its own section; set `TIERGATE_BENCH_OUT` to write
//! elsewhere). With `TIERGATE_BENCH_QUICK=1` it only runs its correctness
//! checks once (the healthy tenant never fails, every hostile call fails
//! closed), in a few seconds, times nothing, and exits non-zero when a
//! check fails.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "a benchmark stops at its first failure"
)]

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[path = "report/mod.rs"]
mod report;

use report::{cpu_model, percentile, show, today};
use tiergate_e2e::fixtures;
use tiergate_runtime::{
    ClassifyError, ContextSource, Runtime, SandboxLimits, StaticContext, TenantPolicy, Transaction,
};

const ARTICLE_DAY: &str = include_str!("../../../examples/article-day.jsonl");
/// How long each phase runs.
const PHASE: Duration = Duration::from_secs(5);
/// Threads classifying for the healthy tenant.
const HEALTHY_THREADS: usize = 2;
/// Threads calling the hostile tenant's policy.
const HOSTILE_THREADS: usize = 6;
/// Each hostile thread sends a request this often (when the last one has
/// been answered): 6,000 a second in all, about as many as the service
/// records durably. A caller looping on an in-process call without pause
/// would be measuring its own loop, not the host.
const HOSTILE_PACE: Duration = Duration::from_millis(1);
/// The bounded-pool phase: slots, and hostile threads far beyond them.
const SMALL_SLOTS: u32 = 4;
const CROWD_THREADS: usize = 32;
/// The target: the healthy tenant's p99 within this of its p99 alone ...
const TARGET_P99: f64 = 1.5;
/// ... and at least this share of the decisions it makes alone.
const TARGET_SHARE: f64 = 0.8;
/// Decisions per healthy thread in a quick phase.
const QUICK_DECISIONS: usize = 300;

/// How long a phase runs: for `PHASE`, or (quick) for a number of decisions.
#[derive(Clone, Copy)]
enum Length {
    Timed,
    Quick,
}

/// What one phase measured.
struct Phase {
    healthy: Vec<Duration>,
    /// The healthy tenant's failed decisions, by reason code.
    healthy_failures: BTreeMap<&'static str, usize>,
    hostile: Hostile,
    peak_rss: u64,
}

#[derive(Default)]
struct Hostile {
    calls: u64,
    /// How the calls ended, by reason code.
    ended: BTreeMap<&'static str, u64>,
    /// Calls that answered a tier looser than the failure tier, or no failure.
    open: u64,
    longest: Duration,
}

/// The healthy tenant and its looping neighbour on one runtime.
struct Pair {
    healthy: TenantPolicy,
    looping: TenantPolicy,
}

fn pair(
    limits: SandboxLimits,
    cache: &std::path::Path,
    seed: &[u8],
    misbehave: &[u8],
) -> anyhow::Result<Pair> {
    let runtime = Runtime::with_limits(limits)?;
    runtime.cache_compiled_in(cache)?;
    Ok(Pair {
        healthy: runtime.compile(seed)?.configure("")?,
        looping: runtime
            .compile(misbehave)?
            .configure(r#"{"mode": "loop"}"#)?,
    })
}

fn main() -> anyhow::Result<()> {
    let quick = report::quick();
    let length = if quick { Length::Quick } else { Length::Timed };
    let txs: Vec<Transaction> = ARTICLE_DAY
        .lines()
        .map(|l| Transaction::from_json(l, 1_782_518_400_000))
        .collect::<Result<_, _>>()?;
    let seed = tiergate_cli::bundled::get("seed-tiers").expect("seed-tiers is bundled");
    let misbehave = std::fs::read(fixtures::MISBEHAVE)?;

    // Quick, nothing is timed: a deadline long enough that a machine busy
    // with other work does not fail a healthy decision (as in the tests).
    let defaults = SandboxLimits {
        timeout: if quick {
            Duration::from_secs(1)
        } else {
            SandboxLimits::default().timeout
        },
        ..SandboxLimits::default()
    };
    let no_budget = SandboxLimits {
        cpu_per_second: Duration::ZERO,
        ..defaults.clone()
    };
    let endless = |limits: &SandboxLimits| SandboxLimits {
        fuel: u64::MAX / 2,
        ..limits.clone()
    };
    // Each phase on a runtime of its own, so no budget carries over.
    let phases_of = [
        ("alone", defaults.clone(), false),
        ("`loop` neighbour, no CPU budget", no_budget.clone(), true),
        ("`loop` neighbour, CPU budget", defaults.clone(), true),
        (
            "`loop` neighbour, fuel without end, no CPU budget",
            endless(&no_budget),
            true,
        ),
        (
            "`loop` neighbour, fuel without end, CPU budget",
            endless(&defaults),
            true,
        ),
    ];
    let context: Arc<dyn ContextSource> = Arc::new(StaticContext::default());
    // Every runtime has the same engine settings: each policy is compiled
    // once and loaded from this cache after.
    let cache_dir = tempfile::tempdir()?;
    let cache = cache_dir.path().join("compiled");
    let rss_start = rss();
    let mut measured = Vec::new();
    for (name, limits, with_neighbour) in &phases_of {
        let p = pair(limits.clone(), &cache, seed, &misbehave)?;
        // Warm up.
        for tx in &txs {
            p.healthy.classify_blocking(tx, context.clone())?;
        }
        let neighbour = with_neighbour.then_some(&p.looping);
        let threads = if *with_neighbour { HOSTILE_THREADS } else { 0 };
        let phase = run_phase(
            &p.healthy,
            &txs,
            neighbour,
            threads,
            Some(HOSTILE_PACE),
            length,
        );
        measured.push((*name, phase));
    }

    // A small pool and a crowd: hostile callers far beyond the slots, each
    // sandbox taking memory until its limit, plus the healthy tenant. The
    // crowd calls without pause: this is about waiting, not CPU.
    // About waiting and memory, not CPU: the crowd's budget is off, so its
    // callers queue for slots rather than being refused at once.
    let small = Runtime::with_limits(SandboxLimits {
        instance_slots: SMALL_SLOTS,
        cpu_per_second: Duration::ZERO,
        ..defaults.clone()
    })?;
    small.cache_compiled_in(&cache)?;
    let small_healthy = small.compile(seed)?.configure("")?;
    let hoarding = small
        .compile(&misbehave)?
        .configure(r#"{"mode": "allocate_small"}"#)?;
    for tx in &txs {
        small_healthy.classify_blocking(tx, context.clone())?;
    }
    let rss_before_crowd = rss();
    let crowd = run_phase(
        &small_healthy,
        &txs,
        Some(&hoarding),
        CROWD_THREADS,
        None,
        length,
    );
    let rss_after_crowd = rss();

    let mut failed = Vec::new();
    for (name, p) in measured
        .iter()
        .map(|(n, p)| (*n, p))
        .chain([("crowd", &crowd)])
    {
        if !p.healthy_failures.is_empty() {
            failed.push(format!(
                "{name}: healthy decisions failed: {:?}",
                p.healthy_failures
            ));
        }
        if p.hostile.open != 0 {
            failed.push(format!(
                "{name}: {} hostile calls did not fail closed",
                p.hostile.open
            ));
        }
        if name != "alone" && p.hostile.calls == 0 {
            failed.push(format!("{name}: the neighbour made no call"));
        }
    }
    let check = || -> anyhow::Result<()> {
        if failed.is_empty() {
            Ok(())
        } else {
            anyhow::bail!("noisy: checks failed:\n  {}", failed.join("\n  "))
        }
    };
    if quick {
        check()?;
        println!(
            "noisy (quick): the healthy tenant never failed and every hostile call failed closed, in {} phases",
            measured.len() + 1
        );
        return Ok(());
    }

    let alone = &measured[0].1;
    let (alone_p50, alone_p99) = p50_p99(&alone.healthy);
    let mut rows = String::new();
    let mut verdicts = Vec::new();
    for (name, p) in &measured {
        let (p50, p99) = p50_p99(&p.healthy);
        let share = p.healthy.len() as f64 / alone.healthy.len() as f64;
        rows += &format!(
            "| {name} | {n:.0} ({share:.0}%) | {p50} | {p99} | {r50:.1}× / {r99:.1}× | {hostile} |\n",
            n = p.healthy.len() as f64 / PHASE.as_secs_f64(),
            share = share * 100.0,
            p50 = show(p50),
            p99 = show(p99),
            r50 = ratio(p50, alone_p50),
            r99 = ratio(p99, alone_p99),
            hostile = describe(&p.hostile),
        );
        if name.ends_with(", CPU budget") {
            let met = ratio(p99, alone_p99) <= TARGET_P99 && share >= TARGET_SHARE;
            verdicts.push(format!(
                "{name}: p99 {:.2}× alone, {:.0}% of its decisions: {}",
                ratio(p99, alone_p99),
                share * 100.0,
                if met { "met" } else { "not met" }
            ));
        }
    }
    let (crowd_p50, crowd_p99) = p50_p99(&crowd.healthy);
    let mib = |b: u64| format!("{:.0} MiB", b as f64 / (1 << 20) as f64);

    let report = format!(
        "## Noisy neighbours\n\n\
         Reproduce with `cargo bench -p tiergate-cli --bench noisy` (`TIERGATE_BENCH_QUICK=1` runs only its \
         checks). One run on {cpu}, {cores} cores, {date}. A healthy tenant (`seed-tiers`, default \
         configuration, the reference article's six transactions in turn) is classified by {ht} threads \
         without pause, each call a fresh sandbox through `classify_blocking`, for {secs} s alone, then \
         for {secs} s while {hn} threads call a hostile tenant's policy (the `misbehave` fixture \
         configured `{{\"mode\": \"loop\"}}`: it loops forever on every call) on the same `Runtime`: one \
         engine, one instance pool of {slots} slots, one epoch ticker. Each hostile thread sends its next \
         request {pace} ms after the last was sent, or as soon as it is answered if that is later: \
         {rate} requests a second in all, about what the service records durably (a caller looping on \
         an in-process call without any pause would measure its own loop, not the host). Under the \
         default limits ({fuel} fuel, {timeout} ms deadline) fuel ends the loop; the rows \"fuel \
         without end\" put both tenants on a runtime whose fuel is without end, so only the deadline \
         does. Each row has its own runtime; \"no CPU budget\" sets `cpu_per_second` to zero, \
         \"CPU budget\" keeps the default: {budget} a second of CPU beyond {free} a call that \
         answers (a failed call is charged whole), {burst} at once, per tenant.\n\n\
         | healthy tenant | decisions per second (share of alone) | p50 | p99 | × alone (p50 / p99) | hostile calls: how they ended, longest |\n\
         |---|---:|---:|---:|---:|---|\n\
         {rows}\n\
         Every hostile call failed closed (a decision on the failure tier, `collaborative`, \
         with the failure's reason) and no healthy decision failed. The target, the healthy tenant's \
         p99 within {tp99}× of alone and at least {tshare:.0}% of its decisions while the neighbour \
         loops: {verdicts}. Without a budget the neighbour's loops hold a core each for milliseconds \
         (up to `slots_per_tenant`, {per}, at once): the fair queue bounds how many sandboxes it runs, \
         not how much CPU they burn. With it, once its burst is spent, the neighbour gets its failure \
         tier at once (`policy_cpu_budget_exhausted`) for all but about {budget} of loop a second, and \
         the healthy tenant's decisions, microseconds each, are never charged.\n\n\
         **Bounded concurrency.** A runtime with {small} instance slots and no CPU budget; {crowd_n} threads call a \
         hostile policy (`allocate_small`) that takes memory 4 KiB at a time until its 16 MiB \
         limit, without pause, while {ht} threads classify for the healthy tenant, for {secs} s. \
         Callers beyond the slots wait, each at most `slot_wait` ({wait}): one still waiting then \
         gets no decision (`SandboxBusy`, which the service answers 503); no healthy caller waits \
         that long.\n\n\
         | measure | value |\n|---|---:|\n\
         | hostile calls, how they ended | {crowd_hostile} |\n\
         | hostile calls per second (at most {per} at a time) | {crowd_rate:.0} |\n\
         | healthy decisions per second | {crowd_tp:.0} |\n\
         | healthy decisions, p50 / p99 (including the wait for a slot) | {cp50} / {cp99} |\n\
         | resident memory: start of the run / before the crowd / peak / after | {r0} / {r1} / {rp} / {r2} |\n\n\
         Resident memory is read from `/proc/self/statm` (sampled every 5 ms for the peak); with \
         {small} slots the sandboxes hold at most {small} × 16 MiB at once, whatever the number of \
         callers. The wait is fair: the crowd's tenant holds at most {per} of the {small} \
         slots, its other callers queue in its own first-in-first-out line, and a freed slot \
         goes to the waiting tenant holding the fewest, so the healthy tenant's caller is \
         served at the next free slot instead of behind the crowd.\n",
        cpu = cpu_model(),
        cores = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1),
        date = today(),
        ht = HEALTHY_THREADS,
        hn = HOSTILE_THREADS,
        secs = PHASE.as_secs(),
        pace = HOSTILE_PACE.as_millis(),
        rate = HOSTILE_THREADS as u128 * 1000 / HOSTILE_PACE.as_millis(),
        slots = defaults.instance_slots,
        fuel = defaults.fuel,
        timeout = defaults.timeout.as_millis(),
        budget = show(defaults.cpu_per_second),
        free = show(defaults.cpu_free_per_call),
        burst = show(defaults.cpu_burst),
        tp99 = TARGET_P99,
        tshare = TARGET_SHARE * 100.0,
        verdicts = verdicts.join("; "),
        per = defaults.slots_per_tenant,
        small = SMALL_SLOTS,
        wait = show(defaults.slot_wait),
        crowd_n = CROWD_THREADS,
        crowd_hostile = describe(&crowd.hostile),
        crowd_rate = crowd.hostile.calls as f64 / PHASE.as_secs_f64(),
        crowd_tp = crowd.healthy.len() as f64 / PHASE.as_secs_f64(),
        cp50 = show(crowd_p50),
        cp99 = show(crowd_p99),
        r0 = mib(rss_start),
        r1 = mib(rss_before_crowd),
        rp = mib(crowd.peak_rss),
        r2 = mib(rss_after_crowd),
    );
    print!("{report}");
    // Figures of a failed run are shown, never written.
    check()?;
    report::write_section("noisy", &report)?;
    Ok(())
}

/// Runs the healthy tenant on its threads (for `PHASE`, or a fixed number
/// of decisions when quick), with `threads` more calling `hostile`, paced
/// at `pace` each (or without pause), until the healthy threads are done.
fn run_phase(
    healthy: &TenantPolicy,
    txs: &[Transaction],
    hostile: Option<&TenantPolicy>,
    threads: usize,
    pace: Option<Duration>,
    length: Length,
) -> Phase {
    let stop = AtomicBool::new(false);
    let peak = AtomicU64::new(rss());
    let latencies = Mutex::new(Vec::new());
    let healthy_failures = Mutex::new(BTreeMap::new());
    let stats = Mutex::new(Hostile::default());
    std::thread::scope(|s| {
        s.spawn(|| {
            while !stop.load(Ordering::Relaxed) {
                peak.fetch_max(rss(), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(5));
            }
        });
        if let Some(hostile) = hostile {
            for _ in 0..threads {
                s.spawn(|| {
                    let context: Arc<dyn ContextSource> = Arc::new(StaticContext::default());
                    let mut mine = Hostile::default();
                    let mut next = Instant::now();
                    while !stop.load(Ordering::Relaxed) {
                        if let Some(pace) = pace {
                            let now = Instant::now();
                            if next > now {
                                std::thread::sleep(next - now);
                            }
                            next = next.max(now) + pace;
                        }
                        let start = Instant::now();
                        let answer = hostile.classify_blocking(&txs[0], context.clone());
                        mine.longest = mine.longest.max(start.elapsed());
                        mine.calls += 1;
                        match answer {
                            Ok(d) => match &d.failure {
                                Some(f) if d.tier >= hostile.failure_tier() => {
                                    *mine.ended.entry(f.kind.code()).or_default() += 1;
                                }
                                _ => mine.open += 1,
                            },
                            // Waited its whole bound in its own line: no
                            // decision, as the service answers 503.
                            Err(ClassifyError::SandboxBusy { .. }) => {
                                *mine.ended.entry("sandbox_busy (no decision)").or_default() += 1;
                            }
                            Err(e) => panic!("a valid transaction was refused: {e}"),
                        }
                    }
                    let mut all = stats.lock().unwrap();
                    all.calls += mine.calls;
                    all.open += mine.open;
                    all.longest = all.longest.max(mine.longest);
                    for (code, n) in mine.ended {
                        *all.ended.entry(code).or_default() += n;
                    }
                });
            }
        }
        let (latencies, healthy_failures) = (&latencies, &healthy_failures);
        let healthy_threads: Vec<_> = (0..HEALTHY_THREADS)
            .map(|t| {
                s.spawn(move || {
                    let context: Arc<dyn ContextSource> = Arc::new(StaticContext::default());
                    let (mut mine, mut failed) = (Vec::new(), BTreeMap::new());
                    let end = Instant::now() + PHASE;
                    let mut i = t;
                    let more = |i: usize| match length {
                        Length::Timed => Instant::now() < end,
                        Length::Quick => i < t + QUICK_DECISIONS,
                    };
                    while more(i) {
                        let start = Instant::now();
                        let answer =
                            healthy.classify_blocking(&txs[i % txs.len()], context.clone());
                        mine.push(start.elapsed());
                        // Refused for a budget it should never meet, kept
                        // waiting past its bound, or failed.
                        match answer {
                            Ok(d) => {
                                if let Some(f) = &d.failure {
                                    *failed.entry(f.kind.code()).or_insert(0) += 1;
                                }
                            }
                            Err(ClassifyError::SandboxBusy { .. }) => {
                                *failed.entry("sandbox_busy").or_insert(0) += 1;
                            }
                            Err(e) => panic!("a valid transaction was refused: {e}"),
                        }
                        i += 1;
                    }
                    latencies.lock().unwrap().extend(mine);
                    let mut all = healthy_failures.lock().unwrap();
                    for (code, n) in failed {
                        *all.entry(code).or_insert(0) += n;
                    }
                })
            })
            .collect();
        for t in healthy_threads {
            t.join().expect("healthy thread");
        }
        stop.store(true, Ordering::Relaxed);
    });
    Phase {
        healthy: latencies.into_inner().unwrap(),
        healthy_failures: healthy_failures.into_inner().unwrap(),
        hostile: stats.into_inner().unwrap(),
        peak_rss: peak.into_inner(),
    }
}

fn describe(h: &Hostile) -> String {
    if h.calls == 0 {
        return "none".into();
    }
    let ended: Vec<String> = h.ended.iter().map(|(c, n)| format!("{n} `{c}`")).collect();
    format!(
        "{} calls: {}; longest {}",
        h.calls,
        ended.join(", "),
        show(h.longest)
    )
}

fn p50_p99(v: &[Duration]) -> (Duration, Duration) {
    (percentile(v.to_vec(), 50), percentile(v.to_vec(), 99))
}

fn ratio(a: Duration, b: Duration) -> f64 {
    a.as_secs_f64() / b.as_secs_f64()
}

/// Resident memory in bytes, from `/proc/self/statm`.
fn rss() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(1) as u64;
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .unwrap_or(0)
        * page
}
