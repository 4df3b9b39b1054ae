//! `seed-tiers` in Rust, Python and TypeScript side by side: a decision in a
//! fresh sandbox, 100 tenants each with a policy of its own, and durable
//! authorizations at 16 callers.
//!
//! Run: `cargo bench -p tiergate-cli --bench languages`, after `cargo xtask
//! test` has built the Python and TypeScript components (into
//! `target/guest-policies`, or the folder `TIERGATE_GUEST_POLICIES` names).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "a benchmark stops at its first failure"
)]

#[path = "durable/mod.rs"]
#[allow(dead_code)]
mod durable;
#[path = "report/mod.rs"]
#[allow(dead_code)]
mod report;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use report::{percentile, show};
use tiergate_runtime::{ContextSource, Runtime, StaticContext, Transaction};

const ARTICLE_DAY: &str = include_str!("../../../examples/article-day.jsonl");
const LANGUAGES: [&str; 3] = ["Rust", "Python", "TypeScript"];
/// Tenants per language in the memory figure.
const TENANTS: usize = 100;
/// Callers in the durable figure.
const CALLERS: usize = 16;
/// Runs per language in the durable figure.
const RUNS: usize = 3;

/// The component of `seed-tiers` in `language`.
fn component(language: &str) -> Vec<u8> {
    let built = |name: &str| {
        let dir = std::env::var_os("TIERGATE_GUEST_POLICIES")
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                std::env::var_os("CARGO_TARGET_DIR")
                    .map(PathBuf::from)
                    .unwrap_or_else(|| {
                        PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../target"))
                    })
                    .join("guest-policies")
            });
        let path = dir.join(format!("{name}.wasm"));
        std::fs::read(&path).unwrap_or_else(|e| {
            panic!(
                "cannot read {} ({e}): `cargo xtask test` builds it",
                path.display()
            )
        })
    };
    match language {
        "Rust" => tiergate_cli::bundled::get("seed-tiers")
            .expect("bundled")
            .to_vec(),
        "Python" => built("seed-tiers-py"),
        "TypeScript" => built("seed-tiers-ts"),
        other => panic!("no seed-tiers in {other}"),
    }
}

fn main() -> anyhow::Result<()> {
    // The memory of one language's tenants, measured in a process of its
    // own so no other figure's freed memory hides or inflates it.
    let only = std::env::var("TIERGATE_BENCH_ONLY").unwrap_or_default();
    if let Some(language) = only.strip_prefix("memory:") {
        // The main process's cache: each policy is compiled once per run.
        let cache = std::env::var_os("TIERGATE_BENCH_CACHE").map(PathBuf::from);
        let (load, rss) =
            durable::many_policies(&component(language), tenants(), cache.as_deref())?;
        println!(
            "{} {} {} {} {}",
            load.as_nanos(),
            rss.total,
            rss.anon,
            rss.file,
            rss.shmem
        );
        return Ok(());
    }
    let quick = report::quick();
    let rounds = if quick { 12 } else { 3_000 };
    let txs: Vec<Transaction> = ARTICLE_DAY
        .lines()
        .map(|l| Transaction::from_json(l, 1_782_518_400_000))
        .collect::<Result<_, _>>()?;
    let components: Vec<Vec<u8>> = LANGUAGES.iter().map(|l| component(l)).collect();

    // Compiling, and loading again from the compiled-policy cache.
    let cache = tempfile::tempdir()?;
    let runtime = Runtime::new()?;
    runtime.cache_compiled_in(cache.path())?;
    let mut compiled = Vec::new();
    let mut loading = Vec::new();
    for bytes in &components {
        let start = Instant::now();
        compiled.push(runtime.compile(bytes)?);
        let compile = start.elapsed();
        let loads = (0..if quick { 1 } else { 5 })
            .map(|_| {
                let start = Instant::now();
                runtime.compile(bytes).map(|_| start.elapsed())
            })
            .collect::<Result<Vec<_>, _>>()?;
        loading.push((compile, percentile(loads, 50)));
    }

    // One decision each, in turn, so the machine's drift touches all three alike.
    let policies = compiled
        .iter()
        .map(|c| c.configure(""))
        .collect::<Result<Vec<_>, _>>()?;
    let context: Arc<dyn ContextSource> = Arc::new(StaticContext::default());
    let mut times = vec![Vec::with_capacity(rounds); LANGUAGES.len()];
    let mut fuel = vec![Vec::with_capacity(rounds); LANGUAGES.len()];
    for round in 0..rounds + txs.len() {
        let tx = &txs[round % txs.len()];
        let mut tiers = Vec::new();
        for (n, policy) in policies.iter().enumerate() {
            let start = Instant::now();
            let decision = policy.classify_blocking(tx, context.clone())?;
            let took = start.elapsed();
            anyhow::ensure!(
                decision.failure.is_none(),
                "{} failed on {}: {:?}",
                LANGUAGES[n],
                tx.id,
                decision.failure
            );
            tiers.push(decision.tier);
            // The first pass over the day warms each sandbox up.
            if round >= txs.len() {
                times[n].push(took);
                fuel[n].push(decision.fuel_used);
            }
        }
        anyhow::ensure!(
            tiers.iter().all(|t| *t == tiers[0]),
            "the three disagree on {}: {tiers:?}",
            tx.id
        );
    }

    // Resident memory of 100 tenants per language, each in its own process.
    let mut memory = Vec::new();
    for language in LANGUAGES {
        let out = std::process::Command::new(std::env::current_exe()?)
            .env("TIERGATE_BENCH_ONLY", format!("memory:{language}"))
            .env("TIERGATE_BENCH_CACHE", cache.path())
            .output()?;
        anyhow::ensure!(
            out.status.success(),
            "the memory run for {language} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8(out.stdout)?;
        let fields = text
            .split_whitespace()
            .map(str::parse::<u64>)
            .collect::<Result<Vec<_>, _>>()?;
        let [load, rss, anon, file, shmem] = fields[..] else {
            anyhow::bail!("the memory run for {language} printed {text:?}");
        };
        memory.push((Duration::from_nanos(load), rss, [anon, file, shmem]));
    }

    // Durable authorizations at 16 callers, the languages' runs alternating.
    let per_run = if quick { 64 } else { 3_200 };
    let runs = if quick { 1 } else { RUNS };
    let mut authorizing: Vec<Vec<durable::Run>> = LANGUAGES.iter().map(|_| Vec::new()).collect();
    for _ in 0..runs {
        for (n, policy) in compiled.iter().enumerate() {
            authorizing[n].push(durable::run(&runtime, policy, CALLERS, per_run)?);
        }
    }

    let mut decision_rows = Vec::new();
    let mut memory_rows = Vec::new();
    let mut durable_rows = Vec::new();
    for (n, language) in LANGUAGES.iter().enumerate() {
        let (compile, load) = loading[n];
        let mut f = fuel[n].clone();
        f.sort_unstable();
        decision_rows.push(format!(
            "| {language} | {} KB | {} | {} | {} | {} | {} to {} |",
            components[n].len() / 1000,
            show(compile),
            show(load),
            show(percentile(times[n].clone(), 50)),
            show(percentile(times[n].clone(), 99)),
            f[0],
            f[f.len() - 1],
        ));
        let (load_all, rss, [anon, file, shmem]) = memory[n];
        memory_rows.push(format!(
            "| {language} | {} | {} MiB | {:.1} MiB | {} MiB | {} MiB | {} MiB |",
            show(load_all),
            rss >> 20,
            rss as f64 / tenants() as f64 / f64::from(1 << 20),
            anon >> 20,
            file >> 20,
            shmem >> 20,
        ));
        let mut all = std::mem::take(&mut authorizing[n]);
        all.sort_by(|a, b| a.per_second.total_cmp(&b.per_second));
        let mid = &all[all.len() / 2];
        durable_rows.push(format!(
            "| {language} | {:.0} | {:.0} to {:.0} | {} | {} | {} |",
            mid.per_second,
            all[0].per_second,
            all[all.len() - 1].per_second,
            show(mid.p50),
            show(mid.p99),
            show(mid.cpu_each),
        ));
    }

    let report = format!(
        "## Policies in three languages\n\n\
         Reproduce with `cargo xtask test` (it builds the Python and TypeScript components) \
         and then `cargo bench -p tiergate-cli --bench languages`. One run on {cpu}, {date}. \
         `seed-tiers` in Rust, in Python (componentize-py 0.25.1, CPython 3.14) and in \
         TypeScript (componentize-js 0.23.0, StarlingMonkey), with the default configuration \
         and the host's default limits, each granted what its SDK declares (Python and \
         TypeScript: 32 MiB, 25,000,000 fuel, 2 ms of CPU a call).\n\n\
         **A decision in a fresh sandbox.** The reference article's six transactions, {rounds} \
         decisions per language, one language after the other for each decision so the \
         machine's drift touches all three alike; the three must agree on every tier.\n\n\
         | language | component | compile (once) | load from the compiled-policy cache | p50 | p99 | fuel per decision |\n\
         |---|---:|---:|---:|---:|---:|---:|\n{decisions}\n\n\
         **{tenants} tenants each with a policy of its own**, per language, each in a \
         process of its own: the policy loaded from the compiled-policy cache once per \
         tenant (each load its own copy of the machine code, as {tenants} different \
         policies of that size would be) and configured. Resident memory is what they add \
         to the process. A sandbox's memory is reserved per call from the pool, not per \
         tenant.\n\n\
         | language | load and configure all | resident memory they add | per tenant | of it anonymous | of it mapped files | of it shared memory |\n\
         |---|---:|---:|---:|---:|---:|---:|\n{memory}\n\n\
         **Durable authorizations at {callers} callers**, as in \
         [Durable authorization](#durable-authorization): each classifies an autonomous \
         payment in a fresh sandbox and commits it, its audit events and the ledger entry \
         to SQLite before answering. {per_run} payments per run, {runs} runs per language, \
         the languages' runs alternating; the run of median throughput, and the range.\n\n\
         | language | authorizations per second | range | p50 latency | p99 latency | CPU per authorization |\n\
         |---|---:|---:|---:|---:|---:|\n{durable}\n",
        cpu = report::cpu_model(),
        date = report::today(),
        decisions = decision_rows.join("\n"),
        tenants = tenants(),
        memory = memory_rows.join("\n"),
        callers = CALLERS,
        durable = durable_rows.join("\n"),
    );
    print!("{report}");
    report::write_section("languages", &report)?;
    Ok(())
}

fn tenants() -> usize {
    if report::quick() { 3 } else { TENANTS }
}
