//! Noisy neighbours: one tenant's decision latency while another tenant's
//! hostile policy is called in a loop on the same `Runtime` (one engine, one
//! instance pool, one epoch ticker).
//!
//! Run: `cargo bench -p tiergate --bench noisy`. Writes the figures to
//! `docs/benchmarks.md` (its own section; set `TIERGATE_BENCH_OUT` to write elsewhere).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[path = "report/mod.rs"]
mod report;

use report::{cpu_model, percentile, show, today};
use tiergate::{ContextSource, Runtime, SandboxLimits, StaticContext, TenantPolicy, Transaction};
use tiergate_e2e::fixtures;

const ARTICLE_DAY: &str = include_str!("../../examples/article-day.jsonl");
/// How long each phase runs.
const PHASE: Duration = Duration::from_secs(5);
/// Threads classifying for the healthy tenant.
const HEALTHY_THREADS: usize = 2;
/// Threads calling the hostile tenant's policy.
const HOSTILE_THREADS: usize = 6;
/// The bounded-pool phase: slots, and hostile threads far beyond them.
const SMALL_SLOTS: u32 = 4;
const CROWD_THREADS: usize = 32;

/// What one phase measured.
struct Phase {
    healthy: Vec<Duration>,
    healthy_failures: usize,
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

fn main() -> anyhow::Result<()> {
    let txs: Vec<Transaction> = ARTICLE_DAY
        .lines()
        .map(|l| Transaction::from_json(l, 1_782_518_400_000))
        .collect::<Result<_, _>>()?;
    let seed = tiergate::bundled::get("seed-tiers").expect("seed-tiers is bundled");
    let misbehave = std::fs::read(fixtures::MISBEHAVE)?;

    // One runtime, default limits, shared by both tenants.
    let runtime = Runtime::new()?;
    let limits = runtime.limits().clone();
    let healthy = runtime.compile(seed)?.configure("")?;
    let hostile = runtime.compile(&misbehave)?;
    let looping = hostile.configure(r#"{"mode": "loop"}"#)?;

    // Both tenants again on a second shared runtime whose fuel is without
    // end, so only the wall-clock deadline stops the loop.
    let endless = Runtime::with_limits(SandboxLimits {
        fuel: u64::MAX / 2,
        ..SandboxLimits::default()
    })?;
    let endless_healthy = endless.compile(seed)?.configure("")?;
    let endless_looping = endless
        .compile(&misbehave)?
        .configure(r#"{"mode": "loop"}"#)?;
    // Warm up.
    let context: Arc<dyn ContextSource> = Arc::new(StaticContext::default());
    for tx in &txs {
        healthy.classify_blocking(tx, context.clone())?;
        endless_healthy.classify_blocking(tx, context.clone())?;
    }

    let rss_start = rss();
    let alone = phase(&healthy, &txs, None, 0);
    let with_loop = phase(&healthy, &txs, Some(&looping), HOSTILE_THREADS);
    let with_deadline = phase(
        &endless_healthy,
        &txs,
        Some(&endless_looping),
        HOSTILE_THREADS,
    );

    // A small pool and a crowd: hostile callers far beyond the slots, each
    // sandbox taking memory until its limit, plus the healthy tenant.
    let small = Runtime::with_limits(SandboxLimits {
        instance_slots: SMALL_SLOTS,
        ..SandboxLimits::default()
    })?;
    let small_healthy = small.compile(seed)?.configure("")?;
    let hoarding = small
        .compile(&misbehave)?
        .configure(r#"{"mode": "allocate_small"}"#)?;
    for tx in &txs {
        small_healthy.classify_blocking(tx, context.clone())?;
    }
    let rss_before_crowd = rss();
    let crowd = phase(&small_healthy, &txs, Some(&hoarding), CROWD_THREADS);
    let rss_after_crowd = rss();

    let phases = [
        ("alone", &alone),
        ("`loop` neighbour", &with_loop),
        ("`loop` neighbour, fuel without end", &with_deadline),
    ];
    for (name, p) in phases.iter().chain([&("crowd", &crowd)]) {
        assert_eq!(p.healthy_failures, 0, "{name}: the healthy tenant failed");
        assert_eq!(
            p.hostile.open, 0,
            "{name}: a hostile call did not fail closed"
        );
    }

    let (alone_p50, alone_p99) = p50_p99(&alone.healthy);
    let mut rows = String::new();
    for (name, p) in phases {
        let (p50, p99) = p50_p99(&p.healthy);
        rows += &format!(
            "| {name} | {n:.0} | {p50} | {p99} | {r50:.1}× / {r99:.1}× | {hostile} |\n",
            n = p.healthy.len() as f64 / PHASE.as_secs_f64(),
            p50 = show(p50),
            p99 = show(p99),
            r50 = ratio(p50, alone_p50),
            r99 = ratio(p99, alone_p99),
            hostile = describe(&p.hostile),
        );
    }
    let (crowd_p50, crowd_p99) = p50_p99(&crowd.healthy);
    let (loop_p50, loop_p99) = p50_p99(&with_loop.healthy);
    let (end_p50, end_p99) = p50_p99(&with_deadline.healthy);
    let share = with_loop.healthy.len() as f64 / alone.healthy.len() as f64;
    let mib = |b: u64| format!("{:.0} MiB", b as f64 / (1 << 20) as f64);

    let report = format!(
        "## Noisy neighbours\n\n\
         Reproduce with `cargo bench -p tiergate --bench noisy`. One run on {cpu}, {cores} cores, {date}. \
         A healthy tenant (`seed-tiers`, default configuration, the reference article's six \
         transactions in turn) is classified by {ht} threads without pause, each call a fresh \
         sandbox through `classify_blocking`, for {secs} s alone, then for {secs} s while {hn} threads \
         call a hostile tenant's policy (the `misbehave` fixture configured `{{\"mode\": \"loop\"}}`: \
         it loops forever on every call) without pause on the same `Runtime`: one engine, one \
         instance pool of {slots} slots, one epoch ticker. Under the default limits \
         ({fuel} fuel, {timeout} ms deadline) fuel ends the loop; the last row puts both tenants \
         on a runtime whose fuel is without end, so only the deadline does.\n\n\
         | healthy tenant | decisions per second | p50 | p99 | × alone (p50 / p99) | hostile calls: how they ended, longest |\n\
         |---|---:|---:|---:|---:|---|\n\
         {rows}\n\
         Every hostile call failed closed (a decision on the failure tier, `collaborative`, \
         with the failure's reason) and no healthy decision failed. With the `loop` neighbour \
         the healthy tenant's p50 is {r50:.1}× and its p99 {r99:.1}× what it is alone (fuel \
         without end: {c50:.1}× and {c99:.1}×), and it makes {share:.0}% of the decisions it \
         made alone. The sandbox bounds each hostile call; the instance pool bounds the \
         neighbour's share of the machine: a tenant runs at most {per} sandboxes at once \
         (`slots_per_tenant`, by default the number of cores, at least 2), so of the \
         neighbour's {hn} threads at most {per} are looping at any time and the rest wait in \
         its own line, while the healthy tenant's callers take free slots at once. What \
         remains is the OS sharing {cores} cores among {busy} running threads: a healthy \
         decision that is descheduled waits a scheduler time slice (the p99).\n\n\
         **Bounded concurrency.** A runtime with {small} instance slots; {crowd_n} threads call a \
         hostile policy (`allocate_small`) that takes memory 4 KiB at a time until its 16 MiB \
         limit, while {ht} threads classify for the healthy tenant, for {secs} s. Callers beyond \
         the slots wait; none fails for want of a slot.\n\n\
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
        slots = limits.instance_slots,
        fuel = limits.fuel,
        timeout = limits.timeout.as_millis(),
        r50 = ratio(loop_p50, alone_p50),
        r99 = ratio(loop_p99, alone_p99),
        c50 = ratio(end_p50, alone_p50),
        c99 = ratio(end_p99, alone_p99),
        share = share * 100.0,
        per = limits.slots_per_tenant,
        busy = HEALTHY_THREADS + (limits.slots_per_tenant as usize).min(HOSTILE_THREADS),
        small = SMALL_SLOTS,
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
    report::write_section("noisy", &report)?;
    Ok(())
}

/// Runs the healthy tenant on its threads for `PHASE`, with `threads` more
/// calling `hostile` until it ends.
fn phase(
    healthy: &TenantPolicy,
    txs: &[Transaction],
    hostile: Option<&TenantPolicy>,
    threads: usize,
) -> Phase {
    let stop = AtomicBool::new(false);
    let peak = AtomicU64::new(rss());
    let latencies = Mutex::new(Vec::new());
    let healthy_failures = Mutex::new(0);
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
                    while !stop.load(Ordering::Relaxed) {
                        let start = Instant::now();
                        let d = hostile
                            .classify_blocking(&txs[0], context.clone())
                            .expect("valid transaction");
                        mine.longest = mine.longest.max(start.elapsed());
                        mine.calls += 1;
                        match &d.failure {
                            Some(f) if d.tier >= hostile.failure_tier() => {
                                *mine.ended.entry(f.kind.code()).or_default() += 1;
                            }
                            _ => mine.open += 1,
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
                    let (mut mine, mut failed) = (Vec::new(), 0);
                    let end = Instant::now() + PHASE;
                    let mut i = t;
                    while Instant::now() < end {
                        let start = Instant::now();
                        let d = healthy
                            .classify_blocking(&txs[i % txs.len()], context.clone())
                            .expect("valid transaction");
                        mine.push(start.elapsed());
                        failed += usize::from(d.failure.is_some());
                        i += 1;
                    }
                    latencies.lock().unwrap().extend(mine);
                    *healthy_failures.lock().unwrap() += failed;
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
